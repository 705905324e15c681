//! The record model every decoder produces, and its JSON form.
//!
//! ```text
//! Record (stored with bincode, version byte in front, by the gateway's buffer)
//! ├── device_id      String          IMEI or configured id
//! ├── protocol       Protocol        which decoder made it
//! ├── received_at_ms i64             gateway clock, ms since the Unix epoch (UTC)
//! ├── time_ms        Option<i64>     device clock, ms since the Unix epoch (UTC)
//! ├── valid          Option<bool>    GNSS fix
//! ├── lat, lon       Option<f64>     degrees, WGS-84, negative = south / west
//! ├── altitude_m     Option<f64>     metres
//! ├── speed_kmh      Option<f64>     km/h
//! ├── course_deg     Option<f64>     degrees from north
//! ├── satellites     Option<u8>
//! ├── hdop           Option<f64>
//! ├── event          Option<String>  alarm or report kind
//! ├── io             Vec<(IoKey, IoValue)>  protocol-native ids or names, in frame order
//! └── raw            Option<String>  the frame as hex or text, when `keep_raw` is on
//! ```
//!
//! The JSON form ([`RecordJson`]) writes every field of the contract, absent values as `null`
//! (never 0), times as RFC 3339 UTC with milliseconds, and `raw` only when present.
//!
//! Documented ranges ([`Record::check_ranges`], applied to every decoded record by
//! [`crate::checked`]); a value outside its range is set to `null`, the record gets
//! `valid: false` and `io.range_error` says what was wrong (`"course_deg 636 > 360"`, several
//! joined with `"; "`):
//!
//! ```text
//! lat, lon        |lat| <= 90, |lon| <= 180, finite   (either bad: both set to null)
//! course_deg      0..=360
//! speed_kmh       0..=MAX_SPEED_KMH (2000)
//! altitude_m      MIN_ALTITUDE_M..=MAX_ALTITUDE_M (-1000..=60000)
//! satellites      0..=MAX_SATELLITES (99)
//! hdop            0..=MAX_HDOP (99.99, the NMEA field's largest value)
//! time_ms         before the end of the day after received_at_ms's UTC day ("not past
//!                 tomorrow", judged from the gateway's receive time, never from a clock here)
//! ```

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Which decoder produced a record. The JSON name is the protocol's registry name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Teltonika,
    TeltonikaUdp,
    Gt06,
    Queclink,
    Wialon,
    Nmea,
    Jsonl,
    /// Added after the others: the stored form numbers variants in order.
    WialonUdp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Teltonika => "teltonika",
            Protocol::TeltonikaUdp => "teltonika-udp",
            Protocol::Gt06 => "gt06",
            Protocol::Queclink => "queclink",
            Protocol::Wialon => "wialon",
            Protocol::Nmea => "nmea",
            Protocol::Jsonl => "jsonl",
            Protocol::WialonUdp => "wialon-udp",
        }
    }
}

/// An IO element's key: a numeric protocol id (Teltonika AVL ids) or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoKey {
    Id(u32),
    Name(String),
}

/// An IO element's value, kept as the protocol sent it (raw, unscaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IoValue {
    U64(u64),
    I64(i64),
    F64(f64),
    Text(String),
    /// Opaque bytes; written to JSON as a lowercase hex string.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub device_id: String,
    pub protocol: Protocol,
    pub received_at_ms: i64,
    pub time_ms: Option<i64>,
    pub valid: Option<bool>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub altitude_m: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub course_deg: Option<f64>,
    pub satellites: Option<u8>,
    pub hdop: Option<f64>,
    pub event: Option<String>,
    pub io: Vec<(IoKey, IoValue)>,
    pub raw: Option<String>,
}

impl Record {
    /// A record with only the identity and receive time set; decoders fill in the rest.
    pub fn new(device_id: impl Into<String>, protocol: Protocol, received_at_ms: i64) -> Self {
        Record {
            device_id: device_id.into(),
            protocol,
            received_at_ms,
            time_ms: None,
            valid: None,
            lat: None,
            lon: None,
            altitude_m: None,
            speed_kmh: None,
            course_deg: None,
            satellites: None,
            hdop: None,
            event: None,
            io: Vec::new(),
            raw: None,
        }
    }

