//! NMEA 0183 decoder against the fact sheet's examples (shared/protocols/nmea0183.md section 7,
//! the classic reference sentences), epoch combining, stream splitting, malformed input, and
//! properties (no panics, honest `consumed`, sentence round trips).

use firmware_protocols::nmea::{NmeaDecoder, FALLBACK_DEVICE_ID};
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::testkit::{
    self, close, records_fed_byte_by_byte, records_split_at_every_offset, time, Contract,
};
use firmware_protocols::{
    DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Protocol, Record, Reply, StreamDecoder,
};
use proptest::prelude::*;

/// 1994-12-01T00:00:00Z: the receive time for the fact sheet's 1994 sentences, so they are
/// not flagged as GPS week rollovers.
const NOW_1994: i64 = 786_240_000_000;
/// 2024-03-01T00:00:00Z.
const NOW: i64 = 1_709_251_200_000;
const MAX: usize = 256;
const DEVICE: &str = "gnss-port-1";

const RMC_1: &str = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A";
const GGA_1: &str = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
const RMC_2: &str = "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68";

fn options() -> DecoderOptions {
    DecoderOptions {
        device_id: Some(DEVICE.into()),
        ..DecoderOptions::new(MAX)
    }
}

fn decoder() -> NmeaDecoder {
    NmeaDecoder::new(&options())
}

/// `$body*hh` with the right checksum.
fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}")
}

/// Lines joined with CR LF, the way a receiver sends them.
fn stream(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect()
}

/// Decodes every complete frame at the front of `buf`, like the serial session loop does.
fn drain(dec: &mut NmeaDecoder, buf: &mut Vec<u8>, now: i64) -> Vec<Decoded> {
    testkit::drain_checked(dec, buf, now, &Contract::SILENT_LINES)
}

/// All frames of `bytes` decoded in one buffer, then whatever `finish` releases.
fn decode_all(dec: &mut NmeaDecoder, bytes: &[u8], now: i64) -> (Vec<Record>, Vec<DecodeError>) {
    testkit::decode_all(dec, bytes, now, &Contract::SILENT_LINES)
}

fn records_of(lines: &[&str], now: i64) -> Vec<Record> {
    let (records, problems) = decode_all(&mut decoder(), &stream(lines), now);
    assert!(problems.is_empty(), "{problems:?}");
    records
}

fn text(v: &str) -> IoValue {
    IoValue::Text(v.into())
}

fn io(entries: &[(&str, IoValue)]) -> Vec<(IoKey, IoValue)> {
    entries
        .iter()
        .map(|(k, v)| (IoKey::Name((*k).into()), v.clone()))
        .collect()
}

struct Case {
    source: &'static str,
    lines: &'static [&'static str],
    now: i64,
    check: fn(&[Record]),
}

