//! Unit tests of the buffer: seqs, group commit, reads, acks, the full policies, and bad
//! stored data.

use std::path::Path;
use std::time::{Duration, Instant};

use firmware_protocols::{IoKey, IoValue, Protocol, Record};
use tempfile::TempDir;

use super::store::{seq_key, QUEUE_TREE};
use super::*;

fn rec(i: u64) -> Record {
    let mut r = Record::new(format!("dev-{}", i % 7), Protocol::Teltonika, i as i64);
    r.lat = Some(i as f64 / 1000.0);
    r.io = vec![(IoKey::Id(1), IoValue::U64(i))];
    r
}

/// `n` records tagged `tag..tag+n` (in `received_at_ms`), so a test can tell them apart.
fn recs(tag: u64, n: u64) -> Vec<Record> {
    (tag..tag + n).map(rec).collect()
}

fn opts(dir: &Path) -> BufferOptions {
    let mut o = BufferOptions::new(dir.join("buffer"));
    o.cache_capacity_bytes = 4 << 20;
    o.seq_floor = Some(1);
    o
}

fn open(o: &BufferOptions) -> Buffer {
    Buffer::open(o.clone()).expect("open buffer")
}

async fn stored(buffer: &Buffer, records: Vec<Record>) -> (u64, u64) {
    match buffer.append(records).await.expect("append") {
        Appended::Stored {
            first_seq,
            last_seq,
        } => (first_seq, last_seq),
        Appended::Rejected | Appended::Duplicate => panic!("append was not stored"),
    }
}

/// Every durable record, with its seq, oldest first.
fn all(buffer: &Buffer) -> Vec<(u64, Record)> {
    buffer
        .read_after(None, usize::MAX, usize::MAX)
        .expect("read")
        .into_iter()
        .flat_map(|c| (c.first_seq..).zip(c.records))
        .collect()
}

#[tokio::test]
async fn seqs_start_at_one_and_continue_across_reopen_and_full_drain() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = open(&o);
    assert_eq!(buffer.stats().next_seq, 1);
    assert_eq!(stored(&buffer, recs(0, 3)).await, (1, 3));
    assert_eq!(stored(&buffer, recs(3, 2)).await, (4, 5));
    drop(buffer);

    let buffer = open(&o);
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.next_seq, stats.oldest_seq),
        (5, 6, Some(1))
    );
    assert_eq!(*buffer.subscribe().borrow(), 5);
    assert_eq!(stored(&buffer, recs(5, 1)).await, (6, 6));
    // Drain everything, then reopen: the counter, not the (now empty) data, decides.
    assert_eq!(buffer.ack_through(6).unwrap(), 6);
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.bytes, stats.oldest_seq), (0, 0, None));
    drop(buffer);

    let buffer = open(&o);
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.next_seq, stats.oldest_seq),
        (0, 7, None)
    );
    assert_eq!(stored(&buffer, recs(6, 4)).await, (7, 10));
    let got = all(&buffer);
    assert_eq!(got.first().map(|(s, _)| *s), Some(7));
    assert_eq!(
        got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        recs(6, 4)
    );
}

/// What the service watchdog reads: a round held up (as by a hung fsync) shows as busy for
/// longer and longer, and idleness before and after it does not show at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_busy_for_grows_while_a_round_is_held_and_clears_after_it() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    // Open asks the committer for a reclaim check, so it may be busy a moment after open
    // (under qemu, long enough to be seen); once that is done, idleness is not busy.
    wait_until(
        Duration::from_secs(10),
        || buffer.commit_busy_for().is_none(),
        || format!("busy {:?} with nothing to do", buffer.commit_busy_for()),
    )
    .await;
    buffer.shared().commit_gate.set_closed(true);
    let append = {
        let b = buffer.clone();
        tokio::spawn(async move { b.append(recs(0, 2)).await })
    };
    wait_until(
        Duration::from_secs(10),
        || buffer.commit_busy_for().is_some(),
        || "the round never started".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = buffer.commit_busy_for().expect("still in the held round");
    assert!(held >= Duration::from_millis(250), "{held:?}");
    let stall = crate::watchdog::check(crate::watchdog::Probe {
        committer_alive: buffer.committer_alive(),
        commit_busy_for: Some(held + crate::watchdog::COMMIT_STALL_LIMIT),
        buffer_failing_for: None,
        uplink_overdue: None,
    });
    assert!(stall.is_err(), "a round past the limit must not be fed");

    buffer.shared().commit_gate.set_closed(false);
    assert!(matches!(
        append.await.unwrap().unwrap(),
        Appended::Stored { .. }
    ));
    // The round answers its callers before the committer marks itself idle, so the append
    // can return a moment before that.
    wait_until(
        Duration::from_secs(10),
        || buffer.commit_busy_for().is_none(),
        || format!("still busy {:?} after the round", buffer.commit_busy_for()),
    )
    .await;
}

/// Polls `done` until it holds; panics with `failure()` if it does not within `limit`.
async fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> bool,
    failure: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{}", failure());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits (bounded) until `n` appends since open have been sent to the committer.
