//! `fleetedge buffer stats`: what the buffer holds, read from a [`Buffer`] into a
//! [`BufferReport`] (the JSON of `GET /buffer/stats` and of `--json`), and its text form.

use std::time::{SystemTime, UNIX_EPOCH};

use firmware_protocols::record::format_rfc3339_ms;
use serde::{Deserialize, Serialize};

use crate::buffer::{Buffer, BufferError, PeekedChunk, WhenFull};

/// The buffer's state at one moment. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BufferReport {
    /// The sled directory (`buffer.path`).
    pub path: String,
    /// Records stored and not yet acknowledged by the broker.
    pub records: u64,
    /// Their encoded (compressed) bytes, the unit of `max_bytes`.
    pub bytes: u64,
    /// Records admitted and waiting for their commit round (0 when read directly).
    pub in_flight_records: u64,
    /// The first seq of the oldest stored chunk (`None`: empty).
    pub oldest_seq: Option<u64>,
    /// The seq the next stored record will get.
    pub next_seq: u64,
    /// When the gateway received the oldest record (RFC 3339 UTC).
    pub oldest_received_at: Option<String>,
    /// Seconds since then (0 if the gateway's clock was ahead).
    pub oldest_age_s: Option<u64>,
    /// The device clock of the oldest record, when it has one.
    pub oldest_device_time: Option<String>,
    /// Why the oldest chunk could not be read, when it could not (the uplink quarantines it
    /// when it gets there).
    pub oldest_unreadable: Option<String>,
    /// sled's files on disk.
    pub disk_bytes: u64,
    /// `buffer.max_records`.
    pub max_records: u64,
    /// `buffer.max_bytes`.
    pub max_bytes: u64,
    /// The larger of records / `max_records` and bytes / `max_bytes`, in percent.
    pub percent_full: f64,
    /// Appends are held or refused (`when_full`) until the low-water mark.
    pub full: bool,
    /// `buffer.when_full`.
    pub when_full: WhenFull,
    /// Chunks in the quarantine tree (unreadable, kept for forensics, never published).
    pub quarantined_chunks: u64,
    /// Records the durable mark said were stored but the database no longer held when it
    /// was opened (this run of the gateway).
    #[serde(default)]
    pub lost_records: u64,
    /// Their seq ranges, `a-b, c, …`; empty when none were lost.
    #[serde(default)]
    pub lost_seq_ranges: String,
    /// Why new records are refused, when it is low disk space or a failing database.
    #[serde(default)]
    pub refusing: Option<String>,
    /// Downlink commands queued for devices (or sent and not yet answered), and results
    /// waiting to be published (`[commands]`).
    #[serde(default)]
    pub commands_queued: u64,
    #[serde(default)]
    pub command_results_unpublished: u64,
}

