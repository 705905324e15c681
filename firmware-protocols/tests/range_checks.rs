//! Every decoder the registry builds range-checks its records (`Record::check_ranges`): a value
//! outside its documented range never leaves a decoder as if it were good. Frames are built
//! with the protocols' own encoders from the documented layouts.

use firmware_protocols::registry::{self, Transport};
use firmware_protocols::teltonika::encode::{encode_codec8, encode_imei, AvlRecord};
use firmware_protocols::testkit::io;
use firmware_protocols::{DecoderOptions, IoValue, StreamDecoder};

/// 2024-03-01T00:00:00Z.
const NOW: i64 = 1_709_251_200_000;
const IMEI: &str = "356307042441013";

fn teltonika() -> Box<dyn StreamDecoder> {
    let spec = registry::lookup("teltonika").unwrap();
    let Transport::Stream(make) = spec.transport else {
        panic!("teltonika is a stream protocol")
    };
    make(&DecoderOptions::new(4096))
}

fn record(lat: i32, angle: u16) -> AvlRecord {
    AvlRecord {
        timestamp_ms: (NOW - 60_000) as u64,
        lat,
        lon: 254_000_000,
        altitude: 120,
        angle,
        satellites: 9,
        speed: 40,
        ..AvlRecord::default()
    }
}

fn range_error(r: &firmware_protocols::Record) -> Option<&IoValue> {
    io(r, "range_error")
}

#[test]
fn a_teltonika_record_with_course_636_and_latitude_95_is_not_passed_as_good() {
    let mut dec = teltonika();
    dec.decode(&encode_imei(IMEI), NOW).unwrap().unwrap();
    let packet = encode_codec8(&[record(950_000_000, 636), record(546_000_000, 90)]).unwrap();
    let d = dec.decode(&packet, NOW).unwrap().unwrap();
    let [bad, good] = &d.records[..] else {
        panic!("{:?}", d.records)
    };
    assert_eq!(bad.valid, Some(false));
    assert_eq!((bad.lat, bad.lon, bad.course_deg), (None, None, None));
    assert_eq!(bad.speed_kmh, Some(40.0), "values in range stay");
    assert_eq!(
        range_error(bad),
        Some(&IoValue::Text(
            "lat 95 outside -90..=90; course_deg 636 > 360".into()
        ))
    );
    // The record next to it is untouched.
    assert_eq!(good.valid, Some(true));
    assert_eq!(good.course_deg, Some(90.0));
    assert_eq!(range_error(good), None);
}

#[test]
fn a_device_time_past_tomorrow_is_cleared_and_named() {
    let mut dec = teltonika();
    dec.decode(&encode_imei(IMEI), NOW).unwrap().unwrap();
    let mut future = record(546_000_000, 90);
    future.timestamp_ms = (NOW + 3 * 86_400_000) as u64;
    let d = dec
        .decode(&encode_codec8(&[future]).unwrap(), NOW)
        .unwrap()
        .unwrap();
    let r = &d.records[0];
    assert_eq!(r.time_ms, None);
    assert_eq!(r.valid, Some(false));
    assert_eq!(
        range_error(r),
        Some(&IoValue::Text(
            "time 2024-03-04T00:00:00.000Z is after tomorrow (received 2024-03-01T00:00:00.000Z)"
                .into()
        ))
    );
}

#[test]
fn the_capture_decoder_checks_ranges_too_and_reads_packets_without_the_imei() {
    let spec = registry::lookup("teltonika").unwrap();
    let mut dec = spec
        .capture_decoder(&DecoderOptions::new(4096))
        .expect("a stream protocol");
    let packet = encode_codec8(&[record(950_000_000, 636)]).unwrap();
    let d = dec.decode(&packet, NOW).unwrap().unwrap();
    assert_eq!(dec.device_id(), None);
    assert_eq!(d.records[0].device_id, "");
    assert_eq!(d.records[0].valid, Some(false));
    assert!(range_error(&d.records[0]).is_some());
}