const CASES: &[Case] = &[
    Case {
        source: "fact sheet §7 RMC 123519 + GGA 123519: one epoch, one record",
        lines: &[RMC_1, GGA_1],
        now: NOW_1994,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(r.device_id, DEVICE);
            assert_eq!(r.protocol, Protocol::Nmea);
            assert_eq!(r.received_at_ms, NOW_1994);
            assert_eq!(time(r).as_deref(), Some("1994-03-23T12:35:19.000Z"));
            assert_eq!(r.valid, Some(true));
            close(r.lat, 48.1173);
            close(r.lon, 11.516_666_667);
            close(r.speed_kmh, 41.4848);
            close(r.course_deg, 84.4);
            close(r.altitude_m, 545.4);
            close(r.hdop, 0.9);
            assert_eq!(r.satellites, Some(8));
            assert_eq!(r.event, None);
            let want = io(&[
                ("talker", text("GP")),
                ("status", text("A")),
                ("magnetic_variation_deg", IoValue::F64(-3.1)),
                ("fix_quality", IoValue::U64(1)),
                ("geoid_separation_m", IoValue::F64(46.9)),
            ]);
            assert_eq!(r.io, want);
            assert_eq!(r.raw, None);
        },
    },
    Case {
        source: "fact sheet §7 RMC 225446 alone (W longitude, E variation), released at the end",
        lines: &[RMC_2],
        now: NOW_1994,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(time(r).as_deref(), Some("1994-11-19T22:54:46.000Z"));
            assert_eq!(r.valid, Some(true));
            close(r.lat, 49.274_166_667);
            close(r.lon, -123.185_333_333);
            close(r.speed_kmh, 0.926);
            close(r.course_deg, 54.7);
            assert_eq!((r.altitude_m, r.satellites, r.hdop), (None, None, None));
            let want = io(&[
                ("talker", text("GP")),
                ("status", text("A")),
                ("magnetic_variation_deg", IoValue::F64(20.3)),
            ]);
            assert_eq!(r.io, want);
        },
    },
    Case {
        source: "fact sheet §7 GGA 123519 alone, no date ever seen: time None, time of day in io",
        lines: &[GGA_1],
        now: NOW_1994,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(r.time_ms, None);
            assert_eq!(r.valid, Some(true));
            close(r.lat, 48.1173);
            close(r.lon, 11.516_666_667);
            assert_eq!(r.speed_kmh, None);
            assert_eq!(r.course_deg, None);
            let want = io(&[
                ("talker", text("GP")),
                ("fix_quality", IoValue::U64(1)),
                ("geoid_separation_m", IoValue::F64(46.9)),
                ("time_of_day", text("123519.000")),
            ]);
            assert_eq!(r.io, want);
        },
    },
    Case {
        source: "fact sheet §3/§4 NMEA 4.1 GN sentences: mode + nav status, fractional seconds, \
                 south latitude, negative altitude, DGPS age and station, lowercase checksum",
        lines: &[
            "$GNRMC,083559.25,A,3354.123456,S,15112.654321,E,0.004,,290224,,,D,V*05",
            "$GNGGA,083559.25,3354.123456,S,15112.654321,E,2,12,0.71,-12.3,M,22.1,M,1.5,0131*6e",
        ],
        now: NOW,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(time(r).as_deref(), Some("2024-02-29T08:35:59.250Z"));
            assert_eq!(r.valid, Some(true));
            close(r.lat, -(33.0 + 54.123_456 / 60.0));
            close(r.lon, 151.0 + 12.654_321 / 60.0);
            close(r.speed_kmh, 0.004 * 1.852);
            assert_eq!(r.course_deg, None, "empty course when stationary");
            close(r.altitude_m, -12.3);
            assert_eq!(r.satellites, Some(12));
            let want = io(&[
                ("talker", text("GN")),
                ("status", text("A")),
                ("mode", text("D")),
                ("nav_status", text("V")),
                ("fix_quality", IoValue::U64(2)),
                ("geoid_separation_m", IoValue::F64(22.1)),
                ("dgps_age_s", IoValue::F64(1.5)),
                ("dgps_station", text("0131")),
            ]);
            assert_eq!(r.io, want);
        },
    },
    Case {
        source: "fact sheet §6 no fix yet: RMC status V and GGA quality 0, empty fields",
        lines: &["$GPRMC,,V,,,,,,,,,,N*53", "$GPGGA,,,,,,0,00,99.99,,,,,,*48"],
        now: NOW,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(r.valid, Some(false));
            assert_eq!(
                (r.time_ms, r.lat, r.lon, r.speed_kmh),
                (None, None, None, None)
            );
            assert_eq!((r.altitude_m, r.course_deg), (None, None));
            assert_eq!(r.satellites, Some(0));
            close(r.hdop, 99.99);
            let want = io(&[
                ("talker", text("GP")),
                ("status", text("V")),
                ("mode", text("N")),
                ("fix_quality", IoValue::U64(0)),
            ]);
            assert_eq!(r.io, want);
        },
    },
    Case {
        source: "fact sheet §6 RMC says A but GGA quality 0: no valid fix",
        lines: &[
            "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A",
            "$GPGGA,123519,4807.038,N,01131.000,E,0,08,0.9,545.4,M,46.9,M,,*46",
        ],
        now: NOW_1994,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(r.valid, Some(false));
            assert_eq!(r.satellites, Some(8));
        },
    },
    Case {
        source: "fact sheet §6 coordinates without leading zeros, many minute decimals",
        lines: &["$GPRMC,000000,A,153.5234567,N,1353.52,W,,,010100,,*3F"],
        now: NOW,
        check: |rs| {
            let [r] = rs else { panic!("{rs:?}") };
            assert_eq!(time(r).as_deref(), Some("2000-01-01T00:00:00.000Z"));
            close(r.lat, 1.0 + 53.523_456_7 / 60.0);
            close(r.lon, -(13.0 + 53.52 / 60.0));
        },
    },
    Case {
        source: "fact sheet §2 two-digit year pivot: 69 is 1969, 68 is 2068",
        lines: &[
            "$GPRMC,000000,V,,,,,,,010169,,*3E",
            "$GPRMC,000001,V,,,,,,,311268,,*3F",
        ],
        now: NOW,
        check: |rs| {
            let times: Vec<_> = rs.iter().map(time).collect();
            assert_eq!(
                times,
                [
                    Some("1969-01-01T00:00:00.000Z".to_owned()),
                    Some("2068-12-31T00:00:01.000Z".to_owned())
                ]
            );
            // 1969 is far before the receive time: flagged, not moved.
            let flag = (
                IoKey::Name("gps_week_rollover_suspected".into()),
                IoValue::U64(1),
            );
            assert!(rs[0].io.contains(&flag));
            assert!(!rs[1].io.contains(&flag));
        },
    },
];

