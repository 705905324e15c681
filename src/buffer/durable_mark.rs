//! The durable mark: a small file beside sled's directory (`<path>.durable`) saying what the
//! buffer holds, so a database that comes back from a crash with records missing (damaged
//! files, a truncated log, a directory deleted or moved aside) is noticed, reported by count
//! and seq range, and never makes seqs go back.
//!
//! # Layout
//!
//! The mark's content is text, one `key value` a line:
//!
//! ```text
//! fleetedge buffer durable mark v1
//! next_seq 30001            every seq below it was handed out
//! seq_lease 1078577         no seq at or above it was handed out (see below)
//! removed_through 12000     every seq at or below it left the queue from the front
//!                           (acknowledged by the broker, or dropped by drop_oldest)
//! records 18000             records stored when written (for the log; not used to judge)
//! unstored 20001-20100 …    seqs spent by commit rounds whose flush failed: never stored
//! in_flight 29001-30000     the round being flushed while this was written (or `-`)
//! ```
//!
//! The file (format 2) holds two fixed slots of [`SLOT_BYTES`], each in its own 4 KiB page:
//!
//! ```text
//! offset 0 and SLOT_BYTES:
//!   magic "FEMARK2\n" (8) | generation u64 BE | length u32 BE | crc32 u32 BE | text (length)
//!   crc32 covers generation, length and text; the rest of the slot is zeros
//! ```
//!
//! A write takes the slot that does NOT hold the newest valid mark, writes the next
//! generation there in place (`pwrite`) and `fdatasync`s: the file's size never changes, so
//! that is one data flush (no temp file, rename or directory fsync per round). A write torn
//! by a crash or an IO error damages only that slot, whose checksum then fails, and the
//! other slot still holds the previous mark: a reader takes the valid slot with the highest
//! generation. Only creating the file (a new buffer, a damaged file, or one from an older
//! release) replaces it whole: temp file, fsync, rename, fsync of the directory.
//!
//! A file of format 1 (the text alone, written whole by temp file and rename, by releases
//! before format 2) is still read, so an upgraded gateway opens with the mark it left; the
//! first write replaces it with format 2.
//!
//! The mark lives beside the database, not in it, so it survives whatever happens to sled's
//! files (including the database being moved aside).
//!
//! # When it is written
//!
//! - With every commit round: by the mark's writer thread (one per buffer, started at open)
//!   *while* the commit thread flushes sled's round, both finished before any device of the
//!   round is answered, so a record acknowledged to a device is always inside the mark.
//!   Written after the flush instead, its fsync would add to every round; written beside
//!   it, the round costs the slower of the two (the in-place slot write is the faster: about
//!   0.18 ms, against 0.82 ms for format 1's temp file, rename and two fsyncs, on this
//!   project's machine; `cost_of_a_mark_write` measures it). The round's seqs are named
//!   `in_flight`: if they are missing at the next open, the stop may have come before their flush ended
//!   (then they were never acknowledged), and the report says so. Also after a failed
//!   round, and on a graceful close (after the final flush).
//! - Before a round would hand out a seq at or above `seq_lease`, synchronously, with the
//!   lease moved [`LEASE_SEQS`] ahead. That write is what makes "seqs never go back" hold
//!   even when sled's own counter and the last per-round mark are both lost: at most one
//!   write per million seqs.
//!
//! # What open compares
//!
//! The records that should be in the queue are the seqs in `(removed_through, next_seq)`,
//! except `unstored` ranges. Each must be in a chunk of the queue or of the quarantine tree
//! (a quarantined chunk was reported when it was moved). Seqs covered by neither are
//! missing: logged as an ERROR with their count and ranges, counted in
//! [`super::BufferStats::lost_records`] and shown by `fleetedge buffer stats`.
//!
//! Removals after PUBACK are not flushed on their own, so an acknowledgement can reach
//! sled's files before the next mark records it (a crash between a flush and the mark write,
//! or sled writing a full IO buffer during a long drain with no device traffic). Acks
//! remove from the front of the queue, so such records show up only as missing *before the
//! oldest surviving record*; the report says so ("missing at the front … unless they were
//! acknowledged just before the stop"). Records missing after the oldest surviving one
//! cannot have been acknowledged: they are lost. Either way they are counted: a loss is
//! never silent, at worst a delivery is reported as a possible loss.
//!
//! If sled's counter is below the mark's `next_seq`, the buffer continues at `seq_lease` with
//! an ERROR: seqs never go back.
//!
//! A database that opens but lost records is moved aside to `<path>.damaged-<unix-secs>`
//! (kept, never deleted: `fleetedge buffer export --from DIR` reads it), and a fresh
//! database at `<path>` gets every record sled could still read, with its seqs, plus the
//! quarantine tree and the counter: the readable records are re-queued at once, and the
//! damaged files stay for forensics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::store::{self, chunk_header, key_seq, OpenScan, Store, META_PREFIX, NEXT_SEQ_KEY};
use super::{BufferError, BufferOptions, Shared};

