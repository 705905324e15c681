//! Queclink @Track ASCII reports over TCP (GL/GV/GMT series). Fact sheet:
//! `shared/protocols/queclink.md`.
//!
//! ```text
//! Session                       device ──▶ gateway                        gateway ──▶ device
//!   live report                 +RESP:GTxxx,<fields>$                     +SACK:<count>$ (ACK mode)
//!   buffered report (offline)   +BUFF:GTxxx,<fields>$                     +SACK:<count>$ (ACK mode)
//!   command acknowledgement     +ACK:GTxxx,<fields>$                      +SACK:<count>$ (ACK mode)
//!   heartbeat                   +ACK:GTHBD,ver,id,name,send,count$        +SACK:GTHBD,ver,count$
//!   (no checksum, no length; CR/LF or spaces between messages are tolerated)
//!
//! Message: comma-separated fields after the header, '$' ends it, fields may be empty
//!   ┌─────────┬──────┬─────────┬───────────┬──────┬─── … ───┬───────────┬───────┐
//!   │ +RESP:  │ type │ version │ unique id │ name │ middle  │ send time │ count │
//!   └─────────┴──────┴─────────┴───────────┴──────┴─── … ───┴───────────┴───────┘
//!   field no.   (0)      1          2          3     4 …        n-1        n
//!   type = GT + 3 letters; version = TTVVvv hex (TT = device type); unique id = IMEI or a
//!   14-char hex id; send time = YYYYMMDDHHMMSS in the device's own time zone; count = 4 hex.
//!
//! Middle of a position report, e.g. GTFRI on a GL300 (field lists differ per model):
//!   report id, report type, Number, Number × fix block, battery %
//!   └── prefix ──────────┘                              └ suffix ┘
//! Event reports such as GTIGN/GTIGF have no Number: one fix block follows event fields.
//!
//! Fix block (12 fields)
//!   ┌─────┬───────┬─────────┬──────────┬─────┬─────┬──────────┬─────┬─────┬─────┬──────┬──────┐
//!   │ acc │ speed │ azimuth │ altitude │ lon │ lat │ UTC time │ MCC │ MNC │ LAC │ cell │ res. │
//!   └─────┴───────┴─────────┴──────────┴─────┴─────┴──────────┴─────┴─────┴─────┴──────┴──────┘
//!   acc 0 = no current fix (last known position, invalid), 1–50 = HDOP; speed km/h; lon and
//!   lat signed decimal degrees, longitude first; MCC/MNC decimal, LAC/cell hex.
//! ```
//!
//! # Records
//!
//! One [`Record`](crate::Record) per fix block, in order, each with the message's other
//! fields: `time_ms` = the block's GPS UTC time (the send time is local device time and
//! stays in `io` as text); `lat`/`lon`/`altitude_m`/`speed_kmh`/`course_deg` from the block;
//! `valid` = false without coordinates or with accuracy 0 (last known position), true with
//! accuracy > 0, unknown when the accuracy field is empty; `hdop` = accuracy when > 0;
//! `satellites` = `None` (not in the block). Records never set `login`: every message
//! carries the device id, and [`QueclinkDecoder`] remembers the last one for `device_id()`.
//!
//! ```text
//! report type                          blocks                       no block found
//! GTFRI GTERI GTGEO GTSPD GTSOS GTRTL  Number + Number × fix block  problem (names the field)
//! GTPNL GTNMR GTDOG GTIGL GTDIS
//! GTIGN GTIGF                          one fix block                problem
//! any other (GTINF, GTPNA, GTSTT …)    Number + blocks, else one    one record without a
//!                                      block, else none             position (fields kept)
//! +ACK:<type> (not GTHBD)              none                         one record, event "ack"
//! +ACK:GTHBD                           none                         no record
//! ```
//!
//! Event: `None` for GTFRI and GTERI (periodic); `"ack"` for command acknowledgements; the
//! report type without `GT`, lowercased, for every other report (`"sos"`, `"geo"`, `"spd"`,
//! `"ign"`, `"igf"`, `"inf"` …), buffered or not.
//!
//! io, in this order (empty fields are left out; `n` is the field number, version = 1):
//!
//! ```text
//! report            text  GTFRI …                       every record
//! buffered          1     the message came as +BUFF     +BUFF only
//! protocol_version  text  1A0102
//! device_name       text
//! <prefix fields>         named per the table below, else field_<n> as text
//! mcc mnc           u64   decimal fields                per fix block
//! lac cell_id       u64   hex fields, as numbers        per fix block
//! fix_reserved      text  fix block field 12 (00)       per fix block
//! gps_utc_time      text  only when not a real date     per fix block
//! <suffix fields>         named per the table below, else field_<n> as text
//! send_time         text  device local time, YYYYMMDDHHMMSS
//! count             u64   the count number (hex) as a number
//!
//! named fields (fact sheet §3); a value that does not parse as its type stays text
//!   GL200 (02), GL300 (1A), GL300W (2C), reports with a Number after 2 fields:
//!     prefix report_id u64, report_type u64; suffix battery_percent u64
//!   GV200 (04) GTFRI with a Number after 2 fields:
//!     prefix external_power_mv u64, report_id_type text
//!     suffix mileage_km f64, hour_meter text, analog_in_1 u64, analog_in_2 u64,
//!            backup_battery_percent u64, device_status text (then field_<n>)
//!   GTERI, any model: prefix field 1 eri_mask text (GV200: then as GTFRI)
//! ```
//!
//! The Number field itself is not kept: it is the number of records the message gave.
//!
//! # Answers
//!
//! `+ACK:GTHBD` is always answered `+SACK:GTHBD,<protocol version>,<count>$`. With
//! `DecoderOptions::ack_reports` (the device's server-ACK mode, AT+GTQSS / AT+GTSRI) every
//! other message, `+ACK` command acknowledgements included ("reply to every device
//! message", fact sheet §4), gets `+SACK:<count>$` once its records are stored; without it,
//! nothing. There is no negative answer (`refused` is always `None`): an unacknowledged
//! report is kept by the device and resent as `+BUFF`.
//!
//! # Errors
//!
//! `decode` never returns `Err`: the `+`/`$` framing always allows a resync. A bad message
//! (failed checks, non-numeric coordinates, a wrong field count), bytes that are not a
//! message, and a message with no `$` within `max_frame_bytes` are skipped as a `problem`
//! (framing rules in `stream`); each skip consumes at least one byte.
//!
//! # Files
//!
//! - `stream`: [`QueclinkDecoder`] ([`StreamDecoder`](crate::StreamDecoder)): the framer
//!   and the answers.
//! - `message`: one message into its header, report type and common fields.
//! - `fix`: fix blocks: validating, parsing and locating them among the middle fields.
//! - `report`: messages into records, event names and io names.
//! - [`encode`]: builds reports and heartbeats (the device side), for the load simulator and
//!   tests.

pub mod encode;
mod fix;
mod message;
mod report;
mod stream;

pub use stream::QueclinkDecoder;

/// The most fix blocks one message may carry (GTFRI, fact sheet §3).
pub const MAX_FIXES: usize = 15;
/// Fields in one fix block.
pub const FIX_BLOCK_FIELDS: usize = 12;
