//! The GT06 family beyond the original GT06 document: the JM-VL03 / GT06N / GK310 packet
//! types (4G location, alarms with fence and mileage, LBS multi-cell and Wi-Fi, command
//! answers, information, time and address requests) and the range checks. Every frame is
//! built here from the documented layout with our own values; the expected answers are
//! written out byte for byte (their CRCs computed separately, two of them the JM-VL03
//! document's own examples).

use firmware_protocols::gt06::encode::{
    self, address_request_content, alarm_4g_content, course_status, location_4g_content,
    scale_degrees, Cell, Gps, Gt06nTail, Lbs, LbsLte, MultiCell, Status,
};
use firmware_protocols::gt06::{self, Gt06Decoder};
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::testkit::{self, bytes, close, decode_whole, io, io_text, io_u64, only};
use firmware_protocols::StreamDecoder;
use firmware_protocols::{Decoded, DecoderOptions, IoKey, IoValue, Record, Reply};

/// Receive time: 2030-03-17T17:46:40Z.
const NOW: i64 = 1_900_000_000_000;
const IMEI: &str = "868120145233604";

fn logged_in() -> Gt06Decoder {
    let mut dec = Gt06Decoder::new(&DecoderOptions::new(2048));
    let d = dec.decode(&encode::login(IMEI, 1).unwrap(), NOW).unwrap();
    assert_eq!(d.unwrap().login.as_deref(), Some(IMEI));
    dec
}

fn decode(frame: &[u8]) -> Decoded {
    let d = decode_whole(&mut logged_in(), frame, NOW, "built frame");
    assert_eq!(d.problem, None);
    d
}

fn answer(hex_str: &str) -> Reply {
    testkit::answer(bytes(hex_str))
}

/// 2025-06-01 10:20:30 UTC, 9 satellites, the given position, 42 km/h, course 123.
fn gps(lat: f64, lon: f64) -> Gps {
    Gps {
        time: [25, 6, 1, 10, 20, 30],
        info_length: 12,
        satellites: 9,
        lat: scale_degrees(lat),
        lon: scale_degrees(lon),
        speed: 42,
        course_status: course_status(123, lat >= 0.0, lon < 0.0, true),
    }
}

fn check_gps(r: &Record, lat: f64, lon: f64) {
    assert_eq!(
        format_rfc3339_ms(r.time_ms.unwrap()),
        "2025-06-01T10:20:30.000Z"
    );
    assert_eq!((r.valid, r.satellites), (Some(true), Some(9)));
    close(r.lat, lat);
    close(r.lon, lon);
    assert_eq!((r.speed_kmh, r.course_deg), (Some(42.0), Some(123.0)));
    assert_eq!(io(r, "range_error"), None);
}

fn status(alarm: u8) -> Status {
    Status {
        terminal_info: 0x46, // GPS tracking, charging, ACC on
        voltage_level: 5,
        gsm_signal: 3,
        alarm,
        language: 0x02,
    }
}

fn lte(mnc: u16) -> LbsLte {
    LbsLte {
        mcc: 262,
        mnc,
        lac: 0x0001_2345,
        cell_id: 0x0000_0001_0A0B_0C0D,
    }
}

#[test]
fn location_4g_0xa0_reads_the_wide_cell_and_the_gt06n_tail() {
    for mnc in [7u16, 0x0123] {
        let tail = Gt06nTail {
            acc: 1,
            upload_mode: 0x02,
            reupload: 0,
            mileage: Some(123_456),
        };
        let content = location_4g_content(&gps(52.52, 13.405), &lte(mnc), &tail);
        let d = decode(&encode::frame(gt06::LOCATION_4G, &content, 0x0A0B).unwrap());
        assert_eq!(d.reply, Reply::default(), "locations get no answer");
        let r = only(&d);
        check_gps(r, 52.52, 13.405);
        assert_eq!(r.event, None);
        assert_eq!(io_u64(r, "mcc"), Some(262));
        assert_eq!(io_u64(r, "mnc"), Some(u64::from(mnc)));
        assert_eq!(io_u64(r, "lac"), Some(0x0001_2345));
        assert_eq!(io_u64(r, "cell_id"), Some(0x0000_0001_0A0B_0C0D));
        assert_eq!(
            [
                io_u64(r, "acc"),
                io_u64(r, "upload_mode"),
                io_u64(r, "reupload")
            ],
            [Some(1), Some(2), Some(0)]
        );
        assert_eq!(io_u64(r, "mileage"), Some(123_456));
        assert_eq!(
            r.io.last(),
            Some(&(IoKey::Name("serial".into()), IoValue::U64(0x0A0B)))
        );
    }
}

