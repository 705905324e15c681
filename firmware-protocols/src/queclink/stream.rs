//! The stream framer: where a message starts and ends, what to do with bytes that are not
//! one, and the answer each message gets.
//!
//! Framing rules, in order:
//!
//! 1. Whitespace (space, tab, CR, LF) between messages is tolerated (some firmware sends
//!    `$\r\n`, captures end with a newline): whitespace already buffered after a `$` is
//!    consumed with that message, whitespace before a message belongs to it, and input that
//!    is only whitespace is consumed at once as a frame with nothing in it (no records, no
//!    answer, no problem), so it never waits in the buffer.
//! 2. A message starts with `+RESP:`, `+BUFF:` or `+ACK:`. Anything else at the front
//!    (printable or not) is garbage: skipped as a `problem` up to the next `+`, or all of
//!    the input when there is none yet.
//! 3. A message ends at the first `$`. A complete header of another message before it
//!    means this one was cut off: it is skipped as a `problem` up to that header, which is
//!    then decoded normally. (A lone `+`, as in a phone number field, is just text.)
//! 4. A message with no `$` within `max_frame_bytes` (counting the whitespace before it) is
//!    dropped as a `problem` with everything buffered, except a header just starting at the
//!    end; what the device sends after it is garbage until the next `+`.
//! 5. A complete message whose common fields (report type, protocol version, unique id,
//!    send time, count) fail their checks, or whose field count fits a layout exactly with a
//!    field of the wrong form in it, is a `problem` consumed to its `$`. One whose
//!    report-specific fields fit no layout is not: it becomes a record without a position
//!    (`report`), so nothing a device sent is refused for a layout this decoder lacks.
//!
//! So `decode` never returns `Err`: the `+`/`$` framing always allows a resync, and every
//! `Ok(Some)` consumes at least one byte, so a device sending nonsense cannot stall the
//! connection or loop without progress; the gateway logs and counts each skipped piece.

use super::message::{self, header_at, Header, HeaderMatch};
use super::report::{self, Context};
use crate::{DecodeError, Decoded, DecoderOptions, Reply, StreamDecoder};

/// Sans-IO decoder for one Queclink connection (or a capture of one).
#[derive(Debug, Clone)]
pub struct QueclinkDecoder {
    max_frame_bytes: usize,
    keep_raw: bool,
    /// Answer every report with `+SACK:<count>$` (the device's server-ACK mode).
    ack_reports: bool,
    /// The unique id of the last message that passed its checks.
    device_id: Option<String>,
}

/// What is at the front of the input.
enum Framing {
    /// A whole message: header at `start`, `$` at `end`.
    Message {
        header: Header,
        header_len: usize,
        start: usize,
        end: usize,
    },
    /// `start..end` is not a message.
    Garbage { start: usize, end: usize },
    /// The message at `start` is cut off by the header of the next one at `next`.
    Truncated { start: usize, next: usize },
    /// The message at `start` has no end yet; if it must be given up, `..resume` goes with
    /// it (`resume` is the start of a header that is still arriving, or the input's end).
    Incomplete { start: usize, resume: usize },
}

impl QueclinkDecoder {
    /// `options.device_id` is ignored: every message carries its unique id.
    pub fn new(options: &DecoderOptions) -> Self {
        QueclinkDecoder {
            max_frame_bytes: options.max_frame_bytes,
            keep_raw: options.keep_raw,
            ack_reports: options.ack_reports,
            device_id: None,
        }
    }

    fn message(
        &mut self,
        input: &[u8],
        (header, header_len, start, end): (Header, usize, usize, usize),
        now_ms: i64,
    ) -> Decoded {
        let consumed = end + 1;
        if consumed > self.max_frame_bytes {
            return Decoded::problem(
                consumed,
                DecodeError::new(
                    start,
                    format!(
                        "message of {consumed} bytes exceeds the limit of {} bytes",
                        self.max_frame_bytes
                    ),
                ),
            );
        }
        let bytes = input.get(start..end).unwrap_or_default();
        let msg = match message::parse(bytes, start, header, header_len) {
            Ok(msg) => msg,
            Err(e) => return Decoded::problem(consumed, e),
        };
        if self.device_id.as_deref() != Some(msg.unique_id) {
            self.device_id = Some(msg.unique_id.to_owned());
        }

        if header == Header::Ack && msg.report == "GTHBD" {
            // Always answered, ACK mode or not (fact sheet §4).
            let sack = format!("+SACK:GTHBD,{},{}$", msg.version, msg.count);
            return Decoded {
                reply: Reply {
                    accepted: Some(sack.into_bytes()),
                    refused: None,
                },
                ..Decoded::control(consumed)
            };
        }

        let ctx = Context {
            now_ms,
            keep_raw: self.keep_raw,
        };
        let command_answer = match header {
            Header::Ack => super::command::answer(&msg),
            _ => None,
        };
        match report::records(&msg, &ctx) {
            Ok(records) => Decoded {
                records,
                command_answer,
                reply: Reply {
                    // No negative answer exists: an unacknowledged report is resent as +BUFF.
                    accepted: self
                        .ack_reports
                        .then(|| format!("+SACK:{}$", msg.count).into_bytes()),
                    refused: None,
                },
                ..Decoded::control(consumed)
            },
            // The answer stands even when its fields fit no record layout.
            Err(e) => Decoded {
                command_answer,
                ..Decoded::problem(consumed, e)
            },
        }
    }

