//! The group-commit thread. Appenders encode their chunk, reserve room, and add it to the
//! open round of the [`Queue`]; this thread takes a whole round at a time (bounded), assigns
//! seqs, writes all chunks plus the next-seq counter in ONE `sled::Batch`, calls ONE `flush()`
//! (fsync), and then settles the round's one [`Outcome`], which wakes all its appenders at
//! once. Per append it only moves the encoded value into the batch (small ones are copied
//! into a shared grouped entry, `store::pack_round`): no per-record work happens here.
//!
//! What an append costs on top of its share of the round: one short lock to join the open
//! round (and a condvar signal only if this thread was asleep: at most once per round), no
//! allocation of its own (the round's outcome is shared, its appender holds a reference and
//! its offset), and its task's wake-up, which the round's single `notify_waiters` does for
//! every waiter in one pass. There is no channel and no per-append reply. Measured with
//! `cargo bench --bench buffer_append` (figures in the README's Benchmarks).
//!
//! Group commit under many concurrent appenders ([`Linger`]): when the last round held at
//! least [`LINGER_FROM`] appends, the next round waits (at most [`LINGER_MAX`]) until it holds
//! as many as the last, so rounds do not shrink to whatever arrived first. Measured on 200
//! Teltonika devices sending one record per packet: about 80 appends per round instead of 45,
//! about 10 % more records/s and less CPU per record (README, Benchmarks). A lone appender
//! (one JSON-lines connection, a test) never waits for it.
//!
//! Between rounds it also runs the disk reclaim (`reclaim.rs`) when an ack has emptied the
//! buffer: being the only writer, it is the one place where "nothing is being added" holds
//! without any further locking, and appends that arrive meanwhile simply wait in its queue.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use tokio::sync::Notify;

use super::alarms::{alarm_key, PENDING as ALARM_PENDING};
use super::limits::Amount;
use super::reclaim::Reclaimer;
use super::recovery;
use super::store::{pack_round, seq_key, NEXT_SEQ_KEY};
use super::{BufferError, Shared};

/// Most appends taken into one round.
pub(super) const MAX_ROUND_REQUESTS: usize = 4096;
/// Most encoded bytes taken into one round (a round always takes at least one append).
pub(super) const MAX_ROUND_BYTES: usize = 32 << 20;

/// Why a round's appends were not stored (the same for every append of the round).
#[derive(Debug, Clone)]
pub(super) enum RoundFailure {
    /// The commit thread stopped (or its database could not be reopened).
    Closed,
    SeqExhausted {
        next_seq: u64,
    },
    Sled {
        op: &'static str,
        source: sled::Error,
    },
    /// The database is failing (a full disk, EIO) and being reopened (`recovery.rs`).
    Failing {
        reason: String,
    },
}

impl RoundFailure {
    /// The error one appender of the round gets.
    pub fn to_error(&self, path: &Path) -> BufferError {
        let path = path.to_path_buf();
        match self {
            RoundFailure::Closed => BufferError::Closed { path },
            RoundFailure::SeqExhausted { next_seq } => BufferError::SeqExhausted {
                path,
                next_seq: *next_seq,
            },
            RoundFailure::Sled { op, source } => BufferError::Sled {
                path,
                op,
                source: source.clone(),
            },
            RoundFailure::Failing { reason } => BufferError::Failing {
                path,
                reason: reason.clone(),
            },
        }
    }
}

/// What every appender of one round waits on: set once, when the round is durable (the
/// round's first seq) or has failed, with one wake-up call for all of them.
#[derive(Default)]
pub(super) struct Outcome {
    result: OnceLock<Result<u64, RoundFailure>>,
    settled: Notify,
}

impl Outcome {
    /// Sets the result (the first one set wins) and wakes every waiter.
    fn settle(&self, result: Result<u64, RoundFailure>) {
        if self.result.set(result).is_ok() {
            self.settled.notify_waiters();
        }
    }

    /// Waits for the result.
    pub async fn wait(&self) -> &Result<u64, RoundFailure> {
        loop {
            // Registered before looking, so a settle between the look and the wait is seen.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result;
            }
            settled.await;
        }
    }
}

/// An appender's place in a round: the round's outcome and how many records of the round
/// come before its own (so its first seq is the round's first seq plus this).
pub(super) struct Ticket {
    pub outcome: Arc<Outcome>,
    pub offset: u64,
}

