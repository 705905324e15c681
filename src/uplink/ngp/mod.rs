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
//! What a protocol's io keys and events mean comes from its registry entry
//! (`firmware_protocols::meaning`: standard attributes, standard events, whether the device
//! stores records while offline); this module maps only that standard vocabulary to NGP
//! names and names no protocol's io id or event. One file per job: `location` (position
//! fields), `attributes` (io → root attributes), `events` (`event_id`), and this one, which
//! assembles the message and owns the rules that apply to all of it.
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
//!   out-of-order messages are discarded". Trackers (their registry entry says
//!   `stores_offline`: Teltonika, GT06, Queclink, Wialon) keep records while offline and
//!   send them later; stamping a time-less record (a GT06 heartbeat, a Queclink report without
//!   a fix) with the gateway's receive time would make Navixy discard every stored record the
//!   device sends after it. Local sensors (`jsonl`, `nmea`) keep nothing back, so their
//!   records without a device time get the gateway's receive time instead. The caller counts
//!   skipped records.
//! - **Version 1.0.** Every message says `"version": "1.0"`: 1.1a needs an arrangement with
//!   Navixy and 1.2 adds nothing a record carries.

mod attributes;
mod events;
mod location;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::Record;
use serde_json::{Map, Number, Value};

use attributes::MappedIo;
use events::{event, Event};
pub use location::heading;
use location::location;

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

    let io = MappedIo::of(record);

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
    // Devices that store records while offline send them later; lines and sentences are
    // read as the sensor writes them.
    if !record.stored_offline() {
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

/// A finite f64 as a JSON number, with −0.0 written as 0 (so "positive" rules hold).
fn float(value: f64) -> Option<Value> {
    // `+ 0.0` turns −0.0 into +0.0 and leaves every other value alone.
    Number::from_f64(value + 0.0).map(Value::Number)
}

/// A string value if it fits NGP's String limit.
fn string(text: &str) -> Option<Value> {
    (text.len() <= MAX_STRING_BYTES).then(|| Value::String(text.to_owned()))
}
