//! One SD-style (10 fields) or D-style (16 fields) body into a [`Record`]: the body of an
//! `#SD#` or `#D#` packet, or one message of a `#B#` black box. The caller has already taken
//! off a v2.0 CRC.
//!
//! Every field is checked against its grammar and range; the first bad one refuses the whole
//! body with the fault class the protocol answers (time, coordinates, speed/course/height, …).

use super::fields::{bad, decimal, signed, split, text_value, unsigned, Bad, Fault, Field};
use crate::record::days_from_civil;
use crate::{IoKey, IoValue, Protocol, Record};

/// Fields of a short data body.
pub(super) const SD_FIELDS: usize = 10;
/// Fields of an extended data body.
pub(super) const D_FIELDS: usize = 16;

/// What every record of a packet shares.
pub(super) struct Context<'a> {
    pub device_id: &'a str,
    pub now_ms: i64,
}

/// The bodies a packet type allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `#SD#`: exactly 10 fields.
    Short,
    /// `#D#`: exactly 16 fields.
    Extended,
    /// A black box message: either.
    Either,
}

/// Minimum satellites for a fix worth calling valid (3 = a 2D fix).
const MIN_FIX_SATELLITES: u8 = 3;

/// Parses `text`, which starts at frame offset `at`.
pub(super) fn parse(
    text: &[u8],
    at: usize,
    shape: Shape,
    ctx: &Context<'_>,
) -> Result<Record, Bad> {
    let (count, fields) = split::<D_FIELDS>(text, b';', at);
    let extended = match (shape, count) {
        (Shape::Short | Shape::Either, SD_FIELDS) => false,
        (Shape::Extended | Shape::Either, D_FIELDS) => true,
        _ => return Err(field_count(shape, count, at)),
    };
    let [date, time, lat, lat_hemi, lon, lon_hemi, speed, course, height, sats, hdop, inputs, outputs, adc, ibutton, params] =
        fields;

    let mut r = Record::new(ctx.device_id, Protocol::Wialon, ctx.now_ms);
    r.time_ms = device_time(date, time)?;
    let lat = coordinate(lat, lat_hemi, &LATITUDE)?;
    let lon = coordinate(lon, lon_hemi, &LONGITUDE)?;
    let position = match (lat, lon) {
        (Some(lat), Some(lon)) => Some((lat, lon)),
        (None, None) => None,
        (Some(_), None) => return Err(half_position(lon_hemi.at, "longitude")),
        (None, Some(_)) => return Err(half_position(lat_hemi.at, "latitude")),
    };
    r.speed_kmh = number(speed, "speed", Fault::Motion, non_negative)?;
    r.course_deg = number(course, "course", Fault::Motion, |t| {
        decimal(t, false).filter(|c| *c <= 360.0)
    })?;
    r.altitude_m = number(height, "height", Fault::Motion, |t| decimal(t, true))?;
    r.satellites = number(sats, "sats", Fault::Satellites, |t| {
        unsigned(t).and_then(|s| u8::try_from(s).ok())
    })?;
    // 0000.0000;N;00000.0000;E is what devices send without a fix: no position, not (0, 0).
    let position = position.filter(|&(lat, lon)| lat != 0.0 || lon != 0.0);
    r.valid = match (position, r.satellites) {
        (None, _) => Some(false),
        (Some(_), Some(sats)) => Some(sats >= MIN_FIX_SATELLITES),
        (Some(_), None) => None,
    };
    if let Some((lat, lon)) = position {
        r.lat = Some(lat);
        r.lon = Some(lon);
    }
    if !extended {
        return Ok(r);
    }

    r.hdop = number(hdop, "hdop", Fault::Satellites, non_negative)?;
    // Bounded by the fields' own text: each list item needs at least one byte.
    let mut io = Vec::with_capacity(3 + list_len(adc.text) + list_len(params.text));
    for (name, field) in [("inputs", inputs), ("outputs", outputs)] {
        if let Some(mask) = number(field, name, Fault::InputsOutputs, unsigned)? {
            io.push((IoKey::Name(name.to_owned()), IoValue::U64(mask)));
        }
    }
    adc_values(adc, &mut io)?;
    if !ibutton.is_absent() {
        io.push((IoKey::Name("ibutton".to_owned()), text_value(ibutton.text)));
    }
    params_values(params, &mut io)?;
    r.io = io;
    Ok(r)
}

