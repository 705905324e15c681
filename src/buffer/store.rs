//! The sled layout: opening (and moving a corrupt database aside), keys, the chunk value
//! format, and the one scan done at open. No accounting and no threads live here; see the
//! module doc in `mod.rs` for the drawing of the layout.

use std::cell::RefCell;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{SystemTime, UNIX_EPOCH};

use firmware_protocols::Record;
use sled::IVec;

use super::device_sync::DeviceSync;
use super::{BufferError, BufferOptions};

/// The tree holding the queue: chunk entries and, after them, the meta keys.
pub(super) const QUEUE_TREE: &str = "queue";
/// Entries that could not be read are moved here (same key, same value) for forensics.
pub(super) const QUARANTINE_TREE: &str = "quarantine";
/// The downlink commands' tree (its layout: `src/commands/store.rs`); the buffer only keeps
/// it alive across reopens and reclaims.
pub(super) const COMMANDS_TREE: &str = "commands";
/// The first byte of every single-append chunk value this build writes:
/// `[2][count][codec][payload]`.
pub(super) const FORMAT_VERSION: u8 = 2;
/// The first byte of a grouped value: several small appends of one commit round stored as
/// one entry, `[3][total count: u32 BE]` then per append `[len: u16 BE][bincode(records)]`.
pub(super) const FORMAT_GROUPED: u8 = 3;
/// Most bytes of one grouped value: far below any uplink batch, so grouping never makes a
/// batch much larger than its appends would have. Small enough that a sled leaf (split
/// past 16 entries) of grouped values stays under sled's 128 KiB limit for a log entry:
/// with 32 KiB groups the queue's newest leaf went to a blob file of ~150 KB about ten
/// times a second under one-record traffic, files that pile up until a reclaim (378 after
/// 40 s) and each need an fsync of their own (`device_sync.rs`). 4 KiB: none, at the same
/// records/s (README, Benchmarks).
pub(super) const GROUP_MAX_BYTES: usize = 4 << 10;
/// Most records in one grouped value (an uplink batch takes whole entries, so this bounds
/// how far past `batch_max_records` a batch can go because of grouping).
pub(super) const GROUP_MAX_RECORDS: u64 = 256;
/// The format of earlier releases, still read: `[1][count][zstd(bincode)]`.
pub(super) const FORMAT_V1: u8 = 1;
/// Version byte + u32 big-endian record count (both formats).
pub(super) const HEADER_LEN: usize = 5;
/// Version-2 codec byte: the payload is the bincode itself.
pub(super) const CODEC_PLAIN: u8 = 0;
/// Version-2 codec byte: the payload is one zstd frame of the bincode.
pub(super) const CODEC_ZSTD: u8 = 1;
/// Chunks whose bincode is at least this long are compressed; shorter ones are stored plain
/// (see the module doc in `mod.rs` for the measurements behind it).
pub(super) const COMPRESS_FROM_BYTES: usize = 1024;
/// The largest chunk value accepted, and the bincode decode limit, so a corrupt length field
/// can never make a read allocate more than this.
pub(super) const MAX_CHUNK_BYTES: usize = 16 << 20;
/// Every meta key starts with this; record keys (8 bytes, seq < u64::MAX) all sort before it.
pub(super) const META_PREFIX: [u8; 8] = [0xFF; 8];
/// The next sequence number to hand out, u64 big-endian, written in every commit batch.
pub(super) const NEXT_SEQ_KEY: &[u8; 16] = b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFFnext_seq";
/// The first sequence number of a new database.
pub(super) const FIRST_SEQ: u64 = 1;

/// The first seq of a buffer that has no counter: the Unix time in microseconds (at least
/// [`FIRST_SEQ`], so a clock stuck in 1970 still works).
pub(super) fn seq_floor_from_clock() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
    micros.clamp(FIRST_SEQ, u64::MAX / 2)
}

/// The record key of the chunk whose first record has `seq`.
pub(super) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The first seq of a record key, or `None` for a key that is not 8 bytes.
pub(super) fn key_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Lowercase hex of a key, for error messages.
pub(super) fn key_hex(key: &[u8]) -> String {
    firmware_protocols::record::to_hex(key)
}

