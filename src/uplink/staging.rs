//! Records read from the buffer and waiting to form a batch, and when a partial batch is due.
//!
//! Pure: the caller passes the clock. Staging belongs to one connection; a new connection
//! starts with empty staging and reads again from the oldest record in the buffer, passing
//! over those already acknowledged (the buffer removes whole chunks only, and a removal may
//! have failed: such records were delivered and are not staged again).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use firmware_protocols::Record;

#[derive(Debug)]
pub struct Staging {
    records: VecDeque<(u64, Record)>,
    /// First seq of the last chunk read from the buffer; the next read starts after it.
    read_cursor: Option<u64>,
    /// When the oldest staged record was staged: a partial batch is due `linger` later.
    oldest_at: Option<Instant>,
    batch_max_records: usize,
    linger: Duration,
    /// Records at or below this seq were acknowledged already: never staged.
    acknowledged_through: Option<u64>,
}

/// What the connection should do next with the staged records.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Publish a batch of up to `batch_max_records` now.
    Now,
    /// A partial batch is waiting for more records until this instant.
    At(Instant),
    /// Nothing staged.
    Idle,
}

impl Staging {
    pub fn new(
        batch_max_records: usize,
        linger: Duration,
        acknowledged_through: Option<u64>,
    ) -> Self {
        Staging {
            records: VecDeque::new(),
            read_cursor: None,
            oldest_at: None,
            batch_max_records: batch_max_records.max(1),
            linger,
            acknowledged_through,
        }
    }

    pub fn read_cursor(&self) -> Option<u64> {
        self.read_cursor
    }

    /// How many more records a read may bring in; staging holds at most one batch plus
    /// the remainder of the last chunk read, so its memory stays bounded.
    pub fn wants(&self) -> usize {
        self.batch_max_records.saturating_sub(self.records.len())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A chunk read from the buffer: consecutive seqs from `first_seq`.
    pub fn push_chunk(&mut self, first_seq: u64, records: Vec<Record>, now: Instant) {
        self.push_chunk_except(first_seq, records, |_| false, now);
    }

    /// A chunk read from the buffer, leaving out the records `published` says went out
    /// already (alarms published ahead of the backlog).
    pub fn push_chunk_except(
        &mut self,
        first_seq: u64,
        records: Vec<Record>,
        published: impl Fn(u64) -> bool,
        now: Instant,
    ) {
        self.read_cursor = Some(first_seq);
        let acked = self.acknowledged_through;
        let fresh = (first_seq..)
            .zip(records)
            .filter(|(seq, _)| acked.is_none_or(|a| *seq > a) && !published(*seq));
        self.stage(fresh, now);
    }

    /// Records with their seqs, not from one chunk (the alarms read ahead of the backlog);
    /// the read cursor stays.
    pub fn push_records(&mut self, records: Vec<(u64, Record)>, now: Instant) {
        let acked = self.acknowledged_through;
        self.stage(
            records
                .into_iter()
                .filter(|(seq, _)| acked.is_none_or(|a| *seq > a)),
            now,
        );
    }

    /// The seqs staged, oldest first.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.records.iter().map(|(seq, _)| *seq)
    }

    fn stage(&mut self, records: impl Iterator<Item = (u64, Record)>, now: Instant) {
        let before = self.records.len();
        self.records.extend(records);
        if self.records.len() > before {
            self.oldest_at.get_or_insert(now);
        }
    }

    pub fn due(&self, now: Instant, draining: bool) -> Due {
        match self.oldest_at {
            None => Due::Idle,
            Some(_) if self.records.len() >= self.batch_max_records || draining => Due::Now,
            Some(at) if now >= at + self.linger => Due::Now,
            Some(at) => Due::At(at + self.linger),
        }
    }

    /// When a partial batch is due (linger after its oldest record was staged), if any
    /// record is staged; may be past.
    pub fn partial_due_at(&self) -> Option<Instant> {
        self.oldest_at.map(|at| at + self.linger)
    }

    /// The records of the next batch, at most `max` of them (callers shrink `max` to keep a
    /// payload under the packet limit).
    pub fn batch(&mut self, max: usize) -> &[(u64, Record)] {
        let n = max.min(self.batch_max_records).min(self.records.len());
        &self.records.make_contiguous()[..n]
    }

    /// The first `n` records were handed to the connection.
    pub fn consume(&mut self, n: usize, now: Instant) {
        let n = n.min(self.records.len());
        self.records.drain(..n);
        self.oldest_at = if self.records.is_empty() {
            None
        } else {
            Some(now)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocols::Protocol;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|_| Record::new("1", Protocol::Teltonika, 0))
            .collect()
    }

    #[test]
    fn a_full_batch_is_due_at_once_and_a_partial_one_after_linger() {
        let t0 = Instant::now();
        let linger = Duration::from_millis(200);
        let mut s = Staging::new(10, linger, None);
        assert_eq!(s.due(t0, false), Due::Idle);
        s.push_chunk(1, records(4), t0);
        assert_eq!(s.due(t0, false), Due::At(t0 + linger));
        assert_eq!(s.due(t0 + linger, false), Due::Now);
        assert_eq!(
            s.due(t0, true),
            Due::Now,
            "draining sends partial batches at once"
        );
        s.push_chunk(5, records(6), t0);
        assert_eq!(s.due(t0, false), Due::Now);
        assert_eq!(s.wants(), 0);
        assert_eq!(s.read_cursor(), Some(5));
    }

    #[test]
    fn seqs_follow_chunks_and_consume_keeps_the_rest() {
        let t0 = Instant::now();
        let mut s = Staging::new(3, Duration::ZERO, None);
        s.push_chunk(7, records(2), t0);
        s.push_chunk(20, records(2), t0);
        let seqs: Vec<u64> = s.batch(10).iter().map(|r| r.0).collect();
        assert_eq!(seqs, [7, 8, 20]);
        s.consume(seqs.len(), t0);
        assert_eq!(s.batch(10).iter().map(|r| r.0).collect::<Vec<_>>(), [21]);
        s.consume(1, t0);
        assert_eq!(s.due(t0, false), Due::Idle);
    }

    #[test]
    fn records_published_ahead_are_left_out_and_loose_records_keep_the_cursor() {
        let t0 = Instant::now();
        let mut s = Staging::new(10, Duration::ZERO, Some(2));
        s.push_chunk_except(1, records(5), |seq| seq == 4, t0);
        assert_eq!(s.seqs().collect::<Vec<_>>(), [3, 5]);
        s.push_records(
            vec![(2, records(1).remove(0)), (9, records(1).remove(0))],
            t0,
        );
        assert_eq!(
            s.seqs().collect::<Vec<_>>(),
            [3, 5, 9],
            "2 was acknowledged"
        );
        assert_eq!(s.read_cursor(), Some(1));
    }

    #[test]
    fn acknowledged_records_are_not_staged_again() {
        let t0 = Instant::now();
        let mut s = Staging::new(10, Duration::ZERO, Some(8));
        s.push_chunk(5, records(2), t0);
        assert!(s.is_empty());
        assert_eq!(s.due(t0, false), Due::Idle);
        assert_eq!(s.read_cursor(), Some(5));
        s.push_chunk(7, records(4), t0);
        let seqs: Vec<u64> = s.batch(10).iter().map(|r| r.0).collect();
        assert_eq!(seqs, [9, 10], "the chunk straddling the acknowledged seq");
        assert_eq!(s.read_cursor(), Some(7));
    }
}
