//! What sled's `flush()` leaves out, done after it: the drive's write cache and sled's blob
//! files. Without this a record answered to its device can be lost in a power cut.
//!
//! sled 0.34.7 makes its log durable with `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`
//! (`pagecache/iobuf.rs`). That system call waits until the data has reached the drive, but
//! it sends no cache flush: on a drive with a volatile write cache (eMMC, SD cards and most
//! consumer SSDs; the man page: "does not provide any data integrity on systems with
//! volatile disk write caches") the log can still be lost when the power goes. A log entry
//! larger than a quarter of a segment (128 KiB: a big chunk, or a consolidated leaf of big
//! chunks, as a JSON-lines stream makes) goes to a file of its own under `<db>/blobs/`. sled writes that file with plain writes and never
//! syncs it or its directory (`pagecache/blob_io.rs`). Both are known upstream (sled
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
//! ends. A blob seen for the first time may still be being written, for a reservation that
//! a later flush covers. So a blob is synced when it is first seen, and looked at once
//! more, after the next flush. By then any reservation that began before this flush has
//! ended (sled's flush waits for every reservation that began before it), so the file is
//! complete. If its length changed, it is synced again. Blobs that sled has deleted leave
//! the list. A scan reads the directory's names only, with one `stat` for each blob seen
//! the time before (usually none or one). The directory held 0–11 files in every benchmark
//! shape (`store::GROUP_MAX_BYTES` keeps one-record traffic out of it).
//!
//! Cost on this project's machine (`cargo run --release --example flush_cost`): the
//! `fdatasync` of the log adds 90–135 µs of wall time and 27–50 µs of CPU to a flush of
//! 150–180 µs CPU. That is about 0.3–0.6 µs per record at the 80 records of a one-record
//! commit round. README, Benchmarks, has the end-to-end figures.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Makes a sled database's flushed state survive a power cut (see the module doc).
pub(super) struct DeviceSync {
    /// sled's log file, open for `fdatasync` (sled locks it with `flock`, which belongs to
    /// sled's own open file: this second handle neither takes nor releases that lock).
    log: File,
    /// `<db>/blobs`.
    blobs: PathBuf,
    state: Mutex<Blobs>,
    /// Blob files synced since open, for tests.
    #[cfg(test)]
    pub blobs_synced: std::sync::atomic::AtomicUsize,
}

/// The blob files synced so far.
#[derive(Default)]
struct Blobs {
    /// Each blob's length when it was last synced.
    synced: HashMap<OsString, u64>,
    /// The blobs first synced by the previous scan: looked at once more by the next one.
    fresh: Vec<OsString>,
}

/// What one [`DeviceSync::after_flush`] did (for tests and the debug log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Synced {
    /// Blob files synced (new, or grown since they were first seen).
    pub blobs: usize,
}

impl DeviceSync {
    /// For the sled database in `dir`, once sled has opened it (the log file and the
    /// `blobs` directory exist then). The directory itself is synced once here, so the
    /// names sled created in it at first open are durable.
    pub fn open(dir: &Path) -> std::io::Result<DeviceSync> {
        let log = File::open(dir.join("db"))?;
        File::open(dir)?.sync_all()?;
        Ok(DeviceSync {
            log,
            blobs: dir.join("blobs"),
            state: Mutex::new(Blobs::default()),
            #[cfg(test)]
            blobs_synced: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// After sled's `flush()` returned: syncs the blob files it may have left unsynced and
    /// flushes the drive's cache under sled's log. An error means the flushed state may not
    /// survive a power cut: the caller treats it as a failed flush.
    pub fn after_flush(&self) -> std::io::Result<Synced> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let names = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<OsString>>>()?,
            // sled creates it at open; gone means no blob can need a sync.
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let plan = state.plan(&names, |name| {
            std::fs::metadata(self.blobs.join(name)).map(|m| Some(m.len()))
        })?;
        let mut synced = Synced::default();
        let mut fresh = Vec::new();
        for name in plan.sync {
            match sync_file(&self.blobs.join(&name)) {
                Ok(len) => {
                    synced.blobs += 1;
                    if !state.synced.contains_key(&name) {
                        fresh.push(name.clone());
                    }
                    state.synced.insert(name, len);
                }
                // Deleted by sled's blob collection since the listing: nothing to keep.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    state.synced.remove(&name);
                }
                Err(e) => return Err(e),
            }
        }
        state.fresh = fresh;
        #[cfg(test)]
        self.blobs_synced
            .fetch_add(synced.blobs, std::sync::atomic::Ordering::Relaxed);
        if synced.blobs > 0 {
            File::open(&self.blobs)?.sync_all()?;
        }
        self.log.sync_data()?;
        Ok(synced)
    }
}

/// Which blobs one scan syncs.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    sync: Vec<OsString>,
}

