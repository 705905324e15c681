//! The uplink: oldest unacked records out of the buffer, batched, encoded, compressed, and
//! published over MQTT; records leave the buffer only after their batch's PUBACK.
//!
//! - [`payload`]: the batch JSON and its compression (the cloud contract).
//! - [`ngp`]: the Navixy Generic Protocol message of one record and its topic (pure).
//! - [`publisher`]: the publish logic as a pure state machine (window, staging, rate limit,
//!   status timing, PUBACK timeout, shutdown drain, removal after PUBACK); events and the
//!   time in, actions out.
//! - [`window`]: outstanding batches of one connection and their packet ids (pure).
//! - [`staging`]: records read from the buffer and when a partial batch is due (pure).
//! - [`outgoing`]: the messages built from staged records, and the status messages (pure).
//! - [`removal`]: what was acknowledged and removed; failed removals held and retried (pure).
//! - [`backoff`]: reconnect delays (pure).
//! - [`rate`]: the token buckets on messages and bytes per second (governor, time passed in).
//! - [`status`]: the retained online/offline status message (pure).
//! - [`error`]: why a connection ended, and its bounded reason label.
//! - [`tls`]: the rustls client configuration from `[mqtt.tls]`.
//! - [`connection`]: one MQTT connection's IO (the rumqttc pump and one `select!`) carrying
//!   out the publisher's actions.
//!
//! The application, with sled as the truth, is the one owner of retransmission: each
//! connection starts from a clean session and the oldest unacked record, so a batch lost in
//! rumqttc's reconnect handling is simply sent again with the same seqs.

pub mod alarm_lane;
pub mod backoff;
pub mod connection;
pub mod error;
pub mod ngp;
mod options;
pub mod outgoing;
pub mod payload;
pub mod publisher;
pub mod rate;
pub mod removal;
pub mod staging;
pub mod status;
pub mod tls;
pub mod window;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::Settings;
use backoff::Backoff;
use connection::{ConnectionEnd, UplinkContext};
use error::UplinkError;
pub use options::UplinkOptions;
pub use removal::RemovalStalled;

/// The uplink's removal state, for `/health` and `/ready`: `Some` while acknowledged records
/// cannot be removed from the buffer (they are held, not published again, and the removal
/// is retried).
static REMOVAL_STALLED: Mutex<Option<RemovalStalled>> = Mutex::new(None);

/// `Some` while removing acknowledged records from the buffer fails (a full disk).
pub fn removal_stalled() -> Option<RemovalStalled> {
    REMOVAL_STALLED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn set_removal_stalled(state: Option<RemovalStalled>) {
    *REMOVAL_STALLED
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = state;
}

/// Runs until `shutdown` turns true, then publishes what the buffer holds for up to
/// `uplink.shutdown_publish_s`, publishes the offline status and disconnects. Until then:
/// connect, publish, and on any failure back off and start again from the oldest unacked
/// record.
pub async fn run(settings: &Settings, buffer: Buffer, mut shutdown: watch::Receiver<bool>) {
    // Uptime in the status message counts from here, moments after the process started.
    let _ = status::uptime();
    let u = settings.uplink.options();
    let mut backoff = Backoff::new(u.backoff_initial, u.backoff_max, u.backoff_reset_after);
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
        let (end, ended) = ctx.run_connection(&mut shutdown).await;
        let delay = match end {
            ConnectionEnd::Shutdown => return,
            ConnectionEnd::Failed(e) => {
                crate::metrics::mqtt_connection_failed(e.reason());
                match e {
                    UplinkError::Refused(reason) => {
                        let delay = backoff.refused(rand::random());
                        tracing::error!(
                            broker = %ctx.broker(),
                            retry_in_ms = delay.as_millis() as u64,
                            backoff_max_ms = u.backoff_max.as_millis() as u64,
                            failures = backoff.failures(),
                            "broker refused the connection: {reason}; retrying at the backoff cap"
                        );
                        delay
                    }
                    e => {
                        let delay = backoff.next_delay(ended, Instant::now(), rand::random());
                        tracing::warn!(
                            broker = %ctx.broker(),
                            reason = %e,
                            kind = e.reason().as_str(),
                            retry_in_ms = delay.as_millis() as u64,
                            failures = backoff.failures(),
                            "MQTT connection ended; unacked records will be resent"
                        );
                        delay
                    }
                }
            }
        };
        // A shutdown seen while the connection was failing must not wait out the delay.
        if *shutdown.borrow() {
            return;
        }
        crate::watchdog::UPLINK.beat_within(delay);
        let until = Instant::now() + delay;
        loop {
            // Removals that failed are retried while waiting for the broker: freeing the
            // disk matters to the devices meanwhile.
            let retry = ctx.removal_retry_at().filter(|t| *t < until);
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => break,
                _ = connection::sleep_until(retry), if retry.is_some() => ctx.retry_removals(),
                _ = shutdown.changed() => return,
            }
        }
    }
}
