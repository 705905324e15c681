//! The TCP session state machine: framing, CRC, login state, and what each packet gets back.
//!
//! Framing rules, in the order they are applied so that garbage is rejected as early as
//! possible and the caller never buffers more than `max_frame_bytes`:
//!
//! 1. the start bits are checked byte by byte as they arrive (anything but `78 78` / `79 79`
//!    is an `Err`: there is no way to tell where the next frame starts);
//! 2. the packet length is checked as soon as it is complete: below 5 (protocol, serial and
//!    CRC) or a frame past the limit is an `Err`;
//! 3. a complete frame must end in `0d 0a`, else the length did not describe the frame and
//!    the stream is out of sync: `Err`;
//! 4. with the framing sound, a CRC mismatch is a `problem`: the frame is skipped unanswered
//!    (a device resends what it does not get an answer for) and the next one is read;
//! 5. only then does the protocol number matter: anything but a login before the login is
//!    an `Err` (the records would have no device id), an unknown number is a `problem`, and
//!    content too short for its fields is a `problem` too (framing and CRC were sound).

use super::packets::{self, Cells, Context, Frame, Tail};
use super::{cells, info, modular, packet_name, reply, requests, MIN_PACKET_LENGTH};
use super::{
    ADDRESS_REQUEST, ADDRESS_REQUEST_PHONE, ALARM, ALARM_32, ALARM_4G, ALARM_FENCE, ALARM_FENCE_4G,
    ALARM_VL03, COMMAND_ANSWER, COMMAND_ANSWER_LONG, HEARTBEAT_GK310, INFORMATION, LBS_EXTEND,
    LBS_MULTI, LBS_MULTI_2, LBS_MULTI_3, LBS_MULTI_4G, LBS_STATUS, LBS_WIFI, LBS_WIFI_4G,
    LOCATION_4G, LOCATION_GPS, LOCATION_GPS_EXTEND, LOCATION_GPS_LBS, LOCATION_GT06N,
    LOCATION_GT06N_2D, LOCATION_GT06N_31, LOCATION_GT06N_37, LOCATION_MODULAR, LOGIN, STATUS,
    TIME_REQUEST,
};
use super::{START_LONG, START_SHORT, STOP};
use crate::crc::crc16_x25;
use crate::{DecodeError, Decoded, DecoderOptions, Record, Reply, StreamDecoder};

/// Sans-IO decoder for one GT06 TCP connection (or one capture of such a stream).
#[derive(Debug, Clone)]
pub struct Gt06Decoder {
    max_frame_bytes: usize,
    keep_raw: bool,
    /// Capture mode: data packets are decoded before any login (records get an empty
    /// `device_id` until one is seen).
    capture: bool,
    imei: Option<String>,
    device_type: Option<u16>,
    time_zone_minutes: Option<i32>,
}

impl Gt06Decoder {
    /// A decoder for a live connection: the device must log in before anything else.
    pub fn new(options: &DecoderOptions) -> Self {
        Gt06Decoder {
            max_frame_bytes: options.max_frame_bytes,
            keep_raw: options.keep_raw,
            capture: false,
            imei: None,
            device_type: None,
            time_zone_minutes: None,
        }
    }

    /// A decoder for a recorded stream (`fleetedge decode`), which may start mid-session:
    /// packets before a login are decoded with an empty `device_id`.
    pub fn for_capture(options: &DecoderOptions) -> Self {
        Gt06Decoder {
            capture: true,
            ..Gt06Decoder::new(options)
        }
    }

    /// The type identifier newer firmware sends in its login (0x11-length login), if any.
    pub fn device_type(&self) -> Option<u16> {
        self.device_type
    }

    /// The time zone newer firmware declares in its login, in minutes east of UTC. The
    /// decoder does not apply it: Concox devices send UTC by default and the sheet says to
    /// use it only once a device is known to send local time. It is here for that diagnosis.
    pub fn time_zone_minutes(&self) -> Option<i32> {
        self.time_zone_minutes
    }