    /// Rule 4: the input fills the limit and the message at `start` has no end.
    fn give_up(&self, input: &[u8], start: usize, resume: usize) -> Decoded {
        if resume == start && start > 0 {
            // Whitespace, then a header still arriving: drop the whitespace only, which
            // gives the message the whole limit.
            return Decoded::control(start);
        }
        let consumed = if resume > start { resume } else { input.len() };
        Decoded::problem(
            consumed,
            DecodeError::new(
                start,
                format!(
                    "no '$' within the limit of {} bytes: {} bytes dropped",
                    self.max_frame_bytes, consumed
                ),
            ),
        )
    }
}

impl StreamDecoder for QueclinkDecoder {
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        if input.is_empty() {
            return Ok(None);
        }
        let Some(start) = input.iter().position(|&b| !is_space(b)) else {
            return Ok(Some(Decoded::control(input.len())));
        };
        let decoded = match framing(input, start) {
            Framing::Message {
                header,
                header_len,
                start,
                end,
            } => {
                let mut decoded = self.message(input, (header, header_len, start, end), now_ms);
                let after = input.get(decoded.consumed..).unwrap_or_default();
                decoded.consumed += after.iter().take_while(|&&b| is_space(b)).count();
                decoded
            }
            Framing::Garbage { start, end } => garbage(input, start, end),
            Framing::Truncated { start, next } => Decoded::problem(
                next,
                DecodeError::new(
                    start,
                    format!("message has no '$' before the next one begins at byte {next}"),
                ),
            ),
            Framing::Incomplete { start, resume } => {
                if input.len() < self.max_frame_bytes {
                    return Ok(None);
                }
                self.give_up(input, start, resume)
            }
        };
        Ok(Some(decoded))
    }

    fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Rules 2 and 3 for the bytes from `start` (the first non-whitespace byte) on.
fn framing(input: &[u8], start: usize) -> Framing {
    let rest = input.get(start..).unwrap_or_default();
    let (header, header_len) = match header_at(rest) {
        HeaderMatch::Full(header, len) => (header, len),
        HeaderMatch::Partial => {
            return Framing::Incomplete {
                start,
                resume: start,
            }
        }
        HeaderMatch::No => {
            // Skip at least the first byte (it may be a `+` of an unknown header).
            let from = start + 1;
            let end = input
                .get(from..)
                .and_then(|tail| tail.iter().position(|&b| b == b'+'))
                .map_or(input.len(), |p| from + p);
            return Framing::Garbage { start, end };
        }
    };
    let mut from = start + header_len;
    loop {
        let tail = input.get(from..).unwrap_or_default();
        let Some(p) = tail.iter().position(|&b| b == b'$' || b == b'+') else {
            return Framing::Incomplete {
                start,
                resume: input.len(),
            };
        };
        let at = from + p;
        if tail.get(p) == Some(&b'$') {
            return Framing::Message {
                header,
                header_len,
                start,
                end: at,
            };
        }
        match header_at(input.get(at..).unwrap_or_default()) {
            HeaderMatch::Full(..) => return Framing::Truncated { start, next: at },
            HeaderMatch::Partial => return Framing::Incomplete { start, resume: at },
            HeaderMatch::No => from = at + 1,
        }
    }
}

/// Bytes that are not a message.
fn garbage(input: &[u8], start: usize, end: usize) -> Decoded {
    let bytes = input.get(start..end).unwrap_or_default();
    let shown = bytes.get(..bytes.len().min(24)).unwrap_or_default();
    Decoded::problem(
        end,
        DecodeError::new(
            start,
            format!(
                "{} bytes that are not a message (expected +RESP:, +BUFF: or +ACK:): {:?}{}",
                bytes.len(),
                String::from_utf8_lossy(shown),
                if shown.len() < bytes.len() { "…" } else { "" }
            ),
        ),
    )
}
