//! Unit tests of the fault handling: records missing at open (the durable mark), seqs that
//! never go back, and the low-disk gate. The full disk itself is tested with the real binary
//! on a tmpfs (`tests/buffer_faults.rs`).

use std::path::Path;

use firmware_protocols::{Protocol, Record};
use tempfile::TempDir;

use super::store::{seq_key, NEXT_SEQ_KEY, QUEUE_TREE};
use super::*;

fn recs(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("dev-{i}"), Protocol::Teltonika, i as i64))
        .collect()
}

fn opts(dir: &Path) -> BufferOptions {
    let mut o = BufferOptions::new(dir.join("buffer"));
    o.cache_capacity_bytes = 4 << 20;
    o.seq_floor = Some(1);
    o.min_free_bytes = 0;
    o
}

async fn store(buffer: &Buffer, n: u64) -> (u64, u64) {
    match buffer.append(recs(n)).await.expect("append") {
        Appended::Stored {
            first_seq,
            last_seq,
        } => (first_seq, last_seq),
        Appended::Rejected | Appended::Duplicate => panic!("not stored"),
    }
}

/// Changes the closed buffer's queue tree behind its back: removes `keys`, sets the counter.
fn damage(path: &Path, remove: &[u64], counter: Option<u64>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        match sled::open(path) {
            Ok(db) => break db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("opening {}: {e}", path.display()),
        }
    };
    let queue = db.open_tree(QUEUE_TREE).expect("queue tree");
    for seq in remove {
        queue.remove(seq_key(*seq)).expect("remove");
    }
    match counter {
        Some(n) => queue.insert(NEXT_SEQ_KEY, &n.to_be_bytes()).map(|_| ()),
        None => queue.remove(NEXT_SEQ_KEY).map(|_| ()),
    }
    .expect("counter");
    db.flush().expect("flush");
}

fn kept_aside(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("buffer.damaged-"))
        .collect()
}

#[tokio::test]
async fn records_missing_at_open_are_reported_kept_aside_and_the_rest_requeued() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(store(&buffer, 2).await, (1, 2));
    assert_eq!(store(&buffer, 2).await, (3, 4));
    assert_eq!(store(&buffer, 2).await, (5, 6));
    assert_eq!(store(&buffer, 3).await, (7, 9));
    drop(buffer);
    // A hole in the middle and a lost tail, and the counter gone with them.
    damage(&o.path, &[3, 7], None);

    let buffer = Buffer::open(o.clone()).unwrap();
    let stats = buffer.stats();
    assert_eq!(stats.lost_records, 5, "{stats:?}");
    assert_eq!(buffer.lost_seq_ranges(), [(3, 4), (7, 9)]);
    assert_eq!(stats.records, 4, "the readable records are re-queued");
    // The counter was lost with the tail: seqs continue at the mark's lease, never below.
    assert!(stats.next_seq >= 10, "seqs went back to {}", stats.next_seq);
    let next = stats.next_seq;
    let firsts: Vec<u64> = buffer
        .read_after(None, 100, usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.first_seq)
        .collect();
    assert_eq!(firsts, [1, 5]);
    assert_eq!(
        kept_aside(dir.path()).len(),
        1,
        "the damaged files are kept"
    );
    assert_eq!(store(&buffer, 1).await, (next, next));
    drop(buffer);

    // Reported once: the next open finds nothing new.
    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(buffer.stats().lost_records, 0);
    assert_eq!(buffer.stats().records, 5);
    assert_eq!(kept_aside(dir.path()).len(), 1);
}

/// A buffer left by a release that wrote the mark as text (format 1) opens with that mark:
/// records missing since are still counted, and the first write moves it to format 2.
#[tokio::test]
async fn a_mark_of_format_1_from_an_older_release_still_counts_missing_records() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(store(&buffer, 2).await, (1, 2));
    assert_eq!(store(&buffer, 2).await, (3, 4));
    drop(buffer);
    let mark_path = durable_mark::mark_path(&o.path);
    let mark = durable_mark::read(&mark_path).expect("a mark");
    std::fs::write(&mark_path, mark.encode()).expect("writing format 1");
    damage(&o.path, &[3], Some(5));

    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(buffer.stats().lost_records, 2);
    assert_eq!(buffer.lost_seq_ranges(), [(3, 4)]);
    assert_eq!(store(&buffer, 1).await, (5, 5));
    drop(buffer);
    let bytes = std::fs::read(&mark_path).expect("mark");
    assert!(
        !bytes.starts_with(b"fleetedge buffer durable mark v1"),
        "still format 1"
    );
    assert_eq!(durable_mark::read(&mark_path).map(|m| m.next_seq), Some(6));
}

