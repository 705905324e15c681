//! JSON lines: one JSON object per line, from sensors and local applications on a serial port
//! or a TCP socket. No vendor document; this module is the specification.
//!
//! ```text
//! Stream
//!   {"device_id":"tank-7","time":"2024-03-01T12:00:00.250+01:00","lat":54.68,"lon":25.27}\n
//!   \n                                                        blank lines: skipped silently
//!   {"time":1709290800250,"level_cm":131,"pump":true,"io":{"door":"open"}}\r\n
//!   └──────────────────── at most max_frame_bytes, line end included ─────────────────┘
//!
//! Fields (the names of the record JSON of the cloud contract)
//!   device_id    string (or unsigned integer)   else the configured id, else a problem
//!   time         RFC 3339 string (Z or ±hh:mm) or integer epoch milliseconds (UTC)
//!   valid        bool
//!   lat, lon     number, −90..=90 / −180..=180
//!   altitude_m   number            speed_kmh   number ≥ 0     course_deg   number 0..=360
//!   satellites   integer 0..=255   hdop        number ≥ 0     event        string
//!   io           object: every member goes into io, in line order
//!   received_at, seq, protocol    ignored (the gateway sets them)
//!   anything else                  into io, after the members before it, in line order
//! ```
//!
//! `null` is the same as an absent field. io values: integers → `I64` (`U64` past
//! `i64::MAX`, so no digit is lost), other numbers → `F64`, strings → `Text`, booleans →
//! `U64` 0/1, `null` skipped, arrays and objects → `Text` of their compact JSON (members of a
//! nested object in key order, as serde_json's map keeps them). An empty `event` string is no
//! event.
//!
//! Every bad line is a `problem` frame and the stream goes on; `decode` never returns `Err`:
//! a line that is not one JSON object (syntax error, another JSON type, trailing text), a known
//! field of the wrong type or out of range (the reason names the field), a duplicate key, no
//! device id anywhere, and a line with no `\n` within `max_frame_bytes` (after which bytes
//! are dropped silently up to and including the next `\n`). Problem offsets are byte offsets
//! in the line where the JSON parser stood: the offending byte for a syntax error, at or just
//! after the end of the offending value for a field error, 0 for a missing device id or a
//! duplicate io key. Nothing is ever answered.
//!
//! A line with top-level `"answer"` and a string `"id"` is a device's answer to a downlink
//! command, not a record: see `jsonl/command.rs` for both command lines.
//!
//! [`encode`] writes a record as a line (the sensor side), for the load simulator and tests.

mod command;
pub mod encode;
pub(crate) mod meaning;

pub(crate) use command::command_line;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::record::days_from_civil;
use crate::{
    DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Protocol, Record, StreamDecoder,
};

const DAY_MS: i64 = 86_400_000;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the range RFC 3339 can write, and so
/// the range of a numeric `time`.
const MIN_TIME_MS: i64 = -62_167_219_200_000;
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Sans-IO decoder for one stream of JSON lines.
#[derive(Debug, Clone)]
pub struct JsonlDecoder {
    max_frame_bytes: usize,
    keep_raw: bool,
    /// From the listener's or port's config: the id of lines without `device_id`.
    configured_id: Option<String>,
    /// The id of the last record, for [`StreamDecoder::device_id`].
    last_id: Option<String>,
    /// After an over-long line: drop bytes through the next `\n`.
    skipping: bool,
}

impl JsonlDecoder {
    /// A decoder for one stream: lines are at most `options.max_frame_bytes` including the
    /// line end, `options.device_id` names the device of lines without `device_id`, and
    /// `raw` keeps the line when `options.keep_raw` is on.
    pub fn new(options: &DecoderOptions) -> Self {
        JsonlDecoder {
            max_frame_bytes: options.max_frame_bytes,
            keep_raw: options.keep_raw,
            configured_id: options.device_id.clone(),
            last_id: None,
            skipping: false,
        }
    }

    /// The line length limit, at least 1 so that every call makes progress.
    fn limit(&self) -> usize {
        self.max_frame_bytes.max(1)
    }