#[cold]
#[inline(never)]
fn field_count(shape: Shape, count: usize, at: usize) -> Bad {
    let expected = match shape {
        Shape::Short => "10 (SD)",
        Shape::Extended => "16 (D)",
        Shape::Either => "10 (SD-style) or 16 (D-style)",
    };
    bad(
        Fault::Structure,
        at,
        format!("{count} fields, expected {expected}"),
    )
}

#[cold]
#[inline(never)]
fn half_position(at: usize, missing: &str) -> Bad {
    bad(
        Fault::Coordinates,
        at,
        format!("{missing} is NA but the other coordinate is not"),
    )
}

/// An optional field: absent is `None`, present must parse.
fn number<T>(
    field: Field<'_>,
    name: &str,
    fault: Fault,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Result<Option<T>, Bad> {
    if field.is_absent() {
        return Ok(None);
    }
    match parse(field.text) {
        Some(v) => Ok(Some(v)),
        None => Err(bad(
            fault,
            field.at,
            format!(
                "{name} \"{}\" is out of range or not a number",
                field.show()
            ),
        )),
    }
}

fn non_negative(text: &[u8]) -> Option<f64> {
    decimal(text, false)
}

/// Items in a comma list, as an allocation hint that the text itself bounds.
fn list_len(text: &[u8]) -> usize {
    if text.is_empty() {
        0
    } else {
        text.iter().filter(|&&b| b == b',').count() + 1
    }
}

/// Date `DDMMYY` and time `HHMMSS[.fraction]`, UTC; both absent is "no device time".
fn device_time(date: Field<'_>, time: Field<'_>) -> Result<Option<i64>, Bad> {
    match (date.is_absent(), time.is_absent()) {
        (true, true) => return Ok(None),
        (true, false) => {
            return Err(bad(
                Fault::Time,
                date.at,
                "date is NA but time is not".into(),
            ))
        }
        (false, true) => {
            return Err(bad(
                Fault::Time,
                time.at,
                "time is NA but date is not".into(),
            ))
        }
        (false, false) => {}
    }
    let bad_date = || {
        bad(
            Fault::Time,
            date.at,
            format!("date \"{}\" is not a DDMMYY date", date.show()),
        )
    };
    let [day, month, year] = two_digit_groups(date.text).ok_or_else(bad_date)?;
    let (year, month, day) = (2000 + i64::from(year), i64::from(month), i64::from(day));
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad_date());
    }

    let bad_time = || {
        bad(
            Fault::Time,
            time.at,
            format!("time \"{}\" is not an HHMMSS[.fraction] time", time.show()),
        )
    };
    let (hms, fraction) = match time.text.iter().position(|&b| b == b'.') {
        Some(dot) => (
            time.text.get(..dot).unwrap_or_default(),
            time.text.get(dot + 1..),
        ),
        None => (time.text, None),
    };
    let [hour, minute, second] = two_digit_groups(hms).ok_or_else(bad_time)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad_time());
    }
    // v2.1 allows up to nanoseconds; records keep milliseconds.
    let millis = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.iter().all(u8::is_ascii_digit) => f
            .iter()
            .chain(b"00")
            .take(3)
            .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0')),
        Some(_) => return Err(bad_time()),
    };
    let seconds = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Ok(Some(
        days_from_civil(year, month, day) * 86_400_000 + seconds * 1000 + millis,
    ))
}

