//! Duplicate suppression at ingest: a record identical to one already stored for its device
//! is acknowledged to the device but not stored again.
//!
//! A device that does not get its answer (the gateway was killed after the flush, the answer
//! was lost on a weak link) sends the same frame again; without this, each resend becomes a
//! second copy of its records under new seqs, which `(gateway_id, seq)` cannot catch.
//!
//! # What "the same record" is
//!
//! Same `device_id`, same device time (`time_ms`), and the same content: `valid`, `lat`,
//! `lon`, `altitude_m`, `speed_kmh`, `course_deg`, `satellites`, `hdop`, `event` and every
//! `io` element in frame order, except the ones that describe the transmission rather than
//! the reading ([`is_transmission_key`]: GT06 `serial` and `reupload`, Queclink `count`,
//! `send_time` and `buffered`, which change when a device resends). Not content: `seq`,
//! `received_at_ms`, `protocol` (the transport a device used) and `raw`. A record WITHOUT a
//! device time is never suppressed: two equal sensor readings without a time may well be
//! two readings, and dropping one would lose it.
//!
//! The content is hashed with XXH3-64 (seed 0), a published algorithm whose output does not
//! change between releases, fed with explicit little-endian bytes and length prefixes, so
//! the same record hashes the same in every build and the persisted window stays valid
//! across upgrades. (Releases before 2026-12-07 used std's `DefaultHasher`, whose output
//! Rust does not promise to keep; a window they persisted simply does not match after the
//! upgrade: duplicates of those records are let through once, nothing is matched wrongly.)
//! Two different records of one device collide with odds of about one in 2^64 /
//! `per_device`.
//!
//! # The window
//!
//! Per device, the hashes of its last [`DedupOptions::per_device`] stored records; in total,
//! those of the last [`DedupOptions::total`] stored records of the gateway (the oldest
//! commit rounds leave first; the newest round always stays, so the total may be exceeded
//! by at most one round). Memory: about 24 bytes per hash plus one map entry per device.
//!
//! # Layout on disk (in the queue tree, after every chunk)
//!
//! ```text
//! key   = FF FF FF FF FF FF FF FF "dedup" <first seq of the commit round, u64 BE>
//! value = { u16 BE device id length, device id, u32 BE n, n × u64 BE hash } ...
//! ```
//!
//! One key per commit round that stored records with a device time, written by the commit
//! thread in the SAME `sled::Batch` as the round's chunks and the next-seq counter: after a
//! crash the window holds exactly the rounds whose records survived, so a device resending
//! after a SIGKILL finds its records. The oldest keys are removed in the same batch once the
//! total is exceeded. A round whose flush fails has its key removed with its chunks (and by
//! the reopen, `recovery.rs`); a disk reclaim copies the newest keys (up to
//! [`RECLAIM_LOG_BYTES`]) to the fresh database.
//!
//! # Order of events
//!
//! The appender checks its records against the window (before encoding them) and hands the
//! hashes of the ones it keeps to the commit thread with the chunk. The commit thread logs
//! them in the round's batch and adds them to the window only once the round is durable: a
//! record whose store failed is never taken for stored. Two appends carrying the same record
//! in the same round (a device that reconnected while its first append was still waiting)
//! both pass; the window catches every resend that comes after its original was stored.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;

use xxhash_rust::xxh3::Xxh3;

use firmware_protocols::{IoKey, IoValue, Protocol, Record};

use super::store::META_PREFIX;

/// Default [`DedupOptions::per_device`]: one Teltonika frame at its largest (255 records).
pub const DEFAULT_PER_DEVICE: usize = 256;
/// Default [`DedupOptions::total`]: 64 Ki hashes, about 1.5 MiB of memory and 0.5 MiB on disk.
pub const DEFAULT_TOTAL: usize = 65_536;

/// The bounds of the duplicate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupOptions {
    /// Hashes kept per device (its last stored records with a device time).
    pub per_device: usize,
    /// Hashes kept in total, for every device together.
    pub total: usize,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            per_device: DEFAULT_PER_DEVICE,
            total: DEFAULT_TOTAL,
        }
    }
}