async fn appends_queued(buffer: &Buffer, n: u64) {
    let queued = || buffer.shared().appends_queued.load(Ordering::Acquire);
    wait_until(
        Duration::from_secs(30),
        || queued() >= n,
        || {
            format!(
                "only {} of {n} appends reached the committer's queue",
                queued()
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_puts_a_burst_of_appends_in_one_flush() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    let flushes_before = buffer.stats().flushes;
    buffer.shared().commit_gate.set_closed(true);
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let b = buffer.clone();
        tasks.push(tokio::spawn(async move {
            (i, b.append(recs(i * 1000, 3)).await)
        }));
    }
    // Every request is in the committer's queue (not merely reserved: the send comes after
    // the reservation) before the gate opens, so the round takes them all.
    appends_queued(&buffer, 200).await;
    assert_eq!(buffer.stats().in_flight_records, 600);
    buffer.shared().commit_gate.set_closed(false);

    let mut ranges = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result.unwrap() {
            Appended::Stored {
                first_seq,
                last_seq,
            } => ranges.push((first_seq, last_seq, i)),
            Appended::Rejected | Appended::Duplicate => panic!("not stored"),
        }
    }
    assert_eq!(
        buffer.stats().flushes - flushes_before,
        1,
        "one round, one flush"
    );
    ranges.sort();
    let mut expect = 1;
    for &(first, last, _) in &ranges {
        assert_eq!(
            (first, last),
            (expect, expect + 2),
            "consecutive, disjoint ranges"
        );
        expect = last + 1;
    }
    // Each caller's records are stored under the seqs it was told.
    let stored = all(&buffer);
    assert_eq!(stored.len(), 600);
    for &(first, _, i) in &ranges {
        for k in 0..3 {
            let (seq, r) = &stored[(first - 1 + k) as usize];
            assert_eq!(*seq, first + k);
            assert_eq!(*r, rec(i * 1000 + k));
        }
    }
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.in_flight_records, stats.next_seq),
        (600, 0, 601)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_distinct_consecutive_ranges_in_few_flushes() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let b = buffer.clone();
        tasks.push(tokio::spawn(async move {
            stored(&b, recs(i * 10, 1 + i % 5)).await
        }));
    }
    let mut ranges = Vec::new();
    for task in tasks {
        ranges.push(task.await.unwrap());
    }
    ranges.sort();
    let mut expect = 1;
    for (first, last) in ranges {
        assert_eq!(first, expect);
        assert!(last >= first);
        expect = last + 1;
    }
    let stats = buffer.stats();
    assert_eq!(stats.next_seq, expect);
    assert_eq!(stats.records, expect - 1);
    assert!(
        stats.flushes < 200,
        "{} flushes for 200 appends",
        stats.flushes
    );
}

#[tokio::test]
async fn read_after_returns_whole_chunks_within_the_limits() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    assert!(buffer.read_after(None, 10, 10).unwrap().is_empty());
    assert_eq!(stored(&buffer, recs(100, 3)).await, (1, 3));
    assert_eq!(stored(&buffer, recs(200, 2)).await, (4, 5));
    assert_eq!(stored(&buffer, recs(300, 4)).await, (6, 9));

    let firsts = |chunks: Vec<StoredChunk>| chunks.iter().map(|c| c.first_seq).collect::<Vec<_>>();
    assert_eq!(
        firsts(buffer.read_after(None, 100, usize::MAX).unwrap()),
        [1, 4, 6]
    );
    // The first chunk whose FIRST seq is after `after_seq`: 2 is inside chunk 1..=3.
    assert_eq!(
        firsts(buffer.read_after(Some(2), 100, usize::MAX).unwrap()),
        [4, 6]
    );
    assert_eq!(
        firsts(buffer.read_after(Some(3), 100, usize::MAX).unwrap()),
        [4, 6]
    );
    assert_eq!(
        firsts(buffer.read_after(Some(4), 100, usize::MAX).unwrap()),
        [6]
    );
    assert!(buffer
        .read_after(Some(6), 100, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(buffer
        .read_after(Some(9), 100, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(buffer
        .read_after(Some(u64::MAX), 100, usize::MAX)
        .unwrap()
        .is_empty());
    // Record limit: 3 + 2 = 5 fits, + 4 does not.
    assert_eq!(
        firsts(buffer.read_after(None, 5, usize::MAX).unwrap()),
        [1, 4]
    );
    assert_eq!(
        firsts(buffer.read_after(None, 8, usize::MAX).unwrap()),
        [1, 4]
    );
    // At least one chunk, even when it alone is over the limits.
    assert_eq!(firsts(buffer.read_after(None, 1, 1).unwrap()), [1]);
    assert_eq!(firsts(buffer.read_after(None, 0, 0).unwrap()), [1]);
    // Byte limit, in encoded value lengths.
    let chunks = buffer.read_after(None, 100, usize::MAX).unwrap();
    let lens: Vec<usize> = chunks.iter().map(|c| c.encoded_len).collect();
    let total: u64 = lens.iter().map(|&l| l as u64).sum();
    assert_eq!(buffer.stats().bytes, total);
    assert_eq!(
        firsts(buffer.read_after(None, 100, lens[0] + lens[1]).unwrap()),
        [1, 4]
    );
    assert_eq!(
        firsts(buffer.read_after(None, 100, lens[0] + lens[1] - 1).unwrap()),
        [1]
    );
    // Contents and seqs.
    assert_eq!(chunks[1].records, recs(200, 2));
    assert_eq!(chunks[2].last_seq(), 9);
}

#[tokio::test]
async fn ack_through_removes_only_whole_durable_chunks() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    stored(&buffer, recs(0, 3)).await; // 1..=3
    stored(&buffer, recs(3, 2)).await; // 4..=5
    stored(&buffer, recs(5, 4)).await; // 6..=9
    assert_eq!(buffer.ack_through(0).unwrap(), 0);
    assert_eq!(buffer.ack_through(2).unwrap(), 0, "chunk 1..=3 straddles 2");
    assert_eq!(
        buffer.ack_through(4).unwrap(),
        3,
        "only 1..=3; 4..=5 straddles 4"
    );
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.oldest_seq), (6, Some(4)));
    assert_eq!(buffer.ack_through(3).unwrap(), 0, "already gone");
    assert_eq!(buffer.ack_through(8).unwrap(), 2);
    assert_eq!(buffer.ack_through(u64::MAX).unwrap(), 4);
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.bytes, stats.oldest_seq), (0, 0, None));
    assert_eq!(stored(&buffer, recs(9, 1)).await, (10, 10));
    assert_eq!(all(&buffer), vec![(10, rec(9))]);
}

fn limited(dir: &Path, max_records: u64, resume: u8, when_full: WhenFull) -> BufferOptions {
    let mut o = opts(dir);
    o.max_records = max_records;
    o.resume_below_percent = resume;
    o.when_full = when_full;
    o
}

