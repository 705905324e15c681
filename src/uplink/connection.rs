//! One MQTT connection's IO, from CONNECT to the first error or the end of a graceful
//! shutdown: the rumqttc pump and one `select!`. What to publish, when, and when records
//! leave the buffer is decided by the [`Publisher`]; this file only carries its actions out
//! (buffer reads and removals, `try_publish`, DISCONNECT) and feeds it the events and the
//! time.
//!
//! rumqttc's event loop runs in its own task (the "pump") and forwards the few events the
//! uplink needs over a channel; publishes go in with `try_publish`, never awaited from the
//! task that drives `poll()`. Every connection gets a fresh client and a clean session.
//!
//! ```text
//! CONNECT (TLS, credentials, last will = offline status)
//!   └─ CONNACK ─▶ publisher.connected ─▶ loop { poll_action* ─▶ select!(pump event,
//!                 new records, poll_timeout, watchdog tick, shutdown) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

use super::backoff::Ended;
use super::error::UplinkError;
use super::outgoing;
use super::payload::PayloadEncoder;
use super::publisher::{Action, Publisher, PublisherConfig};
use super::status;
use crate::buffer::Buffer;
use crate::config::{Secret, Settings};
use crate::metrics::{self, METRICS};

/// How a connection ended.
#[derive(Debug)]
pub enum ConnectionEnd {
    Shutdown,
    Failed(UplinkError),
}

