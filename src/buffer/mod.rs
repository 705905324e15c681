//! The durable queue between ingest and uplink: a sled database that stores every record
//! before its device is answered, hands records to the uplink in seq order, and deletes them
//! once the broker has acknowledged them.
//!
//! # Files
//!
//! - `mod.rs`: the public API ([`Buffer`], options, results, stats).
//! - `store.rs`: the sled layout, value encoding, open (and moving a corrupt database aside).
//! - `commit.rs`: the group-commit thread (one batch + one fsync per round).
//! - `limits.rs`: space accounting, the full state, the low-water mark and the alert level.
//! - `reclaim.rs`: giving sled's disk space back once the backlog has drained (with its
//!   crash-safety argument).
//! - `space.rs`: `min_free_bytes`, and the gate appends pass (low disk, failing database).
//! - `recovery.rs`: reopening a database whose writes fail (ENOSPC, EIO), without a restart.
//! - `durable_mark.rs`: the mark beside the database that makes lost records loud and keeps
//!   seqs from going back.
//! - `dedup.rs`: the duplicate window (a resent record is answered, not stored again), logged
//!   in the commit batches.
//! - `error.rs`: [`BufferError`].
//! - `inspect.rs`: read-only looks for the installer tools (chunks read without
//!   quarantining, the limits, the quarantine tree's size, a held lock).
//!
//! # Layout on disk
//!
//! ```text
//! sled db at <path>
//! ├── tree "queue"
//! │   ├── key  = first seq of the chunk, u64 big-endian (8 bytes)     one entry per append,
//! │   │                                                   or per run of a round's small appends
//! │   │   value = [0x02 format version][u32 BE record count n][codec][payload]
//! │   │           codec 0x00: payload = bincode(Vec<Record>)        (bincode < 1 KiB)
//! │   │           codec 0x01: payload = zstd(bincode(Vec<Record>))  (bincode ≥ 1 KiB)
//! │   │           records of the chunk have seqs first ..= first + n - 1
//! │   │   or (format 3, consecutive plain appends of one commit round, ≤ 32 KiB, ≤ 256 records)
//! │   │   value = [0x03][u32 BE total count n] then per append [u16 BE len][bincode(Vec<Record>)]
//! │   │   (format 1, written by earlier releases and still read:
//! │   │    [0x01][u32 BE n][zstd(bincode(Vec<Record>))])
//! │   │   ... chunks in seq order; seqs start at 1; seq u64::MAX is never used
//! │   ├── key  = FF FF FF FF FF FF FF FF "alarm" + seq u64 BE        one per alarm record
//! │   │   value = [0x00 pending | 0x01 published ahead], written in the SAME batch as the
//! │   │           record's chunk (`alarms.rs`: alarms go first, and only once)
//! │   ├── key  = FF FF FF FF FF FF FF FF "dedup" <u64 BE round seq>  the duplicate window's
//! │   │   value = hashes of the round's records, per device (`dedup.rs`); same batch as the round
//! │   └── key  = FF FF FF FF FF FF FF FF "next_seq"                  sorts after every chunk
//! │       value = u64 BE, the next seq to hand out; written in the SAME batch as the chunks
//! │               it covers, so a seq is never reused (after a drain, restart or crash)
//! ├── tree "quarantine"
//! │   └── chunks that could not be read (same key, same value), kept for forensics
//! └── tree "commands"
//!     └── downlink commands and their results outbox, laid out by `src/commands/store.rs`;
//!         the buffer only opens it, copies it through a reclaim and lends it out
//!         ([`Buffer::with_commands`])
//! ```
//!
//! Record scans use the key range `..FF FF FF FF FF FF FF FF`, so they never see meta keys.
//! bincode is 2.0.1 with `config::standard()`. Chunks of 1 KiB of bincode or more are
//! compressed with zstd level 1 (a quarter of the bytes, which is what bounds sled's memory
//! under a backlog), with one compression and one decompression context per thread; reads
//! check the zstd frame's stated size and decode with a 16 MiB limit, so a corrupt length
//! field cannot make a read allocate without bound. The codec byte is part of the header: an
//! unknown one is quarantined at open like a bad version.
//!
//! Why small chunks are stored plain (one-record-per-frame traffic, where every append is a
//! chunk of one ~100-byte record; measured on the 2-core development machine, release build):
//!
//! | per chunk | 1 record (116 B bincode) | 5 records (576 B) | 50 records (5.7 KiB) |
//! |---|---|---|---|
//! | zstd level 1, reused context | 20.7 µs → 108 B | 22.0 µs → 246 B | 83 µs → 1.3 KiB |
//! | zstd decompress, new context / reused | 8.2 µs / 0.56 µs | 12.5 µs / 2.5 µs | 26 µs / 27–37 µs |
//! | bincode encode / decode | 1.1 µs / 1.2 µs | 2.7 µs / 11 µs | 37 µs / 81 µs |
//!
//! (A throwaway harness on the same records as `benches/buffer_append.rs`, while other builds
//! loaded the machine: take the ratios, not the absolute times.) Compressing one record
//! saves 7 % of its bytes for about 20 times the cost of encoding it, and a new
//! decompression context costs 15 times a reused one. So: no context is ever created per
//! chunk, and a chunk is compressed only from 1 KiB of bincode (about nine records), where
//! zstd already shrinks it two to four times and its fixed cost is spread over the records.
//! The price is bytes: a backlog of one-record chunks takes about the same room as before
//! (7 % more), one of 2–8-record chunks up to 2.5 times more; `max_bytes` counts the stored
//! bytes either way.
//!
//! Why a round's small appends share one entry (format 3, `store::pack_round`): with one
//! record per frame, each append as its own entry made sled do an insert, a page rewrite, a
//! log write and later a removal per record; a profile of `scripts/bench-e2e teltonika 200
//! 1000 1` put a third of the gateway's CPU there. Grouped, a round of 200 devices is one
//! entry, and the gateway's CPU per record fell from 46–48 µs to 34–35 µs (same machine,
//! interleaved runs). An entry is the unit of reading and removal like any chunk: it leaves
//! only once all its records are acknowledged, and it is what `drop_oldest` drops whole. The
//! uplink reads whole entries (at least one), so its staging may hold up to 256 records
//! when `batch_max_records` is smaller; batches are still cut at `batch_max_records`
//! (`uplink::staging`).
//!
//! # Promises
//!
//! - [`Buffer::append`] returns `Stored` only after the chunk and the counter are flushed
//!   (fsync). Appends from many tasks are grouped: one `apply_batch` + one `flush` per round.
//! - Readers and removers only see chunks below the durable mark (the end of the last
//!   flushed round), so nothing is published before it is durable.
//! - Gauges (records, bytes) come from one scan at open and are then kept in memory, exact
//!   under concurrency: a removal is counted from the value sled says it removed.
//!
//! # Bad stored data
//!
//! Nothing read from disk is unwrapped. A chunk whose key or header (version, count) is bad
//! is moved to the quarantine tree at open, with an error log, and not counted. A chunk whose
//! records do not decode is found when the uplink reads it: [`Buffer::read_after`] moves it
//! to the quarantine tree and returns [`BufferError::Corrupt`] naming the key, and the next
//! read continues after it, so one bad chunk never wedges the uplink. A database that sled
//! reports as corrupt (or that makes sled panic while opening) is renamed to
//! `<path>.corrupt-<unix-secs>` with an error log and a fresh one is created: the one case
//! where seqs restart at 1. Other open errors (permissions, a lock held by another process)
//! are returned and the directory is left alone.
//!
//! # Faults
//!
//! A filesystem below [`BufferOptions::min_free_bytes`] or a database whose writes fail
//! (sled poisons itself on ENOSPC/EIO) refuses appends per `when_full` (`space.rs`); the
//! commit thread reopens a failing database once the disk has room (`recovery.rs`). The
//! durable mark beside the database (`<path>.durable`, `durable_mark.rs`) makes records
//! missing at open an ERROR with their count and seq ranges, keeps such a database aside
//! (re-queuing what it still holds), and keeps `next_seq` from going back.
//!
//! # Disk space
//!
//! sled never shrinks its files after a backlog drains. Once the queue is empty and sled's
//! files exceed [`BufferOptions::reclaim_above_bytes`], the commit thread swaps in a fresh
//! database that keeps the seq counter and the quarantine tree (see `reclaim.rs`, which also
//! settles a reclaim interrupted by a crash at the next open). [`BufferStats::disk_bytes`]
//! shows the size.
//!
//! # Alert level
//!
//! [`BufferOptions::alert_records`]: a warning is logged once when the stored records reach
//! it and an info line once when they fall back to 90 % of it;
//! [`BufferStats::above_alert`] is the gauge.

