//! Space accounting and backpressure: how many records and bytes are stored and reserved,
//! the limits and the low-water mark, the "full" state, the alert level, and the wake-ups
//! for appenders that wait.
//!
//! One `std::sync::Mutex` guards the depth: a reservation must check and add two quantities
//! (records and bytes) at once against the limits, which two separate atomics cannot do
//! without letting concurrent appenders overshoot. The critical sections are a few
//! additions, so the lock is never held across an `.await` (and only across sled calls in
//! the drop-oldest path, where holding it is what keeps the drop count exact).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Depth in records and encoded bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Amount {
    pub records: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Depth {
    /// In the queue tree (applied by the committer, or found at open).
    stored: Amount,
    /// Admitted by `append`, not yet applied by the committer.
    reserved: Amount,
    /// Set when an append did not fit (block/reject); cleared when the total falls to or
    /// below the low-water mark.
    full: bool,
    /// Follows the stored records against the alert level.
    alert: AlertLevel,
}

/// A change of the alert state, to be logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AlertChange {
    /// The stored records reached the level.
    Raised,
    /// The stored records fell to the clear mark.
    Cleared,
}

/// The alert level as a small state machine, pure so its once-only behaviour is tested
/// directly. Raised when the stored records reach `level`; cleared when they fall to
/// [`AlertLevel::clear_at`] (90 % of the level) or below. The gap keeps a depth that hovers
/// at the level (an uplink that just keeps up) from logging a pair of lines per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct AlertLevel {
    /// 0: off.
    level: u64,
    above: bool,
}

impl AlertLevel {
    /// A level of 0 never raises.
    pub fn new(level: u64) -> AlertLevel {
        AlertLevel {
            level,
            above: false,
        }
    }

    pub fn level(&self) -> u64 {
        self.level
    }

    pub fn above(&self) -> bool {
        self.above
    }

    /// The depth at or below which a raised alert clears: 90 % of the level, rounded down.
    pub fn clear_at(&self) -> u64 {
        percent_of(self.level, 90)
    }

    /// Feeds the current depth; returns the change to log, if the state changed.
    pub fn update(&mut self, records: u64) -> Option<AlertChange> {
        if self.level == 0 {
            return None;
        }
        if !self.above && records >= self.level {
            self.above = true;
            return Some(AlertChange::Raised);
        }
        if self.above && records <= self.clear_at() {
            self.above = false;
            return Some(AlertChange::Cleared);
        }
        None
    }
}

impl Depth {
    fn total(&self) -> Amount {
        Amount {
            records: self.stored.records + self.reserved.records,
            bytes: self.stored.bytes + self.reserved.bytes,
        }
    }
}

/// A copy of the gauges, for `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SpaceSnapshot {
    pub stored: Amount,
    pub reserved: Amount,
    pub full: bool,
    pub alert_records: u64,
    pub above_alert: bool,
}

pub(super) struct Space {
    path: PathBuf,
    max: Amount,
    low: Amount,
    depth: Mutex<Depth>,
    /// Woken when the full state clears (block waiters).
    pub drained: Notify,
    /// Woken after every commit round (drop-oldest waiters whose room is held by appends
    /// still in flight).
    pub committed: Notify,
    pub dropped_records: AtomicU64,
    pub rejected_appends: AtomicU64,
}

