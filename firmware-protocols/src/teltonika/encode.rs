//! Builds valid Teltonika TCP packets: the device side, for the load simulator and tests.
//!
//! IO elements are written grouped by value width (1, 2, 4, 8 bytes, then variable length),
//! keeping their given order within a group, because that is the only order the format can
//! carry. A decoder therefore returns them in that grouped order.

use super::codec12::{TYPE_COMMAND, TYPE_RESPONSE};
use super::{CODEC_12, CODEC_16, CODEC_8, CODEC_8_EXTENDED};
use crate::crc::crc16_arc;

/// One AVL record as a device would send it (raw wire units).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvlRecord {
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: u64,
    /// 0 low, 1 high, 2 panic.
    pub priority: u8,
    /// Degrees × 10^7, negative = west.
    pub lon: i32,
    /// Degrees × 10^7, negative = south.
    pub lat: i32,
    pub altitude: i16,
    pub angle: u16,
    pub satellites: u8,
    pub speed: u16,
    /// IO id that triggered the record; 0 = periodic.
    pub event_id: u16,
    /// Codec 16 only; ignored by the other codecs.
    pub generation_type: u8,
    pub io: Vec<(u16, IoData)>,
}

/// An IO value; its variant is its width on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoData {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    /// Codec 8 Extended's variable-length group only.
    Bytes(Vec<u8>),
}

impl IoData {
    /// The value as a decoder reports it for the fixed widths.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            IoData::U8(v) => Some(v.into()),
            IoData::U16(v) => Some(v.into()),
            IoData::U32(v) => Some(v.into()),
            IoData::U64(v) => Some(v),
            IoData::Bytes(_) => None,
        }
    }

    /// Group index in frame order: 1-, 2-, 4-, 8-byte, variable.
    fn group(&self) -> usize {
        match self {
            IoData::U8(_) => 0,
            IoData::U16(_) => 1,
            IoData::U32(_) => 2,
            IoData::U64(_) => 3,
            IoData::Bytes(_) => 4,
        }
    }
}

