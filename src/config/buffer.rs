//! `[buffer]`: the durable sled buffer's path, limits and disk upkeep. The buffer itself
//! takes [`BufferOptions`] (`options()`); its defaults live there.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::range::Problems;
use crate::buffer::{BufferOptions, WhenFull};

/// One MiB, the smallest size a buffer limit may have.
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSettings {
    /// Directory of the sled database. Default `/var/lib/fleetedge/buffer`.
    pub path: PathBuf,
    /// Most records held; then `when_full` applies. Default 1,000,000.
    pub max_records: u64,
    /// Most bytes of encoded records held. Default 536,870,912 (512 MiB).
    pub max_bytes: u64,
    /// `block` (default): stop reading from devices until the uplink drains below
    /// `resume_below_percent`; devices keep their data. Also `reject` and `drop_oldest`.
    pub when_full: WhenFull,
    /// Low-water mark, percent of `max_records` and `max_bytes`, below which a full buffer
    /// accepts again. Default 90.
    pub resume_below_percent: u8,
    /// sled's page cache in bytes. sled's own default is 1 GiB and ignores cgroup limits;
    /// RSS runs a few times this. Default 8,388,608 (8 MiB).
    pub cache_capacity_bytes: u64,
    /// Alert level in stored records: a warning is logged once when the backlog reaches it
    /// and an info line once when it falls back to 90 % of it; the `above_alert` gauge
    /// follows. 0 turns it off; at most `max_records`. Default (absent): half of
    /// `max_records`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_records: Option<u64>,
    /// Once the backlog has drained to empty and sled's files take more than this many
    /// bytes, they are replaced by a fresh database (the seq counter is kept), so disk use
    /// follows the backlog. 0 = never; otherwise at least 1,048,576 (1 MiB). Default
    /// 67,108,864 (64 MiB).
    pub reclaim_above_bytes: u64,
    /// Bytes to leave free on the buffer's filesystem: below this, new records are refused
    /// per `when_full` (`block` waits; `reject` and `drop_oldest` answer "not accepted"), so
    /// sled stops before the disk is full; a drained buffer's files are reclaimed meanwhile.
    /// 0 = off; otherwise at least 1,048,576 (1 MiB). Default 33,554,432 (32 MiB).
    pub min_free_bytes: u64,
}

impl Default for BufferSettings {
    fn default() -> Self {
        BufferSettings {
            path: PathBuf::from("/var/lib/fleetedge/buffer"),
            max_records: crate::buffer::DEFAULT_MAX_RECORDS,
            max_bytes: crate::buffer::DEFAULT_MAX_BYTES,
            when_full: WhenFull::Block,
            resume_below_percent: crate::buffer::DEFAULT_RESUME_BELOW_PERCENT,
            cache_capacity_bytes: crate::buffer::DEFAULT_CACHE_CAPACITY_BYTES,
            alert_records: None,
            reclaim_above_bytes: crate::buffer::DEFAULT_RECLAIM_ABOVE_BYTES,
            min_free_bytes: crate::buffer::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

impl BufferSettings {
    /// What [`Buffer::open`](crate::buffer::Buffer::open) takes.
    pub fn options(&self) -> BufferOptions {
        BufferOptions {
            path: self.path.clone(),
            max_records: self.max_records,
            max_bytes: self.max_bytes,
            resume_below_percent: self.resume_below_percent,
            cache_capacity_bytes: self.cache_capacity_bytes,
            seq_floor: None,
            alert_records: self.alert_records,
            reclaim_above_bytes: self.reclaim_above_bytes,
            min_free_bytes: self.min_free_bytes,
            salvage: false,
            // `[dedup]` is a section of its own; `gateway.rs` sets it.
            dedup: None,
            when_full: self.when_full,
        }
    }
}

impl BufferSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        if self.path.as_os_str().is_empty() {
            problems.add("buffer.path", "must not be empty");
        }
        // A Teltonika frame carries up to 255 records and is stored whole: a smaller buffer
        // could never take it, and its device would resend it forever.
        problems.at_least("buffer.max_records", self.max_records, 256, "");
        problems.at_least("buffer.max_bytes", self.max_bytes, MIB, " (1 MiB)");
        problems.between(
            "buffer.resume_below_percent",
            self.resume_below_percent,
            1..=99,
        );
        problems.at_least(
            "buffer.cache_capacity_bytes",
            self.cache_capacity_bytes,
            MIB,
            " (1 MiB)",
        );
        if let Some(alert) = self.alert_records.filter(|&a| a > self.max_records) {
            problems.add(
                "buffer.alert_records",
                format!(
                    "{alert} is above buffer.max_records ({}); 0 turns the alert off",
                    self.max_records
                ),
            );
        }
        if self.reclaim_above_bytes != 0 && self.reclaim_above_bytes < MIB {
            problems.add(
                "buffer.reclaim_above_bytes",
                format!(
                    "{} must be 0 (never) or at least 1048576 (1 MiB)",
                    self.reclaim_above_bytes
                ),
            );
        }
        if self.min_free_bytes != 0 && self.min_free_bytes < MIB {
            problems.add(
                "buffer.min_free_bytes",
                format!(
                    "{} must be 0 (off) or at least 1048576 (1 MiB): sled grows its files in \
                     512 KiB segments",
                    self.min_free_bytes
                ),
            );
        }
    }
}
