//! Model-based test of the durable buffer: random sequences of appends, reads, acks and
//! reopens, checked after every step against a `VecDeque` of chunks of `(seq, record)`.
//!
//! Checked: contents and order, seqs strictly increasing and never reused (across reopens and
//! full drains), whole-chunk reads and acks, the depth gauges, and the reject / drop-oldest
//! policies (block gets limits it never reaches, since a blocked append would hang the test).

use std::collections::VecDeque;

use firmware_protocols::{IoKey, IoValue, Protocol, Record};
use fleetedge::buffer::{Appended, Buffer, BufferOptions, WhenFull};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Limits for the policies that act when full (small, so the cases reach them).
const SMALL_MAX_RECORDS: u64 = 20;
const SMALL_RESUME_PERCENT: u8 = 50;

#[derive(Debug, Clone)]
enum Op {
    /// Append one chunk of this many records.
    Append(u64),
    /// `read_after(after, max_records, unlimited bytes)`; `after` is the oldest stored seq
    /// plus this offset minus 2 (so before, inside and after chunks), or `None`.
    Read {
        after: Option<u64>,
        max_records: usize,
    },
    /// Ack through the last seq of the k-th oldest chunk (0: ack nothing that exists).
    AckChunks(usize),
    /// Ack through the oldest stored seq plus this offset (may straddle a chunk).
    AckSeq(u64),
    /// Drop the buffer and open the same path again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u64..=6).prop_map(Op::Append),
        2 => (proptest::option::of(0u64..30), 0usize..15)
            .prop_map(|(after, max_records)| Op::Read { after, max_records }),
        2 => (0usize..4).prop_map(Op::AckChunks),
        1 => (0u64..12).prop_map(Op::AckSeq),
        1 => Just(Op::Reopen),
    ]
}

fn policy() -> impl Strategy<Value = WhenFull> {
    prop_oneof![
        Just(WhenFull::Block),
        Just(WhenFull::Reject),
        Just(WhenFull::DropOldest)
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    first: u64,
    records: Vec<Record>,
}

impl Chunk {
    fn last(&self) -> u64 {
        self.first + self.records.len() as u64 - 1
    }
}

struct Model {
    policy: WhenFull,
    max_records: u64,
    low_records: u64,
    chunks: VecDeque<Chunk>,
    /// The highest seq ever handed out (0: none).
    last_seq: u64,
    /// In-memory counters of the buffer, which restart at each open.
    dropped: u64,
    rejected: u64,
    full: bool,
    /// Tags records so every stored record is distinct.
    next_tag: u64,
}

impl Model {
    fn records(&self) -> u64 {
        self.chunks.iter().map(|c| c.records.len() as u64).sum()
    }

    fn oldest(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.first)
    }

    fn ack_through(&mut self, last_seq: u64) -> u64 {
        let mut removed = 0;
        while let Some(front) = self.chunks.front() {
            if front.last() > last_seq {
                break;
            }
            removed += front.records.len() as u64;
            self.chunks.pop_front();
        }
        if self.full && self.records() <= self.low_records {
            self.full = false;
        }
        removed
    }
}

fn record(tag: u64) -> Record {
    let mut r = Record::new(format!("dev-{}", tag % 5), Protocol::Teltonika, tag as i64);
    r.time_ms = Some(tag as i64 * 1000);
    r.lat = Some(tag as f64 * 0.001);
    r.event = tag.is_multiple_of(3).then(|| "ign_on".to_string());
    r.io = vec![(IoKey::Id(66), IoValue::U64(tag))];
    r
}

fn options(path: &std::path::Path, policy: WhenFull) -> BufferOptions {
    let mut o = BufferOptions::new(path);
    o.cache_capacity_bytes = 2 << 20;
    o.seq_floor = Some(1);
    o.when_full = policy;
    if policy != WhenFull::Block {
        o.max_records = SMALL_MAX_RECORDS;
        o.resume_below_percent = SMALL_RESUME_PERCENT;
    }
    o
}

fn check(buffer: &Buffer, model: &Model) -> Result<(), TestCaseError> {
    let chunks = buffer
        .read_after(None, usize::MAX, usize::MAX)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got: Vec<Chunk> = chunks
        .iter()
        .map(|c| Chunk {
            first: c.first_seq,
            records: c.records.clone(),
        })
        .collect();
    let want: Vec<Chunk> = model.chunks.iter().cloned().collect();
    prop_assert_eq!(&got, &want, "stored chunks differ from the model");
    let stats = buffer.stats();
    prop_assert_eq!(stats.records, model.records());
    let bytes: u64 = chunks.iter().map(|c| c.encoded_len as u64).sum();
    prop_assert_eq!(stats.bytes, bytes);
    prop_assert_eq!(stats.oldest_seq, model.oldest());
    prop_assert_eq!(stats.next_seq, model.last_seq + 1);
    prop_assert_eq!((stats.in_flight_records, stats.in_flight_bytes), (0, 0));
    prop_assert_eq!(stats.dropped_records, model.dropped);
    prop_assert_eq!(stats.rejected_appends, model.rejected);
    prop_assert_eq!(stats.full, model.full);
    prop_assert_eq!(*buffer.subscribe().borrow(), model.last_seq);
    Ok(())
}

