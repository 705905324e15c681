//! Wialon IPS decoder against the fact sheet's frames (shared/protocols/wialon-ips.md), stream
//! splitting, whole sessions, and the malformed-input rules: which faults are a `problem`
//! answered with the protocol's error code, and which close the connection (`Err`).
//!
//! v2.0 CRC values written as literals below were computed for this test with an independent
//! bitwise CRC-16/ARC (check value 0xBB3D); the login one is the sheet's own worked value.

use firmware_protocols::capture_battery;
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::testkit::{self, decode_whole, Battery, Capture, Contract, Frame};
use firmware_protocols::wialon::encode::{self, Extended, Message, Param};
use firmware_protocols::wialon::{ProtocolVersion, WialonDecoder};
use firmware_protocols::{
    DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Record, Reply, StreamDecoder,
};

const NOW: i64 = 1_700_000_000_000;
const MAX: usize = 1024;
const IMEI: &str = "356307042441013";
/// 2013-04-27T20:56:01Z, the documents' sample time.
const DOC_TIME: i64 = 1_367_096_161_000;

const LOGIN_V1: &str = "#L#356307042441013;NA\r\n";
const LOGIN_V2_SHEET: &str = "#L#2.0;123456789012345;NA;15CD\r\n";
const LOGIN_V2: &str = "#L#2.0;356307042441013;secret;799E\r\n";
const SD_DOC: &str = "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n";
const D_DOC: &str = "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.0;0;0;14.77,0.02,3.6;NA;count1:1:564,fuel:2:45.8,hw:3:V4.5\r\n";
const SD_DOC_V2: &str = "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;1985\r\n";
const D_DOC_V2: &str = "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.0;0;0;14.77,0.02,3.6;NA;count1:1:564,fuel:2:45.8,hw:3:V4.5;E499\r\n";
const B_V2: &str = "#B#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4|270413;205701;5544.6100;N;03739.7000;E;5;90;3;6|7981\r\n";
const M_V2: &str = "#M#Hello driver;0798\r\n";

fn options() -> DecoderOptions {
    DecoderOptions::new(MAX)
}

fn fresh() -> WialonDecoder {
    WialonDecoder::new(&options())
}

/// A decoder that has accepted `login`.
fn session(login: &str) -> WialonDecoder {
    let mut dec = fresh();
    let d = whole(&mut dec, login.as_bytes());
    assert!(d.login.is_some(), "login refused: {:?}", d.problem);
    dec
}

fn v1() -> WialonDecoder {
    session(LOGIN_V1)
}

fn v2() -> WialonDecoder {
    session(LOGIN_V2)
}

/// Decodes `frame`, which must be exactly one packet.
fn whole(dec: &mut WialonDecoder, frame: &[u8]) -> Decoded {
    decode_whole(dec, frame, NOW, &String::from_utf8_lossy(frame))
}

fn reply(yes: &str, no: &str) -> Reply {
    Reply {
        accepted: Some(yes.as_bytes().to_vec()),
        refused: Some(no.as_bytes().to_vec()),
    }
}

fn name(n: &str) -> IoKey {
    IoKey::Name(n.to_owned())
}

