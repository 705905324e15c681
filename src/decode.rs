//! `fleetedge decode`: runs a capture through the same decoder a live session uses and prints
//! one JSON object per frame:
//!
//! ```text
//! {"frame":N,"device_id":…|null,"records":[record JSON…],"reply_hex":"…"|null,"error":null|"…"}
//! ```
//!
//! Binary stream protocols read hex (whitespace ignored, so a hexdump-style paste of a whole
//! device→server session works); datagram protocols read one datagram per line (hex, or the
//! text itself for a text protocol such as `wialon-udp`); text protocols read the capture as
//! it is. `reply_hex` is what the gateway answers once the frame's records are stored. A frame
//! the protocol skips (a bad text line) is printed with its error and decoding goes on; a frame
//! that breaks the stream ends it, as a live session would. The exit status says whether every
//! frame decoded.
//!
//! A capture may start mid-connection: the registry's capture decoder
//! ([`ProtocolSpec::capture_decoder`](firmware_protocols::registry::ProtocolSpec)) takes data
//! frames before any login (a pasted Wialon `#D#` line, a Teltonika AVL packet without the
//! IMEI handshake, a GT06 location frame without its login). Their device is unknown: the
//! frame's and the records' `device_id` are `null`, and the records still decode.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use firmware_protocols::registry::{self, Transport};
use firmware_protocols::{DatagramDecoder, Decoded, DecoderOptions, Record, StreamDecoder};
use serde_json::json;

/// Largest frame the decode command accepts; generous, since a capture is trusted input.
const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Decodes `input` (a file, or stdin for `None` / `-`) and writes the frames to `out`.
/// Returns whether every frame decoded.
/// `device_id` is used by protocols whose frames carry none (NMEA).
pub fn run(
    protocol: &str,
    device_id: Option<&str>,
    input: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let spec = registry::lookup(protocol).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown protocol {protocol:?}; known: {}",
            registry::names().join(", ")
        )
    })?;
    let options = DecoderOptions {
        device_id: device_id.map(str::to_string),
        ..DecoderOptions::new(MAX_FRAME_BYTES)
    };
    // Bytes, not text: a serial capture may hold line noise that a live session skips.
    let raw = read_input(input)?;
    let text = || String::from_utf8_lossy(&raw).into_owned();
    match (spec.transport, spec.capture_decoder(&options)) {
        (Transport::Datagram(make), _) => {
            decode_datagrams(make(&options).as_ref(), spec.text, &text(), out)
        }
        (Transport::Stream(_), Some(mut decoder)) => {
            let bytes = if spec.text { raw } else { parse_hex(&text())? };
            decode_all(decoder.as_mut(), &bytes, out)
        }
        (Transport::Stream(_), None) => {
            anyhow::bail!("protocol {protocol:?} has no capture decoder")
        }
    }
}

/// One datagram per non-empty line: hex, or for a text protocol the line itself.
fn decode_datagrams(
    decoder: &dyn DatagramDecoder,
    text_protocol: bool,
    text: &str,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let now = crate::ingest::now_ms();
    let mut all_ok = true;
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    for (n, line) in lines.enumerate() {
        let bytes = match text_protocol {
            true => line.trim_end().as_bytes().to_vec(),
            false => parse_hex(line).with_context(|| format!("datagram {}", n + 1))?,
        };
        let json = match decoder.decode(&bytes, now) {
            Ok(d) => {
                all_ok &= d.problem.is_none();
                let device = d.records.first().map(|r| r.device_id.clone());
                frame_json(n + 1, device.as_deref(), &d)
            }
            Err(e) => {
                all_ok = false;
                error_json(n + 1, None, e.to_string())
            }
        };
        writeln!(out, "{json}")?;
    }
    Ok(all_ok)
}

/// The records' JSON; a record of a capture's unknown device (empty id) says `null`.
fn records_json(records: &[Record]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r.json(None)).unwrap_or_default();
            if r.device_id.is_empty() {
                v["device_id"] = serde_json::Value::Null;
            }
            v
        })
        .collect()
}

