//! Decoding throughput of the Wialon IPS decoder, in records per second.
//!
//! The packets are what a v2.0 tracker with a CAN reader sends: extended data (D) with
//! hdop, inputs, three ADC values, an iButton and ten params (about 300 bytes a message),
//! live one per packet, and after a coverage gap 25 of them in one black box (about 7.5 KiB).
//! The short-data (SD) case is the minimal position packet.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::wialon::encode::{self, Extended, Message, Param};
use firmware_protocols::wialon::{ProtocolVersion, WialonDecoder};
use firmware_protocols::{DecoderOptions, StreamDecoder};

const NOW: i64 = 1_700_000_000_000;
const BLACK_BOX_MESSAGES: usize = 25;
const V2: ProtocolVersion = ProtocolVersion::V2;

fn realistic_message(i: usize) -> Message {
    let f = i as f64;
    Message {
        time_ms: Some(1_700_000_000_000 + i as i64 * 10_000),
        lat: Some(54.687_123_4 - f * 0.000_93),
        lon: Some(25.279_654_3 + f * 0.001_57),
        speed_kmh: Some(63.0 + f),
        course_deg: Some((i * 14 % 360) as f64),
        altitude_m: Some(112.0),
        satellites: Some(12),
        extended: Some(Extended {
            hdop: Some(0.9),
            inputs: Some(5),
            outputs: Some(1),
            adc: vec![Some(12.85), Some(4.01), None],
            ibutton: Some("0000012A3B4C".into()),
            params: vec![
                ("ign".into(), Param::Int(1)),
                ("mileage".into(), Param::Double(123_456.7 + f * 0.18)),
                ("fuel_lvl".into(), Param::Double(41.5)),
                ("can_rpm".into(), Param::Int(1850)),
                ("can_speed".into(), Param::Int(63)),
                ("coolant_t".into(), Param::Int(88)),
                ("pwr_ext".into(), Param::Double(13.92)),
                ("pwr_int".into(), Param::Double(4.1)),
                ("gsm_lvl".into(), Param::Int(4)),
                ("fw".into(), Param::Text("3.1.4 rev 27".into())),
            ],
        }),
    }
}

fn logged_in(max: usize) -> WialonDecoder {
    let mut dec = WialonDecoder::new(&DecoderOptions::new(max));
    let login = encode::login(V2, "356307042441013", None);
    let _ = dec.decode(&login, NOW);
    dec
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("wialon");

    let message = realistic_message(0);
    let short = encode::short_data(V2, &message);
    let data = encode::data(V2, &message);
    group.throughput(Throughput::Elements(1));
    for (name, frame) in [("sd_v2", &short), ("d_v2_10params", &data)] {
        let mut dec = logged_in(8192);
        group.bench_function(name, |b| {
            b.iter(|| {
                let decoded = dec.decode(black_box(frame), NOW);
                black_box(decoded)
            })
        });
    }

    let messages: Vec<Message> = (0..BLACK_BOX_MESSAGES).map(realistic_message).collect();
    let black_box_frame = encode::black_box(V2, &messages);
    let mut dec = logged_in(black_box_frame.len());
    group.throughput(Throughput::Elements(BLACK_BOX_MESSAGES as u64));
    group.bench_function("b_v2_25x_d_10params", |b| {
        b.iter(|| {
            let decoded = dec.decode(black_box(&black_box_frame), NOW);
            black_box(decoded)
        })
    });
    group.finish();

    eprintln!(
        "frame sizes: SD {} B, D {} B, B {} B",
        short.len(),
        data.len(),
        black_box_frame.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