fn run_case(policy: WhenFull, ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("buffer");
    let open =
        || Buffer::open(options(&path, policy)).map_err(|e| TestCaseError::fail(e.to_string()));
    let mut buffer = open()?;
    let max_records = options(&path, policy).max_records;
    let mut model = Model {
        policy,
        max_records,
        low_records: max_records * u64::from(SMALL_RESUME_PERCENT) / 100,
        chunks: VecDeque::new(),
        last_seq: 0,
        dropped: 0,
        rejected: 0,
        full: false,
        next_tag: 0,
    };
    check(&buffer, &model)?;

    for op in ops {
        match *op {
            Op::Append(n) => {
                let records: Vec<Record> =
                    (model.next_tag..model.next_tag + n).map(record).collect();
                model.next_tag += n;
                let got = rt
                    .block_on(buffer.append(records.clone()))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let fits = model.records() + n <= model.max_records;
                match model.policy {
                    WhenFull::Reject if model.full || !fits => {
                        prop_assert_eq!(got, Appended::Rejected);
                        model.rejected += 1;
                        model.full = true;
                        check(&buffer, &model)?;
                        continue;
                    }
                    WhenFull::DropOldest => {
                        while model.records() + n > model.max_records {
                            let dropped = model.chunks.pop_front().map(|c| c.records.len());
                            model.dropped += dropped.unwrap_or(0) as u64;
                        }
                    }
                    _ => {}
                }
                let Appended::Stored {
                    first_seq,
                    last_seq,
                } = got
                else {
                    return Err(TestCaseError::fail(format!("{op:?}: unexpected {got:?}")));
                };
                // Strictly increasing, never reused, consecutive within the chunk.
                prop_assert!(first_seq > model.last_seq, "seq {} reused", first_seq);
                prop_assert_eq!(first_seq, model.last_seq + 1, "no gaps without failures");
                prop_assert_eq!(last_seq, first_seq + n - 1);
                model.last_seq = last_seq;
                model.chunks.push_back(Chunk {
                    first: first_seq,
                    records,
                });
            }
            Op::Read { after, max_records } => {
                let after = after.map(|off| (model.oldest().unwrap_or(1) + off).saturating_sub(2));
                let got = buffer
                    .read_after(after, max_records, usize::MAX)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut want = Vec::new();
                let mut total = 0;
                for c in model
                    .chunks
                    .iter()
                    .filter(|c| after.is_none_or(|a| c.first > a))
                {
                    if !want.is_empty() && total + c.records.len() > max_records {
                        break;
                    }
                    total += c.records.len();
                    want.push(c.clone());
                }
                let got: Vec<Chunk> = got
                    .into_iter()
                    .map(|c| Chunk {
                        first: c.first_seq,
                        records: c.records,
                    })
                    .collect();
                prop_assert_eq!(got, want, "{:?} (after = {:?})", op, after);
            }
            Op::AckChunks(k) => {
                let through = match k {
                    0 => model.oldest().map_or(0, |s| s - 1),
                    k => match model.chunks.get(k - 1) {
                        Some(c) => c.last(),
                        None => model.last_seq,
                    },
                };
                let removed = buffer
                    .ack_through(through)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(removed, model.ack_through(through), "{:?}", op);
            }
            Op::AckSeq(off) => {
                let through = model.oldest().unwrap_or(model.last_seq) + off;
                let removed = buffer
                    .ack_through(through)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(removed, model.ack_through(through), "{:?}", op);
            }
            Op::Reopen => {
                drop(buffer);
                buffer = open()?;
                model.dropped = 0;
                model.rejected = 0;
                model.full = false;
            }
        }
        check(&buffer, &model)?;
    }
    Ok(())
}

#[test]
fn buffer_matches_the_model() {
    // 64 cases unless PROPTEST_CASES says otherwise (cross/test sets fewer under qemu);
    // `Config::default()` is where proptest reads that variable.
    let cases = match std::env::var_os("PROPTEST_CASES") {
        Some(_) => Config::default().cases,
        None => 64,
    };
    let config = Config {
        cases,
        // Do not write regression files next to the tests; failures print the minimal case.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (policy(), proptest::collection::vec(op(), 1..40));
    let result = runner.run(&strategy, |(policy, ops)| run_case(policy, &ops));
    if let Err(e) = result {
        panic!("{e}");
    }
}
