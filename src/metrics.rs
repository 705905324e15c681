//! Process-wide counters, kept as relaxed atomics so the hot paths pay one add each.
//!
//! `fleetedge run` logs them every `log.stats_interval_s`, so an installer reading the
//! journal sees the pipeline move; an HTTP exporter can read the same values.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Records stored in the buffer (devices were answered "accepted").
    pub records_received: AtomicU64,
    /// Records a device sent that the buffer refused (`when_full = "reject"`).
    pub records_refused: AtomicU64,
    /// Frames that failed to decode; each closed its connection.
    pub frames_malformed: AtomicU64,
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
    /// MQTT connections that ended in an error.
    pub mqtt_connection_failures: AtomicU64,
    pub mqtt_connected: AtomicBool,
}

pub static METRICS: Metrics = Metrics {
    records_received: AtomicU64::new(0),
    records_refused: AtomicU64::new(0),
    frames_malformed: AtomicU64::new(0),
    devices_refused: AtomicU64::new(0),
    connections_accepted: AtomicU64::new(0),
    connections_open: AtomicU64::new(0),
    records_published: AtomicU64::new(0),
    batches_published: AtomicU64::new(0),
    batch_json_bytes: AtomicU64::new(0),
    batch_payload_bytes: AtomicU64::new(0),
    mqtt_connection_failures: AtomicU64::new(0),
    mqtt_connected: AtomicBool::new(false),
};

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
