//! Queclink report types by their documented layouts: frames built here from the field
//! lists of the @Track air interface documents (module docs of `queclink::layout` and
//! `queclink::mask`; fact sheet shared/protocols/queclink.md), with our own values: one fix
//! at 51.5 N 0.1 W. Each type is checked whole (time, position, speed, course, altitude and
//! some io), live and as `+BUFF`; then the report masks, messages no layout fits, and the
//! range checks.

use firmware_protocols::queclink::QueclinkDecoder;
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::testkit::{decode_whole, io};
use firmware_protocols::{Decoded, DecoderOptions, IoKey, IoValue, Record};

/// 2025-10-09, after the fix time below.
const NOW: i64 = 1_760_000_000_000;
const IMEI: &str = "866000000000017";
const SEND: &str = "20250101130005";
const COUNT: &str = "0A1F";

/// The fix every frame carries: accuracy 1, 62.5 km/h, 271°, 35.0 m, 0.1 W, 51.5 N,
/// 2025-01-01T12:00:00Z, cell 234/15/0x0a1b/0xc2d3.
const GNSS: [&str; 7] = [
    "1",
    "62.5",
    "271",
    "35.0",
    "-0.100000",
    "51.500000",
    "20250101120000",
];
const CELL: [&str; 5] = ["0234", "0015", "0a1b", "00c2d3", "00"];

fn block() -> Vec<&'static str> {
    GNSS.iter().chain(&CELL).copied().collect()
}

/// `<header>GT<kind>,<version>,<IMEI>,<name>,<middle…>,<send time>,<count>$`.
fn frame(header: &str, kind: &str, version: &str, name: &str, middle: &[&str]) -> String {
    let mut fields = vec![format!("{header}GT{kind}"), version.into(), IMEI.into()];
    fields.push(name.into());
    fields.extend(middle.iter().map(|f| (*f).to_owned()));
    fields.push(SEND.into());
    fields.push(COUNT.into());
    format!("{}$", fields.join(","))
}

/// `before`, then the block, then `after`.
fn around(before: &[&'static str], after: &[&'static str]) -> Vec<&'static str> {
    let mut m = before.to_vec();
    m.extend(block());
    m.extend_from_slice(after);
    m
}

fn decode(text: &str) -> Decoded {
    let mut dec = QueclinkDecoder::new(&DecoderOptions {
        ack_reports: true,
        ..DecoderOptions::new(4096)
    });
    let d = decode_whole(&mut dec, text.as_bytes(), NOW, text);
    assert_eq!(d.problem, None, "{text}");
    assert_eq!(
        d.reply.accepted.as_deref(),
        Some(format!("+SACK:{COUNT}$").as_bytes()),
        "{text}"
    );
    d
}

fn t(s: &str) -> IoValue {
    IoValue::Text(s.to_owned())
}

fn u(n: u64) -> IoValue {
    IoValue::U64(n)
}

fn f(x: f64) -> IoValue {
    IoValue::F64(x)
}

/// The record of the fix above, whole.
fn assert_the_fix(r: &Record, what: &str) {
    assert_eq!(r.device_id, IMEI, "{what}");
    assert_eq!(
        r.time_ms.map(format_rfc3339_ms).as_deref(),
        Some("2025-01-01T12:00:00.000Z"),
        "{what}"
    );
    assert_eq!((r.lat, r.lon), (Some(51.5), Some(-0.1)), "{what}");
    assert_eq!(
        (r.speed_kmh, r.course_deg, r.altitude_m),
        (Some(62.5), Some(271.0), Some(35.0)),
        "{what}"
    );
    assert_eq!(
        (r.valid, r.hdop, r.satellites),
        (Some(true), Some(1.0), None),
        "{what}"
    );
    for (key, value) in [
        ("mcc", u(234)),
        ("mnc", u(15)),
        ("lac", u(0x0a1b)),
        ("cell_id", u(0xc2d3)),
        ("send_time", t(SEND)),
        ("count", u(0x0A1F)),
    ] {
        assert_eq!(io(r, key), Some(&value), "{what}: {key}");
    }
    assert_eq!(io(r, "layout"), None, "{what}");
}

