//! Fix blocks: parsing the fields a layout names as one (the layout, not this file, says
//! where they are), and checking the values against their documented ranges.
//!
//! ```text
//! fix block = GNSS part (7 fields) + cell part (5 fields)
//!   GNSS: accuracy, speed, azimuth, altitude, longitude, latitude, GNSS UTC time
//!   cell: MCC, MNC, LAC, cell id, reserved
//! ```
//!
//! Position reports carry both parts together; a masked report (GTCAN, GTOBD) carries each
//! part only when its mask bit is set, so the parts parse separately.
//!
//! Shape (a field of the wrong form: the layout does not fit the message) and range (a
//! well-formed value outside what the documents allow) are kept apart: a shape error means
//! the fields are not a fix block at all, and the caller keeps the message without a
//! position; a range error leaves a block whose bad value is dropped and whose record is
//! marked invalid ([`Fix::out_of_range`]).
//!
//! Shapes: accuracy, speed and azimuth unsigned decimals; altitude, longitude and latitude
//! signed decimals, both coordinates or neither; UTC time 14 digits; MCC and MNC up to 4
//! decimal digits; LAC and cell id up to 8 hex digits; any field may be empty.
//!
//! Ranges (fact sheet §3 and the GV300CAN position block table): speed 0–999.9 km/h,
//! azimuth 0–360 (359 documented; 360 is north too), longitude ±180, latitude ±90, the UTC
//! time a real calendar time no later than a day after the gateway's clock.

use super::message::{shorten, Field};
use crate::record::days_from_civil;
use crate::DecodeError;

/// Fields in the GNSS part of a fix block.
pub(super) const GNSS_FIELDS: usize = 7;
/// Fields in the cell part of a fix block.
pub(super) const CELL_FIELDS: usize = 5;

/// The highest documented speed, km/h.
const MAX_SPEED_KMH: f64 = 999.9;
/// How far past the gateway's clock a fix time may be before it is refused (clock drift
/// and time zones aside, a fix cannot come from tomorrow).
const FUTURE_SLACK_MS: i64 = 24 * 3600 * 1000;

/// One parsed fix block (its GNSS part, and its cell part when the message carries one).
#[derive(Debug, Clone, Default)]
pub(super) struct Fix<'a> {
    /// GNSS accuracy: 0 = no current fix (last known position), 1–50 = HDOP.
    pub accuracy: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub azimuth: Option<f64>,
    pub altitude_m: Option<f64>,
    /// Latitude and longitude, degrees; both or neither.
    pub position: Option<(f64, f64)>,
    /// The GNSS UTC time field (14 digits), when present.
    pub utc_text: Option<&'a str>,
    /// That time as ms since the epoch, when it is a real calendar time in range.
    pub utc_ms: Option<i64>,
    pub mcc: Option<u64>,
    pub mnc: Option<u64>,
    pub lac: Option<u64>,
    pub cell_id: Option<u64>,
    /// Cell part field 5: `00` reserved on many models, a value on some.
    pub reserved: &'a str,
    /// Values outside their documented range, dropped from the fields above.
    pub out_of_range: Vec<String>,
}

/// Parses a whole 12-field block, number `fix_no` (1-based, for messages).
pub(super) fn parse_block<'a>(
    block: &[Field<'a>],
    fix_no: usize,
    now_ms: i64,
) -> Result<Fix<'a>, DecodeError> {
    let (gnss, cell) = block.split_at(GNSS_FIELDS.min(block.len()));
    let mut fix = parse_gnss(gnss, fix_no, now_ms)?;
    add_cell(&mut fix, cell, fix_no)?;
    Ok(fix)
}

/// Parses the 7 GNSS fields.
pub(super) fn parse_gnss<'a>(
    gnss: &[Field<'a>],
    fix_no: usize,
    now_ms: i64,
) -> Result<Fix<'a>, DecodeError> {
    let [acc, speed, azimuth, alt, lon, lat, time] = gnss else {
        return Err(short(gnss, fix_no, "GNSS part", GNSS_FIELDS));
    };
    let dec = |field: &Field<'_>, name: &str, signed: bool, expected: &str| {
        shape(field, fix_no, name, decimal(field.text, signed), expected)
    };
    let mut fix = Fix {
        accuracy: dec(acc, "GNSS accuracy", false, "an unsigned decimal")?,
        speed_kmh: dec(speed, "speed", false, "an unsigned decimal (km/h)")?,
        azimuth: dec(azimuth, "azimuth", false, "an unsigned decimal (degrees)")?,
        altitude_m: dec(alt, "altitude", true, "a signed decimal (m)")?,
        utc_text: shape(
            time,
            fix_no,
            "GNSS UTC time",
            digits14(time.text),
            "YYYYMMDDHHMMSS",
        )?,
        ..Fix::default()
    };
    let lon_v = dec(lon, "longitude", true, "signed decimal degrees")?;
    let lat_v = dec(lat, "latitude", true, "signed decimal degrees")?;
    fix.position = match (lat_v, lon_v) {
        (Some(la), Some(lo)) => Some((la, lo)),
        (None, None) => None,
        _ => {
            let missing = if lat.is_empty() { lat } else { lon };
            return Err(DecodeError::new(
                missing.offset,
                format!(
                    "fix {fix_no}: longitude {:?} and latitude {:?}: one is empty",
                    shorten(lon.text),
                    shorten(lat.text)
                ),
            ));
        }
    };
    fix.utc_ms = fix.utc_text.and_then(utc_ms);
    check_ranges(&mut fix, now_ms);
    Ok(fix)
}

