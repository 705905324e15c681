//! GT06 decoder against the Concox document's example frames (shared/protocols/gt06.md
//! section 8) and frames built field by field from the documented layouts (sections 1-6 of the
//! sheet, the 0x94 layout of `gt06/info.rs`), stream splitting, and error reporting. The
//! table's captures get the test kit's whole battery (`capture_battery!`).

use firmware_protocols::capture_battery;
use firmware_protocols::crc::crc16_x25;
use firmware_protocols::gt06::encode::{
    self, alarm_content, course_status, heartbeat_content, location_content, scale_degrees,
    EncodeError, Gps, Lbs, Status,
};
use firmware_protocols::gt06::{self, Gt06Decoder};
use firmware_protocols::testkit::{
    self, answer, assert_err, bytes, close, decode_whole, only, time, u, Battery, Capture,
    Contract, Frame,
};
use firmware_protocols::StreamDecoder;
use firmware_protocols::{DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Reply};

/// Receive time 2030-03-17: the built frames are dated up to 2025, and a date after tomorrow is
/// out of range.
const NOW: i64 = 1_900_000_000_000;
const MAX: usize = 1024;
const IMEI: &str = "123456789012345";

// Concox GT06 protocol document, as quoted in the fact sheet section 8.
const LOGIN: &str = "78780D01012345678901234500018CDD0D0A";
const HEARTBEAT: &str = "78780A134004040001000FDCEE0D0A";
const ALARM: &str =
    "787825160B0B0F0E241DCF027AC8870C4657E60014020901CC00287D001F726506040101003656A40D0A";
/// The 0x12 example as printed: its CRC (8081) is wrong, the bytes' X-25 is 7377.
const LOCATION_AS_PRINTED: &str =
    "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000380810D0A";
const LOCATION: &str = "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000373770D0A";

// ---- frames built from the documented layouts ----------------------------------------------
//
// Each is written field by field as the layout names it (hex, spaces between fields) and framed
// by `frame78`/`frame79` (sheet §1), which compute the length and CRC here, not with the
// decoder's encoder. The values are this test's own.

/// A 78 78 frame (sheet §1): length = protocol + content + serial + CRC, CRC-16/X-25 over
/// length through serial, stop bits 0D 0A.
fn frame78(protocol: u8, content: &str, serial: u16) -> Vec<u8> {
    let content = bytes(content);
    let mut body = vec![
        u8::try_from(content.len() + 5).expect("short content"),
        protocol,
    ];
    body.extend(content);
    body.extend(serial.to_be_bytes());
    let mut frame = vec![0x78, 0x78];
    frame.extend(&body);
    frame.extend(crc16_x25(&body).to_be_bytes());
    frame.extend([0x0D, 0x0A]);
    frame
}

/// A 79 79 frame (sheet §1): the same with a two-byte length.
fn frame79(protocol: u8, content: &str, serial: u16) -> Vec<u8> {
    let content = bytes(content);
    let len = u16::try_from(content.len() + 5).expect("content");
    let mut body = len.to_be_bytes().to_vec();
    body.push(protocol);
    body.extend(content);
    body.extend(serial.to_be_bytes());
    let mut frame = vec![0x79, 0x79];
    frame.extend(&body);
    frame.extend(crc16_x25(&body).to_be_bytes());
    frame.extend([0x0D, 0x0A]);
    frame
}

/// Sheet §3: login, terminal id 0356307042441013 (BCD, one leading 0 nibble), serial 9.
fn login_other() -> Vec<u8> {
    frame78(0x01, "03 56 30 70 42 44 10 13", 9)
}

/// Sheet §3, newer firmware (length 0x11): terminal id, type identifier 0x3101, time zone word
/// 0x3202 (800 = GMT+8:00, bit 3 clear = east, language 2), serial 0x0203.
fn login_with_zone() -> Vec<u8> {
    frame78(0x01, "03 58 60 12 34 56 78 90 3101 3202", 0x0203)
}

/// Sheet §4, 0x22 GT06N: 2025-06-30 08:15:42, info length 12 / 9 satellites, 48.8566 N
/// 2.3522 E, 42 km/h, course/status 0x150E (positioned, north, east, 270°), MCC 208 MNC 1
/// LAC 0x1A2B cell 0x00C3D4, ACC 01, upload mode 02, re-upload 00; serial 8.
fn gt06n_location() -> Vec<u8> {
    frame78(
        0x22,
        "19 06 1E 08 0F 2A  C9  053DE2F8  00409AE8  2A  150E  00D0 01 1A2B 00C3D4  01 02 00",
        8,
    )
}

/// Sheet §4, 0x22 GT06N in the southern hemisphere: 2024-12-01 23:05:09, 5 satellites,
/// 33.9249 S 18.4241 E (course/status 0x100F: positioned, south, east, 15°), 0 km/h,
/// MCC 655 MNC 10 LAC 0x0102 cell 0x003344, ACC 00, mode 00, re-upload 01; serial 0x0100.
fn gt06n_south() -> Vec<u8> {
    frame78(
        0x22,
        "18 0C 01 17 05 09  C5  03A3C674  01FA0874  00  100F  028F 0A 0102 003344  00 00 01",
        0x0100,
    )
}

/// Sheet §4, 0x22 without a fix (course/status 0x0400: bit 12 clear, north, east, 0°): the
/// last known position 28.6139 N 77.2090 E, 2023-02-14 10:16:22, 6 satellites, MCC 404 MNC 5
/// LAC 0x0470 cell 0x0046FC, ACC 01, upload mode 03, re-upload 00; serial 0x0065.
fn gt06n_no_fix() -> Vec<u8> {
    frame78(
        0x22,
        "17 02 0E 0A 10 16  C6  0311E77C  08489BC8  00  0400  0194 05 0470 0046FC  01 03 00",
        0x0065,
    )
}

/// Sheet §4 and §7 ("lengths vary by firmware … skip the remainder"): 0x12 with a south-west
/// fix, 23.5505 S 46.6333 W (course/status 0x187B: positioned, south, west, 123°),
/// 2022-04-14 16:44:34, 15 satellites, MCC 724 MNC 2 LAC 0x2233 cell 0x445566, then five bytes
/// past the LBS block; serial 0x0123.
fn location_with_extra() -> Vec<u8> {
    frame78(
        0x12,
        "16 04 0E 10 2C 22  CF  0286D574  0500D264  00  187B  02D4 02 2233 445566  A1B2C3D4E5",
        0x0123,
    )
}

