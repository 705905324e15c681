//! Teltonika over TCP: IMEI handshake, AVL data packets (Codec 8, 8 Extended, 16), Codec 12
//! command responses and `ff` keep-alives. Fact sheet: `shared/protocols/teltonika.md`.
//!
//! ```text
//! Session                     device ──▶ gateway                    gateway ──▶ device
//!   IMEI packet               00 0f "356307042441013"               01 accept │ 00 refuse
//!   AVL data packet           00000000 L codec N1 … N2 CRC          N as u32 BE │ 00000000
//!   Codec 12 response (0x06)  00000000 L 0c 01 06 size text 01 CRC  (nothing; a command answer)
//!   keep-alive                ff                                    (nothing)
//!
//! AVL data packet (every integer big-endian)
//!   0          4          8       9      10                   8+L-1   8+L           8+L+4
//!   ┌──────────┬──────────┬───────┬──────┬────────────────────┬───────┬─────────────┐
//!   │ 00000000 │ L  (u32) │ codec │  N1  │ N1 AVL records     │  N2   │ 0000 CRC16  │
//!   └──────────┴──────────┼───────┴──────┴────────────────────┴───────┼─────────────┘
//!                         └──── L bytes, CRC-16/ARC covers them ──────┘
//!   frame = L + 12 bytes; N1 == N2; the records fill the field exactly.
//!
//! AVL record
//!   0            8      9       13      17      19      21     22      24
//!   ┌────────────┬──────┬───────┬───────┬───────┬───────┬──────┬───────┬────────────┐
//!   │ time ms u64│ prio │lon i32│lat i32│alt i16│ angle │ sats │ speed │ IO element │
//!   └────────────┴──────┴───────┴───────┴───────┴───────┴──────┴───────┴────────────┘
//!   lon/lat: degrees × 10^7, two's complement; sats 0 = no fix (position is the last fix).
//!
//! IO element                       Codec 8 (08)   Codec 16 (10)   Codec 8 Extended (8E)
//!   event IO id                    1              2               2
//!   generation type                –              1               –
//!   N total                        1              1               2
//!   N1 count, N1 × (id, u8)        count 1, id 1  count 1, id 2   count 2, id 2
//!   N2 count, N2 × (id, u16)       "              "               "
//!   N4 count, N4 × (id, u32)       "              "               "
//!   N8 count, N8 × (id, u64)       "              "               "
//!   NX count, NX × (id, len, data) –              –               count 2, id 2, len u16
//!   N total == N1 + N2 + N4 + N8 (+ NX)
//! ```
//!
//! Into a [`Record`](crate::Record): `time_ms` = timestamp, `valid` = satellites > 0, `lat`/`lon`
//! = int / 10^7, `hdop` = IO 182 / 10 when present, `event` = `io:<event id>` (none when the
//! event id is 0, a periodic record). `io` holds `priority` (and `generation_type` for Codec
//! 16) by name, then every IO element by id, raw and unscaled, in frame order; NX values as
//! bytes.
//!
//! - [`TcpDecoder`]: the session state machine ([`StreamDecoder`](crate::StreamDecoder)).
//! - [`encode`]: builds valid packets, for the load simulator and tests.

pub(crate) mod avl;
mod codec12;
pub mod encode;
pub(crate) mod meaning;
mod tcp;

pub(crate) use codec12::{command_packet, response as codec12_response, response_packet};
pub use tcp::TcpDecoder;

/// Codec 8 AVL data.
pub const CODEC_8: u8 = 0x08;
/// Codec 8 Extended AVL data: 2-byte ids and counts, variable-length IO group.
pub const CODEC_8_EXTENDED: u8 = 0x8E;
/// Codec 16 AVL data: 2-byte ids, 1-byte counts, generation type.
pub const CODEC_16: u8 = 0x10;
/// Codec 12 GPRS commands and responses.
pub const CODEC_12: u8 = 0x0C;
/// The lone byte some firmware sends as a keep-alive.
pub const KEEP_ALIVE: u8 = 0xFF;
/// Longest IMEI packet payload accepted (IMEIs are 15 digits; some devices pad or use
/// longer ids).
pub const MAX_IMEI_DIGITS: usize = 20;

/// Offset of the codec id: the data field starts after the preamble and the data length.
pub(crate) const DATA_OFFSET: usize = 8;
