//! `uplink.format = "ngp"` against the real binary and a real mosquitto: one Navixy Generic
//! Protocol message per record on `ngp/{device_id}`, with NGP's range rules, and records
//! leaving the buffer after their PUBACK (a restarted gateway sends nothing again).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const REPLY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_published_as_ngp_messages_per_device() {
    let broker = Mosquitto::start(free_port()).await;
    let subscriber = Subscriber::start(broker.port(), "ngp-subscriber", "ngp/#").await;
    let gateway =
        Gateway::start(GatewayConfig::new("gw-ngp", broker.port()).set("uplink.format", "\"ngp\""))
            .await;

    let devices = [imei(80, 0), imei(80, 1)];
    for (index, id) in devices.iter().enumerate() {
        let mut device = Device::connect(gateway.addr(), id, REPLY)
            .await
            .expect("login");
        // avl_record(_, 0) has course 0°, which NGP writes as heading 360.
        let records: Vec<_> = (0..6).map(|k| avl_record(index, k)).collect();
        assert_eq!(device.send(&records, REPLY).await.expect("reply"), 6);
    }

    let all_arrived = wait_until(Duration::from_secs(20), || {
        subscriber.messages().len() >= 12
    })
    .await;
    let messages = subscriber.messages();
    assert!(all_arrived, "{} of 12 NGP messages arrived", messages.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = subscriber.messages();
    assert_eq!(messages.len(), 12, "duplicates or extra messages");

    let mut saw_heading_360 = false;
    for m in &messages {
        let v: Value = serde_json::from_slice(&m.payload).expect("NGP payload is JSON");
        let device_id = v["device_id"].as_str().expect("device_id");
        assert_eq!(m.topic, format!("ngp/{device_id}"));
        assert!(devices.iter().any(|d| d == device_id), "{device_id}");
        let time = v["message_time"].as_str().expect("message_time");
        assert!(
            time.starts_with("2026-01-01T") && time.ends_with('Z'),
            "{time}"
        );
        let location = &v["location"];
        let (lat, lon) = (
            location["latitude"].as_f64().expect("latitude"),
            location["longitude"].as_f64().expect("longitude"),
        );
        assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
        let heading = location["heading"].as_u64().expect("heading");
        assert!((1..=360).contains(&heading), "heading {heading}");
        saw_heading_360 |= heading == 360;
    }
    assert!(saw_heading_360, "course 0 must be written as heading 360");

    // Delete after PUBACK: acknowledged records left the buffer, so a restarted gateway has
    // nothing to send again.
    let mut gateway = gateway;
    assert!(gateway.stop_gracefully(Duration::from_secs(15)).await);
    gateway.restart().await;
    // Only a restarted gateway that is connected could send anything again: wait for that
    // (slow under emulation), then give it a moment to do so.
    let connected = gateway
        .wait_for_log_line_this_start(&["MQTT connected"], Duration::from_secs(30))
        .await;
    assert!(
        connected.is_some(),
        "the restarted gateway did not connect:\n{}",
        gateway.log()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        subscriber.messages().len(),
        12,
        "acknowledged records were sent again"
    );
}

/// Records NGP cannot carry (here: a device id shorter than NGP allows) are passed over and
/// still leave the buffer, so they can never fill it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_ngp_cannot_carry_leave_the_buffer() {
    use tokio::io::AsyncWriteExt;

    let broker = Mosquitto::start(free_port()).await;
    let subscriber = Subscriber::start(broker.port(), "ngp-skip-subscriber", "ngp/#").await;
    let gateway = Gateway::start(
        GatewayConfig::new("gw-ngp-skip", broker.port())
            .set("uplink.format", "\"ngp\"")
            .set("log.stats_interval_s", "1")
            .listener("jsonl", &[]),
    )
    .await;
    let mut sensor = tokio::net::TcpStream::connect(gateway.listener_addr_of("jsonl"))
        .await
        .expect("connect");
    for k in 0..3 {
        let line = format!(
            "{{\"device_id\":\"ab\",\"time\":\"2026-01-01T00:00:0{k}Z\",\"lat\":54.1,\"lon\":25.2}}\n"
        );
        sensor.write_all(line.as_bytes()).await.expect("send");
    }
    let drained = gateway
        .wait_for_log_line(
            &["records_received=3", "buffer_records=0"],
            Duration::from_secs(15),
        )
        .await;
    assert!(
        drained.is_some(),
        "the passed-over records stayed in the buffer:\n{}",
        gateway.log()
    );
    assert!(
        subscriber.messages().is_empty(),
        "an NGP message for a refused device id"
    );
}
