//! `fleetedge simulate` against the real gateway binary and a real mosquitto: what arrives at
//! the broker is checked here with the test helpers, not taken from simulate's own summary.
//!
//! - `simulate_<protocol>_over_<transport>`: one gateway with one listener of the protocol
//!   (teltonika, teltonika-udp, gt06, queclink with and without `ack_reports`, wialon, wialon-udp,
//!   jsonl), `fleetedge simulate` with 3 devices × 20 records (chunks of 7, so the last one
//!   is short) and `--watch-mqtt`: it exits 0, reports every record acknowledged (jsonl: none,
//!   it has no answers) and at the broker, and the broker received exactly 60 records, 20 of
//!   each simulated IMEI with the times simulate sends.
//! - `simulate_nmea_over_a_serial_pty`: a socat pty pair, one end the gateway's
//!   `[[serial]]` nmea port (`device_id = "gnss-sim"`), simulate writing 20 RMC + GGA
//!   epochs into the other: exactly 20 records of `gnss-sim` at the broker.
//! - `refused_devices_fail_the_check`: listeners whose `allowed_devices` leave the simulated
//!   devices out: teltonika (`00` to the IMEI), gt06 (connection closed after the login) and
//!   teltonika-udp (an ack with a count of 0, the same rule as TCP) each exit non-zero,
//!   report every device refused, and nothing of theirs reaches the broker.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use firmware_protocols::record::format_rfc3339_ms;
use serde_json::Value;

const DEVICES: usize = 3;
const RECORDS: u64 = 20;
/// The time of simulated record 0 (simulate's drive starts at 2026-01-01T00:00:00Z, one
/// record a second).
const T0_MS: i64 = 1_767_225_600_000;
/// How long one simulate run may take before the test fails it.
const RUN_LIMIT: Duration = Duration::from_secs(90);
const ARRIVE: Duration = Duration::from_secs(20);

/// One finished `fleetedge simulate`: its exit status and its summary (`--json`).
struct Run {
    success: bool,
    summary: Value,
    output: String,
}

