//! The outstanding batches of one MQTT connection, as a pure state machine.
//!
//! ```text
//!  sent ──▶ [ batch 7: seqs 601..=700, pkid ? ]   rumqttc's publish() gives no packet id;
//!           [ batch 8: seqs 701..=800, pkid ? ]   it is learnt from Outgoing::Publish(pkid),
//!           [ batch 9: seqs 801..=900, pkid ? ]   which arrives in publish order.
//!                 │
//!  PubAck(pkid) marks its batch acked; the acked prefix of the window is released, and
//!  the buffer removes every record up to the prefix's last seq.
//! ```
//!
//! Publishes that carry no records (the retained status message) go through the same
//! window, because they too produce `Outgoing::Publish(pkid)` and `PubAck(pkid)` events in
//! publish order: [`Window::sent_without_records`] queues such an entry, it learns its pkid
//! and is acked like a batch, and the release skips it (it frees no records).
//!
//! The window lives and dies with one connection: on any error the whole window is dropped
//! and the next connection resends from the oldest unacked record in the buffer. rumqttc's own
//! retransmission is therefore never relied on (it silently drops QoS 1 publishes when the
//! broker answers `session_present = false`).

use std::collections::VecDeque;
use std::time::Instant;

/// What an outstanding publish carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// Records `first_seq..=last_seq`: its PUBACK lets the buffer remove them.
    Records,
    /// No records (a status message): tracked only so packet ids stay matched.
    Nothing,
    /// Alarm records published ahead of the backlog (`alarm_seqs`): their PUBACK removes
    /// nothing (the backlog's own PUBACK does) but is reported at once
    /// ([`Window::take_acked_alarms`]), so the backlog never publishes them again.
    Alarms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub carries: Carries,
    /// For [`Carries::Nothing`], the seqs are meaningless (0).
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: usize,
    pub payload_bytes: usize,
    pub pkid: Option<u16>,
    pub acked: bool,
    pub sent_at: Instant,
    /// For [`Carries::Alarms`], the seqs it carries (not a range: alarms are sparse).
    pub alarm_seqs: Vec<u64>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The broker acknowledged a packet id this connection has no batch for.
    #[error("PUBACK for unknown packet id {0}")]
    UnknownPubAck(u16),
    /// rumqttc reported an outgoing publish this connection did not queue.
    #[error("unexpected outgoing publish {0}")]
    UnexpectedPublish(u16),
}

/// Batches released by PUBACKs, in seq order.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    pub last_seq: u64,
    pub batches: Vec<InFlight>,
}

