//! Decoding throughput of the Teltonika UDP decoder, in records per second.
//!
//! UDP devices send small datagrams (one MTU at most), so the realistic load is many of them:
//! the fact sheet's one-record example, and a datagram with what an FMB device packs after a
//! short gap: 8 records with ten IO elements each across all four widths (about 0.5 KiB in
//! Codec 8, under a 1280-byte limit in 8 Extended too). With and without `keep_raw`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::teltonika::encode::{
    encode_codec8, encode_codec8_extended, AvlRecord, EncodeError, IoData,
};
use firmware_protocols::teltonika_udp::UdpDecoder;
use firmware_protocols::{DatagramDecoder, DecoderOptions};

const RECORDS: usize = 8;
const NOW: i64 = 1_700_000_000_000;
const MAX: usize = 1280;
const IMEI: &str = "352093086403655";

/// Fact sheet §7 "Codec 8 over UDP".
const UDP_EXAMPLE: &str = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001";

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

/// The TCP packet's AVL data (without preamble, data length and CRC) in a UDP header.
fn datagram(tcp_packet: Result<Vec<u8>, EncodeError>) -> Vec<u8> {
    let packet = tcp_packet.expect("bench packet encodes");
    let avl = &packet[8..packet.len() - 4];
    let mut out = Vec::with_capacity(23 + avl.len());
    out.extend_from_slice(&((21 + avl.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0xCA, 0xFE, 0x01, 0x05]);
    out.extend_from_slice(&(IMEI.len() as u16).to_be_bytes());
    out.extend_from_slice(IMEI.as_bytes());
    out.extend_from_slice(avl);
    out
}

fn bench(c: &mut Criterion) {
    let records = realistic_records();
    let example = hex::decode(UDP_EXAMPLE).expect("example hex");
    let plain = UdpDecoder::new(&DecoderOptions::new(MAX));
    let raw = UdpDecoder::new(&DecoderOptions {
        keep_raw: true,
        ..DecoderOptions::new(MAX)
    });

    let mut group = c.benchmark_group("teltonika_udp");
    for (name, datagram, count, decoder) in [
        ("fact_sheet_example_1x3io", example, 1, &plain),
        (
            "codec8_8x10io",
            datagram(encode_codec8(&records)),
            RECORDS,
            &plain,
        ),
        (
            "codec8e_8x10io",
            datagram(encode_codec8_extended(&records)),
            RECORDS,
            &plain,
        ),
        (
            "codec8_8x10io_keep_raw",
            datagram(encode_codec8(&records)),
            RECORDS,
            &raw,
        ),
    ] {
        assert!(datagram.len() <= MAX, "{name}: {} bytes", datagram.len());
        let decoded = decoder
            .decode(&datagram, NOW)
            .expect("bench datagram decodes");
        assert_eq!(decoded.records.len(), count, "{name}");
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(decoder.decode(black_box(&datagram), NOW)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
