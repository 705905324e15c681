//! The group-commit thread. Appenders encode their chunk, reserve room, and send a
//! [`Request`]; this thread takes everything queued (bounded per round), assigns seqs, writes
//! all chunks plus the next-seq counter in ONE `sled::Batch`, calls ONE `flush()` (fsync), and
//! then answers every caller of the round. Per request it only moves the encoded value into
//! the batch: no per-record work happens here.
//!
//! Between rounds it also runs the disk reclaim (`reclaim.rs`) when an ack has emptied the
//! buffer: being the only writer, it is the one place where "nothing is being added" holds
//! without any further locking, and appends that arrive meanwhile simply wait in its queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::limits::Amount;
use super::reclaim::Reclaimer;
use super::recovery;
use super::store::{seq_key, NEXT_SEQ_KEY};
use super::{BufferError, Shared};

/// Most requests taken into one round.
pub(super) const MAX_ROUND_REQUESTS: usize = 4096;
/// Most encoded bytes taken into one round (a round always takes at least one request).
pub(super) const MAX_ROUND_BYTES: usize = 32 << 20;

/// The seqs a stored chunk got: first and last, inclusive.
pub(super) type Reply = Result<(u64, u64), BufferError>;

/// What the commit thread is asked to do.
pub(super) enum Msg {
    Append(Request),
    /// An ack may have left the buffer empty: reclaim disk space if it did.
    Reclaim,
}

/// One append, already encoded and admitted (its room is reserved).
pub(super) struct Request {
    /// The chunk value, `[version][count][bincode]`.
    pub value: Vec<u8>,
    /// How many records it holds (≥ 1).
    pub records: u64,
    pub reply: oneshot::Sender<Reply>,
}

/// A gate the committer waits at (after taking a round's first request, before draining the
/// rest), so a test can queue a burst and release it as one round.
#[cfg(test)]
#[derive(Default)]
pub(super) struct TestGate {
    closed: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

#[cfg(test)]
impl TestGate {
    pub fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = closed;
        self.opened.notify_all();
    }

