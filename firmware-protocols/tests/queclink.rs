//! Queclink @Track ASCII decoder against the fact sheet's example messages
//! (shared/protocols/queclink.md §6, from Queclink's GL300 application note) and messages
//! built from the sheet's layouts (§2–§4), stream splitting, and the malformed-input suite.

use firmware_protocols::capture_battery;
use firmware_protocols::queclink::QueclinkDecoder;
use firmware_protocols::testkit::{
    self, assert_err, decode_whole, time, Battery, Capture, Contract, Frame,
};
use firmware_protocols::{
    DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Record, Reply, StreamDecoder,
};

/// 2025-10-09: after every fix time below (a fix from after tomorrow is out of range).
const NOW: i64 = 1_760_000_000_000;
const MAX: usize = 1024;
const IMEI: &str = "135790246811220";

/// §6 GL300 fixed report with one fix.
const FRI_ONE: &str = "+RESP:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,,20090214093254,11F0$";
/// §6 the same with two fixes, the second without a current fix.
const FRI_TWO: &str = "+RESP:GTFRI,1A0102,135790246811220,,0,0,2,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,0,4.3,92,70.0,121.354335,31.222073,20090101000000,0460,0000,18d8,6141,00,,20090214093254,11F0$";
/// §6 heartbeat; its answer is `+SACK:GTHBD,1A0102,11F0$`.
const HBD: &str = "+ACK:GTHBD,1A0102,135790246811220,,20100214093254,11F0$";
/// §1/§5: +BUFF has the layout of +RESP (the §6 report, stored while offline).
const BUFF_FRI: &str = "+BUFF:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,87,20090214093254,11F1$";
/// §1/§3: GTSOS in the GL300 position-report layout, battery 55 %, a southern/western fix.
const SOS: &str = "+RESP:GTSOS,1A0102,135790246811220,Truck 7,0,1,1,2,0.0,359,-12.5,-58.381592,-34.603722,20240229235959,0722,0034,1a2b,0c3d4e5f,00,55,20240229205959,0A0B$";
/// §3: GTGEO (geofence), same layout, geofence id 3 exit.
const GEO: &str = "+RESP:GTGEO,1A0102,135790246811220,,3,0,1,1,30.0,180,15.0,13.404954,52.520008,20240110120000,0262,0001,04d2,162e,00,80,20240110130000,0010$";
/// §3 GV200 GTFRI: external power, report id/type, Number, block, mileage, hour meter,
/// analog 1, analog 2, backup battery, device status, reserved, reserved.
const GV200_FRI: &str = "+RESP:GTFRI,040100,135790246811220,,12480,10,1,1,50.5,270,120.0,-0.127758,51.507351,20240301080000,0234,0015,0a1b,00c2d3,00,1234.5,00123:45:06,2710,0,95,220100,,,20240301080005,00FF$";
/// §3 GTERI: the GV200 GTFRI plus an ERI mask after the device name, and extra fields.
const GV200_ERI: &str = "+RESP:GTERI,040100,135790246811220,,00000002,12480,10,1,1,50.5,270,120.0,-0.127758,51.507351,20240301080000,0234,0015,0a1b,00c2d3,00,1234.5,00123:45:06,2710,0,95,220100,1,0,FF,20240301080005,0100$";
/// §3: GTIGN has no Number: the ignition-off duration (s), then one fix block.
const IGN: &str = "+RESP:GTIGN,1A0102,135790246811220,,200,1,0.0,0,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,20090214093254,11F2$";
/// §3: GTIGF: the ignition-on duration, then a block without any fix (empty fields).
const IGF: &str =
    "+RESP:GTIGF,1A0102,135790246811220,,3600,0,,,,,,,0460,0000,18d8,6141,00,20090214093254,11F3$";
/// §1: GTINF (device info) carries no fix block: one record without a position.
const INF: &str = "+RESP:GTINF,1A0102,135790246811220,,41,89860000000000000000,16,0,1,,4.12,1,0,,,20090214093254,11F4$";
/// §1: a command acknowledgement (serial number 0002 of an AT+GTFRI command).
const ACK_FRI: &str = "+ACK:GTFRI,1A0102,135790246811220,,0002,20090214093254,11F5$";

fn options(ack_reports: bool) -> DecoderOptions {
    DecoderOptions {
        ack_reports,
        ..DecoderOptions::new(MAX)
    }
}

fn decoder(ack_reports: bool) -> QueclinkDecoder {
    QueclinkDecoder::new(&options(ack_reports))
}

fn t(s: &str) -> IoValue {
    IoValue::Text(s.to_owned())
}

fn u(n: u64) -> IoValue {
    IoValue::U64(n)
}

fn io(pairs: &[(&str, IoValue)]) -> Vec<(IoKey, IoValue)> {
    pairs
        .iter()
        .map(|(k, v)| (IoKey::Name((*k).to_owned()), v.clone()))
        .collect()
}

