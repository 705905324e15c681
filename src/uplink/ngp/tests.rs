//! The NGP output's unit tests: whole messages, each field's rule, the standard attribute
//! and event mappings, decoded captures, and a property test over any record.

use super::attributes::{predefined_target, target, Target};
use super::events::event_id;
use super::*;
use firmware_protocols::meaning::Standard;
use firmware_protocols::{Attribute, StandardEvent};
use firmware_protocols::{IoKey, IoValue, Protocol};
use proptest::prelude::*;
use serde_json::json;

const IMEI: &str = "352093081234567";
/// 2025-03-14T08:21:05.250Z
const T: i64 = 1_741_940_465_250;

fn record(protocol: Protocol) -> Record {
    let mut r = Record::new(IMEI, protocol, T + 1_000);
    r.time_ms = Some(T);
    r
}

fn positioned(protocol: Protocol) -> Record {
    let mut r = record(protocol);
    r.lat = Some(52.520008);
    r.lon = Some(13.404954);
    r
}

fn ngp(r: &Record) -> Value {
    let bytes = encode(r).expect("valid device id").expect("record is sent");
    serde_json::from_slice(&bytes).expect("valid JSON")
}

fn location_of(r: &Record) -> Value {
    ngp(r).get("location").cloned().unwrap_or(Value::Null)
}

#[test]
fn full_teltonika_record_becomes_the_expected_message() {
    let mut r = positioned(Protocol::Teltonika);
    r.valid = Some(true);
    r.altitude_m = Some(38.0);
    r.speed_kmh = Some(47.0);
    r.course_deg = Some(274.0);
    r.satellites = Some(11);
    r.hdop = Some(0.8);
    r.event = Some("io:239".into());
    r.raw = Some("08aabb".into());
    r.io = vec![
        (IoKey::Name("priority".into()), IoValue::U64(1)),
        (IoKey::Id(239), IoValue::U64(1)),
        (IoKey::Id(240), IoValue::U64(1)),
        (IoKey::Id(1), IoValue::U64(1)),
        (IoKey::Id(2), IoValue::U64(0)),
        (IoKey::Id(3), IoValue::U64(1)),
        (IoKey::Id(179), IoValue::U64(0)),
        (IoKey::Id(66), IoValue::U64(13_820)),
        (IoKey::Id(67), IoValue::U64(4_050)),
        (IoKey::Id(113), IoValue::U64(97)),
        (IoKey::Id(16), IoValue::U64(18_342_700)),
        (IoKey::Id(9), IoValue::U64(9)),
        (IoKey::Id(181), IoValue::U64(14)),
        (IoKey::Id(182), IoValue::U64(8)),
        (IoKey::Id(78), IoValue::U64(0x01A2_B3C4_D5E6_F701)),
        (IoKey::Id(21), IoValue::U64(4)),
        (IoKey::Id(256), IoValue::Bytes(b"WVWZZZ".to_vec())),
    ];
    assert_eq!(
        ngp(&r),
        json!({
            "message_time": "2025-03-14T08:21:05Z",
            "device_id": IMEI,
            "version": "1.0",
            "location": {
                "gnss_time": "2025-03-14T08:21:05Z",
                "fix_type": "HAS_FIX",
                "latitude": 52.520008,
                "longitude": 13.404954,
                "altitude": 38.0,
                "satellites": 11,
                "hdop": 0.8,
                "pdop": 1.4,
                "speed": 47.0,
                "heading": 274
            },
            "event_id": 605,
            "is_moving": true,
            "input_status": 0b101,
            "output_status": 0,
            "board_voltage": 13.82,
            "battery_voltage": 4.05,
            "battery_level": 97,
            "hardware_mileage": 18342.7,
            "analog_1": 0.009,
            "hardware_key": "01A2B3C4D5E6F701",
            "avl_io_239": 1,
            "avl_io_21": 4,
            "avl_io_256": "5756575a5a5a",
            "custom_teltonika_priority": 1
        })
    );
    assert_eq!(topic(&r), format!("ngp/{IMEI}"));
}

#[test]
fn smallest_stored_message_matches_the_sheets_example() {
    let mut r = positioned(Protocol::Teltonika);
    r.satellites = Some(7);
    assert_eq!(
        ngp(&r),
        json!({
            "message_time": "2025-03-14T08:21:05Z",
            "device_id": IMEI,
            "version": "1.0",
            "location": {
                "gnss_time": "2025-03-14T08:21:05Z",
                "latitude": 52.520008,
                "longitude": 13.404954,
                "satellites": 7
            }
        })
    );
}

#[test]
fn missing_values_are_left_out_not_written_as_zero() {
    let r = positioned(Protocol::Wialon);
    let location = location_of(&r);
    let keys: Vec<&str> = location
        .as_object()
        .expect("location")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "{location}");
    for absent in [
        "altitude",
        "speed",
        "heading",
        "satellites",
        "hdop",
        "pdop",
        "fix_type",
    ] {
        assert!(location.get(absent).is_none(), "{absent} in {location}");
    }
    let message = ngp(&r);
    for absent in ["event_id", "custom_event", "input_status", "mobile_cells"] {
        assert!(message.get(absent).is_none(), "{absent} in {message}");
    }
}

