//! Decoding throughput of the JSON lines decoder, in records per second.
//!
//! The stream is 100 lines of what a local telemetry application writes: position fields,
//! an RFC 3339 time with milliseconds, an event on some lines, a few sensor values at the top
//! level and an `io` object (about 330 bytes a line). A second stream uses epoch
//! milliseconds and only position fields, the lightest useful line.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::jsonl::JsonlDecoder;
use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::{DecoderOptions, StreamDecoder};

const LINES: usize = 100;
const NOW: i64 = 1_709_251_200_000;

fn rich() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..LINES {
        let event = if i % 10 == 0 {
            r#""overspeed""#
        } else {
            "null"
        };
        out += &format!(
            concat!(
                r#"{{"device_id":"truck-0042","time":"{}","valid":true,"lat":{:.6},"#,
                r#""lon":{:.6},"altitude_m":112.4,"speed_kmh":{:.1},"course_deg":271.4,"#,
                r#""satellites":12,"hdop":0.8,"event":{},"fuel_l":{:.2},"ignition":true,"#,
                r#""driver":"D-118","io":{{"rpm":{},"coolant_c":88,"can_odometer_km":{:.1},"#,
                r#""din":[1,0,0,1]}}}}"#,
                "\n"
            ),
            format_rfc3339_ms(NOW + i as i64 * 1000 + 250),
            54.687_157 + i as f64 * 1e-4,
            25.279_652 - i as f64 * 1e-4,
            60.0 + i as f64 * 0.1,
            event,
            312.5 - i as f64 * 0.01,
            1500 + i,
            182_345.5 + i as f64 * 0.02,
        );
    }
    out.into_bytes()
}

fn minimal() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..LINES {
        out += &format!(
            "{{\"time\":{},\"lat\":{:.6},\"lon\":{:.6}}}\n",
            NOW + i as i64 * 1000,
            54.687_157 + i as f64 * 1e-4,
            25.279_652 - i as f64 * 1e-4,
        );
    }
    out.into_bytes()
}

fn decode_all(dec: &mut JsonlDecoder, mut input: &[u8]) -> usize {
    let mut records = 0;
    while let Ok(Some(d)) = dec.decode(input, NOW) {
        records += d.records.len();
        input = &input[d.consumed..];
    }
    records
}

fn bench(c: &mut Criterion) {
    let options = DecoderOptions {
        device_id: Some("sensor-port".into()),
        ..DecoderOptions::new(4096)
    };
    let mut group = c.benchmark_group("jsonl");
    group.throughput(Throughput::Elements(LINES as u64));
    for (name, input) in [("rich_100_lines", rich()), ("minimal_100_lines", minimal())] {
        let mut dec = JsonlDecoder::new(&options);
        assert_eq!(decode_all(&mut dec, &input), LINES, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(decode_all(&mut dec, black_box(&input))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