    fn wait_open(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        while *closed {
            closed = self.opened.wait(closed).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Starts the committer. It exits when every sender is dropped and the queue is empty.
pub(super) fn spawn(
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Msg>,
    next_seq: u64,
    reclaimer: Reclaimer,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("buffer-commit".to_string())
        .spawn(move || run(&shared, rx, next_seq, reclaimer))
}

fn run(
    shared: &Shared,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    mut next_seq: u64,
    mut reclaimer: Reclaimer,
) {
    let mut round: Vec<Request> = Vec::new();
    let opts = reclaimer.options().clone();
    while let Some(msg) = rx.blocking_recv() {
        shared.set_busy(true);
        let first = match msg {
            Msg::Append(first) => first,
            Msg::Reclaim => {
                shared.reclaim_hint.store(false, Ordering::Release);
                let alive = reclaimer.maybe_reclaim(shared, next_seq);
                shared.set_busy(false);
                // Drop-oldest appenders that found nothing to drop while the store was
                // swapped look again.
                shared.space.committed.notify_waiters();
                if !alive || !recovery::recover_if_failing(shared, &opts, &mut next_seq, &mut rx) {
                    break;
                }
                continue;
            }
        };
        // Tests close this gate to make every append of a burst land in one round.
        #[cfg(test)]
        shared.commit_gate.wait_open();
        let mut bytes = first.value.len();
        round.push(first);
        while round.len() < MAX_ROUND_REQUESTS && bytes < MAX_ROUND_BYTES {
            match rx.try_recv() {
                Ok(Msg::Append(req)) => {
                    bytes += req.value.len();
                    round.push(req);
                }
                // This round makes the buffer non-empty; the ack that empties it again sends
                // a new hint.
                Ok(Msg::Reclaim) => shared.reclaim_hint.store(false, Ordering::Release),
                Err(_) => break,
            }
        }
        commit_round(shared, &mut next_seq, &mut round);
        shared.set_busy(false);
        // Whatever the outcome, room held by this round is now stored or released: wake the
        // drop-oldest appenders that were waiting for it.
        shared.space.committed.notify_waiters();
        if !recovery::recover_if_failing(shared, &opts, &mut next_seq, &mut rx) {
            break;
        }
    }
    tracing::debug!(path = %shared.path.display(), "buffer commit thread stopped");
}

/// Commits `round` (leaving it empty) and answers its callers.
fn commit_round(shared: &Shared, next_seq: &mut u64, round: &mut Vec<Request>) {
    let amount = round.iter().fold(Amount::default(), |acc, r| Amount {
        records: acc.records + r.records,
        bytes: acc.bytes + r.value.len() as u64,
    });
    // The commit thread runs every reclaim itself, so this never waits; `None` only after a
    // reclaim that could not reopen any database, and then the thread has stopped.
    let Some(store) = shared.store.wait() else {
        shared.space.release_reserved(amount);
        for req in round.drain(..) {
            let _ = req.reply.send(Err(BufferError::Closed {
                path: shared.path.clone(),
            }));
        }
        return;
    };
    let first_seq = *next_seq;
    // Seq u64::MAX would collide with the meta prefix, and the counter must never wrap.
    let end = match first_seq.checked_add(amount.records) {
        Some(end) if end < u64::MAX => end,
        _ => {
            shared.space.release_reserved(amount);
            for req in round.drain(..) {
                let _ = req.reply.send(Err(BufferError::SeqExhausted {
                    path: store.path.clone(),
                    next_seq: first_seq,
                }));
            }
            return;
        }
    };

    let mut batch = sled::Batch::default();
    let mut replies = Vec::with_capacity(round.len());
    let mut keys = Vec::with_capacity(round.len());
    let mut seq = first_seq;
    for req in round.drain(..) {
        let key = seq_key(seq);
        batch.insert(&key, req.value);
        keys.push(key);
        replies.push((req.reply, seq, seq + req.records - 1));
        seq += req.records;
    }
    batch.insert(NEXT_SEQ_KEY, &end.to_be_bytes());
    // The durable mark's lease covers these seqs before any of them can reach a device.
    shared.mark.ensure_lease(shared, end);
    // Whatever happens below, these seqs are spent: a seq is never handed out twice.
    *next_seq = end;
    shared.next_seq.store(end, Ordering::Release);

    let fail = |replies: Vec<(oneshot::Sender<Reply>, u64, u64)>, op, source: sled::Error| {
        for (reply, _, _) in replies {
            let _ = reply.send(Err(BufferError::Sled {
                path: store.path.clone(),
                op,
                source: source.clone(),
            }));
        }
    };

    if let Err(source) = store.queue.apply_batch(batch) {
        tracing::error!(
            path = %store.path.display(),
            first_seq, records = amount.records, error = %source,
            "buffer: writing a commit batch failed; its appends are refused"
        );
        shared.space.release_reserved(amount);
        recovery::round_failed(shared, first_seq, end, [], source.to_string());
        fail(replies, "writing a commit batch", source);
        return;
    }
    shared.space.commit_reserved(amount);

    // The durable mark is written beside sled's flush, not after it (`durable_mark.rs`).
    match shared
        .mark
        .beside_flush(shared, first_seq, end, || store.db.flush())
    {
        Ok(_) => {
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            // Everything below `end` is durable; readers and removers may look at it now.
            shared.durable_end.store(end, Ordering::Release);
            shared.durable_tx.send_replace(end - 1);
            for (reply, first, last) in replies {
                let _ = reply.send(Ok((first, last)));
            }
        }
        Err(source) => {
            tracing::error!(
                path = %store.path.display(),
                first_seq, records = amount.records, error = %source,
                "buffer: flush failed; the round's appends are refused and its chunks removed"
            );
            // Not durable, so not acknowledged: take the chunks out again so they are never
            // published under seqs the devices were not told about. Their seqs stay spent.
            let mut removal = sled::Batch::default();
            for key in &keys {
                removal.remove(key);
            }
            match store.queue.apply_batch(removal) {
                Ok(()) => shared.space.release_stored(amount),
                Err(e) => tracing::error!(
                    path = %store.path.display(),
                    first_seq, error = %e,
                    "buffer: could not remove the chunks of a failed flush; they may be \
                     published later as duplicates of the devices' resends"
                ),
            }
            let applied = replies.iter().map(|(_, first, _)| *first);
            recovery::round_failed(shared, first_seq, end, applied, source.to_string());
            fail(replies, "flushing a commit batch", source);
        }
    }
}
