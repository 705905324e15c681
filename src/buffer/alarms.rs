//! Alarm markers: which stored records carry an alarm, and which of those were already
//! published ahead of the backlog, so the uplink can send alarms first and the backlog
//! never sends them again.
//!
//! ```text
//! tree "queue" (beside the chunks and next_seq, in the meta region)
//! └── key   = FF FF FF FF FF FF FF FF "alarm" + seq u64 BE      one per alarm record
//!     value = [state]   0x00 pending: not yet published ahead of the backlog
//!                       0x01 published: acknowledged by the broker on its own
//! ```
//!
//! - A marker is written in the SAME sled batch as the chunk holding its record (the commit
//!   round, `commit.rs`), so after any crash a stored alarm has its marker and a marker has
//!   its record (or the record's chunk was removed after its PUBACK).
//! - The uplink reads pending markers ([`Buffer::read_alarms`]), publishes those records in
//!   their own batches, and after the PUBACK marks them published
//!   ([`Buffer::alarms_published`]); the record stays in its chunk until the backlog's own
//!   PUBACK removes the chunk ("delete after PUBACK" is unchanged).
//! - [`Buffer::read_after`] tells the backlog which of its records were published ahead
//!   ([`StoredChunk::published_ahead`]), so they are never published twice.
//! - Markers leave with their chunks ([`forget_through`], called by every removal through a
//!   seq); a marker whose record is gone otherwise (drop_oldest, a quarantined chunk) is
//!   dropped when read. Marking is not flushed, like removals: after a crash an alarm may
//!   be published a second time, with the same seq.

use std::sync::atomic::Ordering;

use firmware_protocols::Record;

use super::store::{decode_chunk, key_seq, seq_key, Store, META_PREFIX};
use super::{Buffer, BufferError, StoredChunk};

const ALARM_TAG: &[u8; 5] = b"alarm";
const KEY_LEN: usize = META_PREFIX.len() + ALARM_TAG.len() + 8;
pub(super) const PENDING: u8 = 0;
const PUBLISHED: u8 = 1;