    /// Checks every value against its documented range (table in the module doc). A value
    /// outside it is set to `None`, `valid` becomes `Some(false)` and `io` gets
    /// `range_error` naming each value and its range. Pure: "tomorrow" is relative to
    /// `received_at_ms`. Returns whether everything was in range.
    pub fn check_ranges(&mut self) -> bool {
        let mut errors: Vec<String> = Vec::new();
        let lat_bad = self
            .lat
            .filter(|v| !(v.is_finite() && v.abs() <= 90.0))
            .inspect(|v| errors.push(format!("lat {v} outside -90..=90")));
        let lon_bad = self
            .lon
            .filter(|v| !(v.is_finite() && v.abs() <= 180.0))
            .inspect(|v| errors.push(format!("lon {v} outside -180..=180")));
        if lat_bad.is_some() || lon_bad.is_some() {
            // Half a position is no position.
            self.lat = None;
            self.lon = None;
        }
        check_f64(&mut self.course_deg, "course_deg", 0.0, 360.0, &mut errors);
        check_f64(
            &mut self.speed_kmh,
            "speed_kmh",
            0.0,
            MAX_SPEED_KMH,
            &mut errors,
        );
        check_f64(
            &mut self.altitude_m,
            "altitude_m",
            MIN_ALTITUDE_M,
            MAX_ALTITUDE_M,
            &mut errors,
        );
        check_f64(&mut self.hdop, "hdop", 0.0, MAX_HDOP, &mut errors);
        if let Some(n) = self.satellites.filter(|&n| n > MAX_SATELLITES) {
            errors.push(format!("satellites {n} > {MAX_SATELLITES}"));
            self.satellites = None;
        }
        // The end of tomorrow (UTC) as seen from the receive time.
        let limit = (self.received_at_ms.div_euclid(DAY_MS) + 2).saturating_mul(DAY_MS);
        if let Some(t) = self.time_ms.filter(|&t| t >= limit) {
            errors.push(format!(
                "time {} is after tomorrow (received {})",
                format_rfc3339_ms(t),
                format_rfc3339_ms(self.received_at_ms)
            ));
            self.time_ms = None;
        }
        if errors.is_empty() {
            return true;
        }
        self.valid = Some(false);
        // A decoder that checks its own fields (Queclink, GT06) may have named some already:
        // one `range_error` per record, with every reason.
        let existing = self
            .io
            .iter_mut()
            .find(|(k, _)| matches!(k, IoKey::Name(n) if n == "range_error"));
        match existing {
            Some((_, IoValue::Text(text))) => {
                text.push_str("; ");
                text.push_str(&errors.join("; "));
            }
            _ => self.io.push((
                IoKey::Name("range_error".to_owned()),
                IoValue::Text(errors.join("; ")),
            )),
        }
        false
    }

    /// The record JSON of the cloud contract; `seq` is written when the record came out of
    /// the gateway's buffer (batches), and left out otherwise (`fleetedge decode`).
    pub fn json(&self, seq: Option<u64>) -> RecordJson<'_> {
        RecordJson { seq, record: self }
    }
}

/// Fastest speed a record may carry, km/h: above any road vehicle or light aircraft, below
/// the garbage a wrong field offset gives.
pub const MAX_SPEED_KMH: f64 = 2000.0;
/// Altitude range, metres: below the Dead Sea shore with margin, above any aircraft or
/// balloon a tracker rides.
pub const MIN_ALTITUDE_M: f64 = -1000.0;
pub const MAX_ALTITUDE_M: f64 = 60_000.0;
/// Satellites in use: the two-digit NMEA field's range, above what any receiver tracks.
pub const MAX_SATELLITES: u8 = 99;
/// HDOP: the NMEA field's largest value (receivers print 99.99 for "no fix").
pub const MAX_HDOP: f64 = 99.99;

const DAY_MS: i64 = 86_400_000;

/// Clears `value` and notes why when it is not a finite number in `min..=max`.
fn check_f64(value: &mut Option<f64>, name: &str, min: f64, max: f64, errors: &mut Vec<String>) {
    let Some(v) = *value else { return };
    if v.is_finite() && (min..=max).contains(&v) {
        return;
    }
    let why = if v < min {
        format!("{name} {v} < {min}")
    } else if v > max {
        format!("{name} {v} > {max}")
    } else {
        format!("{name} {v} is not a number")
    };
    errors.push(why);
    *value = None;
}

