//! JSON lines decoder against the format's specification (the module doc of
//! `firmware_protocols::jsonl`, there being no vendor document), its RFC 3339 parser, stream
//! splitting, malformed lines, and properties (no panics, honest `consumed`, round trips).

use firmware_protocols::jsonl::{parse_rfc3339_ms, JsonlDecoder};
use firmware_protocols::record::{days_from_civil, format_rfc3339_ms};
use firmware_protocols::testkit::{
    self, name, records_fed_byte_by_byte, records_split_at_every_offset, Contract,
};
use firmware_protocols::{
    DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Protocol, Record, StreamDecoder,
};
use proptest::prelude::*;

/// 2024-03-01T00:00:00Z.
const NOW: i64 = 1_709_251_200_000;
const MAX: usize = 512;
const CONFIGURED: &str = "serial-sensor-1";

fn options() -> DecoderOptions {
    DecoderOptions {
        device_id: Some(CONFIGURED.into()),
        ..DecoderOptions::new(MAX)
    }
}

fn decoder() -> JsonlDecoder {
    JsonlDecoder::new(&options())
}

fn ms(text: &str) -> i64 {
    parse_rfc3339_ms(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn text(v: &str) -> IoValue {
    IoValue::Text(v.into())
}

/// Decodes every complete frame at the front of `buf`, like a session loop does.
fn drain(dec: &mut JsonlDecoder, buf: &mut Vec<u8>) -> Vec<Decoded> {
    testkit::drain_checked(dec, buf, NOW, &Contract::SILENT_LINES)
}

fn decode_all(dec: &mut JsonlDecoder, bytes: &[u8]) -> (Vec<Record>, Vec<DecodeError>) {
    testkit::decode_all(dec, bytes, NOW, &Contract::SILENT_LINES)
}

/// The one record of one line.
fn one(line: &str) -> Record {
    let (rs, problems) = decode_all(&mut decoder(), format!("{line}\n").as_bytes());
    assert!(problems.is_empty(), "{line}: {problems:?}");
    let [r] = &rs[..] else { panic!("{rs:?}") };
    r.clone()
}

struct Case {
    source: &'static str,
    line: &'static str,
    check: fn(&Record),
}

const CASES: &[Case] = &[
    Case {
        source: "spec: every record field, RFC 3339 with offset, io object",
        line: r#"{"device_id":"tank-7","time":"2024-03-01T12:00:00.250+01:00","valid":true,"lat":54.687157,"lon":-25.279652,"altitude_m":112.5,"speed_kmh":0,"course_deg":359.9,"satellites":11,"hdop":0.8,"event":"overfill","io":{"level_cm":131,"door":"open"}}"#,
        check: |r| {
            assert_eq!(r.device_id, "tank-7");
            assert_eq!(r.protocol, Protocol::Jsonl);
            assert_eq!(r.received_at_ms, NOW);
            assert_eq!(
                r.time_ms.map(format_rfc3339_ms).as_deref(),
                Some("2024-03-01T11:00:00.250Z")
            );
            assert_eq!(r.valid, Some(true));
            assert_eq!((r.lat, r.lon), (Some(54.687157), Some(-25.279652)));
            assert_eq!(r.altitude_m, Some(112.5));
            assert_eq!(r.speed_kmh, Some(0.0));
            assert_eq!(r.course_deg, Some(359.9));
            assert_eq!(r.satellites, Some(11));
            assert_eq!(r.hdop, Some(0.8));
            assert_eq!(r.event.as_deref(), Some("overfill"));
            assert_eq!(
                r.io,
                vec![
                    (name("level_cm"), IoValue::I64(131)),
                    (name("door"), text("open"))
                ]
            );
            assert_eq!(r.raw, None);
        },
    },
    Case {
        source: "spec: epoch milliseconds, configured device id, other top-level fields into io \
                 in line order with their value mapping",
        line: r#"{"temp_c":-3.5,"time":1709290800250,"count":42,"neg":-7,"big":18446744073709551615,"ok":true,"off":false,"gone":null,"tags":["a",1],"nested":{"b":2,"a":1},"name":"pump"}"#,
        check: |r| {
            assert_eq!(r.device_id, CONFIGURED);
            assert_eq!(r.time_ms, Some(1_709_290_800_250));
            assert_eq!(
                (r.lat, r.lon, r.valid, r.event.as_deref()),
                (None, None, None, None)
            );
            let want = vec![
                (name("temp_c"), IoValue::F64(-3.5)),
                (name("count"), IoValue::I64(42)),
                (name("neg"), IoValue::I64(-7)),
                (name("big"), IoValue::U64(u64::MAX)),
                (name("ok"), IoValue::U64(1)),
                (name("off"), IoValue::U64(0)),
                (name("tags"), text(r#"["a",1]"#)),
                (name("nested"), text(r#"{"a":1,"b":2}"#)),
                (name("name"), text("pump")),
            ];
            assert_eq!(r.io, want);
        },
    },
    Case {
        source: "spec: received_at, seq and protocol are the gateway's and ignored",
        line: r#"{"device_id":"d1","received_at":"2000-01-01T00:00:00Z","seq":99,"protocol":"teltonika","x":1}"#,
        check: |r| {
            assert_eq!(r.received_at_ms, NOW);
            assert_eq!(r.protocol, Protocol::Jsonl);
            assert_eq!(r.io, vec![(name("x"), IoValue::I64(1))]);
        },
    },
    Case {
        source: "spec: null is absent; an empty event is no event; io null; Z lower case",
        line: r#"{"device_id":null,"time":"2024-02-29t23:59:59z","lat":null,"valid":null,"event":"","io":null,"satellites":null}"#,
        check: |r| {
            assert_eq!(r.device_id, CONFIGURED);
            assert_eq!(r.time_ms, Some(ms("2024-02-29T23:59:59Z")));
            assert_eq!(
                (r.lat, r.valid, r.satellites, r.event.as_deref()),
                (None, None, None, None)
            );
            assert!(r.io.is_empty());
        },
    },
    Case {
        source: "spec: a numeric device id (an IMEI written as a number), io members then later \
                 top-level fields",
        line: r#" {"device_id":356307042441013,"a":1,"io":{"b":2.5,"c":"x"},"d":[]} "#,
        check: |r| {
            assert_eq!(r.device_id, "356307042441013");
            assert_eq!(
                r.io,
                vec![
                    (name("a"), IoValue::I64(1)),
                    (name("b"), IoValue::F64(2.5)),
                    (name("c"), text("x")),
                    (name("d"), text("[]")),
                ]
            );
        },
    },
    Case {
        source: "spec: range edges are inside",
        line: r#"{"lat":-90,"lon":180,"course_deg":360,"satellites":255,"speed_kmh":0.0,"hdop":0}"#,
        check: |r| {
            assert_eq!((r.lat, r.lon), (Some(-90.0), Some(180.0)));
            assert_eq!((r.course_deg, r.satellites), (Some(360.0), Some(255)));
        },
    },
];

#[test]
fn spec_lines_decode() {
    for case in CASES {
        eprintln!("case: {}", case.source);
        (case.check)(&one(case.line));
    }
}

#[test]
fn every_case_decodes_the_same_byte_by_byte_split_anywhere_and_with_crlf() {
    let mut session = String::new();
    for case in CASES {
        session.push_str(case.line);
        session.push_str("\r\n\n  \t\r\n");
    }
    let bytes = session.into_bytes();
    let (whole, problems) = decode_all(&mut decoder(), &bytes);
    assert!(problems.is_empty());
    assert_eq!(whole.len(), CASES.len());
    for (case, r) in CASES.iter().zip(&whole) {
        (case.check)(r);
    }

    let contract = Contract::SILENT_LINES;
    let bytewise = records_fed_byte_by_byte(&mut decoder(), &bytes, NOW, &contract);
    assert_eq!(bytewise, whole);
    records_split_at_every_offset(decoder, &bytes, NOW, &contract);
}

#[test]
fn keep_raw_is_the_line_without_its_line_end() {
    let line = r#"{"device_id":"d1","v":1}"#;
    let opts = DecoderOptions {
        keep_raw: true,
        ..options()
    };
    let (rs, _) = decode_all(
        &mut JsonlDecoder::new(&opts),
        format!("{line}\r\n").as_bytes(),
    );
    assert_eq!(rs[0].raw.as_deref(), Some(line));
}

#[test]
fn device_id_is_the_last_lines_else_the_configured_one() {
    let mut dec = decoder();
    assert_eq!(dec.device_id(), Some(CONFIGURED));
    decode_all(&mut dec, b"{\"device_id\":\"a\"}\n");
    assert_eq!(dec.device_id(), Some("a"));
    decode_all(&mut dec, b"{}\n");
    assert_eq!(dec.device_id(), Some(CONFIGURED));
    assert_eq!(dec.max_frame_bytes(), MAX);

    let mut bare = JsonlDecoder::new(&DecoderOptions::new(MAX));
    assert_eq!(bare.device_id(), None);
    let (rs, problems) = decode_all(&mut bare, b"{\"lat\":1}\n{\"device_id\":\"b\"}\n");
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].device_id, "b");
    assert_eq!(
        problems,
        [DecodeError::new(
            0,
            "no device_id: the line has none and none is configured"
        )]
    );
}

#[test]
fn blank_lines_are_skipped_silently() {
    let (rs, problems) = decode_all(&mut decoder(), b"\n\r\n   \n\t\r\n");
    assert!(rs.is_empty() && problems.is_empty());
}

// ---------------------------------------------------------------------------------------
// Malformed lines: a problem each, never Err; the next line decodes.

struct Bad {
    what: &'static str,
    line: &'static [u8],
    offset: usize,
    reason: &'static str,
}

const BAD: &[Bad] = &[
    Bad {
        what: "not JSON",
        line: b"hello",
        offset: 0,
        reason: "not a JSON object: expected value",
    },
    Bad {
        what: "an array",
        line: b"[1,2]",
        offset: 0,
        reason: "invalid type: sequence, expected one JSON object per line",
    },
    Bad {
        what: "a number",
        line: b"42",
        offset: 1,
        reason: "invalid type: integer `42`, expected one JSON object per line",
    },
    Bad {
        what: "object cut short",
        line: br#"{"device_id":"d1","lat":54."#,
        offset: 26,
        reason: "not a JSON object: EOF while parsing a value",
    },
    Bad {
        what: "two objects on one line",
        line: br#"{"a":1}{"b":2}"#,
        offset: 7,
        reason: "not a JSON object: trailing characters",
    },
    Bad {
        what: "invalid UTF-8 in a string",
        line: b"{\"a\":\"\xff\"}",
        offset: 6,
        reason: "not a JSON object: invalid unicode code point",
    },
    Bad {
        what: "latitude out of range",
        line: br#"{"lat":91.5,"lon":0}"#,
        offset: 10,
        reason: "lat 91.5 is out of range -90..=90",
    },
    Bad {
        what: "longitude wrongly typed",
        line: br#"{"lat":0,"lon":"25.3"}"#,
        offset: 21,
        reason: "lon must be a number, got \"25.3\"",
    },
    Bad {
        what: "negative speed",
        line: br#"{"speed_kmh":-1}"#,
        offset: 15,
        reason: "speed_kmh -1 is out of range at least 0",
    },
    Bad {
        what: "course over 360",
        line: br#"{"course_deg":360.5}"#,
        offset: 19,
        reason: "course_deg 360.5 is out of range 0..=360",
    },
    Bad {
        what: "satellites over 255",
        line: br#"{"satellites":300}"#,
        offset: 17,
        reason: "satellites must be an integer 0..=255, got 300",
    },
    Bad {
        what: "satellites fractional",
        line: br#"{"satellites":7.5}"#,
        offset: 17,
        reason: "satellites must be an integer 0..=255, got 7.5",
    },
    Bad {
        what: "valid as a string",
        line: br#"{"valid":"yes"}"#,
        offset: 14,
        reason: "valid must be a boolean, got \"yes\"",
    },
    Bad {
        what: "time without a zone",
        line: br#"{"time":"2024-03-01T12:00:00"}"#,
        offset: 29,
        reason: "time \"2024-03-01T12:00:00\" is not RFC 3339: expected 'Z' or an offset like +02:00 at offset 19",
    },
    Bad {
        what: "time on 30 February",
        line: br#"{"time":"2024-02-30T12:00:00Z"}"#,
        offset: 30,
        reason: "time \"2024-02-30T12:00:00Z\" is not RFC 3339: day 30 is not in 01..=29 for 2024-02",
    },
    Bad {
        what: "time as fractional milliseconds",
        line: br#"{"time":1709290800250.5}"#,
        offset: 23,
        reason: "time 1709290800250.5 is not integer epoch milliseconds within years 0000..=9999",
    },
    Bad {
        what: "time past year 9999",
        line: br#"{"time":253402300800000}"#,
        offset: 23,
        reason: "time 253402300800000 is not integer epoch milliseconds within years 0000..=9999",
    },
    Bad {
        what: "time as a boolean",
        line: br#"{"time":true}"#,
        offset: 12,
        reason: "time must be an RFC 3339 string or epoch milliseconds, got true",
    },
    Bad {
        what: "device_id empty",
        line: br#"{"device_id":""}"#,
        offset: 15,
        reason: "device_id is empty",
    },
    Bad {
        what: "device_id an object",
        line: br#"{"device_id":{"imei":1}}"#,
        offset: 23,
        reason: "device_id must be a string, got {\"imei\":1}",
    },
    Bad {
        what: "event a number",
        line: br#"{"event":5}"#,
        offset: 10,
        reason: "event must be a string, got 5",
    },
    Bad {
        what: "io not an object",
        line: br#"{"io":[1]}"#,
        offset: 6,
        reason: "invalid type: sequence, expected io to be a JSON object",
    },
    Bad {
        what: "a record field twice",
        line: br#"{"lat":1,"lat":2}"#,
        offset: 13,
        reason: "field lat appears twice",
    },
    Bad {
        what: "an io key twice",
        line: br#"{"x":1,"io":{"x":2}}"#,
        offset: 0,
        reason: "io key \"x\" appears twice (top level and io, or twice in io)",
    },
];

#[test]
fn bad_lines_are_problems_naming_the_field_and_the_stream_goes_on() {
    for bad in BAD {
        let mut input = bad.line.to_vec();
        input.extend_from_slice(b"\r\n{\"n\":1}\n");
        let mut dec = decoder();
        let d = dec.decode(&input, NOW).unwrap().unwrap();
        assert!(d.records.is_empty(), "{}", bad.what);
        assert_eq!(d.consumed, bad.line.len() + 2, "{}", bad.what);
        let e = d
            .problem
            .unwrap_or_else(|| panic!("{}: no problem", bad.what));
        assert_eq!(e.reason, bad.reason, "{}", bad.what);
        assert_eq!(e.offset, bad.offset, "{}: {}", bad.what, bad.reason);
        let next = dec.decode(&input[d.consumed..], NOW).unwrap().unwrap();
        assert!(next.problem.is_none());
        assert_eq!(next.records[0].io, vec![(name("n"), IoValue::I64(1))]);
    }
}

#[test]
fn a_line_without_its_end_waits() {
    let line = br#"{"device_id":"d1","lat":54.1}"#;
    let mut dec = decoder();
    for end in 1..=line.len() {
        assert_eq!(dec.decode(&line[..end], NOW), Ok(None));
    }
}

#[test]
fn an_endless_line_is_one_problem_then_dropped_through_the_next_newline() {
    let mut input = br#"{"device_id":"d1","blob":""#.to_vec();
    input.resize(3 * MAX + 11, b'x');
    // A tail that would parse on its own must not become a record.
    input.extend_from_slice(b"\",\"tail\":1}\n{\"n\":2}\n");
    let mut dec = decoder();
    assert_eq!(dec.decode(&input[..MAX - 1], NOW), Ok(None));
    let d = dec.decode(&input, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, MAX);
    assert_eq!(
        d.problem,
        Some(DecodeError::new(
            0,
            format!("line has no line end (\\n) within the limit of {MAX} bytes")
        ))
    );
    let mut rest = input[MAX..].to_vec();
    let frames = drain(&mut dec, &mut rest);
    assert!(frames.iter().all(|d| d.problem.is_none()));
    let records: Vec<&Record> = frames.iter().flat_map(|d| &d.records).collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].io, vec![(name("n"), IoValue::I64(2))]);
}

#[test]
fn tiny_limits_still_make_progress() {
    for max in [0, 1, 2, 5] {
        let mut dec = JsonlDecoder::new(&DecoderOptions::new(max));
        let input = b"{\"device_id\":\"d\"}\n{}\n";
        let mut rest = &input[..];
        while !rest.is_empty() {
            let d = dec
                .decode(rest, NOW)
                .unwrap()
                .expect("never need-more at the limit");
            assert!(d.consumed >= 1 && d.consumed <= max.max(1));
            rest = &rest[d.consumed..];
        }
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3339.

#[test]
fn rfc3339_accepts_the_forms_the_spec_allows() {
    let day = |y, m, d| days_from_civil(y, m, d) * 86_400_000;
    let cases: &[(&str, i64)] = &[
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2019-06-10T10:04:46Z", 1_560_161_086_000),
        ("2019-06-10T10:04:46.5Z", 1_560_161_086_500),
        ("2019-06-10T10:04:46.05Z", 1_560_161_086_050),
        ("2019-06-10T10:04:46.123456789Z", 1_560_161_086_123),
        ("2019-06-10T10:04:46.000001Z", 1_560_161_086_000),
        ("2019-06-10t10:04:46z", 1_560_161_086_000),
        // Offsets: local time minus the offset is UTC.
        ("2019-06-10T12:04:46+02:00", 1_560_161_086_000),
        ("2019-06-10T04:34:46-05:30", 1_560_161_086_000),
        ("2019-06-10T10:04:46-00:00", 1_560_161_086_000),
        ("2019-06-10T10:04:46+00:00", 1_560_161_086_000),
        ("2024-03-01T00:30:00+01:00", day(2024, 2, 29) + 84_600_000),
        ("2023-12-31T23:00:00-01:00", day(2024, 1, 1)),
        (
            "2019-06-10T23:59:59.999+23:59",
            day(2019, 6, 10) + 86_399_999 - 86_340_000,
        ),
        // Leap years.
        ("2000-02-29T00:00:00Z", day(2000, 2, 29)),
        ("2024-02-29T12:00:00Z", day(2024, 2, 29) + 43_200_000),
        ("2400-02-29T00:00:00Z", day(2400, 2, 29)),
        ("1600-02-29T00:00:00Z", day(1600, 2, 29)),
        // A leap second lands on the next second.
        ("2016-12-31T23:59:60Z", day(2017, 1, 1)),
        // The ends of the range.
        ("0000-01-01T00:00:00Z", -62_167_219_200_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ];
    for &(text, want) in cases {
        assert_eq!(parse_rfc3339_ms(text), Ok(want), "{text}");
    }
}

#[test]
fn rfc3339_rejects_with_a_reason() {
    let cases: &[(&str, &str)] = &[
        ("", "expected 4 digits of year at offset 0"),
        (
            "2024-3-01T00:00:00Z",
            "expected 2 digits of month at offset 5",
        ),
        (
            "24-03-01T00:00:00Z",
            "expected 4 digits of year at offset 0",
        ),
        ("2024/03/01T00:00:00Z", "expected '-' at offset 4"),
        ("2024-03-01 00:00:00Z", "expected 'T' at offset 10"),
        ("2024-03-01T00:00Z", "expected ':' at offset 16"),
        (
            "2024-03-01T00:00:00",
            "expected 'Z' or an offset like +02:00 at offset 19",
        ),
        (
            "2024-03-01T00:00:00.Z",
            "expected fraction digits at offset 20",
        ),
        (
            "2024-03-01T00:00:00+0100",
            "expected ':' in the offset at offset 22",
        ),
        (
            "2024-03-01T00:00:00+01",
            "expected ':' in the offset at offset 22",
        ),
        (
            "2024-03-01T00:00:00+1:00",
            "expected 2 digits of offset hours at offset 20",
        ),
        ("2024-03-01T00:00:00+24:00", "offset 24:00 is out of range"),
        ("2024-03-01T00:00:00+01:60", "offset 01:60 is out of range"),
        (
            "2024-03-01T00:00:00ZZ",
            "unexpected text after the time zone at offset 20",
        ),
        (
            "2024-03-01T00:00:00Z ",
            "unexpected text after the time zone at offset 20",
        ),
        (
            " 2024-03-01T00:00:00Z",
            "expected 4 digits of year at offset 0",
        ),
        ("2024-13-01T00:00:00Z", "month 13 is not 01..=12"),
        ("2024-00-01T00:00:00Z", "month 00 is not 01..=12"),
        (
            "2024-04-31T00:00:00Z",
            "day 31 is not in 01..=30 for 2024-04",
        ),
        (
            "2024-01-00T00:00:00Z",
            "day 00 is not in 01..=31 for 2024-01",
        ),
        (
            "2023-02-29T00:00:00Z",
            "day 29 is not in 01..=28 for 2023-02",
        ),
        (
            "1900-02-29T00:00:00Z",
            "day 29 is not in 01..=28 for 1900-02",
        ),
        (
            "2100-02-29T00:00:00Z",
            "day 29 is not in 01..=28 for 2100-02",
        ),
        ("2024-03-01T24:00:00Z", "24:00:00 is not a time of day"),
        ("2024-03-01T12:60:00Z", "12:60:00 is not a time of day"),
        ("2024-03-01T12:00:61Z", "12:00:61 is not a time of day"),
        (
            "-2024-03-01T00:00:00Z",
            "expected 4 digits of year at offset 0",
        ),
        (
            "+2024-03-01T00:00:00Z",
            "expected 4 digits of year at offset 0",
        ),
        (
            "２０２４-03-01T00:00:00Z",
            "expected 4 digits of year at offset 0",
        ),
        (
            "2024-03-01T00:00:00.５Z",
            "expected fraction digits at offset 20",
        ),
    ];
    for &(input, why) in cases {
        assert_eq!(parse_rfc3339_ms(input), Err(why.to_owned()), "{input:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

fn check_stream(dec: &mut JsonlDecoder, input: &[u8]) -> Result<(), TestCaseError> {
    testkit::check_stream(dec, input, NOW, &Contract::SILENT_LINES).map(drop)
}

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\"lat\":".to_vec()),
        Just(b"\"time\":".to_vec()),
        Just(b"\"io\":".to_vec()),
        Just(b"\"device_id\":".to_vec()),
        "[0-9.,:\"a-z\\[\\]TZ+-]{0,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// An RFC 3339 form of `ms` with a `±hh:mm` offset of `offset_min` minutes.
fn with_offset(ms: i64, offset_min: i64) -> String {
    let local = format_rfc3339_ms(ms + offset_min * 60_000);
    let sign = if offset_min < 0 { '-' } else { '+' };
    let abs = offset_min.abs();
    format!("{}{sign}{:02}:{:02}", &local[..23], abs / 60, abs % 60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        max in 1usize..300,
    ) {
        check_stream(&mut JsonlDecoder::new(&DecoderOptions::new(max)), &bytes)?;
    }

    #[test]
    fn json_like_bytes_after_a_valid_line_never_panic(tail in jsonish(), max in 8usize..200) {
        let mut input = br#"{"device_id":"d","lat":1}"#.to_vec();
        input.push(b'\n');
        input.extend_from_slice(&tail);
        let opts = DecoderOptions { keep_raw: true, ..options() };
        let mut dec = JsonlDecoder::new(&DecoderOptions { max_frame_bytes: max, ..opts });
        check_stream(&mut dec, &input)?;
    }

    #[test]
    fn rfc3339_round_trips_through_the_record_formatter(
        ms in -62_167_219_200_000i64..=253_402_300_799_999,
    ) {
        prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Ok(ms));
    }

    #[test]
    fn rfc3339_offsets_shift_local_time_to_utc(
        ms in 0i64..=4_102_444_800_000,
        offset_min in -(23 * 60 + 59)..=(23i64 * 60 + 59),
    ) {
        let text = with_offset(ms, offset_min);
        prop_assert_eq!(parse_rfc3339_ms(&text), Ok(ms), "{}", text);
    }

    #[test]
    fn records_round_trip_through_json(
        device in "[a-z0-9-]{1,20}",
        ms in 0i64..4_102_444_800_000,
        valid in any::<bool>(),
        lat in -90.0f64..=90.0,
        lon in -180.0f64..=180.0,
        altitude in -1000.0f64..10_000.0,
        speed in 0.0f64..400.0,
        course in 0.0f64..=360.0,
        satellites in any::<u8>(),
        hdop in 0.0f64..100.0,
        event in proptest::option::of("[a-z_]{1,12}"),
        io in proptest::collection::vec(("[a-z]{1,8}", any::<i64>()), 0..6),
        as_text in any::<bool>(),
    ) {
        let mut map = serde_json::Map::new();
        map.insert("device_id".into(), device.clone().into());
        let time = if as_text {
            format_rfc3339_ms(ms).into()
        } else {
            serde_json::Value::from(ms)
        };
        map.insert("time".into(), time);
        map.insert("valid".into(), valid.into());
        map.insert("lat".into(), lat.into());
        map.insert("lon".into(), lon.into());
        map.insert("altitude_m".into(), altitude.into());
        map.insert("speed_kmh".into(), speed.into());
        map.insert("course_deg".into(), course.into());
        map.insert("satellites".into(), satellites.into());
        map.insert("hdop".into(), hdop.into());
        map.insert("event".into(), event.clone().into());
        let mut io_map = serde_json::Map::new();
        for (k, v) in &io {
            io_map.insert(format!("io_{k}"), (*v).into());
        }
        map.insert("io".into(), io_map.clone().into());
        let line = format!("{}\n", serde_json::Value::Object(map));
        let opts = DecoderOptions { max_frame_bytes: 4096, ..options() };
        let (rs, problems) = decode_all(&mut JsonlDecoder::new(&opts), line.as_bytes());
        prop_assert!(problems.is_empty(), "{:?} {}", problems, line);
        let r = &rs[0];
        prop_assert_eq!(&r.device_id, &device);
        prop_assert_eq!(r.time_ms, Some(ms));
        prop_assert_eq!(r.valid, Some(valid));
        // serde_json's default float parser may be one unit in the last place off (exact
        // round trips need its `float_roundtrip` feature); 1e-14 degrees is nothing.
        let same = |got: Option<f64>, want: f64| {
            got.is_some_and(|g| (g - want).abs() <= want.abs() * 4.0 * f64::EPSILON)
        };
        prop_assert!(same(r.lat, lat) && same(r.lon, lon), "{:?} {:?}", r.lat, r.lon);
        prop_assert!(same(r.altitude_m, altitude) && same(r.speed_kmh, speed));
        prop_assert!(same(r.course_deg, course) && same(r.hdop, hdop));
        prop_assert_eq!(r.satellites, Some(satellites));
        prop_assert_eq!(&r.event, &event);
        let want: Vec<(IoKey, IoValue)> = io_map
            .iter()
            .map(|(k, v)| (IoKey::Name(k.clone()), IoValue::I64(v.as_i64().unwrap())))
            .collect();
        prop_assert_eq!(&r.io, &want);
    }
}