fn near(got: Option<f64>, want: f64) {
    let got = got.expect("a value");
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

/// The sheet's sample position (§8), shared by SD, D and black-box messages.
fn assert_doc_position(r: &Record) {
    assert_eq!(r.device_id, IMEI);
    assert_eq!(r.received_at_ms, NOW);
    assert_eq!(
        r.time_ms.map(format_rfc3339_ms).as_deref(),
        Some("2013-04-27T20:56:01.000Z")
    );
    near(r.lat, 55.743375);
    near(r.lon, 37.66139);
    assert_eq!(
        (r.speed_kmh, r.course_deg, r.altitude_m),
        (Some(1.0), Some(2.0), Some(3.0))
    );
    assert_eq!(r.satellites, Some(4));
    assert_eq!(r.valid, Some(true));
    assert_eq!(r.event, None);
}

fn doc_params_io() -> Vec<(IoKey, IoValue)> {
    vec![
        (name("inputs"), IoValue::U64(0)),
        (name("outputs"), IoValue::U64(0)),
        (name("adc1"), IoValue::F64(14.77)),
        (name("adc2"), IoValue::F64(0.02)),
        (name("adc3"), IoValue::F64(3.6)),
        (name("count1"), IoValue::I64(564)),
        (name("fuel"), IoValue::F64(45.8)),
        (name("hw"), IoValue::Text("V4.5".into())),
    ]
}

#[derive(Clone, Copy)]
enum Start {
    Fresh,
    V1,
    V2,
}

const CASES: &[Capture<Start>] = &[
    Capture {
        source: "§2 login v1.1 (imei;password, password NA)",
        start: Start::Fresh,
        frame: Frame::Text(LOGIN_V1),
        check: |d| {
            assert_eq!(d.login.as_deref(), Some(IMEI));
            assert!(d.records.is_empty() && d.problem.is_none());
            assert_eq!(d.reply, reply("#AL#1\r\n", "#AL#0\r\n"));
        },
    },
    Capture {
        source: "§5 worked login v2.0 with CRC 15CD",
        start: Start::Fresh,
        frame: Frame::Text(LOGIN_V2_SHEET),
        check: |d| {
            assert_eq!(d.login.as_deref(), Some("123456789012345"));
            assert_eq!(d.reply, reply("#AL#1\r\n", "#AL#0\r\n"));
        },
    },
    Capture {
        source: "§8 documentation-style short data",
        start: Start::V1,
        frame: Frame::Text(SD_DOC),
        check: |d| {
            assert_eq!(d.reply, reply("#ASD#1\r\n", "#ASD#0\r\n"));
            assert_eq!(d.records.len(), 1);
            let r = &d.records[0];
            assert_doc_position(r);
            assert_eq!(r.hdop, None);
            assert!(r.io.is_empty());
            assert_eq!(r.raw, None);
        },
    },
    Capture {
        source: "§8 extended data with the doc's params example",
        start: Start::V1,
        frame: Frame::Text(D_DOC),
        check: |d| {
            assert_eq!(d.reply, reply("#AD#1\r\n", "#AD#0\r\n"));
            let r = &d.records[0];
            assert_doc_position(r);
            assert_eq!(r.hdop, Some(0.0));
            assert_eq!(r.io, doc_params_io());
        },
    },
    Capture {
        source: "§8 ping",
        start: Start::V1,
        frame: Frame::Text("#P#\r\n"),
        check: |d| {
            assert!(d.records.is_empty() && d.problem.is_none() && d.login.is_none());
            assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AP#\r\n"[..]));
            assert_eq!(d.reply.refused, None);
        },
    },
    Capture {
        source: "§4/§8 black box with 3 messages (SD, SD, D) -> #AB#3",
        start: Start::V1,
        frame: Frame::Text("#B#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4|270413;205701;5544.6100;N;03739.7000;E;5;90;3;6|270413;205801;5544.6200;N;03739.7100;E;7;91;3;8;1.2;1;0;12.5;NA;fuel:2:40\r\n"),
        check: |d| {
            assert_eq!(d.reply, reply("#AB#3\r\n", "#AB#0\r\n"));
            assert_eq!(d.records.len(), 3);
            assert_doc_position(&d.records[0]);
            let times: Vec<i64> = d.records.iter().map(|r| r.time_ms.unwrap()).collect();
            assert_eq!(times, [DOC_TIME, DOC_TIME + 60_000, DOC_TIME + 120_000]);
            assert_eq!(d.records[1].speed_kmh, Some(5.0));
            assert_eq!(d.records[2].hdop, Some(1.2));
            assert_eq!(
                d.records[2].io,
                [
                    (name("inputs"), IoValue::U64(1)),
                    (name("outputs"), IoValue::U64(0)),
                    (name("adc1"), IoValue::F64(12.5)),
                    (name("fuel"), IoValue::F64(40.0)),
                ]
            );
        },
    },
    Capture {
        source: "§3 + §5 the §8 short data in v2.0 (CRC 1985)",
        start: Start::V2,
        frame: Frame::Text(SD_DOC_V2),
        check: |d| {
            assert_eq!(d.reply, reply("#ASD#1\r\n", "#ASD#0\r\n"));
            assert_doc_position(&d.records[0]);
        },
    },
    Capture {
        source: "§3 + §5 the §8 extended data in v2.0 (CRC E499)",
        start: Start::V2,
        frame: Frame::Text(D_DOC_V2),
        check: |d| {
            assert_eq!(d.reply, reply("#AD#1\r\n", "#AD#0\r\n"));
            assert_doc_position(&d.records[0]);
            assert_eq!(d.records[0].io, doc_params_io());
        },
    },
    Capture {
        source: "§4 + §5 black box v2.0, CRC after the final '|'",
        start: Start::V2,
        frame: Frame::Text(B_V2),
        check: |d| {
            assert_eq!(d.reply, reply("#AB#2\r\n", "#AB#0\r\n"));
            assert_eq!(d.records.len(), 2);
            assert_doc_position(&d.records[0]);
        },
    },
    Capture {
        source: "§5 CRC in lower case without leading zeros (CC5 as cc5)",
        start: Start::V2,
        frame: Frame::Text("#SD#270413;205601;5544.6025;N;03739.6834;E;2;2;3;4;cc5\r\n"),
        check: |d| {
            assert_eq!(d.reply.accepted.as_deref(), Some(&b"#ASD#1\r\n"[..]));
            assert_eq!(d.records[0].speed_kmh, Some(2.0));
        },
    },
    Capture {
        source: "§5 CRC with a 0x prefix (002F as 0x2f)",
        start: Start::V2,
        frame: Frame::Text("#SD#270413;205601;5544.6025;N;03739.6834;E;229;2;3;4;0x2f\r\n"),
        check: |d| {
            assert_eq!(d.reply.accepted.as_deref(), Some(&b"#ASD#1\r\n"[..]));
            assert_eq!(d.records[0].speed_kmh, Some(229.0));
        },
    },
    Capture {
        source: "§6 message to driver v2.0",
        start: Start::V2,
        frame: Frame::Text(M_V2),
        check: |d| {
            assert_eq!(d.reply, reply("#AM#1\r\n", "#AM#0\r\n"));
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("driver_message"));
            assert_eq!(r.io, [(name("message"), IoValue::Text("Hello driver".into()))]);
            assert_eq!((r.time_ms, r.lat, r.valid), (None, None, None));
        },
    },
    Capture {
        source: "§3 NA in every field of a D packet",
        start: Start::V1,
        frame: Frame::Text("#D#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA\r\n"),
        check: |d| {
            assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AD#1\r\n"[..]));
            let r = &d.records[0];
            assert_eq!((r.time_ms, r.lat, r.lon), (None, None, None));
            assert_eq!((r.speed_kmh, r.course_deg, r.altitude_m), (None, None, None));
            assert_eq!((r.satellites, r.hdop), (None, None));
            assert_eq!(r.valid, Some(false));
            assert!(r.io.is_empty());
        },
    },
    Capture {
        source: "§7 unpadded coordinates, S/W, negative altitude, decimal speed/course",
        start: Start::V1,
        frame: Frame::Text("#SD#010124;000000;3644.670410;S;544.6025;W;12.5;359.9;-28;7\r\n"),
        check: |d| {
            let r = &d.records[0];
            assert_eq!(r.time_ms, Some(1_704_067_200_000));
            near(r.lat, -(36.0 + 44.670410 / 60.0));
            near(r.lon, -(5.0 + 44.6025 / 60.0));
            assert_eq!(
                (r.speed_kmh, r.course_deg, r.altitude_m),
                (Some(12.5), Some(359.9), Some(-28.0))
            );
            assert_eq!(r.valid, Some(true));
        },
    },
    Capture {
        source: "§7 zero coordinates are the no-fix marker",
        start: Start::V1,
        frame: Frame::Text("#SD#270413;205601;0000.0000;N;00000.0000;E;0;0;0;0\r\n"),
        check: |d| {
            let r = &d.records[0];
            assert_eq!((r.lat, r.lon, r.valid), (None, None, Some(false)));
            assert_eq!((r.speed_kmh, r.satellites), (Some(0.0), Some(0)));
        },
    },
    Capture {
        source: "§7 empty (not NA) adc, ibutton and params; few satellites",
        start: Start::V1,
        frame: Frame::Text("#D#270413;205601;5544.6025;N;03739.6834;E;0;0;150;2;4.5;5;1;;;\r\n"),
        check: |d| {
            let r = &d.records[0];
            assert_eq!(r.valid, Some(false), "2 satellites are no fix");
            assert_eq!(r.hdop, Some(4.5));
            assert_eq!(
                r.io,
                [
                    (name("inputs"), IoValue::U64(5)),
                    (name("outputs"), IoValue::U64(1))
                ]
            );
        },
    },
    Capture {
        source: "§3 params: UTF-8 names, strings with spaces and colons, NA values, ibutton, adc gaps",
        start: Start::V1,
        frame: Frame::Text("#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;NA;NA;NA;NA;1.5,NA,-0.3;00000A3F1B2C;температура:2:-3.5,driver:3:Ivan Petrov,at:3:12:30,gsm:1:-70,odo:1:NA,\r\n"),
        check: |d| {
            let r = &d.records[0];
            assert_eq!(r.valid, None, "position without a satellite count");
            assert_eq!(
                r.io,
                [
                    (name("adc1"), IoValue::F64(1.5)),
                    (name("adc3"), IoValue::F64(-0.3)),
                    (name("ibutton"), IoValue::Text("00000A3F1B2C".into())),
                    (name("температура"), IoValue::F64(-3.5)),
                    (name("driver"), IoValue::Text("Ivan Petrov".into())),
                    (name("at"), IoValue::Text("12:30".into())),
                    (name("gsm"), IoValue::I64(-70)),
                ]
            );
        },
    },
    Capture {
        source: "§3 v2.1 fractional seconds (HHMMSS.nnnnnnnnn)",
        start: Start::V1,
        frame: Frame::Text("#SD#270413;205601.250000000;NA;NA;NA;NA;NA;NA;NA;NA\r\n"),
        check: |d| {
            assert_eq!(d.records[0].time_ms, Some(DOC_TIME + 250));
        },
    },
];

