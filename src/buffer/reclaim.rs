//! Disk reclaim: sled's files never shrink, so after a large backlog has drained the buffer
//! would keep its peak size on disk forever. Once the queue is empty and sled's files are
//! larger than `reclaim_above_bytes`, the commit thread replaces the database with a fresh one
//! that holds only the next-seq counter, the duplicate window's log (`dedup.rs`) and the
//! quarantine and commands trees, then deletes the old files.
//!
//! # When
//!
//! [`Buffer::ack_through`](super::Buffer::ack_through) sends the commit thread a hint when an
//! ack leaves the buffer empty (and the buffer sends one at open). The commit thread acts on
//! it only when nothing is stored and nothing is reserved (no append on its way), and only if
//! sled reports more than the threshold on disk. The threshold is never below twice the size
//! of the last freshly reclaimed database, so a threshold smaller than an empty database does
//! not make every drain reclaim again.
//!
//! # Why appenders never notice
//!
//! The commit thread is the only writer of chunks, and it runs the reclaim itself: appends
//! that arrive meanwhile wait in its queue with their room reserved, exactly as they wait for
//! a commit round, and are committed into the new database afterwards. No append fails and no
//! reply is sent before its records are durable in the database that stays. Readers (the
//! uplink, stats, drop-oldest) never wait either: while the reclaim holds the store they see
//! `None` from [`StoreCell::get`](super::store::StoreCell::get) and treat it as the empty queue
//! it is (nothing can be added while the commit thread is busy reclaiming, and removers only
//! remove).
//!
//! # Steps
//!
//! With `P` the configured path, `N` = `P.reclaim-new` and `O` = `P.reclaim-old`:
//!
//! 1. Remove a leftover `N` or `O`; create a fresh sled database at `N`.
//! 2. Take the store exclusively; check again that the queue tree holds no chunk (else undo
//!    1 and stop).
//! 3. Write the next-seq counter (the commit thread's own, so exact) and copy the quarantine
//!    tree into `N`; flush `N` and the old database (making the acks that emptied it
//!    durable); close `N` and wait until sled lets go of its lock; fsync the directory `N`.
//! 4. Close the old database and wait until sled's IO threads let go of its lock (they
//!    write some files by path, so a database's directory must never be renamed under
//!    them). Still held after [`store::LOCK_WAIT`]: reopen it in place, delete `N`, and
//!    treat it as a failure in 1–3.
//! 5. Rename `P` → `O`; fsync the parent directory.
//! 6. Rename `N` → `P`; fsync the parent directory.
//! 7. Open `P` and release the store; then remove `O`.
//!
//! A failure in 1–3 deletes `N` and keeps the live database; the next attempt waits
//! [`RETRY_AFTER`]. A failure in 5–7 is settled by [`recover`], exactly as a crash at that
//! point is settled at the next open, and the database it leaves at `P` is opened again.
//!
//! # Crash safety
//!
//! [`recover`] runs at every open ([`open`]), before sled touches `P`:
//!
//! - `P` missing and `O` present: a crash between 5 and 6. `O` is the old database, closed
//!   after a flush, holding no chunk and the counter. It is renamed back to `P`.
//! - `P`, `O` and `N` all present: the same crash, after which something recreated `P`
//!   (sled creates a database's directory at any open and writes some files by path). No
//!   step leaves all three: `N` exists only from 1 to 6, `O` only from 5 on (1 removes a
//!   leftover one before `N` is created), and `P` is absent from 5 to 6. So `P` holds no
//!   database of ours; it is removed and `O` renamed back.
//! - Then any `N` or `O` left beside an existing `P` is garbage and removed: with `P`
//!   present, `P` is the live database (the old one before 5, or the new one — complete,
//!   flushed and its directory fsynced in 3 — after 6), and what remains of `N` or `O` holds no
//!   record (the queue was empty at 2) and at most a counter no larger than `P`'s.
//!
//! Records: a reclaim starts only with an empty queue, and nothing can be committed until it
//! ends, so whichever database survives holds every unacknowledged record there is (none).
//! Seqs: both databases hold the counter `next_seq` durably before the first rename (the old
//! one wrote it in its last commit batch and was flushed in 3; the new one in 3), so the
//! database at `P` after any crash continues from `next_seq` and never reuses a seq. Each
//! rename is atomic and made durable by an fsync of the parent before the next step, so a
//! crash leaves one of the states above and nothing in between.
//!
//! If no database can be opened at `P` after a failed step (the disk is gone), the commit
//! thread stops: the gateway exits so its supervisor restarts it, appends waiting then get an
//! error (their devices were not answered and resend), and the next open settles the
//! directories as after a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::store::{self, OpenScan, Store, NEXT_SEQ_KEY};
use super::{BufferError, BufferOptions, Shared};