/// zstd level for stored chunks: the fastest, since this runs on every append.
const CHUNK_ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// One compression context per thread: creating one costs more than compressing a chunk.
    static CHUNK_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    /// One decompression context per thread, for the same reason (a new one allocates and
    /// clears its window tables: more than decompressing a one-record chunk).
    static CHUNK_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Encodes one chunk value: `[FORMAT_VERSION][count: u32 BE][codec][payload]`, the payload
/// being `bincode(records)`, zstd-compressed when it is at least [`COMPRESS_FROM_BYTES`]
/// long. The caller has checked that `records.len()` fits in a u32.
///
/// Compressing makes large chunks about a quarter of their bincode size; sled's memory and
/// disk use follow the bytes it holds, so this is what keeps a large backlog inside a small
/// gateway's RAM. A chunk of a few records gains little from it and pays the most per
/// record, so it is stored as it is.
pub(super) fn encode_chunk(records: &[Record]) -> Result<Vec<u8>, bincode::error::EncodeError> {
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + 1 + 128 * records.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&count.to_be_bytes());
    out.push(CODEC_PLAIN);
    let header = out.len();
    bincode::serde::encode_into_std_write(records, &mut out, bincode::config::standard())?;
    let plain_len = out.len() - header;
    // Reads refuse to inflate past this limit, so a chunk beyond it must never be stored
    // (its device would be told "accepted" for records the uplink could never read).
    if plain_len > MAX_CHUNK_BYTES {
        return Err(bincode::error::EncodeError::OtherString(format!(
            "{} records encode to {plain_len} bytes, over the {MAX_CHUNK_BYTES}-byte chunk \
             limit",
            records.len()
        )));
    }
    if plain_len < COMPRESS_FROM_BYTES {
        return Ok(out);
    }
    let compressed = CHUNK_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(CHUNK_ZSTD_LEVEL)?);
        }
        match slot.as_mut() {
            Some(c) => c.compress(&out[header..]),
            None => Err(std::io::Error::other("no zstd context")),
        }
    });
    let compressed = compressed.map_err(|e| {
        bincode::error::EncodeError::OtherString(format!("zstd compression failed: {e}"))
    })?;
    out.truncate(header);
    out[header - 1] = CODEC_ZSTD;
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// One sled entry of a commit round: `records` records starting `offset` records after the
/// round's first seq.
pub(super) struct Entry {
    pub offset: u64,
    pub records: u64,
    pub value: Vec<u8>,
}

/// Lays out a round's chunks (each append's value and record count, in seq order) as sled
/// entries: runs of consecutive small plain chunks become one grouped value (format 3, at
/// most [`GROUP_MAX_BYTES`] and [`GROUP_MAX_RECORDS`]), every other chunk is stored as its
/// append encoded it. A grouped value is never longer than the chunks it holds (it drops
/// each one's 6-byte header for a 2-byte length and adds one 5-byte header), so the bytes
/// reserved for the appends always cover it.
///
/// Why: on one-record-per-frame traffic every append was its own sled insert, removal, page
/// rewrite and log write; grouped, a round of a few hundred devices is a handful of entries.
pub(super) fn pack_round(chunks: Vec<(Vec<u8>, u64)>) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(1 + chunks.len() / 8);
    let mut group: Vec<Entry> = Vec::new();
    let (mut group_bytes, mut group_records) = (HEADER_LEN, 0u64);
    let mut offset = 0u64;
    for (value, records) in chunks {
        let small = plain_payload(&value).is_some_and(|p| u16::try_from(p.len()).is_ok());
        let part_bytes = value.len().saturating_sub(4);
        if !small
            || group_bytes + part_bytes > GROUP_MAX_BYTES
            || group_records + records > GROUP_MAX_RECORDS
        {
            entries.extend(close_group(&mut group));
            (group_bytes, group_records) = (HEADER_LEN, 0);
        }
        let entry = Entry {
            offset,
            records,
            value,
        };
        offset += records;
        if small {
            group_bytes += part_bytes;
            group_records += records;
            group.push(entry);
        } else {
            entries.push(entry);
        }
    }
    entries.extend(close_group(&mut group));
    entries
}

