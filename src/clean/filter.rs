//! The per-listener filters: which decoded records are stored, judged against the device's
//! previous STORED record.
//!
//! ```text
//! records of one read ─▶ Filter::apply ─▶ kept records ─▶ buffer.append ─▶ Stored?
//!                          │ (copies of the devices' states, judged in order)     │ yes
//!                          └─ Pending ───────────────────────────────────────▶ Filter::commit
//! ```
//!
//! Rules, in the order they are checked (each off unless configured, see
//! [`FilterSettings`]): a record with an `event` (alarm or event) is always kept; then
//! invalid fix, zero coordinates, device time too far in the future, too far in the past,
//! same position and time as the previous stored record, impossible jump (speed between the
//! previous stored position and this one), minimum period, minimum distance. The first point
//! after the ignition changes (Teltonika AVL 239, GT06 `acc`, an `ignition` io elsewhere) is
//! exempt from the period and distance rules.
//!
//! The device's state (time and position of its previous stored record, its ignition) moves
//! on only once the records are durable ([`Filter::commit`]): a record whose store failed is
//! resent and must not be judged against itself. Period and jump use the absolute time
//! difference, so a backlog arriving older than the last stored record is judged by how far
//! it is from it. State is kept per device for at most `max_devices` devices per listener.

use std::collections::HashMap;
use std::sync::Mutex;

use firmware_protocols::{IoKey, IoValue, Protocol, Record};

use super::config::FilterSettings;

/// Why a record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterReason {
    InvalidFix,
    ZeroCoordinates,
    FutureTime,
    PastTime,
    SamePositionAndTime,
    ImpossibleJump,
    MinPeriod,
    MinDistance,
}

