//! Counters of records dropped on purpose: duplicates by protocol, filtered by reason.
//! Their own registry ([`registry`]), which `/metrics` encodes after `crate::metrics`'s;
//! every series exists from the first scrape.

use std::sync::LazyLock;

use firmware_protocols::registry::PROTOCOLS;
use firmware_protocols::Protocol;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::filter::FilterReason;
use crate::metrics::Labels;

struct CleanMetrics {
    registry: Registry,
    /// `fleetedge_records_duplicate_total{protocol}`: series `i` is `PROTOCOLS[i]`.
    by_protocol: Vec<Counter>,
    /// `fleetedge_records_filtered_total{reason}`: series `i` is `FilterReason::ALL[i]`.
    by_reason: Vec<Counter>,
}

static CLEAN: LazyLock<CleanMetrics> = LazyLock::new(|| {
    let duplicates: Family<Labels, Counter> = Family::default();
    let by_protocol = PROTOCOLS
        .iter()
        .map(|p| duplicates.get_or_create_owned(&vec![("protocol", p.name().to_owned())]))
        .collect();
    let filtered: Family<Labels, Counter> = Family::default();
    let by_reason = FilterReason::ALL
        .iter()
        .map(|r| filtered.get_or_create_owned(&vec![("reason", r.as_str().to_owned())]))
        .collect();
    let mut registry = Registry::default();
    crate::metrics::register(
        &mut registry,
        "fleetedge_records_duplicate",
        "Records answered but not stored: identical to one already stored for the device (same device time and content), by protocol.",
        duplicates,
    );
    crate::metrics::register(
        &mut registry,
        "fleetedge_records_filtered",
        "Records answered but not stored because a listener's filter dropped them, by reason.",
        filtered,
    );
    CleanMetrics {
        registry,
        by_protocol,
        by_reason,
    }
});

/// Both families, for `/metrics`.
pub fn registry() -> &'static Registry {
    &CLEAN.registry
}

/// One record of `protocol` was a duplicate (rare: a registry lookup is fine).
pub fn duplicate(protocol: Protocol) {
    let slot = PROTOCOLS.iter().position(|p| p.name() == protocol.as_str());
    if let Some(c) = slot.and_then(|i| CLEAN.by_protocol.get(i)) {
        c.inc();
    }
}

/// One record was dropped by a filter.
pub fn filtered(reason: FilterReason) {
    if let Some(c) = CLEAN.by_reason.get(reason.index()) {
        c.inc();
    }
}