fn frame_json(frame: usize, device: Option<&str>, d: &Decoded) -> serde_json::Value {
    let records = records_json(&d.records);
    let device = device.filter(|id| !id.is_empty());
    let (reply, error) = match &d.problem {
        None => (d.reply.accepted.as_deref(), None),
        Some(p) => (d.reply.refused.as_deref(), Some(p.to_string())),
    };
    json!({
        "frame": frame,
        "device_id": device,
        "records": records,
        "reply_hex": reply.map(hex::encode),
        "error": error,
    })
}

fn error_json(frame: usize, device: Option<&str>, error: String) -> serde_json::Value {
    json!({
        "frame": frame,
        "device_id": device,
        "records": [],
        "reply_hex": null,
        "error": error,
    })
}

fn read_input(input: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match input {
        Some(p) if p != Path::new("-") => {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading standard input")?;
            Ok(bytes)
        }
    }
}

/// Hex digits with any whitespace between them.
pub fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<(usize, u8)> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| !b.is_ascii_whitespace())
        .collect();
    if let Some((at, b)) = digits.iter().find(|(_, b)| !b.is_ascii_hexdigit()) {
        anyhow::bail!("input offset {at}: {:?} is not a hex digit", char::from(*b));
    }
    if !digits.len().is_multiple_of(2) {
        anyhow::bail!("odd number of hex digits ({})", digits.len());
    }
    let nibble = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    Ok(digits
        .chunks_exact(2)
        .map(|pair| nibble(pair[0].1) << 4 | nibble(pair[1].1))
        .collect())
}

fn decode_all(
    decoder: &mut dyn StreamDecoder,
    bytes: &[u8],
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let now = crate::ingest::now_ms();
    let mut at = 0;
    let mut frame = 0;
    let mut all_ok = true;
    while at < bytes.len() {
        frame += 1;
        let line = match decoder.decode(&bytes[at..], now) {
            Ok(Some(d)) => {
                at += d.consumed.max(1);
                all_ok &= d.problem.is_none();
                let device = d.login.clone().or(decoder.device_id().map(str::to_string));
                frame_json(frame, device.as_deref(), &d)
            }
            Ok(None) => {
                let e = format!(
                    "incomplete frame: {} byte(s) at input byte offset {at} end the capture",
                    bytes.len() - at
                );
                failed(out, frame, decoder, e)?;
                return Ok(false);
            }
            Err(e) => {
                failed(
                    out,
                    frame,
                    decoder,
                    format!("{} (input byte {})", e.reason, at + e.offset),
                )?;
                return Ok(false);
            }
        };
        writeln!(out, "{line}")?;
    }
    // What the decoder held back (NMEA's last epoch) belongs to the capture too.
    let held_back = decoder.finish(now);
    if !held_back.is_empty() {
        frame += 1;
        let records = records_json(&held_back);
        let line = json!({
            "frame": frame,
            "device_id": decoder.device_id(),
            "records": records,
            "reply_hex": null,
            "error": null,
        });
        writeln!(out, "{line}")?;
    }
    Ok(all_ok)
}

