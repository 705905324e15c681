//! The service watchdog: `WATCHDOG=1` is sent only while every stage of the pipeline is
//! making progress, so systemd (`WatchdogSec`) restarts a gateway that is wedged rather than
//! one that is merely idle or waiting for a broker.
//!
//! What counts as progress, per stage:
//!
//! ```text
//! stage           healthy when                                    stuck looks like
//! ─────────────   ─────────────────────────────────────────────   ─────────────────────────
//! commit thread   running, and every append handed to it at the    fsync on a hung eMMC/SD,
//!                 previous check has been answered by this one     a deadlock in sled
//! uplink task     it beat before the deadline it set itself:       a blocking call on its
//!                 each wait it enters is bounded, and it names     task, a lost wake-up
//!                 the bound (publish loop: ≤ 5 s ticks; connect:
//!                 connect_timeout_s; backoff: the delay)
//! async runtime   this check runs at all                           every worker blocked
//! ```
//!
//! Idleness never looks stuck: a commit thread with nothing to do has answered everything,
//! and an uplink waiting for a broker is inside a bounded wait it announced. A full buffer
//! (devices waiting under `block`) is not stuck either: those appends are not handed to the
//! commit thread until there is room.
//!
//! [`Watchdog::check`] is the decision, pure and tested with plain `#[test]`s; [`feed`] is the
//! task that probes the buffer and the uplink's [`Heartbeat`] and pings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buffer::{Buffer, CommitProgress};
use crate::notify::Notifier;

/// A stage's promise to beat again before a deadline it sets itself.
pub struct Heartbeat {
    /// Milliseconds after [`epoch`] by which the next beat is due; 0 = not started.
    due_ms: AtomicU64,
}

/// What the uplink promises (see the module doc).
pub static UPLINK: Heartbeat = Heartbeat::new();

/// Slack on every deadline, for scheduling delay on a loaded 2-core gateway.
const GRACE: Duration = Duration::from_secs(5);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64
}

impl Heartbeat {
    pub const fn new() -> Heartbeat {
        Heartbeat {
            due_ms: AtomicU64::new(0),
        }
    }

    /// "I will beat again within `bound`" (plus [`GRACE`]).
    pub fn beat_within(&self, bound: Duration) {
        let due = millis_since_epoch(Instant::now() + bound + GRACE).max(1);
        self.due_ms.store(due, Ordering::Relaxed);
    }

    /// How late the next beat is at `now`; `None` if it is not due yet or never started.
    pub fn overdue(&self, now: Instant) -> Option<Duration> {
        let due = self.due_ms.load(Ordering::Relaxed);
        let now = millis_since_epoch(now);
        (due != 0 && now > due).then(|| Duration::from_millis(now - due))
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

/// One reading of the stages.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub committer_alive: bool,
    pub commit: CommitProgress,
    pub uplink_overdue: Option<Duration>,
}

/// Why the watchdog is not fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stall {
    CommitterStopped,
    /// Appends handed to the commit thread before the previous check are still unanswered.
    CommitStuck {
        waiting: u64,
    },
    UplinkStuck {
        overdue: Duration,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::CommitterStopped => write!(f, "the buffer's commit thread has stopped"),
            Stall::CommitStuck { waiting } => write!(
                f,
                "the buffer's commit thread answered no append for a whole check period \
                 ({waiting} waiting; is the disk hung?)"
            ),
            Stall::UplinkStuck { overdue } => write!(
                f,
                "the uplink task is {} ms past its own deadline",
                overdue.as_millis()
            ),
        }
    }
}

/// The feeding decision, carried from one check to the next.
#[derive(Debug, Default)]
pub struct Watchdog {
    /// Appends handed to the commit thread as of the previous check.
    sent_before: u64,
}

impl Watchdog {
    pub fn new(first: CommitProgress) -> Watchdog {
        Watchdog {
            sent_before: first.sent,
        }
    }

    /// Whether to ping now. Every check moves the commit baseline forward, so an append must
    /// stay unanswered for a whole period (not merely be in flight) to count as stuck.
    pub fn check(&mut self, probe: Probe) -> Result<(), Stall> {
        let sent_before = std::mem::replace(&mut self.sent_before, probe.commit.sent);
        if !probe.committer_alive {
            return Err(Stall::CommitterStopped);
        }
        if probe.commit.answered < sent_before {
            return Err(Stall::CommitStuck {
                waiting: sent_before - probe.commit.answered,
            });
        }
        if let Some(overdue) = probe.uplink_overdue {
            return Err(Stall::UplinkStuck { overdue });
        }
        Ok(())
    }
}

