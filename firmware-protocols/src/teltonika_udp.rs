//! Teltonika Codec 8 / 8 Extended / 16 over UDP: one datagram is one AVL packet, wrapped in a
//! channel header that carries the IMEI, and answered with a 7-byte ack. Fact sheet:
//! `shared/protocols/teltonika.md` sections 4 and 7.
//!
//! ```text
//! Datagram (every integer big-endian; no CRC, no data-length field)
//!   0        2           4     5         6          8            8+n     9+n             end-1  end
//!   ┌────────┬───────────┬─────┬─────────┬──────────┬────────────┬───────┬─────┬─────────┬──────┐
//!   │ L u16  │ packet id │ 01  │ AVL pkt │ n u16    │ IMEI, n    │ codec │ N1  │ records │  N2  │
//!   │        │   u16     │     │ id u8   │ (000f)   │ digits     │       │     │         │      │
//!   └────────┴───────────┴─────┴─────────┴──────────┴────────────┴───────┴─────┴─────────┴──────┘
//!            └────────────── L bytes: everything after the length field ─────────────────────┘
//!                                                                 └── AVL data, as over TCP ─┘
//!   datagram = L + 2 bytes; 1 <= n <= 20, digits only; codec 08, 8e or 10; N1 == N2;
//!   the records fill the space between N1 and N2 exactly.
//!
//! Ack (gateway ──▶ device, 7 bytes)
//!   ┌───────┬───────────┬────┬─────────┬─────────────────┐
//!   │ 00 05 │ packet id │ 01 │ AVL pkt │ accepted count  │   refused: the same with count 0
//!   └───────┴───────────┴────┴─────────┴─────────────────┘
//! ```
//!
//! The records are parsed by the TCP decoder's AVL parser (`teltonika::avl`), so a record
//! decodes to the same [`Record`](crate::Record) whichever transport brought it: same fields,
//! io keys, event names and per-record `raw` (codec id + the record's own bytes, as hex). Only
//! `protocol` differs (`teltonika-udp`), and every record's `device_id` is the datagram's IMEI.
//!
//! UDP has no connection to close, so every check that fails is an `Err`: the gateway logs it
//! with the peer and drops the datagram, and the device, never acked, sends it again. Nothing
//! is `problem`: there is no stream to stay in sync with.
//!
//! Commands (Codec 12). No Teltonika document describes Codec 12 over UDP: the data-sending
//! protocols page says the codecs do not depend on the transport, an older revision says
//! GPRS commands work over TCP only, and the FM firmware table lists "SMS over GPRS via UDP"
//! for some models without a layout. So the gateway sends the documented Codec 12 packet
//! (preamble, length, data, CRC: self-delimiting and checked) unchanged as one datagram to
//! the device's address right after an ack, and takes an answer in either form a device
//! may use:
//!
//! ```text
//!   L packet-id 01 avl-id 000f IMEI 0c 01 06 size text 01   the data field behind the channel
//!                                                           header, as the device sends AVL data
//!   00000000 L 0c 01 06 size text 01 CRC                    the TCP packet, whole
//! ```
//!
//! Either is a [`Decoded::command_answer`](crate::Decoded::command_answer) for the command
//! outstanding for that device, with no records and no ack. The first names its device
//! (`login` is set to the IMEI); the second names none, so the gateway must know the device
//! by the datagram's source address. A zero length field cannot start an AVL datagram, and
//! codec 0c with type 06 no AVL data, so neither collides with data.
//!
//! [`encode`] builds datagrams (the device side), for the load simulator and tests.

pub mod encode;

use crate::command::{answer_text, AnswerKey, CommandAnswer};
use crate::teltonika::avl::{self, Context};
use crate::teltonika::MAX_IMEI_DIGITS;
use crate::teltonika::{self, CODEC_12, CODEC_16, CODEC_8, CODEC_8_EXTENDED, DATA_OFFSET};
use crate::{DatagramDecoder, DecodeError, Decoded, DecoderOptions, Protocol, Reply};

