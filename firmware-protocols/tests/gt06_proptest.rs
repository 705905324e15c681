//! Properties of the GT06 decoder: no panics on any input, honest `consumed`, never asking to
//! buffer past the limit, encoder/decoder round trips, and coordinates always in range.

use firmware_protocols::gt06::encode::{
    self, alarm_content, heartbeat_content, location_content, Gps, Lbs, Status,
};
use firmware_protocols::gt06::{self, alarm_event, Gt06Decoder};
use firmware_protocols::testkit::{self, io_u64, Contract};
use firmware_protocols::{DecoderOptions, IoKey, IoValue, Record, StreamDecoder};
use proptest::collection::vec;
use proptest::prelude::*;

/// Receive time 2030-03-17: the built frames are dated up to 2025, and a date after tomorrow is
/// out of range.
const NOW: i64 = 1_900_000_000_000;
const IMEI: &str = "356307042441013";

fn session(max: usize) -> Gt06Decoder {
    Gt06Decoder::new(&DecoderOptions::new(max))
}

/// The kit's stream contract: a session protocol, every record held to GT06's ranges too.
const CONTRACT: Contract = Contract {
    record: gt06_ranges,
    ..Contract::SESSION
};

fn check_stream(dec: &mut Gt06Decoder, input: &[u8]) -> Result<(), TestCaseError> {
    testkit::check_stream(dec, input, NOW, &CONTRACT).map(drop)
}

/// Whatever the bytes, a record's fields stay within what they can mean (the kit's ranges and
/// GT06's own, below).
fn check_ranges(r: &Record) -> Result<(), TestCaseError> {
    testkit::check_ranges(r, NOW)?;
    gt06_ranges(r, NOW)
}

/// GT06's own limits: four bits of satellites, a date from 2000 to the day after the receive
/// time, and the serial number last.
fn gt06_ranges(r: &Record, now: i64) -> Result<(), TestCaseError> {
    if let Some(sats) = r.satellites {
        prop_assert!(sats < 16);
    }
    if let Some(t) = r.time_ms {
        // 2000-01-01 .. the end of the day after the receive time.
        prop_assert!(
            (946_684_800_000..(now / 86_400_000 + 2) * 86_400_000).contains(&t),
            "time {t}"
        );
    }
    prop_assert!(matches!(r.io.last(), Some((IoKey::Name(n), IoValue::U64(_))) if n == "serial"));
    Ok(())
}

prop_compose! {
    fn any_gps()(
        time in (any::<u8>(), 0u8..14, 0u8..33, 0u8..25, 0u8..61, 0u8..61),
        info_length in 0u8..16,
        satellites in 0u8..16,
        lat in prop_oneof![3 => 0u32..=162_000_000, 1 => any::<u32>()],
        lon in prop_oneof![3 => 0u32..=324_000_000, 1 => any::<u32>()],
        speed in any::<u8>(),
        course_status in any::<u16>(),
    ) -> Gps {
        let (yy, mo, dd, hh, mi, ss) = time;
        Gps { time: [yy, mo, dd, hh, mi, ss], info_length, satellites, lat, lon, speed, course_status }
    }
}

prop_compose! {
    fn any_lbs()(mcc in 0u16..0x8000, mnc in any::<u16>(), lac in any::<u16>(), cell_id in 0u32..1 << 24) -> Lbs {
        Lbs { mcc, mnc, lac, cell_id }
    }
}

prop_compose! {
    fn any_status()(t in any::<u8>(), v in any::<u8>(), g in any::<u8>(), a in any::<u8>(), l in any::<u8>()) -> Status {
        Status { terminal_info: t, voltage_level: v, gsm_signal: g, alarm: a, language: l }
    }
}

fn logged_in() -> Gt06Decoder {
    let mut dec = session(4096);
    dec.decode(&encode::login(IMEI, 1).unwrap(), NOW)
        .unwrap()
        .unwrap();
    dec
}