struct Case {
    kind: &'static str,
    version: &'static str,
    middle: Vec<&'static str>,
    /// io values the record must carry besides the fix's.
    io: Vec<(&'static str, IoValue)>,
}

fn case(
    kind: &'static str,
    version: &'static str,
    middle: Vec<&'static str>,
    io: Vec<(&'static str, IoValue)>,
) -> Case {
    Case {
        kind,
        version,
        middle,
        io,
    }
}

/// GL300 (1A), GV300 (06), GMT100 (08), GV200 (04) and a device type no family table
/// lists (42), one case per report type.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // GL300 position layout: report id, report type, Number, block, battery %.
    for kind in [
        "GEO", "SPD", "SOS", "RTL", "PNL", "NMR", "DIS", "DOG", "IGL", "FRI",
    ] {
        cases.push(case(
            kind,
            "1A0102",
            around(&["3", "1", "1"], &["77"]),
            vec![
                ("report_id", u(3)),
                ("report_type", u(1)),
                ("battery_percent", u(77)),
            ],
        ));
    }
    // GV300 / GMT100 position layout: external power (or reserved), report id/type, Number,
    // block, mileage.
    for (kind, version) in [
        ("TOW", "060100"),
        ("HBM", "060100"),
        ("GEO", "080100"),
        ("SOS", "080100"),
        ("DOG", "040100"),
        ("FRI", "080100"),
    ] {
        cases.push(case(
            kind,
            version,
            around(&["12850", "21", "1"], &["2000.5"]),
            vec![
                ("external_power_mv", u(12850)),
                ("report_id_type", t("21")),
                ("mileage_km", f(2000.5)),
            ],
        ));
    }
    // GV300 GTFRI: the GV300CAN suffix (mileage, hour meter, analog in, reserved, backup
    // battery, device status, 3 reserved): mileage and hour meter named, the rest by number.
    cases.push(case(
        "FRI",
        "060100",
        around(
            &["12850", "10", "1"],
            &[
                "1234.5",
                "00123:45:06",
                "2710",
                "",
                "95",
                "220100",
                "",
                "",
                "",
            ],
        ),
        vec![
            ("external_power_mv", u(12850)),
            ("mileage_km", f(1234.5)),
            ("hour_meter", t("00123:45:06")),
            ("field_21", t("2710")),
            ("field_23", t("95")),
        ],
    ));
    // GV200 GTFRI (fact sheet §3): the 8 named fields after the block.
    cases.push(case(
        "FRI",
        "040100",
        around(
            &["12480", "10", "1"],
            &["1234.5", "00123:45:06", "2710", "0", "95", "220100", "", ""],
        ),
        vec![
            ("analog_in_1", u(2710)),
            ("backup_battery_percent", u(95)),
            ("device_status", t("220100")),
        ],
    ));
    // GTERI: ERI mask, external power, report id/type, Number, block, mileage, hour meter,
    // then what the ERI mask switches on (here a 1-wire count of 0).
    cases.push(case(
        "ERI",
        "060100",
        around(
            &["00000002", "12500", "10", "1"],
            &["1234.5", "00123:45:06", "2710", "95", "220100", "0"],
        ),
        vec![
            ("eri_mask", t("00000002")),
            ("external_power_mv", u(12500)),
            ("mileage_km", f(1234.5)),
            ("hour_meter", t("00123:45:06")),
            ("field_25", t("0")),
        ],
    ));
    // Ignition: the duration, one block, hour meter, mileage.
    cases.push(case(
        "IGN",
        "060100",
        around(&["300"], &["00012:00:00", "2000.5"]),
        vec![
            ("ignition_off_duration_s", u(300)),
            ("hour_meter", t("00012:00:00")),
            ("mileage_km", f(2000.5)),
        ],
    ));
    cases.push(case(
        "IGF",
        "060100",
        around(&["5400"], &["00013:30:00", "2055.0"]),
        vec![
            ("ignition_on_duration_s", u(5400)),
            ("mileage_km", f(2055.0)),
        ],
    ));
    cases.push(case(
        "STT",
        "060100",
        around(&["42"], &[]),
        vec![("motion_state", t("42"))],
    ));
    cases.push(case(
        "BPL",
        "1A0102",
        around(&["3.55"], &[]),
        vec![("battery_voltage_v", f(3.55))],
    ));
    cases.push(case(
        "LBC",
        "1A0102",
        around(&["+447700900123"], &[]),
        vec![("call_number", t("+447700900123"))],
    ));
    for kind in ["EPN", "EPF"] {
        cases.push(case(
            kind,
            "060100",
            around(&[], &["2000.5"]),
            vec![("field_16", t("2000.5"))],
        ));
    }
    cases.push(case(
        "IDN",
        "060100",
        around(&["1"], &["2000.5"]),
        vec![("field_4", t("1")), ("field_17", t("2000.5"))],
    ));
    cases.push(case(
        "IDF",
        "060100",
        around(&["1", "600"], &["2000.5"]),
        vec![("field_5", t("600")), ("field_18", t("2000.5"))],
    ));
    // A device type in no family table: the position layout, fields by number.
    cases.push(case(
        "SPD",
        "420102",
        around(&["", "00", "1"], &["2000.5"]),
        vec![("field_5", t("00")), ("field_19", t("2000.5"))],
    ));
    cases
}

#[test]
fn every_type_decodes_by_its_layout_live_and_buffered() {
    for c in cases() {
        for header in ["+RESP:", "+BUFF:"] {
            let text = frame(header, c.kind, c.version, "", &c.middle);
            let d = decode(&text);
            assert_eq!(d.records.len(), 1, "{text}");
            let r = &d.records[0];
            assert_the_fix(r, &text);
            let event = (!matches!(c.kind, "FRI" | "ERI")).then(|| c.kind.to_ascii_lowercase());
            assert_eq!(r.event, event, "{text}");
            assert_eq!(
                r.io[0],
                (IoKey::Name("report".into()), t(&format!("GT{}", c.kind)))
            );
            assert_eq!(
                io(r, "buffered"),
                (header == "+BUFF:").then_some(&u(1)),
                "{text}"
            );
            for (key, value) in &c.io {
                assert_eq!(io(r, key), Some(value), "{text}: {key}");
            }
        }
    }
}

#[test]
fn reports_without_a_block_have_no_position() {
    // GTGPS carries the last fix time but no position: it must not become the record's.
    for (kind, middle) in [
        ("PNA", vec![]),
        ("PFA", vec![]),
        ("GPS", vec!["0", "", "", "0000", "", "0", "20250101115959"]),
        (
            "INF",
            vec![
                "21",
                "89440000000000000017",
                "18",
                "0",
                "1",
                "12850",
                "",
                "4.10",
                "0",
                "1",
            ],
        ),
    ] {
        let text = frame("+RESP:", kind, "060100", "", &middle);
        let d = decode(&text);
        let r = &d.records[0];
        assert_eq!(
            (r.time_ms, r.lat, r.lon, r.valid, r.speed_kmh),
            (None, None, None, None, None),
            "{text}"
        );
        assert_eq!(io(r, "layout"), None, "{text}");
        assert_eq!(io(r, "send_time"), Some(&t(SEND)));
    }
}

/// A GTCAN middle: report type, CAN state, mask, then `fields`, then `tail`.
fn can(mask: &'static str, fields: &[&'static str], tail: &[&'static str]) -> String {
    let middle = [&["0", "1", mask][..], fields, tail].concat();
    frame("+RESP:", "CAN", "4B0102", "", &middle)
}

/// Mask bits 0–21 in emission order (bit 5, engine RPM, before bit 4, speed). Values that
/// read like coordinates on purpose (15.42, 16.80): only the layout says where the fix is.
const CAN_ALL: [&str; 22] = [
    "WDB0000000000001A",
    "2",
    "H1234567",
    "15.42",
    "1450",
    "62",
    "88",
    "M16.80",
    "P55.00",
    "4500",
    "23",
    "1234.50",
    "987.25",
    "120.00",
    "40.50",
    "7200",
    "8080",
    "0000C004",
    "03",
    "00",
    "1.50",
    "0.25",
];

#[test]
fn gtcan_reads_its_fix_where_the_mask_puts_it() {
    // All of bits 0–21 plus GNSS (30) and cell (31): the block after 25 fields.
    let text = can("C03FFFFF", &CAN_ALL, &block());
    let d = decode(&text);
    assert_eq!(d.records.len(), 1);
    let r = &d.records[0];
    assert_the_fix(r, &text);
    assert_eq!(r.event.as_deref(), Some("can"));
    for (key, value) in [
        ("can_report_mask", t("C03FFFFF")),
        ("can_vin", t("WDB0000000000001A")),
        ("can_ignition_key", u(2)),
        ("can_total_distance", t("H1234567")),
        ("can_total_fuel_used_l", f(15.42)),
        ("can_engine_rpm", u(1450)),
        ("can_speed_kmh", u(62)),
        ("can_fuel_consumption", t("M16.80")),
        ("can_fuel_level", t("P55.00")),
        ("can_engine_overspeed_hours", f(0.25)),
    ] {
        assert_eq!(io(r, key), Some(&value), "{key}");
    }
    assert_eq!(io(r, "mask_fields"), None);

    // With the expansion mask (bit 29): Ad-Blue level and 1st axle weight, so 28 fields
    // before the block.
    let mut fields = CAN_ALL.to_vec();
    fields.extend(["00000003", "P40.00", "6100"]);
    let text = can("E03FFFFF", &fields, &block());
    let r = &decode(&text).records[0];
    assert_the_fix(r, &text);
    assert_eq!(io(r, "can_expansion_mask"), Some(&t("00000003")));
    assert_eq!(io(r, "can_axle_weight_1_kg"), Some(&u(6100)));

    // GNSS part only (bit 30): a position without a cell.
    let text = can("40000014", &["H1234567", "62"], &GNSS);
    let r = &decode(&text).records[0];
    assert_eq!((r.lat, r.lon), (Some(51.5), Some(-0.1)));
    assert_eq!((io(r, "mcc"), io(r, "can_speed_kmh")), (None, Some(&u(62))));

    // Neither part: no position, whatever the fields look like.
    let text = can("00000018", &["15.42", "16.80"], &[]);
    let r = &decode(&text).records[0];
    assert_eq!((r.lat, r.lon, r.time_ms), (None, None, None));
    assert_eq!(io(r, "can_total_fuel_used_l"), Some(&f(15.42)));

    // One field more than the mask says: the appended fix is still where the mask puts it
    // (the last fields), the front is kept by number and flagged.
    let mut fields = CAN_ALL.to_vec();
    fields.push("9");
    let text = can("C03FFFFF", &fields, &block());
    let r = &decode(&text).records[0];
    assert_the_fix(r, &text);
    assert_eq!(io(r, "mask_fields"), Some(&t("mismatch")));
    assert_eq!(io(r, "can_vin"), None);
    assert_eq!(io(r, "field_7"), Some(&t("WDB0000000000001A")));

    // A field appended after the cell part (and an empty MCC) shifts every part read from
    // the end: the "fix" read there is out of range, and since the mask's fields did not
    // match their count either, none of it is taken — no speed from the azimuth, no course
    // from the altitude.
    let mut fields = CAN_ALL.to_vec();
    fields.push("9");
    let tail = [
        "1",
        "5",
        "90",
        "35.0",
        "-0.100000",
        "51.500000",
        "20250101120000",
        "",
        "0015",
        "0a1b",
        "00c2d3",
        "00",
        "7",
    ];
    let text = can("C03FFFFF", &fields, &tail);
    let r = &decode(&text).records[0];
    assert_eq!(
        (r.lat, r.lon, r.speed_kmh, r.course_deg),
        (None, None, None, None),
        "{text}"
    );
    assert_eq!(io(r, "layout"), Some(&t("mismatch")), "{text}");
}

#[test]
fn gtobd_reads_its_fix_where_the_mask_puts_it() {
    // GV500: the VIN is field 3, the device name field 4. Mask: bits 0–16 and 19, GNSS
    // (20), cell (21), mileage (22); the block after 25 fields.
    let mut middle = vec!["my car", "0", "0079FFFF"];
    middle.extend([
        "1HGCM82633A004352",
        "1",
        "13800",
        "BE3EB813",
        "2100",
        "63",
        "91",
        "Inf",
        "0",
        "0",
        "0",
        "2",
        "03000301",
        "18",
        "35",
        "62",
        "6",
        "53557",
    ]);
    middle.extend(block());
    middle.push("8123.4");
    let text = frame("+RESP:", "OBD", "1F0104", "1HGCM82633A004352", &middle);
    let d = decode(&text);
    let r = &d.records[0];
    assert_the_fix(r, &text);
    assert_eq!(r.event.as_deref(), Some("obd"));
    for (key, value) in [
        ("vin", t("1HGCM82633A004352")),
        ("device_name", t("my car")),
        ("obd_report_mask", t("0079FFFF")),
        ("obd_power_mv", u(13800)),
        ("obd_engine_rpm", u(2100)),
        ("obd_speed_kmh", u(63)),
        ("obd_fuel_consumption", t("Inf")),
        ("obd_dtcs", t("03000301")),
        ("obd_fuel_level_percent", u(62)),
        ("obd_protocol", t("6")),
        ("obd_odometer_km", u(53557)),
        ("mileage_km", f(8123.4)),
    ] {
        assert_eq!(io(r, key), Some(&value), "{key}");
    }
    // Undocumented bits after the mileage could add fields anywhere at the end: no
    // position.
    let text = text.replace("0079FFFF", "0879FFFF");
    let r = &decode(&text).records[0];
    assert_eq!((r.lat, r.lon, r.time_ms), (None, None, None));
    assert_eq!(io(r, "layout"), Some(&t("mismatch")));
}

#[test]
fn gv500_reports_carry_the_vin_before_the_device_name() {
    // GV500 (1F): field 3 is the VIN, field 4 the device name, then the GV position layout.
    let middle = [&["van 7"][..], &around(&["", "10", "1"], &["2000.5"])].concat();
    let text = frame("+RESP:", "SOS", "1F0104", "1HGCM82633A004352", &middle);
    let r = &decode(&text).records[0];
    assert_the_fix(r, &text);
    assert_eq!(io(r, "vin"), Some(&t("1HGCM82633A004352")));
    assert_eq!(io(r, "device_name"), Some(&t("van 7")));
    assert_eq!(io(r, "report_id_type"), Some(&t("10")));
    assert_eq!(io(r, "mileage_km"), Some(&f(2000.5)));
}

#[test]
fn an_unknown_type_keeps_no_position_even_with_a_block_inside() {
    let text = frame(
        "+RESP:",
        "XYZ",
        "060100",
        "",
        &around(&["", "10", "1"], &["2000.5"]),
    );
    let r = &decode(&text).records[0];
    assert_eq!((r.lat, r.lon, r.time_ms, r.valid), (None, None, None, None));
    assert_eq!(r.event.as_deref(), Some("xyz"));
    assert_eq!(io(r, "layout"), Some(&t("unknown")));
    assert_eq!(io(r, "report"), Some(&t("GTXYZ")));
    assert_eq!(io(r, "field_12"), Some(&t("51.500000")));
}

#[test]
fn a_gtfri_with_one_more_field_is_never_refused() {
    // An appended field (newer firmware, fact sheet §5): the block is where the layout
    // says, the extra field kept by number.
    let middle = around(&["", "10", "1"], &["2000.5", "3"]);
    let text = frame("+RESP:", "FRI", "420102", "", &middle);
    let r = &decode(&text).records[0];
    assert_the_fix(r, &text);
    assert_eq!(io(r, "field_20"), Some(&t("3")));
    // A field inserted before the Number: the layout no longer fits; the record is kept,
    // without a position, with every field.
    let middle = around(&["", "7", "10", "1"], &["2000.5"]);
    let text = frame("+RESP:", "FRI", "420102", "", &middle);
    let d = decode(&text);
    let r = &d.records[0];
    assert_eq!((r.lat, r.lon, r.time_ms), (None, None, None));
    assert_eq!(io(r, "layout"), Some(&t("mismatch")));
    assert_eq!(io(r, "field_13"), Some(&t("51.500000")));
}

#[test]
fn values_outside_their_ranges_are_never_passed_as_good() {
    let with = |index: usize, value: &'static str| {
        let mut b = block();
        b[index] = value;
        frame(
            "+RESP:",
            "RTL",
            "1A0102",
            "",
            &[&["0", "0", "1"][..], &b, &["80"]].concat(),
        )
    };
    let out_of_range = |r: &Record| match io(r, "range_error") {
        Some(IoValue::Text(why)) => why.clone(),
        other => panic!("no out_of_range: {other:?}"),
    };

