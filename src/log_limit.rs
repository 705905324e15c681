//! A rate limit for the warnings that outside input decides (a malformed frame, a refused
//! device): one client sending garbage must not write megabytes of WARN lines a second to an
//! SD card. The counters in [`crate::metrics`] still count every event; only the lines are
//! limited.
//!
//! Per key — the listener's protocol and the warning's message, a fixed text — at most
//! [`PER_WINDOW`] lines are written per [`WINDOW`]; the rest are counted, and the count is
//! written once as `N more "<message>" warnings suppressed`, either before the first line of
//! the next window or by [`spawn_reports`]'s periodic sweep if the key went quiet. So a flood
//! writes at most `PER_WINDOW + 1` lines per key and window. The key set is bounded
//! ([`MAX_KEYS`]); keys beyond it share one overflow key per message.
//!
//! [`LogLimiter`] is pure (time is passed in) so its rules are unit-tested; the process-wide
//! instance sits behind [`warn_bad_input!`](crate::warn_bad_input), which the ingest call
//! sites use in place of `tracing::warn!`.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The length of one window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines written per key and window.
pub const PER_WINDOW: u32 = 10;
/// Keys tracked at once; protocols × messages is far fewer, so this only guards the map.
pub const MAX_KEYS: usize = 256;
/// The listener name of the shared key used once [`MAX_KEYS`] are tracked.
pub const OVERFLOW: &str = "(others)";

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it; first write the count of the previous window's suppressed lines, if any.
    Log { suppressed_before: u64 },
    /// Count it only.
    Suppress,
}

/// Lines held back for one key, reported by [`LogLimiter::take_suppressed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub listener: String,
    pub message: &'static str,
    pub count: u64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// First `per_window` lines per (listener, message) and window; see the module docs.
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    per_window: u32,
    max_keys: usize,
    keys: HashMap<(String, &'static str), Window>,
}

impl LogLimiter {
    pub fn new(window: Duration, per_window: u32, max_keys: usize) -> LogLimiter {
        LogLimiter {
            window,
            per_window,
            max_keys,
            keys: HashMap::new(),
        }
    }

    /// Decides one warning with `message` from `listener` at `now`.
    pub fn check(&mut self, listener: &str, message: &'static str, now: Instant) -> Decision {
        let mut key = (listener.to_string(), message);
        if self.keys.len() >= self.max_keys && !self.keys.contains_key(&key) {
            key.0 = OVERFLOW.to_string();
        }
        let window = self.keys.entry(key).or_insert(Window {
            started: now,
            logged: 0,
            suppressed: 0,
        });
        let mut suppressed_before = 0;
        if now.saturating_duration_since(window.started) >= self.window {
            suppressed_before = window.suppressed;
            *window = Window {
                started: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if window.logged < self.per_window {
            window.logged += 1;
            Decision::Log { suppressed_before }
        } else {
            window.suppressed += 1;
            Decision::Suppress
        }
    }

    /// The counts of windows that have ended with lines suppressed; ended windows are
    /// forgotten (so quiet keys leave the map).
    pub fn take_suppressed(&mut self, now: Instant) -> Vec<Suppressed> {
        let mut ended = Vec::new();
        let window = self.window;
        self.keys.retain(|(listener, message), w| {
            if now.saturating_duration_since(w.started) < window {
                return true;
            }
            if w.suppressed > 0 {
                ended.push(Suppressed {
                    listener: listener.clone(),
                    message,
                    count: w.suppressed,
                });
            }
            false
        });
        ended
    }
}

static BAD_INPUT: LazyLock<Mutex<LogLimiter>> =
    LazyLock::new(|| Mutex::new(LogLimiter::new(WINDOW, PER_WINDOW, MAX_KEYS)));

fn limiter() -> std::sync::MutexGuard<'static, LogLimiter> {
    // The map stays consistent whatever panicked while holding it: keep using it.
    BAD_INPUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The process-wide decision for a bad-input warning (used by [`warn_bad_input!`](crate::warn_bad_input)).
pub fn bad_input(listener: &dyn Display, message: &'static str) -> Decision {
    limiter().check(&listener.to_string(), message, Instant::now())
}

/// Writes the "N more suppressed" line.
pub fn report(listener: &dyn Display, message: &'static str, count: u64) {
    tracing::warn!(
        listener = %listener,
        suppressed = count,
        "{count} more {message:?} warnings suppressed in {} s (the metrics count every one)",
        WINDOW.as_secs()
    );
}

/// Reports, once per [`WINDOW`], the lines suppressed for keys that went quiet since. Runs
/// until the runtime stops.
pub fn spawn_reports() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(WINDOW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ended = limiter().take_suppressed(Instant::now());
            for s in ended {
                report(&s.listener, s.message, s.count);
            }
        }
    });
}