/// How far ahead of the seqs handed out the lease is moved.
pub(super) const LEASE_SEQS: u64 = 1 << 20;
/// The first line of a mark file.
const HEADER: &str = "fleetedge buffer durable mark v1";
/// Most `unstored` ranges kept (older ones are merged into one).
const MAX_UNSTORED: usize = 64;
/// Most ranges named in a log line.
const MAX_RANGES_LOGGED: usize = 16;

/// `<path>.durable`.
pub(super) fn mark_path(db: &Path) -> PathBuf {
    super::reclaim::sibling(db, ".durable")
}

/// What the mark file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Mark {
    pub next_seq: u64,
    pub seq_lease: u64,
    pub removed_through: u64,
    pub records: u64,
    /// Inclusive ranges, ascending.
    pub unstored: Vec<(u64, u64)>,
    /// The round being flushed when the mark was written (inclusive).
    pub in_flight: Option<(u64, u64)>,
}

impl Mark {
    pub fn encode(&self) -> String {
        let unstored: Vec<String> = self
            .unstored
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let in_flight = match self.in_flight {
            Some((a, b)) => format!("{a}-{b}"),
            None => "-".to_string(),
        };
        format!(
            "{HEADER}\nnext_seq {}\nseq_lease {}\nremoved_through {}\nrecords {}\nunstored {}\n\
             in_flight {in_flight}\n",
            self.next_seq,
            self.seq_lease,
            self.removed_through,
            self.records,
            unstored.join(" ")
        )
    }

    pub fn decode(text: &str) -> Result<Mark, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let mut mark = Mark::default();
        let mut seen = 0u8;
        for (n, line) in lines.enumerate() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("line {}: {key} {v:?} is not a number", n + 2))
            };
            let range = |r: &str| match r.split_once('-') {
                Some((a, b)) => Ok((number(a)?, number(b)?)),
                None => Err(format!("line {}: {r:?} is not A-B", n + 2)),
            };
            match key {
                "next_seq" => mark.next_seq = number(value)?,
                "seq_lease" => mark.seq_lease = number(value)?,
                "removed_through" => mark.removed_through = number(value)?,
                "records" => mark.records = number(value)?,
                "unstored" => {
                    for r in value.split_whitespace() {
                        mark.unstored.push(range(r)?);
                    }
                }
                "in_flight" if value == "-" => mark.in_flight = None,
                "in_flight" => mark.in_flight = Some(range(value)?),
                _ => return Err(format!("line {}: unknown key {key:?}", n + 2)),
            }
            seen += 1;
        }
        if seen < 6 {
            return Err(format!("{seen} of 6 lines"));
        }
        Ok(mark)
    }
}

/// The first bytes of a format-2 slot.
const SLOT_MAGIC: &[u8; 8] = b"FEMARK2\n";
/// One slot: magic, generation, length, crc32, then the text.
pub(super) const SLOT_BYTES: usize = 4096;
const SLOT_HEAD: usize = 8 + 8 + 4 + 4;
/// The size of a format-2 file: two slots.
const FILE_BYTES: usize = 2 * SLOT_BYTES;

/// One valid slot of a format-2 file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    index: usize,
    generation: u64,
    mark: Mark,
}

/// A slot's bytes for `mark` at `generation`; an error if the text does not fit (it always
/// does: [`MAX_UNSTORED`] bounds it to about 3 KiB).
fn encode_slot(mark: &Mark, generation: u64) -> std::io::Result<Vec<u8>> {
    let text = mark.encode();
    if text.len() > SLOT_BYTES - SLOT_HEAD {
        return Err(std::io::Error::other(format!(
            "a durable mark of {} bytes does not fit its {SLOT_BYTES}-byte slot",
            text.len()
        )));
    }
    let mut slot = Vec::with_capacity(SLOT_BYTES);
    slot.extend_from_slice(SLOT_MAGIC);
    slot.extend_from_slice(&generation.to_be_bytes());
    slot.extend_from_slice(&(text.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&generation.to_be_bytes());
    crc.update(&(text.len() as u32).to_be_bytes());
    crc.update(text.as_bytes());
    slot.extend_from_slice(&crc.finalize().to_be_bytes());
    slot.extend_from_slice(text.as_bytes());
    slot.resize(SLOT_BYTES, 0);
    Ok(slot)
}

/// The slot at `index` of a format-2 file, if it is whole (magic and checksum hold).
fn decode_slot(bytes: &[u8], index: usize) -> Result<Slot, String> {
    let at = index * SLOT_BYTES;
    let slot = bytes
        .get(at..at + SLOT_BYTES)
        .ok_or_else(|| format!("slot {index} is cut short"))?;
    let field = |from: usize, to: usize| slot.get(from..to).unwrap_or_default();
    if field(0, 8) != SLOT_MAGIC {
        return Err(format!("slot {index} has no mark"));
    }
    let generation = u64::from_be_bytes(field(8, 16).try_into().unwrap_or_default());
    let len_bytes: [u8; 4] = field(16, 20).try_into().unwrap_or_default();
    let crc_bytes: [u8; 4] = field(20, 24).try_into().unwrap_or_default();
    let len = u32::from_be_bytes(len_bytes) as usize;
    let text = slot
        .get(SLOT_HEAD..SLOT_HEAD.saturating_add(len))
        .ok_or_else(|| format!("slot {index}: length {len} runs past the slot"))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&generation.to_be_bytes());
    crc.update(&len_bytes);
    crc.update(text);
    if crc.finalize() != u32::from_be_bytes(crc_bytes) {
        return Err(format!("slot {index}: checksum mismatch (a torn write)"));
    }
    let text = std::str::from_utf8(text).map_err(|_| format!("slot {index}: not text"))?;
    let mark = Mark::decode(text).map_err(|why| format!("slot {index}: {why}"))?;
    Ok(Slot {
        index,
        generation,
        mark,
    })
}

