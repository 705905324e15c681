//! Teltonika TCP decoder against the vendor's example frames (shared/protocols/teltonika.md
//! section 7, taken from the Teltonika wiki), stream splitting, and error reporting.

use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::teltonika::encode::{
    encode_avl_packet, encode_codec12_command, encode_codec12_response, encode_codec16,
    encode_codec8, encode_codec8_extended, encode_imei, AvlRecord, Codec, EncodeError, IoData,
};
use firmware_protocols::teltonika::TcpDecoder;
use firmware_protocols::{DecodeError, Decoded, IoKey, IoValue, Reply, StreamDecoder};

const NOW: i64 = 1_700_000_000_000;
const MAX: usize = 1280;
const IMEI: &str = "356307042441013";

const IMEI_PACKET: &str = "000F333536333037303432343431303133";
const CODEC8_EX1: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
const CODEC8_EX3: &str = "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C198010000000000000000000000000000000101010101000000020000252C";
const CODEC8E_EX: &str = "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994";
const CODEC16_EX: &str = "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3";
const CODEC12_GETINFO: &str = "000000000000000F0C010500000007676574696E666F0100004312";

fn bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).expect("test hex")
}

/// A session decoder that has already accepted the fact sheet's IMEI.
fn logged_in() -> TcpDecoder {
    let mut dec = TcpDecoder::new(MAX);
    let login = dec.decode(&bytes(IMEI_PACKET), NOW).unwrap().unwrap();
    assert_eq!(login.login.as_deref(), Some(IMEI));
    dec
}

/// The io list a record carries: named fields first, then `(id, value)` in frame order.
fn io(named: &[(&str, u64)], ids: &[(u32, u64)]) -> Vec<(IoKey, IoValue)> {
    named
        .iter()
        .map(|&(n, v)| (IoKey::Name(n.to_owned()), IoValue::U64(v)))
        .chain(ids.iter().map(|&(id, v)| (IoKey::Id(id), IoValue::U64(v))))
        .collect()
}

fn times(d: &Decoded) -> Vec<String> {
    d.records
        .iter()
        .map(|r| format_rfc3339_ms(r.time_ms.unwrap()))
        .collect()
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

/// Decodes every complete frame at the front of `buf`, like a connection loop does.
fn drain(
    dec: &mut TcpDecoder,
    buf: &mut Vec<u8>,
    out: &mut Vec<Decoded>,
) -> Result<(), DecodeError> {
    while let Some(d) = dec.decode(buf, NOW)? {
        assert!(d.consumed > 0 && d.consumed <= buf.len());
        buf.drain(..d.consumed);
        out.push(d);
    }
    Ok(())
}

struct Case {
    source: &'static str,
    hex: &'static str,
    /// Decode in a logged-in session (`true`) or on a fresh capture decoder.
    session: bool,
    check: fn(&Decoded),
}

const CASES: &[Case] = &[
    Case {
        source: "fact sheet §7 IMEI packet",
        hex: IMEI_PACKET,
        session: false,
        check: |d| {
            assert_eq!(d.login.as_deref(), Some(IMEI));
            assert!(d.records.is_empty());
            assert_eq!(d.reply.accepted.as_deref(), Some(&[0x01][..]));
            assert_eq!(d.reply.refused.as_deref(), Some(&[0x00][..]));
        },
    },
    Case {
        source: "fact sheet §7 Codec 8 example 1",
        hex: CODEC8_EX1,
        session: true,
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
            assert_eq!(r.io, io(&[("priority", 1)], &ids));
            assert_eq!(r.raw, None);
        },
    },
    Case {
        source: "fact sheet §7 Codec 8 example 3",
        hex: CODEC8_EX3,
        session: true,
        check: |d| {
            assert_eq!(d.reply, data_reply(2));
            assert_eq!(
                times(d),
                ["2019-06-10T10:01:01.000Z", "2019-06-10T10:01:19.000Z"]
            );
            assert_eq!(d.records[0].io, io(&[("priority", 1)], &[(1, 0)]));
            assert_eq!(d.records[1].io, io(&[("priority", 1)], &[(1, 1)]));
            assert!(d.records.iter().all(|r| r.event.as_deref() == Some("io:1")));
        },
    },
    Case {
        source: "fact sheet §7 Codec 8 Extended",
        hex: CODEC8E_EX,
        session: true,
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
            assert_eq!(r.io, io(&[("priority", 1)], &ids));
        },
    },
    Case {
        source: "fact sheet §7 Codec 16",
        hex: CODEC16_EX,
        session: true,
        check: |d| {
            assert_eq!(d.reply, data_reply(2));
            assert_eq!(
                times(d),
                ["2019-07-10T12:06:54.000Z", "2019-07-10T12:06:55.000Z"]
            );
            let named = [("priority", 0), ("generation_type", 5)];
            let first = [(1, 0), (3, 0), (11, 0x27), (66, 0x563A)];
            let second = [(1, 0), (3, 0), (11, 0x26), (66, 0x563A)];
            assert_eq!(d.records[0].io, io(&named, &first));
            assert_eq!(d.records[1].io, io(&named, &second));
            assert!(d
                .records
                .iter()
                .all(|r| r.event.as_deref() == Some("io:11")));
        },
    },
    Case {
        source: "fact sheet §7 Codec 12 \"getinfo\" command (capture holds both directions)",
        hex: CODEC12_GETINFO,
        session: false,
        check: |d| {
            assert!(d.records.is_empty() && d.login.is_none());
            assert_eq!(d.reply, Reply::default());
        },
    },
];

