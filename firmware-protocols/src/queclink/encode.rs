//! Builds Queclink @Track ASCII messages (what a device sends), for the load simulator and
//! tests: GL300-style `GTFRI` position reports and the `GTHBD` heartbeat.
//!
//! Fix blocks are written as the fact sheet's examples: speed and altitude with one decimal,
//! coordinates with six, MCC and MNC as four decimal digits, LAC and cell id in hex, `00`
//! reserved. Times are `YYYYMMDDHHMMSS` (UTC here: a simulated device keeps its clock in
//! UTC); the count number is four hex digits.

use crate::record::format_rfc3339_ms;

/// One fix block.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// 0 = no current fix, 1–50 = HDOP.
    pub accuracy: u8,
    pub speed_kmh: f64,
    pub azimuth: u16,
    pub altitude_m: f64,
    /// Degrees, negative = west.
    pub lon: f64,
    /// Degrees, negative = south.
    pub lat: f64,
    /// The GPS UTC time, ms since the Unix epoch (whole seconds are written).
    pub utc_ms: i64,
    pub mcc: u16,
    pub mnc: u16,
    pub lac: u32,
    pub cell_id: u32,
}

/// `+RESP:GTFRI` (or `+BUFF:GTFRI` when `buffered`) on the GL300 layout: report id 0, report
/// type 0, Number = `fixes.len()` (1–15 for the decoder), the blocks, battery %, send time,
/// count.
pub fn fri(
    buffered: bool,
    version: &str,
    imei: &str,
    fixes: &[Fix],
    battery_percent: u8,
    send_ms: i64,
    count: u16,
) -> String {
    let header = if buffered { "+BUFF" } else { "+RESP" };
    let mut out = format!("{header}:GTFRI,{version},{imei},,0,0,{}", fixes.len());
    for f in fixes {
        out.push_str(&format!(
            ",{},{:.1},{},{:.1},{:.6},{:.6},{},{:04},{:04},{:x},{:x},00",
            f.accuracy,
            f.speed_kmh,
            f.azimuth,
            f.altitude_m,
            f.lon,
            f.lat,
            time14(f.utc_ms),
            f.mcc,
            f.mnc,
            f.lac,
            f.cell_id
        ));
    }
    out.push_str(&format!(
        ",{battery_percent},{},{count:04X}$",
        time14(send_ms)
    ));
    out
}

/// `+ACK:GTHBD,<version>,<imei>,,<send time>,<count>$`, answered by the server with
/// `+SACK:GTHBD,<version>,<count>$`.
pub fn heartbeat(version: &str, imei: &str, send_ms: i64, count: u16) -> String {
    format!(
        "+ACK:GTHBD,{version},{imei},,{},{count:04X}$",
        time14(send_ms)
    )
}

/// `YYYYMMDDHHMMSS` of a time in ms since the Unix epoch.
fn time14(ms: i64) -> String {
    format_rfc3339_ms(ms)
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queclink::QueclinkDecoder;
    use crate::{DecoderOptions, Reply, StreamDecoder};

    fn decoder(ack_reports: bool) -> QueclinkDecoder {
        QueclinkDecoder::new(&DecoderOptions {
            ack_reports,
            ..DecoderOptions::new(4096)
        })
    }

    fn fix(k: i64) -> Fix {
        Fix {
            accuracy: 1,
            speed_kmh: 4.3,
            azimuth: 92,
            altitude_m: -70.5,
            lon: 121.354_335,
            lat: [-31.222_073, 0.5, 89.999_999][k as usize % 3],
            utc_ms: 1_767_225_600_000 + k * 1000,
            mcc: 460,
            mnc: 1,
            lac: 0x18d8,
            cell_id: 0x6141,
        }
    }

    #[test]
    fn the_fact_sheet_example_is_written_byte_for_byte() {
        let f = Fix {
            accuracy: 1,
            speed_kmh: 4.3,
            azimuth: 92,
            altitude_m: 70.0,
            lon: 121.354_335,
            lat: 31.222_073,
            utc_ms: 1_234_575_174_000, // 2009-02-14T01:32:54Z
            mcc: 460,
            mnc: 0,
            lac: 0x18d8,
            cell_id: 0x6141,
        };
        let text = fri(
            false,
            "1A0102",
            "135790246811220",
            &[f],
            50,
            1_234_603_974_000,
            0x11F0,
        );
        assert_eq!(
            text,
            "+RESP:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,31.222073,\
             20090214013254,0460,0000,18d8,6141,00,50,20090214093254,11F0$"
        );
    }

    #[test]
    fn reports_round_trip_through_the_decoder() {
        let fixes: Vec<Fix> = (0..3).map(fix).collect();
        for buffered in [false, true] {
            let text = fri(buffered, "1A0102", "135790246811220", &fixes, 80, 0, 0x00AB);
            // The gateway's clock after the fixes (2027): they are not from the future.
            let d = decoder(true)
                .decode(text.as_bytes(), 1_800_000_000_000)
                .unwrap()
                .unwrap();
            assert_eq!(d.consumed, text.len());
            assert!(d.problem.is_none(), "{:?}", d.problem);
            assert_eq!(d.reply.accepted.as_deref(), Some(&b"+SACK:00AB$"[..]));
            assert_eq!(d.records.len(), 3);
            for (r, f) in d.records.iter().zip(&fixes) {
                assert_eq!(r.device_id, "135790246811220");
                assert_eq!(r.time_ms, Some(f.utc_ms));
                assert_eq!(r.lat, Some(f.lat));
                assert_eq!(r.lon, Some(f.lon));
                assert_eq!(r.speed_kmh, Some(f.speed_kmh));
                assert_eq!(r.altitude_m, Some(f.altitude_m));
                assert_eq!(r.course_deg, Some(f64::from(f.azimuth)));
                assert_eq!(r.valid, Some(true));
            }
        }
    }

    #[test]
    fn the_heartbeat_is_answered_and_stores_nothing() {
        let text = heartbeat("1A0102", "135790246811220", 1_234_603_974_000, 0x11F0);
        assert_eq!(
            text,
            "+ACK:GTHBD,1A0102,135790246811220,,20090214093254,11F0$"
        );
        let d = decoder(false).decode(text.as_bytes(), 0).unwrap().unwrap();
        assert_eq!(d.consumed, text.len());
        assert!(d.records.is_empty());
        assert_eq!(
            d.reply,
            Reply {
                accepted: Some(b"+SACK:GTHBD,1A0102,11F0$".to_vec()),
                refused: None,
            }
        );
    }
}
