//! Concox GT06 / GT06N / Jimi (JM-VL01, JM-VL03, GK310, …) and the many clones of its
//! framing, over TCP. Fact sheet: `shared/protocols/gt06.md`; the later packet types follow
//! the Concox JM-VL03 / GT06N documents (layouts in each module's header).
//!
//! ```text
//! Session                          device ──▶ gateway               gateway ──▶ device
//!   login 0x01                     IMEI in BCD                      78 78 05 01 serial CRC
//!   location 0x10 0x12 0x1E        GPS (+ LBS)                      (nothing)
//!     0x22 0x2D 0x31 0x37 0xA0(4G) GPS + LBS + ACC, mode, re-upload (nothing)
//!     0x70 (79 79)                 modules, one a position          78 78 05 70 serial CRC
//!   status / heartbeat 0x13 0x23   terminal info, voltage, GSM …    78 78 05 13|23 serial CRC
//!   alarm 0x16 0x26 0x32 (78 78)   GPS + LBS + status               78 78 05 <same> serial CRC
//!     0x27, 4G 0xA3 0xA4           … + fence number
//!   LBS + status 0x19              LBS + status (no GPS)            78 78 05 19 serial CRC
//!   LBS multi-cell 0x18 0x24 0x28  time + 7 cells (no GPS)          (nothing)
//!     0x2E, 4G 0xA1; + Wi-Fi 0x2C, 4G 0xA2
//!   command answer 0x15, 0x21      server flag + text               (nothing; a command answer)
//!   (online command 0x80)          (gateway ──▶ device: see command.rs)
//!   information 0x94 (79 79)       sub-type + data                  (nothing)
//!   time request 0x8A              (nothing)                        78 78 0B 8A UTC time serial
//!   address request 0x2A 0x1A      GPS + phone + language           79 79 … 97 address (English)
//!                                                                   78 78 … 17 (Chinese)
//!   anything else                  (logged as a problem, skipped)   (nothing)
//!
//! Frame (every integer big-endian; offsets for 79 79 in parentheses)
//!   0       2         3 (4)      4 (5)                L−1 (L)     L+1 (L+2)  L+3 (L+4)
//!   ┌───────┬─────────┬──────────┬────────────────────┬───────────┬──────────┬───────┐
//!   │ 78 78 │ L (u8)  │ protocol │ information content│ serial u16│ CRC u16  │ 0d 0a │
//!   │ 79 79 │ L (u16) │          │ N = L − 5 bytes    │           │ X-25     │       │
//!   └───────┼─────────┴──────────┴────────────────────┴───────────┼──────────┴───────┘
//!           └──────── CRC-16/X-25 covers L through serial ────────┘
//!   L = protocol + content + serial + CRC = N + 5;  frame = L + 5 (78 78) or L + 6 (79 79).
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
//!   4G form (0xA0, 0xA3, 0xA4): LAC u32, cell id u64.
//!   0x12 / 0x22: LBS right after the GPS block; 0x22 adds ACC, upload mode, re-upload
//!   (and on some firmware a u32 mileage). Alarms: an LBS length byte (counting itself)
//!   first.
//! Status block (0x13, and the alarms after their LBS): terminal info, voltage level, GSM
//!   signal, alarm, language; 0x27 / 0xA4 add the fence number, 0x26 may add a u32 mileage.
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
//! - `satellites` = low nibble; `speed_kmh` as sent; `course_deg` the word's 10 course bits
//!   when at most 360 (else `None`); no altitude (but in 0x70) or HDOP.
//! - Range checks: a date after the end of the day after the receive time leaves `time_ms`
//!   `None` (bytes in `time_raw`); every value dropped for its range says why in io
//!   `range_error`.
//! - LBS / Wi-Fi only packets (0x19, multi-cell, Wi-Fi), command answers and information
//!   are records without a GNSS position: `valid`, `lat`, `lon` stay `None`.
//! - `event`: `None` for locations, `"heartbeat"` for 0x13 / 0x23, `"command_answer"`,
//!   `"address_request"`, and for alarms the alarm byte: see [`alarm_event`].
//! - `io` (names, frame order): `time_raw`?, `gps_info_length`, `latitude_raw`?,
//!   `longitude_raw`?, `course_status`, `range_error`?; `lbs_length` (alarms), `mcc`, `mnc`,
//!   `lac`, `cell_id` (or `lbs` bytes when an alarm's LBS block is too short for them,
//!   `lbs_extra` for its surplus); GT06N tail `acc`, `upload_mode`, `reupload`, `mileage`;
//!   status `terminal_info` with its bits `armed`, `acc`, `charging`, `terminal_alarm` (bits
//!   5..3), `gps_tracking`, `oil_cut`, then `voltage_level`, `gsm_signal`, `alarm`,
//!   `language`, `fence`, `mileage`; the other packets' names are listed in `cells`, `info`,
//!   `requests` and `modular`; `extra` (bytes the documents do not describe, kept rather
//!   than dropped); `serial` last.
//!
//! Answers and failures (where the sheet leaves a choice):
//!
//! - A heartbeat is a record (no position, event `heartbeat`, its status in io), so device
//!   health reaches the cloud; like every answer, its reply is sent once the record is stored.
//! - The time request is no record: its answer (the receive time `now_ms` in UTC, the
//!   request's serial) goes out at once. An address request is a record (its position) and
//!   is answered with the position itself as the address text: the gateway has no geocoder.
//! - An answer echoes the packet's serial and is a 78 78 frame, whatever the packet's
//!   start bits, except the English address (0x97), which the documents send as 79 79.
//! - GT06 has no negative answer: `reply.refused` is always `None`. An unanswered alarm is
//!   resent; unanswered heartbeats make the device treat the link as down and keep positions
//!   in its own memory; an unanswered login makes it reconnect.
//! - Before the login, anything but a login is an `Err` (the records would have no device
//!   id); a sound frame with a bad CRC, an unknown protocol number, or content too short for
//!   its packet type is a `problem` (skipped, unanswered, logged); broken framing is an `Err`.
//!
//! - [`Gt06Decoder`]: the session state machine ([`StreamDecoder`](crate::StreamDecoder)).
//! - [`encode`]: builds valid frames, for tests, benches and the load simulator.