fn sack(count: &str) -> Reply {
    Reply {
        accepted: Some(format!("+SACK:{count}$").into_bytes()),
        refused: None,
    }
}

/// The fix of the §6 example: 4.3 km/h, 92°, 70.0 m, 121.354335 E 31.222073 N.
fn assert_sheet_fix(r: &Record) {
    assert_eq!((r.lat, r.lon), (Some(31.222073), Some(121.354335)));
    assert_eq!(
        (r.speed_kmh, r.course_deg, r.altitude_m),
        (Some(4.3), Some(92.0), Some(70.0))
    );
    assert_eq!(r.satellites, None, "the block has no satellite count");
}

/// Every capture is decoded by a decoder in ACK mode.
const CASES: &[Capture<()>] = &[
    Capture {
        source: "§6 GL300 GTFRI, one fix",
        frame: Frame::Text(FRI_ONE),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("11F0"));
            assert_eq!(d.records.len(), 1);
            let r = &d.records[0];
            assert_eq!(r.device_id, IMEI);
            assert_eq!(r.received_at_ms, NOW);
            assert_eq!(time(r).as_deref(), Some("2009-02-14T01:32:54.000Z"));
            assert_sheet_fix(r);
            assert_eq!((r.valid, r.hdop), (Some(true), Some(1.0)));
            assert_eq!(r.event, None, "GTFRI is the periodic report");
            assert_eq!(
                r.io,
                io(&[
                    ("report", t("GTFRI")),
                    ("protocol_version", t("1A0102")),
                    ("report_id", u(0)),
                    ("report_type", u(0)),
                    ("mcc", u(460)),
                    ("mnc", u(0)),
                    ("lac", u(0x18d8)),
                    ("cell_id", u(0x6141)),
                    ("fix_reserved", t("00")),
                    ("send_time", t("20090214093254")),
                    ("count", u(0x11F0)),
                ])
            );
            assert_eq!(r.raw, None);
        },
    },
    Capture {
        source: "§6 GL300 GTFRI, two fixes, the second with GPS accuracy 0",
        frame: Frame::Text(FRI_TWO),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("11F0"));
            assert_eq!(d.records.len(), 2);
            let (a, b) = (&d.records[0], &d.records[1]);
            assert_eq!(time(a).as_deref(), Some("2009-02-14T01:32:54.000Z"));
            assert_eq!(time(b).as_deref(), Some("2009-01-01T00:00:00.000Z"));
            assert_sheet_fix(a);
            assert_sheet_fix(b);
            assert_eq!((a.valid, a.hdop), (Some(true), Some(1.0)));
            assert_eq!(
                (b.valid, b.hdop),
                (Some(false), None),
                "accuracy 0: last known position, kept but invalid"
            );
            assert_eq!(a.io, b.io, "both share the message's fields and cell");
        },
    },
    Capture {
        source: "§6 heartbeat, §4 answer",
        frame: Frame::Text(HBD),
        start: (),
        check: |d| {
            assert!(d.records.is_empty() && d.login.is_none());
            assert_eq!(
                d.reply.accepted.as_deref(),
                Some(&b"+SACK:GTHBD,1A0102,11F0$"[..])
            );
            assert_eq!(d.reply.refused, None);
        },
    },
    Capture {
        source: "§1/§5 +BUFF: the §6 report sent later, battery 87 %",
        frame: Frame::Text(BUFF_FRI),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("11F1"));
            let r = &d.records[0];
            assert_eq!(r.event, None);
            assert_eq!(time(r).as_deref(), Some("2009-02-14T01:32:54.000Z"));
            assert_eq!(
                r.io[..3],
                io(&[
                    ("report", t("GTFRI")),
                    ("buffered", u(1)),
                    ("protocol_version", t("1A0102")),
                ])[..]
            );
            let tail = &r.io[r.io.len() - 3..];
            assert_eq!(
                tail,
                io(&[
                    ("battery_percent", u(87)),
                    ("send_time", t("20090214093254")),
                    ("count", u(0x11F1)),
                ])
            );
        },
    },
    Capture {
        source: "§3 GTSOS in the GL300 layout, south/west, leap day",
        frame: Frame::Text(SOS),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("0A0B"));
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("sos"));
            assert_eq!(time(r).as_deref(), Some("2024-02-29T23:59:59.000Z"));
            assert_eq!((r.lat, r.lon), (Some(-34.603722), Some(-58.381592)));
            assert_eq!(
                (r.speed_kmh, r.course_deg, r.altitude_m),
                (Some(0.0), Some(359.0), Some(-12.5))
            );
            assert_eq!((r.valid, r.hdop), (Some(true), Some(2.0)));
            assert_eq!(
                r.io,
                io(&[
                    ("report", t("GTSOS")),
                    ("protocol_version", t("1A0102")),
                    ("device_name", t("Truck 7")),
                    ("report_id", u(0)),
                    ("report_type", u(1)),
                    ("mcc", u(722)),
                    ("mnc", u(34)),
                    ("lac", u(0x1a2b)),
                    ("cell_id", u(0x0c3d_4e5f)),
                    ("fix_reserved", t("00")),
                    ("battery_percent", u(55)),
                    ("send_time", t("20240229205959")),
                    ("count", u(0x0A0B)),
                ])
            );
        },
    },
    Capture {
        source: "§3 GTGEO in the GL300 layout",
        frame: Frame::Text(GEO),
        start: (),
        check: |d| {
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("geo"));
            assert_eq!((r.lat, r.lon), (Some(52.520008), Some(13.404954)));
            assert_eq!(r.io[2], (IoKey::Name("report_id".into()), u(3)));
        },
    },
    Capture {
        source: "§3 GV200 GTFRI layout",
        frame: Frame::Text(GV200_FRI),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("00FF"));
            let r = &d.records[0];
            assert_eq!(r.event, None);
            assert_eq!(time(r).as_deref(), Some("2024-03-01T08:00:00.000Z"));
            assert_eq!((r.lat, r.lon), (Some(51.507351), Some(-0.127758)));
            assert_eq!(
                (r.speed_kmh, r.course_deg, r.altitude_m),
                (Some(50.5), Some(270.0), Some(120.0))
            );
            assert_eq!(
                r.io,
                io(&[
                    ("report", t("GTFRI")),
                    ("protocol_version", t("040100")),
                    ("external_power_mv", u(12480)),
                    ("report_id_type", t("10")),
                    ("mcc", u(234)),
                    ("mnc", u(15)),
                    ("lac", u(0x0a1b)),
                    ("cell_id", u(0xc2d3)),
                    ("fix_reserved", t("00")),
                    ("mileage_km", IoValue::F64(1234.5)),
                    ("hour_meter", t("00123:45:06")),
                    ("analog_in_1", u(2710)),
                    ("analog_in_2", u(0)),
                    ("backup_battery_percent", u(95)),
                    ("device_status", t("220100")),
                    ("send_time", t("20240301080005")),
                    ("count", u(0xFF)),
                ])
            );
        },
    },
    Capture {
        source: "§3 GTERI: GV200 GTFRI plus ERI mask and extra fields",
        frame: Frame::Text(GV200_ERI),
        start: (),
        check: |d| {
            let r = &d.records[0];
            assert_eq!(r.event, None, "GTERI is the extended periodic report");
            assert_eq!((r.lat, r.lon), (Some(51.507351), Some(-0.127758)));
            assert_eq!(
                r.io[..5],
                io(&[
                    ("report", t("GTERI")),
                    ("protocol_version", t("040100")),
                    ("eri_mask", t("00000002")),
                    ("external_power_mv", u(12480)),
                    ("report_id_type", t("10")),
                ])[..]
            );
            // After the block (fields 8..=19): mileage and hour meter, then the fields the
            // ERI mask switches on, by field number.
            let extra: Vec<_> = r.io[10..].to_vec();
            assert_eq!(
                extra,
                io(&[
                    ("mileage_km", IoValue::F64(1234.5)),
                    ("hour_meter", t("00123:45:06")),
                    ("field_22", t("2710")),
                    ("field_23", t("0")),
                    ("field_24", t("95")),
                    ("field_25", t("220100")),
                    ("field_26", t("1")),
                    ("field_27", t("0")),
                    ("field_28", t("FF")),
                    ("send_time", t("20240301080005")),
                    ("count", u(0x100)),
                ])
            );
        },
    },
    Capture {
        source: "§3 GTIGN: duration field, then one block without a Number",
        frame: Frame::Text(IGN),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("11F2"));
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("ign"));
            assert_eq!(time(r).as_deref(), Some("2009-02-14T01:32:54.000Z"));
            assert_eq!((r.lat, r.lon), (Some(31.222073), Some(121.354335)));
            assert_eq!((r.speed_kmh, r.course_deg), (Some(0.0), Some(0.0)));
            assert_eq!(
                r.io,
                io(&[
                    ("report", t("GTIGN")),
                    ("protocol_version", t("1A0102")),
                    ("ignition_off_duration_s", u(200)),
                    ("mcc", u(460)),
                    ("mnc", u(0)),
                    ("lac", u(0x18d8)),
                    ("cell_id", u(0x6141)),
                    ("fix_reserved", t("00")),
                    ("send_time", t("20090214093254")),
                    ("count", u(0x11F2)),
                ])
            );
        },
    },
    Capture {
        source: "§3/§5 GTIGF with an empty fix block (no position ever)",
        frame: Frame::Text(IGF),
        start: (),
        check: |d| {
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("igf"));
            assert_eq!(
                (r.valid, r.lat, r.lon, r.time_ms),
                (Some(false), None, None, None)
            );
            assert_eq!(
                (r.speed_kmh, r.course_deg, r.altitude_m, r.hdop),
                (None, None, None, None)
            );
            assert_eq!(
                r.io[2],
                (IoKey::Name("ignition_on_duration_s".into()), u(3600))
            );
            assert_eq!(r.io[3], (IoKey::Name("mcc".into()), u(460)));
        },
    },
    Capture {
        source: "§1 GTINF: no fix block, fields kept by number",
        frame: Frame::Text(INF),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("11F4"));
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("inf"));
            assert_eq!((r.valid, r.lat, r.time_ms), (None, None, None));
            assert_eq!(
                r.io,
                io(&[
                    ("report", t("GTINF")),
                    ("protocol_version", t("1A0102")),
                    ("field_4", t("41")),
                    ("field_5", t("89860000000000000000")),
                    ("field_6", t("16")),
                    ("field_7", t("0")),
                    ("field_8", t("1")),
                    ("field_10", t("4.12")),
                    ("field_11", t("1")),
                    ("field_12", t("0")),
                    ("send_time", t("20090214093254")),
                    ("count", u(0x11F4)),
                ])
            );
        },
    },
    Capture {
        source: "§1 +ACK of a command: one record, event \"ack\"",
        frame: Frame::Text(ACK_FRI),
        start: (),
        check: |d| {
            assert_eq!(d.reply, sack("11F5"));
            let r = &d.records[0];
            assert_eq!(r.event.as_deref(), Some("ack"));
            assert_eq!(
                r.io,
                io(&[
                    ("report", t("GTFRI")),
                    ("protocol_version", t("1A0102")),
                    ("field_4", t("0002")),
                    ("send_time", t("20090214093254")),
                    ("count", u(0x11F5)),
                ])
            );
        },
    },
];

