//! Teltonika TCP decoder against the vendor's example frames (shared/protocols/teltonika.md
//! section 7, taken from the Teltonika wiki), stream splitting, and error reporting.

use firmware_protocols::capture_battery;
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::teltonika::encode::{
    encode_avl_packet, encode_codec12_command, encode_codec12_response, encode_codec16,
    encode_codec8, encode_codec8_extended, encode_imei, AvlRecord, Codec, EncodeError, IoData,
};
use firmware_protocols::teltonika::TcpDecoder;
use firmware_protocols::testkit::teltonika::{
    io_list, CODEC16_EX, CODEC8E_EX, CODEC8_EX1, CODEC8_EX3,
};
use firmware_protocols::testkit::{
    self, assert_err, bytes, times, Battery, Capture, Contract, Frame,
};
use firmware_protocols::{DecodeError, IoKey, IoValue, Reply, StreamDecoder};

const NOW: i64 = 1_700_000_000_000;
const MAX: usize = 1280;
const IMEI: &str = "356307042441013";

const IMEI_PACKET: &str = "000F333536333037303432343431303133";
const CODEC12_GETINFO: &str = "000000000000000F0C010500000007676574696E666F0100004312";

/// A session decoder that has already accepted the fact sheet's IMEI.
fn logged_in() -> TcpDecoder {
    let mut dec = TcpDecoder::new(MAX);
    let login = dec.decode(&bytes(IMEI_PACKET), NOW).unwrap().unwrap();
    assert_eq!(login.login.as_deref(), Some(IMEI));
    dec
}

fn data_reply(count: u32) -> Reply {
    Reply {
        accepted: Some(count.to_be_bytes().to_vec()),
        refused: Some(vec![0, 0, 0, 0]),
    }
}

/// Recomputes the data length and CRC field of an edited AVL packet.
fn refresh(mut frame: Vec<u8>) -> Vec<u8> {
    let data_len = frame.len() - 12;
    frame[4..8].copy_from_slice(&(data_len as u32).to_be_bytes());
    let crc = firmware_protocols::crc::crc16_arc(&frame[8..8 + data_len]);
    let end = frame.len();
    frame[end - 4..].copy_from_slice(&u32::from(crc).to_be_bytes());
    frame
}

/// Captures are decoded in a logged-in session (`true`) or on a fresh capture decoder.
const CASES: &[Capture<bool>] = &[
    Capture {
        source: "fact sheet §7 IMEI packet",
        frame: Frame::Hex(IMEI_PACKET),
        start: false,
        check: |d| {
            assert_eq!(d.login.as_deref(), Some(IMEI));
            assert!(d.records.is_empty());
            assert_eq!(d.reply.accepted.as_deref(), Some(&[0x01][..]));
            assert_eq!(d.reply.refused.as_deref(), Some(&[0x00][..]));
        },
    },
    Capture {
        source: "fact sheet §7 Codec 8 example 1",
        frame: Frame::Hex(CODEC8_EX1),
        start: true,
        check: |d| {
            assert_eq!(d.reply, data_reply(1));
            assert_eq!(hex::encode(d.reply.accepted.as_ref().unwrap()), "00000001");
            assert_eq!(times(d), ["2019-06-10T10:04:46.000Z"]);
            let r = &d.records[0];
            assert_eq!(r.device_id, IMEI);
            assert_eq!(r.received_at_ms, NOW);
            assert_eq!(r.event.as_deref(), Some("io:1"));
            assert_eq!(
                (r.lat, r.lon, r.altitude_m),
                (Some(0.0), Some(0.0), Some(0.0))
            );
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(0.0)));
            assert_eq!(
                (r.satellites, r.valid, r.hdop),
                (Some(0), Some(false), None)
            );
            let ids = [(21, 3), (1, 1), (66, 24079), (241, 24602), (78, 0)];
            assert_eq!(r.io, io_list(&[("priority", 1)], &ids));
            assert_eq!(r.raw, None);
        },
    },
    Capture {
        source: "fact sheet §7 Codec 8 example 3",
        frame: Frame::Hex(CODEC8_EX3),
        start: true,
        check: |d| {
            assert_eq!(d.reply, data_reply(2));
            assert_eq!(
                times(d),
                ["2019-06-10T10:01:01.000Z", "2019-06-10T10:01:19.000Z"]
            );
            assert_eq!(d.records[0].io, io_list(&[("priority", 1)], &[(1, 0)]));
            assert_eq!(d.records[1].io, io_list(&[("priority", 1)], &[(1, 1)]));
            assert!(d.records.iter().all(|r| r.event.as_deref() == Some("io:1")));
        },
    },
    Capture {
        source: "fact sheet §7 Codec 8 Extended",
        frame: Frame::Hex(CODEC8E_EX),
        start: true,
        check: |d| {
            assert_eq!(d.reply, data_reply(1));
            assert_eq!(times(d), ["2019-06-10T11:36:32.000Z"]);
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("io:1"));
            assert_eq!(r.valid, Some(false));
            let ids = [
                (1, 1),
                (17, 0x001D),
                (16, 22_949_000),
                (11, 0x3544_C87A),
                (14, 0x1DD7_E06A),
            ];
            assert_eq!(r.io, io_list(&[("priority", 1)], &ids));
        },
    },
    Capture {
        source: "fact sheet §7 Codec 16",
        frame: Frame::Hex(CODEC16_EX),
        start: true,
        check: |d| {
            assert_eq!(d.reply, data_reply(2));
            assert_eq!(
                times(d),
                ["2019-07-10T12:06:54.000Z", "2019-07-10T12:06:55.000Z"]
            );
            let named = [("priority", 0), ("generation_type", 5)];
            let first = [(1, 0), (3, 0), (11, 0x27), (66, 0x563A)];
            let second = [(1, 0), (3, 0), (11, 0x26), (66, 0x563A)];
            assert_eq!(d.records[0].io, io_list(&named, &first));
            assert_eq!(d.records[1].io, io_list(&named, &second));
            assert!(d
                .records
                .iter()
                .all(|r| r.event.as_deref() == Some("io:11")));
        },
    },
    Capture {
        source: "fact sheet §7 Codec 12 \"getinfo\" command (capture holds both directions)",
        frame: Frame::Hex(CODEC12_GETINFO),
        start: false,
        check: |d| {
            assert!(d.records.is_empty() && d.login.is_none());
            assert_eq!(d.reply, Reply::default());
        },
    },
];

