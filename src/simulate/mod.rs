//! `fleetedge simulate`: simulated devices of any registry protocol against a gateway, for an
//! installer's site check and for load tests.
//!
//! # Layout
//!
//! - this file: the arguments, the driver (one task per device, the overall timeout, the
//!   exit verdict), the shared [`Device`] context (pacing, counters) and the summary.
//! - [`link`]: the byte stream a device talks over (TCP or `--serial`), with bounded reads.
//! - [`watch`]: `--watch-mqtt`, counting the simulated devices' records at the broker.
//! - [`teltonika`]: Teltonika over TCP (IMEI login, AVL packets, count replies) and over UDP
//!   (datagrams, 7-byte acks).
//! - [`gt06`]: GT06 login, locations, and the heartbeat whose echo confirms them.
//! - [`queclink`]: Queclink `GTFRI` reports and the `GTHBD` heartbeat whose `+SACK` confirms
//!   them (per-report `+SACK`s are checked too when the listener has `ack_reports`).
//! - [`wialon`]: Wialon IPS 2.0 login and black boxes, answered `#AL#` / `#AB#`; over UDP
//!   (`wialon-udp`) one black box per datagram, `2.0;imei` in front.
//! - [`lines`]: NMEA sentences and JSON lines, which nothing answers: paced and counted only.
//! - [`commands`]: how each device answers a downlink command, as its firmware does; every
//!   device answers commands whenever they arrive, and `--linger-s` keeps it connected after
//!   its last record to take them.
//!
//! Every device logs in the way its firmware does, sends `--records` records in chunks of
//! `--per-packet`, paced so that all devices together send `--rate` records/s, and checks
//! each answer the way the firmware would. A refusal is resent a few times, as firmware
//! does, and counted; a missing, wrong or late answer stops that device and is counted as a
//! failure. Any refusal or failure, a timeout, or (with `--watch-mqtt`) records missing at
//! the broker makes the run fail.

mod commands;
mod gt06;
mod lines;
mod link;
mod queclink;
mod teltonika;
mod watch;
mod wialon;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use firmware_protocols::registry::{self, Transport};
use firmware_protocols::teltonika::encode::Codec;
use firmware_protocols::Protocol;

use link::Target;

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Device protocol to simulate: any name of the protocol registry (teltonika,
    /// teltonika-udp, gt06, queclink, wialon, wialon-udp, nmea, jsonl).
    #[arg(long, default_value = "teltonika")]
    pub protocol: String,
    /// Gateway listener address [default: 127.0.0.1 and the protocol's usual port].
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Write to this serial device (or pty) instead of a network listener: one device, for
    /// a gateway's `[[serial]]` port. NMEA is serial-only.
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    pub serial: Option<PathBuf>,
    /// Baud rate for --serial.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// The `device_id` the gateway's serial port gives records whose frames carry none
    /// (nmea); --watch-mqtt counts records of this id.
    #[arg(long, default_value = firmware_protocols::nmea::FALLBACK_DEVICE_ID)]
    pub device_id: String,
    /// Simulated devices, each on its own connection.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Records each device sends.
    #[arg(long, default_value_t = 100)]
    pub records: u64,
    /// Records per second over all devices; 0 sends as fast as the gateway acknowledges.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Records per packet (Teltonika AVL packet, Wialon black box), or between the
    /// heartbeats that confirm them (GT06, Queclink); 1 to 255.
    #[arg(long, default_value_t = 25)]
    pub per_packet: usize,
    /// Teltonika AVL codec: 8 or 8e.
    #[arg(long, default_value = "8")]
    pub codec: String,
    /// First IMEI; device i uses this plus i.
    #[arg(long, default_value_t = 356_307_042_000_000)]
    pub first_imei: u64,
    /// Seconds to wait for each answer before counting it missing.
    #[arg(long, default_value_t = 10)]
    pub reply_timeout_s: u64,
    /// Also subscribe to this broker (host:port) and count the records that reach it.
    #[arg(long, value_name = "HOST:PORT")]
    pub watch_mqtt: Option<String>,
    /// Topic filter for --watch-mqtt.
    #[arg(long, default_value = "fleetedge/+/records")]
    pub watch_topic: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
    /// After its last record, each device stays connected this many seconds answering the
    /// commands the gateway sends (for command round trips); 0 ends at once. Devices answer
    /// commands whenever they arrive, as their firmware does.
    #[arg(long, default_value_t = 0)]
    pub linger_s: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A refused chunk is resent this many times before the device gives up.
const MAX_RESENDS: u32 = 3;
/// Pause before resending a refused chunk (the gateway's buffer was full).
const RESEND_PAUSE: Duration = Duration::from_millis(200);
/// Error lines kept for the summary.
const MAX_ERRORS: usize = 20;

/// Why a device stopped early.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The gateway said no: a negative answer, or a login it closed the connection on.
    Refused(String),
    /// No answer in time, a wrong answer, a lost connection, a failed write.
    Failed(String),
    /// The gateway closed the connection where an answer was due: a failure, unless the
    /// protocol has no other way to refuse (a GT06 login).
    Closed(String),
}