fn failed(
    out: &mut dyn Write,
    frame: usize,
    decoder: &dyn StreamDecoder,
    error: String,
) -> anyhow::Result<()> {
    writeln!(out, "{}", error_json(frame, decoder.device_id(), error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMEI: &str = "000F333536333037303432343431303133";
    const CODEC8_EXAMPLE_1: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";

    /// `capture` through `fleetedge decode --protocol <protocol>`, as written to stdout.
    fn decode_capture(protocol: &str, capture: &str) -> (bool, Vec<serde_json::Value>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture");
        std::fs::write(&path, capture).unwrap();
        let mut out = Vec::new();
        let ok = run(protocol, None, Some(&path), &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (ok, lines)
    }

    fn decode_text(text: &str) -> (bool, Vec<serde_json::Value>) {
        decode_capture("teltonika", text)
    }

    /// Each protocol's capture may start mid-connection: no login, device `null`, records
    /// decoded.
    #[test]
    fn captures_that_start_mid_connection_decode_with_a_null_device() {
        let cases = [
            ("teltonika", CODEC8_EXAMPLE_1.to_string()),
            (
                "wialon",
                "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.0;0;0;;NA;fuel:2:45.8\r\n"
                    .to_string(),
            ),
            // The fact sheet's GT06 0x12 location example (shared/protocols/gt06.md) with
            // the CRC-16/X-25 of its bytes, 0x7377 (the document prints a wrong one).
            (
                "gt06",
                "78781f120b081d112e10cc027ac7eb0c46584900148f01cc00287d001fb8000373770d0a"
                    .to_string(),
            ),
        ];
        for (protocol, capture) in cases {
            let (ok, lines) = decode_capture(protocol, &capture);
            assert!(ok, "{protocol}: {lines:?}");
            let [frame] = &lines[..] else {
                panic!("{protocol}: {lines:?}")
            };
            assert!(frame["device_id"].is_null(), "{protocol}: {frame}");
            let record = &frame["records"][0];
            assert!(record["device_id"].is_null(), "{protocol}: {frame}");
            assert!(record["time"].is_string(), "{protocol}: {frame}");
        }
    }

    #[test]
    fn wialon_udp_captures_read_one_datagram_per_text_line() {
        let capture = "356307042441013#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\n\n\
                       356307042441013#P#\n";
        let (ok, lines) = decode_capture("wialon-udp", capture);
        assert!(ok, "{lines:?}");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["device_id"], "356307042441013");
        assert_eq!(lines[0]["records"][0]["protocol"], "wialon-udp");
        assert_eq!(lines[0]["reply_hex"], hex::encode("#ASD#1\r\n"));
        assert_eq!(lines[1]["reply_hex"], hex::encode("#AP#\r\n"));
    }

    #[test]
    fn a_whole_session_prints_one_line_per_frame() {
        let capture = format!(
            "{IMEI}\n{}\n  {}",
            &CODEC8_EXAMPLE_1[..40],
            &CODEC8_EXAMPLE_1[40..]
        );
        let (ok, lines) = decode_text(&capture);
        assert!(ok);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["device_id"], "356307042441013");
        assert_eq!(lines[0]["reply_hex"], "01");
        assert_eq!(lines[1]["frame"], 2);
        assert_eq!(lines[1]["reply_hex"], "00000001");
        assert_eq!(lines[1]["device_id"], "356307042441013");
        let rec = &lines[1]["records"][0];
        assert_eq!(rec["time"], "2019-06-10T10:04:46.000Z");
        assert_eq!(rec["device_id"], "356307042441013");
        assert_eq!(rec["io"]["66"], 24079);
        assert!(lines[1]["error"].is_null());
    }

    #[test]
    fn a_bad_crc_is_reported_with_its_offset_and_fails() {
        let mut bad = CODEC8_EXAMPLE_1.to_string();
        bad.replace_range(bad.len() - 4.., "0000");
        let (ok, lines) = decode_text(&bad);
        assert!(!ok);
        let err = lines[0]["error"].as_str().unwrap();
        assert!(err.contains("CRC") || err.contains("crc"), "{err}");
    }

    /// NMEA holds an epoch back until the next begins; the capture's last one is printed too.
    #[test]
    fn the_last_held_back_epoch_is_printed() {
        let capture = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n";
        let options = DecoderOptions {
            device_id: Some("gnss-1".into()),
            ..DecoderOptions::new(MAX_FRAME_BYTES)
        };
        let mut decoder = firmware_protocols::nmea::NmeaDecoder::new(&options);
        let mut out = Vec::new();
        assert!(decode_all(&mut decoder, capture, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["records"][0]["device_id"], "gnss-1");
        assert_eq!(last["records"][0]["time"], "1994-03-23T12:35:19.000Z");
    }

    #[test]
    fn truncated_capture_and_bad_hex_are_errors() {
        let (ok, lines) = decode_text(&CODEC8_EXAMPLE_1[..50]);
        assert!(!ok);
        assert!(lines[0]["error"].as_str().unwrap().contains("incomplete"));
        let err = parse_hex("00 0g").unwrap_err().to_string();
        assert!(err.contains("offset 4"), "{err}");
        assert!(parse_hex("000").is_err());
    }
}
