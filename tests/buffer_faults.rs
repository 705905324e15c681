//! Faults of the buffer's disk, end to end with the real binary and a real mosquitto:
//!
//! - A full disk (a 3 MiB tmpfs, `min_free_bytes = 0` so sled runs into ENOSPC): devices are
//!   refused cleanly (count 0), `/health` and `/ready` say the buffer is failing, and once
//!   the tmpfs is grown the gateway recovers *without a restart*; with the broker back every
//!   acknowledged record arrives, none more than twice.
//! - `min_free_bytes`: on a 4 MiB tmpfs the gateway refuses before the disk is full (no
//!   write ever fails), `/ready` says why, and it accepts again once there is room.
//! - Damaged sled files after SIGKILL (random bytes at 25 % and 90 % of the data file, the
//!   file truncated to half): every acknowledged record is delivered or counted as lost
//!   (`lost_records` of `/buffer/stats`), and no seq is handed out twice.
//!
//! The tmpfs tests need root (`mount -t tmpfs`); CI runs as root. Elsewhere they print why
//! they were skipped and pass.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    accepts_tcp, avl_record, imei, loopback, stopped_broker, time_of, toml_string, wait_until,
    Collector, Device, Gateway, GatewayConfig,
};
use firmware_protocols::teltonika::encode::AvlRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPLY: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(90);
/// Records per packet.
const PER_PACKET: u64 = 50;

