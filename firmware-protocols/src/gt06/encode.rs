//! Builds valid GT06 frames (what a device sends), for tests, benches and the load simulator.
//!
//! Fields are taken raw, as they go on the wire (scaled coordinates, the course/status word),
//! so a test can state exactly which bytes it sends; [`course_status`] and [`scale_degrees`]
//! build those from readable values.

use super::{LOGIN, START_LONG, START_SHORT, STOP};
use crate::crc::crc16_x25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The content does not fit the packet length field (255 − 5 bytes for 78 78,
    /// 65535 − 5 for 79 79).
    ContentTooLong { len: usize, max: usize },
    /// A terminal id must be 15 or 16 decimal digits.
    BadImei(String),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::ContentTooLong { len, max } => {
                write!(f, "content of {len} bytes does not fit (at most {max})")
            }
            EncodeError::BadImei(imei) => write!(f, "{imei:?} is not a 15 or 16 digit IMEI"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// A `78 78` frame: one-byte packet length.
pub fn frame(protocol: u8, content: &[u8], serial: u16) -> Result<Vec<u8>, EncodeError> {
    build(false, protocol, content, serial)
}

/// A `79 79` frame: two-byte packet length.
pub fn frame_long(protocol: u8, content: &[u8], serial: u16) -> Result<Vec<u8>, EncodeError> {
    build(true, protocol, content, serial)
}

fn build(long: bool, protocol: u8, content: &[u8], serial: u16) -> Result<Vec<u8>, EncodeError> {
    let max = if long { u16::MAX as usize } else { 255 } - 5;
    if content.len() > max {
        return Err(EncodeError::ContentTooLong {
            len: content.len(),
            max,
        });
    }
    let length = content.len() + 5;
    let mut out = Vec::with_capacity(length + 6);
    if long {
        out.extend_from_slice(&START_LONG);
        out.extend_from_slice(&(length as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&START_SHORT);
        out.push(length as u8);
    }
    out.push(protocol);
    out.extend_from_slice(content);
    out.extend_from_slice(&serial.to_be_bytes());
    let crc = crc16_x25(out.get(2..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&STOP);
    Ok(out)
}

/// The 8-byte BCD terminal id of `imei` (15 digits get a leading 0 nibble).
pub fn terminal_id(imei: &str) -> Result<[u8; 8], EncodeError> {
    let bad = || EncodeError::BadImei(imei.to_owned());
    if !(15..=16).contains(&imei.len()) || !imei.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut nibbles = [0u8; 16];
    let pad = 16 - imei.len();
    for (slot, digit) in nibbles.iter_mut().skip(pad).zip(imei.bytes()) {
        *slot = digit - b'0';
    }
    let mut id = [0u8; 8];
    for (byte, pair) in id.iter_mut().zip(nibbles.chunks_exact(2)) {
        if let &[hi, lo] = pair {
            *byte = hi << 4 | lo;
        }
    }
    Ok(id)
}

/// A login packet with the terminal id only (the original 0x0D-length login).
pub fn login(imei: &str, serial: u16) -> Result<Vec<u8>, EncodeError> {
    frame(LOGIN, &terminal_id(imei)?, serial)
}

/// Degrees (sign ignored) in the wire's units: degrees × 1 800 000, rounded.
pub fn scale_degrees(degrees: f64) -> u32 {
    (degrees.abs() * 1_800_000.0).round() as u32
}

/// The course/status word: course 0..=1023 in bits 9..0, bit 10 north, bit 11 west,
/// bit 12 positioned.
pub fn course_status(course: u16, north: bool, west: bool, positioned: bool) -> u16 {
    (course & 0x03FF) | u16::from(north) << 10 | u16::from(west) << 11 | u16::from(positioned) << 12
}

/// The 18-byte GPS block of the location and alarm packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gps {
    /// `YY MM DD hh mm ss`, binary, UTC.
    pub time: [u8; 6],
    /// High nibble of byte 6 (usually 12); only the low 4 bits are sent.
    pub info_length: u8,
    /// Low nibble of byte 6; only the low 4 bits are sent.
    pub satellites: u8,
    /// Degrees × 1 800 000, unsigned (see [`scale_degrees`]).
    pub lat: u32,
    pub lon: u32,
    pub speed: u8,
    /// See [`course_status`].
    pub course_status: u16,
}

impl Gps {
    pub fn push_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time);
        out.push((self.info_length & 0x0F) << 4 | (self.satellites & 0x0F));
        out.extend_from_slice(&self.lat.to_be_bytes());
        out.extend_from_slice(&self.lon.to_be_bytes());
        out.push(self.speed);
        out.extend_from_slice(&self.course_status.to_be_bytes());
    }
}

/// The LBS block: MCC, MNC, LAC, cell id. An MNC above 255 is sent in two bytes with MCC
/// bit 15 set; MCC is sent in 15 bits, the cell id in 24.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lbs {
    pub mcc: u16,
    pub mnc: u16,
    pub lac: u16,
    pub cell_id: u32,
}

