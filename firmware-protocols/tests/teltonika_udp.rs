//! Teltonika UDP decoder against the vendor's UDP example (shared/protocols/teltonika.md
//! section 7), datagrams built from the vendor's AVL examples and the encoder, the malformed
//! datagram suite, and properties.
//!
//! This is a datagram decoder ([`DatagramDecoder`]): the gateway hands it one whole datagram
//! and it answers with one frame or an error, with no "need more bytes" state. So the stream
//! tests other decoders have (one byte at a time, two reads split at every offset, a session
//! in one buffer) do not apply. Their datagram counterpart is here instead: every truncation of
//! a valid datagram is an error, never a partial decode.

use firmware_protocols::teltonika::encode::{
    encode_codec16, encode_codec8, encode_codec8_extended, AvlRecord, IoData,
};
use firmware_protocols::teltonika_udp::UdpDecoder;
use firmware_protocols::testkit::teltonika::{
    avl_record, io_list, CODEC16_EX, CODEC8E_EX, CODEC8_EX1, CODEC8_EX3,
};
use firmware_protocols::testkit::{assert_err, bytes, times};
use firmware_protocols::{
    DatagramDecoder, DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Protocol, Reply,
};
use proptest::collection::vec;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;
const MAX: usize = 1280;

/// Fact sheet §7 "Codec 8 over UDP".
const UDP_EXAMPLE: &str = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001";
const UDP_IMEI: &str = "352093086403655";
// The fact sheet's §7 TCP examples (`testkit::teltonika`): their data fields (codec id ..
// Number of Data 2) are the AVL data a UDP datagram carries.

fn decoder() -> UdpDecoder {
    UdpDecoder::new(&DecoderOptions::new(MAX))
}

fn raw_decoder() -> UdpDecoder {
    UdpDecoder::new(&DecoderOptions {
        keep_raw: true,
        ..DecoderOptions::new(MAX)
    })
}

/// The AVL data (codec id .. Number of Data 2) of a TCP AVL packet: without the preamble, the
/// data length and the CRC field, which UDP does not have.
fn avl_data(tcp_packet: &[u8]) -> &[u8] {
    &tcp_packet[8..tcp_packet.len() - 4]
}

/// A UDP datagram around `avl`: length, packet id, the "not usable" 01, AVL packet id, IMEI.
fn datagram(packet_id: u16, avl_packet_id: u8, imei: &str, avl: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.push(0x01);
    out.push(avl_packet_id);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out.extend_from_slice(avl);
    fix_length(out)
}

/// Rewrites the length field of an edited datagram.
fn fix_length(mut d: Vec<u8>) -> Vec<u8> {
    let len = (d.len() - 2) as u16;
    d[..2].copy_from_slice(&len.to_be_bytes());
    d
}

fn ack(packet_id: u16, avl_packet_id: u8, count: u8) -> Vec<u8> {
    let [p0, p1] = packet_id.to_be_bytes();
    vec![0x00, 0x05, p0, p1, 0x01, avl_packet_id, count]
}

fn reply(packet_id: u16, avl_packet_id: u8, count: u8) -> Reply {
    Reply {
        accepted: Some(ack(packet_id, avl_packet_id, count)),
        refused: Some(ack(packet_id, avl_packet_id, 0)),
    }
}

/// What every successfully decoded datagram has in common.
fn check_common(d: &Decoded, len: usize, imei: &str) {
    assert_eq!(d.consumed, len);
    assert_eq!(d.login, None, "UDP datagrams are not logins");
    assert_eq!(d.problem, None);
    for r in &d.records {
        assert_eq!(r.device_id, imei);
        assert_eq!(r.protocol, Protocol::TeltonikaUdp);
        assert_eq!(r.received_at_ms, NOW);
        assert_eq!(r.raw, None);
    }
    let accepted = d.reply.accepted.as_ref().unwrap();
    assert_eq!(accepted.len(), 7);
    assert_eq!(usize::from(accepted[6]), d.records.len());
}

