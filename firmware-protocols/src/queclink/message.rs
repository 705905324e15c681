//! One message, from its `+` to just before its `$`, into header, report type and fields,
//! with the checks every message gets whatever its type: the report type's shape, the field
//! count, the protocol version, the unique id, the send time and the count number.
//!
//! Fields are borrowed from the frame and carry their byte offset in the frame, so a later
//! error (a bad coordinate in the third fix block) still points at the right byte.

use crate::DecodeError;

/// The three message kinds a device sends in ASCII mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// `+RESP:` a live report.
    Resp,
    /// `+BUFF:` a report stored while the device was offline (or unacknowledged in ACK
    /// mode), sent later with the same layout.
    Buff,
    /// `+ACK:` a command acknowledgement, or the heartbeat `+ACK:GTHBD`.
    Ack,
}

const HEADERS: [(&[u8], Header); 3] = [
    (b"+RESP:", Header::Resp),
    (b"+BUFF:", Header::Buff),
    (b"+ACK:", Header::Ack),
];

/// What the bytes at some position say about a message starting there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderMatch {
    /// A complete header of this kind and length.
    Full(Header, usize),
    /// The bytes end inside what could still become a header (`+`, `+RE`, `+ACK` …).
    Partial,
    /// Not a header.
    No,
}

/// Whether `bytes` start with a message header.
pub(super) fn header_at(bytes: &[u8]) -> HeaderMatch {
    let mut partial = false;
    for (text, header) in HEADERS {
        if bytes.starts_with(text) {
            return HeaderMatch::Full(header, text.len());
        }
        partial |= !bytes.is_empty() && text.starts_with(bytes);
    }
    if partial {
        HeaderMatch::Partial
    } else {
        HeaderMatch::No
    }
}

/// One comma-separated field.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field<'a> {
    pub text: &'a str,
    /// Byte offset of the field's first byte in the frame.
    pub offset: usize,
    /// Position in the message as the vendor documents count it: protocol version = 1.
    pub number: usize,
}

impl Field<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Fields before the report-specific ones: protocol version, unique id, device name.
const LEADING: usize = 3;
/// Fields after them: send time, count number.
const TRAILING: usize = 2;

/// A message whose common fields passed their checks.
#[derive(Debug)]
pub(super) struct Message<'a> {
    pub header: Header,
    /// The message text from `+` up to (not including) `$`.
    pub text: &'a str,
    /// `GTFRI`, `GTHBD` …
    pub report: &'a str,
    pub version: &'a str,
    pub unique_id: &'a str,
    pub device_name: &'a str,
    /// The report-specific fields between the device name and the send time.
    pub middle: Vec<Field<'a>>,
    pub send_time: &'a str,
    pub count: &'a str,
}

impl<'a> Message<'a> {
    /// `GTxxx` → `xxx`.
    pub(super) fn kind(&self) -> &'a str {
        self.report.get(2..).unwrap_or_default()
    }
}

/// Splits and checks one message. `frame` holds the message's bytes up to (not including)
/// its `$`; `base` is the offset of its `+` in the frame (leading whitespace before it);
/// `header_len` how many bytes the header takes.
pub(super) fn parse(
    frame: &[u8],
    base: usize,
    header: Header,
    header_len: usize,
) -> Result<Message<'_>, DecodeError> {
    let text = std::str::from_utf8(frame).map_err(|e| {
        DecodeError::new(
            base + e.valid_up_to(),
            format!(
                "byte 0x{:02x} is not text (messages are ASCII)",
                frame.get(e.valid_up_to()).copied().unwrap_or_default()
            ),
        )
    })?;
    let body = text.get(header_len..).unwrap_or_default();
    let body_offset = base + header_len;
    let mut offset = body_offset;
    let mut fields = body.split(',').enumerate().map(move |(number, text)| {
        let field = Field {
            text,
            offset,
            number,
        };
        offset += text.len() + 1;
        field
    });
    // `split` yields at least one item, even for an empty body.
    let report = fields.next().unwrap_or(Field {
        text: "",
        offset: body_offset,
        number: 0,
    });
    check_report_type(&report)?;
    let fields: Vec<Field<'_>> = fields.collect();
    if fields.len() < LEADING + TRAILING {
        return Err(DecodeError::new(
            report.offset,
            format!(
                "{} has {} fields after the report type; every message has at least {} \
                 (protocol version, unique id, device name, send time, count number)",
                report.text,
                fields.len(),
                LEADING + TRAILING
            ),
        ));
    }
    let at = |i: usize| fields.get(i).copied().unwrap_or(report);
    let (version, unique_id, device_name) = (at(0), at(1), at(2));
    let (send_time, count) = (at(fields.len() - 2), at(fields.len() - 1));
    check_version(&version)?;
    check_unique_id(&unique_id)?;
    check_send_time(&send_time)?;
    check_count(&count)?;
    // The report-specific fields, in place: no second allocation per message.
    let mut middle = fields;
    middle.truncate(middle.len() - TRAILING);
    middle.drain(..LEADING);
    Ok(Message {
        header,
        text,
        report: report.text,
        version: version.text,
        unique_id: unique_id.text,
        device_name: device_name.text,
        middle,
        send_time: send_time.text,
        count: count.text,
    })
}

fn check_report_type(f: &Field<'_>) -> Result<(), DecodeError> {
    let b = f.text.as_bytes();
    let ok = b.len() == 5
        && b.starts_with(b"GT")
        && b.iter()
            .skip(2)
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DecodeError::new(
            f.offset,
            format!(
                "report type {:?} is not GT + 3 capital letters",
                shorten(f.text)
            ),
        ))
    }
}

/// 6 hex digits (`TTVVvv`), 10 on newer firmware; left empty by some.
fn check_version(f: &Field<'_>) -> Result<(), DecodeError> {
    if f.text.len() <= 10 && f.text.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(DecodeError::new(
            f.offset,
            format!(
                "protocol version {:?} is not up to 10 hex digits",
                shorten(f.text)
            ),
        ))
    }
}

/// An IMEI (15 digits) or a 14-char hex id; up to 20 letters or digits are taken.
fn check_unique_id(f: &Field<'_>) -> Result<(), DecodeError> {
    let len = f.text.len();
    if (1..=20).contains(&len) && f.text.bytes().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(DecodeError::new(
            f.offset,
            format!(
                "unique id {:?} is not 1 to 20 letters or digits (an IMEI)",
                shorten(f.text)
            ),
        ))
    }
}

/// `YYYYMMDDHHMMSS`, or empty. Not a UTC time, so it is only checked for shape: a wrong
/// shape here means the field count or the layout is off.
fn check_send_time(f: &Field<'_>) -> Result<(), DecodeError> {
    if f.text.is_empty() || (f.text.len() == 14 && f.text.bytes().all(|c| c.is_ascii_digit())) {
        Ok(())
    } else {
        Err(DecodeError::new(
            f.offset,
            format!(
                "send time {:?} (second to last field) is not YYYYMMDDHHMMSS",
                shorten(f.text)
            ),
        ))
    }
}

/// Exactly 4 hex digits: it is echoed in the acknowledgement, so it must be what the device
/// will recognise.
fn check_count(f: &Field<'_>) -> Result<(), DecodeError> {
    if f.text.len() == 4 && f.text.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(DecodeError::new(
            f.offset,
            format!(
                "count number {:?} (last field) is not 4 hex digits",
                shorten(f.text)
            ),
        ))
    }
}

/// The start of a field for an error message: a garbled field may be long.
pub(super) fn shorten(text: &str) -> &str {
    const MAX: usize = 32;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}
