//! `[dedup]` and each listener's (and serial port's) `filter` table: fields, defaults and
//! validation. Documented once here and in `fleetedge.example.toml`.

use serde::{Deserialize, Serialize};

use crate::buffer::DedupOptions;

/// `[dedup]`: duplicate suppression at ingest (`buffer/dedup.rs`).
///
/// On by default: a resent frame is the most common source of double records at the cloud,
/// the cost is one 64-bit hash per record and a few bytes per commit round (see the README's
/// Benchmarks), and nothing a device sent once is lost by it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSettings {
    /// Acknowledge but do not store a record identical to one already stored for its device
    /// (same device, device time and content; records without a device time are always
    /// stored). Default true.
    pub enabled: bool,
    /// Records remembered per device (its last stored ones). Default 256 (one Teltonika
    /// frame at its largest); 1 to 65536.
    pub per_device: usize,
    /// Records remembered for all devices together (the oldest commit rounds are forgotten
    /// first); about 24 bytes of memory and 8 on disk each. Default 65536; at least
    /// `per_device`, at most 16777216.
    pub total: usize,
}

impl Default for DedupSettings {
    fn default() -> Self {
        let d = DedupOptions::default();
        DedupSettings {
            enabled: true,
            per_device: d.per_device,
            total: d.total,
        }
    }
}

impl DedupSettings {
    /// The buffer's options: `None` when off.
    pub fn options(&self) -> Option<DedupOptions> {
        self.enabled.then_some(DedupOptions {
            per_device: self.per_device,
            total: self.total,
        })
    }

    /// Problems, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=65_536).contains(&self.per_device) {
            problems.push(format!(
                "dedup.per_device: {} must be between 1 and 65536",
                self.per_device
            ));
        }
        if self.total < self.per_device || self.total > 1 << 24 {
            problems.push(format!(
                "dedup.total: {} must be between dedup.per_device ({}) and 16777216",
                self.total, self.per_device
            ));
        }
        problems
    }
}

/// A listener's or serial port's `filter` table. Every rule is off by default. Alarms and
/// events (records with an `event`) are never filtered; a filtered record's device is
/// answered as if it was stored. Rules are checked in this order and the first that drops a
/// record names the reason in `fleetedge_records_filtered_total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSettings {
    /// Drop records whose fix is marked invalid (`valid = false`). Default false.
    pub invalid_fix: bool,
    /// Drop records at latitude 0 and longitude 0 (a receiver without a fix). Default false.
    pub zero_coordinates: bool,
    /// Drop records whose device time is more than this many seconds after the gateway's
    /// receive time. 0 (default): off.
    pub max_future_s: u64,
    /// Drop records whose device time is more than this many seconds before the receive
    /// time (beware: a device emptying its backlog after an outage sends old records).
    /// 0 (default): off.
    pub max_past_s: u64,
    /// Drop a record with the same device time and position as the device's previous
    /// stored record. Default false.
    pub same_position_and_time: bool,
    /// Impossible jumps: drop a record whose distance from the device's previous stored
    /// position, over the time between them (at least 1 s), means a speed above this, km/h.
    /// 0 (default): off.
    pub max_speed_kmh: f64,
    /// Drop a record less than this many seconds (device time) after the device's previous
    /// stored record. 0 (default): off.
    pub min_period_s: u64,
    /// Drop a record less than this many metres from the device's previous stored
    /// position. 0 (default): off.
    pub min_distance_m: f64,
    /// Devices whose previous stored record is remembered per listener; beyond it one is
    /// forgotten (its next record is judged as its first). Default 10000; 1 to 1000000.
    pub max_devices: usize,
}

/// Default [`FilterSettings::max_devices`].
pub const DEFAULT_FILTER_MAX_DEVICES: usize = 10_000;

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings {
            invalid_fix: false,
            zero_coordinates: false,
            max_future_s: 0,
            max_past_s: 0,
            same_position_and_time: false,
            max_speed_kmh: 0.0,
            min_period_s: 0,
            min_distance_m: 0.0,
            max_devices: DEFAULT_FILTER_MAX_DEVICES,
        }
    }
}

/// Longest `max_future_s` / `max_past_s` / `min_period_s`: ten years.
const MAX_SECONDS: u64 = 10 * 366 * 86_400;

impl FilterSettings {
    /// Whether any rule is on.
    pub fn any(&self) -> bool {
        self.invalid_fix
            || self.zero_coordinates
            || self.max_future_s > 0
            || self.max_past_s > 0
            || self.same_position_and_time
            || self.max_speed_kmh > 0.0
            || self.min_period_s > 0
            || self.min_distance_m > 0.0
    }

    /// Problems, each naming its key under `prefix` (`listeners[0].filter`).
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("max_future_s", self.max_future_s),
            ("max_past_s", self.max_past_s),
            ("min_period_s", self.min_period_s),
        ] {
            if value > MAX_SECONDS {
                problems.push(format!(
                    "{prefix}.{key}: {value} must be at most {MAX_SECONDS} (ten years)"
                ));
            }
        }
        for (key, value, max) in [
            ("max_speed_kmh", self.max_speed_kmh, 100_000.0),
            ("min_distance_m", self.min_distance_m, 1_000_000.0),
        ] {
            if !(value.is_finite() && (0.0..=max).contains(&value)) {
                problems.push(format!(
                    "{prefix}.{key}: {value} must be between 0 and {max}"
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.max_devices) {
            problems.push(format!(
                "{prefix}.max_devices: {} must be between 1 and 1000000",
                self.max_devices
            ));
        }
        problems
    }
}

impl crate::config::Settings {
    /// `[dedup]`'s and every `filter` table's problems.
    pub(crate) fn clean_problems(&self) -> Vec<String> {
        let mut problems = self.dedup.validate();
        for (i, l) in self.listeners.iter().enumerate() {
            problems.extend(l.filter.validate(&format!("listeners[{i}].filter")));
        }
        for (i, s) in self.serial.iter().enumerate() {
            problems.extend(s.filter.validate(&format!("serial[{i}].filter")));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_filters_off_and_dedup_on() {
        assert!(DedupSettings::default().validate().is_empty());
        assert!(DedupSettings::default().options().is_some());
        let f = FilterSettings::default();
        assert!(f.validate("listeners[0].filter").is_empty());
        assert!(!f.any());
    }

    #[test]
    fn bad_values_name_their_key() {
        let d = DedupSettings {
            per_device: 0,
            total: 10,
            ..DedupSettings::default()
        };
        let problems = d.validate().join("\n");
        assert!(problems.contains("dedup.per_device: 0"), "{problems}");
        let f = FilterSettings {
            max_speed_kmh: f64::NAN,
            min_distance_m: -1.0,
            max_past_s: u64::MAX,
            max_devices: 0,
            ..FilterSettings::default()
        };
        let problems = f.validate("serial[1].filter").join("\n");
        for key in [
            "max_speed_kmh",
            "min_distance_m",
            "max_past_s",
            "max_devices",
        ] {
            assert!(
                problems.contains(&format!("serial[1].filter.{key}:")),
                "{problems}"
            );
        }
    }
}