/// Sheet §6 alarm 0x16 from a clone: alarm byte 0x00 ("normal") and a voltage byte 0x55 that is
/// a percentage, not a 0-6 level. 2019-02-12 18:20:26, 10 satellites, 40.4168 N 3.7038 W
/// (0x1C5A: positioned, north, west, 90°), 12 km/h, LBS length 9, MCC 214 MNC 7 LAC 0x0A0B
/// cell 0x0B0000, terminal info 0x46, voltage 0x55, GSM 3, alarm 0, language 2; serial 2.
fn alarm_clone() -> Vec<u8> {
    frame78(
        0x16,
        "13 02 0C 12 14 1A  CA  045614A0  0065BA58  0C  1C5A  09 00D6 07 0A0B 0B0000  46 55 03 00 02",
        2,
    )
}

/// Sheet §1/§4: a 0x12 frame with no content at all (length 5).
fn empty_location() -> Vec<u8> {
    frame78(0x12, "", 0x0099)
}

/// 0x94 information transmission in a 79 79 frame (layout in `gt06/info.rs`, from the Concox
/// GT06N / JM-VL03 documents): sub-type 0x0A, IMEI 8 + IMSI 8 + ICCID 10 bytes of BCD.
fn info_0x94() -> Vec<u8> {
    frame79(
        0x94,
        "0A  0356307042441013  0262011234567890  89490200001234567890",
        0x0003,
    )
}

fn options() -> DecoderOptions {
    DecoderOptions::new(MAX)
}

/// A session decoder that has already accepted the document's login.
fn logged_in() -> Gt06Decoder {
    let mut dec = Gt06Decoder::new(&options());
    let login = dec.decode(&bytes(LOGIN), NOW).unwrap().unwrap();
    assert_eq!(login.login.as_deref(), Some(IMEI));
    dec
}

fn b(name: &str, value: &str) -> (IoKey, IoValue) {
    (IoKey::Name(name.to_owned()), IoValue::Bytes(bytes(value)))
}

fn text(name: &str, value: &str) -> (IoKey, IoValue) {
    (
        IoKey::Name(name.to_owned()),
        IoValue::Text(value.to_owned()),
    )
}

/// The status block's io entries for a terminal info byte and the four bytes after it.
fn status_io(info: u64, rest: [u64; 4]) -> Vec<(IoKey, IoValue)> {
    let mut io = vec![
        u("terminal_info", info),
        u("armed", info & 1),
        u("acc", info >> 1 & 1),
        u("charging", info >> 2 & 1),
        u("terminal_alarm", info >> 3 & 7),
        u("gps_tracking", info >> 6 & 1),
        u("oil_cut", info >> 7),
    ];
    for (name, v) in ["voltage_level", "gsm_signal", "alarm", "language"]
        .into_iter()
        .zip(rest)
    {
        io.push(u(name, v));
    }
    io
}

