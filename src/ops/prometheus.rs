//! `/metrics`: the process-wide registries ([`crate::metrics`], `crate::clean::metrics`,
//! `crate::commands::metrics`) and the buffer's gauges, in
//! the Prometheus text format (version 0.0.4), encoded by `prometheus_client`.
//!
//! The buffer's values are read at scrape time by [`BufferSample`], a collector: they live
//! in the buffer (`BufferStats`), not in counters of their own.
//!
//! ```text
//! # HELP fleetedge_records_received_total Records stored in the buffer (…), by protocol.
//! # TYPE fleetedge_records_received_total counter
//! fleetedge_records_received_total{protocol="teltonika"} 42
//! ```
//!
//! Series of one labelled family come in no fixed order (the client keeps them in a hash
//! map); Prometheus does not mind.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::buffer::{Buffer, BufferStats};
use crate::metrics::METRICS;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every `fleetedge_*` metric. `BufferStats::disk_bytes` lists sled's files, so call this
/// off the async workers (`spawn_blocking`).
pub fn render(buffer: &Buffer) -> String {
    let sample = BufferSample {
        stats: buffer.stats(),
        committer_alive: buffer.committer_alive(),
        records_refused: METRICS.records_refused.get(),
    };
    let mut text = String::new();
    // Writing to a String cannot fail; a collector's error would be a bug in it.
    for registry in [
        &METRICS.registry,
        crate::clean::metrics::registry(),
        crate::commands::metrics::registry(),
    ] {
        let _ = prometheus_text::encode(&mut text, registry);
    }
    text.push_str(&sample.render());
    text
}

/// The buffer's metrics, read once per scrape.
#[derive(Debug, Clone)]
pub struct BufferSample {
    pub stats: BufferStats,
    /// The buffer's commit thread is running (appends can complete).
    pub committer_alive: bool,
    /// Records refused under `buffer.when_full = "reject"` (the process-wide counter).
    pub records_refused: u64,
}

