//! The TCP session state machine: frame a line, then login, data, black box, driver message,
//! ping or photo by its type.
//!
//! Framing, in the order applied, so garbage fails before it is buffered:
//!
//! 1. a packet starts with `#`; a stray CR / LF between packets is skipped; any other byte is
//!    not a Wialon stream (`Err`);
//! 2. the type is 1–[`MAX_TYPE_LEN`](super::MAX_TYPE_LEN) uppercase letters closed by `#`,
//!    checked byte by byte as it arrives (`Err` otherwise);
//! 3. the line ends at LF (a CR before it is dropped; the documents require CR LF, a bare LF
//!    is accepted); no LF within `max_frame_bytes` is an `Err`, since there is no telling
//!    where the next packet starts;
//! 4. only then is the body checked (CRC in v2.0, fields). A bad body is a `problem`: the
//!    line is skipped and answered with the error code the protocol defines for it.
//!
//! The device must log in first: any packet but `#L#` or `#P#` before a login is an `Err`
//! (its records would have no device id, and a closed connection makes the device reconnect
//! and log in, which is how every Wialon session starts). A decoder made
//! [`for_capture`](WialonDecoder::for_capture) takes data packets before a login instead:
//! their records get an empty device id, and the version comes from the packet itself (2.0
//! when its last field is the CRC-16 of the rest, else 1.1).
//!
//! Packet types a device may send that are not decoded (a photo `#I#`, a type this decoder
//! does not know) are skipped with their type name ([`Decoded::skipped`]), so the gateway
//! counts them per type.

use super::answer::{self, DataKind};
use super::fields::{check_crc, show, split, unsigned, Bad, Fault};
use super::message::{self, Context, Shape};
use super::{ProtocolVersion, MAX_DEVICE_ID_LEN, MAX_TYPE_LEN};
use crate::{DecodeError, Decoded, DecoderOptions, IoKey, Protocol, Record, Reply, StreamDecoder};

/// Bytes of the shortest black box message (ten empty fields), to cap the record allocation.
const MIN_MESSAGE_BYTES: usize = message::SD_FIELDS - 1;

/// Sans-IO decoder for one Wialon IPS TCP connection (or one capture of such a stream).
#[derive(Debug, Clone)]
pub struct WialonDecoder {
    max_frame_bytes: usize,
    keep_raw: bool,
    /// The password a login must carry, if the installer set one.
    password: Option<String>,
    session: Option<Session>,
    /// Reading a capture: packets before a login are decoded without a device id.
    capture: bool,
}

/// What a successful login established.
#[derive(Debug, Clone)]
struct Session {
    device_id: String,
    version: ProtocolVersion,
}

/// One complete line at the front of the input.
struct Line<'a> {
    /// The packet type between the two `#`.
    kind: &'a [u8],
    /// Everything after the second `#`, without CR LF.
    body: &'a [u8],
    /// Frame offset of `body`.
    body_at: usize,
    /// The packet without its terminator, for `raw`.
    text: &'a [u8],
    /// Bytes up to and including the LF.
    consumed: usize,
}

impl WialonDecoder {
    /// A decoder for a live connection. `options.device_id` is ignored: Wialon devices
    /// identify themselves at login.
    pub fn new(options: &DecoderOptions) -> Self {
        WialonDecoder {
            max_frame_bytes: options.max_frame_bytes,
            keep_raw: options.keep_raw,
            password: None,
            session: None,
            capture: false,
        }
    }

    /// A decoder for `fleetedge decode`: it also takes data packets before any login (a
    /// capture that starts mid-connection, a single pasted line), giving their records an
    /// empty device id, and a later `#L#` in the capture names the device from there on.
    pub fn for_capture(options: &DecoderOptions) -> Self {
        WialonDecoder {
            capture: true,
            ..WialonDecoder::new(options)
        }
    }

    /// A decoder whose device is already known, as every UDP datagram names it.
    pub(super) fn logged_in(
        options: &DecoderOptions,
        device_id: String,
        version: ProtocolVersion,
    ) -> Self {
        WialonDecoder {
            session: Some(Session { device_id, version }),
            ..WialonDecoder::new(options)
        }
    }