/// What a mark file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Contents {
    /// Format 2: the valid slot with the highest generation.
    Slots(Slot),
    /// Format 1: the text alone.
    Text(Mark),
}

fn decode_file(bytes: &[u8]) -> Result<Contents, String> {
    if bytes.starts_with(HEADER.as_bytes()) {
        let text = std::str::from_utf8(bytes).map_err(|_| "format 1, not text".to_string())?;
        return Mark::decode(text).map(Contents::Text);
    }
    if !bytes.starts_with(SLOT_MAGIC)
        && bytes.get(SLOT_BYTES..SLOT_BYTES + 8) != Some(&SLOT_MAGIC[..])
    {
        return Err("neither a format-1 nor a format-2 mark".to_string());
    }
    match (decode_slot(bytes, 0), decode_slot(bytes, 1)) {
        (Ok(a), Ok(b)) => Ok(Contents::Slots(std::cmp::max_by_key(a, b, |s| {
            s.generation
        }))),
        (Ok(slot), Err(_)) | (Err(_), Ok(slot)) => Ok(Contents::Slots(slot)),
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
    }
}

/// Reads the file at `path`: `Ok(None)` when there is none, `Err` (why) when it is damaged.
fn read_file(path: &Path) -> std::io::Result<Option<Result<Contents, String>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(decode_file(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the mark at `path`; `None` when there is none (a new buffer, or one from before
/// marks existed). An unreadable mark is logged and treated as none: it must not stop the
/// gateway.
pub(super) fn read(path: &Path) -> Option<Mark> {
    match read_file(path) {
        Ok(None) => None,
        Ok(Some(Ok(Contents::Slots(slot)))) => Some(slot.mark),
        Ok(Some(Ok(Contents::Text(mark)))) => Some(mark),
        Ok(Some(Err(why))) => {
            tracing::error!(path = %path.display(), %why, "buffer: the durable mark is damaged; records lost before this start cannot be counted");
            None
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "buffer: cannot read the durable mark; records lost before this start cannot be counted");
            None
        }
    }
}

/// Replaces the file at `path` whole with a format-2 file holding `mark` in slot 0: temp
/// file, fsync, rename, fsync of the directory. Used to create it and at open; every other
/// write goes in place ([`MarkFile`]).
pub(super) fn write(path: &Path, mark: &Mark) -> std::io::Result<()> {
    let tmp = super::reclaim::sibling(path, ".tmp");
    let mut bytes = encode_slot(mark, 1)?;
    bytes.resize(FILE_BYTES, 0);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    super::reclaim::sync_parent(path)
}

/// The mark file while the buffer runs: written in place, one slot at a time.
struct MarkFile {
    path: PathBuf,
    io: Mutex<MarkIo>,
}

#[derive(Default)]
struct MarkIo {
    /// Open for in-place writes once the file is known to be format 2 (`None` before the
    /// first write, and after a failed one: the next write looks at the file again).
    file: Option<std::fs::File>,
    /// The newest valid slot: its index and generation.
    newest: (usize, u64),
    /// What the file holds (a write that would not change it is skipped).
    last: Option<Mark>,
    /// A write failed and has not succeeded since (logged once).
    failing: bool,
}

impl MarkFile {
    /// Writes `mark` unless the file holds it already; whether the file now holds it.
    fn store(&self, mark: Mark) -> bool {
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        if io.last.as_ref() == Some(&mark) {
            return true;
        }
        match self.store_in(&mut io, &mark) {
            Ok(()) => {
                io.last = Some(mark);
                if std::mem::take(&mut io.failing) {
                    tracing::info!(path = %self.path.display(), "buffer: the durable mark is written again");
                }
                true
            }
            Err(e) => {
                io.file = None;
                io.last = None;
                if !std::mem::replace(&mut io.failing, true) {
                    tracing::error!(
                        path = %self.path.display(), error = %e,
                        "buffer: cannot write the durable mark; records lost in a crash from now \
                         on may go uncounted until it is written again"
                    );
                }
                false
            }
        }
    }

    fn store_in(&self, io: &mut MarkIo, mark: &Mark) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = match &io.file {
            Some(file) => file,
            None => {
                // The newest valid slot of a format-2 file; anything else is replaced whole.
                let newest = match read_file(&self.path)? {
                    Some(Ok(Contents::Slots(slot))) => Some((slot.index, slot.generation)),
                    _ => None,
                };
                if newest.is_none() {
                    write(&self.path, mark)?;
                }
                io.newest = newest.unwrap_or((0, 1));
                let file = io.file.insert(
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&self.path)?,
                );
                if newest.is_none() {
                    return Ok(());
                }
                &*file
            }
        };
        let (index, generation) = (1 - io.newest.0, io.newest.1.saturating_add(1));
        file.write_all_at(&encode_slot(mark, generation)?, (index * SLOT_BYTES) as u64)?;
        file.sync_data()?;
        io.newest = (index, generation);
        Ok(())
    }
}

