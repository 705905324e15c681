//! A database whose writes fail (ENOSPC, EIO) is closed and opened again, on the commit
//! thread, without a restart and without losing what was durable.
//!
//! # Why a reopen
//!
//! sled 0.34.7 keeps the first error of an asynchronous write in a global slot
//! (`Config::set_global_error`, set when writing an IO buffer fails) and returns it from
//! every later write, removal and flush: the database is poisoned until it is dropped. Only
//! `PageCache::start`, i.e. opening the database again, clears it. What was flushed before
//! the error is on disk behind checksums, and recovery at open reads the log up to the last
//! complete write, so a reopen gets back exactly the durable state (measured: the tmpfs test
//! in `tests/buffer_faults.rs` fills the disk, frees it, and gets every acknowledged record).
//!
//! # What happens
//!
//! 1. A commit round whose write or flush fails (or an acknowledgement whose removal fails)
//!    marks the buffer *failing*, with the reason; the round's appends get the error (their
//!    devices were not answered and resend) and its seqs are recorded as unstored in the
//!    durable mark. From then on the append gate (`space.rs`) refuses or holds new appends
//!    per `when_full`, [`super::Buffer::read_after`] hands the uplink nothing (what cannot be
//!    removed after PUBACK is not published), and acknowledgements are errors.
//! 2. The commit thread tries a reopen at once when the filesystem has room
//!    ([`super::space::DiskGuard::has_room_to_recover`]), else it waits for room, looking every
//!    second; a failed reopen is tried again after 1 s, doubling up to [`MAX_RETRY`].
//! 3. The reopen closes the poisoned database, waits until sled lets go of its files, opens
//!    it the way a start does (settling a reclaim, checking the durable mark), removes the
//!    chunks of rounds that failed (never acknowledged to a device), writes the seq counter
//!    (the commit thread's, which never goes back) and flushes: a write that fails again
//!    means the disk is still refusing, and the attempt counts as failed.
//! 4. Success: the depth is taken from the reopened database, readers and the uplink are
//!    woken, appends flow again. `/health` and `/ready` say *failing* meanwhile, and the
//!    watchdog counts a buffer failing for [`crate::watchdog::COMMIT_STALL_LIMIT`] *while the
//!    disk has room* as a stall (no room: it waits for space like a full buffer waits for the
//!    uplink, and a restart would not help).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::Amount;
use super::store::{chunk_header, seq_key, Store, NEXT_SEQ_KEY};
use super::{BufferError, BufferOptions, Shared};

/// Longest wait between two reopen attempts while the disk has room.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often the commit thread looks for new messages while it waits to retry.
const POLL: Duration = Duration::from_millis(20);

/// Whether the buffer's database is failing, since when, and why.
pub(super) struct Fault {
    epoch: Instant,
    failing: AtomicBool,
    /// When the failure began, ms after `epoch` + 1.
    since_ms: AtomicU64,
    /// Since when the disk has had room and the database still fails (ms after `epoch` + 1;
    /// 0 while waiting for room).
    stuck_since_ms: AtomicU64,
    reason: Mutex<String>,
    /// First seqs of chunks applied by rounds whose flush failed.
    failed_chunks: Mutex<Vec<u64>>,
    pub recoveries: AtomicU64,
}