impl FilterReason {
    pub const ALL: [FilterReason; 8] = [
        FilterReason::InvalidFix,
        FilterReason::ZeroCoordinates,
        FilterReason::FutureTime,
        FilterReason::PastTime,
        FilterReason::SamePositionAndTime,
        FilterReason::ImpossibleJump,
        FilterReason::MinPeriod,
        FilterReason::MinDistance,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::InvalidFix => "invalid_fix",
            FilterReason::ZeroCoordinates => "zero_coordinates",
            FilterReason::FutureTime => "future_time",
            FilterReason::PastTime => "past_time",
            FilterReason::SamePositionAndTime => "same_position_and_time",
            FilterReason::ImpossibleJump => "impossible_jump",
            FilterReason::MinPeriod => "min_period",
            FilterReason::MinDistance => "min_distance",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A device's previous stored record, as far as the rules need it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceState {
    /// Device time of the previous stored record that had one.
    time_ms: Option<i64>,
    /// Position and device time of the previous stored record with a usable position.
    fix: Option<(f64, f64, i64)>,
    ignition: Option<bool>,
}

/// Judges one record against its device's state; on `Ok` the state moves on to it.
pub fn judge(s: &FilterSettings, state: &mut DeviceState, r: &Record) -> Result<(), FilterReason> {
    let ignition = ignition(r);
    if r.event.is_none() {
        check(s, state, r, ignition)?;
    }
    if let Some(t) = r.time_ms {
        state.time_ms = Some(t);
        if let (Some(lat), Some(lon)) = (r.lat, r.lon) {
            if r.valid != Some(false) && !(lat == 0.0 && lon == 0.0) {
                state.fix = Some((lat, lon, t));
            }
        }
    }
    if ignition.is_some() {
        state.ignition = ignition;
    }
    Ok(())
}

fn check(
    s: &FilterSettings,
    state: &DeviceState,
    r: &Record,
    ignition: Option<bool>,
) -> Result<(), FilterReason> {
    if s.invalid_fix && r.valid == Some(false) {
        return Err(FilterReason::InvalidFix);
    }
    if s.zero_coordinates && r.lat == Some(0.0) && r.lon == Some(0.0) {
        return Err(FilterReason::ZeroCoordinates);
    }
    let seconds = |v: u64| i64::try_from(v.saturating_mul(1000)).unwrap_or(i64::MAX);
    if let Some(t) = r.time_ms {
        if s.max_future_s > 0 && t > r.received_at_ms.saturating_add(seconds(s.max_future_s)) {
            return Err(FilterReason::FutureTime);
        }
        if s.max_past_s > 0 && t < r.received_at_ms.saturating_sub(seconds(s.max_past_s)) {
            return Err(FilterReason::PastTime);
        }
    }
    let position = r.lat.zip(r.lon);
    let here = position.zip(r.time_ms);
    if let (Some(((lat, lon), t)), Some((plat, plon, pt))) = (here, state.fix) {
        if s.same_position_and_time && t == pt && lat == plat && lon == plon {
            return Err(FilterReason::SamePositionAndTime);
        }
        if s.max_speed_kmh > 0.0 {
            let dt_s = (t.abs_diff(pt) as f64 / 1000.0).max(1.0);
            let kmh = distance_m(plat, plon, lat, lon) / dt_s * 3.6;
            if kmh > s.max_speed_kmh {
                return Err(FilterReason::ImpossibleJump);
            }
        }
    }
    let ignition_changed = matches!((ignition, state.ignition), (Some(a), Some(b)) if a != b);
    if ignition_changed {
        return Ok(());
    }
    if let (Some(t), Some(pt)) = (r.time_ms, state.time_ms) {
        if s.min_period_s > 0 && t.abs_diff(pt) < s.min_period_s.saturating_mul(1000) {
            return Err(FilterReason::MinPeriod);
        }
    }
    if let (Some((lat, lon)), Some((plat, plon, _))) = (position, state.fix) {
        if s.min_distance_m > 0.0 && distance_m(plat, plon, lat, lon) < s.min_distance_m {
            return Err(FilterReason::MinDistance);
        }
    }
    Ok(())
}

/// The ignition a record reports, where its protocol has one: Teltonika AVL id 239, GT06's
/// `acc` bit, an `ignition` io element otherwise (JSON lines).
pub fn ignition(r: &Record) -> Option<bool> {
    let wanted = |k: &IoKey| match r.protocol {
        Protocol::Teltonika | Protocol::TeltonikaUdp => *k == IoKey::Id(239),
        Protocol::Gt06 => matches!(k, IoKey::Name(n) if n == "acc"),
        _ => matches!(k, IoKey::Name(n) if n == "ignition"),
    };
    r.io.iter()
        .find(|(k, _)| wanted(k))
        .and_then(|(_, v)| match v {
            IoValue::U64(v) => Some(*v != 0),
            IoValue::I64(v) => Some(*v != 0),
            IoValue::F64(v) => Some(*v != 0.0),
            IoValue::Text(t) => match t.as_str() {
                "1" | "true" | "on" => Some(true),
                "0" | "false" | "off" => Some(false),
                _ => None,
            },
            IoValue::Bytes(_) => None,
        })
}

/// Great-circle distance in metres (haversine on the mean Earth radius).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().clamp(0.0, 1.0).asin()
}

/// The states a batch of kept records leads to, applied once they are stored.
#[derive(Debug, Default)]
pub struct Pending(Vec<(String, DeviceState)>);

/// One listener's (or serial port's) filter: its settings and its devices' states.
#[derive(Debug)]
pub struct Filter {
    settings: FilterSettings,
    devices: Mutex<HashMap<String, DeviceState>>,
}

