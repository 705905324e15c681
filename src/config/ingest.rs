//! `[ingest]`: limits on device connections, datagrams and frames.

use std::time::Duration;

use firmware_protocols::DecoderOptions;
use serde::{Deserialize, Serialize};

use super::range::Problems;
use crate::ingest::IngestOptions;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Device connections open at once, over all listeners; more wait in the kernel's
    /// listen backlog ([`crate::listen::BACKLOG`]). Default 1024.
    pub max_connections: usize,
    /// Close a device connection silent for this many seconds. Default 600.
    pub idle_timeout_s: u64,
    /// A new TCP connection must identify its device (a login, or a first report carrying
    /// the device's id) within this many seconds of being accepted, or it is closed: port
    /// scanners, half-dead modems and clients that only send keep-alives would otherwise hold
    /// `max_connections` slots for `idle_timeout_s`. Counted from the accept; trickled
    /// bytes, keep-alives and bad frames before the login do not extend it. Default 30.
    pub first_frame_timeout_s: u64,
    /// Device connections one address may hold at once, over all TCP listeners; more are
    /// closed right after the accept (logged once per address until it holds fewer). 0 = no
    /// limit, the default: devices behind a mobile operator's NAT or a private APN all
    /// arrive from one address. At most `max_connections`.
    pub max_connections_per_ip: usize,
    /// Largest device frame accepted, bytes; it is also each connection's read buffer
    /// bound. Default 16,384.
    pub max_frame_bytes: usize,
    /// Keep each record's raw bytes (hex or text) in `raw`. Default false.
    pub keep_raw: bool,
    /// UDP datagrams decoded and waiting for their append at once, over all UDP
    /// listeners; more wait in the socket's receive queue. Separate from
    /// `max_connections` so long-lived TCP devices cannot starve UDP devices. Default 64.
    pub max_datagrams_in_flight: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_connections: 1024,
            idle_timeout_s: 600,
            first_frame_timeout_s: 30,
            max_connections_per_ip: 0,
            max_frame_bytes: 16 * 1024,
            keep_raw: false,
            max_datagrams_in_flight: 64,
        }
    }
}

impl IngestSettings {
    /// What the listeners and sessions take.
    pub fn options(&self) -> IngestOptions {
        IngestOptions {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_datagrams_in_flight: self.max_datagrams_in_flight,
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            first_frame_timeout: Duration::from_secs(self.first_frame_timeout_s),
            decoder: DecoderOptions {
                keep_raw: self.keep_raw,
                ..DecoderOptions::new(self.max_frame_bytes)
            },
        }
    }

    pub(super) fn check(&self, problems: &mut Problems) {
        if self.max_connections == 0 {
            problems.add("ingest.max_connections", "must be at least 1");
        }
        if self.max_connections_per_ip > self.max_connections {
            problems.add(
                "ingest.max_connections_per_ip",
                format!(
                    "{} exceeds ingest.max_connections ({}); use 0 for no limit",
                    self.max_connections_per_ip, self.max_connections
                ),
            );
        }
        problems.between(
            "ingest.max_datagrams_in_flight",
            self.max_datagrams_in_flight,
            1..=65_536,
        );
        if self.idle_timeout_s == 0 {
            problems.add("ingest.idle_timeout_s", "must be at least 1");
        }
        if !(1..=self.idle_timeout_s.max(1)).contains(&self.first_frame_timeout_s) {
            problems.add(
                "ingest.first_frame_timeout_s",
                format!(
                    "{} must be between 1 and ingest.idle_timeout_s ({})",
                    self.first_frame_timeout_s, self.idle_timeout_s
                ),
            );
        }
        problems.between(
            "ingest.max_frame_bytes",
            self.max_frame_bytes,
            256..=1024 * 1024,
        );
    }
}
