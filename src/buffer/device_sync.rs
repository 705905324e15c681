//! What sled's `flush()` leaves out, done after it: the drive's write cache and sled's blob
//! files. Without this a record answered to its device can be lost in a power cut.
//!
//! sled 0.34.7 makes its log durable with `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`
//! (`pagecache/iobuf.rs`). That system call waits until the data has reached the drive, but
//! it sends no cache flush: on a drive with a volatile write cache (eMMC, SD cards and most
//! consumer SSDs; the man page: "does not provide any data integrity on systems with
//! volatile disk write caches") the log can still be lost when the power goes. A log entry
//! larger than a quarter of a segment (128 KiB: a big chunk, or a consolidated leaf of big
//! chunks, as a JSON-lines stream makes) goes to a file of its own under `<db>/blobs/`.
//! sled writes that file with plain writes and never syncs it or its directory
//! (`pagecache/blob_io.rs`). Both are known upstream (sled
//! issues 1351 and 1452) and are not fixed in the pinned release.
//!
//! [`DeviceSync::after_flush`] is called after every `flush()` whose durability fleetedge
//! acts on (a commit round before its devices are answered, the commands tree before its
//! MQTT ack, a reclaim before the old database goes, a close):
//!
//! 1. Every blob file not synced yet is `fsync`ed, and then the `blobs` directory, so the
//!    file's name is durable too.
//! 2. sled's log file (`<db>/db`) is `fdatasync`ed. Its data is already on the drive, so
//!    this writes nothing; the filesystem sends the cache flush that makes it stick.
//!
//! Which blobs need syncing. A blob is written once, under a new name (its log position),
//! while the entry that points at it is reserved, and that happens before the reservation
//! ends. sled's flush waits for every reservation up to the newest log position it sees
//! when it starts, and a blob file is created only after its reservation took its
//! position; so a blob file that a scan saw is complete once any flush that started
//! after that scan has returned. A blob seen for the first time may still be being
//! written (for a later flush, or by another thread: a removal, a page consolidation), so
//! it is synced by every scan, from the one that first sees it up to and including the
//! first scan after a flush that started after that one; then it is final. Each flush
//! takes a [`Ticket`] (the scans finished so far) before it calls sled, so flushes on
//! several threads (a commit round, the commands tree) are fine: whichever flush covered a
//! blob, its own scan syncs it again after the blob was complete. Blobs that sled has
//! deleted leave the lists. A scan reads the directory's names only. The directory held
//! 0–11 files in every benchmark shape (`store::GROUP_MAX_BYTES` keeps one-record traffic
//! out of it).
//!
//! A failed sync poisons this [`DeviceSync`]: the kernel may have dropped the pages it
//! could not write and would not report it again ("fsyncgate"), so every later flush
//! fails too, until the database is reopened (`recovery.rs`) with a new one.
//!
//! Cost on this project's machine (`cargo run --release --example flush_cost`): the
//! `fdatasync` of the log adds 90–135 µs of wall time and 27–50 µs of CPU to a flush of
//! 150–180 µs CPU. That is about 0.3–0.6 µs per record at the 80 records of a one-record
//! commit round. README, Benchmarks, has the end-to-end figures.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Makes a sled database's flushed state survive a power cut (see the module doc).
pub(super) struct DeviceSync {
    /// sled's log file, open for `fdatasync` (sled locks it with `flock`, which belongs to
    /// sled's own open file: this second handle neither takes nor releases that lock).
    log: File,
    /// `<db>/blobs`.
    blobs: PathBuf,
    state: Mutex<Blobs>,
    /// Scans finished; raised only under `state`'s lock, read by [`DeviceSync::ticket`]
    /// without it (an async caller takes its ticket on a worker and must not wait for a
    /// scan's fsyncs).
    scans: AtomicU64,
    /// Blob files synced since open, for tests.
    #[cfg(test)]
    pub blobs_synced: AtomicUsize,
}

/// Taken before sled's flush: how many scans had finished by then.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(u64);

/// The blob files synced so far.
#[derive(Default)]
struct Blobs {
    /// Synced when known to be complete: nothing more to do.
    done: HashSet<OsString>,
    /// Synced when first seen, maybe while still being written: the scan that saw them
    /// (numbered from 1), until a flush that started after it makes them final.
    pending: HashMap<OsString, u64>,
    /// A sync failed: why. Every later flush fails (see the module doc).
    poisoned: Option<String>,
}

/// What one [`DeviceSync::after_flush`] did (for tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Synced {
    /// Blob files synced (seen for the first time, or for the last).
    pub blobs: usize,
}