mod alarms;
mod commit;
mod dedup;
mod device_sync;
mod durable_mark;
mod error;
mod inspect;
mod limits;
mod reclaim;
mod recovery;
mod space;
mod store;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use firmware_protocols::Record;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use dedup::{content_hash, DedupOptions};
pub use durable_mark::ranges_text as seq_ranges_text;
pub use error::BufferError;
pub use inspect::{BufferLimits, PeekedChunk};

use limits::{Amount, Space};
use store::{chunk_header, decode_chunk, key_seq, seq_key, Store, StoreCell, MAX_CHUNK_BYTES};

/// Default [`BufferOptions::max_records`].
pub const DEFAULT_MAX_RECORDS: u64 = 1_000_000;
/// Default [`BufferOptions::max_bytes`]: 512 MiB of encoded chunks.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;
/// Default [`BufferOptions::resume_below_percent`].
pub const DEFAULT_RESUME_BELOW_PERCENT: u8 = 90;
/// Default [`BufferOptions::cache_capacity_bytes`]: 8 MiB, sized for a 256 MiB gateway
/// (sled's own default is 1 GiB and ignores cgroup limits; RSS runs a few times this).
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 8 << 20;
/// Default [`BufferOptions::reclaim_above_bytes`]: 64 MiB.
pub const DEFAULT_RECLAIM_ABOVE_BYTES: u64 = 64 << 20;
/// Default [`BufferOptions::min_free_bytes`]: 32 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 32 << 20;

/// What an append does when the buffer has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait until the uplink drains the buffer to the low-water mark, then store. The
    /// device is not answered meanwhile, so TCP flow control holds it. Once an append has
    /// found the buffer full, every append waits (even one that would fit) until the depth
    /// is at or below the low-water mark: a waiting large chunk is not starved by small ones.
    #[default]
    Block,
    /// Return [`Appended::Rejected`] without storing (no seq is spent). Once an append has
    /// been rejected, every append is rejected until the depth is at or below the low-water
    /// mark.
    Reject,
    /// Delete the oldest stored chunks (whole chunks) until the append fits; every dropped
    /// record is counted in [`BufferStats::dropped_records`].
    DropOldest,
}