/// The appends of one commit round, gathered while the previous round is being flushed.
#[derive(Default)]
struct Round {
    /// Each append's chunk value (`[version][count]...`) and record count, in seq order.
    chunks: Vec<(Vec<u8>, u64)>,
    /// Offsets (from the round's first seq) of the records that carry an alarm: each gets
    /// its marker in the round's batch (`alarms.rs`).
    alarms: Vec<u64>,
    records: u64,
    bytes: usize,
    outcome: Arc<Outcome>,
    /// The duplicate window's log value for the round's records (`dedup.rs`).
    dedup: Vec<u8>,
}

impl Round {
    fn is_full(&self) -> bool {
        self.chunks.len() >= MAX_ROUND_REQUESTS || self.bytes >= MAX_ROUND_BYTES
    }

    fn amount(&self) -> Amount {
        Amount {
            records: self.records,
            bytes: self.bytes as u64,
        }
    }
}

impl Drop for Round {
    /// A round dropped unsettled (the commit thread stopped, or panicked in the middle of
    /// it) tells its appenders so; a settled one is left as it is.
    fn drop(&mut self) {
        self.outcome.settle(Err(RoundFailure::Closed));
    }
}

/// The appends waiting for the committer, and the one way to wake it.
///
/// Appenders add to the newest open round under one short lock and wake the committer only
/// when it sleeps (at most once per round); the committer takes a whole round at a time.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<QueueState>,
    work: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Rounds not yet taken, oldest first; appends go into the last one until it is full.
    rounds: VecDeque<Round>,
    /// An ack may have left the buffer empty: reclaim disk space if it did.
    reclaim: bool,
    /// A failure was seen outside the committer (a removal): it should look at the
    /// database's state (and reopen it, `recovery.rs`).
    poke: bool,
    /// The last handle is gone: commit what is queued, then stop.
    closing: bool,
    /// The committer has stopped: nothing is taken any more.
    stopped: bool,
    /// The committer sleeps on `work`, so whoever gives it work must wake it.
    idle: bool,
    /// While the committer lingers (see [`Linger`]): the appends the open round should
    /// hold before it is woken. 0 otherwise (set back when the linger ends).
    want: usize,
}

/// What the committer does next.
enum Work {
    Round(Round),
    Reclaim,
    /// Nothing to commit; only look at the database's state.
    Poke,
    Stop,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Nothing panics while holding it; the state is still consistent if something did.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one append's chunk to the open round. `None` when the committer has stopped (or
    /// the buffer is closing); the caller still holds the chunk's reservation then.
    /// `dedup`: the duplicate window's log value for the chunk's records (`dedup.rs`).
    /// `alarms`: the offsets of the chunk's alarm records.
    pub fn push(
        &self,
        value: Vec<u8>,
        records: u64,
        dedup: Vec<u8>,
        alarms: Vec<u64>,
    ) -> Option<Ticket> {
        let mut state = self.lock();
        if state.stopped || state.closing {
            return None;
        }
        if state.rounds.back().is_none_or(Round::is_full) {
            state.rounds.push_back(Round::default());
        }
        let round = state.rounds.back_mut()?;
        let ticket = Ticket {
            outcome: Arc::clone(&round.outcome),
            offset: round.records,
        };
        let base = round.records;
        round
            .alarms
            .extend(alarms.into_iter().map(|offset| base + offset));
        round.records += records;
        round.bytes += value.len();
        round.chunks.push((value, records));
        round.dedup.extend_from_slice(&dedup);
        let appends = round.chunks.len();
        let wake = state.idle && appends >= state.want;
        if wake {
            state.idle = false;
        }
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Some(ticket)
    }

