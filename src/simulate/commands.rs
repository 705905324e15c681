//! How each simulated device answers a downlink command, the way its firmware does. Pure:
//! bytes from the gateway in, the device's answer out; `link` (streams) and `teltonika`
//! (UDP) call it wherever they read from the gateway.
//!
//! ```text
//! protocol        command from the gateway                   the simulated device answers
//! teltonika(-udp) Codec 12 type 05 "<cmd>"                   Codec 12 type 06 "<cmd>: OK" (over UDP
//!                                                            behind the channel header + IMEI)
//! gt06            78 78 … 80 (4+M) flag "<CMD>,…#" serial    even device index: 78 78 … 15 (4+M') flag
//!                                                            "<CMD>=Success!" 00 02 serial;
//!                                                            odd: 79 79 … 21 flag 01 "<CMD>=Success!"
//! queclink        AT+GT<CMD>=…,<serial>$                     +ACK:GT<CMD>,<version>,<imei>,,<serial>,
//!                                                            <send time>,<count>$
//! wialon          #M#<text>\r\n                              #AM#1\r\n
//! jsonl           {"id":"c-1","command":"<text>"}\n         {"id":"c-1","answer":"<text>: OK"}\n
//! ```
//!
//! GT06 answers in both forms the documents define (a fleet mixes firmware versions), so
//! a two-device run exercises both. Anything at the front that is not a whole command is
//! left alone ([`Front::Other`]): it is the answer the device is waiting for.

use firmware_protocols::crc::{crc16_arc, crc16_x25};
use firmware_protocols::gt06::encode::{frame, frame_long};
use firmware_protocols::gt06::ONLINE_COMMAND;
use firmware_protocols::teltonika::encode::encode_codec12_response;
use firmware_protocols::Protocol;

/// What is at the front of the bytes the gateway sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Front {
    /// A whole command of `consumed` bytes, and the device's answer to it.
    Command { consumed: usize, answer: Vec<u8> },
    /// The start of a command: wait for the rest.
    Partial,
    /// Not a command (an answer to the device's data, or nothing yet).
    Other,
}

/// The command-answering part of one device's firmware.
#[derive(Debug, Clone)]
pub(crate) struct Responder {
    protocol: Protocol,
    device_id: String,
    /// GT06: answer with 0x21 (79 79) instead of 0x15.
    long_answers: bool,
    /// Queclink's count number of the device's own messages.
    count: u16,
}

/// The longest command a simulated device waits for; past it, the bytes are no command.
const MAX_COMMAND: usize = 4096;
/// The send time of a simulated Queclink acknowledgement (device-local time; the gateway
/// keeps it as text).
const QUECLINK_SEND_TIME: &str = "20260101000000";
/// The smallest GT06 online command: protocol, command length, flag, serial, CRC.
const MIN_GT06_COMMAND: usize = 5 + 10;

impl Responder {
    pub fn new(protocol: Protocol, device_id: &str, device_index: usize) -> Self {
        Responder {
            protocol,
            device_id: device_id.to_owned(),
            long_answers: device_index % 2 == 1,
            count: 0,
        }
    }

    /// The command at the front of `input`, if there is one.
    pub fn front(&mut self, input: &[u8]) -> Front {
        match self.protocol {
            Protocol::Teltonika => teltonika(input),
            Protocol::TeltonikaUdp => match teltonika(input) {
                Front::Command { consumed, answer } => Front::Command {
                    consumed,
                    answer: udp_answer(&self.device_id, &answer),
                },
                other => other,
            },
            Protocol::Gt06 => gt06(input, self.long_answers),
            Protocol::Queclink => self.queclink(input),
            Protocol::Wialon => line_command(input, b"#M#", b"\r\n", |_| b"#AM#1\r\n".to_vec()),
            Protocol::Jsonl => line_command(input, b"{", b"\n", jsonl_answer),
            Protocol::Nmea | Protocol::WialonUdp => Front::Other,
        }
    }

    fn queclink(&mut self, input: &[u8]) -> Front {
        let device_id = self.device_id.clone();
        let count = self.count;
        let front = line_command(input, b"AT+GT", b"$", |text| {
            let text = String::from_utf8_lossy(text);
            let name = text.get(3..8).unwrap_or("GTXXX");
            let serial = text.rsplit(',').next().unwrap_or_default();
            format!(
                "+ACK:{name},{},{device_id},,{serial},{},{count:04X}$",
                super::queclink::VERSION,
                QUECLINK_SEND_TIME
            )
            .into_bytes()
        });
        if matches!(front, Front::Command { .. }) {
            self.count = self.count.wrapping_add(1);
        }
        front
    }
}

