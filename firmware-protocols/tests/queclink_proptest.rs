//! Properties of the Queclink decoder: no panics and no `Err` on any input, honest
//! `consumed`, never asking to buffer past the limit, and GTFRI messages built from random
//! fixes decoding back to those fixes.

use firmware_protocols::queclink::QueclinkDecoder;
use firmware_protocols::record::days_from_civil;
use firmware_protocols::testkit::{self, Contract};
use firmware_protocols::{DecoderOptions, IoKey, IoValue, StreamDecoder};
use proptest::collection::vec;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;
const FRI_ONE: &str = "+RESP:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,,20090214093254,11F0$";
const HBD: &str = "+ACK:GTHBD,1A0102,135790246811220,,20100214093254,11F0$";

fn decoder(max: usize) -> QueclinkDecoder {
    QueclinkDecoder::new(&DecoderOptions {
        keep_raw: true,
        ack_reports: true,
        ..DecoderOptions::new(max)
    })
}

/// The kit's stream contract as the gateway drives a Queclink stream: never more than the
/// limit buffered, never an `Err` (bad messages are skipped), no login.
const CONTRACT: Contract = Contract {
    may_fail: false,
    logins: false,
    windowed: true,
    ranges: false,
    ..Contract::SESSION
};

/// Returns how many frames carried records.
fn check_stream(dec: &mut QueclinkDecoder, input: &[u8]) -> Result<usize, TestCaseError> {
    let seen = testkit::check_stream(dec, input, NOW, &CONTRACT)?;
    Ok(seen.frames.iter().filter(|d| !d.records.is_empty()).count())
}

/// Pieces that reach the framer's and the parser's deeper paths more often than bytes do.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("+RESP:".to_owned()),
        Just("+BUFF:".to_owned()),
        Just("+ACK:".to_owned()),
        Just("+".to_owned()),
        Just("$".to_owned()),
        Just(",".to_owned()),
        Just(",,".to_owned()),
        Just("\r\n".to_owned()),
        Just("GTFRI".to_owned()),
        Just("GTHBD".to_owned()),
        Just("GTIGN".to_owned()),
        Just("GTCAN".to_owned()),
        Just("GTOBD".to_owned()),
        Just("C03FFFFF".to_owned()),
        Just("0079FFFF".to_owned()),
        Just("1A0102,135790246811220,".to_owned()),
        Just("20090214013254".to_owned()),
        Just("11F0".to_owned()),
        Just("-".to_owned()),
        Just(".".to_owned()),
        (0u32..10_000_000).prop_map(|n| n.to_string()),
        (0u32..1000, 0u32..1_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
        any::<u16>().prop_map(|n| format!("{n:04X}")),
        any::<u8>().prop_map(|b| char::from(b).to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_err(
        input in vec(any::<u8>(), 0..3000),
        max in 1usize..600,
    ) {
        check_stream(&mut decoder(max), &input)?;
    }

    #[test]
    fn arbitrary_bytes_after_valid_messages(
        tail in vec(any::<u8>(), 0..600),
    ) {
        let mut input = format!("{HBD}\r\n{FRI_ONE}").into_bytes();
        input.extend_from_slice(&tail);
        let mut dec = decoder(512);
        let frames = check_stream(&mut dec, &input)?;
        prop_assert!(frames >= 1);
        prop_assert_eq!(dec.device_id(), Some("135790246811220"));
    }

    #[test]
    fn one_mutated_byte_is_a_record_or_a_problem(
        at in 0usize..FRI_ONE.len(),
        byte in any::<u8>(),
    ) {
        let mut input = FRI_ONE.as_bytes().to_vec();
        input[at] = byte;
        input.extend_from_slice(HBD.as_bytes());
        let mut dec = decoder(1024);
        check_stream(&mut dec, &input)?;
        // Whatever happened to the first message, the heartbeat after it is answered.
        let mut rest: &[u8] = &input;
        let mut answered = false;
        while let Ok(Some(d)) = dec.decode(rest, NOW) {
            answered |= d.reply.accepted.as_deref() == Some(&b"+SACK:GTHBD,1A0102,11F0$"[..]);
            rest = &rest[d.consumed..];
        }
        prop_assert!(answered);
    }
}

proptest! {
    // Fewer cases: generating the soup dominates the run time in debug builds.
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn token_soup_never_panics_or_errs(
        tokens in vec(token(), 0..300),
        max in 8usize..700,
    ) {
        let input = tokens.concat();
        check_stream(&mut decoder(max), input.as_bytes())?;
    }
}

/// One fix block's values, as a device would produce them.
#[derive(Debug, Clone)]
struct FixValues {
    accuracy: u8,
    speed_tenths: u16,
    azimuth: u16,
    altitude_tenths: i32,
    lon_micro: i32,
    lat_micro: i32,
    /// Seconds since 2000-01-01T00:00:00Z.
    secs: u32,
    mcc: u16,
    mnc: u16,
    lac: u16,
    cell: u32,
}

prop_compose! {
    fn fix_values()(
        accuracy in 0u8..=50,
        speed_tenths in 0u16..=9999,
        azimuth in 0u16..=359,
        altitude_tenths in -99_999i32..=99_999,
        lon_micro in -180_000_000i32..=180_000_000,
        lat_micro in -90_000_000i32..=90_000_000,
        // Up to NOW: a fix time after the gateway's next day is out of range.
        secs in 0u32..753_315_200,
        mcc in 0u16..=999,
        mnc in 0u16..=999,
        lac in any::<u16>(),
        cell in 0u32..=0x0FFF_FFFF,
    ) -> FixValues {
        FixValues {
            accuracy, speed_tenths, azimuth, altitude_tenths, lon_micro, lat_micro, secs,
            mcc, mnc, lac, cell,
        }
    }
}

fn tenths(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{}", v.abs() / 10, v.abs() % 10)
}

fn micro(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:06}", v.abs() / 1_000_000, v.abs() % 1_000_000)
}