/// Serializes a [`Record`] as the record JSON of the cloud contract.
pub struct RecordJson<'a> {
    seq: Option<u64>,
    record: &'a Record,
}

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.record;
        let mut map = serializer.serialize_map(None)?;
        if let Some(seq) = self.seq {
            map.serialize_entry("seq", &seq)?;
        }
        map.serialize_entry("device_id", &r.device_id)?;
        map.serialize_entry("protocol", r.protocol.as_str())?;
        map.serialize_entry("received_at", &Rfc3339Ms(r.received_at_ms))?;
        map.serialize_entry("time", &r.time_ms.map(Rfc3339Ms))?;
        map.serialize_entry("valid", &r.valid)?;
        map.serialize_entry("lat", &r.lat)?;
        map.serialize_entry("lon", &r.lon)?;
        map.serialize_entry("altitude_m", &r.altitude_m)?;
        map.serialize_entry("speed_kmh", &r.speed_kmh)?;
        map.serialize_entry("course_deg", &r.course_deg)?;
        map.serialize_entry("satellites", &r.satellites)?;
        map.serialize_entry("hdop", &r.hdop)?;
        map.serialize_entry("event", &r.event)?;
        map.serialize_entry("io", &IoJson(&r.io))?;
        if let Some(raw) = &r.raw {
            map.serialize_entry("raw", raw)?;
        }
        map.end()
    }
}

struct IoJson<'a>(&'a [(IoKey, IoValue)]);

impl Serialize for IoJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            match key {
                IoKey::Id(id) => map.serialize_key(id)?,
                IoKey::Name(name) => map.serialize_key(name)?,
            }
            match value {
                IoValue::U64(v) => map.serialize_value(v)?,
                IoValue::I64(v) => map.serialize_value(v)?,
                IoValue::F64(v) => map.serialize_value(v)?,
                IoValue::Text(v) => map.serialize_value(v)?,
                IoValue::Bytes(v) => map.serialize_value(&HexJson(v))?,
            }
        }
        map.end()
    }
}

struct HexJson<'a>(&'a [u8]);

impl Serialize for HexJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_hex(self.0))
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Milliseconds since the Unix epoch, written as RFC 3339 UTC with milliseconds.
struct Rfc3339Ms(i64);

impl Serialize for Rfc3339Ms {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = rfc3339_ms_bytes(self.0);
        // Only ASCII digits and punctuation are written, so this cannot fail.
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or("invalid time"))
    }
}

/// `2019-06-10T10:04:46.000Z` for 1560161086000. Years outside 0000–9999 are clamped to
/// that range's ends, since RFC 3339 cannot write them and a device clock that far off is
/// garbage anyway (the raw value stays in `raw` when kept).
pub fn format_rfc3339_ms(epoch_ms: i64) -> String {
    String::from_utf8_lossy(&rfc3339_ms_bytes(epoch_ms)).into_owned()
}

