//! NMEA 0183 sentences besides RMC and GGA: GNS, GLL, VTG, GSA and ZDA, every GNSS talker, and
//! how they combine into one record per epoch. Sentences are built from the layouts in the
//! module doc of `firmware_protocols::nmea` (the NMEA 0183 field lists in receiver manuals);
//! checksums are computed here.

use firmware_protocols::nmea::NmeaDecoder;
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::testkit::{close, decode_whole, io};
use firmware_protocols::{DecodeError, DecoderOptions, IoValue, Record, StreamDecoder};

/// 2024-03-01T00:00:00Z.
const NOW: i64 = 1_709_251_200_000;

fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// Every line through one decoder, then `finish`: the records and the problems.
fn decode(bodies: &[&str]) -> (Vec<Record>, Vec<DecodeError>) {
    let options = DecoderOptions {
        device_id: Some("gnss-1".into()),
        ..DecoderOptions::new(256)
    };
    let mut dec = NmeaDecoder::new(&options);
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for body in bodies {
        let line = sentence(body);
        let d = decode_whole(&mut dec, line.as_bytes(), NOW, body);
        records.extend(d.records);
        problems.extend(d.problem);
    }
    records.extend(dec.finish(NOW));
    (records, problems)
}

fn one(bodies: &[&str]) -> Record {
    let (records, problems) = decode(bodies);
    assert!(problems.is_empty(), "{problems:?}");
    let [r] = &records[..] else {
        panic!("expected one record: {records:?}")
    };
    r.clone()
}

fn text(v: &str) -> IoValue {
    IoValue::Text(v.into())
}

#[test]
fn gll_alone_gives_position_and_time_with_the_zda_date() {
    let r = one(&[
        "GPZDA,225444.00,19,11,1994,00,00",
        "GPGLL,4916.45,N,12311.12,W,225444,A,A",
    ]);
    assert_eq!(
        r.time_ms.map(format_rfc3339_ms).as_deref(),
        Some("1994-11-19T22:54:44.000Z")
    );
    close(r.lat, 49.0 + 16.45 / 60.0);
    close(r.lon, -(123.0 + 11.12 / 60.0));
    assert_eq!(r.valid, Some(true));
    assert_eq!(io(&r, "talker"), Some(&text("GP")));
    assert_eq!(io(&r, "gll_status"), Some(&text("A")));
    assert_eq!(
        (r.speed_kmh, r.satellites),
        (None, None),
        "GLL carries neither"
    );
}

#[test]
fn gll_status_v_or_mode_n_is_no_fix() {
    for body in [
        "GNGLL,4916.45,N,12311.12,W,225444,V,A",
        "GNGLL,4916.45,N,12311.12,W,225444,A,N",
    ] {
        assert_eq!(one(&[body]).valid, Some(false), "{body}");
    }
}

#[test]
fn vtg_gives_speed_and_course_when_there_is_no_rmc() {
    let r = one(&[
        "GNGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GNVTG,054.7,T,034.4,M,005.5,N,010.2,K,A",
    ]);
    close(r.speed_kmh, 10.2);
    close(r.course_deg, 54.7);
    assert_eq!(io(&r, "course_magnetic_deg"), Some(&IoValue::F64(34.4)));
    assert_eq!(io(&r, "vtg_mode"), Some(&text("A")));
    assert_eq!(r.satellites, Some(8));
    // Without the km/h field, the knots are converted.
    let r = one(&[
        "GNGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GNVTG,054.7,T,,M,005.5,N,,K",
    ]);
    close(r.speed_kmh, 5.5 * 1.852);
    // An untimed sentence with no epoch open is no record of its own.
    let (records, problems) = decode(&["GNVTG,054.7,T,,M,005.5,N,,K"]);
    assert!(records.is_empty() && problems.is_empty());
}

#[test]
fn rmc_speed_wins_over_vtg() {
    let r = one(&[
        "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A",
        "GPVTG,090.0,T,,M,001.0,N,001.9,K,A",
    ]);
    close(r.speed_kmh, 22.4 * 1.852);
    close(r.course_deg, 84.4);
}

#[test]
fn gns_counts_like_gga() {
    let r = one(&[
        "GNRMC,093000.00,A,5230.0000,N,01324.0000,E,0.5,10.0,010324,,,D",
        "GNGNS,093000.00,5230.0000,N,01324.0000,E,DAN,14,0.8,34.5,39.1,2.0,0042,V",
    ]);
    assert_eq!(r.satellites, Some(14));
    close(r.hdop, 0.8);
    close(r.altitude_m, 34.5);
    assert_eq!(r.valid, Some(true), "GPS and GLONASS fixed, Galileo not");
    assert_eq!(io(&r, "gns_mode"), Some(&text("DAN")));
    assert_eq!(
        r.time_ms.map(format_rfc3339_ms).as_deref(),
        Some("2024-03-01T09:30:00.000Z")
    );
    // A GNS alone: its own position, no fix when every system says N.
    let r = one(&["GNGNS,093000.00,5230.0000,N,01324.0000,E,NNN,00,99.99,,,,,V"]);
    assert_eq!(r.valid, Some(false));
    close(r.lat, 52.5);
}