/// `tracing::warn!` for input a client controls, limited per (listener, message) by
/// [`LogLimiter`]:
/// `warn_bad_input!(protocol, "malformed datagram dropped", %peer, reason = %e)`. The
/// listener is anything `Display`; the message must be a literal (it is part of the key).
#[macro_export]
macro_rules! warn_bad_input {
    ($listener:expr, $message:literal $(, $($field:tt)+)?) => {
        match $crate::log_limit::bad_input(&$listener, $message) {
            $crate::log_limit::Decision::Suppress => {}
            $crate::log_limit::Decision::Log { suppressed_before } => {
                if suppressed_before > 0 {
                    $crate::log_limit::report(&$listener, $message, suppressed_before);
                }
                tracing::warn!($($($field)+ ,)? $message);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn logged(d: Decision) -> bool {
        matches!(d, Decision::Log { .. })
    }

    #[test]
    fn a_flood_logs_the_first_lines_of_each_window_and_counts_the_rest() {
        let mut l = LogLimiter::new(10 * S, 3, 8);
        let t0 = Instant::now();
        let first: Vec<bool> = (0..100)
            .map(|i| logged(l.check("gt06", "bad", t0 + i * S / 20)))
            .collect();
        assert_eq!(first.iter().filter(|&&x| x).count(), 3);
        assert!(
            first[..3].iter().all(|&x| x),
            "the first lines are the ones written"
        );
        // Nothing has ended yet.
        assert!(l.take_suppressed(t0 + 9 * S).is_empty());
        // The next window's first line carries the count.
        assert_eq!(
            l.check("gt06", "bad", t0 + 10 * S),
            Decision::Log {
                suppressed_before: 97
            }
        );
        assert_eq!(
            l.check("gt06", "bad", t0 + 11 * S),
            Decision::Log {
                suppressed_before: 0
            }
        );
    }

    #[test]
    fn keys_are_separate_by_listener_and_message() {
        let mut l = LogLimiter::new(10 * S, 1, 8);
        let t0 = Instant::now();
        assert!(logged(l.check("gt06", "bad", t0)));
        assert!(!logged(l.check("gt06", "bad", t0)));
        assert!(logged(l.check("gt06", "refused", t0)));
        assert!(logged(l.check("queclink", "bad", t0)));
    }

    #[test]
    fn quiet_keys_are_reported_once_and_forgotten() {
        let mut l = LogLimiter::new(10 * S, 1, 8);
        let t0 = Instant::now();
        for _ in 0..5 {
            l.check("gt06", "bad", t0);
        }
        l.check("wialon", "bad", t0);
        let ended = l.take_suppressed(t0 + 10 * S);
        assert_eq!(
            ended,
            vec![Suppressed {
                listener: "gt06".into(),
                message: "bad",
                count: 4
            }]
        );
        assert!(l.take_suppressed(t0 + 30 * S).is_empty(), "reported twice");
        assert!(l.keys.is_empty(), "ended windows stay in the map");
        // A new window starts afresh.
        assert_eq!(
            l.check("gt06", "bad", t0 + 31 * S),
            Decision::Log {
                suppressed_before: 0
            }
        );
    }

    #[test]
    fn the_key_set_is_bounded() {
        let mut l = LogLimiter::new(10 * S, 1, 4);
        let t0 = Instant::now();
        for i in 0..100 {
            l.check(&format!("listener-{i}"), "bad", t0);
        }
        assert_eq!(l.keys.len(), 5, "4 keys and the overflow key");
        let ended = l.take_suppressed(t0 + 10 * S);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].listener.as_str(), ended[0].count), (OVERFLOW, 95));
    }
}
