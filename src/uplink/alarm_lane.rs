//! Alarms first: the records that carry an alarm (per their protocol's registry entry) are
//! read from the buffer's alarm markers and published in their own batches ahead of the
//! backlog, on the same topic, with the same seqs. Pure, one per connection.
//!
//! ```text
//!  buffer alarm markers ──ReadAlarms──▶ lane staging ──▶ batch ──▶ window (Carries::Alarms)
//!                                        │ claimed: read here, not yet acknowledged
//!  backlog read (read_after) ──▶ staging, leaving out claimed / published-ahead seqs
//!  alarm PUBACK ──▶ Publisher: acked set + Action::AlarmsPublished (marker → published)
//! ```
//!
//! Who publishes an alarm record, exactly once on a healthy connection:
//! - the lane takes only seqs the backlog has not read yet on this connection (above its
//!   read high-water mark), not acknowledged already, and not claimed by itself;
//! - the backlog leaves out seqs the lane claimed (read, staged or in flight), seqs the
//!   publisher knows were acknowledged as alarms, and seqs the buffer says were published
//!   ahead (`StoredChunk::published_ahead`, which survives restarts);
//! - a record the lane passes over (NGP cannot carry it) is released back to the backlog,
//!   which passes it over too and lets it leave the buffer the usual way.
//!
//! Removal is unchanged: an alarm's PUBACK removes nothing; the record leaves with its
//! chunk after the backlog's batch around it is acknowledged.
//!
//! Batches only: with NGP output the lane never reads. Navixy discards a message older than
//! the last one it accepted from a device, so an alarm sent ahead would make it drop that
//! device's whole backlog.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use firmware_protocols::Record;

use super::outgoing::{Carried, Message, Outgoing};
use super::payload::PayloadError;
use super::staging::Staging;

pub struct AlarmLane {
    staging: Staging,
    /// The highest alarm seq read on this connection.
    read_after: Option<u64>,
    /// The buffer may hold alarm markers not read yet.
    may_have_more: bool,
    /// A batch built and waiting for the rate limit or room in the window, with its seqs.
    next: Option<(Message, Vec<u64>)>,
    /// Read by the lane and not yet acknowledged on this connection.
    claimed: BTreeSet<u64>,
    batch_max_records: usize,
    enabled: bool,
}

impl AlarmLane {
    /// `enabled`: false for NGP output (see the module doc).
    pub fn new(batch_max_records: usize, acknowledged_through: Option<u64>, enabled: bool) -> Self {
        AlarmLane {
            // Alarms never linger.
            staging: Staging::new(batch_max_records, Duration::ZERO, acknowledged_through),
            read_after: None,
            may_have_more: enabled,
            next: None,
            claimed: BTreeSet::new(),
            batch_max_records: batch_max_records.max(1),
            enabled,
        }
    }

    /// The buffer committed more records: there may be new alarms.
    pub fn appended(&mut self) {
        self.may_have_more = self.enabled;
    }

    /// What to read next, if the lane has nothing to send: markers after the given seq,
    /// at most this many. `backlog_read_through` is the backlog's high-water mark: what it
    /// has read, it publishes itself.
    pub fn wants_read(&self, backlog_read_through: Option<u64>) -> Option<(Option<u64>, usize)> {
        (self.may_have_more && self.next.is_none() && self.staging.is_empty()).then(|| {
            (
                self.read_after.max(backlog_read_through),
                self.batch_max_records,
            )
        })
    }

    /// Whether a new append may give the lane work (it has nothing staged or waiting).
    pub fn listens(&self) -> bool {
        self.enabled && self.is_idle()
    }

    /// The answer to a read: alarm records in seq order. `taken` says which seqs are not
    /// the lane's to publish (read by the backlog, or acknowledged already).
    pub fn handle_read(
        &mut self,
        records: Vec<(u64, Record)>,
        taken: impl Fn(u64) -> bool,
        now: Instant,
    ) {
        self.may_have_more = !records.is_empty();
        self.read_after = self.read_after.max(records.last().map(|(seq, _)| *seq));
        let claimed = &mut self.claimed;
        let mine: Vec<(u64, Record)> = records
            .into_iter()
            .filter(|(seq, _)| !taken(*seq) && claimed.insert(*seq))
            .collect();
        self.staging.push_records(mine, now);
    }

    /// Whether the lane has read `seq` and not yet had it acknowledged.
    pub fn claims(&self, seq: u64) -> bool {
        self.claimed.contains(&seq)
    }

    /// Builds the next alarm batch from what is staged, if none is waiting.
    pub fn build(&mut self, outgoing: &mut Outgoing, now: Instant) -> Result<(), PayloadError> {
        if self.next.is_some() || self.staging.is_empty() {
            return Ok(());
        }
        let staged: Vec<u64> = self.staging.seqs().collect();
        let before = self.staging.len();
        let encoded = outgoing.next(&mut self.staging, now)?;
        let consumed = &staged[..before - self.staging.len()];
        let carried = encoded.message.as_ref().and_then(|m| match m.carries {
            Carried::Records {
                first_seq,
                last_seq,
                ..
            } => Some(first_seq..=last_seq),
            Carried::Status => None,
        });
        let (sent, passed_over): (Vec<u64>, Vec<u64>) = consumed
            .iter()
            .partition(|seq| carried.as_ref().is_some_and(|r| r.contains(seq)));
        // Not carried (NGP passed it over): the backlog passes it over in its turn.
        for seq in passed_over {
            self.claimed.remove(&seq);
        }
        self.next = encoded.message.map(|m| (m, sent));
        Ok(())
    }

    /// The batch waiting to be published.
    pub fn next_message(&self) -> Option<&Message> {
        self.next.as_ref().map(|(m, _)| m)
    }

    pub fn take_next(&mut self) -> Option<(Message, Vec<u64>)> {
        self.next.take()
    }

    /// These alarms were acknowledged: the publisher remembers them from now on.
    pub fn acknowledged(&mut self, seqs: &[u64]) {
        for seq in seqs {
            self.claimed.remove(seq);
        }
    }

    /// Nothing staged or waiting (reads aside: what the lane has not read, the backlog
    /// publishes anyway).
    pub fn is_idle(&self) -> bool {
        self.next.is_none() && self.staging.is_empty()
    }

    /// Shutdown's goodbye: nothing more goes out.
    pub fn clear_next(&mut self) {
        self.next = None;
    }
}
