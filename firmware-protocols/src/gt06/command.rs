//! GT06 online commands (protocol 0x80) and how an answer names its command. Source: Concox
//! "GPS Tracker Communication Protocol" (GT06N), §6.1 / §6.2 and the captured exchanges in
//! its Appendix B; fact sheet `shared/protocols/commands.md`.
//!
//! ```text
//! gateway ──▶ device (78 78)
//!   0      2     3    4         5              9            9+M       11+M     13+M
//!   ┌──────┬─────┬────┬─────────┬──────────────┬────────────┬─────────┬────────┬───────┐
//!   │ 7878 │ len │ 80 │ 4 + M   │ server flag  │ command    │ serial  │ CRC    │ 0d 0a │
//!   │      │ u8  │    │ u8      │ 00 00 tok tok│ ASCII, M   │ u16     │ X-25   │       │
//!   └──────┴─────┴────┴─────────┴──────────────┴────────────┴─────────┴────────┴───────┘
//! device ──▶ gateway
//!   78 78 len 15 (4 + M) flag text [language 00 01 | 00 02] serial CRC 0d 0a
//!   79 79 len(2) 21 flag encoding (01 ASCII, 02 UTF-16BE) text serial CRC 0d 0a
//! ```
//!
//! The table in §6.1 lists a 2-byte language after the command text, but the document's own
//! captured server frames (Appendix B: `78 78 15 80 0F 00 01 A9 58 "DYD,000000#" 00 A0 …`)
//! carry none, and Appendix C calls the field "reserved extended bit, N bytes". The gateway
//! sends what the captured traffic shows: no language field. The device frames the text by
//! its "length of command" either way.
//!
//! The server flag is the gateway's token in its low two bytes (the high two are zero), and
//! the frame's serial number is the token too. A device echoes the flag unchanged, so an
//! answer whose flag has non-zero high bytes answers a command some other server sent: it is
//! stored as a record like every answer, but names no command of the gateway's.

use super::encode;
use crate::command::{check_ascii, AnswerKey, CommandError};
use crate::Protocol;

/// Online command, server to device.
pub const ONLINE_COMMAND: u8 = 0x80;
/// The longest command text a 78 78 frame carries: 255 − protocol, command length, flag,
/// serial, CRC.
pub const MAX_COMMAND_TEXT: usize = 255 - 1 - 1 - 4 - 2 - 2;

/// The 0x80 frame carrying `text` with the gateway's `token`.
pub(crate) fn command_frame(token: u16, text: &str) -> Result<Vec<u8>, CommandError> {
    check_ascii(Protocol::Gt06, text, &[])?;
    let [hi, lo] = token.to_be_bytes();
    frame_with_flag([0, 0, hi, lo], text.as_bytes(), token)
}

/// A 0x80 frame with any server flag and serial (the layout of the vendor's examples).
fn frame_with_flag(flag: [u8; 4], text: &[u8], serial: u16) -> Result<Vec<u8>, CommandError> {
    let too_long = || CommandError::TooLong {
        protocol: Protocol::Gt06,
        len: text.len(),
        max: MAX_COMMAND_TEXT,
    };
    if text.len() > MAX_COMMAND_TEXT {
        return Err(too_long());
    }
    let length = u8::try_from(flag.len() + text.len()).map_err(|_| too_long())?;
    let mut content = Vec::with_capacity(1 + flag.len() + text.len());
    content.push(length);
    content.extend_from_slice(&flag);
    content.extend_from_slice(text);
    encode::frame(ONLINE_COMMAND, &content, serial).map_err(|_| too_long())
}

/// The command an answer's server flag names: the gateway's token when the high two bytes
/// are zero, else none of the gateway's commands.
pub(crate) fn answer_key(flag: u32) -> Option<AnswerKey> {
    u16::try_from(flag).ok().map(AnswerKey::Token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Appendix B of the Concox GT06N document: the server's "disconnect oil and
    /// electricity" and "connect" commands, byte for byte.
    #[test]
    fn frames_match_the_vendor_captures() {
        let dyd =
            hex("78 78 15 80 0F 00 01 A9 58 44 59 44 2C 30 30 30 30 30 30 23 00 A0 DC F1 0D 0A");
        let flag = [0x00, 0x01, 0xA9, 0x58];
        assert_eq!(frame_with_flag(flag, b"DYD,000000#", 0x00A0), Ok(dyd));
        let hfyd =
            hex("78 78 16 80 10 00 01 A9 63 48 46 59 44 2C 30 30 30 30 30 30 23 00 A0 7B DC 0D 0A");
        let flag = [0x00, 0x01, 0xA9, 0x63];
        assert_eq!(frame_with_flag(flag, b"HFYD,000000#", 0x00A0), Ok(hfyd));
    }

    #[test]
    fn the_token_is_the_flag_and_the_serial() {
        let frame = command_frame(0x1234, "WHERE#").unwrap();
        assert_eq!(
            frame.get(..9),
            Some(&[0x78, 0x78, 0x10, 0x80, 0x0A, 0, 0, 0x12, 0x34][..])
        );
        assert_eq!(frame.get(9..15), Some(&b"WHERE#"[..]));
        assert_eq!(frame.get(15..17), Some(&[0x12, 0x34][..]));
        assert_eq!(answer_key(0x0000_1234), Some(AnswerKey::Token(0x1234)));
        assert_eq!(answer_key(0x0001_A958), None);
    }

    #[test]
    fn text_limits_are_named() {
        let longest = "A".repeat(MAX_COMMAND_TEXT);
        assert_eq!(command_frame(1, &longest).map(|f| f.len()), Ok(260));
        let e = command_frame(1, &format!("{longest}A"));
        assert!(
            matches!(
                e,
                Err(CommandError::TooLong {
                    len: 246,
                    max: 245,
                    ..
                })
            ),
            "{e:?}"
        );
        let e = command_frame(1, "RELAY,1#\r\n");
        assert!(
            matches!(e, Err(CommandError::BadText { offset: 8, .. })),
            "{e:?}"
        );
    }
}