/// What a disk reclaim keeps of the log: the newest rounds, up to this many bytes (about
/// 8,000 hashes). A reclaim runs once a backlog has drained, to give disk space back; the
/// records a device may still resend are its last ones, and carrying the whole window (up
/// to `total` × 8 bytes) would keep a drained buffer's files large. The window in memory
/// stays whole until the next restart.
pub(super) const RECLAIM_LOG_BYTES: usize = 64 << 10;

/// The key prefix of the window's log entries (a meta key: sorts after every chunk).
pub(super) const DEDUP_PREFIX: [u8; 13] = {
    let mut p = [0u8; 13];
    let mut i = 0;
    while i < 8 {
        p[i] = META_PREFIX[i];
        i += 1;
    }
    let tag = *b"dedup";
    while i < 13 {
        p[i] = tag[i - 8];
        i += 1;
    }
    p
};

/// The log key of the commit round whose first seq is `first_seq`.
pub(super) fn round_key(first_seq: u64) -> [u8; 21] {
    let mut key = [0u8; 21];
    key[..13].copy_from_slice(&DEDUP_PREFIX);
    key[13..].copy_from_slice(&first_seq.to_be_bytes());
    key
}

/// io keys that describe one transmission of a record, not the record: a device resending
/// it changes them. Per protocol, because the same name may be a reading elsewhere.
pub fn is_transmission_key(protocol: Protocol, key: &IoKey) -> bool {
    let IoKey::Name(name) = key else {
        return false;
    };
    match protocol {
        // The information serial counts frames sent; re-upload marks a resent fix.
        Protocol::Gt06 => matches!(name.as_str(), "serial" | "reupload"),
        // Count number and send time are per message; unacknowledged reports come back
        // as `+BUFF`.
        Protocol::Queclink => matches!(name.as_str(), "count" | "send_time" | "buffered"),
        _ => false,
    }
}

/// The content hash of a record (see the module doc); `None` for a record without a device
/// time, which is never suppressed.
pub fn content_hash(r: &Record) -> Option<u64> {
    let time = r.time_ms?;
    let mut h = Xxh3::new();
    h.write(&time.to_le_bytes());
    match r.valid {
        None => h.write_u8(0),
        Some(v) => h.write(&[1, u8::from(v)]),
    }
    for v in [
        r.lat,
        r.lon,
        r.altitude_m,
        r.speed_kmh,
        r.course_deg,
        r.hdop,
    ] {
        opt_f64(&mut h, v);
    }
    match r.satellites {
        None => h.write_u8(0),
        Some(n) => h.write(&[1, n]),
    }
    match &r.event {
        None => h.write_u8(0),
        Some(e) => {
            h.write_u8(1);
            bytes(&mut h, e.as_bytes());
        }
    }
    for (key, value) in &r.io {
        if is_transmission_key(r.protocol, key) {
            continue;
        }
        match key {
            IoKey::Id(id) => {
                h.write_u8(0);
                h.write(&id.to_le_bytes());
            }
            IoKey::Name(name) => {
                h.write_u8(1);
                bytes(&mut h, name.as_bytes());
            }
        }
        match value {
            IoValue::U64(v) => {
                h.write_u8(0);
                h.write(&v.to_le_bytes());
            }
            IoValue::I64(v) => {
                h.write_u8(1);
                h.write(&v.to_le_bytes());
            }
            IoValue::F64(v) => {
                h.write_u8(2);
                h.write(&v.to_bits().to_le_bytes());
            }
            IoValue::Text(t) => {
                h.write_u8(3);
                bytes(&mut h, t.as_bytes());
            }
            IoValue::Bytes(b) => {
                h.write_u8(4);
                bytes(&mut h, b);
            }
        }
    }
    Some(h.finish())
}