impl Blobs {
    /// Given the names in the `blobs` directory now: forgets the ones gone, and returns the
    /// ones to sync: those never synced, and those first synced by the previous scan whose
    /// length (`len_of`, `None` when the file is gone) changed since.
    fn plan(
        &mut self,
        names: &[OsString],
        len_of: impl Fn(&OsString) -> std::io::Result<Option<u64>>,
    ) -> std::io::Result<Plan> {
        let present: std::collections::HashSet<&OsString> = names.iter().collect();
        self.synced.retain(|name, _| present.contains(name));
        let mut sync: Vec<OsString> = names
            .iter()
            .filter(|name| !self.synced.contains_key(*name))
            .cloned()
            .collect();
        for name in std::mem::take(&mut self.fresh) {
            let Some(&synced_len) = self.synced.get(&name) else {
                continue;
            };
            match len_of(&name) {
                Ok(Some(len)) if len != synced_len => sync.push(name),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Plan { sync })
    }
}

/// `fsync`s one file; returns its length as synced.
fn sync_file(path: &Path) -> std::io::Result<u64> {
    let file = File::open(path)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn lens(list: &[(&str, u64)]) -> impl Fn(&OsString) -> std::io::Result<Option<u64>> {
        let map: HashMap<OsString, u64> = list.iter().map(|(n, l)| (n.into(), *l)).collect();
        move |name| Ok(map.get(name).copied())
    }

    #[test]
    fn a_blob_is_synced_when_first_seen_and_again_if_it_grew_by_the_next_scan() {
        let mut blobs = Blobs::default();
        let plan = blobs.plan(&names(&["100", "200"]), lens(&[])).unwrap();
        assert_eq!(plan.sync, names(&["100", "200"]));
        // What `after_flush` records after syncing them: "200" was still being written.
        blobs.synced.insert("100".into(), 10);
        blobs.synced.insert("200".into(), 5);
        blobs.fresh = names(&["100", "200"]);
        // Next scan: "200" is complete now (longer), "100" unchanged, "300" is new.
        let plan = blobs
            .plan(
                &names(&["100", "200", "300"]),
                lens(&[("100", 10), ("200", 9)]),
            )
            .unwrap();
        let mut sync = plan.sync;
        sync.sort();
        assert_eq!(sync, names(&["200", "300"]));
    }

    #[test]
    fn a_blob_looked_at_twice_is_not_looked_at_again_and_deleted_ones_are_forgotten() {
        let mut blobs = Blobs::default();
        blobs.synced.insert("100".into(), 10);
        blobs.synced.insert("200".into(), 20);
        // Neither is fresh: no stat, no sync, whatever their length would be now.
        let plan = blobs
            .plan(&names(&["100"]), |_| panic!("no stat expected"))
            .unwrap();
        assert!(plan.sync.is_empty());
        assert!(!blobs.synced.contains_key(&OsString::from("200")));
        assert!(blobs.synced.contains_key(&OsString::from("100")));
    }

    #[test]
    fn a_fresh_blob_deleted_before_its_second_look_is_not_an_error() {
        let mut blobs = Blobs::default();
        blobs.synced.insert("100".into(), 10);
        blobs.fresh = names(&["100"]);
        let plan = blobs
            .plan(&names(&["100"]), |_| {
                Err(std::io::Error::from(ErrorKind::NotFound))
            })
            .unwrap();
        assert!(plan.sync.is_empty());
    }

    /// With a real sled database: a value over sled's inline limit goes to a blob file,
    /// and the flush that follows syncs it (and only once).
    #[test]
    fn a_value_sled_writes_as_a_blob_is_synced_after_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .flush_every_ms(None)
            .open()
            .unwrap();
        let sync = DeviceSync::open(&dir.path().join("db")).unwrap();
        db.insert(b"small", vec![1_u8; 100]).unwrap();
        db.flush().unwrap();
        assert_eq!(sync.after_flush().unwrap(), Synced { blobs: 0 });
        // sled 0.34.7 writes a log entry over a quarter of a 512 KiB segment as a blob.
        db.insert(b"big", vec![7_u8; 300 << 10]).unwrap();
        db.flush().unwrap();
        let blob_files = std::fs::read_dir(dir.path().join("db").join("blobs"))
            .unwrap()
            .count();
        assert!(blob_files >= 1, "sled wrote no blob; the test needs one");
        assert_eq!(sync.after_flush().unwrap().blobs, blob_files);
        // Already synced, complete, looked at twice: nothing more to do.
        assert_eq!(sync.after_flush().unwrap(), Synced { blobs: 0 });
        assert_eq!(sync.after_flush().unwrap(), Synced { blobs: 0 });
    }
}
