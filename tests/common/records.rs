//! Expected records of any protocol, as record JSON, checked against what reached the broker.

use std::time::Duration;

use serde_json::Value;

use super::delivery::assert_no_problems;
use super::mqtt::Collector;

/// Numbers within 1e-6 (relative to their size), everything else equal.
pub fn same_value(got: &Value, want: &Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => (g - w).abs() <= 1e-6 * w.abs().max(1.0),
        _ => got == want,
    }
}

/// How record JSON `got` differs from `want`: every top-level key of `want` must match
/// (numbers approximately); `want["io"]` must be a subset of `got["io"]`.
pub fn record_mismatches(got: &Value, want: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, w) in want.as_object().expect("want is an object") {
        if key == "io" {
            for (io_key, wv) in w.as_object().expect("want io is an object") {
                let gv = &got["io"][io_key];
                if !same_value(gv, wv) {
                    problems.push(format!("io.{io_key}: want {wv}, got {gv}"));
                }
            }
        } else if !same_value(&got[key], w) {
            problems.push(format!("{key}: want {w}, got {}", got[key]));
        }
    }
    problems
}

/// A record JSON's (device_id, time), both as JSON text (a null time is `null`).
pub fn record_key(v: &Value) -> (String, String) {
    (v["device_id"].to_string(), v["time"].to_string())
}

/// Waits up to `timeout` until a record for every `want` (by device_id and time) reached the
/// broker, then panics with every problem: a want that never arrived, arrived more than once
/// or differs in a field it names; a record of one of `devices` that is not wanted and not
/// accepted by `extra_ok` (e.g. a heartbeat record).
pub async fn expect_records(
    collector: &Collector,
    timeout: Duration,
    devices: &[&str],
    wants: &[Value],
    extra_ok: impl Fn(&Value) -> bool,
) {
    let keys: Vec<(String, String)> = wants.iter().map(record_key).collect();
    let all = collector
        .wait_for_records(timeout, |recs| {
            keys.iter()
                .all(|k| recs.iter().any(|r| record_key(r) == *k))
        })
        .await;
    let mut problems = Vec::new();
    for (want, key) in wants.iter().zip(&keys) {
        let found: Vec<&Value> = all.iter().filter(|r| record_key(r) == *key).collect();
        let at = format!("{} @ {}", want["device_id"], want["time"]);
        match found.as_slice() {
            [] => problems.push(format!("never arrived (within {timeout:?}): {at}")),
            [got] => {
                for p in record_mismatches(got, want) {
                    problems.push(format!("{at}: {p}"));
                }
            }
            more => problems.push(format!("{at} arrived {} times: {more:?}", more.len())),
        }
    }
    for r in &all {
        let ours = devices.iter().any(|d| r["device_id"] == *d);
        if ours && !keys.contains(&record_key(r)) && !extra_ok(r) {
            problems.push(format!("unexpected record: {r}"));
        }
    }
    assert_no_problems("records at the broker", &problems);
}

/// The collector's contract errors, except records with a null `time` that carry a seq and
/// a device_id: the contract writes absent values as null, and some records (a GT06
/// heartbeat) have no device time.
pub fn contract_errors(collector: &Collector) -> Vec<String> {
    const TIMELESS: &str = "a record without seq, device_id or time: ";
    let (_, errors, _) = collector.snapshot();
    errors
        .into_iter()
        .filter(|e| {
            let Some(at) = e.find(TIMELESS) else {
                return true;
            };
            let record: Value = serde_json::from_str(&e[at + TIMELESS.len()..]).unwrap_or_default();
            !(record["seq"].is_u64() && record["device_id"].is_string() && record["time"].is_null())
        })
        .collect()
}
