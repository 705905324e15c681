//! Every process-wide `fleetedge_*` metric, defined once: its name, help text and labels are
//! registered with a `prometheus_client` [`Registry`] in [`Metrics::new`], next to the field
//! the hot paths bump. `/metrics` ([`crate::ops::prometheus`]) encodes that registry, those of
//! `crate::clean::metrics` and `crate::commands::metrics` (each module owns its own) and the
//! buffer's gauges, which are read at scrape time; `fleetedge run` logs the same counters every
//! `log.stats_interval_s`, so an installer reading the journal sees the pipeline move.
//!
//! The hot paths stay allocation-free: a session finds its protocol's series once (a scan of
//! the registry's few names) and then bumps a counter handle (one relaxed atomic add); a TCP
//! listener takes its series' handles once at bind.
//!
//! Counters are registered without their `_total` suffix: the encoder appends it.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use firmware_protocols::registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

use crate::uplink::error::FailureReason;

/// A series' labels: (name, value) pairs in exposition order.
pub type Labels = Vec<(&'static str, String)>;
/// A gauge of counts (never negative).
pub type CountGauge = Gauge<u64, AtomicU64>;

/// Seconds from a batch's publish to its PUBACK: 5 ms (a LAN broker) to 60 s (a congested
/// cellular link; `mqtt.write_timeout_s` defaults to 60).
const PUBLISH_LATENCY_BOUNDS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide metrics; `/metrics` encodes [`Metrics::registry`].
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// Per registry protocol (slot `i` is `registry::PROTOCOLS[i]`): handles into the
    /// `fleetedge_records_received_total` and `fleetedge_decode_errors_total` families.
    pub protocols: Vec<ProtocolCounters>,
    /// `fleetedge_frames_skipped_total{protocol,type}`.
    frames_skipped: Family<Labels, Counter>,
    pub devices_refused: Counter,
    listener_connections_open: Family<Labels, CountGauge>,
    listener_connections_accepted: Family<Labels, Counter>,
    /// Records a device sent that the buffer refused (`when_full = "reject"`); shown as
    /// `fleetedge_records_dropped_total{reason="refused"}` next to the buffer's drops.
    pub records_refused: Counter,
    pub mqtt_connected: CountGauge,
    pub mqtt_connects: Counter,
    /// Slot `i` counts `FailureReason::ALL[i]`.
    mqtt_connection_failures: Vec<Counter>,
    /// Records `uplink.format = "ngp"` could not carry (no device time, a device id NGP
    /// refuses); they leave the buffer with the next acknowledged record.
    pub ngp_records_skipped: Counter,
    /// Records and batches acknowledged by the broker (PUBACK).
    pub records_published: Counter,
    pub batches_published: Counter,
    /// Batch bytes before and after compression, counted when a batch is sent.
    pub batch_json_bytes: Counter,
    pub batch_payload_bytes: Counter,
    pub publish_latency: Histogram,
}

/// Registers `metric` under `name` with `help` (written with its full stop; the registry
/// adds one) and returns it.
pub fn register<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help.strip_suffix('.').unwrap_or(help), metric.clone());
    metric
}

