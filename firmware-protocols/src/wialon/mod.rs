//! Wialon IPS 1.1 and 2.0 (Gurtam) over TCP (one ASCII packet per line, login first) and UDP
//! (one packet per datagram, the device id in front).
//! Fact sheet: `shared/protocols/wialon-ips.md`.
//!
//! ```text
//! Packet
//!   ┌───┬──────┬───┬──────────────────────────────────────────┬───────┐
//!   │ # │ TYPE │ # │ body: fields separated by ';'            │ CR LF │
//!   └───┴──────┴───┴──────────────────────────────────────────┴───────┘
//!   TYPE: 1–4 uppercase letters. `NA` (or an empty field) = no data.
//!   v2.0: body = fields ';' crc16, where crc16 is CRC-16/ARC as variable-width hex
//!         (`15CD`, `8a7`, `0x9b0`) over every body byte before it, the ';' included.
//!
//! Session                         device ──▶ gateway                          stored / not stored
//!   login 1.1                     #L#imei;password                            #AL#1  │ #AL#0
//!   login 2.0                     #L#2.0;imei;password;crc16                  #AL#1  │ #AL#0
//!   short data                    #SD#date;time;lat;N;lon;E;spd;crs;alt;sats  #ASD#1 │ #ASD#0
//!   extended data                 #D#<SD fields>;hdop;in;out;adc;ibutton;params
//!                                                                             #AD#1  │ #AD#0
//!   black box                     #B#msg|msg|…|msg   (2.0: #B#msg|…|msg|crc16)
//!                                 each msg an SD or D body without CRC        #AB#n  │ #AB#0
//!   message to driver             #M#text            (2.0: #M#text;crc16)     #AM#1  │ #AM#0
//!   ping                          #P#                                         #AP#
//!   command answer                #AM#1 (delivered) │ #AM#0 …                  (nothing; answers the
//!                                 gateway's #M#<text>, see command.rs)        command)
//!   photo                         #I#sz;ind;count;date;time;name[;crc16] CR LF + sz binary bytes
//!                                 (framed and skipped: reported as a problem, no answer)
//!
//! Bad packets (the line is skipped, the answer names the fault):
//!   fault                         L        SD        D        B
//!   structure / field count       #AL#0    #ASD#-1   #AD#-1   #AB#0
//!   date / time                   –        #ASD#0    #AD#0    #AB#0
//!   coordinates                   –        #ASD#10   #AD#10   #AB#0
//!   speed / course / altitude     –        #ASD#11   #AD#11   #AB#0
//!   satellites / hdop             –        #ASD#12   #AD#12   #AB#0
//!   inputs / outputs              –        –         #AD#13   #AB#0
//!   adc                           –        –         #AD#14   #AB#0
//!   params                        –        –         #AD#15   #AB#0
//!   checksum (2.0)                #AL#10   #ASD#13   #AD#16   #AB#      (M: #AM#01)
//!   password (if one is set)      #AL#01
//!
//! Fields (SD = the first ten, D = all sixteen)
//!   date DDMMYY (20YY), time HHMMSS[.fraction] – UTC; both NA = no device time
//!   lat DDMM.MMMM + N/S, lon DDDMM.MMMM + E/W – degrees split off two digits before the
//!     point, so unpadded values work; 0000.0000/00000.0000 is the "no fix" marker
//!   speed km/h, course °, height m (may be negative), sats
//!   hdop, inputs / outputs (decimal bitmasks), adc (comma list), ibutton (text),
//!   params NAME:TYPE:VALUE comma list, TYPE 1 = i64, 2 = f64, 3 = text
//! ```
//!
//! Into a [`Record`](crate::Record): `time_ms` from date + time; `lat`/`lon` in degrees
//! (S/W negative, `None` for the 0/0 marker); `valid` = `false` without a position, else
//! `satellites >= 3` (`None` when sats is NA); `speed_kmh`, `course_deg`, `altitude_m`,
//! `satellites`, `hdop` as sent; `event` is `None` for positions and `driver_message` for `#M#`.
//! `io`, in frame order: `inputs`, `outputs` (U64), `adc1`.. (F64, numbered by position),
//! `ibutton` (Text), then every param under its own name (I64 / F64 / Text), and
//! `message` (Text) for `#M#`. Text that is not UTF-8 is kept as Bytes.
//!
//! - [`WialonDecoder`]: the session state machine ([`StreamDecoder`](crate::StreamDecoder));
//!   [`WialonDecoder::for_capture`] also reads a capture that starts after the login.
//! - [`UdpDecoder`]: the UDP form, `imei#TYPE#…` / `2.0;imei#TYPE#…;crc16` per datagram
//!   ([`DatagramDecoder`](crate::DatagramDecoder)), registry name `wialon-udp`.
//! - [`encode`]: builds valid device packets, for the load simulator, tests and benches.

mod answer;
mod command;
mod decoder;
pub mod encode;
mod fields;
pub(crate) mod meaning;
mod message;
mod udp;

pub(crate) use command::command_packet;
pub use decoder::WialonDecoder;
pub use udp::UdpDecoder;

/// The protocol version a device declared at login; it decides whether packets carry a CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// `#L#imei;password`: no checksums.
    V1_1,
    /// `#L#2.0;imei;password;crc16` (any `2.x`): every L, SD, D, B, M and I packet ends with
    /// a CRC-16/ARC field.
    V2,
}

/// Longest packet type accepted between the two `#` (the longest the documents define is 3,
/// `AIT`); a longer run of letters is not a Wialon stream.
pub const MAX_TYPE_LEN: usize = 4;

/// Longest device id accepted at login (IMEIs are 15 digits; serial numbers vary).
pub const MAX_DEVICE_ID_LEN: usize = 64;