/// The example in §8E (test-built): two records with a southern/western fix, a wide id, HDOP
/// and a variable-length value.
fn extended_records() -> Vec<AvlRecord> {
    vec![
        AvlRecord {
            timestamp_ms: 1_700_000_000_123,
            priority: 2,
            lon: -433_569_012,
            lat: -229_068_467,
            altitude: -12,
            angle: 271,
            satellites: 9,
            speed: 87,
            event_id: 385,
            generation_type: 0,
            io: vec![
                (239, IoData::U8(1)),
                (182, IoData::U16(13)),
                (16, IoData::U32(1_234_567)),
                (281, IoData::U64(0x0102_0304_0506_0708)),
                (256, IoData::Bytes(b"WVWZZZ1JZXW000001".to_vec())),
            ],
        },
        AvlRecord {
            timestamp_ms: 1_700_000_010_000,
            priority: 0,
            lon: -433_569_999,
            lat: -229_068_000,
            altitude: 5,
            angle: 0,
            satellites: 0,
            speed: 0,
            event_id: 0,
            generation_type: 0,
            io: vec![(66, IoData::U16(12_850))],
        },
    ]
}

struct Case {
    source: &'static str,
    datagram: fn() -> Vec<u8>,
    check: fn(&Decoded),
}

const CASES: &[Case] = &[
    Case {
        source: "fact sheet §7 Codec 8 over UDP (ack 0005CAFE010501)",
        datagram: || bytes(UDP_EXAMPLE),
        check: |d| {
            check_common(d, 63, UDP_IMEI);
            assert_eq!(d.reply, reply(0xCAFE, 0x05, 1));
            assert_eq!(
                hex::encode_upper(d.reply.accepted.as_ref().unwrap()),
                "0005CAFE010501"
            );
            assert_eq!(times(d), ["2019-06-13T06:23:26.000Z"]);
            let r = &d.records[0];
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
            assert_eq!(
                r.io,
                io_list(&[("priority", 1)], &[(21, 3), (1, 1), (66, 0x5DBC)])
            );
        },
    },
    Case {
        source: "fact sheet §7 Codec 8 example 1, data field in a §4 UDP header",
        datagram: || datagram(0x0001, 0x00, UDP_IMEI, avl_data(&bytes(CODEC8_EX1))),
        check: |d| {
            check_common(d, 8 + 15 + 54, UDP_IMEI);
            assert_eq!(d.reply, reply(0x0001, 0x00, 1));
            assert_eq!(times(d), ["2019-06-10T10:04:46.000Z"]);
            assert_eq!(
                d.records[0].io,
                io_list(
                    &[("priority", 1)],
                    &[(21, 3), (1, 1), (66, 24079), (241, 24602), (78, 0)]
                )
            );
        },
    },
    Case {
        source: "fact sheet §7 Codec 8 example 3 (two records), data field in a §4 UDP header",
        datagram: || {
            datagram(
                0xFFFF,
                0xFE,
                "356307042441013",
                avl_data(&bytes(CODEC8_EX3)),
            )
        },
        check: |d| {
            check_common(d, 8 + 15 + 67, "356307042441013");
            assert_eq!(d.reply, reply(0xFFFF, 0xFE, 2));
            assert_eq!(
                times(d),
                ["2019-06-10T10:01:01.000Z", "2019-06-10T10:01:19.000Z"]
            );
            assert_eq!(d.records[0].io, io_list(&[("priority", 1)], &[(1, 0)]));
            assert_eq!(d.records[1].io, io_list(&[("priority", 1)], &[(1, 1)]));
        },
    },
    Case {
        source: "fact sheet §7 Codec 8 Extended, data field in a §4 UDP header",
        datagram: || datagram(0x1234, 0x07, UDP_IMEI, avl_data(&bytes(CODEC8E_EX))),
        check: |d| {
            check_common(d, 8 + 15 + 74, UDP_IMEI);
            assert_eq!(d.reply, reply(0x1234, 0x07, 1));
            assert_eq!(times(d), ["2019-06-10T11:36:32.000Z"]);
            assert_eq!(d.records[0].event.as_deref(), Some("io:1"));
            assert_eq!(
                d.records[0].io,
                io_list(
                    &[("priority", 1)],
                    &[
                        (1, 1),
                        (17, 0x1D),
                        (16, 22_949_000),
                        (11, 0x3544_C87A),
                        (14, 0x1DD7_E06A)
                    ]
                )
            );
        },
    },
    Case {
        source: "fact sheet §7 Codec 16, data field in a §4 UDP header",
        datagram: || datagram(0x0002, 0x01, UDP_IMEI, avl_data(&bytes(CODEC16_EX))),
        check: |d| {
            check_common(d, 8 + 15 + 95, UDP_IMEI);
            assert_eq!(d.reply, reply(0x0002, 0x01, 2));
            assert_eq!(
                times(d),
                ["2019-07-10T12:06:54.000Z", "2019-07-10T12:06:55.000Z"]
            );
            assert_eq!(d.records[0].event.as_deref(), Some("io:11"));
            assert_eq!(
                d.records[1].io,
                io_list(
                    &[("priority", 0), ("generation_type", 5)],
                    &[(1, 0), (3, 0), (11, 0x26), (66, 0x563A)]
                )
            );
        },
    },
    Case {
        source: "built: Codec 8 Extended via teltonika::encode (south/west, id >= 256, NX, HDOP)",
        datagram: || {
            let packet = encode_codec8_extended(&extended_records()).unwrap();
            datagram(0xBEEF, 0x2A, "861230043285937", avl_data(&packet))
        },
        check: |d| {
            check_common(d, d.consumed, "861230043285937");
            assert_eq!(d.reply, reply(0xBEEF, 0x2A, 2));
            assert_eq!(
                times(d),
                ["2023-11-14T22:13:20.123Z", "2023-11-14T22:13:30.000Z"]
            );
            let r = &d.records[0];
            assert_eq!(r.lat, Some(-22.9068467));
            assert_eq!(r.lon, Some(-43.3569012));
            assert_eq!(r.altitude_m, Some(-12.0));
            assert_eq!((r.course_deg, r.speed_kmh), (Some(271.0), Some(87.0)));
            assert_eq!(
                (r.satellites, r.valid, r.hdop),
                (Some(9), Some(true), Some(1.3))
            );
            assert_eq!(r.event.as_deref(), Some("io:385"));
            let mut want = io_list(
                &[("priority", 2)],
                &[
                    (239, 1),
                    (182, 13),
                    (16, 1_234_567),
                    (281, 0x0102_0304_0506_0708),
                ],
            );
            want.push((
                IoKey::Id(256),
                IoValue::Bytes(b"WVWZZZ1JZXW000001".to_vec()),
            ));
            assert_eq!(r.io, want);
            let r = &d.records[1];
            assert_eq!((r.valid, r.event.as_deref()), (Some(false), None));
            assert_eq!(r.io, io_list(&[("priority", 0)], &[(66, 12_850)]));
        },
    },
    Case {
        source: "built: no records (N1 = N2 = 0) is a valid, empty datagram acked with 0",
        datagram: || datagram(0x0100, 0x09, UDP_IMEI, &[0x08, 0x00, 0x00]),
        check: |d| {
            check_common(d, 8 + 15 + 3, UDP_IMEI);
            assert!(d.records.is_empty());
            assert_eq!(d.reply, reply(0x0100, 0x09, 0));
        },
    },
];

