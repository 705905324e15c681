//! Packets that carry no position: answers to online commands and information
//! transmissions. Each becomes a record without time or position, so a command's answer and
//! a device's external voltage, door state or SIM identity reach the cloud.
//!
//! ```text
//! 0x15 command answer (78 78)
//!   ┌─────────┬─────────────┬──────────────────────┬──────────────┐
//!   │ len u8  │ server flag │ text, ASCII          │ language u16 │   len = 4 + text
//!   │         │ u32         │ (len − 4 bytes)      │ (if sent)    │
//!   └─────────┴─────────────┴──────────────────────┴──────────────┘
//! 0x21 command answer (79 79)
//!   ┌─────────────┬──────────────────────────┬──────────────────────────┐
//!   │ server flag │ encoding u8              │ text to the serial       │
//!   │ u32         │ 1 ASCII, 2 UTF-16BE      │                          │
//!   └─────────────┴──────────────────────────┴──────────────────────────┘
//! 0x94 information transmission (79 79; a 78 78 frame with 2 content bytes is the external
//! voltage alone): sub-type u8, then
//!   0x00 external voltage u16 (0.01 V)       0x04 terminal status text (ASCII "ALM1=…;")
//!   0x05 door: bit 0 door, 1 trigger level, 2 I/O port
//!   0x0A IMEI 8 + IMSI 8 + ICCID 10 (BCD)     0x09 satellite status, 0x1B RFID, others: bytes
//! ```
//!
//! io: `server_flag`, `encoding` (0x21), `command_answer` (text), `language`;
//! `info_type` then `external_voltage` (raw, 0.01 V) | `terminal_status` |
//! `door_status` + `door`, `door_trigger`, `io_port` | `imei`, `imsi`, `iccid` (digits, BCD
//! padding dropped) | `info` (bytes of the other sub-types).

use super::command::answer_key;
use super::packets::{base, finish, name, push, Context, Frame};
use crate::command::{answer_text, AnswerKey, CommandAnswer};
use crate::cursor::Cursor;
use crate::{DecodeError, IoValue, Record};

/// The event of a command answer, so it is found among the positions.
const COMMAND_ANSWER_EVENT: &str = "command_answer";

/// A command answer: the record kept for it (as before commands existed), and the answer
/// for the command it names (`None` for a server flag the gateway did not send).
pub(super) type Answered = (Record, Option<CommandAnswer>);

/// 0x15: length, server flag, ASCII text, language.
pub(super) fn command_answer(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
) -> Result<Answered, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 4);
    record.event = Some(COMMAND_ANSWER_EVENT.to_owned());
    let at = cur.offset();
    // Length 0: an empty answer, with neither flag nor text: it can only answer the command
    // outstanding.
    let length = usize::from(cur.u8("command length")?);
    let mut answer = Some(CommandAnswer {
        key: AnswerKey::Outstanding,
        text: String::new(),
        device_error: false,
    });
    if length > 0 {
        if length < 4 {
            return Err(DecodeError::new(
                at,
                format!("command length {length} is shorter than its 4-byte server flag"),
            ));
        }
        let flag = cur.u32("server flag")?;
        let text = cur.take(length - 4, "command text")?;
        answer = answer_key(flag).map(|key| CommandAnswer {
            key,
            text: answer_text(text),
            device_error: false,
        });
        push(&mut record.io, "server_flag", flag);
        record.io.push((
            name("command_answer"),
            IoValue::Text(String::from_utf8_lossy(text).into_owned()),
        ));
    }
    if cur.remaining() >= 2 {
        let language = cur.u16("language")?;
        push(&mut record.io, "language", language);
    }
    finish(&mut cur, &mut record, frame.serial);
    Ok((record, answer))
}

/// 0x21: server flag, encoding, text (ASCII, or UTF-16BE for encoding 2).
pub(super) fn command_answer_long(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
) -> Result<Answered, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 4);
    record.event = Some(COMMAND_ANSWER_EVENT.to_owned());
    let flag = cur.u32("server flag")?;
    let encoding = cur.u8("encoding")?;
    let text = cur.rest();
    let decoded = if encoding == 2 {
        let units: Vec<u16> = text
            .chunks(2)
            .map(|pair| match pair {
                &[hi, lo] => u16::from_be_bytes([hi, lo]),
                // An odd last byte: half a code unit.
                _ => 0xFFFD,
            })
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(text).into_owned()
    };
    let answer = answer_key(flag).map(|key| CommandAnswer {
        key,
        text: if encoding == 2 {
            decoded.clone()
        } else {
            answer_text(text)
        },
        device_error: false,
    });
    push(&mut record.io, "server_flag", flag);
    push(&mut record.io, "encoding", encoding);
    record
        .io
        .push((name("command_answer"), IoValue::Text(decoded)));
    finish(&mut cur, &mut record, frame.serial);
    Ok((record, answer))
}

/// 0x94: the sub-type, then its data. Some firmware sends the external voltage alone, with
/// no sub-type, in a 78 78 frame (`long` false): two bytes of content there are that.
pub(super) fn information(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
    long: bool,
) -> Result<Record, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 6);
    if !long && frame.content.len() == 2 {
        let volts = cur.u16("external voltage")?;
        push(&mut record.io, "external_voltage", volts);
        finish(&mut cur, &mut record, frame.serial);
        return Ok(record);
    }
    let kind = cur.u8("information type")?;
    push(&mut record.io, "info_type", kind);
    let io = &mut record.io;
    match kind {
        0x00 => {
            let volts = cur.u16("external voltage")?;
            push(io, "external_voltage", volts);
        }
        0x04 => {
            let text = String::from_utf8_lossy(cur.rest()).into_owned();
            io.push((name("terminal_status"), IoValue::Text(text)));
        }
        0x05 => {
            let door = cur.u8("door status")?;
            push(io, "door_status", door);
            push(io, "door", door & 1);
            push(io, "door_trigger", door >> 1 & 1);
            push(io, "io_port", door >> 2 & 1);
        }
        0x0A => {
            let imei = digits(cur.take(8, "IMEI")?);
            let imsi = digits(cur.take(8, "IMSI")?);
            let iccid = digits(cur.take(10, "ICCID")?);
            // Both ids fill 16 nibbles behind a leading 0 when they have 15 digits.
            for (key, value) in [("imei", imei), ("imsi", imsi), ("iccid", iccid)] {
                let value = if key == "iccid" {
                    value
                } else {
                    value.strip_prefix('0').map(str::to_owned).unwrap_or(value)
                };
                io.push((name(key), IoValue::Text(value)));
            }
        }
        _ => io.push((name("info"), IoValue::Bytes(cur.rest().to_vec()))),
    }
    finish(&mut cur, &mut record, frame.serial);
    Ok(record)
}

/// BCD bytes as their digits; `f` nibbles (padding) are dropped, other non-digits kept as
/// hex so nothing is lost.
fn digits(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .filter(|&n| n != 0x0F)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('?'))
        .collect()
}
