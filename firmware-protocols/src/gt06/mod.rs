//! Concox GT06 / GT06N (and the many clones of its framing) over TCP. Fact sheet:
//! `shared/protocols/gt06.md`.
//!
//! ```text
//! Session                        device ──▶ gateway              gateway ──▶ device
//!   login 0x01                   IMEI in BCD                     78 78 05 01 serial CRC 0d 0a
//!   location 0x10 / 0x12 / 0x22  GPS (+ LBS) block               (nothing)
//!   status / heartbeat 0x13      terminal info, voltage, GSM …   78 78 05 13 serial CRC 0d 0a
//!   alarm 0x16                   GPS + LBS + status block        78 78 05 16 serial CRC 0d 0a
//!   anything else                (logged as a problem, skipped)  (nothing)
//!
//! Frame (every integer big-endian; offsets for 79 79 in parentheses)
//!   0       2         3 (4)      4 (5)                L−1 (L)     L+1 (L+2)  L+3 (L+4)
//!   ┌───────┬─────────┬──────────┬────────────────────┬───────────┬──────────┬───────┐
//!   │ 78 78 │ L (u8)  │ protocol │ information content│ serial u16│ CRC u16  │ 0d 0a │
//!   │ 79 79 │ L (u16) │          │ N = L − 5 bytes    │           │ X-25     │       │
//!   └───────┼─────────┴──────────┴────────────────────┴───────────┼──────────┴───────┘
//!           └──────── CRC-16/X-25 covers L through serial ────────┘
//!   L = protocol + content + serial + CRC = N + 5;  frame = L + 5 (78 78) or L + 6 (79 79).
//!   The reply is always a 78 78 frame, whichever start bits the packet had.
//!
//! GPS block (0x10, 0x12, 0x16, 0x22; offsets from the first content byte)
//!   0           6        7        11       15      16              18
//!   ┌───────────┬────────┬────────┬────────┬───────┬───────────────┐
//!   │ YY MM DD  │ len|sat│ lat u32│ lon u32│ speed │ course/status │
//!   │ hh mm ss  │ 4b | 4b│ °×1.8e6│ °×1.8e6│ km/h  │ u16           │
//!   └───────────┴────────┴────────┴────────┴───────┴───────────────┘
//!   course/status: 9..0 course, 10 north (else south), 11 west (else east), 12 positioned,
//!   13 differential; 14/15 firmware-specific (kept raw in `course_status`).
//!
//! LBS block: MCC u16 (bit 15 set: MNC is 2 bytes), MNC u8, LAC u16, cell id u24.
//!   0x12 / 0x22: LBS right after the GPS block; 0x22 adds ACC, upload mode, re-upload
//!   (and on some firmware a u32 mileage). 0x16: an LBS length byte (counting itself) first.
//! Status block (0x13, and 0x16 after its LBS): terminal info, voltage level, GSM signal,
//!   alarm, language.
//! ```
//!
//! Into a [`Record`](crate::Record):
//!
//! - `time_ms` = the date/time fields read as **UTC** (Concox's default; a device configured
//!   for local time would be off by its zone, see [`Gt06Decoder::time_zone_minutes`]);
//!   impossible dates leave it `None` with the six bytes in io `time_raw`.
//! - `valid` = the "positioned" bit; `lat`/`lon` signed by the hemisphere bits; a position
//!   outside ±90°/±180° (the unsigned scaling allows 2386°) is no position: `lat`/`lon` stay
//!   `None`, `valid` is false, and the raw values go to io `latitude_raw`/`longitude_raw`.
//! - `satellites` = low nibble; `speed_kmh`, `course_deg` as sent; no altitude or HDOP.
//! - `event`: `None` for locations, `"heartbeat"` for 0x13, and for 0x16 the alarm byte:
//!   see [`alarm_event`].
//! - `io` (names, frame order): `time_raw`?, `gps_info_length`, `latitude_raw`?,
//!   `longitude_raw`?, `course_status`; `lbs_length` (0x16), `mcc`, `mnc`, `lac`, `cell_id`
//!   (or `lbs` bytes when an 0x16 LBS block is too short for them, `lbs_extra` for its
//!   surplus); 0x22 `acc`, `upload_mode`, `reupload`, `mileage`; status `terminal_info` with
//!   its bits `armed`, `acc`, `charging`, `terminal_alarm` (bits 5..3), `gps_tracking`,
//!   `oil_cut`, then `voltage_level`, `gsm_signal`, `alarm`, `language`; `extra` (bytes the
//!   sheet does not describe, kept rather than dropped); `serial` last.
//!
//! Answers and failures (where the sheet leaves a choice):
//!
//! - A heartbeat is a record (no position, event `heartbeat`, its status in io), so device
//!   health reaches the cloud; like every answer, its reply is sent once the record is stored.
//! - GT06 has no negative answer: `reply.refused` is always `None`. An unanswered alarm is
//!   resent; unanswered heartbeats make the device treat the link as down and keep positions
//!   in its own memory; an unanswered login makes it reconnect.
//! - Before the login, anything but a login is an `Err` (the records would have no device
//!   id); a sound frame with a bad CRC, an unknown protocol number, or content too short for
//!   its packet type is a `problem` (skipped, unanswered, logged); broken framing is an `Err`.
//!
//! - [`Gt06Decoder`]: the session state machine ([`StreamDecoder`](crate::StreamDecoder)).
//! - [`encode`]: builds valid frames, for tests, benches and the load simulator.