    /// Requires this password at login (`NA` / empty counts as no password); any other is
    /// answered `#AL#01`. Without it every password is accepted and none is kept.
    pub fn require_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The version the device declared at login, if it has logged in.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.session.as_ref().map(|s| s.version)
    }

    fn decode_frame(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let Some(&first) = input.first() else {
            return Ok(None);
        };
        if first == b'\r' || first == b'\n' {
            // Capped so no frame, not even an empty one, is longer than the limit.
            let blank = input
                .iter()
                .take(self.max_frame_bytes.max(1))
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            return Ok(Some(decoded(blank, Vec::new(), Reply::default())));
        }
        if first != b'#' {
            return Err(DecodeError::new(
                0,
                format!("byte 0x{first:02x} where a packet should start with '#'"),
            ));
        }
        let Some(line) = self.line(input)? else {
            return Ok(None);
        };
        if line.kind == b"L" {
            return Ok(Some(self.login(&line)));
        }
        if line.kind == b"P" {
            // Answered even before a login: it needs no device id.
            let reply = Reply {
                accepted: Some(answer::PING.to_vec()),
                refused: None,
            };
            return Ok(Some(decoded(line.consumed, Vec::new(), reply)));
        }
        let (device_id, version) = match &self.session {
            Some(session) => (session.device_id.as_str(), session.version),
            None if self.capture => ("", guess_version(&line)),
            None => {
                return Err(DecodeError::new(
                    1,
                    format!(
                        "#{}# packet before the login packet (#L#): the device has not \
                         identified itself",
                        show(line.kind)
                    ),
                ))
            }
        };
        let ctx = Context { device_id, now_ms };
        let frame = match line.kind {
            b"SD" => self.data(&line, DataKind::Short, version, &ctx),
            b"D" => self.data(&line, DataKind::Extended, version, &ctx),
            b"B" => self.black_box(&line, version, &ctx),
            b"M" => self.driver_message(&line, version, &ctx),
            b"I" => return self.photo(input, &line, version),
            b"AM" => Decoded {
                command_answer: Some(super::command::answer(line.body)),
                ..Decoded::control(line.consumed)
            },
            other => Decoded::skipped(
                line.consumed,
                1,
                &show(other),
                format!(
                    "packet type #{}# is not one a device sends here; skipped",
                    show(other)
                ),
            ),
        };
        Ok(Some(frame))
    }

    /// The complete line at the front of `input` (which starts with `#`), or `None` if its
    /// LF has not arrived yet.
    fn line<'a>(&self, input: &'a [u8]) -> Result<Option<Line<'a>>, DecodeError> {
        let window = input.get(..self.max_frame_bytes).unwrap_or(input);
        let mut type_end = None;
        for (i, &b) in window.iter().enumerate().skip(1) {
            match b {
                b'#' if i > 1 => {
                    type_end = Some(i);
                    break;
                }
                b'#' => return Err(DecodeError::new(1, "empty packet type (\"##\")")),
                b'A'..=b'Z' if i <= MAX_TYPE_LEN => {}
                b'A'..=b'Z' => {
                    return Err(DecodeError::new(
                        1,
                        format!("packet type longer than {MAX_TYPE_LEN} letters"),
                    ))
                }
                _ => {
                    return Err(DecodeError::new(
                        i,
                        format!("byte 0x{b:02x} in the packet type (expected A-Z, then '#')"),
                    ))
                }
            }
        }
        let Some(type_end) = type_end else {
            return Ok(None);
        };
        let body_at = type_end + 1;
        let kind = window.get(1..type_end).unwrap_or_default();
        let rest = window.get(body_at..).unwrap_or_default();
        let Some(lf) = find_lf(rest).map(|p| body_at + p) else {
            if window.len() >= self.max_frame_bytes {
                return Err(DecodeError::new(
                    0,
                    format!(
                        "#{}# packet has no CR LF within the limit of {} bytes",
                        show(kind),
                        self.max_frame_bytes
                    ),
                ));
            }
            return Ok(None);
        };
        let end = if lf > body_at && window.get(lf - 1) == Some(&b'\r') {
            lf - 1
        } else {
            lf
        };
        Ok(Some(Line {
            kind,
            body: window.get(body_at..end).unwrap_or_default(),
            body_at,
            text: window.get(..end).unwrap_or_default(),
            consumed: lf + 1,
        }))
    }

    /// `#L#imei;password` (1.1) or `#L#2.0;imei;password;crc16` (2.0).
    fn login(&mut self, line: &Line<'_>) -> Decoded {
        match self.parse_login(line) {
            Ok(session) => {
                let id = session.device_id.clone();
                self.session = Some(session);
                Decoded {
                    login: Some(id),
                    ..decoded(
                        line.consumed,
                        Vec::new(),
                        Reply {
                            accepted: Some(answer::LOGIN_OK.to_vec()),
                            refused: Some(answer::LOGIN_REFUSED.to_vec()),
                        },
                    )
                }
            }
            Err((error, code)) => problem(line.consumed, error, Some(code.to_vec())),
        }
    }

    fn parse_login(&self, line: &Line<'_>) -> Result<Session, (DecodeError, &'static [u8])> {
        let refuse =
            |at: usize, reason: String| (DecodeError::new(at, reason), answer::LOGIN_REFUSED);
        let (count, [first, second, third, _]) = split::<4>(line.body, b';', line.body_at);
        let (version, id, password) = match (count, version_major(first.text)) {
            (4, Some(major)) if major >= 2 => {
                check_crc(line.body, b';', line.body_at).map_err(|b| match b.fault {
                    Fault::Checksum => (b.error, answer::LOGIN_BAD_CRC),
                    _ => (b.error, answer::LOGIN_REFUSED),
                })?;
                (ProtocolVersion::V2, second, Some(third))
            }
            (1, None) => (ProtocolVersion::V1_1, first, None),
            (2, None) => (ProtocolVersion::V1_1, first, Some(second)),
            _ => {
                return Err(refuse(
                    line.body_at,
                    format!(
                        "login with {count} fields: expected imei;password (1.1) or \
                         2.0;imei;password;crc16 (2.0)"
                    ),
                ))
            }
        };
        if id.is_absent() {
            return Err(refuse(id.at, "login without a device id".into()));
        }
        if id.text.len() > MAX_DEVICE_ID_LEN || !id.text.iter().all(u8::is_ascii_graphic) {
            return Err(refuse(
                id.at,
                format!(
                    "device id \"{}\" is not 1..={MAX_DEVICE_ID_LEN} printable ASCII characters",
                    id.show()
                ),
            ));
        }
        if let Some(expected) = &self.password {
            let sent = password
                .filter(|p| !p.is_absent())
                .map_or(&b""[..], |p| p.text);
            if sent != expected.as_bytes() {
                // The password itself stays out of the log.
                let at = password.map_or(line.body_at, |p| p.at);
                return Err((
                    DecodeError::new(at, "login password does not match the configured one"),
                    answer::LOGIN_BAD_PASSWORD,
                ));
            }
        }
        Ok(Session {
            // Checked to be printable ASCII above.
            device_id: String::from_utf8_lossy(id.text).into_owned(),
            version,
        })
    }

    /// `#SD#` and `#D#`: one record.
    fn data(
        &self,
        line: &Line<'_>,
        kind: DataKind,
        version: ProtocolVersion,
        ctx: &Context<'_>,
    ) -> Decoded {
        let parsed = body_of(line, b';', version).and_then(|body| {
            let shape = match kind {
                DataKind::Short => Shape::Short,
                DataKind::Extended => Shape::Extended,
            };
            message::parse(body, line.body_at, shape, ctx)
        });
        match parsed {
            Ok(mut record) => {
                if self.keep_raw {
                    record.raw = Some(String::from_utf8_lossy(line.text).into_owned());
                }
                decoded(line.consumed, vec![record], answer::data_stored(kind))
            }
            Err(b) => problem(
                line.consumed,
                b.error,
                Some(answer::data_error(kind, b.fault)),
            ),
        }
    }

    /// `#B#`: one record per message, all or none – a bad message refuses the packet, since
    /// `#AB#<n>` cannot say which of the messages were kept.
    fn black_box(&self, line: &Line<'_>, version: ProtocolVersion, ctx: &Context<'_>) -> Decoded {
        let parsed = body_of(line, b'|', version).and_then(|body| {
            // A trailing '|' (before the CRC in 2.0, at the end in 1.1) closes the last message.
            let body = body.strip_suffix(b"|").unwrap_or(body);
            self.black_box_records(body, line.body_at, ctx)
        });
        match parsed {
            Ok(records) => {
                let reply = answer::black_box_stored(records.len());
                decoded(line.consumed, records, reply)
            }
            Err(b) => problem(
                line.consumed,
                b.error,
                Some(answer::black_box_error(b.fault)),
            ),
        }
    }

    fn black_box_records(
        &self,
        body: &[u8],
        at: usize,
        ctx: &Context<'_>,
    ) -> Result<Vec<Record>, Bad> {
        if body.is_empty() {
            return Ok(Vec::new());
        }
        let total = body.iter().filter(|&&b| b == b'|').count() + 1;
        let mut records = Vec::with_capacity(total.min(body.len() / MIN_MESSAGE_BYTES + 1));
        let mut start = 0;
        for (index, text) in body.split(|&b| b == b'|').enumerate() {
            let msg_at = at + start;
            start += text.len() + 1;
            let mut record = message::parse(text, msg_at, Shape::Either, ctx)
                .map_err(|b| in_message(b, index, total))?;
            if self.keep_raw {
                // The message's own text, not the whole packet: raw stays linear in the frame.
                record.raw = Some(String::from_utf8_lossy(text).into_owned());
            }
            records.push(record);
        }
        Ok(records)
    }

    /// `#M#text` (2.0: `#M#text;crc16`): a message typed by the driver, kept as a record
    /// with no position.
    fn driver_message(
        &self,
        line: &Line<'_>,
        version: ProtocolVersion,
        ctx: &Context<'_>,
    ) -> Decoded {
        let text = match body_of(line, b';', version) {
            Ok(text) => text,
            Err(b) => return problem(line.consumed, b.error, Some(answer::message_error(b.fault))),
        };
        let mut record = Record::new(ctx.device_id, Protocol::Wialon, ctx.now_ms);
        record.event = Some("driver_message".to_owned());
        record.io = vec![(
            IoKey::Name("message".to_owned()),
            super::fields::text_value(text),
        )];
        if self.keep_raw {
            record.raw = Some(String::from_utf8_lossy(line.text).into_owned());
        }
        decoded(line.consumed, vec![record], answer::message_stored())
    }

    /// `#I#sz;ind;count;date;time;name[;crc16]` followed by `sz` bytes of JPEG. Photos are not
    /// stored; the block is framed by its size and skipped so the positions around it keep
    /// flowing. A header whose size cannot be trusted (bad CRC, not a number, past the frame
    /// limit) leaves no way to find the next packet: `Err`.
    fn photo(
        &self,
        input: &[u8],
        line: &Line<'_>,
        version: ProtocolVersion,
    ) -> Result<Option<Decoded>, DecodeError> {
        let header = body_of(line, b';', version).map_err(|b| b.error)?;
        let (_, [size, index, count]) = split::<3>(header, b';', line.body_at);
        let size_bytes = unsigned(size.text).and_then(|s| usize::try_from(s).ok());
        let end = size_bytes.and_then(|s| line.consumed.checked_add(s));
        let end = match end {
            Some(end) if end <= self.max_frame_bytes => end,
            Some(_) => {
                return Err(DecodeError::new(
                    size.at,
                    format!(
                        "photo block of {} bytes does not fit the frame limit of {} bytes",
                        size.show(),
                        self.max_frame_bytes
                    ),
                ))
            }
            None => {
                return Err(DecodeError::new(
                    size.at,
                    format!("photo block size \"{}\" is not a number", size.show()),
                ))
            }
        };
        if input.len() < end {
            return Ok(None);
        }
        Ok(Some(Decoded::skipped(
            end,
            0,
            "I",
            format!(
                "photo block {} of {} ({} bytes) skipped: photos are not stored",
                index.show(),
                count.show(),
                size.show()
            ),
        )))
    }

    #[cold]
    #[inline(never)]
    fn no_frame(&self) -> DecodeError {
        DecodeError::new(
            0,
            format!(
                "no complete packet within the limit of {} bytes",
                self.max_frame_bytes
            ),
        )
    }
}

