//! `[uplink]`: what is published (batches or NGP), batching, compression, reconnect
//! backoff, rate limits and the shutdown drain.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::range::Problems;
use crate::uplink::payload::Compression;
use crate::uplink::UplinkOptions;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkSettings {
    /// What the records are published as: `batch` — `fleetedge.batch.v1` batches on
    /// `{topic_prefix}/{gateway_id}/records`, compressed per `compression` (the default);
    /// `ngp` — one Navixy Generic Protocol 1.0 JSON object per record on `ngp/{device_id}`,
    /// uncompressed (`batch_max_records`, `linger_ms`, `compression` and `zstd_level` do not
    /// apply; `mqtt.max_inflight_batches` counts messages).
    pub format: UplinkFormat,
    /// Most records in one published batch. Default 1000.
    pub batch_max_records: usize,
    /// How long a partial batch may wait for more records, milliseconds. Default 200.
    pub linger_ms: u64,
    /// Payload compression: `zstd` (default), `gzip` or `none`.
    pub compression: Compression,
    /// zstd level, 1 (fastest) to 22. Default 3.
    pub zstd_level: i32,
    /// First reconnect delay, milliseconds; doubles per failure (full jitter). Default 500.
    pub backoff_initial_ms: u64,
    /// Cap of the reconnect delay, milliseconds. Default 30,000.
    pub backoff_max_ms: u64,
    /// A connection that stayed up this many seconds resets the backoff. Default 30. One
    /// that worked (a PUBACK, up 1 s) resets it too (see `uplink::backoff`).
    pub backoff_reset_after_s: u64,
    /// Most MQTT messages published per second (batches and status; token bucket with a
    /// burst of one second's worth). 0 = unlimited, the default.
    pub max_messages_per_s: u32,
    /// Most MQTT payload bytes published per second (token bucket with a burst of
    /// `max(this, mqtt.max_packet_bytes)`, so the largest batch always goes through).
    /// 0 = unlimited, the default.
    pub max_bytes_per_s: u64,
    /// On SIGTERM/SIGINT, after the devices are stopped, seconds to keep publishing what
    /// the buffer holds and to wait for the broker's acknowledgements; records not
    /// acknowledged by then stay in the buffer for the next start. The offline status and
    /// the DISCONNECT that follow take at most about 2 s more. 0 = publish nothing more
    /// (only the offline status). Default 5.
    pub shutdown_publish_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UplinkFormat {
    Batch,
    Ngp,
}

impl Default for UplinkSettings {
    fn default() -> Self {
        UplinkSettings {
            format: UplinkFormat::Batch,
            batch_max_records: 1000,
            linger_ms: 200,
            compression: Compression::Zstd,
            zstd_level: 3,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            backoff_reset_after_s: 30,
            max_messages_per_s: 0,
            max_bytes_per_s: 0,
            shutdown_publish_s: 5,
        }
    }
}

impl UplinkSettings {
    /// What the uplink's connection loop and publisher take.
    pub fn options(&self) -> UplinkOptions {
        UplinkOptions {
            format: self.format,
            batch_max_records: self.batch_max_records,
            // NGP sends each record alone: nothing to wait for.
            linger: match self.format {
                UplinkFormat::Batch => Duration::from_millis(self.linger_ms),
                UplinkFormat::Ngp => Duration::ZERO,
            },
            compression: self.compression,
            zstd_level: self.zstd_level,
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            backoff_reset_after: Duration::from_secs(self.backoff_reset_after_s),
            max_messages_per_s: self.max_messages_per_s,
            max_bytes_per_s: self.max_bytes_per_s,
            shutdown_publish: Duration::from_secs(self.shutdown_publish_s),
        }
    }

    pub(super) fn check(&self, problems: &mut Problems) {
        problems.between(
            "uplink.batch_max_records",
            self.batch_max_records,
            1..=100_000,
        );
        problems.between("uplink.zstd_level", self.zstd_level, 1..=22);
        if self.backoff_initial_ms == 0 {
            problems.add("uplink.backoff_initial_ms", "must be at least 1");
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            problems.add(
                "uplink.backoff_max_ms",
                format!(
                    "{} is below uplink.backoff_initial_ms ({})",
                    self.backoff_max_ms, self.backoff_initial_ms
                ),
            );
        }
    }

    /// Checked after `[mqtt]`'s file checks, as before the split (the order problems are
    /// listed in).
    pub(super) fn check_rates(&self, problems: &mut Problems) {
        if self.max_bytes_per_s > u64::from(u32::MAX) {
            problems.add(
                "uplink.max_bytes_per_s",
                format!("{} must be at most {}", self.max_bytes_per_s, u32::MAX),
            );
        }
        problems.between(
            "uplink.shutdown_publish_s",
            self.shutdown_publish_s,
            0..=3600,
        );
    }
}