/// The thread that writes the per-round mark while the commit thread flushes sled: one per
/// buffer, so a round costs a hand-off, not a thread. It stops when the [`Keeper`] is
/// dropped (its job sender goes).
struct Writer {
    jobs: mpsc::Sender<Mark>,
    done: Mutex<mpsc::Receiver<bool>>,
}

impl Writer {
    fn spawn(file: Arc<MarkFile>) -> std::io::Result<Writer> {
        let (jobs, job_rx) = mpsc::channel::<Mark>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("buffer-mark".into())
            .spawn(move || {
                for mark in job_rx {
                    if done_tx.send(file.store(mark)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer {
            jobs,
            done: Mutex::new(done),
        })
    }
}

/// The seq ranges (inclusive) in `(removed_through, next_seq)` covered by none of `covered`
/// (inclusive ranges, any order) nor by `mark.unstored`.
pub(super) fn missing(mark: &Mark, covered: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = covered.iter().chain(&mark.unstored).copied().collect();
    all.sort_unstable();
    let mut out = Vec::new();
    let Some(mut at) = mark.removed_through.checked_add(1) else {
        return out;
    };
    let end = mark.next_seq; // exclusive
    for (first, last) in all {
        if at >= end {
            break;
        }
        if first > at {
            out.push((at, first.min(end) - 1));
        }
        at = at.max(last.saturating_add(1));
    }
    if at < end {
        out.push((at, end - 1));
    }
    out
}

/// `a-b, c-d, …` (at most [`MAX_RANGES_LOGGED`], then `… and N more`).
pub fn ranges_text(ranges: &[(u64, u64)]) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(MAX_RANGES_LOGGED)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if ranges.len() > MAX_RANGES_LOGGED {
        parts.push(format!("… and {} more", ranges.len() - MAX_RANGES_LOGGED));
    }
    parts.join(", ")
}

/// The mark's state while the buffer runs; part of [`Shared`].
pub(super) struct Keeper {
    /// `<path>.durable`; `None` when marks are off (a database read for salvage).
    file: Option<Arc<MarkFile>>,
    /// Writes the per-round mark beside sled's flush; `None` when marks are off or no
    /// thread could be had (then the round writes it itself, after the flush).
    writer: Option<Writer>,
    /// See [`Mark::removed_through`]; raised before chunks are removed from the front.
    pub removed_through: AtomicU64,
    lease: AtomicU64,
    unstored: Mutex<Vec<(u64, u64)>>,
    /// Records found missing at open (and at a reopen after a failure).
    pub lost_records: AtomicU64,
    pub lost_ranges: Mutex<Vec<(u64, u64)>>,
}

impl Keeper {
    pub fn new(opts: &BufferOptions, found: &Found) -> Keeper {
        let file = (!opts.salvage).then(|| {
            Arc::new(MarkFile {
                path: mark_path(&opts.path),
                io: Mutex::new(MarkIo::default()),
            })
        });
        let writer = file.as_ref().and_then(|file| {
            Writer::spawn(Arc::clone(file))
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "buffer: no thread for the durable mark; each round writes it after its flush")
                })
                .ok()
        });
        Keeper {
            file,
            writer,
            removed_through: AtomicU64::new(found.removed_through),
            lease: AtomicU64::new(found.seq_lease),
            unstored: Mutex::new(found.unstored.clone()),
            lost_records: AtomicU64::new(found.lost_records),
            lost_ranges: Mutex::new(found.lost_ranges.clone()),
        }
    }

    /// The seqs `first..=last` were spent by a round that was never stored.
    pub fn spent_unstored(&self, first: u64, last: u64) {
        let mut unstored = self.unstored.lock().unwrap_or_else(|p| p.into_inner());
        if unstored.contains(&(first, last)) {
            return;
        }
        unstored.push((first, last));
        unstored.sort_unstable();
        if unstored.len() > MAX_UNSTORED {
            let (a, _) = unstored[0];
            let (_, b) = unstored[1];
            unstored.splice(0..2, [(a, b)]);
        }
    }

    /// Before a round hands out seqs below `end`: moves the lease ahead (a synchronous
    /// write) if `end` would pass it.
    pub fn ensure_lease(&self, shared: &Shared, end: u64) {
        if end <= self.lease.load(Ordering::Acquire) || self.file.is_none() {
            return;
        }
        let lease = end.saturating_add(LEASE_SEQS);
        if self.write_now(shared, shared.next_seq.load(Ordering::Acquire), lease) {
            self.lease.store(lease, Ordering::Release);
        }
    }

    /// Writes the mark if anything in it changed (after a round, a failure, a close).
    /// Returns whether the file now holds it.
    pub fn write_now(&self, shared: &Shared, next_seq: u64, lease: u64) -> bool {
        match &self.file {
            Some(file) => file.store(self.mark(shared, next_seq, lease, None)),
            None => true,
        }
    }

    /// Runs `flush` (sled's flush of the round `first_seq..end`) while the writer thread
    /// writes the mark naming the round in flight; returns once both are done.
    pub fn beside_flush<T>(
        &self,
        shared: &Shared,
        first_seq: u64,
        end: u64,
        flush: impl FnOnce() -> T,
    ) -> T {
        let Some(file) = &self.file else {
            return flush();
        };
        let lease = self.lease.load(Ordering::Acquire);
        let mark = self.mark(shared, end, lease, Some((first_seq, end - 1)));
        let handed = match &self.writer {
            Some(writer) => match writer.jobs.send(mark) {
                Ok(()) => Ok(writer),
                Err(mpsc::SendError(mark)) => Err(mark),
            },
            None => Err(mark),
        };
        let flushed = flush();
        match handed {
            Ok(writer) => {
                let done = writer.done.lock().unwrap_or_else(|p| p.into_inner());
                // A writer that died (it cannot, short of a panic) wrote nothing more.
                let _ = done.recv();
            }
            // No writer: write it here, still before the replies.
            Err(mark) => {
                file.store(mark);
            }
        }
        flushed
    }

    /// The mark as of now.
    fn mark(
        &self,
        shared: &Shared,
        next_seq: u64,
        lease: u64,
        in_flight: Option<(u64, u64)>,
    ) -> Mark {
        let removed_through = self.removed_through.load(Ordering::Acquire);
        let unstored = {
            let mut unstored = self.unstored.lock().unwrap_or_else(|p| p.into_inner());
            unstored.retain(|&(_, last)| last > removed_through);
            unstored.clone()
        };
        Mark {
            next_seq,
            seq_lease: lease.max(next_seq),
            removed_through,
            records: shared.space.snapshot().stored.records,
            unstored,
            in_flight,
        }
    }

    /// The file was replaced whole (the open-time comparison of a reopen after a failure
    /// may write it): the next write looks at it again instead of writing into the old one.
    pub fn file_replaced(&self) {
        if let Some(file) = &self.file {
            let mut io = file.io.lock().unwrap_or_else(|p| p.into_inner());
            io.file = None;
            io.last = None;
        }
    }

    /// After a successful round (or a close): the mark with the current lease.
    pub fn after_round(&self, shared: &Shared, next_seq: u64) {
        self.write_now(shared, next_seq, self.lease.load(Ordering::Acquire));
    }
}