/// Length 2, packet id 2, "not usable" byte 1, AVL packet id 1, IMEI length 2.
const HEADER_BYTES: usize = 8;
/// Offset of the IMEI length field.
const IMEI_LENGTH_AT: usize = 6;
/// Codec id, Number of Data 1 and Number of Data 2: the smallest AVL data there is.
const MIN_AVL_BYTES: usize = 3;
/// The ack's own length field: packet id 2 + `01` + AVL packet id + count.
const ACK_LENGTH: [u8; 2] = [0x00, 0x05];
/// The fixed byte between the packet id and the AVL packet id in the ack (fact sheet §4).
const ACK_MARKER: u8 = 0x01;
/// Codec 12 type byte of a device's response.
const CODEC_12_RESPONSE: u8 = 0x06;

/// Sans-IO decoder for Teltonika UDP datagrams. It keeps no state between datagrams, so one
/// decoder serves every peer of a listener.
#[derive(Debug, Clone)]
pub struct UdpDecoder {
    max_frame_bytes: usize,
    keep_raw: bool,
}

impl UdpDecoder {
    /// Datagrams longer than `options.max_frame_bytes` are refused; `options.keep_raw` keeps
    /// each record's bytes. `options.device_id` is ignored: every datagram names its IMEI.
    pub fn new(options: &DecoderOptions) -> Self {
        UdpDecoder {
            max_frame_bytes: options.max_frame_bytes,
            keep_raw: options.keep_raw,
        }
    }
}

impl DatagramDecoder for UdpDecoder {
    fn decode(&self, datagram: &[u8], now_ms: i64) -> Result<Decoded, DecodeError> {
        if datagram.len() > self.max_frame_bytes {
            return Err(DecodeError::new(
                0,
                format!(
                    "datagram of {} bytes exceeds the limit of {} bytes",
                    datagram.len(),
                    self.max_frame_bytes
                ),
            ));
        }

        // A length field of 0 is no AVL datagram: a zero preamble and codec 0c are a whole
        // Codec 12 packet. (Anything else with a zero length field fails in the header.)
        if datagram.starts_with(&[0; 4]) && datagram.get(DATA_OFFSET) == Some(&CODEC_12) {
            let text = teltonika::response_packet(datagram)?;
            return Ok(command_answer(text, datagram.len()));
        }
        let header = Header::parse(datagram)?;
        let data_at = HEADER_BYTES + header.imei.len();
        let data = datagram.get(data_at..).unwrap_or_default();
        if data.len() < MIN_AVL_BYTES {
            return Err(DecodeError::new(
                data_at,
                format!(
                    "AVL data of {} bytes after the IMEI: needs at least codec id, Number of \
                     Data 1 and Number of Data 2",
                    data.len()
                ),
            ));
        }
        // The AVL parser refuses other codecs too, but only after checking N1 == N2; naming the
        // codec first gives the more useful message for a Codec 12 or foreign datagram.
        let codec = data.first().copied().unwrap_or_default();
        if codec == CODEC_12 && data.get(2) == Some(&CODEC_12_RESPONSE) {
            let text = teltonika::codec12_response(data).map_err(|e| rebase(e, data_at))?;
            return Ok(Decoded {
                login: Some(header.imei.to_owned()),
                ..command_answer(text, datagram.len())
            });
        }
        if !matches!(codec, CODEC_8 | CODEC_8_EXTENDED | CODEC_16) {
            return Err(DecodeError::new(
                data_at,
                format!("unsupported codec id 0x{codec:02x} (expected 08, 8e or 10)"),
            ));
        }

        let ctx = Context {
            device_id: header.imei,
            now_ms,
            keep_raw: self.keep_raw,
        };
        let mut records = avl::parse_data_field(data, &ctx).map_err(|e| rebase(e, data_at))?;
        for record in &mut records {
            record.protocol = Protocol::TeltonikaUdp;
        }

        // At most 255: Number of Data is one byte.
        let count = u8::try_from(records.len()).unwrap_or(u8::MAX);
        Ok(Decoded {
            records,
            reply: Reply {
                accepted: Some(header.ack(count).to_vec()),
                refused: Some(header.ack(0).to_vec()),
            },
            ..Decoded::control(datagram.len())
        })
    }
}