impl StreamDecoder for WialonDecoder {
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let frame = self.decode_frame(input, now_ms)?;
        // Backstop for limits smaller than a packet header: the caller must never be asked to
        // buffer past the limit.
        if frame.is_none() && !input.is_empty() && input.len() >= self.max_frame_bytes {
            return Err(self.no_frame());
        }
        Ok(frame)
    }

    fn device_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.device_id.as_str())
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

/// The body to parse: in 2.0 without its CRC field (checked), in 1.1 as it is.
fn body_of<'a>(line: &Line<'a>, sep: u8, version: ProtocolVersion) -> Result<&'a [u8], Bad> {
    match version {
        ProtocolVersion::V1_1 => Ok(line.body),
        ProtocolVersion::V2 => check_crc(line.body, sep, line.body_at),
    }
}

/// The first LF in `bytes`. Chunks go through `<[u8]>::contains`, which is core's
/// word-at-a-time memchr, so a 6 KiB black box is not scanned a byte per step.
fn find_lf(bytes: &[u8]) -> Option<usize> {
    const CHUNK: usize = 64;
    bytes
        .chunks(CHUNK)
        .enumerate()
        .find(|(_, chunk)| chunk.contains(&b'\n'))
        .and_then(|(i, chunk)| {
            let within = chunk.iter().position(|&b| b == b'\n')?;
            Some(i * CHUNK + within)
        })
}

