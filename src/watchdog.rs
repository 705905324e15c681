//! The service watchdog: `WATCHDOG=1` is sent only while every stage of the pipeline is
//! making progress, so systemd (`WatchdogSec`) restarts a gateway that is wedged rather than
//! one that is merely idle or waiting for a broker.
//!
//! What counts as progress, per stage:
//!
//! ```text
//! stage           healthy when                                    stuck looks like
//! ─────────────   ─────────────────────────────────────────────   ─────────────────────────
//! commit thread   running, and its current round (write + fsync)   fsync on a hung eMMC/SD,
//!                 or disk reclaim is younger than 60 s; waiting    a deadlock in sled
//!                 for work is not a round
//! buffer writes   not failing for 60 s while the disk has room     EIO, a database that
//!                 (failing on a full disk is waiting for space,    will not reopen
//!                 like a full buffer: a restart would not help)
//! uplink task     it beat before the deadline it set itself:       a blocking call on its
//!                 each wait it enters is bounded, and it names     task, a lost wake-up
//!                 the bound (publish loop: 5 s ticks; connect:
//!                 connect_timeout_s; backoff: the delay), + 30 s
//! MQTT session    (not here) a batch unacknowledged for            a broker that takes
//!                 write_timeout_s + keep_alive_s ends the          PINGREQs but never
//!                 connection, so the uplink retries                PUBACKs
//! async runtime   this check runs at all                           every worker blocked
//! ```
//!
//! Idleness never looks stuck: a commit thread with nothing to do is not in a round, and an
//! uplink waiting for a broker is inside a bounded wait it announced. A full buffer (devices
//! waiting under `block`) is not stuck either. The limits are generous because a false stall
//! restarts a healthy gateway: a slow SD card may take many seconds to fsync a burst.
//!
//! [`check`] is the decision, pure and tested with plain `#[test]`s; [`feed`] is the task that
//! probes the buffer and the uplink's [`Heartbeat`] and pings every quarter `WatchdogSec`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::notify::Notifier;

/// A stage's promise to beat again before a deadline it sets itself.
pub struct Heartbeat {
    /// Milliseconds after [`epoch`] by which the next beat is due; 0 = not started.
    due_ms: AtomicU64,
}

/// What the uplink promises (see the module doc).
pub static UPLINK: Heartbeat = Heartbeat::new();

/// Slack on every deadline the uplink sets: its loop does synchronous buffer reads and zstd
/// work between waits, and a loaded 2-core gateway on an SD card can be slow at both.
const GRACE: Duration = Duration::from_secs(30);

/// Longest commit round (or disk reclaim) that still counts as progress.
pub const COMMIT_STALL_LIMIT: Duration = Duration::from_secs(60);

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
    /// How long the commit thread has been on its current round, if it is on one.
    pub commit_busy_for: Option<Duration>,
    /// How long the buffer's writes have been failing while the disk had room.
    pub buffer_failing_for: Option<Duration>,
    pub uplink_overdue: Option<Duration>,
}

/// Why the watchdog is not fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stall {
    CommitterStopped,
    CommitStuck { busy_for: Duration },
    BufferFailing { failing_for: Duration },
    UplinkStuck { overdue: Duration },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::CommitterStopped => write!(f, "the buffer's commit thread has stopped"),
            Stall::CommitStuck { busy_for } => write!(
                f,
                "the buffer's commit thread has been on one round for {} s (is the disk hung?)",
                busy_for.as_secs()
            ),
            Stall::BufferFailing { failing_for } => write!(
                f,
                "the buffer's writes have failed for {} s with room on the disk (is the disk \
                 failing?)",
                failing_for.as_secs()
            ),
            Stall::UplinkStuck { overdue } => write!(
                f,
                "the uplink task is {} ms past its own deadline",
                overdue.as_millis()
            ),
        }
    }
}