fn decoder_for(start: &Start) -> WialonDecoder {
    match start {
        Start::Fresh => fresh(),
        Start::V1 => v1(),
        Start::V2 => v2(),
    }
}

fn battery() -> Battery<Start, WialonDecoder> {
    Battery {
        captures: CASES,
        decoder: decoder_for,
        now: NOW,
        next: Frame::Text("#P#\r\n"),
        contract: Contract {
            records_of_the_stream_device: true,
            ..Contract::SESSION
        },
    }
}

capture_battery!(battery);

#[test]
fn no_capture_is_a_problem() {
    for case in CASES {
        let d = whole(&mut decoder_for(&case.start), &case.frame.bytes());
        assert!(d.problem.is_none(), "{}: {:?}", case.source, d.problem);
    }
}

#[test]
fn login_sets_the_device_and_version() {
    let dec = v1();
    assert_eq!(dec.device_id(), Some(IMEI));
    assert_eq!(dec.version(), Some(ProtocolVersion::V1_1));
    let dec = v2();
    assert_eq!(dec.device_id(), Some(IMEI));
    assert_eq!(dec.version(), Some(ProtocolVersion::V2));
    assert_eq!(fresh().device_id(), None);
    assert_eq!(fresh().version(), None);
}

fn accepted(d: &Decoded) -> String {
    String::from_utf8(d.reply.accepted.clone().unwrap_or_default()).unwrap()
}

