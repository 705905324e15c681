//! Properties of the Wialon IPS decoder: no panics on any input (raw bytes, or lines built from
//! protocol-shaped tokens), honest `consumed`, never asking to buffer past the limit, decoded
//! values within their ranges, and encoder/decoder round trips in both protocol versions.

use firmware_protocols::testkit::{self, Contract};
use firmware_protocols::wialon::encode::{self, Extended, Message, Param};
use firmware_protocols::wialon::{ProtocolVersion, WialonDecoder};
use firmware_protocols::{DecoderOptions, IoKey, IoValue, Record, StreamDecoder};
use proptest::collection::vec;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;
const IMEI: &str = "356307042441013";

fn decoder(max: usize, login: Option<ProtocolVersion>) -> WialonDecoder {
    let mut dec = WialonDecoder::new(&DecoderOptions::new(max));
    if let Some(version) = login {
        let frame = encode::login(version, IMEI, None);
        let d = dec.decode(&frame, NOW).unwrap().unwrap();
        assert!(d.login.is_some());
    }
    dec
}

fn check_ranges(r: &Record) -> Result<(), TestCaseError> {
    testkit::check_ranges(r, NOW)
}

/// The kit's stream contract; every record carries the device of the login before it.
const CONTRACT: Contract = Contract {
    records_of_the_stream_device: true,
    ..Contract::SESSION
};

fn check_stream(dec: &mut WialonDecoder, input: &[u8]) -> Result<(), TestCaseError> {
    testkit::check_stream(dec, input, NOW, &CONTRACT).map(drop)
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V1_1), Just(ProtocolVersion::V2)]
}

fn session() -> impl Strategy<Value = Option<ProtocolVersion>> {
    prop_oneof![Just(None), version().prop_map(Some)]
}

/// A token a field could plausibly hold, good or bad.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("NA".to_owned()),
        Just(String::new()),
        Just("270413".to_owned()),
        Just("205601".to_owned()),
        Just("5544.6025".to_owned()),
        Just("03739.6834".to_owned()),
        Just("N".to_owned()),
        Just("W".to_owned()),
        Just("fuel:2:45.8,hw:3:V4.5".to_owned()),
        Just("1,2.5,NA".to_owned()),
        "-?[0-9]{0,6}(\\.[0-9]{0,6})?",
        "[ -~]{0,8}",
    ]
}

prop_compose! {
    /// A line shaped like a packet: a type, fields from `token`, separators, an end.
    fn packet_line()(
        kind in prop_oneof![
            Just("L"), Just("SD"), Just("D"), Just("B"), Just("M"), Just("P"), Just("I"), Just("X")
        ],
        fields in vec(token(), 0..20),
        bars in any::<bool>(),
        end in prop_oneof![Just("\r\n"), Just("\n"), Just("")],
    ) -> Vec<u8> {
        let mut body = fields.join(";");
        if bars {
            body = body.replacen(";E;", ";E;1;2;3;4|", 1);
        }
        format!("#{kind}#{body}{end}").into_bytes()
    }
}

prop_compose! {
    fn extended()(
        hdop in proptest::option::of(0.0f64..50.0),
        inputs in proptest::option::of(any::<u64>()),
        outputs in proptest::option::of(any::<u64>()),
        adc in vec(proptest::option::of(-1000.0f64..1000.0), 0..5),
        ibutton in proptest::option::of("[0-9A-F]{1,16}"),
        params in vec(param(), 0..6),
    ) -> Extended {
        Extended { hdop, inputs, outputs, adc, ibutton, params }
    }
}

fn param() -> impl Strategy<Value = (String, Param)> {
    let value = prop_oneof![
        any::<i64>().prop_map(Param::Int),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(Param::Double),
        "[A-Za-z0-9 .]{0,12}"
            .prop_filter("NA is no data", |s| s != "NA")
            .prop_map(Param::Text),
    ];
    ("[a-z_][a-z0-9_]{0,10}", value)
}