/// Suffix of the database being built by a reclaim.
pub(super) const NEW_SUFFIX: &str = ".reclaim-new";
/// Suffix of the replaced database until it is deleted.
pub(super) const OLD_SUFFIX: &str = ".reclaim-old";
/// After a failed reclaim, no new attempt before this much time has passed: a disk that
/// refuses a rename now will likely refuse it on the next drain too.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(600);

/// `<path><suffix>`, a sibling of the database directory.
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens the database at `opts.path` ([`Store::open`]) after settling a reclaim that was
/// interrupted (a crash, a power cut, a failed step) with [`recover`]: every open goes
/// through here, so the store itself needs to know nothing of reclaims.
pub(super) fn open(opts: &BufferOptions) -> Result<(Store, OpenScan), BufferError> {
    recover(&opts.path).map_err(|source| BufferError::Reclaim {
        path: opts.path.clone(),
        step: "settling an interrupted reclaim",
        source,
    })?;
    Store::open(opts)
}

/// Settles an interrupted reclaim before the database at `path` is opened; see the module
/// doc. An error means the old database could not be put back at `path`.
fn recover(path: &Path) -> std::io::Result<()> {
    let (new, old) = (sibling(path, NEW_SUFFIX), sibling(path, OLD_SUFFIX));
    if exists(path)? && exists(&old)? && exists(&new)? {
        // Between 5 and 6 `P` does not exist, yet something recreated it (sled creates its
        // directory at any open, and writes some files by path): it holds no database of
        // ours, and `O` is the live one. Keeping `P` would throw away the counter, the
        // quarantine and the queued commands with `O`.
        tracing::warn!(
            path = %path.display(),
            "buffer: a disk reclaim was interrupted after the database was moved aside, and \
             something recreated its path; removing that and restoring the database"
        );
        remove_any(path)?;
    }
    if !exists(path)? && exists(&old)? {
        std::fs::rename(&old, path)?;
        sync_parent(path)?;
        tracing::warn!(
            path = %path.display(),
            "buffer: a disk reclaim was interrupted; restored the database from before it"
        );
    }
    for leftover in [new, old] {
        if exists(&leftover)? {
            match remove_any(&leftover) {
                Ok(()) => tracing::info!(
                    path = %leftover.display(),
                    "buffer: removed what an interrupted disk reclaim left behind"
                ),
                // It holds no record; the next reclaim tries again.
                Err(e) => tracing::warn!(
                    path = %leftover.display(),
                    error = %e,
                    "buffer: cannot remove what an interrupted disk reclaim left behind"
                ),
            }
        }
    }
    Ok(())
}