#[test]
fn a_whole_v2_session_in_one_buffer_decodes_frame_by_frame() {
    let mut buf = Vec::new();
    for frame in [LOGIN_V2, SD_DOC_V2, "\r\n", D_DOC_V2, "#P#\r\n", B_V2, M_V2] {
        buf.extend_from_slice(frame.as_bytes());
    }
    buf.extend_from_slice(b"#SD#2704"); // the start of the next packet stays buffered
    let mut dec = fresh();
    let frames = testkit::drain(&mut dec, &mut buf, NOW).unwrap();
    assert_eq!(buf, b"#SD#2704");
    let answers: Vec<String> = frames.iter().map(accepted).collect();
    assert_eq!(
        answers,
        [
            "#AL#1\r\n",
            "#ASD#1\r\n",
            "",
            "#AD#1\r\n",
            "#AP#\r\n",
            "#AB#2\r\n",
            "#AM#1\r\n"
        ]
    );
    assert_eq!(frames[0].login.as_deref(), Some(IMEI));
    let records: usize = frames.iter().map(|d| d.records.len()).sum();
    assert_eq!(records, 5);
    assert!(frames.iter().all(|d| d.problem.is_none()));
    assert!(frames
        .iter()
        .flat_map(|d| &d.records)
        .all(|r| r.device_id == IMEI));
}

#[test]
fn a_whole_v1_session_with_a_bad_packet_in_the_middle_stays_in_sync() {
    let mut buf = Vec::new();
    for frame in [
        LOGIN_V1,
        SD_DOC,
        "#SD#270413;205601;bad\r\n",
        D_DOC,
        "#P#\n",
    ] {
        buf.extend_from_slice(frame.as_bytes());
    }
    let mut dec = fresh();
    let frames = testkit::drain(&mut dec, &mut buf, NOW).unwrap();
    assert!(buf.is_empty());
    assert_eq!(frames.len(), 5);
    assert!(frames[2].problem.is_some());
    assert_eq!(
        frames[2].reply.refused.as_deref(),
        Some(&b"#ASD#-1\r\n"[..])
    );
    assert_eq!(accepted(&frames[3]), "#AD#1\r\n");
    assert_eq!(
        accepted(&frames[4]),
        "#AP#\r\n",
        "a bare LF ends a packet too"
    );
}

#[test]
fn a_relogin_switches_device_and_version() {
    let mut dec = v1();
    let d = whole(&mut dec, LOGIN_V2_SHEET.as_bytes());
    assert_eq!(d.login.as_deref(), Some("123456789012345"));
    assert_eq!(dec.device_id(), Some("123456789012345"));
    assert_eq!(dec.version(), Some(ProtocolVersion::V2));
    // v1.1 data is now missing its CRC.
    let d = whole(&mut dec, SD_DOC.as_bytes());
    assert_eq!(d.reply.refused.as_deref(), Some(&b"#ASD#13\r\n"[..]));
}

#[test]
fn keep_raw_keeps_the_packet_text_or_each_black_box_message() {
    let opts = DecoderOptions {
        keep_raw: true,
        ..options()
    };
    let mut dec = WialonDecoder::new(&opts);
    whole(&mut dec, LOGIN_V2.as_bytes());
    let d = whole(&mut dec, SD_DOC_V2.as_bytes());
    assert_eq!(d.records[0].raw.as_deref(), Some(SD_DOC_V2.trim_end()));
    let d = whole(&mut dec, B_V2.as_bytes());
    let raws: Vec<&str> = d
        .records
        .iter()
        .map(|r| r.raw.as_deref().unwrap())
        .collect();
    assert_eq!(
        raws,
        [
            "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4",
            "270413;205701;5544.6100;N;03739.7000;E;5;90;3;6"
        ]
    );
}