/// The version of a packet seen without its session's login: 2.0 when its last field is the
/// CRC-16 of what comes before it, else 1.1 (a 1.1 packet's last field is data, which matches
/// by chance once in 65536 at worst, and only when it is a short hex number).
fn guess_version(line: &Line<'_>) -> ProtocolVersion {
    let sep = if line.kind == b"B" { b'|' } else { b';' };
    match check_crc(line.body, sep, line.body_at) {
        Ok(_) => ProtocolVersion::V2,
        Err(_) => ProtocolVersion::V1_1,
    }
}

/// `2.0` → 2: digits, a point, digits.
pub(super) fn version_major(text: &[u8]) -> Option<u32> {
    let dot = text.iter().position(|&b| b == b'.')?;
    let (major, minor) = (text.get(..dot)?, text.get(dot + 1..)?);
    let digits = |t: &[u8]| !t.is_empty() && t.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) {
        return None;
    }
    unsigned(major).and_then(|m| u32::try_from(m).ok())
}

fn decoded(consumed: usize, records: Vec<Record>, reply: Reply) -> Decoded {
    Decoded {
        records,
        reply,
        ..Decoded::control(consumed)
    }
}

/// A skipped packet: no records, `refused` is the answer for it (if any).
fn problem(consumed: usize, error: DecodeError, refused: Option<Vec<u8>>) -> Decoded {
    Decoded {
        reply: Reply {
            accepted: None,
            refused,
        },
        ..Decoded::problem(consumed, error)
    }
}