const EPOCH_2000_MS: i64 = 946_684_800_000;

/// `YYYYMMDDHHMMSS` of `EPOCH_2000 + secs`, computed independently of the decoder.
fn utc_text(secs: u32) -> String {
    let days = i64::from(secs / 86_400) + days_from_civil(2000, 1, 1);
    let rem = secs % 86_400;
    // Find the date by stepping from a year estimate: days_from_civil is the only helper.
    let mut year = 1970 + days / 366;
    while days_from_civil(year + 1, 1, 1) <= days {
        year += 1;
    }
    let mut month = 1;
    while month < 12 && days_from_civil(year, month + 1, 1) <= days {
        month += 1;
    }
    let day = days - days_from_civil(year, month, 1) + 1;
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn block(f: &FixValues) -> String {
    format!(
        "{},{},{},{},{},{},{},{:04},{:04},{:04x},{:x},00",
        f.accuracy,
        tenths(i64::from(f.speed_tenths)),
        f.azimuth,
        tenths(i64::from(f.altitude_tenths)),
        micro(i64::from(f.lon_micro)),
        micro(i64::from(f.lat_micro)),
        utc_text(f.secs),
        f.mcc,
        f.mnc,
        f.lac,
        f.cell,
    )
}

fn gtfri(fixes: &[FixValues], battery: u8, count: u16) -> String {
    let blocks: Vec<String> = fixes.iter().map(block).collect();
    format!(
        "+RESP:GTFRI,1A0102,135790246811220,,0,0,{},{},{battery},20240101000000,{count:04X}$",
        fixes.len(),
        blocks.join(",")
    )
}

fn io_u64(io: &[(IoKey, IoValue)], key: &str) -> Option<u64> {
    io.iter().find_map(|(k, v)| match (k, v) {
        (IoKey::Name(n), IoValue::U64(x)) if n == key => Some(*x),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gtfri_round_trips(
        fixes in vec(fix_values(), 1..=15),
        battery in 0u8..=100,
        count in any::<u16>(),
        split in any::<prop::sample::Index>(),
    ) {
        let text = gtfri(&fixes, battery, count);
        let mut dec = decoder(4096);
        // Split into two reads anywhere: the first must wait, the whole must decode.
        let at = split.index(text.len());
        if at > 0 {
            prop_assert_eq!(dec.decode(&text.as_bytes()[..at], NOW), Ok(None));
        }
        let d = dec.decode(text.as_bytes(), NOW).unwrap().unwrap();
        prop_assert_eq!(d.problem, None);
        prop_assert_eq!(d.consumed, text.len());
        let sack = format!("+SACK:{count:04X}$");
        prop_assert_eq!(d.reply.accepted.as_deref(), Some(sack.as_bytes()));
        prop_assert_eq!(d.records.len(), fixes.len());
        for (r, f) in d.records.iter().zip(&fixes) {
            prop_assert_eq!(r.time_ms, Some(EPOCH_2000_MS + i64::from(f.secs) * 1000));
            prop_assert_eq!(r.lat, Some(f64::from(f.lat_micro) / 1e6));
            prop_assert_eq!(r.lon, Some(f64::from(f.lon_micro) / 1e6));
            prop_assert_eq!(r.speed_kmh, Some(f64::from(f.speed_tenths) / 10.0));
            prop_assert_eq!(r.altitude_m, Some(f64::from(f.altitude_tenths) / 10.0));
            prop_assert_eq!(r.course_deg, Some(f64::from(f.azimuth)));
            prop_assert_eq!(r.valid, Some(f.accuracy > 0));
            prop_assert_eq!(r.hdop, (f.accuracy > 0).then(|| f64::from(f.accuracy)));
            prop_assert_eq!(r.event.as_deref(), None);
            prop_assert_eq!(io_u64(&r.io, "mcc"), Some(u64::from(f.mcc)));
            prop_assert_eq!(io_u64(&r.io, "mnc"), Some(u64::from(f.mnc)));
            prop_assert_eq!(io_u64(&r.io, "lac"), Some(u64::from(f.lac)));
            prop_assert_eq!(io_u64(&r.io, "cell_id"), Some(u64::from(f.cell)));
            prop_assert_eq!(io_u64(&r.io, "battery_percent"), Some(u64::from(battery)));
            prop_assert_eq!(io_u64(&r.io, "count"), Some(u64::from(count)));
            prop_assert!(r.lat.is_some_and(|v| v.abs() <= 90.0));
            prop_assert!(r.lon.is_some_and(|v| v.abs() <= 180.0));
        }
    }
}