#[test]
fn gsa_fix_mode_dops_and_the_first_of_several_per_epoch() {
    let r = one(&[
        "GNRMC,093000.00,A,5230.0000,N,01324.0000,E,0.5,10.0,010324,,,A",
        "GNGSA,A,3,10,12,14,,,,,,,,,,1.9,1.1,1.5,1",
        "GNGSA,A,3,65,71,,,,,,,,,,,1.9,1.1,1.5,2",
    ]);
    assert_eq!(r.valid, Some(true));
    close(r.hdop, 1.1);
    assert_eq!(io(&r, "fix_mode"), Some(&IoValue::U64(3)));
    assert_eq!(io(&r, "selection_mode"), Some(&text("A")));
    assert_eq!(io(&r, "pdop"), Some(&IoValue::F64(1.9)));
    assert_eq!(io(&r, "vdop"), Some(&IoValue::F64(1.5)));
    assert_eq!(io(&r, "satellite_ids"), Some(&text("10,12,14")));
    assert_eq!(io(&r, "gnss_system_id"), Some(&text("1")));
    // Fix mode 1 says no fix, whatever the RMC says.
    let r = one(&[
        "GPRMC,093000.00,A,5230.0000,N,01324.0000,E,0.5,10.0,010324,,,A",
        "GPGSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9",
    ]);
    assert_eq!(r.valid, Some(false));
}

#[test]
fn rmc_mode_n_is_no_fix_even_with_status_a() {
    let r = one(&["GPRMC,093000.00,A,5230.0000,N,01324.0000,E,0.5,10.0,010324,,,N"]);
    assert_eq!(r.valid, Some(false));
}

#[test]
fn every_gnss_talker_decodes() {
    for talker in ["GP", "GN", "GL", "GA", "GB", "BD", "GQ"] {
        let rmc = format!("{talker}RMC,093000.00,A,5230.0000,N,01324.0000,E,0.5,10.0,010324,,,A");
        let gga =
            format!("{talker}GGA,093000.00,5230.0000,N,01324.0000,E,1,07,1.0,34.0,M,39.0,M,,");
        let r = one(&[&rmc, &gga]);
        assert_eq!(io(&r, "talker"), Some(&text(talker)));
        assert_eq!(r.satellites, Some(7), "{talker}");
        close(r.lat, 52.5);
    }
}

fn full_burst(hhmmss: &str) -> Vec<String> {
    vec![
        format!("GNRMC,{hhmmss}.00,A,5230.0000,N,01324.0000,E,12.0,270.0,010324,,,A,V"),
        "GNVTG,270.0,T,,M,12.0,N,22.2,K,A".into(),
        format!("GNGGA,{hhmmss}.00,5230.0000,N,01324.0000,E,1,09,1.1,34.0,M,39.0,M,,"),
        "GNGSA,A,3,10,12,14,24,25,32,,,,,,,1.9,1.1,1.5,1".into(),
        format!("GNGLL,5230.0000,N,01324.0000,E,{hhmmss}.00,A,A"),
        format!("GNGNS,{hhmmss}.00,5230.0000,N,01324.0000,E,AA,09,1.1,34.0,39.0,,,V"),
        format!("GNZDA,{hhmmss}.00,01,03,2024,00,00"),
    ]
}

/// The first epoch comes out once it has RMC and GGA (all that is known of the burst); what
/// follows it teaches the decoder the burst, and from the second epoch on every record has
/// every sentence's part and comes out with the burst's last member.
#[test]
fn a_full_burst_makes_one_record_with_every_sentences_part() {
    let lines: Vec<String> = full_burst("101500")
        .into_iter()
        .chain(full_burst("101501"))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (records, problems) = decode(&refs);
    assert!(problems.is_empty(), "{problems:?}");
    let [first, second] = &records[..] else {
        panic!("{records:?}")
    };
    for r in [first, second] {
        close(r.speed_kmh, 12.0 * 1.852);
        assert_eq!(r.satellites, Some(9));
        assert_eq!(r.valid, Some(true));
        close(r.lat, 52.5);
    }
    assert_eq!(
        second.time_ms.map(format_rfc3339_ms).as_deref(),
        Some("2024-03-01T10:15:01.000Z")
    );
    for name in ["pdop", "gns_mode", "gll_status", "vtg_mode", "fix_quality"] {
        assert!(
            io(second, name).is_some(),
            "{name} missing: {:?}",
            second.io
        );
    }
}

#[test]
fn bad_fields_of_the_new_sentences_are_problems_naming_the_field() {
    let cases = [
        (
            "GPVTG,400.0,T,,M,1.0,N,1.9,K,A",
            "VTG field 1 (course over ground)",
        ),
        ("GPVTG,10.0,X,,M,1.0,N,1.9,K,A", "VTG field 2 (unit)"),
        (
            "GPGSA,A,4,,,,,,,,,,,,,1.0,1.0,1.0",
            "GSA field 2 (fix mode)",
        ),
        ("GPGSA,A,3", "GSA has 2 fields, expected at least 17"),
        (
            "GPGLL,4916.45,N,12311.12,W,225444,X",
            "GLL field 6 (status)",
        ),
        (
            "GPGNS,225444,4916.45,N,12311.12,W,a1,08,1.0,10.0",
            "GNS field 6 (mode)",
        ),
    ];
    for (body, want) in cases {
        let (records, problems) = decode(&[body]);
        assert!(records.is_empty(), "{body}");
        let [p] = &problems[..] else {
            panic!("{body}: {problems:?}")
        };
        assert!(p.reason.starts_with(want), "{body}: {}", p.reason);
    }
}