async fn still_pending(task: &tokio::task::JoinHandle<Result<Appended, BufferError>>) -> bool {
    tokio::time::sleep(Duration::from_millis(150)).await;
    !task.is_finished()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_waits_for_the_low_water_mark_and_drops_nothing() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&limited(dir.path(), 100, 50, WhenFull::Block));
    for i in 0..10 {
        stored(&buffer, recs(i * 10, 10)).await;
    }
    // Full: a further append waits.
    let b = buffer.clone();
    let first = tokio::spawn(async move { b.append(recs(1000, 5)).await });
    let pending = tokio::time::timeout(Duration::from_millis(200), async {
        while !first.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(pending.is_err(), "append into a full buffer completed");
    assert!(buffer.stats().full);
    // Later appends wait too, even small ones.
    let waiting: Vec<_> = (0..3)
        .map(|k| {
            let b = buffer.clone();
            tokio::spawn(async move { b.append(recs(2000 + k * 10, 10)).await })
        })
        .collect();
    // 90 left: room for the 5, but above the low-water mark (50), so still held.
    assert_eq!(buffer.ack_through(10).unwrap(), 10);
    assert!(still_pending(&first).await);
    assert!(buffer.stats().full);
    // 50 left: at the low-water mark; everyone fits (50 + 5 + 30).
    assert_eq!(buffer.ack_through(50).unwrap(), 40);
    let got = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("append resumed")
        .unwrap()
        .unwrap();
    assert!(matches!(got, Appended::Stored { .. }));
    for task in waiting {
        let got = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(got, Ok(Ok(Ok(Appended::Stored { .. })))));
    }
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.dropped_records, stats.full),
        (85, 0, false)
    );
    let seqs: Vec<u64> = all(&buffer).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (51..=135).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_also_applies_to_the_byte_limit() {
    let dir = TempDir::new().unwrap();
    let probe = open(&opts(dir.path()));
    stored(&probe, recs(0, 4)).await;
    let chunk_bytes = probe.stats().bytes;
    drop(probe);
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.max_bytes = chunk_bytes * 2;
    o.resume_below_percent = 50;
    let buffer = open(&o);
    stored(&buffer, recs(0, 4)).await;
    stored(&buffer, recs(0, 4)).await;
    let b = buffer.clone();
    let task = tokio::spawn(async move { b.append(recs(0, 4)).await });
    assert!(still_pending(&task).await);
    buffer.ack_through(4).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(
        got,
        Ok(Ok(Ok(Appended::Stored {
            first_seq: 9,
            last_seq: 12
        })))
    ));
}

#[tokio::test]
async fn reject_refuses_until_the_low_water_mark_without_spending_seqs() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&limited(dir.path(), 20, 50, WhenFull::Reject));
    stored(&buffer, recs(0, 10)).await;
    stored(&buffer, recs(10, 8)).await;
    assert_eq!(
        buffer.append(recs(20, 3)).await.unwrap(),
        Appended::Rejected
    );
    assert!(buffer.stats().full);
    assert_eq!(
        buffer.append(recs(20, 1)).await.unwrap(),
        Appended::Rejected,
        "full until the low-water mark, even if it would fit"
    );
    assert_eq!(buffer.ack_through(10).unwrap(), 10);
    let stats = buffer.stats();
    assert_eq!(
        (stats.full, stats.rejected_appends, stats.records),
        (false, 2, 8)
    );
    assert_eq!(stored(&buffer, recs(20, 3)).await, (19, 21));
}

#[tokio::test]
async fn drop_oldest_removes_whole_oldest_chunks_and_counts_them() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&limited(dir.path(), 30, 90, WhenFull::DropOldest));
    stored(&buffer, recs(0, 10)).await; // 1..=10
    stored(&buffer, recs(10, 10)).await; // 11..=20
    stored(&buffer, recs(20, 10)).await; // 21..=30
    assert_eq!(stored(&buffer, recs(30, 15)).await, (31, 45));
    let stats = buffer.stats();
    assert_eq!(
        (
            stats.records,
            stats.dropped_records,
            stats.oldest_seq,
            stats.full
        ),
        (25, 20, Some(21), false)
    );
    let got = all(&buffer);
    assert_eq!(got.first().map(|(s, _)| *s), Some(21));
    assert_eq!(got.len(), 25);
    assert_eq!(got[0].1, rec(20));
    // Acks after drops still count exactly.
    assert_eq!(buffer.ack_through(45).unwrap(), 25);
    assert_eq!(buffer.stats().records, 0);
}

#[tokio::test]
async fn empty_and_oversized_appends_are_errors() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&limited(dir.path(), 10, 90, WhenFull::Block));
    assert!(matches!(
        buffer.append(Vec::new()).await,
        Err(BufferError::EmptyAppend { .. })
    ));
    let err = buffer.append(recs(0, 11)).await.unwrap_err();
    assert!(
        matches!(err, BufferError::TooLarge { records: 11, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("max_records 10"), "{err}");
    assert_eq!(buffer.stats().next_seq, 1);
    assert_eq!(stored(&buffer, recs(0, 10)).await, (1, 10));
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.max_records = 0;
    assert!(matches!(
        Buffer::open(o),
        Err(BufferError::InvalidOptions { .. })
    ));
    let mut o = opts(dir.path());
    o.resume_below_percent = 101;
    assert!(matches!(
        Buffer::open(o),
        Err(BufferError::InvalidOptions { .. })
    ));
}

#[tokio::test]
async fn subscribe_follows_the_last_durable_seq() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    let mut rx = buffer.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    let b = buffer.clone();
    let waiter = tokio::spawn(async move {
        rx.changed().await.unwrap();
        let seq = *rx.borrow_and_update();
        seq
    });
    stored(&buffer, recs(0, 4)).await;
    assert_eq!(waiter.await.unwrap(), 4);
    assert_eq!(*b.subscribe().borrow(), 4);
}

/// Opens a closed buffer's sled database directly. sled lets go of its file lock a moment
/// after the last handle drops (its IO threads hold one briefly), so this retries for up to
/// ten seconds, as long as the buffer itself waits (`store::LOCK_WAIT`): on a loaded or
/// emulated machine "briefly" can be seconds.
fn raw_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline && e.to_string().contains("acquire lock") => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opening {}: {e}", path.display()),
        }
    }
}

/// Writes raw entries into the queue tree of a closed buffer.
fn tamper(path: &Path, entries: &[(&[u8], &[u8])]) {
    let db = raw_sled(path);
    let tree = db.open_tree(QUEUE_TREE).unwrap();
    for (k, v) in entries {
        tree.insert(k, *v).unwrap();
    }
    db.flush().unwrap();
}

/// The chunk value of the releases before format 2, frozen here on purpose: `[1][count u32
/// BE][zstd(bincode(records))]`, zstd level 1, bincode 2 `config::standard()`.
fn encode_v1_chunk(records: &[Record]) -> Vec<u8> {
    let plain = bincode::serde::encode_to_vec(records, bincode::config::standard()).unwrap();
    let mut out = vec![1u8];
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    out.extend_from_slice(&zstd::bulk::compress(&plain, 1).unwrap());
    out
}

