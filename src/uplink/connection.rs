//! One MQTT connection, from CONNECT to the first error or shutdown.
//!
//! rumqttc's event loop runs in its own task (the "pump") and forwards the few events the
//! uplink needs over a channel; publishes go in with `try_publish`, never awaited from the
//! task that drives `poll()`. Every connection gets a fresh client, a clean session, an
//! empty window and empty staging, and starts from the oldest unacked record.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};

use super::payload::PayloadEncoder;
use super::staging::{Due, Staging};
use super::window::Window;
use crate::buffer::Buffer;
use crate::config::Settings;
use crate::metrics::{self, METRICS};

/// How a connection ended.
#[derive(Debug)]
pub enum ConnectionEnd {
    Shutdown,
    Failed(String),
}

/// What the uplink keeps across connections.
pub struct UplinkContext {
    settings: Settings,
    buffer: Buffer,
    encoder: PayloadEncoder,
    topic: String,
    max_payload_bytes: usize,
}

enum PumpEvent {
    ConnAck,
    Published(u16),
    PubAck(u16),
    Failed(ConnectionError),
}

/// Aborts the pump task when the connection ends, whichever way it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl UplinkContext {
    pub fn new(settings: &Settings, buffer: Buffer) -> std::io::Result<Self> {
        let topic = format!(
            "{}/{}/records",
            settings.mqtt.topic_prefix, settings.gateway_id
        );
        // Fixed header (≤ 5) + topic length field (2) + topic + packet id (2).
        let max_payload_bytes = settings
            .mqtt
            .max_packet_bytes
            .saturating_sub(topic.len() + 9);
        Ok(UplinkContext {
            encoder: PayloadEncoder::new(
                &settings.gateway_id,
                settings.uplink.compression,
                settings.uplink.zstd_level,
            )?,
            settings: settings.clone(),
            buffer,
            topic,
            max_payload_bytes,
        })
    }

    pub fn broker(&self) -> String {
        format!("{}:{}", self.settings.mqtt.host, self.settings.mqtt.port)
    }

    /// Runs one connection. Returns how it ended and when it was established, if it was.
    pub async fn run_connection(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (ConnectionEnd, Option<Instant>) {
        let m = &self.settings.mqtt;
        let mut options = MqttOptions::new(&m.client_id, &m.host, m.port);
        options
            .set_keep_alive(Duration::from_secs(m.keep_alive_s))
            .set_clean_session(true)
            .set_max_packet_size(m.max_packet_bytes, m.max_packet_bytes)
            .set_inflight(u16::try_from(m.max_inflight_batches).unwrap_or(u16::MAX));
        let (client, mut eventloop) = AsyncClient::new(options, m.max_inflight_batches + 2);
        // rumqttc times every network write with its "connection timeout"; the connect
        // itself is bounded by our own wait for CONNACK below.
        eventloop
            .network_options
            .set_connection_timeout(m.write_timeout_s);

        let (events_tx, mut events) = mpsc::channel(1024);
        let _pump = AbortOnDrop(tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => PumpEvent::ConnAck,
                    Ok(Event::Incoming(Packet::PubAck(ack))) => PumpEvent::PubAck(ack.pkid),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => PumpEvent::Published(pkid),
                    Ok(_) => continue,
                    Err(e) => PumpEvent::Failed(e),
                };
                let failed = matches!(event, PumpEvent::Failed(_));
                if events_tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        }));

        let connect_timeout = Duration::from_secs(m.connect_timeout_s + 1);
        let connected = tokio::select! {
            e = tokio::time::timeout(connect_timeout, events.recv()) => e,
            _ = shutdown.changed() => return (ConnectionEnd::Shutdown, None),
        };
        match connected {
            Ok(Some(PumpEvent::ConnAck)) => {}
            Ok(Some(PumpEvent::Failed(e))) => return (failed(format!("connect: {e}")), None),
            Ok(_) => return (failed("connect: no CONNACK"), None),
            Err(_) => return (failed("connect: timed out"), None),
        }
        let connected_at = Instant::now();
        METRICS.mqtt_connected.store(true, Ordering::Relaxed);
        tracing::info!(broker = %self.broker(), client_id = %m.client_id, "MQTT connected");
        let end = self.publish_loop(&client, &mut events, shutdown).await;
        METRICS.mqtt_connected.store(false, Ordering::Relaxed);
        (end, Some(connected_at))
    }

    async fn publish_loop(
        &mut self,
        client: &AsyncClient,
        events: &mut mpsc::Receiver<PumpEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> ConnectionEnd {
        let u = &self.settings.uplink;
        let mut window = Window::new(self.settings.mqtt.max_inflight_batches);
        let mut staging = Staging::new(u.batch_max_records, Duration::from_millis(u.linger_ms));
        let mut appended = self.buffer.subscribe();
        loop {
            if let Err(e) = self.fill(&mut staging) {
                return failed(e);
            }
            let mut due = staging.due(Instant::now(), false);
            while due == Due::Now && window.has_room() {
                if let Err(e) = self.publish_next(client, &mut staging, &mut window) {
                    return failed(e);
                }
                if let Err(e) = self.fill(&mut staging) {
                    return failed(e);
                }
                due = staging.due(Instant::now(), false);
            }
            let linger_until = match due {
                Due::At(t) if window.has_room() => Some(tokio::time::Instant::from_std(t)),
                _ => None,
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(PumpEvent::Published(pkid)) => {
                        if let Err(e) = window.on_outgoing_publish(pkid) {
                            return failed(e.to_string());
                        }
                    }
                    Some(PumpEvent::PubAck(pkid)) => match window.on_puback(pkid) {
                        Ok(Some(released)) => {
                            if let Err(e) = self.buffer.ack_through(released.last_seq) {
                                return failed(format!("buffer: {e}"));
                            }
                            metrics::add(&METRICS.batches_published, released.batches.len() as u64);
                            for b in &released.batches {
                                metrics::add(&METRICS.records_published, b.records as u64);
                                tracing::debug!(
                                    first_seq = b.first_seq,
                                    last_seq = b.last_seq,
                                    records = b.records,
                                    bytes = b.payload_bytes,
                                    latency_ms = b.sent_at.elapsed().as_millis() as u64,
                                    "batch acknowledged"
                                );
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return failed(e.to_string()),
                    },
                    Some(PumpEvent::ConnAck) => {}
                    Some(PumpEvent::Failed(e)) => return failed(e.to_string()),
                    None => return failed("event loop stopped"),
                },
                changed = appended.changed(), if staging.wants() > 0 => {
                    if changed.is_err() {
                        return failed("buffer closed");
                    }
                }
                _ = sleep_until(linger_until), if linger_until.is_some() => {}
                _ = shutdown.changed() => return ConnectionEnd::Shutdown,
            }
        }
    }

    /// Tops staging up from the buffer.
    fn fill(&mut self, staging: &mut Staging) -> Result<(), String> {
        let wants = staging.wants();
        if wants == 0 {
            return Ok(());
        }
        let chunks = self
            .buffer
            .read_after(staging.read_cursor(), wants, usize::MAX)
            .map_err(|e| format!("buffer: {e}"))?;
        let now = Instant::now();
        for chunk in chunks {
            staging.push_chunk(chunk.first_seq, chunk.records, now);
        }
        Ok(())
    }

    /// Encodes the next batch, halving it until the payload fits the packet limit, and
    /// queues it on the client.
    fn publish_next(
        &mut self,
        client: &AsyncClient,
        staging: &mut Staging,
        window: &mut Window,
    ) -> Result<(), String> {
        let mut take = usize::MAX;
        loop {
            let batch = staging.batch(take);
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(());
            };
            let (first_seq, last_seq, count) = (first.0, last.0, batch.len());
            let payload = self.encoder.encode(batch).map_err(|e| e.to_string())?;
            if payload.len() > self.max_payload_bytes && count > 1 {
                take = count / 2;
                continue;
            }
            if payload.len() > self.max_payload_bytes {
                // One record larger than the packet limit. Config validation bounds a record's
                // JSON by its frame size so this cannot happen; if it ever does, rumqttc
                // refuses the packet, the connection fails and this error repeats loudly
                // rather than the record being dropped.
                tracing::error!(
                    seq = first_seq,
                    bytes = payload.len(),
                    limit = self.max_payload_bytes,
                    "a single record exceeds mqtt.max_packet_bytes"
                );
            }
            let bytes = payload.len();
            metrics::add(
                &METRICS.batch_json_bytes,
                self.encoder.last_json_len() as u64,
            );
            metrics::add(&METRICS.batch_payload_bytes, bytes as u64);
            client
                .try_publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
                .map_err(|e| format!("publish: {e}"))?;
            let now = Instant::now();
            window.sent(first_seq, last_seq, count, bytes, now);
            staging.consume(count, now);
            return Ok(());
        }
    }
}

fn failed(reason: impl std::fmt::Display) -> ConnectionEnd {
    ConnectionEnd::Failed(reason.to_string())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