/// Pings every half `interval` while [`Watchdog::check`] passes; logs a stall once when it
/// begins and once when it ends. Once `stopping` turns true it pings unconditionally: the
/// stop is bounded by the gateway's own timeouts and by systemd's `TimeoutStopSec`, and the
/// uplink's heartbeat ends with its task.
pub async fn feed(
    notifier: &Notifier,
    buffer: Buffer,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let every = (interval / 2).max(Duration::from_millis(100));
    let mut watchdog = Watchdog::new(buffer.commit_progress());
    let mut stalled = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stopping.changed() => if changed.is_err() { return },
        }
        if *stopping.borrow() {
            notifier.notify("WATCHDOG=1");
            continue;
        }
        let probe = Probe {
            committer_alive: buffer.committer_alive(),
            commit: buffer.commit_progress(),
            uplink_overdue: UPLINK.overdue(Instant::now()),
        };
        match watchdog.check(probe) {
            Ok(()) => {
                if std::mem::take(&mut stalled) {
                    tracing::info!("watchdog: every stage is making progress again");
                }
                notifier.notify("WATCHDOG=1");
            }
            Err(stall) => {
                if !std::mem::replace(&mut stalled, true) {
                    tracing::error!(
                        "watchdog: not fed, {stall}; systemd restarts the gateway after \
                         WatchdogSec unless it recovers"
                    );
                    notifier.notify(&format!("STATUS=stalled: {stall}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sent: u64, answered: u64) -> Probe {
        Probe {
            committer_alive: true,
            commit: CommitProgress { sent, answered },
            uplink_overdue: None,
        }
    }

    #[test]
    fn idle_and_busy_pipelines_are_fed() {
        let mut w = Watchdog::new(CommitProgress::default());
        // Idle: nothing sent, nothing answered.
        assert_eq!(w.check(probe(0, 0)), Ok(()));
        // Busy: appends in flight at this check, all answered by the next.
        assert_eq!(w.check(probe(500, 480)), Ok(()));
        assert_eq!(w.check(probe(1200, 1190)), Ok(()));
        assert_eq!(w.check(probe(1200, 1200)), Ok(()));
    }

    #[test]
    fn an_append_unanswered_for_a_whole_period_is_a_stall_until_answered() {
        let mut w = Watchdog::new(CommitProgress::default());
        assert_eq!(w.check(probe(10, 7)), Ok(()));
        // The three sent before this check are still waiting.
        assert_eq!(
            w.check(probe(12, 7)),
            Err(Stall::CommitStuck { waiting: 3 })
        );
        assert_eq!(
            w.check(probe(12, 9)),
            Err(Stall::CommitStuck { waiting: 3 })
        );
        assert_eq!(w.check(probe(12, 12)), Ok(()));
    }

    #[test]
    fn a_stopped_committer_or_an_overdue_uplink_is_a_stall() {
        let mut w = Watchdog::new(CommitProgress::default());
        let mut p = probe(0, 0);
        p.committer_alive = false;
        assert_eq!(w.check(p), Err(Stall::CommitterStopped));
        let mut p = probe(0, 0);
        p.uplink_overdue = Some(Duration::from_millis(1500));
        assert_eq!(
            w.check(p),
            Err(Stall::UplinkStuck {
                overdue: Duration::from_millis(1500)
            })
        );
        assert_eq!(w.check(probe(0, 0)), Ok(()));
    }

    #[test]
    fn a_heartbeat_is_overdue_only_after_its_own_deadline_plus_grace() {
        let beat = Heartbeat::new();
        let now = Instant::now();
        assert_eq!(beat.overdue(now + Duration::from_secs(3600)), None);
        beat.beat_within(Duration::from_secs(10));
        assert_eq!(beat.overdue(Instant::now() + Duration::from_secs(14)), None);
        let late = beat.overdue(Instant::now() + Duration::from_secs(20));
        assert!(
            late.is_some_and(|d| d >= Duration::from_secs(4) && d <= Duration::from_secs(6)),
            "{late:?}"
        );
    }
}
