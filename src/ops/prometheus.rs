//! The Prometheus text exposition format (version 0.0.4) and the `fleetedge_*` metrics.
//!
//! Pure: [`render`] turns a [`Snapshot`] into text, [`TextFormat`] writes families and
//! samples with their `# HELP` and `# TYPE` lines and escapes what needs escaping. Nothing
//! here reads a global or does IO, so the tests check the exact output.
//!
//! ```text
//! # HELP fleetedge_records_received_total Records stored in the buffer (…), by protocol.
//! # TYPE fleetedge_records_received_total counter
//! fleetedge_records_received_total{protocol="teltonika"} 42
//! ```

use std::fmt::Write as _;

use super::Snapshot;
use crate::metrics::HistogramSnapshot;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: counters and gauges are integers here, histogram bounds and sums are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// Builds one exposition. Families are written in call order; call [`TextFormat::family`]
/// once per metric name, then its samples.
#[derive(Debug, Default)]
pub struct TextFormat {
    out: String,
}

impl TextFormat {
    pub fn new() -> Self {
        TextFormat::default()
    }

    /// The `# HELP` and `# TYPE` lines of metric `name`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.as_str()
        );
        self
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(label), "bad label name {label:?}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(&mut self.out, value.into());
        self.out.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<Value>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family: cumulative `_bucket` lines ending with `le="+Inf"`, `_sum` and
    /// `_count`. `h.buckets` are already cumulative; `+Inf` is `h.count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for &(bound, count) in &h.buckets {
            let mut le = String::new();
            push_value(&mut le, Value::Float(bound));
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn push_value(out: &mut String, v: Value) {
    match v {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        // Rust's shortest round-trip form ("0.005", "1", "1e-7") is valid Go float syntax.
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
    }
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed (a double quote stays as it is).
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__` prefix).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `fleetedge_*` metric, from one snapshot.
pub fn render(s: &Snapshot) -> String {
    use Kind::{Counter, Gauge};
    let mut t = TextFormat::new();

    t.family(
        "fleetedge_build_info",
        Gauge,
        "Always 1; the version label names the running fleetedge.",
    )
    .sample(
        "fleetedge_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1u64,
    );

    // Ingest.
    let name = "fleetedge_records_received_total";
    t.family(
        name,
        Counter,
        "Records stored in the buffer (the device was answered \"accepted\"), by protocol.",
    );
    for p in &s.protocols {
        t.sample(name, &[("protocol", p.name)], p.records_received);
    }
    let name = "fleetedge_decode_errors_total";
    t.family(
        name,
        Counter,
        "Malformed frames (connection closed, or frame skipped and answered), by protocol.",
    );
    for p in &s.protocols {
        t.sample(name, &[("protocol", p.name)], p.frames_malformed);
    }
    let name = "fleetedge_frames_skipped_total";
    t.family(
        name,
        Counter,
        "Well-formed frames of message types the decoder does not decode (skipped, not stored), by protocol and type (GT06 protocol number, Wialon packet type, …; at most 32 types per protocol, the rest as \"other\").",
    );
    for f in &s.frames_skipped {
        t.sample(
            name,
            &[("protocol", f.protocol), ("type", &f.message_type)],
            f.frames,
        );
    }
    t.single(
        "fleetedge_devices_refused_total",
        Counter,
        "Devices refused because they are not in the listener's allowed_devices.",
        s.devices_refused,
    );
    let name = "fleetedge_listener_connections_open";
    t.family(
        name,
        Gauge,
        "Device connections open, by TCP listener (index in [[listeners]]) and protocol.",
    );
    for l in &s.listeners {
        let index = l.index.to_string();
        t.sample(
            name,
            &[("listener", &index), ("protocol", &l.protocol)],
            l.connections_open,
        );
    }
    let name = "fleetedge_listener_connections_accepted_total";
    t.family(
        name,
        Counter,
        "Device connections accepted, by TCP listener (index in [[listeners]]) and protocol.",
    );
    for l in &s.listeners {
        let index = l.index.to_string();
        t.sample(
            name,
            &[("listener", &index), ("protocol", &l.protocol)],
            l.connections_accepted,
        );
    }

    // Buffer.
    let b = &s.buffer;
    t.single(
        "fleetedge_buffer_running",
        Gauge,
        "1 while the buffer's commit thread runs (appends can complete), else 0.",
        s.buffer_committer_alive,
    );
    t.single(
        "fleetedge_buffer_records",
        Gauge,
        "Records stored in the buffer and not yet acknowledged by the broker.",
        b.records,
    );
    t.single(
        "fleetedge_buffer_bytes",
        Gauge,
        "Bytes of stored (encoded) records in the buffer, the unit of buffer.max_bytes.",
        b.bytes,
    );
    t.single(
        "fleetedge_buffer_in_flight_records",
        Gauge,
        "Records admitted and waiting for their commit round (fsync).",
        b.in_flight_records,
    );
    t.single(
        "fleetedge_buffer_in_flight_bytes",
        Gauge,
        "Bytes admitted and waiting for their commit round (fsync).",
        b.in_flight_bytes,
    );
    t.single(
        "fleetedge_buffer_disk_bytes",
        Gauge,
        "Size of the buffer's sled files on disk (0 if sled cannot tell).",
        b.disk_bytes,
    );
    t.single(
        "fleetedge_buffer_full",
        Gauge,
        "Backpressure: 1 while the buffer is full (appends blocked or refused until the low-water mark), else 0.",
        b.full,
    );
    t.single(
        "fleetedge_buffer_alert_records",
        Gauge,
        "The buffer's alert level in records (buffer.alert_records; 0 = no alert).",
        b.alert_records,
    );
    t.single(
        "fleetedge_buffer_above_alert",
        Gauge,
        "1 while the stored records are at or above the alert level (until they fall back to 90 % of it), else 0.",
        b.above_alert,
    );
    t.single(
        "fleetedge_buffer_next_seq",
        Gauge,
        "The seq the next stored record will get.",
        b.next_seq,
    );
    t.family(
        "fleetedge_buffer_oldest_seq",
        Gauge,
        "The first seq of the oldest stored record; absent when the buffer is empty.",
    );
    if let Some(seq) = b.oldest_seq {
        t.sample("fleetedge_buffer_oldest_seq", &[], seq);
    }
    let name = "fleetedge_records_dropped_total";
    t.family(
        name,
        Counter,
        "Records not kept: reason drop_oldest = deleted unpublished (when_full = drop_oldest), refused = answered \"not accepted\" (when_full = reject).",
    );
    t.sample(name, &[("reason", "drop_oldest")], b.dropped_records);
    t.sample(name, &[("reason", "refused")], s.records_refused);
    t.single(
        "fleetedge_buffer_rejected_appends_total",
        Counter,
        "Appends (one device frame each) refused because the buffer was full.",
        b.rejected_appends,
    );
    t.single(
        "fleetedge_buffer_quarantined_chunks_total",
        Counter,
        "Stored chunks that could not be decoded and were moved to the quarantine tree.",
        b.quarantined_chunks,
    );
    t.single(
        "fleetedge_buffer_flushes_total",
        Counter,
        "Commit rounds flushed to disk (one fsync each).",
        b.flushes,
    );
    t.single(
        "fleetedge_buffer_disk_reclaims_total",
        Counter,
        "Times the drained buffer's files were recreated to give disk space back.",
        b.disk_reclaims,
    );
    t.single(
        "fleetedge_buffer_disk_reclaimed_bytes_total",
        Counter,
        "Bytes of disk space those reclaims gave back to the filesystem.",
        b.disk_reclaimed_bytes,
    );
    t.single(
        "fleetedge_buffer_disk_free_bytes",
        Gauge,
        "Bytes free for unprivileged writers on the buffer's filesystem.",
        b.disk_free_bytes,
    );
    t.single(
        "fleetedge_buffer_low_disk",
        Gauge,
        "1 while the buffer's filesystem is below buffer.min_free_bytes (new records refused per when_full), else 0.",
        b.low_disk,
    );
    t.single(
        "fleetedge_buffer_disk_refusals_total",
        Counter,
        "Appends (one device frame each) refused or held because of low disk space or a failing buffer database.",
        b.disk_refusals,
    );
    t.single(
        "fleetedge_buffer_failing",
        Gauge,
        "1 while the buffer database's writes fail (full disk, EIO) and it is being reopened, else 0.",
        b.failing,
    );
    t.single(
        "fleetedge_buffer_recoveries_total",
        Counter,
        "Times a failing buffer database was reopened and accepted records again.",
        b.recoveries,
    );
    t.single(
        "fleetedge_buffer_lost_records_total",
        Counter,
        "Records the durable mark said were stored but the database no longer held when it was opened.",
        b.lost_records,
    );

    // Uplink.
    t.single(
        "fleetedge_mqtt_connected",
        Gauge,
        "1 while connected to the MQTT broker (CONNACK received), else 0.",
        s.mqtt_connected,
    );
    t.single(
        "fleetedge_mqtt_connects_total",
        Counter,
        "MQTT connections established; each one after the first is a reconnect.",
        s.mqtt_connects,
    );
    let name = "fleetedge_mqtt_connection_failures_total";
    t.family(
        name,
        Counter,
        "MQTT connections or connection attempts that ended in an error, by reason.",
    );
    for (reason, n) in &s.mqtt_connection_failures {
        t.sample(name, &[("reason", reason)], *n);
    }
    t.single(
        "fleetedge_ngp_records_skipped_total",
        Counter,
        "Records uplink.format = ngp could not carry (no device time, refused device id).",
        s.ngp_records_skipped,
    );
    t.single(
        "fleetedge_records_published_total",
        Counter,
        "Records in batches the broker acknowledged (PUBACK).",
        s.records_published,
    );
    t.single(
        "fleetedge_batches_published_total",
        Counter,
        "Batches the broker acknowledged (PUBACK).",
        s.batches_published,
    );
    t.single(
        "fleetedge_batch_uncompressed_bytes_total",
        Counter,
        "Batch JSON bytes before compression, counted when a batch is sent.",
        s.batch_json_bytes,
    );
    t.single(
        "fleetedge_batch_compressed_bytes_total",
        Counter,
        "Batch payload bytes after compression, counted when a batch is sent.",
        s.batch_payload_bytes,
    );
    t.histogram(
        "fleetedge_publish_latency_seconds",
        "Seconds from publishing a batch to its release after PUBACK.",
        &s.publish_latency,
    );
    t.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::buffer::Buffer;
    use crate::metrics::Histogram;
    use crate::ops::{ListenerSample, ProtocolSample};

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

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nnext"), "line\\nnext");
        assert_eq!(escape_help("a \\ b\nc \"d\""), "a \\\\ b\\nc \"d\"");

        let mut t = TextFormat::new();
        t.family("x_total", Kind::Counter, "Help with \\ and\nnewline.");
        t.sample(
            "x_total",
            &[("protocol", "we\"ird\\\nname"), ("b", "")],
            3u64,
        );
        let text = t.finish();
        assert_eq!(
            text,
            "# HELP x_total Help with \\\\ and\\nnewline.\n\
             # TYPE x_total counter\n\
             x_total{protocol=\"we\\\"ird\\\\\\nname\",b=\"\"} 3\n"
        );
        let (_, samples) = parse(&text);
        assert_eq!(
            samples[0].labels[0].1, "we\"ird\\\nname",
            "escapes round-trip"
        );
        assert_eq!(samples[0].value, 3.0);
    }

    #[test]
    fn values_use_the_formats_spellings() {
        let mut t = TextFormat::new();
        t.family("v", Kind::Gauge, "h");
        for v in [0.005, 1.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            t.sample("v", &[], v);
        }
        t.sample("v", &[], true);
        t.sample("v", &[], u64::MAX);
        let text = t.finish();
        let values: Vec<&str> = text.lines().skip(2).map(|l| &l[2..]).collect();
        assert_eq!(
            values,
            [
                "0.005",
                "1",
                "+Inf",
                "-Inf",
                "NaN",
                "1",
                "18446744073709551615"
            ]
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let h = Histogram::new([10_000, 100_000, 1_000_000]);
        for ms in [1, 10, 11, 99, 500, 1000, 7000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut t = TextFormat::new();
        t.histogram("lat_seconds", "Latency.", &h.snapshot());
        let text = t.finish();
        assert_eq!(
            text,
            "# HELP lat_seconds Latency.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{le=\"0.01\"} 2\n\
             lat_seconds_bucket{le=\"0.1\"} 4\n\
             lat_seconds_bucket{le=\"1\"} 6\n\
             lat_seconds_bucket{le=\"+Inf\"} 7\n\
             lat_seconds_sum 8.621\n\
             lat_seconds_count 7\n"
        );
        let (families, samples) = parse(&text);
        assert_eq!(families["lat_seconds"], Kind::Histogram);
        check_histogram(&samples, "lat_seconds");
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

    fn snapshot(buffer: &Buffer) -> Snapshot {
        let h = Histogram::new([5_000, 50_000]);
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(70));
        Snapshot {
            protocols: vec![
                ProtocolSample {
                    name: "teltonika",
                    records_received: 12,
                    frames_malformed: 1,
                },
                ProtocolSample {
                    name: "gt06",
                    records_received: 0,
                    frames_malformed: 0,
                },
            ],
            frames_skipped: vec![crate::metrics::SkippedSample {
                protocol: "gt06",
                message_type: "0x8a".into(),
                frames: 7,
            }],
            listeners: vec![
                ListenerSample {
                    index: 0,
                    protocol: "teltonika".into(),
                    connections_open: 2,
                    connections_accepted: 5,
                },
                ListenerSample {
                    index: 2,
                    protocol: "gt06".into(),
                    connections_open: 0,
                    connections_accepted: 1,
                },
            ],
            devices_refused: 1,
            records_refused: 4,
            records_published: 10,
            batches_published: 2,
            batch_json_bytes: 5000,
            batch_payload_bytes: 900,
            mqtt_connected: true,
            mqtt_connects: 3,
            mqtt_connection_failures: vec![("refused", 0), ("puback_timeout", 2)],
            ngp_records_skipped: 0,
            publish_latency: h.snapshot(),
            buffer: buffer.stats(),
            buffer_committer_alive: buffer.committer_alive(),
        }
    }

    fn open_buffer(dir: &tempfile::TempDir) -> Buffer {
        let settings = crate::config::BufferSettings {
            path: dir.path().join("buffer"),
            ..Default::default()
        };
        Buffer::open(settings.options()).expect("open a buffer in a tempdir")
    }

    #[test]
    fn render_is_valid_text_format_with_every_metric() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = open_buffer(&dir);
        let snap = snapshot(&buffer);
        let text = render(&snap);
        let (families, samples) = parse(&text);
        assert!(families.keys().all(|n| n.starts_with("fleetedge_")));
        let expect = [
            (
                "fleetedge_records_received_total",
                &[("protocol", "teltonika")][..],
                12.0,
            ),
            (
                "fleetedge_records_received_total",
                &[("protocol", "gt06")],
                0.0,
            ),
            (
                "fleetedge_decode_errors_total",
                &[("protocol", "teltonika")],
                1.0,
            ),
            (
                "fleetedge_frames_skipped_total",
                &[("protocol", "gt06"), ("type", "0x8a")],
                7.0,
            ),
            ("fleetedge_devices_refused_total", &[], 1.0),
            (
                "fleetedge_listener_connections_open",
                &[("listener", "0"), ("protocol", "teltonika")],
                2.0,
            ),
            (
                "fleetedge_listener_connections_accepted_total",
                &[("listener", "2"), ("protocol", "gt06")],
                1.0,
            ),
            (
                "fleetedge_records_dropped_total",
                &[("reason", "refused")],
                4.0,
            ),
            (
                "fleetedge_records_dropped_total",
                &[("reason", "drop_oldest")],
                0.0,
            ),
            ("fleetedge_records_published_total", &[], 10.0),
            ("fleetedge_batches_published_total", &[], 2.0),
            ("fleetedge_batch_uncompressed_bytes_total", &[], 5000.0),
            ("fleetedge_batch_compressed_bytes_total", &[], 900.0),
            ("fleetedge_mqtt_connected", &[], 1.0),
            ("fleetedge_mqtt_connects_total", &[], 3.0),
            (
                "fleetedge_mqtt_connection_failures_total",
                &[("reason", "puback_timeout")],
                2.0,
            ),
            (
                "fleetedge_mqtt_connection_failures_total",
                &[("reason", "refused")],
                0.0,
            ),
            ("fleetedge_buffer_records", &[], 0.0),
            ("fleetedge_buffer_bytes", &[], 0.0),
            ("fleetedge_buffer_full", &[], 0.0),
            ("fleetedge_buffer_running", &[], 1.0),
            (
                "fleetedge_buffer_disk_bytes",
                &[],
                snap.buffer.disk_bytes as f64,
            ),
            ("fleetedge_publish_latency_seconds_count", &[], 2.0),
        ];
        for (name, labels, want) in expect {
            assert_eq!(
                value_of(&samples, name, labels),
                Some(want),
                "{name}{labels:?} in\n{text}"
            );
        }
        check_histogram(&samples, "fleetedge_publish_latency_seconds");
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
        let snapshot = snapshot(&buffer);
        // The field names, from the derived Debug: `BufferStats { records: 0, bytes: 0, … }`.
        let debug = format!("{:?}", snapshot.buffer);
        let body = debug
            .split_once('{')
            .and_then(|(_, b)| b.rsplit_once('}'))
            .map(|(b, _)| b)
            .expect("BufferStats derives Debug as a struct");
        let text = render(&snapshot);
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
                    "BufferStats::{field} is not on /metrics: render it in ops::prometheus::render \
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
