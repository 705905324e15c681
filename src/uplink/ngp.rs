//! Navixy Generic Protocol (NGP 1.0) output: one JSON object per record, published on
//! `ngp/{device_id}`. Pure: records in, topic and payload bytes out; no IO, no clock.
//! Fact sheet: `shared/protocols/navixy-generic-protocol.md` ("the sheet" below), which
//! collects Navixy's own pages; quotes in this module are from it.
//!
//! ```text
//! Record                               NGP message (plain UTF-8 JSON, no batch, no compression)
//! device_id  ────────────────────────▶ "device_id"     6–32 of A–Z a–z 0–9 -  (else NgpError)
//! time_ms    ────────────────────────▶ "message_time"  "2025-03-14T08:21:05Z" (ms cut off)
//!                                      "version"       "1.0"
//! lat, lon, valid, altitude_m,         "location": { "latitude", "longitude", "gnss_time",
//! speed_kmh, course_deg,                 "fix_type", "altitude", "speed", "heading",
//! satellites, hdop (+ Teltonika PDOP)    "satellites", "hdop", "pdop" }  only with a position
//! event      ────────────────────────▶ "event_id" (a standard id)  or  "custom_event" (text)
//! io         ────────────────────────▶ predefined attributes where NGP has one
//!                                      ("input_status", "board_voltage", "mobile_cells", …),
//!                                      everything else as a custom attribute
//!                                      ("avl_io_<id>", "custom_<protocol>_<name>")
//! raw        ────────────────────────▶ (not sent)
//! ```
//!
//! # Decisions, and the rule from the sheet behind each
//!
//! - **Only valid messages leave.** "The platform validates strictly; invalid JSON or values
//!   outside the documented ranges are discarded silently", and over MQTT "responses to
//!   messages are not (currently) supported". So every value is checked here: a value outside
//!   its documented range is left out (never clamped into a lie), except where the range
//!   rule itself says how to write it (heading 0° is 360; see [`heading`]) and the satellite
//!   count (clamped to 64, see [`encode`]). A value NGP cannot hold at all (NaN, ±∞, text over
//!   10 KB) is left out. Absent values are left out, never written as 0.
//! - **Device ids must be registrable, and are refused otherwise.** The message allows 64
//!   characters, but "registration on the platform (model code `navixy_ngp` …) actually
//!   accepts 6–32 characters, Latin letters, digits and hyphens only". A message for any
//!   other id can only be discarded by Navixy, silently; [`encode`] returns
//!   [`NgpError::DeviceId`] instead, which names the id, so the operator sees it. The same
//!   rule keeps the id a safe MQTT topic level (no `+`, `#`, `/`); [`topic`] additionally
//!   percent-escapes anything else, so it never builds a wildcard or multi-level topic even
//!   for an id that [`encode`] refuses.
//! - **Records without a position are sent without `location`.** "Mandatory:
//!   `message_time` and `device_id`. Everything else is optional." Navixy stores a track
//!   point "only if it has a valid location with at least 3 satellites"; a message without
//!   one "is received but not stored as a point" – its event and sensor values still arrive.
//!   No position means: `lat` or `lon` missing, not finite, outside ±90° / ±180°, or exactly
//!   0/0 (the stand-in trackers send before their first fix; the sheet: "never send 0/0 as a
//!   stand-in").
//! - **Tracker records without a device time are skipped (`Ok(None)`).** `message_time` is
//!   mandatory and means the "time the device sent the message", and "`message_time` must
//!   not be earlier than the `message_time` of the last message received for that device;
//!   out-of-order messages are discarded". Trackers (Teltonika, GT06, Queclink, Wialon) keep records while offline and
//!   send them later; stamping a time-less record (a GT06 heartbeat, a Queclink report without
//!   a fix) with the gateway's receive time would make Navixy discard every stored record the
//!   device sends after it. Local sensors (`jsonl`, `nmea`) keep nothing back, so their
//!   records without a device time get the gateway's receive time instead. The caller counts
//!   skipped records.
//! - **Version 1.0.** Every message says `"version": "1.0"`: 1.1a needs an arrangement with
//!   Navixy and 1.2 adds nothing a record carries.

use std::fmt::Write as _;

use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::{IoKey, IoValue, Protocol, Record};
use serde_json::{Map, Number, Value};

/// First topic level; the second is the device id ("topic `ngp/{device_id}`").
pub const TOPIC_PREFIX: &str = "ngp";
/// The `version` every message declares.
pub const VERSION: &str = "1.0";
/// Device ids Navixy registers: "6–32 characters, Latin letters, digits and hyphens only".
pub const DEVICE_ID_MIN_CHARS: usize = 6;
pub const DEVICE_ID_MAX_CHARS: usize = 32;
/// "String: UTF-8, up to 10 KB"; counted as 10,000 bytes, the stricter reading.
pub const MAX_STRING_BYTES: usize = 10_000;
/// "`satellites` … 0 … 64".
pub const MAX_SATELLITES: u8 = 64;
/// "`altitude` … metres above sea level, −1000 … 10000".
pub const ALTITUDE_RANGE_M: std::ops::RangeInclusive<f64> = -1000.0..=10_000.0;
/// "`battery_level` … %, 0 … 100".
const BATTERY_LEVEL_RANGE: std::ops::RangeInclusive<u64> = 0..=100;
/// Indexed sensor attributes: "`n` = 1 … 16".
const MAX_SENSOR_INDEX: u32 = 16;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the times ISO 8601 can write with a
/// four-digit year.
const MIN_TIME_MS: i64 = -62_167_219_200_000;
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A record that NGP must not carry.
#[derive(Debug, thiserror::Error)]
pub enum NgpError {
    /// The device id is not one Navixy can register (see the module doc); retrying cannot
    /// help, so the caller drops the record with a log line and a metric.
    #[error(
        "device id {device_id} cannot be sent as NGP: Navixy accepts only ids of 6 to 32 \
         Latin letters, digits and hyphens, and this one {reason}"
    )]
    DeviceId {
        /// The id as Rust debug text, cut after 64 characters.
        device_id: String,
        reason: &'static str,
    },
    /// serde_json refused the message; not expected (every value is checked first).
    #[error("cannot write the NGP message of device {device_id}: {source}")]
    Json {
        device_id: String,
        source: serde_json::Error,
    },
}

/// The topic of a record's message: `ngp/{device_id}`.
///
/// For every id [`encode`] accepts this is the id itself. Any other character is written
/// as `%XX` per UTF-8 byte (`%` itself too, so two ids never share a topic) and the id is cut
/// after 64 characters: the result is never a wildcard (`+`, `#`), never more than two
/// levels, never holds U+0000, and always fits MQTT's topic length, whatever the id.
pub fn topic(record: &Record) -> String {
    let mut topic = String::with_capacity(TOPIC_PREFIX.len() + 1 + record.device_id.len());
    topic.push_str(TOPIC_PREFIX);
    topic.push('/');
    for c in record.device_id.chars().take(2 * DEVICE_ID_MAX_CHARS) {
        if is_id_char(c) {
            topic.push(c);
        } else {
            for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(topic, "%{byte:02X}");
            }
        }
    }
    topic
}