#[test]
fn the_gt06n_layout_under_its_other_numbers() {
    let lbs = Lbs {
        mcc: 460,
        mnc: 1,
        lac: 0x287D,
        cell_id: 0x001F71,
    };
    for protocol in [0x22u8, 0x2D, 0x31, 0x37] {
        let mut content = encode::location_content(&gps(-33.9, 18.4), &lbs);
        content.extend_from_slice(&[0, 0x05, 1]);
        let d = decode(&encode::frame(protocol, &content, 3).unwrap());
        let r = only(&d);
        check_gps(r, -33.9, 18.4);
        assert_eq!(
            (io_u64(r, "cell_id"), io_u64(r, "reupload")),
            (Some(0x1F71), Some(1))
        );
    }
    // 0x1E: a GPS block and a firmware extension, kept as bytes.
    let mut content = Vec::new();
    gps(10.0, -70.0).push_to(&mut content);
    content.extend_from_slice(&[0xAB, 0xCD]);
    let d = decode(&encode::frame(0x1E, &content, 4).unwrap());
    let r = only(&d);
    check_gps(r, 10.0, -70.0);
    assert_eq!(io(r, "extra"), Some(&IoValue::Bytes(vec![0xAB, 0xCD])));
}

#[test]
fn vl03_alarm_0x26_is_echoed_as_the_document_shows_and_keeps_its_mileage() {
    let lbs = Lbs {
        mcc: 460,
        mnc: 0,
        lac: 0x287D,
        cell_id: 0x001F71,
    };
    let mut content = encode::alarm_content(&gps(23.125, 114.4), &lbs, &status(0x13));
    content.extend_from_slice(&5_000u32.to_be_bytes());
    let d = decode(&encode::frame(0x26, &content, 0x001C).unwrap());
    // The JM-VL03 document's server response to 0x26, serial 0x001C.
    assert_eq!(d.reply, answer("78780526001C9D860D0A"));
    let r = only(&d);
    check_gps(r, 23.125, 114.4);
    assert_eq!(r.event.as_deref(), Some("tamper"));
    assert_eq!(io_u64(r, "lbs_length"), Some(9));
    assert_eq!(io_u64(r, "terminal_info"), Some(0x46));
    assert_eq!(
        (io_u64(r, "acc"), io_u64(r, "charging")),
        (Some(1), Some(1))
    );
    assert_eq!(io_u64(r, "voltage_level"), Some(5));
    assert_eq!(io_u64(r, "mileage"), Some(5_000));
}

