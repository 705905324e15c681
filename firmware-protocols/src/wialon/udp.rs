//! Wialon IPS over UDP: every datagram is one packet with the device's identity in front,
//! since there is no connection (and no login) to remember it.
//!
//! ```text
//! Datagram                                           (fact sheet wialon-ips.md section 6)
//!   1.1   imei#TYPE#body[CR LF]                      e.g. 356307042441013#D#…
//!   2.0   2.0;imei#TYPE#body;crc16[CR LF]            e.g. 2.0;356307042441013#SD#…;1A2B
//!         a ';' between the id and the '#' is accepted too (imei;#D#…, 2.0;imei;#D#…)
//!
//!   imei      1..=64 printable ASCII characters, no ';' or '#' (IMEI, serial number)
//!   version   digits '.' digits with a major of 2 or more: the packet is 2.0, its CRC-16/ARC
//!             covers the body as over TCP (after #TYPE#, up to and including the ';' or,
//!             for #B#, the '|' before the CRC field)
//!   TYPE      SD, D, B, M, P as over TCP; L is accepted and answered like a login
//! ```
//!
//! The packet after the prefix goes through the TCP decoder with the session the prefix
//! names, so every field, error code and record is the same as over TCP; only `protocol` is
//! `wialon-udp`. Answers (`#AD#1`, `#ASD#1`, `#AB#n`, `#AP#`, error codes) go back to the
//! datagram's sender once the records are durable; a device that expects none ignores them.
//!
//! A prefix that names no device, a datagram with more than one packet, and anything the TCP
//! decoder would close the connection for are an `Err`: the datagram is dropped unanswered
//! and the device sends it again.

use super::decoder::{version_major, WialonDecoder};
use super::fields::show;
use super::{ProtocolVersion, MAX_DEVICE_ID_LEN};
use crate::{DatagramDecoder, DecodeError, Decoded, DecoderOptions, Protocol, StreamDecoder};

/// Sans-IO decoder for Wialon IPS datagrams; it keeps no state between them.
#[derive(Debug, Clone)]
pub struct UdpDecoder {
    options: DecoderOptions,
}

impl UdpDecoder {
    /// Datagrams longer than `options.max_frame_bytes` are refused; `options.keep_raw` keeps
    /// each packet's text (without the prefix). `options.device_id` is ignored.
    pub fn new(options: &DecoderOptions) -> Self {
        UdpDecoder {
            options: options.clone(),
        }
    }
}

impl DatagramDecoder for UdpDecoder {
    fn decode(&self, datagram: &[u8], now_ms: i64) -> Result<Decoded, DecodeError> {
        let max = self.options.max_frame_bytes;
        if datagram.len() > max {
            return Err(DecodeError::new(
                0,
                format!(
                    "datagram of {} bytes exceeds the limit of {max} bytes",
                    datagram.len()
                ),
            ));
        }
        let Some(hash) = datagram.iter().position(|&b| b == b'#') else {
            return Err(DecodeError::new(
                0,
                "no '#' in the datagram: expected imei#TYPE#… or 2.0;imei#TYPE#…",
            ));
        };
        let (device_id, version) = prefix(datagram.get(..hash).unwrap_or_default())?;
        let packet = datagram.get(hash..).unwrap_or_default();
        // The TCP decoder frames lines by their LF; a datagram may end without one.
        let mut line = packet.to_vec();
        if line.last() != Some(&b'\n') {
            line.extend_from_slice(b"\r\n");
        }
        let mut decoder = WialonDecoder::logged_in(&self.options, device_id, version);
        let shift = |mut e: DecodeError| {
            e.offset += hash;
            e
        };
        let mut decoded = match decoder.decode(&line, now_ms).map_err(shift)? {
            Some(d) => d,
            None => {
                return Err(DecodeError::new(
                    hash,
                    "the packet is not complete within the datagram",
                ))
            }
        };
        let rest = line.get(decoded.consumed..).unwrap_or_default();
        if rest.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(DecodeError::new(
                hash + decoded.consumed,
                "more than one packet in the datagram",
            ));
        }
        if let Some(p) = &mut decoded.problem {
            p.offset += hash;
        }
        decoded.consumed = datagram.len();
        for record in &mut decoded.records {
            record.protocol = Protocol::WialonUdp;
        }
        Ok(decoded)
    }
}

/// `imei`, `imei;`, `2.0;imei` or `2.0;imei;`: the device id and the version it implies.
fn prefix(text: &[u8]) -> Result<(String, ProtocolVersion), DecodeError> {
    let text = text.strip_suffix(b";").unwrap_or(text);
    let (version, id, id_at) = match text.iter().position(|&b| b == b';') {
        Some(semi) => {
            let declared = text.get(..semi).unwrap_or_default();
            match version_major(declared) {
                Some(major) if major >= 2 => {}
                _ => {
                    return Err(DecodeError::new(
                        0,
                        format!(
                            "\"{}\" before the device id is not a protocol version (2.0)",
                            show(declared)
                        ),
                    ))
                }
            }
            (
                ProtocolVersion::V2,
                text.get(semi + 1..).unwrap_or_default(),
                semi + 1,
            )
        }
        None => (ProtocolVersion::V1_1, text, 0),
    };
    if id.is_empty()
        || id.len() > MAX_DEVICE_ID_LEN
        || !id.iter().all(|&b| b.is_ascii_graphic() && b != b';')
    {
        return Err(DecodeError::new(
            id_at,
            format!(
                "device id \"{}\" before the packet is not 1..={MAX_DEVICE_ID_LEN} printable \
                 ASCII characters",
                show(id)
            ),
        ));
    }
    // Checked to be printable ASCII above.
    Ok((String::from_utf8_lossy(id).into_owned(), version))
}