/// Runs the real binary with `args` plus `--json`, within [`RUN_LIMIT`].
async fn simulate(args: &[String]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir for simulate's output");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).expect("simulate output file");
    let mut child = gateway_command()
        .arg("simulate")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .expect("spawn fleetedge simulate");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for simulate") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            kill(&mut child);
            panic!("fleetedge simulate {args:?} ran longer than {RUN_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let summary = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    Run {
        success: status.success(),
        summary,
        output: format!("status {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"),
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The (device_id, time) of every record `devices` × `records` of a run, starting at IMEI
/// `first` (one id for serial runs).
fn expected_keys(ids: &[String], records: u64) -> HashSet<(String, String)> {
    ids.iter()
        .flat_map(|id| {
            (0..records).map(move |k| (id.clone(), format_rfc3339_ms(T0_MS + k as i64 * 1000)))
        })
        .collect()
}

/// Checks that the broker got exactly `keys` (no more, no fewer, no duplicates) from the
/// simulated devices; records without a device time (GT06 heartbeats) are not counted.
async fn assert_broker_got_exactly(
    collector: &Collector,
    keys: &HashSet<(String, String)>,
    run: &Run,
) {
    let missing = collector.wait_for_all(keys, ARRIVE).await;
    assert_eq!(
        missing, 0,
        "{missing} records missing at the broker\n{}",
        run.output
    );
    // A moment for anything extra (a duplicate, a stray record) to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (got, errors, _) = collector.snapshot();
    let ids: HashSet<&String> = keys.iter().map(|(id, _)| id).collect();
    let errors: Vec<&String> = errors.iter().filter(|e| !e.contains("heartbeat")).collect();
    assert!(errors.is_empty(), "batches broke the contract: {errors:?}");
    let ours: Vec<(String, String)> = got
        .iter()
        .filter(|g| ids.contains(&g.device_id))
        .map(|g| (g.device_id.clone(), g.time.clone()))
        .collect();
    assert_eq!(
        ours.len(),
        keys.len(),
        "records at the broker from the simulated devices\n{}",
        run.output
    );
    assert_eq!(&ours.into_iter().collect::<HashSet<_>>(), keys);
    let strangers: Vec<&String> = got
        .iter()
        .map(|g| &g.device_id)
        .filter(|id| !ids.contains(id))
        .collect();
    assert!(
        strangers.is_empty(),
        "records of other devices: {strangers:?}"
    );
}

fn assert_summary_ok(run: &Run, expected: u64, acknowledges: bool) {
    assert!(run.success, "simulate failed\n{}", run.output);
    let s = &run.summary;
    assert_eq!(s["records_sent"], expected, "{}", run.output);
    let acked = if acknowledges { expected } else { 0 };
    assert_eq!(s["records_acked"], acked, "{}", run.output);
    assert_eq!(s["refused"], 0, "{}", run.output);
    assert_eq!(s["failed"], 0, "{}", run.output);
    assert_eq!(s["records_at_broker"], expected, "{}", run.output);
    assert_eq!(s["ok"], true, "{}", run.output);
}

/// One gateway with a `protocol` listener (plus a TCP one when it is UDP: the test gateway
/// waits for a TCP listener), simulate at it, and the broker's view checked.
async fn site_check(protocol: &str, keys: &[(&str, &str)], first_imei: u64) {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), &format!("sim-{protocol}-collector")).await;
    let mut config =
        GatewayConfig::new(&format!("gw-sim-{protocol}"), broker.port()).listener(protocol, keys);
    if is_udp_protocol(protocol) {
        config = config.listener("teltonika", &[]);
    }
    let gateway = Gateway::start(config).await;
    let target = gateway.listener_addr_of(protocol).to_string();
    let run = simulate(&args(&[
        "--protocol",
        protocol,
        "--target",
        &target,
        "--devices",
        &DEVICES.to_string(),
        "--records",
        &RECORDS.to_string(),
        "--per-packet",
        "7",
        "--first-imei",
        &first_imei.to_string(),
        "--watch-mqtt",
        &format!("127.0.0.1:{}", broker.port()),
        // simulate and the gateway may both run under qemu: a late answer would count as
        // failed, and a late teltonika-udp ack makes simulate resend (a duplicate stored).
        "--reply-timeout-s",
        "30",
        "--timeout-s",
        "60",
    ]))
    .await;
    let acknowledges = protocol != "jsonl";
    assert_summary_ok(&run, DEVICES as u64 * RECORDS, acknowledges);
    let ids: Vec<String> = (0..DEVICES as u64)
        .map(|i| (first_imei + i).to_string())
        .collect();
    assert_broker_got_exactly(&collector, &expected_keys(&ids, RECORDS), &run).await;
}

/// One test per protocol and transport, so each fails on its own.
macro_rules! site_checks {
    ($($name:ident: $protocol:literal, $keys:expr, $first_imei:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            site_check($protocol, $keys, $first_imei).await;
        }
    )*};
}

