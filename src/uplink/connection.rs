//! One MQTT connection, from CONNECT to the first error or shutdown.
//!
//! rumqttc's event loop runs in its own task (the "pump") and forwards the few events the
//! uplink needs over a channel; publishes go in with `try_publish`, never awaited from the
//! task that drives `poll()`. Every connection gets a fresh client, a clean session, an
//! empty window and empty staging, and starts from the oldest unacked record.
//!
//! ```text
//! CONNECT (TLS, credentials, last will = offline status)
//!   └─ CONNACK ─▶ status online ─▶ batches … ─▶ status online (every status_interval_s) …
//!                  every publish: [next message] ─▶ rate limit ─▶ window room ─▶ publish()
//! shutdown ─▶ drain (no linger, until the buffer is sent and acked or shutdown_publish_s)
//!          ─▶ status offline ─▶ DISCONNECT
//! ```
//!
//! Every message goes out through [`UplinkContext::publish`], which queues it on the client
//! and records it in the window; a new kind of message only needs to build a [`Message`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

use super::ngp;
use super::payload::PayloadEncoder;
use super::rate::RateLimit;
use super::staging::{Due, Staging};
use super::status;
use super::window::Window;
use crate::buffer::Buffer;
use crate::config::{Secret, Settings, UplinkFormat};
use crate::metrics::{self, METRICS};

/// How long each of the two goodbye steps may take at shutdown, beyond
/// `uplink.shutdown_publish_s`: the offline status' PUBACK (a broker round trip), then the
/// DISCONNECT going out. 3 s, not 1: a gateway on a slow cellular link or a loaded CPU can
/// miss 1 s for the round trip and then leaves the offline status to the last will. Both
/// steps end early once done, so a responsive broker costs milliseconds; the worst case
/// (2 × 3 s, an unresponsive broker) stays inside the 15 s that the systemd unit's
/// `TimeoutStopSec >= 10 + shutdown_publish_s + 15` leaves for the goodbye and the flush.
const GOODBYE_GRACE: Duration = Duration::from_secs(3);

/// How a connection ended.
#[derive(Debug)]
pub enum ConnectionEnd {
    Shutdown,
    Failed(String),
    /// The broker answered CONNECT with a refusal (bad credentials, not authorised, …);
    /// the reason in words.
    Refused(String),
}

/// One MQTT message ready to be published with QoS 1.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub carries: Carried,
}

/// What a [`Message`] carries, for the window and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// Records `first_seq..=last_seq` (`count` of them; `json_bytes` before compression).
    Records {
        first_seq: u64,
        last_seq: u64,
        count: usize,
        json_bytes: usize,
    },
    /// A status message: no records.
    Status,
}

/// What the uplink keeps across connections.
pub struct UplinkContext {
    settings: Settings,
    buffer: Buffer,
    encoder: PayloadEncoder,
    topic: String,
    status_topic: String,
    max_payload_bytes: usize,
    /// The newest record NGP passed over on this connection. Such records leave the buffer
    /// with the next acknowledged record after them, or, when nothing is outstanding, on
    /// their own (see `publish_loop`), so a run of them can never fill the buffer.
    ngp_skipped_through: Option<u64>,
    /// Plain TCP, or TLS with the client config built once at start.
    transport: Transport,
    credentials: Option<(String, Secret)>,
    /// Lives across connections, so a reconnect does not refill the buckets.
    rate: RateLimit,
}

enum PumpEvent {
    ConnAck,
    Published(u16),
    PubAck(u16),
    Disconnected,
    Failed(ConnectionError),
}

/// Aborts the pump task when the connection ends, whichever way it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What handling one pump event asks of the loop.
enum After {
    Continue,
    /// The DISCONNECT went out.
    Disconnected,
    Ended(String),
}

