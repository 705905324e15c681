//! Checked messages into [`Record`]s: the layout a message gets (`layout`, `mask`), event
//! names and io names.
//!
//! The rules (layouts, event names, io names) are tabled in the `queclink` module doc, the
//! public description of what this decoder produces.

use super::fix::{self, Fix};
use super::layout::{self, IoField, Kind, Misfit, Outcome, Placed, Shape};
use super::mask;
use super::message::{Field, Header, Message};
use crate::{DecodeError, IoKey, IoValue, Protocol, Record};

/// What every record of a message shares.
pub(super) struct Context {
    pub now_ms: i64,
    pub keep_raw: bool,
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

/// The records of a `+RESP` / `+BUFF` / `+ACK` message (not the heartbeat). A message whose
/// fields fit no layout is kept without a position; `Err` only for a broken one (a field of
/// the wrong form where a layout's count fits exactly).
pub(super) fn records(msg: &Message<'_>, ctx: &Context) -> Result<Vec<Record>, DecodeError> {
    let device = layout::device_type(msg.version);
    // GV500 family (and every GTOBD): field 3 is the VIN, the device name follows it.
    let vin_first = msg.header != Header::Ack
        && (layout::vin_first(device) || msg.kind() == "OBD")
        && !msg.middle.is_empty();
    let (vin, name, middle) = match (vin_first, msg.middle.split_first()) {
        (true, Some((name, rest))) if msg.kind() != "OBD" => (msg.device_name, name.text, rest),
        // GTOBD: the mask layout names the device name itself.
        (true, Some(_)) => (msg.device_name, "", &msg.middle[..]),
        _ => ("", msg.device_name, &msg.middle[..]),
    };

    let outcome = if msg.header == Header::Ack {
        Outcome::Placed(Placed {
            head: layout::name_fields(middle, &[]),
            ..Placed::default()
        })
    } else {
        match layout::shape(msg.kind()) {
            None => Outcome::Unknown,
            Some(Shape::NoFix) => Outcome::Placed(Placed {
                head: layout::name_fields(middle, &[]),
                ..Placed::default()
            }),
            Some(Shape::Can) => mask::can(middle, ctx.now_ms),
            Some(Shape::Obd) => mask::obd(middle, ctx.now_ms),
            Some(Shape::Blocks(variants)) => {
                match layout::place(variants, device, middle, ctx.now_ms) {
                    Ok(placed) => Outcome::Placed(placed),
                    Err(Misfit::Broken(e)) => return Err(e),
                    Err(Misfit::NoFit(Some(e))) => Outcome::Mismatch(e),
                    Err(Misfit::NoFit(None)) => Outcome::Mismatch(DecodeError::new(
                        middle.first().map_or(0, |f| f.offset),
                        format!(
                            "{}: {} fields between the device name and the send time fit no \
                             documented layout",
                            msg.report,
                            middle.len()
                        ),
                    )),
                }
            }
        }
    };

    let event = event(msg);
    let raw = ctx.keep_raw.then(|| msg.text.to_owned());
    let new_record = || {
        let mut r = Record::new(msg.unique_id, Protocol::Queclink, ctx.now_ms);
        r.event = event.clone();
        r.raw = raw.clone();
        r
    };
    let head = |capacity: usize| {
        let mut io = Vec::with_capacity(capacity);
        io.push((key("report"), text(msg.report)));
        if msg.header == Header::Buff {
            io.push((key("buffered"), IoValue::U64(1)));
        }
        push_text(&mut io, "protocol_version", msg.version);
        push_text(&mut io, "vin", vin);
        push_text(&mut io, "device_name", name);
        io
    };

    let placed = match outcome {
        Outcome::Placed(placed) => placed,
        Outcome::Unknown | Outcome::Mismatch(_) => {
            // Every field by its number, and why there is no position.
            let mut r = new_record();
            let mut io = head(8 + middle.len());
            push_fields(&mut io, &layout::name_fields(middle, &[]));
            match outcome {
                Outcome::Mismatch(e) => {
                    io.push((key("layout"), text("mismatch")));
                    io.push((key("layout_error"), IoValue::Text(e.to_string())));
                }
                _ => io.push((key("layout"), text("unknown"))),
            }
            push_tail(&mut io, msg);
            r.io = io;
            return Ok(vec![r]);
        }
    };

    let capacity = 12 + placed.head.len() + placed.tail.len();
    if placed.fixes.is_empty() {
        let mut r = new_record();
        let mut io = head(capacity);
        push_fields(&mut io, &placed.head);
        push_fields(&mut io, &placed.tail);
        push_tail(&mut io, msg);
        r.io = io;
        return Ok(vec![r]);
    }
    Ok(placed
        .fixes
        .iter()
        .map(|fix| {
            let mut r = new_record();
            fill_position(&mut r, fix);
            let mut io = head(capacity);
            push_fields(&mut io, &placed.head);
            push_fix_io(&mut io, fix);
            push_fields(&mut io, &placed.tail);
            push_tail(&mut io, msg);
            r.io = io;
            r
        })
        .collect())
}

fn fill_position(r: &mut Record, fix: &Fix<'_>) {
    r.time_ms = fix.utc_ms;
    if let Some((lat, lon)) = fix.position {
        r.lat = Some(lat);
        r.lon = Some(lon);
    }
    // Accuracy 0 = no current fix: the block holds the last known position, kept but
    // invalid. No position at all is never a fix, nor is a block with a value out of its
    // range. An empty accuracy next to a position says nothing either way.
    r.valid = match (fix.position, fix.accuracy) {
        _ if !fix.out_of_range.is_empty() => Some(false),
        (None, _) => Some(false),
        (Some(_), Some(acc)) => Some(acc > 0.0),
        (Some(_), None) => None,
    };
    r.hdop = fix.accuracy.filter(|&acc| acc > 0.0);
    r.speed_kmh = fix.speed_kmh;
    r.course_deg = fix.azimuth;
    r.altitude_m = fix.altitude_m;
}

fn key(n: &str) -> IoKey {
    IoKey::Name(n.to_owned())
}

fn text(t: &str) -> IoValue {
    IoValue::Text(t.to_owned())
}

fn push_text(io: &mut Vec<(IoKey, IoValue)>, name: &str, value: &str) {
    if !value.is_empty() {
        io.push((key(name), text(value)));
    }
}

fn push_tail(io: &mut Vec<(IoKey, IoValue)>, msg: &Message<'_>) {
    push_text(io, "send_time", msg.send_time);
    // Checked as 4 hex digits by the message parser.
    if let Ok(count) = u64::from_str_radix(msg.count, 16) {
        io.push((key("count"), IoValue::U64(count)));
    }
}

fn push_fix_io(io: &mut Vec<(IoKey, IoValue)>, fix: &Fix<'_>) {
    let numbers = [
        ("mcc", fix.mcc),
        ("mnc", fix.mnc),
        ("lac", fix.lac),
        ("cell_id", fix.cell_id),
    ];
    for (name, value) in numbers {
        if let Some(v) = value {
            io.push((key(name), IoValue::U64(v)));
        }
    }
    push_text(io, "fix_reserved", fix.reserved);
    if let (Some(t), None) = (fix.utc_text, fix.utc_ms) {
        io.push((key("gps_utc_time"), text(t)));
    }
    if !fix.out_of_range.is_empty() {
        io.push((
            key("range_error"),
            IoValue::Text(fix.out_of_range.join("; ")),
        ));
    }
}

/// Appends the non-empty fields, under their names or as `field_<n>`.
fn push_fields(io: &mut Vec<(IoKey, IoValue)>, fields: &[IoField<'_>]) {
    for IoField { field, name } in fields {
        if field.is_empty() {
            continue;
        }
        let (name, kind) = *name;
        if kind == Kind::Raw {
            io.push((numbered(field), text(field.text)));
        } else {
            io.push((key(name), typed(kind, field.text)));
        }
    }
}

fn numbered(field: &Field<'_>) -> IoKey {
    IoKey::Name(format!("field_{}", field.number))
}

/// A value as its kind; one that does not parse as its kind stays text.
fn typed(kind: Kind, t: &str) -> IoValue {
    let parsed = match kind {
        Kind::U64 => fix::uint(t, 20, 10).flatten().map(IoValue::U64),
        Kind::Hex => fix::uint(t, 16, 16).flatten().map(IoValue::U64),
        Kind::F64 => fix::decimal(t, true).flatten().map(IoValue::F64),
        Kind::Text | Kind::Raw => None,
    };
    parsed.unwrap_or_else(|| text(t))
}
