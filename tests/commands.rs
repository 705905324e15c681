//! Downlink commands against the real binary and a real mosquitto (issue 10), with JSON-line
//! and Teltonika devices: a command is sent and answered, queued for a device away and sent
//! at its login, kept through SIGKILL and delivered once, received although published while
//! the gateway was offline, expired, de-duplicated, rejected for each reason (with the
//! gateway still storing data), and a flood stays within the configured bounds.

mod common;

use std::time::Duration;

use common::*;
use firmware_protocols::teltonika::encode::{encode_codec12_response, encode_imei};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

/// The cloud: publishes commands (QoS 1, waits for each PUBACK) and keeps every result.
struct Cloud {
    client: AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<()>,
    results: Subscriber,
    topic: String,
    _task: tokio::task::JoinHandle<()>,
}

impl Cloud {
    async fn start(broker_port: u16, gateway_id: &str) -> Cloud {
        let results = Subscriber::start(
            broker_port,
            &format!("{gateway_id}-results"),
            &format!("fleetedge/{gateway_id}/command-results"),
        )
        .await;
        let mut options = MqttOptions::new(format!("{gateway_id}-cloud"), "127.0.0.1", broker_port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (tx, acks) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Cloud {
            client,
            acks,
            results,
            topic: format!("fleetedge/{gateway_id}/commands"),
            _task: task,
        }
    }

    /// Publishes `payloads` and waits until the broker acknowledged all of them.
    async fn publish_all(&mut self, payloads: Vec<Vec<u8>>) {
        let n = payloads.len();
        for p in payloads {
            self.client
                .publish(&self.topic, QoS::AtLeastOnce, false, p)
                .await
                .expect("queue a command");
        }
        for _ in 0..n {
            tokio::time::timeout(WAIT, self.acks.recv())
                .await
                .expect("the broker acknowledges every command")
                .expect("ack channel");
        }
    }

    async fn publish(&mut self, command: Value) {
        self.publish_all(vec![command.to_string().into_bytes()])
            .await;
    }

    /// Every result published so far for `id`.
    fn results_of(&self, id: &str) -> Vec<Value> {
        self.results
            .messages()
            .iter()
            .map(Received::json)
            .filter(|r| r["id"] == id)
            .collect()
    }

    /// Waits for a result of `id` with `status`; returns it.
    async fn wait_status(&self, id: &str, status: &str) -> Value {
        let found = self
            .results
            .wait_for(WAIT, |m| {
                let r = m.json();
                r["id"] == id && r["status"] == status
            })
            .await;
        match found {
            Some(m) => m.json(),
            None => panic!(
                "no {status:?} result for {id}; results: {:?}",
                self.results_of(id)
            ),
        }
    }
}

/// A JSON-lines device on a TCP listener: sends records, reads command lines.
struct JsonDevice {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    id: String,
}

impl JsonDevice {
    /// Connects and sends one record (which identifies the device).
    async fn connect(addr: std::net::SocketAddr, id: &str) -> JsonDevice {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (read, writer) = stream.into_split();
        let mut device = JsonDevice {
            lines: BufReader::new(read).lines(),
            writer,
            id: id.to_string(),
        };
        device.record(1).await;
        device
    }

    async fn record(&mut self, k: u32) {
        let line = json!({"device_id": self.id, "time": 1_700_000_000_000u64 + u64::from(k) * 1000,
            "lat": 54.0, "lon": 25.0, "level_cm": k});
        self.write_line(&line).await;
    }

    async fn write_line(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .expect("write a line");
    }

    /// The next command line, within `timeout`.
    async fn next_command(&mut self, timeout: Duration) -> Option<Value> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Some(serde_json::from_str(&line).expect("a JSON command line")),
            _ => None,
        }
    }

    async fn answer(&mut self, id: &str, text: &str) {
        self.write_line(&json!({"id": id, "answer": text})).await;
    }
}

/// Starts the gateway and waits for its command connection (a command published before
/// its first subscription has no session at the broker to wait in).
async fn start(config: GatewayConfig) -> Gateway {
    let gateway = Gateway::start(config).await;
    assert!(
        gateway
            .wait_for_log_line(&["commands: subscribed"], WAIT)
            .await
            .is_some(),
        "the command connection came up"
    );
    gateway
}