fn opt_f64(h: &mut Xxh3, v: Option<f64>) {
    match v {
        None => h.write_u8(0),
        Some(v) => {
            h.write_u8(1);
            h.write(&v.to_bits().to_le_bytes());
        }
    }
}

/// Length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
fn bytes(h: &mut Xxh3, b: &[u8]) {
    h.write(&(b.len() as u64).to_le_bytes());
    h.write(b);
}

/// What [`Window::admit`] decided for one append.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// The records to store, in their order.
    pub records: Vec<Record>,
    /// Records dropped as duplicates, by protocol.
    pub duplicates: Vec<Protocol>,
    /// The hashes of the kept records that have a device time, encoded as a log value.
    pub delta: Vec<u8>,
}

/// One commit round's log entry, as long as it is on disk.
struct LoggedRound {
    first_seq: u64,
    delta: Vec<u8>,
    entries: usize,
}

/// The window: per device, the hashes of its last stored records (oldest first), and the
/// log of rounds on disk that holds them.
pub(super) struct Window {
    opts: DedupOptions,
    devices: HashMap<Box<str>, VecDeque<u64>>,
    rounds: VecDeque<LoggedRound>,
    /// Entries in `rounds`.
    logged: usize,
}

impl Window {
    pub fn new(opts: DedupOptions) -> Window {
        Window {
            opts,
            devices: HashMap::new(),
            rounds: VecDeque::new(),
            logged: 0,
        }
    }

    /// Reads the log at open (oldest round first) and rebuilds the window from it. A log
    /// value that does not parse contributes what parsed before the damage.
    pub fn load(opts: DedupOptions, queue: &sled::Tree) -> Result<Window, sled::Error> {
        let mut window = Window::new(opts);
        let mut evicted = sled::Batch::default();
        for item in queue.scan_prefix(DEDUP_PREFIX) {
            let (key, value) = item?;
            let Some(first_seq) = key
                .get(DEDUP_PREFIX.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            window.track(first_seq, &value, &mut evicted);
            window.remember(&value);
        }
        // Rounds beyond the total (a smaller `total` than before) leave the disk too; made
        // durable by the next round's flush.
        queue.apply_batch(evicted)?;
        Ok(window)
    }

    /// Splits `records` into the ones to store and the duplicates of stored ones (also
    /// within `records` itself). `hashes` are the records' [`content_hash`]es, computed by
    /// the caller before it takes the window's lock.
    pub fn admit(&self, records: Vec<Record>, hashes: &[Option<u64>]) -> Admitted {
        let mut out = Admitted {
            records: Vec::with_capacity(records.len()),
            ..Admitted::default()
        };
        // This append's kept hashes, in runs of one device (usually a single run).
        let mut runs: Vec<(String, Vec<u64>)> = Vec::new();
        for (record, hash) in records
            .into_iter()
            .zip(hashes.iter().chain(std::iter::repeat(&None)))
        {
            let Some(hash) = *hash else {
                out.records.push(record);
                continue;
            };
            let device = record.device_id.as_str();
            let stored = self
                .devices
                .get(device)
                .is_some_and(|hashes| hashes.contains(&hash));
            let earlier = runs
                .iter()
                .any(|(d, hashes)| d == device && hashes.contains(&hash));
            if stored || earlier {
                out.duplicates.push(record.protocol);
                continue;
            }
            // Longer ids cannot be logged; such a record is simply not suppressed later.
            if device.len() <= usize::from(u16::MAX) {
                match runs.last_mut() {
                    Some((d, hashes)) if d == device => hashes.push(hash),
                    _ => runs.push((device.to_owned(), vec![hash])),
                }
            }
            out.records.push(record);
        }
        out.delta = encode(&runs);
        out
    }

    /// Before a round is written: logs its hashes under `first_seq` in `batch`, and removes
    /// the oldest logged rounds (from the window and, in `batch`, from disk) while the log
    /// holds more than `total` hashes. The new round's hashes join the window only through
    /// [`Window::remember`], once the round is durable.
    pub fn log(&mut self, first_seq: u64, delta: &[u8], batch: &mut sled::Batch) {
        if !delta.is_empty() {
            batch.insert(&round_key(first_seq), delta);
            self.track(first_seq, delta, batch);
        }
    }

    /// Adds a logged round to the log's index, and evicts the oldest rounds beyond `total`
    /// (their removal goes into `batch`).
    fn track(&mut self, first_seq: u64, delta: &[u8], batch: &mut sled::Batch) {
        let entries = entries(delta);
        self.rounds.push_back(LoggedRound {
            first_seq,
            delta: delta.to_vec(),
            entries,
        });
        self.logged += entries;
        while self.logged > self.opts.total && self.rounds.len() > 1 {
            let Some(old) = self.rounds.pop_front() else {
                break;
            };
            self.logged -= old.entries;
            batch.remove(&round_key(old.first_seq));
            self.forget(&old.delta);
        }
    }

    /// A round is durable: its hashes are in the window from now on.
    pub fn remember(&mut self, delta: &[u8]) {
        let per_device = self.opts.per_device;
        for_each_run(delta, |device, hashes| {
            if !self.devices.contains_key(device) {
                self.devices.insert(device.into(), VecDeque::new());
            }
            let Some(window) = self.devices.get_mut(device) else {
                return;
            };
            for hash in hashes {
                window.push_back(hash);
                if window.len() > per_device {
                    window.pop_front();
                }
            }
        });
    }

    /// Takes an evicted round's hashes out of the window: they are the oldest of each of
    /// its devices, unless the per-device bound pushed them out already.
    fn forget(&mut self, delta: &[u8]) {
        for_each_run(delta, |device, hashes| {
            let Some(window) = self.devices.get_mut(device) else {
                return;
            };
            for hash in hashes {
                if window.front() == Some(&hash) {
                    window.pop_front();
                }
            }
            if window.is_empty() {
                self.devices.remove(device);
            }
        });
    }

    /// The newest rounds of the log (keys and values), at most [`RECLAIM_LOG_BYTES`] of
    /// them, for a disk reclaim to copy into the fresh database.
    pub fn log_entries(&self) -> Vec<([u8; 21], Vec<u8>)> {
        let mut bytes = 0;
        let mut newest: Vec<_> = self
            .rounds
            .iter()
            .rev()
            .take_while(|r| {
                bytes += r.delta.len();
                bytes <= RECLAIM_LOG_BYTES
            })
            .map(|r| (round_key(r.first_seq), r.delta.clone()))
            .collect();
        newest.reverse();
        newest
    }

    /// Hashes held in memory, for tests.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.devices.values().map(VecDeque::len).sum()
    }
}