prop_compose! {
    fn message(with_extended: bool)(
        // 2000-01-01 .. 2099-12-31: what a two-digit year can say.
        time_ms in proptest::option::of(946_684_800_000i64..4_102_444_800_000),
        position in proptest::option::of((-90.0f64..=90.0, -180.0f64..=180.0)),
        speed_kmh in proptest::option::of(0.0f64..2000.0),
        course_deg in proptest::option::of(0.0f64..=360.0),
        altitude_m in proptest::option::of(-500.0f64..10_000.0),
        satellites in proptest::option::of(any::<u8>()),
        extended in if with_extended {
            proptest::option::of(extended()).boxed()
        } else {
            Just(None).boxed()
        },
    ) -> Message {
        Message {
            time_ms,
            lat: position.map(|p| p.0),
            lon: position.map(|p| p.1),
            speed_kmh, course_deg, altitude_m, satellites, extended,
        }
    }
}

/// The io a decoder must return for `ext`.
fn expected_io(ext: Option<&Extended>) -> Vec<(IoKey, IoValue)> {
    let Some(e) = ext else {
        return Vec::new();
    };
    let name = |n: &str| IoKey::Name(n.to_owned());
    let mut io = Vec::new();
    if let Some(v) = e.inputs {
        io.push((name("inputs"), IoValue::U64(v)));
    }
    if let Some(v) = e.outputs {
        io.push((name("outputs"), IoValue::U64(v)));
    }
    for (i, v) in e.adc.iter().enumerate() {
        if let Some(v) = v {
            io.push((name(&format!("adc{}", i + 1)), IoValue::F64(*v)));
        }
    }
    if let Some(b) = &e.ibutton {
        io.push((name("ibutton"), IoValue::Text(b.clone())));
    }
    for (n, p) in &e.params {
        let value = match p {
            Param::Int(v) => IoValue::I64(*v),
            Param::Double(v) => IoValue::F64(*v),
            Param::Text(v) => IoValue::Text(v.clone()),
        };
        io.push((name(n), value));
    }
    io
}