/// What the whole run decided, shared by every device.
#[derive(Debug)]
pub(crate) struct Plan {
    pub protocol: Protocol,
    pub target: Target,
    pub records: u64,
    pub per_packet: usize,
    pub codec: Codec,
    pub reply_timeout: Duration,
    /// Each device's interval between chunks, when --rate is set.
    pub chunk_interval: Option<Duration>,
    /// --linger-s.
    pub linger: Duration,
}

/// Counters over all devices.
#[derive(Default)]
pub(crate) struct Tally {
    sent: AtomicU64,
    acked: AtomicU64,
    resent: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    /// Downlink commands the devices answered.
    commands: Arc<AtomicU64>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, line: String) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < MAX_ERRORS {
                errors.push(line);
            }
        }
    }
}

/// One simulated device: its identity, the plan, pacing, and the shared counters.
pub(crate) struct Device {
    pub index: usize,
    pub id: String,
    pub plan: Arc<Plan>,
    tally: Arc<Tally>,
    next_chunk: Instant,
}

impl Device {
    /// The record ranges of this device's chunks, `--per-packet` records each.
    pub fn chunks(&self) -> impl Iterator<Item = Range<u64>> {
        let (total, size) = (self.plan.records, self.plan.per_packet as u64);
        (0..total.div_ceil(size)).map(move |i| i * size..((i + 1) * size).min(total))
    }

    /// Waits for this chunk's turn under --rate.
    pub async fn pace(&mut self) {
        if let Some(interval) = self.plan.chunk_interval {
            tokio::time::sleep_until(self.next_chunk.into()).await;
            self.next_chunk += interval;
        }
    }