/// Captures are decoded in a logged-in session (`true`) or on a fresh one.
const CASES: &[Capture<bool>] = &[
    Capture {
        source: "Concox doc (sheet §8) login",
        frame: Frame::Hex(LOGIN),
        start: false,
        check: |d| {
            assert_eq!(d.login.as_deref(), Some(IMEI));
            assert!(d.records.is_empty() && d.problem.is_none());
            assert_eq!(d.reply, answer(bytes("787805010001D9DC0D0A")));
        },
    },
    Capture {
        source: "Concox doc (sheet §8) heartbeat",
        frame: Frame::Hex(HEARTBEAT),
        start: true,
        check: |d| {
            assert_eq!(d.reply, answer(bytes("78780513000F008F0D0A")));
            let r = only(d);
            assert_eq!(r.device_id, IMEI);
            assert_eq!(r.received_at_ms, NOW);
            assert_eq!(r.event.as_deref(), Some("heartbeat"));
            assert_eq!((r.time_ms, r.valid, r.lat, r.lon), (None, None, None, None));
            assert_eq!((r.speed_kmh, r.satellites), (None, None));
            let mut io = status_io(0x40, [4, 4, 0, 1]);
            io.push(u("serial", 15));
            assert_eq!(r.io, io);
            assert_eq!(r.raw, None);
        },
    },
    Capture {
        source: "Concox doc (sheet §8) SOS alarm",
        frame: Frame::Hex(ALARM),
        start: true,
        check: |d| {
            assert_eq!(d.reply, answer(bytes("78780516003695700D0A")));
            let r = only(d);
            assert_eq!(time(r).as_deref(), Some("2011-11-15T14:36:29.000Z"));
            assert_eq!(r.event.as_deref(), Some("sos"));
            assert_eq!((r.valid, r.satellites), (Some(true), Some(15)));
            close(r.lat, 23.111755);
            close(r.lon, 114.40923);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(2.0)));
            assert_eq!((r.altitude_m, r.hdop), (None, None));
            let mut io = vec![
                u("gps_info_length", 12),
                u("course_status", 0x1402),
                u("lbs_length", 9),
                u("mcc", 460),
                u("mnc", 0),
                u("lac", 0x287D),
                u("cell_id", 0x1F72),
            ];
            io.extend(status_io(0x65, [6, 4, 1, 1]));
            io.push(u("serial", 0x36));
            assert_eq!(r.io, io);
            // terminal info 0x65: armed, charging, alarm bits 100 (SOS), GPS tracking on.
            assert!(r.io.contains(&u("terminal_alarm", 4)));
        },
    },
    Capture {
        source: "Concox doc (sheet §8) 0x12 location, CRC corrected to 7377",
        frame: Frame::Hex(LOCATION),
        start: true,
        check: |d| {
            assert_eq!(d.reply, Reply::default(), "locations get no answer");
            let r = only(d);
            assert_eq!(time(r).as_deref(), Some("2011-08-29T17:46:16.000Z"));
            assert_eq!(r.event, None);
            assert_eq!((r.valid, r.satellites), (Some(true), Some(12)));
            close(r.lat, 23.111668333);
            close(r.lon, 114.409285);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(143.0)));
            let io = vec![
                u("gps_info_length", 12),
                u("course_status", 0x148F),
                u("mcc", 460),
                u("mnc", 0),
                u("lac", 0x287D),
                u("cell_id", 0x1FB8),
                u("serial", 3),
            ];
            assert_eq!(r.io, io);
        },
    },
    Capture {
        source: "Concox doc (sheet §8) 0x12 location as printed: CRC 8081 is wrong",
        frame: Frame::Hex(LOCATION_AS_PRINTED),
        start: true,
        check: |d| {
            assert!(d.records.is_empty());
            assert_eq!(d.reply, Reply::default(), "a bad CRC gets no answer");
            let p = d.problem.as_ref().expect("a problem");
            assert_eq!(p.offset, 32);
            assert!(p.reason.contains("CRC field 8081"), "{p}");
            assert!(p.reason.contains("X-25 7377"), "{p}");
        },
    },
    Capture {
        source: "built (sheet §3): login, IMEI 356307042441013, serial 9",
        frame: Frame::Built(login_other),
        start: false,
        check: |d| {
            assert_eq!(d.login.as_deref(), Some("356307042441013"));
            // Sheet §2: 78 78 05, the protocol and serial answered, CRC, stop bits.
            assert_eq!(d.reply, answer(frame78(0x01, "", 9)));
        },
    },
    Capture {
        source: "built (sheet §3): 0x11-length login with a type id and a time zone word",
        frame: Frame::Built(login_with_zone),
        start: false,
        check: |d| {
            assert_eq!(d.login.as_deref(), Some("358601234567890"));
            assert_eq!(d.reply, answer(frame78(0x01, "", 0x0203)));
        },
    },
    Capture {
        source: "built (sheet §4): 0x22 GT06N location, north-east",
        frame: Frame::Built(gt06n_location),
        start: true,
        check: |d| {
            assert_eq!(d.reply, Reply::default());
            let r = only(d);
            assert_eq!(time(r).as_deref(), Some("2025-06-30T08:15:42.000Z"));
            assert_eq!((r.valid, r.satellites), (Some(true), Some(9)));
            close(r.lat, 48.8566);
            close(r.lon, 2.3522);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(42.0), Some(270.0)));
            let io = vec![
                u("gps_info_length", 12),
                u("course_status", 0x150E),
                u("mcc", 208),
                u("mnc", 1),
                u("lac", 0x1A2B),
                u("cell_id", 0xC3D4),
                u("acc", 1),
                u("upload_mode", 2),
                u("reupload", 0),
                u("serial", 8),
            ];
            assert_eq!(r.io, io);
        },
    },
    Capture {
        source: "built (sheet §4): 0x22 GT06N location, south-east (MCC 655)",
        frame: Frame::Built(gt06n_south),
        start: true,
        check: |d| {
            let r = only(d);
            assert_eq!(time(r).as_deref(), Some("2024-12-01T23:05:09.000Z"));
            assert_eq!((r.valid, r.satellites), (Some(true), Some(5)));
            close(r.lat, -33.9249);
            close(r.lon, 18.4241);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(15.0)));
            assert!(r.io.contains(&u("mcc", 655)) && r.io.contains(&u("cell_id", 0x3344)));
            assert!(r.io.contains(&u("reupload", 1)));
        },
    },
    Capture {
        source: "built (sheet §4): 0x22 without a fix (MCC 404)",
        frame: Frame::Built(gt06n_no_fix),
        start: true,
        check: |d| {
            let r = only(d);
            assert_eq!(time(r).as_deref(), Some("2023-02-14T10:16:22.000Z"));
            assert_eq!(r.valid, Some(false));
            // Not positioned (bit 12 clear): the last known position, still signed by the
            // hemisphere bits (0x0400: north, east); `valid` false tells the consumer.
            close(r.lat, 28.6139);
            close(r.lon, 77.209);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(0.0)));
            assert!(r.io.contains(&u("course_status", 0x0400)));
            assert!(r.io.contains(&u("mcc", 404)) && r.io.contains(&u("mnc", 5)));
            assert!(r.io.contains(&u("acc", 1)) && r.io.contains(&u("upload_mode", 3)));
        },
    },
    Capture {
        source: "built (sheet §4, §7): 0x12 south-west fix (MCC 724), 5 bytes past the LBS",
        frame: Frame::Built(location_with_extra),
        start: true,
        check: |d| {
            let r = only(d);
            assert_eq!(time(r).as_deref(), Some("2022-04-14T16:44:34.000Z"));
            assert_eq!((r.valid, r.satellites), (Some(true), Some(15)));
            // course/status 0x187B: positioned, bit 10 clear (south), bit 11 set (west).
            close(r.lat, -23.5505);
            close(r.lon, -46.6333);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(123.0)));
            assert!(r.io.contains(&u("mcc", 724)));
            let tail = &r.io[r.io.len() - 2..];
            assert_eq!(tail, [b("extra", "A1B2C3D4E5"), u("serial", 0x0123)]);
        },
    },
    Capture {
        source: "built (sheet §6): clone 0x16 with alarm byte 0 and a percentage voltage",
        frame: Frame::Built(alarm_clone),
        start: true,
        check: |d| {
            assert_eq!(d.reply, answer(frame78(0x16, "", 2)));
            let r = only(d);
            assert_eq!(r.event, None, "alarm byte 0 is 'normal'");
            assert_eq!(time(r).as_deref(), Some("2019-02-12T18:20:26.000Z"));
            close(r.lat, 40.4168);
            close(r.lon, -3.7038);
            assert_eq!((r.speed_kmh, r.course_deg), (Some(12.0), Some(90.0)));
            let status = status_io(0x46, [0x55, 3, 0, 2]);
            let n = r.io.len();
            assert_eq!(r.io[n - 1 - status.len()..n - 1], status[..]);
            assert!(r.io.contains(&u("cell_id", 0x0B0000)));
        },
    },
    Capture {
        source: "built (sheet §1): 0x12 with no content at all",
        frame: Frame::Built(empty_location),
        start: true,
        check: |d| {
            assert!(d.records.is_empty());
            assert_eq!(d.reply, Reply::default());
            let p = d.problem.as_ref().expect("a problem");
            assert_eq!(p.offset, 4);
            assert_eq!(
                p.reason,
                "GPS+LBS location packet (protocol 0x12): truncated date/time: needs 6 bytes, \
                 0 left"
            );
        },
    },
    Capture {
        source: "built (gt06/info.rs layout): 0x94 IMEI/IMSI/ICCID in a 79 79 frame",
        frame: Frame::Built(info_0x94),
        start: true,
        check: |d| {
            assert_eq!(d.reply, Reply::default(), "information gets no answer");
            let r = only(d);
            assert_eq!((r.time_ms, r.lat, r.valid), (None, None, None));
            assert_eq!(
                r.io,
                [
                    u("info_type", 0x0A),
                    text("imei", "356307042441013"),
                    text("imsi", "262011234567890"),
                    text("iccid", "89490200001234567890"),
                    u("serial", 3),
                ]
            );
        },
    },
];

