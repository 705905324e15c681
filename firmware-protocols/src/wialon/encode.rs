//! Builds valid Wialon IPS packets: the device side, for the load simulator, tests and benches.
//!
//! Values are written as a device would: coordinates as degrees and minutes with six
//! decimals of a minute (about 2 cm), numbers in Rust's shortest round-trip form, absent
//! values as `NA`. Text (device ids, ibutton, param names and string values, driver
//! messages) is written as given and not escaped: text holding `;`, `,`, `|`, `:` or CR LF
//! makes a packet the decoder will refuse, which tests use on purpose.

use super::ProtocolVersion;
use crate::crc::crc16_arc;
use crate::record::format_rfc3339_ms;

/// One SD- or D-style message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// Milliseconds since the Unix epoch, UTC; only years 2000–2099 can be written (two-digit
    /// year). Whole seconds are written `HHMMSS`, others `HHMMSS.mmm` (the v2.1 form).
    pub time_ms: Option<i64>,
    /// Degrees, negative = south. Written only together with `lon`.
    pub lat: Option<f64>,
    /// Degrees, negative = west.
    pub lon: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub course_deg: Option<f64>,
    pub altitude_m: Option<f64>,
    pub satellites: Option<u8>,
    /// The D fields; `None` writes an SD-style body (in a black box) or all-`NA` D fields.
    pub extended: Option<Extended>,
}

/// The fields a D body adds to an SD body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extended {
    pub hdop: Option<f64>,
    pub inputs: Option<u64>,
    pub outputs: Option<u64>,
    /// Analog inputs in order; `None` is written `NA`. Empty writes the field as `NA`.
    pub adc: Vec<Option<f64>>,
    pub ibutton: Option<String>,
    pub params: Vec<(String, Param)>,
}

/// A param value; its variant is its wire type.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Type 1.
    Int(i64),
    /// Type 2.
    Double(f64),
    /// Type 3.
    Text(String),
}

/// Any packet: `#kind#body` plus, in 2.0, the CRC field (`;crc16`, or `|crc16` for a black
/// box), plus CR LF.
pub fn frame(version: ProtocolVersion, kind: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(kind.len() + body.len() + 10);
    out.push(b'#');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'#');
    out.extend_from_slice(body.as_bytes());
    if version == ProtocolVersion::V2 {
        let body_start = kind.len() + 2;
        out.push(if kind == "B" { b'|' } else { b';' });
        let crc = crc16_arc(out.get(body_start..).unwrap_or_default());
        out.extend_from_slice(format!("{crc:04X}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `#L#imei;password` (1.1) or `#L#2.0;imei;password;crc16` (2.0); no password is `NA`.
pub fn login(version: ProtocolVersion, imei: &str, password: Option<&str>) -> Vec<u8> {
    let password = password.unwrap_or("NA");
    match version {
        ProtocolVersion::V1_1 => frame(version, "L", &format!("{imei};{password}")),
        ProtocolVersion::V2 => frame(version, "L", &format!("2.0;{imei};{password}")),
    }
}

/// `#SD#`: the first ten fields of `message`.
pub fn short_data(version: ProtocolVersion, message: &Message) -> Vec<u8> {
    let mut body = String::with_capacity(64);
    write_short(&mut body, message);
    frame(version, "SD", &body)
}

/// `#D#`: all sixteen fields (`NA` where `message.extended` is `None`).
pub fn data(version: ProtocolVersion, message: &Message) -> Vec<u8> {
    let mut body = String::with_capacity(128);
    write_short(&mut body, message);
    write_extended(&mut body, message.extended.as_ref());
    frame(version, "D", &body)
}

/// `#B#`: each message SD-style, or D-style when it has `extended`.
pub fn black_box(version: ProtocolVersion, messages: &[Message]) -> Vec<u8> {
    let mut body = String::with_capacity(messages.len() * 128);
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            body.push('|');
        }
        write_message(&mut body, m);
    }
    frame(version, "B", &body)
}

/// `#M#text` (2.0: `#M#text;crc16`).
pub fn driver_message(version: ProtocolVersion, text: &str) -> Vec<u8> {
    frame(version, "M", text)
}

/// `#P#`, which carries no CRC in either version.
pub fn ping() -> Vec<u8> {
    b"#P#\r\n".to_vec()
}

/// One message body (no CRC): SD-style, or D-style when it has `extended`.
pub fn write_message(out: &mut String, message: &Message) {
    write_short(out, message);
    if let Some(ext) = &message.extended {
        write_extended(out, Some(ext));
    }
}

fn write_short(out: &mut String, m: &Message) {
    use std::fmt::Write;
    match m.time_ms {
        Some(ms) => {
            // "2013-04-27T20:56:01.000Z" → 270413;205601
            let t = format_rfc3339_ms(ms);
            let part = |a: usize, b: usize| t.get(a..b).unwrap_or("00");
            let _ = write!(
                out,
                "{}{}{};{}{}{}",
                part(8, 10),
                part(5, 7),
                part(2, 4),
                part(11, 13),
                part(14, 16),
                part(17, 19)
            );
            if ms.rem_euclid(1000) != 0 {
                let _ = write!(out, ".{}", part(20, 23));
            }
        }
        None => out.push_str("NA;NA"),
    }
    match (m.lat, m.lon) {
        (Some(lat), Some(lon)) => {
            out.push(';');
            write_coordinate(out, lat, 2, 'N', 'S');
            out.push(';');
            write_coordinate(out, lon, 3, 'E', 'W');
        }
        _ => out.push_str(";NA;NA;NA;NA"),
    }
    for v in [m.speed_kmh, m.course_deg, m.altitude_m] {
        out.push(';');
        write_opt(out, v);
    }
    out.push(';');
    write_opt(out, m.satellites);
}

fn write_extended(out: &mut String, ext: Option<&Extended>) {
    let Some(e) = ext else {
        out.push_str(";NA;NA;NA;NA;NA;NA");
        return;
    };
    out.push(';');
    write_opt(out, e.hdop);
    out.push(';');
    write_opt(out, e.inputs);
    out.push(';');
    write_opt(out, e.outputs);
    out.push(';');
    if e.adc.is_empty() {
        out.push_str("NA");
    }
    for (i, v) in e.adc.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_opt(out, *v);
    }
    out.push(';');
    out.push_str(e.ibutton.as_deref().unwrap_or("NA"));
    out.push(';');
    if e.params.is_empty() {
        out.push_str("NA");
    }
    for (i, (name, value)) in e.params.iter().enumerate() {
        use std::fmt::Write;
        if i > 0 {
            out.push(',');
        }
        let _ = match value {
            Param::Int(v) => write!(out, "{name}:1:{v}"),
            Param::Double(v) => write!(out, "{name}:2:{v}"),
            Param::Text(v) => write!(out, "{name}:3:{v}"),
        };
    }
}

