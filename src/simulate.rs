//! `fleetedge simulate`: simulated Teltonika trackers against a gateway, for an installer's
//! site check and for load tests.
//!
//! Each device logs in with its IMEI, sends Codec 8 packets of `--per-packet` records and
//! waits for the gateway's count reply, exactly like firmware does; a refused packet (reply 0)
//! is kept and sent again. With `--watch-mqtt` the tool also subscribes to the broker and
//! counts every record that arrives, so one command proves the whole path, and reports
//! end-to-end records/s and payload bytes per record.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use firmware_protocols::teltonika::encode::{
    encode_avl_packet, encode_imei, AvlRecord, Codec, IoData,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::uplink::payload::decompress_payload;

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Device protocol to simulate.
    #[arg(long, default_value = "teltonika")]
    pub protocol: String,
    /// Gateway listener address.
    #[arg(long, default_value = "127.0.0.1:5027")]
    pub target: String,
    /// Simulated devices, each on its own connection.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Records each device sends.
    #[arg(long, default_value_t = 100)]
    pub records: u64,
    /// Records per second over all devices; 0 sends as fast as the gateway acknowledges.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Records per AVL packet.
    #[arg(long, default_value_t = 25)]
    pub per_packet: usize,
    /// AVL codec: 8 or 8e.
    #[arg(long, default_value = "8")]
    pub codec: String,
    /// First IMEI; device i uses this plus i.
    #[arg(long, default_value_t = 356_307_042_000_000)]
    pub first_imei: u64,
    /// Also subscribe to this broker (host:port) and count the records that reach it.
    #[arg(long, value_name = "HOST:PORT")]
    pub watch_mqtt: Option<String>,
    /// Topic filter for --watch-mqtt.
    #[arg(long, default_value = "fleetedge/+/records")]
    pub watch_topic: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Totals {
    sent_packets: AtomicU64,
    acked_records: AtomicU64,
    refused_packets: AtomicU64,
}

