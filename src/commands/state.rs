//! Where every queued command stands, per device: a pure state machine (no IO, the time
//! passed in), tested with plain `#[test]`. The service (`service.rs`) mirrors each change
//! into sled and the results outbox.
//!
//! ```text
//!             push                 mark_sent                answer
//!   (admit) ───────▶ queued ─────────────────▶ sent ─────────────────▶ answered
//!                      │                         │ connection_lost / tick past
//!                      │ tick past ttl           │ answer_timeout            ─▶ failed
//!                      ▼                         ▼
//!                   expired                    failed
//!   admit refuses (queue full) ─▶ rejected; next_to_send may reject (no downlink, allow-list)
//! ```
//!
//! One command at a time per device, oldest first: only the head of a device's queue is
//! ever sent, and the next one only after the head is settled.

use std::collections::{HashMap, VecDeque};

use super::message::Body;

/// One queued command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Order of arrival over all devices (the store's key).
    pub seq: u64,
    pub id: String,
    pub device_id: String,
    pub body: Body,
    /// Not sent at or after this (Unix ms).
    pub expires_at_ms: i64,
    /// `Some(when)` once written to the device.
    pub sent_at_ms: Option<i64>,
}

impl Entry {
    /// The per-command number protocols with a slot carry out and back (GT06 server flag,
    /// Queclink serial number). Seqs of one device's outstanding commands are far apart
    /// from 65536 only after that many commands, and only one is outstanding at a time.
    pub fn token(&self) -> u16 {
        (self.seq & 0xFFFF) as u16
    }
}

/// The limits the queues keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_device: usize,
    pub total: usize,
    pub answer_timeout_ms: i64,
}

/// How an answer names its command (mirrors the protocol's answer key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerTo {
    Token(u16),
    Id(String),
    Outstanding,
}

/// A command leaving the queues, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Expired(Entry),
    /// No answer within the timeout.
    TimedOut(Entry),
}

#[derive(Debug)]
pub struct Queues {
    limits: Limits,
    devices: HashMap<String, VecDeque<Entry>>,
    total: usize,
}

impl Queues {
    pub fn new(limits: Limits) -> Queues {
        Queues {
            limits,
            devices: HashMap::new(),
            total: 0,
        }
    }

    /// Commands queued (or sent and unsettled) over all devices.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Commands queued for `device`.
    pub fn queued_for(&self, device: &str) -> usize {
        self.devices.get(device).map_or(0, VecDeque::len)
    }

    /// The device's oldest command.
    pub fn head(&self, device: &str) -> Option<&Entry> {
        self.devices.get(device).and_then(VecDeque::front)
    }

    /// Whether one more command for `device` fits; the error is the `rejected` reason.
    pub fn admit(&self, device: &str) -> Result<(), String> {
        if self.total >= self.limits.total {
            return Err(format!(
                "queue full: {} commands queued, commands.max_queued_total",
                self.total
            ));
        }
        let n = self.queued_for(device);
        if n >= self.limits.per_device {
            return Err(format!(
                "queue full: {n} commands queued for {device}, commands.max_queued_per_device"
            ));
        }
        Ok(())
    }

    /// Adds a command (admitted before, or loaded at open: then not checked) behind the
    /// device's others; entries are kept in seq order.
    pub fn push(&mut self, entry: Entry) {
        let queue = self.devices.entry(entry.device_id.clone()).or_default();
        let at = queue.partition_point(|e| e.seq < entry.seq);
        queue.insert(at, entry);
        self.total += 1;
    }

    /// The command to send to `device` now: its oldest, when none is outstanding. Commands
    /// whose time ran out before they could be sent come back in `expired` (removed).
    pub fn next_to_send(&mut self, device: &str, now_ms: i64) -> (Option<Entry>, Vec<Entry>) {
        let mut expired = Vec::new();
        let Some(queue) = self.devices.get_mut(device) else {
            return (None, expired);
        };
        while let Some(head) = queue.front() {
            if head.sent_at_ms.is_some() {
                break;
            }
            if head.expires_at_ms <= now_ms {
                expired.extend(queue.pop_front());
                continue;
            }
            let next = head.clone();
            self.total -= expired.len();
            return (Some(next), expired);
        }
        self.total -= expired.len();
        self.forget_if_empty(device);
        (None, expired)
    }

    /// Marks the device's head `seq` as written; `false` when it is no longer the unsent
    /// head (settled meanwhile).
    pub fn mark_sent(&mut self, device: &str, seq: u64, now_ms: i64) -> bool {
        match self.devices.get_mut(device).and_then(VecDeque::front_mut) {
            Some(head) if head.seq == seq && head.sent_at_ms.is_none() => {
                head.sent_at_ms = Some(now_ms);
                true
            }
            _ => false,
        }
    }

    /// The outstanding command `answer` belongs to, removed; `None` when it matches none
    /// (a late answer, an answer to another system's command).
    pub fn answer(&mut self, device: &str, answer: &AnswerTo) -> Option<Entry> {
        let queue = self.devices.get_mut(device)?;
        let head = queue.front()?;
        head.sent_at_ms?;
        let matches = match answer {
            AnswerTo::Outstanding => true,
            AnswerTo::Token(t) => head.token() == *t,
            AnswerTo::Id(id) => head.id == *id,
        };
        if !matches {
            return None;
        }
        let entry = queue.pop_front();
        self.total -= 1;
        self.forget_if_empty(device);
        entry
    }