#[test]
fn vendor_and_built_datagrams_decode() {
    for case in CASES {
        let d = (case.datagram)();
        let decoded = decoder()
            .decode(&d, NOW)
            .unwrap_or_else(|e| panic!("{}: {e}", case.source));
        assert_eq!(decoded.consumed, d.len(), "{}", case.source);
        (case.check)(&decoded);
    }
}

#[test]
fn every_truncation_of_a_valid_datagram_is_an_error() {
    for case in CASES {
        let d = (case.datagram)();
        for cut in 0..d.len() {
            let err = decoder().decode(&d[..cut], NOW).unwrap_err();
            // With the length field present the mismatch is caught there, before any field.
            let want = if cut < 2 {
                "truncated length field"
            } else {
                "length field says"
            };
            assert!(
                err.reason.contains(want),
                "{} cut {cut}: {err}",
                case.source
            );
            assert_eq!(err.offset, 0, "{} cut {cut}", case.source);
        }
    }
}

#[test]
fn keep_raw_stores_codec_and_each_records_own_bytes_as_lowercase_hex() {
    let d = raw_decoder().decode(&bytes(UDP_EXAMPLE), NOW).unwrap();
    // Codec id 08, then the record (datagram bytes 25..62), as the TCP decoder keeps it.
    let record = &UDP_EXAMPLE[50..124];
    assert_eq!(
        d.records[0].raw.as_deref(),
        Some(format!("08{}", record.to_lowercase()).as_str())
    );

    let data = avl_data(&bytes(CODEC8_EX3)).to_vec();
    let d = raw_decoder()
        .decode(&datagram(1, 1, UDP_IMEI, &data), NOW)
        .unwrap();
    let raws: Vec<_> = d.records.iter().map(|r| r.raw.clone().unwrap()).collect();
    assert_eq!(
        raws,
        [
            format!("08{}", hex::encode(&data[2..34])),
            format!("08{}", hex::encode(&data[34..66])),
        ]
    );
}

