//! Alarms go first, with the real binary and mosquitto: a backlog is buffered while the
//! broker is down, a crash alarm (Teltonika AVL id 247, Crash Detection) is stored behind
//! it, and when the broker comes back the alarm reaches the subscriber ahead of the
//! backlog's older records, exactly once, with the seq it was stored under.

mod common;

use std::time::Duration;

use common::*;
use firmware_protocols::teltonika::encode::IoData;

const REPLY: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_stored_behind_a_backlog_arrives_before_it_exactly_once() {
    let (mut broker, collector) = stopped_broker("collector-alarms-first").await;
    let gw = Gateway::start(
        GatewayConfig::new("gw-alarms", broker.port()).set("uplink.batch_max_records", "50"),
    )
    .await;
    let id = imei(61, 0);
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");

    // The backlog: 600 positions in packets of 100 (12 batches of 50 once the broker is back).
    for first in (0..600).step_by(100) {
        let packet: Vec<_> = (first..first + 100).map(|k| avl_record(0, k)).collect();
        assert_eq!(dev.send(&packet, REPLY).await.unwrap(), 100);
    }
    // Then the alarm: a record triggered by Crash Detection = 1.
    let mut crash = avl_record(0, 600);
    crash.event_id = 247;
    crash.io.push((247, IoData::U8(1)));
    assert_eq!(dev.send(&[crash.clone()], REPLY).await.unwrap(), 1);

    broker.restart().await;
    let mut all: std::collections::HashSet<(String, String)> = (0..600)
        .map(|k| (id.clone(), time_of(&avl_record(0, k))))
        .collect();
    all.insert((id.clone(), time_of(&crash)));
    assert_eq!(collector.wait_for_all(&all, DRAIN).await, 0, "{}", gw.log());

    let (got, errors, _) = collector.snapshot();
    assert!(errors.is_empty(), "{errors:?}");
    // Exactly once: every record arrived once (the alarm is not sent again by the backlog).
    assert_eq!(got.len(), 601, "duplicates arrived");
    let crash_time = time_of(&crash);
    let at = got
        .iter()
        .position(|g| g.time == crash_time)
        .expect("the alarm arrived");
    let alarm_seq = got[at].seq;
    // It was stored last, so every other record has a lower seq: it overtook the backlog.
    assert!(got.iter().all(|g| g.seq <= alarm_seq));
    // The connection's first read of the backlog (one batch) may go out with the online
    // status before the alarms are read; the alarm comes right after, well ahead of the rest.
    assert!(
        at <= 50,
        "the alarm arrived as record {at} of 601, behind most of the backlog"
    );
    assert_eq!(got[at].record["event"], "io:247");
    assert!(
        got[at + 1..].iter().any(|g| g.seq < alarm_seq),
        "older records arrived after the alarm"
    );
}
