//! The buffer's operational behaviour, end to end: the real `fleetedge run` binary, a real
//! mosquitto, and simulated Teltonika devices.
//!
//! - `reject`: a full buffer answers count 0 for packets that do not fit, stores nothing for
//!   them, and accepts the resend once the broker is back and the backlog has drained; the
//!   alert level warns once on the way up and clears once on the way down.
//! - `drop_oldest`: every packet is acknowledged, the oldest records are dropped and counted
//!   (the stats log line's `buffer_dropped`), and the newest arrive.
//! - Disk reclaim: a 50k-record backlog taken while the broker is down makes sled's files
//!   grow to megabytes; once it has drained they fall back to an empty database's size, and
//!   seqs continue.
//! - Corruption: a buffer directory full of garbage is moved aside with a loud log and the
//!   gateway runs on a fresh one.
//!
//! The broker is started first so the collector's persistent session exists, then stopped:
//! the gateway fills its buffer with nowhere to publish, and when the broker comes back the
//! collector gets everything queued for it.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    avl_record, free_port, imei, stopped_broker, time_of, wait_until, Collector, Device, Gateway,
    GatewayConfig, Mosquitto,
};
use firmware_protocols::teltonika::encode::AvlRecord;

const REPLY: Duration = Duration::from_secs(10);
/// Upper bound for the uplink to drain a backlog to the broker once it is back.
const DRAIN: Duration = Duration::from_secs(60);

/// Records `from..to` of device `index`.
fn packet(index: usize, from: u64, to: u64) -> Vec<AvlRecord> {
    (from..to).map(|k| avl_record(index, k)).collect()
}

/// The collector's keys of records `from..to` of `imei`/`index`.
fn keys(imei: &str, index: usize, from: u64, to: u64) -> HashSet<(String, String)> {
    (from..to)
        .map(|k| (imei.to_string(), time_of(&avl_record(index, k))))
        .collect()
}

/// The gateway's buffer directory, from its config file.
fn buffer_path(gw: &Gateway) -> PathBuf {
    let text = gw.config_text();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("buffer.path = "))
        .expect("buffer.path in the gateway config");
    let value: String = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .expect("buffer.path is a TOML string")["v"]
        .as_str()
        .expect("buffer.path is a string")
        .to_string();
    PathBuf::from(value)
}

