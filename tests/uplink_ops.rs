//! Uplink operations against a real mosquitto and the real binary: a broker that refuses
//! the credentials (backoff to the cap, the reason in the log, then the right credentials
//! work), quick reconnects after broker restarts, the retained status and the last will, the
//! rate limit, and graceful shutdown.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sends `n` records of device `index` in one packet and waits for the gateway's count.
async fn send_records(gw: &Gateway, imei: &str, index: usize, n: u64) -> Vec<(String, String)> {
    let records: Vec<_> = (0..n).map(|k| avl_record(index, k)).collect();
    let mut device = Device::connect(gw.addr(), imei, Duration::from_secs(5))
        .await
        .expect("device login");
    let reply = device
        .send(&records, Duration::from_secs(10))
        .await
        .expect("count reply");
    assert_eq!(u64::from(reply), n, "the gateway accepted every record");
    records
        .iter()
        .map(|r| (imei.to_string(), time_of(r)))
        .collect()
}

fn retry_delays_ms(log: &str, parts: &[&str]) -> Vec<u64> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| {
            let at = l.find("retry_in_ms=")? + "retry_in_ms=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_back_off_to_the_cap_and_say_why_then_right_ones_work() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["gw", "right-pass"])
        .status()
        .expect("mosquitto_passwd (in the mosquitto package) runs");
    assert!(made.success(), "mosquitto_passwd failed");
    // An anonymous listener for the test's collector, one with passwords for the gateway.
    let (plain, secured) = (free_port(), free_port());
    let broker = Mosquitto::start_with_conf(
        plain,
        &format!(
            "per_listener_settings true\n\
             listener {plain} 127.0.0.1\n\
             allow_anonymous true\n\
             listener {secured} 127.0.0.1\n\
             allow_anonymous false\n\
             password_file {}\n",
            passwords.display()
        ),
    )
    .await;
    let collector = Collector::start(broker.port(), "ops-creds-collector").await;

    let wrong = "Wr0ng-pa55word-7731";
    let gw = Gateway::start(
        GatewayConfig::new("gw-creds-bad", secured)
            .set("mqtt.username", "\"gw\"")
            .set("mqtt.password", &toml_string(wrong))
            .set("uplink.backoff_initial_ms", "100")
            .set("uplink.backoff_max_ms", "1000"),
    )
    .await;
    // mosquitto answers a wrong password with "not authorised" (MQTT 3.1.1 code 5); other
    // brokers say "bad user name or password" (code 4). Either is a refusal in words.
    let refused = ["broker refused the connection: not authorised"];
    let enough = wait_until(Duration::from_secs(10), || {
        gw.count_log_lines(&refused) >= 4
    })
    .await;
    let log = gw.log();
    assert!(enough, "fewer than 4 refusals logged in 10 s:\n{log}");
    // Every retry after a refusal waits at the cap: between half of it and all of it.
    let delays = retry_delays_ms(&log, &refused);
    assert!(delays.len() >= 4, "{delays:?}\n{log}");
    for d in &delays {
        assert!(
            (500..=1000).contains(d),
            "retry delay {d} ms not at the 1000 ms cap: {delays:?}"
        );
    }
    assert!(
        !log.contains(wrong),
        "the password appears in the log:\n{log}"
    );
    drop(gw);

    // The right password, from a file with a trailing newline.
    let pw_file = write_file(dir.path(), "gw-password", "right-pass\n");
    let gw = Gateway::start(
        GatewayConfig::new("gw-creds-good", secured)
            .set("mqtt.username", "\"gw\"")
            .set(
                "mqtt.password_file",
                &toml_string(&pw_file.display().to_string()),
            ),
    )
    .await;
    let keys: HashSet<_> = send_records(&gw, &imei(41, 0), 0, 5)
        .await
        .into_iter()
        .collect();
    let missing = collector.wait_for_all(&keys, Duration::from_secs(10)).await;
    assert_eq!(
        missing, 0,
        "records did not arrive with the right credentials"
    );
    assert_eq!(gw.count_log_lines(&refused), 0, "{}", gw.log());
    assert!(!gw.log().contains("right-pass"), "{}", gw.log());
}

