//! What the devices sent and had accepted ([`Ledger`]), checked against what reached the
//! broker ([`verify_delivery`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use firmware_protocols::teltonika::encode::AvlRecord;

use super::devices::{check_fields, time_of};
use super::mqtt::Got;

#[derive(Debug, Clone)]
pub struct SentRecord {
    pub imei: String,
    pub record: AvlRecord,
    /// How many times the record went out in a packet (resends after a lost reply count).
    pub times_sent: u32,
    /// The gateway answered the packet carrying it with its full count.
    pub accepted: bool,
}

/// Every record the devices sent, keyed by (device_id, time) as the record JSON writes them.
#[derive(Debug, Default)]
pub struct Ledger {
    pub records: HashMap<(String, String), SentRecord>,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

impl Ledger {
    pub fn sent(&mut self, imei: &str, records: &[AvlRecord]) {
        for r in records {
            self.records
                .entry((imei.to_string(), time_of(r)))
                .or_insert_with(|| SentRecord {
                    imei: imei.to_string(),
                    record: r.clone(),
                    times_sent: 0,
                    accepted: false,
                })
                .times_sent += 1;
        }
    }

    pub fn accepted(&mut self, imei: &str, records: &[AvlRecord]) {
        for r in records {
            if let Some(s) = self.records.get_mut(&(imei.to_string(), time_of(r))) {
                s.accepted = true;
            }
        }
    }

    pub fn accepted_count(&self) -> usize {
        self.records.values().filter(|s| s.accepted).count()
    }

    pub fn resent_count(&self) -> usize {
        self.records.values().filter(|s| s.times_sent > 1).count()
    }
}

/// What the broker received, checked against the ledger:
///
/// - every batch met the contract (schema, gateway_id, count, first/last seq, seq order);
/// - every record came from a device, with every field as the device encoded it;
/// - no `(gateway_id, seq)` carries two different records (seqs are never reused);
/// - a record arrives under more than one seq only if the device sent it more than once
///   (a lost reply); copies under the same seq are identical (redelivery);
/// - every accepted record arrived;
/// - with `exactly_once`, every record arrived exactly once.
///
/// Returns every violation, so a failing test shows them all.
pub fn verify_delivery(
    ledger: &Ledger,
    got: &[Got],
    batch_errors: &[String],
    gateway_id: &str,
    exactly_once: bool,
) -> Vec<String> {
    let mut problems: Vec<String> = batch_errors.iter().map(|e| format!("batch: {e}")).collect();
    let mut by_seq: HashMap<(&str, u64), &Got> = HashMap::new();
    let mut seqs_of: HashMap<(&str, &str), HashSet<u64>> = HashMap::new();
    let mut deliveries: HashMap<(&str, &str), usize> = HashMap::new();
    for g in got {
        if g.gateway_id != gateway_id {
            problems.push(format!(
                "seq {}: gateway_id {:?}, want {gateway_id:?}",
                g.seq, g.gateway_id
            ));
        }
        match ledger.records.get(&(g.device_id.clone(), g.time.clone())) {
            None => problems.push(format!(
                "seq {}: a record no device sent: {} @ {}",
                g.seq, g.device_id, g.time
            )),
            Some(s) => {
                if let Err(e) = check_fields(&s.imei, &s.record, &g.record) {
                    problems.push(format!("seq {} ({} @ {}): {e}", g.seq, g.device_id, g.time));
                }
            }
        }
        match by_seq.get(&(g.gateway_id.as_str(), g.seq)) {
            Some(first) if first.record != g.record => problems.push(format!(
                "({}, {}) carries two different records:\n  {}\n  {}",
                g.gateway_id, g.seq, first.record, g.record
            )),
            Some(_) => {}
            None => {
                by_seq.insert((g.gateway_id.as_str(), g.seq), g);
            }
        }
        seqs_of
            .entry((g.device_id.as_str(), g.time.as_str()))
            .or_default()
            .insert(g.seq);
        *deliveries
            .entry((g.device_id.as_str(), g.time.as_str()))
            .or_default() += 1;
    }
    for ((device, time), seqs) in &seqs_of {
        let sent = ledger
            .records
            .get(&(device.to_string(), time.to_string()))
            .map_or(0, |s| s.times_sent);
        if seqs.len() as u32 > sent {
            let mut seqs: Vec<_> = seqs.iter().collect();
            seqs.sort();
            problems.push(format!(
                "{device} @ {time} was sent {sent} time(s) but stored under {} seqs {seqs:?}",
                seqs.len()
            ));
        }
    }
    let mut missing: Vec<_> = ledger
        .records
        .iter()
        .filter(|(key, s)| s.accepted && !seqs_of.contains_key(&(key.0.as_str(), key.1.as_str())))
        .map(|(key, _)| format!("{} @ {}", key.0, key.1))
        .collect();
    missing.sort();
    if !missing.is_empty() {
        problems.push(format!(
            "{} accepted record(s) never reached the broker, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if exactly_once {
        let mut twice: Vec<_> = deliveries
            .iter()
            .filter(|(_, n)| **n != 1)
            .map(|((d, t), n)| format!("{d} @ {t} ×{n}"))
            .collect();
        twice.sort();
        if !twice.is_empty() {
            problems.push(format!(
                "{} record(s) arrived more than once, e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(10)]
            ));
        }
        let not_arrived = ledger
            .records
            .keys()
            .filter(|k| !seqs_of.contains_key(&(k.0.as_str(), k.1.as_str())))
            .count();
        if not_arrived > 0 {
            problems.push(format!("{not_arrived} sent record(s) never arrived"));
        }
    }
    problems
}

/// Panics with every problem (and the first few lines of context) if there are any.
pub fn assert_no_problems(what: &str, problems: &[String]) {
    if !problems.is_empty() {
        let shown: Vec<_> = problems.iter().take(30).cloned().collect();
        panic!(
            "{what}: {} problem(s):\n  - {}",
            problems.len(),
            shown.join("\n  - ")
        );
    }
}

impl Ledger {
    /// The (device_id, time) of every accepted record.
    pub fn accepted_keys(&self) -> HashSet<(String, String)> {
        self.records
            .iter()
            .filter(|(_, s)| s.accepted)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