fn label(name: &'static str, value: &str) -> Labels {
    vec![(name, value.to_owned())]
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let r = &mut registry;
        // An info metric: the encoder appends `_info`.
        r.register(
            "fleetedge_build",
            "Always 1; the version label names the running fleetedge",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        // Ingest.
        let received: Family<Labels, Counter> = register(
            r,
            "fleetedge_records_received",
            "Records stored in the buffer (the device was answered \"accepted\"), by protocol.",
            Family::default(),
        );
        let malformed: Family<Labels, Counter> = register(
            r,
            "fleetedge_decode_errors",
            "Malformed frames (connection closed, or frame skipped and answered), by protocol.",
            Family::default(),
        );
        // Every protocol's series exists from the first scrape, zeros included.
        let protocols = registry::PROTOCOLS
            .iter()
            .map(|p| ProtocolCounters {
                records_received: received.get_or_create_owned(&label("protocol", p.name())),
                frames_malformed: malformed.get_or_create_owned(&label("protocol", p.name())),
            })
            .collect();
        let frames_skipped = register(
            r,
            "fleetedge_frames_skipped",
            "Well-formed frames of message types the decoder does not decode (skipped, not stored), by protocol and type (GT06 protocol number, Wialon packet type, …; at most 32 types per protocol, the rest as \"other\").",
            Family::default(),
        );
        let devices_refused = register(
            r,
            "fleetedge_devices_refused",
            "Devices refused because they are not in the listener's allowed_devices.",
            Counter::default(),
        );
        let listener_connections_open = register(
            r,
            "fleetedge_listener_connections_open",
            "Device connections open, by TCP listener (index in [[listeners]]) and protocol.",
            Family::default(),
        );
        let listener_connections_accepted = register(
            r,
            "fleetedge_listener_connections_accepted",
            "Device connections accepted, by TCP listener (index in [[listeners]]) and protocol.",
            Family::default(),
        );

        // Uplink.
        let mqtt_connected = register(
            r,
            "fleetedge_mqtt_connected",
            "1 while connected to the MQTT broker (CONNACK received), else 0.",
            CountGauge::default(),
        );
        let mqtt_connects = register(
            r,
            "fleetedge_mqtt_connects",
            "MQTT connections established; each one after the first is a reconnect.",
            Counter::default(),
        );
        let failures: Family<Labels, Counter> = register(
            r,
            "fleetedge_mqtt_connection_failures",
            "MQTT connections or connection attempts that ended in an error, by reason.",
            Family::default(),
        );
        let mqtt_connection_failures = FailureReason::ALL
            .iter()
            .map(|reason| failures.get_or_create_owned(&label("reason", reason.as_str())))
            .collect();
        let ngp_records_skipped = register(
            r,
            "fleetedge_ngp_records_skipped",
            "Records uplink.format = ngp could not carry (no device time, refused device id).",
            Counter::default(),
        );
        let records_published = register(
            r,
            "fleetedge_records_published",
            "Records in batches the broker acknowledged (PUBACK).",
            Counter::default(),
        );
        let batches_published = register(
            r,
            "fleetedge_batches_published",
            "Batches the broker acknowledged (PUBACK).",
            Counter::default(),
        );
        let batch_json_bytes = register(
            r,
            "fleetedge_batch_uncompressed_bytes",
            "Batch JSON bytes before compression, counted when a batch is sent.",
            Counter::default(),
        );
        let batch_payload_bytes = register(
            r,
            "fleetedge_batch_compressed_bytes",
            "Batch payload bytes after compression, counted when a batch is sent.",
            Counter::default(),
        );
        let publish_latency = register(
            r,
            "fleetedge_publish_latency_seconds",
            "Seconds from publishing a batch to its release after PUBACK.",
            Histogram::new(PUBLISH_LATENCY_BOUNDS),
        );

        Metrics {
            registry,
            protocols,
            frames_skipped,
            devices_refused,
            listener_connections_open,
            listener_connections_accepted,
            records_refused: Counter::default(),
            mqtt_connected,
            mqtt_connects,
            mqtt_connection_failures,
            ngp_records_skipped,
            records_published,
            batches_published,
            batch_json_bytes,
            batch_payload_bytes,
            publish_latency,
        }
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// An MQTT connection (or attempt) ended in an error.
pub fn mqtt_connection_failed(reason: FailureReason) {
    if let Some(c) = METRICS.mqtt_connection_failures.get(reason.index()) {
        c.inc();
    }
}

/// MQTT connections that ended in an error, all reasons (the "stats" line).
pub fn mqtt_connection_failures() -> u64 {
    METRICS
        .mqtt_connection_failures
        .iter()
        .map(Counter::get)
        .sum()
}

pub fn set_mqtt_connected(connected: bool) {
    METRICS.mqtt_connected.set(u64::from(connected));
}

pub fn mqtt_connected() -> bool {
    METRICS.mqtt_connected.get() == 1
}

/// Adds `n` to a counter.
pub fn add(counter: &Counter, n: u64) {
    counter.inc_by(n);
}

/// Subtracts one from a gauge, never below zero.
pub fn dec(gauge: &CountGauge) {
    let _ = gauge.inner().fetch_update(
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
        |v| v.checked_sub(1),
    );
}

pub fn get(counter: &Counter) -> u64 {
    counter.get()
}

/// One protocol's counters: handles into the per-protocol families.
#[derive(Debug)]
pub struct ProtocolCounters {
    /// Records stored in the buffer (devices were answered "accepted").
    pub records_received: Counter,
    /// Frames that failed to decode (closed the connection, or were skipped and answered).
    pub frames_malformed: Counter,
}

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
        METRICS.protocols.get(self.0)
    }
}