fn decoder_for(session: &bool) -> Gt06Decoder {
    if *session {
        logged_in()
    } else {
        Gt06Decoder::new(&options())
    }
}

fn battery() -> Battery<bool, Gt06Decoder> {
    Battery {
        captures: CASES,
        decoder: decoder_for,
        now: NOW,
        next: Frame::Hex(HEARTBEAT),
        contract: Contract::SESSION,
    }
}

capture_battery!(battery);

#[test]
fn login_remembers_the_device_and_its_declared_zone() {
    let mut dec = Gt06Decoder::new(&options());
    assert_eq!(dec.device_id(), None);
    dec.decode(&login_with_zone(), NOW).unwrap().unwrap();
    assert_eq!(dec.device_id(), Some("358601234567890"));
    assert_eq!(dec.device_type(), Some(0x3101));
    assert_eq!(dec.time_zone_minutes(), Some(480));

    // A login declaring GMT-5:30 (530 × 16 + west bit + English) is recorded, not applied.
    let mut content = encode::terminal_id(IMEI).unwrap().to_vec();
    content.extend_from_slice(&[0x12, 0x34]);
    content.extend_from_slice(&(530u16 << 4 | 0x08 | 0x02).to_be_bytes());
    let login = encode::frame(0x01, &content, 1).unwrap();
    dec.decode(&login, NOW).unwrap().unwrap();
    assert_eq!(dec.device_id(), Some(IMEI), "a new login replaces the id");
    assert_eq!(dec.device_type(), Some(0x1234));
    assert_eq!(dec.time_zone_minutes(), Some(-330));
    let d = dec.decode(&bytes(LOCATION), NOW).unwrap().unwrap();
    assert_eq!(
        time(&d.records[0]).as_deref(),
        Some("2011-08-29T17:46:16.000Z"),
        "times stay UTC"
    );

    // The original login carries neither.
    let dec = logged_in();
    assert_eq!((dec.device_type(), dec.time_zone_minutes()), (None, None));
}