    let r = &decode(&with(2, "636")).records[0];
    assert_eq!(
        (r.course_deg, r.valid, r.lat),
        (None, Some(false), Some(51.5))
    );
    assert_eq!(out_of_range(r), "azimuth 636 above 360");

    let r = &decode(&with(5, "91.000000")).records[0];
    assert_eq!((r.lat, r.lon, r.valid), (None, None, Some(false)));
    assert!(out_of_range(r).contains("latitude 91"));

    let r = &decode(&with(4, "-180.500000")).records[0];
    assert_eq!((r.lat, r.lon, r.valid), (None, None, Some(false)));

    let r = &decode(&with(1, "1500.0")).records[0];
    assert_eq!(
        (r.speed_kmh, r.valid, r.course_deg),
        (None, Some(false), Some(271.0))
    );
    assert_eq!(out_of_range(r), "speed 1500 km/h above 999.9");

    // A fix time more than a day after the gateway's clock: no time, the text kept.
    let r = &decode(&with(6, "20991231000000")).records[0];
    assert_eq!((r.time_ms, r.valid), (None, Some(false)));
    assert_eq!(io(r, "gps_utc_time"), Some(&t("20991231000000")));
    assert!(out_of_range(r).contains("20991231000000"));

    // Within a day ahead (a gateway clock a little behind) is accepted.
    let r = &decode(&with(6, "20251009220000")).records[0];
    assert_eq!((r.time_ms.is_some(), r.valid), (true, Some(true)));
}