/// Why a record set cannot be written in the chosen codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// More than 255 records (Number of Data is one byte).
    TooManyRecords(usize),
    /// An event or IO id wider than the codec's 1-byte ids (Codec 8).
    IdTooWide(u16),
    /// More IO elements in a record or group than the codec's counts can say.
    TooManyIo(usize),
    /// A variable-length value in a codec without the NX group, or longer than 65535 bytes.
    BadBytesValue { id: u16, len: usize },
    /// The data field would not fit the 4-byte data length.
    PacketTooLarge(usize),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::TooManyRecords(n) => write!(f, "{n} records, at most 255 fit"),
            EncodeError::IdTooWide(id) => write!(f, "id {id} does not fit this codec's 1-byte ids"),
            EncodeError::TooManyIo(n) => {
                write!(f, "{n} IO elements do not fit this codec's counts")
            }
            EncodeError::BadBytesValue { id, len } => {
                write!(
                    f,
                    "variable-length IO {id} ({len} bytes) not encodable in this codec"
                )
            }
            EncodeError::PacketTooLarge(n) => write!(f, "data field of {n} bytes is too large"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The IMEI packet: u16 length + the bytes of `imei` as given (not validated, so tests can
/// build bad ones). Longer than 65535 bytes is cut there.
pub fn encode_imei(imei: &str) -> Vec<u8> {
    let bytes = imei.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let bytes = bytes.get(..usize::from(len)).unwrap_or(bytes);
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The AVL data codecs the encoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Codec8,
    Codec8Extended,
    Codec16,
}

/// An AVL data packet in `codec`; the same as the codec-named functions below.
pub fn encode_avl_packet(codec: Codec, records: &[AvlRecord]) -> Result<Vec<u8>, EncodeError> {
    match codec {
        Codec::Codec8 => encode_codec8(records),
        Codec::Codec8Extended => encode_codec8_extended(records),
        Codec::Codec16 => encode_codec16(records),
    }
}

/// A Codec 8 AVL data packet (1-byte ids and counts, no variable-length values).
pub fn encode_codec8(records: &[AvlRecord]) -> Result<Vec<u8>, EncodeError> {
    encode_avl(records, &CODEC8)
}

/// A Codec 8 Extended AVL data packet (2-byte ids and counts, variable-length values).
pub fn encode_codec8_extended(records: &[AvlRecord]) -> Result<Vec<u8>, EncodeError> {
    encode_avl(records, &CODEC8E)
}

/// A Codec 16 AVL data packet (2-byte ids, 1-byte counts, generation type).
pub fn encode_codec16(records: &[AvlRecord]) -> Result<Vec<u8>, EncodeError> {
    encode_avl(records, &CODEC16)
}

/// A Codec 12 command (server to device, type 0x05), e.g. `b"getinfo"`.
pub fn encode_codec12_command(command: &[u8]) -> Result<Vec<u8>, EncodeError> {
    encode_codec12(TYPE_COMMAND, command)
}

/// A Codec 12 response (device to server, type 0x06) carrying `text`.
pub fn encode_codec12_response(text: &[u8]) -> Result<Vec<u8>, EncodeError> {
    encode_codec12(TYPE_RESPONSE, text)
}

struct Widths {
    codec: u8,
    id: usize,
    count: usize,
    generation_type: bool,
    nx: bool,
}

const CODEC8: Widths = Widths {
    codec: CODEC_8,
    id: 1,
    count: 1,
    generation_type: false,
    nx: false,
};
const CODEC8E: Widths = Widths {
    codec: CODEC_8_EXTENDED,
    id: 2,
    count: 2,
    generation_type: false,
    nx: true,
};
const CODEC16: Widths = Widths {
    codec: CODEC_16,
    id: 2,
    count: 1,
    generation_type: true,
    nx: false,
};

fn encode_avl(records: &[AvlRecord], w: &Widths) -> Result<Vec<u8>, EncodeError> {
    let count =
        u8::try_from(records.len()).map_err(|_| EncodeError::TooManyRecords(records.len()))?;
    let mut data = Vec::with_capacity(3 + records.len() * 64);
    data.push(w.codec);
    data.push(count);
    for record in records {
        write_record(&mut data, record, w)?;
    }
    data.push(count);
    wrap(data)
}

fn write_record(out: &mut Vec<u8>, r: &AvlRecord, w: &Widths) -> Result<(), EncodeError> {
    out.extend_from_slice(&r.timestamp_ms.to_be_bytes());
    out.push(r.priority);
    out.extend_from_slice(&r.lon.to_be_bytes());
    out.extend_from_slice(&r.lat.to_be_bytes());
    out.extend_from_slice(&r.altitude.to_be_bytes());
    out.extend_from_slice(&r.angle.to_be_bytes());
    out.push(r.satellites);
    out.extend_from_slice(&r.speed.to_be_bytes());
    write_uint(out, w.id, r.event_id)?;
    if w.generation_type {
        out.push(r.generation_type);
    }
    write_count(out, w.count, r.io.len())?;
    for group in 0..5 {
        let members = || r.io.iter().filter(move |(_, v)| v.group() == group);
        let n = members().count();
        if group == 4 {
            if !w.nx {
                if let Some((id, IoData::Bytes(b))) = members().next() {
                    return Err(EncodeError::BadBytesValue {
                        id: *id,
                        len: b.len(),
                    });
                }
                continue;
            }
            // The NX count is always 2 bytes, and present even when zero.
            write_count(out, 2, n)?;
        } else {
            write_count(out, w.count, n)?;
        }
        for (id, value) in members() {
            write_uint(out, w.id, *id)?;
            match value {
                IoData::U8(v) => out.push(*v),
                IoData::U16(v) => out.extend_from_slice(&v.to_be_bytes()),
                IoData::U32(v) => out.extend_from_slice(&v.to_be_bytes()),
                IoData::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
                IoData::Bytes(b) => {
                    let len = u16::try_from(b.len()).map_err(|_| EncodeError::BadBytesValue {
                        id: *id,
                        len: b.len(),
                    })?;
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }
    Ok(())
}

/// An id in the codec's width (1 or 2 bytes).
fn write_uint(out: &mut Vec<u8>, width: usize, value: u16) -> Result<(), EncodeError> {
    if width == 1 {
        out.push(u8::try_from(value).map_err(|_| EncodeError::IdTooWide(value))?);
    } else {
        out.extend_from_slice(&value.to_be_bytes());
    }
    Ok(())
}

/// A count in the codec's width (1 or 2 bytes).
fn write_count(out: &mut Vec<u8>, width: usize, n: usize) -> Result<(), EncodeError> {
    if width == 1 {
        out.push(u8::try_from(n).map_err(|_| EncodeError::TooManyIo(n))?);
    } else {
        let n = u16::try_from(n).map_err(|_| EncodeError::TooManyIo(n))?;
        out.extend_from_slice(&n.to_be_bytes());
    }
    Ok(())
}

fn encode_codec12(kind: u8, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let size =
        u32::try_from(payload.len()).map_err(|_| EncodeError::PacketTooLarge(payload.len()))?;
    let mut data = Vec::with_capacity(8 + payload.len());
    data.extend_from_slice(&[CODEC_12, 1, kind]);
    data.extend_from_slice(&size.to_be_bytes());
    data.extend_from_slice(payload);
    data.push(1);
    wrap(data)
}

/// Preamble, data length, `data`, CRC field.
fn wrap(data: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
    let len = u32::try_from(data.len()).map_err(|_| EncodeError::PacketTooLarge(data.len()))?;
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&u32::from(crc16_arc(&data)).to_be_bytes());
    Ok(out)
}