/// A buffer written by the previous release (format-1 chunks and its counter) opens with its
/// depth, reads and drains record for record, and takes new (format-2) chunks after it;
/// a chunk only partly acknowledged stays, whichever format it is in.
#[tokio::test]
async fn a_buffer_of_format_1_chunks_opens_reads_and_drains() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    drop(open(&o));
    let (old_a, old_b) = (recs(0, 3), recs(3, 1));
    let (value_a, value_b) = (encode_v1_chunk(&old_a), encode_v1_chunk(&old_b));
    tamper(
        &o.path,
        &[
            (&seq_key(1), &value_a),
            (&seq_key(4), &value_b),
            (&store::NEXT_SEQ_KEY[..], &5u64.to_be_bytes()),
        ],
    );

    let buffer = open(&o);
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.bytes, stats.next_seq, stats.oldest_seq),
        (4, (value_a.len() + value_b.len()) as u64, 5, Some(1))
    );
    assert_eq!(stats.quarantined_chunks, 0);
    assert_eq!(stored(&buffer, recs(4, 2)).await, (5, 6));
    let chunks = buffer.read_after(None, 100, usize::MAX).unwrap();
    assert_eq!(
        chunks
            .iter()
            .map(|c| (c.first_seq, c.encoded_len))
            .collect::<Vec<_>>()[..2],
        [(1, value_a.len()), (4, value_b.len())]
    );
    reads_back_seqs_1_to(&buffer, 6);

    assert_eq!(
        buffer.ack_through(2).unwrap(),
        0,
        "old chunk 1..=3 straddles 2"
    );
    assert_eq!(
        buffer.ack_through(5).unwrap(),
        4,
        "both old chunks; 5..=6 straddles"
    );
    assert_eq!(buffer.ack_through(6).unwrap(), 2);
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.bytes, stats.oldest_seq), (0, 0, None));
    assert_eq!(stats.quarantined_chunks, 0);
}

/// The buffer holds `recs(0, n)` with seqs `1..=n`, in order.
fn reads_back_seqs_1_to(buffer: &Buffer, n: u64) {
    let got = all(buffer);
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(
        got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        recs(0, n)
    );
}

/// The queue's entries (first seq, value) whose keys are in `seqs`.
fn stored_values(buffer: &Buffer, seqs: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    let store = buffer.shared().store.get().unwrap();
    store
        .queue
        .range(seq_key(seqs.start)..seq_key(seqs.end))
        .map(|e| {
            let (k, v) = e.unwrap();
            (store::key_seq(&k).unwrap(), v.to_vec())
        })
        .collect()
}

/// Format 2 stores small chunks as plain bincode and large ones zstd-compressed; both read
/// back exactly, and an unknown codec byte is quarantined at open like any bad header.
#[tokio::test]
async fn format_2_chunks_are_plain_when_small_compressed_when_large_and_checked() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = open(&o);
    stored(&buffer, recs(0, 1)).await; // 1
    stored(&buffer, recs(1, 200)).await; // 2..=201
    stored(&buffer, recs(201, 1)).await; // 202
    let values = stored_values(&buffer, 1..203);
    let header: Vec<(u64, u8, u8)> = values.iter().map(|(s, v)| (*s, v[0], v[5])).collect();
    assert_eq!(
        header,
        [
            (1, store::FORMAT_VERSION, store::CODEC_PLAIN),
            (2, store::FORMAT_VERSION, store::CODEC_ZSTD),
            (202, store::FORMAT_VERSION, store::CODEC_PLAIN)
        ]
    );
    let plain_200 = bincode::serde::encode_to_vec(recs(1, 200), bincode::config::standard());
    assert!(
        values[1].1.len() < plain_200.unwrap().len() / 2,
        "not compressed"
    );
    assert_eq!(
        all(&buffer).into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        recs(0, 202)
    );
    drop(buffer);

    let mut unknown_codec = values[2].1.clone();
    unknown_codec[5] = 7;
    tamper(&o.path, &[(&seq_key(202), &unknown_codec)]);
    // The codec byte is part of the header, so it is found (and quarantined) at open.
    let buffer = open(&o);
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.quarantined_chunks), (201, 1));
    assert!(buffer
        .read_after(Some(201), 1000, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(
        store::chunk_header(&unknown_codec)
            .unwrap_err()
            .contains("codec 7"),
        "the reason names the codec"
    );
    assert_eq!(buffer.stats().records, 201);
}

/// Format 3: the small appends of one commit round share one entry (a run of them, broken
/// by a large append, which keeps its own), read back record for record with their seqs; an
/// entry only partly acknowledged stays; the byte gauge follows the entries as stored, also
/// after a reopen; and a damaged grouped value is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rounds_small_appends_share_one_entry_and_leave_only_whole() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = open(&o);
    buffer.shared().commit_gate.set_closed(true);
    // One at a time into the held round, so the round's order is known.
    let shapes = [(0, 1), (1, 1), (2, 1), (3, 200), (203, 1), (204, 1)];
    let mut tasks = Vec::new();
    for (queued, (tag, n)) in shapes.into_iter().enumerate() {
        let b = buffer.clone();
        tasks.push(tokio::spawn(async move { b.append(recs(tag, n)).await }));
        appends_queued(&buffer, queued as u64 + 1).await;
    }
    buffer.shared().commit_gate.set_closed(false);
    let mut ranges = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Appended::Stored {
                first_seq,
                last_seq,
            } => ranges.push((first_seq, last_seq)),
            other => panic!("not stored: {other:?}"),
        }
    }
    assert_eq!(
        ranges,
        [(1, 1), (2, 2), (3, 3), (4, 203), (204, 204), (205, 205)]
    );

    let values = stored_values(&buffer, 1..206);
    let layout: Vec<(u64, u8, u32)> = values
        .iter()
        .map(|(seq, v)| (*seq, v[0], store::chunk_header(v).unwrap()))
        .collect();
    assert_eq!(
        layout,
        [
            (1, store::FORMAT_GROUPED, 3),
            (4, store::FORMAT_VERSION, 200),
            (204, store::FORMAT_GROUPED, 2)
        ]
    );
    let entry_bytes: u64 = values.iter().map(|(_, v)| v.len() as u64).sum();
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.bytes, stats.in_flight_bytes),
        (205, entry_bytes, 0)
    );
    let chunks = buffer.read_after(None, 1000, usize::MAX).unwrap();
    assert_eq!(
        chunks
            .iter()
            .map(|c| (c.first_seq, c.records.len()))
            .collect::<Vec<_>>(),
        [(1, 3), (4, 200), (204, 2)]
    );
    reads_back_seqs_1_to(&buffer, 205);

    assert_eq!(
        buffer.ack_through(2).unwrap(),
        0,
        "1..=3 is only partly acked"
    );
    assert_eq!(buffer.ack_through(3).unwrap(), 3);
    drop(buffer);

    let buffer = open(&o);
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.bytes, stats.oldest_seq),
        (202, (values[1].1.len() + values[2].1.len()) as u64, Some(4))
    );
    assert_eq!(buffer.ack_through(204).unwrap(), 200, "204..=205 straddles");
    assert_eq!(buffer.ack_through(205).unwrap(), 2);
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.bytes, stats.quarantined_chunks),
        (0, 0, 0)
    );

    let grouped = &values[0].1;
    let mut short = grouped.clone();
    short.truncate(grouped.len() - 1);
    assert!(store::decode_chunk(&short).unwrap_err().contains("claims"));
    let mut miscounted = grouped.clone();
    miscounted[4] = 4;
    assert!(store::decode_chunk(&miscounted)
        .unwrap_err()
        .contains("header says 4"));
}