/// Whether to ping now.
pub fn check(probe: Probe) -> Result<(), Stall> {
    if !probe.committer_alive {
        return Err(Stall::CommitterStopped);
    }
    if let Some(busy_for) = probe.commit_busy_for.filter(|&d| d > COMMIT_STALL_LIMIT) {
        return Err(Stall::CommitStuck { busy_for });
    }
    if let Some(failing_for) = probe.buffer_failing_for.filter(|&d| d > COMMIT_STALL_LIMIT) {
        return Err(Stall::BufferFailing { failing_for });
    }
    if let Some(overdue) = probe.uplink_overdue {
        return Err(Stall::UplinkStuck { overdue });
    }
    Ok(())
}

/// Pings every quarter `interval` while [`check`] passes; logs a stall once when it
/// begins and once when it ends. Once `stopping` turns true it pings unconditionally: the
/// stop is bounded by the gateway's own timeouts and by systemd's `TimeoutStopSec`, and the
/// uplink's heartbeat ends with its task.
pub async fn feed(
    notifier: &Notifier,
    buffer: Buffer,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    // systemd's own advice is half; a quarter leaves room for a late tick on a busy gateway.
    let every = (interval / 4).max(Duration::from_millis(100));
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
            commit_busy_for: buffer.commit_busy_for(),
            buffer_failing_for: buffer.failing_with_room_for(),
            uplink_overdue: UPLINK.overdue(Instant::now()),
        };
        match check(probe) {
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

    fn probe(commit_busy_for: Option<Duration>) -> Probe {
        Probe {
            committer_alive: true,
            commit_busy_for,
            buffer_failing_for: None,
            uplink_overdue: None,
        }
    }

    #[test]
    fn idle_busy_and_slow_commits_are_fed() {
        assert_eq!(check(probe(None)), Ok(()));
        assert_eq!(check(probe(Some(Duration::from_millis(3)))), Ok(()));
        // A slow SD card fsyncing a burst is not a stall.
        assert_eq!(check(probe(Some(Duration::from_secs(45)))), Ok(()));
        assert_eq!(check(probe(Some(COMMIT_STALL_LIMIT))), Ok(()));
    }

    #[test]
    fn a_round_past_the_limit_a_stopped_committer_or_an_overdue_uplink_is_a_stall() {
        let long = COMMIT_STALL_LIMIT + Duration::from_secs(1);
        assert_eq!(
            check(probe(Some(long))),
            Err(Stall::CommitStuck { busy_for: long })
        );
        let mut p = probe(None);
        p.committer_alive = false;
        assert_eq!(check(p), Err(Stall::CommitterStopped));
        let mut p = probe(None);
        p.buffer_failing_for = Some(COMMIT_STALL_LIMIT);
        assert_eq!(
            check(p),
            Ok(()),
            "failing a short while: it is being reopened"
        );
        p.buffer_failing_for = Some(long);
        assert_eq!(check(p), Err(Stall::BufferFailing { failing_for: long }));
        let mut p = probe(None);
        p.uplink_overdue = Some(Duration::from_millis(1500));
        assert_eq!(
            check(p),
            Err(Stall::UplinkStuck {
                overdue: Duration::from_millis(1500)
            })
        );
    }

    #[test]
    fn a_heartbeat_is_overdue_only_after_its_own_deadline_plus_grace() {
        let beat = Heartbeat::new();
        let now = Instant::now();
        assert_eq!(beat.overdue(now + Duration::from_secs(3600)), None);
        beat.beat_within(Duration::from_secs(10));
        let at = |s| Instant::now() + Duration::from_secs(s);
        assert_eq!(beat.overdue(at(10 + GRACE.as_secs() - 1)), None);
        let late = beat.overdue(at(10 + GRACE.as_secs() + 5));
        assert!(
            late.is_some_and(|d| d >= Duration::from_secs(4) && d <= Duration::from_secs(6)),
            "{late:?}"
        );
    }
}