#[test]
fn encoder_output_decodes_to_what_was_encoded() {
    let m = Message {
        time_ms: Some(DOC_TIME + 7),
        lat: Some(-33.868_82),
        lon: Some(151.209_29),
        speed_kmh: Some(63.5),
        course_deg: Some(270.0),
        altitude_m: Some(-12.0),
        satellites: Some(11),
        extended: Some(Extended {
            hdop: Some(0.8),
            inputs: Some(5),
            outputs: Some(2),
            adc: vec![Some(12.6), None, Some(0.0)],
            ibutton: Some("0123456789AB".into()),
            params: vec![
                ("mileage".into(), Param::Double(1234.5)),
                ("can_rpm".into(), Param::Int(-1)),
                ("fw".into(), Param::Text("3.1 beta".into())),
            ],
        }),
    };
    for version in [ProtocolVersion::V1_1, ProtocolVersion::V2] {
        let login = encode::login(version, IMEI, None);
        let mut dec = fresh();
        assert!(whole(&mut dec, &login).login.is_some());
        let d = whole(&mut dec, &encode::data(version, &m));
        let r = &d.records[0];
        assert_eq!(r.time_ms, m.time_ms);
        assert!((r.lat.unwrap() - m.lat.unwrap()).abs() < 1e-8);
        assert!((r.lon.unwrap() - m.lon.unwrap()).abs() < 1e-8);
        assert_eq!(
            (r.speed_kmh, r.course_deg, r.altitude_m),
            (Some(63.5), Some(270.0), Some(-12.0))
        );
        assert_eq!((r.satellites, r.hdop), (Some(11), Some(0.8)));
        assert_eq!(
            r.io,
            [
                (name("inputs"), IoValue::U64(5)),
                (name("outputs"), IoValue::U64(2)),
                (name("adc1"), IoValue::F64(12.6)),
                (name("adc3"), IoValue::F64(0.0)),
                (name("ibutton"), IoValue::Text("0123456789AB".into())),
                (name("mileage"), IoValue::F64(1234.5)),
                (name("can_rpm"), IoValue::I64(-1)),
                (name("fw"), IoValue::Text("3.1 beta".into())),
            ]
        );
        let short = whole(&mut dec, &encode::short_data(version, &m));
        assert_eq!(short.reply.accepted.as_deref(), Some(&b"#ASD#1\r\n"[..]));
        let bb = whole(
            &mut dec,
            &encode::black_box(version, &[m.clone(), m.clone()]),
        );
        assert_eq!(bb.reply.accepted.as_deref(), Some(&b"#AB#2\r\n"[..]));
        let msg = whole(&mut dec, &encode::driver_message(version, "ok"));
        assert_eq!(msg.reply.accepted.as_deref(), Some(&b"#AM#1\r\n"[..]));
        let ping = whole(&mut dec, &encode::ping());
        assert_eq!(ping.reply.accepted.as_deref(), Some(&b"#AP#\r\n"[..]));
    }
}

// ---------------------------------------------------------------------------------------
// Malformed input: problems (line skipped, answered with the protocol's code)

struct Bad {
    source: &'static str,
    start: Start,
    frame: &'static str,
    /// What the device is told (`reply.refused`), if anything.
    answer: Option<&'static str>,
    offset: usize,
    reason: &'static str,
}