/// `00000000 L 0c 01 05 size text 01 CRC`, answered with type 06 `"<text>: OK"`.
fn teltonika(input: &[u8]) -> Front {
    // A lone 00000000 is also the answer "0 records": a command shows itself by its length
    // field and codec 0c.
    let (Some(preamble), Some(length)) = (input.get(..4), input.get(4..8)) else {
        return Front::Other;
    };
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    if preamble != [0; 4] || !(8..=MAX_COMMAND).contains(&length) {
        return Front::Other;
    }
    match input.get(8) {
        None => return Front::Partial,
        Some(0x0C) => {}
        Some(_) => return Front::Other,
    }
    let total = length + 12;
    let Some(packet) = input.get(..total) else {
        return Front::Partial;
    };
    let data = &packet[8..total - 4];
    let crc_ok = packet[total - 4..] == u32::from(crc16_arc(data)).to_be_bytes();
    // codec, quantity 1, type 05, size (4), text, quantity 2
    let text = data
        .get(7..data.len().saturating_sub(1))
        .unwrap_or_default();
    if !crc_ok || data.get(2) != Some(&0x05) {
        return Front::Other;
    }
    let mut reply = String::from_utf8_lossy(text).into_owned();
    reply.push_str(": OK");
    match encode_codec12_response(reply.as_bytes()) {
        Ok(answer) => Front::Command {
            consumed: total,
            answer,
        },
        Err(_) => Front::Other,
    }
}

/// A Codec 12 response packet as a UDP device sends it: its data field behind the channel
/// header with the IMEI, as its AVL data travels (`teltonika_udp`).
fn udp_answer(imei: &str, packet: &[u8]) -> Vec<u8> {
    let data = packet
        .get(8..packet.len().saturating_sub(4))
        .unwrap_or_default();
    let length = (6 + imei.len() + data.len()) as u16;
    let mut out = length.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x00, 0x00, 0x01, 0x00]);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `78 78 len 80 (4+M) flag text serial CRC 0d 0a`, answered `<CMD>=Success!` with the flag.
fn gt06(input: &[u8], long_answers: bool) -> Front {
    match input.get(..4) {
        Some([0x78, 0x78, _, ONLINE_COMMAND]) => {}
        Some(_) => return Front::Other,
        None if !input.is_empty() && [0x78, 0x78].starts_with(input.get(..2).unwrap_or(input)) => {
            return Front::Partial
        }
        None => return Front::Other,
    }
    let total = usize::from(input[2]) + 5;
    if total < MIN_GT06_COMMAND {
        return Front::Other;
    }
    let Some(frame_bytes) = input.get(..total) else {
        return Front::Partial;
    };
    let crc_at = total - 4;
    let crc_ok =
        frame_bytes[crc_at..crc_at + 2] == crc16_x25(&frame_bytes[2..crc_at]).to_be_bytes();
    let length = usize::from(frame_bytes.get(4).copied().unwrap_or_default());
    let (Some(flag), Some(text)) = (frame_bytes.get(5..9), frame_bytes.get(9..5 + length)) else {
        return Front::Other;
    };
    if !crc_ok || length < 4 {
        return Front::Other;
    }
    let serial = u16::from_be_bytes([frame_bytes[crc_at - 2], frame_bytes[crc_at - 1]]);
    let text = String::from_utf8_lossy(text);
    let name = text.split([',', '#']).next().unwrap_or_default();
    let reply = format!("{name}=Success!");
    let answer = if long_answers {
        let mut content = flag.to_vec();
        content.push(0x01);
        content.extend_from_slice(reply.as_bytes());
        frame_long(0x21, &content, serial)
    } else {
        let mut content = vec![(4 + reply.len()) as u8];
        content.extend_from_slice(flag);
        content.extend_from_slice(reply.as_bytes());
        content.extend_from_slice(&[0x00, 0x02]);
        frame(0x15, &content, serial)
    };
    match answer {
        Ok(answer) => Front::Command {
            consumed: total,
            answer,
        },
        Err(_) => Front::Other,
    }
}

