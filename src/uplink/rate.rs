//! The uplink's rate limit: token buckets on messages per second and payload bytes per
//! second (`uplink.max_messages_per_s`, `uplink.max_bytes_per_s`; 0 = unlimited), for metered
//! cellular links and broker quotas.
//!
//! Non-blocking by design: the publisher asks [`RateLimit::try_acquire`] before each
//! publish and, when told to wait, asks again at the instant it was told, so PUBACKs,
//! shutdown and the status timer are still served meanwhile. A message token taken while the
//! byte bucket is short is kept for the next attempt, so a wait never costs a message token
//! twice.
//!
//! Burst sizes: the message bucket holds one second of messages. The byte bucket holds
//! `max(rate, largest message)` bytes, so a publish larger than one second's allowance still
//! goes through once the bucket is full again, instead of waiting forever.
//!
//! Time is the caller's: governor's buckets read a [`PassedClock`], which shows the instant
//! the caller passed to `try_acquire`. So the publisher stays free of clocks and its tests
//! step time by hand, with governor's own GCRA doing the arithmetic.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

type Limiter = RateLimiter<NotKeyed, InMemoryState, PassedClock, NoOpMiddleware<Instant>>;

/// A governor clock that reads the instant the caller last passed in (never going back).
#[derive(Debug, Clone)]
pub struct PassedClock(Arc<Mutex<Instant>>);

impl PassedClock {
    fn new(now: Instant) -> Self {
        PassedClock(Arc::new(Mutex::new(now)))
    }

    fn set(&self, now: Instant) {
        // A poisoned lock still holds a valid instant.
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *t = (*t).max(now);
    }
}

impl Clock for PassedClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct RateLimit {
    clock: PassedClock,
    messages: Option<Limiter>,
    bytes: Option<(Limiter, NonZeroU32)>,
    /// A message token taken by an attempt that then waited for bytes.
    message_reserved: bool,
}

impl RateLimit {
    /// `largest_message` is the most payload bytes one publish can have (the packet limit);
    /// the buckets start full at `now`.
    pub fn new(
        max_messages_per_s: u32,
        max_bytes_per_s: u64,
        largest_message: usize,
        now: Instant,
    ) -> Self {
        let clock = PassedClock::new(now);
        let messages = NonZeroU32::new(max_messages_per_s)
            .map(|rate| RateLimiter::direct_with_clock(Quota::per_second(rate), clock.clone()));
        // Rates above u32::MAX bytes/s are beyond any link this runs on; clamp, don't fail.
        let bytes_rate = u32::try_from(max_bytes_per_s).unwrap_or(u32::MAX);
        let bytes = NonZeroU32::new(bytes_rate).map(|rate| {
            let largest = u32::try_from(largest_message).unwrap_or(u32::MAX);
            let burst = NonZeroU32::new(bytes_rate.max(largest)).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            (RateLimiter::direct_with_clock(quota, clock.clone()), burst)
        });
        RateLimit {
            clock,
            messages,
            bytes,
            message_reserved: false,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.messages.is_none() && self.bytes.is_none()
    }

    /// Takes the tokens for one message of `bytes` payload bytes at `now`, or says how long
    /// to wait before trying again (nothing is taken from the byte bucket then).
    pub fn try_acquire(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        self.clock.set(now);
        if !self.message_reserved {
            if let Some(limiter) = &self.messages {
                limiter
                    .check()
                    .map_err(|nu| nu.wait_time_from(self.clock.now()))?;
            }
            self.message_reserved = true;
        }
        if let Some((limiter, burst)) = &self.bytes {
            // A message larger than the burst (it cannot be: the burst covers the largest
            // message) is charged the whole burst rather than refused forever.
            let n = u32::try_from(bytes)
                .unwrap_or(u32::MAX)
                .clamp(1, burst.get());
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            match limiter.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(nu)) => return Err(nu.wait_time_from(self.clock.now())),
                // Unreachable with n ≤ burst; treat as "wait a second" rather than panic.
                Err(_) => return Err(Duration::from_secs(1)),
            }
        }
        self.message_reserved = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time the tests pass in, stepped by hand.
    struct Time(Instant);

    impl Time {
        fn advance(&mut self, by: Duration) {
            self.0 += by;
        }
    }

    fn limited(messages: u32, bytes: u64, largest: usize) -> (RateLimit, Time) {
        let t0 = Instant::now();
        (RateLimit::new(messages, bytes, largest, t0), Time(t0))
    }

    #[test]
    fn zero_means_unlimited() {
        let (mut r, clock) = limited(0, 0, 1 << 20);
        assert!(r.is_unlimited());
        for _ in 0..10_000 {
            assert_eq!(r.try_acquire(1 << 20, clock.0), Ok(()));
        }
    }

    #[test]
    fn messages_per_second_hold_after_a_burst_of_one_second() {
        let (mut r, mut clock) = limited(5, 0, 1000);
        for _ in 0..5 {
            assert_eq!(r.try_acquire(10, clock.0), Ok(()));
        }
        let wait = r.try_acquire(10, clock.0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        clock.advance(wait);
        assert_eq!(r.try_acquire(10, clock.0), Ok(()));
        // Over 10 simulated seconds, at most 5 + 5 × 10 messages pass.
        let mut passed = 0;
        for _ in 0..1000 {
            if r.try_acquire(10, clock.0).is_ok() {
                passed += 1;
            }
            clock.advance(Duration::from_millis(10));
        }
        assert!(
            (49..=51).contains(&passed),
            "{passed} messages in 10 s at 5/s"
        );
    }

    #[test]
    fn bytes_per_second_hold_and_a_big_message_still_goes() {
        // 1000 B/s, but a message may be up to 4000 B: the burst is 4000.
        let (mut r, mut clock) = limited(0, 1000, 4000);
        assert_eq!(
            r.try_acquire(4000, clock.0),
            Ok(()),
            "a full bucket takes the largest message"
        );
        let wait = r.try_acquire(4000, clock.0).unwrap_err();
        assert!(
            wait > Duration::from_millis(3900) && wait <= Duration::from_secs(4),
            "{wait:?}"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(r.try_acquire(1000, clock.0), Ok(()));
        assert!(r.try_acquire(1, clock.0).is_err());
        clock.advance(Duration::from_secs(4));
        assert_eq!(r.try_acquire(4000, clock.0), Ok(()));
        // Larger than anything announced: charged the whole burst, still goes eventually.
        clock.advance(Duration::from_secs(4));
        assert_eq!(r.try_acquire(1 << 30, clock.0), Ok(()));
    }

    #[test]
    fn a_message_token_is_kept_while_waiting_for_bytes() {
        let (mut r, mut clock) = limited(10, 100, 100);
        assert_eq!(r.try_acquire(100, clock.0), Ok(()));
        // Short of bytes: the message token is taken once and kept across attempts.
        for _ in 0..20 {
            assert!(r.try_acquire(100, clock.0).is_err());
        }
        assert!(r.message_reserved);
        let messages = r.messages.as_ref().unwrap();
        let eight = NonZeroU32::new(8).unwrap();
        assert_eq!(
            messages.check_n(eight),
            Ok(Ok(())),
            "8 of 10 message tokens left"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(r.try_acquire(100, clock.0), Ok(()));
        assert!(!r.message_reserved);
    }
}