#[derive(Debug)]
pub struct Window {
    capacity: usize,
    batches: VecDeque<InFlight>,
    /// Seqs of alarm batches acknowledged since the last [`Window::take_acked_alarms`].
    acked_alarms: Vec<u64>,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Window {
            capacity: capacity.max(1),
            batches: VecDeque::with_capacity(capacity.max(1)),
            acked_alarms: Vec::new(),
        }
    }

    pub fn has_room(&self) -> bool {
        self.batches.len() < self.capacity
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The highest seq handed to the connection, if any batch is outstanding.
    pub fn last_sent_seq(&self) -> Option<u64> {
        self.batches
            .iter()
            .rev()
            .find(|b| b.carries == Carries::Records)
            .map(|b| b.last_seq)
    }

    /// Outstanding publishes that carry records (alarm batches included).
    pub fn batches_outstanding(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.carries != Carries::Nothing)
            .count()
    }

    /// A batch was queued for publishing.
    pub fn sent(
        &mut self,
        first_seq: u64,
        last_seq: u64,
        records: usize,
        payload_bytes: usize,
        now: Instant,
    ) {
        self.batches.push_back(InFlight {
            carries: Carries::Records,
            first_seq,
            last_seq,
            records,
            payload_bytes,
            pkid: None,
            acked: false,
            sent_at: now,
            alarm_seqs: Vec::new(),
        });
    }

    /// A batch of alarm records published ahead of the backlog was queued.
    pub fn sent_alarms(&mut self, seqs: Vec<u64>, payload_bytes: usize, now: Instant) {
        self.batches.push_back(InFlight {
            carries: Carries::Alarms,
            first_seq: seqs.first().copied().unwrap_or(0),
            last_seq: seqs.last().copied().unwrap_or(0),
            records: seqs.len(),
            payload_bytes,
            pkid: None,
            acked: false,
            sent_at: now,
            alarm_seqs: seqs,
        });
    }

    /// The seqs of alarm batches acknowledged since the last call.
    pub fn take_acked_alarms(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.acked_alarms)
    }

    /// A QoS 1 publish that carries no records (the status message) was queued. It takes a
    /// place in the window like a batch (rumqttc counts it against the same in-flight limit).
    pub fn sent_without_records(&mut self, payload_bytes: usize, now: Instant) {
        self.batches.push_back(InFlight {
            carries: Carries::Nothing,
            first_seq: 0,
            last_seq: 0,
            records: 0,
            payload_bytes,
            pkid: None,
            acked: false,
            sent_at: now,
            alarm_seqs: Vec::new(),
        });
    }

    /// rumqttc wrote a publish with `pkid`: it belongs to the oldest batch without one.
    pub fn on_outgoing_publish(&mut self, pkid: u16) -> Result<(), WindowError> {
        match self.batches.iter_mut().find(|b| b.pkid.is_none()) {
            Some(b) => {
                b.pkid = Some(pkid);
                Ok(())
            }
            None => Err(WindowError::UnexpectedPublish(pkid)),
        }
    }

    /// The broker acknowledged `pkid`. Returns what can now be removed from the buffer: the
    /// acked prefix, so records leave in seq order even if acks arrive out of order. Acked
    /// entries without records leave the window with the prefix but are not in `batches`.
    pub fn on_puback(&mut self, pkid: u16) -> Result<Option<Released>, WindowError> {
        let batch = self
            .batches
            .iter_mut()
            .find(|b| b.pkid == Some(pkid) && !b.acked)
            .ok_or(WindowError::UnknownPubAck(pkid))?;
        batch.acked = true;
        self.acked_alarms.extend_from_slice(&batch.alarm_seqs);
        let mut released = Vec::new();
        while self.batches.front().is_some_and(|b| b.acked) {
            if let Some(b) = self.batches.pop_front() {
                if b.carries == Carries::Records {
                    released.push(b);
                }
            }
        }
        Ok(released
            .last()
            .map(|b| b.last_seq)
            .map(|last_seq| Released {
                last_seq,
                batches: released,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_release_batches_in_order() {
        let now = Instant::now();
        let mut w = Window::new(3);
        w.sent(1, 10, 10, 100, now);
        w.sent(11, 20, 10, 100, now);
        w.sent(21, 30, 10, 100, now);
        assert!(!w.has_room());
        w.on_outgoing_publish(7).unwrap();
        w.on_outgoing_publish(8).unwrap();
        w.on_outgoing_publish(9).unwrap();
        assert_eq!(w.on_puback(8).unwrap(), None, "batch 2 waits for batch 1");
        let released = w.on_puback(7).unwrap().unwrap();
        assert_eq!(released.last_seq, 20);
        assert_eq!(released.batches.len(), 2);
        assert!(w.has_room());
        assert_eq!(w.on_puback(9).unwrap().unwrap().last_seq, 30);
        assert!(w.is_empty());
    }

    #[test]
    fn packet_ids_may_cycle_and_repeat() {
        let now = Instant::now();
        let mut w = Window::new(2);
        w.sent(1, 1, 1, 1, now);
        w.on_outgoing_publish(1).unwrap();
        assert_eq!(w.on_puback(1).unwrap().unwrap().last_seq, 1);
        w.sent(2, 2, 1, 1, now);
        w.on_outgoing_publish(1).unwrap();
        assert_eq!(w.on_puback(1).unwrap().unwrap().last_seq, 2);
    }

    #[test]
    fn status_entries_take_pkids_in_order_and_release_nothing() {
        let now = Instant::now();
        let mut w = Window::new(4);
        w.sent_without_records(50, now); // status on connect
        w.sent(1, 10, 10, 100, now);
        w.sent_without_records(50, now); // periodic status between batches
        w.sent(11, 20, 10, 100, now);
        assert!(!w.has_room(), "status entries count against the window");
        assert_eq!(w.batches_outstanding(), 2);
        for pkid in [1, 2, 3, 4] {
            w.on_outgoing_publish(pkid).unwrap();
        }
        assert_eq!(w.last_sent_seq(), Some(20));
        // The batch after the unacked status waits for it, like any later batch.
        assert_eq!(w.on_puback(2).unwrap(), None);
        // Acking the first status releases the batch behind it, and only the batch.
        let released = w.on_puback(1).unwrap().unwrap();
        assert_eq!(released.last_seq, 10);
        assert_eq!(released.batches.len(), 1);
        assert_eq!(released.batches[0].first_seq, 1);
        assert_eq!(w.len(), 2);
        // A status acked at the head leaves the window with nothing to release.
        assert_eq!(w.on_puback(3).unwrap(), None);
        assert_eq!(w.len(), 1);
        let released = w.on_puback(4).unwrap().unwrap();
        assert_eq!(released.last_seq, 20);
        assert!(w.is_empty());
    }

    #[test]
    fn a_window_of_only_status_entries_empties_without_releasing() {
        let now = Instant::now();
        let mut w = Window::new(2);
        w.sent_without_records(40, now);
        w.on_outgoing_publish(9).unwrap();
        assert_eq!(w.last_sent_seq(), None);
        assert_eq!(w.on_puback(9).unwrap(), None);
        assert!(w.is_empty());
        assert_eq!(w.on_puback(9), Err(WindowError::UnknownPubAck(9)));
    }

    #[test]
    fn alarm_batches_report_their_seqs_at_once_and_release_no_records() {
        let now = Instant::now();
        let mut w = Window::new(3);
        w.sent(1, 10, 10, 100, now);
        w.sent_alarms(vec![57, 90], 80, now);
        assert_eq!(w.batches_outstanding(), 2);
        w.on_outgoing_publish(1).unwrap();
        w.on_outgoing_publish(2).unwrap();
        // The alarm batch's PUBACK comes first: reported now, though the batch before it
        // is not acknowledged yet.
        assert_eq!(w.on_puback(2).unwrap(), None);
        assert_eq!(w.take_acked_alarms(), [57, 90]);
        assert!(w.take_acked_alarms().is_empty());
        // The backlog's batch releases only its own records.
        let released = w.on_puback(1).unwrap().unwrap();
        assert_eq!(released.last_seq, 10);
        assert_eq!(released.batches.len(), 1);
        assert!(w.is_empty());
    }

    #[test]
    fn strange_events_are_errors_not_panics() {
        let mut w = Window::new(2);
        assert_eq!(w.on_puback(5), Err(WindowError::UnknownPubAck(5)));
        assert_eq!(
            w.on_outgoing_publish(5),
            Err(WindowError::UnexpectedPublish(5))
        );
        w.sent(1, 2, 2, 2, Instant::now());
        assert_eq!(
            w.on_puback(1),
            Err(WindowError::UnknownPubAck(1)),
            "no pkid yet"
        );
    }
}