impl Fault {
    pub fn new() -> Fault {
        Fault {
            epoch: Instant::now(),
            failing: AtomicBool::new(false),
            since_ms: AtomicU64::new(0),
            stuck_since_ms: AtomicU64::new(0),
            reason: Mutex::new(String::new()),
            failed_chunks: Mutex::new(Vec::new()),
            recoveries: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Why the database is failing, while it is.
    pub fn reason(&self) -> Option<String> {
        if !self.is_failing() {
            return None;
        }
        Some(
            self.reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Marks the database failing (logged once per failure).
    pub fn fail(&self, shared_path: &std::path::Path, why: String) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if self.failing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(
            path = %shared_path.display(), error = %why,
            "buffer: the database's writes are failing; refusing new records (per \
             buffer.when_full) and reopening it as soon as the disk has room"
        );
        *reason = why;
        self.since_ms.store(self.now_ms(), Ordering::Release);
    }

    /// The chunks a failed round applied (to remove after the reopen).
    pub fn failed_round(&self, first_seqs: impl IntoIterator<Item = u64>) {
        self.failed_chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(first_seqs);
    }

    /// How long the database has failed while the disk had room: the watchdog's measure.
    pub fn stuck_for(&self) -> Option<Duration> {
        let since = self.stuck_since_ms.load(Ordering::Acquire);
        (self.is_failing() && since != 0)
            .then(|| Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    /// How long the database has been failing.
    pub fn failing_for(&self) -> Option<Duration> {
        self.is_failing().then(|| {
            Duration::from_millis(
                self.now_ms()
                    .saturating_sub(self.since_ms.load(Ordering::Acquire)),
            )
        })
    }
}

/// Whether a sled error means the database is poisoned (an IO error: ENOSPC, EIO, …).
pub(super) fn poisons(e: &BufferError) -> bool {
    matches!(
        e,
        BufferError::Sled {
            source: sled::Error::Io(_),
            ..
        }
    )
}

/// [`recover`] if the database is failing; `true` (go on) otherwise.
pub(super) fn recover_if_failing(
    shared: &Shared,
    opts: &BufferOptions,
    next_seq: &mut u64,
) -> bool {
    !shared.fault.is_failing() || recover(shared, opts, next_seq)
}

/// Runs on the commit thread while the database is failing: reopens it once the disk has
/// room, answering appends that were already queued with an error meanwhile. Returns
/// `false` when the buffer was closed meanwhile (the commit thread stops).
pub(super) fn recover(shared: &Shared, opts: &BufferOptions, next_seq: &mut u64) -> bool {
    let mut retry = Duration::from_secs(1);
    while shared.fault.is_failing() {
        if shared.disk.has_room_to_recover() {
            let _ = shared.fault.stuck_since_ms.compare_exchange(
                0,
                shared.fault.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            match reopen(shared, opts, next_seq) {
                Ok(()) => return true,
                Err(why) => {
                    tracing::warn!(
                        path = %opts.path.display(), error = %why, retry_in_ms = retry.as_millis() as u64,
                        "buffer: reopening the failing database did not work yet"
                    );
                    *shared
                        .fault
                        .reason
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = why;
                }
            }
        } else {
            shared.fault.stuck_since_ms.store(0, Ordering::Release);
            retry = Duration::from_secs(1);
        }
        let until = Instant::now() + retry;
        retry = (retry * 2).min(MAX_RETRY);
        while Instant::now() < until {
            let reason = shared.fault.reason().unwrap_or_default();
            if !shared.queue.refuse_queued(shared, &reason) {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }
    true
}

/// Step 3 and 4 of the module doc.
fn reopen(shared: &Shared, opts: &BufferOptions, next_seq: &mut u64) -> Result<(), String> {
    let mut slot = shared.store.write();
    drop(slot.take());
    if !super::reclaim::wait_until_released(&opts.path) {
        return Err("sled still holds the closed database".into());
    }
    let (store, scan) = super::reclaim::open(opts).map_err(|e| e.to_string())?;
    let (store, scan, found) =
        super::durable_mark::settle(opts, store, scan).map_err(|e| e.to_string())?;
    // The comparison may have replaced the mark file whole.
    shared.mark.file_replaced();
    let failed: Vec<u64> = std::mem::take(
        &mut *shared
            .fault
            .failed_chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let mut removed = Amount::default();
    let next = (*next_seq).max(scan.next_seq);
    let write = |store: &Store, removed: &mut Amount| -> Result<(), sled::Error> {
        for first in &failed {
            if let Some(old) = store.queue.remove(seq_key(*first))? {
                removed.records += chunk_header(&old).map(u64::from).unwrap_or(0);
                removed.bytes += old.len() as u64;
            }
            // A failed round's duplicate-window entry (keyed by its first chunk's seq).
            store.queue.remove(super::dedup::round_key(*first))?;
        }
        store.queue.insert(NEXT_SEQ_KEY, &next.to_be_bytes())?;
        store.flush()?;
        Ok(())
    };
    if let Err(e) = write(&store, &mut removed) {
        // Still refusing: keep the chunk list for the next attempt.
        shared
            .fault
            .failed_chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(failed);
        return Err(format!("the reopened database still fails to write: {e}"));
    }
    *next_seq = next;
    shared.next_seq.store(next, Ordering::Release);
    shared.space.reset_stored(Amount {
        records: scan.records.saturating_sub(removed.records),
        bytes: scan.bytes.saturating_sub(removed.bytes),
    });
    shared
        .quarantined_chunks
        .fetch_add(scan.quarantined_chunks, Ordering::Relaxed);
    for (first, last) in found.unstored {
        shared.mark.spent_unstored(first, last);
    }
    if found.lost_records > 0 {
        shared
            .mark
            .lost_records
            .fetch_add(found.lost_records, Ordering::Relaxed);
        shared
            .mark
            .lost_ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(found.lost_ranges);
    }
    shared
        .scan_from
        .store(scan.oldest_seq.unwrap_or(next), Ordering::Release);
    shared.durable_end.store(next, Ordering::Release);
    *slot = Some(store);
    drop(slot);
    let failed_for = shared.fault.failing_for().unwrap_or_default();
    shared.fault.failing.store(false, Ordering::Release);
    shared.fault.stuck_since_ms.store(0, Ordering::Release);
    shared.fault.recoveries.fetch_add(1, Ordering::Relaxed);
    shared.durable_tx.send_replace(next - 1);
    shared.space.drained.notify_waiters();
    tracing::info!(
        path = %opts.path.display(),
        records = scan.records.saturating_sub(removed.records),
        next_seq = next,
        failed_for_ms = failed_for.as_millis() as u64,
        "buffer recovered: reopened the database; accepting records again"
    );
    Ok(())
}

/// A commit round failed (its write or its flush): the database is failing from now on,
/// the round's seqs `first_seq..end` were spent without being stored, and `applied` chunks
/// (their first seqs) may sit in the database until the reopen removes them.
pub(super) fn round_failed(
    shared: &Shared,
    first_seq: u64,
    end: u64,
    applied: impl IntoIterator<Item = u64>,
    why: String,
) {
    shared.fault.fail(&shared.path, why);
    shared.fault.failed_round(applied);
    shared.mark.spent_unstored(first_seq, end - 1);
    shared.mark.after_round(shared, end);
}