#[test]
fn heading_is_a_whole_degree_from_1_to_360() {
    let cases = [
        (0.0, Some(360)),
        (360.0, Some(360)),
        (359.6, Some(360)),
        (359.5, Some(360)),
        (359.4, Some(359)),
        (0.4, Some(360)),
        (0.5, Some(1)),
        (1.0, Some(1)),
        (180.0, Some(180)),
        (274.2, Some(274)),
        (-0.0, Some(360)),
        (-90.0, Some(270)),
        (-1e-300, Some(360)),
        (450.0, Some(90)),
        (720.5, Some(1)),
        (f64::NAN, None),
        (f64::INFINITY, None),
        (f64::NEG_INFINITY, None),
    ];
    for (course, expected) in cases {
        assert_eq!(heading(course), expected, "course {course}");
        let mut r = positioned(Protocol::Teltonika);
        r.course_deg = Some(course);
        assert_eq!(
            location_of(&r).get("heading").and_then(Value::as_u64),
            expected.map(u64::from),
            "course {course}"
        );
    }
}

#[test]
fn latitude_and_longitude_edges_decide_whether_there_is_a_location() {
    let inside = [(90.0, 180.0), (-90.0, -180.0), (90.0, -180.0), (0.0, 1e-9)];
    for (lat, lon) in inside {
        let mut r = record(Protocol::Teltonika);
        (r.lat, r.lon) = (Some(lat), Some(lon));
        let location = location_of(&r);
        assert_eq!(location["latitude"], json!(lat), "{lat},{lon}");
        assert_eq!(location["longitude"], json!(lon), "{lat},{lon}");
    }
    let outside = [
        (Some(90.000001), Some(10.0)),
        (Some(-90.000001), Some(10.0)),
        (Some(10.0), Some(180.000001)),
        (Some(10.0), Some(-180.000001)),
        (Some(f64::NAN), Some(10.0)),
        (Some(10.0), Some(f64::INFINITY)),
        (Some(0.0), Some(0.0)),
        (Some(-0.0), Some(0.0)),
        (None, Some(10.0)),
        (Some(10.0), None),
    ];
    for (lat, lon) in outside {
        let mut r = record(Protocol::Teltonika);
        (r.lat, r.lon) = (lat, lon);
        r.speed_kmh = Some(10.0);
        r.satellites = Some(9);
        let message = ngp(&r);
        assert!(
            message.get("location").is_none(),
            "{lat:?},{lon:?}: {message}"
        );
    }
}

#[test]
fn altitude_speed_satellites_and_dop_follow_their_ranges() {
    let with = |f: &dyn Fn(&mut Record)| {
        let mut r = positioned(Protocol::Teltonika);
        f(&mut r);
        location_of(&r)
    };
    assert_eq!(
        with(&|r| r.altitude_m = Some(-1000.0))["altitude"],
        json!(-1000.0)
    );
    assert_eq!(
        with(&|r| r.altitude_m = Some(10_000.0))["altitude"],
        json!(10_000.0)
    );
    assert!(with(&|r| r.altitude_m = Some(-1000.1))
        .get("altitude")
        .is_none());
    assert!(with(&|r| r.altitude_m = Some(10_000.1))
        .get("altitude")
        .is_none());
    assert!(with(&|r| r.altitude_m = Some(f64::NAN))
        .get("altitude")
        .is_none());

    assert_eq!(with(&|r| r.speed_kmh = Some(0.0))["speed"], json!(0.0));
    let negative_zero = with(&|r| r.speed_kmh = Some(-0.0))["speed"].clone();
    assert_eq!(
        negative_zero.as_f64().map(f64::is_sign_negative),
        Some(false)
    );
    assert!(with(&|r| r.speed_kmh = Some(-0.1)).get("speed").is_none());
    assert!(with(&|r| r.speed_kmh = Some(f64::INFINITY))
        .get("speed")
        .is_none());

    assert_eq!(with(&|r| r.satellites = Some(0))["satellites"], json!(0));
    assert_eq!(with(&|r| r.satellites = Some(64))["satellites"], json!(64));
    assert_eq!(with(&|r| r.satellites = Some(65))["satellites"], json!(64));
    assert_eq!(with(&|r| r.satellites = Some(255))["satellites"], json!(64));

    assert_eq!(with(&|r| r.hdop = Some(0.0))["hdop"], json!(0.0));
    assert!(with(&|r| r.hdop = Some(-1.0)).get("hdop").is_none());
    assert!(with(&|r| r.hdop = Some(f64::NAN)).get("hdop").is_none());
}

#[test]
fn fix_type_follows_valid() {
    let fix = |valid| {
        let mut r = positioned(Protocol::Gt06);
        r.valid = valid;
        location_of(&r).get("fix_type").cloned()
    };
    assert_eq!(fix(Some(true)), Some(json!("HAS_FIX")));
    assert_eq!(fix(Some(false)), Some(json!("LAST_KNOWN_POSITION")));
    assert_eq!(fix(None), None);
}

#[test]
fn records_without_a_position_are_sent_without_location() {
    // A GT06 SOS from a device with a clock but no fix yet (0/0): the SOS must arrive.
    let mut r = record(Protocol::Gt06);
    (r.lat, r.lon) = (Some(0.0), Some(0.0));
    r.valid = Some(false);
    r.speed_kmh = Some(0.0);
    r.satellites = Some(0);
    r.event = Some("sos".into());
    r.io = vec![(IoKey::Name("voltage_level".into()), IoValue::U64(4))];
    assert_eq!(
        ngp(&r),
        json!({
            "message_time": "2025-03-14T08:21:05Z",
            "device_id": IMEI,
            "version": "1.0",
            "event_id": 202,
            "custom_gt06_voltage_level": 4
        })
    );
}

#[test]
fn tracker_records_without_device_time_are_skipped() {
    for protocol in [
        Protocol::Teltonika,
        Protocol::TeltonikaUdp,
        Protocol::Gt06,
        Protocol::Queclink,
        Protocol::Wialon,
    ] {
        let mut r = positioned(protocol);
        r.time_ms = None;
        r.event = Some("heartbeat".into());
        assert!(matches!(encode(&r), Ok(None)), "{protocol:?}");
        // A device time no ISO 8601 year can hold is no device time either.
        r.time_ms = Some(i64::MAX);
        assert!(matches!(encode(&r), Ok(None)), "{protocol:?}");
    }
}