/// Bytes of every file under `path`.
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Names beside the buffer directory that start with its name plus `prefix` (e.g.
/// `.corrupt-`, `.reclaim-`).
fn siblings(buffer: &Path, prefix: &str) -> Vec<PathBuf> {
    let name = buffer.file_name().expect("a named buffer directory");
    let mut want = name.to_os_string();
    want.push(prefix);
    let want = want.to_string_lossy().into_owned();
    let Some(parent) = buffer.parent() else {
        return Vec::new();
    };
    std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&want))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `key=` in a log line (`buffer_dropped=800` → 800).
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Waits for a "stats" line whose fields satisfy `want`; returns it.
async fn stats_line(gw: &Gateway, want: impl Fn(&str) -> bool) -> Option<String> {
    let find = || {
        gw.log()
            .lines()
            .filter(|l| l.contains(" stats ") || l.ends_with(" stats"))
            .find(|l| want(l))
            .map(str::to_string)
    };
    wait_until(Duration::from_secs(10), || find().is_some()).await;
    find()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_refuses_what_does_not_fit_and_accepts_the_resend_after_the_drain() {
    let (mut broker, collector) = stopped_broker("collector-reject").await;
    let gw = Gateway::start(
        GatewayConfig::new("gw-reject", broker.port())
            .set("buffer.max_records", "256")
            .set("buffer.when_full", "\"reject\"")
            .set("buffer.alert_records", "150")
            .set("log.stats_interval_s", "1"),
    )
    .await;
    let id = imei(41, 0);
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");

    // 100 + 100 fit; the next 100 do not (300 > 256): count 0, and from then on every packet
    // is refused until the backlog drains to the low-water mark (90 %), even one that fits.
    assert_eq!(dev.send(&packet(0, 0, 100), REPLY).await.unwrap(), 100);
    assert_eq!(dev.send(&packet(0, 100, 200), REPLY).await.unwrap(), 100);
    assert_eq!(dev.send(&packet(0, 200, 300), REPLY).await.unwrap(), 0);
    assert_eq!(dev.send(&packet(0, 200, 220), REPLY).await.unwrap(), 0);

    // Nothing was stored for the refused packets.
    let line = stats_line(&gw, |l| field(l, "records_refused") == Some(120))
        .await
        .unwrap_or_else(|| panic!("no stats line with 120 refused:\n{}", gw.log()));
    assert_eq!(field(&line, "buffer_records"), Some(200), "{line}");
    assert_eq!(field(&line, "records_received"), Some(200), "{line}");
    assert!(line.contains("buffer_full=true"), "{line}");
    assert_eq!(
        gw.count_log_lines(&["reached the alert level"]),
        1,
        "one warning at 200 ≥ 150"
    );

    // The broker comes back: exactly the accepted records arrive.
    broker.restart().await;
    let accepted = keys(&id, 0, 0, 200);
    assert_eq!(collector.wait_for_all(&accepted, DRAIN).await, 0);
    let refused = keys(&id, 0, 200, 300);
    // Give a wrongly stored refused record the time to show up too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, errors, _) = collector.snapshot();
    assert!(errors.is_empty(), "{errors:?}");
    let leaked: Vec<_> = got
        .iter()
        .filter(|g| refused.contains(&(g.device_id.clone(), g.time.clone())))
        .collect();
    assert!(
        leaked.is_empty(),
        "refused records were published: {leaked:?}"
    );

    // The device resends what was refused; once the uplink's acks have emptied the buffer,
    // it is accepted.
    let mut resent = false;
    for _ in 0..100 {
        if dev.send(&packet(0, 200, 300), REPLY).await.unwrap() == 100 {
            resent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        resent,
        "the resend was still refused after the drain:\n{}",
        gw.log()
    );
    let all = keys(&id, 0, 0, 300);
    assert_eq!(collector.wait_for_all(&all, DRAIN).await, 0);
    assert_eq!(collector.unique_count(), 300);
    assert!(
        gw.wait_for_log_line(&["back below the alert level"], REPLY)
            .await
            .is_some(),
        "the alert never cleared:\n{}",
        gw.log()
    );
    assert_eq!(gw.count_log_lines(&["back below the alert level"]), 1);
    // Seqs strictly increase over everything published (none reused for refused packets).
    let (got, _, _) = collector.snapshot();
    let mut seqs: Vec<u64> = got.iter().map(|g| g.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 300);
    assert_eq!(
        seqs.last().unwrap() - seqs.first().unwrap(),
        299,
        "no seq spent on refusals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_acknowledges_everything_and_counts_what_it_drops() {
    let (mut broker, collector) = stopped_broker("collector-drop").await;
    let gw = Gateway::start(
        GatewayConfig::new("gw-drop", broker.port())
            .set("buffer.max_records", "256")
            .set("buffer.when_full", "\"drop_oldest\"")
            .set("log.stats_interval_s", "1"),
    )
    .await;
    let id = imei(42, 1);
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
    // Ten packets of 100 into a 256-record buffer: each is acknowledged in full; from the
    // third on, each makes room by dropping the oldest whole packet.
    for p in 0..10 {
        let n = dev
            .send(&packet(1, p * 100, p * 100 + 100), REPLY)
            .await
            .unwrap();
        assert_eq!(n, 100, "packet {p}");
    }
    // The last packet's room is made (800 dropped) a moment before it is stored and
    // counted as received, so a stats line can fall in between: wait for the settled one.
    let line = stats_line(&gw, |l| {
        field(l, "buffer_dropped") == Some(800) && field(l, "records_received") == Some(1000)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no stats line with buffer_dropped=800 and records_received=1000:\n{}",
            gw.log()
        )
    });
    assert_eq!(field(&line, "buffer_records"), Some(200), "{line}");

    broker.restart().await;
    let newest = keys(&id, 1, 800, 1000);
    assert_eq!(collector.wait_for_all(&newest, DRAIN).await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got, errors, _) = collector.snapshot();
    assert!(errors.is_empty(), "{errors:?}");
    let oldest = keys(&id, 1, 0, 800);
    let resurrected: Vec<_> = got
        .iter()
        .filter(|g| oldest.contains(&(g.device_id.clone(), g.time.clone())))
        .collect();
    assert!(
        resurrected.is_empty(),
        "dropped records arrived: {resurrected:?}"
    );
    assert_eq!(collector.unique_count(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_use_falls_back_near_empty_after_a_large_backlog_drains() {
    let (mut broker, collector) = stopped_broker("collector-reclaim").await;
    let gw = Gateway::start(
        GatewayConfig::new("gw-reclaim", broker.port())
            // The production keep-alive, not the harness's 5 s: while 50k records drain on a
            // loaded emulated run, the keep-alive (and the PUBACK deadline built on it) can
            // lapse and the connection be dropped mid-drain.
            .set("mqtt.keep_alive_s", "30")
            .set("buffer.reclaim_above_bytes", "1048576")
            .set("log.stats_interval_s", "1"),
    )
    .await;
    let buffer = buffer_path(&gw);
    // 50,000 records from four devices in packets of 250, with nowhere to publish them.
    const DEVICES: usize = 4;
    const PER_DEVICE: u64 = 12_500;
    let mut tasks = Vec::new();
    for index in 0..DEVICES {
        let addr = gw.addr();
        tasks.push(tokio::spawn(async move {
            let id = imei(43, index);
            let mut dev = Device::connect(addr, &id, REPLY).await.expect("login");
            for from in (0..PER_DEVICE).step_by(250) {
                let n = dev
                    .send(&packet(index, from, from + 250), REPLY)
                    .await
                    .expect("reply");
                assert_eq!(n, 250, "device {index} at {from}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("device task");
    }
    let full = dir_size(&buffer);
    assert!(
        full > 2 << 20,
        "50k records take only {full} bytes in {}",
        buffer.display()
    );

    broker.restart().await;
    let mut all = HashSet::new();
    for index in 0..DEVICES {
        all.extend(keys(&imei(43, index), index, 0, PER_DEVICE));
    }
    assert_eq!(collector.wait_for_all(&all, DRAIN).await, 0);

    // Once drained, the files go back to an empty database's size (one 512 KiB segment),
    // and nothing is left beside the directory.
    let back = wait_until(Duration::from_secs(20), || {
        dir_size(&buffer) <= 600 << 10 && siblings(&buffer, ".reclaim-").is_empty()
    })
    .await;
    assert!(
        back,
        "the buffer still takes {} bytes (was {full}); beside it: {:?}\n{}",
        dir_size(&buffer),
        siblings(&buffer, ".reclaim-"),
        gw.log()
    );
    let reclaimed = gw
        .wait_for_log_line(&["reclaimed its disk space"], REPLY)
        .await
        .unwrap_or_else(|| panic!("no reclaim log line:\n{}", gw.log()));
    println!(
        "buffer directory: {full} bytes with 50k records, {} after the drain; {reclaimed}",
        dir_size(&buffer)
    );

    // Seqs continue after the reclaim.
    let (got, errors, _) = collector.snapshot();
    assert!(errors.is_empty(), "{errors:?}");
    let last_seq = got.iter().map(|g| g.seq).max().expect("records arrived");
    let id = imei(43, 9);
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
    assert_eq!(dev.send(&packet(9, 0, 5), REPLY).await.unwrap(), 5);
    let after = keys(&id, 9, 0, 5);
    assert_eq!(collector.wait_for_all(&after, DRAIN).await, 0);
    let (got, _, _) = collector.snapshot();
    let new_seqs: Vec<u64> = got
        .iter()
        .filter(|g| g.device_id == id)
        .map(|g| g.seq)
        .collect();
    assert!(
        new_seqs.iter().all(|&s| s > last_seq),
        "seqs {new_seqs:?} do not continue after {last_seq}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_buffer_directory_is_moved_aside_and_the_gateway_runs() {
    let port = free_port();
    let _broker = Mosquitto::start(port).await;
    let collector = Collector::start(port, "collector-corrupt").await;
    let mut gw = Gateway::start(GatewayConfig::new("gw-corrupt", port)).await;
    let buffer = buffer_path(&gw);
    let id = imei(44, 0);
    {
        let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
        assert_eq!(dev.send(&packet(0, 0, 10), REPLY).await.unwrap(), 10);
    }
    assert_eq!(collector.wait_for_all(&keys(&id, 0, 0, 10), DRAIN).await, 0);

    // A power cut, and the files come back as garbage.
    gw.kill_9().await;
    let mut files = Vec::new();
    let mut dirs = vec![buffer.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("read the buffer directory")
            .flatten()
        {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert!(!files.is_empty(), "no files in {}", buffer.display());
    for file in &files {
        std::fs::write(file, vec![0xA5; 4096]).expect("overwrite a buffer file");
    }
    std::fs::write(buffer.join("conf"), b"this is not a sled config").expect("write conf");

    // It starts (Gateway::restart waits for the listener to accept) with a loud log, the
    // old directory moved aside, and records flow again.
    gw.restart().await;
    let line = gw
        .wait_for_log_line(
            &["ERROR", "buffer database is corrupt; moved it aside"],
            REPLY,
        )
        .await
        .unwrap_or_else(|| panic!("no corruption log line:\n{}", gw.log()));
    assert!(line.contains(".corrupt-"), "{line}");
    let aside = siblings(&buffer, ".corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("db").exists(), "the old files were not kept");
    assert!(buffer.join("db").exists(), "no fresh database");
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
    assert_eq!(dev.send(&packet(0, 10, 20), REPLY).await.unwrap(), 10);
    assert_eq!(
        collector.wait_for_all(&keys(&id, 0, 10, 20), DRAIN).await,
        0
    );
    assert!(gw.is_running());
}