#[tokio::test]
async fn acknowledged_records_are_not_missing_and_seqs_never_go_back() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = Buffer::open(o.clone()).unwrap();
    store(&buffer, 2).await;
    store(&buffer, 2).await;
    store(&buffer, 2).await;
    assert_eq!(buffer.ack_through(4).unwrap(), 4);
    drop(buffer);
    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(buffer.stats().lost_records, 0);
    assert_eq!(buffer.stats().next_seq, 7);
    buffer.ack_through(6).unwrap();
    drop(buffer);

    // The counter goes back (an older copy of it came back from damaged files).
    damage(&o.path, &[], Some(2));
    let buffer = Buffer::open(o.clone()).unwrap();
    let stats = buffer.stats();
    assert_eq!(stats.lost_records, 0);
    assert!(
        stats.next_seq >= 7,
        "next_seq {} is below the mark",
        stats.next_seq
    );
    let (first, _) = store(&buffer, 1).await;
    assert!(first >= 7, "seq {first} reused");
    assert!(kept_aside(dir.path()).is_empty());
}

#[tokio::test]
async fn a_whole_database_lost_is_reported_by_count() {
    let dir = TempDir::new().unwrap();
    let o = opts(dir.path());
    let buffer = Buffer::open(o.clone()).unwrap();
    store(&buffer, 5).await;
    store(&buffer, 5).await;
    drop(buffer);
    std::fs::remove_dir_all(&o.path).unwrap();
    let buffer = Buffer::open(o.clone()).unwrap();
    let stats = buffer.stats();
    assert_eq!(stats.lost_records, 10);
    assert_eq!(buffer.lost_seq_ranges(), [(1, 10)]);
    assert!(stats.next_seq >= 11, "{}", stats.next_seq);
}

#[tokio::test]
async fn low_disk_space_refuses_per_when_full_and_says_why() {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.min_free_bytes = u64::MAX;
    o.when_full = WhenFull::Reject;
    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(buffer.append(recs(3)).await.unwrap(), Appended::Rejected);
    let stats = buffer.stats();
    assert!(stats.low_disk);
    assert_eq!((stats.disk_refusals, stats.records), (1, 0));
    let why = buffer.refusing().expect("a reason");
    assert!(
        why.contains("low disk space") && why.contains("min_free_bytes"),
        "{why}"
    );
    assert_eq!(buffer.failing(), None);
    drop(buffer);

    // drop_oldest refuses too (dropping records gives the filesystem nothing back).
    o.when_full = WhenFull::DropOldest;
    let buffer = Buffer::open(o.clone()).unwrap();
    assert_eq!(buffer.append(recs(1)).await.unwrap(), Appended::Rejected);
    drop(buffer);

    // block holds the append.
    o.when_full = WhenFull::Block;
    let buffer = Buffer::open(o.clone()).unwrap();
    let held = tokio::time::timeout(
        std::time::Duration::from_millis(600),
        buffer.append(recs(1)),
    );
    assert!(held.await.is_err(), "the append must wait");
    assert_eq!(buffer.stats().records, 0);

    // With room, the same buffer accepts.
    o.min_free_bytes = 1 << 20;
    drop(buffer);
    let buffer = Buffer::open(o).unwrap();
    assert!(buffer.refusing().is_none());
    assert_eq!(store(&buffer, 1).await, (1, 1));
}

/// The reopen machinery without a full disk (the real ENOSPC runs on a tmpfs in
/// `tests/buffer_faults.rs`, as root): a failure is injected where a failed round would
/// record it, and the commit thread reopens the database.
#[tokio::test]
async fn a_failing_database_is_reopened_and_loses_nothing_acknowledged() {
    let dir = TempDir::new().unwrap();
    let mut o = opts(dir.path());
    o.when_full = WhenFull::Reject;
    let buffer = Buffer::open(o.clone()).unwrap();
    store(&buffer, 2).await; // 1..=2
    store(&buffer, 2).await; // 3..=4
    store(&buffer, 2).await; // 5..=6: stands for a round whose flush failed
    let shared = buffer.shared();
    shared
        .fault
        .fail(&o.path, "injected: No space left on device".into());
    shared.fault.failed_round([5]);
    shared.mark.spent_unstored(5, 6);

    // Failing: refused, nothing handed to the uplink, acks are errors, /health's reason.
    assert_eq!(buffer.append(recs(1)).await.unwrap(), Appended::Rejected);
    assert!(buffer.read_after(None, 100, usize::MAX).unwrap().is_empty());
    assert!(matches!(
        buffer.ack_through(2),
        Err(BufferError::Failing { .. })
    ));
    let why = buffer.failing().expect("failing");
    assert!(why.contains("No space left"), "{why}");
    assert!(buffer.refusing().is_some_and(|r| r.contains("failing")));

    buffer.wake_committer();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while buffer.failing().is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = buffer.stats();
    assert!(!stats.failing, "not recovered in 30 s");
    assert_eq!(stats.recoveries, 1);
    assert_eq!(
        stats.records, 4,
        "the failed round's chunk is gone, the rest is there"
    );
    let firsts: Vec<u64> = buffer
        .read_after(None, 100, usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.first_seq)
        .collect();
    assert_eq!(firsts, [1, 3]);
    assert_eq!(store(&buffer, 1).await, (7, 7), "spent seqs stay spent");
    assert_eq!(buffer.ack_through(4).unwrap(), 4);
    drop(buffer);

    // Nothing reported missing at the next open: the failed round's seqs were unstored.
    let buffer = Buffer::open(o).unwrap();
    assert_eq!(buffer.stats().lost_records, 0);
    assert_eq!(buffer.stats().records, 1);
}