/// Encodes runs of `(device, hashes)` as a log value.
fn encode(runs: &[(String, Vec<u64>)]) -> Vec<u8> {
    let size: usize = runs.iter().map(|(d, h)| 6 + d.len() + 8 * h.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (device, hashes) in runs {
        // Checked by `admit`: ids longer than u16::MAX bytes are not logged.
        let Ok(len) = u16::try_from(device.len()) else {
            continue;
        };
        let Ok(n) = u32::try_from(hashes.len()) else {
            continue;
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(device.as_bytes());
        out.extend_from_slice(&n.to_be_bytes());
        for h in hashes {
            out.extend_from_slice(&h.to_be_bytes());
        }
    }
    out
}

/// Calls `f` for each run of a log value; stops at the first damaged run.
fn for_each_run(mut value: &[u8], mut f: impl FnMut(&str, HashIter<'_>)) {
    while let Some((len, rest)) = value.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let Some((device, rest)) = rest.split_at_checked(len) else {
            return;
        };
        let Ok(device) = std::str::from_utf8(device) else {
            return;
        };
        let Some((n, rest)) = rest.split_first_chunk::<4>() else {
            return;
        };
        let n = u32::from_be_bytes(*n) as usize;
        let Some((hashes, rest)) = n.checked_mul(8).and_then(|b| rest.split_at_checked(b)) else {
            return;
        };
        f(device, HashIter(hashes));
        value = rest;
    }
}

/// The u64 BE hashes of one run.
struct HashIter<'a>(&'a [u8]);

impl Iterator for HashIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let (h, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*h))
    }
}