/// The NGP message for `record`: `Ok(Some(json))`, `Ok(None)` for a tracker record without
/// a device time (skipped, see the module doc), or an error for a device id Navixy cannot
/// register.
///
/// Field rules (quotes from the sheet's attribute table):
///
/// | field | rule |
/// |---|---|
/// | `message_time` | "Timestamp … ISO 8601 in UTC"; written `YYYY-MM-DDTHH:MM:SSZ` like every example (milliseconds cut) |
/// | `location.latitude` / `longitude` | "−90.0 … 90.0" / "−180.0 … 180.0"; outside, or 0/0, there is no `location` |
/// | `location.gnss_time` | "time the position fix was taken": the record's device time (one timestamp per record) |
/// | `location.fix_type` | `valid` true → `HAS_FIX`, false (coordinates of an old fix) → `LAST_KNOWN_POSITION`, unknown → left out ("`HAS_FIX` (default)") |
/// | `location.altitude` | "−1000 … 10000" m; outside → left out |
/// | `location.speed` | "km/h, positive value"; negative → left out, 0 is sent (a stopped vehicle) |
/// | `location.heading` | "Integer … 1 … 360 (0 is outside the documented range)": see [`heading`] |
/// | `location.satellites` | "0 … 64"; more is clamped to 64: a receiver using more satellites has a fix, and without a count Navixy would not store the point ("at least 3 satellites") |
/// | `location.hdop` / `pdop` | "no range given": any finite value ≥ 0 |
/// | `event_id` | "one event per message; predefined values" – only ids this module maps; other events as `custom_event` text |
/// | `mobile_cells[]` | `mcc`, `mnc`, `lac`, `cell_id` "required" per entry: only sent when all four are known |
/// | Strings | "UTF-8, up to 10 KB": longer values are left out |
pub fn encode(record: &Record) -> Result<Option<Vec<u8>>, NgpError> {
    check_device_id(&record.device_id).map_err(|reason| NgpError::DeviceId {
        device_id: shown_id(&record.device_id),
        reason,
    })?;
    let Some((message_time, device_clock)) = message_time(record) else {
        return Ok(None);
    };

    let mut io = MappedIo::default();
    for (key, value) in &record.io {
        io.add(record.protocol, key, value);
    }

    let mut message = Map::new();
    message.insert("message_time".into(), Value::String(message_time.clone()));
    message.insert("device_id".into(), Value::String(record.device_id.clone()));
    message.insert("version".into(), Value::String(VERSION.into()));
    let gnss_time = device_clock.then_some(message_time);
    if let Some(location) = location(record, gnss_time, io.pdop) {
        message.insert("location".into(), Value::Object(location));
    }
    match event(record) {
        Event::None => {}
        Event::Id(id) => {
            message.insert("event_id".into(), Value::from(id));
        }
        Event::Text(text) => {
            if let Some(text) = string(text) {
                message.insert("custom_event".into(), text);
            }
        }
    }
    if let Some(cell) = io.cell.complete() {
        message.insert("mobile_cells".into(), Value::Array(vec![cell]));
    }
    if let Some(mask) = io.inputs {
        message.insert("input_status".into(), Value::from(mask));
    }
    if let Some(mask) = io.outputs {
        message.insert("output_status".into(), Value::from(mask));
    }
    // Predefined names never start with `custom_` or `avl_io_`, so the two sets cannot
    // overwrite each other or the fields above.
    message.extend(io.predefined);
    message.extend(io.custom);

    serde_json::to_vec(&Value::Object(message))
        .map(Some)
        .map_err(|source| NgpError::Json {
            device_id: shown_id(&record.device_id),
            source,
        })
}

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

/// Whether `device_id` is one Navixy can register; `Err` names what is wrong.
fn check_device_id(device_id: &str) -> Result<(), &'static str> {
    if !device_id.chars().all(is_id_char) {
        return Err("holds another character");
    }
    // All ASCII now, so bytes are characters.
    if device_id.len() < DEVICE_ID_MIN_CHARS {
        return Err("is shorter than 6 characters");
    }
    if device_id.len() > DEVICE_ID_MAX_CHARS {
        return Err("is longer than 32 characters");
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// The id for an error message: debug-quoted (control characters visible) and cut, so a
/// hostile id cannot flood or forge log lines.
fn shown_id(device_id: &str) -> String {
    const SHOWN_CHARS: usize = 64;
    let mut cut: String = device_id.chars().take(SHOWN_CHARS).collect();
    let more = cut.len() < device_id.len();
    cut = format!("{cut:?}");
    if more {
        cut.push('…');
    }
    cut
}

/// `message_time` and whether it is the device's clock (see the module doc for when the
/// gateway's receive time stands in).
fn message_time(record: &Record) -> Option<(String, bool)> {
    if let Some(time) = record.time_ms.and_then(timestamp) {
        return Some((time, true));
    }
    let receive_time_allowed = match record.protocol {
        // Devices that store records while offline and send them later.
        Protocol::Teltonika
        | Protocol::TeltonikaUdp
        | Protocol::Gt06
        | Protocol::Queclink
        | Protocol::Wialon
        | Protocol::WialonUdp => false,
        // Lines and sentences are read as the sensor writes them.
        Protocol::Nmea | Protocol::Jsonl => true,
    };
    if receive_time_allowed {
        timestamp(record.received_at_ms).map(|time| (time, false))
    } else {
        None
    }
}

/// `2025-03-14T08:21:05Z`: ISO 8601 UTC in whole seconds, like every example in the sheet
/// ("whether fractional seconds are accepted is not stated"). `None` outside years 0–9999.
fn timestamp(epoch_ms: i64) -> Option<String> {
    if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&epoch_ms) {
        return None;
    }
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: keep the first 19 characters and the zone.
    let mut text = format_rfc3339_ms(epoch_ms);
    text.truncate(19);
    text.push('Z');
    Some(text)
}

/// The `location` object, or `None` without a usable position.
fn location(
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

/// A finite f64 as a JSON number, with −0.0 written as 0 (so "positive" rules hold).
fn float(value: f64) -> Option<Value> {
    // `+ 0.0` turns −0.0 into +0.0 and leaves every other value alone.
    Number::from_f64(value + 0.0).map(Value::Number)
}

/// A string value if it fits NGP's String limit.
fn string(text: &str) -> Option<Value> {
    (text.len() <= MAX_STRING_BYTES).then(|| Value::String(text.to_owned()))
}

/// What a record's `event` becomes.
#[derive(Debug, PartialEq)]
enum Event<'a> {
    None,
    /// A predefined `event_id` (sheet §7).
    Id(u32),
    /// No standard id fits: sent as `custom_event`.
    Text(&'a str),
}

/// Standard ids for the events the decoders name. Teltonika names the IO that triggered the
/// record (`io:<id>`), and the id's value in the same record says which way it changed.
fn event(record: &Record) -> Event<'_> {
    let Some(text) = record.event.as_deref() else {
        return Event::None;
    };
    let id = match record.protocol {
        Protocol::Teltonika | Protocol::TeltonikaUdp => teltonika_event(record, text),
        Protocol::Queclink => match text {
            // GTSOS, GTSPD (speed alarm), GTIGN / GTIGF (ignition on / off).
            "sos" => Some(202),
            "spd" => Some(224),
            "ign" => Some(605),
            "igf" => Some(604),
            _ => None,
        },
        Protocol::Gt06
        | Protocol::Wialon
        | Protocol::WialonUdp
        | Protocol::Nmea
        | Protocol::Jsonl => named_event(text),
    };
    id.map_or(Event::Text(text), Event::Id)
}

fn teltonika_event(record: &Record, text: &str) -> Option<u32> {
    let io_id: u32 = text.strip_prefix("io:")?.parse().ok()?;
    let value = record
        .io
        .iter()
        .rev()
        .find_map(|(key, value)| match (key, value) {
            (IoKey::Id(id), IoValue::U64(v)) if *id == io_id => Some(*v),
            _ => None,
        });
    match (io_id, value) {
        // Digital inputs 1–3 and outputs 1–2 changed: 501… / 551….
        (1..=3, _) => Some(500 + io_id),
        (179, _) => Some(551),
        (180, _) => Some(552),
        // Ignition on / off.
        (239, Some(1)) => Some(605),
        (239, Some(0)) => Some(604),
        // Movement start / end.
        (240, Some(1)) => Some(406),
        (240, Some(0)) => Some(407),
        _ => None,
    }
}

/// Event names shared by GT06 (its alarm names) and free-form sources (jsonl), after the
/// sheet's proposed table (§10).
fn named_event(text: &str) -> Option<u32> {
    Some(match text {
        "low_battery" => 1,
        "power_cut" => 2,
        "power_restored" => 4,
        "tow" => 101,
        "vibration" | "shock" => 113,
        "gps_jamming" => 116,
        "sos" => 202,
        "harsh_turn" => 239,
        "harsh_acceleration" => 240,
        "harsh_braking" => 241,
        "crash" => 242,
        "over_speed" | "overspeed" => 224,
        "idle_end" => 301,
        "idle_start" => 302,
        "movement_start" => 406,
        "movement_end" => 407,
        "ignition_off" => 604,
        "ignition_on" => 605,
        "gps_recovered" => 608,
        "gps_lost" => 609,
        _ => return None,
    })
}