    fn decode_frame(&mut self, input: &[u8], now_ms: i64) -> Decoded {
        let window = input.get(..self.limit()).unwrap_or(input);
        let newline = window.iter().position(|&b| b == b'\n');
        if self.skipping {
            return match newline {
                Some(at) => {
                    self.skipping = false;
                    Decoded::control(at + 1)
                }
                None => Decoded::control(window.len()),
            };
        }
        let Some(end) = newline else {
            if input.len() < self.limit() {
                return Decoded::control(0);
            }
            self.skipping = true;
            let reason = format!(
                "line has no line end (\\n) within the limit of {} bytes",
                self.max_frame_bytes
            );
            return Decoded::problem(window.len(), DecodeError::new(0, reason));
        };
        let consumed = end + 1;
        let line = window.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Decoded::control(consumed);
        }
        match command::answer(line) {
            Ok(Some(answer)) => {
                return Decoded {
                    command_answer: Some(answer),
                    ..Decoded::control(consumed)
                }
            }
            Ok(None) => {}
            Err(e) => return Decoded::problem(consumed, e),
        }
        match self.record(line, now_ms) {
            Ok(record) => Decoded {
                records: vec![record],
                ..Decoded::control(consumed)
            },
            Err(e) => Decoded::problem(consumed, e),
        }
    }

    fn record(&mut self, line: &[u8], now_ms: i64) -> Result<Record, DecodeError> {
        let fields = parse_line(line)?;
        let device_id = match (fields.device_id, &self.configured_id) {
            (Some(id), _) => id,
            (None, Some(id)) => id.clone(),
            (None, None) => {
                return Err(DecodeError::new(
                    0,
                    "no device_id: the line has none and none is configured",
                ))
            }
        };
        if self.last_id.as_deref() != Some(device_id.as_str()) {
            self.last_id = Some(device_id.clone());
        }
        let mut r = Record::new(device_id, Protocol::Jsonl, now_ms);
        r.time_ms = fields.time_ms;
        r.valid = fields.valid;
        r.lat = fields.lat;
        r.lon = fields.lon;
        r.altitude_m = fields.altitude_m;
        r.speed_kmh = fields.speed_kmh;
        r.course_deg = fields.course_deg;
        r.satellites = fields.satellites;
        r.hdop = fields.hdop;
        r.event = fields.event;
        r.io = fields.io;
        if self.keep_raw {
            r.raw = Some(String::from_utf8_lossy(line).into_owned());
        }
        Ok(r)
    }
}

impl StreamDecoder for JsonlDecoder {
    /// Never `Err`: see the module doc.
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        if input.is_empty() {
            return Ok(None);
        }
        let decoded = self.decode_frame(input, now_ms);
        Ok((decoded.consumed > 0).then_some(decoded))
    }

    /// The device id of the last record, else the configured one.
    fn device_id(&self) -> Option<&str> {
        self.last_id.as_deref().or(self.configured_id.as_deref())
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

/// What one line says, before the device id fallback.
#[derive(Debug, Default)]
struct Fields {
    device_id: Option<String>,
    time_ms: Option<i64>,
    valid: Option<bool>,
    lat: Option<f64>,
    lon: Option<f64>,
    altitude_m: Option<f64>,
    speed_kmh: Option<f64>,
    course_deg: Option<f64>,
    satellites: Option<u8>,
    hdop: Option<f64>,
    event: Option<String>,
    io: Vec<(IoKey, IoValue)>,
}

/// Parses one line (no line end) into its fields, or the problem with it.
fn parse_line(line: &[u8]) -> Result<Fields, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let fields = de
        .deserialize_any(LineVisitor)
        .and_then(|f| de.end().map(|()| f))
        .map_err(json_problem)?;
    if let Some(name) = duplicate_io_key(&fields.io) {
        return Err(DecodeError::new(
            0,
            format!("io key {name:?} appears twice (top level and io, or twice in io)"),
        ));
    }
    Ok(fields)
}

/// A serde_json error as a problem: the message without serde_json's position suffix, the
/// position as the offset (a line has no `\n`, so the column is the byte offset plus one).
fn json_problem(e: serde_json::Error) -> DecodeError {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    let reason = match e.classify() {
        serde_json::error::Category::Data => message.to_owned(),
        _ => format!("not a JSON object: {message}"),
    };
    DecodeError::new(e.column().saturating_sub(1), reason)
}