    pub fn sent(&self, n: usize) {
        self.tally.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn acked(&self, n: usize) {
        self.tally.acked.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The `refusal`-th refusal of a chunk: counted and paused on, `Ok` to resend it; the
    /// last one allowed is the device's end (`Err`, counted by the driver).
    pub async fn refused(&self, refusal: u32, what: String) -> Result<(), Fault> {
        if refusal > MAX_RESENDS {
            return Err(Fault::Refused(format!("{what}, {refusal} times")));
        }
        self.tally.refused.fetch_add(1, Ordering::Relaxed);
        self.tally
            .error(format!("device {}: {what}; resending", self.id));
        tokio::time::sleep(RESEND_PAUSE).await;
        Ok(())
    }

    /// The counter of commands answered, for the link that answers them.
    pub fn commands_answered(&self) -> Arc<AtomicU64> {
        self.tally.commands.clone()
    }

    /// Records sent again (a refused chunk, a UDP datagram whose ack went missing).
    pub fn resent(&self, n: usize) {
        self.tally.resent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One point of a plausible drive: one fix a second, moving east. Record `k` of a device is
/// always the same point, so a resend is a true duplicate, and every record of a device has
/// its own time (what --watch-mqtt and the tests count by).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    pub time_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub altitude_m: f64,
    pub speed_kmh: f64,
    pub course_deg: f64,
    pub satellites: u8,
}

pub(crate) fn point(device: usize, k: u64) -> Point {
    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let step = (k % 100_000) as f64;
    Point {
        time_ms: T0 + k as i64 * 1000,
        lat: 54.687_283_3 - step * 1.1e-6,
        lon: 25.0 + (device % 1000) as f64 * 1e-3 + step * 3.7e-6,
        altitude_m: 112.0 + (k % 7) as f64,
        speed_kmh: 40.0 + (k % 30) as f64,
        course_deg: ((k * 3) % 360) as f64,
        satellites: 9 + (k % 4) as u8,
    }
}

/// Runs the simulation; `Ok(false)` when anything went wrong (the summary says what).
pub async fn run(args: SimulateArgs) -> anyhow::Result<bool> {
    let spec = registry::lookup(&args.protocol).with_context(|| {
        format!(
            "--protocol {:?}: use one of {}",
            args.protocol,
            registry::names().join(", ")
        )
    })?;
    let protocol = spec.protocol;
    let codec = match args.codec.as_str() {
        "8" => Codec::Codec8,
        "8e" | "8E" => Codec::Codec8Extended,
        other => bail!("--codec {other:?}: use 8 or 8e"),
    };
    if args.devices == 0 || args.per_packet == 0 || args.per_packet > 255 {
        bail!("--devices must be ≥ 1 and --per-packet between 1 and 255");
    }
    let target = match (&args.serial, &args.target, spec.transport) {
        (Some(_), _, Transport::Datagram(_)) => {
            bail!("--serial: {} runs over UDP, not a serial port", spec.name())
        }
        (Some(path), _, _) if args.devices == 1 => Target::Serial(path.clone(), args.baud),
        (Some(_), _, _) => bail!("--serial: a serial port carries one device; use --devices 1"),
        (None, _, _) if protocol == Protocol::Nmea => bail!(
            "--protocol nmea: the gateway reads NMEA from serial ports only (its TCP \
             listeners refuse nmea); use --serial <path>"
        ),
        (None, Some(addr), _) => Target::Net(addr.clone()),
        (None, None, _) => match spec.default_port {
            Some(port) => Target::Net(format!("127.0.0.1:{port}")),
            None => bail!(
                "--protocol {}: it has no usual port; give --target",
                spec.name()
            ),
        },
    };
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!(
            "--rate {}: must be 0 (as fast as answers come) or a positive number of records/s",
            args.rate
        );
    }
    let per_device_rate = args.rate / args.devices as f64;
    let chunk_interval = match per_device_rate > 0.0 {
        true => Some(
            Duration::try_from_secs_f64(args.per_packet as f64 / per_device_rate)
                .map_err(|_| anyhow::anyhow!("--rate {}: too low to pace", args.rate))?,
        ),
        false => None,
    };
    let plan = Arc::new(Plan {
        protocol,
        target,
        records: args.records,
        per_packet: args.per_packet,
        codec,
        reply_timeout: Duration::from_secs(args.reply_timeout_s.max(1)),
        chunk_interval,
        linger: Duration::from_secs(args.linger_s),
    });
    let ids: Vec<String> = (0..args.devices)
        .map(|i| match protocol {
            Protocol::Nmea => args.device_id.clone(),
            _ => (args.first_imei + i as u64).to_string(),
        })
        .collect();

    let deadline = Instant::now()
        .checked_add(Duration::from_secs(args.timeout_s))
        .ok_or_else(|| anyhow::anyhow!("--timeout-s {}: too large", args.timeout_s))?;
    let watcher = match &args.watch_mqtt {
        Some(addr) => Some(watch::Watcher::start(addr, &args.watch_topic, &ids).await?),
        None => None,
    };

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut devices = tokio::task::JoinSet::new();
    for (index, id) in ids.iter().enumerate() {
        let device = Device {
            index,
            id: id.clone(),
            plan: plan.clone(),
            tally: tally.clone(),
            next_chunk: Instant::now(),
        };
        devices.spawn(run_device(device));
    }
    let mut timed_out = false;
    loop {
        match tokio::time::timeout_at(deadline.into(), devices.join_next()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally.error(format!("device task: {e}"));
            }
            Ok(None) => break,
            Err(_) => {
                timed_out = true;
                tally.error(format!(
                    "timed out after {} s before every device finished",
                    args.timeout_s
                ));
                devices.abort_all();
                break;
            }
        }
    }
    let send_seconds = started.elapsed().as_secs_f64();

    let acks = acknowledges(protocol);
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (sent, acked) = (load(&tally.sent), load(&tally.acked));
    // What must reach the broker: what the gateway confirmed, or for protocols without
    // answers, everything written.
    let due = if acks { acked } else { sent };
    let seen = match &watcher {
        Some(w) => Some(w.wait_for(due, deadline).await),
        None => None,
    };
    let expected = args.records * args.devices as u64;
    let (refused, failed) = (load(&tally.refused), load(&tally.failed));
    let ok = !timed_out
        && refused == 0
        && failed == 0
        && sent == expected
        && (!acks || acked == expected)
        && seen.as_ref().is_none_or(|s| s.records >= due);

    let seen = seen.unwrap_or_default();
    let e2e_seconds = seen.last_at.map_or(send_seconds, |t| {
        t.saturating_duration_since(started).as_secs_f64()
    });
    let errors = tally.errors.lock().map(|e| e.clone()).unwrap_or_default();
    let summary = serde_json::json!({
        "protocol": spec.name(),
        "target": plan.target.to_string(),
        "devices": args.devices,
        "records_expected": expected,
        "records_sent": sent,
        "records_resent": load(&tally.resent),
        "acknowledges": acks,
        "records_acked": acked,
        "refused": refused,
        "failed": failed,
        "commands_answered": load(&tally.commands),
        "send_seconds": send_seconds,
        "acked_per_second": acked as f64 / send_seconds.max(1e-9),
        "watched": watcher.is_some(),
        "records_at_broker": seen.records,
        "duplicates_at_broker": seen.duplicates,
        "other_records_at_broker": seen.without_time,
        "batches_at_broker": seen.batches,
        "end_to_end_seconds": e2e_seconds,
        "end_to_end_per_second": seen.records as f64 / e2e_seconds.max(1e-9),
        "payload_bytes_per_record": seen.payload_bytes as f64 / seen.all_records().max(1) as f64,
        "ok": ok,
        "errors": errors,
    });
    if args.json {
        println!("{summary}");
    } else {
        print!("{}", human_summary(&summary));
    }
    Ok(ok)
}

/// Whether the protocol's firmware gets an answer that confirms its records.
fn acknowledges(protocol: Protocol) -> bool {
    !matches!(protocol, Protocol::Nmea | Protocol::Jsonl)
}

/// One device's whole life; what went wrong is counted in the tally.
async fn run_device(mut device: Device) {
    let result = match device.plan.protocol {
        Protocol::Teltonika => teltonika::run_tcp(&mut device).await,
        Protocol::TeltonikaUdp => teltonika::run_udp(&mut device).await,
        Protocol::Gt06 => gt06::run(&mut device).await,
        Protocol::Queclink => queclink::run(&mut device).await,
        Protocol::Wialon => wialon::run(&mut device).await,
        Protocol::WialonUdp => wialon::run_udp(&mut device).await,
        Protocol::Nmea | Protocol::Jsonl => lines::run(&mut device).await,
    };
    let (counter, what) = match result {
        Ok(()) => return,
        Err(Fault::Refused(why)) => (&device.tally.refused, format!("refused: {why}")),
        Err(Fault::Failed(why) | Fault::Closed(why)) => (&device.tally.failed, why),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    device.tally.error(format!("device {}: {what}", device.id));
}

/// The summary for a person: the counts, the verdict and the first errors.
fn human_summary(s: &serde_json::Value) -> String {
    let n = |key: &str| s[key].as_u64().unwrap_or(0);
    let mut out = format!(
        "fleetedge simulate: {} to {}, {} device(s) × {} record(s)\n",
        s["protocol"].as_str().unwrap_or("?"),
        s["target"].as_str().unwrap_or("?"),
        n("devices"),
        n("records_expected") / n("devices").max(1),
    );
    out.push_str(&format!(
        "  sent          {} record(s) ({} resent) in {:.1} s\n",
        n("records_sent"),
        n("records_resent"),
        s["send_seconds"].as_f64().unwrap_or(0.0)
    ));
    if s["acknowledges"] == true {
        out.push_str(&format!(
            "  acknowledged  {} record(s)\n",
            n("records_acked")
        ));
    } else {
        out.push_str("  acknowledged  - (the protocol has no answers)\n");
    }
    out.push_str(&format!("  refused       {}\n", n("refused")));
    out.push_str(&format!("  failed        {}\n", n("failed")));
    if n("commands_answered") > 0 {
        out.push_str(&format!(
            "  commands      {} answered\n",
            n("commands_answered")
        ));
    }
    if s["watched"] == true {
        out.push_str(&format!(
            "  at broker     {} record(s) (duplicates {}, other {}, batches {}, {:.0} records/s end to end)\n",
            n("records_at_broker"),
            n("duplicates_at_broker"),
            n("other_records_at_broker"),
            n("batches_at_broker"),
            s["end_to_end_per_second"].as_f64().unwrap_or(0.0)
        ));
    } else if s["acknowledges"] == false {
        out.push_str("  at broker     not checked: add --watch-mqtt to verify delivery\n");
    }
    let verdict = if s["ok"] == true { "OK" } else { "FAILED" };
    out.push_str(&format!("  result        {verdict}\n"));
    if let Some(errors) = s["errors"].as_array().filter(|e| !e.is_empty()) {
        out.push_str("errors:\n");
        for e in errors {
            out.push_str(&format!("  {}\n", e.as_str().unwrap_or_default()));
        }
    }
    out
}