/// How to open a [`Buffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferOptions {
    /// The sled database directory.
    pub path: PathBuf,
    /// Most records stored (including appends admitted but not yet committed).
    pub max_records: u64,
    /// Most encoded bytes stored (the sum of the chunk values' lengths).
    pub max_bytes: u64,
    /// Once full, appends resume when both depths are at or below this percentage of their
    /// maximum (0..=100).
    pub resume_below_percent: u8,
    /// sled's page cache.
    pub cache_capacity_bytes: u64,
    pub when_full: WhenFull,
    /// The first seq of a buffer without a stored counter (new, moved aside as corrupt, or
    /// with a mangled counter). `None` (the default): the Unix time in microseconds, so a
    /// gateway that lost its buffer never hands out a seq consumers have already seen.
    /// Tests pin it to get small, predictable seqs.
    pub seq_floor: Option<u64>,
    /// The alert level in stored records: a warning is logged once when the depth reaches
    /// it, an info line once when it falls back to 90 % of it, and
    /// [`BufferStats::above_alert`] follows. `None` (the default): half of `max_records`;
    /// `Some(0)`: off. At most `max_records`.
    pub alert_records: Option<u64>,
    /// Once the queue has drained to empty and sled's files are larger than this many bytes,
    /// they are replaced by a fresh database (keeping the seq counter), so disk use follows
    /// the backlog. 0: never. Default [`DEFAULT_RECLAIM_ABOVE_BYTES`].
    pub reclaim_above_bytes: u64,
    /// Appends are refused per `when_full` (block waits, reject and drop_oldest answer
    /// "not accepted") while the buffer's filesystem has fewer than this many bytes free for
    /// unprivileged writers, so sled stops before the disk is full (see `space.rs`). 0: off.
    /// Default [`DEFAULT_MIN_FREE_BYTES`].
    pub min_free_bytes: u64,
    /// Open a database only to read it (`fleetedge buffer export --from` on one kept aside):
    /// no durable mark is read or written, and a corrupt database is an error instead of
    /// being moved aside. Default false.
    pub salvage: bool,
    /// Duplicate suppression (`dedup.rs`): a record identical to one of the window's is
    /// answered but not stored. `None` (the default here; the gateway's `[dedup]` turns it
    /// on): every record is stored.
    pub dedup: Option<DedupOptions>,
}

impl BufferOptions {
    /// Options for a buffer at `path` with the documented defaults.
    pub fn new(path: impl Into<PathBuf>) -> BufferOptions {
        BufferOptions {
            path: path.into(),
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
            resume_below_percent: DEFAULT_RESUME_BELOW_PERCENT,
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
            when_full: WhenFull::Block,
            seq_floor: None,
            alert_records: None,
            reclaim_above_bytes: DEFAULT_RECLAIM_ABOVE_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            salvage: false,
            dedup: None,
        }
    }

    /// The alert level in effect (0: off).
    pub fn alert_level(&self) -> u64 {
        self.alert_records.unwrap_or(self.max_records / 2)
    }

    fn validate(&self) -> Result<(), BufferError> {
        let reason = if self.max_records == 0 {
            "max_records must be at least 1"
        } else if self.max_bytes == 0 {
            "max_bytes must be at least 1"
        } else if self.resume_below_percent > 100 {
            "resume_below_percent must be between 0 and 100"
        } else if self.alert_level() > self.max_records {
            "alert_records must not exceed max_records"
        } else {
            return Ok(());
        };
        Err(BufferError::InvalidOptions {
            path: self.path.clone(),
            reason: reason.to_string(),
        })
    }
}

/// What [`Buffer::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Durable (flushed); the records got seqs `first_seq ..= last_seq` in order.
    Stored { first_seq: u64, last_seq: u64 },
    /// Not stored: the buffer is full and the policy is [`WhenFull::Reject`].
    Rejected,
    /// Not stored because every record is a duplicate of one already stored (durable) for
    /// its device ([`BufferOptions::dedup`]): answer the device as if stored. An append of
    /// which only some records are duplicates is `Stored` with fewer seqs than records.
    Duplicate,
}

/// One stored chunk (the records of one append), as read for the uplink.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    /// The seq of `records[0]`; record `i` has seq `first_seq + i`.
    pub first_seq: u64,
    pub records: Vec<Record>,
    /// The stored value's length (header included), the unit of `max_bytes`.
    pub encoded_len: usize,
    /// Seqs of this chunk's alarm records already published ahead of the backlog (see
    /// `alarms.rs`): never publish them again.
    pub published_ahead: Vec<u64>,
}

impl StoredChunk {
    /// The seq of the chunk's last record.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.records.len().saturating_sub(1) as u64
    }
}

/// A snapshot of the buffer's gauges and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    /// Records in the queue.
    pub records: u64,
    /// Encoded bytes in the queue.
    pub bytes: u64,
    /// Records admitted by `append` and waiting for their commit round.
    pub in_flight_records: u64,
    /// Encoded bytes admitted by `append` and waiting for their commit round.
    pub in_flight_bytes: u64,
    /// The seq the next stored record will get.
    pub next_seq: u64,
    /// The first seq of the oldest durable chunk, if any.
    pub oldest_seq: Option<u64>,
    /// Appends are held (block) or refused (reject) until the low-water mark.
    pub full: bool,
    /// Records deleted unpublished by [`WhenFull::DropOldest`].
    pub dropped_records: u64,
    /// Appends answered [`Appended::Rejected`].
    pub rejected_appends: u64,
    /// Chunks moved to the quarantine tree since open (including at open).
    pub quarantined_chunks: u64,
    /// Commit rounds flushed (one fsync each) since open.
    pub flushes: u64,
    /// sled's files on disk (0 if sled cannot tell).
    pub disk_bytes: u64,
    /// The alert level in records (0: off); see [`BufferOptions::alert_records`].
    pub alert_records: u64,
    /// The stored records reached the alert level and have not yet fallen back to 90 % of it.
    pub above_alert: bool,
    /// Disk reclaims done since open (see [`BufferOptions::reclaim_above_bytes`]).
    pub disk_reclaims: u64,
    /// Bytes those reclaims gave back to the filesystem.
    pub disk_reclaimed_bytes: u64,
    /// Bytes free for unprivileged writers on the buffer's filesystem (`u64::MAX` if it
    /// cannot be measured).
    pub disk_free_bytes: u64,
    /// The free space is below [`BufferOptions::min_free_bytes`]: appends are refused.
    pub low_disk: bool,
    /// Appends refused or held because of low disk space or a failing database.
    pub disk_refusals: u64,
    /// The database's writes are failing and it is being reopened (see `recovery.rs`).
    pub failing: bool,
    /// Reopens that brought a failing database back.
    pub recoveries: u64,
    /// Records the durable mark says were stored but the database no longer held at open.
    pub lost_records: u64,
}

