//! Bad devices and tight limits, against the real binary and a real mosquitto.
//!
//! - `malformed_frames_close_only_their_connection`: a bad CRC and an absurd length field
//!   each close their own connection with a log line naming peer, IMEI and reason; nothing
//!   is acknowledged for them, a well-behaved device on the same listener carries on, and
//!   every record it was told was accepted reaches the broker.
//! - `allow_list_refuses_unknown_devices`: an IMEI outside `allowed_devices` is answered `00`.
//! - `a_connection_without_a_first_frame_in_time_is_closed`: a silent connection and one
//!   that trickles a login byte by byte are both closed after `first_frame_timeout_s`
//!   (counted from the accept), with a log line naming the peer; a device that logged in
//!   in time stays connected past it and its records are still accepted.
//! - `keep_alive_only_connections_are_closed_at_the_first_frame_timeout`: 50 connections
//!   that send a Teltonika ping byte every 500 ms and never log in are all closed at
//!   `first_frame_timeout_s` (keep-alives do not count as identifying), each logged, while a
//!   device that logged in is served before and after.
//! - `batches_stay_under_the_packet_limit`: with compression off and a small
//!   `mqtt.max_packet_bytes`, batches are split so every payload fits, and nothing is lost.

mod common;

use std::time::Duration;

use common::*;
use firmware_protocols::teltonika::encode::encode_codec8;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REPLY: Duration = Duration::from_secs(10);

/// Logs in raw (without the `Device` helper) so the test controls every byte after.
async fn raw_login(gateway: &Gateway, imei: &str) -> TcpStream {
    let mut s = TcpStream::connect(gateway.addr()).await.expect("connect");
    s.write_all(&firmware_protocols::teltonika::encode::encode_imei(imei))
        .await
        .expect("send IMEI");
    let mut answer = [0u8; 1];
    tokio::time::timeout(REPLY, s.read_exact(&mut answer))
        .await
        .expect("IMEI answer in time")
        .expect("IMEI answer");
    assert_eq!(answer[0], 1, "{imei} refused");
    s
}

/// The first gateway log line with every one of `parts`, waiting for it: the gateway logs a
/// session's end after it closed the socket.
async fn log_line(gateway: &Gateway, parts: &[&str]) -> String {
    let find = || {
        gateway
            .log()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
    };
    wait_until(Duration::from_secs(5), || find().is_some()).await;
    find().unwrap_or_else(|| panic!("no log line with {parts:?} in:\n{}", gateway.log()))
}