fn battery() -> Battery<(), QueclinkDecoder> {
    Battery {
        captures: CASES,
        decoder: |_| decoder(true),
        now: NOW,
        next: Frame::Text(HBD),
        // Bad messages are skipped, never an `Err`; no login; ranges are the registry's
        // `checked` wrapper's job after this decoder.
        contract: Contract {
            may_fail: false,
            logins: false,
            ranges: false,
            ..Contract::SESSION
        },
    }
}

capture_battery!(battery);

#[test]
fn every_capture_names_its_device_and_logs_nobody_in() {
    for case in CASES {
        let mut dec = decoder(true);
        let d = decode_whole(&mut dec, &case.frame.bytes(), NOW, case.source);
        assert_eq!(d.problem, None, "{}", case.source);
        assert_eq!(
            d.login, None,
            "{}: every message carries its id",
            case.source
        );
        assert_eq!(dec.device_id(), Some(IMEI), "{}", case.source);
        assert!(d.records.iter().all(|r| r.device_id == IMEI));
    }
}

#[test]
fn without_ack_mode_reports_get_no_answer_but_heartbeats_do() {
    for case in CASES {
        let frame = case.frame.bytes();
        let d = decoder(false).decode(&frame, NOW).unwrap().unwrap();
        if frame == HBD.as_bytes() {
            assert_eq!(
                d.reply.accepted.as_deref(),
                Some(&b"+SACK:GTHBD,1A0102,11F0$"[..])
            );
        } else {
            assert_eq!(d.reply, Reply::default(), "{}", case.source);
        }
    }
}