const PROBLEMS: &[Bad] = &[
    Bad {
        source: "SD with 9 fields",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3\r\n",
        answer: Some("#ASD#-1\r\n"),
        offset: 4,
        reason: "9 fields, expected 10 (SD)",
    },
    Bad {
        source: "D with SD's 10 fields",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n",
        answer: Some("#AD#-1\r\n"),
        offset: 3,
        reason: "10 fields, expected 16 (D)",
    },
    Bad {
        source: "D with 32 April",
        start: Start::V1,
        frame: "#D#320413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;NA;NA;NA\r\n",
        answer: Some("#AD#0\r\n"),
        offset: 3,
        reason: "date \"320413\" is not a DDMMYY date",
    },
    Bad {
        source: "SD with hour 25",
        start: Start::V1,
        frame: "#SD#270413;255601;5544.6025;N;03739.6834;E;1;2;3;4\r\n",
        answer: Some("#ASD#0\r\n"),
        offset: 11,
        reason: "time \"255601\" is not an HHMMSS[.fraction] time",
    },
    Bad {
        source: "SD with a date but time NA",
        start: Start::V1,
        frame: "#SD#270413;NA;5544.6025;N;03739.6834;E;1;2;3;4\r\n",
        answer: Some("#ASD#0\r\n"),
        offset: 11,
        reason: "time is NA but date is not",
    },
    Bad {
        source: "D with 61 minutes of latitude",
        start: Start::V1,
        frame: "#D#270413;205601;5561.0000;N;03739.6834;E;1;2;3;4;NA;NA;NA;NA;NA;NA\r\n",
        answer: Some("#AD#10\r\n"),
        offset: 17,
        reason: "latitude \"5561.0000\" is not degrees and minutes",
    },
    Bad {
        source: "SD with longitude hemisphere N",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;N;1;2;3;4\r\n",
        answer: Some("#ASD#10\r\n"),
        offset: 41,
        reason: "longitude hemisphere \"N\" is not E or W",
    },
    Bad {
        source: "SD with latitude but no longitude",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;NA;NA;1;2;3;4\r\n",
        answer: Some("#ASD#10\r\n"),
        offset: 33,
        reason: "longitude is NA but the other coordinate is not",
    },
    Bad {
        source: "SD with 200°E",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;20000.0000;E;1;2;3;4\r\n",
        answer: Some("#ASD#10\r\n"),
        offset: 30,
        reason: "beyond 180°",
    },
    Bad {
        source: "SD with a negative speed",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;E;-1;2;3;4\r\n",
        answer: Some("#ASD#11\r\n"),
        offset: 43,
        reason: "speed \"-1\" is out of range or not a number",
    },
    Bad {
        source: "D with course 361",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;361;3;4;NA;NA;NA;NA;NA;NA\r\n",
        answer: Some("#AD#11\r\n"),
        offset: 44,
        reason: "course \"361\"",
    },
    Bad {
        source: "SD with height 1e3",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;1e3;4\r\n",
        answer: Some("#ASD#11\r\n"),
        offset: 47,
        reason: "height \"1e3\"",
    },
    Bad {
        source: "SD with 300 satellites",
        start: Start::V1,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;300\r\n",
        answer: Some("#ASD#12\r\n"),
        offset: 49,
        reason: "sats \"300\"",
    },
    Bad {
        source: "D with hdop 'x'",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;x;NA;NA;NA;NA;NA\r\n",
        answer: Some("#AD#12\r\n"),
        offset: 50,
        reason: "hdop \"x\"",
    },
    Bad {
        source: "D with inputs '1a'",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;1a;NA;NA;NA;NA\r\n",
        answer: Some("#AD#13\r\n"),
        offset: 53,
        reason: "inputs \"1a\"",
    },
    Bad {
        source: "D with a bad second adc",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;1.0,x;NA;NA\r\n",
        answer: Some("#AD#14\r\n"),
        offset: 63,
        reason: "adc2 \"x\" is not a decimal number",
    },
    Bad {
        source: "D with param type 4",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;NA;NA;a:1:1,fuel:4:1\r\n",
        answer: Some("#AD#15\r\n"),
        offset: 76,
        reason: "param \"fuel\" has type \"4\"",
    },
    Bad {
        source: "D with an int param holding a decimal",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;NA;NA;count:1:5.5\r\n",
        answer: Some("#AD#15\r\n"),
        offset: 73,
        reason: "param \"count\" value \"5.5\" is not a 64-bit integer",
    },
    Bad {
        source: "D with a param missing its type",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;NA;NA;fuel\r\n",
        answer: Some("#AD#15\r\n"),
        offset: 65,
        reason: "param \"fuel\" is not NAME:TYPE:VALUE",
    },
    Bad {
        source: "D with a double param 'inf'",
        start: Start::V1,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;NA;NA;t:2:inf\r\n",
        answer: Some("#AD#15\r\n"),
        offset: 69,
        reason: "is not a finite double",
    },
    Bad {
        source: "§5 SD v2.0 with a wrong CRC",
        start: Start::V2,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;1986\r\n",
        answer: Some("#ASD#13\r\n"),
        offset: 51,
        reason: "CRC field \"1986\" does not match CRC-16/ARC 1985",
    },
    Bad {
        source: "§5 D v2.0 with a wrong CRC",
        start: Start::V2,
        frame: "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.0;0;0;14.77,0.02,3.6;NA;count1:1:564,fuel:2:45.8,hw:3:V4.6;E499\r\n",
        answer: Some("#AD#16\r\n"),
        offset: 111,
        reason: "does not match CRC-16/ARC",
    },
    Bad {
        source: "§5 D v2.0 with a CRC field that is not hex",
        start: Start::V2,
        frame: "#D#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;xyz\r\n",
        answer: Some("#AD#16\r\n"),
        offset: 51,
        reason: "CRC field \"xyz\" is not hexadecimal",
    },
    Bad {
        source: "§5 B v2.0 with a wrong CRC answers an empty count",
        start: Start::V2,
        frame: "#B#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4|7982\r\n",
        answer: Some("#AB#\r\n"),
        offset: 50,
        reason: "does not match",
    },
    Bad {
        source: "§5 M v2.0 with a wrong CRC",
        start: Start::V2,
        frame: "#M#Hello driver;0799\r\n",
        answer: Some("#AM#01\r\n"),
        offset: 16,
        reason: "does not match",
    },
    Bad {
        source: "§5 v2.0 CRC wider than 16 bits",
        start: Start::V2,
        frame: "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;11985\r\n",
        answer: Some("#ASD#13\r\n"),
        offset: 51,
        reason: "does not match",
    },
    Bad {
        source: "§4 black box whose second of three messages is bad: all refused",
        start: Start::V1,
        frame: "#B#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4|270413;205701;5544.6100;N;03739.7000;E;5;90;3|270413;205801;NA;NA;NA;NA;NA;NA;NA;NA\r\n",
        answer: Some("#AB#0\r\n"),
        offset: 50,
        reason: "message 2 of 3: 9 fields, expected 10 (SD-style) or 16 (D-style)",
    },
    Bad {
        source: "§4 black box with an empty message between two",
        start: Start::V1,
        frame: "#B#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA||NA;NA;NA;NA;NA;NA;NA;NA;NA;NA\r\n",
        answer: Some("#AB#0\r\n"),
        offset: 33,
        reason: "message 2 of 3: 1 fields",
    },
    Bad {
        source: "§2 login with 3 fields",
        start: Start::Fresh,
        frame: "#L#356307042441013;NA;extra\r\n",
        answer: Some("#AL#0\r\n"),
        offset: 3,
        reason: "login with 3 fields",
    },
    Bad {
        source: "§2 login without a device id",
        start: Start::Fresh,
        frame: "#L#NA;NA\r\n",
        answer: Some("#AL#0\r\n"),
        offset: 3,
        reason: "login without a device id",
    },
    Bad {
        source: "§2 login with a device id holding a space",
        start: Start::Fresh,
        frame: "#L#3563 07042441013;NA\r\n",
        answer: Some("#AL#0\r\n"),
        offset: 3,
        reason: "is not 1..=64 printable ASCII characters",
    },
    Bad {
        source: "§2 v2.0 login missing its CRC",
        start: Start::Fresh,
        frame: "#L#2.0;123456789012345;NA\r\n",
        answer: Some("#AL#0\r\n"),
        offset: 3,
        reason: "login with 3 fields",
    },
    Bad {
        source: "§2 + §5 v2.0 login with a wrong CRC",
        start: Start::Fresh,
        frame: "#L#2.0;123456789012345;NA;15CE\r\n",
        answer: Some("#AL#10\r\n"),
        offset: 26,
        reason: "does not match CRC-16/ARC 15CD",
    },
    Bad {
        source: "truncated SD line followed by the next packet",
        start: Start::V1,
        frame: "#SD#270413;2056\r\n",
        answer: Some("#ASD#-1\r\n"),
        offset: 4,
        reason: "2 fields",
    },
    Bad {
        source: "an answer type sent by the device",
        start: Start::V1,
        frame: "#AD#1\r\n",
        answer: None,
        offset: 1,
        reason: "packet type #AD# is not one a device sends here",
    },
];

