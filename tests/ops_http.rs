//! The operations endpoint (`http.bind`) of the real `fleetedge run` binary, with a real
//! mosquitto, read with plain HTTP/1.1 GETs over a tokio `TcpStream`.
//!
//! - `health_ready_and_metrics_follow_the_broker_and_the_records`: the gateway starts before
//!   its broker: `/health` is 200 at once, `/ready` is 503 naming MQTT until the broker is up,
//!   then 200; Teltonika records sent by a device move `/metrics` (records received for
//!   protocol teltonika, records published, batches, the publish latency histogram, the
//!   listener's open connections); an unknown path is 404; when the broker stops, `/ready`
//!   is 503 again and the connection failure is counted.
//! - `a_bad_http_bind_fails_the_start_naming_the_key`: `check-config` names `http.bind` for
//!   a value that is not address:port, and `run` exits with an error naming `http.bind` when
//!   the port is taken.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One `GET path` with `Connection: close`: (status code, body). Bounded to 5 s.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(loopback(port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no HTTP response"))??;
    let text = String::from_utf8(response).map_err(std::io::Error::other)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    // Full bodies come with Content-Length; a chunked one would need decoding.
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked response: {head}"
    );
    Ok((status, body.to_string()))
}

/// GET that must answer; panics with the error otherwise.
async fn get(port: u16, path: &str) -> (u16, String) {
    http_get(port, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

/// The value of the sample `series` (`name` or `name{label="v",…}` exactly as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Polls `/metrics` every 100 ms until `done` holds for it (within `timeout`); returns the
/// last text read.
async fn metrics_until(port: u16, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, text) = get(port, "/metrics").await;
        assert_eq!(status, 200, "/metrics: {text}");
        if done(&text) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/ready` until it answers `want` (within `timeout`); returns the last answer.
async fn ready_until(port: u16, want: u16, timeout: Duration) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = get(port, "/ready").await;
        if answer.0 == want || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_follow_the_broker_and_the_records() {
    // The broker's port is chosen now but nothing listens on it yet.
    let mqtt_port = free_port();
    let http_port = free_port();
    let gw = Gateway::start(
        GatewayConfig::new("gw-ops", mqtt_port)
            .set("http.bind", &toml_string(&format!("127.0.0.1:{http_port}"))),
    )
    .await;
    // Gateway::start returns once the device listener accepts; the HTTP endpoint is bound
    // just after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !accepts_tcp(http_port).await {
        assert!(
            Instant::now() < deadline,
            "the HTTP endpoint did not accept on port {http_port} within 10 s:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(get(http_port, "/health").await, (200, "ok".to_string()));
    let (status, why) = get(http_port, "/ready").await;
    assert_eq!(status, 503, "ready without a broker: {why}");
    assert!(why.contains("MQTT is not connected"), "{why}");
    let text = get(http_port, "/metrics").await.1;
    assert_eq!(
        sample(&text, "fleetedge_mqtt_connected"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "fleetedge_buffer_running"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(get(http_port, "/nope").await.0, 404);
    assert_eq!(get(http_port, "/metrics/extra").await.0, 404);

    let mut broker = Mosquitto::start(mqtt_port).await;
    let (status, body) = ready_until(http_port, 200, Duration::from_secs(20)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ready"),
        "/ready once the broker is up"
    );

    // Gateway::start's own probe connected once already; count from here.
    let accepted =
        "fleetedge_listener_connections_accepted_total{listener=\"0\",protocol=\"teltonika\"}";
    let accepted_before = sample(&get(http_port, "/metrics").await.1, accepted)
        .expect("the listener's accepted counter is on /metrics");
    let mut device = Device::connect(gw.addr(), &imei(4401, 0), Duration::from_secs(5))
        .await
        .expect("device login");
    let open = "fleetedge_listener_connections_open{listener=\"0\",protocol=\"teltonika\"}";
    let text = metrics_until(http_port, Duration::from_secs(5), |t| {
        sample(t, open) == Some(1.0)
    })
    .await;
    assert_eq!(sample(&text, open), Some(1.0), "{text}");

    // Three packets of five records, each acknowledged before the next (separate batches
    // are likely but not required: only "at least one" is asserted).
    for packet in 0..3u64 {
        let records: Vec<_> = (0..5).map(|k| avl_record(0, packet * 5 + k)).collect();
        let accepted = device
            .send(&records, Duration::from_secs(10))
            .await
            .expect("packet answered");
        assert_eq!(accepted, 5);
    }
    let text = metrics_until(http_port, Duration::from_secs(20), |t| {
        sample(t, "fleetedge_records_published_total") == Some(15.0)
    })
    .await;
    let value = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    assert_eq!(
        value("fleetedge_records_received_total{protocol=\"teltonika\"}"),
        15.0
    );
    assert_eq!(
        value("fleetedge_records_received_total{protocol=\"gt06\"}"),
        0.0
    );
    assert_eq!(
        value("fleetedge_decode_errors_total{protocol=\"teltonika\"}"),
        0.0
    );
    assert_eq!(value("fleetedge_records_published_total"), 15.0);
    let batches = value("fleetedge_batches_published_total");
    assert!((1.0..=15.0).contains(&batches), "batches = {batches}");
    // One latency observation per acknowledged batch.
    assert_eq!(value("fleetedge_publish_latency_seconds_count"), batches);
    assert_eq!(
        value("fleetedge_publish_latency_seconds_bucket{le=\"+Inf\"}"),
        batches
    );
    assert!(value("fleetedge_publish_latency_seconds_sum") >= 0.0);
    assert!(value("fleetedge_batch_uncompressed_bytes_total") > 0.0);
    assert!(value("fleetedge_batch_compressed_bytes_total") > 0.0);
    assert_eq!(value("fleetedge_mqtt_connected"), 1.0);
    assert!(value("fleetedge_mqtt_connects_total") >= 1.0);
    assert_eq!(value("fleetedge_buffer_full"), 0.0);
    assert_eq!(
        value("fleetedge_records_dropped_total{reason=\"drop_oldest\"}"),
        0.0
    );
    assert_eq!(
        value("fleetedge_records_dropped_total{reason=\"refused\"}"),
        0.0
    );
    assert_eq!(value(open), 1.0);
    assert!(text.contains("# TYPE fleetedge_publish_latency_seconds histogram"));
    // Published records leave the buffer.
    let text = metrics_until(http_port, Duration::from_secs(10), |t| {
        sample(t, "fleetedge_buffer_records") == Some(0.0)
    })
    .await;
    assert_eq!(
        sample(&text, "fleetedge_buffer_records"),
        Some(0.0),
        "{text}"
    );

    drop(device);
    let text = metrics_until(http_port, Duration::from_secs(10), |t| {
        sample(t, open) == Some(0.0)
    })
    .await;
    assert_eq!(sample(&text, open), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, accepted),
        Some(accepted_before + 1.0),
        "{text}"
    );

    // The broker goes away: not ready any more, and the failure is counted.
    broker.stop().await;
    let (status, why) = ready_until(http_port, 503, Duration::from_secs(15)).await;
    assert_eq!(status, 503, "/ready with the broker stopped: {why}");
    assert!(why.contains("MQTT is not connected"), "{why}");
    let text = get(http_port, "/metrics").await.1;
    assert_eq!(
        sample(&text, "fleetedge_mqtt_connected"),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "fleetedge_mqtt_connection_failures_total{reason=\"connection_lost\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(get(http_port, "/health").await, (200, "ok".to_string()));
}

#[test]
fn a_bad_http_bind_fails_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = |bind: &str| {
        format!(
            "gateway_id = \"gw-ops-bind\"\n\
             [buffer]\npath = {}\ncache_capacity_bytes = 4194304\n\
             [mqtt]\nport = {}\n\
             [http]\nbind = {}\n\
             [[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:{}\"\n",
            toml_string(&dir.path().join("buffer").display().to_string()),
            free_port(),
            toml_string(bind),
            free_port()
        )
    };

    let not_an_address = write_file(dir.path(), "bad.toml", &config("localhost"));
    let out = gateway_command()
        .args(["check-config", "--config"])
        .arg(&not_an_address)
        .env_remove("RUST_LOG")
        .output()
        .expect("run fleetedge check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "http.bind = localhost passed: {stderr}"
    );
    assert!(
        stderr.contains("http.bind"),
        "http.bind not named in:\n{stderr}"
    );

    // A port someone else holds: the start fails, naming the key.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let busy = write_file(dir.path(), "busy.toml", &config(&addr));
    let log = dir.path().join("run.log");
    let mut child = gateway_command()
        .args(["run", "--config"])
        .arg(&busy)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn fleetedge run");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for fleetedge") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("still running with a taken port:\n{output}"));
    assert!(
        !status.success(),
        "exited cleanly with a taken port:\n{output}"
    );
    assert!(
        output.contains(&format!("http.bind: cannot listen on {addr}")),
        "the error does not name http.bind and the address:\n{output}"
    );
    drop(taken);
}