/// The payload of a format-2 plain chunk value.
fn plain_payload(value: &[u8]) -> Option<&[u8]> {
    match value {
        [FORMAT_VERSION, _, _, _, _, CODEC_PLAIN, payload @ ..] => Some(payload),
        _ => None,
    }
}

/// One entry for the chunks gathered in `group` (emptied): the chunk itself when it is
/// alone, a grouped value otherwise.
fn close_group(group: &mut Vec<Entry>) -> Option<Entry> {
    if group.len() <= 1 {
        return group.pop();
    }
    let parts = std::mem::take(group);
    let records: u64 = parts.iter().map(|p| p.records).sum();
    let bytes: usize = parts.iter().map(|p| p.value.len() - 4).sum();
    let mut value = Vec::with_capacity(HEADER_LEN + bytes);
    value.push(FORMAT_GROUPED);
    // At most GROUP_MAX_RECORDS, so it fits.
    value.extend_from_slice(&u32::try_from(records).unwrap_or(u32::MAX).to_be_bytes());
    for part in &parts {
        let payload = plain_payload(&part.value).unwrap_or_default();
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(payload);
    }
    Some(Entry {
        offset: parts[0].offset,
        records,
        value,
    })
}

/// The record count from a chunk value's header, checking the version byte.
pub(super) fn chunk_header(value: &[u8]) -> Result<u32, String> {
    split_chunk(value).map(|(count, _)| count)
}

/// How a chunk's records are stored.
enum Payload<'a> {
    Plain(&'a [u8]),
    Zstd(&'a [u8]),
    /// `[len: u16 BE][bincode(records)]` repeated (format 3).
    Grouped(&'a [u8]),
}

/// Checks a chunk value's header (either format) and splits it into the count and payload.
fn split_chunk(value: &[u8]) -> Result<(u32, Payload<'_>), String> {
    let Some((&version, rest)) = value.split_first() else {
        return Err("the value is empty".to_string());
    };
    if ![FORMAT_V1, FORMAT_VERSION, FORMAT_GROUPED].contains(&version) {
        return Err(format!(
            "unknown format version {version} (this build reads {FORMAT_V1}, \
             {FORMAT_VERSION} and {FORMAT_GROUPED})"
        ));
    }
    let short = || {
        format!(
            "the value is {} bytes, shorter than the version-{version} header",
            value.len()
        )
    };
    let Some((count, rest)) = rest.split_first_chunk::<4>() else {
        return Err(short());
    };
    let count = u32::from_be_bytes(*count);
    if count == 0 {
        return Err("the header says 0 records".to_string());
    }
    let payload = match version {
        FORMAT_V1 => Payload::Zstd(rest),
        FORMAT_GROUPED => Payload::Grouped(rest),
        _ => match rest.split_first() {
            None => return Err(short()),
            Some((&CODEC_PLAIN, payload)) => Payload::Plain(payload),
            Some((&CODEC_ZSTD, payload)) => Payload::Zstd(payload),
            Some((&codec, _)) => return Err(format!("unknown codec {codec}")),
        },
    };
    Ok((count, payload))
}

/// Decodes a whole chunk value, checking that the header count matches the payload.
pub(super) fn decode_chunk(value: &[u8]) -> Result<Vec<Record>, String> {
    let (count, payload) = split_chunk(value)?;
    match payload {
        Payload::Plain(plain) => decode_records(plain, count),
        Payload::Zstd(compressed) => {
            let plain = decompress(compressed)?;
            decode_records(&plain, count)
        }
        Payload::Grouped(mut parts) => {
            let mut records = Vec::with_capacity(count as usize);
            while let Some((len, rest)) = parts.split_first_chunk::<2>() {
                let len = usize::from(u16::from_be_bytes(*len));
                let Some((part, rest)) = rest.split_at_checked(len) else {
                    return Err(format!(
                        "a part claims {len} bytes, {} are left",
                        rest.len()
                    ));
                };
                records.extend(decode_part(part)?);
                parts = rest;
            }
            if !parts.is_empty() {
                return Err(format!("{} trailing bytes after the parts", parts.len()));
            }
            counted(records, count)
        }
    }
}

/// Inflates one zstd frame with this thread's context.
fn decompress(compressed: &[u8]) -> Result<Vec<u8>, String> {
    // The frame header states the decompressed size; it is checked against the limit before
    // anything is allocated, so a corrupt header cannot make a read allocate without bound.
    let size = match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size <= MAX_CHUNK_BYTES as u64 => size as usize,
        Ok(Some(size)) => {
            return Err(format!(
                "the zstd frame claims {size} bytes, over the {MAX_CHUNK_BYTES}-byte limit"
            ))
        }
        Ok(None) => return Err("the zstd frame does not state its size".to_string()),
        Err(_) => return Err("the payload is not a zstd frame".to_string()),
    };
    let inflated = CHUNK_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(compressed, size),
            None => Err(std::io::Error::other("no zstd context")),
        }
    });
    inflated.map_err(|e| format!("zstd decompression failed: {e}"))
}

