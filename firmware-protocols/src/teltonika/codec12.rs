//! Codec 12 (GPRS commands): the command packet the gateway sends, and the structure check of
//! the response packet's data field a device sends back.
//!
//! ```text
//!   0          4          8    9    10     11        15          15+n  16+n
//!   ┌──────────┬──────────┬────┬────┬──────┬─────────┬───────────┬─────┬─────────────┐
//!   │ 00000000 │ L  (u32) │ 0c │ 01 │ type │ n (u32) │ n bytes   │ 01  │ 0000 CRC16  │
//!   └──────────┴──────────┼────┴────┴──────┴─────────┴───────────┴─────┼─────────────┘
//!                         └──── L = n + 8 bytes, CRC-16/ARC covers them ┘
//!   type 05 = command (server → device), 06 = response (device → server, usually ASCII)
//! ```
//!
//! A response carries no records and gets no answer; it is checked so a garbled one is not
//! silently taken for an answer.

use super::DATA_OFFSET;
use crate::command::{check_ascii, CommandError};
use crate::cursor::Cursor;
use crate::{DecodeError, Protocol};

/// Codec 12 type byte: command, server to device.
pub(super) const TYPE_COMMAND: u8 = 0x05;
/// Codec 12 type byte: response, device to server.
pub(super) const TYPE_RESPONSE: u8 = 0x06;

/// The command packet carrying `text` (printable ASCII, as the firmware reads it), for TCP
/// and, unchanged, as one UDP datagram.
pub(crate) fn command_packet(protocol: Protocol, text: &str) -> Result<Vec<u8>, CommandError> {
    check_ascii(protocol, text, &[])?;
    super::encode::encode_codec12_command(text.as_bytes()).map_err(|_| CommandError::TooLong {
        protocol,
        len: text.len(),
        max: u32::MAX as usize - 8,
    })
}

/// A whole Codec 12 response packet (preamble .. CRC field, as over TCP) arriving alone, in
/// a UDP datagram: its response bytes, after the length and CRC checks a TCP frame gets.
pub(crate) fn response_packet(packet: &[u8]) -> Result<&[u8], DecodeError> {
    let (head, crc_field) = packet
        .split_last_chunk::<4>()
        .filter(|(head, _)| head.len() >= DATA_OFFSET)
        .ok_or_else(|| {
            DecodeError::new(
                0,
                format!("Codec 12 packet of {} bytes is too short", packet.len()),
            )
        })?;
    let (envelope, data) = head.split_at(DATA_OFFSET);
    let length = envelope
        .last_chunk::<4>()
        .map(|field| u32::from_be_bytes(*field))
        .unwrap_or_default();
    if usize::try_from(length).ok() != Some(data.len()) {
        return Err(DecodeError::new(
            4,
            format!(
                "data length {length} but {} bytes between it and the CRC field",
                data.len()
            ),
        ));
    }
    let sent = u32::from_be_bytes(*crc_field);
    let computed = crate::crc::crc16_arc(data);
    if sent != u32::from(computed) {
        return Err(DecodeError::new(
            head.len(),
            format!("CRC field {sent:08x} does not match CRC-16/ARC {computed:04x} of the data"),
        ));
    }
    if data.first() != Some(&super::CODEC_12) {
        return Err(DecodeError::new(
            DATA_OFFSET,
            "not a Codec 12 packet (codec id 0c)",
        ));
    }
    response(data)
}

/// The response bytes of a Codec 12 data field (codec id .. command quantity 2) that is a
/// device's response.
pub(crate) fn response(data: &[u8]) -> Result<&[u8], DecodeError> {
    check(data, false)?.ok_or_else(|| DecodeError::new(DATA_OFFSET + 2, "not a Codec 12 response"))
}

/// Checks `data` (codec id .. command quantity 2) and returns the response bytes, or `None`
/// for a command packet (type 0x05), which `allow_command` accepts for captures that hold
/// both directions of a connection.
pub(super) fn check(data: &[u8], allow_command: bool) -> Result<Option<&[u8]>, DecodeError> {
    let mut cur = Cursor::new(data, DATA_OFFSET);
    cur.u8("codec id")?;
    let quantity_1 = cur.u8("command quantity 1")?;
    let type_at = cur.offset();
    let is_response = match cur.u8("command type")? {
        TYPE_RESPONSE => true,
        TYPE_COMMAND if allow_command => false,
        other => {
            return Err(DecodeError::new(
                type_at,
                format!("Codec 12 type 0x{other:02x}: a device sends only responses (0x06)"),
            ))
        }
    };
    let size = cur.u32("command size")?;
    let size = usize::try_from(size)
        .map_err(|_| DecodeError::new(cur.offset(), "command size does not fit in memory"))?;
    let text = cur.take(size, "command text")?;
    let quantity_2_at = cur.offset();
    let quantity_2 = cur.u8("command quantity 2")?;
    if cur.remaining() != 0 {
        return Err(DecodeError::new(
            cur.offset(),
            format!("{} bytes after command quantity 2", cur.remaining()),
        ));
    }
    if quantity_1 != quantity_2 {
        return Err(DecodeError::new(
            quantity_2_at,
            format!("command quantity 2 ({quantity_2}) differs from quantity 1 ({quantity_1})"),
        ));
    }
    Ok(is_response.then_some(text))
}
