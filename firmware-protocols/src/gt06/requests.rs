//! Packets the device sends and then waits on an answer with content: the time request
//! and the address requests. Without these answers the device stalls (it sends nothing
//! else until the time is set) or keeps asking.
//!
//! ```text
//! 0x8A time request: no content.
//!   answer 78 78 0B 8A │ YY MM DD hh mm ss (UTC, binary) │ serial │ CRC │ 0d 0a
//! 0x2A / 0x1A address request: GPS block (18) │ phone number, 21 bytes ASCII │ language u16
//!   answer, English (language byte 2 ≠ 1): 79 79 len16 97 │ content │ serial │ CRC │ 0d 0a
//!   answer, Chinese (language byte 2 = 1):  78 78 len8  17 │ content │ serial │ CRC │ 0d 0a
//!   content: len u8 (server flag + the rest) │ server flag u32 = 0 │ "ADDRESS" │ "&&" │
//!            address (ASCII; UTF-16BE in the Chinese form) │ "&&" │ phone (21) │ "##"
//! ```
//!
//! The gateway has no geocoder: the address it answers is the request's own position as
//! `lat,lon` with 6 decimals (what a person reading the device's SMS can paste into a map),
//! or `NA` when the request carries no valid position. Both answers echo the request's
//! serial number.

use super::encode;
use super::packets::{base, finish, gps, name, push, Context, Frame};
use super::{ADDRESS_ANSWER, ADDRESS_ANSWER_CHINESE, TIME_REQUEST};
use crate::cursor::Cursor;
use crate::record::format_rfc3339_ms;
use crate::{DecodeError, IoValue, Record};

/// The phone number field of an address request.
const PHONE_LEN: usize = 21;

/// An address request: the record (a position, event `address_request`) and the answer.
pub(super) fn address_request(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
) -> Result<(Record, Option<Vec<u8>>), DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 8);
    record.event = Some("address_request".to_owned());
    gps(&mut cur, &mut record, ctx.now_ms)?;
    let phone = cur.take(PHONE_LEN, "phone number")?;
    let phone_text: String = String::from_utf8_lossy(phone)
        .trim_end_matches('\0')
        .to_owned();
    record.io.push((name("phone"), IoValue::Text(phone_text)));
    let language = if cur.remaining() >= 2 {
        let word = cur.u16("language")?;
        push(&mut record.io, "language", word);
        word
    } else {
        0
    };
    finish(&mut cur, &mut record, frame.serial);
    let address = match (record.valid, record.lat, record.lon) {
        (Some(true), Some(lat), Some(lon)) => format!("{lat:.6},{lon:.6}"),
        _ => "NA".to_owned(),
    };
    let chinese = language & 0xFF == 0x01;
    Ok((
        record,
        address_answer(chinese, &address, phone, frame.serial),
    ))
}

/// The address answer: 0x17 (78 78, address in UTF-16BE) for a device set to Chinese,
/// else 0x97 (79 79, ASCII). `None` only if the phone field makes it too long to frame.
pub fn address_answer(chinese: bool, address: &str, phone: &[u8], serial: u16) -> Option<Vec<u8>> {
    let mut rest = Vec::with_capacity(4 + 7 + 2 + address.len() * 2 + 2 + phone.len() + 2);
    rest.extend_from_slice(&[0, 0, 0, 0]);
    rest.extend_from_slice(b"ADDRESS&&");
    if chinese {
        rest.extend(address.encode_utf16().flat_map(u16::to_be_bytes));
    } else {
        rest.extend_from_slice(address.as_bytes());
    }
    rest.extend_from_slice(b"&&");
    rest.extend_from_slice(phone);
    rest.extend_from_slice(b"##");
    let mut content = Vec::with_capacity(rest.len() + 1);
    content.push(u8::try_from(rest.len()).ok()?);
    content.extend(rest);
    if chinese {
        encode::frame(ADDRESS_ANSWER_CHINESE, &content, serial).ok()
    } else {
        encode::frame_long(ADDRESS_ANSWER, &content, serial).ok()
    }
}

/// The time request's answer: the gateway's UTC time `now_ms` as YY MM DD hh mm ss, with
/// the request's serial. `None` outside the years 2000–2255 the format can carry.
pub fn time_answer(now_ms: i64, serial: u16) -> Option<Vec<u8>> {
    let text = format_rfc3339_ms(now_ms);
    let field = |at: usize, len: usize| -> Option<u16> { text.get(at..at + len)?.parse().ok() };
    let year = field(0, 4)?.checked_sub(2000)?;
    let time = [
        u8::try_from(year).ok()?,
        u8::try_from(field(5, 2)?).ok()?,
        u8::try_from(field(8, 2)?).ok()?,
        u8::try_from(field(11, 2)?).ok()?,
        u8::try_from(field(14, 2)?).ok()?,
        u8::try_from(field(17, 2)?).ok()?,
    ];
    encode::frame(TIME_REQUEST, &time, serial).ok()
}
