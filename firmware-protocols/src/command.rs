//! Downlink commands: framing a command for a device, and the shape of a device's answer.
//!
//! The gateway (queues, sessions, MQTT) decides *when* a command goes out; this module only
//! says *which bytes* carry it in each protocol, and the decoders say which incoming frames
//! are answers ([`Decoded::command_answer`](crate::Decoded::command_answer)). Pure: no IO, no
//! clock. Fact sheet: `shared/protocols/commands.md`.
//!
//! ```text
//! protocol        command out (frame_command)                     answer in            key
//! teltonika       Codec 12 type 05: 00000000 L 0c 01 05 n text    Codec 12 type 06     Outstanding
//!                 01 CRC16 (after the IMEI handshake, idle)
//! teltonika-udp   the same Codec 12 packet as one datagram        the same, by datagram Outstanding
//! gt06            78 78 len 80 (4+n) flag(4) text serial CRC 0d0a 78 78 … 15 / 79 79 … 21 Token(flag)
//!                 flag = 00 00 token_hi token_lo
//! queclink        AT+<text>,<token as 4 hex digits>$              +ACK:GT…,<serial>,…$  Token(serial)
//! wialon          #M#<text>\r\n                                   #AM#1 / #AM#0         Outstanding
//! jsonl           {"command":"<text>","device_id":…,"id":…}\n     {"id":…,"answer":…}  CommandId(id)
//! nmea            none: CommandError::NoDownlink
//! wialon-udp      none: the device does not listen over UDP (fact sheet §6)
//! ```
//!
//! `token` is the gateway's per-command number: the protocols with a slot for it carry it out
//! and back, so an answer is tied to its command even after a reconnect. Protocols without a
//! slot answer "the one outstanding" command: the gateway sends one command per device at a
//! time, so that is unambiguous.
//!
//! [`CommandBody::Raw`] bytes are written exactly as given, for every protocol with a downlink:
//! the sender owns the framing then.

use std::fmt;

use crate::Protocol;

/// What to send: text the device's firmware reads, framed by [`frame_command`], or bytes
/// written as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    /// The command as the firmware reads it (`getinfo`, `WHERE#`, `GTRTO=gv300,0,,,,,`).
    Text(String),
    /// Bytes written to the device unchanged (for experts: the framing is the sender's).
    Raw(Vec<u8>),
}

/// A device's answer to a command, found by a decoder in an incoming frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAnswer {
    /// Which command this answers.
    pub key: AnswerKey,
    /// The answer as text; bytes that are not UTF-8 text come as lowercase hex
    /// (see [`answer_text`]).
    pub text: String,
    /// The device says the command failed (Wialon `#AM#0`, a JSON line with `"error":true`).
    /// Most protocols cannot say so: their text is the whole answer.
    pub device_error: bool,
}

/// How an answer names its command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnswerKey {
    /// The token [`frame_command`] was given (GT06 server flag, Queclink serial number).
    Token(u16),
    /// The command id (JSON lines).
    CommandId(String),
    /// The protocol's answer names nothing: it answers the command outstanding on the
    /// connection (Teltonika Codec 12, Wialon `#AM#`).
    Outstanding,
}

/// Why a command cannot be framed: the text of a `rejected` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The protocol has no way to send anything to the device.
    NoDownlink(Protocol),
    /// Nothing to send.
    Empty,
    /// The text holds a byte the protocol cannot carry; `offset` is its byte offset in the text.
    BadText {
        protocol: Protocol,
        offset: usize,
        reason: String,
    },
    /// Longer than the frame's length field can say.
    TooLong {
        protocol: Protocol,
        len: usize,
        max: usize,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NoDownlink(p) => {
                write!(
                    f,
                    "protocol {} has no downlink: its devices take no commands",
                    p.as_str()
                )
            }
            CommandError::Empty => write!(f, "empty command"),
            CommandError::BadText {
                protocol,
                offset,
                reason,
            } => write!(
                f,
                "command text cannot be sent over {}: {reason} (at byte offset {offset})",
                protocol.as_str()
            ),
            CommandError::TooLong { protocol, len, max } => write!(
                f,
                "command of {len} bytes is too long for {} (at most {max})",
                protocol.as_str()
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// Whether devices of `protocol` take commands through the gateway.
pub fn takes_commands(protocol: Protocol) -> bool {
    match protocol {
        Protocol::Teltonika
        | Protocol::TeltonikaUdp
        | Protocol::Gt06
        | Protocol::Queclink
        | Protocol::Wialon
        | Protocol::Jsonl => true,
        Protocol::Nmea | Protocol::WialonUdp => false,
    }
}

/// The bytes that carry `body` to a device of `protocol`. `token` goes where the protocol
/// has a slot for it (GT06 server flag, Queclink serial number) and comes back in the
/// answer's [`AnswerKey::Token`]; `command_id` and `device_id` go into JSON lines (one
/// connection may carry many devices there). They are ignored by the protocols without such
/// a slot.
pub fn frame_command(
    protocol: Protocol,
    token: u16,
    command_id: &str,
    device_id: &str,
    body: &CommandBody,
) -> Result<Vec<u8>, CommandError> {
    if !takes_commands(protocol) {
        return Err(CommandError::NoDownlink(protocol));
    }
    let text = match body {
        CommandBody::Raw(bytes) if bytes.is_empty() => return Err(CommandError::Empty),
        CommandBody::Raw(bytes) => return Ok(bytes.clone()),
        CommandBody::Text(text) if text.is_empty() => return Err(CommandError::Empty),
        CommandBody::Text(text) => text.as_str(),
    };
    match protocol {
        Protocol::Teltonika | Protocol::TeltonikaUdp => {
            crate::teltonika::command_packet(protocol, text)
        }
        Protocol::Jsonl => Ok(crate::jsonl::command_line(command_id, device_id, text)),
        Protocol::Gt06 => crate::gt06::command_frame(token, text),
        Protocol::Queclink => crate::queclink::command_text(token, text),
        Protocol::Wialon => crate::wialon::command_packet(text),
        Protocol::Nmea | Protocol::WialonUdp => Err(CommandError::NoDownlink(protocol)),
    }
}

/// An answer's bytes as [`CommandAnswer::text`]: the text when they are UTF-8 without
/// control characters other than tab, CR and LF (trailing NULs some firmware pads with are
/// dropped), else lowercase hex of all of them.
pub fn answer_text(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let trimmed = bytes.get(..end).unwrap_or_default();
    match std::str::from_utf8(trimmed) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')) =>
        {
            text.to_owned()
        }
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The first byte of `text` outside printable ASCII (space through `~`), for the protocols
/// whose firmware reads ASCII commands; `forbidden` lists printable bytes that would end
/// the frame early (Queclink's `$`).
pub(crate) fn check_ascii(
    protocol: Protocol,
    text: &str,
    forbidden: &[u8],
) -> Result<(), CommandError> {
    let bad = text
        .bytes()
        .position(|b| !(b' '..=b'~').contains(&b) || forbidden.contains(&b));
    match bad {
        None => Ok(()),
        Some(offset) => {
            let byte = text.as_bytes().get(offset).copied().unwrap_or_default();
            let reason = if forbidden.contains(&byte) {
                format!("'{}' would end the frame", char::from(byte))
            } else {
                format!("byte 0x{byte:02x} is not printable ASCII")
            };
            Err(CommandError::BadText {
                protocol,
                offset,
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests;
