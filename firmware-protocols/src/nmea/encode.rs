//! Builds NMEA 0183 sentences (what a GNSS receiver sends), for the load simulator and tests:
//! an RMC and a GGA per fix, each with its XOR checksum, which the decoder combines into one
//! record.
//!
//! Coordinates are written as degrees and minutes with five decimals of a minute (about
//! 2 cm), speed in knots with three decimals, times with milliseconds. RMC dates have a
//! two-digit year, so only fixes in 1969–2068 round-trip (the decoder's `%y` pivot).

use crate::record::format_rfc3339_ms;

/// One fix: everything RMC and GGA carry between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// Milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    /// Degrees, negative = south.
    pub lat: f64,
    /// Degrees, negative = west.
    pub lon: f64,
    pub speed_kmh: f64,
    pub course_deg: f64,
    pub satellites: u8,
    pub hdop: f64,
    pub altitude_m: f64,
}

const KMH_PER_KNOT: f64 = 1.852;

/// `$body*hh\r\n`: the checksum is the XOR of every byte of `body`.
pub fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |acc, b| acc ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// `$<talker>RMC,…` for `fix` (status `A`, mode `A`), e.g. talker `GN`.
pub fn rmc(talker: &str, fix: &Fix) -> String {
    let t = Digits::of(fix.time_ms);
    sentence(&format!(
        "{talker}RMC,{},A,{},{},{:.3},{:.1},{}{}{},,,A",
        t.time_of_day(),
        lat(fix.lat),
        lon(fix.lon),
        fix.speed_kmh / KMH_PER_KNOT,
        fix.course_deg,
        t.get(6..8),
        t.get(4..6),
        t.get(2..4),
    ))
}

/// `$<talker>GGA,…` for `fix` (quality 1, a GPS fix).
pub fn gga(talker: &str, fix: &Fix) -> String {
    sentence(&format!(
        "{talker}GGA,{},{},{},1,{:02},{:.1},{:.1},M,0.0,M,,",
        Digits::of(fix.time_ms).time_of_day(),
        lat(fix.lat),
        lon(fix.lon),
        fix.satellites,
        fix.hdop,
        fix.altitude_m,
    ))
}

/// The digits of a time's RFC 3339 form: `YYYYMMDDhhmmssmmm`.
struct Digits(String);

impl Digits {
    fn of(ms: i64) -> Digits {
        Digits(
            format_rfc3339_ms(ms)
                .chars()
                .filter(char::is_ascii_digit)
                .collect(),
        )
    }

    fn get(&self, range: std::ops::Range<usize>) -> &str {
        self.0.get(range).unwrap_or_default()
    }

    /// `hhmmss.sss`.
    fn time_of_day(&self) -> String {
        format!("{}.{}", self.get(8..14), self.get(14..17))
    }
}

/// `ddmm.mmmmm,N` / `S`.
fn lat(degrees: f64) -> String {
    format!(
        "{},{}",
        degrees_minutes(degrees, 2),
        if degrees < 0.0 { 'S' } else { 'N' }
    )
}

/// `dddmm.mmmmm,E` / `W`.
fn lon(degrees: f64) -> String {
    format!(
        "{},{}",
        degrees_minutes(degrees, 3),
        if degrees < 0.0 { 'W' } else { 'E' }
    )
}

/// Whole degrees (`width` digits) and minutes with five decimals, rounded once so that
/// minutes never read 60.
fn degrees_minutes(degrees: f64, width: usize) -> String {
    const UNITS_PER_MINUTE: u64 = 100_000;
    let units = (degrees.abs() * 60.0 * UNITS_PER_MINUTE as f64).round() as u64;
    let (whole, rest) = (
        units / (60 * UNITS_PER_MINUTE),
        units % (60 * UNITS_PER_MINUTE),
    );
    format!(
        "{whole:0width$}{:02}.{:05}",
        rest / UNITS_PER_MINUTE,
        rest % UNITS_PER_MINUTE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nmea::NmeaDecoder;
    use crate::{DecoderOptions, StreamDecoder};

    #[test]
    fn the_fact_sheet_example_checksum() {
        assert_eq!(
            sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
        );
    }

    #[test]
    fn rmc_and_gga_round_trip_through_the_decoder() {
        let fixes = [
            Fix {
                time_ms: 1_767_225_600_250, // 2026-01-01T00:00:00.250Z
                lat: 54.687_283,
                lon: 25.279_651,
                speed_kmh: 43.5,
                course_deg: 271.5,
                satellites: 11,
                hdop: 0.8,
                altitude_m: 112.4,
            },
            Fix {
                time_ms: 946_684_799_000, // 1999-12-31T23:59:59Z
                lat: -33.999_999_9,
                lon: -70.5,
                speed_kmh: 0.0,
                course_deg: 0.0,
                satellites: 4,
                hdop: 2.5,
                altitude_m: -12.0,
            },
        ];
        let mut decoder = NmeaDecoder::new(&DecoderOptions {
            device_id: Some("gnss-1".into()),
            ..DecoderOptions::new(4096)
        });
        for fix in &fixes {
            let text = format!("{}{}", rmc("GN", fix), gga("GN", fix));
            let mut input = text.as_bytes();
            let mut records = Vec::new();
            while let Some(d) = decoder.decode(input, 0).unwrap() {
                assert!(d.problem.is_none(), "{:?} in {text}", d.problem);
                records.extend(d.records);
                input = &input[d.consumed..];
            }
            assert!(input.is_empty());
            assert_eq!(records.len(), 1, "{text}");
            let r = &records[0];
            assert_eq!(r.device_id, "gnss-1");
            assert_eq!(r.time_ms, Some(fix.time_ms));
            assert_eq!(r.valid, Some(true));
            let near = |got: Option<f64>, want: f64, tolerance: f64| {
                got.is_some_and(|g| (g - want).abs() <= tolerance)
            };
            assert!(near(r.lat, fix.lat, 1e-6), "{:?}", r.lat);
            assert!(near(r.lon, fix.lon, 1e-6), "{:?}", r.lon);
            assert!(near(r.speed_kmh, fix.speed_kmh, 0.01), "{:?}", r.speed_kmh);
            assert!(near(r.course_deg, fix.course_deg, 0.05));
            assert_eq!(r.satellites, Some(fix.satellites));
            assert!(near(r.hdop, fix.hdop, 0.05));
            assert!(near(r.altitude_m, fix.altitude_m, 0.05));
        }
    }

    #[test]
    fn minutes_never_round_up_to_sixty() {
        assert_eq!(degrees_minutes(10.999_999_999, 2), "1100.00000");
        assert_eq!(degrees_minutes(-7.5, 3), "00730.00000");
    }
}