/// `value * percent / 100` without overflow.
fn percent_of(value: u64, percent: u8) -> u64 {
    let scaled = u128::from(value) * u128::from(percent.min(100)) / 100;
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

impl Space {
    pub fn new(path: PathBuf, max: Amount, resume_below_percent: u8, stored: Amount) -> Space {
        Space {
            path,
            max,
            low: Amount {
                records: percent_of(max.records, resume_below_percent),
                bytes: percent_of(max.bytes, resume_below_percent),
            },
            depth: Mutex::new(Depth {
                stored,
                ..Depth::default()
            }),
            drained: Notify::new(),
            committed: Notify::new(),
            dropped_records: AtomicU64::new(0),
            rejected_appends: AtomicU64::new(0),
        }
    }

    /// Sets the alert level (0: off) and logs at once if the depth found at open is already
    /// at it.
    pub fn set_alert_level(&self, level: u64) {
        let mut depth = self.lock();
        depth.alert = AlertLevel::new(level);
        self.update_alert(depth);
    }

    /// Feeds the stored depth to the alert level and logs a change (after unlocking).
    fn update_alert(&self, mut depth: MutexGuard<'_, Depth>) {
        let records = depth.stored.records;
        let change = depth.alert.update(records);
        let alert = depth.alert;
        drop(depth);
        match change {
            Some(AlertChange::Raised) => tracing::warn!(
                path = %self.path.display(),
                records,
                alert_records = alert.level(),
                max_records = self.max.records,
                "buffer backlog reached the alert level; is the uplink keeping up?"
            ),
            Some(AlertChange::Cleared) => tracing::info!(
                path = %self.path.display(),
                records,
                alert_records = alert.level(),
                clear_at = alert.clear_at(),
                "buffer backlog back below the alert level"
            ),
            None => {}
        }
    }

    fn lock(&self) -> MutexGuard<'_, Depth> {
        // Nothing panics while holding the lock; if something ever did, the numbers are
        // still the best we have.
        self.depth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The limits.
    pub fn max(&self) -> Amount {
        self.max
    }

    /// Whether an append of `amount` fits in an empty buffer at all.
    pub fn fits_ever(&self, amount: Amount) -> bool {
        amount.records <= self.max.records && amount.bytes <= self.max.bytes
    }

    fn fits(&self, depth: &Depth, amount: Amount) -> bool {
        let total = depth.total();
        total.records.saturating_add(amount.records) <= self.max.records
            && total.bytes.saturating_add(amount.bytes) <= self.max.bytes
    }

    fn at_or_below_low_water(&self, depth: &Depth) -> bool {
        let total = depth.total();
        total.records <= self.low.records && total.bytes <= self.low.bytes
    }

    /// Reserves room for `amount` (block and reject policies). Fails while the buffer is in
    /// the full state (hysteresis: once full, nothing is admitted until the depth is back at
    /// the low-water mark), or when the append does not fit, which sets the full state.
    pub fn try_reserve(&self, amount: Amount) -> bool {
        let mut depth = self.lock();
        if !depth.full && self.fits(&depth, amount) {
            depth.reserved.records += amount.records;
            depth.reserved.bytes += amount.bytes;
            return true;
        }
        if !depth.full {
            depth.full = true;
            let total = depth.total();
            drop(depth);
            tracing::warn!(
                path = %self.path.display(),
                records = total.records,
                bytes = total.bytes,
                max_records = self.max.records,
                max_bytes = self.max.bytes,
                "buffer full: holding appends until it drains to {} records / {} bytes",
                self.low.records,
                self.low.bytes,
            );
        }
        false
    }

    /// Reserves room for `amount` (drop-oldest policy), calling `drop_oldest` under the lock
    /// until it fits. `drop_oldest` removes the oldest durable chunk and returns what it
    /// removed, or `None` when nothing durable is left to drop (the room is held by appends
    /// still in flight; the caller waits for [`Space::committed`] and retries).
    pub fn reserve_dropping<E>(
        &self,
        amount: Amount,
        mut drop_oldest: impl FnMut() -> Result<Option<Amount>, E>,
    ) -> Result<bool, E> {
        let mut depth = self.lock();
        loop {
            if self.fits(&depth, amount) {
                depth.reserved.records += amount.records;
                depth.reserved.bytes += amount.bytes;
                return Ok(true);
            }
            match drop_oldest()? {
                Some(dropped) => {
                    depth.stored.records = depth.stored.records.saturating_sub(dropped.records);
                    depth.stored.bytes = depth.stored.bytes.saturating_sub(dropped.bytes);
                    self.dropped_records
                        .fetch_add(dropped.records, Ordering::Relaxed);
                }
                None => return Ok(false),
            }
        }
    }

    /// The committer applied a round: its reservation is now stored.
    pub fn commit_reserved(&self, amount: Amount) {
        let mut depth = self.lock();
        depth.reserved.records = depth.reserved.records.saturating_sub(amount.records);
        depth.reserved.bytes = depth.reserved.bytes.saturating_sub(amount.bytes);
        depth.stored.records += amount.records;
        depth.stored.bytes += amount.bytes;
        self.update_alert(depth);
    }

    /// A reservation that will never be stored (the commit failed, or the committer is gone).
    pub fn release_reserved(&self, amount: Amount) {
        let mut depth = self.lock();
        depth.reserved.records = depth.reserved.records.saturating_sub(amount.records);
        depth.reserved.bytes = depth.reserved.bytes.saturating_sub(amount.bytes);
        self.maybe_resume(depth);
    }

    /// Chunks left the queue (acked, dropped, quarantined).
    pub fn release_stored(&self, amount: Amount) {
        if amount == Amount::default() {
            return;
        }
        let mut depth = self.lock();
        depth.stored.records = depth.stored.records.saturating_sub(amount.records);
        depth.stored.bytes = depth.stored.bytes.saturating_sub(amount.bytes);
        self.maybe_resume(depth);
    }

    /// Clears the full state at the low-water mark, and follows the alert level down.
    fn maybe_resume(&self, mut depth: MutexGuard<'_, Depth>) {
        if depth.full && self.at_or_below_low_water(&depth) {
            depth.full = false;
            let total = depth.total();
            tracing::info!(
                path = %self.path.display(),
                records = total.records,
                bytes = total.bytes,
                "buffer drained to the low-water mark: accepting appends again"
            );
            self.drained.notify_waiters();
        }
        self.update_alert(depth);
    }

    /// Sets the stored depth to what a reopened database holds (after a failure).
    pub fn reset_stored(&self, stored: Amount) {
        let mut depth = self.lock();
        depth.stored = stored;
        self.maybe_resume(depth);
    }

    /// Whether nothing is stored and nothing is on its way to be (the moment a disk reclaim
    /// may run).
    pub fn is_empty(&self) -> bool {
        let depth = self.lock();
        depth.stored == Amount::default() && depth.reserved == Amount::default()
    }

    pub fn snapshot(&self) -> SpaceSnapshot {
        let depth = self.lock();
        SpaceSnapshot {
            stored: depth.stored,
            reserved: depth.reserved,
            full: depth.full,
            alert_records: depth.alert.level(),
            above_alert: depth.alert.above(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amt(records: u64, bytes: u64) -> Amount {
        Amount { records, bytes }
    }

    #[test]
    fn low_water_is_a_percentage_of_each_limit() {
        let space = Space::new(PathBuf::from("t"), amt(1000, 10_000), 90, Amount::default());
        assert_eq!(space.low, amt(900, 9000));
        let space = Space::new(PathBuf::from("t"), amt(u64::MAX, 7), 150, Amount::default());
        assert_eq!(space.low, amt(u64::MAX, 7));
    }

    #[test]
    fn reservations_never_overshoot_and_full_has_hysteresis() {
        let space = Space::new(PathBuf::from("t"), amt(10, 1000), 50, Amount::default());
        assert!(space.try_reserve(amt(6, 10)));
        assert!(!space.try_reserve(amt(5, 10)), "6 + 5 > 10");
        assert!(space.snapshot().full);
        assert!(!space.try_reserve(amt(1, 1)), "full: nothing admitted");
        space.commit_reserved(amt(6, 10));
        space.release_stored(amt(1, 2)); // 5 left: at the low-water mark
        assert!(!space.snapshot().full);
        assert!(space.try_reserve(amt(5, 10)));
        let snap = space.snapshot();
        assert_eq!(snap.stored, amt(5, 8));
        assert_eq!(snap.reserved, amt(5, 10));
    }

    /// The alert logs once each way: every call that returns `Some` is one log line.
    #[test]
    fn the_alert_level_changes_once_each_way_with_a_gap() {
        let mut alert = AlertLevel::new(10);
        assert_eq!(alert.clear_at(), 9);
        let changes: Vec<Option<AlertChange>> = [0, 9, 10, 11, 50, 10, 10, 9, 9, 0, 9, 10, 10]
            .into_iter()
            .map(|depth| alert.update(depth))
            .collect();
        use AlertChange::{Cleared, Raised};
        assert_eq!(
            changes,
            [
                None,
                None,
                Some(Raised),
                None,
                None,
                None,
                None,
                Some(Cleared),
                None,
                None,
                None,
                Some(Raised),
                None
            ]
        );
        assert!(alert.above());
        // Hovering between the clear mark and the level logs nothing.
        let mut hover = AlertLevel::new(5000);
        assert_eq!(hover.update(5000), Some(Raised));
        for depth in (4501..5200).chain(4501..5000) {
            assert_eq!(hover.update(depth), None, "at {depth}");
        }
        assert_eq!(hover.update(4500), Some(Cleared));
        // Off, and the smallest levels.
        let mut off = AlertLevel::new(0);
        assert!((0..1000).all(|d| off.update(d).is_none()) && !off.above());
        let mut one = AlertLevel::new(1);
        assert_eq!(
            [1, 1, 0, 0, 1].map(|d| one.update(d)),
            [Some(Raised), None, Some(Cleared), None, Some(Raised)]
        );
    }

    #[test]
    fn the_space_follows_the_alert_level_on_stored_records() {
        let space = Space::new(PathBuf::from("t"), amt(100, 10_000), 90, amt(50, 50));
        space.set_alert_level(50);
        assert!(
            space.snapshot().above_alert,
            "raised at open by what is stored"
        );
        space.release_stored(amt(4, 4));
        assert!(space.snapshot().above_alert, "46 > 45, the clear mark");
        space.release_stored(amt(1, 1));
        assert!(!space.snapshot().above_alert);
        assert!(space.try_reserve(amt(10, 10)));
        assert!(
            !space.snapshot().above_alert,
            "reserved records do not count"
        );
        space.commit_reserved(amt(10, 10));
        let snap = space.snapshot();
        assert_eq!((snap.alert_records, snap.above_alert), (50, true));
    }

    #[test]
    fn drop_oldest_drops_until_it_fits() {
        let space = Space::new(PathBuf::from("t"), amt(10, 1000), 90, amt(10, 100));
        let mut chunks = vec![amt(4, 40), amt(3, 30), amt(3, 30)];
        let ok = space
            .reserve_dropping(amt(5, 50), || Ok::<_, ()>(Some(chunks.remove(0))))
            .unwrap();
        assert!(ok);
        assert_eq!(space.dropped_records.load(Ordering::Relaxed), 7);
        assert_eq!(space.snapshot().stored, amt(3, 30));
        let none = space
            .reserve_dropping(amt(9, 1), || Ok::<_, ()>(None))
            .unwrap();
        assert!(!none);
    }
}
