//! Queclink @Track ASCII reports over TCP (GL/GV/GMT series). Fact sheet:
//! `shared/protocols/queclink.md`.
//!
//! ```text
//! Session                       device ──▶ gateway                        gateway ──▶ device
//!   live report                 +RESP:GTxxx,<fields>$                     +SACK:<count>$ (ACK mode)
//!   buffered report (offline)   +BUFF:GTxxx,<fields>$                     +SACK:<count>$ (ACK mode)
//!   command acknowledgement     +ACK:GTxxx,<fields>$                      +SACK:<count>$ (ACK mode)
//!     (answers the AT+GTxxx command with its serial: see command.rs)
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
//! The report-specific fields are read by the report type's documented layout (`layout`;
//! masked reports: `mask`), never by searching for something that looks like a fix block.
//! One [`Record`](crate::Record) per fix block, in order, each with the message's other
//! fields: `time_ms` = the block's GNSS UTC time (the send time is local device time and
//! stays in `io` as text); `lat`/`lon`/`altitude_m`/`speed_kmh`/`course_deg` from the block;
//! `valid` = false without coordinates, with accuracy 0 (last known position) or with a
//! value outside its documented range; true with accuracy > 0; unknown when the accuracy
//! field is empty; `hdop` = accuracy when > 0; `satellites` = `None` (not in the block).
//! Records never set `login`: every message carries the device id, and
//! [`QueclinkDecoder`] remembers the last one for `device_id()`.
//!
//! ```text
//! report types by layout (`layout` has the field lists per device family)
//!   Number + blocks   FRI ERI GEO SPD SOS RTL PNL NMR DIS DOG IGL HBM TOW EPS IOB GES GIN
//!                     GOT LSA
//!   one block         IGN IGF STT BPL LBC EPN EPF BTC STC IDN IDF
//!   report mask       CAN (bits 30/31: GNSS and cell parts at the end), OBD (bits 20/21/22)
//!   no block          INF GPS PNA PFA PDP VER BAT IOS CSQ CID TMZ: one record, no position
//!   any other type    one record without a position, io.layout = "unknown"
//!   fields fit no layout of the type (the count, or the count with appended fields and
//!   then a block field of the wrong form; GTCAN/GTOBD: anything in the appended parts):
//!                     one record without a position, io.layout = "mismatch",
//!                     io.layout_error = what did not fit and at which byte
//!   the count fits a layout exactly but a field it names is of the wrong form (`fast`
//!   for a speed): a broken message, skipped as a problem naming the field
//!   +ACK:<type> (not GTHBD)   one record, event "ack", fields by number
//!   +ACK:GTHBD                no record
//! ```
//!
//! `+BUFF:` has the layout of `+RESP:`; its records carry `io.buffered = 1`.
//!
//! Event: `None` for GTFRI and GTERI (periodic); `"ack"` for command acknowledgements; the
//! report type without `GT`, lowercased, for every other report (`"sos"`, `"geo"`, `"spd"`,
//! `"ign"`, `"igf"`, `"inf"` …), buffered or not.
//!
//! Ranges (`fix`): a speed above 999.9 km/h, an azimuth above 360, a latitude beyond ±90 or
//! longitude beyond ±180, or a GNSS time more than a day after the gateway's clock is
//! dropped (the field is null), the record gets `valid: false` and `io.range_error` says
//! which value and why.
//!
//! io, in this order (empty fields are left out; `n` is the field number, version = 1):
//!
//! ```text
//! report            text  GTFRI …                       every record
//! buffered          1     the message came as +BUFF     +BUFF only
//! protocol_version  text  1A0102
//! vin               text  field 3 on GV500 (1F, 36) and in every GTOBD
//! device_name       text
//! <fields before>         named per the layout, else field_<n> as text
//! mcc mnc           u64   decimal fields                per fix block
//! lac cell_id       u64   hex fields, as numbers        per fix block
//! fix_reserved      text  fix block field 12 (00)       per fix block
//! gps_utc_time      text  only when not a real date or out of range
//! range_error       text  values dropped by the range checks
//! <fields after>          named per the layout, else field_<n> as text
//! layout            text  "unknown" / "mismatch"        records without a layout
//! layout_error      text  why the layouts did not fit   "mismatch" only
//! send_time         text  device local time, YYYYMMDDHHMMSS
//! count             u64   the count number (hex) as a number
//!
//! names the layouts give (a value that does not parse as its type stays text)
//!   report_id u64, report_type u64, battery_percent u64 (GL family);
//!   external_power_mv u64, report_id_type text, mileage_km f64, hour_meter text,
//!   analog_in_1/2 u64, backup_battery_percent u64, device_status text (GV family);
//!   eri_mask text; ignition_off_duration_s / ignition_on_duration_s u64; motion_state
//!   text; battery_voltage_v f64; call_number text; can_* and ev_* (GTCAN), obd_* (GTOBD),
//!   mask_fields = "mismatch" when the masked fields are not the count the mask says
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
//! `decode` never returns `Err`: the `+`/`$` framing always allows a resync. A message whose
//! common fields fail their checks (report type, protocol version, unique id, send time,
//! count) or whose layout fits with a field of the wrong form, bytes that are not a message,
//! and a message with no `$` within `max_frame_bytes` are skipped as a `problem` (framing
//! rules in `stream`); each skip consumes at least one byte. Report-specific fields that fit
//! no layout are not a problem: the record is kept without a position (above).
//!
//! # Files
//!
//! - `stream`: [`QueclinkDecoder`] ([`StreamDecoder`](crate::StreamDecoder)): the framer
//!   and the answers.
//! - `message`: one message into its header, report type and common fields.
//! - `layout`: the documented field lists: where each report type's fix blocks are.
//! - `mask`: GTCAN and GTOBD, whose report masks say which fields are present.
//! - `fix`: one fix block's fields, and the range checks.
//! - `report`: messages into records, event names and io names.
//! - [`encode`]: builds reports and heartbeats (the device side), for the load simulator and
//!   tests.

mod command;
pub mod encode;
mod fix;
mod layout;
mod mask;
pub(crate) mod meaning;
mod message;
mod report;
mod stream;

pub(crate) use command::command_text;
pub use stream::QueclinkDecoder;

/// The most fix blocks one message may carry (GTFRI, fact sheet §3).
pub const MAX_FIXES: usize = 15;
