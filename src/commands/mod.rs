//! Downlink commands: from the cloud (MQTT) or an installer (HTTP) to a connected device,
//! with the device's answer published back. The same promises as the data path: nothing
//! accepted is lost (sled, acknowledged only once durable), nothing unbounded (config
//! limits), every bad input answered with a reason (`rejected`).
//!
//! # Files
//!
//! - `config.rs`: `[commands]` and its validation (limits, per-source allow-lists).
//! - `message.rs`: the cloud contract: command JSON in, result JSON out (pure).
//! - `state.rs`: the per-device queues as a pure state machine, time passed in.
//! - `store.rs`: the sled layout (a tree in the buffer's database) and the results outbox.
//! - `service.rs`: [`Commands`]: queues + store + the directory of connected devices.
//! - `mqtt.rs`: the command connection (own client id, persistent session, manual acks).
//! - `metrics.rs`: `fleetedge_commands_total{protocol,status}`, the queued gauge.
//! - `cli.rs`: `fleetedge command`, through the running gateway's HTTP endpoint.
//!
//! # Flow
//!
//! ```text
//! cloud ─PUBLISH {prefix}/{gw}/commands─▶ mqtt.rs ─▶ Commands::accept ─▶ sled (fsync) ─▶ PUBACK
//!                                                        │ (device connected)
//! ingest session (logged-in device) ◀─ channel(1) ◀─ dispatch
//!   idle? ─▶ mark_sent (fsync) ─▶ write the frame ─▶ … answer frame ─▶ Commands::answered
//!                                                        │
//! cloud ◀─PUBLISH {prefix}/{gw}/command-results─ mqtt.rs ◀─ outbox (removed after PUBACK)
//! ```
//!
//! Layering: ingest sessions know [`Commands`] (register, mark_sent, answered,
//! unregister), never MQTT; `mqtt.rs` knows [`Commands`], never ingest. The buffer only
//! keeps the `commands` tree alive.

pub mod cli;
pub mod config;
pub mod message;
pub mod metrics;
pub mod mqtt;
pub mod service;
pub mod state;
pub mod store;
#[cfg(test)]
mod tests;

pub use service::{Commands, Delivery, Registration, Seen, MAX_DEVICES_PER_SESSION};

use std::time::Duration;

use tokio::sync::watch;

use crate::config::Settings;

/// Milliseconds since the Unix epoch: the time results carry and ttls count from.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a session needs to take commands: the service and where its device came in.
#[derive(Debug, Clone)]
pub struct Port {
    pub commands: Commands,
    pub source: config::Source,
}

/// Runs the command connection and the clock (expiry, answer timeouts) until `shutdown`.
pub fn spawn(
    settings: &Settings,
    commands: Commands,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let clock = {
        let (commands, mut shutdown) = (commands.clone(), shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => commands.tick(now_ms()),
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    let settings = settings.clone();
    tokio::spawn(async move {
        tokio::join!(clock, mqtt::run(settings, commands, shutdown));
    })
}
