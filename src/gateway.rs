//! `fleetedge run`: open the buffer, bind the listeners, start the uplink, and stop cleanly
//! on SIGTERM or SIGINT.

use anyhow::Context;
use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::Settings;
use crate::notify::Notifier;
use crate::{ingest, ops, uplink};

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let options = crate::buffer::BufferOptions {
        dedup: settings.dedup.options(),
        ..settings.buffer.options()
    };
    let buffer = Buffer::open(options).with_context(|| {
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
    // Downlink commands: their queue lives in the buffer's database.
    let commands = if settings.commands.enabled {
        let commands = crate::commands::Commands::open(&settings, buffer.clone(), ingest::now_ms())
            .context("commands: cannot read the queued commands from the buffer")?;
        Some(commands)
    } else {
        None
    };
    let sources = ingest::bind(&settings, commands.as_ref()).await?;
    // Bound before anything runs, so a bad `http.bind` fails the start; served until `run`
    // returns (dropping `_http` stops it), so `/metrics` stays readable during shutdown.
    let _http = ops::http::bind(&settings.http)
        .await?
        .map(|endpoint| endpoint.spawn(buffer.clone(), commands.clone()));
    // The "N more suppressed" lines of bad-input warnings (see log_limit).
    crate::log_limit::spawn_reports();
    let (shutdown_tx, shutdown) = watch::channel(false);
    // The uplink is told to stop only once the listeners have stopped, so its last
    // publishes (`uplink.shutdown_publish_s`) carry what devices sent until then; records
    // stored after that stay in the buffer for the next start.
    let (uplink_stop_tx, uplink_stop) = watch::channel(false);

    let mut uplink = {
        let (settings, buffer) = (settings.clone(), buffer.clone());
        tokio::spawn(async move { uplink::run(&settings, buffer, uplink_stop).await })
    };
    // The command connection stops with the devices (no session left to send to).
    let _commands = commands
        .clone()
        .map(|c| crate::commands::spawn(&settings, c, shutdown.clone()));
    let mut ingest = {
        let (settings, buffer, shutdown) = (settings.clone(), buffer.clone(), shutdown.clone());
        tokio::spawn(async move { ingest::serve(sources, &settings, buffer, shutdown).await })
    };
    tracing::info!(gateway_id = %settings.gateway_id, version = env!("CARGO_PKG_VERSION"), "fleetedge running");

    // Listeners are bound, the buffer is open and the uplink and sessions are running: this
    // is the moment systemd's `Type=notify` waits for.
    let notifier = Notifier::from_env().map(std::sync::Arc::new);
    let (stopping_tx, stopping) = watch::channel(false);
    if let Some(notifier) = &notifier {
        notifier.notify(&format!(
            "READY=1\nSTATUS=running: {} listener(s), {} serial port(s), {} record(s) buffered",
            settings.listeners.len(),
            settings.serial.len(),
            buffer.stats().records
        ));
        if let Some(interval) = crate::notify::watchdog_interval() {
            tracing::info!(
                interval_ms = interval.as_millis() as u64,
                "systemd watchdog enabled"
            );
            let (notifier, buffer) = (std::sync::Arc::clone(notifier), buffer.clone());
            tokio::spawn(async move {
                crate::watchdog::feed(&notifier, buffer, interval, stopping).await
            });
        }
    }

    let stats = (settings.log.stats_interval_s > 0).then(|| {
        let every = std::time::Duration::from_secs(settings.log.stats_interval_s);
        tokio::spawn(log_stats(buffer.clone(), every))
    });

    // A part that stops on its own leaves a gateway that acknowledges nothing or publishes
    // nothing; exiting with an error lets systemd restart it instead.
    let failed = tokio::select! {
        signal = wait_for_signal() => { signal?; None }
        _ = &mut uplink => Some("the uplink task stopped"),
        _ = committer_stopped(&buffer) => Some("the buffer's commit thread stopped"),
    };
    if let Some(stats) = stats {
        stats.abort();
    }
    tracing::info!("shutting down");
    let _ = stopping_tx.send(true);
    if let Some(notifier) = &notifier {
        notifier.notify("STOPPING=1\nSTATUS=stopping: publishing what the buffer holds");
    }
    // A second signal skips the drain: the records are durable in the buffer already.
    tokio::spawn(async {
        if wait_for_signal().await.is_ok() {
            tracing::warn!("second signal: exiting without draining the buffer");
            std::process::exit(1);
        }
    });
    let _ = shutdown_tx.send(true);
    // A session blocked on a full buffer (`block`) would never return while the uplink
    // cannot drain; dropping its append is safe (the device was not answered).
    if tokio::time::timeout(INGEST_STOP_TIMEOUT, &mut ingest)
        .await
        .is_err()
    {
        tracing::warn!("ingest did not stop within 10 s; abandoning its waiting sessions");
        ingest.abort();
    }
    // Then the uplink publishes what the buffer holds (bounded by
    // `uplink.shutdown_publish_s`), publishes the offline status and disconnects.
    let _ = uplink_stop_tx.send(true);
    if !uplink.is_finished() {
        let _ = uplink.await;
    }
    if let Some(what) = failed {
        anyhow::bail!("{what}; exiting so the service manager restarts fleetedge");
    }
    buffer.flush().context("flushing the buffer at shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

/// How long sessions get to finish their current frame at shutdown.
const INGEST_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves when the buffer's commit thread is no longer running.
async fn committer_stopped(buffer: &Buffer) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    while buffer.committer_alive() {
        tick.tick().await;
    }
}

/// One "stats" line every `every`: what an installer looks for in the journal.
async fn log_stats(buffer: Buffer, every: std::time::Duration) {
    use crate::metrics::{self, get, METRICS};
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let b = buffer.stats();
        let (records_received, frames_malformed) = metrics::protocol_totals();
        let frames_skipped: u64 = metrics::frames_skipped().iter().map(|s| s.frames).sum();
        tracing::info!(
            records_received,
            records_published = get(&METRICS.records_published),
            records_refused = get(&METRICS.records_refused),
            frames_malformed,
            frames_skipped,
            skipped_types = %metrics::skipped_summary(),
            connections_open = metrics::connections_open(),
            mqtt_connected = metrics::mqtt_connected(),
            mqtt_connection_failures = metrics::mqtt_connection_failures(),
            buffer_records = b.records,
            buffer_bytes = b.bytes,
            buffer_full = b.full,
            buffer_dropped = b.dropped_records,
            disk_bytes = b.disk_bytes,
            commands_queued = crate::commands::metrics::queued(),
            "stats"
        );
    }
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
