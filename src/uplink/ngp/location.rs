//! `location`: the record's position fields with NGP's range rules (see [`super::encode`]'s
//! field table). No position (missing, out of range, or 0/0) means no `location` at all.

use firmware_protocols::Record;
use serde_json::{Map, Value};

use super::{float, ALTITUDE_RANGE_M, MAX_SATELLITES};

/// `location.heading` for a course in degrees: rounded to a whole degree, taken modulo 360,
/// and 0 written as 360, because the range is "1 … 360" (north is 360, as in the sheet's
/// example with `"heading": 360`). So 0 → 360, 0.4 → 360, 0.5 → 1, 359.4 → 359,
/// 359.6 → 360, 360 → 360, −90 → 270, 450 → 90. `None` for NaN and ±∞.
pub fn heading(course_deg: f64) -> Option<u16> {
    if !course_deg.is_finite() {
        return None;
    }
    // rem_euclid of a tiny negative value can round up to exactly 360.0.
    let whole = course_deg.rem_euclid(360.0).round();
    if whole <= 0.0 || whole >= 360.0 {
        Some(360)
    } else {
        // 1.0..=359.0 here, so the cast is exact.
        Some(whole as u16)
    }
}

/// The `location` object, or `None` without a usable position.
pub(super) fn location(
    record: &Record,
    gnss_time: Option<String>,
    pdop: Option<f64>,
) -> Option<Map<String, Value>> {
    let latitude = record.lat.filter(|v| (-90.0..=90.0).contains(v))?;
    let longitude = record.lon.filter(|v| (-180.0..=180.0).contains(v))?;
    if latitude == 0.0 && longitude == 0.0 {
        return None;
    }
    let mut location = Map::new();
    if let Some(time) = gnss_time {
        location.insert("gnss_time".into(), Value::String(time));
    }
    match record.valid {
        Some(true) => {
            location.insert("fix_type".into(), "HAS_FIX".into());
        }
        Some(false) => {
            location.insert("fix_type".into(), "LAST_KNOWN_POSITION".into());
        }
        None => {}
    }
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            location.insert(name.into(), value);
        }
    };
    put("latitude", float(latitude));
    put("longitude", float(longitude));
    put(
        "altitude",
        record
            .altitude_m
            .filter(|v| ALTITUDE_RANGE_M.contains(v))
            .and_then(float),
    );
    put(
        "speed",
        record.speed_kmh.filter(|v| *v >= 0.0).and_then(float),
    );
    put(
        "heading",
        record.course_deg.and_then(heading).map(Value::from),
    );
    put(
        "satellites",
        record
            .satellites
            .map(|s| Value::from(s.min(MAX_SATELLITES))),
    );
    put("hdop", record.hdop.filter(|v| *v >= 0.0).and_then(float));
    put("pdop", pdop.filter(|v| *v >= 0.0).and_then(float));
    Some(location)
}