/// The 24 ASCII bytes of [`format_rfc3339_ms`], without allocating: every record in every
/// batch writes two of these, so this is on the uplink's hot path.
fn rfc3339_ms_bytes(epoch_ms: i64) -> [u8; 24] {
    const MIN_MS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = epoch_ms.clamp(MIN_MS, MAX_MS);
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, ms_of_day / 3_600_000);
    put(14, 2, ms_of_day / 60_000 % 60);
    put(17, 2, ms_of_day / 1000 % 60);
    put(20, 3, ms_of_day % 1000);
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, exact for the whole clamped range.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; the inverse of `civil_from_days`,
/// for decoders whose devices send calendar dates.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_ms_as_rfc3339_with_millis() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_560_161_086_000),
            "2019-06-10T10:04:46.000Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn days_round_trip_through_civil_dates() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2019, 6, 10), 18_057);
    }

    #[test]
    fn json_writes_absent_values_as_null_and_io_keys_as_strings() {
        let mut r = Record::new("356307042441013", Protocol::Teltonika, 1_560_161_086_500);
        r.time_ms = Some(1_560_161_086_000);
        r.lat = Some(-33.5);
        r.io = vec![
            (IoKey::Id(21), IoValue::U64(3)),
            (IoKey::Id(256), IoValue::Bytes(vec![0xAB, 0x01])),
        ];
        let v: serde_json::Value = serde_json::to_value(r.json(Some(7))).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["device_id"], "356307042441013");
        assert_eq!(v["protocol"], "teltonika");
        assert_eq!(v["received_at"], "2019-06-10T10:04:46.500Z");
        assert_eq!(v["time"], "2019-06-10T10:04:46.000Z");
        assert_eq!(v["lat"], -33.5);
        assert!(v["lon"].is_null());
        assert!(v["speed_kmh"].is_null());
        assert!(v["event"].is_null());
        assert_eq!(v["io"]["21"], 3);
        assert_eq!(v["io"]["256"], "ab01");
        assert!(v.get("raw").is_none());
        let no_seq: serde_json::Value = serde_json::to_value(r.json(None)).unwrap();
        assert!(no_seq.get("seq").is_none());
    }

    /// 2024-03-01T12:00:00Z.
    const RECEIVED: i64 = 1_709_294_400_000;

    fn in_range() -> Record {
        let mut r = Record::new("1", Protocol::Teltonika, RECEIVED);
        r.time_ms = Some(RECEIVED - 1000);
        r.valid = Some(true);
        r.lat = Some(-90.0);
        r.lon = Some(180.0);
        r.course_deg = Some(360.0);
        r.speed_kmh = Some(0.0);
        r.altitude_m = Some(-400.0);
        r.satellites = Some(12);
        r.hdop = Some(99.99);
        r
    }

    #[test]
    fn values_at_the_ends_of_their_ranges_pass_untouched() {
        let mut r = in_range();
        assert!(r.check_ranges());
        assert_eq!(r, in_range());
        // Still tomorrow (UTC) as seen from the receive time: a device on local time.
        r.time_ms = Some(days_from_civil(2024, 3, 3) * DAY_MS - 1);
        assert!(r.check_ranges());
        let mut empty = Record::new("1", Protocol::Nmea, RECEIVED);
        assert!(empty.check_ranges());
        assert_eq!(empty.valid, None, "no value, no verdict");
    }

    #[test]
    fn each_value_out_of_range_is_nulled_and_named() {
        type Spoil = fn(&mut Record);
        let cases: [(Spoil, &str); 9] = [
            (|r| r.lat = Some(95.0), "lat 95 outside -90..=90"),
            (|r| r.lon = Some(-180.5), "lon -180.5 outside -180..=180"),
            (|r| r.course_deg = Some(636.0), "course_deg 636 > 360"),
            (|r| r.course_deg = Some(-1.0), "course_deg -1 < 0"),
            (|r| r.speed_kmh = Some(65535.0), "speed_kmh 65535 > 2000"),
            (|r| r.altitude_m = Some(f64::NAN), "altitude_m NaN is not a number"),
            (|r| r.satellites = Some(200), "satellites 200 > 99"),
            (|r| r.hdop = Some(-0.5), "hdop -0.5 < 0"),
            (
                |r| r.time_ms = Some(days_from_civil(2024, 3, 3) * DAY_MS),
                "time 2024-03-03T00:00:00.000Z is after tomorrow (received 2024-03-01T12:00:00.000Z)",
            ),
        ];
        for (spoil, why) in cases {
            let mut r = in_range();
            spoil(&mut r);
            assert!(!r.check_ranges(), "{why}");
            assert_eq!(r.valid, Some(false), "{why}");
            assert_eq!(
                r.io,
                vec![(IoKey::Name("range_error".into()), IoValue::Text(why.into()))]
            );
        }
    }

    #[test]
    fn a_bad_latitude_clears_the_whole_position_and_reasons_are_joined() {
        let mut r = in_range();
        r.lat = Some(95.0);
        r.course_deg = Some(636.0);
        assert!(!r.check_ranges());
        assert_eq!((r.lat, r.lon, r.course_deg), (None, None, None));
        assert_eq!(r.speed_kmh, Some(0.0), "values in range stay");
        assert_eq!(
            r.io,
            vec![(
                IoKey::Name("range_error".into()),
                IoValue::Text("lat 95 outside -90..=90; course_deg 636 > 360".into())
            )]
        );
    }
}