#[test]
fn multi_fence_alarms_carry_the_fence_number() {
    let lbs = Lbs {
        mcc: 310,
        mnc: 260,
        lac: 0x1234,
        cell_id: 0x00ABCDEF,
    };
    let mut content = encode::alarm_content(&gps(40.7, -74.0), &lbs, &status(0x05));
    content.push(2); // fence 3
    let d = decode(&encode::frame(0x27, &content, 0x0203).unwrap());
    assert_eq!(d.reply, answer("7878052702031C9C0D0A"));
    let r = only(&d);
    check_gps(r, 40.7, -74.0);
    assert_eq!(r.event.as_deref(), Some("geofence_exit"));
    assert_eq!((io_u64(r, "mnc"), io_u64(r, "fence")), (Some(260), Some(2)));

    // 0xA4: the same with the 4G cell; the LBS length counts itself (1 + 15).
    let content = alarm_4g_content(&gps(40.7, -74.0), &lte(7), &status(0x04), Some(0));
    let d = decode(&encode::frame(0xA4, &content, 0x0010).unwrap());
    assert_eq!(d.reply, answer("787805A40010EEBE0D0A"));
    let r = only(&d);
    check_gps(r, 40.7, -74.0);
    assert_eq!(r.event.as_deref(), Some("geofence_enter"));
    assert_eq!(io_u64(r, "lbs_length"), Some(16));
    assert_eq!(io_u64(r, "cell_id"), Some(0x0000_0001_0A0B_0C0D));
    assert_eq!(
        (io_u64(r, "language"), io_u64(r, "fence")),
        (Some(2), Some(0))
    );
    assert_eq!(io(r, "extra"), None);

    // 0xA3: a 4G alarm without a fence number.
    let content = alarm_4g_content(&gps(1.0, 2.0), &lte(0x0123), &status(0x01), None);
    let d = decode(&encode::frame(0xA3, &content, 0x0011).unwrap());
    assert_eq!(d.reply, answer("787805A3001173320D0A"));
    let r = only(&d);
    assert_eq!(r.event.as_deref(), Some("sos"));
    assert_eq!(
        (io_u64(r, "mnc"), io_u64(r, "lac")),
        (Some(0x0123), Some(0x0001_2345))
    );
    assert_eq!(io_u64(r, "fence"), None);
}

#[test]
fn az735_alarm_0x32_uses_the_0x16_layout() {
    let lbs = Lbs {
        mcc: 234,
        mnc: 15,
        lac: 1,
        cell_id: 2,
    };
    let content = encode::alarm_content(&gps(51.5, -0.12), &lbs, &status(0x02));
    let d = decode(&encode::frame(0x32, &content, 0x0012).unwrap());
    assert_eq!(d.reply, answer("787805320012920C0D0A"));
    let r = only(&d);
    check_gps(r, 51.5, -0.12);
    assert_eq!(r.event.as_deref(), Some("power_cut"));
}

#[test]
fn lbs_status_0x19_is_an_alarm_without_a_position() {
    let mut content = Vec::new();
    Lbs {
        mcc: 460,
        mnc: 0,
        lac: 0x287D,
        cell_id: 0x1F71,
    }
    .push_to(&mut content);
    status(0x03).push_to(&mut content);
    let d = decode(&encode::frame(0x19, &content, 9).unwrap());
    assert_eq!(d.reply, answer("78780519000916C30D0A"));
    let r = only(&d);
    assert_eq!((r.time_ms, r.valid, r.lat, r.lon), (None, None, None, None));
    assert_eq!(r.event.as_deref(), Some("vibration"));
    assert_eq!(io_u64(r, "lac"), Some(0x287D));
}

#[test]
fn gk310_heartbeat_0x23_is_answered_and_keeps_what_follows_its_terminal_info() {
    let d = decode(&encode::frame(0x23, &[0x03, 0x01, 0x9A, 0x04], 7).unwrap());
    assert_eq!(d.reply, answer("7878052300070A690D0A"));
    let r = only(&d);
    assert_eq!(r.event.as_deref(), Some("heartbeat"));
    assert_eq!((io_u64(r, "armed"), io_u64(r, "acc")), (Some(1), Some(1)));
    assert_eq!(
        io(r, "extra"),
        Some(&IoValue::Bytes(vec![0x01, 0x9A, 0x04]))
    );
}

#[test]
fn time_request_is_answered_with_the_receive_time_in_utc() {
    // The JM-VL03 document's request, serial 6.
    let request = hex::decode("7878058A000688290D0A").unwrap();
    let d = decode(&request);
    assert!(d.records.is_empty() && d.login.is_none());
    // 2030-03-17 17:46:40 = 1E 03 11 11 2E 28, then the request's serial.
    assert_eq!(d.reply, answer("78780B8A1E0311112E280006E5850D0A"));
    // The document's own answer: 2015-12-29 00:00:21, serial 6.
    let at = 1_451_347_221_000;
    assert_eq!(format_rfc3339_ms(at), "2015-12-29T00:00:21.000Z");
    assert_eq!(
        gt06::time_answer(at, 6),
        Some(hex::decode("78780B8A0F0C1D0000150006F0860D0A").unwrap())
    );
}