#[test]
fn case_sentences_have_valid_checksums() {
    for case in CASES {
        for line in case.lines {
            let (body, sum) = line[1..].split_once('*').unwrap();
            assert_eq!(
                &sentence(body)[body.len() + 2..],
                sum.to_ascii_uppercase(),
                "{}: {line}",
                case.source
            );
        }
    }
}

#[test]
fn vendor_sentences_decode() {
    for case in CASES {
        let records = records_of(case.lines, case.now);
        eprintln!("case: {}", case.source);
        (case.check)(&records);
    }
}

#[test]
fn fact_sheet_gga_checksum_is_0x47() {
    // §1 "Worked: the body … XORs to 0x47".
    assert_eq!(
        sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        GGA_1
    );
}

#[test]
fn every_case_decodes_the_same_fed_byte_by_byte_and_split_anywhere() {
    for case in CASES {
        eprintln!("case: {}", case.source);
        let bytes = stream(case.lines);
        let whole = records_of(case.lines, case.now);
        let contract = Contract::SILENT_LINES;
        let bytewise = records_fed_byte_by_byte(&mut decoder(), &bytes, case.now, &contract);
        assert_eq!(bytewise, whole, "{}", case.source);
        records_split_at_every_offset(decoder, &bytes, case.now, &contract);
    }
}

/// A receiver's one-second burst: RMC, VTG, GGA, GSA, GSV ×3, GLL, TXT.
fn burst(hhmmss: &str, ddmmyy: &str, lat_min: &str) -> Vec<String> {
    vec![
        sentence(&format!(
            "GNRMC,{hhmmss}.00,A,52{lat_min},N,01324.0000,E,12.5,270.0,{ddmmyy},,,A,V"
        )),
        sentence("GNVTG,270.0,T,,M,12.5,N,23.2,K,A"),
        sentence(&format!(
            "GNGGA,{hhmmss}.00,52{lat_min},N,01324.0000,E,1,09,1.1,34.0,M,39.0,M,,"
        )),
        sentence("GNGSA,A,3,10,12,14,24,25,32,,,,,,,1.9,1.1,1.5,1"),
        sentence("GPGSV,3,1,11,10,63,137,17,12,31,292,22,14,22,212,29,24,56,061,18"),
        sentence("GPGSV,3,2,11,25,40,298,26,32,66,203,30,01,02,044,,02,11,192,"),
        sentence("GPGSV,3,3,11,03,03,111,,06,01,010,,13,06,292,"),
        sentence(&format!("GNGLL,52{lat_min},N,01324.0000,E,{hhmmss}.00,A,A")),
        sentence("GNTXT,01,01,02,ANTSTATUS=OK"),
        sentence("PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007,77.52,0.007,,0.92,1.19,0.77,9,0,0"),
    ]
}

