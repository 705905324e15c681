//! Process-wide counters, kept as relaxed atomics so the hot paths pay one add each.
//!
//! `fleetedge run` logs them every `log.stats_interval_s`, so an installer reading the
//! journal sees the pipeline move; `/metrics` ([`crate::ops`]) renders the same values, with
//! the per-protocol and per-listener counters and the publish latency histogram below.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use firmware_protocols::registry;

use crate::uplink::error::FailureReason;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Records stored in the buffer (devices were answered "accepted").
    pub records_received: AtomicU64,
    /// Records a device sent that the buffer refused (`when_full = "reject"`).
    pub records_refused: AtomicU64,
    /// Frames that failed to decode; each closed its connection.
    pub frames_malformed: AtomicU64,
    /// Well-formed frames of message types the decoders do not decode (by type:
    /// [`frames_skipped`]).
    pub frames_skipped: AtomicU64,
    /// Devices refused at login (allow-list).
    pub devices_refused: AtomicU64,
    /// Device connections accepted, and those currently open.
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    /// Records and batches acknowledged by the broker (PUBACK).
    pub records_published: AtomicU64,
    pub batches_published: AtomicU64,
    /// Batch bytes before and after compression, counted when a batch is sent.
    pub batch_json_bytes: AtomicU64,
    pub batch_payload_bytes: AtomicU64,
    /// MQTT connections that ended in an error (the sum of [`MQTT_CONNECTION_FAILURES`]).
    pub mqtt_connection_failures: AtomicU64,
    /// MQTT connections established (CONNACK); every one after the first is a reconnect.
    pub mqtt_connects: AtomicU64,
    pub mqtt_connected: AtomicBool,
    /// Records `uplink.format = "ngp"` could not carry (no device time, a device id NGP
    /// refuses); they leave the buffer with the next acknowledged record.
    pub ngp_records_skipped: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    records_received: AtomicU64::new(0),
    records_refused: AtomicU64::new(0),
    frames_malformed: AtomicU64::new(0),
    frames_skipped: AtomicU64::new(0),
    devices_refused: AtomicU64::new(0),
    connections_accepted: AtomicU64::new(0),
    connections_open: AtomicU64::new(0),
    records_published: AtomicU64::new(0),
    batches_published: AtomicU64::new(0),
    batch_json_bytes: AtomicU64::new(0),
    batch_payload_bytes: AtomicU64::new(0),
    mqtt_connection_failures: AtomicU64::new(0),
    mqtt_connects: AtomicU64::new(0),
    mqtt_connected: AtomicBool::new(false),
    ngp_records_skipped: AtomicU64::new(0),
};

/// MQTT connection failures by reason: slot `i` counts `FailureReason::ALL[i]`.
pub static MQTT_CONNECTION_FAILURES: [AtomicU64; FailureReason::ALL.len()] =
    [const { AtomicU64::new(0) }; FailureReason::ALL.len()];