fn decoder_for(case: &Case) -> TcpDecoder {
    if case.session {
        logged_in()
    } else {
        TcpDecoder::for_capture(MAX)
    }
}

#[test]
fn vendor_frames_decode() {
    for case in CASES {
        let frame = bytes(case.hex);
        let d = decoder_for(case)
            .decode(&frame, NOW)
            .unwrap_or_else(|e| panic!("{}: {e}", case.source))
            .unwrap_or_else(|| panic!("{}: incomplete", case.source));
        assert_eq!(d.consumed, frame.len(), "{}", case.source);
        (case.check)(&d);
    }
}

#[test]
fn vendor_frames_fed_one_byte_at_a_time_need_more_until_the_last() {
    for case in CASES {
        let frame = bytes(case.hex);
        let mut dec = decoder_for(case);
        for end in 1..frame.len() {
            assert_eq!(
                dec.decode(&frame[..end], NOW),
                Ok(None),
                "{} at {end}",
                case.source
            );
        }
        let d = dec.decode(&frame, NOW).unwrap().unwrap();
        assert_eq!(d.consumed, frame.len(), "{}", case.source);
        (case.check)(&d);
    }
}

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

fn summary(frames: &[Decoded]) -> Vec<(usize, Option<String>, usize, Reply)> {
    frames
        .iter()
        .map(|d| {
            (
                d.consumed,
                d.login.clone(),
                d.records.len(),
                d.reply.clone(),
            )
        })
        .collect()
}

#[test]
fn whole_session_in_one_buffer_decodes_frame_by_frame() {
    let mut buf = session_bytes();
    let mut dec = TcpDecoder::new(MAX);
    let mut frames = Vec::new();
    drain(&mut dec, &mut buf, &mut frames).unwrap();
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
    let all = session_bytes();
    let mut expected = Vec::new();
    drain(&mut TcpDecoder::new(MAX), &mut all.clone(), &mut expected).unwrap();
    for split in 0..=all.len() {
        let mut dec = TcpDecoder::new(MAX);
        let mut buf = all[..split].to_vec();
        let mut frames = Vec::new();
        drain(&mut dec, &mut buf, &mut frames).unwrap();
        buf.extend_from_slice(&all[split..]);
        drain(&mut dec, &mut buf, &mut frames).unwrap();
        assert!(buf.is_empty(), "split {split}");
        assert_eq!(summary(&frames), summary(&expected), "split {split}");
        assert_eq!(frames, expected, "split {split}");
    }
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
        assert_eq!(r.io, io(&named, &in_frame_order), "codec {codec}");
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

fn assert_err(err: DecodeError, offset: usize, needle: &str) {
    assert_eq!(err.offset, offset, "{err}");
    assert!(
        err.reason.contains(needle),
        "{err:?} should mention {needle:?}"
    );
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