#[test]
fn address_requests_are_answered_with_the_position_as_the_address() {
    let request =
        |language: u16| address_request_content(&gps(22.5, -114.0), "13800138000", language);
    // English (language 2): 0x97 in a 79 79 frame.
    let d = decode(&encode::frame(0x2A, &request(0x0002), 0x42).unwrap());
    assert_eq!(
        d.reply,
        answer(
            "79790041973B0000000041444452455353262632322E3530303030302C2D3131342E303030303030\
             2626313338303031333830303000000000000000000000232300426A050D0A"
        )
    );
    let r = only(&d);
    check_gps(r, 22.5, -114.0);
    assert_eq!(r.event.as_deref(), Some("address_request"));
    assert_eq!(io_text(r, "phone"), Some("13800138000"));
    assert_eq!(io_u64(r, "language"), Some(2));

    // Chinese (language 1), asked with the GT06N's 0x1A: 0x17, address in UTF-16BE.
    let d = decode(&encode::frame(0x1A, &request(0x0001), 0x43).unwrap());
    assert_eq!(
        d.reply,
        answer(
            "78785617500000000041444452455353262600320032002E003500300030003000300030002C002D\
             003100310034002E0030003000300030003000302626313338303031333830303000000000000000\
             00000023230043B3740D0A"
        )
    );

    // Without a fix there is no position to answer with.
    let mut g = gps(22.5, -114.0);
    g.course_status &= !0x1000;
    let content = address_request_content(&g, "13800138000", 2);
    let d = decode(&encode::frame(0x2A, &content, 0x44).unwrap());
    assert_eq!(
        d.reply,
        answer(
            "7979002E9728000000004144445245535326264E4126263133383030313338303030000000000000\
             0000000023230044B2640D0A"
        )
    );
    assert_eq!(only(&d).valid, Some(false));
}

fn cells(n: usize, lte: bool) -> Vec<Cell> {
    (0..n)
        .map(|i| Cell {
            lac: if lte {
                0x0010_0000 + i as u32
            } else {
                0x2000 + i as u32
            },
            cell_id: if lte {
                0x0000_0002_0000_0000 + i as u64
            } else {
                0x00A0_0000 + i as u64
            },
            rssi: 60 - i as u8,
        })
        .collect()
}

fn multi(lte: bool, n: usize, wifi: Option<Vec<([u8; 6], u8)>>) -> MultiCell {
    MultiCell {
        time: [25, 6, 1, 10, 20, 30],
        mcc: 460,
        mnc: 0,
        cells: cells(n, lte),
        lte,
        ta: 0xFF,
        language: if wifi.is_none() { Some(2) } else { None },
        wifi,
    }
}

/// An LBS-only record: time, no GNSS position, the cells in io.
fn check_cells(r: &Record, lte: bool, n: usize) {
    assert_eq!(
        format_rfc3339_ms(r.time_ms.unwrap()),
        "2025-06-01T10:20:30.000Z"
    );
    assert_eq!(
        (r.valid, r.lat, r.lon, r.speed_kmh),
        (None, None, None, None)
    );
    assert_eq!((io_u64(r, "mcc"), io_u64(r, "mnc")), (Some(460), Some(0)));
    let all = cells(n, lte);
    assert_eq!(io_u64(r, "lac"), Some(u64::from(all[0].lac)));
    assert_eq!(io_u64(r, "cell_id"), Some(all[0].cell_id));
    assert_eq!(io_u64(r, "rssi"), Some(60));
    for (i, cell) in all.iter().enumerate().skip(1) {
        assert_eq!(io_u64(r, &format!("lac_{i}")), Some(u64::from(cell.lac)));
        assert_eq!(io_u64(r, &format!("cell_id_{i}")), Some(cell.cell_id));
        assert_eq!(io_u64(r, &format!("rssi_{i}")), Some(u64::from(cell.rssi)));
    }
    // Empty slots are no cells.
    assert_eq!(io_u64(r, &format!("lac_{n}")), None);
    assert_eq!(io_u64(r, "ta"), Some(0xFF));
}