#[tokio::test]
async fn unreadable_chunks_are_quarantined_and_never_wedge_the_reader() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = open(&o);
    stored(&buffer, recs(0, 2)).await; // 1..=2
    stored(&buffer, recs(2, 2)).await; // 3..=4
    stored(&buffer, recs(4, 2)).await; // 5..=6
    drop(buffer);
    tamper(
        &o.path,
        &[
            // A good header over a payload bincode cannot read.
            (
                &seq_key(3),
                &[1, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
            // An unknown format version.
            (&seq_key(100), &[9, 0, 0, 0, 1, 0]),
            // A key that is not 8 bytes.
            (&[0, 1, 2], &[1, 0, 0, 0, 1, 0]),
        ],
    );

    let buffer = open(&o);
    let stats = buffer.stats();
    assert_eq!(
        stats.quarantined_chunks, 2,
        "bad header and bad key, at open"
    );
    assert_eq!((stats.records, stats.next_seq), (6, 7));
    let err = buffer.read_after(Some(2), 100, usize::MAX).unwrap_err();
    match &err {
        BufferError::Corrupt { key_hex, seq, .. } => {
            assert_eq!((key_hex.as_str(), *seq), ("0000000000000003", Some(3)));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("0000000000000003"), "{err}");
    // The next read continues after it.
    let chunks = buffer.read_after(Some(2), 100, usize::MAX).unwrap();
    assert_eq!(chunks.iter().map(|c| c.first_seq).collect::<Vec<_>>(), [5]);
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.quarantined_chunks), (4, 3));
    assert_eq!(buffer.ack_through(6).unwrap(), 4);
    assert_eq!(stored(&buffer, recs(6, 1)).await, (7, 7));
}

#[tokio::test]
async fn a_corrupt_chunk_after_good_ones_ends_the_read_early() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = open(&o);
    stored(&buffer, recs(0, 2)).await; // 1..=2
    stored(&buffer, recs(2, 2)).await; // 3..=4
    stored(&buffer, recs(4, 2)).await; // 5..=6
    drop(buffer);
    tamper(&o.path, &[(&seq_key(3), &[1, 0, 0, 0, 2, 0xFF])]);
    let buffer = open(&o);
    let firsts: Vec<u64> = buffer
        .read_after(None, 100, usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.first_seq)
        .collect();
    assert_eq!(firsts, [1]);
    let firsts: Vec<u64> = buffer
        .read_after(Some(2), 100, usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.first_seq)
        .collect();
    assert_eq!(firsts, [5]);
}

#[tokio::test]
async fn a_corrupt_database_is_moved_aside_and_a_fresh_one_opened() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    std::fs::create_dir_all(&o.path).unwrap();
    std::fs::write(o.path.join("conf"), b"this is not a sled config").unwrap();
    std::fs::write(o.path.join("db"), vec![0xA5; 4096]).unwrap();
    let buffer = open(&o);
    assert_eq!(buffer.stats().next_seq, 1);
    assert_eq!(stored(&buffer, recs(0, 1)).await, (1, 1));
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("buffer.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(dir.path().join(&aside[0]).join("db").exists());
}

/// Without a pinned floor (as in production), a buffer with no counter starts its seqs at
/// the clock, so a gateway whose buffer was moved aside continues above every seq it
/// handed out before.
#[tokio::test]
async fn without_a_counter_seqs_start_from_the_clock() {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.seq_floor = None;
    let before = super::store::seq_floor_from_clock();
    let buffer = open(&o);
    let (first, _) = stored(&buffer, recs(0, 3)).await;
    assert!(
        first >= before,
        "first seq {first} is below the clock floor {before}"
    );
    drop(buffer);
    // Corrupt it: the fresh database that replaces it continues above the old seqs.
    for entry in std::fs::read_dir(&o.path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, vec![0xA5; 4096]).unwrap();
        }
    }
    std::fs::write(o.path.join("conf"), b"this is not a sled config").unwrap();
    let buffer = open(&o);
    let moved_aside = std::fs::read_dir(dir.path()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("buffer.corrupt-")
    });
    assert!(moved_aside, "the corrupt database was not moved aside");
    assert_eq!(buffer.stats().records, 0);
    let (again, _) = stored(&buffer, recs(0, 1)).await;
    assert!(
        again > first + 2,
        "seq {again} reuses or precedes {first}..={}",
        first + 2
    );
}

#[tokio::test]
async fn a_locked_database_is_an_error_and_left_alone() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = open(&o);
    stored(&buffer, recs(0, 1)).await;
    let err = Buffer::open(o.clone()).unwrap_err();
    assert!(matches!(err, BufferError::Open { .. }), "{err}");
    // The database and its durable mark.
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 2, "nothing moved aside");
    assert_eq!(buffer.stats().records, 1);
}