/// State shared by the handles and the commit thread.
struct Shared {
    /// The database directory (for logs and errors).
    path: PathBuf,
    /// The live database; swapped only by a disk reclaim.
    store: StoreCell,
    space: Space,
    when_full: WhenFull,
    /// Every chunk whose first seq is below this is durable. Readers and removers never look
    /// at or above it. Set by the committer after each successful flush.
    durable_end: AtomicU64,
    /// No chunk starts below this (a hint so scans skip the deleted prefix, which sled 0.34
    /// still walks over). Only ever raised, and only past chunks known to be gone.
    scan_from: AtomicU64,
    /// The committer's next seq, for stats.
    next_seq: AtomicU64,
    flushes: AtomicU64,
    /// When the committer took up its current round or reclaim, in ms after
    /// [`Shared::epoch`]; 0 while it waits for work. The service watchdog reads it.
    busy_since_ms: AtomicU64,
    epoch: std::time::Instant,
    quarantined_chunks: AtomicU64,
    /// sled's size on disk when last measured (shown while a reclaim holds the store).
    disk_bytes: AtomicU64,
    disk_reclaims: AtomicU64,
    disk_reclaimed_bytes: AtomicU64,
    /// Reclaims are configured (`reclaim_above_bytes` > 0).
    reclaim_enabled: bool,
    /// `min_free_bytes` and the free space.
    disk: space::DiskGuard,
    /// Whether writes are failing (and the database is being reopened).
    fault: recovery::Fault,
    /// The durable mark's state.
    mark: durable_mark::Keeper,
    /// The duplicate window, when [`BufferOptions::dedup`] is on.
    dedup: Option<std::sync::Mutex<dedup::Window>>,
    /// Appends (and reclaim requests) waiting for the committer.
    queue: commit::Queue,
    /// The last durable seq (0 before the first record ever).
    durable_tx: watch::Sender<u64>,
    #[cfg(test)]
    commit_gate: commit::TestGate,
    /// Reclaim attempts finished (whatever their outcome), for tests to wait on.
    #[cfg(test)]
    reclaims_finished: AtomicU64,
    /// Appends given to the committer (counted after the push, so a test that sees `n` knows
    /// `n` appends are in its queue), for tests to wait on.
    #[cfg(test)]
    appends_queued: AtomicU64,
}

struct Inner {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The committer finishes what is queued and stops.
        self.shared.queue.close();
        if let Some(handle) = self.committer.take() {
            if handle.join().is_err() {
                tracing::error!(
                    path = %self.shared.path.display(),
                    "buffer commit thread panicked"
                );
            }
        }
        // Acks are not flushed as they happen; make them stick on a graceful close.
        let Some(store) = self.shared.store.wait() else {
            return;
        };
        let flushed = store.flush();
        if flushed.is_ok() {
            let shared = &self.shared;
            let next = shared.next_seq.load(Ordering::Acquire);
            shared.mark.after_round(shared, next);
        }
        if let Err(e) = flushed {
            tracing::error!(
                path = %self.shared.path.display(),
                error = %e,
                "buffer: final flush failed; acknowledged records may be published again"
            );
        }
    }
}

/// The durable queue. Cheap to clone; the last clone dropped stops the commit thread
/// (after it has committed everything queued) and flushes.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("path", &self.shared().path)
            .finish_non_exhaustive()
    }
}