/// `n` records of `protocol` were stored.
pub fn records_received(protocol: Option<ProtocolId>, n: u64) {
    if let Some(c) = protocol.and_then(ProtocolId::counters) {
        add(&c.records_received, n);
    }
}

/// A frame of `protocol` failed to decode.
pub fn frame_malformed(protocol: Option<ProtocolId>) {
    if let Some(c) = protocol.and_then(ProtocolId::counters) {
        add(&c.frames_malformed, 1);
    }
}

/// Records stored and frames malformed, all protocols (the "stats" line).
pub fn protocol_totals() -> (u64, u64) {
    METRICS.protocols.iter().fold((0, 0), |(r, m), c| {
        (r + c.records_received.get(), m + c.frames_malformed.get())
    })
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

/// The skipped-frame series seen so far, by (registry position, message type), with their
/// counter handles. A short vector scanned under a mutex: a skipped frame is rare next to a
/// decoded one, and the set is bounded.
static SKIPPED: Mutex<Vec<(usize, String, Counter)>> = Mutex::new(Vec::new());

/// A well-formed frame of `message_type`, which `protocol`'s decoder does not decode.
pub fn frame_skipped(protocol: Option<ProtocolId>, message_type: &str) {
    let Some(ProtocolId(p)) = protocol else {
        return;
    };
    let Some(spec) = registry::PROTOCOLS.get(p) else {
        return;
    };
    let mut all = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = all
        .iter_mut()
        .find(|(q, t, _)| *q == p && t == message_type)
    {
        entry.2.inc();
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
        Some(entry) => {
            entry.2.inc();
        }
        None => {
            let labels = vec![
                ("protocol", spec.name().to_owned()),
                ("type", name.to_owned()),
            ];
            let counter = METRICS.frames_skipped.get_or_create_owned(&labels);
            counter.inc();
            all.push((p, name.to_owned(), counter));
        }
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
                    frames: n.get(),
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

/// One TCP listener's connection series, taken when it binds.
#[derive(Debug)]
pub struct ListenerCounters {
    /// The `[[listeners]]` entry's position in the config.
    pub index: usize,
    pub connections_open: CountGauge,
    pub connections_accepted: Counter,
}

static LISTENERS: Mutex<Vec<Arc<ListenerCounters>>> = Mutex::new(Vec::new());

/// Registers listener `index` (replacing an earlier registration of the same index, so a
/// re-bind in one process does not list it twice) and returns the series it bumps.
pub fn register_listener(index: usize, protocol: &str) -> Arc<ListenerCounters> {
    let labels = vec![
        ("listener", index.to_string()),
        ("protocol", protocol.to_owned()),
    ];
    let counters = Arc::new(ListenerCounters {
        index,
        connections_open: METRICS
            .listener_connections_open
            .get_or_create_owned(&labels),
        connections_accepted: METRICS
            .listener_connections_accepted
            .get_or_create_owned(&labels),
    });
    // A panic while holding this lock cannot leave the list inconsistent (push/retain).
    let mut all = LISTENERS.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|l| l.index != index);
    all.push(counters.clone());
    counters
}

/// Device connections open on all listeners.
pub fn connections_open() -> u64 {
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|l| l.connections_open.get())
        .sum()
}

/// A device connection was accepted on `listener`.
pub fn connection_opened(listener: &ListenerCounters) {
    listener.connections_accepted.inc();
    listener.connections_open.inc();
}

/// A device connection on `listener` ended.
pub fn connection_closed(listener: &ListenerCounters) {
    dec(&listener.connections_open);
}

/// A batch was released `d` after its publish.
pub fn publish_latency(d: Duration) {
    METRICS.publish_latency.observe(d.as_secs_f64());
}

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
        let before = protocol_totals().1;
        frame_problem(jsonl, &firmware_protocols::DecodeError::new(0, "bad"));
        assert!(protocol_totals().1 > before);
    }
}