#[test]
fn lbs_multi_cell_packets_are_records_without_a_position() {
    for protocol in [0x28u8, 0x18, 0x24, 0x2E] {
        let content = multi(false, 4, None).content();
        let d = decode(&encode::frame(protocol, &content, 5).unwrap());
        assert_eq!(d.reply, Reply::default());
        let r = only(&d);
        check_cells(r, false, 4);
        assert_eq!(io_u64(r, "language"), Some(2));
    }
    let content = multi(true, 2, None).content();
    let d = decode(&encode::frame(0xA1, &content, 5).unwrap());
    check_cells(only(&d), true, 2);
}

#[test]
fn lbs_wifi_packets_keep_the_access_points() {
    let points = vec![([0x00, 0x1A, 0x2B, 0x3C, 0x4D, 0x5E], 70), ([0xFF; 6], 45)];
    for (protocol, lte) in [(0x2Cu8, false), (0xA2, true)] {
        let content = multi(lte, 3, Some(points.clone())).content();
        let d = decode(&encode::frame(protocol, &content, 6).unwrap());
        let r = only(&d);
        check_cells(r, lte, 3);
        assert_eq!(io_u64(r, "wifi_count"), Some(2));
        assert_eq!(io_text(r, "wifi_1_mac"), Some("00:1a:2b:3c:4d:5e"));
        assert_eq!(io_u64(r, "wifi_1_rssi"), Some(70));
        assert_eq!(io_text(r, "wifi_2_mac"), Some("ff:ff:ff:ff:ff:ff"));
        assert_eq!(io_u64(r, "wifi_2_rssi"), Some(45));
        assert_eq!(io(r, "extra"), None);
    }
}

#[test]
fn command_answers_are_text_without_a_position() {
    // 0x15: length (flag + text), server flag, ASCII, language.
    let mut content = vec![4 + 9];
    content.extend_from_slice(&[0, 0, 0, 7]);
    content.extend_from_slice(b"Relay:OFF");
    content.extend_from_slice(&[0, 2]);
    let d = decode(&encode::frame(0x15, &content, 8).unwrap());
    assert_eq!(d.reply, Reply::default());
    let r = only(&d);
    assert_eq!((r.time_ms, r.lat, r.valid), (None, None, None));
    assert_eq!(r.event.as_deref(), Some("command_answer"));
    assert_eq!(io_text(r, "command_answer"), Some("Relay:OFF"));
    assert_eq!(
        (io_u64(r, "server_flag"), io_u64(r, "language")),
        (Some(7), Some(2))
    );

    // 0x21 in a 79 79 frame: ASCII (1) and UTF-16BE (2).
    let d = decode(&encode::frame_long(0x21, b"\x00\x00\x00\x01\x01SOS OK", 9).unwrap());
    assert_eq!(io_text(only(&d), "command_answer"), Some("SOS OK"));
    let mut content = vec![0, 0, 0, 1, 2];
    content.extend("已执行".encode_utf16().flat_map(u16::to_be_bytes));
    let d = decode(&encode::frame_long(0x21, &content, 10).unwrap());
    let r = only(&d);
    assert_eq!(io_text(r, "command_answer"), Some("已执行"));
    assert_eq!(io_u64(r, "encoding"), Some(2));

    // Length 0: an empty answer.
    let d = decode(&encode::frame(0x15, &[0, 0, 2], 12).unwrap());
    let r = only(&d);
    assert_eq!(
        (io_text(r, "command_answer"), io_u64(r, "language")),
        (None, Some(2))
    );

    // A length shorter than the server flag is a problem, not a guess.
    let bad = encode::frame(0x15, &[2, 0, 0], 11).unwrap();
    let d = logged_in().decode(&bad, NOW).unwrap().unwrap();
    let p = d.problem.expect("a problem");
    assert_eq!(p.offset, 4);
    assert!(p.reason.contains("command length 2"), "{p}");
}