    fn decode_frame(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let Some(&first) = input.first() else {
            return Ok(None);
        };
        let long = match first {
            0x78 => false,
            0x79 => true,
            other => {
                return Err(DecodeError::new(
                    0,
                    format!("byte 0x{other:02x} where start bits 78 78 or 79 79 should be"),
                ))
            }
        };
        let Some(&second) = input.get(1) else {
            return Ok(None);
        };
        if second != first {
            return Err(DecodeError::new(
                1,
                format!("start bits {first:02x} {second:02x}: expected {first:02x} {first:02x}"),
            ));
        }
        let header = if long {
            START_LONG.len() + 2
        } else {
            START_SHORT.len() + 1
        };
        let Some(length_field) = input.get(2..header) else {
            return Ok(None);
        };
        let length = length_field
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if length < MIN_PACKET_LENGTH {
            return Err(DecodeError::new(
                2,
                format!(
                    "packet length {length} is below the minimum of {MIN_PACKET_LENGTH} \
                     (protocol number, serial, CRC)"
                ),
            ));
        }
        // At most 4 + 65535 + 2: no overflow on any target with a 32-bit usize.
        let total = header + length + STOP.len();
        if total > self.max_frame_bytes {
            return Err(DecodeError::new(
                2,
                format!(
                    "frame of {total} bytes exceeds the limit of {} bytes",
                    self.max_frame_bytes
                ),
            ));
        }
        let Some(frame) = input.get(..total) else {
            return Ok(None);
        };
        let stop_at = total - STOP.len();
        let stop = frame.get(stop_at..).unwrap_or_default();
        if stop != STOP {
            return Err(DecodeError::new(
                stop_at,
                format!(
                    "{} where stop bits 0d 0a should be: packet length {length} does not \
                     match the frame",
                    crate::record::to_hex(stop)
                ),
            ));
        }
        let crc_at = stop_at - 2;
        let sent = be16(frame, crc_at);
        let computed = crc16_x25(frame.get(2..crc_at).unwrap_or_default());
        if sent != computed {
            return Ok(Some(Decoded::problem(
                total,
                DecodeError::new(
                    crc_at,
                    format!(
                        "CRC field {sent:04x} does not match CRC-16/X-25 {computed:04x} of \
                         the length, protocol number, content and serial"
                    ),
                ),
            )));
        }

        // length >= 5 and the stop bits are in place, so these ranges are inside the frame.
        let protocol = frame.get(header).copied().unwrap_or_default();
        let serial_at = crc_at - 2;
        let frame = Frame {
            bytes: frame,
            protocol,
            content: frame.get(header + 1..serial_at).unwrap_or_default(),
            content_at: header + 1,
            serial: be16(frame, serial_at),
        };

        if protocol == LOGIN {
            return Ok(Some(self.login(&frame)));
        }
        if self.imei.is_none() && !self.capture {
            return Err(DecodeError::new(
                header,
                format!(
                    "{} packet (protocol 0x{protocol:02x}) before the login: the device id is \
                     unknown",
                    packet_name(protocol)
                ),
            ));
        }
        let ctx = Context {
            device_id: self.imei.as_deref().unwrap_or_default(),
            now_ms,
            keep_raw: self.keep_raw,
        };
        if protocol == TIME_REQUEST {
            // No record: the answer is the gateway's clock, sent at once.
            return Ok(Some(Decoded {
                reply: Reply {
                    accepted: requests::time_answer(now_ms, frame.serial),
                    refused: None,
                },
                ..Decoded::control(total)
            }));
        }
        if matches!(protocol, COMMAND_ANSWER | COMMAND_ANSWER_LONG) {
            let parsed = if protocol == COMMAND_ANSWER {
                info::command_answer(&frame, &ctx)
            } else {
                info::command_answer_long(&frame, &ctx)
            };
            // The answer is stored as a record too, as it was before commands existed.
            return Ok(Some(match parsed {
                Ok((record, answer)) => Decoded {
                    command_answer: answer,
                    ..data(total, record, None)
                },
                Err(e) => Decoded::problem(total, in_packet(e, protocol)),
            }));
        }
        let echo = || Some(reply(protocol, frame.serial));
        let (record, answer) = match protocol {
            LOCATION_GPS | LOCATION_GPS_EXTEND => (
                packets::location(&frame, &ctx, Cells::None, Tail::None),
                None,
            ),
            LOCATION_GPS_LBS => (
                packets::location(&frame, &ctx, Cells::Gsm, Tail::None),
                None,
            ),
            LOCATION_GT06N | LOCATION_GT06N_2D | LOCATION_GT06N_31 | LOCATION_GT06N_37 => (
                packets::location(&frame, &ctx, Cells::Gsm, Tail::Gt06n),
                None,
            ),
            LOCATION_4G => (
                packets::location(&frame, &ctx, Cells::Lte, Tail::Gt06n),
                None,
            ),
            STATUS | HEARTBEAT_GK310 => (Ok(packets::heartbeat(&frame, &ctx)), echo()),
            // The AZ735's 79 79 form of 0x32 has another, undocumented layout.
            ALARM_32 if long => return Ok(Some(not_decoded(protocol, total, header))),
            ALARM | ALARM_VL03 | ALARM_32 => {
                (packets::alarm(&frame, &ctx, Cells::Gsm, false), echo())
            }
            ALARM_FENCE => (packets::alarm(&frame, &ctx, Cells::Gsm, true), echo()),
            ALARM_4G => (packets::alarm(&frame, &ctx, Cells::Lte, false), echo()),
            ALARM_FENCE_4G => (packets::alarm(&frame, &ctx, Cells::Lte, true), echo()),
            LBS_STATUS => (packets::lbs_status(&frame, &ctx), echo()),
            LBS_EXTEND | LBS_MULTI | LBS_MULTI_2 | LBS_MULTI_3 => {
                (cells::multi_cell(&frame, &ctx, Cells::Gsm, false), None)
            }
            LBS_MULTI_4G => (cells::multi_cell(&frame, &ctx, Cells::Lte, false), None),
            LBS_WIFI => (cells::multi_cell(&frame, &ctx, Cells::Gsm, true), None),
            LBS_WIFI_4G => (cells::multi_cell(&frame, &ctx, Cells::Lte, true), None),
            INFORMATION => (info::information(&frame, &ctx, long), None),
            LOCATION_MODULAR => (modular::modular(&frame, &ctx), echo()),
            ADDRESS_REQUEST | ADDRESS_REQUEST_PHONE => {
                match requests::address_request(&frame, &ctx) {
                    Ok((record, answer)) => (Ok(record), answer),
                    Err(e) => (Err(e), None),
                }
            }
            other => return Ok(Some(not_decoded(other, total, header))),
        };
        Ok(Some(match record {
            Ok(record) => data(total, record, answer),
            Err(e) => Decoded::problem(total, in_packet(e, protocol)),
        }))
    }

