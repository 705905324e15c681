//! Framing and answers of every protocol, from the vendor documents' examples and the
//! documented layouts (fact sheets in `shared/protocols`).

use super::*;

#[test]
fn nmea_and_wialon_udp_have_no_downlink() {
    for p in [Protocol::Nmea, Protocol::WialonUdp] {
        let body = CommandBody::Raw(vec![1]);
        assert_eq!(
            frame_command(p, 1, "c-1", "d", &body),
            Err(CommandError::NoDownlink(p))
        );
    }
    let err = frame_command(Protocol::Nmea, 1, "c", "d", &CommandBody::Text("x".into()));
    let text = err.map_err(|e| e.to_string()).unwrap_err();
    assert!(
        text.contains("nmea") && text.contains("no downlink"),
        "{text}"
    );
}

#[test]
fn raw_bodies_are_written_as_given() {
    let raw = vec![0x00, 0xff, b'$', b'\n'];
    for p in [Protocol::Teltonika, Protocol::Gt06, Protocol::Queclink] {
        assert_eq!(
            frame_command(p, 7, "c-1", "d", &CommandBody::Raw(raw.clone())),
            Ok(raw.clone())
        );
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Teltonika's own Codec 12 example (fact sheet §7), byte for byte, over TCP and UDP.
#[test]
fn teltonika_getinfo_is_the_vendor_example() {
    let vendor = hex("000000000000000F0C010500000007676574696E666F0100004312");
    let text = CommandBody::Text("getinfo".into());
    for p in [Protocol::Teltonika, Protocol::TeltonikaUdp] {
        assert_eq!(frame_command(p, 9, "c-1", "d", &text), Ok(vendor.clone()));
    }
    let bad = frame_command(
        Protocol::Teltonika,
        0,
        "c",
        "d",
        &CommandBody::Text("a\nb".into()),
    );
    assert!(
        matches!(bad, Err(CommandError::BadText { offset: 1, .. })),
        "{bad:?}"
    );
}

#[test]
fn teltonika_response_is_an_outstanding_answer() {
    use crate::teltonika::{encode, TcpDecoder};
    use crate::StreamDecoder;
    let mut decoder = TcpDecoder::new(4096);
    let login = hex("000F333536333037303432343431303133");
    let d = decoder.decode(&login, 0).unwrap().unwrap();
    assert_eq!(d.command_answer, None);
    let response = encode::encode_codec12_response(b"GPS:1 Sat:7").unwrap();
    let d = decoder.decode(&response, 0).unwrap().unwrap();
    assert_eq!(d.consumed, response.len());
    assert!(d.records.is_empty() && d.reply == crate::Reply::default());
    assert_eq!(
        d.command_answer,
        Some(CommandAnswer {
            key: AnswerKey::Outstanding,
            text: "GPS:1 Sat:7".into(),
            device_error: false,
        })
    );
}

#[test]
fn jsonl_command_and_answer() {
    use crate::jsonl::JsonlDecoder;
    use crate::{DecoderOptions, StreamDecoder};
    let line = frame_command(
        Protocol::Jsonl,
        0,
        "c-42",
        "d",
        &CommandBody::Text("getinfo".into()),
    );
    assert_eq!(
        line,
        Ok(b"{\"command\":\"getinfo\",\"device_id\":\"d\",\"id\":\"c-42\"}\n".to_vec())
    );
    let mut decoder = JsonlDecoder::new(&DecoderOptions::new(4096));
    let input = b"{\"id\":\"c-42\",\"answer\":\"v1.2\"}\r\n";
    let d = decoder.decode(input, 0).unwrap().unwrap();
    assert_eq!(d.consumed, input.len());
    assert!(d.records.is_empty() && d.problem.is_none());
    assert_eq!(
        d.command_answer.map(|a| (a.key, a.text)),
        Some((AnswerKey::CommandId("c-42".into()), "v1.2".into()))
    );
}

#[test]
fn empty_commands_are_refused() {
    assert_eq!(
        frame_command(
            Protocol::Teltonika,
            0,
            "c",
            "d",
            &CommandBody::Text(String::new())
        ),
        Err(CommandError::Empty)
    );
    assert_eq!(
        frame_command(Protocol::Jsonl, 0, "c", "d", &CommandBody::Raw(Vec::new())),
        Err(CommandError::Empty)
    );
}

#[test]
fn answer_text_keeps_text_and_hexes_binary() {
    assert_eq!(answer_text(b"GPS:1 Sat:7\r\n"), "GPS:1 Sat:7\r\n");
    assert_eq!(answer_text(b"ok\0\0"), "ok");
    assert_eq!(answer_text(&[0x01, 0x02, 0xff]), "0102ff");
    assert_eq!(answer_text(b""), "");
}

#[test]
fn ascii_check_names_the_offset() {
    let e = check_ascii(Protocol::Queclink, "GTRTO=a$b", b"$");
    assert!(
        matches!(e, Err(CommandError::BadText { offset: 7, .. })),
        "{e:?}"
    );
    let e = check_ascii(Protocol::Gt06, "WHERE\u{e9}#", &[]);
    assert!(
        matches!(e, Err(CommandError::BadText { offset: 5, .. })),
        "{e:?}"
    );
    assert_eq!(check_ascii(Protocol::Gt06, "RELAY,1#", &[]), Ok(()));
}

/// Every frame `decoder` takes from `input`, in order.
fn decode_all(decoder: &mut dyn crate::StreamDecoder, mut input: &[u8]) -> Vec<crate::Decoded> {
    let mut frames = Vec::new();
    while let Some(d) = decoder.decode(input, 0).unwrap() {
        input = &input[d.consumed..];
        frames.push(d);
    }
    assert!(input.is_empty(), "left over: {input:?}");
    frames
}

fn gt06_session(frame: &[u8]) -> crate::Decoded {
    use crate::gt06::{encode, Gt06Decoder};
    let mut decoder = Gt06Decoder::new(&crate::DecoderOptions::new(4096));
    let mut input = encode::login("123456789012345", 1).unwrap();
    input.extend_from_slice(frame);
    let mut frames = decode_all(&mut decoder, &input);
    assert_eq!(frames.len(), 2);
    frames.pop().unwrap()
}

/// Concox GT06N document, Appendix B: the device's answer to the server's `DYD,000000#`,
/// whose server flag 0001A958 is not one the gateway sends. The answer stays a record (as
/// before commands existed) and names no command of the gateway's.
#[test]
fn gt06_vendor_answer_with_a_foreign_flag_is_a_record_only() {
    let frame = hex("78781815100001A958\
                     4459443D53756363657373210002001891770D0A");
    let d = gt06_session(&frame);
    assert!(d.problem.is_none(), "{:?}", d.problem);
    assert_eq!(d.command_answer, None);
    let record = d.records.first().unwrap();
    assert_eq!(record.event.as_deref(), Some("command_answer"));
    let text = record
        .io
        .iter()
        .find(|(k, _)| *k == crate::IoKey::Name("command_answer".into()));
    assert_eq!(
        text.map(|(_, v)| v),
        Some(&crate::IoValue::Text("DYD=Success!".into()))
    );
}

/// The 0x15 layout of §6.2 (length, flag, text, language, serial) with the gateway's flag,
/// and the 0x21 layout (flag, encoding, text) in ASCII and UTF-16BE.
#[test]
fn gt06_answers_name_the_token_of_their_flag() {
    use crate::gt06::encode;
    let mut content = vec![4 + 12, 0x00, 0x00, 0x12, 0x34];
    content.extend_from_slice(b"DYD=Success!");
    content.extend_from_slice(&[0x00, 0x02]);
    let d = gt06_session(&encode::frame(0x15, &content, 0x18).unwrap());
    assert_eq!(
        d.command_answer,
        Some(CommandAnswer {
            key: AnswerKey::Token(0x1234),
            text: "DYD=Success!".into(),
            device_error: false,
        })
    );
    assert_eq!(d.records.len(), 1, "the answer is still stored as a record");

    let mut content = vec![0x00, 0x00, 0xBE, 0xEF, 0x01];
    content.extend_from_slice(b"Relay on#");
    let d = gt06_session(&encode::frame_long(0x21, &content, 7).unwrap());
    let a = d.command_answer.unwrap();
    assert_eq!(
        (a.key, a.text.as_str()),
        (AnswerKey::Token(0xBEEF), "Relay on#")
    );

    let mut content = vec![0x00, 0x00, 0x00, 0x01, 0x02];
    content.extend_from_slice(&[0x00, 0x4F, 0x00, 0x4B, 0x00, 0x21]);
    let d = gt06_session(&encode::frame_long(0x21, &content, 7).unwrap());
    assert_eq!(
        d.command_answer.map(|a| (a.key, a.text)),
        Some((AnswerKey::Token(1), "OK!".into()))
    );
}

/// The fact sheet's acknowledgement (`commands.md`), one with a command field before the
/// serial (a sub-command, as GTRTO acknowledgements carry), and the heartbeat.
#[test]
fn queclink_acks_answer_by_serial() {
    use crate::queclink::QueclinkDecoder;
    let mut decoder = QueclinkDecoder::new(&crate::DecoderOptions::new(4096));
    let input = "+ACK:GTHBM,040100,135790246811220,,0017,20090214093254,11F0$\
                 +ACK:GTRTO,040100,135790246811220,,RTL,BEEF,20090214093254,11F1$\
                 +ACK:GTHBD,1A0102,135790246811220,,20100214093254,11F2$";
    let frames = decode_all(&mut decoder, input.as_bytes());
    let answers: Vec<_> = frames.iter().map(|d| d.command_answer.clone()).collect();
    assert_eq!(
        answers,
        vec![
            Some(CommandAnswer {
                key: AnswerKey::Token(0x0017),
                text: "+ACK:GTHBM,040100,135790246811220,,0017,20090214093254,11F0$".into(),
                device_error: false,
            }),
            Some(CommandAnswer {
                key: AnswerKey::Token(0xBEEF),
                text: "+ACK:GTRTO,040100,135790246811220,,RTL,BEEF,20090214093254,11F1$".into(),
                device_error: false,
            }),
            None,
        ]
    );
    // The data path is unchanged: acknowledgements are records, the heartbeat is answered.
    assert_eq!(frames[0].records.len(), 1);
    assert_eq!(frames[0].records[0].event.as_deref(), Some("ack"));
    assert_eq!(
        frames[2].reply.accepted.as_deref(),
        Some(&b"+SACK:GTHBD,1A0102,11F2$"[..])
    );
}

#[test]
fn wialon_am_answers_the_outstanding_message() {
    use crate::wialon::{encode, ProtocolVersion, WialonDecoder};
    for version in [ProtocolVersion::V1_1, ProtocolVersion::V2] {
        let mut decoder = WialonDecoder::new(&crate::DecoderOptions::new(4096));
        let mut input = encode::login(version, "123456789012345", None);
        input.extend_from_slice(b"#AM#1\r\n#AM#0\r\n");
        let frames = decode_all(&mut decoder, &input);
        let answers: Vec<_> = frames[1..]
            .iter()
            .map(|d| {
                d.command_answer
                    .clone()
                    .map(|a| (a.key, a.text, a.device_error))
            })
            .collect();
        assert_eq!(
            answers,
            vec![
                Some((AnswerKey::Outstanding, "1".to_string(), false)),
                Some((AnswerKey::Outstanding, "0".to_string(), true)),
            ]
        );
        assert!(frames[1..]
            .iter()
            .all(|d| d.records.is_empty() && d.problem.is_none()));
    }
    assert_eq!(
        frame_command(
            Protocol::Wialon,
            0,
            "c",
            "d",
            &CommandBody::Text("Go to depot".into())
        ),
        Ok(b"#M#Go to depot\r\n".to_vec())
    );
}

/// Both forms a Codec 12 response may take in a datagram (see `teltonika_udp`).
#[test]
fn teltonika_udp_takes_the_codec12_packet_as_an_answer() {
    use crate::teltonika::encode;
    use crate::teltonika_udp::UdpDecoder;
    use crate::DatagramDecoder;
    let decoder = UdpDecoder::new(&crate::DecoderOptions::new(4096));
    let packet = encode::encode_codec12_response(b"DOUT1:1").unwrap();
    let d = decoder.decode(&packet, 0).unwrap();
    assert_eq!(d.consumed, packet.len());
    assert!(d.records.is_empty() && d.reply == crate::Reply::default());
    assert_eq!(
        d.command_answer.map(|a| (a.key, a.text)),
        Some((AnswerKey::Outstanding, "DOUT1:1".into()))
    );
    let mut bad_crc = packet.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let e = decoder.decode(&bad_crc, 0).unwrap_err();
    assert!(e.reason.contains("CRC"), "{e}");
    // The data field behind the channel header, as the device sends AVL data: it names
    // its device.
    let data = &packet[8..packet.len() - 4];
    let imei = b"352093086403655";
    let mut wrapped = ((2 + 1 + 1 + 2 + imei.len() + data.len()) as u16)
        .to_be_bytes()
        .to_vec();
    wrapped.extend_from_slice(&[0xCA, 0xFE, 0x01, 0x05, 0x00, 0x0F]);
    wrapped.extend_from_slice(imei);
    wrapped.extend_from_slice(data);
    let d = decoder.decode(&wrapped, 0).unwrap();
    assert_eq!(d.login.as_deref(), Some("352093086403655"));
    assert!(d.records.is_empty() && d.reply == crate::Reply::default());
    assert_eq!(
        d.command_answer.map(|a| (a.key, a.text)),
        Some((AnswerKey::Outstanding, "DOUT1:1".into()))
    );
    // The command packet itself is not an answer.
    let command = encode::encode_codec12_command(b"getinfo").unwrap();
    assert!(decoder.decode(&command, 0).is_err());
}

#[test]
fn the_registry_says_which_protocols_take_commands() {
    let takes: Vec<_> = crate::registry::PROTOCOLS
        .iter()
        .filter(|p| p.takes_commands())
        .map(|p| p.name())
        .collect();
    assert_eq!(
        takes,
        [
            "teltonika",
            "teltonika-udp",
            "gt06",
            "queclink",
            "wialon",
            "jsonl"
        ]
    );
}