fn decoder_for(session: &bool) -> TcpDecoder {
    if *session {
        logged_in()
    } else {
        TcpDecoder::for_capture(MAX)
    }
}

fn battery() -> Battery<bool, TcpDecoder> {
    Battery {
        captures: CASES,
        decoder: decoder_for,
        now: NOW,
        next: Frame::Hex(CODEC8_EX1),
        // Ranges are the registry's `checked` wrapper's job after this decoder.
        contract: Contract {
            ranges: false,
            ..Contract::SESSION
        },
    }
}

capture_battery!(battery);

/// The IMEI and every data packet of the table, as one device would send them.
fn session_bytes() -> Vec<u8> {
    let mut all = bytes(IMEI_PACKET);
    for hex_str in [CODEC8_EX1, "FF", CODEC8_EX3, CODEC8E_EX, CODEC16_EX] {
        all.extend(bytes(hex_str));
    }
    all.extend(encode_codec12_response(b"RTC:2019/6/10 10:04").unwrap());
    all.extend(bytes(CODEC8_EX1));
    all
}

#[test]
fn whole_session_in_one_buffer_decodes_frame_by_frame() {
    let mut buf = session_bytes();
    let mut dec = TcpDecoder::new(MAX);
    let frames = testkit::drain(&mut dec, &mut buf, NOW).unwrap();
    assert!(buf.is_empty());
    let counts: Vec<usize> = frames.iter().map(|d| d.records.len()).collect();
    assert_eq!(counts, [0, 1, 0, 2, 1, 2, 0, 1]);
    assert_eq!(frames[0].login.as_deref(), Some(IMEI));
    assert_eq!(frames[2].consumed, 1, "keep-alive");
    assert_eq!(frames[2].reply, Reply::default());
    assert_eq!(
        frames[6].reply,
        Reply::default(),
        "Codec 12 response gets no answer"
    );
    assert_eq!(dec.device_id(), Some(IMEI));
    assert!(frames
        .iter()
        .flat_map(|d| &d.records)
        .all(|r| r.device_id == IMEI));
}

#[test]
fn session_split_into_two_reads_at_every_offset_decodes_the_same() {
    testkit::split_at_every_offset(|| TcpDecoder::new(MAX), &session_bytes(), NOW, |f| f);
}

#[test]
fn capture_decoder_takes_packets_without_an_imei() {
    let mut dec = TcpDecoder::for_capture(MAX);
    let d = dec.decode(&bytes(CODEC8_EX1), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].device_id, "");
    assert_eq!(dec.device_id(), None);
    dec.decode(&bytes(IMEI_PACKET), NOW).unwrap().unwrap();
    let d = dec.decode(&bytes(CODEC8_EX1), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].device_id, IMEI);
}