/// Six ASCII digits as three two-digit numbers.
fn two_digit_groups(text: &[u8]) -> Option<[u8; 3]> {
    let &[a, b, c, d, e, f] = text else {
        return None;
    };
    let pair = |hi: u8, lo: u8| {
        (hi.is_ascii_digit() && lo.is_ascii_digit()).then(|| (hi - b'0') * 10 + (lo - b'0'))
    };
    Some([pair(a, b)?, pair(c, d)?, pair(e, f)?])
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Axis {
    name: &'static str,
    max: f64,
    positive: u8,
    negative: u8,
}

const LATITUDE: Axis = Axis {
    name: "latitude",
    max: 90.0,
    positive: b'N',
    negative: b'S',
};

const LONGITUDE: Axis = Axis {
    name: "longitude",
    max: 180.0,
    positive: b'E',
    negative: b'W',
};

/// `DDMM.MMMM` / `DDDMM.MMMM` plus its hemisphere letter, in signed degrees. Degrees end two
/// digits before the point, so unpadded values (`544.6025` = 5°44.6025') read correctly.
fn coordinate(value: Field<'_>, hemisphere: Field<'_>, axis: &Axis) -> Result<Option<f64>, Bad> {
    if value.is_absent() {
        return Ok(None);
    }
    let sign = match hemisphere.text {
        [h] if *h == axis.positive => 1.0,
        [h] if *h == axis.negative => -1.0,
        _ => {
            return Err(bad(
                Fault::Coordinates,
                hemisphere.at,
                format!(
                    "{} hemisphere \"{}\" is not {} or {}",
                    axis.name,
                    hemisphere.show(),
                    char::from(axis.positive),
                    char::from(axis.negative)
                ),
            ))
        }
    };
    let whole = value
        .text
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(value.text.len());
    let split_at = whole.saturating_sub(2);
    let degrees_text = value.text.get(..split_at).unwrap_or_default();
    let minutes_text = value.text.get(split_at..).unwrap_or_default();
    let degrees = if degrees_text.is_empty() {
        Some(0)
    } else {
        unsigned(degrees_text)
    };
    let degrees = match (degrees, decimal(minutes_text, false)) {
        (Some(d), Some(m)) if m < 60.0 => d as f64 + m / 60.0,
        _ => {
            return Err(bad(
                Fault::Coordinates,
                value.at,
                format!(
                    "{} \"{}\" is not degrees and minutes (DDMM.MMMM)",
                    axis.name,
                    value.show()
                ),
            ))
        }
    };
    if degrees > axis.max {
        return Err(bad(
            Fault::Coordinates,
            value.at,
            format!(
                "{} \"{}\" is {degrees}°, beyond {}°",
                axis.name,
                value.show(),
                axis.max
            ),
        ));
    }
    // No negative zero: 0°S is the equator like 0°N.
    Ok(Some(if degrees == 0.0 { 0.0 } else { sign * degrees }))
}

/// `adc`: decimal values separated by commas, named `adc1`, `adc2`, … by position; an `NA`
/// or empty item is an absent input and keeps its number.
fn adc_values(field: Field<'_>, io: &mut Vec<(IoKey, IoValue)>) -> Result<(), Bad> {
    if field.is_absent() {
        return Ok(());
    }
    let mut start = 0;
    for (index, item) in field.text.split(|&b| b == b',').enumerate() {
        let at = field.at + start;
        start += item.len() + 1;
        let item = Field::new(at, item);
        if item.is_absent() {
            continue;
        }
        let Some(value) = decimal(item.text, true) else {
            return Err(bad(
                Fault::Adc,
                at,
                format!(
                    "adc{} \"{}\" is not a decimal number",
                    index + 1,
                    item.show()
                ),
            ));
        };
        io.push((
            IoKey::Name(format!("adc{}", index + 1)),
            IoValue::F64(value),
        ));
    }
    Ok(())
}

/// `params`: `NAME:TYPE:VALUE` items separated by commas. The value is everything after the
/// second colon (string values may hold colons); an `NA` value is absent and left out.
fn params_values(field: Field<'_>, io: &mut Vec<(IoKey, IoValue)>) -> Result<(), Bad> {
    if field.is_absent() {
        return Ok(());
    }
    let mut start = 0;
    for item in field.text.split(|&b| b == b',') {
        let at = field.at + start;
        start += item.len() + 1;
        if item.is_empty() {
            continue; // a trailing comma
        }
        let mut parts = item.splitn(3, |&b| b == b':');
        let (Some(name), Some(kind), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                Fault::Params,
                at,
                format!(
                    "param \"{}\" is not NAME:TYPE:VALUE",
                    Field::new(at, item).show()
                ),
            ));
        };
        if name.is_empty() {
            return Err(bad(Fault::Params, at, "param with an empty name".into()));
        }
        if value == b"NA" {
            continue;
        }
        let value_at = at + name.len() + kind.len() + 2;
        let parsed = match kind {
            b"1" => signed(value).map(IoValue::I64),
            // Plain decimals first; C's printf("%g") exponent forms take the full parser.
            b"2" => decimal(value, true)
                .or_else(|| {
                    let parsed: f64 = std::str::from_utf8(value).ok()?.parse().ok()?;
                    parsed.is_finite().then_some(parsed)
                })
                .map(IoValue::F64),
            b"3" => Some(text_value(value)),
            _ => {
                return Err(bad(
                    Fault::Params,
                    at + name.len() + 1,
                    format!(
                        "param \"{}\" has type \"{}\" (expected 1 int, 2 double or 3 string)",
                        Field::new(at, name).show(),
                        Field::new(at, kind).show()
                    ),
                ))
            }
        };
        let Some(parsed) = parsed else {
            let what = if kind == b"1" {
                "a 64-bit integer"
            } else {
                "a finite double"
            };
            return Err(bad(
                Fault::Params,
                value_at,
                format!(
                    "param \"{}\" value \"{}\" is not {what}",
                    Field::new(at, name).show(),
                    Field::new(value_at, value).show()
                ),
            ));
        };
        let name = match std::str::from_utf8(name) {
            Ok(name) => name.to_owned(),
            Err(_) => String::from_utf8_lossy(name).into_owned(),
        };
        io.push((IoKey::Name(name), parsed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str) -> Field<'_> {
        Field::new(0, text.as_bytes())
    }

    #[test]
    fn coordinates_split_degrees_two_digits_before_the_point() {
        let lat = |v, h| coordinate(f(v), f(h), &LATITUDE).map_err(|b| b.fault);
        let lon = |v, h| coordinate(f(v), f(h), &LONGITUDE).map_err(|b| b.fault);
        let near = |got: Result<Option<f64>, Fault>, want: f64| {
            let got = got.unwrap().unwrap();
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        };
        near(lat("5544.6025", "N"), 55.743375);
        near(lon("03739.6834", "E"), 37.66139);
        near(lon("3739.6834", "W"), -37.66139);
        near(lat("544.6025", "S"), -(5.0 + 44.6025 / 60.0));
        near(lat("12", "N"), 0.2);
        near(lat("3644", "N"), 36.0 + 44.0 / 60.0);
        assert_eq!(lat("0000.0000", "S"), Ok(Some(0.0)));
        assert_eq!(lat("NA", "NA"), Ok(None));
        assert_eq!(lat("NA", "N"), Ok(None));
        assert_eq!(lat("5544.6025", "E"), Err(Fault::Coordinates));
        assert_eq!(lat("5544.6025", "NA"), Err(Fault::Coordinates));
        assert_eq!(lat("5560.0000", "N"), Err(Fault::Coordinates));
        assert_eq!(lat("9100.0000", "N"), Err(Fault::Coordinates));
        assert_eq!(lon("18100.0000", "E"), Err(Fault::Coordinates));
        assert_eq!(lat("-5544.6025", "N"), Err(Fault::Coordinates));
        assert_eq!(lat("55x4.6025", "N"), Err(Fault::Coordinates));
    }

    #[test]
    fn times_are_checked_calendar_values() {
        let t = |d, h| device_time(f(d), f(h)).map_err(|b| b.fault);
        assert_eq!(t("270413", "205601"), Ok(Some(1_367_096_161_000)));
        assert_eq!(t("270413", "205601.5"), Ok(Some(1_367_096_161_500)));
        assert_eq!(t("270413", "205601.123456789"), Ok(Some(1_367_096_161_123)));
        assert_eq!(t("290224", "000000"), Ok(Some(1_709_164_800_000)));
        assert_eq!(t("NA", "NA"), Ok(None));
        for (d, h) in [
            ("290223", "000000"),
            ("310413", "000000"),
            ("001213", "000000"),
            ("011313", "000000"),
            ("270413", "240000"),
            ("270413", "236000"),
            ("270413", "235960"),
            ("27041", "205601"),
            ("270413", "205601."),
            ("270413", "205601.1234567890"),
            ("NA", "205601"),
            ("270413", "NA"),
        ] {
            assert_eq!(t(d, h), Err(Fault::Time), "{d};{h}");
        }
    }
}
