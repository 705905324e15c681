//! Checked messages into [`Record`]s: which reports carry fix blocks, the event names and
//! the io names.
//!
//! The rules (which report types carry blocks, event names, io names) are tabled in the
//! `queclink` module doc, the public description of what this decoder produces.

use super::fix::{self, Empty, Fix, Located};
use super::message::{Field, Header, Message};
use crate::{DecodeError, IoKey, IoValue, Protocol, Record};

/// What every record of a message shares.
pub(super) struct Context {
    pub now_ms: i64,
    pub keep_raw: bool,
}

/// Where a report type's fix blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A Number field and that many blocks, always.
    Numbered,
    /// One block after event-specific fields, always.
    Single,
    /// Unknown to this decoder: numbered, single or none, whichever the fields show.
    Any,
}

fn shape(kind: &str) -> Shape {
    match kind {
        "FRI" | "ERI" | "GEO" | "SPD" | "SOS" | "RTL" | "PNL" | "NMR" | "DOG" | "IGL" | "DIS" => {
            Shape::Numbered
        }
        "IGN" | "IGF" => Shape::Single,
        _ => Shape::Any,
    }
}

/// The record event of a message (see the module doc).
pub(super) fn event(msg: &Message<'_>) -> Option<String> {
    if msg.header == Header::Ack {
        return Some("ack".to_owned());
    }
    match msg.kind() {
        "FRI" | "ERI" => None,
        kind => Some(kind.to_ascii_lowercase()),
    }
}

/// The records of a `+RESP` / `+BUFF` / `+ACK` message (not the heartbeat).
pub(super) fn records(msg: &Message<'_>, ctx: &Context) -> Result<Vec<Record>, DecodeError> {
    let located = if msg.header == Header::Ack {
        None
    } else {
        locate(msg)?
    };
    let event = event(msg);
    let raw = ctx.keep_raw.then(|| msg.text.to_owned());
    let new_record = || {
        let mut r = Record::new(msg.unique_id, Protocol::Queclink, ctx.now_ms);
        r.event = event.clone();
        r.raw = raw.clone();
        r
    };

    let Some(located) = located else {
        // No position: every middle field by its number.
        let mut r = new_record();
        r.io = head_io(msg, 6 + msg.middle.len());
        push_fields(&mut r.io, &msg.middle, &[]);
        push_tail(&mut r.io, msg);
        return Ok(vec![r]);
    };

    let (prefix_names, suffix_names) = names(msg, &located);
    let prefix = msg.middle.get(..located.prefix_len).unwrap_or_default();
    let suffix = msg.middle.get(located.suffix_start..).unwrap_or_default();
    // Each record's io is built from the fields directly: cloning a shared head and tail
    // would cost the same per record and an extra copy for the common one-fix message.
    let capacity = 10 + prefix.len() + suffix.len();
    let mut out = Vec::with_capacity(located.fixes.len());
    for fix in &located.fixes {
        let mut r = new_record();
        fill_position(&mut r, fix);
        let mut io = head_io(msg, capacity);
        push_fields(&mut io, prefix, prefix_names);
        push_fix_io(&mut io, fix);
        push_fields(&mut io, suffix, suffix_names);
        push_tail(&mut io, msg);
        r.io = io;
        out.push(r);
    }
    Ok(out)
}

/// Finds the fix blocks the report type calls for; `None` for a report without any.
fn locate<'a>(msg: &Message<'a>) -> Result<Option<Located<'a>>, DecodeError> {
    let middle = &msg.middle;
    match shape(msg.kind()) {
        Shape::Numbered => fix::find_numbered(middle, Empty::Allowed)
            .map(Some)
            .map_err(|best| match best {
                Some(e) => e.first,
                None => no_block(msg, "Number field (1 to 15) followed by its fix blocks"),
            }),
        Shape::Single => fix::find_single(middle, Empty::Allowed)
            .map(Some)
            .map_err(|best| match best {
                Some(e) => e.first,
                None => no_block(msg, "12-field fix block"),
            }),
        Shape::Any => Ok(fix::find_numbered(middle, Empty::Refused)
            .or_else(|_| fix::find_single(middle, Empty::Refused))
            .ok()),
    }
}

#[cold]
fn no_block(msg: &Message<'_>, wanted: &str) -> DecodeError {
    let offset = msg.middle.first().map_or(0, |f| f.offset);
    DecodeError::new(
        offset,
        format!(
            "{}: no {wanted} among the {} fields between the device name and the send time",
            msg.report,
            msg.middle.len()
        ),
    )
}

fn fill_position(r: &mut Record, fix: &Fix<'_>) {
    r.time_ms = fix.utc_ms;
    if let Some((lat, lon)) = fix.position {
        r.lat = Some(lat);
        r.lon = Some(lon);
    }
    // Accuracy 0 = no current fix: the block holds the last known position, kept but
    // invalid. No position at all is never a fix. An empty accuracy next to a position
    // says nothing either way.
    r.valid = match (fix.position, fix.accuracy) {
        (None, _) => Some(false),
        (Some(_), Some(acc)) => Some(acc > 0.0),
        (Some(_), None) => None,
    };
    r.hdop = fix.accuracy.filter(|&acc| acc > 0.0);
    r.speed_kmh = fix.speed_kmh;
    r.course_deg = fix.azimuth;
    r.altitude_m = fix.altitude_m;
}

