//! Clean data at the edge, with the real `fleetedge run` binary and a real mosquitto:
//!
//! - `sigkill_with_resending_devices_stores_each_record_once`: devices resend every packet
//!   they were not answered for; the gateway is SIGKILLed four times under that load, and
//!   before each kill one more device sends a packet whose answer it never reads (lost on
//!   the way), waits until the broker has its records (so they were stored), and resends it
//!   after the restart. Every record reaches the broker under exactly one seq (redeliveries
//!   of the same seq aside): a resend of a stored record is answered, not stored again.
//! - `a_listeners_filter_keeps_and_drops_exactly_what_its_rules_say`: one listener with
//!   filters and one without get the same packet; the device on the filtered one is
//!   answered the full count, the broker gets exactly the records the rules keep (events
//!   always), and `/metrics` counts each drop by reason.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use firmware_protocols::teltonika::encode::{AvlRecord, IoData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_resending_devices_stores_each_record_once() {
    let started = Instant::now();
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "clean-collector-a").await;
    let mut gateway = Gateway::start(GatewayConfig::new("gw-clean-a", broker.port())).await;

    let spec = FleetSpec {
        imei_base: 31,
        devices: 4,
        per_packet: 10,
        total: None,
        pace: Duration::from_millis(20),
        reply_timeout: Duration::from_secs(3),
        run_for_at_most: Duration::from_secs(120),
    };
    let fleet = Fleet::start(spec.plans(gateway.addr()));
    // The device whose answers get lost.
    let lost_imei = imei(31, 9);
    let mut accepted_before = 0;
    for round in 1..=4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let took_load = wait_until(Duration::from_secs(15), || {
            fleet.accepted_records() > accepted_before
        })
        .await;
        assert!(
            took_load,
            "round {round}: no record was accepted within 15 s of the last restart"
        );
        accepted_before = fleet.accepted_records();
        let packet: Vec<AvlRecord> = (0..5).map(|k| avl_record(9, round * 100 + k)).collect();
        let keys: HashSet<(String, String)> = packet
            .iter()
            .map(|r| (lost_imei.clone(), time_of(r)))
            .collect();
        let mut device = Device::connect(gateway.addr(), &lost_imei, Duration::from_secs(10))
            .await
            .expect("the device logs in");
        fleet.ledger.lock().unwrap().sent(&lost_imei, &packet);
        device.write_packet(&packet).await.expect("packet sent");
        // Its answer is never read: stored, published, and still unanswered for the device.
        let missing = collector.wait_for_all(&keys, Duration::from_secs(20)).await;
        assert_eq!(
            missing, 0,
            "round {round}: the unanswered packet was not stored"
        );
        gateway.kill_9().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        gateway.restart().await;
        let mut device = Device::connect(gateway.addr(), &lost_imei, Duration::from_secs(10))
            .await
            .expect("the device logs in again");
        fleet.ledger.lock().unwrap().sent(&lost_imei, &packet);
        let answered = device
            .send(&packet, Duration::from_secs(10))
            .await
            .expect("the resend is answered");
        assert_eq!(answered, 5, "round {round}: the resend is answered in full");
        fleet.ledger.lock().unwrap().accepted(&lost_imei, &packet);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    fleet
        .controls
        .stop
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (ledger, errors) = fleet.join(Duration::from_secs(20)).await;
    assert!(errors.is_empty(), "device errors: {errors:?}");
    let missing = collector
        .wait_for_all(&ledger.accepted_keys(), Duration::from_secs(25))
        .await;
    assert_eq!(missing, 0, "acknowledged records never reached the broker");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, batch_errors, batches) = collector.snapshot();
    let problems = verify_delivery(&ledger, &got, &batch_errors, "gw-clean-a", false);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The point of the window: one seq per record, however often its device sent it.
    let mut seqs_of: HashMap<(&str, &str), HashSet<u64>> = HashMap::new();
    for g in &got {
        seqs_of
            .entry((g.device_id.as_str(), g.time.as_str()))
            .or_default()
            .insert(g.seq);
    }
    let mut doubles: Vec<String> = seqs_of
        .iter()
        .filter(|(_, seqs)| seqs.len() > 1)
        .map(|((device, time), seqs)| format!("{device} @ {time}: seqs {seqs:?}"))
        .collect();
    doubles.sort();
    assert!(
        doubles.is_empty(),
        "{} records stored more than once:\n{}",
        doubles.len(),
        doubles.join("\n")
    );
    // Resends happened, so the window was exercised (a run without any would prove nothing).
    let resent = ledger.resent_count();
    assert!(resent > 0, "no device resent anything across four kills");
    assert!(gateway.is_running(), "the gateway exited");
    eprintln!(
        "{} accepted, {resent} resent, {} deliveries in {batches} batches, 4 SIGKILLs, {:.1} s",
        ledger.accepted_count(),
        got.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A record of the filter test: `t_s` seconds after a fixed start, at `lat`/`lon` degrees,
/// with ignition (IO 239) `ignition`; `satellites` 0 makes the fix invalid.
fn point(t_s: u64, lat: f64, lon: f64, satellites: u8, ignition: u8, event_id: u16) -> AvlRecord {
    AvlRecord {
        timestamp_ms: 1_767_225_600_000 + t_s * 1000,
        priority: 0,
        lon: (lon * 1e7) as i32,
        lat: (lat * 1e7) as i32,
        altitude: 100,
        angle: 90,
        satellites,
        speed: 40,
        event_id,
        generation_type: 0,
        io: vec![(239, IoData::U8(ignition))],
    }
}

/// `GET /metrics` on the gateway's HTTP endpoint (bounded to 5 s).
async fn metrics(gateway: &Gateway) -> String {
    let config = gateway.config_text();
    let bind = config
        .lines()
        .find_map(|l| l.strip_prefix("http.bind = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("the test config sets http.bind");
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(&bind).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {bind}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .expect("/metrics within 5 s")
        .expect("/metrics answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_filter_keeps_and_drops_exactly_what_its_rules_say() {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "clean-collector-b").await;
    let config = GatewayConfig::new("gw-clean-b", broker.port())
        .listener(
            "teltonika",
            &[
                ("filter.invalid_fix", "true"),
                ("filter.zero_coordinates", "true"),
                ("filter.min_period_s", "60"),
                ("filter.max_speed_kmh", "300"),
            ],
        )
        .listener("teltonika", &[]);
    let gateway = Gateway::start(config).await;

    // (record, kept by the filtered listener?) in the order sent. 0.001° of latitude is
    // about 111 m.
    let plan = [
        (point(0, 54.0, 25.0, 9, 1, 0), true),      // the first point
        (point(10, 54.001, 25.0, 9, 1, 0), false),  // 10 s later: min_period
        (point(70, 54.0, 25.0, 0, 1, 0), false),    // no fix: invalid_fix
        (point(80, 0.0, 0.0, 9, 1, 0), false),      // 0, 0: zero_coordinates
        (point(90, 55.0, 25.0, 9, 1, 0), false),    // 111 km in 90 s: impossible jump
        (point(95, 0.0, 0.0, 0, 1, 1), true),       // an event is never filtered
        (point(160, 54.002, 25.0, 9, 1, 0), true),  // 65 s after the event
        (point(170, 54.003, 25.0, 9, 0, 0), true),  // ignition off: first point after it
        (point(175, 54.004, 25.0, 9, 0, 0), false), // min_period again
    ];
    let records: Vec<AvlRecord> = plan.iter().map(|(r, _)| r.clone()).collect();
    let (filtered_imei, plain_imei) = (imei(32, 0), imei(32, 1));
    for (index, imei) in [(0, &filtered_imei), (1, &plain_imei)] {
        let mut device =
            Device::connect(gateway.listener_addr(index), imei, Duration::from_secs(10))
                .await
                .expect("device logs in");
        let answered = device
            .send(&records, Duration::from_secs(10))
            .await
            .expect("the packet is answered");
        assert_eq!(
            answered as usize,
            records.len(),
            "answered as if all were stored"
        );
    }

    let kept: HashSet<String> = plan
        .iter()
        .filter(|(_, keep)| *keep)
        .map(|(r, _)| time_of(r))
        .collect();
    let all: HashSet<String> = records.iter().map(time_of).collect();
    let want = kept.len() + all.len();
    collector
        .wait_for_records(Duration::from_secs(20), |records| records.len() >= want)
        .await;
    // Anything beyond the expected count would have arrived by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = collector.every_record();
    let times_of = |imei: &str| -> Vec<String> {
        got.iter()
            .filter(|r| r["device_id"] == imei)
            .map(|r| r["time"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let filtered = times_of(&filtered_imei);
    assert_eq!(
        filtered.iter().cloned().collect::<HashSet<_>>(),
        kept,
        "the filtered listener stored {filtered:?}"
    );
    assert_eq!(
        filtered.len(),
        kept.len(),
        "each kept record once: {filtered:?}"
    );
    let plain = times_of(&plain_imei);
    assert_eq!(
        plain.len(),
        all.len(),
        "the listener without filters stores every record"
    );

    let text = metrics(&gateway).await;
    for (reason, n) in [
        ("min_period", 2),
        ("invalid_fix", 1),
        ("zero_coordinates", 1),
        ("impossible_jump", 1),
        ("future_time", 0),
    ] {
        let series = format!("fleetedge_records_filtered_total{{reason=\"{reason}\"}} {n}");
        assert!(text.contains(&series), "no `{series}` in /metrics:\n{text}");
    }
}