#[test]
fn a_sixteenth_digit_is_kept_when_the_leading_nibble_is_not_zero() {
    let d = Gt06Decoder::new(&options())
        .decode(&encode::login("3563070424410139", 2).unwrap(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(d.login.as_deref(), Some("3563070424410139"));
}

/// The login and every data frame of the table, as one device would send them.
fn session_bytes() -> Vec<u8> {
    let mut all = Vec::new();
    for frame in [
        Frame::Hex(LOGIN),
        Frame::Hex(LOCATION),
        Frame::Hex(HEARTBEAT),
        Frame::Built(gt06n_location),
        Frame::Hex(ALARM),
        Frame::Hex(LOCATION_AS_PRINTED),
        Frame::Built(info_0x94),
        Frame::Built(gt06n_south),
        Frame::Built(location_with_extra),
        Frame::Hex(HEARTBEAT),
    ] {
        all.extend(frame.bytes());
    }
    all
}

#[test]
fn whole_session_in_one_buffer_decodes_frame_by_frame() {
    let mut buf = session_bytes();
    let mut dec = Gt06Decoder::new(&options());
    let frames = testkit::drain(&mut dec, &mut buf, NOW).unwrap();
    assert!(buf.is_empty());
    let shape: Vec<(usize, bool, bool)> = frames
        .iter()
        .map(|d| {
            (
                d.records.len(),
                d.problem.is_some(),
                d.reply.accepted.is_some(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (0, false, true), // login
            (1, false, false),
            (1, false, true), // heartbeat
            (1, false, false),
            (1, false, true),  // alarm
            (0, true, false),  // bad CRC
            (1, false, false), // 0x94 information, unanswered
            (1, false, false),
            (1, false, false),
            (1, false, true), // heartbeat
        ]
    );
    assert_eq!(frames[0].login.as_deref(), Some(IMEI));
    assert_eq!(dec.device_id(), Some(IMEI));
    assert!(frames
        .iter()
        .flat_map(|d| &d.records)
        .all(|r| r.device_id == IMEI && r.received_at_ms == NOW));
}

#[test]
fn session_split_into_two_reads_at_every_offset_decodes_the_same() {
    testkit::split_at_every_offset(
        || Gt06Decoder::new(&options()),
        &session_bytes(),
        NOW,
        |frames| frames,
    );
}

#[test]
fn capture_decoder_takes_packets_without_a_login() {
    let mut dec = Gt06Decoder::for_capture(&options());
    let d = dec.decode(&bytes(HEARTBEAT), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].device_id, "");
    assert_eq!(dec.device_id(), None);
    dec.decode(&bytes(LOGIN), NOW).unwrap().unwrap();
    let d = dec.decode(&bytes(ALARM), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].device_id, IMEI);
}

#[test]
fn keep_raw_stores_the_whole_frame_as_lowercase_hex() {
    let opts = DecoderOptions {
        keep_raw: true,
        ..options()
    };
    let mut dec = Gt06Decoder::new(&opts);
    dec.decode(&bytes(LOGIN), NOW).unwrap().unwrap();
    for frame in [bytes(ALARM), bytes(HEARTBEAT), gt06n_location()] {
        let d = dec.decode(&frame, NOW).unwrap().unwrap();
        assert_eq!(
            d.records[0].raw.as_deref(),
            Some(hex::encode(&frame).as_str())
        );
    }
}

#[test]
fn record_json_of_the_alarm_example() {
    let d = logged_in().decode(&bytes(ALARM), NOW).unwrap().unwrap();
    let v = serde_json::to_value(d.records[0].json(None)).unwrap();
    assert_eq!(v["device_id"], IMEI);
    assert_eq!(v["protocol"], "gt06");
    assert_eq!(v["time"], "2011-11-15T14:36:29.000Z");
    assert_eq!(v["valid"], true);
    assert_eq!(v["event"], "sos");
    assert_eq!(v["satellites"], 15);
    assert!(v["altitude_m"].is_null() && v["hdop"].is_null());
    assert_eq!(v["io"]["mcc"], 460);
    assert_eq!(v["io"]["cell_id"], 0x1F72);
    assert_eq!(v["io"]["serial"], 0x36);
    let hb = logged_in().decode(&bytes(HEARTBEAT), NOW).unwrap().unwrap();
    let v = serde_json::to_value(hb.records[0].json(None)).unwrap();
    assert!(v["time"].is_null() && v["lat"].is_null() && v["valid"].is_null());
    assert_eq!(v["io"]["voltage_level"], 4);
}

// ---- synthetic frames: every branch the vendor frames do not reach -------------------------

fn gps(lat: f64, lon: f64) -> Gps {
    Gps {
        time: [24, 2, 29, 23, 59, 58],
        info_length: 12,
        satellites: 7,
        lat: scale_degrees(lat),
        lon: scale_degrees(lon),
        speed: 88,
        course_status: course_status(359, lat >= 0.0, lon < 0.0, true),
    }
}

fn lbs() -> Lbs {
    Lbs {
        mcc: 722,
        mnc: 7,
        lac: 0x1234,
        cell_id: 0xABCDEF,
    }
}

fn status() -> Status {
    Status {
        terminal_info: 0b1100_0110, // oil cut, GPS on, charging, ACC on
        voltage_level: 3,
        gsm_signal: 2,
        alarm: 0x02,
        language: 0x02,
    }
}

fn decode_one(frame: &[u8]) -> Decoded {
    decode_whole(&mut logged_in(), frame, NOW, "built frame")
}

#[test]
fn southern_and_western_fixes_are_negative() {
    // Buenos Aires: south, west.
    let frame = encode::frame(0x12, &location_content(&gps(-34.6037, -58.3816), &lbs()), 7);
    let r = decode_one(&frame.unwrap()).records.remove(0);
    close(r.lat, -34.6037);
    close(r.lon, -58.3816);
    assert_eq!(time(&r).as_deref(), Some("2024-02-29T23:59:58.000Z"));
    assert_eq!((r.speed_kmh, r.course_deg), (Some(88.0), Some(359.0)));
    assert_eq!((r.valid, r.satellites), (Some(true), Some(7)));
    assert!(r.io.contains(&u("course_status", 0x1000 | 0x0800 | 359)));
    // Sydney: south, east. Reykjavik: north, west.
    for (lat, lon) in [(-33.8688, 151.2093), (64.1466, -21.9426)] {
        let content = location_content(&gps(lat, lon), &lbs());
        let r = decode_one(&encode::frame(0x12, &content, 1).unwrap())
            .records
            .remove(0);
        close(r.lat, lat);
        close(r.lon, lon);
    }
}

#[test]
fn zero_coordinates_are_positive_zero_in_either_hemisphere() {
    let mut g = gps(0.0, 0.0);
    g.course_status = course_status(0, false, true, false); // "south", "west"
    let content = location_content(&g, &lbs());
    let r = decode_one(&encode::frame(0x12, &content, 1).unwrap())
        .records
        .remove(0);
    let v = serde_json::to_value(r.json(None)).unwrap();
    assert_eq!(v["lat"].to_string(), "0.0");
    assert_eq!(v["lon"].to_string(), "0.0");
}

#[test]
fn gps_only_location_0x10_and_its_reserved_bytes() {
    let mut content = Vec::new();
    gps(51.5, -0.12).push_to(&mut content);
    let r = decode_one(&encode::frame(0x10, &content, 5).unwrap())
        .records
        .remove(0);
    close(r.lat, 51.5);
    close(r.lon, -0.12);
    assert_eq!(
        r.io,
        [
            u("gps_info_length", 12),
            u("course_status", 0x1C00 | 359),
            u("serial", 5)
        ]
    );
    content.extend_from_slice(&[0x00, 0x00]);
    let r = decode_one(&encode::frame(0x10, &content, 5).unwrap())
        .records
        .remove(0);
    assert!(
        r.io.contains(&b("extra", "0000")),
        "reserved bytes are kept"
    );
    assert!(!r.io.iter().any(|(k, _)| *k == IoKey::Name("mcc".into())));
}

#[test]
fn location_without_lbs_is_accepted_but_a_partial_lbs_is_a_problem() {
    let mut content = Vec::new();
    gps(10.0, 10.0).push_to(&mut content);
    let d = decode_one(&encode::frame(0x12, &content, 1).unwrap());
    assert_eq!(d.records.len(), 1);
    content.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28]);
    let d = decode_one(&encode::frame(0x12, &content, 1).unwrap());
    let p = d.problem.expect("partial LBS");
    assert_eq!(p.offset, 4 + 21);
    assert!(
        p.reason.contains("truncated LAC: needs 2 bytes, 1 left"),
        "{p}"
    );
}

#[test]
fn two_byte_mnc_when_mcc_bit_15_is_set() {
    let wide = Lbs {
        mnc: 0x0123,
        ..lbs()
    };
    let content = location_content(&gps(1.0, 1.0), &wide);
    assert_eq!(content[18..20], [0x82, 0xD2], "MCC 722 | 0x8000");
    let r = decode_one(&encode::frame(0x12, &content, 1).unwrap())
        .records
        .remove(0);
    assert!(r.io.contains(&u("mcc", 722)) && r.io.contains(&u("mnc", 0x123)));
    assert!(r.io.contains(&u("cell_id", 0xABCDEF)));
    // The same in an alarm, whose LBS length then says 10.
    let content = alarm_content(&gps(1.0, 1.0), &wide, &status());
    let r = decode_one(&encode::frame(0x16, &content, 1).unwrap())
        .records
        .remove(0);
    assert!(r.io.contains(&u("lbs_length", 10)) && r.io.contains(&u("mnc", 0x123)));
    assert_eq!(r.event.as_deref(), Some("power_cut"));
}