/// A device's session: heartbeat, reports (some with `$\r\n`), buffered reports, an ack.
fn session_bytes() -> Vec<u8> {
    let mut all = Vec::new();
    for (text, sep) in [
        (HBD, ""),
        (FRI_ONE, "\r\n"),
        (FRI_TWO, "\r\n"),
        (SOS, ""),
        (BUFF_FRI, "\n"),
        (GV200_FRI, " "),
        (IGN, "\r\n"),
        (INF, ""),
        (ACK_FRI, "\r\n"),
        (HBD, ""),
    ] {
        all.extend_from_slice(text.as_bytes());
        all.extend_from_slice(sep.as_bytes());
    }
    all
}

#[test]
fn whole_session_in_one_buffer_decodes_frame_by_frame() {
    let mut buf = session_bytes();
    let mut dec = decoder(true);
    let frames = testkit::drain(&mut dec, &mut buf, NOW).unwrap();
    assert!(buf.is_empty());
    let counts: Vec<usize> = frames.iter().map(|d| d.records.len()).collect();
    assert_eq!(counts, [0, 1, 2, 1, 1, 1, 1, 1, 1, 0]);
    assert!(frames
        .iter()
        .all(|d| d.problem.is_none() && d.login.is_none()));
    let replies: Vec<String> = frames
        .iter()
        .map(|d| String::from_utf8(d.reply.accepted.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        replies,
        [
            "+SACK:GTHBD,1A0102,11F0$",
            "+SACK:11F0$",
            "+SACK:11F0$",
            "+SACK:0A0B$",
            "+SACK:11F1$",
            "+SACK:00FF$",
            "+SACK:11F2$",
            "+SACK:11F4$",
            "+SACK:11F5$",
            "+SACK:GTHBD,1A0102,11F0$",
        ]
    );
    // The separators go with the message before them.
    assert_eq!(frames[1].consumed, FRI_ONE.len() + 2);
    assert_eq!(frames[2].consumed, FRI_TWO.len() + 2);
    assert_eq!(frames[3].consumed, SOS.len());
    assert_eq!(dec.device_id(), Some(IMEI));
}

/// A frame of whitespace only: nothing stored, answered or logged.
fn is_blank(d: &Decoded) -> bool {
    d.records.is_empty() && d.reply == Reply::default() && d.problem.is_none()
}

fn without_consumed(frames: &[Decoded]) -> Vec<Decoded> {
    frames
        .iter()
        .map(|d| Decoded {
            consumed: 0,
            ..d.clone()
        })
        .collect()
}

#[test]
fn session_split_into_two_reads_at_every_offset_decodes_the_same() {
    // A split right after a '$' leaves the separator as a frame of its own, with nothing in
    // it; everything else is the same.
    testkit::split_at_every_offset(
        || decoder(true),
        &session_bytes(),
        NOW,
        |mut frames| {
            frames.retain(|d| !is_blank(d));
            without_consumed(&frames)
        },
    );
}

#[test]
fn device_id_follows_the_last_message() {
    let mut dec = decoder(false);
    assert_eq!(dec.device_id(), None);
    dec.decode(FRI_ONE.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(dec.device_id(), Some(IMEI));
    let other = FRI_ONE.replace(IMEI, "86246705123456A");
    let d = dec.decode(other.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].device_id, "86246705123456A");
    assert_eq!(dec.device_id(), Some("86246705123456A"));
    // A message that fails its common checks does not change it.
    let bad = FRI_ONE.replace(",11F0$", ",XYZ$");
    assert!(dec
        .decode(bad.as_bytes(), NOW)
        .unwrap()
        .unwrap()
        .problem
        .is_some());
    assert_eq!(dec.device_id(), Some("86246705123456A"));
}

#[test]
fn keep_raw_stores_the_message_text_without_the_end_marker() {
    let mut dec = QueclinkDecoder::new(&DecoderOptions {
        keep_raw: true,
        ..DecoderOptions::new(MAX)
    });
    let input = format!("\r\n{FRI_TWO}");
    let d = dec.decode(input.as_bytes(), NOW).unwrap().unwrap();
    let raw = FRI_TWO.strip_suffix('$').unwrap();
    assert!(d.records.iter().all(|r| r.raw.as_deref() == Some(raw)));
}

#[test]
fn record_json_of_the_sheet_example() {
    let d = decoder(false)
        .decode(FRI_ONE.as_bytes(), NOW)
        .unwrap()
        .unwrap();
    let v = serde_json::to_value(d.records[0].json(None)).unwrap();
    assert_eq!(v["device_id"], IMEI);
    assert_eq!(v["protocol"], "queclink");
    assert_eq!(v["time"], "2009-02-14T01:32:54.000Z");
    assert_eq!(v["valid"], true);
    assert_eq!(v["lat"], 31.222073);
    assert_eq!(v["lon"], 121.354335);
    assert!(v["event"].is_null());
    assert!(v["satellites"].is_null());
    assert_eq!(v["io"]["send_time"], "20090214093254");
    assert_eq!(v["io"]["lac"], 6360);
}

#[test]
fn gps_time_that_is_not_a_date_is_kept_as_text() {
    let text = FRI_ONE.replace("20090214013254", "20090230013254");
    let d = decoder(false)
        .decode(text.as_bytes(), NOW)
        .unwrap()
        .unwrap();
    let r = &d.records[0];
    assert_eq!(r.time_ms, None);
    assert!(r
        .io
        .contains(&(IoKey::Name("gps_utc_time".into()), t("20090230013254"))));
}

#[test]
fn tow_and_stt_decode_by_their_layouts() {
    // A numbered report (GTTOW, the position layout), and a single-block one (GTSTT).
    let tow = FRI_ONE.replace("GTFRI", "GTTOW");
    let d = decoder(false).decode(tow.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].event.as_deref(), Some("tow"));
    assert_eq!(d.records[0].lat, Some(31.222073));
    let stt = IGN.replace("GTIGN", "GTSTT").replace(",200,", ",21,");
    let d = decoder(false).decode(stt.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(d.records[0].event.as_deref(), Some("stt"));
    assert_eq!(d.records[0].lon, Some(121.354335));
    assert_eq!(
        d.records[0].io[2],
        (IoKey::Name("motion_state".into()), t("21"))
    );
}

#[test]
fn phone_numbers_with_a_plus_inside_a_message_are_not_a_new_message() {
    let lbc = "+RESP:GTLBC,1A0102,135790246811220,,+8613800000000,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,20090214093254,11F6$";
    let d = decoder(false).decode(lbc.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(d.consumed, lbc.len());
    assert_eq!(d.problem, None);
    assert_eq!(
        d.records[0].io[2],
        (IoKey::Name("call_number".into()), t("+8613800000000"))
    );
}

// ---- malformed input ---------------------------------------------------------------------

/// Decodes `text` alone and returns the problem it must produce, checking it consumed all.
fn problem_of(text: &str) -> DecodeError {
    let d = decoder(true)
        .decode(text.as_bytes(), NOW)
        .expect("a bad message is a problem, not an error")
        .expect("complete");
    assert_eq!(d.consumed, text.len(), "{text}");
    assert!(d.records.is_empty());
    assert_eq!(
        d.reply,
        Reply::default(),
        "a bad message is never acknowledged"
    );
    d.problem.expect("problem")
}

fn offset_of(text: &str, needle: &str) -> usize {
    text.find(needle).unwrap()
}

/// Decodes `text` alone: one record without a position, acknowledged, that says its
/// fields fit no layout; returns the reason it gives.
fn mismatch_of(text: &str) -> String {
    let d = decoder(true)
        .decode(text.as_bytes(), NOW)
        .expect("never an error")
        .expect("complete");
    assert_eq!(d.consumed, text.len(), "{text}");
    assert_eq!(d.problem, None, "kept, not refused: {text}");
    assert!(d.reply.accepted.is_some(), "stored, so acknowledged");
    assert_eq!(d.records.len(), 1, "{text}");
    let r = &d.records[0];
    assert_eq!(
        (r.lat, r.lon, r.time_ms, r.speed_kmh, r.valid),
        (None, None, None, None, None),
        "{text}"
    );
    assert!(r
        .io
        .contains(&(IoKey::Name("layout".into()), t("mismatch"))));
    match r
        .io
        .iter()
        .find(|(k, _)| *k == IoKey::Name("layout_error".into()))
    {
        Some((_, IoValue::Text(reason))) => reason.clone(),
        other => panic!("no layout_error: {other:?}"),
    }
}

#[test]
fn malformed_fields_where_a_layout_fits_are_problems_naming_them() {
    let text = FRI_ONE.replace("31.222073", "31.2x2073");
    assert_err(
        problem_of(&text),
        offset_of(&text, "31.2x"),
        "fix 1: latitude \"31.2x2073\" (field 12) is not signed decimal degrees",
    );
    let text = FRI_TWO.replace(",0,4.3,92,70.0,121.354335", ",0,4.3,92,70.0,east");
    assert_err(
        problem_of(&text),
        offset_of(&text, "east"),
        "fix 2: longitude \"east\"",
    );
    let text = IGN.replace("31.222073", "1e5");
    assert_err(
        problem_of(&text),
        offset_of(&text, "1e5"),
        "latitude \"1e5\"",
    );
    let text = IGN.replace("GTIGN", "GTSTT").replace("31.222073", "north");
    assert_err(
        problem_of(&text),
        offset_of(&text, "north"),
        "latitude \"north\"",
    );
    // A Number that is not one, where the layout has it.
    let text = FRI_ONE.replace(",0,0,1,1,", ",0,0,x,1,");
    assert_err(
        problem_of(&text),
        offset_of(&text, ",x,") + 1,
        "Number \"x\" (field 6) is not 0 to 15",
    );
}

#[test]
fn a_coordinate_out_of_range_keeps_the_record_invalid_without_a_position() {
    let text = FRI_ONE.replace("121.354335", "181.000000");
    let d = decoder(false)
        .decode(text.as_bytes(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(d.problem, None);
    let r = &d.records[0];
    assert_eq!((r.lat, r.lon, r.valid), (None, None, Some(false)));
    assert_eq!(r.speed_kmh, Some(4.3));
    assert!(r.io.contains(&(
        IoKey::Name("range_error".into()),
        t("latitude 31.222073 / longitude 181 outside ±90 / ±180")
    )));
}

#[test]
fn field_counts_no_layout_has_keep_the_record_without_a_position() {
    // Number says 2, one block follows.
    let text = FRI_ONE.replace(",0,0,1,1,", ",0,0,2,1,");
    assert_eq!(
        mismatch_of(&text),
        "GTFRI: 16 fields between the device name and the send time fit no documented \
         layout (at byte offset 36)"
    );
    // A field missing inside the block (the azimuth).
    let text = FRI_ONE.replace(",4.3,92,", ",4.3,");
    assert!(mismatch_of(&text).contains("15 fields"));
    // A field more before the Number: "0" where the Number is, and 14 fields after it
    // where one belongs.
    let text = FRI_ONE.replace(",,0,0,1,1,", ",,0,0,0,1,1,");
    assert!(mismatch_of(&text).contains("17 fields"));
    // One more where the Number is read as 1: the block shifts by one and its time lands
    // in the wrong field.
    let text = FRI_ONE.replace(",,0,0,1,1,", ",,0,0,1,1,1,");
    assert!(mismatch_of(&text).starts_with("fix 1: "));
    // A single-block report with too few fields for a block.
    let text = "+RESP:GTIGN,1A0102,135790246811220,,200,1,4.3,20090214093254,11F0$";
    assert!(mismatch_of(text).starts_with("GTIGN: 3 fields"));
    // Too few fields for any message is still a problem: the common fields are wrong.
    assert_err(
        problem_of("+RESP:GTFRI,1A0102,135790246811220,11F0$"),
        6,
        "GTFRI has 3 fields after the report type; every message has at least 5",
    );
}

#[test]
fn number_zero_is_a_report_without_a_fix() {
    let text = "+RESP:GTFRI,1A0102,135790246811220,,0,0,0,,20090214093254,11F0$";
    let d = decoder(false)
        .decode(text.as_bytes(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(d.problem, None);
    let r = &d.records[0];
    assert_eq!((r.lat, r.lon, r.time_ms, r.valid), (None, None, None, None));
    assert_eq!(
        r.io,
        io(&[
            ("report", t("GTFRI")),
            ("protocol_version", t("1A0102")),
            ("report_id", u(0)),
            ("report_type", u(0)),
            ("send_time", t("20090214093254")),
            ("count", u(0x11F0)),
        ])
    );
}

#[test]
fn bad_common_fields_are_problems() {
    let cases = [
        (
            FRI_ONE.replace(",11F0$", ",11G0$"),
            "11G0",
            "count number \"11G0\"",
        ),
        (
            FRI_ONE.replace(",11F0$", ",11F$"),
            "11F$",
            "not 4 hex digits",
        ),
        (
            FRI_ONE.replace(IMEI, "13579-0246811220"),
            "13579-",
            "unique id \"13579-0246811220\"",
        ),
        (
            FRI_ONE.replace("1A0102", "1A01ZZ"),
            "1A01ZZ",
            "protocol version \"1A01ZZ\"",
        ),
        (
            FRI_ONE.replace(",20090214093254,11F0$", ",2009021409325,11F0$"),
            "2009021409325,",
            "send time \"2009021409325\"",
        ),
        (
            FRI_ONE.replace("GTFRI", "GTfri"),
            "GTfri",
            "report type \"GTfri\"",
        ),
        (HBD.replace("GTHBD", "HBD"), "HBD", "report type \"HBD\""),
    ];
    for (text, at, needle) in cases {
        assert_err(problem_of(&text), offset_of(&text, at), needle);
    }
}

#[test]
fn non_text_inside_a_message_is_a_problem() {
    let mut bytes = FRI_ONE.as_bytes().to_vec();
    bytes[15] = 0xFF;
    let d = decoder(false).decode(&bytes, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, bytes.len());
    assert_err(d.problem.unwrap(), 15, "byte 0xff is not text");
}

#[test]
fn garbage_before_a_message_is_skipped_up_to_the_next_plus() {
    for junk in [
        &b"AT+"[..2],
        b"hello ",
        b"\x00\x0f356307042441013",
        b"\xff\xfe\x80",
        b"$$",
        b"+SACK:11F0$",
    ] {
        let mut input = junk.to_vec();
        input.extend_from_slice(FRI_ONE.as_bytes());
        let frames = testkit::drain(&mut decoder(true), &mut input, NOW).unwrap();
        assert!(input.is_empty());
        assert_eq!(frames.len(), 2, "{junk:?}");
        assert_eq!(frames[0].consumed, junk.len());
        assert_err(
            frames[0].problem.clone().unwrap(),
            0,
            "not a message (expected +RESP:, +BUFF: or +ACK:)",
        );
        assert_eq!(frames[1].records.len(), 1, "{junk:?}");
        assert_eq!(frames[1].reply, sack("11F0"));
    }
    // Leading whitespace is not garbage; the offset points past it.
    let d = decoder(false).decode(b"\r\n  xx", NOW).unwrap().unwrap();
    assert_eq!(d.consumed, 6);
    assert_err(d.problem.unwrap(), 4, "2 bytes that are not a message");
}

#[test]
fn a_message_cut_off_by_the_next_one_is_skipped_up_to_it() {
    let cut = &FRI_ONE[..60];
    let input = format!("{cut}{SOS}");
    let mut dec = decoder(true);
    let first = dec.decode(input.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(first.consumed, cut.len());
    assert_err(
        first.problem.unwrap(),
        0,
        &format!(
            "message has no '$' before the next one begins at byte {}",
            cut.len()
        ),
    );
    let second = dec
        .decode(&input.as_bytes()[cut.len()..], NOW)
        .unwrap()
        .unwrap();
    assert_eq!(second.records[0].event.as_deref(), Some("sos"));
    // While the next header is still arriving, wait.
    let partial = format!("{cut}+BU");
    assert_eq!(dec.decode(partial.as_bytes(), NOW), Ok(None));
}

#[test]
fn an_endless_message_is_dropped_at_the_limit_and_the_stream_goes_on() {
    let max = 64;
    let mut dec = QueclinkDecoder::new(&DecoderOptions::new(max));
    let mut endless = b"+RESP:GTFRI,".to_vec();
    endless.resize(max - 1, b'7');
    assert_eq!(dec.decode(&endless, NOW), Ok(None), "below the limit: wait");
    endless.push(b'7');
    let d = dec.decode(&endless, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, max);
    assert_err(
        d.problem.unwrap(),
        0,
        "no '$' within the limit of 64 bytes: 64 bytes dropped",
    );
    // The rest of it is garbage up to the next message, which decodes.
    let rest = format!("7777,20090214093254,11F0${HBD}");
    let mut buf = rest.clone().into_bytes();
    let frames = testkit::drain(
        &mut QueclinkDecoder::new(&DecoderOptions::new(max)),
        &mut buf,
        NOW,
    )
    .unwrap();
    assert_eq!(frames.len(), 2);
    assert!(frames[0].problem.is_some());
    assert_eq!(frames[0].consumed, rest.len() - HBD.len());
    assert!(frames[1].reply.accepted.is_some());

    // A header still arriving at the end is kept for the next call.
    let mut input = b"+RESP:GTFRI,".to_vec();
    input.resize(max - 3, b'7');
    input.extend_from_slice(b"+AC");
    let d = dec.decode(&input, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, max - 3);
    assert!(d.problem.is_some());

    // Whitespace before a header that is still arriving is dropped silently.
    let mut input = vec![b' '; max - 2];
    input.extend_from_slice(b"+R");
    let d = dec.decode(&input, NOW).unwrap().unwrap();
    assert_eq!((d.consumed, d.problem), (max - 2, None));
}

#[test]
fn endless_garbage_never_waits_and_never_stalls() {
    let mut dec = decoder(false);
    let junk = vec![b'x'; 5000];
    let d = dec.decode(&junk, NOW).unwrap().unwrap();
    assert_eq!(d.consumed, junk.len());
    assert!(d.problem.is_some());
    // A whole message longer than the limit (a caller that buffered more than asked).
    let long = FRI_ONE.replace(
        ",,20090214093254",
        &format!(",{},20090214093254", "9".repeat(MAX)),
    );
    let d = dec.decode(long.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(d.consumed, long.len());
    assert_err(d.problem.unwrap(), 0, "exceeds the limit of 1024 bytes");
}

#[test]
fn whitespace_alone_is_consumed_with_nothing_to_do() {
    let mut dec = decoder(true);
    assert_eq!(dec.decode(b"", NOW), Ok(None));
    for blank in [&b"\r\n"[..], b" ", &[b'\n'; MAX]] {
        let d = dec.decode(blank, NOW).unwrap().unwrap();
        assert_eq!(
            (d.consumed, d.problem, d.records.len()),
            (blank.len(), None, 0)
        );
        assert_eq!(d.reply, Reply::default());
    }
    // Whitespace after a '$' goes with the message; before one, too.
    let input = format!("\r\n{FRI_ONE} \r\n\t{HBD}");
    let d = dec.decode(input.as_bytes(), NOW).unwrap().unwrap();
    assert_eq!(d.consumed, 2 + FRI_ONE.len() + 4);
    assert_eq!(d.records.len(), 1);
}

#[test]
fn truncated_messages_wait_for_more() {
    for text in [FRI_ONE, HBD, IGN] {
        for cut in [1, 3, 6, 20, text.len() - 1] {
            assert_eq!(
                decoder(false).decode(&text.as_bytes()[..cut], NOW),
                Ok(None)
            );
        }
    }
}

#[test]
fn tiny_limits_never_ask_for_more_than_the_limit() {
    for max in 1..8 {
        let mut dec = QueclinkDecoder::new(&DecoderOptions::new(max));
        assert_eq!(dec.max_frame_bytes(), max);
        let input = &HBD.as_bytes()[..max];
        let d = dec.decode(input, NOW).unwrap().unwrap();
        assert!(d.consumed >= 1 && d.consumed <= max, "max {max}");
    }
}