    fn login(&mut self, frame: &Frame<'_>) -> Decoded {
        let total = frame.bytes.len();
        match packets::login(frame) {
            Ok(login) => {
                self.imei = Some(login.imei.clone());
                self.device_type = login.device_type;
                self.time_zone_minutes = login.time_zone_minutes;
                Decoded {
                    login: Some(login.imei),
                    // No negative answer exists: a refused device gets silence and the
                    // gateway closes the connection.
                    reply: Reply {
                        accepted: Some(reply(LOGIN, frame.serial)),
                        refused: None,
                    },
                    ..Decoded::control(total)
                }
            }
            // Unanswered, the device logs in again (or reconnects) after its 5 s timeout.
            Err(e) => Decoded::problem(total, in_packet(e, LOGIN)),
        }
    }
}

impl StreamDecoder for Gt06Decoder {
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let decoded = self.decode_frame(input, now_ms)?;
        crate::within_frame_limit(decoded, input, self.max_frame_bytes)
    }

    fn device_id(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

fn be16(frame: &[u8], at: usize) -> u16 {
    match frame.get(at..at.saturating_add(2)) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// A frame with one record. `answer` is sent once it is stored; GT06 has no negative answer,
/// so a record the buffer refuses gets silence: the device resends an unanswered alarm, and
/// a device whose heartbeats go unanswered treats the link as down and keeps its positions
/// in its own memory (GT06N marks them "re-upload" later).
fn data(consumed: usize, record: Record, answer: Option<Vec<u8>>) -> Decoded {
    Decoded {
        records: vec![record],
        reply: Reply {
            accepted: answer,
            refused: None,
        },
        ..Decoded::control(consumed)
    }
}

/// A sound frame of a type the decoder does not read: skipped, unanswered, logged.
fn not_decoded(protocol: u8, total: usize, header: usize) -> Decoded {
    // Counted per type (`fleetedge_frames_skipped_total{type="0x98"}`), so a site sees which
    // of its devices' messages are not decoded.
    Decoded::skipped(
        total,
        header,
        &format!("0x{protocol:02x}"),
        format!("protocol number 0x{protocol:02x} is not decoded; frame of {total} bytes skipped"),
    )
}

#[cold]
#[inline(never)]
fn in_packet(mut err: DecodeError, protocol: u8) -> DecodeError {
    err.reason = format!(
        "{} packet (protocol 0x{protocol:02x}): {}",
        packet_name(protocol),
        err.reason
    );
    err
}