/// What a record's io becomes.
#[derive(Debug, Default)]
struct MappedIo {
    /// Predefined root attributes (`board_voltage`, `analog_1`, …).
    predefined: Map<String, Value>,
    /// Custom attributes (`avl_io_<id>`, `custom_<protocol>_<name>`).
    custom: Map<String, Value>,
    /// `input_status` / `output_status`: "bit 0 = input 1 … set bit = active".
    inputs: Option<u64>,
    outputs: Option<u64>,
    /// `location.pdop` (Teltonika IO 181).
    pdop: Option<f64>,
    cell: Cell,
}

/// The serving cell, from io names `mcc`, `mnc`, `lac`, `cell_id` (GT06, Queclink).
#[derive(Debug, Default)]
struct Cell {
    mcc: Option<u64>,
    mnc: Option<u64>,
    lac: Option<u64>,
    cell_id: Option<u64>,
}

impl Cell {
    /// One `mobile_cells` entry, when all four required members are known. The radio type
    /// is left out ("`GSM` (default)"): the decoders do not know it. An MCC of 0 (no
    /// network) is no cell.
    fn complete(&self) -> Option<Value> {
        let (mcc, mnc, lac, cell_id) = (self.mcc?, self.mnc?, self.lac?, self.cell_id?);
        if mcc == 0 {
            return None;
        }
        let mut cell = Map::new();
        cell.insert("mcc".into(), mcc.into());
        cell.insert("mnc".into(), mnc.into());
        cell.insert("lac".into(), lac.into());
        cell.insert("cell_id".into(), cell_id.into());
        Some(Value::Object(cell))
    }
}

