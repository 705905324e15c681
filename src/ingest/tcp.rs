//! TCP listeners: bind everything up front (so a bad `bind` fails the start with its key),
//! then one accept loop per listener sharing one connection limit.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::session::{Session, SessionConfig};
use crate::buffer::Buffer;
use crate::config::Settings;
use crate::metrics::{self, METRICS};

/// A bound listener, ready to accept.
pub struct BoundListener {
    pub index: usize,
    pub protocol: String,
    pub local_addr: SocketAddr,
    listener: TcpListener,
    allowed: Arc<HashSet<String>>,
}

/// Binds every `[[listeners]]` entry; the error names the entry.
pub async fn bind_all(settings: &Settings) -> anyhow::Result<Vec<BoundListener>> {
    let mut bound = Vec::new();
    for (index, l) in settings.listeners.iter().enumerate() {
        let listener = TcpListener::bind(&l.bind).await.map_err(|e| {
            anyhow::anyhow!("listeners[{index}].bind: cannot listen on {}: {e}", l.bind)
        })?;
        let local_addr = listener.local_addr()?;
        bound.push(BoundListener {
            index,
            protocol: l.protocol.clone(),
            local_addr,
            listener,
            allowed: Arc::new(l.allowed_devices.iter().cloned().collect()),
        });
    }
    Ok(bound)
}

/// Accepts on every listener until `shutdown`; returns once all accept loops stopped.
/// Running sessions see the same signal and close between frames; a session waiting for an
/// append is not waited for (its device was not answered, so it resends).
pub async fn serve(
    listeners: Vec<BoundListener>,
    settings: &Settings,
    buffer: Buffer,
    shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(settings.ingest.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let cfg = SessionConfig {
            protocol: l.protocol.clone(),
            max_frame_bytes: settings.ingest.max_frame_bytes,
            keep_raw: settings.ingest.keep_raw,
            idle_timeout: Duration::from_secs(settings.ingest.idle_timeout_s),
            allowed_devices: l.allowed.clone(),
        };
        tasks.spawn(accept_loop(
            l,
            cfg,
            limit.clone(),
            buffer.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn accept_loop(
    l: BoundListener,
    cfg: SessionConfig,
    limit: Arc<Semaphore>,
    buffer: Buffer,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(listener = l.index, protocol = %l.protocol, addr = %l.local_addr, "listening");
    let cfg = Arc::new(cfg);
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
            a = l.listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(listener = l.index, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(session) = Session::new(cfg.clone(), peer, buffer.clone()) else {
            tracing::error!(listener = l.index, protocol = %cfg.protocol, "no decoder for protocol");
            return;
        };
        let shutdown = shutdown.clone();
        metrics::add(&METRICS.connections_accepted, 1);
        metrics::add(&METRICS.connections_open, 1);
        tokio::spawn(async move {
            session.run(stream, shutdown).await;
            metrics::dec(&METRICS.connections_open);
            drop(permit);
        });
    }
}