#[test]
fn information_0x94_sub_types() {
    let info = |content: &[u8]| {
        let d = decode(&encode::frame_long(0x94, content, 12).unwrap());
        assert_eq!(d.reply, Reply::default());
        d.records[0].clone()
    };
    // External voltage: 0x049F = 1183 → 11.83 V, kept raw.
    let r = info(&[0x00, 0x04, 0x9F]);
    assert_eq!((r.time_ms, r.lat), (None, None));
    assert_eq!(io_u64(&r, "external_voltage"), Some(1183));

    let r = info(b"\x04ALM1=FF;STA1=C0;DYD=01;");
    assert_eq!(
        io_text(&r, "terminal_status"),
        Some("ALM1=FF;STA1=C0;DYD=01;")
    );

    let r = info(&[0x05, 0b101]);
    assert_eq!(
        [
            io_u64(&r, "door"),
            io_u64(&r, "door_trigger"),
            io_u64(&r, "io_port")
        ],
        [Some(1), Some(0), Some(1)]
    );

    let mut content = vec![0x0A];
    content.extend(encode::terminal_id(IMEI).unwrap());
    content.extend(encode::terminal_id("460011234567890").unwrap());
    content.extend([0x89, 0x86, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x4F]);
    let r = info(&content);
    assert_eq!(io_text(&r, "imei"), Some(IMEI));
    assert_eq!(io_text(&r, "imsi"), Some("460011234567890"));
    assert_eq!(io_text(&r, "iccid"), Some("8986012345678901234"));

    // The voltage alone in a 78 78 frame.
    let d = decode(&encode::frame(0x94, &[0x04, 0x9F], 13).unwrap());
    let r = only(&d);
    assert_eq!(
        (io_u64(r, "external_voltage"), io_u64(r, "info_type")),
        (Some(1183), None)
    );

    let r = info(&[0x1B, 1, 2, 3]);
    assert_eq!(io_u64(&r, "info_type"), Some(0x1B));
    assert_eq!(io(&r, "info"), Some(&IoValue::Bytes(vec![1, 2, 3])));
}

#[test]
fn a_course_past_360_is_dropped_not_passed_on() {
    let mut g = gps(48.0, 2.0);
    g.course_status = course_status(636, true, false, true);
    let content = encode::location_content(
        &g,
        &Lbs {
            mcc: 208,
            mnc: 1,
            lac: 1,
            cell_id: 1,
        },
    );
    let d = decode(&encode::frame(0x12, &content, 13).unwrap());
    let r = only(&d);
    assert_eq!(r.course_deg, None);
    close(r.lat, 48.0);
    assert_eq!(r.valid, Some(true), "the position itself is sound");
    assert_eq!(io_text(r, "range_error"), Some("course 636 is past 360°"));
}

#[test]
fn a_date_after_tomorrow_is_not_the_record_time() {
    let mut g = gps(48.0, 2.0);
    // Receive time 2030-03-17: 2030-03-18 23:59:59 passes, 2030-03-19 00:00:00 does not.
    g.time = [30, 3, 18, 23, 59, 59];
    let content = encode::location_content(
        &g,
        &Lbs {
            mcc: 208,
            mnc: 1,
            lac: 1,
            cell_id: 1,
        },
    );
    let r = decode(&encode::frame(0x12, &content, 14).unwrap()).records[0].clone();
    assert_eq!(
        format_rfc3339_ms(r.time_ms.unwrap()),
        "2030-03-18T23:59:59.000Z"
    );
    g.time = [30, 3, 19, 0, 0, 0];
    let content = encode::location_content(
        &g,
        &Lbs {
            mcc: 208,
            mnc: 1,
            lac: 1,
            cell_id: 1,
        },
    );
    let r = decode(&encode::frame(0x12, &content, 15).unwrap()).records[0].clone();
    assert_eq!(r.time_ms, None);
    assert_eq!(
        io(&r, "time_raw"),
        Some(&IoValue::Bytes(vec![30, 3, 19, 0, 0, 0]))
    );
    assert_eq!(
        io_text(&r, "range_error"),
        Some("date/time 2030-03-19T00:00:00.000Z is after tomorrow")
    );
}

