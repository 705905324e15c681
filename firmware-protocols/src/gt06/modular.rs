//! The modular location packet 0x70 (79 79): the content is a list of modules, each a
//! type, a length and that many bytes. No Concox document for it was found; this reads the
//! framing every module shares and decodes one module, the position, only when its length
//! is exactly the 18 bytes of that layout, so a module of another shape is kept as bytes
//! and never read as a position.
//!
//! ```text
//! module: type u16 │ length u16 │ content (length bytes)
//! 0x0033 position (18 bytes):
//!   ┌────────────┬─────┬──────────┬────────┬────────┬───────┬───────────────┐
//!   │ time u32   │ sat │ altitude │ lat u32│ lon u32│ speed │ course/status │
//!   │ Unix s UTC │ u8  │ i16 m    │ °×1.8e6│ °×1.8e6│ km/h  │ u16 (as 0x12) │
//!   └────────────┴─────┴──────────┴────────┴────────┴───────┴───────────────┘
//! ```
//!
//! io: the position's `course_status` (and `range_error` as in the GPS block), every other
//! module as `module_<type, 4 hex digits>` bytes, a truncated last module as `extra`.

use super::packets::{base, finish, name, no_later_than_tomorrow, position, push, range_errors};
use super::packets::{Context, Frame};
use crate::cursor::Cursor;
use crate::{DecodeError, IoValue, Record};

/// The position module's type and length.
const POSITION: u16 = 0x0033;
const POSITION_LEN: usize = 18;

/// 0x70: every module in turn.
pub(super) fn modular(frame: &Frame<'_>, ctx: &Context<'_>) -> Result<Record, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 8);
    while cur.remaining() >= 4 {
        let kind = cur.u16("module type")?;
        let length = usize::from(cur.u16("module length")?);
        let at = cur.offset();
        let body = cur.take(length, "module content")?;
        if kind == POSITION && length == POSITION_LEN {
            module_position(&mut Cursor::new(body, at), &mut record, ctx.now_ms)?;
        } else {
            record.io.push((
                name(&format!("module_{kind:04x}")),
                IoValue::Bytes(body.to_vec()),
            ));
        }
    }
    finish(&mut cur, &mut record, frame.serial);
    Ok(record)
}

fn module_position(
    cur: &mut Cursor<'_>,
    record: &mut Record,
    now_ms: i64,
) -> Result<(), DecodeError> {
    let seconds = cur.u32("time")?;
    let satellites = cur.u8("satellites")?;
    let altitude = cur.i16("altitude")?;
    let lat = cur.u32("latitude")?;
    let lon = cur.u32("longitude")?;
    let speed = cur.u8("speed")?;
    let course_status = cur.u16("course/status")?;
    let mut errors = Vec::new();
    record.time_ms = no_later_than_tomorrow(i64::from(seconds) * 1000, now_ms, &mut errors);
    if record.time_ms.is_none() {
        push(&mut record.io, "time_raw", seconds);
    }
    record.satellites = Some(satellites);
    record.altitude_m = Some(f64::from(altitude));
    position(record, lat, lon, course_status, &mut errors);
    record.speed_kmh = Some(f64::from(speed));
    push(&mut record.io, "course_status", course_status);
    range_errors(record, errors);
    Ok(())
}
