//! The buffer's append and read paths, in records per second, on a real sled database in a
//! temporary directory (so every commit round pays its real fsync).
//!
//! - `append/serial/N`: one appender, appends of N records one after another; each waits for
//!   its own round, so this is the fsync-bound latency path.
//! - `append/concurrent/T×N`: T tasks append N records each at once (what T device sessions
//!   do); the group commit puts them in few rounds, so this is the per-append cost.
//! - `read_after/1-record chunks`: the uplink reading a backlog of 1-record chunks, 1000 a
//!   call.
//! - `dedup/{off,on}/…`: the cost of duplicate suppression (`buffer.dedup`), the same shapes
//!   with it off and on, one after the other: every record has its own device time, so all
//!   are stored and each pays the hash, the window check and its share of the round's log.
//!
//! Run: `cargo bench --bench buffer_append -- --warm-up-time 1 --measurement-time 3`.
//! Appended records are acknowledged between samples, so the database stays small.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use firmware_protocols::{IoKey, IoValue, Protocol, Record};
use fleetedge::buffer::{Appended, Buffer, BufferOptions};
use tokio::runtime::Runtime;

/// A position record of the size a tracker sends: position, motion, a few IO values.
fn record(i: u64) -> Record {
    let mut r = Record::new(
        format!("35630704244{:04}", i % 200),
        Protocol::Teltonika,
        1_709_251_200_000 + i as i64,
    );
    r.time_ms = Some(1_709_251_199_000 + i as i64);
    r.valid = Some(true);
    r.lat = Some(54.687_157 + (i % 1000) as f64 * 1e-5);
    r.lon = Some(25.279_652 - (i % 1000) as f64 * 1e-5);
    r.altitude_m = Some(112.0);
    r.speed_kmh = Some((i % 90) as f64);
    r.course_deg = Some((i % 360) as f64);
    r.satellites = Some(11);
    r.hdop = Some(0.8);
    r.io = vec![
        (IoKey::Id(239), IoValue::U64(1)),
        (IoKey::Id(240), IoValue::U64(1)),
        (IoKey::Id(66), IoValue::U64(12_430 + i % 50)),
        (IoKey::Id(182), IoValue::U64(8)),
    ];
    r
}

fn records(n: usize) -> Vec<Record> {
    (0..n as u64).map(record).collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    buffer: Buffer,
    rt: Runtime,
}

fn fixture() -> Fixture {
    fixture_with(None)
}

fn fixture_with(dedup: Option<fleetedge::buffer::DedupOptions>) -> Fixture {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut opts = BufferOptions::new(dir.path().join("buffer"));
    opts.dedup = dedup;
    opts.seq_floor = Some(1);
    // Acks between samples keep it drained; no reclaim swaps in the middle of a sample.
    opts.reclaim_above_bytes = 0;
    let buffer = Buffer::open(opts).expect("open buffer");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    Fixture {
        _dir: dir,
        buffer,
        rt,
    }
}

/// One task per batch, all appending at once (one or a few commit rounds): how long until
/// every append returned, and the highest seq they stored.
fn append_concurrently(f: &Fixture, batches: Vec<Vec<Record>>) -> (Duration, u64) {
    let buffer = f.buffer.clone();
    f.rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let buffer = buffer.clone();
                tokio::spawn(async move { buffer.append(batch).await })
            })
            .collect();
        let mut last = 0;
        for h in handles {
            let appended = h.await.expect("task").expect("append");
            last = last.max(last_seq(appended));
        }
        (start.elapsed(), last)
    })
}

fn last_seq(appended: Appended) -> u64 {
    match appended {
        Appended::Stored { last_seq, .. } => last_seq,
        Appended::Rejected => panic!("the benchmark buffer never fills"),
        Appended::Duplicate => panic!("the benchmark's records are not duplicates"),
    }
}

fn append(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("append");
    group.sample_size(10);

    for per_append in [1usize, 50] {
        group.throughput(Throughput::Elements(per_append as u64));
        group.bench_function(BenchmarkId::new("serial", per_append), |b| {
            let batch = records(per_append);
            b.iter_custom(|iters| {
                let buffer = f.buffer.clone();
                let batch = batch.clone();
                let (elapsed, last) = f.rt.block_on(async move {
                    let start = Instant::now();
                    let mut last = 0;
                    for _ in 0..iters {
                        last = last_seq(buffer.append(batch.clone()).await.expect("append"));
                    }
                    (start.elapsed(), last)
                });
                f.buffer.ack_through(last).expect("ack");
                elapsed
            });
        });
    }

    for (tasks, per_append) in [(200usize, 1usize), (200, 50)] {
        group.throughput(Throughput::Elements((tasks * per_append) as u64));
        let id = BenchmarkId::new("concurrent", format!("{tasks}x{per_append}"));
        group.bench_function(id, |b| {
            let batch = records(per_append);
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut last = 0;
                for _ in 0..iters {
                    let (took, round_last) = append_concurrently(&f, vec![batch.clone(); tasks]);
                    elapsed += took;
                    last = round_last;
                }
                f.buffer.ack_through(last).expect("ack");
                elapsed
            });
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    const CHUNKS: usize = 1000;
    let f = fixture();
    let buffer = f.buffer.clone();
    f.rt.block_on(async move {
        // Concurrent appends of one record each: 1000 one-record chunks in a few rounds.
        let handles: Vec<_> = (0..CHUNKS as u64)
            .map(|i| {
                let buffer = buffer.clone();
                tokio::spawn(async move { buffer.append(vec![record(i)]).await })
            })
            .collect();
        for h in handles {
            h.await.expect("task").expect("append");
        }
    });
    let mut group = c.benchmark_group("read_after");
    group.sample_size(10);
    group.throughput(Throughput::Elements(CHUNKS as u64));
    group.bench_function("1-record chunks", |b| {
        b.iter(|| {
            let chunks = f.buffer.read_after(None, CHUNKS, usize::MAX).expect("read");
            assert_eq!(chunks.len(), CHUNKS);
            chunks
        });
    });
    group.finish();
}

/// `n` records of device `task`, with device times no other call has used.
fn fresh_records(task: usize, n: usize, clock: &std::sync::atomic::AtomicU64) -> Vec<Record> {
    let first = clock.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    (0..n as u64)
        .map(|i| {
            let mut r = record(first + i);
            r.device_id = format!("35630704244{task:04}");
            r
        })
        .collect()
}

fn dedup(c: &mut Criterion) {
    let clock = std::sync::atomic::AtomicU64::new(0);
    let off = fixture_with(None);
    let on = fixture_with(Some(fleetedge::buffer::DedupOptions::default()));
    let mut group = c.benchmark_group("dedup");
    group.sample_size(10);
    for (tasks, per_append) in [(1usize, 1usize), (200, 1), (200, 50)] {
        group.throughput(Throughput::Elements((tasks * per_append) as u64));
        for (name, f) in [("off", &off), ("on", &on)] {
            let id = BenchmarkId::new(name, format!("{tasks}x{per_append}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    let mut last = 0;
                    for _ in 0..iters {
                        let batches: Vec<_> = (0..tasks)
                            .map(|t| fresh_records(t, per_append, &clock))
                            .collect();
                        let (took, round_last) = append_concurrently(f, batches);
                        elapsed += took;
                        last = round_last;
                    }
                    f.buffer.ack_through(last).expect("ack");
                    elapsed
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append, read, dedup);
criterion_main!(benches);
