//! What one durable write costs on this machine, through sled 0.34.7 and without it: the
//! fixed price of a commit round, which issue 9's one-record shapes pay every ~80 records.
//!
//! It opens a sled database in a temporary directory with the buffer's settings
//! (`HighThroughput`, no background flusher), then, `ROUNDS` times, inserts one value of
//! `BYTES` under the next big-endian seq and calls `flush()`, as the commit thread does once
//! per round; then the same with an `fdatasync` of sled's log after each flush (what
//! `buffer/device_sync.rs` adds). Then it does the same with a plain file allocated
//! beforehand: one write of `BYTES` in place and one `sync_data` (fdatasync), the least any
//! durable write costs. For each it prints the wall time and the whole process's CPU time
//! (every thread, sled's IO pool included) per durable write. The difference is sled's own
//! cost per flush, which no change in fleetedge can take away while sled is pinned.
//!
//!   CLK_TCK=$(getconf CLK_TCK) cargo run --release --example flush_cost -- [ROUNDS] [BYTES]
//!   (defaults 3000 8192; CLK_TCK defaults to 100)

use std::os::unix::fs::FileExt;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3000);
    let bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8192);
    // /proc's CPU times are in clock ticks; `getconf CLK_TCK` says how many a second.
    let hz: f64 = std::env::var("CLK_TCK")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100.0);
    let dir = tempfile::tempdir()?;
    let value = vec![0x5a_u8; bytes];

    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()?;
    let tree = db.open_tree("queue")?;
    // Warm up: sled opens its IO pool and first segments lazily.
    for seq in 0..100_u64 {
        tree.insert(seq.to_be_bytes(), value.as_slice())?;
        db.flush()?;
    }
    let (wall, cpu) = measure(hz, || {
        for seq in 100..100 + rounds {
            tree.insert(seq.to_be_bytes(), value.as_slice())?;
            db.flush()?;
        }
        Ok(())
    })?;
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    report("sled insert + flush", rounds, wall, cpu, threads);
    // sled syncs its log with sync_file_range, which leaves the drive's volatile write
    // cache unflushed; an fdatasync of the log file afterwards flushes it (what fleetedge's
    // `buffer/device_sync.rs` adds to every flush).
    let log = std::fs::File::open(dir.path().join("db").join("db"))?;
    let (wall, cpu) = measure(hz, || {
        for seq in 100 + rounds..100 + 2 * rounds {
            tree.insert(seq.to_be_bytes(), value.as_slice())?;
            db.flush()?;
            log.sync_data()?;
        }
        Ok(())
    })?;
    report("sled + fdatasync of log", rounds, wall, cpu, threads);
    drop(tree);
    drop(db);

    // Written in place into a file allocated beforehand, as sled writes into its segments:
    // a write that grew the file would also make fdatasync commit the new size.
    let file = std::fs::File::create(dir.path().join("plain"))?;
    file.write_all_at(&vec![0_u8; bytes * rounds as usize], 0)?;
    file.sync_all()?;
    let (wall, cpu) = measure(hz, || {
        for round in 0..rounds {
            file.write_all_at(&value, round * bytes as u64)?;
            file.sync_data()?;
        }
        Ok(())
    })?;
    report("file pwrite + fdatasync", rounds, wall, cpu, 1);
    Ok(())
}

/// Runs `work`; returns its wall seconds and the process's CPU seconds (all threads).
fn measure(
    hz: f64,
    work: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let cpu_before = process_cpu_ticks()?;
    let start = Instant::now();
    work()?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = (process_cpu_ticks()? - cpu_before) as f64 / hz;
    Ok((wall, cpu))
}

/// utime + stime of the whole process, in clock ticks (fields 14 and 15 of /proc/self/stat;
/// the command name in field 2 may hold spaces, so fields are counted after its `)`).
fn process_cpu_ticks() -> Result<u64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("/proc/self/stat: no `)` after the command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11).ok_or("/proc/self/stat: no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("/proc/self/stat: no stime")?.parse()?;
    Ok(utime + stime)
}

fn report(what: &str, rounds: u64, wall: f64, cpu: f64, threads: usize) {
    let n = rounds.max(1) as f64;
    println!(
        "{what:24} {rounds} durable writes: {:7.1} us wall, {:7.1} us CPU each \
         (process threads: {threads})",
        wall * 1e6 / n,
        cpu * 1e6 / n,
    );
}