mod cells;
mod command;
pub mod encode;
mod info;
pub(crate) mod meaning;
mod modular;
mod packets;
mod requests;
mod stream;

pub(crate) use command::command_frame;
pub use command::{MAX_COMMAND_TEXT, ONLINE_COMMAND};
pub use packets::alarm_event;
pub use requests::{address_answer, time_answer};
pub use stream::Gt06Decoder;

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
/// Answer to an online command, old form: length, server flag, ASCII text, language.
pub const COMMAND_ANSWER: u8 = 0x15;
/// Alarm: GPS + LBS + status.
pub const ALARM: u8 = 0x16;
/// LBS extension: the multi-cell layout of 0x28 (GT03 family).
pub const LBS_EXTEND: u8 = 0x18;
/// LBS + status, no GPS.
pub const LBS_STATUS: u8 = 0x19;
/// GPS + the phone number asking for an address (GT06N): answered with an address.
pub const ADDRESS_REQUEST_PHONE: u8 = 0x1A;
/// GPS block with a firmware extension after it (JI09).
pub const LOCATION_GPS_EXTEND: u8 = 0x1E;
/// Answer to an online command, universal form (79 79): server flag, encoding, text.
pub const COMMAND_ANSWER_LONG: u8 = 0x21;
/// GT06N location: GPS + LBS + ACC, upload mode, re-upload flag.
pub const LOCATION_GT06N: u8 = 0x22;
/// Heartbeat of the GK310 family: terminal info, then firmware-specific bytes.
pub const HEARTBEAT_GK310: u8 = 0x23;
/// LBS multi-cell (a third numbering of the 0x28 layout).
pub const LBS_MULTI_3: u8 = 0x24;
/// Alarm, JM-VL03 numbering: the 0x16 layout (UTC), optionally with a mileage.
pub const ALARM_VL03: u8 = 0x26;
/// Alarm with the fence number after the language byte (multiple geofences).
pub const ALARM_FENCE: u8 = 0x27;
/// LBS multi-cell: time, MCC, MNC, serving cell + 6 neighbours, timing advance, language.
pub const LBS_MULTI: u8 = 0x28;
/// GPS + the phone number asking for an address (JM-VL03 / GK310): answered with 0x97.
pub const ADDRESS_REQUEST: u8 = 0x2A;
/// LBS multi-cell + Wi-Fi access points.
pub const LBS_WIFI: u8 = 0x2C;
/// GT06N location layout under another number (clones).
pub const LOCATION_GT06N_2D: u8 = 0x2D;
/// LBS multi-cell (another numbering of the 0x28 layout).
pub const LBS_MULTI_2: u8 = 0x2E;
/// GT06N location layout (AZ735 family).
pub const LOCATION_GT06N_31: u8 = 0x31;
/// Alarm layout of 0x16 (AZ735 family, 78 78 form).
pub const ALARM_32: u8 = 0x32;
/// GT06N location layout followed by a module extension.
pub const LOCATION_GT06N_37: u8 = 0x37;
/// Modular location (79 79): a list of type-length-value modules.
pub const LOCATION_MODULAR: u8 = 0x70;
/// Time calibration request: answered with the gateway's UTC time.
pub const TIME_REQUEST: u8 = 0x8A;
/// Information transmission (79 79): a sub-type byte, then its data.
pub const INFORMATION: u8 = 0x94;
/// Chinese address, server to device (78 78, address in UTF-16BE): the answer to an
/// address request from a device set to Chinese. (Some clones send Wi-Fi under this number;
/// from a device it is not decoded.)
pub const ADDRESS_ANSWER_CHINESE: u8 = 0x17;
/// English address, server to device (79 79): the answer to an address request.
pub const ADDRESS_ANSWER: u8 = 0x97;
/// Information transmission, module list form (79 79).
pub const INFORMATION_MODULES: u8 = 0x98;
/// 4G location: 0x22 with MNC 1 or 2 bytes, LAC 4, cell id 8.
pub const LOCATION_4G: u8 = 0xA0;
/// 4G LBS multi-cell: 0x28 with 4-byte LACs and 8-byte cell ids.
pub const LBS_MULTI_4G: u8 = 0xA1;
/// 4G LBS multi-cell + Wi-Fi.
pub const LBS_WIFI_4G: u8 = 0xA2;
/// 4G single-fence alarm: GPS + 4G LBS (with length) + status.
pub const ALARM_4G: u8 = 0xA3;
/// 4G multi-fence alarm: the 0x27 layout with a 4G LBS block.
pub const ALARM_FENCE_4G: u8 = 0xA4;

