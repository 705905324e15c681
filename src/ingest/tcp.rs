//! TCP listeners: one accept loop per listener, all sharing one connection limit and the
//! per-address limit ([`super::per_ip`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use firmware_protocols::{DecoderOptions, StreamDecoder};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use super::per_ip::{PerIp, Taken};
use super::session::{Session, SessionConfig};
use crate::buffer::Buffer;
use crate::config::{ListenerSettings, Settings};
use crate::metrics;

/// A bound TCP listener, ready to accept.
pub struct BoundTcp {
    pub index: usize,
    pub local_addr: SocketAddr,
    listener: TcpListener,
    session: Arc<SessionConfig>,
    /// This listener's connection gauges on `/metrics`.
    counters: Arc<metrics::ListenerCounters>,
}

impl BoundTcp {
    /// Binds `[[listeners]]` entry `index`; the error names the entry.
    pub async fn bind(
        index: usize,
        l: &ListenerSettings,
        make_decoder: fn(&DecoderOptions) -> Box<dyn StreamDecoder>,
        settings: &Settings,
        commands: Option<&crate::commands::Commands>,
    ) -> anyhow::Result<BoundTcp> {
        let listener = crate::listen::tcp(&l.bind).await.map_err(|e| {
            anyhow::anyhow!(
                "listeners[{index}].bind: cannot listen on TCP {}: {e}",
                l.bind
            )
        })?;
        let local_addr = listener.local_addr()?;
        let ingest = settings.ingest.options();
        let session = Arc::new(SessionConfig {
            protocol: l.protocol.clone(),
            make_decoder,
            decoder: DecoderOptions {
                ack_reports: l.ack_reports,
                ..ingest.decoder
            },
            idle_timeout: Some(ingest.idle_timeout),
            first_frame_timeout: Some(ingest.first_frame_timeout),
            allowed_devices: super::AllowList::new(&l.allowed_devices),
            close_on_junk: true,
            commands: commands.map(|c| crate::commands::Port {
                commands: c.clone(),
                source: crate::commands::config::Source::Listener(index),
            }),
            filter: crate::clean::Filter::new(l.filter.clone()),
        });
        Ok(BoundTcp {
            index,
            local_addr,
            listener,
            session,
            counters: metrics::register_listener(index, &l.protocol),
        })
    }

    /// Accepts until `shutdown`. Sessions run on `tasks`, which the caller waits for: they
    /// see the same signal and close between reads, after answering what they stored.
    pub async fn serve(
        self,
        limit: Arc<Semaphore>,
        buffer: Buffer,
        per_ip: Arc<PerIp>,
        tasks: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (index, protocol) = (self.index, &self.session.protocol);
        tracing::info!(listener = index, %protocol, addr = %self.local_addr, "listening on TCP");
        loop {
            // The permit is taken before accept: at the limit, new devices wait in the kernel's
            // backlog instead of being accepted and starved.
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = shutdown.changed() => return,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(listener = index, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ip_slot = match per_ip.take(peer.ip()) {
                Taken::Slot(slot) => slot,
                Taken::Refused { log } => {
                    if log {
                        tracing::warn!(
                            listener = index,
                            %protocol,
                            %peer,
                            "connection refused: this address holds ingest.max_connections_per_ip \
                             connections (logged once until it holds fewer)"
                        );
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let session = Session::new(self.session.clone(), peer.to_string(), buffer.clone());
            metrics::connection_opened(&self.counters);
            let held = Held {
                _ip_slot: ip_slot,
                _permit: permit,
                counters: self.counters.clone(),
            };
            tasks.spawn(session.run(stream, shutdown.clone(), held));
        }
    }
}

/// What one connection holds while its session runs: its slots under the connection limits
/// and its place in the open-connections gauge, all given back when the session ends.
struct Held {
    _ip_slot: super::per_ip::Slot,
    _permit: tokio::sync::OwnedSemaphorePermit,
    counters: Arc<metrics::ListenerCounters>,
}

impl Drop for Held {
    fn drop(&mut self) {
        metrics::connection_closed(&self.counters);
    }
}