impl Lbs {
    pub fn push_to(&self, out: &mut Vec<u8>) {
        push_mcc_mnc(out, self.mcc, self.mnc);
        out.extend_from_slice(&self.lac.to_be_bytes());
        let [_, a, b, c] = self.cell_id.to_be_bytes();
        out.extend_from_slice(&[a, b, c]);
    }

    /// Its length on the wire (8, or 9 with a two-byte MNC).
    pub fn wire_len(&self) -> usize {
        if self.mnc > 0xFF {
            9
        } else {
            8
        }
    }
}

/// The status block of the heartbeat and the alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub terminal_info: u8,
    pub voltage_level: u8,
    pub gsm_signal: u8,
    pub alarm: u8,
    pub language: u8,
}

impl Status {
    pub fn push_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[
            self.terminal_info,
            self.voltage_level,
            self.gsm_signal,
            self.alarm,
            self.language,
        ]);
    }
}

/// Content of an 0x12 location: GPS block + LBS block.
pub fn location_content(gps: &Gps, lbs: &Lbs) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + lbs.wire_len());
    gps.push_to(&mut out);
    lbs.push_to(&mut out);
    out
}

/// Content of an 0x16 alarm: GPS block, LBS length byte (counting itself), LBS, status.
pub fn alarm_content(gps: &Gps, lbs: &Lbs, status: &Status) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + lbs.wire_len() + 5);
    gps.push_to(&mut out);
    out.push(lbs.wire_len() as u8 + 1);
    lbs.push_to(&mut out);
    status.push_to(&mut out);
    out
}

/// Content of an 0x13 heartbeat.
pub fn heartbeat_content(status: &Status) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    status.push_to(&mut out);
    out
}

/// The 4G LBS block of 0xA0 / 0xA3 / 0xA4: MCC, MNC (2 bytes with MCC bit 15 when above
/// 255), LAC u32, cell id u64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbsLte {
    pub mcc: u16,
    pub mnc: u16,
    pub lac: u32,
    pub cell_id: u64,
}

impl LbsLte {
    pub fn push_to(&self, out: &mut Vec<u8>) {
        push_mcc_mnc(out, self.mcc, self.mnc);
        out.extend_from_slice(&self.lac.to_be_bytes());
        out.extend_from_slice(&self.cell_id.to_be_bytes());
    }

    /// Its length on the wire (15, or 16 with a two-byte MNC).
    pub fn wire_len(&self) -> usize {
        15 + usize::from(self.mnc > 0xFF)
    }
}

/// MCC with bit 15 set and a two-byte MNC when the MNC needs it, else a one-byte MNC.
fn push_mcc_mnc(out: &mut Vec<u8>, mcc: u16, mnc: u16) {
    let wide = mnc > 0xFF;
    out.extend_from_slice(&((mcc & 0x7FFF) | u16::from(wide) << 15).to_be_bytes());
    match u8::try_from(mnc) {
        Ok(narrow) => out.push(narrow),
        Err(_) => out.extend_from_slice(&mnc.to_be_bytes()),
    }
}