impl UplinkContext {
    /// Reads the password file and the TLS files; errors name the key and the file.
    pub fn new(settings: &Settings, buffer: Buffer) -> Result<Self, String> {
        let m = &settings.mqtt;
        let topic = format!("{}/{}/records", m.topic_prefix, settings.gateway_id);
        // Fixed header (≤ 5) + topic length field (2) + topic + packet id (2).
        let max_payload_bytes = m.max_packet_bytes.saturating_sub(topic.len() + 9);
        let transport = if m.tls.enabled {
            let config = super::tls::client_config(m)?;
            Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config)))
        } else {
            Transport::Tcp
        };
        let u = &settings.uplink;
        Ok(UplinkContext {
            encoder: PayloadEncoder::new(&settings.gateway_id, u.compression, u.zstd_level)
                .map_err(|e| format!("uplink.compression: {e}"))?,
            status_topic: status::topic(&m.topic_prefix, &settings.gateway_id),
            transport,
            credentials: m.credentials()?,
            rate: RateLimit::new(u.max_messages_per_s, u.max_bytes_per_s, m.max_packet_bytes),
            settings: settings.clone(),
            buffer,
            topic,
            max_payload_bytes,
            ngp_skipped_through: None,
        })
    }

    pub fn broker(&self) -> String {
        format!("{}:{}", self.settings.mqtt.host, self.settings.mqtt.port)
    }

    fn options(&self) -> MqttOptions {
        let m = &self.settings.mqtt;
        let mut options = MqttOptions::new(&m.client_id, &m.host, m.port);
        options
            .set_keep_alive(Duration::from_secs(m.keep_alive_s))
            .set_clean_session(true)
            .set_max_packet_size(m.max_packet_bytes, m.max_packet_bytes)
            .set_inflight(u16::try_from(m.max_inflight_batches).unwrap_or(u16::MAX))
            .set_transport(self.transport.clone())
            // The broker publishes this when the connection dies without a DISCONNECT.
            .set_last_will(LastWill::new(
                &self.status_topic,
                status::offline_payload(&self.settings.gateway_id),
                QoS::AtLeastOnce,
                true,
            ));
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user, password.expose());
        }
        options
    }

    /// A connection error in words, with a hint where the fix is likely a TLS setting.
    fn describe(&self, e: &ConnectionError) -> String {
        let text = e.to_string();
        let tls = &self.settings.mqtt.tls;
        match tls
            .enabled
            .then(|| super::tls::hint(&format!("{e:?} {text}"), tls.client_cert_file.is_some()))
            .flatten()
        {
            Some(hint) => format!("{text} ({hint})"),
            None => text,
        }
    }

    /// Runs one connection. Returns how it ended and when it was established, if it was.
    pub async fn run_connection(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (ConnectionEnd, Option<Instant>) {
        let m = &self.settings.mqtt;
        let (client, mut eventloop) = AsyncClient::new(self.options(), m.max_inflight_batches + 2);
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
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => PumpEvent::Disconnected,
                    Ok(_) => continue,
                    Err(e) => PumpEvent::Failed(e),
                };
                let last = matches!(event, PumpEvent::Failed(_) | PumpEvent::Disconnected);
                if events_tx.send(event).await.is_err() || last {
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
            Ok(Some(PumpEvent::Failed(ConnectionError::ConnectionRefused(code)))) => {
                return (ConnectionEnd::Refused(refusal_reason(code).into()), None)
            }
            Ok(Some(PumpEvent::Failed(e))) => {
                return (failed(format!("connect: {}", self.describe(&e))), None)
            }
            Ok(_) => return (failed("connect: no CONNACK"), None),
            Err(_) => return (failed("connect: timed out"), None),
        }
        let connected_at = Instant::now();
        METRICS.mqtt_connected.store(true, Ordering::Relaxed);
        metrics::add(&METRICS.mqtt_connects, 1);
        tracing::info!(
            broker = %self.broker(),
            client_id = %m.client_id,
            tls = m.tls.enabled,
            "MQTT connected"
        );
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
        // Only records passed over on this connection may be released without a PUBACK.
        self.ngp_skipped_through = None;
        // NGP sends each record alone: nothing to wait for.
        let linger = match u.format {
            UplinkFormat::Batch => Duration::from_millis(u.linger_ms),
            UplinkFormat::Ngp => Duration::ZERO,
        };
        let mut staging = Staging::new(u.batch_max_records, linger);
        let mut appended = self.buffer.subscribe();
        let status_every = match self.settings.mqtt.status_interval_s {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        let mut next_status_at = status_every.map(|d| tokio::time::Instant::now() + d);
        // The online status goes first on every connection.
        let mut status_due = true;
        // A message built and waiting for the rate limit or room in the window.
        let mut next: Option<Message> = None;
        // Set once shutdown is asked for: publish what the buffer holds until then.
        let mut drain_until: Option<tokio::time::Instant> = None;
        if *shutdown.borrow() {
            drain_until = Some(self.drain_deadline());
        }
        // The watchdog's proof that this loop is not wedged: it passes the top at least once
        // a tick, even when idle (see `watchdog.rs`).
        let mut heartbeat = tokio::time::interval(HEARTBEAT_TICK);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A broker that keeps the session (answers PINGREQ) but never sends PUBACK would hold
        // the window full forever; no PUBACK for this long while publishes are outstanding
        // ends the connection, and the records go again on the next one. Measured from the
        // last PUBACK (or the last empty window), so a slow link that acknowledges batch by
        // batch is never cut.
        let puback_timeout = Duration::from_secs(
            self.settings.mqtt.write_timeout_s + self.settings.mqtt.keep_alive_s,
        );
        let mut acked_or_idle_at = tokio::time::Instant::now();
        loop {
            crate::watchdog::UPLINK.beat_within(HEARTBEAT_TICK);
            if window.is_empty() {
                acked_or_idle_at = tokio::time::Instant::now();
            } else if acked_or_idle_at.elapsed() > puback_timeout {
                return failed(format!(
                    "no PUBACK for {} s with {} publish(es) outstanding",
                    puback_timeout.as_secs(),
                    window.len()
                ));
            }
            let draining = drain_until.is_some();
            if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return self.goodbye(client, events, &mut window).await;
            }
            if let Err(e) = self.fill(&mut staging) {
                return failed(e);
            }
            let mut rate_until = None;
            loop {
                if next.is_none() {
                    if status_due && !draining {
                        status_due = false;
                        next = Some(self.online_status());
                    } else if staging.due(Instant::now(), draining) == Due::Now {
                        match self.encode_next(&mut staging) {
                            Ok(m) => next = m,
                            Err(e) => return failed(e),
                        }
                        if let Err(e) = self.fill(&mut staging) {
                            return failed(e);
                        }
                    }
                }
                if next.is_none() && window.is_empty() {
                    // Every record before the passed-over ones was acknowledged (or passed
                    // over too): they can go without waiting for a successor.
                    if let Some(seq) = self.ngp_skipped_through.take() {
                        if let Err(e) = self.buffer.ack_through(seq) {
                            return failed(format!("buffer: {e}"));
                        }
                    }
                }
                let Some(message) = &next else { break };
                if !window.has_room() {
                    break;
                }
                match self.rate.try_acquire(message.payload.len()) {
                    Ok(()) => {
                        if let Some(message) = next.take() {
                            if let Err(e) = self.publish(client, &mut window, message) {
                                return failed(e);
                            }
                        }
                        // The publish woke the pump task on this worker, in tokio's LIFO slot,
                        // which no other worker may steal: without a yield it would wait until
                        // this loop has encoded a whole window of batches, and on a slow CPU
                        // with a backlog that outlasts the keepalive (no PINGREQ goes out and
                        // the broker drops us). One reschedule per batch costs nothing.
                        tokio::task::yield_now().await;
                    }
                    Err(wait) => {
                        rate_until = Some(tokio::time::Instant::now() + wait);
                        break;
                    }
                }
            }
            if draining && next.is_none() && staging.is_empty() && window.is_empty() {
                // Everything the buffer held is published and acknowledged.
                return self.goodbye(client, events, &mut window).await;
            }
            let linger_until = match staging.due(Instant::now(), draining) {
                Due::At(t) if next.is_none() && window.has_room() => {
                    Some(tokio::time::Instant::from_std(t))
                }
                _ => None,
            };
            tokio::select! {
                event = events.recv() => {
                    if matches!(event, Some(PumpEvent::PubAck(_))) {
                        acked_or_idle_at = tokio::time::Instant::now();
                    }
                    match self.on_event(event, &mut window) {
                    After::Continue => {}
                    After::Disconnected => return failed("disconnected"),
                    After::Ended(e) if draining => {
                        tracing::warn!(
                            error = %e,
                            unacked_batches = window.batches_outstanding(),
                            "MQTT connection ended during shutdown; unacknowledged records \
                             stay in the buffer"
                        );
                        return ConnectionEnd::Shutdown;
                    }
                    After::Ended(e) => return failed(e),
                    }
                }
                changed = appended.changed(), if staging.wants() > 0 => {
                    if changed.is_err() {
                        return failed("buffer closed");
                    }
                }
                _ = sleep_until(linger_until), if linger_until.is_some() => {}
                _ = sleep_until(rate_until), if rate_until.is_some() => {}
                _ = sleep_until(next_status_at), if next_status_at.is_some() && !draining => {
                    status_due = true;
                    next_status_at = status_every.map(|d| tokio::time::Instant::now() + d);
                }
                _ = sleep_until(drain_until), if draining => {}
                _ = heartbeat.tick() => {}
                _ = shutdown.changed(), if !draining => {
                    let deadline = self.drain_deadline();
                    tracing::info!(
                        seconds = self.settings.uplink.shutdown_publish_s,
                        buffer_records = self.buffer.stats().records,
                        "shutdown: publishing what the buffer holds"
                    );
                    // A status not yet published would only be followed by the offline one.
                    if next.as_ref().is_some_and(|m| m.carries == Carried::Status) {
                        next = None;
                    }
                    drain_until = Some(deadline);
                }
            }
        }
    }

    fn drain_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.settings.uplink.shutdown_publish_s)
    }

    /// Handles one event from the pump: PUBACKs release records from the buffer.
    fn on_event(&mut self, event: Option<PumpEvent>, window: &mut Window) -> After {
        match event {
            Some(PumpEvent::Published(pkid)) => match window.on_outgoing_publish(pkid) {
                Ok(()) => After::Continue,
                Err(e) => After::Ended(e.to_string()),
            },
            Some(PumpEvent::PubAck(pkid)) => match window.on_puback(pkid) {
                Ok(Some(released)) => {
                    if let Err(e) = self.buffer.ack_through(released.last_seq) {
                        return After::Ended(format!("buffer: {e}"));
                    }
                    metrics::add(&METRICS.batches_published, released.batches.len() as u64);
                    for b in &released.batches {
                        // Latency first: whoever sees these records counted sees their latency.
                        metrics::PUBLISH_LATENCY.observe(b.sent_at.elapsed());
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
                    After::Continue
                }
                Ok(None) => After::Continue,
                Err(e) => After::Ended(e.to_string()),
            },
            Some(PumpEvent::ConnAck) => After::Continue,
            Some(PumpEvent::Disconnected) => After::Disconnected,
            Some(PumpEvent::Failed(e)) => After::Ended(self.describe(&e)),
            None => After::Ended("event loop stopped".into()),
        }
    }

    /// The end of a graceful shutdown: the offline status (retained, QoS 1), its PUBACK,
    /// then DISCONNECT, each bounded by [`GOODBYE_GRACE`]. Unacked records stay in the
    /// buffer.
    async fn goodbye(
        &mut self,
        client: &AsyncClient,
        events: &mut mpsc::Receiver<PumpEvent>,
        window: &mut Window,
    ) -> ConnectionEnd {
        let unacked = window.batches_outstanding();
        if unacked > 0 {
            tracing::warn!(
                unacked_batches = unacked,
                "shutdown: uplink.shutdown_publish_s passed before every batch was \
                 acknowledged; their records stay in the buffer for the next start"
            );
        }
        let until = tokio::time::Instant::now() + GOODBYE_GRACE;
        // rumqttc holds requests while its in-flight window is full, and the DISCONNECT would
        // wait behind the status; then the socket simply closes and the broker publishes
        // the same offline status as the last will.
        let mut offline_sent = false;
        if window.has_room() {
            let offline = Message {
                topic: self.status_topic.clone(),
                payload: status::offline_payload(&self.settings.gateway_id),
                retain: true,
                carries: Carried::Status,
            };
            offline_sent = self.publish(client, window, offline).is_ok();
            while offline_sent && !window.is_empty() {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = tokio::time::sleep_until(until) => break,
                };
                match self.on_event(event, window) {
                    After::Continue => {}
                    After::Disconnected | After::Ended(_) => return ConnectionEnd::Shutdown,
                }
            }
        }
        if client.try_disconnect().is_ok() {
            let until = tokio::time::Instant::now() + GOODBYE_GRACE;
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = tokio::time::sleep_until(until) => break,
                };
                match self.on_event(event, window) {
                    After::Continue => {}
                    After::Disconnected | After::Ended(_) => break,
                }
            }
        }
        tracing::info!(
            offline_status = if offline_sent && window.is_empty() {
                "acknowledged"
            } else {
                "left to the last will"
            },
            "MQTT disconnected"
        );
        ConnectionEnd::Shutdown
    }

    /// Queues `message` on the client (QoS 1) and records it in the window. The one way a
    /// message leaves the uplink; the caller has checked the rate limit and the window.
    pub fn publish(
        &mut self,
        client: &AsyncClient,
        window: &mut Window,
        message: Message,
    ) -> Result<(), String> {
        let bytes = message.payload.len();
        client
            .try_publish(
                message.topic,
                QoS::AtLeastOnce,
                message.retain,
                message.payload,
            )
            .map_err(|e| format!("publish: {e}"))?;
        let now = Instant::now();
        match message.carries {
            Carried::Records {
                first_seq,
                last_seq,
                count,
                json_bytes,
            } => {
                metrics::add(&METRICS.batch_json_bytes, json_bytes as u64);
                metrics::add(&METRICS.batch_payload_bytes, bytes as u64);
                window.sent(first_seq, last_seq, count, bytes, now);
            }
            Carried::Status => window.sent_without_records(bytes, now),
        }
        Ok(())
    }

    /// The online status with this moment's numbers.
    fn online_status(&self) -> Message {
        let b = self.buffer.stats();
        let online = status::Online {
            uptime: status::uptime(),
            buffer_records: b.records,
            buffer_bytes: b.bytes,
            connected_devices: metrics::get(&METRICS.connections_open),
            now: SystemTime::now(),
        };
        Message {
            topic: self.status_topic.clone(),
            payload: status::online_payload(&self.settings.gateway_id, &online),
            retain: true,
            carries: Carried::Status,
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

    /// Encodes the next batch from staging, halving it until the payload fits the packet
    /// limit, and takes its records out of staging.
    fn encode_next(&mut self, staging: &mut Staging) -> Result<Option<Message>, String> {
        if self.settings.uplink.format == UplinkFormat::Ngp {
            return Ok(self.encode_next_ngp(staging));
        }
        let mut take = usize::MAX;
        loop {
            let batch = staging.batch(take);
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(None);
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
            staging.consume(count, Instant::now());
            return Ok(Some(Message {
                topic: self.topic.clone(),
                payload,
                retain: false,
                carries: Carried::Records {
                    first_seq,
                    last_seq,
                    count,
                    json_bytes: self.encoder.last_json_len(),
                },
            }));
        }
    }
}

impl UplinkContext {
    /// The next staged record NGP can carry, as its own message. Records NGP cannot carry
    /// are passed over and counted: they leave the buffer with the next acknowledged record
    /// after them (removal is by seq), so they never block the queue; one that is last in
    /// the buffer simply waits there for a successor.
    fn encode_next_ngp(&mut self, staging: &mut Staging) -> Option<Message> {
        loop {
            let (seq, record) = staging.batch(1).first()?;
            let seq = *seq;
            let encoded = ngp::encode(record);
            let topic = ngp::topic(record);
            match encoded {
                Ok(Some(payload))
                    if payload.len() + topic.len() + 9 > self.settings.mqtt.max_packet_bytes =>
                {
                    // rumqttc would refuse it and fail the connection, forever.
                    self.ngp_skipped_through = Some(seq);
                    metrics::add(&METRICS.ngp_records_skipped, 1);
                    tracing::error!(
                        seq,
                        bytes = payload.len(),
                        "NGP message exceeds mqtt.max_packet_bytes; not sent"
                    );
                }
                Ok(Some(payload)) => {
                    staging.consume(1, Instant::now());
                    let json_bytes = payload.len();
                    return Some(Message {
                        topic,
                        payload,
                        retain: false,
                        carries: Carried::Records {
                            first_seq: seq,
                            last_seq: seq,
                            count: 1,
                            json_bytes,
                        },
                    });
                }
                Ok(None) => {
                    self.ngp_skipped_through = Some(seq);
                    metrics::add(&METRICS.ngp_records_skipped, 1);
                    tracing::debug!(seq, "record without device time not sent as NGP");
                }
                Err(e) => {
                    self.ngp_skipped_through = Some(seq);
                    metrics::add(&METRICS.ngp_records_skipped, 1);
                    // Sparsely: one bad device id would otherwise log every record.
                    let skipped = metrics::get(&METRICS.ngp_records_skipped);
                    if skipped.is_power_of_two() {
                        tracing::warn!(seq, skipped, error = %e, "record not sent as NGP");
                    }
                }
            }
            staging.consume(1, Instant::now());
        }
    }
}

/// A CONNACK refusal code in words (MQTT 3.1.1, 3.2.2.3).
pub fn refusal_reason(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Success => "accepted",
        ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
        ConnectReturnCode::BadClientId => "client identifier rejected (mqtt.client_id)",
        ConnectReturnCode::ServiceUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorised",
    }
}

fn failed(reason: impl std::fmt::Display) -> ConnectionEnd {
    ConnectionEnd::Failed(reason.to_string())
}

/// How often the publish loop passes its top when nothing else wakes it.
const HEARTBEAT_TICK: Duration = Duration::from_secs(5);

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