/// Decodes `count` records from a bincode payload that must hold exactly them.
fn decode_records(payload: &[u8], count: u32) -> Result<Vec<Record>, String> {
    counted(decode_part(payload)?, count)
}

/// `records`, if they are as many as the header's `count` says.
fn counted(records: Vec<Record>, count: u32) -> Result<Vec<Record>, String> {
    if records.len() != count as usize {
        return Err(format!(
            "the header says {count} records, the payload holds {}",
            records.len()
        ));
    }
    Ok(records)
}

/// Decodes a bincode payload that must hold exactly a `Vec<Record>`.
fn decode_part(payload: &[u8]) -> Result<Vec<Record>, String> {
    let config = bincode::config::standard().with_limit::<MAX_CHUNK_BYTES>();
    let (records, used): (Vec<Record>, usize) = bincode::serde::decode_from_slice(payload, config)
        .map_err(|e| format!("bincode decode failed: {e}"))?;
    if used != payload.len() {
        return Err(format!(
            "{} trailing bytes after the records",
            payload.len() - used
        ));
    }
    Ok(records)
}

/// What the scan at open found in the queue tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpenScan {
    pub records: u64,
    pub bytes: u64,
    pub oldest_seq: Option<u64>,
    pub next_seq: u64,
    pub quarantined_chunks: u64,
}

/// The opened database and its two trees.
pub(super) struct Store {
    pub path: PathBuf,
    pub db: sled::Db,
    pub queue: sled::Tree,
    pub quarantine: sled::Tree,
    /// Downlink commands (see [`super::Buffer::with_commands`]).
    pub commands: sled::Tree,
    /// See [`BufferOptions::seq_floor`].
    pub seq_floor: Option<u64>,
    /// What sled's flush leaves out (`device_sync.rs`); [`Store::flush`] does both.
    pub device: Arc<DeviceSync>,
}

/// A failed [`DeviceSync::after_flush`] as the sled error its flush becomes: still an IO
/// error (the failing-database path reopens on it), with what failed in its text.
pub(super) fn device_sync_failed(e: std::io::Error) -> sled::Error {
    sled::Error::Io(std::io::Error::new(
        e.kind(),
        format!("syncing sled's files after its flush: {e}"),
    ))
}

impl Store {
    /// sled's flush, then what it leaves out (`device_sync.rs`): once this returns, what
    /// was written before it survives a power cut, not only a crash of the process. Every
    /// flush whose durability is acted on goes through here, never `db.flush()` alone.
    pub fn flush(&self) -> sled::Result<usize> {
        let ticket = self.device.ticket();
        let bytes = self.db.flush()?;
        self.device
            .after_flush(ticket)
            .map_err(device_sync_failed)?;
        Ok(bytes)
    }
}

pub(super) enum OpenFailure {
    /// The database looks corrupt: move it aside and start fresh.
    Corrupt(String),
    /// Anything else: report it and leave the directory alone.
    Other(sled::Error),
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Corrupt(reason) => write!(f, "corrupt: {reason}"),
            OpenFailure::Other(e) => e.fmt(f),
        }
    }
}