impl Filter {
    pub fn new(settings: FilterSettings) -> Filter {
        Filter {
            settings,
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any rule is on (otherwise [`Filter::apply`] keeps everything).
    pub fn is_on(&self) -> bool {
        self.settings.any()
    }

    /// Judges `records` in order; returns the kept ones, each dropped one's reason, and the
    /// states to [`Filter::commit`] once the kept ones are stored.
    pub fn apply(&self, records: Vec<Record>) -> (Vec<Record>, Vec<FilterReason>, Pending) {
        if !self.is_on() {
            return (records, Vec::new(), Pending::default());
        }
        let mut states: Vec<(String, DeviceState)> = Vec::new();
        {
            let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            for r in &records {
                if !states.iter().any(|(d, _)| *d == r.device_id) {
                    let state = devices.get(&r.device_id).copied().unwrap_or_default();
                    states.push((r.device_id.clone(), state));
                }
            }
        }
        let mut kept = Vec::with_capacity(records.len());
        let mut dropped = Vec::new();
        for r in records {
            let Some((_, state)) = states.iter_mut().find(|(d, _)| *d == r.device_id) else {
                kept.push(r);
                continue;
            };
            match judge(&self.settings, state, &r) {
                Ok(()) => kept.push(r),
                Err(reason) => dropped.push(reason),
            }
        }
        (kept, dropped, Pending(states))
    }

    /// [`Filter::apply`], counting each dropped record by its reason.
    pub fn apply_counted(&self, records: Vec<Record>) -> (Vec<Record>, Pending) {
        let (kept, dropped, pending) = self.apply(records);
        for reason in dropped {
            super::metrics::filtered(reason);
        }
        (kept, pending)
    }

    /// The kept records are durable: their devices' states move on.
    pub fn commit(&self, pending: Pending) {
        if pending.0.is_empty() {
            return;
        }
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        for (device, state) in pending.0 {
            if !devices.contains_key(&device) && devices.len() >= self.settings.max_devices {
                // Bounded: forget one device (its next record is judged as its first).
                if let Some(victim) = devices.keys().next().cloned() {
                    devices.remove(&victim);
                }
            }
            devices.insert(device, state);
        }
    }

    /// Devices with a state, for tests.
    #[cfg(test)]
    fn devices(&self) -> usize {
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn at(t_s: i64, lat: f64, lon: f64) -> Record {
        let mut r = Record::new("dev", Protocol::Teltonika, T0 + t_s * 1000);
        r.time_ms = Some(T0 + t_s * 1000);
        r.valid = Some(true);
        r.lat = Some(lat);
        r.lon = Some(lon);
        r
    }

    fn only(f: FilterSettings) -> Filter {
        Filter::new(f)
    }

    /// Applies and commits each record on its own (as if each were stored); the reasons,
    /// `None` for kept.
    fn run(filter: &Filter, records: Vec<Record>) -> Vec<Option<FilterReason>> {
        records
            .into_iter()
            .map(|r| {
                let (kept, dropped, pending) = filter.apply(vec![r]);
                filter.commit(pending);
                if kept.is_empty() {
                    dropped.first().copied()
                } else {
                    None
                }
            })
            .collect()
    }

    use FilterReason::*;

    #[test]
    fn every_rule_is_off_by_default() {
        let f = only(FilterSettings::default());
        let mut bad = at(0, 0.0, 0.0);
        bad.valid = Some(false);
        bad.time_ms = Some(0);
        assert_eq!(run(&f, vec![bad.clone(), bad]), [None, None]);
    }

    #[test]
    fn invalid_fix_zero_coordinates_and_time_limits() {
        let f = only(FilterSettings {
            invalid_fix: true,
            zero_coordinates: true,
            max_future_s: 60,
            max_past_s: 3600,
            ..FilterSettings::default()
        });
        let mut invalid = at(0, 54.0, 25.0);
        invalid.valid = Some(false);
        let mut future = at(0, 54.0, 25.0);
        future.time_ms = Some(T0 + 61_000);
        let mut near_future = at(0, 54.0, 25.0);
        near_future.time_ms = Some(T0 + 60_000);
        let mut past = at(0, 54.0, 25.0);
        past.time_ms = Some(T0 - 3_601_000);
        let mut untimed = at(0, 54.0, 25.0);
        untimed.time_ms = None;
        let mut alarm = at(0, 0.0, 0.0);
        alarm.valid = Some(false);
        alarm.event = Some("sos".into());
        assert_eq!(
            run(
                &f,
                vec![
                    invalid,
                    at(1, 0.0, 0.0),
                    future,
                    near_future,
                    past,
                    untimed,
                    alarm
                ]
            ),
            [
                Some(InvalidFix),
                Some(ZeroCoordinates),
                Some(FutureTime),
                None,
                Some(PastTime),
                None,
                None
            ]
        );
    }

    #[test]
    fn min_period_and_distance_keep_events_and_the_first_point_after_ignition_changes() {
        let f = only(FilterSettings {
            min_period_s: 30,
            min_distance_m: 100.0,
            ..FilterSettings::default()
        });
        let ign = |mut r: Record, on: u64| {
            r.io.push((IoKey::Id(239), IoValue::U64(on)));
            r
        };
        // 0.001° of latitude is about 111 m.
        let mut event = at(50, 54.0, 25.0);
        event.event = Some("io:1".into());
        assert_eq!(
            run(
                &f,
                vec![
                    ign(at(0, 54.0, 25.0), 1),     // first: kept
                    ign(at(10, 54.002, 25.0), 1),  // 10 s later
                    ign(at(40, 54.0001, 25.0), 1), // 40 s, but 11 m
                    ign(at(45, 54.0001, 25.0), 0), // ignition off: kept
                    event,                         // an event: kept
                    ign(at(100, 54.002, 25.0), 0), // 50 s, 222 m: kept
                ]
            ),
            [None, Some(MinPeriod), Some(MinDistance), None, None, None]
        );
    }

    #[test]
    fn same_position_and_time_and_impossible_jumps() {
        let f = only(FilterSettings {
            same_position_and_time: true,
            max_speed_kmh: 300.0,
            ..FilterSettings::default()
        });
        assert_eq!(
            run(
                &f,
                vec![
                    at(0, 54.0, 25.0),
                    at(0, 54.0, 25.0),     // the same again
                    at(10, 55.0, 25.0),    // 111 km in 10 s
                    at(10, 54.0, 25.01),   // 650 m in 10 s: 234 km/h
                    at(3610, 55.0, 25.01), // 111 km in an hour
                ]
            ),
            [
                None,
                Some(SamePositionAndTime),
                Some(ImpossibleJump),
                None,
                None
            ]
        );
    }

    #[test]
    fn state_moves_only_on_commit_and_within_one_batch() {
        let f = only(FilterSettings {
            min_period_s: 30,
            ..FilterSettings::default()
        });
        // Within one read: the second is judged against the first.
        let (kept, dropped, pending) = f.apply(vec![at(0, 54.0, 25.0), at(5, 54.0, 25.0)]);
        assert_eq!(
            (kept.len(), dropped.as_slice()),
            (1, [MinPeriod].as_slice())
        );
        // Not committed (the store failed): the resend is judged as before and kept.
        drop(pending);
        let (kept, _, pending) = f.apply(vec![at(0, 54.0, 25.0)]);
        assert_eq!(kept.len(), 1);
        f.commit(pending);
        let (kept, _, _) = f.apply(vec![at(0, 54.0, 25.0)]);
        assert!(kept.is_empty(), "judged against the committed state");
    }

    #[test]
    fn device_states_are_bounded() {
        let f = only(FilterSettings {
            min_period_s: 30,
            max_devices: 3,
            ..FilterSettings::default()
        });
        for i in 0..10 {
            let mut r = at(0, 54.0, 25.0);
            r.device_id = format!("dev-{i}");
            let (_, _, pending) = f.apply(vec![r]);
            f.commit(pending);
        }
        assert_eq!(f.devices(), 3);
    }

    #[test]
    fn distance_is_great_circle_metres() {
        let d = distance_m(54.0, 25.0, 55.0, 25.0);
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        assert_eq!(distance_m(54.0, 25.0, 54.0, 25.0), 0.0);
    }
}