/// The first io name that appears twice. Sorting names keeps this O(n log n) for a line
/// with thousands of keys.
fn duplicate_io_key(io: &[(IoKey, IoValue)]) -> Option<&str> {
    let mut names: Vec<&str> = io
        .iter()
        .filter_map(|(k, _)| match k {
            IoKey::Name(n) => Some(n.as_str()),
            IoKey::Id(_) => None,
        })
        .collect();
    names.sort_unstable();
    names.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// A top-level key: the record fields by name, or an io name.
enum Key {
    DeviceId,
    Time,
    Valid,
    Lat,
    Lon,
    AltitudeM,
    SpeedKmh,
    CourseDeg,
    Satellites,
    Hdop,
    Event,
    Io,
    /// `received_at`, `seq`, `protocol`: the gateway's to set.
    Ignored,
    Other(String),
}

impl Key {
    fn from_name(name: &str) -> Key {
        match name {
            "device_id" => Key::DeviceId,
            "time" => Key::Time,
            "valid" => Key::Valid,
            "lat" => Key::Lat,
            "lon" => Key::Lon,
            "altitude_m" => Key::AltitudeM,
            "speed_kmh" => Key::SpeedKmh,
            "course_deg" => Key::CourseDeg,
            "satellites" => Key::Satellites,
            "hdop" => Key::Hdop,
            "event" => Key::Event,
            "io" => Key::Io,
            "received_at" | "seq" | "protocol" => Key::Ignored,
            other => Key::Other(other.to_owned()),
        }
    }

    /// Bit for duplicate detection of the record fields.
    fn bit(&self) -> u16 {
        match self {
            Key::DeviceId => 1,
            Key::Time => 1 << 1,
            Key::Valid => 1 << 2,
            Key::Lat => 1 << 3,
            Key::Lon => 1 << 4,
            Key::AltitudeM => 1 << 5,
            Key::SpeedKmh => 1 << 6,
            Key::CourseDeg => 1 << 7,
            Key::Satellites => 1 << 8,
            Key::Hdop => 1 << 9,
            Key::Event => 1 << 10,
            Key::Io => 1 << 11,
            Key::Ignored | Key::Other(_) => 0,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(Key::from_name(name))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Walks the line's object in order, so io keeps the line's order (serde_json's own map
/// would sort it) and no intermediate map is built.
struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("one JSON object per line")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut out = Fields::default();
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<Key>()? {
            let bit = key.bit();
            if seen & bit != 0 {
                return Err(de::Error::custom(format!(
                    "field {} appears twice",
                    field_name(&key)
                )));
            }
            seen |= bit;
            match key {
                Key::Io => map.next_value_seed(IoSeed(&mut out.io))?,
                Key::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Other(name) => {
                    if let Some(v) = io_value(map.next_value()?) {
                        out.io.push((IoKey::Name(name), v));
                    }
                }
                known => {
                    let value: Value = map.next_value()?;
                    set_field(&mut out, &known, value).map_err(de::Error::custom)?;
                }
            }
        }
        Ok(out)
    }
}

fn field_name(key: &Key) -> &str {
    match key {
        Key::DeviceId => "device_id",
        Key::Time => "time",
        Key::Valid => "valid",
        Key::Lat => "lat",
        Key::Lon => "lon",
        Key::AltitudeM => "altitude_m",
        Key::SpeedKmh => "speed_kmh",
        Key::CourseDeg => "course_deg",
        Key::Satellites => "satellites",
        Key::Hdop => "hdop",
        Key::Event => "event",
        Key::Io => "io",
        Key::Ignored => "(ignored)",
        Key::Other(name) => name,
    }
}

/// Checks and stores one record field; `null` leaves it absent.
fn set_field(out: &mut Fields, key: &Key, value: Value) -> Result<(), String> {
    let name = field_name(key);
    if value.is_null() {
        return Ok(());
    }
    match key {
        Key::DeviceId => {
            let id = match value {
                Value::String(s) => s,
                Value::Number(n) if n.is_u64() => n.to_string(),
                other => return Err(wrong_type(name, "a string", &other)),
            };
            if id.is_empty() {
                return Err("device_id is empty".to_owned());
            }
            out.device_id = Some(id);
        }
        Key::Time => {
            out.time_ms = Some(match value {
                Value::String(s) => parse_rfc3339_ms(&s)
                    .map_err(|why| format!("time {s:?} is not RFC 3339: {why}"))?,
                Value::Number(n) => match n.as_i64() {
                    Some(ms) if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) => ms,
                    _ => {
                        return Err(format!(
                            "time {n} is not integer epoch milliseconds within years 0000..=9999"
                        ))
                    }
                },
                other => {
                    return Err(wrong_type(
                        name,
                        "an RFC 3339 string or epoch milliseconds",
                        &other,
                    ))
                }
            });
        }
        Key::Valid => match value {
            Value::Bool(b) => out.valid = Some(b),
            other => return Err(wrong_type(name, "a boolean", &other)),
        },
        Key::Lat => out.lat = Some(number(name, &value, -90.0, 90.0)?),
        Key::Lon => out.lon = Some(number(name, &value, -180.0, 180.0)?),
        Key::AltitudeM => out.altitude_m = Some(number(name, &value, f64::MIN, f64::MAX)?),
        Key::SpeedKmh => out.speed_kmh = Some(number(name, &value, 0.0, f64::MAX)?),
        Key::CourseDeg => out.course_deg = Some(number(name, &value, 0.0, 360.0)?),
        Key::Hdop => out.hdop = Some(number(name, &value, 0.0, f64::MAX)?),
        Key::Satellites => {
            let n = value.as_u64().and_then(|n| u8::try_from(n).ok());
            match n {
                Some(n) => out.satellites = Some(n),
                None => {
                    return Err(format!(
                        "satellites must be an integer 0..=255, got {}",
                        shown(&value)
                    ))
                }
            }
        }
        Key::Event => match value {
            Value::String(s) => out.event = Some(s).filter(|s| !s.is_empty()),
            other => return Err(wrong_type(name, "a string", &other)),
        },
        Key::Io | Key::Ignored | Key::Other(_) => {}
    }
    Ok(())
}

/// A number within `min..=max`.
fn number(name: &str, value: &Value, min: f64, max: f64) -> Result<f64, String> {
    let Some(v) = value.as_f64() else {
        return Err(wrong_type(name, "a number", value));
    };
    if !(min..=max).contains(&v) {
        let range = match (min == f64::MIN, max == f64::MAX) {
            (false, true) => format!("at least {min}"),
            _ => format!("{min}..={max}"),
        };
        return Err(format!("{name} {v} is out of range {range}"));
    }
    Ok(v)
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> String {
    format!("{name} must be {expected}, got {}", shown(got))
}

/// A value for an error message: its JSON, shortened.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text,
    }
}

/// An io value from any JSON value; `None` for `null`.
fn io_value(value: Value) -> Option<IoValue> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => IoValue::U64(u64::from(b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => IoValue::I64(i),
            (None, Some(u), _) => IoValue::U64(u),
            (None, None, Some(f)) => IoValue::F64(f),
            // serde_json without arbitrary precision always has one of the three.
            (None, None, None) => IoValue::Text(n.to_string()),
        },
        Value::String(s) => IoValue::Text(s),
        nested @ (Value::Array(_) | Value::Object(_)) => IoValue::Text(nested.to_string()),
    })
}