#[test]
fn record_json_of_the_udp_example() {
    let d = decoder().decode(&bytes(UDP_EXAMPLE), NOW).unwrap();
    let json = serde_json::to_value(d.records[0].json(None)).unwrap();
    assert_eq!(json["protocol"], "teltonika-udp");
    assert_eq!(json["device_id"], UDP_IMEI);
    assert_eq!(json["time"], "2019-06-13T06:23:26.000Z");
    assert_eq!(json["event"], "io:1");
    assert_eq!(json["io"]["66"], 0x5DBC);
    assert_eq!(json["hdop"], serde_json::Value::Null);
}

#[test]
fn options_device_id_is_ignored_for_the_datagrams_imei() {
    let dec = UdpDecoder::new(&DecoderOptions {
        device_id: Some("configured".into()),
        ..DecoderOptions::new(MAX)
    });
    let d = dec.decode(&bytes(UDP_EXAMPLE), NOW).unwrap();
    assert_eq!(d.records[0].device_id, UDP_IMEI);
}

// ---- malformed datagrams: every one is an `Err` naming the field and its offset ----

fn err(d: &[u8]) -> DecodeError {
    let e = decoder()
        .decode(d, NOW)
        .expect_err("malformed datagram decoded");
    // A missing field is reported where it should start, which may be the datagram's end.
    assert!(
        e.offset <= d.len(),
        "offset {} past {} bytes",
        e.offset,
        d.len()
    );
    e
}

fn example() -> Vec<u8> {
    bytes(UDP_EXAMPLE)
}

#[test]
fn empty_and_one_byte_datagrams_are_truncated_length_fields() {
    assert_err(err(&[]), 0, "truncated length field: needs 2 bytes, 0 left");
    assert_err(
        err(&[0x00]),
        0,
        "truncated length field: needs 2 bytes, 1 left",
    );
}

#[test]
fn length_field_must_match_the_datagram() {
    let mut d = example();
    d[1] = 0x3E;
    assert_err(
        err(&d),
        0,
        "length field says 62 bytes follow but the datagram has 61 after it",
    );
    d[1] = 0x3C;
    assert_err(err(&d), 0, "length field says 60 bytes follow");
    // Padding after Number of Data 2 is a mismatch too.
    let mut d = example();
    d.push(0x00);
    assert_err(
        err(&d),
        0,
        "length field says 61 bytes follow but the datagram has 62",
    );
    assert_err(
        err(&[0xFF, 0xFF, 0x00]),
        0,
        "length field says 65535 bytes follow",
    );
}

#[test]
fn short_headers_name_the_missing_field() {
    assert_err(err(&[0x00, 0x01, 0xCA]), 2, "truncated packet id");
    assert_err(
        err(&[0x00, 0x02, 0xCA, 0xFE]),
        4,
        "truncated \"not usable\" byte",
    );
    assert_err(
        err(&[0x00, 0x03, 0xCA, 0xFE, 0x01]),
        5,
        "truncated AVL packet id",
    );
    assert_err(
        err(&[0x00, 0x05, 0xCA, 0xFE, 0x01, 0x05, 0x00]),
        6,
        "truncated IMEI length: needs 2 bytes, 1 left",
    );
    let mut d = example();
    d.truncate(8 + 5);
    assert_err(
        err(&fix_length(d)),
        8,
        "truncated IMEI: needs 15 bytes, 5 left",
    );
}

#[test]
fn bad_imeis_are_rejected() {
    // Length 0 and past 20 digits.
    let mut d = example();
    d[7] = 0;
    assert_err(err(&d), 6, "IMEI length 0: expected 1..=20 digits");
    d[7] = 21;
    assert_err(err(&d), 6, "IMEI length 21: expected 1..=20 digits");
    d[6] = 0x01;
    d[7] = 0x00;
    assert_err(err(&d), 6, "IMEI length 256");
    // A non-digit at IMEI position 3.
    let mut d = example();
    d[8 + 3] = b'A';
    assert_err(err(&d), 11, "IMEI byte 0x41 is not an ASCII digit");
    // A length of 20 reads into the codec id (0x08), which is not a digit.
    let mut d = example();
    d[7] = 20;
    assert_err(err(&d), 23, "IMEI byte 0x08 is not an ASCII digit");
}