/// The GT06N tail of 0x22 / 0xA0: ACC, data upload mode, re-upload flag, and the mileage
/// when the firmware sends one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gt06nTail {
    pub acc: u8,
    pub upload_mode: u8,
    pub reupload: u8,
    pub mileage: Option<u32>,
}

impl Gt06nTail {
    pub fn push_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.acc, self.upload_mode, self.reupload]);
        if let Some(mileage) = self.mileage {
            out.extend_from_slice(&mileage.to_be_bytes());
        }
    }
}

/// Content of an 0xA0 4G location: GPS block, 4G LBS block, GT06N tail.
pub fn location_4g_content(gps: &Gps, lbs: &LbsLte, tail: &Gt06nTail) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + lbs.wire_len() + 7);
    gps.push_to(&mut out);
    lbs.push_to(&mut out);
    tail.push_to(&mut out);
    out
}

/// Content of a 4G alarm (0xA3, or 0xA4 with `fence`): GPS block, LBS length byte
/// (counting itself), 4G LBS, status, fence number.
pub fn alarm_4g_content(gps: &Gps, lbs: &LbsLte, status: &Status, fence: Option<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + lbs.wire_len() + 6);
    gps.push_to(&mut out);
    out.push(lbs.wire_len() as u8 + 1);
    lbs.push_to(&mut out);
    status.push_to(&mut out);
    out.extend(fence);
    out
}

/// One cell of a multi-cell packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub lac: u32,
    pub cell_id: u64,
    pub rssi: u8,
}

/// A multi-cell packet (0x28 family; `lte` for 0xA1 / 0xA2): time, MCC, MNC, the 7 cells
/// (missing ones sent as empty slots), TA, then the Wi-Fi list (0x2C / 0xA2) and the
/// language word when given. The 2G form sends the low 16 bits of a LAC and 24 of a cell id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiCell {
    pub time: [u8; 6],
    pub mcc: u16,
    pub mnc: u16,
    pub cells: Vec<Cell>,
    pub lte: bool,
    pub ta: u8,
    pub wifi: Option<Vec<([u8; 6], u8)>>,
    pub language: Option<u16>,
}

impl MultiCell {
    pub fn content(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.time);
        push_mcc_mnc(&mut out, self.mcc, self.mnc);
        let empty = Cell {
            lac: 0,
            cell_id: 0,
            rssi: 0,
        };
        for n in 0..7 {
            let cell = self.cells.get(n).unwrap_or(&empty);
            if self.lte {
                out.extend_from_slice(&cell.lac.to_be_bytes());
                out.extend_from_slice(&cell.cell_id.to_be_bytes());
            } else {
                out.extend_from_slice(&(cell.lac as u16).to_be_bytes());
                let [.., a, b, c] = cell.cell_id.to_be_bytes();
                out.extend_from_slice(&[a, b, c]);
            }
            out.push(cell.rssi);
        }
        out.push(self.ta);
        if let Some(points) = &self.wifi {
            out.push(points.len() as u8);
            for (mac, rssi) in points {
                out.extend_from_slice(mac);
                out.push(*rssi);
            }
        }
        if let Some(language) = self.language {
            out.extend_from_slice(&language.to_be_bytes());
        }
        out
    }
}

/// Content of an address request (0x2A / 0x1A): GPS block, the phone number padded with
/// zero bytes to 21, the language word.
pub fn address_request_content(gps: &Gps, phone: &str, language: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + 21 + 2);
    gps.push_to(&mut out);
    let mut field = [0u8; 21];
    for (slot, byte) in field.iter_mut().zip(phone.bytes()) {
        *slot = byte;
    }
    out.extend_from_slice(&field);
    out.extend_from_slice(&language.to_be_bytes());
    out
}