#[test]
fn sensor_records_without_device_time_use_the_receive_time() {
    for protocol in [Protocol::Jsonl, Protocol::Nmea] {
        let mut r = positioned(protocol);
        r.time_ms = None;
        r.received_at_ms = 1_741_940_466_999;
        let message = ngp(&r);
        assert_eq!(message["message_time"], "2025-03-14T08:21:06Z");
        // The receive time is not when the fix was taken.
        assert!(message["location"].get("gnss_time").is_none(), "{message}");
    }
}

#[test]
fn message_time_is_whole_seconds_utc() {
    for (ms, text) in [
        (0, "1970-01-01T00:00:00Z"),
        (999, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (MAX_TIME_MS, "9999-12-31T23:59:59Z"),
        (MIN_TIME_MS, "0000-01-01T00:00:00Z"),
    ] {
        let mut r = record(Protocol::Teltonika);
        r.time_ms = Some(ms);
        assert_eq!(ngp(&r)["message_time"], text);
    }
}

#[test]
fn device_ids_navixy_cannot_register_are_refused_and_never_make_wildcard_topics() {
    let refused = [
        "",
        "12345",
        "a/b/c/d",
        "imei+123456",
        "imei#123456",
        "imei_123456",
        "imei 123456",
        "ímei123456",
        "imei\u{0}123456",
        "123456789012345678901234567890123",
    ];
    for id in refused {
        let r = Record::new(id, Protocol::Jsonl, T);
        let err = encode(&r).expect_err(id);
        assert!(matches!(err, NgpError::DeviceId { .. }), "{id:?}: {err}");
        assert!(err.to_string().contains("6 to 32"), "{err}");
        let t = topic(&r);
        let level = t.strip_prefix("ngp/").expect("prefix");
        assert!(
            level
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '%'),
            "{id:?} → {t}"
        );
    }
    assert_eq!(
        topic(&Record::new("a/b+#", Protocol::Jsonl, T)),
        "ngp/a%2Fb%2B%23"
    );
    assert_eq!(
        topic(&Record::new("a%2Fb", Protocol::Jsonl, T)),
        "ngp/a%252Fb"
    );
    assert_eq!(
        topic(&Record::new("ímei", Protocol::Jsonl, T)),
        "ngp/%C3%ADmei"
    );
    let long = Record::new("x".repeat(100_000), Protocol::Jsonl, T);
    assert_eq!(topic(&long).len(), 4 + 64);
    let err = encode(&long).expect_err("too long");
    assert!(err.to_string().len() < 300, "{err}");

    for accepted in ["123456", "TRUCK-0042", "abcdefghijklmnopqrstuvwxyz-12345"] {
        let r = record_with_id(accepted);
        assert_eq!(ngp(&r)["device_id"], accepted);
        assert_eq!(topic(&r), format!("ngp/{accepted}"));
    }
}

fn record_with_id(id: &str) -> Record {
    let mut r = Record::new(id, Protocol::Jsonl, T);
    r.time_ms = Some(T);
    r
}

/// The (`event_id`, `custom_event`) a positioned record with `event` and `io` gets.
fn event_of(
    protocol: Protocol,
    event: &str,
    io: Vec<(IoKey, IoValue)>,
) -> (Option<Value>, Option<Value>) {
    let mut r = positioned(protocol);
    r.event = Some(event.into());
    r.io = io;
    let m = ngp(&r);
    (m.get("event_id").cloned(), m.get("custom_event").cloned())
}

/// What [`event_of`] returns for a standard event id.
fn id(n: u32) -> (Option<Value>, Option<Value>) {
    (Some(json!(n)), None)
}

/// What [`event_of`] returns for an event sent as text.
fn text(t: &str) -> (Option<Value>, Option<Value>) {
    (None, Some(json!(t)))
}

#[test]
fn events_map_to_standard_ids_or_custom_text() {
    let ign = |v| vec![(IoKey::Id(239), IoValue::U64(v))];
    let mov = |v| vec![(IoKey::Id(240), IoValue::U64(v))];
    assert_eq!(event_of(Protocol::Teltonika, "io:239", ign(1)), id(605));
    assert_eq!(event_of(Protocol::Teltonika, "io:239", ign(0)), id(604));
    assert_eq!(
        event_of(Protocol::Teltonika, "io:239", vec![]),
        text("io:239")
    );
    assert_eq!(event_of(Protocol::TeltonikaUdp, "io:240", mov(1)), id(406));
    assert_eq!(event_of(Protocol::Teltonika, "io:240", mov(0)), id(407));
    assert_eq!(event_of(Protocol::Teltonika, "io:1", vec![]), id(501));
    assert_eq!(event_of(Protocol::Teltonika, "io:3", vec![]), id(503));
    assert_eq!(event_of(Protocol::Teltonika, "io:180", vec![]), id(552));
    assert_eq!(
        event_of(Protocol::Teltonika, "io:21", vec![]),
        text("io:21")
    );
    assert_eq!(event_of(Protocol::Gt06, "sos", vec![]), id(202));
    assert_eq!(event_of(Protocol::Gt06, "power_cut", vec![]), id(2));
    assert_eq!(event_of(Protocol::Gt06, "vibration", vec![]), id(113));
    assert_eq!(event_of(Protocol::Gt06, "over_speed", vec![]), id(224));
    assert_eq!(
        event_of(Protocol::Gt06, "alarm:0x2a", vec![]),
        text("alarm:0x2a")
    );
    assert_eq!(event_of(Protocol::Queclink, "ign", vec![]), id(605));
    assert_eq!(event_of(Protocol::Queclink, "spd", vec![]), id(224));
    assert_eq!(event_of(Protocol::Queclink, "geo", vec![]), text("geo"));
    assert_eq!(event_of(Protocol::Jsonl, "ignition_on", vec![]), id(605));
    assert_eq!(event_of(Protocol::Jsonl, "ign", vec![]), text("ign"));
    assert_eq!(
        event_of(Protocol::Wialon, "driver_message", vec![]),
        text("driver_message")
    );
    let huge = "e".repeat(MAX_STRING_BYTES + 1);
    assert_eq!(event_of(Protocol::Jsonl, &huge, vec![]), (None, None));
}