/// The channel header, up to and including the IMEI.
struct Header<'a> {
    packet_id: [u8; 2],
    avl_packet_id: u8,
    /// ASCII digits, checked.
    imei: &'a str,
}

impl<'a> Header<'a> {
    fn parse(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let length = u16::from_be_bytes(array(datagram, 0, "length field")?);
        // A datagram arrives whole or not at all, so the length must match exactly: a mismatch
        // is a truncated or padded datagram, or not Teltonika.
        let after = datagram.len().saturating_sub(2);
        if usize::from(length) != after {
            return Err(DecodeError::new(
                0,
                format!(
                    "length field says {length} bytes follow but the datagram has {after} after it"
                ),
            ));
        }
        let packet_id = array(datagram, 2, "packet id")?;
        // Offset 4 is the "not usable" byte (0x01 in the examples): its value means nothing,
        // but it must be there.
        let [_not_usable] = array(datagram, 4, "\"not usable\" byte")?;
        let [avl_packet_id] = array(datagram, 5, "AVL packet id")?;
        let imei_len = u16::from_be_bytes(array(datagram, IMEI_LENGTH_AT, "IMEI length")?);
        let imei_len = usize::from(imei_len);
        if imei_len == 0 || imei_len > MAX_IMEI_DIGITS {
            return Err(DecodeError::new(
                IMEI_LENGTH_AT,
                format!("IMEI length {imei_len}: expected 1..={MAX_IMEI_DIGITS} digits"),
            ));
        }
        let imei = datagram
            .get(HEADER_BYTES..HEADER_BYTES + imei_len)
            .ok_or_else(|| {
                DecodeError::new(
                    HEADER_BYTES,
                    format!(
                        "truncated IMEI: needs {imei_len} bytes, {} left",
                        datagram.len().saturating_sub(HEADER_BYTES)
                    ),
                )
            })?;
        if let Some(pos) = imei.iter().position(|b| !b.is_ascii_digit()) {
            let byte = imei.get(pos).copied().unwrap_or_default();
            return Err(DecodeError::new(
                HEADER_BYTES + pos,
                format!("IMEI byte 0x{byte:02x} is not an ASCII digit"),
            ));
        }
        // Only ASCII digits are left, so this cannot fail.
        let imei = std::str::from_utf8(imei)
            .map_err(|_| DecodeError::new(HEADER_BYTES, "IMEI is not ASCII"))?;
        Ok(Header {
            packet_id,
            avl_packet_id,
            imei,
        })
    }

    /// `00 05 <packet id> 01 <AVL packet id> <count>`.
    fn ack(&self, count: u8) -> [u8; 7] {
        let [l0, l1] = ACK_LENGTH;
        let [p0, p1] = self.packet_id;
        [l0, l1, p0, p1, ACK_MARKER, self.avl_packet_id, count]
    }
}

/// A datagram carrying a Codec 12 response: no records and no ack (a response is not
/// acknowledged over TCP either), the answer to the command outstanding for its peer.
fn command_answer(text: &[u8], consumed: usize) -> Decoded {
    Decoded {
        command_answer: Some(CommandAnswer {
            key: AnswerKey::Outstanding,
            text: answer_text(text),
            device_error: false,
        }),
        ..Decoded::control(consumed)
    }
}

/// `N` bytes at `at`, or an error naming the field.
fn array<const N: usize>(datagram: &[u8], at: usize, what: &str) -> Result<[u8; N], DecodeError> {
    datagram
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            DecodeError::new(
                at,
                format!(
                    "truncated {what}: needs {N} bytes, {} left",
                    datagram.len().saturating_sub(at)
                ),
            )
        })
}

/// The AVL parser reports offsets as in a TCP packet, where the codec id sits at
/// [`DATA_OFFSET`]; here it sits at `data_at`.
#[cold]
#[inline(never)]
fn rebase(mut err: DecodeError, data_at: usize) -> DecodeError {
    err.offset = err
        .offset
        .saturating_sub(DATA_OFFSET)
        .saturating_add(data_at);
    err
}