/// Parses the 5 cell fields into `fix`.
pub(super) fn add_cell<'a>(
    fix: &mut Fix<'a>,
    cell: &[Field<'a>],
    fix_no: usize,
) -> Result<(), DecodeError> {
    let [mcc, mnc, lac, cell_id, reserved] = cell else {
        return Err(short(cell, fix_no, "cell part", CELL_FIELDS));
    };
    // MCC and MNC are decimal, LAC and cell id hex (fact sheet §3).
    let number = |field: &Field<'_>, name: &str, hex: bool| {
        let (len, radix, expected) = if hex {
            (8, 16, "up to 8 hex digits")
        } else {
            (4, 10, "up to 4 decimal digits")
        };
        shape(field, fix_no, name, uint(field.text, len, radix), expected)
    };
    fix.mcc = number(mcc, "MCC", false)?;
    fix.mnc = number(mnc, "MNC", false)?;
    fix.lac = number(lac, "LAC", true)?;
    fix.cell_id = number(cell_id, "cell id", true)?;
    fix.reserved = reserved.text;
    Ok(())
}

/// Drops every value outside its documented range, noting why.
fn check_ranges(fix: &mut Fix<'_>, now_ms: i64) {
    if let Some((lat, lon)) = fix.position {
        if lat.abs() > 90.0 || lon.abs() > 180.0 {
            fix.out_of_range.push(format!(
                "latitude {lat} / longitude {lon} outside ±90 / ±180"
            ));
            fix.position = None;
        }
    }
    if let Some(speed) = fix.speed_kmh.filter(|&s| s > MAX_SPEED_KMH) {
        fix.out_of_range
            .push(format!("speed {speed} km/h above {MAX_SPEED_KMH}"));
        fix.speed_kmh = None;
    }
    if let Some(course) = fix.azimuth.filter(|&c| c > 360.0) {
        fix.out_of_range.push(format!("azimuth {course} above 360"));
        fix.azimuth = None;
    }
    if fix
        .utc_ms
        .is_some_and(|t| t > now_ms.saturating_add(FUTURE_SLACK_MS))
    {
        fix.out_of_range.push(format!(
            "GNSS UTC time {} is more than a day after the gateway's clock",
            fix.utc_text.unwrap_or_default()
        ));
        fix.utc_ms = None;
    }
}

/// `parsed`: `Some(Some(v))` a value, `Some(None)` an empty field, `None` malformed.
fn shape<T>(
    field: &Field<'_>,
    fix_no: usize,
    name: &str,
    parsed: Option<Option<T>>,
    expected: &str,
) -> Result<Option<T>, DecodeError> {
    parsed.ok_or_else(|| {
        DecodeError::new(
            field.offset,
            format!(
                "fix {fix_no}: {name} {:?} (field {}) is not {expected}",
                shorten(field.text),
                field.number
            ),
        )
    })
}

#[cold]
fn short(fields: &[Field<'_>], fix_no: usize, part: &str, wanted: usize) -> DecodeError {
    let offset = fields.first().map_or(0, |f| f.offset);
    DecodeError::new(
        offset,
        format!(
            "fix {fix_no}: {} fields where the {part} has {wanted}",
            fields.len()
        ),
    )
}

/// A decimal such as `4.3`, `-70.0`, `121.354335` or `92`: digits, at most one point with
/// digits on both sides, a leading `-` when `signed`. `Some(None)` for an empty field,
/// `None` when malformed. (`str::parse::<f64>` alone would take `inf`, `1e5` or `+1`.)
pub(super) fn decimal(text: &str, signed: bool) -> Option<Option<f64>> {
    if text.is_empty() {
        return Some(None);
    }
    let digits = match text.strip_prefix('-') {
        Some(rest) if signed => rest,
        Some(_) => return None,
        None => text,
    };
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return None;
    }
    text.parse::<f64>().ok().map(Some)
}

/// Up to `max_len` digits in `radix`: `Some(None)` when empty, `None` when malformed.
pub(super) fn uint(text: &str, max_len: usize, radix: u32) -> Option<Option<u64>> {
    if text.is_empty() {
        return Some(None);
    }
    if text.len() > max_len || !text.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok().map(Some)
}

fn digits14(text: &str) -> Option<Option<&str>> {
    if text.is_empty() {
        Some(None)
    } else if text.len() == 14 && text.bytes().all(|c| c.is_ascii_digit()) {
        Some(Some(text))
    } else {
        None
    }
}

/// `YYYYMMDDHHMMSS` (UTC) as ms since the epoch; `None` for a date that does not exist.
pub(super) fn utc_ms(text: &str) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(8..10)?, num(10..12)?, num(12..14)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}