#[cold]
#[inline(never)]
fn in_message(mut b: Bad, index: usize, total: usize) -> Bad {
    b.error.reason = format!("message {} of {total}: {}", index + 1, b.error.reason);
    b
}

#[cfg(test)]
mod tests {
    use super::super::fields::Field;
    use super::*;

    #[test]
    fn versions_are_digits_point_digits() {
        assert_eq!(version_major(b"2.0"), Some(2));
        assert_eq!(version_major(b"10.1"), Some(10));
        assert_eq!(version_major(b"2"), None);
        assert_eq!(version_major(b"2."), None);
        assert_eq!(version_major(b".0"), None);
        assert_eq!(version_major(b"356307042441013"), None);
        assert_eq!(version_major(b"a.0"), None);
    }

    #[test]
    fn find_lf_finds_the_first_lf_at_any_position() {
        for len in 0..200 {
            for at in 0..len {
                let mut bytes = vec![b'x'; len];
                bytes[at] = b'\n';
                if at + 1 < len {
                    bytes[len - 1] = b'\n';
                }
                assert_eq!(find_lf(&bytes), Some(at), "{len} {at}");
            }
            assert_eq!(find_lf(&vec![b'x'; len]), None);
        }
    }

    #[test]
    fn field_helper_reports_absence() {
        assert!(Field::new(0, b"NA").is_absent());
        assert!(Field::new(0, b"").is_absent());
        assert!(!Field::new(0, b"na").is_absent());
    }
}