fn exists(path: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// fsync of a directory, so the entries created or renamed in it are durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub(super) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// The size of everything under `path`, in bytes (files only); tests compare it with what
/// sled reports.
/// Waits (at most [`store::LOCK_WAIT`]) until no sled instance holds the database at `dir`,
/// by taking and dropping the same file lock sled takes on `dir/db`. `false`: still held.
pub(super) fn wait_until_released(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join("db")) else {
        return true;
    };
    let deadline = std::time::Instant::now() + store::LOCK_WAIT;
    while std::time::Instant::now() < deadline {
        if file.try_lock().is_ok() {
            let _ = file.unlock();
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tracing::warn!(
        path = %dir.display(),
        seconds = store::LOCK_WAIT.as_secs(),
        "sled still holds the database after closing it"
    );
    false
}

#[cfg(test)]
pub(super) fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_size(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The points of a reclaim where a test can inject a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The new database is complete (3 done), nothing renamed yet.
    Built,
    /// The old database is closed and sled let go of it (4 done). A failure injected here
    /// stands for sled still holding it.
    OldReleased,
    /// `P` was renamed to `O` (5 done).
    MovedOld,
    /// `N` was renamed to `P` (6 done).
    MovedNew,
}

/// What a test makes happen at a [`Step`].
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// Return an IO error (the failure is handled in-process).
    Fail(Step),
    /// Stop leaving the disk as it is, like a crash (the commit thread stops).
    Crash(Step),
    /// Wait here until the test removes the fault (at most 30 s).
    Pause(Step),
}

/// Faults injected by tests, each for the buffers under one directory (tests run in
/// parallel, each in its own tempdir).
#[cfg(test)]
pub(super) static FAULTS: std::sync::Mutex<Vec<(PathBuf, Fault)>> =
    std::sync::Mutex::new(Vec::new());

#[cfg(test)]
const CRASH: &str = "simulated crash";

/// Why a reclaim did not complete.
enum Failure {
    /// The live database is in place (the old one, or the new one); try again later.
    Recovered(String),
    /// No database could be opened at the path: the commit thread must stop.
    NoStore(String),
}

/// The commit thread's reclaim state.
pub(super) struct Reclaimer {
    opts: BufferOptions,
    /// Twice the size of the last freshly reclaimed database (0 before the first reclaim).
    floor: u64,
    /// After a failure, no attempt before this.
    not_before: Option<Instant>,
}

impl Reclaimer {
    pub fn new(opts: BufferOptions) -> Reclaimer {
        Reclaimer {
            opts,
            floor: 0,
            not_before: None,
        }
    }

    /// The options the buffer was opened with.
    pub fn options(&self) -> &BufferOptions {
        &self.opts
    }

    /// The size above which an empty buffer is reclaimed (0: never). While the disk is below
    /// `min_free_bytes`, any size above the floor: a reclaim is the only way sled gives space
    /// back (`space.rs`).
    fn threshold(&self, low_disk: bool) -> u64 {
        if low_disk {
            self.floor.max(2 << 20)
        } else if self.opts.reclaim_above_bytes == 0 {
            0
        } else {
            self.opts.reclaim_above_bytes.max(self.floor)
        }
    }

    /// Reclaims if the buffer is empty and larger than the threshold. Runs on the commit
    /// thread between rounds. Returns `false` when no database is open any more and the
    /// commit thread must stop.
    pub fn maybe_reclaim(&mut self, shared: &Shared, next_seq: u64) -> bool {
        let threshold = self.threshold(shared.disk.is_low());
        if threshold == 0 || !shared.space.is_empty() || shared.fault.is_failing() {
            return true;
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        let before = match shared.store.wait() {
            Some(store) => match store.db.size_on_disk() {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(path = %self.opts.path.display(), error = %e, "buffer: cannot size the database");
                    return true;
                }
            },
            None => return false,
        };
        shared.disk_bytes.store(before, Ordering::Relaxed);
        if before <= threshold {
            return true;
        }
        let started = Instant::now();
        let outcome = self.reclaim(shared, next_seq);
        // Tests wait for this to know the attempt is over, whatever its outcome.
        #[cfg(test)]
        shared.reclaims_finished.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(None) => true,
            Ok(Some(after)) => {
                self.floor = after.saturating_mul(2);
                self.not_before = None;
                shared.disk_bytes.store(after, Ordering::Relaxed);
                shared.disk_reclaims.fetch_add(1, Ordering::Relaxed);
                shared
                    .disk_reclaimed_bytes
                    .fetch_add(before.saturating_sub(after), Ordering::Relaxed);
                tracing::info!(
                    path = %self.opts.path.display(),
                    before_bytes = before,
                    after_bytes = after,
                    next_seq,
                    took_ms = started.elapsed().as_millis() as u64,
                    "buffer drained: reclaimed its disk space"
                );
                if after > self.opts.reclaim_above_bytes {
                    tracing::warn!(
                        path = %self.opts.path.display(),
                        empty_bytes = after,
                        reclaim_above_bytes = self.opts.reclaim_above_bytes,
                        "buffer.reclaim_above_bytes is below the size of an empty database; \
                         reclaiming only above twice the empty size"
                    );
                }
                true
            }
            Err(Failure::Recovered(reason)) => {
                self.not_before = Some(Instant::now() + RETRY_AFTER);
                tracing::warn!(
                    path = %self.opts.path.display(),
                    %reason,
                    retry_in_s = RETRY_AFTER.as_secs(),
                    "buffer: disk reclaim failed; the buffer goes on with the database at its path"
                );
                true
            }
            Err(Failure::NoStore(reason)) => {
                tracing::error!(
                    path = %self.opts.path.display(),
                    %reason,
                    "buffer: disk reclaim failed and no database could be opened; stopping \
                     the commit thread so the gateway restarts"
                );
                false
            }
        }
    }

    /// Steps 1–7 of the module doc. `Ok(None)`: the queue was not empty after all.
    /// `Ok(Some(bytes))`: done, the new database's size.
    fn reclaim(&self, shared: &Shared, next_seq: u64) -> Result<Option<u64>, Failure> {
        let path = self.opts.path.as_path();
        let new_path = sibling(path, NEW_SUFFIX);
        let recovered = |what: &str, e: &dyn std::fmt::Display| {
            let _ = remove_any(&new_path);
            Failure::Recovered(format!("{what}: {e}"))
        };

        // 1. A fresh database beside the live one. With the live one at `P`, whatever is
        // left at `N` or `O` (an earlier attempt that could not clean up) is garbage.
        for leftover in [new_path.clone(), sibling(path, OLD_SUFFIX)] {
            if exists(&leftover).map_err(|e| recovered("looking for a leftover", &e))? {
                remove_any(&leftover).map_err(|e| recovered("removing a leftover", &e))?;
            }
        }
        let fresh = store::try_open(&new_path, &self.opts)
            .map_err(|e| recovered("creating the new database", &e))?;

        // 2. Nobody reads the old store from here on.
        let mut slot = shared.store.write();
        let Some(old) = slot.as_ref() else {
            drop(fresh);
            let _ = remove_any(&new_path);
            return Err(Failure::NoStore("the buffer has no database".into()));
        };
        let empty = shared.space.is_empty()
            && old
                .queue_is_empty()
                .map_err(|e| recovered("checking the queue", &e))?;
        if !empty {
            drop(fresh);
            let _ = remove_any(&new_path);
            return Ok(None);
        }

        // 3. The counter and the quarantine into the new database, everything flushed.
        let dedup_log = shared.dedup.as_ref().map(|w| {
            let window = w.lock().unwrap_or_else(|p| p.into_inner());
            window.log_entries()
        });
        fill(&fresh, old, next_seq, dedup_log.unwrap_or_default())
            .map_err(|e| recovered("filling the new database", &e))?;
        old.flush()
            .map_err(|e| recovered("flushing the old database", &e))?;
        drop(fresh);
        if !wait_until_released(&new_path) {
            return Err(recovered(
                "sled did not let go of the new database",
                &"its file lock is still held",
            ));
        }
        sync_dir(&new_path).map_err(|e| recovered("syncing the new directory", &e))?;
        if let Err(e) = self.fault(Step::Built) {
            if self.crashed(&e) {
                // As if the process died here: the old database stays open in the slot
                // until the buffer is dropped, and `N` stays on disk.
                drop(slot);
                return Err(Failure::NoStore(e.to_string()));
            }
            return Err(recovered("injected", &e));
        }

        // 4. Close the old database; from here a failure is settled like a crash.
        drop(slot.take());
        // sled's IO threads let go of a closed database a moment later, and some of their
        // work goes by path: renaming under a straggler would let it touch the database
        // that takes the old one's place.
        let mut held = !wait_until_released(path);
        if let Err(e) = self.fault(Step::OldReleased) {
            if self.crashed(&e) {
                return Err(Failure::NoStore(format!("simulated crash: {e}")));
            }
            held = true;
        }
        if held {
            // Renaming under a straggler is what the wait is for: leave both where they are
            // and take the old database back (the open waits for the lock once more).
            let store = store::open_waiting_for_lock(path, &self.opts).map_err(|e| {
                Failure::NoStore(format!(
                    "reopening {} after sled held it past a reclaim: {e}",
                    path.display()
                ))
            })?;
            *slot = Some(store);
            drop(slot);
            let _ = remove_any(&new_path);
            return Err(Failure::Recovered(
                "sled held the old database after closing it; it stays in place".into(),
            ));
        }
        let swapped = self.swap(path, &new_path);
        if let Err(e) = &swapped {
            if self.crashed(e) {
                return Err(Failure::NoStore(format!("simulated crash: {e}")));
            }
            recover(path)
                .map_err(|r| Failure::NoStore(format!("swapping: {e}; then restoring: {r}")))?;
        }
        let store = store::open_waiting_for_lock(path, &self.opts).map_err(|e| {
            Failure::NoStore(format!(
                "reopening {} after {}: {e}",
                path.display(),
                match &swapped {
                    Ok(()) => "the swap".to_string(),
                    Err(s) => format!("a failed swap ({s})"),
                }
            ))
        })?;
        let after = store.db.size_on_disk().unwrap_or(0);
        *slot = Some(store);
        drop(slot);
        if let Err(e) = swapped {
            return Err(Failure::Recovered(format!("swapping the directories: {e}")));
        }

        // 7. The old files (they hold no record; a failure here is retried at the next open
        // or reclaim).
        let old_path = sibling(path, OLD_SUFFIX);
        if let Err(e) = remove_any(&old_path) {
            tracing::warn!(path = %old_path.display(), error = %e, "buffer: cannot remove the replaced database");
        }
        Ok(Some(after))
    }

    /// Steps 5 and 6.
    fn swap(&self, path: &Path, new_path: &Path) -> std::io::Result<()> {
        let old_path = sibling(path, OLD_SUFFIX);
        std::fs::rename(path, &old_path)?;
        sync_parent(path)?;
        self.fault(Step::MovedOld)?;
        std::fs::rename(new_path, path)?;
        sync_parent(path)?;
        self.fault(Step::MovedNew)?;
        Ok(())
    }

    #[cfg(test)]
    fn fault(&self, step: Step) -> std::io::Result<()> {
        let found = FAULTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(dir, fault)| {
                self.opts.path.starts_with(dir)
                    && matches!(fault, Fault::Fail(at) | Fault::Crash(at) | Fault::Pause(at) if *at == step)
            })
            .cloned();
        match found {
            Some((_, Fault::Fail(_))) => Err(std::io::Error::other(format!(
                "injected failure at {step:?}"
            ))),
            Some((_, Fault::Crash(_))) => {
                Err(std::io::Error::other(format!("{CRASH} at {step:?}")))
            }
            Some(entry @ (_, Fault::Pause(_))) => {
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline
                    && FAULTS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&entry)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    #[cfg(not(test))]
    fn fault(&self, _step: Step) -> std::io::Result<()> {
        Ok(())
    }

    /// Whether `e` is a simulated crash: the disk is left as it is.
    #[cfg(test)]
    fn crashed(&self, e: &std::io::Error) -> bool {
        e.to_string().starts_with(CRASH)
    }

    #[cfg(not(test))]
    fn crashed(&self, _e: &std::io::Error) -> bool {
        false
    }
}

/// Step 3's writes: the counter, the duplicate window's log, and copies of the quarantine
/// and commands trees (queued downlink commands are not records and outlive a drained
/// queue), then a flush.
fn fill(
    fresh: &Store,
    old: &Store,
    next_seq: u64,
    dedup_log: Vec<([u8; 21], Vec<u8>)>,
) -> Result<(), sled::Error> {
    fresh.queue.insert(NEXT_SEQ_KEY, &next_seq.to_be_bytes())?;
    // The duplicate window's log outlives the records it describes (`dedup.rs`); the
    // commit thread (running this) holds it in memory as it is on disk.
    for (key, value) in dedup_log {
        fresh.queue.insert(key, value)?;
    }
    for item in old.quarantine.iter() {
        let (key, value) = item?;
        fresh.quarantine.insert(key, value)?;
    }
    for item in old.commands.iter() {
        let (key, value) = item?;
        fresh.commands.insert(key, value)?;
    }
    fresh.flush()?;
    Ok(())
}
