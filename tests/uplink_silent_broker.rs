//! A broker that keeps the session alive (CONNACK, PINGRESP) but never acknowledges a
//! publish: the uplink must not wait on it forever. Without PUBACKs the window stays full,
//! nothing leaves the buffer, and the gateway looks healthy; the uplink ends the connection
//! after `write_timeout_s + keep_alive_s` without a PUBACK and publishes again on the next.
//!
//! The peer here is a deliberately broken broker (a few lines of MQTT framing over a real
//! loopback socket); mosquitto cannot be made to withhold PUBACKs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    publishes: AtomicUsize,
}

/// Reads MQTT packets; answers CONNECT and PINGREQ, swallows everything else.
async fn serve(mut stream: TcpStream, seen: Arc<Seen>) -> std::io::Result<()> {
    loop {
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await?;
        // Remaining length: a variable-length integer of up to 4 bytes.
        let mut len = 0usize;
        for shift in 0..4 {
            let mut b = [0u8; 1];
            stream.read_exact(&mut b).await?;
            len |= ((b[0] & 0x7f) as usize) << (7 * shift);
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        match first[0] >> 4 {
            1 => stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await?,
            3 => {
                seen.publishes.fetch_add(1, Ordering::SeqCst);
            }
            12 => stream.write_all(&[0xd0, 0x00]).await?,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_acknowledges_is_left_and_the_records_go_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Seen::default());
    let accept = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, Arc::clone(&seen)));
            }
        })
    };

    let gateway = Gateway::start(
        GatewayConfig::new("silent-broker", port)
            .set("mqtt.keep_alive_s", "5")
            .set("mqtt.write_timeout_s", "1")
            .set("mqtt.status_interval_s", "0"),
    )
    .await;
    let mut device = Device::connect(
        loopback(gateway.listen_port),
        &imei(7, 0),
        Duration::from_secs(10),
    )
    .await
    .expect("login");
    let records: Vec<_> = (0..5).map(|k| avl_record(0, k)).collect();
    assert_eq!(
        device
            .send(&records, Duration::from_secs(10))
            .await
            .expect("ack"),
        5,
        "stored, so acknowledged, whatever the broker does"
    );

    let line = gateway
        .wait_for_log_line(&["no PUBACK for 6 s"], Duration::from_secs(30))
        .await;
    assert!(
        line.is_some(),
        "the uplink never gave up on the silent broker; log:\n{}",
        gateway.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            seen.connections.load(Ordering::SeqCst) >= 2
        })
        .await,
        "no reconnect after leaving the silent broker"
    );
    // The online status and the batch on the first connection, and again on the next.
    assert!(
        wait_until(Duration::from_secs(20), || {
            seen.publishes.load(Ordering::SeqCst) >= 4
        })
        .await,
        "the records were not published again: {} publishes",
        seen.publishes.load(Ordering::SeqCst)
    );
    accept.abort();
}
