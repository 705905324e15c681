//! The durable side of commands: one sled tree, `commands`, in the buffer's database (opened,
//! kept through reopens and copied through disk reclaims by the buffer;
//! [`Buffer::with_commands`]). Every change is one `sled::Batch`; callers flush
//! ([`Buffer::flush_commands`]) before they act on it (an MQTT ack, a write to a device).
//!
//! ```text
//! tree "commands"
//! ├── "n"                 → u64 BE: the next seq (commands and results share it)
//! ├── "q" + seq (u64 BE)  → [0x01][JSON StoredCommand]   a queued or sent command
//! ├── "i" + command id    → seq (u64 BE)                 ids accepted, for de-duplication
//! ├── "o" + seq (u64 BE)  → command id                   the same ids by age, to forget the
//! │                                                      oldest beyond commands.remembered_ids
//! └── "r" + seq (u64 BE)  → result JSON                  the results outbox, oldest first;
//!                                                        removed only after its PUBACK
//! ```
//!
//! A command whose stored value does not parse is dropped at open with an error log naming
//! its key (there is nothing to send; its id stays remembered).

use serde::{Deserialize, Serialize};

use super::message::{Body, CommandResult};
use super::state::Entry;
use crate::buffer::{Buffer, BufferError};

const NEXT_SEQ: &[u8] = b"n";
const QUEUED: u8 = b'q';
const IDS: u8 = b'i';
const ID_AGES: u8 = b'o';
const RESULTS: u8 = b'r';
const FORMAT: u8 = 0x01;

#[derive(Debug, Serialize, Deserialize)]
struct StoredCommand {
    id: String,
    device_id: String,
    body: Body,
    expires_at_ms: i64,
    sent_at_ms: Option<i64>,
}

fn key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn id_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 1);
    k.push(IDS);
    k.extend_from_slice(id.as_bytes());
    k
}

fn seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn encode(e: &Entry) -> Vec<u8> {
    let stored = StoredCommand {
        id: e.id.clone(),
        device_id: e.device_id.clone(),
        body: e.body.clone(),
        expires_at_ms: e.expires_at_ms,
        sent_at_ms: e.sent_at_ms,
    };
    let mut v = vec![FORMAT];
    v.extend(serde_json::to_vec(&stored).unwrap_or_default());
    v
}

fn decode(seq: u64, value: &[u8]) -> Result<Entry, String> {
    let (format, json) = value.split_first().ok_or("empty value")?;
    if *format != FORMAT {
        return Err(format!("unknown format byte {format:#04x}"));
    }
    let s: StoredCommand = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok(Entry {
        seq,
        id: s.id,
        device_id: s.device_id,
        body: s.body,
        expires_at_ms: s.expires_at_ms,
        sent_at_ms: s.sent_at_ms,
    })
}

/// Commands queued and results waiting in the outbox (for `buffer stats`).
pub fn counts(buffer: &Buffer) -> Result<(u64, u64), BufferError> {
    buffer.with_commands(|tree| {
        Ok((
            tree.scan_prefix([QUEUED]).count() as u64,
            tree.scan_prefix([RESULTS]).count() as u64,
        ))
    })
}

/// What the tree held at open.
#[derive(Debug, Default)]
pub struct Loaded {
    pub entries: Vec<Entry>,
    pub next_seq: u64,
    pub remembered_ids: u64,
}

/// The commands tree, through the buffer.
#[derive(Clone, Debug)]
pub struct CommandStore {
    buffer: Buffer,
}

/// One change, applied as one batch.
#[derive(Debug, Default)]
pub struct Change {
    batch: sled::Batch,
    next_seq: Option<u64>,
    /// Ids newly remembered (to bound them).
    new_ids: u64,
    /// Writes in `batch` (sled's batch does not tell).
    batch_len: usize,
}

impl Change {
    /// Queues `e` and remembers its id.
    pub fn queue(&mut self, e: &Entry) {
        self.batch_len += 3;
        self.batch.insert(&key(QUEUED, e.seq), encode(e));
        self.batch.insert(id_key(&e.id), &e.seq.to_be_bytes());
        self.batch.insert(&key(ID_AGES, e.seq), e.id.as_bytes());
        self.new_ids += 1;
    }