#[test]
fn missing_avl_data_is_rejected_after_the_imei() {
    let d = datagram(1, 1, UDP_IMEI, &[]);
    assert_err(err(&d), 23, "AVL data of 0 bytes after the IMEI");
    let d = datagram(1, 1, UDP_IMEI, &[0x08, 0x00]);
    assert_err(err(&d), 23, "AVL data of 2 bytes");
}

#[test]
fn unsupported_codecs_are_rejected_at_the_codec_id() {
    for codec in [0x0C, 0x00, 0x8F, 0xFF] {
        let mut d = example();
        d[23] = codec;
        assert_err(
            err(&d),
            23,
            &format!("unsupported codec id 0x{codec:02x} (expected 08, 8e or 10)"),
        );
    }
}

#[test]
fn number_of_data_mismatch_is_rejected_at_n2() {
    let mut d = example();
    d[62] = 2;
    assert_err(
        err(&d),
        62,
        "Number of Data 2 (2) differs from Number of Data 1 (1)",
    );
    let mut d = example();
    d[24] = 0;
    assert_err(
        err(&d),
        62,
        "Number of Data 2 (1) differs from Number of Data 1 (0)",
    );
}

#[test]
fn truncated_record_inside_a_correct_length_names_the_field_at_its_datagram_offset() {
    // Drop the N8 count (byte 61) and fix the length: the record then runs into N2's place.
    let mut d = example();
    d.remove(61);
    assert_err(
        err(&fix_length(d)),
        61,
        "record 1 of 1: truncated N8 count: needs 1 bytes, 0 left",
    );
    // Two records announced, one present.
    let mut d = example();
    d[24] = 2;
    d[62] = 2;
    assert_err(err(&d), 62, "record 2 of 2: truncated timestamp");
}

#[test]
fn n_total_must_match_the_group_counts() {
    let mut d = example();
    d[50] = 4;
    assert_err(
        err(&d),
        50,
        "record 1 of 1: N total says 4 IO elements but the groups hold 3",
    );
}

#[test]
fn bytes_left_between_the_records_and_n2_are_rejected() {
    let mut d = example();
    d.insert(62, 0xAA);
    assert_err(
        err(&fix_length(d)),
        62,
        "1 bytes left between the last of 1 records and Number of Data 2",
    );
}

#[test]
fn oversize_datagrams_are_rejected_before_parsing() {
    let d = example();
    let small = UdpDecoder::new(&DecoderOptions::new(d.len() - 1));
    let e = small.decode(&d, NOW).unwrap_err();
    assert_err(e, 0, "datagram of 63 bytes exceeds the limit of 62 bytes");
    // Exactly at the limit is fine.
    let exact = UdpDecoder::new(&DecoderOptions::new(d.len()));
    assert_eq!(exact.decode(&d, NOW).unwrap().records.len(), 1);
    // Oversize wins over any other fault: garbage past the limit is not looked at.
    let e = UdpDecoder::new(&DecoderOptions::new(4))
        .decode(b"garbage", NOW)
        .unwrap_err();
    assert_err(e, 0, "datagram of 7 bytes exceeds the limit of 4 bytes");
}

#[test]
fn binary_and_text_garbage_fail_at_the_length_field() {
    assert_err(err(b"GET / HTTP/1.1\r\n\r\n"), 0, "length field says 18245");
    assert_err(err(&[0xFF; 40]), 0, "length field says 65535");
    // A TCP AVL packet sent to the UDP port: preamble 00 00 is not its length.
    assert_err(
        err(&bytes(CODEC8_EX1)),
        0,
        "length field says 0 bytes follow",
    );
}

// ---- properties ----

/// The datagram contract: `Ok` consumes the whole datagram, carries no problem, and acks
/// echo the header with a count that matches the records; `Err` points inside the datagram
/// or at its end (where a missing field should have started).
fn check_contract(dec: &UdpDecoder, d: &[u8]) -> Result<(), TestCaseError> {
    match dec.decode(d, NOW) {
        Ok(decoded) => {
            prop_assert_eq!(decoded.consumed, d.len());
            prop_assert!(decoded.problem.is_none());
            prop_assert!(decoded.login.is_none());
            let accepted = decoded.reply.accepted.unwrap();
            let refused = decoded.reply.refused.unwrap();
            prop_assert_eq!(&accepted[..6], &[0, 5, d[2], d[3], 1, d[5]][..]);
            prop_assert_eq!(&refused[..6], &accepted[..6]);
            prop_assert_eq!(usize::from(accepted[6]), decoded.records.len());
            prop_assert_eq!(refused[6], 0);
        }
        Err(e) => {
            prop_assert!(
                e.offset <= d.len(),
                "offset {} past {} bytes: {}",
                e.offset,
                d.len(),
                e
            );
        }
    }
    Ok(())
}

