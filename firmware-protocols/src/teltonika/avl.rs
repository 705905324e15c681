//! The data field of an AVL packet (codec id .. Number of Data 2) into [`Record`]s, for the
//! three AVL codecs. The caller has already framed the packet and checked its CRC.
//!
//! The codecs differ only in field widths, so one parser is written once over a [`Layout`]
//! and monomorphised per codec: the width checks fold away and the hot loop stays branch-light.

use super::{CODEC_16, CODEC_8, CODEC_8_EXTENDED, DATA_OFFSET};
use crate::cursor::Cursor;
use crate::record::to_hex;
use crate::{DecodeError, IoKey, IoValue, Protocol, Record};

/// IO 182 is HDOP × 10 on FMB devices; it is also copied into [`Record::hdop`].
const HDOP_IO: u16 = 182;

/// Bytes before the IO element: timestamp 8, priority 1, lon 4, lat 4, altitude 2, angle 2,
/// satellites 1, speed 2.
const GPS_ELEMENT_BYTES: usize = 24;

/// What every record of a packet shares.
pub(crate) struct Context<'a> {
    pub device_id: &'a str,
    pub now_ms: i64,
    /// Keep each record's raw bytes (codec id + the record's own AVL bytes, as hex).
    /// Per record rather than the whole frame, so a frame's raw text stays about twice its
    /// size instead of growing with the square of its record count.
    pub keep_raw: bool,
}

trait Layout {
    /// Width of the event id and of every IO id.
    const ID_BYTES: usize;
    /// Width of N total and of each group count.
    const COUNT_BYTES: usize;
    /// Codec 16's generation-type byte after the event id.
    const GENERATION_TYPE: bool;
    /// Codec 8 Extended's variable-length group.
    const NX: bool;
    /// The smallest record this codec can encode (no IO at all), used to cap allocations
    /// driven by the record count.
    const MIN_RECORD_BYTES: usize = GPS_ELEMENT_BYTES
        + Self::ID_BYTES
        + Self::GENERATION_TYPE as usize
        + Self::COUNT_BYTES * (5 + Self::NX as usize);
}

struct Codec8;
impl Layout for Codec8 {
    const ID_BYTES: usize = 1;
    const COUNT_BYTES: usize = 1;
    const GENERATION_TYPE: bool = false;
    const NX: bool = false;
}

struct Codec8Extended;
impl Layout for Codec8Extended {
    const ID_BYTES: usize = 2;
    const COUNT_BYTES: usize = 2;
    const GENERATION_TYPE: bool = false;
    const NX: bool = true;
}

struct Codec16;
impl Layout for Codec16 {
    const ID_BYTES: usize = 2;
    const COUNT_BYTES: usize = 1;
    const GENERATION_TYPE: bool = true;
    const NX: bool = false;
}

/// Parses `data` (the packet's bytes `[8, 8 + L)`, starting at the codec id) into records.
pub(crate) fn parse_data_field(data: &[u8], ctx: &Context<'_>) -> Result<Vec<Record>, DecodeError> {
    let mut cur = Cursor::new(data, DATA_OFFSET);
    let codec = cur.u8("codec id")?;
    let n1 = cur.u8("Number of Data 1")?;
    // Number of Data 2 is the last byte; checking it first rejects a mis-framed packet
    // before any record is built.
    let (n2, records) = match data.split_last() {
        Some((&n2, rest)) if rest.len() >= 2 => (n2, rest.get(2..).unwrap_or_default()),
        _ => {
            return Err(DecodeError::new(
                DATA_OFFSET,
                "data field shorter than 3 bytes",
            ))
        }
    };
    if n1 != n2 {
        let at = DATA_OFFSET + data.len() - 1;
        return Err(DecodeError::new(
            at,
            format!("Number of Data 2 ({n2}) differs from Number of Data 1 ({n1})"),
        ));
    }
    let cur = Cursor::new(records, DATA_OFFSET + 2);
    match codec {
        CODEC_8 => parse_records::<Codec8>(cur, codec, n1, ctx),
        CODEC_8_EXTENDED => parse_records::<Codec8Extended>(cur, codec, n1, ctx),
        CODEC_16 => parse_records::<Codec16>(cur, codec, n1, ctx),
        other => Err(DecodeError::new(
            DATA_OFFSET,
            format!("codec id 0x{other:02x} is not an AVL data codec"),
        )),
    }
}

fn parse_records<L: Layout>(
    mut cur: Cursor<'_>,
    codec: u8,
    count: u8,
    ctx: &Context<'_>,
) -> Result<Vec<Record>, DecodeError> {
    let count = usize::from(count);
    let mut records = Vec::with_capacity(count.min(cur.remaining() / L::MIN_RECORD_BYTES));
    for index in 0..count {
        let start = cur.pos();
        let mut record =
            parse_record::<L>(&mut cur, ctx).map_err(|e| in_record(e, index, count))?;
        if ctx.keep_raw {
            let own = cur.since(start);
            let mut raw = String::with_capacity(2 + own.len() * 2);
            raw.push_str(&to_hex(&[codec]));
            raw.push_str(&to_hex(own));
            record.raw = Some(raw);
        }
        records.push(record);
    }
    if cur.remaining() != 0 {
        return Err(DecodeError::new(
            cur.offset(),
            format!(
                "{} bytes left between the last of {count} records and Number of Data 2",
                cur.remaining()
            ),
        ));
    }
    Ok(records)
}