/// Five broker restarts in a row, each after a connection that worked: every first retry
/// comes within the initial delay, instead of growing with the restarts before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_are_retried_quickly_each_time() {
    let mut broker = Mosquitto::start(free_port()).await;
    let gw = Gateway::start(
        GatewayConfig::new("gw-restarts", broker.port())
            .set("uplink.backoff_initial_ms", "500")
            .set("uplink.backoff_max_ms", "30000"),
    )
    .await;
    let lost = ["MQTT connection ended", "connection_lost"];
    for restart in 1..=5 {
        let connected = wait_until(Duration::from_secs(20), || {
            gw.count_log_lines(&["MQTT connected"]) >= restart
        })
        .await;
        assert!(
            connected,
            "no connection before restart {restart}:\n{}",
            gw.log()
        );
        // Up long enough to count as working (≥ 1 s, and its online status acknowledged,
        // which under qemu may take a while).
        tokio::time::sleep(Duration::from_millis(3000)).await;
        broker.restart().await;
        let seen = wait_until(Duration::from_secs(10), || {
            gw.count_log_lines(&lost) >= restart
        })
        .await;
        assert!(seen, "restart {restart} not noticed:\n{}", gw.log());
    }
    let back = wait_until(Duration::from_secs(20), || {
        gw.count_log_lines(&["MQTT connected"]) >= 6
    })
    .await;
    let log = gw.log();
    assert!(back, "no connection after the last restart:\n{log}");
    let delays = retry_delays_ms(&log, &lost);
    assert_eq!(delays.len(), 5, "{delays:?}\n{log}");
    for d in &delays {
        assert!(*d <= 500, "a first retry after {d} ms: {delays:?}\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_retained_refreshed_and_the_last_will_marks_a_killed_gateway_offline() {
    let broker = Mosquitto::start(free_port()).await;
    let mut gw = Gateway::start(
        GatewayConfig::new("gw-status", broker.port()).set("mqtt.status_interval_s", "1"),
    )
    .await;
    let topic = "fleetedge/gw-status/status";
    assert!(
        gw.wait_for_log_line(&["MQTT connected"], Duration::from_secs(10))
            .await
            .is_some(),
        "{}",
        gw.log()
    );
    // Once the first online status has reached one subscriber, the broker holds it, so a
    // subscriber that comes later gets it flagged retained. (Subscribing right after
    // "MQTT connected" races the first publish: a live copy has retain unset.)
    let early = Subscriber::start(broker.port(), "ops-status-early", topic).await;
    early
        .wait_for(Duration::from_secs(10), |m| m.json()["status"] == "online")
        .await
        .expect("a first online status");
    let late = Subscriber::start(broker.port(), "ops-status-late", topic).await;
    let online = late
        .wait_for(Duration::from_secs(5), |m| m.retain)
        .await
        .expect("a retained status");
    let v = online.json();
    assert_eq!(v["status"], "online", "{v}");
    assert_eq!(v["gateway_id"], "gw-status");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    for field in [
        "uptime_s",
        "buffer_records",
        "buffer_bytes",
        "connected_devices",
    ] {
        assert!(v[field].is_u64(), "{field} in {v}");
    }
    let time = v["time"].as_str().unwrap_or_default();
    assert!(
        time.len() == 24 && time.ends_with('Z'),
        "time {time:?} in {v}"
    );

    // Refreshed: with a device connected, a later status counts it.
    let mut device = Device::connect(gw.addr(), &imei(42, 0), Duration::from_secs(5))
        .await
        .expect("device login");
    let reply = device
        .send(&[avl_record(0, 0)], Duration::from_secs(10))
        .await
        .expect("count reply");
    assert_eq!(reply, 1);
    let refreshed = late
        .wait_for(Duration::from_secs(10), |m| {
            let v = m.json();
            v["status"] == "online" && v["connected_devices"] == 1 && !m.retain
        })
        .await;
    assert!(
        refreshed.is_some(),
        "no refreshed status: {:?}",
        late.messages()
    );
    let uptimes: Vec<u64> = late
        .messages()
        .iter()
        .filter_map(|m| m.json()["uptime_s"].as_u64())
        .collect();
    assert!(uptimes.windows(2).all(|w| w[0] <= w[1]), "{uptimes:?}");

    // SIGKILL: the broker publishes the last will, retained.
    gw.kill_9().await;
    let offline = late
        .wait_for(Duration::from_secs(10), |m| m.json()["status"] == "offline")
        .await
        .expect("the last will after SIGKILL");
    assert_eq!(
        offline.json(),
        serde_json::json!({"status": "offline", "gateway_id": "gw-status"})
    );
    let after = Subscriber::start(broker.port(), "ops-status-after", topic).await;
    let retained = after
        .wait_for(Duration::from_secs(5), |m| m.retain)
        .await
        .expect("a retained status after the kill");
    assert_eq!(retained.json()["status"], "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_rate_limit_holds() {
    let broker = Mosquitto::start(free_port()).await;
    let batches = Subscriber::start(broker.port(), "ops-rate-batches", RECORDS_TOPIC_FILTER).await;
    let gw = Gateway::start(
        GatewayConfig::new("gw-rate", broker.port())
            .set("uplink.max_messages_per_s", "5")
            .set("uplink.batch_max_records", "1")
            .set("uplink.linger_ms", "0"),
    )
    .await;
    let n = 25;
    // Upper bound only: in the T seconds from t0 the gateway publishes at most burst + rate × T
    // messages (burst = 5), plus one for clock edges, and a message can only arrive after it
    // was published; so however late deliveries are, at most that many arrive by t0 + T.
    // (Measured from the first arrival instead, a late first delivery followed by a catch-up
    // burst would count more.) Without the limit all 25 go at once: 25 > 16.
    let t0 = Instant::now();
    let window = Duration::from_secs(2);
    send_records(&gw, &imei(43, 0), 0, n).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + window)).await;
    let in_window = batches
        .messages()
        .iter()
        .filter(|m| m.at <= t0 + window)
        .count();
    assert!(
        in_window <= 5 + 5 * 2 + 1,
        "{in_window} batches within {window:?} at 5 messages/s"
    );
    // And every record still goes, at the limited pace.
    let all = wait_until(Duration::from_secs(20), || {
        batches.messages().len() >= n as usize
    })
    .await;
    assert!(all, "{} of {n} batches arrived", batches.messages().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_publishes_what_was_accepted_and_exits_0() {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "ops-shutdown-collector").await;
    let status = Subscriber::start(
        broker.port(),
        "ops-shutdown-status",
        "fleetedge/gw-shutdown/status",
    )
    .await;
    // A linger of a minute: only the shutdown's drain can publish these records in time.
    let mut gw = Gateway::start(
        GatewayConfig::new("gw-shutdown", broker.port())
            .set("uplink.linger_ms", "60000")
            .set("uplink.shutdown_publish_s", "5"),
    )
    .await;
    assert!(gw
        .wait_for_log_line(&["MQTT connected"], Duration::from_secs(10))
        .await
        .is_some());
    let keys: HashSet<_> = send_records(&gw, &imei(44, 0), 0, 30)
        .await
        .into_iter()
        .collect();
    let started = Instant::now();
    let clean = gw.stop_gracefully(Duration::from_secs(15)).await;
    assert!(clean, "no clean exit (code 0) after SIGTERM:\n{}", gw.log());
    // Bounded by shutdown_publish_s (+ the goodbye), not by the one-minute linger.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The broker acknowledged them before the process exited; delivery to the collector
    // follows within moments.
    let missing = collector.wait_for_all(&keys, Duration::from_secs(5)).await;
    assert_eq!(
        missing,
        0,
        "records accepted before SIGTERM missing:\n{}",
        gw.log()
    );
    // The gateway published the offline status itself and had its PUBACK within the goodbye
    // grace (`GOODBYE_GRACE` in src/uplink/publisher.rs), rather than leaving it to the will.
    let log = gw.log();
    assert!(
        log.contains("offline_status=\"acknowledged\"")
            || log.contains("offline_status=acknowledged"),
        "{log}"
    );
    let offline = status
        .wait_for(Duration::from_secs(10), |m| m.json()["status"] == "offline")
        .await;
    assert!(offline.is_some(), "{:?}", status.messages());
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_not_acknowledged_at_shutdown_stay_for_the_next_start() {
    let mut broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "ops-keep-collector").await;
    let mut gw = Gateway::start(GatewayConfig::new("gw-keep", broker.port())).await;
    assert!(gw
        .wait_for_log_line(&["MQTT connected"], Duration::from_secs(10))
        .await
        .is_some());
    broker.stop().await;
    let keys: HashSet<_> = send_records(&gw, &imei(45, 0), 0, 10)
        .await
        .into_iter()
        .collect();
    assert!(
        gw.stop_gracefully(Duration::from_secs(10)).await,
        "{}",
        gw.log()
    );
    broker.restart().await;
    gw.restart().await;
    let missing = collector.wait_for_all(&keys, Duration::from_secs(10)).await;
    assert_eq!(missing, 0, "records kept over the restart:\n{}", gw.log());
    let v: Vec<Value> = collector.every_record();
    assert_eq!(v.len(), keys.len(), "each record once");
}