#[test]
fn a_session_of_bursts_gives_one_record_per_epoch_and_ignores_other_sentences() {
    let mut lines = Vec::new();
    for (i, t) in ["235958", "235959", "000000", "000001"].iter().enumerate() {
        let date = if i < 2 { "311299" } else { "010100" };
        lines.extend(burst(t, date, &format!("3{i}.0000")));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let seen = testkit::check_stream(&mut decoder(), &stream(&refs), NOW, &Contract::SILENT_LINES)
        .unwrap();
    assert_eq!(seen.left, 0);
    let frames = seen.frames;
    assert_eq!(frames.len(), lines.len(), "one frame per sentence");
    assert!(frames.iter().all(|d| d.problem.is_none()));
    // The first epoch comes out with its GGA (RMC + GGA is all that is known of the burst);
    // its GSA and GLL, arriving after, teach the decoder the burst, so every later epoch
    // comes out with its last member, the GLL (the eighth sentence of each burst).
    let with_records: Vec<usize> = (0..frames.len())
        .filter(|&i| !frames[i].records.is_empty())
        .collect();
    assert_eq!(with_records, [2, 17, 27, 37]);
    let records: Vec<&Record> = frames.iter().flat_map(|d| &d.records).collect();
    let times: Vec<_> = records.iter().map(|r| time(r).unwrap()).collect();
    assert_eq!(
        times,
        [
            "1999-12-31T23:59:58.000Z",
            "1999-12-31T23:59:59.000Z",
            "2000-01-01T00:00:00.000Z",
            "2000-01-01T00:00:01.000Z"
        ]
    );
    for (i, r) in records.iter().enumerate() {
        close(r.lat, 52.0 + (30.0 + i as f64) / 60.0);
        close(r.speed_kmh, 12.5 * 1.852);
        assert_eq!(r.satellites, Some(9));
        assert_eq!(r.valid, Some(true));
        let has_gsa =
            r.io.contains(&(IoKey::Name("pdop".into()), IoValue::F64(1.9)));
        assert_eq!(has_gsa, i > 0, "GSA joins every epoch after the first");
    }
    assert!(
        seen.finished.is_empty(),
        "nothing pending after complete epochs"
    );
}

#[test]
fn gga_before_rmc_combines_too() {
    let rs = records_of(&[GGA_1, RMC_1], NOW_1994);
    let [r] = &rs[..] else { panic!("{rs:?}") };
    assert_eq!(time(r).as_deref(), Some("1994-03-23T12:35:19.000Z"));
    assert_eq!(r.satellites, Some(8));
    close(r.speed_kmh, 41.4848);
}

#[test]
fn a_missing_sentence_is_released_by_the_next_epoch() {
    let rmc_20 = sentence("GPRMC,123520,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W");
    let gga_20 = sentence("GPGGA,123520,4807.038,N,01131.000,E,1,07,0.9,545.4,M,46.9,M,,");
    let gga_21 = sentence("GPGGA,123521,4807.038,N,01131.000,E,1,06,1.0,545.4,M,46.9,M,,");
    let mut dec = decoder();
    let mut out = |line: &str| {
        let d = dec
            .decode(format!("{line}\r\n").as_bytes(), NOW_1994)
            .unwrap()
            .unwrap();
        assert!(d.problem.is_none());
        d.records
    };
    assert!(out(RMC_1).is_empty(), "12:35:19 waits for its GGA");
    // The GGA of 12:35:19 is lost; the RMC of 12:35:20 releases 12:35:19 alone.
    let released = out(&rmc_20);
    assert_eq!(released.len(), 1);
    assert_eq!(
        time(&released[0]).as_deref(),
        Some("1994-03-23T12:35:19.000Z")
    );
    assert_eq!(released[0].satellites, None);
    // 12:35:20 completes with its GGA.
    let done = out(&gga_20);
    assert_eq!(done[0].satellites, Some(7));
    assert_eq!(time(&done[0]).as_deref(), Some("1994-03-23T12:35:20.000Z"));
    // 12:35:21 has only a GGA: it borrows the last RMC date.
    assert!(out(&gga_21).is_empty());
    let tail = dec.finish(NOW_1994);
    assert_eq!(tail.len(), 1);
    assert_eq!(time(&tail[0]).as_deref(), Some("1994-03-23T12:35:21.000Z"));
    assert_eq!(tail[0].satellites, Some(6));
    assert!(dec.finish(NOW_1994).is_empty());
}

#[test]
fn a_second_rmc_of_the_same_time_starts_a_new_record() {
    // Two talkers reporting the same epoch: both kept, nothing dropped.
    let gl = sentence("GLRMC,123519,A,4807.040,N,01131.000,E,022.4,084.4,230394,003.1,W");
    let rs = records_of(&[RMC_1, &gl, GGA_1], NOW_1994);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].satellites, None, "first RMC released alone");
    assert_eq!(rs[1].satellites, Some(8));
    assert_eq!(rs[1].io[0], (IoKey::Name("talker".into()), text("GL")));
    assert!(rs[1]
        .io
        .contains(&(IoKey::Name("gga_talker".into()), text("GP"))));
}