#[test]
fn a_capture_without_its_login_still_decodes_4g_locations() {
    let tail = Gt06nTail {
        acc: 0,
        upload_mode: 0,
        reupload: 1,
        mileage: None,
    };
    let content = location_4g_content(&gps(-23.5, -46.6), &lte(11), &tail);
    let frame = encode::frame(0xA0, &content, 2).unwrap();
    let mut dec = Gt06Decoder::for_capture(&DecoderOptions::new(2048));
    let d = dec.decode(&frame, NOW).unwrap().unwrap();
    assert_eq!(dec.device_id(), None);
    let r = only(&d);
    assert_eq!(r.device_id, "");
    check_gps(r, -23.5, -46.6);
    // A live session refuses the same frame before a login.
    let err = Gt06Decoder::new(&DecoderOptions::new(2048))
        .decode(&frame, NOW)
        .unwrap_err();
    assert!(err
        .reason
        .contains("4G location packet (protocol 0xa0) before the login"));
}

#[test]
fn modular_location_0x70_reads_the_position_module_and_keeps_the_others() {
    let g = gps(52.52, -13.405);
    let mut position = Vec::new();
    position.extend_from_slice(&1_748_773_230u32.to_be_bytes()); // 2025-06-01T10:20:30Z
    position.push(9);
    position.extend_from_slice(&(-12i16).to_be_bytes());
    position.extend_from_slice(&g.lat.to_be_bytes());
    position.extend_from_slice(&g.lon.to_be_bytes());
    position.push(g.speed);
    position.extend_from_slice(&g.course_status.to_be_bytes());
    let module = |kind: u16, body: &[u8]| {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    };
    let mut content = module(0x0018, &[0x01, 0x9A]);
    content.extend(module(0x0033, &position));
    let d = decode(&encode::frame_long(0x70, &content, 0x21).unwrap());
    assert_eq!(d.reply, answer("78780570002122DA0D0A"));
    let r = only(&d);
    check_gps(r, 52.52, -13.405);
    assert_eq!(r.altitude_m, Some(-12.0));
    assert_eq!(
        io(r, "module_0018"),
        Some(&IoValue::Bytes(vec![0x01, 0x9A]))
    );

    // A position module of another length is not read as a position.
    let content = module(0x0033, &position[..17]);
    let d = decode(&encode::frame_long(0x70, &content, 0x22).unwrap());
    let r = only(&d);
    assert_eq!((r.lat, r.lon, r.time_ms, r.valid), (None, None, None, None));
    assert_eq!(
        io(r, "module_0033"),
        Some(&IoValue::Bytes(position[..17].to_vec()))
    );
}

#[test]
fn the_long_form_of_0x32_is_not_read_with_the_short_forms_layout() {
    let lbs = Lbs {
        mcc: 234,
        mnc: 15,
        lac: 1,
        cell_id: 2,
    };
    let content = encode::alarm_content(&gps(51.5, -0.12), &lbs, &status(0x02));
    let frame = encode::frame_long(0x32, &content, 0x0012).unwrap();
    let d = logged_in().decode(&frame, NOW).unwrap().unwrap();
    assert!(d.records.is_empty());
    assert_eq!(d.reply, Reply::default());
    let p = d.problem.expect("a problem");
    assert_eq!(p.offset, 4);
    assert!(p.reason.contains("0x32 is not decoded"), "{p}");
}
