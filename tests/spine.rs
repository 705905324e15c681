//! The spine, end to end, against real processes: simulated Teltonika trackers over TCP →
//! the real `fleetedge run` binary (sled buffer in a tempdir) → a real mosquitto → an MQTT
//! subscriber that decodes every batch.
//!
//! - `devices_to_broker_exactly_once`: concurrent devices; every reply is the packet's
//!   count; every record arrives once, with its fields as encoded, in well-formed batches.
//! - `broker_restart_loses_nothing`: the broker goes away mid-stream; the gateway keeps
//!   acknowledging (records are durable) and delivers everything after the restart.
//! - `sigkill_gateway_under_load_loses_nothing`: the gateway is SIGKILLed four times under
//!   load and restarted on the same buffer; every acknowledged record arrives, and no seq is
//!   ever reused for a different record.
//! - `full_buffer_blocks_devices_until_the_uplink_drains`: `when_full = "block"` with the
//!   smallest buffer and no broker: devices stall (no reply, no refusal); once the broker is
//!   up, the flow resumes and nothing is lost.
//! - `check_config_names_every_bad_key` and `decode_prints_the_fact_sheet_frames`: the CLI.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

/// Within one device, records sorted by seq are in the device's own order (its times
/// increase): the gateway keeps a device's order through buffer and uplink. Only meaningful
/// without resends.
fn check_device_order(got: &[Got]) -> Vec<String> {
    let mut per_device: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
    for g in got {
        per_device
            .entry(&g.device_id)
            .or_default()
            .push((g.seq, &g.time));
    }
    let mut problems = Vec::new();
    for (device, mut v) in per_device {
        v.sort();
        v.dedup();
        if let Some(w) = v.windows(2).find(|w| w[0].1 >= w[1].1) {
            problems.push(format!(
                "{device}: seq {} has time {} but the later seq {} has time {}",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    problems
}

fn fleet_errors(what: &str, errors: &[String]) {
    assert!(
        errors.is_empty(),
        "{what}: devices failed:\n  {}",
        errors.join("\n  ")
    );
}

/// (a) 5 devices × 40 records in packets of 10, concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_to_broker_exactly_once() {
    let started = Instant::now();
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "spine-collector-a").await;
    let mut gateway = Gateway::start(GatewayConfig::new("gw-spine-a", broker.port())).await;

    let spec = FleetSpec {
        imei_base: 1,
        devices: 5,
        per_packet: 10,
        total: Some(40),
        pace: Duration::ZERO,
        reply_timeout: Duration::from_secs(10),
        run_for_at_most: Duration::from_secs(30),
    };
    let fleet = Fleet::start(spec.plans(gateway.addr()));
    let progress = fleet.progress.clone();
    let (ledger, errors) = fleet.join(Duration::from_secs(30)).await;
    fleet_errors("(a)", &errors);
    for (i, p) in progress.iter().enumerate() {
        // Every packet was answered with its full count, the first time, on one connection.
        assert_eq!(
            p.accepted_records.load(std::sync::atomic::Ordering::SeqCst),
            40,
            "device {i}"
        );
        assert_eq!(
            p.refused_packets.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "device {i}"
        );
        assert_eq!(
            p.reconnects.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "device {i}"
        );
    }
    assert_eq!(ledger.accepted_count(), 200);
    assert_eq!(ledger.resent_count(), 0);

    let missing = collector
        .wait_for_all(&ledger.accepted_keys(), Duration::from_secs(20))
        .await;
    assert_eq!(
        missing, 0,
        "{missing} of 200 records did not reach the broker"
    );
    // Give a duplicate, if the gateway sent one, the time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, batch_errors, batches) = collector.snapshot();
    let mut problems = verify_delivery(&ledger, &got, &batch_errors, "gw-spine-a", true);
    problems.extend(check_device_order(&got));
    assert_no_problems("(a) devices → broker", &problems);
    assert_eq!(got.len(), 200);
    assert!(gateway.is_running(), "the gateway exited");
    eprintln!(
        "(a) 200 records in {batches} batches, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// (b) The broker goes away mid-stream and comes back on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing() {
    let started = Instant::now();
    let mut broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "spine-collector-b").await;
    let mut gateway = Gateway::start(GatewayConfig::new("gw-spine-b", broker.port())).await;

    let spec = FleetSpec {
        imei_base: 2,
        devices: 3,
        per_packet: 6,
        total: Some(120),
        pace: Duration::from_millis(150),
        reply_timeout: Duration::from_secs(5),
        run_for_at_most: Duration::from_secs(40),
    };
    let fleet = Fleet::start(spec.plans(gateway.addr()));

    // The path works before the outage.
    let arrived = collector.wait_for(20, Duration::from_secs(10)).await;
    assert!(
        arrived >= 20,
        "only {arrived} records reached the broker before the outage"
    );

    broker.stop().await;
    let acked_at_stop = fleet.accepted_records();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_during_outage = fleet.accepted_records() - acked_at_stop;
    // Records are durable in sled, so devices are answered with no broker at all.
    assert!(
        acked_during_outage >= 12,
        "the gateway acknowledged only {acked_during_outage} records while the broker was down"
    );
    broker.restart().await;

    let progress = fleet.progress.clone();
    let (ledger, errors) = fleet.join(Duration::from_secs(30)).await;
    fleet_errors("(b)", &errors);
    assert_eq!(ledger.accepted_count(), 360);
    let refused: u64 = progress
        .iter()
        .map(|p| p.refused_packets.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    assert_eq!(refused, 0, "packets were refused");

    let missing = collector
        .wait_for_all(&ledger.accepted_keys(), Duration::from_secs(20))
        .await;
    assert_eq!(
        missing, 0,
        "{missing} of 360 acknowledged records never reached the broker"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, batch_errors, batches) = collector.snapshot();
    // Duplicates are allowed (a batch in flight when the broker went away is sent again),
    // but only as the same (gateway_id, seq) with the same content.
    let problems = verify_delivery(&ledger, &got, &batch_errors, "gw-spine-b", false);
    assert_no_problems("(b) broker restart", &problems);
    assert!(gateway.is_running(), "the gateway exited");
    eprintln!(
        "(b) 360 records, {} deliveries in {batches} batches, {acked_during_outage} acked during the outage, {:.1} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
}

/// (c) SIGKILL the gateway four times under load; restart it on the same buffer each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_gateway_under_load_loses_nothing() {
    let started = Instant::now();
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "spine-collector-c").await;
    let mut gateway = Gateway::start(GatewayConfig::new("gw-spine-c", broker.port())).await;

    let spec = FleetSpec {
        imei_base: 3,
        devices: 4,
        per_packet: 10,
        total: None,
        pace: Duration::from_millis(30),
        reply_timeout: Duration::from_secs(3),
        // A safety net only: the devices run until `stop` below. Four restarts of a debug
        // build under qemu take far longer than natively.
        run_for_at_most: Duration::from_secs(120),
    };
    let fleet = Fleet::start(spec.plans(gateway.addr()));

    let mut accepted_before = 0;
    for round in 1..=4 {
        // Let the load run a while, then make sure the (re)started gateway took some of it:
        // on a slow machine the devices may need longer than that to reconnect.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let took_load = wait_until(Duration::from_secs(15), || {
            fleet.accepted_records() > accepted_before
        })
        .await;
        let accepted = fleet.accepted_records();
        assert!(
            took_load,
            "round {round}: no record was accepted within 15 s of the last restart ({accepted})"
        );
        accepted_before = accepted;
        if round == 2 {
            // One kill while idle, with everything published: records whose removal after
            // PUBACK was not flushed yet may come back, but only under their own seqs.
            assert!(
                fleet.pause(Duration::from_secs(10)).await,
                "devices did not pause"
            );
            let missing = collector
                .wait_for_all(&fleet.accepted_keys(), Duration::from_secs(15))
                .await;
            assert_eq!(
                missing, 0,
                "round {round}: acknowledged records did not reach the broker while idle \
                 (lost in an earlier kill, or the uplink is stuck)"
            );
            // PUBACK reached the gateway a moment after the broker had the batch.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        gateway.kill_9().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        gateway.restart().await;
        fleet.resume();
    }
    // The last restart takes load too, and the run carries enough records to mean much (a
    // slow machine gets there later, not with less).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let enough = wait_until(Duration::from_secs(20), || {
        let accepted = fleet.accepted_records();
        accepted > accepted_before && accepted >= 200
    })
    .await;
    assert!(
        enough,
        "after the last restart: {} records accepted in all, {accepted_before} before it",
        fleet.accepted_records()
    );
    fleet
        .controls
        .stop
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (ledger, errors) = fleet.join(Duration::from_secs(20)).await;
    fleet_errors("(c)", &errors);
    let accepted = ledger.accepted_count();
    assert!(
        accepted >= 200,
        "only {accepted} records accepted: too little load to mean much"
    );

    let missing = collector
        .wait_for_all(&ledger.accepted_keys(), Duration::from_secs(25))
        .await;
    assert_eq!(
        missing, 0,
        "{missing} of {accepted} acknowledged records never reached the broker"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, batch_errors, batches) = collector.snapshot();
    // A record the gateway stored but could not acknowledge before it died is sent again by
    // its device and stored again under a new seq: allowed, as many times as it was sent.
    // One (gateway_id, seq) carrying two different records is never allowed.
    let problems = verify_delivery(&ledger, &got, &batch_errors, "gw-spine-c", false);
    assert_no_problems("(c) SIGKILL under load", &problems);
    assert!(gateway.is_running(), "the gateway exited");
    let log = gateway.log();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
    eprintln!(
        "(c) {accepted} accepted, {} resent, {} deliveries in {batches} batches, 4 SIGKILLs, {:.1} s",
        ledger.resent_count(),
        got.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Seqs are never reused, even when the buffer was drained empty before a restart (a
/// graceful one, so the removals after PUBACK are flushed and nothing is left on disk to
/// continue after): the counter itself must survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_survive_a_drained_restart() {
    let started = Instant::now();
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "spine-collector-e").await;
    let mut gateway = Gateway::start(GatewayConfig::new("gw-spine-e", broker.port())).await;

    let mut ledger = Ledger::default();
    let mut first_max_seq = 0;
    for round in 0..2u64 {
        let spec = FleetSpec {
            imei_base: 5 + round,
            devices: 2,
            per_packet: 10,
            total: Some(30),
            pace: Duration::ZERO,
            reply_timeout: Duration::from_secs(10),
            run_for_at_most: Duration::from_secs(20),
        };
        let (sent, errors) = Fleet::start(spec.plans(gateway.addr()))
            .join(Duration::from_secs(20))
            .await;
        fleet_errors("(e)", &errors);
        let missing = collector
            .wait_for_all(&sent.accepted_keys(), Duration::from_secs(15))
            .await;
        assert_eq!(
            missing, 0,
            "round {round}: {missing} records never reached the broker"
        );
        ledger.records.extend(sent.records);
        if round == 0 {
            // Drained: everything is at the broker. Let the last PUBACK land, then stop the
            // way systemd does; the shutdown flushes the removals.
            tokio::time::sleep(Duration::from_millis(500)).await;
            first_max_seq = collector
                .snapshot()
                .0
                .iter()
                .map(|g| g.seq)
                .max()
                .unwrap_or(0);
            assert!(
                gateway.stop_gracefully(Duration::from_secs(10)).await,
                "the gateway did not exit cleanly on SIGTERM"
            );
            gateway.restart().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (got, batch_errors, _) = collector.snapshot();
    let problems = verify_delivery(&ledger, &got, &batch_errors, "gw-spine-e", false);
    assert_no_problems("(e) drained restart", &problems);
    let after_restart: Vec<u64> = got
        .iter()
        // Round 1's devices (IMEI base 6) only ever talked to the restarted gateway.
        .filter(|g| g.device_id == imei(6, 0) || g.device_id == imei(6, 1))
        .map(|g| g.seq)
        .collect();
    assert_eq!(after_restart.len(), 60);
    let reused: Vec<_> = after_restart
        .iter()
        .filter(|s| **s <= first_max_seq)
        .collect();
    assert!(
        reused.is_empty(),
        "after a drained restart seqs started again below {first_max_seq}: {reused:?}"
    );
    eprintln!(
        "(e) first run up to seq {first_max_seq}, after the restart {:?}..={:?}, {:.1} s",
        after_restart.iter().min(),
        after_restart.iter().max(),
        started.elapsed().as_secs_f64()
    );
}

/// (d) `when_full = "block"`, `max_records = 256`, no broker at first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_blocks_devices_until_the_uplink_drains() {
    let started = Instant::now();
    let port = free_port();
    let mut broker = Mosquitto::start(port).await;
    // Subscribe first (a persistent session), then take the broker away: the subscription
    // survives the restart, so batches published the moment the broker is back are kept.
    let collector = Collector::start(port, "spine-collector-d").await;
    broker.stop().await;

    let config = GatewayConfig::new("gw-spine-d", port)
        .set("buffer.max_records", "256")
        .set("buffer.when_full", "\"block\"");
    let mut gateway = Gateway::start(config).await;
    let spec = FleetSpec {
        imei_base: 4,
        devices: 3,
        per_packet: 10,
        total: Some(120),
        pace: Duration::ZERO,
        reply_timeout: Duration::from_secs(30),
        // A safety net only (the devices stop at `total`); a debug build under qemu fills and
        // drains far slower than natively.
        run_for_at_most: Duration::from_secs(90),
    };
    let fleet = Fleet::start(spec.plans(gateway.addr()));

    // First the buffer fills: the gateway says so once, when an append no longer fits. Only
    // then does a reply that takes long mean "blocked" rather than "slow gateway".
    let full = gateway
        .wait_for_log_line(&["buffer full: holding appends"], Duration::from_secs(30))
        .await;
    assert!(
        full.is_some(),
        "the buffer never reported full: {} records acknowledged",
        fleet.accepted_records()
    );
    // Then every device ends up with a packet that has waited 2 s for its reply: stalled.
    let stall = Duration::from_secs(2);
    let stalled = wait_until(Duration::from_secs(15), || {
        fleet
            .progress
            .iter()
            .all(|p| p.waiting_for().is_some_and(|w| w >= stall))
    })
    .await;
    let acked = fleet.accepted_records();
    assert!(
        stalled,
        "devices did not stall on a full buffer: {acked} records acknowledged, waits {:?}",
        fleet
            .progress
            .iter()
            .map(|p| p.waiting_for())
            .collect::<Vec<_>>()
    );
    // Filled as far as whole packets fit, never beyond the limit, and nothing refused.
    assert!(
        acked <= 256 && acked > 246,
        "{acked} records acknowledged with buffer.max_records = 256"
    );
    assert_eq!(
        fleet.refused_packets(),
        0,
        "packets were refused under when_full = block"
    );
    assert_eq!(
        collector.unique_count(),
        0,
        "records arrived with no broker running"
    );

    broker.restart().await;
    let progress = fleet.progress.clone();
    let (ledger, errors) = fleet.join(Duration::from_secs(30)).await;
    fleet_errors("(d)", &errors);
    assert_eq!(ledger.accepted_count(), 360);
    for (i, p) in progress.iter().enumerate() {
        let reconnects = p.reconnects.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            reconnects, 0,
            "device {i} lost its connection while blocked"
        );
        assert_eq!(
            p.refused_packets.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }
    assert_eq!(ledger.resent_count(), 0);

    let missing = collector
        .wait_for_all(&ledger.accepted_keys(), Duration::from_secs(20))
        .await;
    assert_eq!(
        missing, 0,
        "{missing} of 360 records never reached the broker"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, batch_errors, batches) = collector.snapshot();
    let mut problems = verify_delivery(&ledger, &got, &batch_errors, "gw-spine-d", false);
    problems.extend(check_device_order(&got));
    assert_no_problems("(d) full buffer, block", &problems);
    assert!(gateway.is_running(), "the gateway exited");
    eprintln!(
        "(d) stalled at {acked} acknowledged; 360 records, {} deliveries in {batches} batches, {:.1} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(
        dir.path(),
        "bad.toml",
        r#"
gateway_id = "gw/1"
[buffer]
max_records = 5
when_full = "block"
[mqtt]
topic_prefix = "a/#"
[[listeners]]
protocol = "nope"
bind = "localhost"
"#,
    );
    let out = gateway_command()
        .args(["check-config", "--config"])
        .arg(&bad)
        .env_remove("RUST_LOG")
        .output()
        .expect("run fleetedge check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad config passed check-config: {stderr}"
    );
    for key in [
        "gateway_id",
        "buffer.max_records",
        "mqtt.topic_prefix",
        "listeners[0].protocol",
        "listeners[0].bind",
    ] {
        assert!(stderr.contains(key), "{key} is not named in:\n{stderr}");
    }
    assert!(
        stderr.contains("bad.toml"),
        "the file is not named in:\n{stderr}"
    );

    // An unknown key is named too (a typo must not be silently ignored).
    let typo = write_file(
        dir.path(),
        "typo.toml",
        "gateway_id = \"gw-1\"\n[uplink]\nlinger_msec = 5\n[[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:5027\"\n",
    );
    let out = gateway_command()
        .args(["check-config", "--config"])
        .arg(&typo)
        .output()
        .expect("run fleetedge check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a config with a typo passed: {stderr}"
    );
    assert!(
        stderr.contains("linger_msec"),
        "the unknown key is not named in:\n{stderr}"
    );

    // And a good one passes.
    let good = write_file(
        dir.path(),
        "good.toml",
        "gateway_id = \"gw-1\"\n[[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:5027\"\n",
    );
    let out = gateway_command()
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .expect("run fleetedge check-config");
    assert!(
        out.status.success(),
        "a good config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Teltonika fact sheet's own frames (shared/protocols/teltonika.md, section 7).
const FACT_IMEI: &str = "000F333536333037303432343431303133";
const FACT_CODEC8_EXAMPLE_1: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
const FACT_CODEC8_EXAMPLE_3: &str = "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C198010000000000000000000000000000000101010101000000020000252C";

fn decode_lines(input_path: &std::path::Path) -> (std::process::Output, Vec<serde_json::Value>) {
    let out = gateway_command()
        .args(["decode", "--protocol", "teltonika"])
        .arg(input_path)
        .output()
        .expect("run fleetedge decode");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out, lines)
}

#[test]
fn decode_prints_the_fact_sheet_frames() {
    let dir = tempfile::tempdir().unwrap();

    // Example 1 alone: one line, answered 00000001, every field as the sheet says.
    let one = write_file(dir.path(), "example1.hex", FACT_CODEC8_EXAMPLE_1);
    let (out, lines) = decode_lines(&one);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["frame"], 1);
    assert_eq!(line["reply_hex"], "00000001");
    assert!(line["error"].is_null(), "{line}");
    let records = line["records"].as_array().expect("records");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert!(r.get("seq").is_none(), "decode prints no seq: {r}");
    assert_eq!(r["protocol"], "teltonika");
    assert_eq!(r["time"], "2019-06-10T10:04:46.000Z");
    assert_eq!(r["lat"], 0.0);
    assert_eq!(r["lon"], 0.0);
    assert_eq!(r["altitude_m"], 0.0);
    assert_eq!(r["speed_kmh"], 0.0);
    assert_eq!(r["course_deg"], 0.0);
    assert_eq!(r["satellites"], 0);
    assert_eq!(r["valid"], false);
    assert!(r["hdop"].is_null());
    assert_eq!(r["event"], "io:1");
    assert_eq!(
        r["io"],
        serde_json::json!({"priority": 1, "21": 3, "1": 1, "66": 24079, "241": 24602, "78": 0})
    );

    // A whole session, pasted as a hexdump with line breaks: login, then examples 1 and 3.
    let session = format!(
        "{FACT_IMEI}\n{}\n  {}\n{FACT_CODEC8_EXAMPLE_3}\n",
        &FACT_CODEC8_EXAMPLE_1[..40],
        &FACT_CODEC8_EXAMPLE_1[40..]
    );
    let session = write_file(dir.path(), "session.hex", &session);
    let (out, lines) = decode_lines(&session);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<_> = lines.iter().map(|l| l["reply_hex"].clone()).collect();
    assert_eq!(replies, ["01", "00000001", "00000002"], "{lines:?}");
    for l in &lines {
        assert_eq!(l["device_id"], "356307042441013", "{l}");
    }
    let times: Vec<_> = lines[2]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["time"].clone())
        .collect();
    assert_eq!(
        times,
        ["2019-06-10T10:01:01.000Z", "2019-06-10T10:01:19.000Z"]
    );
    assert_eq!(lines[1]["records"][0]["device_id"], "356307042441013");

    // A bad CRC: a failed exit and an error line, no reply.
    let mut bad = FACT_CODEC8_EXAMPLE_1.to_string();
    bad.replace_range(bad.len() - 4.., "0000");
    let bad = write_file(dir.path(), "bad.hex", &bad);
    let (out, lines) = decode_lines(&bad);
    assert!(!out.status.success(), "a bad CRC decoded successfully");
    assert!(lines[0]["reply_hex"].is_null());
    assert!(lines[0]["error"].is_string(), "{:?}", lines[0]);
}