impl Buffer {
    /// Opens (or creates) the buffer at `opts.path`, scans it once for its depth, and starts
    /// the commit thread. Blocking: it reads every chunk header, so call it at start-up or
    /// from `spawn_blocking`.
    pub fn open(opts: BufferOptions) -> Result<Buffer, BufferError> {
        opts.validate()?;
        let (store, scan) = reclaim::open(&opts)?;
        let (store, scan, found) = durable_mark::settle(&opts, store, scan)?;
        tracing::info!(
            path = %opts.path.display(),
            records = scan.records,
            bytes = scan.bytes,
            oldest_seq = ?scan.oldest_seq,
            next_seq = scan.next_seq,
            "buffer opened"
        );
        let space = Space::new(
            opts.path.clone(),
            Amount {
                records: opts.max_records,
                bytes: opts.max_bytes,
            },
            opts.resume_below_percent,
            Amount {
                records: scan.records,
                bytes: scan.bytes,
            },
        );
        space.set_alert_level(opts.alert_level());
        let disk_bytes = store.db.size_on_disk().unwrap_or(0);
        let dedup = match opts.dedup {
            Some(d) => Some(std::sync::Mutex::new(
                dedup::Window::load(d, &store.queue)
                    .map_err(store.sled_err("loading the duplicate window"))?,
            )),
            None => None,
        };
        let (durable_tx, _) = watch::channel(scan.next_seq - 1);
        let shared = Arc::new(Shared {
            path: opts.path.clone(),
            store: StoreCell::new(store),
            space,
            when_full: opts.when_full,
            durable_end: AtomicU64::new(scan.next_seq),
            scan_from: AtomicU64::new(scan.oldest_seq.unwrap_or(scan.next_seq)),
            next_seq: AtomicU64::new(scan.next_seq),
            flushes: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            quarantined_chunks: AtomicU64::new(scan.quarantined_chunks),
            disk_bytes: AtomicU64::new(disk_bytes),
            disk_reclaims: AtomicU64::new(0),
            disk_reclaimed_bytes: AtomicU64::new(0),
            reclaim_enabled: opts.reclaim_above_bytes > 0,
            disk: space::DiskGuard::new(opts.path.clone(), opts.min_free_bytes),
            fault: recovery::Fault::new(),
            mark: durable_mark::Keeper::new(&opts, &found),
            dedup,
            queue: commit::Queue::default(),
            durable_tx,
            #[cfg(test)]
            commit_gate: commit::TestGate::default(),
            #[cfg(test)]
            reclaims_finished: AtomicU64::new(0),
            #[cfg(test)]
            appends_queued: AtomicU64::new(0),
        });
        let reclaimer = reclaim::Reclaimer::new(opts.clone());
        let committer =
            commit::spawn(Arc::clone(&shared), scan.next_seq, reclaimer).map_err(|source| {
                BufferError::Spawn {
                    path: opts.path.clone(),
                    source,
                }
            })?;
        let buffer = Buffer {
            inner: Arc::new(Inner {
                shared,
                committer: Some(committer),
            }),
        };
        // A buffer that opens empty may still carry the files of an old backlog.
        buffer.hint_reclaim();
        Ok(buffer)
    }