impl BufferSample {
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// `name` without `_total`: the encoder appends it.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for BufferSample {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let (b, e) = (&self.stats, &mut e);
        gauge(
            e,
            "fleetedge_buffer_running",
            "1 while the buffer's commit thread runs (appends can complete), else 0.",
            u64::from(self.committer_alive),
        )?;
        gauge(
            e,
            "fleetedge_buffer_records",
            "Records stored in the buffer and not yet acknowledged by the broker.",
            b.records,
        )?;
        gauge(
            e,
            "fleetedge_buffer_bytes",
            "Bytes of stored (encoded) records in the buffer, the unit of buffer.max_bytes.",
            b.bytes,
        )?;
        gauge(
            e,
            "fleetedge_buffer_in_flight_records",
            "Records admitted and waiting for their commit round (fsync).",
            b.in_flight_records,
        )?;
        gauge(
            e,
            "fleetedge_buffer_in_flight_bytes",
            "Bytes admitted and waiting for their commit round (fsync).",
            b.in_flight_bytes,
        )?;
        gauge(
            e,
            "fleetedge_buffer_disk_bytes",
            "Size of the buffer's sled files on disk (0 if sled cannot tell).",
            b.disk_bytes,
        )?;
        gauge(
            e,
            "fleetedge_buffer_full",
            "Backpressure: 1 while the buffer is full (appends blocked or refused until the low-water mark), else 0.",
            u64::from(b.full),
        )?;
        gauge(
            e,
            "fleetedge_buffer_alert_records",
            "The buffer's alert level in records (buffer.alert_records; 0 = no alert).",
            b.alert_records,
        )?;
        gauge(
            e,
            "fleetedge_buffer_above_alert",
            "1 while the stored records are at or above the alert level (until they fall back to 90 % of it), else 0.",
            u64::from(b.above_alert),
        )?;
        gauge(
            e,
            "fleetedge_buffer_next_seq",
            "The seq the next stored record will get.",
            b.next_seq,
        )?;
        if let Some(seq) = b.oldest_seq {
            gauge(
                e,
                "fleetedge_buffer_oldest_seq",
                "The first seq of the oldest stored record; absent when the buffer is empty.",
                seq,
            )?;
        }
        let dropped = e.encode_descriptor(
            "fleetedge_records_dropped",
            "Records not kept: reason drop_oldest = deleted unpublished (when_full = drop_oldest), refused = answered \"not accepted\" (when_full = reject).",
            None,
            MetricType::Counter,
        )?;
        let mut dropped = dropped;
        for (reason, n) in [
            ("drop_oldest", b.dropped_records),
            ("refused", self.records_refused),
        ] {
            ConstCounter::new(n).encode(dropped.encode_family(&[("reason", reason)])?)?;
        }
        counter(
            e,
            "fleetedge_buffer_rejected_appends",
            "Appends (one device frame each) refused because the buffer was full.",
            b.rejected_appends,
        )?;
        counter(
            e,
            "fleetedge_buffer_quarantined_chunks",
            "Stored chunks that could not be decoded and were moved to the quarantine tree.",
            b.quarantined_chunks,
        )?;
        counter(
            e,
            "fleetedge_buffer_flushes",
            "Commit rounds flushed to disk (one fsync each).",
            b.flushes,
        )?;
        counter(
            e,
            "fleetedge_buffer_disk_reclaims",
            "Times the drained buffer's files were recreated to give disk space back.",
            b.disk_reclaims,
        )?;
        counter(
            e,
            "fleetedge_buffer_disk_reclaimed_bytes",
            "Bytes of disk space those reclaims gave back to the filesystem.",
            b.disk_reclaimed_bytes,
        )?;
        gauge(
            e,
            "fleetedge_buffer_disk_free_bytes",
            "Bytes free for unprivileged writers on the buffer's filesystem.",
            b.disk_free_bytes,
        )?;
        gauge(
            e,
            "fleetedge_buffer_low_disk",
            "1 while the buffer's filesystem is below buffer.min_free_bytes (new records refused per when_full), else 0.",
            u64::from(b.low_disk),
        )?;
        counter(
            e,
            "fleetedge_buffer_disk_refusals",
            "Appends (one device frame each) refused or held because of low disk space or a failing buffer database.",
            b.disk_refusals,
        )?;
        gauge(
            e,
            "fleetedge_buffer_failing",
            "1 while the buffer database's writes fail (full disk, EIO) and it is being reopened, else 0.",
            u64::from(b.failing),
        )?;
        counter(
            e,
            "fleetedge_buffer_recoveries",
            "Times a failing buffer database was reopened and accepted records again.",
            b.recoveries,
        )?;
        counter(
            e,
            "fleetedge_buffer_lost_records",
            "Records the durable mark said were stored but the database no longer held when it was opened.",
            b.lost_records,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The metric types the text format names.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Counter,
        Gauge,
        Histogram,
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__` prefix).
    fn is_label_name(name: &str) -> bool {
        let mut chars = name.chars();
        !name.starts_with("__")
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// One parsed sample line.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict reader of the text format as the tests need it: every sample belongs to a
    /// family announced by HELP then TYPE, no family twice, histogram series only under a
    /// histogram family, names and label syntax valid, escapes undone. Panics on violations.
    fn parse(text: &str) -> (HashMap<String, Kind>, Vec<Sample>) {
        assert!(
            text.ends_with('\n'),
            "the exposition must end with a newline"
        );
        let mut families: HashMap<String, Kind> = HashMap::new();
        let mut samples = Vec::new();
        let mut pending_help: Option<String> = None;
        let mut current: Option<(String, Kind)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("HELP has a name and text");
                assert!(is_metric_name(name), "{line}");
                assert!(!families.contains_key(name), "family {name} twice");
                pending_help = Some(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a name and kind");
                assert_eq!(
                    pending_help.take().as_deref(),
                    Some(name),
                    "TYPE without HELP"
                );
                let kind = match kind {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    other => panic!("unexpected type {other}"),
                };
                assert!(
                    kind != Kind::Counter || name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
                families.insert(name.to_string(), kind);
                current = Some((name.to_string(), kind));
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let sample = parse_sample(line);
            let (family, kind) = current.as_ref().expect("sample before any TYPE");
            let belongs = match kind {
                Kind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| sample.name == format!("{family}{s}")),
                _ => &sample.name == family,
            };
            assert!(belongs, "{} under family {family}", sample.name);
            samples.push(sample);
        }
        (families, samples)
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        assert!(is_metric_name(name), "{line}");
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().expect("unterminated labels");
                let eq = r[start..].find('=').expect("label without =") + start;
                let label = &r[start..eq];
                assert!(is_label_name(label), "{line}");
                assert_eq!(&r[eq + 1..eq + 2], "\"", "{line}");
                while chars.next_if(|&(i, _)| i <= eq + 1).is_some() {}
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        (_, '\\') => match chars.next().expect("dangling escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        (_, '"') => break,
                        (_, '\n') => panic!("raw newline in {line}"),
                        (_, c) => value.push(c),
                    }
                }
                labels.push((label.to_string(), value));
                match chars.next().expect("unterminated labels") {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &r[i + 1..];
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?} in {line}"),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
        };
        Sample {
            name: name.to_string(),
            labels,
            value,
        }
    }

    fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// Buckets ascend in `le` with non-decreasing counts, the last is `+Inf` and equals
    /// `_count`, and `_sum` exists.
    fn check_histogram(samples: &[Sample], name: &str) {
        let bucket = format!("{name}_bucket");
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == bucket)
            .map(|s| {
                assert_eq!(s.labels.len(), 1);
                assert_eq!(s.labels[0].0, "le");
                let le = match s.labels[0].1.as_str() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().expect("le is a number"),
                };
                (le, s.value)
            })
            .collect();
        assert!(buckets.len() >= 2, "{name}: too few buckets");
        for pair in buckets.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{name}: le not ascending");
            assert!(pair[0].1 <= pair[1].1, "{name}: counts not cumulative");
        }
        let (last_le, last_count) = buckets[buckets.len() - 1];
        assert_eq!(last_le, f64::INFINITY, "{name}: last bucket is not +Inf");
        let count = value_of(samples, &format!("{name}_count"), &[]).expect("_count");
        assert_eq!(last_count, count, "{name}: +Inf bucket != _count");
        assert!(value_of(samples, &format!("{name}_sum"), &[]).is_some());
    }

    fn open_buffer(dir: &tempfile::TempDir) -> Buffer {
        let settings = crate::config::BufferSettings {
            path: dir.path().join("buffer"),
            ..Default::default()
        };
        Buffer::open(settings.options()).expect("open a buffer in a tempdir")
    }

    fn sample(buffer: &Buffer) -> BufferSample {
        BufferSample {
            stats: buffer.stats(),
            committer_alive: buffer.committer_alive(),
            records_refused: 4,
        }
    }

    /// The buffer's part of `/metrics`, byte for byte: HELP, TYPE, `_total` on counters,
    /// labels, and an absent `oldest_seq` while the buffer is empty.
    #[test]
    fn buffer_metrics_exact_output() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = open_buffer(&dir);
        let mut s = sample(&buffer);
        s.stats.records = 12;
        s.stats.full = true;
        s.stats.dropped_records = 3;
        s.stats.disk_bytes = 4096;
        s.stats.disk_free_bytes = 1_000_000;
        s.stats.next_seq = 13;
        s.stats.flushes = 7;
        s.stats.alert_records = 0;
        s.stats.in_flight_records = 0;
        s.stats.in_flight_bytes = 0;
        s.stats.bytes = 600;
        s.stats.oldest_seq = None;
        s.committer_alive = true;
        let text = s.render();
        let expected = r#"# HELP fleetedge_buffer_running 1 while the buffer's commit thread runs (appends can complete), else 0.
# TYPE fleetedge_buffer_running gauge
fleetedge_buffer_running 1
# HELP fleetedge_buffer_records Records stored in the buffer and not yet acknowledged by the broker.
# TYPE fleetedge_buffer_records gauge
fleetedge_buffer_records 12
# HELP fleetedge_buffer_bytes Bytes of stored (encoded) records in the buffer, the unit of buffer.max_bytes.
# TYPE fleetedge_buffer_bytes gauge
fleetedge_buffer_bytes 600
# HELP fleetedge_buffer_in_flight_records Records admitted and waiting for their commit round (fsync).
# TYPE fleetedge_buffer_in_flight_records gauge
fleetedge_buffer_in_flight_records 0
# HELP fleetedge_buffer_in_flight_bytes Bytes admitted and waiting for their commit round (fsync).
# TYPE fleetedge_buffer_in_flight_bytes gauge
fleetedge_buffer_in_flight_bytes 0
# HELP fleetedge_buffer_disk_bytes Size of the buffer's sled files on disk (0 if sled cannot tell).
# TYPE fleetedge_buffer_disk_bytes gauge
fleetedge_buffer_disk_bytes 4096
# HELP fleetedge_buffer_full Backpressure: 1 while the buffer is full (appends blocked or refused until the low-water mark), else 0.
# TYPE fleetedge_buffer_full gauge
fleetedge_buffer_full 1
# HELP fleetedge_buffer_alert_records The buffer's alert level in records (buffer.alert_records; 0 = no alert).
# TYPE fleetedge_buffer_alert_records gauge
fleetedge_buffer_alert_records 0
# HELP fleetedge_buffer_above_alert 1 while the stored records are at or above the alert level (until they fall back to 90 % of it), else 0.
# TYPE fleetedge_buffer_above_alert gauge
fleetedge_buffer_above_alert 0
# HELP fleetedge_buffer_next_seq The seq the next stored record will get.
# TYPE fleetedge_buffer_next_seq gauge
fleetedge_buffer_next_seq 13
# HELP fleetedge_records_dropped_total Records not kept: reason drop_oldest = deleted unpublished (when_full = drop_oldest), refused = answered "not accepted" (when_full = reject).
# TYPE fleetedge_records_dropped_total counter
fleetedge_records_dropped_total{reason="drop_oldest"} 3
fleetedge_records_dropped_total{reason="refused"} 4
"#;
        assert!(
            text.starts_with(expected),
            "expected to start with\n{expected}\ngot\n{text}"
        );
        assert!(
            text.contains("\nfleetedge_buffer_flushes_total 7\n"),
            "{text}"
        );
        assert!(!text.contains("oldest_seq"), "{text}");
        s.stats.oldest_seq = Some(2);
        assert!(s.render().contains(
            "\n# TYPE fleetedge_buffer_oldest_seq gauge\nfleetedge_buffer_oldest_seq 2\n"
        ));
    }

    #[test]
    fn render_is_valid_text_format_with_every_metric() {
        use crate::metrics::{self, ProtocolId};
        let dir = tempfile::tempdir().unwrap();
        let buffer = open_buffer(&dir);
        // Other tests share these process-wide counters: compare with at-least values.
        let teltonika = ProtocolId::of("teltonika");
        metrics::records_received(teltonika, 12);
        metrics::frame_malformed(teltonika);
        // A label value that needs escaping (skipped types come from device bytes).
        metrics::frame_skipped(teltonika, "we\"ird\\\nname");
        metrics::add(&METRICS.records_published, 10);
        metrics::publish_latency(std::time::Duration::from_millis(3));
        metrics::publish_latency(std::time::Duration::from_millis(70));
        let listener = metrics::register_listener(7, "teltonika");
        metrics::connection_opened(&listener);
        metrics::mqtt_connection_failed(crate::uplink::error::FailureReason::ALL[0]);
        let text = render(&buffer);
        let (families, samples) = parse(&text);
        assert!(families.keys().all(|n| n.starts_with("fleetedge_")));
        let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
            let v = value_of(&samples, name, labels);
            assert!(
                v.is_some_and(|v| v >= min),
                "{name}{labels:?} = {v:?}, want >= {min} in\n{text}"
            );
        };
        at_least(
            "fleetedge_records_received_total",
            &[("protocol", "teltonika")],
            12.0,
        );
        // Every protocol's series exists from the first scrape.
        at_least(
            "fleetedge_records_received_total",
            &[("protocol", "gt06")],
            0.0,
        );
        at_least(
            "fleetedge_decode_errors_total",
            &[("protocol", "teltonika")],
            1.0,
        );
        at_least(
            "fleetedge_frames_skipped_total",
            &[("protocol", "teltonika"), ("type", "we\"ird\\\nname")],
            1.0,
        );
        at_least("fleetedge_devices_refused_total", &[], 0.0);
        at_least(
            "fleetedge_records_duplicate_total",
            &[("protocol", "gt06")],
            0.0,
        );
        at_least(
            "fleetedge_records_filtered_total",
            &[("reason", "min_period")],
            0.0,
        );
        at_least(
            "fleetedge_listener_connections_open",
            &[("listener", "7"), ("protocol", "teltonika")],
            1.0,
        );
        at_least(
            "fleetedge_listener_connections_accepted_total",
            &[("listener", "7"), ("protocol", "teltonika")],
            1.0,
        );
        at_least(
            "fleetedge_records_dropped_total",
            &[("reason", "refused")],
            0.0,
        );
        at_least("fleetedge_records_published_total", &[], 10.0);
        at_least("fleetedge_batches_published_total", &[], 0.0);
        at_least("fleetedge_batch_uncompressed_bytes_total", &[], 0.0);
        at_least("fleetedge_batch_compressed_bytes_total", &[], 0.0);
        at_least("fleetedge_ngp_records_skipped_total", &[], 0.0);
        at_least("fleetedge_mqtt_connected", &[], 0.0);
        at_least("fleetedge_mqtt_connects_total", &[], 0.0);
        at_least(
            "fleetedge_mqtt_connection_failures_total",
            &[(
                "reason",
                crate::uplink::error::FailureReason::ALL[0].as_str(),
            )],
            1.0,
        );
        at_least("fleetedge_commands_queued", &[], 0.0);
        at_least("fleetedge_commands_duplicates_total", &[], 0.0);
        at_least("fleetedge_buffer_running", &[], 1.0);
        at_least("fleetedge_publish_latency_seconds_count", &[], 2.0);
        assert_eq!(
            families.get("fleetedge_publish_latency_seconds"),
            Some(&Kind::Histogram)
        );
        check_histogram(&samples, "fleetedge_publish_latency_seconds");
        assert!(
            text.contains("fleetedge_publish_latency_seconds_bucket{le=\"0.005\"} "),
            "bucket bounds keep their spelling: {text}"
        );
        assert_eq!(
            value_of(
                &samples,
                "fleetedge_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
    }

    /// The field names of a derived `Debug` body (`a: 1, b: Some(2), c: X { d: 3 }`): the
    /// text before `:` of each comma-separated part at nesting depth 0.
    fn top_level_fields(body: &str) -> Vec<String> {
        let (mut fields, mut part, mut depth) = (Vec::new(), String::new(), 0i32);
        for c in body.chars().chain([',']) {
            match c {
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    if let Some((name, _)) = part.split_once(':') {
                        fields.push(name.trim().to_string());
                    }
                    part.clear();
                    continue;
                }
                _ => {}
            }
            part.push(c);
        }
        fields
    }

    /// Every `BufferStats` field is on `/metrics`. A new field fails this test until it is
    /// rendered in [`render`] and listed here.
    #[test]
    fn every_buffer_stats_field_is_rendered() {
        // field → the sample that shows it; `None` for fields that may be absent (no value).
        type Labels = &'static [(&'static str, &'static str)];
        let shown: &[(&str, &str, Option<Labels>)] = &[
            ("records", "fleetedge_buffer_records", Some(&[])),
            ("bytes", "fleetedge_buffer_bytes", Some(&[])),
            (
                "in_flight_records",
                "fleetedge_buffer_in_flight_records",
                Some(&[]),
            ),
            (
                "in_flight_bytes",
                "fleetedge_buffer_in_flight_bytes",
                Some(&[]),
            ),
            ("next_seq", "fleetedge_buffer_next_seq", Some(&[])),
            ("oldest_seq", "fleetedge_buffer_oldest_seq", None),
            ("full", "fleetedge_buffer_full", Some(&[])),
            (
                "dropped_records",
                "fleetedge_records_dropped_total",
                Some(&[("reason", "drop_oldest")]),
            ),
            (
                "rejected_appends",
                "fleetedge_buffer_rejected_appends_total",
                Some(&[]),
            ),
            (
                "quarantined_chunks",
                "fleetedge_buffer_quarantined_chunks_total",
                Some(&[]),
            ),
            ("flushes", "fleetedge_buffer_flushes_total", Some(&[])),
            ("disk_bytes", "fleetedge_buffer_disk_bytes", Some(&[])),
            ("alert_records", "fleetedge_buffer_alert_records", Some(&[])),
            ("above_alert", "fleetedge_buffer_above_alert", Some(&[])),
            (
                "disk_reclaims",
                "fleetedge_buffer_disk_reclaims_total",
                Some(&[]),
            ),
            (
                "disk_reclaimed_bytes",
                "fleetedge_buffer_disk_reclaimed_bytes_total",
                Some(&[]),
            ),
            (
                "disk_free_bytes",
                "fleetedge_buffer_disk_free_bytes",
                Some(&[]),
            ),
            ("low_disk", "fleetedge_buffer_low_disk", Some(&[])),
            (
                "disk_refusals",
                "fleetedge_buffer_disk_refusals_total",
                Some(&[]),
            ),
            ("failing", "fleetedge_buffer_failing", Some(&[])),
            ("recoveries", "fleetedge_buffer_recoveries_total", Some(&[])),
            (
                "lost_records",
                "fleetedge_buffer_lost_records_total",
                Some(&[]),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let buffer = open_buffer(&dir);
        let mut snapshot = sample(&buffer);
        // Shown only while the buffer holds records.
        snapshot.stats.oldest_seq = Some(1);
        // The field names, from the derived Debug: `BufferStats { records: 0, bytes: 0, … }`.
        let debug = format!("{:?}", snapshot.stats);
        let body = debug
            .split_once('{')
            .and_then(|(_, b)| b.rsplit_once('}'))
            .map(|(b, _)| b)
            .expect("BufferStats derives Debug as a struct");
        let text = snapshot.render();
        let (families, samples) = parse(&text);
        let fields = top_level_fields(body);
        for (field, _, _) in shown {
            assert!(
                fields.iter().any(|f| f == field),
                "BufferStats has no field {field} any more: update this test ({debug})"
            );
        }
        for field in &fields {
            let field = field.as_str();
            let Some((_, metric, labels)) = shown.iter().find(|(f, _, _)| *f == field) else {
                panic!(
                    "BufferStats::{field} is not on /metrics: render it in ops::prometheus::BufferSample \
                     and list it in this test"
                );
            };
            assert!(families.contains_key(*metric), "{metric} has no HELP/TYPE");
            if let Some(labels) = labels {
                assert!(
                    value_of(&samples, metric, labels).is_some(),
                    "{field}: no {metric}{labels:?} sample in\n{text}"
                );
            }
        }
    }
}
