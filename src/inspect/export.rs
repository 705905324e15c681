//! `fleetedge buffer export`: the backlog as JSON lines, oldest first, read from a [`Buffer`]
//! one bounded slice at a time with [`Buffer::peek_after`], without acknowledging, removing
//! or moving anything.
//!
//! One line per record, the record JSON of the cloud payload with its `seq`
//! (`Record::json(Some(seq))`, exactly what a batch carries). The same code feeds
//! `GET /buffer/export` on a running gateway and the direct read of a stopped one.
//!
//! The export covers the records durable when it starts (seqs up to the last durable one
//! then); records appended meanwhile are left for a later export, so it always ends. On a
//! running gateway the uplink may acknowledge (and delete) records while the export runs:
//! those are simply missing from it; no record appears twice, and seqs only increase.
//!
//! An unreadable chunk is skipped with a warning naming its key and seq, and left where it is:
//! the export does not quarantine it (a look must not change what it looks at; the gateway's
//! uplink moves it to the quarantine tree when it gets there, as it always does).

use serde_json::json;

use anyhow::bail;

use crate::buffer::{Buffer, PeekedChunk};

/// Most records one read takes (and so one [`Item::Records`] holds).
pub const READ_RECORDS: usize = 1000;
/// Most encoded bytes one read takes (at least one chunk is always taken).
pub const READ_BYTES: usize = 1 << 20;

/// What the export produces, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Complete JSON lines (each ending in `\n`) of consecutive records.
    Records(Vec<u8>),
    /// A chunk was skipped; the text names it and says why.
    Skipped(String),
}

impl Item {
    /// The bytes `GET /buffer/export` sends: the lines, or a `{"warning": …}` line.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Item::Records(lines) => lines,
            Item::Skipped(text) => json_line("warning", &text),
        }
    }
}

/// `{"<key>":"<text>"}\n`.
pub fn json_line(key: &str, text: &str) -> Vec<u8> {
    ndjson(json!({ key: text }))
}

/// `value` as one JSON line, `\n` included.
fn ndjson(value: serde_json::Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// The last line of `GET /buffer/export`: `{"end":{"records":N,"skipped_chunks":K}}`.
/// The HTTP body ends the same way whether the reader finished or its thread died, so the
/// client takes an export as complete only with this line, and only if N matches what it got.
pub fn end_line(summary: &Summary) -> Vec<u8> {
    ndjson(json!({ "end": {
        "records": summary.records,
        "skipped_chunks": summary.skipped_chunks,
    }}))
}

/// Records written and chunks skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub skipped_chunks: u64,
}

