//! Wialon IPS over UDP (`imei#TYPE#…`, `2.0;imei#TYPE#…;crc16`, fact sheet wialon-ips.md
//! section 6) and the capture decoder that reads packets without a login. Packets are the
//! fact sheet's documentation examples; the 2.0 CRCs are the ones tests/wialon.rs computed.

use firmware_protocols::registry::{self, Transport};
use firmware_protocols::wialon::{UdpDecoder, WialonDecoder};
use firmware_protocols::{
    DatagramDecoder, DecoderOptions, IoKey, IoValue, Protocol, Reply, StreamDecoder,
};

const NOW: i64 = 1_700_000_000_000;
const IMEI: &str = "356307042441013";
/// 2013-04-27T20:56:01Z, the documents' sample time.
const DOC_TIME: i64 = 1_367_096_161_000;
const SD_DOC: &str = "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4";
const D_DOC: &str = "#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.0;0;0;14.77,0.02,3.6;NA;count1:1:564,fuel:2:45.8,hw:3:V4.5";
const SD_DOC_V2: &str = "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;1985";
const B_V2: &str = "#B#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4|270413;205701;5544.6100;N;03739.7000;E;5;90;3;6|7981";

fn udp() -> UdpDecoder {
    UdpDecoder::new(&DecoderOptions::new(1024))
}

fn accepted(text: &str) -> Reply {
    Reply {
        accepted: Some(text.as_bytes().to_vec()),
        refused: Some(text.replace('1', "0").into_bytes()),
    }
}

#[test]
fn v1_datagrams_name_the_device_before_the_packet_with_or_without_a_semicolon() {
    for prefix in [IMEI.to_string(), format!("{IMEI};")] {
        let datagram = format!("{prefix}{D_DOC}\r\n");
        let d = udp().decode(datagram.as_bytes(), NOW).unwrap();
        assert!(d.problem.is_none(), "{:?}", d.problem);
        assert_eq!(d.consumed, datagram.len());
        let [r] = &d.records[..] else {
            panic!("{:?}", d.records)
        };
        assert_eq!(r.device_id, IMEI);
        assert_eq!(r.protocol, Protocol::WialonUdp);
        assert_eq!(r.time_ms, Some(DOC_TIME));
        assert_eq!(r.satellites, Some(4));
        assert!(r
            .io
            .contains(&(IoKey::Name("fuel".into()), IoValue::F64(45.8))));
        assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AD#1\r\n"[..]));
    }
}

#[test]
fn a_datagram_without_its_line_end_decodes_too() {
    let d = udp()
        .decode(format!("{IMEI}{SD_DOC}").as_bytes(), NOW)
        .unwrap();
    assert_eq!(d.records.len(), 1);
    assert_eq!(d.reply, accepted("#ASD#1\r\n"));
}

#[test]
fn v2_datagrams_check_the_packets_crc() {
    let d = udp()
        .decode(format!("2.0;{IMEI}{SD_DOC_V2}\r\n").as_bytes(), NOW)
        .unwrap();
    assert!(d.problem.is_none(), "{:?}", d.problem);
    assert_eq!(d.records[0].device_id, IMEI);
    let d = udp()
        .decode(format!("2.0;{IMEI};{B_V2}\r\n").as_bytes(), NOW)
        .unwrap();
    assert_eq!(d.records.len(), 2);
    assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AB#2\r\n"[..]));
    // A wrong CRC is answered with the checksum error code, nothing stored.
    let bad = SD_DOC_V2.replace("1985", "1986");
    let d = udp()
        .decode(format!("2.0;{IMEI}{bad}").as_bytes(), NOW)
        .unwrap();
    assert!(d.records.is_empty());
    let p = d.problem.expect("a problem");
    assert!(p.reason.contains("CRC"), "{}", p.reason);
    assert!(
        p.offset > IMEI.len() + 4,
        "offset counts the prefix: {}",
        p.offset
    );
    assert_eq!(d.reply.refused.as_deref(), Some(&b"#ASD#13\r\n"[..]));
}