#[test]
fn gt06_cell_and_acc_go_to_mobile_cells_and_input_bit_0() {
    let mut r = positioned(Protocol::Gt06);
    r.io = [
        ("mcc", 262),
        ("mnc", 1),
        ("lac", 4711),
        ("cell_id", 20735),
        ("acc", 1),
    ]
    .into_iter()
    .map(|(k, v)| (IoKey::Name(k.into()), IoValue::U64(v)))
    .collect();
    let m = ngp(&r);
    assert_eq!(
        m["mobile_cells"],
        json!([{"mcc": 262, "mnc": 1, "lac": 4711, "cell_id": 20735}])
    );
    assert_eq!(m["input_status"], 1);

    // Without all four members there is no cell entry.
    r.io.remove(1);
    let m = ngp(&r);
    assert!(m.get("mobile_cells").is_none(), "{m}");
}

#[test]
fn queclink_wialon_and_jsonl_io_reach_their_ngp_attributes() {
    let name = |k: &str| IoKey::Name(k.into());
    let mut q = positioned(Protocol::Queclink);
    q.io = vec![
        (name("report"), IoValue::Text("GTFRI".into())),
        (name("external_power_mv"), IoValue::U64(12_430)),
        (name("mileage_km"), IoValue::F64(1234.5)),
        (name("battery_percent"), IoValue::U64(101)),
    ];
    let m = ngp(&q);
    assert_eq!(m["board_voltage"], json!(12.43));
    assert_eq!(m["hardware_mileage"], json!(1234.5));
    assert!(m.get("battery_level").is_none(), "101 % is out of range");
    assert_eq!(m["custom_queclink_battery_percent"], 101);
    assert_eq!(m["custom_queclink_report"], "GTFRI");

    let mut w = positioned(Protocol::Wialon);
    w.io = vec![
        (name("inputs"), IoValue::U64(0b1001)),
        (name("outputs"), IoValue::U64(2)),
        (name("adc1"), IoValue::F64(14.77)),
        (name("adc17"), IoValue::F64(1.0)),
        (name("ibutton"), IoValue::Text("01A2B3".into())),
        (name("temperature_2"), IoValue::F64(-4.5)),
        (name("pwr_ext"), IoValue::F64(f64::NAN)),
    ];
    let m = ngp(&w);
    assert_eq!(m["input_status"], 9);
    assert_eq!(m["output_status"], 2);
    assert_eq!(m["analog_1"], json!(14.77));
    assert_eq!(m["custom_wialon_adc17"], json!(1.0));
    assert_eq!(m["hardware_key"], "01A2B3");
    assert_eq!(m["temperature_2"], json!(-4.5));
    assert!(
        m.get("custom_wialon_pwr_ext").is_none(),
        "NaN has no JSON form"
    );

    let mut j = positioned(Protocol::Jsonl);
    j.io = vec![
        (name("is_moving"), IoValue::U64(0)),
        (name("battery_level"), IoValue::I64(55)),
        (name("fuel_level_16"), IoValue::I64(60)),
        (name("fuel_level_17"), IoValue::I64(61)),
        (name("analog_01"), IoValue::F64(1.5)),
        (name("impulse_counter_3"), IoValue::F64(12.0)),
        (name("impulse_counter_4"), IoValue::F64(12.5)),
        (name("vin"), IoValue::Text("WVWZZZ1JZXW000001".into())),
        (name("door"), IoValue::Text("open".into())),
        (
            name("blob"),
            IoValue::Text("b".repeat(MAX_STRING_BYTES + 1)),
        ),
    ];
    let m = ngp(&j);
    assert_eq!(m["is_moving"], false);
    assert_eq!(m["battery_level"], 55);
    assert_eq!(m["fuel_level_16"], json!(60.0));
    assert_eq!(m["custom_jsonl_fuel_level_17"], 61);
    assert_eq!(m["custom_jsonl_analog_01"], json!(1.5));
    assert_eq!(m["impulse_counter_3"], 12);
    assert_eq!(m["custom_jsonl_impulse_counter_4"], json!(12.5));
    assert_eq!(m["vin"], "WVWZZZ1JZXW000001");
    assert_eq!(m["custom_jsonl_door"], "open");
    assert!(m.get("custom_jsonl_blob").is_none(), "over 10 KB");
}

#[test]
fn teltonika_values_that_do_not_fit_stay_custom() {
    let mut r = positioned(Protocol::Teltonika);
    r.io = vec![
        (IoKey::Id(78), IoValue::U64(0)),
        (IoKey::Id(113), IoValue::U64(250)),
        (IoKey::Id(240), IoValue::U64(2)),
    ];
    let m = ngp(&r);
    for absent in ["hardware_key", "battery_level", "is_moving"] {
        assert!(m.get(absent).is_none(), "{absent} in {m}");
    }
    assert_eq!(m["avl_io_78"], 0);
    assert_eq!(m["avl_io_113"], 250);
    assert_eq!(m["avl_io_240"], 2);
}