    /// Asks the commit thread to reclaim disk space if the buffer is empty now (at most one
    /// request pending at a time; the commit thread checks everything again itself).
    fn hint_reclaim(&self) {
        let shared = self.shared();
        if (shared.reclaim_enabled || shared.disk.is_low()) && shared.space.is_empty() {
            shared.queue.request_reclaim();
        }
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Whether the commit thread still runs. When it has stopped (a sled panic), no append
    /// can succeed again, and the process should exit so its supervisor restarts it.
    pub fn committer_alive(&self) -> bool {
        self.inner
            .committer
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
    }

    /// How long the commit thread has been on its current round (write + fsync) or disk
    /// reclaim; `None` while it waits for work. Idleness never looks busy, so a long value
    /// means a hung disk or a wedged sled, which the service watchdog acts on.
    pub fn commit_busy_for(&self) -> Option<std::time::Duration> {
        let shared = self.shared();
        match shared.busy_since_ms.load(Ordering::Acquire) {
            0 => None,
            since => {
                let now = shared.epoch.elapsed().as_millis() as u64;
                Some(std::time::Duration::from_millis(now.saturating_sub(since)))
            }
        }
    }

    /// Stores `records` as one chunk with consecutive seqs and returns once they are durable
    /// (flushed), or `Rejected` under [`WhenFull::Reject`] when full. Under
    /// [`WhenFull::Block`] this waits while the buffer is full. An empty `records` is an
    /// error ([`BufferError::EmptyAppend`]), and so is a chunk larger than the whole buffer
    /// ([`BufferError::TooLarge`]).
    ///
    /// Cancel safety: dropping the future before it returns may still store the records
    /// (they get seqs and are published); the caller just does not learn them. A device
    /// that was not answered resends, so that costs a duplicate, never a loss.
    pub async fn append(&self, records: Vec<Record>) -> Result<Appended, BufferError> {
        let shared = self.shared();
        let path = || shared.path.clone();
        if records.is_empty() {
            return Err(BufferError::EmptyAppend { path: path() });
        }
        // Duplicates of stored records leave here, before anything is encoded or reserved.
        let (records, dedup_delta) = match &shared.dedup {
            None => (records, Vec::new()),
            Some(window) => {
                let hashes: Vec<Option<u64>> = records.iter().map(content_hash).collect();
                let admitted = window
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .admit(records, &hashes);
                for protocol in &admitted.duplicates {
                    crate::clean::metrics::duplicate(*protocol);
                }
                if admitted.records.is_empty() {
                    return Ok(Appended::Duplicate);
                }
                (admitted.records, admitted.delta)
            }
        };
        let too_large = |bytes: u64| BufferError::TooLarge {
            path: path(),
            records: records.len() as u64,
            bytes,
            max_records: shared.space_max().records,
            max_bytes: shared.space_max().bytes,
            max_chunk_bytes: MAX_CHUNK_BYTES as u64,
        };
        if u32::try_from(records.len()).is_err() {
            return Err(too_large(0));
        }
        let alarm_offsets = alarms::offsets(&records);
        let value = store::encode_chunk(&records).map_err(|source| BufferError::Encode {
            path: path(),
            records: records.len(),
            source,
        })?;
        let amount = Amount {
            records: records.len() as u64,
            bytes: value.len() as u64,
        };
        if value.len() > MAX_CHUNK_BYTES || !shared.space.fits_ever(amount) {
            return Err(too_large(amount.bytes));
        }
        drop(records);
        // Low disk space or a failing database refuse like a full buffer.
        if let Some(refused) = space::admit(shared).await {
            return Ok(refused);
        }

        match shared.when_full {
            // The common case (room) costs one look; only an append that waits registers.
            WhenFull::Block if shared.space.try_reserve(amount) => {}
            WhenFull::Block => loop {
                // Register for the wake-up before looking, so a drain between the look and
                // the wait is not missed.
                let drained = shared.space.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if shared.space.try_reserve(amount) {
                    break;
                }
                drained.await;
            },
            WhenFull::Reject => {
                if !shared.space.try_reserve(amount) {
                    shared
                        .space
                        .rejected_appends
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(Appended::Rejected);
                }
            }
            WhenFull::DropOldest => loop {
                let committed = shared.space.committed.notified();
                tokio::pin!(committed);
                committed.as_mut().enable();
                let reserved = shared
                    .space
                    .reserve_dropping(amount, || shared.drop_oldest_chunk());
                if let Err(e) = &reserved {
                    // A removal that poisoned sled needs the committer's reopen, as in
                    // `remove_through`.
                    if recovery::poisons(e) {
                        shared.fault.fail(&shared.path, e.to_string());
                        self.wake_committer();
                    }
                }
                if reserved? {
                    break;
                }
                // All the room is held by appends in flight; wait for their round.
                committed.await;
            },
        }

        // From here the room is reserved; the committer releases it (into stored, or back).
        let Some(ticket) = shared
            .queue
            .push(value, amount.records, dedup_delta, alarm_offsets)
        else {
            shared.space.release_reserved(amount);
            return Err(BufferError::Closed { path: path() });
        };
        #[cfg(test)]
        shared.appends_queued.fetch_add(1, Ordering::Release);
        match ticket.outcome.wait().await {
            Ok(round_first) => {
                let first_seq = round_first + ticket.offset;
                Ok(Appended::Stored {
                    first_seq,
                    last_seq: first_seq + amount.records - 1,
                })
            }
            Err(failure) => Err(failure.to_error(&shared.path)),
        }
    }

    /// Whole durable chunks in seq order, starting at the first chunk whose first seq is
    /// greater than `after_seq` (`None`: from the oldest). Stops before a chunk that would
    /// take the total past `max_records` or `max_bytes` (encoded), but returns at least one
    /// chunk if there is one.
    ///
    /// A chunk whose records cannot be decoded is moved to the quarantine tree: if it is the
    /// first one this call would return, the call returns [`BufferError::Corrupt`] naming it
    /// (and the next call continues after it); otherwise the call returns the chunks before
    /// it.
    pub fn read_after(
        &self,
        after_seq: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredChunk>, BufferError> {
        let shared = self.shared();
        // None: a reclaim is swapping the database, which it does only when the queue is
        // empty. A failing database hands out nothing: what cannot be removed after its
        // PUBACK is not published (`recovery.rs`).
        let Some(store) = shared.store.get().filter(|_| !shared.fault.is_failing()) else {
            return Ok(Vec::new());
        };
        let start = match after_seq {
            None => 0,
            Some(seq) => match seq.checked_add(1) {
                Some(start) => start,
                None => return Ok(Vec::new()),
            },
        };
        let start = start.max(shared.scan_from.load(Ordering::Acquire));
        let end = shared.durable_end.load(Ordering::Acquire);
        let mut out: Vec<StoredChunk> = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let (mut total_records, mut total_bytes) = (0usize, 0usize);
        for item in store.queue.range(seq_key(start)..seq_key(end)) {
            let (key, value) = item.map_err(store.sled_err("reading chunks"))?;
            let checked = key_seq(&key)
                .ok_or_else(|| format!("the key is {} bytes, not 8", key.len()))
                .and_then(|first| Ok((first, chunk_header(&value)?)));
            let decoded = checked.and_then(|(first, count)| {
                let n = count as usize;
                if !out.is_empty()
                    && (total_records + n > max_records || total_bytes + value.len() > max_bytes)
                {
                    return Ok(None);
                }
                Ok(Some((first, decode_chunk(&value)?)))
            });
            match decoded {
                Ok(Some((first_seq, records))) => {
                    total_records += records.len();
                    total_bytes += value.len();
                    out.push(StoredChunk {
                        first_seq,
                        records,
                        encoded_len: value.len(),
                        published_ahead: Vec::new(),
                    });
                }
                Ok(None) => break,
                Err(reason) => {
                    shared.quarantine(&store, &key, &value, &reason)?;
                    if out.is_empty() {
                        return Err(store.corrupt(&key, reason));
                    }
                    break;
                }
            }
        }
        alarms::mark_chunks(&store, &mut out)?;
        Ok(out)
    }

    /// Removes every durable chunk whose last seq is at or below `last_seq` (whole chunks
    /// only; a chunk that straddles `last_seq` stays), and returns how many records left.
    /// Not flushed: after a crash, acked records may be published again with the same seqs.
    /// An ack that leaves the buffer empty may let the commit thread reclaim disk space.
    pub fn ack_through(&self, last_seq: u64) -> Result<u64, BufferError> {
        let removed = self.remove_through(last_seq)?;
        if removed > 0 {
            self.hint_reclaim();
        }
        Ok(removed)
    }

    fn remove_through(&self, last_seq: u64) -> Result<u64, BufferError> {
        let shared = self.shared();
        if let Some(reason) = shared.fault.reason() {
            return Err(BufferError::Failing {
                path: shared.path.clone(),
                reason,
            });
        }
        // None: a reclaim is swapping the database; the queue is empty, nothing to remove.
        let Some(store) = shared.store.get() else {
            return Ok(0);
        };
        let end = shared.durable_end.load(Ordering::Acquire);
        // Never past what is durable (the committer may have applied but not flushed more).
        let limit = last_seq.min(end.saturating_sub(1));
        let from = shared.scan_from.load(Ordering::Acquire);
        if from > limit {
            return Ok(0);
        }
        // Recorded before anything is removed, so a durable mark never lags a removal.
        shared
            .mark
            .removed_through
            .fetch_max(limit, Ordering::AcqRel);
        let mut removed = Amount::default();
        // Where the next scan may start: every chunk below it is gone once this loop ends.
        let mut resume = limit + 1;
        let mut result = Ok(());
        for item in store.queue.range(seq_key(from)..=seq_key(limit)) {
            let step = item
                .map_err(store.sled_err("scanning chunks to remove"))
                .and_then(|(key, value)| {
                    let header = key_seq(&key)
                        .ok_or_else(|| format!("the key is {} bytes, not 8", key.len()))
                        .and_then(|first| Ok((first, chunk_header(&value)?)));
                    match header {
                        Ok((first, count)) => {
                            let last = first.saturating_add(u64::from(count) - 1);
                            if last > limit {
                                resume = first;
                                return Ok(false);
                            }
                            let old = store
                                .queue
                                .remove(&key)
                                .map_err(store.sled_err("removing acked chunks"))?;
                            if let Some(old) = old {
                                removed.records += u64::from(count);
                                removed.bytes += old.len() as u64;
                            }
                            Ok(true)
                        }
                        Err(reason) => {
                            // It is being acked anyway; keep it for forensics and go on.
                            shared.quarantine(&store, &key, &value, &reason)?;
                            Ok(true)
                        }
                    }
                });
            match step {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Account for what left even if a later step failed.
        shared.space.release_stored(removed);
        if let Err(e) = &result {
            if recovery::poisons(e) {
                shared.fault.fail(&shared.path, e.to_string());
                self.wake_committer();
            }
        }
        result?;
        alarms::forget_through(&store, limit)?;
        shared.scan_from.fetch_max(resume, Ordering::AcqRel);
        Ok(removed.records)
    }

    /// The last durable seq (0 before anything was ever stored); changes after every
    /// commit round, so the uplink can wait for data.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared().durable_tx.subscribe()
    }

    /// The gauges and counters. Cheap except `disk_bytes`, which lists sled's files.
    pub fn stats(&self) -> BufferStats {
        let shared = self.shared();
        let snapshot = shared.space.snapshot();
        let from = shared.scan_from.load(Ordering::Acquire);
        let end = shared.durable_end.load(Ordering::Acquire);
        // While a reclaim swaps the database the queue is empty, and the size is the last
        // one measured.
        let store = shared.store.get();
        let oldest_seq = match &store {
            Some(store) if from < end => {
                match store.queue.range(seq_key(from)..seq_key(end)).next() {
                    Some(Ok((key, _))) => key_seq(&key),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(size) = store.as_ref().and_then(|s| s.db.size_on_disk().ok()) {
            shared.disk_bytes.store(size, Ordering::Relaxed);
        }
        drop(store);
        BufferStats {
            records: snapshot.stored.records,
            bytes: snapshot.stored.bytes,
            in_flight_records: snapshot.reserved.records,
            in_flight_bytes: snapshot.reserved.bytes,
            next_seq: shared.next_seq.load(Ordering::Acquire),
            oldest_seq,
            full: snapshot.full,
            dropped_records: shared.space.dropped_records.load(Ordering::Relaxed),
            rejected_appends: shared.space.rejected_appends.load(Ordering::Relaxed),
            quarantined_chunks: shared.quarantined_chunks.load(Ordering::Relaxed),
            flushes: shared.flushes.load(Ordering::Relaxed),
            disk_bytes: shared.disk_bytes.load(Ordering::Relaxed),
            alert_records: snapshot.alert_records,
            above_alert: snapshot.above_alert,
            disk_reclaims: shared.disk_reclaims.load(Ordering::Relaxed),
            disk_reclaimed_bytes: shared.disk_reclaimed_bytes.load(Ordering::Relaxed),
            disk_free_bytes: shared.disk.free(),
            low_disk: shared.disk.is_low(),
            disk_refusals: shared.disk.refusals.load(Ordering::Relaxed),
            failing: shared.fault.is_failing(),
            recoveries: shared.fault.recoveries.load(Ordering::Relaxed),
            lost_records: shared.mark.lost_records.load(Ordering::Relaxed),
        }
    }

    /// Why appends are refused right now, if they are for a reason other than a full
    /// buffer: low disk space, or a failing database (for `/ready`).
    pub fn refusing(&self) -> Option<String> {
        space::refusal(self.shared())
    }

    /// Why the database is failing, while it is (for `/health`).
    pub fn failing(&self) -> Option<String> {
        self.shared().fault.reason()
    }

    /// How long the database has been failing while the disk had room for it to be
    /// reopened: the watchdog counts that as no progress (waiting for space is not).
    pub fn failing_with_room_for(&self) -> Option<std::time::Duration> {
        self.shared().fault.stuck_for()
    }

    /// The seq ranges (inclusive) found missing at open; see `durable_mark.rs`.
    pub fn lost_seq_ranges(&self) -> Vec<(u64, u64)> {
        self.shared()
            .mark
            .lost_ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wakes the commit thread (a failure seen outside it needs its reopen).
    fn wake_committer(&self) {
        self.shared().queue.poke();
    }

    /// Flushes sled (fsync): makes earlier acks stick. Appends flush on their own.
    pub fn flush(&self) -> Result<(), BufferError> {
        let shared = self.shared();
        // Waits for a reclaim in progress (which flushes both databases itself).
        let Some(store) = shared.store.wait() else {
            return Err(BufferError::Closed {
                path: shared.path.clone(),
            });
        };
        store
            .flush()
            .map(|_| ())
            .map_err(store.sled_err("flushing"))
    }

    /// Runs `f` on the commands tree of the live database (waiting for a reclaim in
    /// progress, which copies the tree into the database that stays). The tree must not be
    /// kept: a reclaim or a reopen replaces it.
    pub fn with_commands<R>(
        &self,
        f: impl FnOnce(&sled::Tree) -> Result<R, sled::Error>,
    ) -> Result<R, BufferError> {
        let shared = self.shared();
        let Some(store) = shared.store.wait() else {
            return Err(BufferError::Closed {
                path: shared.path.clone(),
            });
        };
        f(&store.commands).map_err(store.sled_err("writing the commands tree"))
    }

    /// Makes every write to the commands tree so far durable (fsync), without holding the
    /// store across the wait.
    pub async fn flush_commands(&self) -> Result<(), BufferError> {
        let shared = self.shared();
        let (db, device) = match shared.store.wait() {
            Some(store) => (store.db.clone(), Arc::clone(&store.device)),
            None => {
                return Err(BufferError::Closed {
                    path: shared.path.clone(),
                })
            }
        };
        let failed = |source| BufferError::Sled {
            path: shared.path.clone(),
            op: "flushing the commands tree",
            source,
        };
        let ticket = device.ticket();
        let flushed = match db.flush_async().await {
            // What sled's flush leaves out (`device_sync.rs`), off the async workers.
            Ok(_) => match tokio::task::spawn_blocking(move || device.after_flush(ticket)).await {
                Ok(synced) => synced.map(|_| ()).map_err(store::device_sync_failed),
                // A panic in it: not an IO failure of the database.
                Err(join) => return Err(failed(sled::Error::Io(std::io::Error::other(join)))),
            },
            Err(e) => Err(e),
        };
        let Err(source) = flushed else {
            return Ok(());
        };
        let error = failed(source);
        // As a failed removal: an IO error needs the committer's reopen (a failed device
        // sync has poisoned its `DeviceSync` until then).
        if recovery::poisons(&error) {
            shared.fault.fail(&shared.path, error.to_string());
            self.wake_committer();
        }
        Err(error)
    }

    /// The database directory.
    pub fn path(&self) -> &std::path::Path {
        &self.shared().path
    }
}

impl Shared {
    fn space_max(&self) -> Amount {
        self.space.max()
    }

    /// The committer marks the start (`true`) and end of each round or reclaim.
    fn set_busy(&self, busy: bool) {
        let since = match busy {
            // At least 1: 0 means idle.
            true => (self.epoch.elapsed().as_millis() as u64).max(1),
            false => 0,
        };
        self.busy_since_ms.store(since, Ordering::Release);
    }

    /// Moves an unreadable chunk to the quarantine tree with an error log and accounts for
    /// what left the queue.
    fn quarantine(
        &self,
        store: &Store,
        key: &[u8],
        value: &[u8],
        reason: &str,
    ) -> Result<(), BufferError> {
        tracing::error!(
            path = %self.path.display(),
            key = %store::key_hex(key),
            seq = ?key_seq(key),
            %reason,
            "buffer: unreadable chunk moved to the quarantine tree; its records will not be \
             published"
        );
        if let Some(old) = store.quarantine_entry(key, value)? {
            self.quarantined_chunks.fetch_add(1, Ordering::Relaxed);
            self.space.release_stored(Amount {
                records: chunk_header(&old).map(u64::from).unwrap_or(0),
                bytes: old.len() as u64,
            });
        }
        Ok(())
    }

    /// Removes the oldest durable chunk for [`WhenFull::DropOldest`]; called with the space
    /// lock held, so it must not touch `self.space`'s depth. `None` when nothing durable is
    /// left.
    fn drop_oldest_chunk(&self) -> Result<Option<Amount>, BufferError> {
        // None: a reclaim is swapping the database; the queue is empty, nothing to drop.
        let Some(store) = self.store.get() else {
            return Ok(None);
        };
        let end = self.durable_end.load(Ordering::Acquire);
        loop {
            let from = self.scan_from.load(Ordering::Acquire);
            if from >= end {
                return Ok(None);
            }
            let Some(item) = store.queue.range(seq_key(from)..seq_key(end)).next() else {
                return Ok(None);
            };
            let (key, value) = item.map_err(store.sled_err("finding the oldest chunk"))?;
            let header = key_seq(&key).map(|first| (first, chunk_header(&value)));
            let removed = match header {
                Some((first, Ok(count))) => {
                    self.mark.removed_through.fetch_max(
                        first.saturating_add(u64::from(count).saturating_sub(1)),
                        Ordering::AcqRel,
                    );
                    let old = store
                        .queue
                        .remove(&key)
                        .map_err(store.sled_err("dropping the oldest chunk"))?;
                    self.scan_from
                        .fetch_max(first.saturating_add(u64::from(count)), Ordering::AcqRel);
                    old
                }
                _ => {
                    tracing::error!(
                        path = %store.path.display(),
                        key = %store::key_hex(&key),
                        "buffer: unreadable chunk dropped to make room; moved to the \
                         quarantine tree"
                    );
                    let old = store.quarantine_entry(&key, &value)?;
                    if old.is_some() {
                        self.quarantined_chunks.fetch_add(1, Ordering::Relaxed);
                    }
                    old
                }
            };
            // `None`: another remover took it first; look again.
            if let Some(old) = removed {
                let records = chunk_header(&old).map(u64::from).unwrap_or(0);
                tracing::debug!(
                    path = %store.path.display(),
                    seq = ?key_seq(&key),
                    records,
                    "buffer full: dropped the oldest chunk"
                );
                return Ok(Some(Amount {
                    records,
                    bytes: old.len() as u64,
                }));
            }
        }
    }
}
