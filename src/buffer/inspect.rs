//! Read-only looks into the buffer for the installer tools (`fleetedge buffer stats` and
//! `fleetedge buffer export`, see [`crate::inspect`]): chunks in seq order, the limits in
//! force, the size of the quarantine tree. Nothing here writes, removes or moves an entry:
//! unlike [`Buffer::read_after`], which quarantines an unreadable chunk for the uplink,
//! [`Buffer::peek_after`] reports it and leaves it where it is.

use std::sync::atomic::Ordering;

use super::store::{chunk_header, decode_chunk, is_lock_error, key_hex, key_seq, seq_key};
use super::{Buffer, BufferError, StoredChunk, WhenFull};

/// The limits a buffer was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// [`super::BufferOptions::max_records`].
    pub max_records: u64,
    /// [`super::BufferOptions::max_bytes`].
    pub max_bytes: u64,
    /// [`super::BufferOptions::when_full`].
    pub when_full: WhenFull,
}

/// One stored chunk as [`Buffer::peek_after`] found it.
#[derive(Debug, Clone, PartialEq)]
pub enum PeekedChunk {
    /// The chunk, decoded.
    Chunk(StoredChunk),
    /// Its bytes do not decode. It stays where it is (the uplink quarantines it when it
    /// gets there).
    Unreadable {
        /// The key in hex.
        key_hex: String,
        /// The chunk's first seq (`None` if the key is not 8 bytes, which only a damaged
        /// database holds; nothing after it can be peeked).
        first_seq: Option<u64>,
        reason: String,
    },
}

impl Buffer {
    /// The limits in force.
    pub fn limits(&self) -> BufferLimits {
        let shared = self.shared();
        let max = shared.space_max();
        BufferLimits {
            max_records: max.records,
            max_bytes: max.bytes,
            when_full: shared.when_full,
        }
    }

    /// Like [`Buffer::read_after`] (whole durable chunks in seq order after `after_seq`,
    /// within `max_records` and `max_bytes` but at least one), except that nothing is moved:
    /// an unreadable chunk is returned as [`PeekedChunk::Unreadable`] and left in place, and
    /// the next call continues after its seq. Blocking.
    pub fn peek_after(
        &self,
        after_seq: Option<u64>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<PeekedChunk>, BufferError> {
        let shared = self.shared();
        // None: a reclaim is swapping the database, which it does only when the queue is
        // empty.
        let Some(store) = shared.store.get() else {
            return Ok(Vec::new());
        };
        let start = match after_seq.map(|seq| seq.checked_add(1)) {
            None => 0,
            Some(Some(start)) => start,
            Some(None) => return Ok(Vec::new()),
        };
        let start = start.max(shared.scan_from.load(Ordering::Acquire));
        let end = shared.durable_end.load(Ordering::Acquire);
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let (mut records, mut bytes) = (0usize, 0usize);
        for item in store.queue.range(seq_key(start)..seq_key(end)) {
            let (key, value) = item.map_err(store.sled_err("reading chunks"))?;
            let count = chunk_header(&value).map_or(0, |n| n as usize);
            if !out.is_empty() && (records + count > max_records || bytes + value.len() > max_bytes)
            {
                break;
            }
            records += count;
            bytes += value.len();
            let peeked = match key_seq(&key) {
                None => PeekedChunk::Unreadable {
                    key_hex: key_hex(&key),
                    first_seq: None,
                    reason: format!("the key is {} bytes, not 8", key.len()),
                },
                Some(first_seq) => match decode_chunk(&value) {
                    Ok(records) => PeekedChunk::Chunk(StoredChunk {
                        first_seq,
                        records,
                        encoded_len: value.len(),
                        published_ahead: Vec::new(),
                    }),
                    Err(reason) => PeekedChunk::Unreadable {
                        key_hex: key_hex(&key),
                        first_seq: Some(first_seq),
                        reason,
                    },
                },
            };
            let stuck = matches!(
                peeked,
                PeekedChunk::Unreadable {
                    first_seq: None,
                    ..
                }
            );
            out.push(peeked);
            if stuck {
                break;
            }
        }
        Ok(out)
    }

    /// The oldest durable chunk ([`Buffer::peek_after`] from the start), `None` when empty.
    pub fn peek_oldest(&self) -> Result<Option<PeekedChunk>, BufferError> {
        Ok(self.peek_after(None, 1, 1)?.into_iter().next())
    }

    /// Chunks in the quarantine tree (all of them, not only those moved since open).
    /// Walks the tree, which holds only the rare unreadable chunks.
    pub fn quarantine_len(&self) -> Result<u64, BufferError> {
        let shared = self.shared();
        let Some(store) = shared.store.get() else {
            // A reclaim copies the tree over; the count is unknown only for that moment.
            return Ok(shared.quarantined_chunks.load(Ordering::Relaxed));
        };
        let mut n = 0u64;
        for item in store.quarantine.iter().keys() {
            item.map_err(store.sled_err("counting quarantined chunks"))?;
            n += 1;
        }
        Ok(n)
    }
}

impl BufferError {
    /// The database could not be opened because another process holds its lock (sled allows
    /// one process at a time): usually a running `fleetedge run`.
    pub fn is_lock_held(&self) -> bool {
        matches!(self, BufferError::Open { source, .. } if is_lock_error(source))
    }
}

#[cfg(test)]
mod tests {
    use firmware_protocols::record::Protocol;
    use firmware_protocols::Record;