fn jsonl_gateway(gateway_id: &str, broker_port: u16) -> GatewayConfig {
    GatewayConfig::new(gateway_id, broker_port)
        .listener("jsonl", &[])
        .set("commands.enabled", "true")
}

fn command(id: &str, device: &str, text: &str) -> Value {
    json!({"id": id, "device_id": device, "text": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_a_connected_device_is_sent_and_answered() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(jsonl_gateway("gw-cmd-1", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-1").await;
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-1").await;

    cloud.publish(command("c-1", "sensor-1", "getinfo")).await;
    let line = device.next_command(WAIT).await.expect("the command line");
    assert_eq!(
        line,
        json!({"id": "c-1", "device_id": "sensor-1", "command": "getinfo"})
    );
    device.answer("c-1", "fw 1.2").await;

    let sent = cloud.wait_status("c-1", "sent").await;
    assert_eq!(sent["device_id"], "sensor-1");
    let answered = cloud.wait_status("c-1", "answered").await;
    assert_eq!(answered["answer"], "fw 1.2");
    assert!(answered["reason"].is_null());
    assert!(answered["at"].as_str().unwrap_or_default().ends_with('Z'));
}

/// A local application serving two devices on one connection (issue 9's JSON-lines shape):
/// the second device is reachable too. Its command comes on that connection, naming it, and
/// its answer (named by the command id alone) is published as that device's. (Before, only
/// the connection's first device was reachable, and this command stayed queued.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_on_a_json_lines_connection_can_be_sent_commands() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(jsonl_gateway("gw-cmd-12", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-12").await;
    let mut app = JsonDevice::connect(gateway.listener_addr(0), "hub-a").await;
    app.id = "hub-b".into();
    app.record(2).await;

    cloud.publish(command("m-b", "hub-b", "level?")).await;
    let line = app
        .next_command(WAIT)
        .await
        .expect("hub-b's command on the app's connection");
    assert_eq!(
        line,
        json!({"id": "m-b", "device_id": "hub-b", "command": "level?"})
    );
    cloud.publish(command("m-a", "hub-a", "reset")).await;
    let line = app
        .next_command(WAIT)
        .await
        .expect("hub-a's command, while hub-b's is outstanding");
    assert_eq!(line["device_id"], "hub-a");
    app.answer("m-b", "41 cm").await;
    app.answer("m-a", "done").await;
    let b = cloud.wait_status("m-b", "answered").await;
    assert_eq!(
        (b["device_id"].as_str(), b["answer"].as_str()),
        (Some("hub-b"), Some("41 cm"))
    );
    let a = cloud.wait_status("m-a", "answered").await;
    assert_eq!(a["device_id"], "hub-a");
}

/// A device that connects again while its old connection is still open (a tracker whose
/// old TCP connection died silently): its commands go to the new connection, and the old one
/// still ends at the idle timeout. (Before, the old session saw its command channel close
/// and woke for it again and again, which also kept renewing its idle timer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_reconnects_gets_commands_on_the_new_connection_and_the_old_one_still_times_out(
) {
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(
        jsonl_gateway("gw-cmd-13", broker.port())
            .set("ingest.idle_timeout_s", "3")
            .set("ingest.first_frame_timeout_s", "3"),
    )
    .await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-13").await;
    let mut old = JsonDevice::connect(gateway.listener_addr(0), "mover").await;
    cloud.publish(command("r-1", "mover", "ping")).await;
    assert_eq!(
        old.next_command(WAIT)
            .await
            .expect("r-1 on the first connection")["id"],
        "r-1"
    );
    old.answer("r-1", "pong").await;
    cloud.wait_status("r-1", "answered").await;

    let mut new = JsonDevice::connect(gateway.listener_addr(0), "mover").await;
    // The new connection keeps sending; the old one is silent from here.
    let mut k = 2;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                line = old.lines.next_line() => if !matches!(line, Ok(Some(_))) { break },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    new.record(k).await;
                    k += 1;
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the old connection was not closed at its idle timeout"
    );
    cloud.publish(command("r-2", "mover", "ping")).await;
    assert_eq!(
        new.next_command(WAIT)
            .await
            .expect("r-2 on the new connection")["id"],
        "r-2"
    );
}

/// A Teltonika device: IMEI login, then a Codec 12 command on the idle connection, and its
/// Codec 12 answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teltonika_device_gets_codec_12_and_its_answer_is_published() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway =
        start(GatewayConfig::new("gw-cmd-tel", broker.port()).set("commands.enabled", "true"))
            .await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-tel").await;
    let id = imei(91, 0);
    let mut stream = TcpStream::connect(gateway.addr()).await.expect("connect");
    stream.write_all(&encode_imei(&id)).await.expect("login");
    let mut accepted = [0u8; 1];
    stream
        .read_exact(&mut accepted)
        .await
        .expect("login answer");
    assert_eq!(accepted[0], 1);

    cloud.publish(command("t-1", &id, "getinfo")).await;
    // 00000000, size, 0C, 01, 05, len, text, 01, CRC (4).
    let mut head = [0u8; 8];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .expect("a command within the wait")
        .expect("read");
    assert_eq!(&head[..4], &[0, 0, 0, 0]);
    let size = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; size + 4];
    stream.read_exact(&mut rest).await.expect("the packet");
    assert_eq!(&rest[..3], &[0x0C, 0x01, 0x05], "Codec 12, one command");
    assert_eq!(&rest[7..7 + 7], b"getinfo");

    let answer = encode_codec12_response(b"RTC:2026/12/7 GPS:1").expect("answer packet");
    stream.write_all(&answer).await.expect("answer");
    let answered = cloud.wait_status("t-1", "answered").await;
    assert_eq!(answered["answer"], "RTC:2026/12/7 GPS:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_device_away_is_queued_then_sent_at_its_login() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(jsonl_gateway("gw-cmd-2", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-2").await;

    cloud.publish(command("c-a", "sensor-2", "first")).await;
    cloud.publish(command("c-b", "sensor-2", "second")).await;
    cloud.wait_status("c-a", "queued").await;
    cloud.wait_status("c-b", "queued").await;

    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-2").await;
    let first = device.next_command(WAIT).await.expect("the first command");
    assert_eq!(first["id"], "c-a", "oldest first");
    // One at a time: the second waits for the first one's answer.
    assert_eq!(device.next_command(Duration::from_millis(800)).await, None);
    device.answer("c-a", "ok").await;
    let second = device.next_command(WAIT).await.expect("the second command");
    assert_eq!(second["id"], "c-b");
    device.answer("c-b", "ok").await;
    cloud.wait_status("c-b", "answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_command_survives_sigkill_and_is_delivered_once() {
    let broker = Mosquitto::start(free_port()).await;
    let mut gateway = start(jsonl_gateway("gw-cmd-3", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-3").await;
    cloud.publish(command("c-k", "sensor-3", "getinfo")).await;
    cloud.wait_status("c-k", "queued").await;

    gateway.kill_9().await;
    gateway.restart().await;

    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-3").await;
    let line = device
        .next_command(WAIT)
        .await
        .expect("the command after the restart");
    assert_eq!(line["id"], "c-k");
    device.answer("c-k", "ok").await;
    cloud.wait_status("c-k", "answered").await;
    // Once: neither the broker's redelivery nor the queue sends it again, now or after a
    // reconnect.
    assert_eq!(device.next_command(Duration::from_secs(1)).await, None);
    drop(device);
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-3").await;
    assert_eq!(device.next_command(Duration::from_secs(2)).await, None);
    let sent = cloud
        .results_of("c-k")
        .iter()
        .filter(|r| r["status"] == "sent")
        .count();
    assert_eq!(sent, 1, "{:?}", cloud.results_of("c-k"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_published_while_the_gateway_was_offline_arrives() {
    let broker = Mosquitto::start(free_port()).await;
    let mut gateway = start(jsonl_gateway("gw-cmd-4", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-4").await;
    assert!(gateway.stop_gracefully(WAIT).await, "a clean stop");

    cloud.publish(command("c-off", "sensor-4", "getinfo")).await;
    gateway.restart().await;
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-4").await;
    let line = device
        .next_command(WAIT)
        .await
        .expect("the command published offline");
    assert_eq!(line["id"], "c-off");
    device.answer("c-off", "ok").await;
    cloud.wait_status("c-off", "answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_ttl_expires_and_is_never_sent() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(jsonl_gateway("gw-cmd-5", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-5").await;
    cloud
        .publish(json!({"id": "c-ttl", "device_id": "sensor-5", "text": "getinfo", "ttl_s": 1}))
        .await;
    let expired = cloud.wait_status("c-ttl", "expired").await;
    assert!(expired["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("ttl_s"));
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-5").await;
    assert_eq!(device.next_command(Duration::from_secs(2)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_not_sent_twice() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(jsonl_gateway("gw-cmd-6", broker.port())).await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-6").await;
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-6").await;
    cloud.publish(command("c-dup", "sensor-6", "getinfo")).await;
    let line = device.next_command(WAIT).await.expect("the command");
    assert_eq!(line["id"], "c-dup");
    device.answer("c-dup", "ok").await;
    cloud.wait_status("c-dup", "answered").await;
    // The same id again, even with another text: not sent.
    cloud.publish(command("c-dup", "sensor-6", "reboot")).await;
    cloud.publish(command("c-next", "sensor-6", "getver")).await;
    let line = device.next_command(WAIT).await.expect("the next command");
    assert_eq!(line["id"], "c-next", "the repeated id was skipped");
    // (`queued` first when the command came before the device's login was handled.)
    let statuses: Vec<Value> = cloud
        .results_of("c-dup")
        .iter()
        .map(|r| r["status"].clone())
        .filter(|s| s != "queued")
        .collect();
    assert_eq!(statuses, vec![json!("sent"), json!("answered")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejected_reason_is_named_and_data_still_flows() {
    let broker = Mosquitto::start(free_port()).await;
    let records = Subscriber::start(
        broker.port(),
        "gw-cmd-7-records",
        "fleetedge/gw-cmd-7/records",
    )
    .await;
    let gateway = start(
        jsonl_gateway("gw-cmd-7", broker.port())
            .set("commands.max_bytes", "16")
            .set("commands.max_queued_per_device", "2")
            .set(
                "commands.allow",
                r#"[{source = "listeners[0]", prefixes = ["getinfo"]}]"#,
            )
            // A GNSS receiver on a serial port that is not plugged in: known by its config.
            .serial(
                std::path::Path::new("/nonexistent/ttyGNSS"),
                "nmea",
                &[("device_id", "\"gnss-7\"")],
            ),
    )
    .await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-7").await;
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-7").await;
    // The device's record reached the broker: it is logged in and known.
    assert!(records.wait_for(WAIT, |_| true).await.is_some());

    cloud
        .publish_all(vec![
            b"{not json".to_vec(),
            json!({"id": "r-field", "device_id": "sensor-7", "text": "getinfo", "colour": 1})
                .to_string()
                .into_bytes(),
            command("r-long", "sensor-7", "getinfo and much more")
                .to_string()
                .into_bytes(),
            command("r-nmea", "gnss-7", "getinfo")
                .to_string()
                .into_bytes(),
            command("r-allow", "sensor-7", "setdigout 1")
                .to_string()
                .into_bytes(),
            command("r-q1", "away-7", "getinfo")
                .to_string()
                .into_bytes(),
            command("r-q2", "away-7", "getinfo")
                .to_string()
                .into_bytes(),
            command("r-q3", "away-7", "getinfo")
                .to_string()
                .into_bytes(),
        ])
        .await;
    let malformed = cloud
        .results
        .wait_for(WAIT, |m| {
            let r = m.json();
            r["status"] == "rejected" && r["id"].is_null()
        })
        .await
        .expect("a rejection without an id");
    assert!(malformed.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .starts_with("malformed JSON"));
    for (id, reason) in [
        ("r-field", "unknown field"),
        ("r-long", "too long"),
        ("r-nmea", "protocol without downlink"),
        ("r-allow", "not allowed"),
        ("r-q3", "queue full"),
    ] {
        let r = cloud.wait_status(id, "rejected").await;
        let text = r["reason"].as_str().unwrap_or_default().to_string();
        assert!(text.starts_with(reason), "{id}: {text}");
    }
    cloud.wait_status("r-q2", "queued").await;
    // Nothing rejected reached the device.
    assert_eq!(device.next_command(Duration::from_millis(500)).await, None);
    // And data still flows: a record after all that reaches the broker.
    let before = records.messages().len();
    device.record(2).await;
    assert!(
        wait_until(WAIT, || records.messages().len() > before).await,
        "a record stored and published after the rejections"
    );
}

/// 10,000 commands at once for a few devices away: the queue stays within its bounds,
/// every command gets exactly one answer (queued or rejected), and the gateway stays
/// responsive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_commands_stays_within_the_configured_bounds() {
    const N: usize = 10_000;
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(
        jsonl_gateway("gw-cmd-8", broker.port())
            .set("commands.max_queued_per_device", "50")
            .set("commands.max_queued_total", "200"),
    )
    .await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-8").await;
    let payloads = (0..N)
        .map(|i| {
            command(&format!("f-{i}"), &format!("away-{}", i % 10), "getinfo")
                .to_string()
                .into_bytes()
        })
        .collect();
    cloud.publish_all(payloads).await;
    let settled = wait_until(Duration::from_secs(300), || {
        let ids: std::collections::HashSet<String> = cloud
            .results
            .messages()
            .iter()
            .filter_map(|m| m.json()["id"].as_str().map(str::to_string))
            .collect();
        ids.len() >= N
    })
    .await;
    let results: Vec<Value> = cloud
        .results
        .messages()
        .iter()
        .map(Received::json)
        .collect();
    assert!(settled, "{} of {N} results", results.len());
    // Results are at-least-once: count commands, not messages.
    let ids_with = |pred: &dyn Fn(&Value) -> bool| {
        results
            .iter()
            .filter(|r| pred(r))
            .filter_map(|r| r["id"].as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let queued = ids_with(&|r| r["status"] == "queued");
    let rejected = ids_with(&|r| {
        r["status"] == "rejected"
            && r["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("queue full")
    });
    assert_eq!(
        gateway.count_log_lines(&["commands: MQTT connection ended"]),
        0,
        "the flood kept the command connection up"
    );
    assert_eq!(queued, 200, "max_queued_total");
    assert_eq!(queued + rejected, N);
    let metrics = http_get(gateway.config_text(), "/metrics").await;
    assert!(
        metrics.contains("fleetedge_commands_queued 200"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("commands"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// GET `path` from the gateway's HTTP endpoint (found in its config text).
async fn http_get(config: String, path: &str) -> String {
    let bind = config
        .lines()
        .find_map(|l| l.strip_prefix("http.bind = "))
        .expect("http.bind in the config")
        .trim_matches('"')
        .to_string();
    let mut stream = TcpStream::connect(&bind)
        .await
        .expect("connect to the endpoint");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {bind}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    answer
}

/// `fleetedge command` on site: through the running gateway's HTTP endpoint (with its
/// token), printing each status until the device answered; `buffer stats` shows what is
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_tool_sends_through_the_gateway_and_prints_each_status() {
    const TOKEN: &str = "command-tool-token-0123";
    let broker = Mosquitto::start(free_port()).await;
    let gateway =
        start(jsonl_gateway("gw-cmd-9", broker.port()).set("http.token", &toml_string(TOKEN)))
            .await;
    let cloud = Cloud::start(broker.port(), "gw-cmd-9").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_file(dir.path(), "fleetedge.toml", &gateway.config_text());
    let tool = |args: Vec<String>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            gateway_command()
                .arg("command")
                .arg("--config")
                .arg(&config)
                .args(args)
                .output()
                .expect("run fleetedge command")
        })
    };

    // A device away: queued, and `buffer stats` counts it.
    let queued = tool(vec![
        "--device".into(),
        "sensor-away".into(),
        "--text".into(),
        "getinfo".into(),
        "--wait-s".into(),
        "0".into(),
    ])
    .await
    .expect("the tool ran");
    let out = String::from_utf8_lossy(&queued.stdout).to_string();
    assert!(
        queued.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&queued.stderr)
    );
    assert!(out.contains(" queued"), "{out}");
    let stats = gateway_command()
        .args(["buffer", "stats", "--json", "--config"])
        .arg(&config)
        .output()
        .expect("buffer stats");
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(stats["commands_queued"], 1, "{stats}");

    // A connected device that answers: sent, then answered, exit 0.
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-9").await;
    let run = tool(vec![
        "--device".into(),
        "sensor-9".into(),
        "--id".into(),
        "tool-1".into(),
        "--text".into(),
        "getver".into(),
        "--wait-s".into(),
        "20".into(),
    ]);
    let line = device.next_command(WAIT).await.expect("the command line");
    assert_eq!(
        line,
        json!({"id": "tool-1", "device_id": "sensor-9", "command": "getver"})
    );
    device.answer("tool-1", "ver 7").await;
    let answered = run.await.expect("the tool ran");
    let out = String::from_utf8_lossy(&answered.stdout).to_string();
    assert!(
        answered.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(out.contains("tool-1 answered answer=\"ver 7\""), "{out}");
    // The cloud sees the installer's command too.
    cloud.wait_status("tool-1", "answered").await;

    // Without the token the endpoint refuses.
    let refused = tokio::task::spawn_blocking({
        let text = gateway
            .config_text()
            .replace(TOKEN, "wrong-token-0123456789");
        let path = write_file(dir.path(), "wrong.toml", &text);
        move || {
            gateway_command()
                .args(["command", "--device", "sensor-9", "--text", "x", "--config"])
                .arg(&path)
                .output()
                .expect("run fleetedge command")
        }
    })
    .await
    .expect("the tool ran");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

/// A sent command fails when its connection is lost before the answer, or when no answer
/// comes within `commands.answer_timeout_s`; the next one goes out after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_command_fails_on_a_lost_connection_or_without_an_answer() {
    let broker = Mosquitto::start(free_port()).await;
    let gateway =
        start(jsonl_gateway("gw-cmd-10", broker.port()).set("commands.answer_timeout_s", "2"))
            .await;
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-10").await;
    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-10").await;
    cloud.publish(command("lost", "sensor-10", "getinfo")).await;
    cloud
        .publish(command("silent", "sensor-10", "getinfo"))
        .await;
    let line = device.next_command(WAIT).await.expect("the first command");
    assert_eq!(line["id"], "lost");
    drop(device);
    let failed = cloud.wait_status("lost", "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("connection lost"),
        "{failed}"
    );

    let mut device = JsonDevice::connect(gateway.listener_addr(0), "sensor-10").await;
    let line = device.next_command(WAIT).await.expect("the second command");
    assert_eq!(line["id"], "silent");
    let failed = cloud.wait_status("silent", "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("answer_timeout_s"),
        "{failed}"
    );
    // A late answer settles nothing more.
    device.answer("silent", "late").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cloud
        .results_of("silent")
        .iter()
        .all(|r| r["status"] != "answered"));
}

/// A JSON-lines sensor on a serial port takes commands like a TCP device: the command line
/// goes out on the port, the answer line comes back on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_device_gets_its_command_on_the_port_and_answers_there() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = PtyPair::start(dir.path(), "sensor");
    let broker = Mosquitto::start(free_port()).await;
    let gateway = start(jsonl_gateway("gw-cmd-11", broker.port()).serial(
        &pty.port,
        "jsonl",
        &[("device_id", "\"serial-11\"")],
    ))
    .await;
    let path = pty.port.display().to_string();
    assert!(gateway
        .wait_for_log_line(&["serial port open", &path], WAIT)
        .await
        .is_some());
    let mut cloud = Cloud::start(broker.port(), "gw-cmd-11").await;
    let mut dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pty.dev)
        .expect("open the device end");
    // One record: the port's device is known from its first frame.
    dev.write_all(b"{\"time\":1700000000000,\"level_cm\":3}\n")
        .expect("a record");
    // The device end's lines, read on a thread of their own.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = dev.try_clone().expect("clone the device end");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            match line {
                Ok(line) => {
                    if lines_tx.send(line).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    cloud.publish(command("s-1", "serial-11", "getinfo")).await;
    let line = tokio::task::spawn_blocking(move || lines.recv_timeout(WAIT))
        .await
        .expect("reader")
        .expect("the command line on the port");
    let line: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(
        line,
        json!({"id": "s-1", "device_id": "serial-11", "command": "getinfo"})
    );
    dev.write_all(b"{\"id\":\"s-1\",\"answer\":\"level ok\"}\n")
        .expect("the answer");
    let answered = cloud.wait_status("s-1", "answered").await;
    assert_eq!(answered["answer"], "level ok");
}
