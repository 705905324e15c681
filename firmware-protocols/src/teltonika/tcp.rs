//! The TCP session state machine: IMEI packet, then AVL data / Codec 12 packets and keep-alives.
//!
//! Framing rules, in the order they are applied so that garbage is rejected as early as
//! possible and the caller never buffers more than `max_frame_bytes`:
//!
//! 1. bytes already present are validated before asking for more (a non-zero preamble byte
//!    or a non-digit IMEI byte fails at once);
//! 2. the length field is checked against the limit as soon as it is complete;
//! 3. only a complete frame is CRC-checked and parsed.

use super::{avl, codec12, CODEC_12, CODEC_16, CODEC_8, CODEC_8_EXTENDED, DATA_OFFSET};
use super::{KEEP_ALIVE, MAX_IMEI_DIGITS};
use crate::command::{answer_text, AnswerKey, CommandAnswer};
use crate::crc::crc16_arc;
use crate::{DecodeError, Decoded, Reply, StreamDecoder};

/// Preamble 4 + data length 4 before the data field, CRC field 4 after it.
const FRAME_OVERHEAD: usize = DATA_OFFSET + 4;
/// Codec id, Number of Data 1 and Number of Data 2: the smallest data field there is.
const MIN_DATA_LEN: u32 = 3;

/// Sans-IO decoder for one Teltonika TCP connection (or one capture of such a stream).
#[derive(Debug, Clone)]
pub struct TcpDecoder {
    max_frame_bytes: usize,
    keep_raw: bool,
    /// Capture mode: IMEI packets and AVL packets in any order, both Codec 12 directions.
    capture: bool,
    imei: Option<String>,
}

/// What the decoder expects at the front of the stream.
#[derive(Clone, Copy)]
enum Expect {
    Imei,
    Packet,
    ImeiOrPacket,
}

impl TcpDecoder {
    /// A decoder for a live connection: the device must log in with its IMEI packet before
    /// anything else (keep-alives aside). Frames larger than `max_frame_bytes` are errors.
    pub fn new(max_frame_bytes: usize) -> Self {
        TcpDecoder {
            max_frame_bytes,
            keep_raw: false,
            capture: false,
            imei: None,
        }
    }

    /// A decoder for a recorded stream (`fleetedge decode`): accepts an IMEI packet or AVL
    /// packets directly, and IMEI packets again later (captures may join connections).
    /// Until an IMEI packet is seen, records get an empty `device_id`. Codec 12 commands
    /// (server to device) are accepted too, since a capture may hold both directions.
    pub fn for_capture(max_frame_bytes: usize) -> Self {
        TcpDecoder {
            capture: true,
            ..TcpDecoder::new(max_frame_bytes)
        }
    }

    /// When on, each record's `raw` is lowercase hex of the codec id byte followed by the
    /// record's own AVL bytes: enough to decode the record again, bounded by the frame.
    pub fn keep_raw(mut self, on: bool) -> Self {
        self.keep_raw = on;
        self
    }

    fn expect(&self) -> Expect {
        match (self.capture, self.imei.is_some()) {
            (true, _) => Expect::ImeiOrPacket,
            (false, false) => Expect::Imei,
            (false, true) => Expect::Packet,
        }
    }

    fn decode_frame(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let Some(&first) = input.first() else {
            return Ok(None);
        };
        // An IMEI length is at most 20 and a preamble byte is 0, so 0xFF is unambiguous in
        // every state.
        if first == KEEP_ALIVE {
            return Ok(Some(Decoded::control(1)));
        }
        match self.expect() {
            Expect::Packet => self.packet(input, now_ms),
            Expect::Imei => {
                if input.get(..2) == Some(&[0, 0]) {
                    return Err(DecodeError::new(
                        0,
                        "AVL data packet before the IMEI packet (expected u16 IMEI length 1..=20)",
                    ));
                }
                self.imei_packet(input)
            }
            Expect::ImeiOrPacket => {
                if first != 0 {
                    return Err(DecodeError::new(
                        0,
                        format!(
                            "byte 0x{first:02x} starts neither an IMEI packet, an AVL packet \
                             (00 00 00 00) nor a keep-alive (ff)"
                        ),
                    ));
                }
                // 00 00 can only be a preamble: an IMEI length is at least 1.
                match input.get(1) {
                    None => Ok(None),
                    Some(0) => self.packet(input, now_ms),
                    Some(_) => self.imei_packet(input),
                }
            }
        }
    }