/// Every record the named protocol's real decoder makes of `input`.
fn decode_all(protocol: &str, input: &[u8]) -> Vec<Record> {
    use firmware_protocols::registry::{lookup, Transport};
    let spec = lookup(protocol).expect("registered protocol");
    let Transport::Stream(make) = spec.transport else {
        panic!("{protocol} is not a stream protocol");
    };
    let mut decoder = make(&firmware_protocols::DecoderOptions::new(16 * 1024));
    let (mut rest, mut records) = (input, Vec::new());
    while let Some(frame) = decoder.decode(rest, T).expect("capture decodes") {
        assert!(frame.problem.is_none(), "{:?}", frame.problem);
        rest = &rest[frame.consumed..];
        records.extend(frame.records);
    }
    assert!(rest.is_empty(), "{} bytes left", rest.len());
    records
}

#[test]
fn decoded_captures_from_the_fact_sheets_become_valid_messages() {
    // README's Teltonika capture: IMEI login, one Codec 8 record without a fix.
    let teltonika = hex::decode(concat!(
        "000F333536333037303432343431303133",
        "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503",
        "010101425E0F01F10000601A014E0000000000000000010000C7CF"
    ))
    .expect("hex");
    let records = decode_all("teltonika", &teltonika);
    assert_eq!(records.len(), 1);
    assert_eq!(
        ngp(&records[0]),
        json!({
            "message_time": "2019-06-10T10:04:46Z",
            "device_id": "356307042441013",
            "version": "1.0",
            "event_id": 501,
            "input_status": 1,
            "board_voltage": 24.079,
            "avl_io_21": 3,
            "avl_io_241": 24602,
            "avl_io_78": 0,
            "custom_teltonika_priority": 1
        })
    );

    // Queclink's GL300 sample: one fix, with its serving cell.
    let queclink = b"+RESP:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,\
        31.222073,20090214013254,0460,0000,18d8,6141,00,,20090214093254,11F0$";
    let records = decode_all("queclink", queclink);
    assert_eq!(records.len(), 1);
    let m = ngp(&records[0]);
    assert_eq!(m["message_time"], "2009-02-14T01:32:54Z");
    assert_eq!(
        m["location"],
        json!({
            "gnss_time": "2009-02-14T01:32:54Z",
            "fix_type": "HAS_FIX",
            "latitude": 31.222073,
            "longitude": 121.354335,
            "altitude": 70.0,
            "speed": 4.3,
            "heading": 92,
            "hdop": 1.0
        })
    );
    assert_eq!(
        m["mobile_cells"],
        json!([{"mcc": 460, "mnc": 0, "lac": 0x18d8, "cell_id": 0x6141}])
    );

    // Wialon's extended-data sample after a login.
    let wialon = b"#L#352093081234567;NA\r\n#D#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;\
        0.0;0;0;14.77,0.02,3.6;NA;count1:1:564,fuel:2:45.8,hw:3:V4.5\r\n";
    let records = decode_all("wialon", wialon);
    assert_eq!(records.len(), 1);
    let m = ngp(&records[0]);
    assert_eq!(m["location"]["satellites"], 4);
    assert_eq!(m["location"]["heading"], 2);
    assert_eq!(m["input_status"], 0);
    assert_eq!(m["output_status"], 0);
    assert_eq!(m["analog_1"], json!(14.77));
    assert_eq!(m["analog_3"], json!(3.6));
    assert_eq!(m["custom_wialon_count1"], 564);
    assert_eq!(m["custom_wialon_fuel"], json!(45.8));
    assert_eq!(m["custom_wialon_hw"], "V4.5");

    // GT06 login + heartbeat: the heartbeat has no device time and is skipped.
    let gt06 = hex::decode(concat!(
        "78780D01012345678901234500018CDD0D0A",
        "78780A134004040001000FDCEE0D0A"
    ))
    .expect("hex");
    let records = decode_all("gt06", &gt06);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event.as_deref(), Some("heartbeat"));
    assert!(matches!(encode(&records[0]), Ok(None)));
}