/// Protocol number, serial and CRC: the smallest packet length (no content).
pub const MIN_PACKET_LENGTH: usize = 5;

/// The answer to a packet: a short frame echoing its protocol number and serial, which is
/// what the device waits for after a login, a heartbeat and an alarm.
pub fn reply(protocol: u8, serial: u16) -> Vec<u8> {
    // Empty content always fits, so the encoder cannot refuse it.
    encode::frame(protocol, &[], serial).unwrap_or_default()
}

/// A short name for a protocol number, for error messages.
fn packet_name(protocol: u8) -> &'static str {
    match protocol {
        LOGIN => "login",
        LOCATION_GPS | LOCATION_GPS_EXTEND => "GPS location",
        LOCATION_GPS_LBS => "GPS+LBS location",
        STATUS | HEARTBEAT_GK310 => "status/heartbeat",
        COMMAND_ANSWER | COMMAND_ANSWER_LONG => "command answer",
        ALARM | ALARM_VL03 | ALARM_FENCE | ALARM_32 => "alarm",
        ALARM_4G | ALARM_FENCE_4G => "4G alarm",
        LBS_STATUS => "LBS+status",
        LBS_EXTEND | LBS_MULTI | LBS_MULTI_2 | LBS_MULTI_3 => "LBS multi-cell",
        LBS_MULTI_4G => "4G LBS multi-cell",
        LBS_WIFI => "LBS+Wi-Fi",
        LBS_WIFI_4G => "4G LBS+Wi-Fi",
        ADDRESS_REQUEST | ADDRESS_REQUEST_PHONE => "address request",
        LOCATION_GT06N | LOCATION_GT06N_2D | LOCATION_GT06N_31 | LOCATION_GT06N_37 => {
            "GT06N location"
        }
        LOCATION_4G => "4G location",
        LOCATION_MODULAR => "modular location",
        TIME_REQUEST => "time request",
        INFORMATION | INFORMATION_MODULES => "information",
        _ => "unknown",
    }
}
