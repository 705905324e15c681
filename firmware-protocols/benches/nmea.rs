//! Decoding throughput of the NMEA 0183 decoder, in records (epochs) per second.
//!
//! The stream is what a multi-constellation receiver sends at 1 Hz with its default message
//! set: per epoch RMC, VTG, GGA, GSA, three GSV and GLL (8 sentences, about 560 bytes), of
//! which RMC and GGA make the record and the rest is verified and skipped. A second stream
//! holds only RMC + GGA, the usual configuration for a tracker.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use firmware_protocols::nmea::NmeaDecoder;
use firmware_protocols::{DecoderOptions, StreamDecoder};

const EPOCHS: usize = 100;
const NOW: i64 = 1_709_251_200_000;

fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

fn session(full_burst: bool) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..EPOCHS {
        let t = format!("12{:02}{:02}.00", i / 60, i % 60);
        let lat = format!("5441.{:06}", 229_400 + i * 37);
        let lon = format!("02516.{:06}", 779_100 + i * 53);
        out += &sentence(&format!(
            "GNRMC,{t},A,{lat},N,{lon},E,23.{i:03},271.35,010324,,,A,V"
        ));
        if full_burst {
            out += &sentence("GNVTG,271.35,T,,M,23.481,N,43.487,K,A");
        }
        out += &sentence(&format!(
            "GNGGA,{t},{lat},N,{lon},E,1,12,0.78,112.4,M,28.9,M,,"
        ));
        if full_burst {
            out += &sentence("GNGSA,A,3,10,12,14,24,25,32,02,06,,,,,1.32,0.78,1.07,1");
            out += &sentence("GPGSV,3,1,11,10,63,137,37,12,31,292,42,14,22,212,39,24,56,061,38,1");
            out += &sentence("GPGSV,3,2,11,25,40,298,36,32,66,203,40,01,02,044,,02,11,192,30,1");
            out += &sentence("GPGSV,3,3,11,03,03,111,,06,21,010,28,13,06,292,,1");
            out += &sentence(&format!("GNGLL,{lat},N,{lon},E,{t},A,A"));
        }
    }
    out.into_bytes()
}

fn decode_session(dec: &mut NmeaDecoder, mut input: &[u8]) -> usize {
    let mut records = 0;
    while let Ok(Some(d)) = dec.decode(input, NOW) {
        records += d.records.len();
        input = &input[d.consumed..];
    }
    records
}

fn bench(c: &mut Criterion) {
    let options = DecoderOptions {
        device_id: Some("gnss-1".into()),
        ..DecoderOptions::new(256)
    };
    let mut group = c.benchmark_group("nmea");
    group.throughput(Throughput::Elements(EPOCHS as u64));
    for (name, full) in [
        ("full_burst_100_epochs", true),
        ("rmc_gga_100_epochs", false),
    ] {
        let input = session(full);
        let mut check = NmeaDecoder::new(&options);
        assert_eq!(decode_session(&mut check, &input), EPOCHS);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut dec = NmeaDecoder::new(&options);
                black_box(decode_session(&mut dec, black_box(&input)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