#[test]
fn keep_raw_stores_codec_and_each_records_own_bytes_as_lowercase_hex() {
    let mut dec = TcpDecoder::for_capture(MAX).keep_raw(true);
    let d = dec.decode(&bytes(CODEC8_EX3), NOW).unwrap().unwrap();
    let frame = CODEC8_EX3.to_ascii_lowercase();
    // Header (8 bytes), codec, N1; then two 32-byte records; N2 and CRC.
    let first = &frame[20..84];
    let second = &frame[84..148];
    assert_eq!(
        d.records[0].raw.as_deref(),
        Some(format!("08{first}").as_str())
    );
    assert_eq!(
        d.records[1].raw.as_deref(),
        Some(format!("08{second}").as_str())
    );
    assert!(
        frame[148..].starts_with("02"),
        "N2 follows the second record"
    );
}

#[test]
fn record_json_of_codec8_example_1() {
    let d = logged_in()
        .decode(&bytes(CODEC8_EX1), NOW)
        .unwrap()
        .unwrap();
    let v = serde_json::to_value(d.records[0].json(None)).unwrap();
    assert_eq!(v["device_id"], IMEI);
    assert_eq!(v["protocol"], "teltonika");
    assert_eq!(v["time"], "2019-06-10T10:04:46.000Z");
    assert_eq!(v["valid"], false);
    assert_eq!(v["event"], "io:1");
    assert_eq!(v["io"]["priority"], 1);
    assert_eq!(v["io"]["66"], 24079);
    assert!(v["hdop"].is_null());
}

fn sample_record() -> AvlRecord {
    AvlRecord {
        timestamp_ms: 1_560_161_086_123,
        priority: 2,
        lon: -738_987_654, // 73.8987654° W
        lat: -338_688_000, // 33.8688° S
        altitude: -12,
        angle: 359,
        satellites: 11,
        speed: 87,
        event_id: 240,
        generation_type: 7,
        io: vec![
            (239, IoData::U8(1)),
            (182, IoData::U16(12)),
            (66, IoData::U16(12_850)),
            (241, IoData::U32(24_602)),
            (240, IoData::U8(1)),
            (78, IoData::U64(u64::MAX)),
        ],
    }
}

#[test]
fn encoder_reproduces_the_vendor_codec12_frame() {
    assert_eq!(
        encode_codec12_command(b"getinfo").unwrap(),
        bytes(CODEC12_GETINFO)
    );
    assert_eq!(encode_imei(IMEI), bytes(IMEI_PACKET));
}

#[test]
fn encoded_records_round_trip_in_every_codec() {
    let record = sample_record();
    let in_frame_order = [
        (239, 1),
        (240, 1),
        (182, 12),
        (66, 12_850),
        (241, 24_602),
        (78, u64::MAX),
    ];
    for (codec, frame, named) in [
        (
            "8",
            encode_codec8(std::slice::from_ref(&record)).unwrap(),
            vec![("priority", 2)],
        ),
        (
            "8E",
            encode_codec8_extended(std::slice::from_ref(&record)).unwrap(),
            vec![("priority", 2)],
        ),
        (
            "16",
            encode_codec16(std::slice::from_ref(&record)).unwrap(),
            vec![("priority", 2), ("generation_type", 7)],
        ),
    ] {
        let d = logged_in().decode(&frame, NOW).unwrap().unwrap();
        assert_eq!(d.consumed, frame.len(), "codec {codec}");
        let r = &d.records[0];
        assert_eq!(
            format_rfc3339_ms(r.time_ms.unwrap()),
            "2019-06-10T10:04:46.123Z"
        );
        assert_eq!(r.lat, Some(-33.8688), "codec {codec}");
        assert_eq!(r.lon, Some(-73.8987654), "codec {codec}");
        assert_eq!(r.altitude_m, Some(-12.0));
        assert_eq!(r.course_deg, Some(359.0));
        assert_eq!(r.speed_kmh, Some(87.0));
        assert_eq!((r.satellites, r.valid), (Some(11), Some(true)));
        assert_eq!(r.hdop, Some(1.2), "IO 182 is HDOP x10");
        assert_eq!(r.event.as_deref(), Some("io:240"));
        assert_eq!(r.io, io_list(&named, &in_frame_order), "codec {codec}");
    }
}

