//! Sans-IO decoders for the device protocols fleetedge speaks.
//!
//! # Layout
//!
//! - [`record`]: the [`Record`] every protocol decodes into, and its JSON form (the record JSON
//!   of the cloud contract, also printed by `fleetedge decode`).
//! - [`command`]: downlink commands: each protocol's command frame and the answer a decoder
//!   finds ([`Decoded::command_answer`]).
//! - [`crc`]: the checksums the protocols use, each with its catalogue check value.
//! - [`registry`]: every protocol in one table: name, transport, default port, decoder.
//! - [`meaning`]: the standard attributes and alarm kinds each protocol's registry entry
//!   maps its io keys and events to ([`Record::alarm`], [`Record::standard`]).
//! - [`checked`]: the wrapper the registry puts around every decoder, so every record of every
//!   protocol passes [`Record::check_ranges`] once, in one place.
//! - [`teltonika`]: Teltonika Codec 8 / 8 Extended / 16 over TCP (IMEI handshake, AVL packets).
//! - [`teltonika_udp`]: Teltonika Codec 8 / 8E over UDP (channel header, per-packet ack).
//! - [`gt06`]: Concox GT06 binary frames (0x7878 / 0x7979, CRC-16/X-25).
//! - [`queclink`]: Queclink @Track ASCII reports (`+RESP:` / `+BUFF:` / `+ACK:`).
//! - [`wialon`]: Wialon IPS 1.1 and 2.0 text packets, over TCP and UDP.
//! - [`nmea`]: NMEA 0183 sentences (RMC, GGA, GNS, GLL, VTG, GSA, ZDA) from a GNSS receiver.
//! - [`jsonl`]: one JSON object per line from sensors and local applications.
//! - `testkit` (feature `testkit`, the crate's own tests only): the decoder test harness.
//!
//! Every decoder has the same shape ([`StreamDecoder`]): bytes in, `Ok(None)` for "need more",
//! one [`Decoded`] frame out with the number of bytes it consumed. Decoders never do IO and
//! never read a clock: the caller passes the receive time in. They never allocate more than
//! their frame limit because of a length field: the limit is checked from the header before
//! the caller is asked to buffer more.
//!
//! Replies are data: a frame carries the bytes to send when its records were stored and the
//! bytes to send when they were not. The gateway sends one of them only after its buffer says
//! the records are durable, which is the product's first promise.

pub mod checked;
pub mod command;
pub mod crc;
mod cursor;
pub mod gt06;
pub mod jsonl;
pub mod meaning;
pub mod nmea;
pub mod queclink;
pub mod record;
pub mod registry;
pub mod teltonika;
pub mod teltonika_udp;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wialon;

pub use meaning::{AlarmKind, Attribute, StandardEvent};
pub use record::{IoKey, IoValue, Protocol, Record};

/// One frame taken off the front of a device's byte stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// How many bytes of the input this frame used; the caller drops them from its buffer.
    pub consumed: usize,
    /// Set when this frame identified the device (a login / IMEI frame).
    pub login: Option<String>,
    /// Records to store. Empty for logins, keep-alives and other control frames.
    pub records: Vec<Record>,
    /// What to answer the device.
    pub reply: Reply,
    /// Set when the frame was bad but the stream stays usable (a line protocol skips the bad
    /// line; Wialon answers it with an error code). The caller logs and counts it and sends
    /// `reply.refused`; `records` is then empty. A bad frame that leaves the stream unusable
    /// is an `Err` from `decode` instead, and closes the connection.
    pub problem: Option<DecodeError>,
    /// Set when the frame is a device's answer to a downlink command (see [`command`]); the
    /// gateway routes it to the command it answers. Protocols that stored answers as records
    /// before commands existed (GT06 0x15 / 0x21, Queclink `+ACK`) still do; the others have
    /// no records in such a frame.
    pub command_answer: Option<command::CommandAnswer>,
}

impl Decoded {
    /// A frame with nothing to store or answer: a keep-alive, a sentence the protocol
    /// ignores, whitespace between messages.
    pub fn control(consumed: usize) -> Decoded {
        Decoded {
            consumed,
            login: None,
            records: Vec::new(),
            reply: Reply::default(),
            problem: None,
            command_answer: None,
        }
    }

    /// A bad frame the stream steps past (see the `problem` field), with no answer; a
    /// protocol with a negative answer sets `reply.refused` on top.
    pub fn problem(consumed: usize, error: DecodeError) -> Decoded {
        Decoded {
            problem: Some(error),
            ..Decoded::control(consumed)
        }
    }