#[test]
fn malformed_packets_are_problems_answered_with_the_documented_code() {
    for bad in PROBLEMS {
        let mut dec = decoder_for(&bad.start);
        let device_before = dec.device_id().map(str::to_owned);
        let d = whole(&mut dec, bad.frame.as_bytes());
        let problem = d
            .problem
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no problem in {d:?}", bad.source));
        assert!(d.records.is_empty(), "{}", bad.source);
        assert_eq!(d.login, None, "{}", bad.source);
        assert_eq!(d.reply.accepted, None, "{}", bad.source);
        assert_eq!(
            d.reply.refused.as_deref(),
            bad.answer.map(str::as_bytes),
            "{}",
            bad.source
        );
        assert!(
            problem.reason.contains(bad.reason),
            "{}: reason {:?}",
            bad.source,
            problem.reason
        );
        assert_eq!(
            problem.offset, bad.offset,
            "{}: {}",
            bad.source, problem.reason
        );
        assert!(problem.offset < bad.frame.len(), "{}", bad.source);
        assert_eq!(
            dec.device_id().map(str::to_owned),
            device_before,
            "{}: a bad packet must not change the session",
            bad.source
        );
        // The stream stays usable: the next packet decodes.
        let next = whole(&mut dec, b"#P#\r\n");
        assert_eq!(next.reply.accepted.as_deref(), Some(&b"#AP#\r\n"[..]));
    }
}

#[test]
fn a_configured_password_is_checked() {
    let login = |password: &str| {
        let mut dec = fresh().require_password("secret");
        let d = whole(&mut dec, password.as_bytes());
        (d, dec.device_id().map(str::to_owned))
    };
    let (ok, device) = login(LOGIN_V2);
    assert_eq!(ok.login.as_deref(), Some(IMEI));
    assert_eq!(device.as_deref(), Some(IMEI));
    let (bad, device) = login("#L#356307042441013;wrong\r\n");
    assert_eq!(bad.reply.refused.as_deref(), Some(&b"#AL#01\r\n"[..]));
    let problem = bad.problem.unwrap();
    assert_eq!(problem.offset, 19);
    assert!(
        !problem.reason.contains("wrong"),
        "password leaked: {}",
        problem.reason
    );
    assert_eq!(device, None);
    let (none, _) = login(LOGIN_V1);
    assert_eq!(none.reply.refused.as_deref(), Some(&b"#AL#01\r\n"[..]));
}

#[test]
fn non_utf8_text_is_kept_as_bytes_and_names_lossily() {
    let mut dec = v1();
    let mut frame = b"#D#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;".to_vec();
    frame.extend_from_slice(&[0xC0, 0xC1]); // a cp1251 ibutton
    frame.extend_from_slice(b";t\xF0:3:\xE0\xE1\r\n");
    let d = whole(&mut dec, &frame);
    assert_eq!(
        d.records[0].io,
        [
            (name("ibutton"), IoValue::Bytes(vec![0xC0, 0xC1])),
            (name("t\u{FFFD}"), IoValue::Bytes(vec![0xE0, 0xE1])),
        ]
    );
}