/// Hashes in a log value.
fn entries(value: &[u8]) -> usize {
    let mut n = 0;
    for_each_run(value, |_, hashes| n += hashes.count());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(device: &str, t: i64, lat: f64) -> Record {
        let mut r = Record::new(device, Protocol::Teltonika, 1_000);
        r.time_ms = Some(t);
        r.lat = Some(lat);
        r.lon = Some(25.0);
        r.io = vec![(IoKey::Id(66), IoValue::U64(12_000))];
        r
    }

    /// The hash is XXH3-64 of the documented byte layout, whatever the toolchain: a window
    /// persisted by one build matches in the next. Built here by hand from the layout and
    /// hashed in one call, so a change to either the layout or the algorithm fails this.
    #[test]
    fn content_hash_is_xxh3_of_the_documented_layout() {
        let r = fix("356307042441013", 1_700_000_000_000, 54.5);
        let mut layout = Vec::new();
        layout.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        layout.push(0); // valid: none
        for v in [Some(54.5f64), Some(25.0), None, None, None, None] {
            match v {
                None => layout.push(0),
                Some(v) => {
                    layout.push(1);
                    layout.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
        }
        layout.push(0); // satellites: none
        layout.push(0); // event: none
        layout.push(0); // io key: an id
        layout.extend_from_slice(&66u32.to_le_bytes());
        layout.push(0); // io value: u64
        layout.extend_from_slice(&12_000u64.to_le_bytes());
        assert_eq!(content_hash(&r), Some(xxhash_rust::xxh3::xxh3_64(&layout)));
    }

    fn admit(w: &Window, records: Vec<Record>) -> Admitted {
        let hashes: Vec<_> = records.iter().map(content_hash).collect();
        w.admit(records, &hashes)
    }

    fn window(per_device: usize, total: usize) -> Window {
        Window::new(DedupOptions { per_device, total })
    }

    /// Admits, logs and remembers `records` as the round `first_seq`; the kept records'
    /// times.
    fn store(w: &mut Window, first_seq: u64, records: Vec<Record>) -> Vec<i64> {
        let a = admit(w, records);
        let mut batch = sled::Batch::default();
        w.log(first_seq, &a.delta, &mut batch);
        w.remember(&a.delta);
        a.records.iter().filter_map(|r| r.time_ms).collect()
    }

    #[test]
    fn the_hash_ignores_receive_time_raw_and_transmission_fields_only() {
        let a = fix("d", 5_000, 54.1);
        let mut b = a.clone();
        b.received_at_ms = 99_999;
        b.raw = Some("08010000".into());
        b.protocol = Protocol::TeltonikaUdp;
        assert_eq!(content_hash(&a), content_hash(&b));

        let mut moved = a.clone();
        moved.lat = Some(54.100001);
        assert_ne!(content_hash(&a), content_hash(&moved));
        let mut later = a.clone();
        later.time_ms = Some(5_001);
        assert_ne!(content_hash(&a), content_hash(&later));
        let mut io = a.clone();
        io.io[0].1 = IoValue::U64(12_001);
        assert_ne!(content_hash(&a), content_hash(&io));
        let mut event = a.clone();
        event.event = Some("io:1".into());
        assert_ne!(content_hash(&a), content_hash(&event));

        // GT06: the serial changes on a resend; elsewhere a `serial` io is a reading.
        let mut gt = a.clone();
        gt.protocol = Protocol::Gt06;
        gt.io.push((IoKey::Name("serial".into()), IoValue::U64(7)));
        let mut gt_resent = gt.clone();
        gt_resent.io[1].1 = IoValue::U64(8);
        assert_eq!(content_hash(&gt), content_hash(&gt_resent));
        let mut jsonl = gt.clone();
        jsonl.protocol = Protocol::Jsonl;
        let mut jsonl_other = gt_resent.clone();
        jsonl_other.protocol = Protocol::Jsonl;
        assert_ne!(content_hash(&jsonl), content_hash(&jsonl_other));

        let mut untimed = a.clone();
        untimed.time_ms = None;
        assert_eq!(content_hash(&untimed), None);
    }

    #[test]
    fn a_stored_record_is_a_duplicate_for_its_device_only() {
        let mut w = window(8, 100);
        assert_eq!(
            store(&mut w, 1, vec![fix("a", 1, 1.0), fix("a", 2, 2.0)]),
            [1, 2]
        );
        let again = admit(
            &w,
            vec![fix("a", 2, 2.0), fix("a", 3, 3.0), fix("b", 2, 2.0)],
        );
        let kept: Vec<_> = again
            .records
            .iter()
            .map(|r| (r.device_id.clone(), r.time_ms))
            .collect();
        assert_eq!(kept, [("a".into(), Some(3)), ("b".into(), Some(2))]);
        assert_eq!(again.duplicates, [Protocol::Teltonika]);
    }

    #[test]
    fn duplicates_within_one_append_are_stored_once_and_untimed_records_always() {
        let w = window(8, 100);
        let mut untimed = fix("a", 0, 1.0);
        untimed.time_ms = None;
        let a = admit(
            &w,
            vec![fix("a", 1, 1.0), fix("a", 1, 1.0), untimed.clone(), untimed],
        );
        assert_eq!(a.records.len(), 3);
        assert_eq!(a.duplicates.len(), 1);
        assert_eq!(entries(&a.delta), 1);
    }

    #[test]
    fn admitted_but_not_yet_durable_hashes_do_not_count() {
        // A round that failed never reaches `remember`: its records must be stored on resend.
        let mut w = window(8, 100);
        let a = admit(&w, vec![fix("a", 1, 1.0)]);
        let mut batch = sled::Batch::default();
        w.log(1, &a.delta, &mut batch);
        assert_eq!(admit(&w, vec![fix("a", 1, 1.0)]).records.len(), 1);
    }

    #[test]
    fn the_window_is_bounded_per_device() {
        let mut w = window(3, 100);
        for t in 1..=5 {
            store(&mut w, t as u64, vec![fix("a", t, 1.0)]);
        }
        assert_eq!(w.len(), 3);
        // The two oldest fell out; the last three are still caught.
        assert_eq!(
            store(&mut w, 10, (1..=5).map(|t| fix("a", t, 1.0)).collect()),
            [1, 2]
        );
    }

    #[test]
    fn the_window_is_bounded_in_total_by_whole_rounds_oldest_first_and_logs_removals() {
        let mut w = window(100, 4);
        store(&mut w, 1, vec![fix("a", 1, 1.0), fix("b", 1, 1.0)]);
        store(&mut w, 3, vec![fix("a", 2, 1.0), fix("c", 2, 1.0)]);
        let a = admit(&w, vec![fix("c", 3, 1.0)]);
        let mut batch = sled::Batch::default();
        w.log(5, &a.delta, &mut batch);
        w.remember(&a.delta);
        assert_eq!(w.logged, 3);
        assert_eq!(w.len(), 3);
        assert!(
            !w.devices.contains_key("b"),
            "an emptied device leaves the map"
        );
        // Round 1 left; its records are new again, round 3's are still duplicates.
        let again = admit(
            &w,
            vec![fix("a", 1, 1.0), fix("b", 1, 1.0), fix("a", 2, 1.0)],
        );
        assert_eq!(again.records.len(), 2);
        // A round larger than the total stays (the newest round always does).
        let mut big = window(100, 2);
        assert_eq!(
            store(&mut big, 1, (1..=5).map(|t| fix("a", t, 1.0)).collect()).len(),
            5
        );
        assert_eq!(big.len(), 5);
    }

    /// The window through the real buffer: a resend is answered `Duplicate` before and
    /// after a reopen, and after a disk reclaim swapped the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resend_is_not_stored_again_across_reopen_and_reclaim() {
        use super::super::{Appended, Buffer, BufferOptions};
        let dir = tempfile::TempDir::new().unwrap();
        let mut o = BufferOptions::new(dir.path().join("buffer"));
        o.seq_floor = Some(1);
        o.cache_capacity_bytes = 4 << 20;
        o.reclaim_above_bytes = 1;
        o.dedup = Some(DedupOptions::default());
        let sent = vec![fix("a", 1, 1.0), fix("a", 2, 2.0)];
        let buffer = Buffer::open(o.clone()).unwrap();
        let stored = buffer.append(sent.clone()).await.unwrap();
        assert_eq!(
            stored,
            Appended::Stored {
                first_seq: 1,
                last_seq: 2
            }
        );
        assert_eq!(
            buffer.append(sent.clone()).await.unwrap(),
            Appended::Duplicate
        );
        drop(buffer);

        let buffer = Buffer::open(o.clone()).unwrap();
        let mixed = vec![fix("a", 2, 2.0), fix("a", 3, 3.0)];
        let stored = buffer.append(mixed).await.unwrap();
        assert_eq!(
            stored,
            Appended::Stored {
                first_seq: 3,
                last_seq: 3
            }
        );
        // Drained to empty: the commit thread swaps in a fresh database.
        buffer.ack_through(3).unwrap();
        let reclaimed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while buffer.stats().disk_reclaims == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(reclaimed.is_ok(), "no disk reclaim within 30 s");
        drop(buffer);

        let buffer = Buffer::open(o).unwrap();
        assert_eq!(buffer.append(sent).await.unwrap(), Appended::Duplicate);
        let stored = buffer.append(vec![fix("a", 4, 4.0)]).await.unwrap();
        assert_eq!(
            stored,
            Appended::Stored {
                first_seq: 4,
                last_seq: 4
            }
        );
    }

    #[test]
    fn a_reclaim_copies_only_the_newest_rounds() {
        let mut w = window(256, 1 << 20);
        for seq in 0..100u64 {
            let records = (0..100)
                .map(|k| fix("a", (seq * 100 + k) as i64, 1.0))
                .collect();
            store(&mut w, seq * 100, records);
        }
        let copied = w.log_entries();
        let bytes: usize = copied.iter().map(|(_, v)| v.len()).sum();
        assert!(
            bytes <= RECLAIM_LOG_BYTES && bytes > RECLAIM_LOG_BYTES / 2,
            "{bytes}"
        );
        assert_eq!(copied.last().map(|(k, _)| *k), Some(round_key(99 * 100)));
        assert!(copied.windows(2).all(|p| p[0].0 < p[1].0), "oldest first");
    }

    #[test]
    fn the_log_reloads_into_the_same_window() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("queue").unwrap();
        let mut w = window(2, 100);
        for (seq, t) in [(1u64, 1i64), (2, 2), (3, 3)] {
            let a = admit(&w, vec![fix("a", t, 1.0), fix("zz", t, 1.0)]);
            let mut batch = sled::Batch::default();
            w.log(seq, &a.delta, &mut batch);
            tree.apply_batch(batch).unwrap();
            w.remember(&a.delta);
        }
        // A damaged value contributes nothing and breaks nothing.
        tree.insert(round_key(9), &[0, 200, 1][..]).unwrap();
        let loaded = Window::load(
            DedupOptions {
                per_device: 2,
                total: 100,
            },
            &tree,
        )
        .unwrap();
        assert_eq!(loaded.devices, w.devices);
        assert_eq!(admit(&loaded, vec![fix("a", 1, 1.0)]).records.len(), 1);
        assert_eq!(admit(&loaded, vec![fix("a", 3, 1.0)]).records.len(), 0);
        // Meta keys of the window sort after every chunk key and after none of next_seq's
        // range: the chunk scans (`..META_PREFIX`) never see them.
        assert!(round_key(0).as_slice() > u64::MAX.to_be_bytes().as_slice());
    }
}
