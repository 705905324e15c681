//! A device's whole life ([`run_device`]: connect, send, count only what was answered,
//! reconnect and resend on any failure) and a [`Fleet`] of them against one gateway.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmware_protocols::teltonika::encode::AvlRecord;

use super::delivery::{Ledger, SharedLedger};
use super::devices::{avl_record, imei, Device};
use super::ports::wait_until;

/// How a simulated device behaves.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub addr: SocketAddr,
    pub imei: String,
    pub index: usize,
    pub per_packet: usize,
    /// Stop after this many accepted records (`None`: until `stop` is set).
    pub total: Option<u64>,
    /// Pause after each answered packet.
    pub pace: Duration,
    /// How long to wait for a count reply before giving up on the connection and resending.
    pub reply_timeout: Duration,
    /// The device gives up (an error) after this.
    pub deadline: Instant,
}

/// Live counters of one device, readable while it runs.
#[derive(Debug, Default)]
pub struct DeviceProgress {
    pub accepted_records: AtomicU64,
    pub refused_packets: AtomicU64,
    pub reconnects: AtomicU64,
    /// Set while a packet waits for its reply: when it was written.
    pub waiting_since: Mutex<Option<Instant>>,
    pub done: AtomicBool,
    /// Set while the device holds back because of [`Controls::pause`].
    pub paused: AtomicBool,
}

/// What the test tells running devices.
#[derive(Debug, Default)]
pub struct Controls {
    /// Devices without a `total` finish after their current packet.
    pub stop: AtomicBool,
    /// Devices send no new packet while set (the current one still gets its reply).
    pub pause: AtomicBool,
}

impl DeviceProgress {
    /// How long the current packet has waited for its reply, if one is outstanding.
    pub fn waiting_for(&self) -> Option<Duration> {
        self.waiting_since.lock().unwrap().map(|t| t.elapsed())
    }
}