/// What the open-time comparison found, to seed the [`Keeper`].
#[derive(Debug, Clone, Default)]
pub(super) struct Found {
    pub removed_through: u64,
    pub seq_lease: u64,
    pub unstored: Vec<(u64, u64)>,
    pub lost_records: u64,
    pub lost_ranges: Vec<(u64, u64)>,
}

/// The chunks' seq ranges (inclusive) in a tree: the queue's records, or the quarantine's.
fn chunk_ranges(tree: &sled::Tree) -> Vec<(u64, u64)> {
    tree.range(..META_PREFIX)
        .filter_map(|item| item.ok())
        .filter_map(|(key, value)| {
            let first = key_seq(&key)?;
            // A quarantined chunk may have been moved for its header (an unknown version or
            // codec): its count still stands in bytes 1..5 in every format, and its records
            // were reported when it was moved, so they are covered, not missing.
            let count = chunk_header(&value)
                .ok()
                .or_else(|| Some(u32::from_be_bytes(value.get(1..5)?.try_into().ok()?)))?;
            Some((
                first,
                first.saturating_add(u64::from(count).saturating_sub(1)),
            ))
        })
        .collect()
}

/// Compares a freshly opened database with the mark: reports missing records, keeps a
/// damaged database aside (re-queuing what it still holds), and lifts `next_seq` to the
/// mark. Called by every open of the live buffer (start, and reopen after a failure).
pub(super) fn settle(
    opts: &BufferOptions,
    store: Store,
    mut scan: OpenScan,
) -> Result<(Store, OpenScan, Found), BufferError> {
    let mut found = Found::default();
    if opts.salvage {
        return Ok((store, scan, found));
    }
    let Some(mark) = read(&mark_path(&opts.path)) else {
        found.removed_through = scan.oldest_seq.unwrap_or(scan.next_seq).saturating_sub(1);
        return Ok((store, scan, found));
    };
    found.removed_through = mark.removed_through;
    found.seq_lease = mark.seq_lease;
    found.unstored = mark.unstored.clone();

    let mut covered = chunk_ranges(&store.queue);
    let oldest_present = covered.iter().map(|r| r.0).min();
    covered.extend(chunk_ranges(&store.quarantine));
    let lost = missing(&mark, &covered);
    let mut store = store;
    if !lost.is_empty() {
        let count: u64 = lost.iter().map(|(a, b)| b - a + 1).sum();
        let front = oldest_present.is_none_or(|oldest| lost.iter().all(|&(_, b)| b < oldest));
        // Missing seqs of the round that was being flushed: perhaps never acknowledged.
        let unconfirmed: u64 = mark.in_flight.map_or(0, |(a, b)| {
            lost.iter()
                .map(|&(x, y)| y.min(b).saturating_add(1).saturating_sub(x.max(a)))
                .sum()
        });
        let kept = keep_aside(opts, store)?;
        tracing::error!(
            path = %opts.path.display(),
            missing_records = count,
            seq_ranges = %ranges_text(&lost),
            expected_records = mark.records,
            found_records = scan.records,
            kept_aside = %kept.display(),
            "buffer: records acknowledged to devices are MISSING from the database{}{}; the \
             records it still holds were re-queued, and its files are kept aside for \
             `fleetedge buffer export --from`",
            if front {
                " (all at the front of the queue: lost, unless they were acknowledged by the \
                 broker just before the stop)"
            } else {
                ""
            },
            if unconfirmed > 0 {
                format!(
                    " ({unconfirmed} of them from the round being flushed at the stop: lost, or \
                     never acknowledged if the stop came before that flush ended)"
                )
            } else {
                String::new()
            }
        );
        let (reopened, rescan) = super::reclaim::open(opts)?;
        store = reopened;
        scan = rescan;
        found.lost_records = count;
        // Reported once: the next open must not count (or keep aside) them again.
        found.unstored.extend(lost.iter().copied());
        found.unstored.sort_unstable();
        found.lost_ranges = lost;
    }
    if scan.next_seq < mark.next_seq {
        let next = mark.seq_lease.max(mark.next_seq);
        tracing::error!(
            path = %opts.path.display(),
            database_next_seq = scan.next_seq,
            mark_next_seq = mark.next_seq,
            continuing_at = next,
            "buffer: the database's seq counter went back; continuing at the durable mark's \
             lease so no seq is handed out twice"
        );
        // The seqs skipped are spent, never stored.
        if next > mark.next_seq {
            found.unstored.push((mark.next_seq, next - 1));
        }
        scan.next_seq = next;
    }
    found.seq_lease = found.seq_lease.max(scan.next_seq);
    if found.unstored != mark.unstored {
        // What was reported (and skipped) is settled: the next open must not count (or
        // keep aside) it again.
        let settled = Mark {
            next_seq: scan.next_seq.max(mark.next_seq),
            seq_lease: found.seq_lease,
            records: scan.records,
            unstored: found.unstored.clone(),
            in_flight: None,
            removed_through: mark.removed_through,
        };
        if let Err(e) = write(&mark_path(&opts.path), &settled) {
            tracing::error!(path = %opts.path.display(), error = %e, "buffer: cannot write the durable mark after a loss; the next start reports it again");
        }
    }
    Ok((store, scan, found))
}