    /// Asks the committer to reclaim disk space if the buffer is (still) empty when it gets
    /// to it. At most one request is pending.
    pub fn request_reclaim(&self) {
        let mut state = self.lock();
        if state.stopped || state.closing || state.reclaim {
            return;
        }
        state.reclaim = true;
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.work.notify_one();
        }
    }

    /// Wakes the committer to look at the database's state (a failure seen elsewhere).
    pub fn poke(&self) {
        let mut state = self.lock();
        if state.stopped || state.closing {
            return;
        }
        state.poke = true;
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.work.notify_one();
        }
    }

    /// No more appends: the committer commits what is queued and stops.
    pub fn close(&self) {
        self.lock().closing = true;
        self.work.notify_one();
    }

    /// Sleeps until there is something to do; then, when `linger` asks for it, a moment
    /// longer while the open round is smaller than it wants.
    fn wait_for_work(&self, linger: &Linger) {
        let mut state = self.lock();
        while state.rounds.is_empty() && !state.reclaim && !state.poke && !state.closing {
            state.idle = true;
            state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(want) = linger.want() {
            let deadline = std::time::Instant::now() + LINGER_MAX;
            while !state.closing
                && state.rounds.len() == 1
                && state.rounds.front().is_some_and(|r| r.chunks.len() < want)
            {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break;
                }
                state.idle = true;
                state.want = want;
                state = self
                    .work
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        state.idle = false;
        state.want = 0;
    }

    /// The next piece of work: the oldest round first. A pending reclaim is dropped when a
    /// round is taken: that round makes the buffer non-empty, and the ack that empties it
    /// again asks anew.
    fn take(&self) -> Work {
        let mut state = self.lock();
        if let Some(round) = state.rounds.pop_front() {
            state.reclaim = false;
            Work::Round(round)
        } else if std::mem::take(&mut state.reclaim) {
            Work::Reclaim
        } else if std::mem::take(&mut state.poke) {
            Work::Poke
        } else {
            Work::Stop
        }
    }

    /// While the database is failing: refuse every queued round (their room is released)
    /// and drop a pending reclaim request. `false` once the buffer is closing.
    pub(super) fn refuse_queued(&self, shared: &Shared, reason: &str) -> bool {
        let mut state = self.lock();
        state.reclaim = false;
        let closing = state.closing;
        let rounds: Vec<Round> = state.rounds.drain(..).collect();
        drop(state);
        for round in rounds {
            shared.space.release_reserved(round.amount());
            round.outcome.settle(Err(RoundFailure::Failing {
                reason: reason.to_string(),
            }));
        }
        !closing
    }

    /// The committer is gone: refuse new appends and fail the queued ones.
    fn stop(&self) -> Vec<Round> {
        let mut state = self.lock();
        state.stopped = true;
        state.rounds.drain(..).collect()
    }
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

/// Starts the committer. It exits once the queue is closed and empty.
pub(super) fn spawn(
    shared: Arc<Shared>,
    next_seq: u64,
    reclaimer: Reclaimer,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("buffer-commit".to_string())
        .spawn(move || run(&shared, next_seq, reclaimer))
}

/// Stops the queue when the committer exits, however it exits (a sled panic included), so
/// no append waits for a round that will never come.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        for round in shared.queue.stop() {
            shared.space.release_reserved(round.amount());
            // Dropping the round tells its appenders.
        }
        shared.space.committed.notify_waiters();
    }
}

/// Longest a round waits for more appends once the committer has work (see [`Linger`]).
const LINGER_MAX: std::time::Duration = std::time::Duration::from_micros(300);
/// Appends in the last round from which the committer lingers.
const LINGER_FROM: usize = 16;

/// Group commit under many concurrent appenders. A round's cost is mostly fixed (one batch,
/// one flush, the durable mark, sled's IO threads), so when the last round showed many
/// appenders at once, the next one waits (at most [`LINGER_MAX`]) until it holds as many
/// appends as the last did, rather than flushing the first few that arrive.
#[derive(Default)]
struct Linger {
    last_appends: usize,
}

impl Linger {
    fn want(&self) -> Option<usize> {
        (self.last_appends >= LINGER_FROM).then_some(self.last_appends)
    }
}

fn run(shared: &Shared, mut next_seq: u64, mut reclaimer: Reclaimer) {
    let _stop = StopOnExit(shared);
    let opts = reclaimer.options().clone();
    let mut linger = Linger::default();
    loop {
        shared.queue.wait_for_work(&linger);
        shared.set_busy(true);
        // Tests close this gate to make every append of a burst land in one round.
        #[cfg(test)]
        shared.commit_gate.wait_open();
        match shared.queue.take() {
            Work::Round(round) => {
                linger.last_appends = round.chunks.len();
                commit_round(shared, &mut next_seq, round)
            }
            Work::Reclaim => {
                let alive = reclaimer.maybe_reclaim(shared, next_seq);
                if !alive {
                    shared.set_busy(false);
                    break;
                }
            }
            Work::Poke => {}
            Work::Stop => {
                shared.set_busy(false);
                break;
            }
        }
        shared.set_busy(false);
        // Whatever the outcome, room held by this round is now stored or released (and
        // after a reclaim the store is back): wake the drop-oldest appenders waiting for it.
        shared.space.committed.notify_waiters();
        if !recovery::recover_if_failing(shared, &opts, &mut next_seq) {
            break;
        }
    }
    tracing::debug!(path = %shared.path.display(), "buffer commit thread stopped");
}