/// Appends `rounds` chunks of `per_append` records from each of `appenders` tasks, then
/// drains in uplink-sized reads, printing the rates.
async fn throughput(appenders: u64, per_append: u64, rounds: u64) {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.cache_capacity_bytes = 64 << 20;
    let buffer = open(&o);
    let batch = recs(0, per_append);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let (b, batch) = (buffer.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                stored(&b, batch.clone()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let stats = buffer.stats();
    let total = appenders * per_append * rounds;
    assert_eq!(stats.records, total);
    println!(
        "{appenders} appenders x {per_append} records x {rounds}: {total} records in \
         {elapsed:?}: {:.0} records/s, {} flushes ({:.0} records/flush), {} bytes stored, \
         {} on disk",
        total as f64 / elapsed.as_secs_f64(),
        stats.flushes,
        total as f64 / stats.flushes as f64,
        stats.bytes,
        stats.disk_bytes,
    );
    let start = Instant::now();
    let mut after = None;
    loop {
        let chunks = buffer.read_after(after, 5000, usize::MAX).unwrap();
        let Some(last) = chunks.last() else { break };
        after = Some(last.last_seq());
        buffer.ack_through(last.last_seq()).unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "  drained (read + ack) in {elapsed:?}: {:.0} records/s",
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(buffer.stats().records, 0);
}

/// `cargo test --release --lib buffer::tests::throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run in release"]
async fn throughput_100_appenders_x_50_records() {
    throughput(100, 50, 100).await;
}

/// The worst case for per-chunk overhead: protocols that send one record per frame.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run in release"]
async fn throughput_1000_appenders_x_1_record() {
    throughput(1000, 1, 200).await;
}

// ---------------------------------------------------------------------------------------------
// Alert level
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_alert_level_defaults_to_half_of_max_records_and_is_validated() {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    assert_eq!(o.alert_level(), DEFAULT_MAX_RECORDS / 2);
    o.max_records = 10_000;
    assert_eq!(o.alert_level(), 5_000);
    o.alert_records = Some(0);
    assert_eq!(open(&o).stats().alert_records, 0, "0 turns it off");
    o.alert_records = Some(10_001);
    let err = Buffer::open(o.clone()).unwrap_err();
    assert!(err.to_string().contains("alert_records"), "{err}");
}

#[tokio::test]
async fn the_alert_gauge_follows_the_backlog_and_survives_a_reopen() {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.alert_records = Some(10);
    let buffer = open(&o);
    let s = buffer.stats();
    assert_eq!((s.alert_records, s.above_alert), (10, false));
    stored(&buffer, recs(0, 6)).await; // 1..=6
    assert!(!buffer.stats().above_alert);
    stored(&buffer, recs(6, 5)).await; // 7..=11
    assert!(buffer.stats().above_alert, "11 records ≥ 10");
    drop(buffer);
    let buffer = open(&o);
    assert!(
        buffer.stats().above_alert,
        "raised again at open from the stored depth"
    );
    buffer.ack_through(6).unwrap();
    assert!(!buffer.stats().above_alert, "5 records ≤ 9, the clear mark");
}

// ---------------------------------------------------------------------------------------------
// Disk reclaim
// ---------------------------------------------------------------------------------------------

fn reclaiming(dir: &Path, above_bytes: u64) -> BufferOptions {
    let mut o = opts(dir);
    o.reclaim_above_bytes = above_bytes;
    o
}

/// Appends `chunks` chunks of `per` records, then acks everything with one ack (so exactly one
/// reclaim hint follows); returns the last seq.
async fn fill_and_drain(buffer: &Buffer, chunks: u64, per: u64) -> u64 {
    let mut last = 0;
    for i in 0..chunks {
        last = stored(buffer, recs(i * per, per)).await.1;
    }
    assert_eq!(buffer.ack_through(last).unwrap(), chunks * per);
    last
}

/// Waits (bounded) until `n` reclaim attempts have finished.
async fn reclaims_finished(buffer: &Buffer, n: u64) {
    wait_until(
        Duration::from_secs(20),
        || buffer.shared().reclaims_finished.load(Ordering::Relaxed) >= n,
        || "no reclaim finished within 20 s".into(),
    )
    .await;
}

/// What a reclaim may leave beside the database directory.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("buffer.reclaim-"))
        .collect()
}

fn inject(dir: &Path, fault: reclaim::Fault) {
    reclaim::FAULTS
        .lock()
        .unwrap()
        .push((dir.to_path_buf(), fault));
}

fn clear_faults(dir: &Path) {
    reclaim::FAULTS.lock().unwrap().retain(|(d, _)| d != dir);
}

#[tokio::test]
async fn disk_space_is_reclaimed_once_drained_and_seqs_continue() {
    let dir = TempDir::new().unwrap();
    let o = reclaiming(dir.path(), 1 << 20);
    let buffer = open(&o);
    let mut last = 0;
    for i in 0..200 {
        last = stored(&buffer, recs(i * 250, 250)).await.1;
    }
    assert_eq!(last, 50_000);
    let before = buffer.stats().disk_bytes;
    assert!(before > 1 << 20, "50k records take only {before} bytes");
    assert_eq!(
        reclaim::dir_size(&o.path),
        before + 62,
        "sled's size is the directory's"
    );
    // Half drained: not empty, so nothing is reclaimed.
    buffer.ack_through(25_000).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(buffer.stats().disk_reclaims, 0);

    buffer.ack_through(last).unwrap();
    reclaims_finished(&buffer, 1).await;
    let s = buffer.stats();
    assert_eq!(s.disk_reclaims, 1);
    let on_disk = reclaim::dir_size(&o.path);
    // An empty sled database is one 512 KiB segment.
    assert!(
        s.disk_bytes < before / 3 && on_disk <= 600 << 10,
        "after the reclaim: sled says {}, the directory holds {on_disk} (before: {before})",
        s.disk_bytes
    );
    assert!(s.disk_reclaimed_bytes + s.disk_bytes >= before, "{s:?}");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert_eq!((s.records, s.next_seq, s.oldest_seq), (0, 50_001, None));

    // The counter went with it, here and across a reopen.
    assert_eq!(stored(&buffer, recs(0, 2)).await, (50_001, 50_002));
    assert_eq!(all(&buffer).len(), 2);
    drop(buffer);
    let buffer = open(&o);
    assert_eq!(buffer.stats().next_seq, 50_003);
    assert_eq!(
        all(&buffer).iter().map(|r| r.0).collect::<Vec<_>>(),
        [50_001, 50_002]
    );
    // A small drain stays below the threshold: no second reclaim.
    buffer.ack_through(50_002).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        buffer.stats().disk_reclaims,
        0,
        "a new handle counts from 0"
    );
    assert_eq!(stored(&buffer, recs(0, 1)).await, (50_003, 50_003));
}

#[tokio::test]
async fn a_reclaim_keeps_the_quarantine_tree() {
    let dir = TempDir::new().unwrap();
    let o = reclaiming(dir.path(), 1);
    let buffer = open(&o);
    stored(&buffer, recs(0, 2)).await; // 1..=2
    drop(buffer);
    tamper(&o.path, &[(&seq_key(100), &[9, 0, 0, 0, 1, 0])]);
    let buffer = open(&o);
    assert_eq!(buffer.stats().quarantined_chunks, 1);
    buffer.ack_through(2).unwrap();
    reclaims_finished(&buffer, 1).await;
    assert_eq!(buffer.stats().disk_reclaims, 1);
    assert_eq!(stored(&buffer, recs(2, 1)).await, (3, 3));
    drop(buffer);
    let db = raw_sled(&o.path);
    let quarantine = db.open_tree(super::store::QUARANTINE_TREE).unwrap();
    let kept: Vec<_> = quarantine.iter().map(|e| e.unwrap()).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0.as_ref(), &seq_key(100));
    assert_eq!(kept[0].1.as_ref(), &[9, 0, 0, 0, 1, 0]);
}