#[test]
fn gga_only_epochs_take_the_nearest_day_around_midnight() {
    let rmc = sentence("GPRMC,235959.50,A,4807.038,N,01131.000,E,,,311299,,");
    let gga_after = sentence("GPGGA,000000.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
    let rs = records_of(&[&rmc, &gga_after], NOW);
    let times: Vec<_> = rs.iter().map(time).collect();
    assert_eq!(
        times,
        [
            Some("1999-12-31T23:59:59.500Z".to_owned()),
            Some("2000-01-01T00:00:00.500Z".to_owned())
        ]
    );

    // A late GGA of the old day after the new day's RMC goes back a day.
    let rmc_new = sentence("GPRMC,000001,A,4807.038,N,01131.000,E,,,010100,,");
    let gga_old = sentence("GPGGA,235958,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
    let rs = records_of(&[&rmc_new, &gga_old], NOW);
    assert_eq!(time(&rs[1]).as_deref(), Some("1999-12-31T23:59:58.000Z"));
}

#[test]
fn zda_lends_its_date_to_gga_only_receivers() {
    let zda = sentence("GNZDA,235959.00,31,12,1999,00,00");
    let gga = sentence("GNGGA,000001.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
    let rs = records_of(&[&zda, &gga], NOW);
    assert_eq!(time(&rs[0]).as_deref(), Some("2000-01-01T00:00:01.000Z"));
    // A bad ZDA is just another sentence: no problem, no date.
    let bad_zda = sentence("GNZDA,235959.00,32,12,1999,00,00");
    let rs = records_of(&[&bad_zda, &gga], NOW);
    assert_eq!(rs[0].time_ms, None);
}

#[test]
fn keep_raw_joins_the_epochs_sentences_in_arrival_order() {
    let opts = DecoderOptions {
        keep_raw: true,
        ..options()
    };
    let mut dec = NmeaDecoder::new(&opts);
    let gsv = sentence("GPGSV,1,1,01,10,63,137,17");
    let (rs, _) = decode_all(&mut dec, &stream(&[GGA_1, &gsv, RMC_1, RMC_2]), NOW_1994);
    assert_eq!(
        rs[0].raw.as_deref(),
        Some(format!("{GGA_1}\n{RMC_1}").as_str())
    );
    assert_eq!(rs[1].raw.as_deref(), Some(RMC_2));
}

#[test]
fn device_id_comes_from_the_config_or_is_unknown() {
    let mut dec = NmeaDecoder::new(&DecoderOptions::new(MAX));
    assert_eq!(dec.device_id(), None);
    let (rs, _) = decode_all(&mut dec, &stream(&[RMC_1, GGA_1]), NOW_1994);
    assert_eq!(rs[0].device_id, FALLBACK_DEVICE_ID);
    assert_eq!(FALLBACK_DEVICE_ID, "unknown");
    assert_eq!(decoder().device_id(), Some(DEVICE));
    assert_eq!(decoder().max_frame_bytes(), MAX);
}

#[test]
fn received_at_is_the_arrival_of_the_epochs_first_sentence() {
    let mut dec = decoder();
    let first = dec
        .decode(format!("{RMC_1}\r\n").as_bytes(), NOW_1994)
        .unwrap();
    assert!(first.unwrap().records.is_empty());
    let second = dec
        .decode(format!("{GGA_1}\r\n").as_bytes(), NOW_1994 + 250)
        .unwrap()
        .unwrap();
    assert_eq!(second.records[0].received_at_ms, NOW_1994);
}

#[test]
fn line_ends_bare_lf_blank_lines_and_a_missing_line_end_before_the_next_dollar() {
    let input = format!("\r\n\n{RMC_1}\n\r\n{GGA_1}{RMC_2}\r\n");
    let (rs, problems) = decode_all(&mut decoder(), input.as_bytes(), NOW_1994);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].satellites, Some(8));
    assert_eq!(time(&rs[1]).as_deref(), Some("1994-11-19T22:54:46.000Z"));
}

#[test]
fn week_rollover_is_flagged_not_fixed() {
    // 2019-04-07 rollover: a receiver reporting 1999-08-22 instead of 2019-04-07.
    let rmc = sentence("GPRMC,120000,A,4807.038,N,01131.000,E,,,220899,,");
    let rs = records_of(&[&rmc], NOW);
    assert_eq!(time(&rs[0]).as_deref(), Some("1999-08-22T12:00:00.000Z"));
    assert_eq!(
        rs[0].io.last(),
        Some(&(
            IoKey::Name("gps_week_rollover_suspected".into()),
            IoValue::U64(1)
        ))
    );
}

// ---------------------------------------------------------------------------------------
// Malformed input: always a problem frame, never Err; the stream goes on.

/// Decodes one frame at the front of `input` and expects a problem.
fn problem_of(dec: &mut NmeaDecoder, input: &[u8]) -> (usize, DecodeError) {
    let d = dec
        .decode(input, NOW)
        .expect("NMEA never returns Err")
        .expect("a frame");
    assert!(d.records.is_empty());
    assert_eq!(d.reply, Reply::default());
    (d.consumed, d.problem.expect("a problem"))
}

struct Bad {
    what: &'static str,
    line: String,
    offset: usize,
    reason: &'static str,
}

fn bad_lines() -> Vec<Bad> {
    let mut wrong_sum = RMC_1.to_owned();
    wrong_sum.replace_range(RMC_1.len() - 2.., "6B");
    let bad = |what, body: &str, offset, reason| Bad {
        what,
        line: sentence(body),
        offset,
        reason,
    };
    vec![
        Bad {
            what: "wrong checksum",
            line: wrong_sum,
            offset: 66,
            reason: "checksum 6B does not match 6A, the XOR of the sentence",
        },
        Bad {
            what: "no checksum",
            line: RMC_1[..RMC_1.len() - 3].to_owned(),
            offset: 65,
            reason: "sentence has no checksum (`*hh` before the line end)",
        },
        Bad {
            what: "checksum not hex",
            line: format!("{}*G1", &RMC_1[..RMC_1.len() - 3]),
            offset: 66,
            reason: "checksum field \"G1\" is not two hex digits",
        },
        Bad {
            what: "checksum with three digits",
            line: format!("{RMC_1}0"),
            offset: 66,
            reason: "checksum field \"6A0\" is not two hex digits",
        },
        Bad {
            what: "a control byte inside the sentence",
            line: format!("{}\u{1}{}", &RMC_1[..10], &RMC_1[10..]),
            offset: 10,
            reason: "byte 0x01 is not printable ASCII",
        },
        bad(
            "minutes of 60",
            "GPRMC,123519,A,4860.000,N,01131.000,E,022.4,084.4,230394,003.1,W",
            16,
            "RMC field 3 (latitude) \"4860.000\": expected ddmm.mmmm with minutes < 60",
        ),
        bad(
            "latitude beyond 90",
            "GPRMC,123519,A,9107.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
            16,
            "RMC field 3 (latitude) \"9107.038\": more than 90 degrees",
        ),
        bad(
            "hemisphere letter",
            "GPRMC,123519,A,4807.038,X,01131.000,E,022.4,084.4,230394,003.1,W",
            25,
            "RMC field 4 (latitude hemisphere) \"X\": expected N or S",
        ),
        bad(
            "exponent in a coordinate",
            "GPGGA,123519,4807.038,N,1e3,E,1,08,0.9,545.4,M,46.9,M,,",
            25,
            "GGA field 4 (longitude) \"1e3\": expected dddmm.mmmm with minutes < 60",
        ),
        bad(
            "hour 25",
            "GPRMC,253519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
            7,
            "RMC field 1 (UTC time) \"253519\": expected hhmmss(.sss), 25:35:19 is not a time of day",
        ),
        bad(
            "31 February",
            "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310294,003.1,W",
            51,
            "RMC field 9 (date) \"310294\": expected ddmmyy, day 31 is not in 1..=28 for 1994-02",
        ),
        bad(
            "29 February of a common year",
            "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,290223,003.1,W",
            51,
            "RMC field 9 (date) \"290223\": expected ddmmyy, day 29 is not in 1..=28 for 2023-02",
        ),
        bad(
            "status letter",
            "GPRMC,123519,X,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
            14,
            "RMC field 2 (status) \"X\": expected A or V",
        ),
        bad(
            "negative speed",
            "GPRMC,123519,A,4807.038,N,01131.000,E,-22.4,084.4,230394,003.1,W",
            39,
            "RMC field 7 (speed over ground, knots) \"-22.4\": expected an unsigned decimal number",
        ),
        bad(
            "course over 360",
            "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,400.0,230394,003.1,W",
            45,
            "RMC field 8 (course over ground) \"400.0\": more than 360 degrees",
        ),
        bad(
            "satellites over 255",
            "GPGGA,123519,4807.038,N,01131.000,E,1,300,0.9,545.4,M,46.9,M,,",
            39,
            "GGA field 7 (satellites in use) \"300\": more than 255",
        ),
        bad(
            "altitude in feet",
            "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,F,46.9,M,,",
            52,
            "GGA field 10 (altitude unit) \"F\": expected M",
        ),
        bad(
            "too few RMC fields",
            "GPRMC,123519,A,4807.038,N",
            26,
            "RMC has 4 fields, expected at least 9",
        ),
    ]
}

#[test]
fn bad_lines_are_problems_with_offsets_and_the_stream_goes_on() {
    for bad in bad_lines() {
        let mut dec = decoder();
        // A pending epoch survives a bad line in between.
        assert!(dec
            .decode(format!("{GGA_1}\r\n").as_bytes(), NOW)
            .unwrap()
            .unwrap()
            .records
            .is_empty());
        let input = format!("{}\r\n{RMC_1}\r\n", bad.line);
        let (consumed, e) = problem_of(&mut dec, input.as_bytes());
        assert_eq!(consumed, bad.line.len() + 2, "{}", bad.what);
        assert_eq!(e.reason, bad.reason, "{}", bad.what);
        assert_eq!(e.offset, bad.offset, "{}: {}", bad.what, bad.reason);
        let next = dec
            .decode(&input.as_bytes()[consumed..], NOW)
            .unwrap()
            .unwrap();
        assert!(next.problem.is_none(), "{}", bad.what);
        assert_eq!(next.records.len(), 1, "{}: epoch completed", bad.what);
        assert_eq!(next.records[0].satellites, Some(8));
    }
}

#[test]
fn a_missing_checksum_is_accepted_only_when_configured() {
    let bare = &RMC_1[..RMC_1.len() - 3];
    let mut dec = decoder().allow_missing_checksum(true);
    let (rs, problems) = decode_all(&mut dec, &stream(&[bare]), NOW_1994);
    assert!(problems.is_empty());
    assert_eq!(time(&rs[0]).as_deref(), Some("1994-03-23T12:35:19.000Z"));
    // A checksum that is there is still checked.
    let mut wrong = RMC_1.to_owned();
    wrong.replace_range(RMC_1.len() - 2.., "00");
    let (_, e) = problem_of(&mut dec, format!("{wrong}\r\n").as_bytes());
    assert!(e.reason.starts_with("checksum 00 does not match"), "{e}");
}

#[test]
fn bytes_before_a_dollar_are_skipped_as_one_problem() {
    // Joined mid-sentence: the tail of a GGA, then a whole RMC.
    let tail = "545.4,M,46.9,M,,*47\r\n";
    let input = format!("{tail}{RMC_1}\r\n");
    let mut dec = decoder();
    let (consumed, e) = problem_of(&mut dec, input.as_bytes());
    assert_eq!(consumed, tail.len());
    assert_eq!(e.offset, 0);
    assert_eq!(
        e.reason,
        "21 byte(s) outside a sentence skipped (expected `$`, got \"545.4,M,46.9,M,,\")"
    );

    // Binary noise up to a `$`: the `$` is kept.
    let mut noisy = vec![0x00, 0xff, 0xfe, 0x80];
    noisy.extend_from_slice(RMC_1.as_bytes());
    noisy.extend_from_slice(b"\r\n");
    let mut dec = decoder();
    let (consumed, e) = problem_of(&mut dec, &noisy);
    assert_eq!(consumed, 4);
    assert_eq!(
        e.reason,
        "4 byte(s) outside a sentence skipped (expected `$`, got 0x00fffe80)"
    );
    let d = dec.decode(&noisy[4..], NOW).unwrap().unwrap();
    assert!(d.problem.is_none());
    assert_eq!(d.consumed, RMC_1.len() + 2);

    // Noise without a `$` or line end yet: wait (bounded by the limit).
    assert_eq!(decoder().decode(b"\x00\x01garbage", NOW), Ok(None));
}

#[test]
fn a_sentence_cut_short_by_the_next_dollar_is_a_problem() {
    // Bytes lost on the wire: the RMC's end and line end are gone.
    let cut = &RMC_1[..30];
    let input = format!("{cut}{GGA_1}\r\n");
    let mut dec = decoder();
    let (consumed, e) = problem_of(&mut dec, input.as_bytes());
    assert_eq!(consumed, 30);
    assert_eq!(
        e.reason,
        "sentence has no checksum (`*hh` before the line end)"
    );
    let d = dec.decode(&input.as_bytes()[30..], NOW).unwrap().unwrap();
    assert!(d.problem.is_none());
}

#[test]
fn a_truncated_sentence_waits_for_more() {
    let mut dec = decoder();
    for end in 1..RMC_1.len() {
        assert_eq!(dec.decode(&RMC_1.as_bytes()[..end], NOW), Ok(None), "{end}");
    }
}

#[test]
fn an_endless_line_is_one_problem_then_dropped_until_the_next_dollar() {
    let mut dec = decoder();
    let mut input = b"$GPTXT,".to_vec();
    input.resize(3 * MAX + 7, b'A');
    // Not yet at the limit: wait.
    assert_eq!(dec.decode(&input[..MAX - 1], NOW), Ok(None));
    let (consumed, e) = problem_of(&mut dec, &input);
    assert_eq!(consumed, MAX);
    assert_eq!(e.offset, 0);
    assert_eq!(
        e.reason,
        format!("sentence has no line end within the limit of {MAX} bytes")
    );
    // The rest of that line goes silently, however it arrives, up to the next `$`.
    let mut rest = input[MAX..].to_vec();
    rest.extend_from_slice(format!("{RMC_1}\r\n{GGA_1}\r\n").as_bytes());
    let mut buf = rest[..10].to_vec();
    let mut frames = drain(&mut dec, &mut buf, NOW_1994);
    buf.extend_from_slice(&rest[10..]);
    frames.extend(drain(&mut dec, &mut buf, NOW_1994));
    assert!(frames.iter().all(|d| d.problem.is_none()));
    let records: Vec<&Record> = frames.iter().flat_map(|d| &d.records).collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].satellites, Some(8));
}