/// Commits `round` and settles its outcome.
fn commit_round(shared: &Shared, next_seq: &mut u64, mut round: Round) {
    let amount = round.amount();
    // The commit thread runs every reclaim itself, so this never waits; `None` only after a
    // reclaim that could not reopen any database, and then the thread has stopped.
    let Some(store) = shared.store.wait() else {
        shared.space.release_reserved(amount);
        round.outcome.settle(Err(RoundFailure::Closed));
        return;
    };
    let first_seq = *next_seq;
    // Seq u64::MAX would collide with the meta prefix, and the counter must never wrap.
    let end = match first_seq.checked_add(amount.records) {
        Some(end) if end < u64::MAX => end,
        _ => {
            shared.space.release_reserved(amount);
            round.outcome.settle(Err(RoundFailure::SeqExhausted {
                next_seq: first_seq,
            }));
            return;
        }
    };

    // Small appends of the round share entries (`store::pack_round`); the reservation
    // covered their separate values, and the grouped ones are shorter.
    let entries = pack_round(std::mem::take(&mut round.chunks));
    let stored_bytes: usize = entries.iter().map(|e| e.value.len()).sum();
    let keys: Vec<u64> = entries.iter().map(|e| first_seq + e.offset).collect();
    let mut batch = sled::Batch::default();
    for (entry, seq) in entries.into_iter().zip(&keys) {
        batch.insert(&seq_key(*seq), entry.value);
    }
    for offset in &round.alarms {
        batch.insert(&alarm_key(first_seq + offset), &[ALARM_PENDING]);
    }
    batch.insert(NEXT_SEQ_KEY, &end.to_be_bytes());
    // The duplicate window's part of the round, in the same batch (`dedup.rs`).
    if let Some(window) = &shared.dedup {
        lock_window(window).log(first_seq, &round.dedup, &mut batch);
    }
    // The durable mark's lease covers these seqs before any of them can reach a device.
    shared.mark.ensure_lease(shared, end);
    // Whatever happens below, these seqs are spent: a seq is never handed out twice.
    *next_seq = end;
    shared.next_seq.store(end, Ordering::Release);

    if let Err(source) = store.queue.apply_batch(batch) {
        tracing::error!(
            path = %store.path.display(),
            first_seq, records = amount.records, error = %source,
            "buffer: writing a commit batch failed; its appends are refused"
        );
        shared.space.release_reserved(amount);
        recovery::round_failed(shared, first_seq, end, [], source.to_string());
        round.outcome.settle(Err(RoundFailure::Sled {
            op: "writing a commit batch",
            source,
        }));
        return;
    }
    shared.space.commit_reserved(amount);
    shared.space.release_stored(Amount {
        records: 0,
        bytes: amount.bytes.saturating_sub(stored_bytes as u64),
    });

    // The durable mark is written beside sled's flush, not after it (`durable_mark.rs`).
    match shared
        .mark
        .beside_flush(shared, first_seq, end, || store.flush())
    {
        Ok(_) => {
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            // Everything below `end` is durable; readers and removers may look at it now.
            shared.durable_end.store(end, Ordering::Release);
            shared.durable_tx.send_replace(end - 1);
            if let Some(window) = &shared.dedup {
                lock_window(window).remember(&round.dedup);
            }
            round.outcome.settle(Ok(first_seq));
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
            for seq in &keys {
                removal.remove(&seq_key(*seq));
            }
            removal.remove(&super::dedup::round_key(first_seq));
            match store.queue.apply_batch(removal) {
                Ok(()) => shared.space.release_stored(Amount {
                    records: amount.records,
                    bytes: stored_bytes as u64,
                }),
                Err(e) => tracing::error!(
                    path = %store.path.display(),
                    first_seq, error = %e,
                    "buffer: could not remove the chunks of a failed flush now; the reopen \
                     after the failure removes them (`recovery.rs`)"
                ),
            }
            recovery::round_failed(shared, first_seq, end, keys, source.to_string());
            round.outcome.settle(Err(RoundFailure::Sled {
                op: "flushing a commit batch",
                source,
            }));
        }
    }
}

fn lock_window(window: &Mutex<super::dedup::Window>) -> MutexGuard<'_, super::dedup::Window> {
    window.lock().unwrap_or_else(|p| p.into_inner())
}