fn imei() -> impl Strategy<Value = String> {
    "[0-9]{1,20}"
}

/// A valid datagram in one of the three codecs, with its records and header fields.
fn valid_datagram() -> impl Strategy<Value = (Vec<u8>, Vec<AvlRecord>, u16, u8, String)> {
    let packet = prop_oneof![
        vec(avl_record(false, false, 8), 0..5).prop_map(|r| (encode_codec8(&r).unwrap(), r)),
        vec(avl_record(true, true, 8), 0..5).prop_map(|r| (encode_codec8_extended(&r).unwrap(), r)),
        vec(avl_record(true, false, 8), 0..5).prop_map(|r| (encode_codec16(&r).unwrap(), r)),
    ];
    (packet, any::<u16>(), any::<u8>(), imei()).prop_map(|((packet, records), pid, aid, imei)| {
        (
            datagram(pid, aid, &imei, avl_data(&packet)),
            records,
            pid,
            aid,
            imei,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(d in vec(any::<u8>(), 0..400), max in 0usize..500) {
        check_contract(&UdpDecoder::new(&DecoderOptions::new(max)), &d)?;
    }

    /// Random bytes rarely pass the length check; give them a sound header and IMEI so the
    /// AVL parser sees them.
    #[test]
    fn arbitrary_avl_data_after_a_valid_header_never_panics(
        avl in vec(any::<u8>(), 0..400),
        codec in prop::sample::select(vec![0x08u8, 0x8E, 0x10]),
        imei in imei(),
    ) {
        let mut data = vec![codec];
        data.extend(avl);
        let d = datagram(0xCAFE, 5, &imei, &data);
        check_contract(&decoder(), &d)?;
    }

    /// Valid datagrams with a few bytes overwritten, and cut (length fixed or not).
    #[test]
    fn corrupted_valid_datagrams_never_panic(
        (d, ..) in valid_datagram(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut d = d;
        for (at, byte) in flips {
            let i = at.index(d.len());
            d[i] = byte;
        }
        check_contract(&decoder(), &d)?;
        let cut = d[..cut.index(d.len() + 1)].to_vec();
        check_contract(&decoder(), &cut)?;
        if cut.len() >= 2 {
            check_contract(&decoder(), &fix_length(cut))?;
        }
    }

    #[test]
    fn valid_datagrams_round_trip((d, records, pid, aid, imei) in valid_datagram()) {
        let decoded = raw_decoder().decode(&d, NOW);
        prop_assert!(decoded.is_ok(), "{:?}", decoded);
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.consumed, d.len());
        prop_assert_eq!(decoded.reply, reply(pid, aid, records.len() as u8));
        prop_assert_eq!(decoded.records.len(), records.len());
        for (got, want) in decoded.records.iter().zip(&records) {
            prop_assert_eq!(&got.device_id, &imei);
            prop_assert_eq!(got.protocol, Protocol::TeltonikaUdp);
            prop_assert_eq!(got.time_ms, Some(want.timestamp_ms as i64));
            prop_assert_eq!(got.lat, Some(f64::from(want.lat) / 1e7));
            prop_assert_eq!(got.lon, Some(f64::from(want.lon) / 1e7));
            prop_assert_eq!(got.altitude_m, Some(f64::from(want.altitude)));
            prop_assert_eq!(got.course_deg, Some(f64::from(want.angle)));
            prop_assert_eq!(got.speed_kmh, Some(f64::from(want.speed)));
            prop_assert_eq!(got.satellites, Some(want.satellites));
            prop_assert_eq!(got.valid, Some(want.satellites > 0));
            let event = (want.event_id != 0).then(|| format!("io:{}", want.event_id));
            prop_assert_eq!(&got.event, &event);
            // IO count: priority (+ generation type) + every element.
            let named = if d[8 + imei.len()] == 0x10 { 2 } else { 1 };
            prop_assert_eq!(got.io.len(), named + want.io.len());
            // raw is the codec id + the record's bytes: it lies inside the datagram.
            let raw = hex::decode(got.raw.as_ref().unwrap()).unwrap();
            prop_assert_eq!(raw[0], d[8 + imei.len()]);
            prop_assert!(d.windows(raw.len() - 1).any(|w| w == &raw[1..]));
        }
    }
}
