//! Structure check of a Codec 12 (GPRS command) packet's data field.
//!
//! A device sends Codec 12 only as the response to a command the server sent. It carries no
//! records and gets no answer; it is checked so a garbled one is not silently skipped.

use super::DATA_OFFSET;
use crate::cursor::Cursor;
use crate::DecodeError;

/// Codec 12 type byte: command, server to device.
pub(super) const TYPE_COMMAND: u8 = 0x05;
/// Codec 12 type byte: response, device to server.
pub(super) const TYPE_RESPONSE: u8 = 0x06;

/// Checks `data` (codec id .. command quantity 2). `allow_command` accepts type 0x05 too,
/// for captures that hold both directions of a connection.
pub(super) fn check(data: &[u8], allow_command: bool) -> Result<(), DecodeError> {
    let mut cur = Cursor::new(data, DATA_OFFSET);
    cur.u8("codec id")?;
    let quantity_1 = cur.u8("command quantity 1")?;
    let type_at = cur.offset();
    match cur.u8("command type")? {
        TYPE_RESPONSE => {}
        TYPE_COMMAND if allow_command => {}
        other => {
            return Err(DecodeError::new(
                type_at,
                format!("Codec 12 type 0x{other:02x}: a device sends only responses (0x06)"),
            ))
        }
    }
    let size = cur.u32("command size")?;
    let size = usize::try_from(size)
        .map_err(|_| DecodeError::new(cur.offset(), "command size does not fit in memory"))?;
    cur.take(size, "command text")?;
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
    Ok(())
}