/// What the decoder must make of a GPS block.
fn check_gps(r: &Record, g: &Gps) -> Result<(), TestCaseError> {
    let (lat, lon) = (f64::from(g.lat) / 1.8e6, f64::from(g.lon) / 1.8e6);
    if lat <= 90.0 && lon <= 180.0 {
        let north = g.course_status & 0x400 != 0;
        let west = g.course_status & 0x800 != 0;
        prop_assert_eq!(r.lat, Some(if north { lat } else { 0.0 - lat }));
        prop_assert_eq!(r.lon, Some(if west { 0.0 - lon } else { lon }));
        prop_assert_eq!(r.valid, Some(g.course_status & 0x1000 != 0));
    } else {
        prop_assert_eq!((r.lat, r.lon, r.valid), (None, None, Some(false)));
        prop_assert_eq!(io_u64(r, "latitude_raw"), Some(u64::from(g.lat)));
    }
    prop_assert_eq!(r.satellites, Some(g.satellites));
    prop_assert_eq!(r.speed_kmh, Some(f64::from(g.speed)));
    let course = g.course_status & 0x3FF;
    prop_assert_eq!(r.course_deg, (course <= 360).then_some(f64::from(course)));
    prop_assert_eq!(io_u64(r, "course_status"), Some(u64::from(g.course_status)));
    prop_assert_eq!(io_u64(r, "gps_info_length"), Some(u64::from(g.info_length)));
    if let Some(t) = r.time_ms {
        let text = firmware_protocols::record::format_rfc3339_ms(t);
        let [yy, mo, dd, hh, mi, ss] = g.time;
        let want = format!(
            "{:04}-{mo:02}-{dd:02}T{hh:02}:{mi:02}:{ss:02}.000Z",
            2000 + u32::from(yy)
        );
        prop_assert_eq!(text, want);
    } else {
        prop_assert!(r
            .io
            .iter()
            .any(|(k, _)| *k == IoKey::Name("time_raw".into())));
    }
    check_ranges(r)
}