#[tokio::test]
async fn a_reclaim_keeps_the_commands_tree_and_lends_it_after() {
    let dir = TempDir::new().unwrap();
    let o = reclaiming(dir.path(), 1);
    let buffer = open(&o);
    buffer
        .with_commands(|tree| tree.insert(b"q-kept", b"a queued command".as_slice()))
        .unwrap();
    let last = stored(&buffer, recs(0, 2)).await.1;
    buffer.ack_through(last).unwrap();
    reclaims_finished(&buffer, 1).await;
    assert_eq!(buffer.stats().disk_reclaims, 1);
    // The tree lent after the swap is the new database's, holding the copy.
    let kept = buffer
        .with_commands(|tree| tree.get(b"q-kept"))
        .unwrap()
        .map(|v| v.to_vec());
    assert_eq!(kept.as_deref(), Some(b"a queued command".as_slice()));
    buffer
        .with_commands(|tree| tree.insert(b"q-after", b"x".as_slice()))
        .unwrap();
    buffer.flush_commands().await.unwrap();
    drop(buffer);
    let db = raw_sled(&o.path);
    let commands = db.open_tree(super::store::COMMANDS_TREE).unwrap();
    assert_eq!(
        commands.len(),
        2,
        "both entries durable in the database that stayed"
    );
}

/// Once a reclaim (held by a `Pause` fault) has taken the store, starts `n` appends of `per`
/// records tagged from `tag`, and returns once all of them wait in the committer's queue.
async fn appends_behind_a_held_reclaim(
    buffer: &Buffer,
    n: u64,
    per: u64,
    tag: u64,
) -> Vec<tokio::task::JoinHandle<Result<Appended, BufferError>>> {
    wait_until(
        Duration::from_secs(10),
        || buffer.shared().store.get().is_none(),
        || "the reclaim never took the store".into(),
    )
    .await;
    let queued_before = buffer.shared().appends_queued.load(Ordering::Acquire);
    let tasks = (0..n)
        .map(|i| {
            let b = buffer.clone();
            tokio::spawn(async move { b.append(recs(tag + i * per, per)).await })
        })
        .collect();
    appends_queued(buffer, queued_before + n).await;
    tasks
}

/// Appends waiting in the commit queue when the commit thread stops (here: a reclaim that
/// crashes and leaves no database) are answered `Closed` instead of waiting forever, and
/// their reserved room is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_queued_when_the_commit_thread_stops_fail_closed() {
    let dir = TempDir::new().unwrap();
    let o = reclaiming(dir.path(), 1);
    let buffer = open(&o);
    inject(dir.path(), reclaim::Fault::Pause(reclaim::Step::Built));
    inject(dir.path(), reclaim::Fault::Crash(reclaim::Step::MovedOld));
    fill_and_drain(&buffer, 20, 50).await;
    let tasks = appends_behind_a_held_reclaim(&buffer, 5, 3, 0).await;
    assert_eq!(buffer.stats().in_flight_records, 15);
    // Let the reclaim go on, into the crash.
    reclaim::FAULTS
        .lock()
        .unwrap()
        .retain(|(d, f)| !(d == dir.path() && matches!(f, reclaim::Fault::Pause(_))));
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a queued append still waits after the commit thread stopped")
            .unwrap();
        assert!(
            matches!(result, Err(BufferError::Closed { .. })),
            "{result:?}"
        );
    }
    // The thread fails the queued appends before it has finished closing the databases.
    wait_until(
        Duration::from_secs(10),
        || !buffer.committer_alive(),
        || "the commit thread still runs 10 s after failing the appends".into(),
    )
    .await;
    assert_eq!(buffer.stats().in_flight_records, 0);
    clear_faults(dir.path());
}

/// While a reclaim holds the database, appends wait (they never fail), readers see the empty
/// queue it is, and afterwards every append is stored in the new database with the seqs
/// that follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_during_a_reclaim_wait_and_lose_nothing() {
    let dir = TempDir::new().unwrap();
    let o = reclaiming(dir.path(), 1);
    let buffer = open(&o);
    inject(dir.path(), reclaim::Fault::Pause(reclaim::Step::Built));
    let last = fill_and_drain(&buffer, 20, 50).await;
    // All 20 are admitted and waiting in the committer's queue behind the reclaim; then a
    // moment more, in which an append the reclaim failed to hold back would finish.
    let tasks = appends_behind_a_held_reclaim(&buffer, 20, 5, 1000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for t in &tasks {
        assert!(
            !t.is_finished(),
            "an append finished while the reclaim held the store"
        );
    }
    assert!(buffer.read_after(None, 100, usize::MAX).unwrap().is_empty());
    assert_eq!(buffer.ack_through(u64::MAX - 1).unwrap(), 0);
    let s = buffer.stats();
    assert_eq!(
        (s.records, s.in_flight_records, s.oldest_seq),
        (0, 100, None)
    );

    clear_faults(dir.path());
    let mut ranges = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Appended::Stored {
                first_seq,
                last_seq,
            } => ranges.push((first_seq, last_seq)),
            Appended::Rejected | Appended::Duplicate => panic!("not stored"),
        }
    }
    ranges.sort();
    let seqs: Vec<u64> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
    assert_eq!(seqs, (last + 1..=last + 100).collect::<Vec<_>>());
    reclaims_finished(&buffer, 1).await;
    assert_eq!(buffer.stats().disk_reclaims, 1);
    let stored_now = all(&buffer);
    assert_eq!(stored_now.iter().map(|r| r.0).collect::<Vec<_>>(), seqs);
    assert!(leftovers(dir.path()).is_empty());
    drop(buffer);
    assert_eq!(all(&open(&o)).len(), 100, "durable in the new database");
}