/// Moves the database aside to `<path>.damaged-<secs>` and builds a fresh one at the path
/// holding every entry sled can still read from it (chunks with their keys, the counter,
/// the quarantine tree). Returns where the damaged one went.
fn keep_aside(opts: &BufferOptions, store: Store) -> Result<PathBuf, BufferError> {
    let path = opts.path.clone();
    let io = |step: &'static str| {
        let path = path.clone();
        move |source: std::io::Error| BufferError::Reclaim { path, step, source }
    };
    drop(store);
    if !super::reclaim::wait_until_released(&path) {
        return Err(io("keeping a damaged database aside")(
            std::io::Error::other("sled still holds it after closing"),
        ));
    }
    let aside = store::move_aside_target(&path, "damaged");
    std::fs::rename(&path, &aside).map_err(io("moving a damaged database aside"))?;
    super::reclaim::sync_parent(&path).map_err(io("moving a damaged database aside"))?;
    let open = |p: &Path| {
        store::open_waiting_for_lock(p, opts).map_err(|e| BufferError::Open {
            path: p.to_path_buf(),
            source: match e {
                store::OpenFailure::Other(e) => e,
                corrupt => sled::Error::ReportableBug(corrupt.to_string()),
            },
        })
    };
    let old = open(&aside)?;
    let fresh = open(&path)?;
    let copy = || -> Result<(), sled::Error> {
        for item in old.queue.iter() {
            let (key, value) = item?;
            fresh.queue.insert(key, value)?;
        }
        for item in old.quarantine.iter() {
            let (key, value) = item?;
            fresh.quarantine.insert(key, value)?;
        }
        if fresh.queue.get(NEXT_SEQ_KEY)?.is_none() {
            // Without a counter the next open starts from the clock (or the mark's lease).
            tracing::warn!(path = %path.display(), "buffer: the damaged database had no seq counter");
        }
        fresh.flush()?;
        Ok(())
    };
    copy().map_err(|source| BufferError::Sled {
        path: path.clone(),
        op: "re-queuing the records of a damaged database",
        source,
    })?;
    drop(old);
    drop(fresh);
    let _ = super::reclaim::wait_until_released(&path);
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(removed_through: u64, next_seq: u64, unstored: &[(u64, u64)]) -> Mark {
        Mark {
            next_seq,
            seq_lease: next_seq + 10,
            removed_through,
            records: 0,
            unstored: unstored.to_vec(),
            in_flight: None,
        }
    }

    #[test]
    fn a_mark_reads_back_what_was_written_and_damage_is_an_error() {
        let m = Mark {
            next_seq: 30_001,
            seq_lease: 1_078_577,
            removed_through: 12_000,
            records: 18_000,
            unstored: vec![(20_001, 20_100), (25_000, 25_000)],
            in_flight: Some((29_001, 30_000)),
        };
        assert_eq!(Mark::decode(&m.encode()), Ok(m.clone()));
        let empty = Mark::default();
        assert_eq!(Mark::decode(&empty.encode()), Ok(empty));
        assert!(Mark::decode("").is_err());
        let text = m.encode();
        assert!(Mark::decode(&text.replace("records 18000\n", "")).is_err());
        assert!(Mark::decode(&text.replace("18000", "18x00")).is_err());
        assert!(Mark::decode(&format!("{text}extra 1\n")).is_err());
    }

    #[test]
    fn missing_is_what_neither_chunks_nor_unstored_cover_after_removed_through() {
        // Everything there.
        assert_eq!(missing(&mark(10, 21, &[]), &[(11, 15), (16, 20)]), []);
        // Acked records below the chunks are not missing; chunks may straddle the mark.
        assert_eq!(missing(&mark(10, 21, &[]), &[(5, 12), (13, 20)]), []);
        // A hole, a lost tail, a lost front.
        assert_eq!(
            missing(&mark(10, 31, &[]), &[(14, 15), (18, 20)]),
            [(11, 13), (16, 17), (21, 30)]
        );
        // Unstored seqs are not missing.
        assert_eq!(missing(&mark(10, 31, &[(21, 30)]), &[(11, 20)]), []);
        // An empty database: everything after removed_through.
        assert_eq!(missing(&mark(10, 21, &[]), &[]), [(11, 20)]);
        // Chunks beyond next_seq (the mark lagged the last round) change nothing.
        assert_eq!(missing(&mark(0, 5, &[]), &[(1, 4), (5, 9)]), []);
        // Nothing ever stored.
        assert_eq!(missing(&mark(0, 1, &[]), &[]), []);
    }

    #[test]
    fn a_mark_is_replaced_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("buffer.durable");
        assert_eq!(read(&path), None);
        let m = mark(3, 9, &[(4, 5)]);
        write(&path, &m).expect("write");
        assert_eq!(read(&path), Some(m.clone()));
        let n = mark(8, 20, &[]);
        write(&path, &n).expect("write");
        assert_eq!(read(&path), Some(n));
        assert!(!dir.path().join("buffer.durable.tmp").exists());
        std::fs::write(&path, "garbage").expect("write");
        assert_eq!(read(&path), None, "a damaged mark is no mark");
    }

    fn mark_file(path: &Path) -> MarkFile {
        MarkFile {
            path: path.to_path_buf(),
            io: Mutex::new(MarkIo::default()),
        }
    }

    /// Overwrites the second half of slot `index` with zeros, as a write cut off by a crash
    /// leaves it.
    fn tear(path: &Path, index: usize) {
        let mut bytes = std::fs::read(path).expect("read");
        bytes[index * SLOT_BYTES + 40..(index + 1) * SLOT_BYTES].fill(0);
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_mark_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("buffer.durable");
        let file = mark_file(&path);
        let (m1, m2, m3) = (mark(0, 5, &[]), mark(1, 9, &[(6, 7)]), mark(4, 12, &[]));
        assert!(file.store(m1.clone()));
        assert_eq!(read(&path), Some(m1.clone()));
        assert!(file.store(m2.clone()));
        assert!(file.store(m3.clone()));
        assert_eq!(read(&path), Some(m3.clone()), "the highest generation wins");
        assert_eq!(
            std::fs::metadata(&path).expect("metadata").len(),
            FILE_BYTES as u64,
            "written in place: the size never changes"
        );
        let newest = match decode_file(&std::fs::read(&path).expect("read")) {
            Ok(Contents::Slots(slot)) => slot,
            other => panic!("not format 2: {other:?}"),
        };
        assert_eq!(newest.mark, m3);

        // The write of m3 torn: its checksum fails, and m2 in the other slot is read.
        tear(&path, newest.index);
        assert_eq!(read(&path), Some(m2.clone()));
        // One flipped bit is a torn write too.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[(1 - newest.index) * SLOT_BYTES + SLOT_HEAD + 3] ^= 0x04;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(read(&path), None, "no slot whole: no mark (logged)");
        bytes[(1 - newest.index) * SLOT_BYTES + SLOT_HEAD + 3] ^= 0x04;
        std::fs::write(&path, &bytes).expect("write");

        // After a restart the next write goes into the torn slot, never over m2.
        let file = mark_file(&path);
        let m4 = mark(5, 20, &[]);
        assert!(file.store(m4.clone()));
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(
            decode_slot(&bytes, newest.index).map(|s| s.mark),
            Ok(m4.clone())
        );
        assert_eq!(
            decode_slot(&bytes, 1 - newest.index).map(|s| s.mark),
            Ok(m2)
        );
        assert_eq!(read(&path), Some(m4));
    }

    #[test]
    fn a_format_1_mark_is_read_and_the_first_write_replaces_it_with_format_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("buffer.durable");
        // What releases before format 2 wrote: the text alone.
        let old = Mark {
            unstored: vec![(20, 29)],
            in_flight: Some((40, 49)),
            ..mark(10, 50, &[])
        };
        std::fs::write(&path, old.encode()).expect("write");
        assert_eq!(read(&path), Some(old.clone()));
        let new = mark(12, 60, &[(20, 29)]);
        assert!(mark_file(&path).store(new.clone()));
        assert_eq!(read(&path), Some(new));
        let bytes = std::fs::read(&path).expect("read");
        assert!(bytes.starts_with(SLOT_MAGIC), "format 2 now");
        assert!(!dir.path().join("buffer.durable.tmp").exists());
    }

    #[test]
    fn a_mark_too_big_for_its_slot_is_an_error_not_a_torn_slot() {
        // MAX_UNSTORED ranges of the largest seqs still fit.
        let big = Mark {
            next_seq: u64::MAX,
            seq_lease: u64::MAX,
            removed_through: u64::MAX,
            records: u64::MAX,
            unstored: vec![(u64::MAX - 1, u64::MAX); MAX_UNSTORED],
            in_flight: Some((u64::MAX - 1, u64::MAX)),
        };
        let slot = encode_slot(&big, 7).expect("fits");
        assert_eq!(slot.len(), SLOT_BYTES);
        let mut file = slot.clone();
        file.resize(FILE_BYTES, 0);
        assert_eq!(
            decode_slot(&file, 0).map(|s| (s.generation, s.mark)),
            Ok((7, big.clone()))
        );
        let bigger = Mark {
            unstored: vec![(u64::MAX - 1, u64::MAX); 2 * MAX_UNSTORED],
            ..big
        };
        assert!(encode_slot(&bigger, 8).is_err());
    }

    /// `cargo test --release --lib buffer::durable_mark::tests::cost -- --ignored --nocapture`:
    /// what one mark write costs on the disk holding the temp dir (compare with a round's
    /// flush): format 1's whole-file replacement against format 2's in-place slot.
    #[test]
    #[ignore = "measurement"]
    fn cost_of_a_mark_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("buffer.durable");
        let n = 200u64;
        let start = std::time::Instant::now();
        for i in 0..n {
            write(&path, &mark(i, i + 100, &[])).expect("write");
        }
        let whole = start.elapsed() / n as u32;
        let file = mark_file(&path);
        let start = std::time::Instant::now();
        for i in 0..n {
            assert!(file.store(mark(i, i + 100, &[])));
        }
        let in_place = start.elapsed() / n as u32;
        println!(
            "one durable mark write: whole file (temp + fsync + rename + fsync dir) {whole:?}, \
             in place (pwrite + fdatasync) {in_place:?}"
        );
    }

    #[test]
    fn ranges_are_named_briefly() {
        assert_eq!(ranges_text(&[(1, 1), (3, 9)]), "1, 3-9");
        let many: Vec<(u64, u64)> = (0..20).map(|i| (i * 10, i * 10 + 1)).collect();
        assert!(ranges_text(&many).ends_with("… and 4 more"));
    }
}