#[test]
fn a_photo_block_is_framed_by_its_size_and_skipped() {
    let mut dec = v1();
    let mut buf = b"#I#6;0;1;270413;205601;cam.jpg\r\n".to_vec();
    buf.extend_from_slice(&[0xFF, 0xD8, 0x0A, 0x0D, 0xFF, 0xD9]); // JPEG bytes, with a LF
    let header_and_block = buf.len();
    buf.extend_from_slice(SD_DOC.as_bytes());
    for end in 1..header_and_block {
        assert_eq!(dec.decode(&buf[..end], NOW), Ok(None), "prefix {end}");
    }
    let d = dec.decode(&buf, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, header_and_block);
    assert_eq!(d.reply, Reply::default());
    assert!(d.records.is_empty());
    let problem = d.problem.unwrap();
    assert!(
        problem
            .reason
            .contains("photo block 0 of 1 (6 bytes) skipped"),
        "{}",
        problem.reason
    );
    let next = whole(&mut dec, &buf[header_and_block..]);
    assert_eq!(next.records.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Malformed input: errors (the stream cannot be trusted; the connection is closed)

fn err(dec: &mut WialonDecoder, input: &[u8]) -> DecodeError {
    match dec.decode(input, NOW) {
        Err(e) => e,
        other => panic!(
            "{}: expected an error, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn data_before_login_is_an_error() {
    for frame in [SD_DOC, D_DOC, "#B#\r\n", "#M#hi\r\n", "#XX#\r\n"] {
        let e = err(&mut fresh(), frame.as_bytes());
        assert_eq!(e.offset, 1, "{frame}");
        assert!(e.reason.contains("before the login packet"), "{}", e.reason);
    }
    // A ping needs no device id and is answered.
    let d = whole(&mut fresh(), b"#P#\r\n");
    assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AP#\r\n"[..]));
}

#[test]
fn garbage_where_a_packet_starts_is_an_error_at_once() {
    let cases: &[(&[u8], usize, &str)] = &[
        (
            b"\x00\x00\x00\x00\x00\x00\x00\x00",
            0,
            "byte 0x00 where a packet should start with '#'",
        ),
        (b"\xff", 0, "byte 0xff"),
        (b"GET / HTTP/1.1\r\n", 0, "byte 0x47"),
        (b"#sd#", 1, "byte 0x73 in the packet type"),
        (b"#S D#", 2, "byte 0x20 in the packet type"),
        (b"#ABCDE", 1, "packet type longer than 4 letters"),
        (b"##", 1, "empty packet type"),
        (b"#\r\n", 1, "byte 0x0d in the packet type"),
    ];
    for &(input, offset, reason) in cases {
        for mut dec in [fresh(), v1()] {
            let e = err(&mut dec, input);
            assert_eq!(e.offset, offset, "{:?}", String::from_utf8_lossy(input));
            assert!(e.reason.contains(reason), "{}", e.reason);
        }
    }
    // Garbage right after a good packet: the packet decodes, then the garbage fails.
    let mut dec = v1();
    let mut buf = SD_DOC.as_bytes().to_vec();
    buf.extend_from_slice(&[0x00, 0x01, 0x02]);
    let e = testkit::drain(&mut dec, &mut buf, NOW).unwrap_err();
    assert_eq!(e.offset, 0);
    assert_eq!(buf, [0x00, 0x01, 0x02]);
}

#[test]
fn an_endless_line_is_an_error_at_the_frame_limit() {
    let mut line = b"#D#270413;205601;".to_vec();
    line.resize(MAX - 1, b'1');
    let mut dec = v1();
    assert_eq!(
        dec.decode(&line, NOW),
        Ok(None),
        "one byte under the limit still waits"
    );
    line.push(b'1');
    let e = err(&mut dec, &line);
    assert_eq!(e.offset, 0);
    assert_eq!(
        e.reason,
        "#D# packet has no CR LF within the limit of 1024 bytes"
    );
    // Longer input does not change the answer (the caller never buffers it, but still).
    line.extend_from_slice(b"\r\n");
    assert_eq!(err(&mut dec, &line).offset, 0);
    // A line of exactly the limit, CR LF included, is fine.
    let mut exact = b"#M#".to_vec();
    exact.resize(MAX - 2, b'x');
    exact.extend_from_slice(b"\r\n");
    assert_eq!(whole(&mut dec, &exact).records.len(), 1);
}

#[test]
fn a_limit_smaller_than_a_header_never_asks_for_more() {
    let mut dec = WialonDecoder::new(&DecoderOptions::new(3));
    let e = err(&mut dec, b"#SD");
    assert!(
        e.reason.contains("within the limit of 3 bytes"),
        "{}",
        e.reason
    );
    assert_eq!(dec.decode(b"#S", NOW), Ok(None));
}

#[test]
fn untrustworthy_photo_sizes_are_errors() {
    let mut dec = v1();
    let e = err(&mut dec, b"#I#99999;0;1;270413;205601;a.jpg\r\n");
    assert_eq!(e.offset, 3);
    assert!(
        e.reason.contains("does not fit the frame limit of 1024"),
        "{}",
        e.reason
    );
    let e = err(&mut dec, b"#I#NA;0;1;270413;205601;a.jpg\r\n");
    assert!(
        e.reason.contains("photo block size \"NA\" is not a number"),
        "{}",
        e.reason
    );
    let e = err(&mut dec, b"#I#18446744073709551615;0;1;NA;NA;a\r\n");
    assert_eq!(e.offset, 3);
    let mut dec = v2();
    let e = err(&mut dec, b"#I#6;0;1;270413;205601;a.jpg;FFFF\r\n");
    assert!(e.reason.contains("does not match"), "{}", e.reason);
}

#[test]
fn blank_lines_between_packets_are_skipped_quietly() {
    let mut dec = v1();
    let d = dec.decode(b"\r\n\r\n\n#P#", NOW).unwrap().unwrap();
    assert_eq!(d.consumed, 5);
    assert_eq!(d.reply, Reply::default());
    assert!(d.problem.is_none() && d.records.is_empty());
    // Even blank bytes never make a frame longer than the limit.
    let mut tiny = WialonDecoder::new(&DecoderOptions::new(4));
    let d = tiny.decode(b"\r\n\r\n\r\n", NOW).unwrap().unwrap();
    assert_eq!(d.consumed, 4);
}