    /// The device's connection is gone: its outstanding command (if any) failed.
    pub fn connection_lost(&mut self, device: &str) -> Option<Entry> {
        let queue = self.devices.get_mut(device)?;
        queue.front()?.sent_at_ms?;
        let entry = queue.pop_front();
        self.total -= 1;
        self.forget_if_empty(device);
        entry
    }

    /// Removes one command (rejected at delivery).
    pub fn remove(&mut self, device: &str, seq: u64) -> Option<Entry> {
        let queue = self.devices.get_mut(device)?;
        let at = queue.iter().position(|e| e.seq == seq)?;
        let entry = queue.remove(at);
        self.total -= 1;
        self.forget_if_empty(device);
        entry
    }

    /// Commands whose time ran out: unsent past their ttl, sent without an answer past
    /// `answer_timeout`. Removed. The devices that may now send their next command are
    /// those of `TimedOut` entries.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Settled> {
        let timeout = self.limits.answer_timeout_ms;
        let mut settled = Vec::new();
        for queue in self.devices.values_mut() {
            queue.retain(|e| match e.sent_at_ms {
                Some(at) if now_ms.saturating_sub(at) >= timeout => {
                    settled.push(Settled::TimedOut(e.clone()));
                    false
                }
                None if e.expires_at_ms <= now_ms => {
                    settled.push(Settled::Expired(e.clone()));
                    false
                }
                _ => true,
            });
        }
        self.total -= settled.len();
        self.devices.retain(|_, q| !q.is_empty());
        settled
    }

    fn forget_if_empty(&mut self, device: &str) {
        if self.devices.get(device).is_some_and(VecDeque::is_empty) {
            self.devices.remove(device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_device: 2,
        total: 3,
        answer_timeout_ms: 1000,
    };

    fn entry(seq: u64, device: &str, expires_at_ms: i64) -> Entry {
        Entry {
            seq,
            id: format!("c-{seq}"),
            device_id: device.into(),
            body: Body::Text("getinfo".into()),
            expires_at_ms,
            sent_at_ms: None,
        }
    }

    #[test]
    fn one_at_a_time_oldest_first_then_the_next_after_the_answer() {
        let mut q = Queues::new(LIMITS);
        q.push(entry(2, "a", 10_000));
        q.push(entry(1, "a", 10_000));
        let (next, expired) = q.next_to_send("a", 0);
        assert!(expired.is_empty());
        let next = next.unwrap();
        assert_eq!(next.seq, 1, "oldest first");
        assert!(q.mark_sent("a", 1, 5));
        assert_eq!(q.next_to_send("a", 6).0, None, "one outstanding at a time");
        assert_eq!(q.answer("a", &AnswerTo::Token(9)), None, "another token");
        assert_eq!(q.answer("a", &AnswerTo::Outstanding).unwrap().seq, 1);
        assert_eq!(q.next_to_send("a", 7).0.unwrap().seq, 2);
        assert_eq!(q.total(), 1);
    }

    #[test]
    fn answers_match_by_token_or_id_only_when_sent() {
        let mut q = Queues::new(LIMITS);
        q.push(entry(70_000, "a", 10_000));
        assert_eq!(q.answer("a", &AnswerTo::Outstanding), None, "not sent yet");
        assert!(q.mark_sent("a", 70_000, 0));
        assert!(!q.mark_sent("a", 70_000, 0), "sent once");
        assert_eq!(q.answer("a", &AnswerTo::Id("c-1".into())), None);
        let token = (70_000u64 & 0xFFFF) as u16;
        assert_eq!(q.answer("a", &AnswerTo::Token(token)).unwrap().seq, 70_000);
        assert_eq!(q.total(), 0);
    }

    #[test]
    fn limits_per_device_and_in_total_name_their_key() {
        let mut q = Queues::new(LIMITS);
        q.push(entry(1, "a", 1));
        q.push(entry(2, "a", 1));
        assert!(q.admit("a").unwrap_err().contains("max_queued_per_device"));
        q.push(entry(3, "b", 1));
        assert!(q.admit("c").unwrap_err().contains("max_queued_total"));
        assert_eq!(q.remove("a", 2).unwrap().seq, 2);
        assert!(q.admit("c").is_ok());
    }

    #[test]
    fn time_expires_unsent_commands_and_fails_unanswered_ones() {
        let mut q = Queues::new(LIMITS);
        q.push(entry(1, "a", 100));
        q.push(entry(2, "b", 100));
        q.push(entry(3, "b", 5000));
        assert!(q.mark_sent("a", 1, 50));
        // At 200: b's first expired, a's is still within its answer timeout.
        let settled = q.tick(200);
        assert_eq!(settled, vec![Settled::Expired(entry(2, "b", 100))]);
        let settled = q.tick(1050);
        assert!(matches!(&settled[..], [Settled::TimedOut(e)] if e.seq == 1));
        assert_eq!(q.total(), 1);
        // Expired commands found at delivery come back too.
        let (next, expired) = q.next_to_send("b", 6000);
        assert_eq!((next, expired.len()), (None, 1));
        assert_eq!(q.total(), 0);
    }

    #[test]
    fn a_lost_connection_fails_only_the_sent_command() {
        let mut q = Queues::new(LIMITS);
        q.push(entry(1, "a", 10_000));
        assert_eq!(q.connection_lost("a"), None, "queued stays queued");
        assert!(q.mark_sent("a", 1, 0));
        assert_eq!(q.connection_lost("a").unwrap().seq, 1);
        assert_eq!(q.total(), 0);
    }
}
