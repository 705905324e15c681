//! `fleetedge run`: open the buffer, bind the listeners, start the uplink, and stop cleanly
//! on SIGTERM or SIGINT.

use anyhow::Context;
use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::Settings;
use crate::{ingest, uplink};

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let buffer = Buffer::open(settings.buffer.options()).with_context(|| {
        format!(
            "buffer.path: cannot open {}",
            settings.buffer.path.display()
        )
    })?;
    let stats = buffer.stats();
    tracing::info!(
        path = %settings.buffer.path.display(),
        records = stats.records,
        bytes = stats.bytes,
        next_seq = stats.next_seq,
        "buffer open"
    );
    let listeners = ingest::tcp::bind_all(&settings).await?;
    let (shutdown_tx, shutdown) = watch::channel(false);

    let uplink = {
        let (settings, buffer, shutdown) = (settings.clone(), buffer.clone(), shutdown.clone());
        tokio::spawn(async move { uplink::run(&settings, buffer, shutdown).await })
    };
    let ingest = {
        let (settings, buffer, shutdown) = (settings.clone(), buffer.clone(), shutdown.clone());
        tokio::spawn(
            async move { ingest::tcp::serve(listeners, &settings, buffer, shutdown).await },
        )
    };
    tracing::info!(gateway_id = %settings.gateway_id, version = env!("CARGO_PKG_VERSION"), "fleetedge running");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = ingest.await;
    let _ = uplink.await;
    buffer.flush().context("flushing the buffer at shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
