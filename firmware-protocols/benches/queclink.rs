//! Decoding throughput of the Queclink decoder, in records per second.
//!
//! Three inputs: the fact sheet's one-fix GL300 GTFRI (one record per message, the common
//! case); a GV200 GTFRI carrying the maximum of 15 fixes (what a device sends after a
//! coverage gap); and a realistic session of 40 messages (heartbeats, periodic reports with
//! one to five fixes, +BUFF reports, event reports, a device-info report) separated by CR/LF,
//! decoded frame by frame as a connection does.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::queclink::QueclinkDecoder;
use firmware_protocols::{DecoderOptions, StreamDecoder};

const NOW: i64 = 1_700_000_000_000;
const MAX: usize = 8192;

const FRI_ONE: &str = "+RESP:GTFRI,1A0102,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,,20090214093254,11F0$";

fn fix(i: usize) -> String {
    format!(
        "{},{}.{},{},{}.0,{:.6},{:.6},202403010{}{:02}{:02},0234,0015,0a1b,00c2d3,00",
        1 + i % 3,
        40 + i % 30,
        i % 10,
        (i * 17) % 360,
        100 + i % 9,
        -0.127758 + i as f64 * 0.000_311,
        51.507351 + i as f64 * 0.000_207,
        8 + i / 60 % 2,
        i % 60,
        (i * 7) % 60,
    )
}

/// A GV200 GTFRI (§3 layout) with `n` fixes.
fn gv200_fri(header: &str, n: usize, count: u16) -> String {
    let blocks: Vec<String> = (0..n).map(fix).collect();
    format!(
        "{header}GTFRI,040100,862193020451183,Van 12,12480,10,{n},{},1234.5,00123:45:06,2710,0,95,220100,,,20240301080005,{count:04X}$",
        blocks.join(",")
    )
}

/// 40 messages as one device connection would carry them, with their record count.
fn session() -> (Vec<u8>, u64) {
    let mut text = String::new();
    let mut records = 0u64;
    let mut count = 0u16;
    for i in 0..40usize {
        count = count.wrapping_add(1);
        let (msg, n) = match i % 10 {
            0 => (
                format!("+ACK:GTHBD,040100,862193020451183,Van 12,20240301080005,{count:04X}$"),
                0,
            ),
            1 | 2 | 3 | 5 | 6 => (gv200_fri("+RESP:", 1, count), 1),
            4 => (gv200_fri("+BUFF:", 5, count), 5),
            7 => (
                format!(
                    "+RESP:GTIGN,040100,862193020451183,Van 12,200,{},2000.0,20240301080005,{count:04X}$",
                    fix(i)
                ),
                1,
            ),
            8 => (
                format!(
                    "+RESP:GTSOS,040100,862193020451183,Van 12,0,0,1,{},2000.0,20240301080005,{count:04X}$",
                    fix(i)
                ),
                1,
            ),
            _ => (
                format!(
                    "+RESP:GTINF,040100,862193020451183,Van 12,21,89860000000000000000,16,0,11,12480,1,4.12,1,1,,,20240301080005,{count:04X}$"
                ),
                1,
            ),
        };
        text.push_str(&msg);
        text.push_str("\r\n");
        records += n;
    }
    (text.into_bytes(), records)
}

fn decoder() -> QueclinkDecoder {
    QueclinkDecoder::new(&DecoderOptions {
        ack_reports: true,
        ..DecoderOptions::new(MAX)
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("queclink");

    for (name, frame, records) in [
        ("gtfri_gl300_1fix", FRI_ONE.as_bytes().to_vec(), 1u64),
        (
            "gtfri_gv200_15fix",
            gv200_fri("+RESP:", 15, 0x11F0).into_bytes(),
            15,
        ),
    ] {
        let mut dec = decoder();
        let check = dec.decode(&frame, NOW).expect("decodes").expect("complete");
        assert_eq!(check.records.len() as u64, records, "{name}");
        group.throughput(Throughput::Elements(records));
        group.bench_function(name, |b| {
            b.iter(|| {
                let decoded = dec.decode(black_box(&frame), NOW);
                black_box(decoded)
            })
        });
    }

    let (bytes, records) = session();
    group.throughput(Throughput::Elements(records));
    group.bench_function("session_40msg", |b| {
        b.iter(|| {
            let mut dec = decoder();
            let mut rest: &[u8] = black_box(&bytes);
            let mut n = 0;
            while let Ok(Some(d)) = dec.decode(rest, NOW) {
                n += d.records.len();
                rest = &rest[d.consumed..];
            }
            assert_eq!(n as u64, records);
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
