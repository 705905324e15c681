//! One downlink-command round trip per protocol with a downlink, through the real gateway
//! binary, a real mosquitto and `fleetedge simulate` (the real binary too) as the device:
//! the cloud publishes a command for a device that is not connected yet (`queued`), the
//! simulated device logs in, the gateway frames the command in the device's protocol, the
//! device answers as its firmware does (`simulate/commands.rs`), and the gateway publishes
//! `answered` with that answer. Per-protocol framing is unit-tested in
//! `firmware-protocols/src/command/tests.rs`; the gateway's other command paths in
//! `tests/commands.rs`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// How long the simulated device stays connected after its records, taking commands.
const LINGER_S: &str = "10";

/// Publishes one command (QoS 1) and returns once the broker acknowledged it.
async fn publish_command(broker_port: u16, gateway_id: &str, command: Value) {
    let mut options = MqttOptions::new(format!("{gateway_id}-cloud"), "127.0.0.1", broker_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .publish(
            format!("fleetedge/{gateway_id}/commands"),
            QoS::AtLeastOnce,
            false,
            command.to_string().into_bytes(),
        )
        .await
        .expect("queue the command");
    let acked = tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "the broker acknowledged the command");
}

/// Runs `fleetedge simulate` for one device to its end; returns its `--json` summary.
async fn simulate(protocol: &str, target: &str, first_imei: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir for simulate's output");
    let out_path = dir.path().join("stdout");
    let file = |p: &Path| std::fs::File::create(p).expect("simulate output file");
    let mut child = gateway_command()
        .arg("simulate")
        .args([
            "--protocol",
            protocol,
            "--target",
            target,
            "--first-imei",
            first_imei,
        ])
        .args(["--devices", "1", "--records", "2", "--per-packet", "2"])
        .args([
            "--linger-s",
            LINGER_S,
            "--reply-timeout-s",
            "20",
            "--timeout-s",
            "90",
        ])
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&dir.path().join("stderr")))
        .spawn()
        .expect("spawn fleetedge simulate");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for simulate").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("fleetedge simulate --protocol {protocol} did not end");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null)
}

/// The whole round trip for `protocol`; returns the `answered` result.
async fn round_trip(protocol: &str, gateway_id: &str, imei_base: u64, text: &str) -> Value {
    let broker = Mosquitto::start(free_port()).await;
    let mut config = GatewayConfig::new(gateway_id, broker.port())
        .listener(protocol, &[])
        .set("commands.enabled", "true");
    if is_udp_protocol(protocol) {
        // Gateway::start waits for a TCP listener to accept.
        config = config.listener("jsonl", &[]);
    }
    let gateway = Gateway::start(config).await;
    // A command published before the gateway's subscription would have no session to wait in.
    let connected = gateway.wait_for_log_line(&["commands: subscribed"], WAIT);
    connected.await.expect("the command connection came up");
    let results = Subscriber::start(
        broker.port(),
        &format!("{gateway_id}-results"),
        &format!("fleetedge/{gateway_id}/command-results"),
    )
    .await;
    let device = imei(imei_base, 0);
    let id = format!("c-{protocol}");
    publish_command(
        broker.port(),
        gateway_id,
        json!({"id": id, "device_id": device, "text": text}),
    )
    .await;
    let status = |status: &'static str| {
        let id = id.clone();
        move |m: &Received| {
            let r = m.json();
            r["id"] == id && r["status"] == status
        }
    };
    assert!(
        results.wait_for(WAIT, status("queued")).await.is_some(),
        "queued while the device is away"
    );

    let target = gateway.listener_addr_of(protocol).to_string();
    let summary = simulate(protocol, &target, &device).await;
    assert_eq!(
        summary["ok"], true,
        "{protocol}: simulate summary {summary}"
    );
    assert_eq!(summary["commands_answered"], 1, "{protocol}: {summary}");
    let answered = results.wait_for(WAIT, status("answered")).await;
    let all: Vec<Value> = results.messages().iter().map(Received::json).collect();
    let answered = answered.unwrap_or_else(|| panic!("{protocol}: no answered result in {all:?}"));
    let answered = answered.json();
    assert_eq!(answered["device_id"], device.as_str());
    assert!(answered["reason"].is_null(), "{answered}");
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teltonika_codec_12_round_trip() {
    let a = round_trip("teltonika", "gw-cp-tel", 71, "getinfo").await;
    assert_eq!(a["answer"], "getinfo: OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teltonika_udp_codec_12_round_trip() {
    let a = round_trip("teltonika-udp", "gw-cp-tud", 72, "getinfo").await;
    assert_eq!(a["answer"], "getinfo: OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gt06_online_command_round_trip() {
    let a = round_trip("gt06", "gw-cp-gt06", 73, "RELAY,1#").await;
    assert_eq!(a["answer"], "RELAY=Success!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queclink_at_command_round_trip() {
    let a = round_trip("queclink", "gw-cp-qcl", 74, "GTRTO=gl300,0,,,,,").await;
    let answer = a["answer"].as_str().unwrap_or_default();
    let prefix = format!("+ACK:GTRTO,1A0102,{},,", imei(74, 0));
    assert!(answer.starts_with(&prefix), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wialon_message_round_trip() {
    let a = round_trip("wialon", "gw-cp-wln", 75, "Go to depot").await;
    assert_eq!(a["answer"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_command_line_round_trip() {
    let a = round_trip("jsonl", "gw-cp-jsl", 76, "getinfo").await;
    assert_eq!(a["answer"], "getinfo: OK");
}