site_checks! {
    simulate_teltonika_over_tcp: "teltonika", &[], 356_307_051_000_000;
    simulate_teltonika_udp_over_udp: "teltonika-udp", &[], 356_307_052_000_000;
    simulate_gt06_over_tcp: "gt06", &[], 356_307_053_000_000;
    simulate_queclink_over_tcp: "queclink", &[], 356_307_054_000_000;
    simulate_queclink_with_ack_reports_over_tcp:
        "queclink", &[("ack_reports", "true")], 356_307_055_000_000;
    simulate_wialon_over_tcp: "wialon", &[], 356_307_056_000_000;
    simulate_wialon_udp_over_udp: "wialon-udp", &[], 356_307_058_000_000;
    simulate_jsonl_over_tcp: "jsonl", &[], 356_307_057_000_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_nmea_over_a_serial_pty() {
    let dir = tempfile::tempdir().expect("tempdir for the ptys");
    let pty = PtyPair::start(dir.path(), "port");
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "sim-nmea-collector").await;
    let _gateway = Gateway::start(GatewayConfig::new("gw-sim-nmea", broker.port()).serial(
        &pty.port,
        "nmea",
        &[("device_id", "\"gnss-sim\"")],
    ))
    .await;
    let run = simulate(&args(&[
        "--protocol",
        "nmea",
        "--serial",
        &pty.dev.display().to_string(),
        "--devices",
        "1",
        "--records",
        &RECORDS.to_string(),
        "--per-packet",
        "5",
        "--rate",
        "200",
        "--device-id",
        "gnss-sim",
        "--watch-mqtt",
        &format!("127.0.0.1:{}", broker.port()),
        "--timeout-s",
        "60",
    ]))
    .await;
    assert_summary_ok(&run, RECORDS, false);
    let keys = expected_keys(&["gnss-sim".to_string()], RECORDS);
    assert_broker_got_exactly(&collector, &keys, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_devices_fail_the_check() {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "sim-refused-collector").await;
    let only_another = "[\"356307049999999\"]";
    let gateway = Gateway::start(
        GatewayConfig::new("gw-sim-refused", broker.port())
            .listener("teltonika", &[("allowed_devices", only_another)])
            .listener("gt06", &[("allowed_devices", only_another)])
            .listener("teltonika-udp", &[("allowed_devices", only_another)]),
    )
    .await;
    for (protocol, first_imei) in [
        ("teltonika", 356_307_058_000_000u64),
        ("gt06", 356_307_059_000_000),
    ] {
        let target = gateway.listener_addr_of(protocol).to_string();
        let run = simulate(&args(&[
            "--protocol",
            protocol,
            "--target",
            &target,
            "--devices",
            "2",
            "--records",
            "5",
            "--first-imei",
            &first_imei.to_string(),
            "--watch-mqtt",
            &format!("127.0.0.1:{}", broker.port()),
            // A late refusal must still count as refused, not as a missing answer.
            "--reply-timeout-s",
            "30",
            "--timeout-s",
            "60",
        ]))
        .await;
        assert!(
            !run.success,
            "{protocol}: simulate passed a refused device\n{}",
            run.output
        );
        let s = &run.summary;
        assert_eq!(s["refused"], 2, "{protocol}\n{}", run.output);
        assert_eq!(s["records_acked"], 0, "{protocol}\n{}", run.output);
        assert_eq!(s["ok"], false, "{protocol}\n{}", run.output);
        let errors = s["errors"].to_string();
        assert!(errors.contains("refused"), "{protocol}: {errors}");
    }
    // UDP: each datagram is answered "0 accepted", which the device resends a few times
    // before it gives up as refused (not as "no answer").
    let target = gateway.listener_addr_of("teltonika-udp").to_string();
    let run = simulate(&args(&[
        "--protocol",
        "teltonika-udp",
        "--target",
        &target,
        "--devices",
        "2",
        "--records",
        "5",
        "--first-imei",
        "356307057000000",
        "--reply-timeout-s",
        "30",
        "--timeout-s",
        "60",
    ]))
    .await;
    assert!(
        !run.success,
        "teltonika-udp: simulate passed\n{}",
        run.output
    );
    assert_eq!(run.summary["records_acked"], 0, "{}", run.output);
    assert_eq!(
        run.summary["failed"], 0,
        "refused, not unanswered\n{}",
        run.output
    );
    let errors = run.summary["errors"].to_string();
    assert!(errors.contains("answered 0"), "teltonika-udp: {errors}");
    // Nothing of theirs was stored.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, _, _) = collector.snapshot();
    assert!(
        got.is_empty(),
        "refused devices' records reached the broker: {got:?}"
    );
    // Two per TCP protocol; one per refused datagram.
    assert!(
        gateway.count_log_lines(&["device refused"]) >= 4 + 2,
        "{}",
        gateway.log()
    );
}