/// A tmpfs mounted on a fresh temp dir; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a note on stderr) when not root or when mounting is not allowed here.
    fn mount(size: &str) -> Option<Tmpfs> {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
            })
            .unwrap_or(false);
        if !root {
            eprintln!("SKIPPED: needs root to mount a tmpfs (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// "Space returns": the filesystem grows.
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remounting the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `GET path`: (status, body), bounded to 5 s.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(loopback(port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer in 5 s"))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// The port of the gateway's `http.bind`, from its config.
fn http_port(gw: &Gateway) -> u16 {
    gw.config_text()
        .lines()
        .find_map(|l| l.strip_prefix("http.bind = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse().ok())
        .expect("http.bind in the gateway config")
}

async fn buffer_stats(gw: &Gateway) -> serde_json::Value {
    let port = http_port(gw);
    // After a restart over a damaged database the endpoint comes up only once the buffer
    // has been opened, compared with its mark and salvaged (seconds under qemu).
    let up = wait_until_async(Duration::from_secs(120), || accepts_tcp(port)).await;
    assert!(up, "the HTTP endpoint never accepted:\n{}", gw.log());
    let (status, body) = http_get(port, "/buffer/stats").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

/// The records of packet `n` of device `index`.
fn packet(index: usize, n: u64) -> Vec<AvlRecord> {
    (n * PER_PACKET..(n + 1) * PER_PACKET)
        .map(|k| avl_record(index, k))
        .collect()
}

/// Sends packets `from..` until one is refused (count 0) or `max` were accepted; reconnects
/// when the gateway closes the connection (a failed append). Returns the packets accepted.
async fn send_until_refused(gw: &Gateway, id: &str, index: usize, from: u64, max: u64) -> Vec<u64> {
    let mut accepted = Vec::new();
    let mut dev = None;
    let mut n = from;
    let mut reconnects = 0;
    while (accepted.len() as u64) < max {
        if dev.is_none() {
            dev = Some(Device::connect(gw.addr(), id, REPLY).await.expect("login"));
        }
        let Some(d) = dev.as_mut() else { continue };
        match d.send(&packet(index, n), REPLY).await {
            Ok(count) if count == PER_PACKET as u32 => {
                accepted.push(n);
                n += 1;
            }
            Ok(0) => return accepted,
            Ok(other) => panic!("packet {n} answered {other}"),
            // The append failed and the connection was closed: the device resends.
            Err(_) => {
                dev = None;
                reconnects += 1;
                assert!(reconnects < 20, "the gateway keeps closing connections");
            }
        }
    }
    accepted
}

/// How many times each record (device, time) of `accepted` packets arrived.
fn deliveries(collector: &Collector, id: &str, index: usize, accepted: &[u64]) -> Vec<usize> {
    let (got, errors, _) = collector.snapshot();
    assert!(errors.is_empty(), "batches broke the contract: {errors:?}");
    let mut count: HashMap<String, usize> = HashMap::new();
    for g in got.iter().filter(|g| g.device_id == id) {
        *count.entry(g.time.clone()).or_default() += 1;
    }
    accepted
        .iter()
        .flat_map(|&n| packet(index, n))
        .map(|r| count.get(&time_of(&r)).copied().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_cleanly_and_recovers_without_a_restart() {
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let (mut broker, collector) = stopped_broker("collector-enospc").await;
    let buffer = fs.path().join("buffer");
    let config = GatewayConfig::new("gw-enospc", broker.port())
        .set("buffer.path", &toml_string(&buffer.display().to_string()))
        .set("buffer.min_free_bytes", "0")
        .set("buffer.when_full", "\"reject\"");
    let mut gw = Gateway::start(config).await;
    let id = imei(61, 0);

    // Fill the disk until sled's writes fail and the gateway refuses.
    let mut accepted = send_until_refused(&gw, &id, 0, 0, 4000).await;
    assert!(
        gw.wait_for_log_line(&["ERROR", "writes are failing"], REPLY)
            .await
            .is_some(),
        "sled never ran out of space ({} packets accepted):\n{}",
        accepted.len(),
        gw.log()
    );
    let port = http_port(&gw);
    let (status, body) = http_get(port, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("failing"), "{body}");
    let (status, body) = http_get(port, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("buffer refusing records"), "{body}");
    // Still refused, cleanly (count 0), not hanging.
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
    let next = accepted.last().map_or(0, |n| n + 1);
    assert_eq!(dev.send(&packet(0, next), REPLY).await.expect("answer"), 0);

    // Space returns: the database is reopened in the running process.
    fs.grow("64m");
    assert!(
        gw.wait_for_log_line(&["buffer recovered"], DRAIN)
            .await
            .is_some(),
        "no recovery:\n{}",
        gw.log()
    );
    assert_eq!(http_get(port, "/health").await.0, 200);
    assert_eq!(dev.send(&packet(0, next), REPLY).await.expect("answer"), 50);
    accepted.push(next);

    // The broker is back: everything acknowledged arrives, at most twice.
    broker.restart().await;
    let want = accepted.len() * PER_PACKET as usize;
    let arrived = wait_until(DRAIN, || {
        deliveries(&collector, &id, 0, &accepted)
            .iter()
            .all(|&n| n > 0)
    })
    .await;
    let counts = deliveries(&collector, &id, 0, &accepted);
    let missing = counts.iter().filter(|&&n| n == 0).count();
    assert!(
        arrived,
        "{missing} of {want} acknowledged records never arrived"
    );
    let most = counts.iter().copied().max().unwrap_or(0);
    assert!(most <= 2, "a record arrived {most} times");
    assert!(gw.is_running());
    assert_eq!(gw.count_log_lines(&["buffer opened"]), 1, "it restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn min_free_bytes_refuses_before_the_disk_is_full_and_accepts_once_there_is_room() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let (mut broker, collector) = stopped_broker("collector-min-free").await;
    let buffer = fs.path().join("buffer");
    let config = GatewayConfig::new("gw-min-free", broker.port())
        .set("buffer.path", &toml_string(&buffer.display().to_string()))
        .set("buffer.min_free_bytes", "2097152")
        .set("buffer.when_full", "\"reject\"");
    let mut gw = Gateway::start(config).await;
    let id = imei(62, 0);

    let mut accepted = send_until_refused(&gw, &id, 0, 0, 4000).await;
    assert!(
        !accepted.is_empty() && accepted.len() < 4000,
        "{}",
        accepted.len()
    );
    let (status, body) = http_get(http_port(&gw), "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("low disk space"), "{body}");
    assert_eq!(http_get(http_port(&gw), "/health").await.0, 200);
    let stats = buffer_stats(&gw).await;
    assert!(stats["refusing"].as_str().is_some(), "{stats}");
    assert_eq!(
        gw.count_log_lines(&["writes are failing"]),
        0,
        "sled hit the full disk"
    );

    fs.grow("64m");
    let next = accepted.last().map_or(0, |n| n + 1);
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
    // The free space is measured again within 250 ms; poll, bounded.
    let mut count = 0;
    for _ in 0..50 {
        count = dev.send(&packet(0, next), REPLY).await.expect("answer");
        if count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 50, "still refused with room on the disk");
    accepted.push(next);

    broker.restart().await;
    let arrived = wait_until(DRAIN, || {
        deliveries(&collector, &id, 0, &accepted)
            .iter()
            .all(|&n| n > 0)
    })
    .await;
    assert!(arrived, "acknowledged records never arrived");
    assert!(gw.is_running());
}

/// Deterministic bytes (xorshift), so a failure can be reproduced.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// 4 KiB of noise at this percentage of the data file.
    NoiseAt(u64),
    /// The data file cut to half.
    TruncateHalf,
}

fn damage(db: &Path, how: Damage) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(db).expect("sled's data file").len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("open sled's data file");
    match how {
        Damage::NoiseAt(percent) => {
            file.seek(SeekFrom::Start(len * percent / 100))
                .expect("seek");
            file.write_all(&noise(len ^ percent, 4096)).expect("write");
        }
        Damage::TruncateHalf => file.set_len(len / 2).expect("truncate"),
    }
    file.sync_all().expect("sync");
}

async fn damaged_files_lose_nothing_silently(how: Damage, tag: u64) {
    let (mut broker, collector) = stopped_broker(&format!("collector-damage-{tag}")).await;
    let mut gw = Gateway::start(GatewayConfig::new(
        &format!("gw-damage-{tag}"),
        broker.port(),
    ))
    .await;
    let buffer = PathBuf::from(
        buffer_stats(&gw).await["path"]
            .as_str()
            .expect("path")
            .to_string(),
    );
    let id = imei(63, tag as usize);
    let mut accepted = send_until_refused(&gw, &id, tag as usize, 0, 60).await;
    assert_eq!(accepted.len(), 60);
    let next_before = buffer_stats(&gw).await["next_seq"]
        .as_u64()
        .expect("next_seq");

    gw.kill_9().await;
    damage(&buffer.join("db"), how);
    gw.restart().await;
    let stats = buffer_stats(&gw).await;
    let lost = stats["lost_records"].as_u64().expect("lost_records");
    if lost > 0 {
        assert!(
            gw.count_log_lines(&["ERROR", "MISSING"]) > 0
                || gw.count_log_lines(&["ERROR", "corrupt"]) > 0,
            "a loss without an ERROR:\n{}",
            gw.log()
        );
    }

    // New records get seqs above every seq handed out before the kill.
    let mut dev = Device::connect(gw.addr(), &id, REPLY).await.expect("login");
    assert_eq!(
        dev.send(&packet(tag as usize, 60), REPLY)
            .await
            .expect("answer"),
        50
    );
    accepted.push(60);

    broker.restart().await;
    let total = accepted.len() as u64 * PER_PACKET;
    let settled = wait_until(DRAIN, || {
        let arrived = deliveries(&collector, &id, tag as usize, &accepted)
            .iter()
            .filter(|&&n| n > 0)
            .count() as u64;
        arrived + lost >= total
    })
    .await;
    let arrived = deliveries(&collector, &id, tag as usize, &accepted)
        .iter()
        .filter(|&&n| n > 0)
        .count() as u64;
    assert!(
        settled,
        "{how:?}: {arrived} of {total} acknowledged records arrived and {lost} were reported \
         lost: {} vanished silently",
        total - arrived - lost
    );
    let (got, _, _) = collector.snapshot();
    let new_times: Vec<String> = packet(tag as usize, 60).iter().map(time_of).collect();
    let mut by_seq: HashMap<u64, &serde_json::Value> = HashMap::new();
    for g in got.iter().filter(|g| g.device_id == id) {
        if new_times.contains(&g.time) {
            assert!(
                g.seq >= next_before,
                "{how:?}: seq {} reused (next was {next_before})",
                g.seq
            );
        }
        if let Some(other) = by_seq.insert(g.seq, &g.record) {
            assert_eq!(
                other, &g.record,
                "{how:?}: seq {} carries two records",
                g.seq
            );
        }
    }
    // A database that opened with records missing was kept aside, and the export tool
    // reads it as it is (while the gateway runs on the new one).
    let parent = buffer.parent().expect("buffer.path has a parent");
    let kept: Vec<PathBuf> = std::fs::read_dir(parent)
        .expect("read the buffer's parent")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("buffer.damaged-"))
        .collect();
    if let Some(dir) = kept.first() {
        let config = parent.join("export.toml");
        std::fs::write(&config, gw.config_text()).expect("write a config copy");
        let out = common::gateway_command()
            .args(["buffer", "export", "--config"])
            .arg(&config)
            .arg("--from")
            .arg(dir)
            .output()
            .expect("run fleetedge buffer export --from");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "export --from failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = stdout
            .lines()
            .filter(|l| l.starts_with("{\"seq\":"))
            .count();
        assert!(
            lines > 0,
            "{how:?}: nothing exported from {}",
            dir.display()
        );
        assert!(dir.is_dir(), "export --from moved what it read");
    }
    eprintln!("{how:?}: {arrived} of {total} arrived, {lost} reported lost, kept aside: {kept:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn noise_at_a_quarter_of_the_data_file() {
    damaged_files_lose_nothing_silently(Damage::NoiseAt(25), 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn noise_near_the_end_of_the_data_file() {
    damaged_files_lose_nothing_silently(Damage::NoiseAt(90), 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_file_truncated_to_half() {
    damaged_files_lose_nothing_silently(Damage::TruncateHalf, 3).await;
}