fn check_round_trip(r: &Record, m: &Message, extended: bool) -> Result<(), TestCaseError> {
    prop_assert_eq!(&r.device_id, IMEI);
    prop_assert_eq!(r.time_ms, m.time_ms);
    let position = m
        .lat
        .zip(m.lon)
        .filter(|&(lat, lon)| lat != 0.0 || lon != 0.0);
    match (position, r.lat, r.lon) {
        (Some((lat, lon)), Some(got_lat), Some(got_lon)) => {
            // Six decimals of a minute: within 1e-8 degrees.
            prop_assert!((got_lat - lat).abs() < 1e-8, "lat {got_lat} vs {lat}");
            prop_assert!((got_lon - lon).abs() < 1e-8, "lon {got_lon} vs {lon}");
            prop_assert_eq!(r.valid, m.satellites.map(|s| s >= 3));
        }
        (None, None, None) => prop_assert_eq!(r.valid, Some(false)),
        other => prop_assert!(false, "position {:?}", other),
    }
    prop_assert_eq!(r.speed_kmh, m.speed_kmh);
    prop_assert_eq!(r.course_deg, m.course_deg);
    prop_assert_eq!(r.altitude_m, m.altitude_m);
    prop_assert_eq!(r.satellites, m.satellites);
    let ext = if extended { m.extended.as_ref() } else { None };
    prop_assert_eq!(r.hdop, ext.and_then(|e| e.hdop));
    prop_assert_eq!(&r.io, &expected_io(ext));
    prop_assert_eq!(r.event.as_deref(), None);
    check_ranges(r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_break_the_contract(
        login in session(),
        max in prop_oneof![Just(4096usize), 1usize..64],
        input in vec(any::<u8>(), 0..600),
    ) {
        let mut dec = decoder(max.max(64), login);
        check_stream(&mut dec, &input)?;
        let mut tiny = WialonDecoder::new(&DecoderOptions::new(max));
        check_stream(&mut tiny, &input)?;
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_packet_never_break_the_contract(
        v in version(),
        input in vec(any::<u8>(), 0..300),
    ) {
        let mut buf = encode::login(v, IMEI, Some("pw"));
        buf.extend_from_slice(&encode::short_data(v, &Message::default()));
        buf.extend_from_slice(&input);
        let mut dec = decoder(2048, None);
        check_stream(&mut dec, &buf)?;
    }

    #[test]
    fn packet_shaped_lines_never_break_the_contract(
        login in session(),
        lines in vec(packet_line(), 1..8),
    ) {
        let mut dec = decoder(1024, login);
        check_stream(&mut dec, &lines.concat())?;
    }

    #[test]
    fn every_prefix_of_a_valid_packet_asks_for_more(
        v in version(),
        m in message(true),
    ) {
        let frame = encode::data(v, &m);
        let mut dec = decoder(8192, Some(v));
        for end in 1..frame.len() {
            prop_assert_eq!(dec.decode(&frame[..end], NOW), Ok(None));
        }
        let d = dec.decode(&frame, NOW).unwrap().unwrap();
        prop_assert_eq!(d.consumed, frame.len());
    }

    #[test]
    fn data_round_trips(v in version(), m in message(true)) {
        let mut dec = decoder(8192, Some(v));
        let d = dec.decode(&encode::data(v, &m), NOW).unwrap().unwrap();
        prop_assert!(d.problem.is_none(), "{:?}", d.problem);
        prop_assert_eq!(d.records.len(), 1);
        check_round_trip(&d.records[0], &m, true)?;
        prop_assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AD#1\r\n"[..]));
    }

    #[test]
    fn short_data_round_trips(v in version(), m in message(false)) {
        let mut dec = decoder(8192, Some(v));
        let d = dec.decode(&encode::short_data(v, &m), NOW).unwrap().unwrap();
        prop_assert!(d.problem.is_none(), "{:?}", d.problem);
        check_round_trip(&d.records[0], &m, false)?;
        prop_assert_eq!(d.reply.accepted.as_deref(), Some(&b"#ASD#1\r\n"[..]));
    }

    #[test]
    fn black_boxes_round_trip(v in version(), ms in vec(message(true), 1..6)) {
        let mut dec = decoder(16_384, Some(v));
        let frame = encode::black_box(v, &ms);
        let d = dec.decode(&frame, NOW).unwrap().unwrap();
        prop_assert!(d.problem.is_none(), "{:?}", d.problem);
        prop_assert_eq!(d.consumed, frame.len());
        prop_assert_eq!(d.records.len(), ms.len());
        for (r, m) in d.records.iter().zip(&ms) {
            check_round_trip(r, m, m.extended.is_some())?;
        }
        let answer = format!("#AB#{}\r\n", ms.len());
        prop_assert_eq!(d.reply.accepted.as_deref(), Some(answer.as_bytes()));
    }

    #[test]
    fn any_single_byte_change_in_a_v2_packet_is_caught(
        m in message(true),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let frame = encode::data(ProtocolVersion::V2, &m);
        // Somewhere in the body, before the CRC field.
        let body_end = frame.iter().rposition(|&b| b == b';').unwrap();
        let i = 3 + at.index(body_end - 3);
        prop_assume!(frame[i] != byte && byte != b'\n' && byte != b'|');
        let mut bad = frame.clone();
        bad[i] = byte;
        let mut dec = decoder(8192, Some(ProtocolVersion::V2));
        let d = dec.decode(&bad, NOW).unwrap().unwrap();
        // CRC-16 catches every single-byte error; a ';' may shift fields first.
        prop_assert!(d.problem.is_some());
        prop_assert!(d.records.is_empty());
    }
}