/// Feeds the backlog to `emit`, at most `limit` records; stops early when `emit` returns
/// false (the reader went away). Blocking: call it from a plain thread or `spawn_blocking`.
/// Memory: one read of at most [`READ_RECORDS`] records at a time.
pub fn run(
    buffer: &Buffer,
    limit: Option<u64>,
    mut emit: impl FnMut(Item) -> bool,
) -> anyhow::Result<Summary> {
    let last = *buffer.subscribe().borrow();
    let mut summary = Summary::default();
    let mut after: Option<u64> = None;
    let wanted = |summary: &Summary| limit.is_none_or(|limit| summary.records < limit);
    while wanted(&summary) {
        let chunks = buffer.peek_after(after, READ_RECORDS, READ_BYTES)?;
        let mut lines = Vec::new();
        let mut done = chunks.is_empty();
        'chunks: for peeked in &chunks {
            let chunk = match peeked {
                PeekedChunk::Chunk(chunk) => chunk,
                PeekedChunk::Unreadable {
                    key_hex,
                    first_seq,
                    reason,
                } => {
                    let Some(first_seq) = *first_seq else {
                        bail!(
                            "the chunk at key {key_hex} has a key that is not 8 bytes; the \
                             export cannot go past it (the gateway quarantines it at its next \
                             start)"
                        );
                    };
                    if first_seq > last {
                        done = true;
                        break 'chunks;
                    }
                    summary.skipped_chunks += 1;
                    let text = format!(
                        "skipped the unreadable chunk at key {key_hex} (seq {first_seq}): \
                         {reason}; it stays in the buffer (the gateway moves it to the \
                         quarantine tree when its uplink gets there)"
                    );
                    // Records read before it go out first, so the output stays in order.
                    if !lines.is_empty() && !emit(Item::Records(std::mem::take(&mut lines))) {
                        return Ok(summary);
                    }
                    if !emit(Item::Skipped(text)) {
                        return Ok(summary);
                    }
                    after = Some(first_seq);
                    continue;
                }
            };
            for (i, record) in chunk.records.iter().enumerate() {
                let seq = chunk.first_seq + i as u64;
                if seq > last || !wanted(&summary) {
                    done = true;
                    break 'chunks;
                }
                // The record JSON has string keys and no fallible values; should it fail
                // anyway, the record is reported rather than half written.
                let mut line = Vec::new();
                match serde_json::to_writer(&mut line, &record.json(Some(seq))) {
                    Ok(()) => {
                        lines.extend_from_slice(&line);
                        lines.push(b'\n');
                        summary.records += 1;
                    }
                    Err(e) => {
                        if !emit(Item::Skipped(format!(
                            "skipped the record at seq {seq}: cannot write its JSON: {e}"
                        ))) {
                            return Ok(summary);
                        }
                    }
                }
            }
            after = Some(chunk.last_seq());
        }
        if !lines.is_empty() && !emit(Item::Records(lines)) {
            return Ok(summary);
        }
        if done {
            break;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use firmware_protocols::{Protocol, Record};
    use serde_json::Value;

    use super::*;
    use crate::buffer::BufferOptions;

    fn record(device: &str, n: i64) -> Record {
        let mut r = Record::new(device, Protocol::Teltonika, 1_767_225_600_000 + n);
        r.lat = Some(54.0 + n as f64 / 100.0);
        r.lon = Some(-25.0);
        r
    }

    fn lines_of(items: &[Item]) -> Vec<Value> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Records(bytes) => Some(bytes),
                Item::Skipped(_) => None,
            })
            .flat_map(|bytes| {
                std::str::from_utf8(bytes)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    async fn buffer_with(dir: &std::path::Path, chunks: &[usize]) -> Buffer {
        let buffer = Buffer::open(BufferOptions {
            seq_floor: Some(1),
            ..BufferOptions::new(dir.join("db"))
        })
        .unwrap();
        let mut n = 0;
        for &len in chunks {
            let records = (0..len).map(|_| {
                n += 1;
                record(&format!("dev-{n}"), n)
            });
            buffer.append(records.collect()).await.unwrap();
        }
        buffer
    }

    #[tokio::test]
    async fn every_record_in_seq_order_with_the_payload_json_and_nothing_removed() {
        let dir = tempfile::tempdir().unwrap();
        // More than one read's worth, across chunk boundaries.
        let buffer = buffer_with(dir.path(), &[3, READ_RECORDS, 7]).await;
        let mut items = Vec::new();
        let summary = run(&buffer, None, |item| {
            items.push(item);
            true
        })
        .unwrap();
        let total = 3 + READ_RECORDS as u64 + 7;
        assert_eq!(summary.records, total);
        assert!(items.len() >= 2, "one item per read");
        let lines = lines_of(&items);
        assert_eq!(lines.len() as u64, total);
        for (i, line) in lines.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(line["seq"], n);
            assert_eq!(line["device_id"], format!("dev-{n}"));
            assert_eq!(line["protocol"], "teltonika");
            assert!((line["lat"].as_f64().unwrap() - (54.0 + n as f64 / 100.0)).abs() < 1e-9);
        }
        // The same bytes a batch would carry for the first record.
        let first = record("dev-1", 1);
        assert_eq!(lines[0], serde_json::to_value(first.json(Some(1))).unwrap());
        assert_eq!(buffer.stats().records, total, "the export removed records");
    }

    #[tokio::test]
    async fn limit_and_a_reader_that_goes_away_stop_it() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = buffer_with(dir.path(), &[4, 4, 4]).await;
        let mut items = Vec::new();
        let summary = run(&buffer, Some(6), |item| {
            items.push(item);
            true
        })
        .unwrap();
        assert_eq!(summary.records, 6);
        let seqs: Vec<u64> = lines_of(&items)
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
        let mut calls = 0;
        run(&buffer, None, |_| {
            calls += 1;
            false
        })
        .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(run(&buffer, Some(0), |_| true).unwrap().records, 0);
    }

    #[tokio::test]
    async fn records_appended_after_the_start_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = buffer_with(dir.path(), &[2]).await;
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let buffer = buffer.clone();
            std::thread::spawn(move || {
                let mut lines = 0;
                run(&buffer, None, |item| {
                    // Hold the first item until the test has appended more.
                    let _ = started_tx.send(());
                    let _ = go_rx.recv();
                    lines += lines_of(&[item]).len();
                    true
                })
                .unwrap();
                lines
            })
        };
        started_rx.recv().unwrap();
        buffer.append(vec![record("late", 99)]).await.unwrap();
        go_tx.send(()).unwrap();
        drop(go_tx);
        assert_eq!(reader.join().unwrap(), 2);
        assert_eq!(buffer.stats().records, 3);
    }

    #[tokio::test]
    async fn an_unreadable_chunk_is_skipped_with_a_warning_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = buffer_with(dir.path(), &[2, 2, 2]).await;
        drop(buffer);
        // Damage the middle chunk (seqs 3..=4) behind the buffer's back: a valid header over
        // a payload that is not zstd.
        let path = dir.path().join("db");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match sled::open(&path) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        let queue = db.open_tree("queue").unwrap();
        queue
            .insert(3u64.to_be_bytes(), &[1u8, 0, 0, 0, 2, 0xba, 0xd0][..])
            .unwrap();
        db.flush().unwrap();
        drop((queue, db));
        let buffer = buffer_with(dir.path(), &[]).await;

        let mut items = Vec::new();
        let summary = run(&buffer, None, |item| {
            items.push(item);
            true
        })
        .unwrap();
        assert_eq!(summary.skipped_chunks, 1);
        assert_eq!(summary.records, 4);
        let warnings: Vec<&String> = items
            .iter()
            .filter_map(|i| match i {
                Item::Skipped(text) => Some(text),
                Item::Records(_) => None,
            })
            .collect();
        assert_eq!(warnings.len(), 1, "{items:?}");
        assert!(
            warnings[0].contains("0000000000000003") && warnings[0].contains("seq 3"),
            "{}",
            warnings[0]
        );
        let seqs: Vec<u64> = lines_of(&items)
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 2, 5, 6]);
        // Left where it was: the export changed nothing.
        assert_eq!(buffer.stats().records, 6);
        assert_eq!(buffer.quarantine_len().unwrap(), 0);
    }

    #[test]
    fn warning_lines_are_json() {
        let line = Item::Skipped("bad \"chunk\"".into()).into_bytes();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["warning"], "bad \"chunk\"");
        assert!(line.ends_with(b"\n"));
    }
}