pub mod encode;
mod packets;
mod stream;

pub use packets::alarm_event;
pub use stream::Gt06Decoder;

use crate::crc::crc16_x25;

/// Start bits of a frame with a one-byte packet length.
pub const START_SHORT: [u8; 2] = [0x78, 0x78];
/// Start bits of a frame with a two-byte packet length (content past 250 bytes, or vendor
/// convention for some packet types).
pub const START_LONG: [u8; 2] = [0x79, 0x79];
/// Stop bits ending every frame.
pub const STOP: [u8; 2] = [0x0D, 0x0A];

/// Login: terminal id (IMEI) in BCD.
pub const LOGIN: u8 = 0x01;
/// Location, GPS block only.
pub const LOCATION_GPS: u8 = 0x10;
/// Location, GPS + LBS.
pub const LOCATION_GPS_LBS: u8 = 0x12;
/// Status information, the heartbeat.
pub const STATUS: u8 = 0x13;
/// Alarm: GPS + LBS + status.
pub const ALARM: u8 = 0x16;
/// GT06N location: GPS + LBS + ACC, upload mode, re-upload flag.
pub const LOCATION_GT06N: u8 = 0x22;

/// Protocol number, serial and CRC: the smallest packet length (no content).
pub const MIN_PACKET_LENGTH: usize = 5;

/// The answer to a packet: a short frame echoing its protocol number and serial, which is
/// what the device waits for after a login, a heartbeat and an alarm.
pub fn reply(protocol: u8, serial: u16) -> Vec<u8> {
    let [hi, lo] = serial.to_be_bytes();
    let body = [0x05, protocol, hi, lo];
    let [crc_hi, crc_lo] = crc16_x25(&body).to_be_bytes();
    vec![
        START_SHORT[0],
        START_SHORT[1],
        0x05,
        protocol,
        hi,
        lo,
        crc_hi,
        crc_lo,
        STOP[0],
        STOP[1],
    ]
}

/// A short name for a protocol number, for error messages.
fn packet_name(protocol: u8) -> &'static str {
    match protocol {
        LOGIN => "login",
        LOCATION_GPS => "GPS location",
        LOCATION_GPS_LBS => "GPS+LBS location",
        STATUS => "status/heartbeat",
        ALARM => "alarm",
        LOCATION_GT06N => "GT06N location",
        _ => "unknown",
    }
}
