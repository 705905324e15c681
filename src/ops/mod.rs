//! Operations: what an operator, a scraper or a supervisor reads from a running gateway.
//!
//! - [`http`]: the endpoint (`/metrics`, `/health`, `/ready`, `/buffer/*`): its routes, on
//!   `http.bind` (loopback by default).
//! - [`serve`]: its connections, with hyper: deadlines and the connection limit.
//! - [`access`]: the Host check and the `/buffer/*` token.
//! - [`prometheus`]: the Prometheus text format and the `fleetedge_*` metrics (pure).
//!
//! The counters themselves live in [`crate::metrics`], where the hot paths bump them; this
//! module only reads them, once per scrape, into a [`Snapshot`].

pub mod access;
pub mod http;
pub mod prometheus;
pub mod serve;

use firmware_protocols::registry;

use crate::buffer::{Buffer, BufferStats};
use crate::metrics::{self, get, HistogramSnapshot, METRICS};
use crate::uplink::error::FailureReason;

/// Everything `/metrics` shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// One entry per registry protocol, in registry order (zeros included, so every series
    /// exists from the first scrape).
    pub protocols: Vec<ProtocolSample>,
    /// Frames of message types not decoded, by protocol and type (only those seen).
    pub frames_skipped: Vec<metrics::SkippedSample>,
    /// TCP listeners, in config order.
    pub listeners: Vec<ListenerSample>,
    pub devices_refused: u64,
    /// Records refused under `buffer.when_full = "reject"`.
    pub records_refused: u64,
    pub records_published: u64,
    pub batches_published: u64,
    pub batch_json_bytes: u64,
    pub batch_payload_bytes: u64,
    pub mqtt_connected: bool,
    pub mqtt_connects: u64,
    /// By reason, in `FailureReason::ALL` order (zeros included).
    pub mqtt_connection_failures: Vec<(&'static str, u64)>,
    pub ngp_records_skipped: u64,
    pub publish_latency: HistogramSnapshot,
    pub buffer: BufferStats,
    /// The buffer's commit thread is running (appends can complete).
    pub buffer_committer_alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolSample {
    pub name: &'static str,
    pub records_received: u64,
    pub frames_malformed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSample {
    pub index: usize,
    pub protocol: String,
    pub connections_open: u64,
    pub connections_accepted: u64,
}

impl Snapshot {
    /// Reads the process-wide counters and `buffer`'s stats. `BufferStats::disk_bytes` lists
    /// sled's files, so call this off the async workers (`spawn_blocking`).
    pub fn collect(buffer: &Buffer) -> Snapshot {
        let protocols = registry::PROTOCOLS
            .iter()
            .zip(&metrics::PROTOCOL_COUNTERS)
            .map(|(spec, c)| ProtocolSample {
                name: spec.name(),
                records_received: get(&c.records_received),
                frames_malformed: get(&c.frames_malformed),
            })
            .collect();
        let listeners = metrics::listeners()
            .iter()
            .map(|l| ListenerSample {
                index: l.index,
                protocol: l.protocol.clone(),
                connections_open: get(&l.connections_open),
                connections_accepted: get(&l.connections_accepted),
            })
            .collect();
        Snapshot {
            protocols,
            frames_skipped: metrics::frames_skipped(),
            listeners,
            devices_refused: get(&METRICS.devices_refused),
            records_refused: get(&METRICS.records_refused),
            records_published: get(&METRICS.records_published),
            batches_published: get(&METRICS.batches_published),
            batch_json_bytes: get(&METRICS.batch_json_bytes),
            batch_payload_bytes: get(&METRICS.batch_payload_bytes),
            mqtt_connected: METRICS
                .mqtt_connected
                .load(std::sync::atomic::Ordering::Relaxed),
            mqtt_connects: get(&METRICS.mqtt_connects),
            mqtt_connection_failures: FailureReason::ALL
                .iter()
                .zip(&metrics::MQTT_CONNECTION_FAILURES)
                .map(|(reason, n)| (reason.as_str(), get(n)))
                .collect(),
            ngp_records_skipped: get(&METRICS.ngp_records_skipped),
            publish_latency: metrics::PUBLISH_LATENCY.snapshot(),
            buffer: buffer.stats(),
            buffer_committer_alive: buffer.committer_alive(),
        }
    }
}