/// The marker key of the alarm record with `seq`.
pub(super) fn alarm_key(seq: u64) -> [u8; KEY_LEN] {
    let mut key = [0; KEY_LEN];
    key[..8].copy_from_slice(&META_PREFIX);
    key[8..13].copy_from_slice(ALARM_TAG);
    key[13..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn marker_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(13..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The offsets (within `records`) of the records that carry an alarm, per their protocol's
/// registry entry.
pub(super) fn offsets(records: &[Record]) -> Vec<u64> {
    (0u64..)
        .zip(records)
        .filter(|(_, r)| r.alarm().is_some())
        .map(|(i, _)| i)
        .collect()
}

/// Removes the markers of every seq at or below `through` (their chunks are gone).
pub(super) fn forget_through(store: &Store, through: u64) -> Result<(), BufferError> {
    let mut batch = sled::Batch::default();
    let mut any = false;
    for item in store.queue.range(alarm_key(0)..=alarm_key(through)) {
        let (key, _) = item.map_err(store.sled_err("scanning alarm markers"))?;
        batch.remove(key);
        any = true;
    }
    if any {
        store
            .queue
            .apply_batch(batch)
            .map_err(store.sled_err("removing alarm markers"))?;
    }
    Ok(())
}

/// Sets `published_ahead` on each chunk: the seqs of its alarms already published.
pub(super) fn mark_chunks(store: &Store, chunks: &mut [StoredChunk]) -> Result<(), BufferError> {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return Ok(());
    };
    let range = alarm_key(first.first_seq)..=alarm_key(last.last_seq());
    let mut chunk = 0;
    for item in store.queue.range(range) {
        let (key, value) = item.map_err(store.sled_err("reading alarm markers"))?;
        let Some(seq) = marker_seq(&key).filter(|_| value.first() == Some(&PUBLISHED)) else {
            continue;
        };
        while chunks.get(chunk).is_some_and(|c| c.last_seq() < seq) {
            chunk += 1;
        }
        match chunks.get_mut(chunk) {
            Some(c) if c.first_seq <= seq => c.published_ahead.push(seq),
            Some(_) => {}
            None => break,
        }
    }
    Ok(())
}

impl Buffer {
    /// Durable alarm records not yet published ahead of the backlog, in seq order, with
    /// seqs after `after` (`None`: all), at most `max`. Markers whose record is gone are
    /// dropped on the way.
    pub fn read_alarms(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, Record)>, BufferError> {
        let shared = &self.inner.shared;
        let Some(store) = shared.store.get().filter(|_| !shared.fault.is_failing()) else {
            return Ok(Vec::new());
        };
        let start = match after {
            None => 0,
            Some(seq) => match seq.checked_add(1) {
                Some(start) => start,
                None => return Ok(Vec::new()),
            },
        };
        let end = shared.durable_end.load(Ordering::Acquire);
        let mut out = Vec::new();
        if start >= end || max == 0 {
            return Ok(out);
        }
        // Consecutive alarms often share a chunk: decode it once.
        let mut chunk: Option<(u64, Vec<Record>)> = None;
        let (mut gone, mut any_gone) = (sled::Batch::default(), false);
        for item in store.queue.range(alarm_key(start)..alarm_key(end)) {
            let (key, value) = item.map_err(store.sled_err("reading alarm markers"))?;
            let Some(seq) = marker_seq(&key) else {
                continue;
            };
            if value.first() != Some(&PENDING) {
                continue;
            }
            let cached = chunk.as_ref().is_some_and(|(first, records)| {
                (*first..*first + records.len() as u64).contains(&seq)
            });
            if !cached {
                chunk = holding_chunk(&store, seq)?;
            }
            let record = chunk.as_ref().and_then(|(first, records)| {
                records.get(usize::try_from(seq - first).ok()?).cloned()
            });
            match record {
                Some(record) => out.push((seq, record)),
                None => {
                    gone.remove(&key[..]);
                    any_gone = true;
                }
            }
            if out.len() >= max {
                break;
            }
        }
        if any_gone {
            store
                .queue
                .apply_batch(gone)
                .map_err(store.sled_err("removing stale alarm markers"))?;
        }
        Ok(out)
    }

    /// The broker acknowledged these alarm records, published ahead of the backlog: the
    /// backlog must not publish them again. Not flushed (see the module doc). A marker
    /// already gone (its chunk was removed) stays gone.
    pub fn alarms_published(&self, seqs: &[u64]) -> Result<(), BufferError> {
        let shared = &self.inner.shared;
        let Some(store) = shared.store.get() else {
            return Ok(());
        };
        for &seq in seqs {
            let swapped = store
                .queue
                .compare_and_swap(alarm_key(seq), Some(&[PENDING]), Some(&[PUBLISHED]))
                .map_err(store.sled_err("marking alarms published"))?;
            // Err: the marker is gone or already published; nothing to do either way.
            drop(swapped);
        }
        Ok(())
    }
}

/// The chunk holding `seq` (its first seq and records), if it is stored and decodes.
fn holding_chunk(store: &Store, seq: u64) -> Result<Option<(u64, Vec<Record>)>, BufferError> {
    let Some(item) = store.queue.range(..=seq_key(seq)).next_back() else {
        return Ok(None);
    };
    let (key, value) = item.map_err(store.sled_err("reading an alarm's chunk"))?;
    let Some(first) = key_seq(&key) else {
        return Ok(None);
    };
    // A chunk that does not decode is quarantined by the backlog's read; the alarm goes
    // with it.
    Ok(decode_chunk(&value).ok().map(|records| (first, records)))
}

#[cfg(test)]
mod tests {
    use firmware_protocols::{IoKey, IoValue, Protocol, Record};
    use tempfile::TempDir;

    use super::super::{Appended, Buffer, BufferOptions};

    fn position(i: u64) -> Record {
        let mut r = Record::new("356307042441013", Protocol::Teltonika, i as i64);
        r.lat = Some(54.0);
        r
    }

    /// A Teltonika record triggered by AVL id 252 (Unplug) = 1: a power-cut alarm.
    fn unplugged(i: u64) -> Record {
        let mut r = position(i);
        r.event = Some("io:252".into());
        r.io.push((IoKey::Id(252), IoValue::U64(1)));
        r
    }

    fn open(dir: &TempDir) -> Buffer {
        let mut o = BufferOptions::new(dir.path().join("buffer"));
        o.cache_capacity_bytes = 4 << 20;
        o.seq_floor = Some(1);
        Buffer::open(o).expect("open buffer")
    }

    async fn store(buffer: &Buffer, records: Vec<Record>) {
        let stored = buffer.append(records).await.expect("append");
        assert!(matches!(stored, Appended::Stored { .. }));
    }

    fn alarm_seqs(buffer: &Buffer, after: Option<u64>) -> Vec<u64> {
        let alarms = buffer.read_alarms(after, 100).expect("read alarms");
        alarms.into_iter().map(|(seq, _)| seq).collect()
    }

    #[tokio::test]
    async fn alarms_are_found_published_once_and_leave_with_their_chunks() {
        let dir = TempDir::new().unwrap();
        let buffer = open(&dir);
        store(&buffer, vec![position(1), unplugged(2), position(3)]).await;
        store(&buffer, vec![position(4)]).await;
        store(&buffer, vec![unplugged(5), unplugged(6)]).await;
        assert_eq!(alarm_seqs(&buffer, None), [2, 5, 6]);
        assert_eq!(alarm_seqs(&buffer, Some(2)), [5, 6]);
        let read = buffer.read_alarms(Some(5), 100).unwrap();
        assert_eq!(read[0].1, unplugged(6), "the record itself, from its chunk");

        // Published ahead: not offered again, and the backlog read says so.
        buffer.alarms_published(&[2, 6]).unwrap();
        assert_eq!(alarm_seqs(&buffer, None), [5]);
        let chunks = buffer.read_after(None, 100, usize::MAX).unwrap();
        let ahead: Vec<Vec<u64>> = chunks.iter().map(|c| c.published_ahead.clone()).collect();
        assert_eq!(ahead, [vec![2], vec![], vec![6]]);

        // Across a restart.
        drop(chunks);
        drop(buffer);
        let buffer = open(&dir);
        assert_eq!(alarm_seqs(&buffer, None), [5]);
        let chunks = buffer.read_after(None, 100, usize::MAX).unwrap();
        assert_eq!(chunks[0].published_ahead, [2]);

        // Removed with their chunks: no marker outlives its record.
        assert_eq!(buffer.ack_through(4).unwrap(), 4);
        buffer.alarms_published(&[2]).unwrap();
        let chunks = buffer.read_after(None, 100, usize::MAX).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].published_ahead, [6]);
        assert_eq!(buffer.ack_through(6).unwrap(), 2);
        assert!(alarm_seqs(&buffer, None).is_empty());
    }

    #[tokio::test]
    async fn records_without_an_alarm_get_no_marker() {
        let dir = TempDir::new().unwrap();
        let buffer = open(&dir);
        let mut ignition = position(1);
        ignition.event = Some("io:239".into());
        ignition.io.push((IoKey::Id(239), IoValue::U64(1)));
        let mut ended = unplugged(2);
        ended.io = vec![(IoKey::Id(252), IoValue::U64(0))];
        store(&buffer, vec![ignition, ended, position(3)]).await;
        assert!(alarm_seqs(&buffer, None).is_empty());
    }
}