/// What the uplink keeps across connections.
pub struct UplinkContext {
    settings: Settings,
    buffer: Buffer,
    /// Plain TCP, or TLS with the client config built once at start.
    transport: Transport,
    credentials: Option<(String, Secret)>,
    /// The publish logic; its rate limit and removal state live across connections.
    publisher: Publisher,
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

impl UplinkContext {
    /// Reads the password file and the TLS files; errors name the key and the file.
    pub fn new(settings: &Settings, buffer: Buffer) -> Result<Self, String> {
        let m = &settings.mqtt;
        let transport = if m.tls.enabled {
            let config = super::tls::client_config(&m.tls, &m.host)?;
            Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config)))
        } else {
            Transport::Tcp
        };
        let u = &settings.uplink;
        let encoder = PayloadEncoder::new(&settings.gateway_id, u.compression, u.zstd_level)
            .map_err(|e| format!("uplink.compression: {e}"))?;
        let outgoing = outgoing::Outgoing::new(
            u.format,
            encoder,
            &settings.gateway_id,
            &m.topic_prefix,
            m.max_packet_bytes,
        );
        let status_buffer = buffer.clone();
        let online = Box::new(move || {
            let b = status_buffer.stats();
            status::Online {
                uptime: status::uptime(),
                buffer_records: b.records,
                buffer_bytes: b.bytes,
                connected_devices: metrics::connections_open(),
                now: SystemTime::now(),
            }
        });
        Ok(UplinkContext {
            transport,
            credentials: m.credentials()?,
            publisher: Publisher::new(
                PublisherConfig::from_settings(settings),
                outgoing,
                online,
                Instant::now(),
            ),
            settings: settings.clone(),
            buffer,
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
                status::topic(&m.topic_prefix, &self.settings.gateway_id),
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

    /// Runs one connection. Returns how it ended and, for the backoff, how it went.
    pub async fn run_connection(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (ConnectionEnd, Ended) {
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
            _ = shutdown.changed() => return (ConnectionEnd::Shutdown, Ended::NotConnected),
        };
        let failed = |e| (ConnectionEnd::Failed(e), Ended::NotConnected);
        match connected {
            Ok(Some(PumpEvent::ConnAck)) => {}
            Ok(Some(PumpEvent::Failed(ConnectionError::ConnectionRefused(code)))) => {
                return failed(UplinkError::Refused(refusal_reason(code)))
            }
            Ok(Some(PumpEvent::Failed(e))) => {
                return failed(UplinkError::Connect(self.describe(&e)))
            }
            Ok(_) => return failed(UplinkError::Connect("no CONNACK".into())),
            Err(_) => return failed(UplinkError::ConnectTimeout),
        }
        let connected_at = Instant::now();
        metrics::set_mqtt_connected(true);
        metrics::add(&METRICS.mqtt_connects, 1);
        tracing::info!(
            broker = %self.broker(),
            client_id = %m.client_id,
            tls = m.tls.enabled,
            "MQTT connected"
        );
        self.publisher.connected(connected_at);
        let end = self.drive(&client, &mut events, shutdown).await;
        let broker_acknowledged = self.publisher.broker_acknowledged();
        self.publisher.disconnected();
        metrics::set_mqtt_connected(false);
        let ended = Ended::Connected {
            at: connected_at,
            broker_acknowledged,
        };
        (end, ended)
    }

    /// Carries out the publisher's actions and feeds it events until the connection ends.
    async fn drive(
        &mut self,
        client: &AsyncClient,
        events: &mut mpsc::Receiver<PumpEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> ConnectionEnd {
        let mut appended = self.buffer.subscribe();
        if *shutdown.borrow() {
            self.start_drain();
        }
        // The watchdog's proof that this loop is not wedged: it passes the top at least once
        // a tick, even when idle (see `watchdog.rs`).
        let mut heartbeat = tokio::time::interval(HEARTBEAT_TICK);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            crate::watchdog::UPLINK.beat_within(HEARTBEAT_TICK);
            while let Some(action) = self.publisher.poll_action(Instant::now()) {
                match action {
                    Action::Read { after, max_records } => {
                        match self.buffer.read_after(after, max_records, usize::MAX) {
                            Ok(chunks) => self.publisher.handle_read(chunks, Instant::now()),
                            Err(e) => return self.ended(e.into()),
                        }
                    }
                    Action::ReadAlarms { after, max_records } => {
                        match self.buffer.read_alarms(after, max_records) {
                            Ok(alarms) => self.publisher.handle_alarms_read(alarms, Instant::now()),
                            Err(e) => return self.ended(e.into()),
                        }
                    }
                    Action::AlarmsPublished { seqs } => self.alarms_published(&seqs),
                    Action::Remove { through } => self.remove(through),
                    Action::Publish(m) => {
                        if let Err(e) =
                            client.try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                        {
                            return self.ended(UplinkError::Publish(e.to_string()));
                        }
                        // The publish woke the pump task on this worker, in tokio's LIFO slot,
                        // which no other worker may steal: without a yield it would wait until
                        // this loop has encoded a whole window of batches, and on a slow CPU
                        // with a backlog that outlasts the keepalive (no PINGREQ goes out and
                        // the broker drops us). One reschedule per batch costs nothing.
                        tokio::task::yield_now().await;
                    }
                    Action::Disconnect => {
                        if client.try_disconnect().is_err() {
                            // The request queue is gone: so is the connection.
                            let _ = self.publisher.handle_disconnect_sent();
                        }
                    }
                    Action::Reconnect(e) => return self.ended(e),
                    Action::Closed {
                        offline_acknowledged,
                    } => {
                        tracing::info!(
                            offline_status = if offline_acknowledged {
                                "acknowledged"
                            } else {
                                "left to the last will"
                            },
                            "MQTT disconnected"
                        );
                        return ConnectionEnd::Shutdown;
                    }
                }
            }
            let wake = self.publisher.poll_timeout();
            tokio::select! {
                event = events.recv() => {
                    let now = Instant::now();
                    let handled = match event {
                        Some(PumpEvent::Published(pkid)) => self.publisher.handle_published(pkid),
                        Some(PumpEvent::PubAck(pkid)) => {
                            let handled = self.publisher.handle_puback(pkid, now);
                            if self.publisher.removal_stalled().is_some() {
                                // The held range grew: keep what /health reads current.
                                super::set_removal_stalled(
                                    self.publisher.removal_stalled().cloned(),
                                );
                            }
                            handled
                        }
                        Some(PumpEvent::ConnAck) => Ok(()),
                        Some(PumpEvent::Disconnected) => self.publisher.handle_disconnect_sent(),
                        Some(PumpEvent::Failed(e)) => {
                            Err(UplinkError::ConnectionLost(self.describe(&e)))
                        }
                        None => Err(UplinkError::ConnectionLost("event loop stopped".into())),
                    };
                    if let Err(e) = handled {
                        return self.ended(e);
                    }
                }
                changed = appended.changed(), if self.publisher.wants_records() => {
                    if changed.is_err() {
                        return self.ended(UplinkError::BufferClosed);
                    }
                    self.publisher.handle_appended();
                }
                _ = sleep_until(wake), if wake.is_some() => {}
                _ = heartbeat.tick() => {}
                _ = shutdown.changed(), if !self.publisher.is_shutting_down() => {
                    self.start_drain();
                }
            }
        }
    }

    fn start_drain(&mut self) {
        tracing::info!(
            seconds = self.settings.uplink.shutdown_publish_s,
            buffer_records = self.buffer.stats().records,
            "shutdown: publishing what the buffer holds"
        );
        self.publisher.start_drain(Instant::now());
    }

    /// The connection failed with `e`; during a shutdown that ends the shutdown's publishing.
    fn ended(&self, e: UplinkError) -> ConnectionEnd {
        if self.publisher.is_shutting_down() {
            tracing::warn!(
                error = %e,
                unacked_batches = self.publisher.batches_outstanding(),
                "MQTT connection ended during shutdown; unacknowledged records stay in the \
                 buffer"
            );
            return ConnectionEnd::Shutdown;
        }
        ConnectionEnd::Failed(e)
    }

    /// The one place records leave the buffer: the publisher's [`Action::Remove`].
    fn remove(&mut self, through: u64) {
        let result = self.buffer.ack_through(through);
        self.publisher
            .handle_removed(through, result, Instant::now());
        super::set_removal_stalled(self.publisher.removal_stalled().cloned());
    }

    /// When a removal that failed is due again, if one is (between connections too: freeing
    /// the disk matters to the devices while the broker is away).
    pub fn removal_retry_at(&self) -> Option<Instant> {
        self.publisher.poll_timeout()
    }

    /// Carries out the removals due now (between connections, nothing else is due but
    /// the marking of alarms acknowledged just before the connection ended).
    pub fn retry_removals(&mut self) {
        loop {
            match self.publisher.poll_action(Instant::now()) {
                Some(Action::Remove { through }) => self.remove(through),
                Some(Action::AlarmsPublished { seqs }) => self.alarms_published(&seqs),
                _ => break,
            }
        }
    }

    /// Marks acknowledged alarms in the buffer. A failure is logged and costs at most a
    /// second copy of those alarms after a restart (this process remembers them).
    fn alarms_published(&self, seqs: &[u64]) {
        if let Err(e) = self.buffer.alarms_published(seqs) {
            tracing::warn!(error = %e, alarms = seqs.len(), "could not mark alarms published");
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

/// How often the drive loop passes its top when nothing else wakes it.
const HEARTBEAT_TICK: Duration = Duration::from_secs(5);

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