/// A text command: `start` … `end`, answered with `answer(the command without `end`)`.
fn line_command(
    input: &[u8],
    start: &[u8],
    end: &[u8],
    answer: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Front {
    if input.len() < start.len() {
        return if start.starts_with(input) && !input.is_empty() {
            Front::Partial
        } else {
            Front::Other
        };
    }
    if !input.starts_with(start) {
        return Front::Other;
    }
    let window = input.get(..MAX_COMMAND).unwrap_or(input);
    match window.windows(end.len()).position(|w| w == end) {
        Some(at) => Front::Command {
            consumed: at + end.len(),
            answer: answer(&input[..at]),
        },
        None if window.len() < MAX_COMMAND => Front::Partial,
        None => Front::Other,
    }
}

/// `{"id":…,"command":…}` answered `{"id":…,"answer":"<command>: OK"}`.
fn jsonl_answer(line: &[u8]) -> Vec<u8> {
    let command: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
    let id = command.get("id").cloned().unwrap_or_default();
    let text = command
        .get("command")
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    let mut answer = serde_json::json!({ "id": id, "answer": format!("{text}: OK") }).to_string();
    answer.push('\n');
    answer.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocols::command::{frame_command, AnswerKey, CommandBody};
    use firmware_protocols::registry;
    use firmware_protocols::{Decoded, DecoderOptions};

    /// The gateway frames a command, the simulated device answers it, and the gateway's own
    /// decoder reads that answer as the answer to that command.
    fn round_trip(protocol: Protocol, index: usize, text: &str, login: &[u8]) -> Decoded {
        let body = CommandBody::Text(text.into());
        let command = frame_command(protocol, 0x0A0B, "c-42", "356307042000000", &body).unwrap();
        let mut device = Responder::new(protocol, "356307042000000", index);
        // Whatever precedes the command's last byte is not yet a command.
        assert_eq!(
            device.clone().front(&command[..command.len() - 1]),
            Front::Partial
        );
        let Front::Command { consumed, answer } = device.front(&command) else {
            panic!("{protocol:?}: no command found");
        };
        assert_eq!(consumed, command.len());
        let spec = registry::lookup(protocol.as_str()).unwrap();
        let options = DecoderOptions {
            device_id: Some("sensor-1".into()),
            ..DecoderOptions::new(4096)
        };
        match spec.transport {
            registry::Transport::Datagram(make) => make(&options).decode(&answer, 0).unwrap(),
            registry::Transport::Stream(make) => {
                let mut decoder = make(&options);
                let mut input = login.to_vec();
                input.extend_from_slice(&answer);
                let mut last = None;
                let mut rest = &input[..];
                while let Some(d) = decoder.decode(rest, 0).unwrap() {
                    rest = &rest[d.consumed..];
                    last = Some(d);
                }
                assert!(rest.is_empty(), "{protocol:?}: {rest:?} left");
                last.unwrap()
            }
        }
    }

    fn answer_of(d: Decoded) -> (AnswerKey, String, bool) {
        let a = d.command_answer.expect("an answer");
        (a.key, a.text, a.device_error)
    }

    #[test]
    fn every_protocol_answers_the_way_its_firmware_does() {
        use firmware_protocols::{gt06, teltonika, wialon};
        let imei = "356307042000000";
        let tlt_login = teltonika::encode::encode_imei(imei);
        for p in [Protocol::Teltonika, Protocol::TeltonikaUdp] {
            let d = round_trip(p, 0, "getinfo", &tlt_login);
            assert_eq!(
                answer_of(d),
                (AnswerKey::Outstanding, "getinfo: OK".into(), false)
            );
        }
        let gt_login = gt06::encode::login(imei, 1).unwrap();
        for index in [0, 1] {
            let d = round_trip(Protocol::Gt06, index, "RELAY,1#", &gt_login);
            assert_eq!(
                answer_of(d),
                (AnswerKey::Token(0x0A0B), "RELAY=Success!".into(), false)
            );
        }
        let d = round_trip(Protocol::Queclink, 0, "GTRTO=gl300,0,,,,,", &[]);
        let (key, text, _) = answer_of(d);
        assert_eq!(key, AnswerKey::Token(0x0A0B));
        assert!(
            text.starts_with("+ACK:GTRTO,1A0102,356307042000000,,0A0B,"),
            "{text}"
        );
        let wl_login = wialon::encode::login(wialon::ProtocolVersion::V2, imei, None);
        let d = round_trip(Protocol::Wialon, 0, "Go to depot", &wl_login);
        assert_eq!(answer_of(d), (AnswerKey::Outstanding, "1".into(), false));
        let d = round_trip(Protocol::Jsonl, 0, "say \"hi\"", &[]);
        assert_eq!(
            answer_of(d),
            (
                AnswerKey::CommandId("c-42".into()),
                "say \"hi\": OK".into(),
                false
            )
        );
    }

    #[test]
    fn answers_to_data_are_not_commands() {
        let mut t = Responder::new(Protocol::Teltonika, "1", 0);
        // "0 records" alone, and "25 records" followed by nothing.
        assert_eq!(t.front(&[0, 0, 0, 0]), Front::Other);
        assert_eq!(t.front(&[0, 0, 0, 25]), Front::Other);
        let mut g = Responder::new(Protocol::Gt06, "1", 0);
        let heartbeat_echo = firmware_protocols::gt06::reply(0x13, 2);
        assert_eq!(g.front(&heartbeat_echo), Front::Other);
        let mut q = Responder::new(Protocol::Queclink, "1", 0);
        assert_eq!(q.front(b"+SACK:GTHBD,1A0102,0001$"), Front::Other);
        let mut w = Responder::new(Protocol::Wialon, "1", 0);
        assert_eq!(w.front(b"#AB#25\r\n"), Front::Other);
        let mut n = Responder::new(Protocol::Nmea, "1", 0);
        assert_eq!(n.front(b"anything"), Front::Other);
    }
}
