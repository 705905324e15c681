//! How the uplink runs: `[uplink]` in the units the code uses
//! ([`UplinkSettings::options`](crate::config::UplinkSettings::options)), as the buffer takes
//! `BufferOptions` and ingest `IngestOptions`.

use std::time::Duration;

use super::payload::Compression;
use crate::config::UplinkFormat;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkOptions {
    /// Batches (`fleetedge.batch.v1`) or NGP objects, one per record.
    pub format: UplinkFormat,
    /// Most records in one published batch.
    pub batch_max_records: usize,
    /// How long a partial batch may wait for more records; zero for NGP (each record goes
    /// alone, so there is nothing to wait for).
    pub linger: Duration,
    /// Batch payload compression and its zstd level.
    pub compression: Compression,
    pub zstd_level: i32,
    /// First reconnect delay (doubling per failure), its cap, and how long a connection must
    /// stay up to reset it.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_reset_after: Duration,
    /// Publish rate limits; 0 = unlimited.
    pub max_messages_per_s: u32,
    pub max_bytes_per_s: u64,
    /// At shutdown, how long to keep publishing what the buffer holds.
    pub shutdown_publish: Duration,
}