fn parse_record<L: Layout>(cur: &mut Cursor<'_>, ctx: &Context<'_>) -> Result<Record, DecodeError> {
    let timestamp = cur.u64("timestamp")?;
    let priority = cur.u8("priority")?;
    let lon = cur.i32("longitude")?;
    let lat = cur.i32("latitude")?;
    let altitude = cur.i16("altitude")?;
    let angle = cur.u16("angle")?;
    let satellites = cur.u8("satellites")?;
    let speed = cur.u16("speed")?;
    let event_id = cur.uint(L::ID_BYTES, "event IO id")?;
    let generation_type = if L::GENERATION_TYPE {
        Some(cur.u8("generation type")?)
    } else {
        None
    };
    let total_at = cur.offset();
    let total = cur.uint(L::COUNT_BYTES, "N total")?;

    // N total is only a hint for the allocation: a lying value must not allocate more than
    // the remaining bytes could hold (every element is at least an id and one value byte).
    let fit = cur.remaining() / (L::ID_BYTES + 1);
    let mut io = Vec::with_capacity(usize::from(total).min(fit) + 2);
    io.push((
        IoKey::Name("priority".to_owned()),
        IoValue::U64(priority.into()),
    ));
    if let Some(generation_type) = generation_type {
        io.push((
            IoKey::Name("generation_type".to_owned()),
            IoValue::U64(generation_type.into()),
        ));
    }

    let mut hdop = None;
    // u32: four 2-byte counts plus NX can exceed u16.
    let mut seen = u32::from(group::<L, 1>(cur, &mut io, &mut hdop)?);
    seen += u32::from(group::<L, 2>(cur, &mut io, &mut hdop)?);
    seen += u32::from(group::<L, 4>(cur, &mut io, &mut hdop)?);
    seen += u32::from(group::<L, 8>(cur, &mut io, &mut hdop)?);
    if L::NX {
        seen += u32::from(variable_group(cur, &mut io)?);
    }
    if seen != u32::from(total) {
        return Err(DecodeError::new(
            total_at,
            format!("N total says {total} IO elements but the groups hold {seen}"),
        ));
    }

    Ok(Record {
        device_id: ctx.device_id.to_owned(),
        protocol: Protocol::Teltonika,
        received_at_ms: ctx.now_ms,
        // A u64 past i64::MAX ms is no real clock; keep the record (and its raw) without it.
        time_ms: i64::try_from(timestamp).ok(),
        valid: Some(satellites > 0),
        lat: Some(f64::from(lat) / 1e7),
        lon: Some(f64::from(lon) / 1e7),
        altitude_m: Some(f64::from(altitude)),
        speed_kmh: Some(f64::from(speed)),
        course_deg: Some(f64::from(angle)),
        satellites: Some(satellites),
        hdop,
        event: (event_id != 0).then(|| event_name(event_id)),
        io,
        raw: None,
    })
}

/// One fixed-width IO group (`W` value bytes); returns its count.
#[inline(always)]
fn group<L: Layout, const W: usize>(
    cur: &mut Cursor<'_>,
    io: &mut Vec<(IoKey, IoValue)>,
    hdop: &mut Option<f64>,
) -> Result<u16, DecodeError> {
    let count = cur.uint(L::COUNT_BYTES, group_name(W))?;
    for _ in 0..count {
        let id = cur.uint(L::ID_BYTES, "IO id")?;
        let value = match W {
            1 => u64::from(cur.u8("IO value")?),
            2 => u64::from(cur.u16("IO value")?),
            4 => u64::from(cur.u32("IO value")?),
            _ => cur.u64("IO value")?,
        };
        if id == HDOP_IO {
            *hdop = Some(value as f64 / 10.0);
        }
        io.push((IoKey::Id(id.into()), IoValue::U64(value)));
    }
    Ok(count)
}

/// Codec 8 Extended's NX group: id, 2-byte length, value bytes.
fn variable_group(
    cur: &mut Cursor<'_>,
    io: &mut Vec<(IoKey, IoValue)>,
) -> Result<u16, DecodeError> {
    let count = cur.u16("NX count")?;
    for _ in 0..count {
        let id = cur.u16("NX IO id")?;
        let len = cur.u16("NX IO length")?;
        let value = cur.take(usize::from(len), "NX IO value")?;
        io.push((IoKey::Id(id.into()), IoValue::Bytes(value.to_vec())));
    }
    Ok(count)
}

fn group_name(width: usize) -> &'static str {
    match width {
        1 => "N1 count",
        2 => "N2 count",
        4 => "N4 count",
        _ => "N8 count",
    }
}

/// `io:<id>` without going through `format!`, which shows up in the per-record cost.
fn event_name(id: u16) -> String {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut rest = id;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        start -= 1;
        if rest == 0 {
            break;
        }
    }
    let mut name = String::with_capacity(3 + digits.len());
    name.push_str("io:");
    for &d in digits.get(start..).unwrap_or_default() {
        name.push(char::from(d));
    }
    name
}

#[cold]
#[inline(never)]
fn in_record(mut err: DecodeError, index: usize, count: usize) -> DecodeError {
    err.reason = format!("record {} of {count}: {}", index + 1, err.reason);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_decimal() {
        assert_eq!(event_name(1), "io:1");
        assert_eq!(event_name(10), "io:10");
        assert_eq!(event_name(239), "io:239");
        assert_eq!(event_name(u16::MAX), "io:65535");
    }

    #[test]
    fn minimum_record_sizes_match_the_layouts() {
        assert_eq!(Codec8::MIN_RECORD_BYTES, 30);
        assert_eq!(Codec8Extended::MIN_RECORD_BYTES, 38);
        assert_eq!(Codec16::MIN_RECORD_BYTES, 32);
    }
}