/// Every rule a sent message must satisfy, checked on the parsed JSON.
fn check_message(r: &Record, bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))?;
    let m = v.as_object().ok_or("not an object")?;
    let time = m["message_time"].as_str().ok_or("message_time")?;
    let shape = time.len() == 20
        && time.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return Err(format!("message_time {time}"));
    }
    if m["device_id"] != r.device_id.as_str() || m["version"] != VERSION {
        return Err("device_id / version".into());
    }
    if let Some(loc) = m.get("location") {
        let loc = loc.as_object().ok_or("location")?;
        let f = |k: &str| {
            loc.get(k)
                .map(|v| v.as_f64().ok_or(format!("{k} not a number")))
        };
        let lat = f("latitude").ok_or("no latitude")??;
        let lon = f("longitude").ok_or("no longitude")??;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("position {lat},{lon}"));
        }
        if lat == 0.0 && lon == 0.0 {
            return Err("0/0".into());
        }
        if let Some(alt) = f("altitude").transpose()? {
            if !ALTITUDE_RANGE_M.contains(&alt) {
                return Err(format!("altitude {alt}"));
            }
        }
        for k in ["speed", "hdop", "pdop"] {
            if let Some(x) = f(k).transpose()? {
                if x < 0.0 || x.is_sign_negative() {
                    return Err(format!("{k} {x}"));
                }
            }
        }
        if let Some(h) = loc.get("heading") {
            let h = h.as_u64().ok_or("heading not an integer")?;
            if !(1..=360).contains(&h) {
                return Err(format!("heading {h}"));
            }
        }
        if let Some(s) = loc.get("satellites") {
            let s = s.as_u64().ok_or("satellites not an integer")?;
            if s > 64 {
                return Err(format!("satellites {s}"));
            }
        }
        if let Some(fix) = loc.get("fix_type") {
            if fix != "HAS_FIX" && fix != "LAST_KNOWN_POSITION" {
                return Err(format!("fix_type {fix}"));
            }
        }
    }
    if let Some(id) = m.get("event_id") {
        let id = id.as_u64().ok_or("event_id not an integer")?;
        if !(1..10_000).contains(&id) {
            return Err(format!("event_id {id}"));
        }
    }
    if let Some(level) = m.get("battery_level") {
        if level.as_u64().is_none_or(|l| l > 100) {
            return Err(format!("battery_level {level}"));
        }
    }
    for k in ["input_status", "output_status"] {
        if m.get(k).is_some_and(|v| !v.is_u64()) {
            return Err(k.to_string());
        }
    }
    if m.get("is_moving").is_some_and(|v| !v.is_boolean()) {
        return Err("is_moving".into());
    }
    fn strings_fit(v: &Value) -> bool {
        match v {
            Value::String(s) => s.len() <= MAX_STRING_BYTES,
            Value::Array(a) => a.iter().all(strings_fit),
            Value::Object(o) => o.values().all(strings_fit),
            _ => true,
        }
    }
    if !strings_fit(&v) {
        return Err("string over 10 KB".into());
    }
    for (k, _) in m {
        let known = [
            "message_time",
            "device_id",
            "version",
            "location",
            "event_id",
            "custom_event",
            "mobile_cells",
            "input_status",
            "output_status",
        ];
        let ok = known.contains(&k.as_str())
            || k.starts_with("custom_")
            || k.starts_with("avl_io_")
            || predefined_target(k).is_some();
        if !ok {
            return Err(format!("unexpected attribute {k}"));
        }
    }
    Ok(())
}

fn any_f64() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        prop::num::f64::ANY.prop_map(Some),
        (-400.0..400.0f64).prop_map(Some),
        prop::sample::select(vec![0.0, -0.0, 90.0, -90.0, 180.0, 360.0, 1e308]).prop_map(Some),
    ]
}

fn any_io_value() -> impl Strategy<Value = IoValue> {
    prop_oneof![
        any::<u64>().prop_map(IoValue::U64),
        (0u64..300).prop_map(IoValue::U64),
        any::<i64>().prop_map(IoValue::I64),
        prop::num::f64::ANY.prop_map(IoValue::F64),
        ".{0,20}".prop_map(IoValue::Text),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(IoValue::Bytes),
        Just(IoValue::Text("x".repeat(MAX_STRING_BYTES + 1))),
    ]
}

fn any_io_key() -> impl Strategy<Value = IoKey> {
    let names = vec![
        "acc",
        "mcc",
        "mnc",
        "lac",
        "cell_id",
        "inputs",
        "outputs",
        "adc1",
        "adc16",
        "ibutton",
        "battery_percent",
        "external_power_mv",
        "mileage_km",
        "is_moving",
        "battery_level",
        "temperature_16",
        "analog_0",
        "impulse_counter_1",
        "vin",
        "hardware_key",
        "input_status",
        "version",
        "location",
        "device_id",
    ];
    prop_oneof![
        prop::sample::select(vec![
            1u32, 2, 3, 6, 9, 16, 66, 67, 78, 113, 179, 180, 181, 182, 239, 240
        ])
        .prop_map(IoKey::Id),
        any::<u32>().prop_map(IoKey::Id),
        prop::sample::select(names).prop_map(|n| IoKey::Name(n.to_owned())),
        ".{0,12}".prop_map(IoKey::Name),
    ]
}