#[test]
fn encode_avl_packet_dispatches_on_the_codec() {
    let records = [sample_record(), AvlRecord::default()];
    assert_eq!(
        encode_avl_packet(Codec::Codec8, &records),
        encode_codec8(&records)
    );
    let extended = encode_avl_packet(Codec::Codec8Extended, &records);
    assert_eq!(extended, encode_codec8_extended(&records));
    assert_eq!(
        encode_avl_packet(Codec::Codec16, &records),
        encode_codec16(&records)
    );
}

#[test]
fn codec8_extended_carries_variable_length_values_and_wide_ids() {
    let mut record = sample_record();
    record.event_id = 0;
    record.io = vec![
        (256, IoData::Bytes(b"WVWZZZ1JZXW000001".to_vec())),
        (385, IoData::Bytes(vec![])),
        (1000, IoData::U8(9)),
    ];
    let frame = encode_codec8_extended(&[record.clone(), record]).unwrap();
    let d = logged_in().decode(&frame, NOW).unwrap().unwrap();
    assert_eq!(d.records.len(), 2);
    let r = &d.records[1];
    assert_eq!(r.event, None, "event id 0 is a periodic record");
    assert_eq!(
        r.io[1..],
        [
            (IoKey::Id(1000), IoValue::U64(9)),
            (
                IoKey::Id(256),
                IoValue::Bytes(b"WVWZZZ1JZXW000001".to_vec())
            ),
            (IoKey::Id(385), IoValue::Bytes(vec![])),
        ]
    );
}

#[test]
fn encoder_refuses_what_a_codec_cannot_carry() {
    let mut wide = sample_record();
    wide.io.push((300, IoData::U8(0)));
    assert_eq!(encode_codec8(&[wide]), Err(EncodeError::IdTooWide(300)));
    let mut nx = sample_record();
    nx.io.push((11, IoData::Bytes(vec![1, 2])));
    assert_eq!(
        encode_codec16(&[nx]),
        Err(EncodeError::BadBytesValue { id: 11, len: 2 })
    );
    let many = vec![AvlRecord::default(); 256];
    assert_eq!(encode_codec8(&many), Err(EncodeError::TooManyRecords(256)));
}

// ---- errors -------------------------------------------------------------------------------

fn session_err(frame: &[u8]) -> DecodeError {
    logged_in()
        .decode(frame, NOW)
        .expect_err("frame must be rejected")
}

#[test]
fn bad_crc_is_rejected_at_the_crc_field() {
    let mut frame = bytes(CODEC8_EX1);
    *frame.last_mut().unwrap() ^= 0x01;
    assert_err(session_err(&frame), 62, "CRC");
    // A flipped data byte is caught the same way.
    let mut frame = bytes(CODEC8_EX1);
    frame[20] ^= 0x80;
    assert_err(session_err(&frame), 62, "CRC");
    // The two bytes before the CRC must be zero.
    let mut frame = bytes(CODEC8_EX1);
    frame[62] = 0x01;
    assert_err(session_err(&frame), 62, "CRC");
}

#[test]
fn number_of_data_mismatch_is_rejected_at_n2() {
    let mut frame = bytes(CODEC8_EX3);
    frame[8 + 0x43 - 1] = 1;
    assert_err(
        session_err(&refresh(frame)),
        74,
        "Number of Data 2 (1) differs from Number of Data 1 (2)",
    );
}

#[test]
fn truncated_record_inside_a_correct_length_names_the_field() {
    // Drop IO 78 and its 8-byte value (frame bytes 52..61) but keep "N8 = 1": the length
    // and CRC are right, the record is short.
    let mut frame = bytes(CODEC8_EX1);
    frame.drain(52..61);
    assert_err(
        session_err(&refresh(frame)),
        52,
        "record 1 of 1: truncated IO id",
    );
}

#[test]
fn bytes_left_after_the_records_are_rejected() {
    let mut frame = bytes(CODEC8_EX1);
    frame.splice(61..61, [0xAA, 0xBB]);
    assert_err(session_err(&refresh(frame)), 61, "2 bytes left");
}

#[test]
fn n_total_must_match_the_group_counts() {
    let mut frame = bytes(CODEC8_EX1);
    frame[35] = 4;
    assert_err(
        session_err(&refresh(frame)),
        35,
        "N total says 4 IO elements but the groups hold 5",
    );
}

