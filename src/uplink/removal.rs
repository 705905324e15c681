//! What the broker acknowledged and what the buffer has removed: the one place that decides
//! when records leave the buffer, and what happens when removing them fails.
//!
//! ```text
//!            acknowledged(seq)                 poll ─▶ Remove { through: acknowledged }
//!  PUBACKs ──────────────────▶ acknowledged ───────────────────────────────────────▶ buffer
//!  (in seq order)                  │                 ◀── outcome(Ok | Err) ───────────┘
//!                                  ▼
//!                       removed (what the buffer confirmed)
//! ```
//!
//! Removal normally follows each acknowledgement at once. When it fails (a full disk: sled
//! refuses every write, removals included), the acknowledged range is *held*: those records
//! were delivered, so they are never published again by this process (the publisher stages
//! only seqs above [`Removal::acknowledged_through`], on every connection), and the removal is
//! retried on its own timer, doubling from [`RETRY_INITIAL`] to [`RETRY_MAX`], without
//! touching the MQTT connection. Reconnecting and republishing, as the uplink once did, only
//! multiplies duplicates (about twenty per record over a long outage) and removes nothing.
//!
//! Pure: the caller passes the clock and the outcome of each removal it was asked for.

use std::time::{Duration, Instant};

/// First wait before retrying a failed removal.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between removal retries: a disk that frees up is noticed within this.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Removal has been failing: acknowledged records stay in the buffer meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalStalled {
    /// When the first removal of this run of failures failed.
    pub since: Instant,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// The last failure, in words.
    pub error: String,
    /// Everything up to here was acknowledged by the broker and is not published again.
    pub acknowledged_through: u64,
    /// What the buffer last confirmed removed (`None`: nothing since start).
    pub removed_through: Option<u64>,
    pub next_retry_at: Instant,
}

#[derive(Debug, Default)]
pub struct Removal {
    acknowledged: Option<u64>,
    removed: Option<u64>,
    /// A removal handed out and not yet answered.
    asked: Option<u64>,
    stalled: Option<RemovalStalled>,
}

impl Removal {
    pub fn new() -> Self {
        Removal::default()
    }

    /// Records up to `seq` were acknowledged (or may leave without one). Never goes back.
    pub fn acknowledged(&mut self, seq: u64) {
        self.acknowledged = self.acknowledged.max(Some(seq));
        if let Some(s) = &mut self.stalled {
            s.acknowledged_through = s.acknowledged_through.max(seq);
        }
    }

    /// The highest seq that was acknowledged; seqs at or below it are not published again.
    pub fn acknowledged_through(&self) -> Option<u64> {
        self.acknowledged
    }

    /// The removal to do now, if any: through the highest acknowledged seq.
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        let through = self.acknowledged?;
        if self.asked.is_some() || self.removed >= Some(through) {
            return None;
        }
        if self.stalled.as_ref().is_some_and(|s| now < s.next_retry_at) {
            return None;
        }
        self.asked = Some(through);
        Some(through)
    }

    /// When [`Removal::poll`] wants to be asked again (a retry's time), if it is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.stalled.as_ref().map(|s| s.next_retry_at)
    }

    /// The outcome of the removal through `through` that [`Removal::poll`] asked for.
    pub fn outcome(&mut self, through: u64, result: Result<(), String>, now: Instant) {
        self.asked = None;
        match result {
            Ok(()) => {
                self.removed = self.removed.max(Some(through));
                if let Some(s) = self.stalled.take() {
                    tracing::info!(
                        through,
                        attempts = s.attempts,
                        stalled_s = now.saturating_duration_since(s.since).as_secs(),
                        "buffer removal works again; acknowledged records removed"
                    );
                }
            }
            Err(error) => {
                let attempts = self.stalled.as_ref().map_or(0, |s| s.attempts) + 1;
                let since = self.stalled.as_ref().map_or(now, |s| s.since);
                let wait = retry_delay(attempts);
                if attempts == 1 || attempts.is_power_of_two() {
                    tracing::error!(
                        through,
                        attempts,
                        retry_in_ms = wait.as_millis() as u64,
                        %error,
                        "cannot remove acknowledged records from the buffer; they are kept \
                         and not published again, removal is retried"
                    );
                }
                self.stalled = Some(RemovalStalled {
                    since,
                    attempts,
                    error,
                    acknowledged_through: self.acknowledged.unwrap_or(through).max(through),
                    removed_through: self.removed,
                    next_retry_at: now + wait,
                });
            }
        }
    }

    /// `Some` while removal is failing.
    pub fn stalled(&self) -> Option<&RemovalStalled> {
        self.stalled.as_ref()
    }
}

/// The wait after the `attempts`-th failure in a row: doubling, capped.
fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    RETRY_INITIAL.saturating_mul(factor).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_follows_acknowledgement_once() {
        let t0 = Instant::now();
        let mut r = Removal::new();
        assert_eq!(r.poll(t0), None);
        r.acknowledged(10);
        assert_eq!(r.poll(t0), Some(10));
        assert_eq!(r.poll(t0), None, "asked once until answered");
        r.outcome(10, Ok(()), t0);
        assert_eq!(r.poll(t0), None);
        r.acknowledged(5);
        assert_eq!(r.acknowledged_through(), Some(10), "never goes back");
        assert_eq!(r.poll(t0), None);
    }

    #[test]
    fn failures_are_retried_on_a_doubling_timer_and_cleared_by_success() {
        let t0 = Instant::now();
        let mut r = Removal::new();
        r.acknowledged(10);
        assert_eq!(r.poll(t0), Some(10));
        r.outcome(10, Err("disk full".into()), t0);
        let s = r.stalled().unwrap().clone();
        assert_eq!((s.attempts, s.acknowledged_through), (1, 10));
        assert_eq!(s.next_retry_at, t0 + Duration::from_secs(1));
        // More acknowledged meanwhile: held, not removed before the timer.
        r.acknowledged(20);
        assert_eq!(r.stalled().unwrap().acknowledged_through, 20);
        assert_eq!(r.poll(t0 + Duration::from_millis(999)), None);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.poll(t1), Some(20));
        r.outcome(20, Err("disk full".into()), t1);
        let s = r.stalled().unwrap();
        assert_eq!((s.attempts, s.since), (2, t0));
        assert_eq!(s.next_retry_at, t1 + Duration::from_secs(2));
        let delays: Vec<u64> = (1..=8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
        let t3 = t1 + Duration::from_secs(2);
        assert_eq!(r.poll(t3), Some(20));
        r.outcome(20, Ok(()), t3);
        assert_eq!(r.stalled(), None);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.poll(t3 + RETRY_MAX), None);
    }
}