/// A predefined attribute an io value may become, with its NGP type and range.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Float attribute, written as value ÷ `divisor` (mV → V, m → km). Dividing by an exact
    /// 1000 rounds once, so 9 mV is written 0.009 (× 0.001 gives 0.009000000000000001).
    Float(&'static str, f64),
    /// `battery_level`: Integer 0 … 100.
    Percent(&'static str),
    /// Integer attribute (`impulse_counter_n`).
    Integer(&'static str),
    /// Boolean attribute from 0 / 1 (`is_moving`).
    Boolean(&'static str),
    /// String attribute (`hardware_key`, `vin`).
    Text(&'static str),
    /// `hardware_key` from a numeric key (Teltonika iButton): 16 uppercase hex digits; 0
    /// means no key.
    KeyHex,
    InputBit(u32),
    OutputBit(u32),
    InputMask,
    OutputMask,
    /// `location.pdop` from a ×10 integer.
    PdopTenths,
    Mcc,
    Mnc,
    Lac,
    CellId,
    /// Already carried by a record field (Teltonika HDOP, IO 182).
    Skip,
}

impl MappedIo {
    fn add(&mut self, protocol: Protocol, key: &IoKey, value: &IoValue) {
        let target = match key {
            IoKey::Id(id) => match protocol {
                Protocol::Teltonika | Protocol::TeltonikaUdp => teltonika_target(*id),
                _ => None,
            },
            IoKey::Name(name) => named_target(protocol, name),
        };
        let placed = target.is_some_and(|target| self.place(target, value));
        if !placed {
            self.add_custom(protocol, key, value);
        }
    }

    /// Puts `value` where `target` says; `false` when it does not fit there (wrong type,
    /// out of range), so the caller keeps it as a custom attribute instead.
    fn place(&mut self, target: Target, value: &IoValue) -> bool {
        let set = |map: &mut Map<String, Value>, name: &str, v: Option<Value>| match v {
            Some(v) => {
                map.insert(name.to_owned(), v);
                true
            }
            None => false,
        };
        match target {
            Target::Float(name, divisor) => {
                let v = number(value).map(|v| v / divisor).and_then(float);
                set(&mut self.predefined, name, v)
            }
            Target::Percent(name) => {
                let v = unsigned(value).filter(|v| BATTERY_LEVEL_RANGE.contains(v));
                set(&mut self.predefined, name, v.map(Value::from))
            }
            Target::Integer(name) => set(&mut self.predefined, name, integer(value)),
            Target::Boolean(name) => {
                let v = match unsigned(value) {
                    Some(0) => Some(Value::Bool(false)),
                    Some(1) => Some(Value::Bool(true)),
                    _ => None,
                };
                set(&mut self.predefined, name, v)
            }
            Target::Text(name) => {
                let v = match value {
                    IoValue::Text(t) if !t.is_empty() => string(t),
                    _ => None,
                };
                set(&mut self.predefined, name, v)
            }
            Target::KeyHex => {
                let v = match value {
                    IoValue::U64(key) if *key != 0 => Some(Value::String(format!("{key:016X}"))),
                    _ => None,
                };
                set(&mut self.predefined, "hardware_key", v)
            }
            Target::InputBit(bit) => set_bit(&mut self.inputs, bit, value),
            Target::OutputBit(bit) => set_bit(&mut self.outputs, bit, value),
            Target::InputMask => or_mask(&mut self.inputs, value),
            Target::OutputMask => or_mask(&mut self.outputs, value),
            Target::PdopTenths => match unsigned(value) {
                Some(tenths) => {
                    self.pdop = Some(tenths as f64 / 10.0);
                    true
                }
                None => false,
            },
            Target::Mcc => set_part(&mut self.cell.mcc, value),
            Target::Mnc => set_part(&mut self.cell.mnc, value),
            Target::Lac => set_part(&mut self.cell.lac, value),
            Target::CellId => set_part(&mut self.cell.cell_id, value),
            Target::Skip => true,
        }
    }

    /// A custom attribute: "any extra key at the root … is passed through unchanged";
    /// `avl_io_<id>` for Teltonika ids (the style the v1.0 docs cite), else
    /// `custom_<protocol>_<key>` (the prefix Navixy recommends against future clashes).
    /// Values NGP cannot hold (NaN, ±∞, text over 10 KB) are left out.
    fn add_custom(&mut self, protocol: Protocol, key: &IoKey, value: &IoValue) {
        let name = match (protocol, key) {
            (Protocol::Teltonika | Protocol::TeltonikaUdp, IoKey::Id(id)) => {
                format!("avl_io_{id}")
            }
            (_, IoKey::Id(id)) => format!("custom_{}_{id}", protocol_name(protocol)),
            (_, IoKey::Name(name)) => format!("custom_{}_{name}", protocol_name(protocol)),
        };
        if name.len() > MAX_STRING_BYTES {
            return;
        }
        let value = match value {
            IoValue::U64(v) => Some(Value::from(*v)),
            IoValue::I64(v) => Some(Value::from(*v)),
            IoValue::F64(v) => float(*v),
            IoValue::Text(t) => string(t),
            // Lowercase hex, as in the record JSON; two characters a byte.
            IoValue::Bytes(b) if 2 * b.len() <= MAX_STRING_BYTES => {
                Some(Value::String(hex::encode(b)))
            }
            IoValue::Bytes(_) => None,
        };
        if let Some(value) = value {
            self.custom.insert(name, value);
        }
    }
}

/// The protocol's name as an attribute-name part (`teltonika-udp` → `teltonika_udp`).
fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::TeltonikaUdp => "teltonika_udp",
        Protocol::WialonUdp => "wialon_udp",
        other => other.as_str(),
    }
}

/// Teltonika FMB AVL ids with an NGP place (the Teltonika sheet's list of frequently used
/// ids, plus inputs 2–3 and outputs 1–2). Meanings are per model family: other families
/// (the older FM series) number their IO differently.
fn teltonika_target(id: u32) -> Option<Target> {
    Some(match id {
        1..=3 => Target::InputBit(id - 1),
        179 => Target::OutputBit(0),
        180 => Target::OutputBit(1),
        9 => Target::Float("analog_1", 1000.0),
        6 => Target::Float("analog_2", 1000.0),
        16 => Target::Float("hardware_mileage", 1000.0),
        66 => Target::Float("board_voltage", 1000.0),
        67 => Target::Float("battery_voltage", 1000.0),
        113 => Target::Percent("battery_level"),
        181 => Target::PdopTenths,
        182 => Target::Skip,
        240 => Target::Boolean("is_moving"),
        78 => Target::KeyHex,
        _ => return None,
    })
}

/// Named io keys with an NGP place: the decoders' own names first, then any name that is
/// itself a predefined NGP attribute (so a JSON-lines sensor or a Wialon param may send
/// `temperature_1` or `battery_level` directly).
fn named_target(protocol: Protocol, name: &str) -> Option<Target> {
    let own = match (protocol, name) {
        // Navixy's mapper guide maps ignition to input bit 0; GT06 has no other input.
        (Protocol::Gt06, "acc") => Some(Target::InputBit(0)),
        (Protocol::Gt06 | Protocol::Queclink, "mcc") => Some(Target::Mcc),
        (Protocol::Gt06 | Protocol::Queclink, "mnc") => Some(Target::Mnc),
        (Protocol::Gt06 | Protocol::Queclink, "lac") => Some(Target::Lac),
        (Protocol::Gt06 | Protocol::Queclink, "cell_id") => Some(Target::CellId),
        (Protocol::Queclink, "battery_percent") => Some(Target::Percent("battery_level")),
        (Protocol::Queclink, "external_power_mv") => Some(Target::Float("board_voltage", 1000.0)),
        (Protocol::Queclink, "mileage_km") => Some(Target::Float("hardware_mileage", 1.0)),
        (Protocol::Wialon | Protocol::WialonUdp, "inputs") => Some(Target::InputMask),
        (Protocol::Wialon | Protocol::WialonUdp, "outputs") => Some(Target::OutputMask),
        (Protocol::Wialon | Protocol::WialonUdp, "ibutton") => Some(Target::Text("hardware_key")),
        // Wialon's ADC list, in volts; adc17 and on have no NGP index.
        (Protocol::Wialon | Protocol::WialonUdp, _) => name
            .strip_prefix("adc")
            .and_then(sensor_index)
            .map(|n| Target::Float(ANALOG[n - 1], 1.0)),
        _ => None,
    };
    own.or_else(|| predefined_target(name))
}

/// A name that is a predefined NGP root attribute a value can go to.
fn predefined_target(name: &str) -> Option<Target> {
    let fixed = match name {
        "is_moving" => Some(Target::Boolean("is_moving")),
        "hardware_mileage" => Some(Target::Float("hardware_mileage", 1.0)),
        "battery_voltage" => Some(Target::Float("battery_voltage", 1.0)),
        "board_voltage" => Some(Target::Float("board_voltage", 1.0)),
        "battery_level" => Some(Target::Percent("battery_level")),
        "input_status" => Some(Target::InputMask),
        "output_status" => Some(Target::OutputMask),
        "temperature_internal" => Some(Target::Float("temperature_internal", 1.0)),
        "humidity_internal" => Some(Target::Float("humidity_internal", 1.0)),
        "hardware_key" => Some(Target::Text("hardware_key")),
        "vin" => Some(Target::Text("vin")),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let (stem, index) = name.rsplit_once('_')?;
    let n = sensor_index(index)?;
    let table = match stem {
        "analog" => &ANALOG,
        "temperature" => &TEMPERATURE,
        "humidity" => &HUMIDITY,
        "fuel_level" => &FUEL_LEVEL,
        "fuel_temperature" => &FUEL_TEMPERATURE,
        "impulse_counter" => return Some(Target::Integer(IMPULSE_COUNTER[n - 1])),
        _ => return None,
    };
    Some(Target::Float(table[n - 1], 1.0))
}

/// `1` … `16` (no sign, no leading zero) as an index into the tables below.
fn sensor_index(text: &str) -> Option<usize> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = text.parse().ok()?;
    (1..=MAX_SENSOR_INDEX).contains(&n).then_some(n as usize)
}

/// Attribute names are `&'static str` so that [`Target`] stays `Copy`.
macro_rules! indexed {
    ($name:ident, $stem:literal) => {
        const $name: [&str; 16] = [
            concat!($stem, "_1"),
            concat!($stem, "_2"),
            concat!($stem, "_3"),
            concat!($stem, "_4"),
            concat!($stem, "_5"),
            concat!($stem, "_6"),
            concat!($stem, "_7"),
            concat!($stem, "_8"),
            concat!($stem, "_9"),
            concat!($stem, "_10"),
            concat!($stem, "_11"),
            concat!($stem, "_12"),
            concat!($stem, "_13"),
            concat!($stem, "_14"),
            concat!($stem, "_15"),
            concat!($stem, "_16"),
        ];
    };
}
indexed!(ANALOG, "analog");
indexed!(TEMPERATURE, "temperature");
indexed!(HUMIDITY, "humidity");
indexed!(FUEL_LEVEL, "fuel_level");
indexed!(FUEL_TEMPERATURE, "fuel_temperature");
indexed!(IMPULSE_COUNTER, "impulse_counter");

/// A numeric io value as f64; `None` for text, bytes and non-finite numbers.
fn number(value: &IoValue) -> Option<f64> {
    match value {
        IoValue::U64(v) => Some(*v as f64),
        IoValue::I64(v) => Some(*v as f64),
        IoValue::F64(v) if v.is_finite() => Some(*v),
        _ => None,
    }
}

/// A non-negative whole io value.
fn unsigned(value: &IoValue) -> Option<u64> {
    match value {
        IoValue::U64(v) => Some(*v),
        IoValue::I64(v) => u64::try_from(*v).ok(),
        // Exact: 2^53 and below are whole numbers an f64 holds exactly.
        IoValue::F64(v) if v.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(v) => {
            Some(*v as u64)
        }
        _ => None,
    }
}

/// A whole io value as an NGP Integer ("signed or unsigned, 1–8 bytes").
fn integer(value: &IoValue) -> Option<Value> {
    match value {
        IoValue::U64(v) => Some(Value::from(*v)),
        IoValue::I64(v) => Some(Value::from(*v)),
        IoValue::F64(v)
            if v.fract() == 0.0
                && (-9_007_199_254_740_992.0..=9_007_199_254_740_992.0).contains(v) =>
        {
            Some(Value::from(*v as i64))
        }
        _ => None,
    }
}

/// Sets or clears `bit` of a status mask from a 0 / non-zero value.
fn set_bit(mask: &mut Option<u64>, bit: u32, value: &IoValue) -> bool {
    let Some(active) = unsigned(value).map(|v| v != 0) else {
        return false;
    };
    let m = mask.get_or_insert(0);
    if active {
        *m |= 1 << bit;
    } else {
        *m &= !(1 << bit);
    }
    true
}

/// Merges a whole status mask.
fn or_mask(mask: &mut Option<u64>, value: &IoValue) -> bool {
    let Some(bits) = unsigned(value) else {
        return false;
    };
    *mask.get_or_insert(0) |= bits;
    true
}

fn set_part(part: &mut Option<u64>, value: &IoValue) -> bool {
    match unsigned(value) {
        Some(v) => {
            *part = Some(v);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const IMEI: &str = "352093081234567";
    /// 2025-03-14T08:21:05.250Z
    const T: i64 = 1_741_940_465_250;

    fn record(protocol: Protocol) -> Record {
        let mut r = Record::new(IMEI, protocol, T + 1_000);
        r.time_ms = Some(T);
        r
    }

    fn positioned(protocol: Protocol) -> Record {
        let mut r = record(protocol);
        r.lat = Some(52.520008);
        r.lon = Some(13.404954);
        r
    }

    fn ngp(r: &Record) -> Value {
        let bytes = encode(r).expect("valid device id").expect("record is sent");
        serde_json::from_slice(&bytes).expect("valid JSON")
    }

    fn location_of(r: &Record) -> Value {
        ngp(r).get("location").cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn full_teltonika_record_becomes_the_expected_message() {
        let mut r = positioned(Protocol::Teltonika);
        r.valid = Some(true);
        r.altitude_m = Some(38.0);
        r.speed_kmh = Some(47.0);
        r.course_deg = Some(274.0);
        r.satellites = Some(11);
        r.hdop = Some(0.8);
        r.event = Some("io:239".into());
        r.raw = Some("08aabb".into());
        r.io = vec![
            (IoKey::Name("priority".into()), IoValue::U64(1)),
            (IoKey::Id(239), IoValue::U64(1)),
            (IoKey::Id(240), IoValue::U64(1)),
            (IoKey::Id(1), IoValue::U64(1)),
            (IoKey::Id(2), IoValue::U64(0)),
            (IoKey::Id(3), IoValue::U64(1)),
            (IoKey::Id(179), IoValue::U64(0)),
            (IoKey::Id(66), IoValue::U64(13_820)),
            (IoKey::Id(67), IoValue::U64(4_050)),
            (IoKey::Id(113), IoValue::U64(97)),
            (IoKey::Id(16), IoValue::U64(18_342_700)),
            (IoKey::Id(9), IoValue::U64(9)),
            (IoKey::Id(181), IoValue::U64(14)),
            (IoKey::Id(182), IoValue::U64(8)),
            (IoKey::Id(78), IoValue::U64(0x01A2_B3C4_D5E6_F701)),
            (IoKey::Id(21), IoValue::U64(4)),
            (IoKey::Id(256), IoValue::Bytes(b"WVWZZZ".to_vec())),
        ];
        assert_eq!(
            ngp(&r),
            json!({
                "message_time": "2025-03-14T08:21:05Z",
                "device_id": IMEI,
                "version": "1.0",
                "location": {
                    "gnss_time": "2025-03-14T08:21:05Z",
                    "fix_type": "HAS_FIX",
                    "latitude": 52.520008,
                    "longitude": 13.404954,
                    "altitude": 38.0,
                    "satellites": 11,
                    "hdop": 0.8,
                    "pdop": 1.4,
                    "speed": 47.0,
                    "heading": 274
                },
                "event_id": 605,
                "is_moving": true,
                "input_status": 0b101,
                "output_status": 0,
                "board_voltage": 13.82,
                "battery_voltage": 4.05,
                "battery_level": 97,
                "hardware_mileage": 18342.7,
                "analog_1": 0.009,
                "hardware_key": "01A2B3C4D5E6F701",
                "avl_io_239": 1,
                "avl_io_21": 4,
                "avl_io_256": "5756575a5a5a",
                "custom_teltonika_priority": 1
            })
        );
        assert_eq!(topic(&r), format!("ngp/{IMEI}"));
    }

    #[test]
    fn smallest_stored_message_matches_the_sheets_example() {
        let mut r = positioned(Protocol::Teltonika);
        r.satellites = Some(7);
        assert_eq!(
            ngp(&r),
            json!({
                "message_time": "2025-03-14T08:21:05Z",
                "device_id": IMEI,
                "version": "1.0",
                "location": {
                    "gnss_time": "2025-03-14T08:21:05Z",
                    "latitude": 52.520008,
                    "longitude": 13.404954,
                    "satellites": 7
                }
            })
        );
    }

    #[test]
    fn missing_values_are_left_out_not_written_as_zero() {
        let r = positioned(Protocol::Wialon);
        let location = location_of(&r);
        let keys: Vec<&str> = location
            .as_object()
            .expect("location")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 3, "{location}");
        for absent in [
            "altitude",
            "speed",
            "heading",
            "satellites",
            "hdop",
            "pdop",
            "fix_type",
        ] {
            assert!(location.get(absent).is_none(), "{absent} in {location}");
        }
        let message = ngp(&r);
        for absent in ["event_id", "custom_event", "input_status", "mobile_cells"] {
            assert!(message.get(absent).is_none(), "{absent} in {message}");
        }
    }

    #[test]
    fn heading_is_a_whole_degree_from_1_to_360() {
        let cases = [
            (0.0, Some(360)),
            (360.0, Some(360)),
            (359.6, Some(360)),
            (359.5, Some(360)),
            (359.4, Some(359)),
            (0.4, Some(360)),
            (0.5, Some(1)),
            (1.0, Some(1)),
            (180.0, Some(180)),
            (274.2, Some(274)),
            (-0.0, Some(360)),
            (-90.0, Some(270)),
            (-1e-300, Some(360)),
            (450.0, Some(90)),
            (720.5, Some(1)),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (f64::NEG_INFINITY, None),
        ];
        for (course, expected) in cases {
            assert_eq!(heading(course), expected, "course {course}");
            let mut r = positioned(Protocol::Teltonika);
            r.course_deg = Some(course);
            assert_eq!(
                location_of(&r).get("heading").and_then(Value::as_u64),
                expected.map(u64::from),
                "course {course}"
            );
        }
    }

    #[test]
    fn latitude_and_longitude_edges_decide_whether_there_is_a_location() {
        let inside = [(90.0, 180.0), (-90.0, -180.0), (90.0, -180.0), (0.0, 1e-9)];
        for (lat, lon) in inside {
            let mut r = record(Protocol::Teltonika);
            (r.lat, r.lon) = (Some(lat), Some(lon));
            let location = location_of(&r);
            assert_eq!(location["latitude"], json!(lat), "{lat},{lon}");
            assert_eq!(location["longitude"], json!(lon), "{lat},{lon}");
        }
        let outside = [
            (Some(90.000001), Some(10.0)),
            (Some(-90.000001), Some(10.0)),
            (Some(10.0), Some(180.000001)),
            (Some(10.0), Some(-180.000001)),
            (Some(f64::NAN), Some(10.0)),
            (Some(10.0), Some(f64::INFINITY)),
            (Some(0.0), Some(0.0)),
            (Some(-0.0), Some(0.0)),
            (None, Some(10.0)),
            (Some(10.0), None),
        ];
        for (lat, lon) in outside {
            let mut r = record(Protocol::Teltonika);
            (r.lat, r.lon) = (lat, lon);
            r.speed_kmh = Some(10.0);
            r.satellites = Some(9);
            let message = ngp(&r);
            assert!(
                message.get("location").is_none(),
                "{lat:?},{lon:?}: {message}"
            );
        }
    }

    #[test]
    fn altitude_speed_satellites_and_dop_follow_their_ranges() {
        let with = |f: &dyn Fn(&mut Record)| {
            let mut r = positioned(Protocol::Teltonika);
            f(&mut r);
            location_of(&r)
        };
        assert_eq!(
            with(&|r| r.altitude_m = Some(-1000.0))["altitude"],
            json!(-1000.0)
        );
        assert_eq!(
            with(&|r| r.altitude_m = Some(10_000.0))["altitude"],
            json!(10_000.0)
        );
        assert!(with(&|r| r.altitude_m = Some(-1000.1))
            .get("altitude")
            .is_none());
        assert!(with(&|r| r.altitude_m = Some(10_000.1))
            .get("altitude")
            .is_none());
        assert!(with(&|r| r.altitude_m = Some(f64::NAN))
            .get("altitude")
            .is_none());

        assert_eq!(with(&|r| r.speed_kmh = Some(0.0))["speed"], json!(0.0));
        let negative_zero = with(&|r| r.speed_kmh = Some(-0.0))["speed"].clone();
        assert_eq!(
            negative_zero.as_f64().map(f64::is_sign_negative),
            Some(false)
        );
        assert!(with(&|r| r.speed_kmh = Some(-0.1)).get("speed").is_none());
        assert!(with(&|r| r.speed_kmh = Some(f64::INFINITY))
            .get("speed")
            .is_none());

        assert_eq!(with(&|r| r.satellites = Some(0))["satellites"], json!(0));
        assert_eq!(with(&|r| r.satellites = Some(64))["satellites"], json!(64));
        assert_eq!(with(&|r| r.satellites = Some(65))["satellites"], json!(64));
        assert_eq!(with(&|r| r.satellites = Some(255))["satellites"], json!(64));

        assert_eq!(with(&|r| r.hdop = Some(0.0))["hdop"], json!(0.0));
        assert!(with(&|r| r.hdop = Some(-1.0)).get("hdop").is_none());
        assert!(with(&|r| r.hdop = Some(f64::NAN)).get("hdop").is_none());
    }

    #[test]
    fn fix_type_follows_valid() {
        let fix = |valid| {
            let mut r = positioned(Protocol::Gt06);
            r.valid = valid;
            location_of(&r).get("fix_type").cloned()
        };
        assert_eq!(fix(Some(true)), Some(json!("HAS_FIX")));
        assert_eq!(fix(Some(false)), Some(json!("LAST_KNOWN_POSITION")));
        assert_eq!(fix(None), None);
    }

    #[test]
    fn records_without_a_position_are_sent_without_location() {
        // A GT06 SOS from a device with a clock but no fix yet (0/0): the SOS must arrive.
        let mut r = record(Protocol::Gt06);
        (r.lat, r.lon) = (Some(0.0), Some(0.0));
        r.valid = Some(false);
        r.speed_kmh = Some(0.0);
        r.satellites = Some(0);
        r.event = Some("sos".into());
        r.io = vec![(IoKey::Name("voltage_level".into()), IoValue::U64(4))];
        assert_eq!(
            ngp(&r),
            json!({
                "message_time": "2025-03-14T08:21:05Z",
                "device_id": IMEI,
                "version": "1.0",
                "event_id": 202,
                "custom_gt06_voltage_level": 4
            })
        );
    }

    #[test]
    fn tracker_records_without_device_time_are_skipped() {
        for protocol in [
            Protocol::Teltonika,
            Protocol::TeltonikaUdp,
            Protocol::Gt06,
            Protocol::Queclink,
            Protocol::Wialon,
        ] {
            let mut r = positioned(protocol);
            r.time_ms = None;
            r.event = Some("heartbeat".into());
            assert!(matches!(encode(&r), Ok(None)), "{protocol:?}");
            // A device time no ISO 8601 year can hold is no device time either.
            r.time_ms = Some(i64::MAX);
            assert!(matches!(encode(&r), Ok(None)), "{protocol:?}");
        }
    }

    #[test]
    fn sensor_records_without_device_time_use_the_receive_time() {
        for protocol in [Protocol::Jsonl, Protocol::Nmea] {
            let mut r = positioned(protocol);
            r.time_ms = None;
            r.received_at_ms = 1_741_940_466_999;
            let message = ngp(&r);
            assert_eq!(message["message_time"], "2025-03-14T08:21:06Z");
            // The receive time is not when the fix was taken.
            assert!(message["location"].get("gnss_time").is_none(), "{message}");
        }
    }

    #[test]
    fn message_time_is_whole_seconds_utc() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (999, "1970-01-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (MAX_TIME_MS, "9999-12-31T23:59:59Z"),
            (MIN_TIME_MS, "0000-01-01T00:00:00Z"),
        ] {
            let mut r = record(Protocol::Teltonika);
            r.time_ms = Some(ms);
            assert_eq!(ngp(&r)["message_time"], text);
        }
    }

    #[test]
    fn device_ids_navixy_cannot_register_are_refused_and_never_make_wildcard_topics() {
        let refused = [
            "",
            "12345",
            "a/b/c/d",
            "imei+123456",
            "imei#123456",
            "imei_123456",
            "imei 123456",
            "ímei123456",
            "imei\u{0}123456",
            "123456789012345678901234567890123",
        ];
        for id in refused {
            let r = Record::new(id, Protocol::Jsonl, T);
            let err = encode(&r).expect_err(id);
            assert!(matches!(err, NgpError::DeviceId { .. }), "{id:?}: {err}");
            assert!(err.to_string().contains("6 to 32"), "{err}");
            let t = topic(&r);
            let level = t.strip_prefix("ngp/").expect("prefix");
            assert!(
                level
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '%'),
                "{id:?} → {t}"
            );
        }
        assert_eq!(
            topic(&Record::new("a/b+#", Protocol::Jsonl, T)),
            "ngp/a%2Fb%2B%23"
        );
        assert_eq!(
            topic(&Record::new("a%2Fb", Protocol::Jsonl, T)),
            "ngp/a%252Fb"
        );
        assert_eq!(
            topic(&Record::new("ímei", Protocol::Jsonl, T)),
            "ngp/%C3%ADmei"
        );
        let long = Record::new("x".repeat(100_000), Protocol::Jsonl, T);
        assert_eq!(topic(&long).len(), 4 + 64);
        let err = encode(&long).expect_err("too long");
        assert!(err.to_string().len() < 300, "{err}");

        for accepted in ["123456", "TRUCK-0042", "abcdefghijklmnopqrstuvwxyz-12345"] {
            let r = record_with_id(accepted);
            assert_eq!(ngp(&r)["device_id"], accepted);
            assert_eq!(topic(&r), format!("ngp/{accepted}"));
        }
    }

    fn record_with_id(id: &str) -> Record {
        let mut r = Record::new(id, Protocol::Jsonl, T);
        r.time_ms = Some(T);
        r
    }

    #[test]
    fn events_map_to_standard_ids_or_custom_text() {
        let event_of = |protocol, event: &str, io: Vec<(IoKey, IoValue)>| {
            let mut r = positioned(protocol);
            r.event = Some(event.into());
            r.io = io;
            let m = ngp(&r);
            (m.get("event_id").cloned(), m.get("custom_event").cloned())
        };
        let id = |n: u32| (Some(json!(n)), None);
        let text = |t: &str| (None, Some(json!(t)));
        let ign = |v| vec![(IoKey::Id(239), IoValue::U64(v))];
        let mov = |v| vec![(IoKey::Id(240), IoValue::U64(v))];
        assert_eq!(event_of(Protocol::Teltonika, "io:239", ign(1)), id(605));
        assert_eq!(event_of(Protocol::Teltonika, "io:239", ign(0)), id(604));
        assert_eq!(
            event_of(Protocol::Teltonika, "io:239", vec![]),
            text("io:239")
        );
        assert_eq!(event_of(Protocol::TeltonikaUdp, "io:240", mov(1)), id(406));
        assert_eq!(event_of(Protocol::Teltonika, "io:240", mov(0)), id(407));
        assert_eq!(event_of(Protocol::Teltonika, "io:1", vec![]), id(501));
        assert_eq!(event_of(Protocol::Teltonika, "io:3", vec![]), id(503));
        assert_eq!(event_of(Protocol::Teltonika, "io:180", vec![]), id(552));
        assert_eq!(
            event_of(Protocol::Teltonika, "io:21", vec![]),
            text("io:21")
        );
        assert_eq!(event_of(Protocol::Gt06, "sos", vec![]), id(202));
        assert_eq!(event_of(Protocol::Gt06, "power_cut", vec![]), id(2));
        assert_eq!(event_of(Protocol::Gt06, "vibration", vec![]), id(113));
        assert_eq!(event_of(Protocol::Gt06, "over_speed", vec![]), id(224));
        assert_eq!(
            event_of(Protocol::Gt06, "alarm:0x2a", vec![]),
            text("alarm:0x2a")
        );
        assert_eq!(event_of(Protocol::Queclink, "ign", vec![]), id(605));
        assert_eq!(event_of(Protocol::Queclink, "spd", vec![]), id(224));
        assert_eq!(event_of(Protocol::Queclink, "geo", vec![]), text("geo"));
        assert_eq!(event_of(Protocol::Jsonl, "ignition_on", vec![]), id(605));
        assert_eq!(event_of(Protocol::Jsonl, "ign", vec![]), text("ign"));
        assert_eq!(
            event_of(Protocol::Wialon, "driver_message", vec![]),
            text("driver_message")
        );
        let huge = "e".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(event_of(Protocol::Jsonl, &huge, vec![]), (None, None));
    }

    #[test]
    fn gt06_cell_and_acc_go_to_mobile_cells_and_input_bit_0() {
        let mut r = positioned(Protocol::Gt06);
        r.io = [
            ("mcc", 262),
            ("mnc", 1),
            ("lac", 4711),
            ("cell_id", 20735),
            ("acc", 1),
        ]
        .into_iter()
        .map(|(k, v)| (IoKey::Name(k.into()), IoValue::U64(v)))
        .collect();
        let m = ngp(&r);
        assert_eq!(
            m["mobile_cells"],
            json!([{"mcc": 262, "mnc": 1, "lac": 4711, "cell_id": 20735}])
        );
        assert_eq!(m["input_status"], 1);

        // Without all four members there is no cell entry.
        r.io.remove(1);
        let m = ngp(&r);
        assert!(m.get("mobile_cells").is_none(), "{m}");
    }

    #[test]
    fn queclink_wialon_and_jsonl_io_reach_their_ngp_attributes() {
        let name = |k: &str| IoKey::Name(k.into());
        let mut q = positioned(Protocol::Queclink);
        q.io = vec![
            (name("report"), IoValue::Text("GTFRI".into())),
            (name("external_power_mv"), IoValue::U64(12_430)),
            (name("mileage_km"), IoValue::F64(1234.5)),
            (name("battery_percent"), IoValue::U64(101)),
        ];
        let m = ngp(&q);
        assert_eq!(m["board_voltage"], json!(12.43));
        assert_eq!(m["hardware_mileage"], json!(1234.5));
        assert!(m.get("battery_level").is_none(), "101 % is out of range");
        assert_eq!(m["custom_queclink_battery_percent"], 101);
        assert_eq!(m["custom_queclink_report"], "GTFRI");

        let mut w = positioned(Protocol::Wialon);
        w.io = vec![
            (name("inputs"), IoValue::U64(0b1001)),
            (name("outputs"), IoValue::U64(2)),
            (name("adc1"), IoValue::F64(14.77)),
            (name("adc17"), IoValue::F64(1.0)),
            (name("ibutton"), IoValue::Text("01A2B3".into())),
            (name("temperature_2"), IoValue::F64(-4.5)),
            (name("pwr_ext"), IoValue::F64(f64::NAN)),
        ];
        let m = ngp(&w);
        assert_eq!(m["input_status"], 9);
        assert_eq!(m["output_status"], 2);
        assert_eq!(m["analog_1"], json!(14.77));
        assert_eq!(m["custom_wialon_adc17"], json!(1.0));
        assert_eq!(m["hardware_key"], "01A2B3");
        assert_eq!(m["temperature_2"], json!(-4.5));
        assert!(
            m.get("custom_wialon_pwr_ext").is_none(),
            "NaN has no JSON form"
        );

        let mut j = positioned(Protocol::Jsonl);
        j.io = vec![
            (name("is_moving"), IoValue::U64(0)),
            (name("battery_level"), IoValue::I64(55)),
            (name("fuel_level_16"), IoValue::I64(60)),
            (name("fuel_level_17"), IoValue::I64(61)),
            (name("analog_01"), IoValue::F64(1.5)),
            (name("impulse_counter_3"), IoValue::F64(12.0)),
            (name("impulse_counter_4"), IoValue::F64(12.5)),
            (name("vin"), IoValue::Text("WVWZZZ1JZXW000001".into())),
            (name("door"), IoValue::Text("open".into())),
            (
                name("blob"),
                IoValue::Text("b".repeat(MAX_STRING_BYTES + 1)),
            ),
        ];
        let m = ngp(&j);
        assert_eq!(m["is_moving"], false);
        assert_eq!(m["battery_level"], 55);
        assert_eq!(m["fuel_level_16"], json!(60.0));
        assert_eq!(m["custom_jsonl_fuel_level_17"], 61);
        assert_eq!(m["custom_jsonl_analog_01"], json!(1.5));
        assert_eq!(m["impulse_counter_3"], 12);
        assert_eq!(m["custom_jsonl_impulse_counter_4"], json!(12.5));
        assert_eq!(m["vin"], "WVWZZZ1JZXW000001");
        assert_eq!(m["custom_jsonl_door"], "open");
        assert!(m.get("custom_jsonl_blob").is_none(), "over 10 KB");
    }

    #[test]
    fn teltonika_values_that_do_not_fit_stay_custom() {
        let mut r = positioned(Protocol::Teltonika);
        r.io = vec![
            (IoKey::Id(78), IoValue::U64(0)),
            (IoKey::Id(113), IoValue::U64(250)),
            (IoKey::Id(240), IoValue::U64(2)),
        ];
        let m = ngp(&r);
        for absent in ["hardware_key", "battery_level", "is_moving"] {
            assert!(m.get(absent).is_none(), "{absent} in {m}");
        }
        assert_eq!(m["avl_io_78"], 0);
        assert_eq!(m["avl_io_113"], 250);
        assert_eq!(m["avl_io_240"], 2);
    }

    /// Every record the named protocol's real decoder makes of `input`.
    fn decode_all(protocol: &str, input: &[u8]) -> Vec<Record> {
        use firmware_protocols::registry::{lookup, Transport};
        let spec = lookup(protocol).expect("registered protocol");
        let Transport::Stream(make) = spec.transport else {
            panic!("{protocol} is not a stream protocol");
        };
        let mut decoder = make(&firmware_protocols::DecoderOptions::new(16 * 1024));
        let (mut rest, mut records) = (input, Vec::new());
        while let Some(frame) = decoder.decode(rest, T).expect("capture decodes") {
            assert!(frame.problem.is_none(), "{:?}", frame.problem);
            rest = &rest[frame.consumed..];
            records.extend(frame.records);
        }
        assert!(rest.is_empty(), "{} bytes left", rest.len());
        records
    }

    #[test]
    fn decoded_captures_from_the_fact_sheets_become_valid_messages() {
        // README's Teltonika capture: IMEI login, one Codec 8 record without a fix.
        let teltonika = hex::decode(concat!(
            "000F333536333037303432343431303133",
            "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503",
            "010101425E0F01F10000601A014E0000000000000000010000C7CF"
        ))
        .expect("hex");
        let records = decode_all("teltonika", &teltonika);
        assert_eq!(records.len(), 1);
        assert_eq!(
            ngp(&records[0]),
            json!({
                "message_time": "2019-06-10T10:04:46Z",
                "device_id": "356307042441013",
                "version": "1.0",
                "event_id": 501,
                "input_status": 1,
                "board_voltage": 24.079,
                "avl_io_21": 3,
                "avl_io_241": 24602,
                "avl_io_78": 0,
                "custom_teltonika_priority": 1
            })
        );

        // Queclink's GL300 sample: one fix, with its serving cell.
        let queclink = b"+RESP:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,\
            31.222073,20090214013254,0460,0000,18d8,6141,00,,20090214093254,11F0$";
        let records = decode_all("queclink", queclink);
        assert_eq!(records.len(), 1);
        let m = ngp(&records[0]);
        assert_eq!(m["message_time"], "2009-02-14T01:32:54Z");
        assert_eq!(
            m["location"],
            json!({
                "gnss_time": "2009-02-14T01:32:54Z",
                "fix_type": "HAS_FIX",
                "latitude": 31.222073,
                "longitude": 121.354335,
                "altitude": 70.0,
                "speed": 4.3,
                "heading": 92,
                "hdop": 1.0
            })
        );
        assert_eq!(
            m["mobile_cells"],
            json!([{"mcc": 460, "mnc": 0, "lac": 0x18d8, "cell_id": 0x6141}])
        );

        // Wialon's extended-data sample after a login.
        let wialon = b"#L#352093081234567;NA\r\n#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;\
            0.0;0;0;14.77,0.02,3.6;NA;count1:1:564,fuel:2:45.8,hw:3:V4.5\r\n";
        let records = decode_all("wialon", wialon);
        assert_eq!(records.len(), 1);
        let m = ngp(&records[0]);
        assert_eq!(m["location"]["satellites"], 4);
        assert_eq!(m["location"]["heading"], 2);
        assert_eq!(m["input_status"], 0);
        assert_eq!(m["output_status"], 0);
        assert_eq!(m["analog_1"], json!(14.77));
        assert_eq!(m["analog_3"], json!(3.6));
        assert_eq!(m["custom_wialon_count1"], 564);
        assert_eq!(m["custom_wialon_fuel"], json!(45.8));
        assert_eq!(m["custom_wialon_hw"], "V4.5");

        // GT06 login + heartbeat: the heartbeat has no device time and is skipped.
        let gt06 = hex::decode(concat!(
            "78780D01012345678901234500018CDD0D0A",
            "78780A134004040001000FDCEE0D0A"
        ))
        .expect("hex");
        let records = decode_all("gt06", &gt06);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].event.as_deref(), Some("heartbeat"));
        assert!(matches!(encode(&records[0]), Ok(None)));
    }

    /// Every rule a sent message must satisfy, checked on the parsed JSON.
    fn check_message(r: &Record, bytes: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))?;
        let m = v.as_object().ok_or("not an object")?;
        let time = m["message_time"].as_str().ok_or("message_time")?;
        let shape = time.len() == 20
            && time.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return Err(format!("message_time {time}"));
        }
        if m["device_id"] != r.device_id.as_str() || m["version"] != VERSION {
            return Err("device_id / version".into());
        }
        if let Some(loc) = m.get("location") {
            let loc = loc.as_object().ok_or("location")?;
            let f = |k: &str| {
                loc.get(k)
                    .map(|v| v.as_f64().ok_or(format!("{k} not a number")))
            };
            let lat = f("latitude").ok_or("no latitude")??;
            let lon = f("longitude").ok_or("no longitude")??;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(format!("position {lat},{lon}"));
            }
            if lat == 0.0 && lon == 0.0 {
                return Err("0/0".into());
            }
            if let Some(alt) = f("altitude").transpose()? {
                if !ALTITUDE_RANGE_M.contains(&alt) {
                    return Err(format!("altitude {alt}"));
                }
            }
            for k in ["speed", "hdop", "pdop"] {
                if let Some(x) = f(k).transpose()? {
                    if x < 0.0 || x.is_sign_negative() {
                        return Err(format!("{k} {x}"));
                    }
                }
            }
            if let Some(h) = loc.get("heading") {
                let h = h.as_u64().ok_or("heading not an integer")?;
                if !(1..=360).contains(&h) {
                    return Err(format!("heading {h}"));
                }
            }
            if let Some(s) = loc.get("satellites") {
                let s = s.as_u64().ok_or("satellites not an integer")?;
                if s > 64 {
                    return Err(format!("satellites {s}"));
                }
            }
            if let Some(fix) = loc.get("fix_type") {
                if fix != "HAS_FIX" && fix != "LAST_KNOWN_POSITION" {
                    return Err(format!("fix_type {fix}"));
                }
            }
        }
        if let Some(id) = m.get("event_id") {
            let id = id.as_u64().ok_or("event_id not an integer")?;
            if !(1..10_000).contains(&id) {
                return Err(format!("event_id {id}"));
            }
        }
        if let Some(level) = m.get("battery_level") {
            if level.as_u64().is_none_or(|l| l > 100) {
                return Err(format!("battery_level {level}"));
            }
        }
        for k in ["input_status", "output_status"] {
            if m.get(k).is_some_and(|v| !v.is_u64()) {
                return Err(k.to_string());
            }
        }
        if m.get("is_moving").is_some_and(|v| !v.is_boolean()) {
            return Err("is_moving".into());
        }
        fn strings_fit(v: &Value) -> bool {
            match v {
                Value::String(s) => s.len() <= MAX_STRING_BYTES,
                Value::Array(a) => a.iter().all(strings_fit),
                Value::Object(o) => o.values().all(strings_fit),
                _ => true,
            }
        }
        if !strings_fit(&v) {
            return Err("string over 10 KB".into());
        }
        for (k, _) in m {
            let known = [
                "message_time",
                "device_id",
                "version",
                "location",
                "event_id",
                "custom_event",
                "mobile_cells",
                "input_status",
                "output_status",
            ];
            let ok = known.contains(&k.as_str())
                || k.starts_with("custom_")
                || k.starts_with("avl_io_")
                || predefined_target(k).is_some();
            if !ok {
                return Err(format!("unexpected attribute {k}"));
            }
        }
        Ok(())
    }

    fn any_f64() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            prop::num::f64::ANY.prop_map(Some),
            (-400.0..400.0f64).prop_map(Some),
            prop::sample::select(vec![0.0, -0.0, 90.0, -90.0, 180.0, 360.0, 1e308]).prop_map(Some),
        ]
    }

    fn any_io_value() -> impl Strategy<Value = IoValue> {
        prop_oneof![
            any::<u64>().prop_map(IoValue::U64),
            (0u64..300).prop_map(IoValue::U64),
            any::<i64>().prop_map(IoValue::I64),
            prop::num::f64::ANY.prop_map(IoValue::F64),
            ".{0,20}".prop_map(IoValue::Text),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(IoValue::Bytes),
            Just(IoValue::Text("x".repeat(MAX_STRING_BYTES + 1))),
        ]
    }

    fn any_io_key() -> impl Strategy<Value = IoKey> {
        let names = vec![
            "acc",
            "mcc",
            "mnc",
            "lac",
            "cell_id",
            "inputs",
            "outputs",
            "adc1",
            "adc16",
            "ibutton",
            "battery_percent",
            "external_power_mv",
            "mileage_km",
            "is_moving",
            "battery_level",
            "temperature_16",
            "analog_0",
            "impulse_counter_1",
            "vin",
            "hardware_key",
            "input_status",
            "version",
            "location",
            "device_id",
        ];
        prop_oneof![
            prop::sample::select(vec![
                1u32, 2, 3, 6, 9, 16, 66, 67, 78, 113, 179, 180, 181, 182, 239, 240
            ])
            .prop_map(IoKey::Id),
            any::<u32>().prop_map(IoKey::Id),
            prop::sample::select(names).prop_map(|n| IoKey::Name(n.to_owned())),
            ".{0,12}".prop_map(IoKey::Name),
        ]
    }

    fn any_record() -> impl Strategy<Value = Record> {
        let protocol = prop::sample::select(vec![
            Protocol::Teltonika,
            Protocol::TeltonikaUdp,
            Protocol::Gt06,
            Protocol::Queclink,
            Protocol::Wialon,
            Protocol::Nmea,
            Protocol::Jsonl,
        ]);
        let device_id = prop_oneof!["[A-Za-z0-9-]{6,32}", ".{0,40}"];
        let time = prop_oneof![
            Just(None),
            any::<i64>().prop_map(Some),
            (0i64..4_102_444_800_000).prop_map(Some),
        ];
        let event = prop_oneof![
            Just(None),
            prop::sample::select(vec!["io:239", "io:1", "sos", "spd", "ignition_on", "x"])
                .prop_map(|e| Some(e.to_owned())),
            ".{0,20}".prop_map(Some),
        ];
        let io = prop::collection::vec((any_io_key(), any_io_value()), 0..12);
        (
            (
                protocol,
                device_id,
                any::<i64>(),
                time,
                any::<Option<bool>>(),
            ),
            (any_f64(), any_f64(), any_f64(), any_f64(), any_f64()),
            (any::<Option<u8>>(), any_f64(), event, io),
        )
            .prop_map(
                |(
                    (protocol, id, received, time, valid),
                    (lat, lon, alt, speed, course),
                    (sats, hdop, event, io),
                )| {
                    let mut r = Record::new(id, protocol, received);
                    r.time_ms = time;
                    r.valid = valid;
                    (r.lat, r.lon, r.altitude_m, r.speed_kmh, r.course_deg) =
                        (lat, lon, alt, speed, course);
                    r.satellites = sats;
                    r.hdop = hdop;
                    r.event = event;
                    r.io = io;
                    r
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_record_gives_a_valid_message_or_a_documented_refusal(r in any_record()) {
            let t = topic(&r);
            let level = t.strip_prefix("ngp/").expect("prefix");
            prop_assert!(!level.contains(['+', '#', '/', '\0']), "{t}");
            prop_assert!(t.len() <= 4 + 3 * 4 * 64);
            match encode(&r) {
                Ok(Some(bytes)) => {
                    prop_assert!(check_device_id(&r.device_id).is_ok());
                    prop_assert_eq!(level, r.device_id.as_str());
                    if let Err(e) = check_message(&r, &bytes) {
                        prop_assert!(false, "{}", e);
                    }
                }
                Ok(None) => {
                    prop_assert!(r.time_ms.and_then(timestamp).is_none());
                    prop_assert!(!matches!(r.protocol, Protocol::Jsonl | Protocol::Nmea)
                        || timestamp(r.received_at_ms).is_none());
                }
                Err(NgpError::DeviceId { .. }) => {
                    prop_assert!(check_device_id(&r.device_id).is_err());
                }
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
        }
    }
}