#[test]
fn a_ping_is_answered() {
    let d = udp()
        .decode(format!("{IMEI}#P#\r\n").as_bytes(), NOW)
        .unwrap();
    assert!(d.records.is_empty() && d.problem.is_none());
    assert_eq!(d.reply.accepted.as_deref(), Some(&b"#AP#\r\n"[..]));
}

#[test]
fn datagrams_without_a_device_or_with_two_packets_are_errors() {
    let cases = [
        (format!("{SD_DOC}\r\n"), "device id"),
        (format!("{IMEI} x{SD_DOC}"), "device id"),
        (format!("1.x;{IMEI}{SD_DOC}"), "protocol version"),
        (IMEI.to_string(), "no '#'"),
        (
            format!("{IMEI}{SD_DOC}\r\n{SD_DOC}\r\n"),
            "more than one packet",
        ),
    ];
    for (datagram, want) in cases {
        let e = udp().decode(datagram.as_bytes(), NOW).unwrap_err();
        assert!(e.reason.contains(want), "{datagram:?}: {e}");
    }
    let tiny = UdpDecoder::new(&DecoderOptions::new(10));
    let e = tiny
        .decode(format!("{IMEI}{SD_DOC}").as_bytes(), NOW)
        .unwrap_err();
    assert!(e.reason.contains("limit"), "{e}");
}

#[test]
fn the_registry_has_wialon_udp_as_a_range_checked_datagram_protocol() {
    let spec = registry::lookup("wialon-udp").expect("registered");
    let Transport::Datagram(make) = spec.transport else {
        panic!("wialon-udp is a datagram protocol")
    };
    let decoder = make(&DecoderOptions::new(1024));
    // 150 satellites is out of range: nulled, the record is not valid, the reason kept.
    let datagram = format!("{IMEI}#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;150\r\n");
    let d = decoder.decode(datagram.as_bytes(), NOW).unwrap();
    let r = &d.records[0];
    assert_eq!(r.satellites, None);
    assert_eq!(r.valid, Some(false));
    assert_eq!(
        r.io.last(),
        Some(&(
            IoKey::Name("range_error".into()),
            IoValue::Text("satellites 150 > 99".into())
        ))
    );
}

#[test]
fn a_capture_decoder_reads_data_lines_without_a_login() {
    let mut dec = WialonDecoder::for_capture(&DecoderOptions::new(1024));
    // 1.1 data, then 2.0 data (its version told by its CRC), both before any login.
    for line in [D_DOC, SD_DOC_V2] {
        let d = dec
            .decode(format!("{line}\r\n").as_bytes(), NOW)
            .unwrap()
            .unwrap();
        assert!(d.problem.is_none(), "{line}: {:?}", d.problem);
        assert_eq!(d.records[0].device_id, "");
        assert_eq!(d.records[0].time_ms, Some(DOC_TIME));
        assert_eq!(dec.device_id(), None);
    }
    // A login later in the capture names the device from then on.
    dec.decode(format!("#L#{IMEI};NA\r\n").as_bytes(), NOW)
        .unwrap()
        .unwrap();
    let d = dec
        .decode(format!("{SD_DOC}\r\n").as_bytes(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(d.records[0].device_id, IMEI);
    // A live decoder still refuses data before the login.
    let mut live = WialonDecoder::new(&DecoderOptions::new(1024));
    assert!(live
        .decode(format!("{SD_DOC}\r\n").as_bytes(), NOW)
        .is_err());
}

#[test]
fn packet_types_not_decoded_are_skipped_with_their_type_name() {
    let mut dec = WialonDecoder::for_capture(&DecoderOptions::new(1024));
    let d = dec.decode(b"#QT#1;2\r\n", NOW).unwrap().unwrap();
    let p = d.problem.expect("skipped");
    assert_eq!(p.skipped_type.as_deref(), Some("QT"));
    let d = dec
        .decode(b"#I#3;0;1;270413;205601;a.jpg\r\nabc", NOW)
        .unwrap()
        .unwrap();
    assert_eq!(d.problem.and_then(|p| p.skipped_type).as_deref(), Some("I"));
}
