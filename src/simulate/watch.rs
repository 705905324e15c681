//! `--watch-mqtt`: subscribes to the broker before the devices start and counts the records
//! of the simulated devices that reach it, so one command proves the whole path.
//!
//! Records are counted once per (device id, device time): a batch resent after a broker
//! reconnect is counted as duplicates, not twice. Records of a simulated device without a
//! device time (GT06 heartbeats) are counted apart; records of other devices on the same
//! gateway are ignored.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::uplink::payload::decompress_payload;

/// What arrived so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    /// Distinct (device id, time) records of the simulated devices.
    pub records: u64,
    /// Records of theirs that arrived again.
    pub duplicates: u64,
    /// Records of theirs without a device time.
    pub without_time: u64,
    pub batches: u64,
    pub payload_bytes: u64,
    /// When the last batch arrived.
    pub last_at: Option<Instant>,
}

impl Seen {
    /// Every record of the simulated devices that arrived, duplicates included.
    pub fn all_records(&self) -> u64 {
        self.records + self.duplicates + self.without_time
    }
}

#[derive(Default)]
struct State {
    /// Each (device id, time) seen, as 128 bits of two independently keyed hashes: the load
    /// tool shares the cores with the gateway it measures, and keeping a million pairs of
    /// strings cost it a tenth of its CPU. A false "duplicate" needs two different records
    /// to collide in both halves (odds about 2^-128 per pair).
    keys: HashSet<u128>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
    seen: Seen,
}

impl State {
    fn key(&self, device_id: &str, time: &str) -> u128 {
        let half = |h: &std::hash::RandomState| h.hash_one((device_id, time));
        (u128::from(half(&self.hashers.0)) << 64) | u128::from(half(&self.hashers.1))
    }
}

pub(crate) struct Watcher {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// Connects to `addr` (host:port), subscribes to `topic` and returns once the broker
    /// confirmed the subscription, so no early batch is missed.
    pub async fn start(addr: &str, topic: &str, devices: &[String]) -> anyhow::Result<Watcher> {
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
        let devices: HashSet<String> = devices.iter().cloned().collect();
        let state = Arc::new(Mutex::new(State::default()));
        let task = {
            let state = state.clone();
            tokio::spawn(async move {
                let _client = client;
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let Ok(batch) = decode(&p.payload) else {
                                tracing::warn!(topic = %p.topic, "undecodable payload");
                                continue;
                            };
                            let Ok(mut s) = state.lock() else { return };
                            take(&mut s, &devices, batch, p.payload.len());
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })
        };
        Ok(Watcher { state, task })
    }

    /// Waits until `n` distinct records arrived or `deadline` passed; returns what arrived.
    pub async fn wait_for(&self, n: u64, deadline: Instant) -> Seen {
        loop {
            let seen = self.seen();
            if seen.records >= n || Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn seen(&self) -> Seen {
        self.state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }
}

fn take(s: &mut State, devices: &HashSet<String>, batch: Batch, payload_len: usize) {
    s.seen.batches += 1;
    s.seen.payload_bytes += payload_len as u64;
    s.seen.last_at = Some(Instant::now());
    for r in batch.records {
        if !devices.contains(&r.device_id) {
            continue;
        }
        let Some(time) = r.time else {
            s.seen.without_time += 1;
            continue;
        };
        let key = s.key(&r.device_id, &time);
        if s.keys.insert(key) {
            s.seen.records += 1;
        } else {
            s.seen.duplicates += 1;
        }
    }
}

/// Only what the watch counts; serde skips the rest without building values, which keeps
/// the load tool's CPU away from the gateway it measures.
#[derive(serde::Deserialize)]
struct Batch {
    records: Vec<WatchedRecord>,
}

#[derive(serde::Deserialize)]
struct WatchedRecord {
    device_id: String,
    time: Option<String>,
}

fn decode(payload: &[u8]) -> std::io::Result<Batch> {
    let json = decompress_payload(payload)?;
    serde_json::from_slice(&json).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[(&str, Option<&str>)]) -> Batch {
        Batch {
            records: records
                .iter()
                .map(|(d, t)| WatchedRecord {
                    device_id: d.to_string(),
                    time: t.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn records_are_counted_once_per_device_and_time() {
        let mut s = State::default();
        let devices: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        let t1 = Some("2026-12-07T10:00:00.000Z");
        let t2 = Some("2026-12-07T10:00:01.000Z");
        take(
            &mut s,
            &devices,
            batch(&[("a", t1), ("a", t2), ("b", t1)]),
            100,
        );
        // A resent batch, a record of another device, one without a time.
        take(
            &mut s,
            &devices,
            batch(&[("a", t1), ("x", t1), ("b", None)]),
            50,
        );
        let seen = &s.seen;
        assert_eq!(
            (
                seen.records,
                seen.duplicates,
                seen.without_time,
                seen.batches
            ),
            (3, 1, 1, 2)
        );
        assert_eq!(seen.payload_bytes, 150);
    }
}