/// The live [`Store`], swappable by a disk reclaim (see `reclaim.rs`).
///
/// Only the reclaim (on the commit thread) takes the write lock, and only while the queue is
/// empty and the commit thread is busy with it, so nothing can be added meanwhile. Readers
/// therefore never wait for it: [`StoreCell::get`] returns `None` while a reclaim holds (or
/// waits for) the lock, and a reader treats that as the empty queue it is.
pub(super) struct StoreCell {
    slot: RwLock<Option<Store>>,
}

/// A read handle on the live store.
pub(super) struct StoreRef<'a>(RwLockReadGuard<'a, Option<Store>>);

impl StoreRef<'_> {
    fn new(guard: RwLockReadGuard<'_, Option<Store>>) -> Option<StoreRef<'_>> {
        if guard.is_some() {
            Some(StoreRef(guard))
        } else {
            None
        }
    }
}

impl Deref for StoreRef<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        match self.0.as_ref() {
            Some(store) => store,
            // `StoreRef::new` is the only constructor and checks for `Some`.
            None => unreachable!("a StoreRef always holds a store"),
        }
    }
}

impl StoreCell {
    pub fn new(store: Store) -> StoreCell {
        StoreCell {
            slot: RwLock::new(Some(store)),
        }
    }

    /// The live store without waiting; `None` while a reclaim swaps it (the queue is empty
    /// then) or after a reclaim that could not reopen any database (the commit thread has
    /// stopped then, and the process is on its way out).
    pub fn get(&self) -> Option<StoreRef<'_>> {
        match self.slot.try_read() {
            Ok(guard) => StoreRef::new(guard),
            // Nothing panics while holding the lock; if something did, the store is still
            // the best there is.
            Err(TryLockError::Poisoned(p)) => StoreRef::new(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The live store, waiting for a reclaim in progress to finish. For the commit thread
    /// (which runs the reclaims itself, so never waits) and for explicit flushes.
    pub fn wait(&self) -> Option<StoreRef<'_>> {
        StoreRef::new(self.slot.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Exclusive access, for the reclaim.
    pub fn write(&self) -> RwLockWriteGuard<'_, Option<Store>> {
        self.slot.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store {
    /// Opens the database at `opts.path`. A database that sled reports as corrupt (or that
    /// makes sled panic) is renamed to `<path>.corrupt-<unix-secs>` with an error log, and a
    /// fresh one is created in its place; this is the only case where seqs restart. Callers
    /// go through [`reclaim::open`](super::reclaim::open), which first settles a disk reclaim
    /// that was interrupted (the store knows nothing of reclaims).
    pub fn open(opts: &BufferOptions) -> Result<(Store, OpenScan), BufferError> {
        let path = opts.path.clone();
        let store = match open_waiting_for_lock(&path, opts) {
            Ok(store) => store,
            Err(OpenFailure::Other(source)) => return Err(BufferError::Open { path, source }),
            // Reading a database kept aside: never move it again.
            Err(OpenFailure::Corrupt(reason)) if opts.salvage => {
                return Err(BufferError::Open {
                    path,
                    source: sled::Error::Unsupported(reason),
                })
            }
            Err(OpenFailure::Corrupt(reason)) => {
                let to = move_aside_target(&path, "corrupt");
                std::fs::rename(&path, &to).map_err(|source| BufferError::MoveAside {
                    path: path.clone(),
                    to: to.clone(),
                    source,
                })?;
                tracing::error!(
                    path = %path.display(),
                    moved_to = %to.display(),
                    %reason,
                    "buffer database is corrupt; moved it aside and starting an EMPTY buffer. \
                     Records in it were not published; sequence numbers continue from the clock \
                     (Unix microseconds), above any seq handed out before"
                );
                match open_waiting_for_lock(&path, opts) {
                    Ok(store) => store,
                    Err(OpenFailure::Other(source)) => {
                        return Err(BufferError::Open { path, source })
                    }
                    Err(OpenFailure::Corrupt(reason)) => {
                        return Err(BufferError::Open {
                            path,
                            source: sled::Error::ReportableBug(format!(
                                "a freshly created database failed to open: {reason}"
                            )),
                        })
                    }
                }
            }
        };
        let scan = store.scan_at_open()?;
        Ok((store, scan))
    }

    /// A closure mapping a sled error to [`BufferError::Sled`] naming `op`.
    pub fn sled_err(&self, op: &'static str) -> impl FnOnce(sled::Error) -> BufferError + '_ {
        move |source| BufferError::Sled {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// A [`BufferError::Corrupt`] for the entry at `key`.
    pub fn corrupt(&self, key: &[u8], reason: String) -> BufferError {
        BufferError::Corrupt {
            path: self.path.clone(),
            key_hex: key_hex(key),
            seq: key_seq(key),
            reason,
        }
    }

    /// Moves an unreadable entry to the quarantine tree and removes it from the queue.
    /// Returns the value removed from the queue (`None` if someone else removed it first), so
    /// the caller can account for exactly what left.
    pub fn quarantine_entry(&self, key: &[u8], value: &[u8]) -> Result<Option<IVec>, BufferError> {
        self.quarantine
            .insert(key, value)
            .map_err(self.sled_err("quarantining a corrupt chunk"))?;
        self.queue
            .remove(key)
            .map_err(self.sled_err("removing a corrupt chunk"))
    }

    /// Whether the queue tree holds no chunk (meta keys aside). Walks over whatever sled
    /// still keeps of removed entries, so it is for the rare reclaim, not a hot path.
    pub fn queue_is_empty(&self) -> Result<bool, BufferError> {
        match self.queue.range(..META_PREFIX).next() {
            None => Ok(true),
            Some(Ok(_)) => Ok(false),
            Some(Err(e)) => Err((self.sled_err("checking that the queue is empty"))(e)),
        }
    }

    /// The one full scan: depth, oldest and next seq. Reads only the 5-byte headers' worth
    /// of each value (sled pages the values in anyway). Entries with a bad key or header are
    /// quarantined with an error log and not counted.
    fn scan_at_open(&self) -> Result<OpenScan, BufferError> {
        let mut scan = OpenScan {
            records: 0,
            bytes: 0,
            oldest_seq: None,
            next_seq: FIRST_SEQ,
            quarantined_chunks: 0,
        };
        // The first seq after the last chunk seen, to check that chunks do not overlap.
        let mut end = FIRST_SEQ;
        for item in self.queue.range(..META_PREFIX) {
            let (key, value) = item.map_err(self.sled_err("scanning the queue at open"))?;
            let checked = match (key_seq(&key), chunk_header(&value)) {
                (None, _) => Err(format!("the key is {} bytes, not 8", key.len())),
                (Some(_), Err(reason)) => Err(reason),
                (Some(first), Ok(_)) if first < end => Err(format!(
                    "seq {first} overlaps the previous chunk, which ends before {end}"
                )),
                (Some(first), Ok(count)) => match first.checked_add(u64::from(count)) {
                    Some(after) if after < u64::MAX => Ok((first, count, after)),
                    _ => Err(format!("seq {first} + {count} records overflows")),
                },
            };
            match checked {
                Ok((first, count, after)) => {
                    scan.records += u64::from(count);
                    scan.bytes += value.len() as u64;
                    scan.oldest_seq.get_or_insert(first);
                    end = after;
                }
                Err(reason) => {
                    tracing::error!(
                        path = %self.path.display(),
                        key = %key_hex(&key),
                        %reason,
                        "buffer: unreadable chunk at open; moved to the quarantine tree, \
                         its records will not be published"
                    );
                    self.quarantine_entry(&key, &value)?;
                    scan.quarantined_chunks += 1;
                }
            }
        }
        let stored_next = match self
            .queue
            .get(NEXT_SEQ_KEY)
            .map_err(self.sled_err("reading the next-seq counter"))?
        {
            None => None,
            Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
                Ok(b) => Some(u64::from_be_bytes(b)),
                Err(_) => {
                    tracing::error!(
                        path = %self.path.display(),
                        value = %key_hex(&v),
                        "buffer: the next-seq counter is not 8 bytes; continuing after the \
                         newest stored chunk, so seqs of records already drained may be reused"
                    );
                    None
                }
            },
        };
        if stored_next.is_none() && end > FIRST_SEQ {
            tracing::error!(
                path = %self.path.display(),
                "buffer: chunks are stored but the next-seq counter is missing; continuing \
                 after the newest stored chunk"
            );
        }
        // Without a trustworthy counter (a new database, one moved aside as corrupt, a mangled
        // counter) seqs start from the clock in microseconds: consumers dedupe on
        // (gateway_id, seq), and a gateway that lost its buffer must not hand out seqs they
        // have already seen. No gateway stores a million records a second for long, so the
        // clock stays ahead of every seq it handed out before.
        scan.next_seq = match stored_next {
            Some(next) => next.max(end),
            None => self.seq_floor.unwrap_or_else(seq_floor_from_clock).max(end),
        };
        Ok(scan)
    }
}

/// How long [`open_waiting_for_lock`] waits for another holder of the lock to let go.
///
/// Generous on purpose: "a moment" for sled's IO threads is far longer on a slow or loaded
/// machine (seconds under emulation with many databases busy at once), and a reclaim that
/// gives up here leaves the buffer without a database. Waiting longer costs only when the
/// lock stays held, and then only time: a start that fails anyway (another running
/// gateway) or the `fleetedge buffer` tools' "locked by another process" error come this
/// much later.
pub(super) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`try_open`], waiting up to [`LOCK_WAIT`] while the database's file lock is held. sled
/// releases the lock only when its IO threads drop their last handle, a moment after the
/// database was closed, so a reopen in the same process (a reclaim, a test) can find it
/// still held; so can a start while the previous process is still exiting. A lock held for
/// longer is an error.
pub(super) fn open_waiting_for_lock(
    path: &Path,
    opts: &BufferOptions,
) -> Result<Store, OpenFailure> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match try_open(path, opts) {
            Err(OpenFailure::Other(e))
                if is_lock_error(&e) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// sled's "could not acquire lock" (an `Io` error of kind `Other` carrying that text).
pub(super) fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Opens the sled database at `path` (which may differ from `opts.path` while a reclaim
/// builds the replacement) with the options' cache size.
pub(super) fn try_open(path: &Path, opts: &BufferOptions) -> Result<Store, OpenFailure> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(opts.cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None);
    // sled 0.34 may panic on some corrupt files instead of returning an error; a panic here
    // is treated like a corruption report rather than taking the process down in a loop.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        let db = config.open()?;
        let queue = db.open_tree(QUEUE_TREE)?;
        let quarantine = db.open_tree(QUARANTINE_TREE)?;
        let commands = db.open_tree(COMMANDS_TREE)?;
        let device = DeviceSync::open(path)?;
        Ok::<_, sled::Error>((db, queue, quarantine, commands, device))
    }));
    match opened {
        Ok(Ok((db, queue, quarantine, commands, device))) => Ok(Store {
            path: path.to_path_buf(),
            db,
            queue,
            quarantine,
            commands,
            seq_floor: opts.seq_floor,
            device: Arc::new(device),
        }),
        Ok(Err(e)) => Err(classify(e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(OpenFailure::Corrupt(format!(
                "sled panicked while opening: {what}"
            )))
        }
    }
}

/// Corruption (and IO errors that mean "the bytes on disk make no sense") move the database
/// aside; anything else (permissions, a lock held by another process, an unsupported config)
/// is an error that must not cost the stored records.
fn classify(e: sled::Error) -> OpenFailure {
    use std::io::ErrorKind;
    match e {
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => {
            OpenFailure::Corrupt(e.to_string())
        }
        sled::Error::Io(ref io)
            if matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
        {
            OpenFailure::Corrupt(e.to_string())
        }
        other => OpenFailure::Other(other),
    }
}

/// `<path>.<kind>-<unix-secs>`, with `-2`, `-3`... appended if that exists already.
pub(super) fn move_aside_target(path: &Path, kind: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".{kind}-{secs}"));
    let mut candidate = PathBuf::from(&base);
    let mut n = 2u32;
    while candidate.exists() {
        let mut next = base.clone();
        next.push(format!("-{n}"));
        candidate = PathBuf::from(next);
        n += 1;
    }
    candidate
}