/// A reclaim that fails at any step (an IO error) leaves a working buffer at the same path
/// with the counter intact, and nothing beside it.
#[tokio::test]
async fn a_reclaim_failing_at_any_step_leaves_a_working_buffer() {
    use reclaim::Step;
    for step in [
        Step::Built,
        Step::OldReleased,
        Step::MovedOld,
        Step::MovedNew,
    ] {
        let dir = TempDir::new().unwrap();
        let o = reclaiming(dir.path(), 1);
        let buffer = open(&o);
        inject(dir.path(), reclaim::Fault::Fail(step));
        let last = fill_and_drain(&buffer, 10, 30).await;
        reclaims_finished(&buffer, 1).await;
        clear_faults(dir.path());
        assert!(buffer.committer_alive(), "{step:?}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{step:?}: {:?}",
            leftovers(dir.path())
        );
        assert_eq!(
            stored(&buffer, recs(0, 3)).await,
            (last + 1, last + 3),
            "{step:?}"
        );
        assert_eq!(all(&buffer).len(), 3, "{step:?}");
        drop(buffer);
        let buffer = open(&o);
        assert_eq!(buffer.stats().next_seq, last + 4, "{step:?}");
        assert_eq!(all(&buffer).len(), 3, "{step:?}");
    }
}

/// A crash at any step of a reclaim (the process stops there, the disk stays as it is) is
/// settled at the next open: one database at the path, the counter intact, the quarantine
/// kept, nothing beside it.
#[tokio::test]
async fn a_crash_at_any_step_of_a_reclaim_is_settled_at_the_next_open() {
    use reclaim::Step;
    for step in [
        Step::Built,
        Step::OldReleased,
        Step::MovedOld,
        Step::MovedNew,
    ] {
        let dir = TempDir::new().unwrap();
        let o = reclaiming(dir.path(), 1);
        let buffer = open(&o);
        stored(&buffer, recs(0, 1)).await; // 1
        drop(buffer);
        tamper(&o.path, &[(&seq_key(500), &[9, 0, 0, 0, 1, 0])]);
        // Not empty at open (record 1), so the one ack below is the only moment the buffer
        // is empty: one reclaim attempt, which crashes.
        let buffer = open(&o);
        inject(dir.path(), reclaim::Fault::Crash(step));
        let mut last = 1;
        for i in 0..10 {
            last = stored(&buffer, recs(i * 30, 30)).await.1;
        }
        assert_eq!(buffer.ack_through(last).unwrap(), last);
        wait_until(
            Duration::from_secs(10),
            || !buffer.committer_alive(),
            || format!("{step:?}: the commit thread still runs"),
        )
        .await;
        clear_faults(dir.path());
        assert!(
            matches!(
                buffer.append(recs(0, 1)).await,
                Err(BufferError::Closed { .. })
            ),
            "{step:?}"
        );
        drop(buffer);
        let expected: &[&str] = match step {
            Step::Built | Step::OldReleased => &["buffer.reclaim-new"],
            Step::MovedOld => &["buffer.reclaim-new", "buffer.reclaim-old"],
            Step::MovedNew => &["buffer.reclaim-old"],
        };
        let mut left = leftovers(dir.path());
        left.sort();
        assert_eq!(left, expected, "{step:?}");
        if step == Step::MovedOld {
            // As if sled (or anything) recreated the path while the database was moved
            // aside: the next open must still restore the moved one, not keep this.
            std::fs::create_dir_all(o.path.join("blobs")).unwrap();
            std::fs::write(o.path.join("conf"), b"stray").unwrap();
        } else {
            assert!(o.path.exists(), "{step:?}");
        }

        // Reopened with reclaims off: an empty buffer that may reclaim asks for one at open,
        // and that reclaim creates `N` again on the commit thread while this looks (it did,
        // under qemu). What is checked here is what the open itself settled.
        let settled = BufferOptions {
            reclaim_above_bytes: 0,
            ..o.clone()
        };
        let buffer = open(&settled);
        assert!(leftovers(dir.path()).is_empty(), "{step:?}");
        let s = buffer.stats();
        assert_eq!((s.records, s.next_seq), (0, last + 1), "{step:?}");
        assert_eq!(
            stored(&buffer, recs(0, 2)).await,
            (last + 1, last + 2),
            "{step:?}"
        );
        drop(buffer);
        let db = raw_sled(&o.path);
        let quarantine = db.open_tree(super::store::QUARANTINE_TREE).unwrap();
        assert_eq!(quarantine.len(), 1, "{step:?}: the quarantine was lost");
    }
}

/// A chunk over sled's 128 KiB log-entry limit goes to a blob file, which sled never
/// syncs: the append is answered only after fleetedge has synced it (`device_sync.rs`).
#[tokio::test]
async fn an_append_sled_stores_as_a_blob_file_is_synced_before_it_is_answered() {
    let dir = TempDir::new().unwrap();
    let buffer = open(&opts(dir.path()));
    let synced = |buffer: &Buffer| {
        let store = buffer.shared().store.wait().expect("store");
        store.device.blobs_synced.load(Ordering::Relaxed)
    };
    stored(&buffer, recs(0, 3)).await;
    assert_eq!(synced(&buffer), 0, "small chunks make no blob");
    // 300 KiB of seeded random letters and digits: zstd cannot take them under 128 KiB.
    use rand::{Rng, SeedableRng};
    let noise: String = rand::rngs::StdRng::seed_from_u64(7)
        .sample_iter(rand::distr::Alphanumeric)
        .take(300 << 10)
        .map(char::from)
        .collect();
    let mut big = rec(100);
    big.raw = Some(noise);
    stored(&buffer, vec![big.clone()]).await;
    let blob_files = std::fs::read_dir(dir.path().join("buffer").join("blobs"))
        .unwrap()
        .count();
    assert!(
        blob_files >= 1,
        "sled wrote no blob file; the test needs one"
    );
    assert!(
        synced(&buffer) >= 1,
        "the blob was not synced before the answer"
    );
    let last = all(&buffer).pop().map(|(_, r)| r);
    assert_eq!(last, Some(big));
}
