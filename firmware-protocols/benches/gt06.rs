//! Decoding throughput of the GT06 decoder, in records per second.
//!
//! A GT06 frame carries one record, so the realistic load is many small frames: a moving
//! device's connection, 32 frames read in one buffer after a coverage gap (locations, GT06N
//! locations, a heartbeat every eighth frame and one SOS alarm), decoded frame by frame the
//! way a session does. The vendor-document alarm and location frames are benched alone too.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::gt06::encode::{
    self, alarm_content, course_status, heartbeat_content, location_content, scale_degrees, Gps,
    Lbs, Status,
};
use firmware_protocols::gt06::Gt06Decoder;
use firmware_protocols::{DecoderOptions, StreamDecoder};

const NOW: i64 = 1_700_000_000_000;
const FRAMES: usize = 32;
const IMEI: &str = "356307042441013";

/// The Concox document's SOS alarm and its 0x12 location (CRC corrected).
const ALARM: &str =
    "787825160B0B0F0E241DCF027AC8870C4657E60014020901CC00287D001F726506040101003656A40D0A";
const LOCATION: &str = "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000373770D0A";

fn session_frames() -> Vec<u8> {
    let lbs = Lbs {
        mcc: 262,
        mnc: 1,
        lac: 0x4E21,
        cell_id: 0x01_A2B3,
    };
    let status = Status {
        terminal_info: 0x46,
        voltage_level: 5,
        gsm_signal: 4,
        alarm: 0,
        language: 2,
    };
    let mut all = Vec::new();
    for i in 0..FRAMES {
        let serial = i as u16 + 2;
        let gps = Gps {
            time: [23, 11, 14, 9, (i / 2) as u8, (i * 30 % 60) as u8],
            info_length: 12,
            satellites: 9,
            lat: scale_degrees(52.5200 + i as f64 * 0.0004),
            lon: scale_degrees(13.4050 + i as f64 * 0.0006),
            speed: 48 + i as u8,
            course_status: course_status((i * 11 % 360) as u16, true, false, true),
        };
        let frame = match i {
            _ if i % 8 == 7 => encode::frame(0x13, &heartbeat_content(&status), serial),
            13 => {
                let sos = Status {
                    alarm: 1,
                    ..status.clone()
                };
                encode::frame(0x16, &alarm_content(&gps, &lbs, &sos), serial)
            }
            _ if i % 2 == 0 => encode::frame(0x12, &location_content(&gps, &lbs), serial),
            _ => {
                let mut content = location_content(&gps, &lbs);
                content.extend_from_slice(&[1, 0, 0]);
                encode::frame(0x22, &content, serial)
            }
        };
        all.extend(frame.expect("bench frame encodes"));
    }
    all
}

fn logged_in() -> Gt06Decoder {
    let mut dec = Gt06Decoder::new(&DecoderOptions::new(1024));
    let login = encode::login(IMEI, 1).expect("login encodes");
    let _ = dec.decode(&login, NOW);
    dec
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gt06");

    let session = session_frames();
    let mut dec = logged_in();
    let mut decode_session = move |input: &[u8]| {
        let mut rest = input;
        let mut records = 0;
        while let Ok(Some(d)) = dec.decode(rest, NOW) {
            records += d.records.len();
            rest = rest.get(d.consumed..).unwrap_or_default();
        }
        records
    };
    assert_eq!(
        decode_session(&session),
        FRAMES,
        "every frame is one record"
    );
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("session_32_frames", |b| {
        b.iter(|| black_box(decode_session(black_box(&session))))
    });

    let mut dec = logged_in();

    group.throughput(Throughput::Elements(1));
    for (name, hex_str) in [("alarm_0x16", ALARM), ("location_0x12", LOCATION)] {
        let frame = hex::decode(hex_str).expect("bench hex");
        group.bench_function(name, |b| {
            b.iter(|| black_box(dec.decode(black_box(&frame), NOW)))
        });
    }
    group.finish();

    let frame = hex::decode(ALARM).expect("bench hex");
    let mut crc = c.benchmark_group("crc16_x25");
    crc.throughput(Throughput::Bytes(frame.len() as u64 - 6));
    crc.bench_function("alarm_0x16_body", |b| {
        b.iter(|| firmware_protocols::crc::crc16_x25(black_box(&frame[2..frame.len() - 4])))
    });
    crc.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