/// Runs a device like firmware does: log in, send packets of `per_packet` records, count a
/// packet's records as accepted only when the reply equals its record count, and on a
/// refusal (`0`), a timeout or a broken connection keep the packet and send it again (on a
/// new connection unless it was a refusal). Returns an error for anything a gateway must
/// never do (a reply other than 0 or the count) or when the deadline passes.
pub async fn run_device(
    plan: DevicePlan,
    ledger: SharedLedger,
    progress: Arc<DeviceProgress>,
    controls: Arc<Controls>,
) -> Result<(), String> {
    let mut k: u64 = 0;
    let mut conn: Option<Device> = None;
    let mut attempts: u64 = 0;
    loop {
        let finished = match plan.total {
            Some(total) => k >= total,
            None => controls.stop.load(Ordering::SeqCst),
        };
        if finished {
            progress.done.store(true, Ordering::SeqCst);
            return Ok(());
        }
        if Instant::now() > plan.deadline {
            return Err(format!(
                "device {} passed its deadline with {k} records accepted",
                plan.imei
            ));
        }
        if controls.pause.load(Ordering::SeqCst) {
            // Between packets only: nothing is outstanding while paused.
            progress.paused.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        progress.paused.store(false, Ordering::SeqCst);
        attempts += 1;
        if attempts > 100_000 {
            return Err(format!("device {}: too many attempts", plan.imei));
        }
        let n = match plan.total {
            Some(total) => (total - k).min(plan.per_packet as u64),
            None => plan.per_packet as u64,
        };
        let packet: Vec<AvlRecord> = (k..k + n).map(|i| avl_record(plan.index, i)).collect();
        let device = match conn.as_mut() {
            Some(d) => d,
            None => match Device::connect(plan.addr, &plan.imei, Duration::from_secs(3)).await {
                Ok(d) => conn.insert(d),
                Err(_) => {
                    progress.reconnects.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        ledger.lock().unwrap().sent(&plan.imei, &packet);
        *progress.waiting_since.lock().unwrap() = Some(Instant::now());
        let reply = match device.write_packet(&packet).await {
            Ok(()) => device.read_reply(plan.reply_timeout).await,
            Err(e) => Err(e),
        };
        *progress.waiting_since.lock().unwrap() = None;
        match reply {
            Ok(r) if u64::from(r) == n => {
                ledger.lock().unwrap().accepted(&plan.imei, &packet);
                progress.accepted_records.fetch_add(n, Ordering::SeqCst);
                k += n;
                if !plan.pace.is_zero() {
                    tokio::time::sleep(plan.pace).await;
                }
            }
            Ok(0) => {
                progress.refused_packets.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(other) => {
                return Err(format!(
                    "device {}: a packet of {n} records was answered {other}",
                    plan.imei
                ))
            }
            Err(_) => {
                conn = None;
                progress.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Several devices against one gateway, each in its own task.
pub struct Fleet {
    pub ledger: SharedLedger,
    pub progress: Vec<Arc<DeviceProgress>>,
    pub controls: Arc<Controls>,
    tasks: tokio::task::JoinSet<Result<(), String>>,
}

impl Fleet {
    pub fn start(plans: Vec<DevicePlan>) -> Fleet {
        let ledger = SharedLedger::default();
        let controls = Arc::new(Controls::default());
        let mut tasks = tokio::task::JoinSet::new();
        let mut progress = Vec::new();
        for plan in plans {
            let p = Arc::new(DeviceProgress::default());
            progress.push(p.clone());
            tasks.spawn(run_device(plan, ledger.clone(), p, controls.clone()));
        }
        Fleet {
            ledger,
            progress,
            controls,
            tasks,
        }
    }

    pub fn accepted_records(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.accepted_records.load(Ordering::SeqCst))
            .sum()
    }

    /// Holds every device between packets and waits (up to `timeout`) until all are held.
    pub async fn pause(&self, timeout: Duration) -> bool {
        self.controls.pause.store(true, Ordering::SeqCst);
        wait_until(timeout, || {
            self.progress
                .iter()
                .all(|p| p.paused.load(Ordering::SeqCst) || p.done.load(Ordering::SeqCst))
        })
        .await
    }

    pub fn resume(&self) {
        self.controls.pause.store(false, Ordering::SeqCst);
    }

    /// What the devices had accepted so far: the (device_id, time) of every accepted record.
    pub fn accepted_keys(&self) -> HashSet<(String, String)> {
        self.ledger.lock().unwrap().accepted_keys()
    }

    pub fn refused_packets(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.refused_packets.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits for every device to finish (within `timeout`); returns what they sent and
    /// their errors.
    pub async fn join(mut self, timeout: Duration) -> (Ledger, Vec<String>) {
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(Ok(())))) => {}
                Ok(Some(Ok(Err(e)))) => errors.push(e),
                Ok(Some(Err(e))) => errors.push(format!("device task: {e}")),
                Ok(None) => break,
                Err(_) => {
                    errors.push(format!("devices did not finish within {timeout:?}"));
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        let ledger = std::mem::take(&mut *self.ledger.lock().unwrap());
        (ledger, errors)
    }
}

/// The same plan for `devices` devices (IMEIs from `imei_base`, indexes 0..devices).
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub imei_base: u64,
    pub devices: usize,
    pub per_packet: usize,
    pub total: Option<u64>,
    pub pace: Duration,
    pub reply_timeout: Duration,
    pub run_for_at_most: Duration,
}

impl FleetSpec {
    pub fn plans(&self, addr: SocketAddr) -> Vec<DevicePlan> {
        let deadline = Instant::now() + self.run_for_at_most;
        (0..self.devices)
            .map(|index| DevicePlan {
                addr,
                imei: imei(self.imei_base, index),
                index,
                per_packet: self.per_packet,
                total: self.total,
                pace: self.pace,
                reply_timeout: self.reply_timeout,
                deadline,
            })
            .collect()
    }
}
