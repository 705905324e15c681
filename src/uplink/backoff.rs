//! Reconnect delays: exponential with full jitter, capped, reset after a stable connection.
//!
//! ```text
//! attempt fails (no CONNACK) ........... ceiling doubles: initial, 2×, 4×, … up to max
//! connection ends, up < reset_after .... the same (a broker that accepts and drops at once)
//! connection ends, up ≥ reset_after .... reset: the next delay is at most min(initial, 1 s)
//!   or healthy (a PUBACK, up ≥ 1 s) ..... reset too: a broker restart, not our failure
//! refused (CONNACK with a refusal) ..... straight to the cap
//! every delay: uniform in [0, ceiling] (full jitter; refusals: [cap/2, cap])
//! ```
//!
//! The healthy rule is what makes recovery after a short broker outage quick: without it,
//! five broker restarts a few seconds apart (each connection shorter than `reset_after`)
//! added up to delays of 4–26 s, while a peer client retrying every 3 s was long back. A
//! connection counts as healthy only once the broker acknowledged a publish on it (the online
//! status goes first on every connection) and it stayed up for [`HEALTHY_AFTER`]; so a broker
//! that accepts and drops at once, or two gateways sharing a client id and taking the session
//! from each other, still back off.
//!
//! Pure: the caller passes the clock and the random draw, so the schedule is testable.

use std::time::{Duration, Instant};

/// How long a connection with an acknowledged publish must have been up to count as healthy.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// The longest first delay after a reset: recovery after a short outage within about 1 s.
pub const QUICK_RETRY: Duration = Duration::from_secs(1);

/// How the connection that just ended went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The attempt failed before CONNACK.
    NotConnected,
    /// Established at `at`; `broker_acknowledged`: a publish on it got its PUBACK.
    Connected {
        at: Instant,
        broker_acknowledged: bool,
    },
}

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

    /// The connection (or attempt) `ended` at `now`. Returns how long to wait before the next
    /// attempt; `unit_random` is a uniform draw from [0, 1) (full jitter: the delay is
    /// anywhere between zero and the ceiling, which spreads a fleet of gateways reconnecting
    /// at once).
    pub fn next_delay(&mut self, ended: Ended, now: Instant, unit_random: f64) -> Duration {
        let reset = match ended {
            Ended::NotConnected => false,
            Ended::Connected {
                at,
                broker_acknowledged,
            } => {
                let up = now.saturating_duration_since(at);
                up >= self.reset_after || (broker_acknowledged && up >= HEALTHY_AFTER)
            }
        };
        let ceiling = if reset {
            self.failures = 0;
            self.ceiling().min(QUICK_RETRY)
        } else {
            self.ceiling()
        };
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(unit_random.clamp(0.0, 1.0))
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

    fn up(at: Instant, broker_acknowledged: bool) -> Ended {
        Ended::Connected {
            at,
            broker_acknowledged,
        }
    }

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
                let d = b.next_delay(Ended::NotConnected, now, 0.999_999);
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
        assert_eq!(b.next_delay(Ended::NotConnected, now, 0.0), Duration::ZERO);
        assert_eq!(
            b.next_delay(Ended::NotConnected, now, 0.5),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_stable_connection_resets_the_schedule_and_a_short_one_does_not() {
        let mut b = backoff();
        let start = Instant::now();
        for _ in 0..5 {
            b.next_delay(Ended::NotConnected, start, 0.5);
        }
        let short = b.next_delay(up(start, false), start + Duration::from_secs(1), 1.0);
        assert_eq!(
            short,
            Duration::from_secs(3).saturating_add(Duration::from_millis(200))
        );
        let after_stable = b.next_delay(up(start, false), start + Duration::from_secs(31), 1.0);
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
        assert_eq!(
            b.next_delay(Ended::NotConnected, now, 0.999_999)
                .as_millis(),
            4999
        );
        // A stable connection resets it.
        let start = now;
        let after_stable = b.next_delay(up(start, false), start + Duration::from_secs(31), 1.0);
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
            b.next_delay(Ended::NotConnected, Instant::now(), 1.0),
            Duration::from_secs(5)
        );
    }

    /// The defaults: 500 ms doubling to 30 s, reset after 30 s up.
    fn defaults() -> Backoff {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn a_broker_restart_after_a_healthy_connection_is_retried_within_a_second() {
        let mut b = defaults();
        let mut t = Instant::now();
        // Five broker restarts a few seconds apart: each time a short outage (two failed
        // attempts), then a connection that worked for 4 s (its status acknowledged).
        for restart in 0..5 {
            let first = b.next_delay(up(t, true), t + Duration::from_secs(4), 1.0);
            assert!(
                first <= QUICK_RETRY,
                "restart {restart}: first retry after {first:?}"
            );
            t += Duration::from_secs(4) + first;
            let second = b.next_delay(Ended::NotConnected, t, 1.0);
            assert_eq!(
                second,
                Duration::from_secs(1),
                "then the schedule: 2 × 500 ms"
            );
            t += second;
            let third = b.next_delay(Ended::NotConnected, t, 1.0);
            assert_eq!(third, Duration::from_secs(2));
            t += third;
        }
    }

    #[test]
    fn short_connections_without_an_acknowledgement_keep_backing_off() {
        // A broker that accepts and drops at once, or one that never acknowledges.
        let mut b = defaults();
        let t = Instant::now();
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                b.next_delay(up(t, false), t + Duration::from_secs(5), 1.0)
                    .as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        // Acknowledged, but up less than HEALTHY_AFTER (two gateways sharing a client id
        // taking the session from each other): no reset either.
        let d = b.next_delay(up(t, true), t + Duration::from_millis(900), 1.0);
        assert_eq!(d, Duration::from_secs(30));
        // Up for reset_after, even without an acknowledgement: reset, as always.
        let d = b.next_delay(up(t, false), t + Duration::from_secs(30), 1.0);
        assert_eq!(d, Duration::from_millis(500));
    }

    #[test]
    fn the_first_retry_after_a_reset_is_quick_even_with_a_long_initial_delay() {
        let mut b = Backoff::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(30),
        );
        let t = Instant::now();
        assert_eq!(
            b.next_delay(Ended::NotConnected, t, 1.0),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.next_delay(up(t, true), t + Duration::from_secs(2), 1.0),
            QUICK_RETRY
        );
        assert_eq!(
            b.next_delay(Ended::NotConnected, t, 1.0),
            Duration::from_secs(10),
            "then the configured schedule"
        );
        // Full jitter applies to the quick retry too.
        assert_eq!(
            b.next_delay(up(t, true), t + Duration::from_secs(2), 0.25),
            Duration::from_millis(250)
        );
    }
}