/// An MQTT connection (or attempt) ended in an error: the total and the reason's counter.
pub fn mqtt_connection_failed(reason: FailureReason) {
    add(&METRICS.mqtt_connection_failures, 1);
    if let Some(c) = MQTT_CONNECTION_FAILURES.get(reason.index()) {
        add(c, 1);
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge, never below zero.
pub fn dec(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Per-protocol and per-listener counters, and the publish latency histogram, for `/metrics`.
//
// The hot paths stay allocation-free: a session finds its protocol's slot once (a scan of the
// registry's few names) and then only indexes a fixed array; a TCP listener registers its
// gauges once at bind and its connections bump them through an `Arc`.
// ---------------------------------------------------------------------------------------------

/// Protocols in the registry; per-protocol counters are indexed by registry position.
pub const PROTOCOL_COUNT: usize = registry::PROTOCOLS.len();

/// One protocol's counters.
#[derive(Debug)]
pub struct ProtocolCounters {
    /// Records stored in the buffer (devices were answered "accepted").
    pub records_received: AtomicU64,
    /// Frames that failed to decode (closed the connection, or were skipped and answered).
    pub frames_malformed: AtomicU64,
}

/// Slot `i` counts protocol `registry::PROTOCOLS[i]`.
pub static PROTOCOL_COUNTERS: [ProtocolCounters; PROTOCOL_COUNT] = [const {
    ProtocolCounters {
        records_received: AtomicU64::new(0),
        frames_malformed: AtomicU64::new(0),
    }
}; PROTOCOL_COUNT];

/// A protocol's position in the registry, looked up once per connection or listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolId(usize);

impl ProtocolId {
    /// `None` for a name the registry does not know (config validation rules that out).
    pub fn of(name: &str) -> Option<ProtocolId> {
        registry::PROTOCOLS
            .iter()
            .position(|p| p.name() == name)
            .map(ProtocolId)
    }

    pub fn counters(self) -> Option<&'static ProtocolCounters> {
        PROTOCOL_COUNTERS.get(self.0)
    }
}

/// `n` records of `protocol` were stored: the global counter and the protocol's.
pub fn records_received(protocol: Option<ProtocolId>, n: u64) {
    add(&METRICS.records_received, n);
    if let Some(c) = protocol.and_then(ProtocolId::counters) {
        add(&c.records_received, n);
    }
}

/// A frame of `protocol` failed to decode: the global counter and the protocol's.
pub fn frame_malformed(protocol: Option<ProtocolId>) {
    add(&METRICS.frames_malformed, 1);
    if let Some(c) = protocol.and_then(ProtocolId::counters) {
        add(&c.frames_malformed, 1);
    }
}

/// A frame the protocol stepped past: counted as skipped per message type when the decoder
/// named the type ([`DecodeError::skipped_type`]: well formed, not decoded), else as
/// malformed.
///
/// [`DecodeError::skipped_type`]: firmware_protocols::DecodeError
pub fn frame_problem(protocol: Option<ProtocolId>, problem: &firmware_protocols::DecodeError) {
    match &problem.skipped_type {
        Some(message_type) => frame_skipped(protocol, message_type),
        None => frame_malformed(protocol),
    }
}

/// Distinct message types counted per protocol; further types are counted under
/// [`OTHER_TYPES`], so the `type` label set stays bounded whatever devices send.
pub const MAX_SKIPPED_TYPES: usize = 32;
/// The `type` of skipped frames past [`MAX_SKIPPED_TYPES`] distinct ones.
pub const OTHER_TYPES: &str = "other";

/// Skipped frames by (registry position, message type). A short vector scanned under a
/// mutex: a skipped frame is rare next to a decoded one, and the set is bounded.
static SKIPPED: Mutex<Vec<(usize, String, u64)>> = Mutex::new(Vec::new());

/// A well-formed frame of `message_type`, which `protocol`'s decoder does not decode.
pub fn frame_skipped(protocol: Option<ProtocolId>, message_type: &str) {
    add(&METRICS.frames_skipped, 1);
    let Some(ProtocolId(p)) = protocol else {
        return;
    };
    let mut all = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = all
        .iter_mut()
        .find(|(q, t, _)| *q == p && t == message_type)
    {
        entry.2 += 1;
        return;
    }
    let distinct = all
        .iter()
        .filter(|(q, t, _)| *q == p && t != OTHER_TYPES)
        .count();
    let name = if distinct < MAX_SKIPPED_TYPES {
        message_type
    } else {
        OTHER_TYPES
    };
    match all.iter_mut().find(|(q, t, _)| *q == p && t == name) {
        Some(entry) => entry.2 += 1,
        None => all.push((p, name.to_owned(), 1)),
    }
}

/// One count of [`frames_skipped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSample {
    pub protocol: &'static str,
    pub message_type: String,
    pub frames: u64,
}

/// Skipped frames by protocol (registry order) and message type (sorted).
pub fn frames_skipped() -> Vec<SkippedSample> {
    let all = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out: Vec<(usize, SkippedSample)> = all
        .iter()
        .filter_map(|(p, t, n)| {
            let spec = registry::PROTOCOLS.get(*p)?;
            Some((
                *p,
                SkippedSample {
                    protocol: spec.name(),
                    message_type: t.clone(),
                    frames: *n,
                },
            ))
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.message_type).cmp(&(b.0, &b.1.message_type)));
    out.into_iter().map(|(_, s)| s).collect()
}

/// The skipped message types for the "stats" line: `gt06:0x8a=12 wialon:I=3`, or `-`.
pub fn skipped_summary() -> String {
    let all = frames_skipped();
    if all.is_empty() {
        return "-".to_owned();
    }
    all.iter()
        .map(|s| format!("{}:{}={}", s.protocol, s.message_type, s.frames))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One TCP listener's connection gauges, registered when it binds.
#[derive(Debug)]
pub struct ListenerCounters {
    /// The `[[listeners]]` entry's position in the config.
    pub index: usize,
    pub protocol: String,
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
}

static LISTENERS: Mutex<Vec<Arc<ListenerCounters>>> = Mutex::new(Vec::new());

/// Registers listener `index` (replacing an earlier registration of the same index, so a
/// re-bind in one process does not list it twice) and returns the gauges it bumps.
pub fn register_listener(index: usize, protocol: &str) -> Arc<ListenerCounters> {
    let counters = Arc::new(ListenerCounters {
        index,
        protocol: protocol.to_string(),
        connections_open: AtomicU64::new(0),
        connections_accepted: AtomicU64::new(0),
    });
    // A panic while holding this lock cannot leave the list inconsistent (push/retain).
    let mut all = LISTENERS.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|l| l.index != index);
    all.push(counters.clone());
    all.sort_by_key(|l| l.index);
    counters
}

/// Every registered listener, in config order.
pub fn listeners() -> Vec<Arc<ListenerCounters>> {
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// A device connection was accepted on `listener`: the global gauges and the listener's.
pub fn connection_opened(listener: &ListenerCounters) {
    add(&METRICS.connections_accepted, 1);
    add(&METRICS.connections_open, 1);
    add(&listener.connections_accepted, 1);
    add(&listener.connections_open, 1);
}

/// A device connection on `listener` ended.
pub fn connection_closed(listener: &ListenerCounters) {
    dec(&METRICS.connections_open);
    dec(&listener.connections_open);
}

/// A histogram of durations with fixed upper bounds (microseconds, ascending). Buckets are
/// stored non-cumulative, one relaxed add per observation; the count is the buckets' sum,
/// so a scrape never shows a `_count` that disagrees with the `+Inf` bucket.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds_us: [u64; N],
    buckets: [AtomicU64; N],
    /// Observations above the last bound (only in `+Inf`).
    overflow: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram read at one moment: `buckets` are (upper bound in seconds, cumulative count).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds_us: [u64; N]) -> Self {
        Histogram {
            bounds_us,
            buckets: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one observation; a bound is inclusive (Prometheus `le`).
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match self.bounds_us.iter().position(|&b| us <= b) {
            Some(i) => add(&self.buckets[i], 1),
            None => add(&self.overflow, 1),
        }
        add(&self.sum_us, us);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let buckets = self
            .bounds_us
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                cumulative = cumulative.saturating_add(get(n));
                (bound as f64 / 1e6, cumulative)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: cumulative.saturating_add(get(&self.overflow)),
            sum_seconds: get(&self.sum_us) as f64 / 1e6,
        }
    }
}