/// Reads until the gateway closes the connection; returns what it sent before closing.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(REPLY, s.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the gateway did not close the connection");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "faults-collector").await;
    let gateway = Gateway::start(GatewayConfig::new("gw-faults", broker.port())).await;

    let good_imei = imei(70, 0);
    let mut good = Device::connect(gateway.addr(), &good_imei, REPLY)
        .await
        .expect("good device logs in");
    let first: Vec<_> = (0..5).map(|k| avl_record(0, k)).collect();
    assert_eq!(good.send(&first, REPLY).await.expect("reply"), 5);

    // A packet whose CRC is wrong: no count reply, the connection is closed.
    let crc_imei = imei(70, 1);
    let mut bad_crc = raw_login(&gateway, &crc_imei).await;
    let mut packet = encode_codec8(&[avl_record(1, 0)]).expect("encode");
    let last = packet.len() - 1;
    packet[last] ^= 0xFF;
    bad_crc.write_all(&packet).await.expect("send");
    let answered = read_until_closed(&mut bad_crc).await;
    assert!(
        answered.is_empty(),
        "a bad packet got a reply: {answered:02x?}"
    );

    // A header claiming a 2 GiB packet: closed at once, without waiting for the body.
    let huge_imei = imei(70, 2);
    let mut huge = raw_login(&gateway, &huge_imei).await;
    huge.write_all(&[0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0x08])
        .await
        .expect("send");
    let answered = read_until_closed(&mut huge).await;
    assert!(answered.is_empty(), "an oversize header got a reply");

    // Binary garbage instead of an IMEI.
    let mut garbage = TcpStream::connect(gateway.addr()).await.expect("connect");
    garbage
        .write_all(b"\x00\x0fGET / HTTP/1.1\r\n")
        .await
        .expect("send");
    let answered = read_until_closed(&mut garbage).await;
    assert!(answered.is_empty(), "garbage got a reply: {answered:02x?}");

    // The good device is unaffected.
    let second: Vec<_> = (5..10).map(|k| avl_record(0, k)).collect();
    assert_eq!(good.send(&second, REPLY).await.expect("reply"), 5);

    let mut expected = std::collections::HashSet::new();
    for r in first.iter().chain(&second) {
        expected.insert((good_imei.clone(), time_of(r)));
    }
    let missing = collector
        .wait_for_all(&expected, Duration::from_secs(20))
        .await;
    assert_eq!(missing, 0, "records of the good device were lost");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (got, errors, _) = collector.snapshot();
    assert_no_problems("batches", &errors);
    assert!(
        got.iter().all(|g| g.device_id == good_imei),
        "a record of a bad device was published"
    );
    assert_eq!(got.len(), 10);

    for (imei, reason) in [(&crc_imei, "CRC"), (&huge_imei, "byte offset")] {
        let line = log_line(&gateway, &["malformed frame", imei.as_str()]).await;
        assert!(line.contains("peer="), "{line}");
        assert!(line.contains(reason), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_refuses_unknown_devices() {
    let broker = Mosquitto::start(free_port()).await;
    let allowed = imei(71, 0);
    let gateway = Gateway::start(
        GatewayConfig::new("gw-allow", broker.port())
            .set_listener("allowed_devices", &format!("[\"{allowed}\"]")),
    )
    .await;
    Device::connect(gateway.addr(), &allowed, REPLY)
        .await
        .expect("the allowed device logs in");

    let stranger = imei(71, 1);
    let mut s = TcpStream::connect(gateway.addr()).await.expect("connect");
    s.write_all(&firmware_protocols::teltonika::encode::encode_imei(
        &stranger,
    ))
    .await
    .expect("send IMEI");
    let answered = read_until_closed(&mut s).await;
    assert_eq!(answered, [0x00], "a refused IMEI is answered 00 and closed");
    log_line(&gateway, &["device refused", stranger.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_first_frame_in_time_is_closed() {
    const LIMIT: Duration = Duration::from_secs(3);
    let broker = Mosquitto::start(free_port()).await;
    let gateway = Gateway::start(
        GatewayConfig::new("gw-first-frame", broker.port())
            .set("ingest.first_frame_timeout_s", &LIMIT.as_secs().to_string()),
    )
    .await;

    let mut logged_in = raw_login(&gateway, &imei(72, 0)).await;
    let mut silent = TcpStream::connect(gateway.addr()).await.expect("connect");
    let silent_peer = silent.local_addr().expect("local addr").to_string();
    // A login frame trickled a byte every 500 ms: each read comes well within the limit,
    // but the frame is not complete before it.
    let login = firmware_protocols::teltonika::encode::encode_imei(&imei(72, 1));
    let mut trickle = TcpStream::connect(gateway.addr()).await.expect("connect");
    let trickle_peer = trickle.local_addr().expect("local addr").to_string();
    for byte in &login[..login.len() - 1] {
        if trickle.write_all(&[*byte]).await.is_err() {
            break; // already closed
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The trickle ends when a write fails (the gateway closed it) or after 8 s (> LIMIT):
    // either way both are closed by now, neither answered.
    assert!(read_until_closed(&mut silent).await.is_empty());
    assert!(read_until_closed(&mut trickle).await.is_empty());
    for peer in [&silent_peer, &trickle_peer] {
        log_line(
            &gateway,
            &[
                "no device identified itself within ingest.first_frame_timeout_s",
                peer,
            ],
        )
        .await;
    }

    // Logged in at once, it stays past the limit: its packet is still taken.
    let packet = encode_codec8(&[avl_record(0, 0)]).expect("encode");
    logged_in.write_all(&packet).await.expect("send");
    let mut count = [0u8; 4];
    tokio::time::timeout(REPLY, logged_in.read_exact(&mut count))
        .await
        .expect("count reply in time")
        .expect("count reply");
    assert_eq!(u32::from_be_bytes(count), 1, "{}", gateway.log());
}

/// Sends one one-record packet and returns the count the gateway answered.
async fn send(device: &mut TcpStream, k: u64) -> u32 {
    let packet = encode_codec8(&[avl_record(0, k)]).expect("encode");
    device.write_all(&packet).await.expect("send");
    let mut count = [0u8; 4];
    tokio::time::timeout(REPLY, device.read_exact(&mut count))
        .await
        .expect("count reply in time")
        .expect("count reply");
    u32::from_be_bytes(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_only_connections_are_closed_at_the_first_frame_timeout() {
    const LIMIT: Duration = Duration::from_secs(3);
    const PINGERS: usize = 50;
    let broker = Mosquitto::start(free_port()).await;
    let gateway = Gateway::start(
        GatewayConfig::new("gw-keep-alive-only", broker.port())
            .set("ingest.first_frame_timeout_s", &LIMIT.as_secs().to_string()),
    )
    .await;
    let mut device = raw_login(&gateway, &imei(73, 0)).await;
    let started = std::time::Instant::now();
    let mut pingers = Vec::new();
    for _ in 0..PINGERS {
        pingers.push(Some(
            TcpStream::connect(gateway.addr()).await.expect("connect"),
        ));
    }
    // One ping byte (0xFF) per connection every 500 ms, until the gateway closes them; the
    // logged-in device is served meanwhile.
    let mut k = 0;
    while pingers.iter().any(Option::is_some) && started.elapsed() < LIMIT * 8 {
        for slot in pingers.iter_mut() {
            if let Some(s) = slot {
                if s.write_all(&[0xFF]).await.is_err() {
                    *slot = None;
                }
            }
        }
        assert_eq!(send(&mut device, k).await, 1, "{}", gateway.log());
        k += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let open = pingers.iter().filter(|s| s.is_some()).count();
    assert_eq!(
        open,
        0,
        "keep-alive-only connections still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= LIMIT, "closed before the limit");
    let logged = || gateway.count_log_lines(&["no device identified itself within"]);
    let all_logged = wait_until(Duration::from_secs(10), || logged() >= PINGERS).await;
    assert!(all_logged, "{} closes logged\n{}", logged(), gateway.log());
    // The device that logged in is still served past the limit.
    assert_eq!(send(&mut device, k).await, 1, "{}", gateway.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_under_the_packet_limit() {
    // The smallest limit the config accepts for the default frame size: 6 × 16 KiB + 8 KiB.
    const LIMIT: usize = 106_496;
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "limit-collector").await;
    let gateway = Gateway::start(
        GatewayConfig::new("gw-limit", broker.port())
            .set("uplink.compression", "\"none\"")
            .set("uplink.batch_max_records", "5000")
            .set("uplink.linger_ms", "500")
            .set("mqtt.max_packet_bytes", &LIMIT.to_string()),
    )
    .await;
    let mut device = Device::connect(gateway.addr(), &imei(72, 0), REPLY)
        .await
        .expect("login");
    let mut expected = std::collections::HashSet::new();
    for packet in 0..40u64 {
        let records: Vec<_> = (packet * 25..packet * 25 + 25)
            .map(|k| avl_record(0, k))
            .collect();
        assert_eq!(device.send(&records, REPLY).await.expect("reply"), 25);
        for r in &records {
            expected.insert((device.imei.clone(), time_of(r)));
        }
    }
    let missing = collector
        .wait_for_all(&expected, Duration::from_secs(30))
        .await;
    assert_eq!(missing, 0, "records lost");
    let (got, errors, batches) = collector.snapshot();
    assert_no_problems("batches", &errors);
    assert_eq!(got.len(), 1000, "duplicates or extra records");
    let max = collector.max_payload_bytes();
    assert!(max <= LIMIT, "a payload of {max} bytes exceeds {LIMIT}");
    // 1000 plain-JSON records (~500 bytes each) cannot fit one packet: they were split.
    assert!(batches >= 5, "only {batches} batches");
}