#[test]
fn endless_noise_is_one_problem_per_run() {
    let mut dec = decoder();
    let noise = vec![0xAAu8; 4 * MAX];
    let (consumed, e) = problem_of(&mut dec, &noise);
    assert_eq!(consumed, MAX);
    assert!(
        e.reason
            .starts_with(&format!("{MAX} byte(s) outside a sentence")),
        "{e}"
    );
    let mut rest = noise[MAX..].to_vec();
    rest.extend_from_slice(b"\r\n");
    let frames = drain(&mut dec, &mut rest, NOW);
    assert!(rest.is_empty());
    assert!(frames.iter().all(|d| d.problem.is_none()));
}

#[test]
fn tiny_limits_still_make_progress() {
    for max in [0, 1, 2, 8] {
        let mut dec = NmeaDecoder::new(&DecoderOptions::new(max));
        let input = stream(&[RMC_1, GGA_1]);
        let mut rest = &input[..];
        let mut calls = 0;
        while !rest.is_empty() {
            let d = dec
                .decode(rest, NOW)
                .unwrap()
                .expect("never need-more at the limit");
            assert!(d.consumed >= 1 && d.consumed <= max.max(1));
            rest = &rest[d.consumed..];
            calls += 1;
            assert!(calls <= input.len());
        }
    }
}

