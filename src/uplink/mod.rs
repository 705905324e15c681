//! The uplink: oldest unacked records out of the buffer, batched, encoded, compressed, and
//! published over MQTT; records leave the buffer only after their batch's PUBACK.
//!
//! - [`payload`]: the batch JSON and its compression (the cloud contract).
//! - [`ngp`]: the Navixy Generic Protocol message of one record and its topic (pure).
//! - [`window`]: outstanding batches of one connection and their packet ids (pure).
//! - [`staging`]: records read from the buffer and when a partial batch is due (pure).
//! - [`backoff`]: reconnect delays (pure).
//! - [`rate`]: the token buckets on messages and bytes per second.
//! - [`status`]: the retained online/offline status message (pure).
//! - [`tls`]: the rustls client configuration from `[mqtt.tls]`.
//! - [`connection`]: one MQTT connection's IO, from CONNECT to the first error, or to the
//!   DISCONNECT of a graceful shutdown.
//!
//! The application, with sled as the truth, is the one owner of retransmission: each
//! connection starts from a clean session and the oldest unacked record, so a batch lost in
//! rumqttc's reconnect handling is simply sent again with the same seqs.

pub mod backoff;
pub mod connection;
pub mod ngp;
pub mod payload;
pub mod rate;
pub mod staging;
pub mod status;
pub mod tls;
pub mod window;

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::Settings;
use backoff::Backoff;
use connection::{ConnectionEnd, UplinkContext};

/// Runs until `shutdown` turns true, then publishes what the buffer holds for up to
/// `uplink.shutdown_publish_s`, publishes the offline status and disconnects. Until then:
/// connect, publish, and on any failure back off and start again from the oldest unacked
/// record.
pub async fn run(settings: &Settings, buffer: Buffer, mut shutdown: watch::Receiver<bool>) {
    // Uptime in the status message counts from here, moments after the process started.
    let _ = status::uptime();
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
        // Connecting is bounded by `connect_timeout_s` (+1 s for the CONNACK wait).
        crate::watchdog::UPLINK
            .beat_within(Duration::from_secs(settings.mqtt.connect_timeout_s + 1));
        let (end, connected_at) = ctx.run_connection(&mut shutdown).await;
        let delay = match end {
            ConnectionEnd::Shutdown => return,
            ConnectionEnd::Refused(reason) => {
                crate::metrics::add(&crate::metrics::METRICS.mqtt_connection_failures, 1);
                let delay = backoff.refused(rand::random());
                tracing::error!(
                    broker = %ctx.broker(),
                    retry_in_ms = delay.as_millis() as u64,
                    backoff_max_ms = u.backoff_max_ms,
                    failures = backoff.failures(),
                    "broker refused the connection: {reason}; retrying at the backoff cap"
                );
                delay
            }
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
                delay
            }
        };
        // A shutdown seen while the connection was failing must not wait out the delay.
        if *shutdown.borrow() {
            return;
        }
        crate::watchdog::UPLINK.beat_within(delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}