#[derive(Default)]
struct Watched {
    seen: HashSet<(String, i64)>,
    records: u64,
    payload_bytes: u64,
    batches: u64,
    last_at: Option<Instant>,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<bool> {
    if args.protocol != "teltonika" {
        bail!(
            "--protocol {:?}: only teltonika can be simulated",
            args.protocol
        );
    }
    let codec = match args.codec.as_str() {
        "8" => Codec::Codec8,
        "8e" | "8E" => Codec::Codec8Extended,
        other => bail!("--codec {other:?}: use 8 or 8e"),
    };
    if args.devices == 0 || args.per_packet == 0 || args.per_packet > 255 {
        bail!("--devices must be ≥ 1 and --per-packet between 1 and 255");
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let watched = Arc::new(Mutex::new(Watched::default()));
    let watcher = match &args.watch_mqtt {
        Some(addr) => Some(start_watch(addr, &args.watch_topic, watched.clone()).await?),
        None => None,
    };

    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let mut devices = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let (args, totals) = (args.clone(), totals.clone());
        devices.spawn(async move {
            let imei = (args.first_imei + i as u64).to_string();
            let result = run_device(&args, &imei, i, codec, &totals).await;
            result.with_context(|| format!("device {imei}"))
        });
    }
    let mut device_errors = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline.into(), devices.join_next()).await;
        match next {
            Ok(Some(Ok(Ok(())))) => {}
            Ok(Some(Ok(Err(e)))) => device_errors.push(format!("{e:#}")),
            Ok(Some(Err(e))) => device_errors.push(format!("device task: {e}")),
            Ok(None) => break,
            Err(_) => {
                device_errors.push("timed out before every device finished".into());
                devices.abort_all();
                break;
            }
        }
    }
    let sent_elapsed = started.elapsed();
    let acked = totals.acked_records.load(Ordering::Relaxed);
    let expected = args.records * args.devices as u64;

    if watcher.is_some() {
        while Instant::now() < deadline {
            if watched
                .lock()
                .map(|w| w.seen.len() as u64 >= acked)
                .unwrap_or(true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let w = watched
        .lock()
        .map_err(|_| anyhow::anyhow!("watch state poisoned"))?;
    let unique = w.seen.len() as u64;
    let e2e_secs = w
        .last_at
        .map_or(sent_elapsed, |t| t.saturating_duration_since(started))
        .as_secs_f64();
    let summary = serde_json::json!({
        "devices": args.devices,
        "records_acked": acked,
        "records_expected": expected,
        "packets_sent": totals.sent_packets.load(Ordering::Relaxed),
        "packets_refused": totals.refused_packets.load(Ordering::Relaxed),
        "send_seconds": sent_elapsed.as_secs_f64(),
        "acked_per_second": acked as f64 / sent_elapsed.as_secs_f64().max(1e-9),
        "watched": watcher.is_some(),
        "records_at_broker": unique,
        "duplicates_at_broker": w.records.saturating_sub(unique),
        "batches_at_broker": w.batches,
        "end_to_end_seconds": e2e_secs,
        "end_to_end_per_second": unique as f64 / e2e_secs.max(1e-9),
        "payload_bytes_per_record": w.payload_bytes as f64 / (w.records.max(1)) as f64,
        "errors": device_errors,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    let all_acked = acked == expected && device_errors.is_empty();
    let all_arrived = watcher.is_none() || unique >= acked;
    Ok(all_acked && all_arrived)
}

async fn run_device(
    args: &SimulateArgs,
    imei: &str,
    index: usize,
    codec: Codec,
    totals: &Totals,
) -> anyhow::Result<()> {
    let mut stream = connect(&args.target).await?;
    stream.write_all(&encode_imei(imei)).await?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .context("waiting for the IMEI answer")?;
    if answer[0] != 1 {
        bail!("gateway refused the IMEI (answered {:02x})", answer[0]);
    }
    let per_device_rate = args.rate / args.devices as f64;
    let packet_interval = (per_device_rate > 0.0)
        .then(|| Duration::from_secs_f64(args.per_packet as f64 / per_device_rate));
    let mut next_send = Instant::now();
    let mut sent = 0u64;
    while sent < args.records {
        let n = (args.records - sent).min(args.per_packet as u64) as usize;
        let records: Vec<AvlRecord> = (sent..sent + n as u64)
            .map(|k| fake_record(index, k))
            .collect();
        let packet = encode_avl_packet(codec, &records)
            .map_err(|e| anyhow::anyhow!("cannot encode a packet: {e:?}"))?;
        if let Some(interval) = packet_interval {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += interval;
        }
        loop {
            stream.write_all(&packet).await?;
            totals.sent_packets.fetch_add(1, Ordering::Relaxed);
            let mut reply = [0u8; 4];
            stream
                .read_exact(&mut reply)
                .await
                .context("waiting for the record count")?;
            let count = u32::from_be_bytes(reply) as usize;
            if count == n {
                break;
            }
            if count != 0 {
                bail!("gateway acknowledged {count} of {n} records");
            }
            // Refused (buffer full under `reject`): keep the data and retry, as firmware does.
            totals.refused_packets.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent += n as u64;
        totals.acked_records.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

async fn connect(target: &str) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for _ in 0..50 {
        match TcpStream::connect(target).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "cannot connect to {target}: {}",
        last.map_or_else(String::new, |e| e.to_string())
    )
}

/// A plausible drive: one fix a second, moving east, with the IO a typical FMB sends.
/// Record `k` of a device always has the same content, so a resend is a true duplicate.
pub fn fake_record(device: usize, k: u64) -> AvlRecord {
    let t0 = 1_767_225_600_000u64; // 2026-01-01T00:00:00Z
    let step = (k % 100_000) as i32;
    AvlRecord {
        timestamp_ms: t0 + k * 1000,
        priority: 0,
        lon: 250_000_000 + (device % 1000) as i32 * 10_000 + step * 37,
        lat: 546_872_833 - step * 11,
        altitude: 112 + (k % 7) as i16,
        angle: ((k * 3) % 360) as u16,
        satellites: 9 + (k % 4) as u8,
        speed: 40 + (k % 30) as u16,
        event_id: if k.is_multiple_of(50) { 239 } else { 0 },
        generation_type: 0,
        io: vec![
            (239, IoData::U8(1)),
            (240, IoData::U8(1)),
            (21, IoData::U8(4)),
            (66, IoData::U16(12_400 + (k % 64) as u16)),
            (16, IoData::U32(1_000_000 + (k as u32).wrapping_mul(12))),
        ],
    }
}

async fn start_watch(
    addr: &str,
    topic: &str,
    watched: Arc<Mutex<Watched>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--watch-mqtt {addr:?} is not host:port"))?;
    let id = format!("fleetedge-simulate-{}", std::process::id());
    let mut options = MqttOptions::new(id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await?;
    // Wait for SUBACK so no early batch is missed.
    let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match subscribed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("--watch-mqtt {addr}: {e}"),
        Err(_) => bail!("--watch-mqtt {addr}: no SUBACK within 10 s"),
    }
    Ok(tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(batch) = decode_watched(&p.payload) else {
                        tracing::warn!(topic = %p.topic, "undecodable payload");
                        continue;
                    };
                    let Ok(mut w) = watched.lock() else { return };
                    w.batches += 1;
                    w.payload_bytes += p.payload.len() as u64;
                    w.last_at = Some(Instant::now());
                    for r in batch.records {
                        w.records += 1;
                        w.seen.insert((r.device_id, time_key(&r.time)));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }))
}

/// Only what the watch counts; serde skips the rest without building values, which keeps
/// the load tool's CPU away from the gateway it measures.
#[derive(serde::Deserialize)]
struct WatchedBatch {
    records: Vec<WatchedRecord>,
}

#[derive(serde::Deserialize)]
struct WatchedRecord {
    device_id: String,
    time: String,
}

fn decode_watched(payload: &[u8]) -> std::io::Result<WatchedBatch> {
    let json = decompress_payload(payload)?;
    serde_json::from_slice(&json).map_err(std::io::Error::other)
}

/// A cheap distinct key for an RFC 3339 time string (only used for de-duplication).
fn time_key(s: &str) -> i64 {
    s.bytes().filter(u8::is_ascii_digit).fold(0i64, |acc, b| {
        acc.wrapping_mul(10).wrapping_add(i64::from(b - b'0'))
    })
}
