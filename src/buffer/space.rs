//! Disk space as a limit of its own ([`super::BufferOptions::min_free_bytes`]), and the gate
//! every append passes before it reserves room: a filesystem with less than
//! `min_free_bytes` free, or a database whose writes are failing (see `recovery.rs`), refuses
//! new records the way a full buffer does.
//!
//! # Why a reserve, not just the error
//!
//! sled 0.34.7 poisons itself on the first failed write: the error is kept in a global slot
//! that every later write and removal returns, even once space is back, until the database
//! is closed and opened again. Running into ENOSPC therefore costs a reopen (a scan of the
//! whole backlog) and refuses devices meanwhile. Stopping at a reserve keeps sled from ever
//! seeing the full disk in the usual case (the buffer itself growing into it); the reopen in
//! `recovery.rs` is for the rest (something else filled the disk between two checks, EIO).
//!
//! # What the gate does
//!
//! The free space is `statvfs`'s `f_bavail × f_frsize` (what an unprivileged writer may
//! use) of the buffer's filesystem, measured at most every [`RECHECK`] (a few microseconds,
//! so appends measure it themselves; no thread polls an idle gateway). While it is below the
//! reserve, or the database is failing:
//!
//! - `block`: the append waits, looking again every [`RECHECK`]; TCP holds the device.
//! - `reject` and `drop_oldest`: the append is answered [`Appended::Rejected`] (the device's
//!   "not accepted"). Dropping the oldest records would not give the filesystem anything
//!   back (sled keeps its files' size), so `drop_oldest` refuses too.
//!
//! Every append refused or held here counts once in [`DiskGuard::refusals`]. The state is
//! logged once when it starts and once when it ends.
//!
//! sled's files do not shrink when records leave, so a reserve crossed by the buffer's own
//! growth comes back only with a disk reclaim: while the disk is low, the reclaim of a
//! drained buffer runs whatever `reclaim_above_bytes` says (`reclaim.rs` asks
//! [`DiskGuard::is_low`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Appended, Shared, WhenFull};

/// Longest time a measurement of the free space is used for.
pub(super) const RECHECK: Duration = Duration::from_millis(250);

/// The free space of the filesystem holding `path` (or, while `path` does not exist, its
/// nearest existing ancestor), in bytes an unprivileged writer may use.
pub(super) fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let mut at = path;
    loop {
        match rustix::fs::statvfs(at) {
            Ok(st) => return Ok(st.f_bavail.saturating_mul(st.f_frsize)),
            Err(e) if e == rustix::io::Errno::NOENT => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => return Ok(u64::MAX),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// The free-space state of the buffer's filesystem.
pub(super) struct DiskGuard {
    path: PathBuf,
    /// 0: off.
    min_free: u64,
    epoch: Instant,
    /// When `free` was measured, in ms after `epoch` (+1; 0 = never).
    checked_at_ms: AtomicU64,
    /// The last measurement (`u64::MAX` before the first, or when it cannot be taken).
    free: AtomicU64,
    low: AtomicBool,
    /// Appends refused or held because of low space or a failing database.
    pub refusals: AtomicU64,
}

impl DiskGuard {
    pub fn new(path: PathBuf, min_free: u64) -> DiskGuard {
        let guard = DiskGuard {
            path,
            min_free,
            epoch: Instant::now(),
            checked_at_ms: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
            refusals: AtomicU64::new(0),
        };
        guard.measure();
        guard
    }

    /// Measures now, updates the low state (logging a change) and returns the free bytes.
    pub fn measure(&self) -> u64 {
        let free = match free_bytes(&self.path) {
            Ok(free) => free,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "buffer: statvfs failed");
                u64::MAX
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.checked_at_ms.store(now, Ordering::Relaxed);
        let low = self.min_free > 0 && free < self.min_free;
        if self.low.swap(low, Ordering::AcqRel) != low {
            if low {
                tracing::warn!(
                    path = %self.path.display(),
                    free_bytes = free,
                    min_free_bytes = self.min_free,
                    "buffer: the filesystem is below buffer.min_free_bytes; refusing new records \
                     (per buffer.when_full) until space returns"
                );
            } else {
                tracing::info!(
                    path = %self.path.display(),
                    free_bytes = free,
                    min_free_bytes = self.min_free,
                    "buffer: disk space is back above buffer.min_free_bytes; accepting records"
                );
            }
        }
        free
    }

    /// The free bytes, measured again if the last measurement is older than [`RECHECK`].
    pub fn free(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let at = self.checked_at_ms.load(Ordering::Relaxed);
        if at == 0 || now.saturating_sub(at) >= RECHECK.as_millis() as u64 {
            return self.measure();
        }
        self.free.load(Ordering::Relaxed)
    }

    /// Whether the free space is below the reserve (measured again when stale).
    pub fn is_low(&self) -> bool {
        self.free();
        self.low.load(Ordering::Acquire)
    }

    /// Whether the filesystem has room for sled to be opened and written again after a
    /// failure: the reserve, and at least 1 MiB (two of sled's segments) when it is off.
    pub fn has_room_to_recover(&self) -> bool {
        self.free() >= self.min_free.max(1 << 20)
    }
}

/// Why appends are refused now, if they are: low disk space or a failing database.
pub(super) fn refusal(shared: &Shared) -> Option<String> {
    if let Some(why) = shared.fault.reason() {
        return Some(format!("the buffer's database is failing: {why}"));
    }
    if shared.disk.is_low() {
        return Some(format!(
            "low disk space: {} bytes free, below buffer.min_free_bytes ({})",
            shared.disk.free.load(Ordering::Relaxed),
            shared.disk.min_free
        ));
    }
    None
}

/// The gate before an append reserves room. `None`: go on. `Some(Rejected)`: refuse (reject
/// and drop_oldest). Under block it waits, looking again every [`RECHECK`], and returns
/// `None` once appends may go on.
pub(super) async fn admit(shared: &Shared) -> Option<Appended> {
    let mut counted = false;
    while refusal(shared).is_some() {
        if !std::mem::replace(&mut counted, true) {
            shared.disk.refusals.fetch_add(1, Ordering::Relaxed);
        }
        match shared.when_full {
            WhenFull::Block => tokio::time::sleep(RECHECK).await,
            WhenFull::Reject | WhenFull::DropOldest => {
                shared
                    .space
                    .rejected_appends
                    .fetch_add(1, Ordering::Relaxed);
                return Some(Appended::Rejected);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_measured_for_a_path_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let there = free_bytes(dir.path()).expect("statvfs");
        let later = free_bytes(&dir.path().join("not/yet/made")).expect("statvfs");
        assert!(there > 0 && there != u64::MAX);
        // The same filesystem; other tests write meanwhile, so only roughly equal.
        assert!(later.abs_diff(there) < 1 << 30, "{there} vs {later}");
    }

    #[test]
    fn a_reserve_above_the_free_space_is_low_and_zero_is_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let off = DiskGuard::new(dir.path().to_path_buf(), 0);
        assert!(!off.is_low());
        let huge = DiskGuard::new(dir.path().to_path_buf(), u64::MAX);
        assert!(huge.is_low());
        assert!(!huge.has_room_to_recover());
        let small = DiskGuard::new(dir.path().to_path_buf(), 1);
        assert!(!small.is_low());
    }
}
