//! Decoding throughput of the Teltonika TCP decoder, in records per second.
//!
//! The packet is what a busy FMB device sends after a coverage gap: 25 Codec 8 records with
//! ten IO elements each across all four widths, about 1.5 KiB.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::teltonika::encode::{
    encode_codec8, encode_codec8_extended, encode_imei, AvlRecord, IoData,
};
use firmware_protocols::teltonika::TcpDecoder;
use firmware_protocols::StreamDecoder;

const RECORDS: usize = 25;
const NOW: i64 = 1_700_000_000_000;

fn realistic_records() -> Vec<AvlRecord> {
    (0..RECORDS)
        .map(|i| {
            let i32_i = i as i32;
            AvlRecord {
                timestamp_ms: 1_700_000_000_000 + i as u64 * 10_000,
                priority: 0,
                lon: 246_543_210 + i32_i * 157,
                lat: 546_871_234 - i32_i * 93,
                altitude: 112,
                angle: (i * 14 % 360) as u16,
                satellites: 12,
                speed: 63 + i as u16,
                event_id: if i % 5 == 0 { 240 } else { 0 },
                generation_type: 0,
                io: vec![
                    (239, IoData::U8(1)),
                    (240, IoData::U8(1)),
                    (21, IoData::U8(4)),
                    (69, IoData::U8(1)),
                    (66, IoData::U16(12_850)),
                    (67, IoData::U16(4_012)),
                    (182, IoData::U16(9)),
                    (241, IoData::U32(24_602)),
                    (16, IoData::U32(1_234_567 + i as u32 * 180)),
                    (78, IoData::U64(0)),
                ],
            }
        })
        .collect()
}

fn logged_in(max: usize) -> TcpDecoder {
    let mut dec = TcpDecoder::new(max);
    let _ = dec.decode(&encode_imei("356307042441013"), NOW);
    dec
}

fn bench(c: &mut Criterion) {
    let records = realistic_records();
    let mut group = c.benchmark_group("teltonika");
    group.throughput(Throughput::Elements(RECORDS as u64));

    for (name, frame) in [
        ("codec8_25x10io", encode_codec8(&records)),
        ("codec8e_25x10io", encode_codec8_extended(&records)),
    ] {
        let frame = frame.expect("bench packet encodes");
        let mut dec = logged_in(frame.len());
        group.bench_function(name, |b| {
            b.iter(|| {
                let decoded = dec.decode(black_box(&frame), NOW);
                black_box(decoded)
            })
        });
    }
    group.finish();

    // The CRC pass alone, to see how much of a decode it is.
    let frame = encode_codec8(&records).expect("bench packet encodes");
    let mut crc = c.benchmark_group("crc16_arc");
    crc.throughput(Throughput::Bytes(frame.len() as u64));
    crc.bench_function("codec8_25x10io_data_field", |b| {
        b.iter(|| firmware_protocols::crc::crc16_arc(black_box(&frame[8..frame.len() - 4])))
    });
    crc.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