fn name(n: &str) -> IoKey {
    IoKey::Name(n.to_owned())
}

fn text(t: &str) -> IoValue {
    IoValue::Text(t.to_owned())
}

fn head_io(msg: &Message<'_>, capacity: usize) -> Vec<(IoKey, IoValue)> {
    let mut io = Vec::with_capacity(capacity);
    io.push((name("report"), text(msg.report)));
    if msg.header == Header::Buff {
        io.push((name("buffered"), IoValue::U64(1)));
    }
    if !msg.version.is_empty() {
        io.push((name("protocol_version"), text(msg.version)));
    }
    if !msg.device_name.is_empty() {
        io.push((name("device_name"), text(msg.device_name)));
    }
    io
}

fn push_tail(io: &mut Vec<(IoKey, IoValue)>, msg: &Message<'_>) {
    if !msg.send_time.is_empty() {
        io.push((name("send_time"), text(msg.send_time)));
    }
    // Checked as 4 hex digits by the message parser.
    if let Ok(count) = u64::from_str_radix(msg.count, 16) {
        io.push((name("count"), IoValue::U64(count)));
    }
}

fn push_fix_io(io: &mut Vec<(IoKey, IoValue)>, fix: &Fix<'_>) {
    let numbers = [
        ("mcc", fix.mcc),
        ("mnc", fix.mnc),
        ("lac", fix.lac),
        ("cell_id", fix.cell_id),
    ];
    for (key, value) in numbers {
        if let Some(v) = value {
            io.push((name(key), IoValue::U64(v)));
        }
    }
    if !fix.reserved.is_empty() {
        io.push((name("fix_reserved"), text(fix.reserved)));
    }
    if let (Some(t), None) = (fix.utc_text, fix.utc_ms) {
        io.push((name("gps_utc_time"), text(t)));
    }
}

/// How a named field's value is kept.
#[derive(Debug, Clone, Copy)]
enum Kind {
    U64,
    F64,
    Text,
}

type Named = (&'static str, Kind);

const GL_PREFIX: &[Named] = &[("report_id", Kind::U64), ("report_type", Kind::U64)];
const GL_SUFFIX: &[Named] = &[("battery_percent", Kind::U64)];
const GV200_FRI_PREFIX: &[Named] = &[
    ("external_power_mv", Kind::U64),
    ("report_id_type", Kind::Text),
];
const GV200_ERI_PREFIX: &[Named] = &[
    ("eri_mask", Kind::Text),
    ("external_power_mv", Kind::U64),
    ("report_id_type", Kind::Text),
];
const ERI_PREFIX: &[Named] = &[("eri_mask", Kind::Text)];
const GV200_FRI_SUFFIX: &[Named] = &[
    ("mileage_km", Kind::F64),
    ("hour_meter", Kind::Text),
    ("analog_in_1", Kind::U64),
    ("analog_in_2", Kind::U64),
    ("backup_battery_percent", Kind::U64),
    ("device_status", Kind::Text),
];

/// Device types (first byte of the protocol version) of the GL series in the fact sheet.
const GL_TYPES: [&str; 3] = ["02", "1A", "2C"];
const GV200_TYPE: &str = "04";

/// The names for the prefix and suffix fields of a message whose blocks were found.
fn names(msg: &Message<'_>, located: &Located<'_>) -> (&'static [Named], &'static [Named]) {
    // 10-char versions (newer firmware) encode the type differently: no names for them.
    let device_type = if msg.version.len() == 6 {
        msg.version.get(..2).unwrap_or_default()
    } else {
        ""
    };
    let is = |t: &str| device_type.eq_ignore_ascii_case(t);
    let numbered = located.numbered;
    let prefix_len = located.prefix_len;
    match msg.kind() {
        "ERI" if is(GV200_TYPE) && numbered && prefix_len == 3 => (GV200_ERI_PREFIX, &[]),
        "ERI" => (ERI_PREFIX, &[]),
        "FRI" if is(GV200_TYPE) && numbered && prefix_len == 2 => {
            (GV200_FRI_PREFIX, GV200_FRI_SUFFIX)
        }
        _ if GL_TYPES.iter().any(|t| is(t)) && numbered && prefix_len == 2 => {
            (GL_PREFIX, GL_SUFFIX)
        }
        _ => (&[], &[]),
    }
}

/// Appends the non-empty `fields`, the first ones under `names`, the rest by number.
fn push_fields(io: &mut Vec<(IoKey, IoValue)>, fields: &[Field<'_>], names: &[Named]) {
    for (i, field) in fields.iter().enumerate() {
        if field.is_empty() {
            continue;
        }
        match names.get(i) {
            Some(&(key, kind)) => io.push((name(key), typed(kind, field.text))),
            None => io.push((
                IoKey::Name(format!("field_{}", field.number)),
                text(field.text),
            )),
        }
    }
}

fn typed(kind: Kind, t: &str) -> IoValue {
    let digits = !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    match kind {
        Kind::U64 if digits => t.parse().map_or_else(|_| text(t), IoValue::U64),
        Kind::F64 => match fix::decimal(t, true) {
            Some(Some(v)) => IoValue::F64(v),
            _ => text(t),
        },
        Kind::U64 | Kind::Text => text(t),
    }
}
