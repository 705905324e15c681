//! Ingest: device connections in, records into the buffer, replies out after durability.
//!
//! - [`tcp`]: TCP listeners, the connection limit (taken before `accept`), one task per device.
//! - [`udp`]: UDP listeners: one datagram, one frame, answered after its records are durable.
//! - [`serial`]: serial ports, reopened with backoff when missing or unplugged.
//! - [`session`]: one byte stream (TCP connection or serial port): read, frame, decode,
//!   append, reply; one durable point per read.
//! - [`per_ip`]: `ingest.max_connections_per_ip`, connections one address may hold.
//! - [`answer`]: the answer rule every transport shares (frame + allow-list + what the
//!   buffer did → bytes to send, or close).
//!
//! With `[commands]` on, every transport takes downlink commands through
//! [`crate::commands::Commands`]: stream sessions once their device logged in, UDP right
//! after a device's datagram is answered.
//!
//! Protocols come from `firmware_protocols::registry`; a listener or port names its protocol
//! in the config.

pub mod answer;
pub mod per_ip;
pub mod serial;
pub mod session;
pub mod tcp;
pub mod udp;

use std::sync::Arc;
use std::time::Duration;

use firmware_protocols::registry::{self, Transport};
use firmware_protocols::DecoderOptions;
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::buffer::Buffer;
use crate::config::Settings;

/// A listener's `allowed_devices`: empty allows every device.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Arc<std::collections::HashSet<String>>);

impl AllowList {
    pub fn new(devices: &[String]) -> AllowList {
        AllowList(Arc::new(devices.iter().cloned().collect()))
    }

    pub fn allows(&self, device: &str) -> bool {
        self.0.is_empty() || self.0.contains(device)
    }
}

/// Every source, bound (listeners) or prepared (serial ports), ready to serve.
pub struct Sources {
    pub tcp: Vec<tcp::BoundTcp>,
    pub udp: Vec<udp::BoundUdp>,
    pub serial: Vec<serial::SerialPort>,
}

/// Binds every listener up front, so a bad `bind` fails the start with its key.
/// With `commands`, logged-in devices of stream sessions join the command directory.
pub async fn bind(
    settings: &Settings,
    commands: Option<&crate::commands::Commands>,
) -> anyhow::Result<Sources> {
    let mut sources = Sources {
        tcp: Vec::new(),
        udp: Vec::new(),
        serial: Vec::new(),
    };
    for (index, l) in settings.listeners.iter().enumerate() {
        let spec = registry::lookup(&l.protocol).ok_or_else(|| {
            anyhow::anyhow!(
                "listeners[{index}].protocol: unknown protocol {:?}",
                l.protocol
            )
        })?;
        match spec.transport {
            Transport::Stream(make) => sources
                .tcp
                .push(tcp::BoundTcp::bind(index, l, make, settings, commands).await?),
            Transport::Datagram(make) => sources
                .udp
                .push(udp::BoundUdp::bind(index, l, make, settings, commands).await?),
        }
    }
    for (index, s) in settings.serial.iter().enumerate() {
        match registry::lookup(&s.protocol).map(|spec| spec.transport) {
            Some(Transport::Stream(make)) => sources
                .serial
                .push(serial::SerialPort::new(index, s, make, settings, commands)),
            _ => anyhow::bail!(
                "serial[{index}].protocol: {:?} is not a stream protocol",
                s.protocol
            ),
        }
    }
    Ok(sources)
}

/// Serves every source until `shutdown`; returns once all of them stopped, device sessions
/// and datagrams being stored included (each answers what it stored, then ends).
pub async fn serve(
    sources: Sources,
    settings: &Settings,
    buffer: Buffer,
    shutdown: watch::Receiver<bool>,
) {
    // Separate limits: long-lived TCP connections must not starve UDP devices, and a UDP
    // flood must not take the slots of TCP devices.
    let options = settings.ingest.options();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let datagrams = Arc::new(Semaphore::new(options.max_datagrams_in_flight));
    let per_ip = per_ip::PerIp::new(options.max_connections_per_ip);
    // Listeners, serial ports, and every session and datagram task they start.
    let tasks = TaskTracker::new();
    for l in sources.tcp {
        let serve = l.serve(
            connections.clone(),
            buffer.clone(),
            per_ip.clone(),
            tasks.clone(),
            shutdown.clone(),
        );
        tasks.spawn(serve);
    }
    for l in sources.udp {
        let serve = l.serve(
            datagrams.clone(),
            buffer.clone(),
            tasks.clone(),
            shutdown.clone(),
        );
        tasks.spawn(serve);
    }
    for p in sources.serial {
        tasks.spawn(p.serve(buffer.clone(), shutdown.clone()));
    }
    tasks.close();
    tasks.wait().await;
}

/// Milliseconds since the Unix epoch, the receive time stamped on records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How ingest runs: the limits and timeouts of `[ingest]`, in the units the code uses
/// ([`IngestSettings::options`](crate::config::IngestSettings::options)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOptions {
    /// Device connections open at once, over all TCP listeners.
    pub max_connections: usize,
    /// Device connections one address may hold at once; 0 = no limit.
    pub max_connections_per_ip: usize,
    /// UDP datagrams decoded and waiting for their append at once.
    pub max_datagrams_in_flight: usize,
    /// A device connection silent this long is closed.
    pub idle_timeout: Duration,
    /// A new TCP connection must identify its device within this long of its accept.
    pub first_frame_timeout: Duration,
    /// What every source's decoder is built from (frame bound, raw bytes kept).
    pub decoder: DecoderOptions,
}

/// Decoder options shared by every source, from `[ingest]`.
pub fn decoder_options(settings: &Settings) -> DecoderOptions {
    settings.ingest.options().decoder
}
#[cfg(test)]
mod tests;