    /// A well-formed frame of a message type the decoder does not decode (see
    /// [`DecodeError::skipped`]): stepped past like a problem, counted per type.
    pub fn skipped(
        consumed: usize,
        offset: usize,
        message_type: &str,
        reason: impl Into<String>,
    ) -> Decoded {
        Decoded::problem(consumed, DecodeError::skipped(offset, message_type, reason))
    }
}

/// The caller must never be asked to buffer past the frame limit, even when the header that
/// would say so is not complete yet (a limit smaller than a header): the backstop for the
/// binary decoders' `decode`.
pub(crate) fn within_frame_limit(
    decoded: Option<Decoded>,
    input: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<Decoded>, DecodeError> {
    if decoded.is_none() && !input.is_empty() && input.len() >= max_frame_bytes {
        return Err(DecodeError::new(
            0,
            format!("no complete frame within the limit of {max_frame_bytes} bytes"),
        ));
    }
    Ok(decoded)
}

/// The answers a frame may get. `accepted` is sent once the frame's records are durable (or,
/// for a login, once the device is allowed); `refused` when they were not stored or the device
/// is not allowed. `None` means the protocol expects no answer in that case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub accepted: Option<Vec<u8>>,
    pub refused: Option<Vec<u8>>,
}

/// Why a frame could not be decoded. `offset` is the byte offset, from the start of the frame,
/// where the problem was found, so a log line can point at it in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: String,
    /// Set when the frame was well formed but is of a message type the decoder does not
    /// decode: the type's short name (a GT06 protocol number as `0x8a`, a Wialon packet type
    /// `I`, a Queclink report `GTXYZ`). The gateway counts these per type
    /// (`fleetedge_frames_skipped_total`) instead of as malformed, so a site sees which of
    /// its devices' message types are not decoded.
    pub skipped_type: Option<String>,
}

/// Longest message type name kept in [`DecodeError::skipped_type`]; longer names are cut, so
/// a metric label stays short whatever the device sent.
pub const MAX_SKIPPED_TYPE_LEN: usize = 16;

impl DecodeError {
    pub fn new(offset: usize, reason: impl Into<String>) -> Self {
        DecodeError {
            offset,
            reason: reason.into(),
            skipped_type: None,
        }
    }

    /// A frame of `message_type`, which the decoder does not decode: skipped, not malformed.
    /// The name is kept as printable ASCII of at most [`MAX_SKIPPED_TYPE_LEN`] characters
    /// (anything else becomes `?`).
    pub fn skipped(offset: usize, message_type: &str, reason: impl Into<String>) -> Self {
        let name = message_type
            .chars()
            .take(MAX_SKIPPED_TYPE_LEN)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        DecodeError {
            skipped_type: Some(name),
            ..DecodeError::new(offset, reason)
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte offset {})", self.reason, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// What every decoder is built from; filled from the listener's or serial port's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderOptions {
    /// The largest frame (or line) the decoder buffers, in bytes.
    pub max_frame_bytes: usize,
    /// Keep each record's raw bytes (hex) or text in `Record::raw`.
    pub keep_raw: bool,
    /// The device id for protocols whose frames carry none (NMEA, and JSON lines without a
    /// `device_id`); protocols that identify themselves ignore it.
    pub device_id: Option<String>,
    /// Answer every data report, where that is a device setting rather than part of the
    /// protocol (Queclink's `+SACK:<count>$` acknowledgement mode).
    pub ack_reports: bool,
}

impl DecoderOptions {
    pub fn new(max_frame_bytes: usize) -> Self {
        DecoderOptions {
            max_frame_bytes,
            keep_raw: false,
            device_id: None,
            ack_reports: false,
        }
    }
}

/// A protocol decoder for datagram transports (UDP): each datagram is one whole frame and
/// carries its own device id, so there is no stream state to keep between them.
pub trait DatagramDecoder: Send + Sync {
    fn decode(&self, datagram: &[u8], now_ms: i64) -> Result<Decoded, DecodeError>;
}

/// A protocol decoder for one device connection (or one serial port).
///
/// `decode` looks at the front of `input`: `Ok(None)` means the frame there is not complete
/// yet (the caller reads more and calls again with the longer input), `Ok(Some(frame))`
/// hands back one frame and how many bytes it used. An `Err` means the stream cannot be
/// trusted from here on; the caller logs it and closes the connection.
pub trait StreamDecoder: Send {
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError>;

    /// The device this stream belongs to, once it has identified itself.
    fn device_id(&self) -> Option<&str>;

    /// The largest frame this decoder will buffer; a connection's read buffer never needs to
    /// grow beyond it.
    fn max_frame_bytes(&self) -> usize;

    /// The stream ended: records the decoder was still holding back (NMEA combines the
    /// sentences of one epoch and emits it when the next begins). Most decoders hold nothing.
    fn finish(&mut self, _now_ms: i64) -> Vec<Record> {
        Vec::new()
    }
}
