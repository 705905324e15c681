//! Command metrics, in their own registry ([`registry`]), which `/metrics` encodes after
//! `crate::metrics`'s: `fleetedge_commands_total{protocol,status}` (results by
//! the device's protocol, `unknown` before the gateway has seen the device; a series appears
//! with its first result), the `fleetedge_commands_queued` gauge and
//! `fleetedge_commands_duplicates_total`.

use std::sync::LazyLock;

use firmware_protocols::registry::PROTOCOLS;
use firmware_protocols::Protocol;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::message::Status;
use crate::metrics::{register, CountGauge, Labels};

struct CommandMetrics {
    registry: Registry,
    results: Family<Labels, Counter>,
    queued: CountGauge,
    /// Commands whose id was seen before, not sent again.
    duplicates: Counter,
}

static COMMANDS: LazyLock<CommandMetrics> = LazyLock::new(|| {
    let mut r = Registry::default();
    CommandMetrics {
        results: register(
            &mut r,
            "fleetedge_commands",
            "Downlink command results published, by the device's protocol and status.",
            Family::default(),
        ),
        queued: register(
            &mut r,
            "fleetedge_commands_queued",
            "Downlink commands queued or sent and not yet settled.",
            CountGauge::default(),
        ),
        duplicates: register(
            &mut r,
            "fleetedge_commands_duplicates",
            "Commands whose id was accepted before; not sent again.",
            Counter::default(),
        ),
        registry: r,
    }
});

/// The command families, for `/metrics`.
pub fn registry() -> &'static Registry {
    &COMMANDS.registry
}

pub fn count(protocol: Option<Protocol>, status: Status) {
    let name = protocol
        .and_then(|p| PROTOCOLS.iter().find(|s| s.protocol == p))
        .map_or("unknown", |s| s.name());
    let labels = vec![
        ("protocol", name.to_owned()),
        ("status", status.as_str().to_owned()),
    ];
    COMMANDS.results.get_or_create(&labels).inc();
}

pub fn set_queued(n: usize) {
    COMMANDS.queued.set(n as u64);
}

pub fn queued() -> u64 {
    COMMANDS.queued.get()
}

pub fn duplicate() {
    COMMANDS.duplicates.inc();
}