    use super::*;
    use crate::buffer::BufferOptions;

    fn record(device: &str, received_at_ms: i64) -> Record {
        Record::new(device, Protocol::Teltonika, received_at_ms)
    }

    fn options(dir: &std::path::Path) -> BufferOptions {
        BufferOptions {
            seq_floor: Some(1),
            max_records: 1000,
            when_full: WhenFull::Reject,
            ..BufferOptions::new(dir.join("db"))
        }
    }

    #[tokio::test]
    async fn peeking_reads_the_oldest_chunk_without_removing_it() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(options(dir.path())).unwrap();
        assert_eq!(buffer.peek_oldest().unwrap(), None);
        assert_eq!(
            buffer.limits(),
            BufferLimits {
                max_records: 1000,
                max_bytes: super::super::DEFAULT_MAX_BYTES,
                when_full: WhenFull::Reject,
            }
        );
        buffer
            .append(vec![record("a", 10), record("b", 11)])
            .await
            .unwrap();
        buffer.append(vec![record("c", 12)]).await.unwrap();
        for _ in 0..2 {
            match buffer.peek_oldest().unwrap() {
                Some(PeekedChunk::Chunk(chunk)) => {
                    assert_eq!(chunk.first_seq, 1);
                    assert_eq!(chunk.records[0].device_id, "a");
                    assert_eq!(chunk.records.len(), 2);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(buffer.stats().records, 3);
        buffer.ack_through(2).unwrap();
        match buffer.peek_oldest().unwrap() {
            Some(PeekedChunk::Chunk(chunk)) => assert_eq!(chunk.first_seq, 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(buffer.quarantine_len().unwrap(), 0);
    }

    #[tokio::test]
    async fn an_unreadable_oldest_chunk_is_reported_and_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(options(dir.path())).unwrap();
        buffer.append(vec![record("a", 10)]).await.unwrap();
        {
            let store = buffer.shared().store.get().unwrap();
            // A valid header over a payload that is not zstd.
            store
                .queue
                .insert(seq_key(1), &[1u8, 0, 0, 0, 1, 0xde, 0xad][..])
                .unwrap();
        }
        buffer.append(vec![record("b", 11)]).await.unwrap();
        match buffer.peek_oldest().unwrap() {
            Some(PeekedChunk::Unreadable {
                key_hex,
                first_seq,
                reason,
            }) => {
                assert_eq!(key_hex, "0000000000000001");
                assert_eq!(first_seq, Some(1));
                assert!(reason.contains("zstd"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Peeking on goes past it, to the readable chunk after.
        let peeked = buffer.peek_after(None, 10, 1 << 20).unwrap();
        assert_eq!(peeked.len(), 2);
        assert!(matches!(&peeked[1], PeekedChunk::Chunk(c) if c.first_seq == 2));
        let after = buffer.peek_after(Some(1), 10, 1 << 20).unwrap();
        assert!(matches!(&after[..], [PeekedChunk::Chunk(c)] if c.first_seq == 2));
        // Still there: peeking moved nothing.
        assert_eq!(buffer.stats().records, 2);
        assert_eq!(buffer.quarantine_len().unwrap(), 0);
        // The uplink's read quarantines it, and the tree count follows.
        assert!(buffer.read_after(None, 10, 1 << 20).is_err());
        assert_eq!(buffer.quarantine_len().unwrap(), 1);
    }

    #[test]
    fn a_held_lock_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path());
        let _held = Buffer::open(opts.clone()).unwrap();
        // The same process cannot take sled's lock twice either.
        let err = Buffer::open(opts).unwrap_err();
        assert!(err.is_lock_held(), "{err}");
        let other = BufferError::Closed {
            path: dir.path().into(),
        };
        assert!(!other.is_lock_held());
    }
}