#[test]
fn oversize_length_is_rejected_from_the_header_alone() {
    let mut dec = logged_in();
    let header = [0, 0, 0, 0, 0, 0, 0x05, 0x00]; // L = 1280, frame 1292 > 1280
    assert_eq!(dec.decode(&header[..7], NOW), Ok(None));
    assert_err(
        dec.decode(&header, NOW).unwrap_err(),
        4,
        "frame of 1292 bytes exceeds the limit of 1280",
    );
    let huge = [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    assert_err(dec.decode(&huge, NOW).unwrap_err(), 4, "exceeds the limit");
    // Exactly at the limit is fine.
    let fits = [0, 0, 0, 0, 0, 0, 0x04, 0xF4];
    assert_eq!(dec.decode(&fits, NOW), Ok(None));
}

#[test]
fn tiny_data_length_is_rejected() {
    assert_err(
        session_err(&[0, 0, 0, 0, 0, 0, 0, 2]),
        4,
        "below the minimum",
    );
}

#[test]
fn non_zero_preamble_is_rejected_at_the_first_bad_byte() {
    assert_err(
        session_err(&bytes(IMEI_PACKET)),
        1,
        "non-zero preamble byte 0x0f",
    );
    assert_err(session_err(&[0, 0, 7]), 2, "non-zero preamble byte 0x07");
    assert_err(session_err(&[0x42]), 0, "non-zero preamble");
}

#[test]
fn data_before_the_imei_is_rejected() {
    let err = TcpDecoder::new(MAX)
        .decode(&bytes(CODEC8_EX1), NOW)
        .unwrap_err();
    assert_err(err, 0, "before the IMEI");
    // Decided as soon as the second zero byte arrives.
    let err = TcpDecoder::new(MAX).decode(&[0, 0], NOW).unwrap_err();
    assert_err(err, 0, "before the IMEI");
}

#[test]
fn bad_imei_packets_are_rejected() {
    let bad_char = encode_imei("35630704244101A");
    let mut dec = TcpDecoder::new(MAX);
    assert_err(
        dec.decode(&bad_char, NOW).unwrap_err(),
        16,
        "0x41 is not an ASCII digit",
    );
    // Found before the packet is complete.
    let early = encode_imei("35X");
    assert_err(
        TcpDecoder::new(MAX).decode(&early, NOW).unwrap_err(),
        4,
        "not an ASCII digit",
    );
    assert_err(
        TcpDecoder::new(MAX).decode(&[0, 21], NOW).unwrap_err(),
        0,
        "IMEI length 21",
    );
    assert_err(
        TcpDecoder::new(MAX).decode(&[1], NOW).unwrap_err(),
        0,
        "IMEI length",
    );
    assert_eq!(dec.device_id(), None);
    // 1 and 20 digits are the accepted extremes.
    for imei in ["7", "12345678901234567890"] {
        let d = TcpDecoder::new(MAX)
            .decode(&encode_imei(imei), NOW)
            .unwrap()
            .unwrap();
        assert_eq!(d.login.as_deref(), Some(imei));
    }
}

#[test]
fn unknown_codec_is_rejected_at_the_codec_id() {
    let mut frame = bytes(CODEC8_EX1);
    frame[8] = 0x0D;
    // Known from the ninth byte on, before the frame is complete.
    assert_err(session_err(&frame[..9]), 8, "unsupported codec id 0x0d");
}

#[test]
fn codec12_command_from_a_device_is_rejected_in_a_session() {
    assert_err(session_err(&bytes(CODEC12_GETINFO)), 10, "type 0x05");
    let response = encode_codec12_response(b"ok").unwrap();
    assert_eq!(
        logged_in().decode(&response, NOW).unwrap().unwrap().reply,
        Reply::default()
    );
}

#[test]
fn keep_alive_is_one_byte_with_no_answer() {
    for mut dec in [
        TcpDecoder::new(MAX),
        logged_in(),
        TcpDecoder::for_capture(MAX),
    ] {
        let d = dec.decode(&[0xFF, 0x00], NOW).unwrap().unwrap();
        assert_eq!(d.consumed, 1);
        assert_eq!(d.reply, Reply::default());
    }
}

#[test]
fn small_limits_never_ask_for_more_than_the_limit() {
    let frame = bytes(CODEC8_EX1);
    let mut dec = TcpDecoder::for_capture(frame.len() - 1);
    assert_err(
        dec.decode(&frame[..8], NOW).unwrap_err(),
        4,
        "exceeds the limit",
    );
    let mut tiny = TcpDecoder::for_capture(3);
    assert!(tiny.decode(&[0, 0, 0], NOW).is_err());
    assert_eq!(tiny.max_frame_bytes(), 3);
}
