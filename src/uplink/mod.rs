//! The uplink: oldest unacked records out of the buffer, batched, encoded, compressed, and
//! published over MQTT; records leave the buffer only after their batch's PUBACK.
//!
//! - [`payload`]: the batch JSON and its compression (the cloud contract).
//! - [`window`]: outstanding batches of one connection and their packet ids (pure).
//! - [`staging`]: records read from the buffer and when a partial batch is due (pure).
//! - [`backoff`]: reconnect delays (pure).
//! - [`connection`]: one MQTT connection's IO, from CONNECT to the first error.
//!
//! The application, with sled as the truth, is the one owner of retransmission: each
//! connection starts from a clean session and the oldest unacked record, so a batch lost in
//! rumqttc's reconnect handling is simply sent again with the same seqs.

pub mod backoff;
pub mod connection;
pub mod payload;
pub mod staging;
pub mod window;

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::Settings;
use backoff::Backoff;
use connection::{ConnectionEnd, UplinkContext};

/// Runs until `shutdown` turns true: connect, publish, and on any failure back off and
/// start again from the oldest unacked record.
pub async fn run(settings: &Settings, buffer: Buffer, mut shutdown: watch::Receiver<bool>) {
    let u = &settings.uplink;
    let mut backoff = Backoff::new(
        Duration::from_millis(u.backoff_initial_ms),
        Duration::from_millis(u.backoff_max_ms),
        Duration::from_secs(u.backoff_reset_after_s),
    );
    let mut ctx = match UplinkContext::new(settings, buffer) {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::error!(error = %e, "uplink cannot start");
            return;
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (end, connected_at) = ctx.run_connection(&mut shutdown).await;
        match end {
            ConnectionEnd::Shutdown => return,
            ConnectionEnd::Failed(reason) => {
                crate::metrics::add(&crate::metrics::METRICS.mqtt_connection_failures, 1);
                let delay = backoff.next_delay(connected_at, Instant::now(), rand::random());
                tracing::warn!(
                    broker = %ctx.broker(),
                    %reason,
                    retry_in_ms = delay.as_millis() as u64,
                    failures = backoff.failures(),
                    "MQTT connection ended; unacked records will be resent"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