/// Reads the report. Blocking: it lists sled's files and decodes the oldest chunk.
pub fn collect(buffer: &Buffer) -> Result<BufferReport, BufferError> {
    let stats = buffer.stats();
    let limits = buffer.limits();
    let oldest = buffer.peek_oldest()?;
    let quarantined_chunks = buffer.quarantine_len()?;
    let (commands_queued, command_results_unpublished) = crate::commands::store::counts(buffer)?;
    let (first, oldest_unreadable) = match &oldest {
        Some(PeekedChunk::Chunk(chunk)) => (chunk.records.first(), None),
        Some(PeekedChunk::Unreadable {
            key_hex, reason, ..
        }) => (
            None,
            Some(format!(
                "the chunk at key {key_hex} does not decode: {reason}"
            )),
        ),
        None => (None, None),
    };
    Ok(BufferReport {
        path: buffer.path().display().to_string(),
        records: stats.records,
        bytes: stats.bytes,
        in_flight_records: stats.in_flight_records,
        oldest_seq: stats.oldest_seq,
        next_seq: stats.next_seq,
        oldest_received_at: first.map(|r| format_rfc3339_ms(r.received_at_ms)),
        oldest_age_s: first.map(|r| age_s(r.received_at_ms, now_ms())),
        oldest_device_time: first.and_then(|r| r.time_ms).map(format_rfc3339_ms),
        oldest_unreadable,
        disk_bytes: stats.disk_bytes,
        max_records: limits.max_records,
        max_bytes: limits.max_bytes,
        percent_full: percent_full(stats.records, limits.max_records)
            .max(percent_full(stats.bytes, limits.max_bytes)),
        full: stats.full,
        when_full: limits.when_full,
        quarantined_chunks,
        lost_records: stats.lost_records,
        lost_seq_ranges: crate::buffer::seq_ranges_text(&buffer.lost_seq_ranges()),
        refusing: buffer.refusing(),
        commands_queued,
        command_results_unpublished,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whole seconds from `then_ms` to `now_ms`, 0 when `then_ms` is in the future.
fn age_s(then_ms: i64, now_ms: i64) -> u64 {
    u64::try_from(now_ms.saturating_sub(then_ms) / 1000).unwrap_or(0)
}

/// `part` of `max` in percent, rounded to a tenth (0 for a zero `max`).
fn percent_full(part: u64, max: u64) -> f64 {
    if max == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / max as f64).round() / 10.0
}

/// `1536` → `1.5 KiB`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `3725` → `1 h 2 min`.
fn age_text(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn when_full_text(w: WhenFull) -> &'static str {
    match w {
        WhenFull::Block => "block",
        WhenFull::Reject => "reject",
        WhenFull::DropOldest => "drop_oldest",
    }
}

impl BufferReport {
    /// The human-readable form, one fact a line.
    pub fn text(&self) -> String {
        let mut out = format!("buffer {}\n", self.path);
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("  {label:<12} {value}\n"));
        };
        let mut depth = format!(
            "{} records, {} stored (compressed)",
            self.records,
            bytes_text(self.bytes)
        );
        if self.in_flight_records > 0 {
            depth.push_str(&format!(
                ", {} more being committed",
                self.in_flight_records
            ));
        }
        line("depth", depth);
        match (self.oldest_seq, &self.oldest_received_at) {
            (None, _) => line("oldest", "none (empty)".into()),
            (Some(seq), Some(at)) => {
                let mut text = format!("seq {seq}, received {at}");
                if let Some(age) = self.oldest_age_s {
                    text.push_str(&format!(" ({} ago)", age_text(age)));
                }
                if let Some(time) = &self.oldest_device_time {
                    text.push_str(&format!(", device time {time}"));
                }
                line("oldest", text);
            }
            (Some(seq), None) => line(
                "oldest",
                format!(
                    "seq {seq}, {}",
                    self.oldest_unreadable.as_deref().unwrap_or("not readable")
                ),
            ),
        }
        line("next seq", self.next_seq.to_string());
        line(
            "disk",
            format!("{} (sled files)", bytes_text(self.disk_bytes)),
        );
        line(
            "limits",
            format!(
                "max_records {}, max_bytes {}, when_full = {}",
                self.max_records,
                bytes_text(self.max_bytes),
                when_full_text(self.when_full)
            ),
        );
        line(
            "fill",
            format!(
                "{:.1} % of the limit, {}",
                self.percent_full,
                if self.full {
                    "FULL (when_full applies until the low-water mark)"
                } else {
                    "not full"
                }
            ),
        );
        line(
            "quarantined",
            format!("{} unreadable chunk(s) set aside", self.quarantined_chunks),
        );
        if self.commands_queued > 0 || self.command_results_unpublished > 0 {
            line(
                "commands",
                format!(
                    "{} queued for devices, {} result(s) not yet published",
                    self.commands_queued, self.command_results_unpublished
                ),
            );
        }
        if self.lost_records > 0 {
            line(
                "LOST",
                format!(
                    "{} record(s) missing from the database at open, seqs {} (see the log)",
                    self.lost_records, self.lost_seq_ranges
                ),
            );
        }
        if let Some(why) = &self.refusing {
            line("REFUSING", format!("new records refused: {why}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use firmware_protocols::{Protocol, Record};

    use super::*;
    use crate::buffer::BufferOptions;

    #[test]
    fn small_helpers_round_and_name_units() {
        assert_eq!(percent_full(1, 3), 33.3);
        assert_eq!(percent_full(5, 0), 0.0);
        assert_eq!(percent_full(10, 10), 100.0);
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(512 << 20), "512.0 MiB");
        assert_eq!(age_text(42), "42 s");
        assert_eq!(age_text(3725), "1 h 2 min");
        assert_eq!(age_text(2 * 86_400 + 7200), "2 d 2 h");
        assert_eq!(age_s(1_000, 4_500), 3);
        assert_eq!(age_s(9_000, 4_500), 0);
    }

    #[tokio::test]
    async fn the_report_shows_depth_oldest_record_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(BufferOptions {
            seq_floor: Some(1),
            max_records: 10,
            ..BufferOptions::new(dir.path().join("db"))
        })
        .unwrap();
        let empty = collect(&buffer).unwrap();
        assert_eq!((empty.records, empty.oldest_seq), (0, None));
        assert!(empty.text().contains("none (empty)"), "{}", empty.text());

        let received = now_ms() - 90_000;
        let mut first = Record::new("356307042441013", Protocol::Teltonika, received);
        first.time_ms = Some(1_767_225_600_007);
        let second = Record::new("356307042441014", Protocol::Teltonika, received + 5);
        buffer.append(vec![first, second]).await.unwrap();
        let report = collect(&buffer).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(report.oldest_seq, Some(1));
        assert_eq!(report.next_seq, 3);
        assert_eq!(report.percent_full, 20.0);
        assert_eq!(report.max_records, 10);
        assert_eq!(report.when_full, WhenFull::Block);
        assert!(!report.full);
        assert_eq!(
            report.oldest_device_time.as_deref(),
            Some("2026-01-01T00:00:00.007Z")
        );
        let age = report.oldest_age_s.unwrap();
        assert!((89..=120).contains(&age), "{age}");
        let text = report.text();
        assert!(text.contains("2 records"), "{text}");
        assert!(text.contains("seq 1, received"), "{text}");
        assert!(text.contains("1 min"), "{text}");
        assert!(text.contains("20.0 % of the limit, not full"), "{text}");
        // The JSON round-trips (the CLI reads the gateway's answer back into the struct).
        let json = serde_json::to_string(&report).unwrap();
        let back: BufferReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(json.contains("\"when_full\":\"block\""), "{json}");
    }
}