/// The `io` member: an object whose members go into io in order, or `null`.
struct IoSeed<'a>(&'a mut Vec<(IoKey, IoValue)>);

impl<'de> DeserializeSeed<'de> for IoSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IoSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("io to be a JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            if let Some(v) = io_value(map.next_value()?) {
                self.0.push((IoKey::Name(name), v));
            }
        }
        Ok(())
    }
}

/// Parses an RFC 3339 timestamp, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, to milliseconds
/// since the Unix epoch (UTC).
///
/// - `T` and `Z` may be lower case (RFC 3339 §5.6 note); nothing else is optional: no space
///   for `T`, no missing seconds, no offset-less local time, no `+HHMM`.
/// - The fraction has one or more digits; milliseconds are kept and further digits truncated
///   (toward the past), the same as the record JSON writes them.
/// - Second 60 (a leap second) is accepted and lands on the next second, as POSIX time does.
/// - `-00:00` (UTC, local offset unknown) is accepted as UTC.
/// - Dates are checked against the proleptic Gregorian calendar (29 February only in leap
///   years); years 0000–9999.
///
/// The error names what is wrong, for a problem reason.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let digits = |at: usize, n: usize, what: &str| -> Result<i64, String> {
        match b.get(at..at + n) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => Ok(d
                .iter()
                .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'))),
            _ => Err(format!("expected {n} digits of {what} at offset {at}")),
        }
    };
    let sep = |at: usize, allowed: &[u8], what: &str| -> Result<(), String> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(format!("expected {what} at offset {at}")),
        }
    };
    let year = digits(0, 4, "year")?;
    sep(4, b"-", "'-'")?;
    let month = digits(5, 2, "month")?;
    sep(7, b"-", "'-'")?;
    let day = digits(8, 2, "day")?;
    sep(10, b"Tt", "'T'")?;
    let hour = digits(11, 2, "hour")?;
    sep(13, b":", "':'")?;
    let minute = digits(14, 2, "minute")?;
    sep(16, b":", "':'")?;
    let second = digits(17, 2, "second")?;

    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b.get(at).copied().unwrap_or(b'0') - b'0');
            }
            at += 1;
        }
        if at == start {
            return Err(format!("expected fraction digits at offset {at}"));
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(at + 1, 2, "offset hours")?;
            sep(at + 3, b":", "':' in the offset")?;
            let om = digits(at + 4, 2, "offset minutes")?;
            if oh > 23 || om > 59 {
                return Err(format!("offset {oh:02}:{om:02} is out of range"));
            }
            at += 6;
            if sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => {
            return Err(format!(
                "expected 'Z' or an offset like +02:00 at offset {at}"
            ))
        }
    };
    if at != b.len() {
        return Err(format!(
            "unexpected text after the time zone at offset {at}"
        ));
    }

    let last_day = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return Err(format!("month {month:02} is not 01..=12")),
    };
    if !(1..=last_day).contains(&day) {
        return Err(format!(
            "day {day:02} is not in 01..={last_day} for {year:04}-{month:02}"
        ));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    let seconds_of_day = (hour * 60 + minute) * 60 + second;
    Ok(
        days_from_civil(year, month, day) * DAY_MS + seconds_of_day * 1000 + millis
            - offset_minutes * 60_000,
    )
}