#[test]
fn gt06n_mileage_and_trailing_bytes() {
    let mut content = location_content(&gps(1.0, 1.0), &lbs());
    content.extend_from_slice(&[0x01, 0x00, 0x00]);
    content.extend_from_slice(&123_456u32.to_be_bytes());
    content.push(0xEE);
    let r = decode_one(&encode::frame(0x22, &content, 1).unwrap())
        .records
        .remove(0);
    let n = r.io.len();
    assert_eq!(
        r.io[n - 6..],
        [
            u("acc", 1),
            u("upload_mode", 0),
            u("reupload", 0),
            u("mileage", 123_456),
            b("extra", "ee"),
            u("serial", 1)
        ]
    );
    // A GT06N that stops after ACC keeps what it sent.
    let mut content = location_content(&gps(1.0, 1.0), &lbs());
    content.push(0x01);
    let r = decode_one(&encode::frame(0x22, &content, 1).unwrap())
        .records
        .remove(0);
    assert_eq!(r.io[r.io.len() - 2..], [u("acc", 1), u("serial", 1)]);
}

#[test]
fn alarm_bytes_become_events() {
    for (alarm, event) in [
        (0x00, None),
        (0x01, Some("sos")),
        (0x02, Some("power_cut")),
        (0x03, Some("vibration")),
        (0x04, Some("geofence_enter")),
        (0x05, Some("geofence_exit")),
        (0x06, Some("over_speed")),
        (0x09, Some("tow")),
        (0x0E, Some("low_external_battery")),
        (0x13, Some("tamper")),
        (0x19, Some("low_battery")),
        (0x2C, Some("crash")),
        (0xFE, Some("ignition_on")),
        (0xFF, Some("ignition_off")),
        (0x42, Some("alarm:0x42")),
    ] {
        let s = Status { alarm, ..status() };
        let content = alarm_content(&gps(1.0, 1.0), &lbs(), &s);
        let d = decode_one(&encode::frame(0x16, &content, 0x0102).unwrap());
        assert_eq!(d.records[0].event.as_deref(), event, "alarm {alarm:#04x}");
        assert_eq!(d.reply, answer(gt06::reply(0x16, 0x0102)));
    }
}

#[test]
fn alarm_lbs_length_variants() {
    let head = |content: &mut Vec<u8>| gps(1.0, 1.0).push_to(content);
    // Length 0: no LBS block at all, the status follows directly.
    let mut content = Vec::new();
    head(&mut content);
    content.push(0);
    status().push_to(&mut content);
    let r = decode_one(&encode::frame(0x16, &content, 1).unwrap())
        .records
        .remove(0);
    assert!(r.io.contains(&u("lbs_length", 0)) && r.io.contains(&u("voltage_level", 3)));
    assert!(!r.io.iter().any(|(k, _)| *k == IoKey::Name("mcc".into())));
    // Length 4: too short for the cell fields, kept as bytes.
    let mut content = Vec::new();
    head(&mut content);
    content.extend_from_slice(&[4, 0xAA, 0xBB, 0xCC]);
    status().push_to(&mut content);
    let r = decode_one(&encode::frame(0x16, &content, 1).unwrap())
        .records
        .remove(0);
    assert!(r.io.contains(&b("lbs", "aabbcc")));
    assert_eq!(r.event.as_deref(), Some("power_cut"));
    // Length 11: two bytes past the cell id, kept.
    let mut content = Vec::new();
    head(&mut content);
    content.push(11);
    lbs().push_to(&mut content);
    content.extend_from_slice(&[0x01, 0x02]);
    status().push_to(&mut content);
    let r = decode_one(&encode::frame(0x16, &content, 1).unwrap())
        .records
        .remove(0);
    assert!(r.io.contains(&b("lbs_extra", "0102")) && r.io.contains(&u("cell_id", 0xABCDEF)));
    assert_eq!(r.event.as_deref(), Some("power_cut"));
    // Length past the content: a problem naming the block.
    let mut content = Vec::new();
    head(&mut content);
    content.extend_from_slice(&[60, 1, 2, 3]);
    let p = decode_one(&encode::frame(0x16, &content, 1).unwrap())
        .problem
        .unwrap();
    assert_eq!(p.offset, 4 + 19);
    assert!(
        p.reason
            .contains("truncated LBS block: needs 59 bytes, 3 left"),
        "{p}"
    );
}

#[test]
fn alarm_needs_its_alarm_byte_but_not_its_language() {
    let mut content = alarm_content(&gps(1.0, 1.0), &lbs(), &status());
    content.pop();
    let r = decode_one(&encode::frame(0x16, &content, 1).unwrap())
        .records
        .remove(0);
    assert_eq!(r.event.as_deref(), Some("power_cut"));
    assert!(!r
        .io
        .iter()
        .any(|(k, _)| *k == IoKey::Name("language".into())));
    content.pop();
    let d = decode_one(&encode::frame(0x16, &content, 1).unwrap());
    let p = d.problem.expect("no alarm byte");
    assert_eq!(d.reply, Reply::default());
    assert_eq!(p.offset, 4 + content.len());
    assert_eq!(
        p.reason,
        "alarm packet (protocol 0x16): truncated alarm: needs 1 bytes, 0 left"
    );
}

#[test]
fn heartbeats_of_any_length_are_answered() {
    // Short clones, the document's 5 bytes, and longer variants all get their reply.
    for content in [
        &[][..],
        &[0x46],
        &[0x46, 0x05, 0x03],
        &[0x46, 0x05, 0x03, 0x00, 0x02],
        &[0x46, 0x05, 0x03, 0x00, 0x02, 0x00, 0x08],
    ] {
        let frame = encode::frame(0x13, content, 0x00FF).unwrap();
        let d = decode_one(&frame);
        assert_eq!(d.reply, answer(gt06::reply(0x13, 0x00FF)));
        let r = only(&d);
        assert_eq!(r.event.as_deref(), Some("heartbeat"));
        assert_eq!(r.io.last(), Some(&u("serial", 0xFF)));
        let extra = r.io.iter().find(|(k, _)| *k == IoKey::Name("extra".into()));
        assert_eq!(extra.is_some(), content.len() > 5, "{content:02x?}");
    }
    let full = heartbeat_content(&status());
    let r = decode_one(&encode::frame(0x13, &full, 1).unwrap())
        .records
        .remove(0);
    assert!(r.io.contains(&u("oil_cut", 1)) && r.io.contains(&u("acc", 1)));
    assert!(r.io.contains(&u("armed", 0)) && r.io.contains(&u("charging", 1)));
}