fn check_lbs(r: &Record, l: &Lbs) -> Result<(), TestCaseError> {
    prop_assert_eq!(io_u64(r, "mcc"), Some(u64::from(l.mcc)));
    prop_assert_eq!(io_u64(r, "mnc"), Some(u64::from(l.mnc)));
    prop_assert_eq!(io_u64(r, "lac"), Some(u64::from(l.lac)));
    prop_assert_eq!(io_u64(r, "cell_id"), Some(u64::from(l.cell_id)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_in_a_session(input in vec(any::<u8>(), 0..600), max in 1usize..700) {
        check_stream(&mut session(max), &input)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_in_capture_mode(input in vec(any::<u8>(), 0..600), max in 1usize..700) {
        check_stream(&mut Gt06Decoder::for_capture(&DecoderOptions::new(max)), &input)?;
    }

    /// Random bytes rarely pass the start bits; give them a header and a valid login first.
    #[test]
    fn arbitrary_content_after_a_valid_login_never_panics(
        long in any::<bool>(),
        body in vec(any::<u8>(), 0..400),
        max in 18usize..700,
    ) {
        let mut input = encode::login(IMEI, 1).unwrap();
        input.extend_from_slice(if long { &[0x79, 0x79] } else { &[0x78, 0x78] });
        input.extend(body);
        check_stream(&mut session(max), &input)?;
    }

    /// Any content under any protocol number, with a correct CRC: never an `Err`, since the
    /// framing is sound; a record or a problem.
    #[test]
    fn any_content_in_a_sound_frame_is_a_record_or_a_problem(
        protocol in prop_oneof![
            Just(0x01u8), Just(0x10), Just(0x12), Just(0x13), Just(0x16), Just(0x22),
            proptest::sample::select(vec![
                0x15u8, 0x19, 0x1A, 0x21, 0x23, 0x26, 0x27, 0x28, 0x2A, 0x2C, 0x8A, 0x94, 0xA0,
                0xA1, 0xA2, 0xA3, 0xA4,
            ]),
            any::<u8>()
        ],
        content in vec(any::<u8>(), 0..80),
        serial in any::<u16>(),
        long in any::<bool>(),
    ) {
        let frame = if long {
            encode::frame_long(protocol, &content, serial)
        } else {
            encode::frame(protocol, &content, serial)
        }.unwrap();
        let d = logged_in().decode(&frame, NOW);
        prop_assert!(matches!(d, Ok(Some(_))), "{d:?}");
        let d = d.unwrap().unwrap();
        prop_assert_eq!(d.consumed, frame.len());
        // A record, a problem, a login, or (the time request) an answer alone.
        let answer_only = d.records.is_empty() && d.problem.is_none() && d.login.is_none()
            && d.reply.accepted.is_some();
        prop_assert!(answer_only || d.records.len() + usize::from(d.problem.is_some()) + usize::from(d.login.is_some()) == 1);
        for r in &d.records {
            check_ranges(r)?;
            prop_assert_eq!(io_u64(r, "serial"), Some(u64::from(serial)));
        }
    }

    #[test]
    fn corrupted_valid_frames_never_panic(
        gps in any_gps(),
        lbs in any_lbs(),
        status in any_status(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = encode::frame(0x16, &alarm_content(&gps, &lbs, &status), 1).unwrap();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let mut input = encode::login(IMEI, 1).unwrap();
        input.extend_from_slice(&frame[..cut.index(frame.len() + 1)]);
        check_stream(&mut session(4096), &input)?;
        check_stream(&mut Gt06Decoder::for_capture(&DecoderOptions::new(4096)), &frame)?;
    }

    #[test]
    fn locations_round_trip(gps in any_gps(), lbs in any_lbs(), serial in any::<u16>(), gt06n in any::<bool>()) {
        let mut content = location_content(&gps, &lbs);
        let protocol = if gt06n {
            content.extend_from_slice(&[1, 0, 1]);
            0x22
        } else {
            0x12
        };
        let frame = encode::frame(protocol, &content, serial).unwrap();
        let d = logged_in().decode(&frame, NOW).unwrap().unwrap();
        prop_assert_eq!(d.consumed, frame.len());
        prop_assert_eq!(d.reply.accepted, None);
        let r = &d.records[0];
        prop_assert_eq!(&r.device_id, IMEI);
        prop_assert_eq!(&r.event, &None);
        check_gps(r, &gps)?;
        check_lbs(r, &lbs)?;
        prop_assert_eq!(io_u64(r, "reupload"), gt06n.then_some(1));
        prop_assert_eq!(io_u64(r, "serial"), Some(u64::from(serial)));
    }

    #[test]
    fn alarms_round_trip(gps in any_gps(), lbs in any_lbs(), status in any_status(), serial in any::<u16>()) {
        let frame = encode::frame(0x16, &alarm_content(&gps, &lbs, &status), serial).unwrap();
        let d = logged_in().decode(&frame, NOW).unwrap().unwrap();
        prop_assert_eq!(d.reply.accepted, Some(gt06::reply(0x16, serial)));
        prop_assert_eq!(d.reply.refused, None);
        let r = &d.records[0];
        check_gps(r, &gps)?;
        check_lbs(r, &lbs)?;
        prop_assert_eq!(&r.event, &alarm_event(status.alarm));
        prop_assert_eq!(io_u64(r, "terminal_info"), Some(u64::from(status.terminal_info)));
        prop_assert_eq!(io_u64(r, "alarm"), Some(u64::from(status.alarm)));
        prop_assert_eq!(io_u64(r, "language"), Some(u64::from(status.language)));
    }

    #[test]
    fn heartbeats_round_trip(status in any_status(), serial in any::<u16>()) {
        let frame = encode::frame(0x13, &heartbeat_content(&status), serial).unwrap();
        let d = logged_in().decode(&frame, NOW).unwrap().unwrap();
        prop_assert_eq!(d.reply.accepted, Some(gt06::reply(0x13, serial)));
        let r = &d.records[0];
        prop_assert_eq!(r.event.as_deref(), Some("heartbeat"));
        prop_assert_eq!(io_u64(r, "voltage_level"), Some(u64::from(status.voltage_level)));
        prop_assert_eq!(io_u64(r, "gsm_signal"), Some(u64::from(status.gsm_signal)));
        prop_assert_eq!(io_u64(r, "acc"), Some(u64::from(status.terminal_info >> 1 & 1)));
    }

    #[test]
    fn logins_round_trip(digits in "[0-9]{15}", serial in any::<u16>()) {
        let frame = encode::login(&digits, serial).unwrap();
        let mut dec = session(64);
        let d = dec.decode(&frame, NOW).unwrap().unwrap();
        prop_assert_eq!(d.login.as_deref(), Some(digits.as_str()));
        prop_assert_eq!(d.reply.accepted, Some(gt06::reply(0x01, serial)));
        prop_assert_eq!(dec.device_id(), Some(digits.as_str()));
    }

    /// A stream of valid frames cut into arbitrary reads decodes like the whole buffer.
    #[test]
    fn arbitrary_read_boundaries_do_not_change_the_result(
        frames in vec((any_gps(), any_lbs(), any_status(), 0u8..3), 1..6),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut all = encode::login(IMEI, 1).unwrap();
        for (gps, lbs, status, kind) in &frames {
            let frame = match kind {
                0 => encode::frame(0x12, &location_content(gps, lbs), 2),
                1 => encode::frame_long(0x16, &alarm_content(gps, lbs, status), 3),
                _ => encode::frame(0x13, &heartbeat_content(status), 4),
            };
            all.extend(frame.unwrap());
        }
        let mut expected = Vec::new();
        let mut whole = session(4096);
        let mut rest = &all[..];
        while let Some(d) = whole.decode(rest, NOW).unwrap() {
            rest = &rest[d.consumed..];
            expected.push(d);
        }
        prop_assert_eq!(expected.len(), frames.len() + 1);

        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(all.len() + 1)).collect();
        cuts.push(all.len());
        cuts.sort_unstable();
        let mut dec = session(4096);
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut got = Vec::new();
        for cut in cuts {
            buf.extend_from_slice(&all[fed..cut]);
            fed = cut;
            while let Some(d) = dec.decode(&buf, NOW).unwrap() {
                buf.drain(..d.consumed);
                got.push(d);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, expected);
    }
}
