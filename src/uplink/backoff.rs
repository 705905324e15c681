//! Reconnect delays: exponential with full jitter, capped, reset after a stable connection.
//!
//! Pure: the caller passes the clock and the random draw, so the schedule is testable.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Self {
        Backoff {
            initial,
            max,
            reset_after,
            failures: 0,
        }
    }

    /// The ceiling of the next delay: `initial * 2^failures`, capped.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A connection that was up from `connected_at` until `now` has ended (or an attempt
    /// failed, with `connected_at = None`). Returns how long to wait before the next attempt;
    /// `unit_random` is a uniform draw from [0, 1) (full jitter: the delay is anywhere
    /// between zero and the ceiling, which spreads a fleet of gateways reconnecting at once).
    pub fn next_delay(
        &mut self,
        connected_at: Option<Instant>,
        now: Instant,
        unit_random: f64,
    ) -> Duration {
        if connected_at.is_some_and(|t| now.saturating_duration_since(t) >= self.reset_after) {
            self.failures = 0;
        }
        let delay = self.ceiling().mul_f64(unit_random.clamp(0.0, 1.0));
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// The broker refused the connection (CONNACK with a refusal code: bad credentials, not
    /// authorised, …). Retrying sooner will not help, so the schedule jumps straight to its
    /// cap and stays there until a stable connection resets it. The delay is drawn from the
    /// upper half of the cap, not from zero: a refused gateway must not hammer the broker,
    /// yet a fleet refused at the same moment (an auth backend outage) still spreads out.
    pub fn refused(&mut self, unit_random: f64) -> Duration {
        let steps = self
            .max
            .as_nanos()
            .checked_div(self.initial.as_nanos().max(1))
            .unwrap_or(u128::MAX);
        // The smallest failure count whose ceiling is the cap (2^k ≥ max / initial).
        let to_cap = steps
            .max(1)
            .checked_next_power_of_two()
            .map_or(32, u128::trailing_zeros);
        self.failures = self.failures.max(to_cap).saturating_add(1);
        let half = self.max / 2;
        half + (self.max - half).mul_f64(unit_random.clamp(0.0, 1.0))
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let mut b = backoff();
        let now = Instant::now();
        let ceilings: Vec<u128> = (0..10)
            .map(|_| {
                let d = b.next_delay(None, now, 0.999_999);
                d.as_millis()
            })
            .collect();
        assert_eq!(ceilings[..6], [99, 199, 399, 799, 1599, 3199]);
        assert!(ceilings[6..].iter().all(|&c| (4999..=5000).contains(&c)));
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let mut b = backoff();
        let now = Instant::now();
        assert_eq!(b.next_delay(None, now, 0.0), Duration::ZERO);
        assert_eq!(b.next_delay(None, now, 0.5), Duration::from_millis(100));
    }

    #[test]
    fn a_stable_connection_resets_the_schedule_and_a_short_one_does_not() {
        let mut b = backoff();
        let start = Instant::now();
        for _ in 0..5 {
            b.next_delay(None, start, 0.5);
        }
        let short = b.next_delay(Some(start), start + Duration::from_secs(1), 1.0);
        assert_eq!(
            short,
            Duration::from_secs(3).saturating_add(Duration::from_millis(200))
        );
        let after_stable = b.next_delay(Some(start), start + Duration::from_secs(31), 1.0);
        assert_eq!(after_stable, Duration::from_millis(100));
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn a_refusal_goes_straight_to_the_cap_and_stays_there() {
        let mut b = backoff();
        let now = Instant::now();
        assert_eq!(b.refused(1.0), Duration::from_secs(5));
        assert_eq!(
            b.refused(0.0),
            Duration::from_millis(2500),
            "upper half of the cap"
        );
        assert!(b.ceiling() == Duration::from_secs(5));
        // An ordinary failure after a refusal stays at the cap too.
        assert_eq!(b.next_delay(None, now, 0.999_999).as_millis(), 4999);
        // A stable connection resets it.
        let start = now;
        let after_stable = b.next_delay(Some(start), start + Duration::from_secs(31), 1.0);
        assert_eq!(after_stable, Duration::from_millis(100));
    }

    #[test]
    fn a_refusal_after_many_failures_keeps_the_count() {
        let mut b = backoff();
        b.failures = 40;
        assert_eq!(b.refused(1.0), Duration::from_secs(5));
        assert_eq!(b.failures(), 41);
        let mut same = Backoff::new(
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(30),
        );
        assert_eq!(same.refused(1.0), Duration::from_secs(5));
        assert_eq!(same.ceiling(), Duration::from_secs(5));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut b = backoff();
        b.failures = u32::MAX;
        assert_eq!(
            b.next_delay(None, Instant::now(), 1.0),
            Duration::from_secs(5)
        );
    }
}