#[test]
fn impossible_dates_leave_time_unset_and_keep_the_bytes() {
    let mut g = gps(1.0, 1.0);
    g.time = [0; 6];
    let content = location_content(&g, &lbs());
    let r = decode_one(&encode::frame(0x12, &content, 1).unwrap())
        .records
        .remove(0);
    assert_eq!(r.time_ms, None);
    assert_eq!(r.io[0], b("time_raw", "000000000000"));
    close(r.lat, 1.0);
}

#[test]
fn positions_beyond_the_poles_are_not_positions() {
    let mut g = gps(1.0, 1.0);
    g.lat = u32::MAX;
    let content = location_content(&g, &lbs());
    let r = decode_one(&encode::frame(0x12, &content, 1).unwrap())
        .records
        .remove(0);
    assert_eq!((r.lat, r.lon, r.valid), (None, None, Some(false)));
    assert!(r.io.contains(&u("latitude_raw", u64::from(u32::MAX))));
    assert!(r
        .io
        .contains(&u("longitude_raw", u64::from(scale_degrees(1.0)))));
    // Exactly 90° and 180° are fine.
    let mut g = gps(90.0, 180.0);
    g.course_status = course_status(0, false, true, true);
    let content = location_content(&g, &lbs());
    let r = decode_one(&encode::frame(0x12, &content, 1).unwrap())
        .records
        .remove(0);
    assert_eq!((r.lat, r.lon), (Some(-90.0), Some(-180.0)));
}

#[test]
fn long_frames_decode_like_short_ones() {
    let content = alarm_content(&gps(-1.5, 2.5), &lbs(), &status());
    let short = encode::frame(0x16, &content, 9).unwrap();
    let long = encode::frame_long(0x16, &content, 9).unwrap();
    assert_eq!(long.len(), short.len() + 1);
    assert_eq!(long[..4], [0x79, 0x79, 0x00, short[2]]);
    let (a, b) = (decode_one(&short), decode_one(&long));
    assert_eq!(a.records, b.records);
    assert_eq!(a.reply, b.reply, "the answer is always a 78 78 frame");
    // Content past what one length byte can say needs 79 79.
    let big = vec![0u8; 300];
    assert_eq!(
        encode::frame(0x13, &big, 1),
        Err(EncodeError::ContentTooLong { len: 300, max: 250 })
    );
    let d = decode_one(&encode::frame_long(0x13, &big, 1).unwrap());
    assert_eq!(d.records[0].io.last(), Some(&u("serial", 1)));
}

#[test]
fn encoder_reproduces_the_vendor_login_and_replies() {
    assert_eq!(encode::login(IMEI, 1).unwrap(), bytes(LOGIN));
    assert_eq!(encode::login("356307042441013", 9).unwrap(), login_other());
    assert_eq!(gt06::reply(0x01, 1), bytes("787805010001D9DC0D0A"));
    assert_eq!(gt06::reply(0x13, 15), bytes("78780513000F008F0D0A"));
    assert_eq!(gt06::reply(0x16, 0x36), bytes("78780516003695700D0A"));
    let sheet_alarm = alarm_content(
        &Gps {
            time: [11, 11, 15, 14, 36, 29],
            info_length: 12,
            satellites: 15,
            lat: 0x027A_C887,
            lon: 0x0C46_57E6,
            speed: 0,
            course_status: 0x1402,
        },
        &Lbs {
            mcc: 460,
            mnc: 0,
            lac: 0x287D,
            cell_id: 0x1F72,
        },
        &Status {
            terminal_info: 0x65,
            voltage_level: 6,
            gsm_signal: 4,
            alarm: 1,
            language: 1,
        },
    );
    assert_eq!(
        encode::frame(0x16, &sheet_alarm, 0x36).unwrap(),
        bytes(ALARM)
    );
    for bad in ["12345", "12345678901234X", "12345678901234567"] {
        assert_eq!(
            encode::login(bad, 1),
            Err(EncodeError::BadImei(bad.to_owned()))
        );
    }
    assert_eq!(crc16_x25(&bytes(LOGIN)[2..14]), 0x8CDD);
}

// ---- errors -------------------------------------------------------------------------------

fn session_err(input: &[u8]) -> DecodeError {
    logged_in()
        .decode(input, NOW)
        .expect_err("input must be rejected")
}

fn session_problem(frame: &[u8]) -> DecodeError {
    let d = logged_in().decode(frame, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, frame.len());
    assert!(d.records.is_empty() && d.login.is_none());
    assert_eq!(d.reply, Reply::default(), "problems get no answer");
    d.problem.expect("a problem")
}

#[test]
fn bad_crc_with_sound_framing_is_a_problem_and_the_stream_goes_on() {
    let mut frame = bytes(ALARM);
    frame[20] ^= 0x01;
    let p = session_problem(&frame);
    assert_err(p, 38, "CRC field 56a4 does not match CRC-16/X-25");
    // The CRC field itself flipped.
    let mut frame = bytes(HEARTBEAT);
    frame[11] ^= 0xFF;
    assert_err(session_problem(&frame), 11, "CRC field");
    // The next frame after a bad one decodes.
    let mut buf = bytes(LOCATION_AS_PRINTED);
    buf.extend(bytes(LOCATION));
    let frames = testkit::drain(&mut logged_in(), &mut buf, NOW).unwrap();
    assert_eq!(frames.len(), 2);
    assert!(frames[0].problem.is_some() && frames[1].records.len() == 1);
}

#[test]
fn a_login_with_a_bad_crc_is_not_answered_and_logs_nobody_in() {
    let mut frame = bytes(LOGIN);
    frame[5] ^= 0x10;
    let mut dec = Gt06Decoder::new(&options());
    let d = dec.decode(&frame, NOW).unwrap().unwrap();
    assert_eq!(d.login, None);
    assert_eq!(d.reply, Reply::default());
    assert_err(d.problem.unwrap(), 14, "CRC");
    assert_eq!(dec.device_id(), None);
}