fn write_opt<T: std::fmt::Display>(out: &mut String, v: Option<T>) {
    use std::fmt::Write;
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("NA"),
    }
}

/// `DDMM.MMMMMM;H` with `width` degree digits; rounded in millionths of a minute so the
/// minutes never round up to 60.
fn write_coordinate(out: &mut String, degrees: f64, width: usize, positive: char, negative: char) {
    use std::fmt::Write;
    const MICRO_MINUTES_PER_DEGREE: f64 = 60_000_000.0;
    let micro = (degrees.abs() * MICRO_MINUTES_PER_DEGREE).round() as u64;
    let whole = micro / 60_000_000;
    let minutes = micro % 60_000_000;
    let hemisphere = if degrees < 0.0 { negative } else { positive };
    let _ = write!(
        out,
        "{whole:0width$}{:02}.{:06};{hemisphere}",
        minutes / 1_000_000,
        minutes % 1_000_000
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_v2_matches_the_sheets_worked_crc() {
        assert_eq!(
            login(ProtocolVersion::V2, "123456789012345", None),
            b"#L#2.0;123456789012345;NA;15CD\r\n"
        );
        assert_eq!(
            login(ProtocolVersion::V1_1, "123456789012345", Some("pw")),
            b"#L#123456789012345;pw\r\n"
        );
    }

    #[test]
    fn short_data_matches_the_sheets_example() {
        let m = Message {
            time_ms: Some(1_367_096_161_000),
            lat: Some(55.0 + 44.6025 / 60.0),
            lon: Some(37.0 + 39.6834 / 60.0),
            speed_kmh: Some(1.0),
            course_deg: Some(2.0),
            altitude_m: Some(3.0),
            satellites: Some(4),
            extended: None,
        };
        assert_eq!(
            String::from_utf8(short_data(ProtocolVersion::V1_1, &m)).unwrap(),
            "#SD#270413;205601;5544.602500;N;03739.683400;E;1;2;3;4\r\n"
        );
    }

    #[test]
    fn coordinates_carry_into_degrees_instead_of_60_minutes() {
        let mut s = String::new();
        write_coordinate(&mut s, -(10.0 - 1e-12), 3, 'E', 'W');
        assert_eq!(s, "01000.000000;W");
    }
}