impl DeviceSync {
    /// For the sled database in `dir`, once sled has opened it (the log file and the
    /// `blobs` directory exist then). What sled created at first open without syncing is
    /// synced once here: its `conf` file (a new database's parameters; lost, the database
    /// would not open), the directory (the names in it) and its parent (the directory's own
    /// name).
    pub fn open(dir: &Path) -> std::io::Result<DeviceSync> {
        let log = File::open(dir.join("db"))?;
        match File::open(dir.join("conf")) {
            Ok(conf) => conf.sync_all()?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        File::open(dir)?.sync_all()?;
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
        Ok(DeviceSync {
            log,
            blobs: dir.join("blobs"),
            state: Mutex::new(Blobs::default()),
            scans: AtomicU64::new(0),
            #[cfg(test)]
            blobs_synced: AtomicUsize::new(0),
        })
    }

    /// To be taken just before sled's flush and handed to [`DeviceSync::after_flush`].
    pub fn ticket(&self) -> Ticket {
        Ticket(self.scans.load(Ordering::Acquire))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blobs> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After sled's `flush()` (which began after `ticket` was taken) returned: syncs the
    /// blob files it may have left unsynced and flushes the drive's cache under sled's log.
    /// An error means the flushed state may not survive a power cut: the caller treats it
    /// as a failed flush, and so is every later call (poisoned).
    pub fn after_flush(&self, ticket: Ticket) -> std::io::Result<Synced> {
        let mut state = self.lock();
        if let Some(why) = &state.poisoned {
            return Err(std::io::Error::other(format!(
                "an earlier sync of the buffer's files failed ({why}); nothing is durable \
                 until the database is reopened"
            )));
        }
        match self.scan(&state, ticket) {
            Ok((plan, synced)) => {
                let this_scan = self.scans.load(Ordering::Acquire) + 1;
                state.apply(plan, this_scan);
                self.scans.store(this_scan, Ordering::Release);
                #[cfg(test)]
                self.blobs_synced.fetch_add(synced.blobs, Ordering::Relaxed);
                Ok(synced)
            }
            Err(e) => {
                state.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// One scan's IO: lists the blobs, syncs what the plan says, the directory if any
    /// blob was synced, and the log. Changes nothing in `state`.
    fn scan(&self, state: &Blobs, ticket: Ticket) -> std::io::Result<(Plan, Synced)> {
        let names = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<OsString>>>()?,
            // sled creates it at open; gone means no blob can need a sync.
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut plan = state.plan(&names, ticket);
        let mut synced = Synced::default();
        let mut gone = Vec::new();
        for name in plan
            .first_look
            .iter()
            .chain(&plan.again)
            .chain(&plan.last_look)
        {
            match File::open(self.blobs.join(name)).and_then(|file| file.sync_all()) {
                Ok(()) => synced.blobs += 1,
                // Deleted by sled since the listing: nothing to keep.
                Err(e) if e.kind() == ErrorKind::NotFound => gone.push(name.clone()),
                Err(e) => return Err(e),
            }
        }
        plan.first_look.retain(|name| !gone.contains(name));
        plan.again.retain(|name| !gone.contains(name));
        plan.last_look.retain(|name| !gone.contains(name));
        if synced.blobs > 0 {
            File::open(&self.blobs)?.sync_all()?;
        }
        self.log.sync_data()?;
        Ok((plan, synced))
    }
}

/// What one scan does: the blobs to sync for the first time, again (not final yet) and
/// for the last time, and the names present (the rest are forgotten).
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    first_look: Vec<OsString>,
    again: Vec<OsString>,
    last_look: Vec<OsString>,
    present: HashSet<OsString>,
}

impl Blobs {
    /// Given the names in the `blobs` directory now and the ticket of the flush that just
    /// returned: the blobs never seen (sync now, look again later), the pending ones that
    /// a flush started after the scan that saw them has covered (sync for the last time),
    /// and the other pending ones (sync again: another thread's flush may have covered
    /// them, and its scan may have come before they were complete).
    fn plan(&self, names: &[OsString], ticket: Ticket) -> Plan {
        let mut plan = Plan::default();
        for name in names {
            if self.done.contains(name) {
            } else if let Some(&seen_by) = self.pending.get(name) {
                if seen_by <= ticket.0 {
                    plan.last_look.push(name.clone());
                } else {
                    plan.again.push(name.clone());
                }
            } else {
                plan.first_look.push(name.clone());
            }
        }
        plan.present = names.iter().cloned().collect();
        plan
    }

    /// Records scan number `this_scan` (from 1), whose IO all succeeded.
    fn apply(&mut self, plan: Plan, this_scan: u64) {
        self.done.retain(|name| plan.present.contains(name));
        self.pending.retain(|name, _| plan.present.contains(name));
        for name in plan.last_look {
            self.pending.remove(&name);
            self.done.insert(name);
        }
        for name in plan.first_look {
            self.pending.insert(name, this_scan);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// A sled database in a temporary directory (`<dir>/db`) and its [`DeviceSync`].
    fn sled_with_sync() -> (tempfile::TempDir, sled::Db, DeviceSync) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .flush_every_ms(None)
            .open()
            .unwrap();
        let sync = DeviceSync::open(&dir.path().join("db")).unwrap();
        (dir, db, sync)
    }

    #[test]
    fn a_blob_is_synced_when_first_seen_and_once_more_after_a_flush_that_began_after() {
        let mut blobs = Blobs::default();
        // Scan 1, after a flush whose ticket was 0: "100" is new.
        let plan = blobs.plan(&names(&["100"]), Ticket(0));
        assert_eq!(plan.first_look, names(&["100"]));
        blobs.apply(plan, 1);
        // A flush that began before scan 1 finished (ticket 0) may not cover it yet: synced
        // again, still not final.
        let plan = blobs.plan(&names(&["100", "200"]), Ticket(0));
        assert_eq!(plan.first_look, names(&["200"]));
        assert_eq!(plan.again, names(&["100"]));
        assert!(plan.last_look.is_empty());
        blobs.apply(plan, 2);
        // One that began after scan 1 (ticket 1) does: the last sync of "100"; "200" was
        // seen by scan 2 and waits for a ticket of 2.
        let plan = blobs.plan(&names(&["100", "200"]), Ticket(1));
        assert!(plan.first_look.is_empty());
        assert_eq!(plan.again, names(&["200"]));
        assert_eq!(plan.last_look, names(&["100"]));
        blobs.apply(plan, 3);
        let plan = blobs.plan(&names(&["100", "200"]), Ticket(3));
        assert_eq!(plan.last_look, names(&["200"]));
        blobs.apply(plan, 4);
        // Both final: never synced again.
        let plan = blobs.plan(&names(&["100", "200"]), Ticket(9));
        assert!(plan.first_look.is_empty() && plan.again.is_empty() && plan.last_look.is_empty());
    }

    #[test]
    fn deleted_blobs_are_forgotten() {
        let mut blobs = Blobs::default();
        let plan = blobs.plan(&names(&["100", "200"]), Ticket(0));
        blobs.apply(plan, 1);
        let plan = blobs.plan(&names(&["100", "200"]), Ticket(1));
        blobs.apply(plan, 2);
        assert_eq!(blobs.done.len(), 2);
        let plan = blobs.plan(&names(&["200", "300"]), Ticket(2));
        blobs.apply(plan, 3);
        assert!(!blobs.done.contains(&OsString::from("100")));
        assert!(blobs.done.contains(&OsString::from("200")));
        assert!(blobs.pending.contains_key(&OsString::from("300")));
    }

    #[test]
    fn a_failed_sync_poisons_every_later_flush() {
        let (dir, db, sync) = sled_with_sync();
        // A blob name that cannot be opened (a symlink to itself: ELOOP) makes the scan
        // fail as a blob that cannot be synced would.
        let blob = dir.path().join("db").join("blobs").join("7");
        std::os::unix::fs::symlink("7", &blob).unwrap();
        let ticket = sync.ticket();
        db.flush().unwrap();
        assert!(sync.after_flush(ticket).is_err());
        std::fs::remove_file(&blob).unwrap();
        let ticket = sync.ticket();
        db.flush().unwrap();
        let again = sync.after_flush(ticket).unwrap_err().to_string();
        assert!(again.contains("earlier sync"), "{again}");
    }

    /// With a real sled database: a value over sled's inline limit goes to a blob file,
    /// which the flush that follows syncs, and the next flush syncs once more (final).
    #[test]
    fn a_value_sled_writes_as_a_blob_is_synced_after_the_flush() {
        let (dir, db, sync) = sled_with_sync();
        let flush = || {
            let ticket = sync.ticket();
            db.flush().unwrap();
            sync.after_flush(ticket).unwrap()
        };
        db.insert(b"small", vec![1_u8; 100]).unwrap();
        assert_eq!(flush(), Synced { blobs: 0 });
        // sled 0.34.7 writes a log entry over a quarter of a 512 KiB segment as a blob.
        db.insert(b"big", vec![7_u8; 300 << 10]).unwrap();
        let first = flush();
        let blob_files = std::fs::read_dir(dir.path().join("db").join("blobs"))
            .unwrap()
            .count();
        assert!(blob_files >= 1, "sled wrote no blob; the test needs one");
        assert_eq!(first.blobs, blob_files);
        // The last look, then nothing more to do.
        assert_eq!(flush().blobs, blob_files);
        assert_eq!(flush(), Synced { blobs: 0 });
    }
}