#[test]
fn unknown_talkers_and_proprietary_sentences_are_silent() {
    let lines = [
        sentence("IIRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
        sentence("PMTK001,314,3"),
        sentence("GPRMCX,1"),
        sentence(""),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (rs, problems) = decode_all(&mut decoder(), &stream(&refs), NOW);
    assert!(rs.is_empty() && problems.is_empty(), "{rs:?} {problems:?}");
}

// ---------------------------------------------------------------------------------------
// Properties.

fn check_stream(dec: &mut NmeaDecoder, input: &[u8]) -> Result<(), TestCaseError> {
    testkit::check_stream(dec, input, NOW, &Contract::SILENT_LINES).map(drop)
}

/// Bytes that look like NMEA often enough to reach the field parsers.
fn nmeaish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"$GPRMC,".to_vec()),
        Just(b"$GNGGA,".to_vec()),
        Just(b"*".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b",".to_vec()),
        "[0-9.NSEWAVM-]{0,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        max in 1usize..300,
    ) {
        check_stream(&mut NmeaDecoder::new(&DecoderOptions::new(max)), &bytes)?;
    }

    #[test]
    fn nmea_like_bytes_after_valid_sentences_never_panic(tail in nmeaish(), max in 16usize..200) {
        let mut input = stream(&[RMC_1, GGA_1]);
        input.extend_from_slice(&tail);
        let opts = DecoderOptions { keep_raw: true, ..DecoderOptions::new(max) };
        check_stream(&mut NmeaDecoder::new(&opts), &input)?;
    }

    #[test]
    fn sentences_round_trip(
        days in -365i64..36_159, // 1969-01-01..=2068-12-31: the two-digit year pivot
        ms_of_day in 0i64..86_400_000,
        lat in -89.999_999f64..89.999_999,
        lon in -179.999_999f64..179.999_999,
        knots in 0.0f64..500.0,
        course in 0.0f64..360.0,
        sats in 0u8..=40,
        hdop in 0.5f64..50.0,
        alt in -400.0f64..9000.0,
    ) {
        let t = days * 86_400_000 + ms_of_day / 10 * 10;
        let stamp = format_rfc3339_ms(t); // YYYY-MM-DDTHH:MM:SS.mmmZ
        let (y, rest) = stamp.split_at(4);
        let hhmmss = format!("{}{}{}.{}", &rest[7..9], &rest[10..12], &rest[13..15], &rest[16..18]);
        let ddmmyy = format!("{}{}{}", &rest[4..6], &rest[1..3], &y[2..]);
        let coord = |v: f64, width: usize| {
            let deg = v.abs().trunc();
            let min = (v.abs() - deg) * 60.0;
            format!("{:0width$}{:09.6}", deg as u32, min, width = width)
        };
        let ns = if lat < 0.0 { "S" } else { "N" };
        let ew = if lon < 0.0 { "W" } else { "E" };
        let (la, lo) = (coord(lat, 2), coord(lon, 3));
        let rmc = sentence(&format!(
            "GNRMC,{hhmmss},A,{la},{ns},{lo},{ew},{knots:.3},{course:.2},{ddmmyy},,,A,V"
        ));
        let gga = sentence(&format!(
            "GNGGA,{hhmmss},{la},{ns},{lo},{ew},1,{sats:02},{hdop:.2},{alt:.1},M,0.0,M,,"
        ));
        let (rs, problems) = decode_all(&mut decoder(), &stream(&[&rmc, &gga]), t);
        prop_assert!(problems.is_empty(), "{:?} {} {}", problems, rmc, gga);
        prop_assert_eq!(rs.len(), 1);
        let r = &rs[0];
        prop_assert_eq!(r.time_ms, Some(t));
        prop_assert!((r.lat.unwrap() - lat).abs() < 1e-7, "{} vs {}", r.lat.unwrap(), lat);
        prop_assert!((r.lon.unwrap() - lon).abs() < 1e-7);
        prop_assert!((r.speed_kmh.unwrap() - knots * 1.852).abs() < 0.001);
        prop_assert!((r.course_deg.unwrap() - course).abs() < 0.006);
        prop_assert_eq!(r.satellites, Some(sats));
        prop_assert!((r.hdop.unwrap() - hdop).abs() < 0.006);
        prop_assert!((r.altitude_m.unwrap() - alt).abs() < 0.06);
        prop_assert_eq!(r.valid, Some(true));
    }
}

#[test]
fn fields_past_the_known_ones_are_kept_in_io() {
    let rmc = sentence("GNRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A,S,X9,7");
    let gga = sentence("GNGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,,extra");
    let rs = records_of(&[&rmc, &gga], NOW_1994);
    let io = &rs[0].io;
    assert!(
        io.contains(&(IoKey::Name("rmc_extra".into()), text("X9,7"))),
        "{io:?}"
    );
    assert!(
        io.contains(&(IoKey::Name("gga_extra".into()), text("extra"))),
        "{io:?}"
    );
    assert!(
        io.contains(&(IoKey::Name("nav_status".into()), text("S"))),
        "{io:?}"
    );
}