/// Seconds from a batch's publish to its PUBACK: 5 ms (a LAN broker) to 60 s (a congested
/// cellular link; `mqtt.write_timeout_s` defaults to 60).
pub static PUBLISH_LATENCY: Histogram<13> = Histogram::new([
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
]);

#[cfg(test)]
mod tests {
    use super::*;

    fn count(protocol: &str, message_type: &str) -> Option<u64> {
        frames_skipped()
            .into_iter()
            .find(|s| s.protocol == protocol && s.message_type == message_type)
            .map(|s| s.frames)
    }

    #[test]
    fn skipped_frames_are_counted_per_type_with_a_bounded_label_set() {
        // jsonl never skips a type itself, so this test owns its counts.
        let jsonl = ProtocolId::of("jsonl");
        frame_skipped(jsonl, "T0");
        frame_skipped(jsonl, "T0");
        assert_eq!(count("jsonl", "T0"), Some(2));
        for i in 0..MAX_SKIPPED_TYPES + 5 {
            frame_skipped(jsonl, &format!("T{i}"));
        }
        let types: Vec<_> = frames_skipped()
            .into_iter()
            .filter(|s| s.protocol == "jsonl")
            .collect();
        assert_eq!(types.len(), MAX_SKIPPED_TYPES + 1, "{types:?}");
        assert_eq!(count("jsonl", OTHER_TYPES), Some(5));
        assert_eq!(count("jsonl", "T0"), Some(3));
        assert!(skipped_summary().contains("jsonl:T0=3"));
        // A problem without a type is malformed, not skipped.
        let before = get(&METRICS.frames_malformed);
        frame_problem(jsonl, &firmware_protocols::DecodeError::new(0, "bad"));
        assert!(get(&METRICS.frames_malformed) > before);
    }
}