#[test]
fn a_login_whose_id_is_not_bcd_is_a_problem() {
    let mut content = encode::terminal_id(IMEI).unwrap();
    content[3] = 0x4A;
    let frame = encode::frame(0x01, &content, 1).unwrap();
    let mut dec = Gt06Decoder::new(&options());
    let d = dec.decode(&frame, NOW).unwrap().unwrap();
    assert_eq!((d.login.as_deref(), dec.device_id()), (None, None));
    assert_eq!(d.reply, Reply::default());
    assert_err(
        d.problem.unwrap(),
        7,
        "login packet (protocol 0x01): terminal ID byte 0x4a is not BCD",
    );
    let short = encode::frame(0x01, &[0x01, 0x23], 1).unwrap();
    let d = Gt06Decoder::new(&options())
        .decode(&short, NOW)
        .unwrap()
        .unwrap();
    assert_err(
        d.problem.unwrap(),
        4,
        "truncated terminal ID: needs 8 bytes, 2 left",
    );
}

#[test]
fn data_before_the_login_closes_the_connection() {
    for (frame, name) in [
        (bytes(LOCATION), "GPS+LBS location packet (protocol 0x12)"),
        (bytes(HEARTBEAT), "status/heartbeat packet (protocol 0x13)"),
        (bytes(ALARM), "alarm packet (protocol 0x16)"),
        (gt06n_location(), "GT06N location packet (protocol 0x22)"),
        (info_0x94(), "information packet (protocol 0x94)"),
    ] {
        let err = Gt06Decoder::new(&options())
            .decode(&frame, NOW)
            .unwrap_err();
        let at = if frame.starts_with(&[0x79, 0x79]) {
            4
        } else {
            3
        };
        assert_err(err, at, &format!("{name} before the login"));
    }
    // A bad CRC before the login is still just skipped.
    let d = Gt06Decoder::new(&options())
        .decode(&bytes(LOCATION_AS_PRINTED), NOW)
        .unwrap()
        .unwrap();
    assert!(d.problem.is_some());
}

#[test]
fn garbage_where_start_bits_should_be_is_an_error() {
    assert_err(
        session_err(&[0x00]),
        0,
        "byte 0x00 where start bits 78 78 or 79 79",
    );
    assert_err(session_err(b"GET / HTTP/1.1\r\n"), 0, "byte 0x47");
    assert_err(
        session_err(&[0x78, 0x79]),
        1,
        "start bits 78 79: expected 78 78",
    );
    assert_err(session_err(&[0x79, 0x78, 0x00]), 1, "expected 79 79");
    // A frame shifted by one byte (a lost byte upstream).
    assert_err(session_err(&bytes(LOCATION)[1..]), 1, "start bits 78 1f");
    // Teltonika's IMEI packet on the GT06 port.
    assert_err(session_err(&bytes("000F333536")), 0, "byte 0x00");
}

#[test]
fn absurd_lengths_are_errors_decided_from_the_header() {
    for len in 0..5u8 {
        assert_err(
            session_err(&[0x78, 0x78, len]),
            2,
            &format!("packet length {len} is below the minimum of 5"),
        );
    }
    assert_err(session_err(&[0x79, 0x79, 0x00, 0x04]), 2, "packet length 4");
    // 79 79 ff ff: a 65541-byte frame against a 1024-byte limit, known from 4 bytes.
    let mut dec = logged_in();
    assert_eq!(dec.decode(&[0x79, 0x79, 0xFF], NOW), Ok(None));
    assert_err(
        dec.decode(&[0x79, 0x79, 0xFF, 0xFF], NOW).unwrap_err(),
        2,
        "frame of 65541 bytes exceeds the limit of 1024 bytes",
    );
    // Exactly at the limit is fine.
    let mut dec = Gt06Decoder::new(&DecoderOptions::new(260));
    assert_eq!(dec.decode(&[0x78, 0x78, 0xFF], NOW), Ok(None));
    let mut dec = Gt06Decoder::new(&DecoderOptions::new(259));
    assert_err(
        dec.decode(&[0x78, 0x78, 0xFF], NOW).unwrap_err(),
        2,
        "frame of 260 bytes exceeds the limit of 259",
    );
}

#[test]
fn a_length_that_does_not_match_the_frame_is_an_error_at_the_stop_bits() {
    // The length byte says one more than the frame holds: the stop bits are off by one.
    let mut frame = bytes(HEARTBEAT);
    frame[2] += 1;
    frame.push(0x78);
    assert_err(
        session_err(&frame),
        14,
        "0a78 where stop bits 0d 0a should be: packet length 11",
    );
    // Stop bits replaced.
    let mut frame = bytes(ALARM);
    let n = frame.len();
    frame[n - 1] = 0x0B;
    assert_err(session_err(&frame), n - 2, "0d0b where stop bits");
}

#[test]
fn truncated_frames_wait_for_more() {
    let frame = info_0x94();
    let mut dec = logged_in();
    for end in 0..frame.len() {
        assert_eq!(dec.decode(&frame[..end], NOW), Ok(None), "at {end}");
    }
}

#[test]
fn no_complete_frame_within_the_limit_is_an_error() {
    // A limit smaller than the header: the backstop refuses to wait.
    let mut dec = Gt06Decoder::new(&DecoderOptions::new(2));
    assert_err(
        dec.decode(&[0x78, 0x78], NOW).unwrap_err(),
        0,
        "no complete frame within the limit of 2 bytes",
    );
    // A limit smaller than the frame: refused from the length byte.
    let frame = bytes(ALARM);
    let mut dec = Gt06Decoder::new(&DecoderOptions::new(frame.len() - 1));
    assert_err(
        dec.decode(&frame[..3], NOW).unwrap_err(),
        2,
        "frame of 42 bytes exceeds the limit of 41",
    );
    assert_eq!(dec.max_frame_bytes(), 41);
    // An endless run of start bytes never reaches "need more" at the limit.
    let endless = vec![0x78; MAX];
    assert!(logged_in().decode(&endless, NOW).is_err());
}

#[test]
fn unknown_protocol_numbers_are_problems_without_an_answer() {
    // Sheet §1 framing around a protocol number the sheet does not list.
    let frame = frame78(0x95, "00 11 22", 5);
    let p = session_problem(&frame);
    assert_err(
        p,
        3,
        "protocol number 0x95 is not decoded; frame of 13 bytes skipped",
    );
    // 0x17 from a device (Wi-Fi on some clones, an address answer in the documents) is
    // not decoded either.
    let wifi = encode::frame(0x17, &[0; 12], 3).unwrap();
    assert_err(session_problem(&wifi), 3, "0x17 is not decoded");
}