    /// Rewrites `e` (sent).
    pub fn update(&mut self, e: &Entry) {
        self.batch_len += 1;
        self.batch.insert(&key(QUEUED, e.seq), encode(e));
    }

    /// `e` is settled: no longer queued.
    pub fn settle(&mut self, e: &Entry) {
        self.batch_len += 1;
        self.batch.remove(&key(QUEUED, e.seq));
    }

    /// A result for the outbox, under `seq` (from [`CommandStore`]'s counter).
    pub fn result(&mut self, seq: u64, r: &CommandResult) {
        self.batch_len += 1;
        self.batch.insert(&key(RESULTS, seq), r.to_json());
    }

    pub fn next_seq(&mut self, next: u64) {
        self.next_seq = Some(next);
    }

    pub fn new_ids(&self) -> u64 {
        self.new_ids
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.batch_len == 0 && self.next_seq.is_none()
    }
}

impl CommandStore {
    pub fn new(buffer: Buffer) -> CommandStore {
        CommandStore { buffer }
    }

    /// Reads the queued commands (seq order), the counter, and how many ids are remembered.
    pub fn load(&self) -> Result<Loaded, BufferError> {
        self.buffer.with_commands(|tree| {
            let mut loaded = Loaded {
                next_seq: tree
                    .get(NEXT_SEQ)?
                    .and_then(|v| seq_of(&v))
                    .unwrap_or(1),
                ..Loaded::default()
            };
            for item in tree.scan_prefix([QUEUED]) {
                let (k, v) = item?;
                let Some(seq) = k.get(1..).and_then(seq_of) else {
                    tracing::error!(key = %hex::encode(&k), "commands: a queued command with a bad key; dropped");
                    tree.remove(&k)?;
                    continue;
                };
                match decode(seq, &v) {
                    Ok(e) => loaded.entries.push(e),
                    Err(why) => {
                        tracing::error!(seq, reason = %why, "commands: a stored command does not read; dropped");
                        tree.remove(&k)?;
                    }
                }
            }
            loaded.remembered_ids = tree.scan_prefix([ID_AGES]).count() as u64;
            Ok(loaded)
        })
    }

    /// Whether `id` was accepted before (and is still remembered).
    pub fn knows_id(&self, id: &str) -> Result<bool, BufferError> {
        self.buffer
            .with_commands(|tree| tree.contains_key(id_key(id)))
    }

    /// Applies `change` as one batch (durable after [`CommandStore::flush`]).
    pub fn apply(&self, mut change: Change) -> Result<(), BufferError> {
        if let Some(next) = change.next_seq {
            change.batch.insert(NEXT_SEQ, &next.to_be_bytes());
        }
        self.buffer
            .with_commands(|tree| tree.apply_batch(change.batch))
    }

    pub async fn flush(&self) -> Result<(), BufferError> {
        self.buffer.flush_commands().await
    }

    /// Forgets the `n` oldest remembered ids.
    pub fn forget_oldest_ids(&self, n: u64) -> Result<u64, BufferError> {
        self.buffer.with_commands(|tree| {
            let mut batch = sled::Batch::default();
            let mut forgotten = 0;
            for item in tree.scan_prefix([ID_AGES]).take(n as usize) {
                let (k, id) = item?;
                batch.remove(&k);
                let mut ik = vec![IDS];
                ik.extend_from_slice(&id);
                batch.remove(ik);
                forgotten += 1;
            }
            tree.apply_batch(batch)?;
            Ok(forgotten)
        })
    }

    /// Up to `max` results of the outbox after `after` (a key, or the start), oldest first.
    pub fn results_after(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, BufferError> {
        self.buffer.with_commands(|tree| {
            let start = key(RESULTS, after.map_or(0, |s| s.saturating_add(1)));
            let end = key(RESULTS, u64::MAX);
            let mut out = Vec::new();
            for item in tree.range(start..=end).take(max) {
                let (k, v) = item?;
                if let Some(seq) = k.get(1..).and_then(seq_of) {
                    out.push((seq, v.to_vec()));
                }
            }
            Ok(out)
        })
    }

    /// Removes a published result (after its PUBACK).
    pub fn remove_result(&self, seq: u64) -> Result<(), BufferError> {
        self.buffer
            .with_commands(|tree| tree.remove(key(RESULTS, seq)).map(|_| ()))
    }
}