    /// `u16 length` + ASCII digits.
    fn imei_packet(&mut self, input: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        let first = input.first().copied().unwrap_or_default();
        // A non-zero high byte already means a length past 255: fail before the second byte.
        if first != 0 {
            return Err(DecodeError::new(
                0,
                format!(
                    "IMEI length starts with 0x{first:02x}: expected 1..={MAX_IMEI_DIGITS} digits"
                ),
            ));
        }
        let Some(&len) = input.get(1) else {
            return Ok(None);
        };
        let len = usize::from(len);
        if len == 0 || len > MAX_IMEI_DIGITS {
            return Err(DecodeError::new(
                0,
                format!("IMEI length {len}: expected 1..={MAX_IMEI_DIGITS} digits"),
            ));
        }
        let total = 2 + len;
        if total > self.max_frame_bytes {
            return Err(self.oversize(0, total));
        }
        // Validate the digits already here, so a stream of junk fails before it is buffered.
        let digits = input.get(2..total.min(input.len())).unwrap_or_default();
        if let Some(pos) = digits.iter().position(|b| !b.is_ascii_digit()) {
            let byte = digits.get(pos).copied().unwrap_or_default();
            return Err(DecodeError::new(
                2 + pos,
                format!("IMEI byte 0x{byte:02x} is not an ASCII digit"),
            ));
        }
        if digits.len() < len {
            return Ok(None);
        }
        let imei: String = digits.iter().map(|&b| char::from(b)).collect();
        self.imei = Some(imei.clone());
        Ok(Some(Decoded {
            login: Some(imei),
            reply: Reply {
                accepted: Some(vec![0x01]),
                refused: Some(vec![0x00]),
            },
            ..Decoded::control(total)
        }))
    }

    /// An AVL data packet or a Codec 12 packet (same envelope).
    fn packet(&self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let preamble = input.get(..4.min(input.len())).unwrap_or_default();
        if let Some(pos) = preamble.iter().position(|&b| b != 0) {
            let byte = preamble.get(pos).copied().unwrap_or_default();
            return Err(DecodeError::new(
                pos,
                format!("non-zero preamble byte 0x{byte:02x} (packets start with 00 00 00 00)"),
            ));
        }
        let Some(len_field) = input.get(4..DATA_OFFSET) else {
            return Ok(None);
        };
        let data_len = len_field
            .try_into()
            .map(u32::from_be_bytes)
            .unwrap_or_default();
        if data_len < MIN_DATA_LEN {
            return Err(DecodeError::new(
                4,
                format!("data length {data_len} is below the minimum of {MIN_DATA_LEN}"),
            ));
        }
        let total = usize::try_from(data_len)
            .ok()
            .and_then(|l| l.checked_add(FRAME_OVERHEAD));
        let total = match total {
            Some(total) if total <= self.max_frame_bytes => total,
            _ => {
                let frame = u64::from(data_len) + FRAME_OVERHEAD as u64;
                return Err(self.oversize(4, frame));
            }
        };
        // The codec id is known before the rest arrives; an unknown one is an error whatever
        // the CRC says, so there is no point buffering it.
        if let Some(&codec) = input.get(DATA_OFFSET) {
            if !matches!(codec, CODEC_8 | CODEC_8_EXTENDED | CODEC_16 | CODEC_12) {
                return Err(DecodeError::new(
                    DATA_OFFSET,
                    format!("unsupported codec id 0x{codec:02x}"),
                ));
            }
        }
        let Some(frame) = input.get(..total) else {
            return Ok(None);
        };
        let crc_at = total - 4;
        let (head, crc_field) = frame.split_at(crc_at);
        let data = head.get(DATA_OFFSET..).unwrap_or_default();
        let sent = crc_field
            .try_into()
            .map(u32::from_be_bytes)
            .unwrap_or_default();
        let computed = crc16_arc(data);
        // The upper two bytes must be zero too: anything else is not a Teltonika CRC field.
        if sent != u32::from(computed) {
            return Err(DecodeError::new(
                crc_at,
                format!(
                    "CRC field {sent:08x} does not match CRC-16/ARC {computed:04x} of the data"
                ),
            ));
        }

        if data.first() == Some(&CODEC_12) {
            let answer = codec12::check(data, self.capture)?.map(|text| CommandAnswer {
                key: AnswerKey::Outstanding,
                text: answer_text(text),
                device_error: false,
            });
            return Ok(Some(Decoded {
                command_answer: answer,
                ..Decoded::control(total)
            }));
        }

        let ctx = avl::Context {
            device_id: self.imei.as_deref().unwrap_or_default(),
            now_ms,
            keep_raw: self.keep_raw,
        };
        let records = avl::parse_data_field(data, &ctx)?;
        let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
        Ok(Some(Decoded {
            records,
            reply: Reply {
                accepted: Some(count.to_be_bytes().to_vec()),
                refused: Some(vec![0; 4]),
            },
            ..Decoded::control(total)
        }))
    }

    #[cold]
    #[inline(never)]
    fn oversize(&self, offset: usize, frame: impl std::fmt::Display) -> DecodeError {
        DecodeError::new(
            offset,
            format!(
                "frame of {frame} bytes exceeds the limit of {} bytes",
                self.max_frame_bytes
            ),
        )
    }
}

impl StreamDecoder for TcpDecoder {
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let decoded = self.decode_frame(input, now_ms)?;
        crate::within_frame_limit(decoded, input, self.max_frame_bytes)
    }

    fn device_id(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}
