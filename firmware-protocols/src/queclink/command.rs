//! Queclink commands: `AT+GT…` text out, `+ACK:GT…` back, tied by the serial number. Fact
//! sheet `shared/protocols/commands.md` (Queclink @Track air-interface protocol documents).
//!
//! ```text
//! gateway ──▶ device   AT+GT<CMD>=<password>,<parameters>,<serial>$
//!                      e.g. AT+GTRTO=gv300,0,,,,,,0017$
//! device ──▶ gateway   +ACK:GT<CMD>,<version>,<unique id>,<device name>,[<command fields>,]
//!                      <serial>,<send time>,<count>$
//!                      e.g. +ACK:GTHBM,040100,135790246811220,,0017,20090214093254,11F0$
//! ```
//!
//! The cloud sends the command without `AT+` (or with it), without the serial and without
//! `$`: `GTRTO=gv300,0,,,,,`. The gateway's token, as 4 upper-case hex digits, is the serial.
//! Some acknowledgements carry command fields before the serial (`+ACK:GTRTO` names its
//! sub-command, `+ACK:GTGEO` its fence), so the serial is read as the field just before the
//! send time. `+ACK:GTHBD` is the heartbeat, not an answer.
//!
//! An acknowledgement stays a record (event `ack`) as before commands existed, and also
//! answers the command with its serial; its text is the whole message, `$` included.

use super::message::Message;
use crate::command::{check_ascii, AnswerKey, CommandAnswer, CommandError};
use crate::Protocol;

/// The `AT+…$` text for `text` with the gateway's `token` as serial number.
pub(crate) fn command_text(token: u16, text: &str) -> Result<Vec<u8>, CommandError> {
    check_ascii(Protocol::Queclink, text, b"$")?;
    let (prefix, body) = match text.strip_prefix("AT+") {
        Some(body) => (3, body),
        None => (0, text),
    };
    let named = body.get(..6).is_some_and(|head| {
        let bytes = head.as_bytes();
        bytes.starts_with(b"GT")
            && bytes
                .get(2..5)
                .is_some_and(|n| n.iter().all(u8::is_ascii_alphanumeric))
            && bytes.get(5) == Some(&b'=')
    });
    if !named {
        return Err(CommandError::BadText {
            protocol: Protocol::Queclink,
            offset: prefix,
            reason: "a Queclink command starts GT<command>= (for example GTRTO=gv300,0,,,,,)"
                .into(),
        });
    }
    Ok(format!("AT+{body},{token:04X}$").into_bytes())
}

/// The answer an `+ACK:` message carries: `None` for the heartbeat and for a message whose
/// serial is not 4 hex digits (it cannot be one of the gateway's).
pub(super) fn answer(msg: &Message<'_>) -> Option<CommandAnswer> {
    if msg.report == "GTHBD" {
        return None;
    }
    let serial = msg.middle.last()?.text;
    if serial.len() != 4 {
        return None;
    }
    let token = u16::from_str_radix(serial, 16).ok()?;
    Some(CommandAnswer {
        key: AnswerKey::Token(token),
        text: format!("{}$", msg.text),
        device_error: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_is_the_token_in_hex() {
        for text in ["GTRTO=gv300,0,,,,,", "AT+GTRTO=gv300,0,,,,,"] {
            assert_eq!(
                command_text(0x0017, text),
                Ok(b"AT+GTRTO=gv300,0,,,,,,0017$".to_vec())
            );
        }
        assert_eq!(
            command_text(0xBEEF, "GTOUT=gv300,1,,,0,0,0,0,,,,,,,,"),
            Ok(b"AT+GTOUT=gv300,1,,,0,0,0,0,,,,,,,,,BEEF$".to_vec())
        );
    }

    #[test]
    fn text_that_is_no_command_is_refused() {
        for (text, offset) in [
            ("getinfo", 0),
            ("AT+RTO=x", 3),
            ("GTRTO", 0),
            ("GTRTO=a$", 7),
        ] {
            let e = command_text(1, text);
            assert!(
                matches!(e, Err(CommandError::BadText { offset: o, .. }) if o == offset),
                "{text}: {e:?}"
            );
        }
    }
}