fn any_record() -> impl Strategy<Value = Record> {
    let protocol = prop::sample::select(vec![
        Protocol::Teltonika,
        Protocol::TeltonikaUdp,
        Protocol::Gt06,
        Protocol::Queclink,
        Protocol::Wialon,
        Protocol::Nmea,
        Protocol::Jsonl,
    ]);
    let device_id = prop_oneof!["[A-Za-z0-9-]{6,32}", ".{0,40}"];
    let time = prop_oneof![
        Just(None),
        any::<i64>().prop_map(Some),
        (0i64..4_102_444_800_000).prop_map(Some),
    ];
    let event = prop_oneof![
        Just(None),
        prop::sample::select(vec!["io:239", "io:1", "sos", "spd", "ignition_on", "x"])
            .prop_map(|e| Some(e.to_owned())),
        ".{0,20}".prop_map(Some),
    ];
    let io = prop::collection::vec((any_io_key(), any_io_value()), 0..12);
    (
        (
            protocol,
            device_id,
            any::<i64>(),
            time,
            any::<Option<bool>>(),
        ),
        (any_f64(), any_f64(), any_f64(), any_f64(), any_f64()),
        (any::<Option<u8>>(), any_f64(), event, io),
    )
        .prop_map(
            |(
                (protocol, id, received, time, valid),
                (lat, lon, alt, speed, course),
                (sats, hdop, event, io),
            )| {
                let mut r = Record::new(id, protocol, received);
                r.time_ms = time;
                r.valid = valid;
                (r.lat, r.lon, r.altitude_m, r.speed_kmh, r.course_deg) =
                    (lat, lon, alt, speed, course);
                r.satellites = sats;
                r.hdop = hdop;
                r.event = event;
                r.io = io;
                r
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_record_gives_a_valid_message_or_a_documented_refusal(r in any_record()) {
        let t = topic(&r);
        let level = t.strip_prefix("ngp/").expect("prefix");
        prop_assert!(!level.contains(['+', '#', '/', '\0']), "{t}");
        prop_assert!(t.len() <= 4 + 3 * 4 * 64);
        match encode(&r) {
            Ok(Some(bytes)) => {
                prop_assert!(check_device_id(&r.device_id).is_ok());
                prop_assert_eq!(level, r.device_id.as_str());
                if let Err(e) = check_message(&r, &bytes) {
                    prop_assert!(false, "{}", e);
                }
            }
            Ok(None) => {
                prop_assert!(r.time_ms.and_then(timestamp).is_none());
                prop_assert!(!matches!(r.protocol, Protocol::Jsonl | Protocol::Nmea)
                    || timestamp(r.received_at_ms).is_none());
            }
            Err(NgpError::DeviceId { .. }) => {
                prop_assert!(check_device_id(&r.device_id).is_err());
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}

#[test]
fn every_standard_attribute_has_its_ngp_place() {
    let mv = |a| Standard::new(a, 1000.0);
    let cases = [
        (Standard::unit(Attribute::Ignition), None),
        (
            Standard::unit(Attribute::Movement),
            Some(Target::Boolean("is_moving")),
        ),
        (
            mv(Attribute::ExternalVoltage),
            Some(Target::Float("board_voltage", 1000.0)),
        ),
        (
            mv(Attribute::BatteryVoltage),
            Some(Target::Float("battery_voltage", 1000.0)),
        ),
        (
            Standard::unit(Attribute::BatteryLevel),
            Some(Target::Percent("battery_level")),
        ),
        (
            mv(Attribute::Odometer),
            Some(Target::Float("hardware_mileage", 1000.0)),
        ),
        (
            Standard::unit(Attribute::DigitalInput(1)),
            Some(Target::InputBit(0)),
        ),
        (
            Standard::unit(Attribute::DigitalInput(64)),
            Some(Target::InputBit(63)),
        ),
        (Standard::unit(Attribute::DigitalInput(0)), None),
        (Standard::unit(Attribute::DigitalInput(65)), None),
        (
            Standard::unit(Attribute::DigitalOutput(2)),
            Some(Target::OutputBit(1)),
        ),
        (
            Standard::unit(Attribute::DigitalInputs),
            Some(Target::InputMask),
        ),
        (
            Standard::unit(Attribute::DigitalOutputs),
            Some(Target::OutputMask),
        ),
        (
            mv(Attribute::Analog(16)),
            Some(Target::Float("analog_16", 1000.0)),
        ),
        (Standard::unit(Attribute::Analog(0)), None),
        (Standard::unit(Attribute::Analog(17)), None),
        (
            Standard::new(Attribute::Pdop, 10.0),
            Some(Target::Pdop(10.0)),
        ),
        (Standard::unit(Attribute::Hdop), Some(Target::Skip)),
        (
            Standard::unit(Attribute::DriverKey),
            Some(Target::DriverKey),
        ),
        (Standard::unit(Attribute::CellMcc), Some(Target::Mcc)),
        (Standard::unit(Attribute::CellMnc), Some(Target::Mnc)),
        (Standard::unit(Attribute::CellLac), Some(Target::Lac)),
        (Standard::unit(Attribute::CellId), Some(Target::CellId)),
    ];
    for (standard, expected) in cases {
        assert_eq!(target(standard), expected, "{standard:?}");
    }
}

#[test]
fn every_standard_event_has_its_ngp_id() {
    use StandardEvent::*;
    let cases = [
        (LowBattery, Some(1)),
        (PowerCut, Some(2)),
        (PowerRestored, Some(4)),
        (Tow, Some(101)),
        (Vibration, Some(113)),
        (GnssJamming, Some(116)),
        (Sos, Some(202)),
        (Overspeed, Some(224)),
        (HarshCornering, Some(239)),
        (HarshAcceleration, Some(240)),
        (HarshBraking, Some(241)),
        (Crash, Some(242)),
        (IdleEnd, Some(301)),
        (IdleStart, Some(302)),
        (MovementStart, Some(406)),
        (MovementEnd, Some(407)),
        (InputChanged(1), Some(501)),
        (InputChanged(8), Some(508)),
        (InputChanged(9), None),
        (InputChanged(0), None),
        (OutputChanged(8), Some(558)),
        (OutputChanged(9), None),
        (IgnitionOff, Some(604)),
        (IgnitionOn, Some(605)),
        (GnssRecovered, Some(608)),
        (GnssLost, Some(609)),
    ];
    for (event, id) in cases {
        assert_eq!(event_id(event), id, "{event:?}");
    }
}

#[test]
fn ignition_sets_input_bit_0_unless_input_1_is_reported_and_stays_custom() {
    let io_of = |protocol, io: Vec<(IoKey, IoValue)>| {
        let mut r = positioned(protocol);
        r.io = io;
        ngp(&r)
    };
    let name = |k: &str| IoKey::Name(k.into());
    let m = io_of(Protocol::Gt06, vec![(name("acc"), IoValue::U64(1))]);
    assert_eq!(m["input_status"], 1);
    assert_eq!(m["custom_gt06_acc"], 1);

    let m = io_of(Protocol::Teltonika, vec![(IoKey::Id(239), IoValue::U64(1))]);
    assert_eq!(m["input_status"], 1);
    assert_eq!(m["avl_io_239"], 1);
    // The device's own input 1 wins, in either order.
    for io in [
        vec![
            (IoKey::Id(239), IoValue::U64(1)),
            (IoKey::Id(1), IoValue::U64(0)),
        ],
        vec![
            (IoKey::Id(1), IoValue::U64(0)),
            (IoKey::Id(239), IoValue::U64(1)),
        ],
    ] {
        let m = io_of(Protocol::TeltonikaUdp, io);
        assert_eq!(m["input_status"], 0, "{m}");
        assert_eq!(m["avl_io_239"], 1);
    }
    // Ignition off clears bit 0 and keeps the other inputs.
    let m = io_of(
        Protocol::Teltonika,
        vec![
            (IoKey::Id(2), IoValue::U64(1)),
            (IoKey::Id(239), IoValue::U64(0)),
        ],
    );
    assert_eq!(m["input_status"], 0b10);

    let m = io_of(
        Protocol::Jsonl,
        vec![
            (name("ignition"), IoValue::U64(1)),
            (name("input_status"), IoValue::U64(0b100)),
        ],
    );
    assert_eq!(m["input_status"], 0b100, "a whole mask reports input 1");
    assert_eq!(m["custom_jsonl_ignition"], 1);
    // Not a number: no bit, still sent as it is.
    let m = io_of(
        Protocol::Jsonl,
        vec![(name("ignition"), IoValue::Text("on".into()))],
    );
    assert!(m.get("input_status").is_none(), "{m}");
    assert_eq!(m["custom_jsonl_ignition"], "on");
}

#[test]
fn standard_attribute_names_reach_ngp_from_any_protocol_table() {
    let name = |k: &str| IoKey::Name(k.into());
    let mut j = positioned(Protocol::Jsonl);
    j.io = vec![
        (name("movement"), IoValue::U64(1)),
        (name("external_voltage"), IoValue::F64(12.6)),
        (name("odometer"), IoValue::F64(1520.5)),
        (name("battery_voltage"), IoValue::F64(4.1)),
    ];
    let m = ngp(&j);
    assert_eq!(m["is_moving"], true);
    assert_eq!(m["board_voltage"], json!(12.6));
    assert_eq!(m["hardware_mileage"], json!(1520.5));
    assert_eq!(m["battery_voltage"], json!(4.1));
    for gone in [
        "custom_jsonl_movement",
        "custom_jsonl_external_voltage",
        "custom_jsonl_odometer",
    ] {
        assert!(m.get(gone).is_none(), "{gone} in {m}");
    }

    let mut q = positioned(Protocol::Queclink);
    q.io = vec![
        (name("battery_voltage_v"), IoValue::F64(3.9)),
        (name("battery_percent"), IoValue::U64(80)),
        (name("mcc"), IoValue::U64(460)),
        (name("mnc"), IoValue::U64(0)),
        (name("lac"), IoValue::U64(0x18d8)),
        (name("cell_id"), IoValue::U64(0x6141)),
    ];
    let m = ngp(&q);
    assert_eq!(m["battery_voltage"], json!(3.9));
    assert_eq!(m["battery_level"], 80);
    assert_eq!(m["mobile_cells"][0]["mcc"], 460);

    // Teltonika's analog input 2, output 2, PDOP and a movement value out of range.
    let mut t = positioned(Protocol::Teltonika);
    t.io = vec![
        (IoKey::Id(6), IoValue::U64(12_000)),
        (IoKey::Id(180), IoValue::U64(1)),
        (IoKey::Id(181), IoValue::U64(25)),
        (IoKey::Id(182), IoValue::U64(9)),
    ];
    let m = ngp(&t);
    assert_eq!(m["analog_2"], json!(12.0));
    assert_eq!(m["output_status"], 0b10);
    assert_eq!(m["location"]["pdop"], json!(2.5));
    assert!(
        m.get("avl_io_182").is_none(),
        "HDOP is the record's hdop field"
    );

    // Wialon: a numbered ADC past 16 and a text iButton.
    let mut w = positioned(Protocol::WialonUdp);
    w.io = vec![
        (name("adc16"), IoValue::F64(1.25)),
        (name("adc17"), IoValue::F64(2.0)),
        (name("ibutton"), IoValue::Text("0000012A4F2C".into())),
    ];
    let m = ngp(&w);
    assert_eq!(m["analog_16"], json!(1.25));
    assert_eq!(m["custom_wialon_udp_adc17"], json!(2.0));
    assert_eq!(m["hardware_key"], "0000012A4F2C");
}

#[test]
fn alarm_events_with_a_precise_meaning_get_their_ids() {
    let io = |k: u32, v: u64| vec![(IoKey::Id(k), IoValue::U64(v))];
    assert_eq!(event_of(Protocol::Teltonika, "io:247", io(247, 1)), id(242));
    assert_eq!(event_of(Protocol::Teltonika, "io:236", io(236, 1)), id(202));
    assert_eq!(event_of(Protocol::Teltonika, "io:246", io(246, 1)), id(101));
    assert_eq!(event_of(Protocol::Teltonika, "io:252", io(252, 1)), id(2));
    assert_eq!(
        event_of(Protocol::Teltonika, "io:252", io(252, 0)),
        text("io:252")
    );
    assert_eq!(
        event_of(Protocol::Teltonika, "io:255", io(255, 93)),
        id(224)
    );
    assert_eq!(event_of(Protocol::Teltonika, "io:253", io(253, 1)), id(240));
    assert_eq!(event_of(Protocol::Teltonika, "io:253", io(253, 2)), id(241));
    assert_eq!(event_of(Protocol::Teltonika, "io:253", io(253, 3)), id(239));
    assert_eq!(
        event_of(Protocol::Teltonika, "io:249", io(249, 1)),
        text("io:249")
    );
    assert_eq!(event_of(Protocol::Queclink, "pnl", vec![]), id(202));
    assert_eq!(event_of(Protocol::Queclink, "cra", vec![]), id(242));
    assert_eq!(event_of(Protocol::Queclink, "tow", vec![]), id(101));
    assert_eq!(event_of(Protocol::Queclink, "epf", vec![]), id(2));
    assert_eq!(event_of(Protocol::Queclink, "epn", vec![]), id(4));
    assert_eq!(event_of(Protocol::Queclink, "hbm", vec![]), text("hbm"));
}
