//! The command connection: its own MQTT connection (client id `{mqtt.client_id}-commands`,
//! `clean_session = false`), so the broker keeps the subscription and the commands
//! published while the gateway was away, without touching the data path's rule (every
//! data connection starts clean and resends from the oldest unacked record).
//!
//! ```text
//! CONNECT (clean_session=false, manual acks) ─▶ SUBSCRIBE {prefix}/{gw}/commands QoS 1
//!   loop select!
//!     PUBLISH* ─▶ Commands::accept (sled batch + fsync) ─▶ PUBACK each (only now)
//!     outbox   ─▶ PUBLISH {prefix}/{gw}/command-results QoS 1 (≤ RESULTS_IN_FLIGHT)
//!     PUBACK   ─▶ the result leaves the outbox
//! any error ─▶ drop the connection's state, back off, reconnect; results are sent again
//!             from the oldest in the outbox, and the broker resends every command not
//!             acknowledged
//! ```
//!
//! Every PUBLISH that arrived together is accepted in one batch with one fsync, so a flood
//! costs one disk flush per broker round, not one per command.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

use super::service::Commands;
use crate::config::Settings;

/// Results published and not yet acknowledged at once.
const RESULTS_IN_FLIGHT: usize = 16;
/// rumqttc's inflight setting: the packet-id space (see `options`).
const RUMQTTC_INFLIGHT: u16 = 256;
/// Longest wait for room in rumqttc's request queue.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// Commands accepted in one batch at most.
const ACCEPT_BATCH: usize = 256;

pub fn commands_topic(settings: &Settings) -> String {
    format!(
        "{}/{}/commands",
        settings.mqtt.topic_prefix, settings.gateway_id
    )
}

pub fn results_topic(settings: &Settings) -> String {
    format!(
        "{}/{}/command-results",
        settings.mqtt.topic_prefix, settings.gateway_id
    )
}

enum PumpEvent {
    ConnAck(bool),
    /// The broker's answer to the commands subscription: `true` when it granted it.
    SubAck(bool),
    Command(Publish),
    Published(u16),
    PubAck(u16),
    Failed(String),
}

/// The largest command PUBLISH this connection takes in (see `options`).
const COMMAND_PACKET_LIMIT: usize = 1024 * 1024;

fn options(settings: &Settings) -> Result<MqttOptions, String> {
    let m = &settings.mqtt;
    let mut options = MqttOptions::new(format!("{}-commands", m.client_id), &m.host, m.port);
    options
        .set_keep_alive(Duration::from_secs(m.keep_alive_s))
        .set_clean_session(false)
        .set_manual_acks(true)
        // Incoming: a PUBLISH over this limit breaks the connection inside rumqttc before we
        // can refuse it, and the broker redelivers it to this persistent session forever. So
        // the limit is far above any command `commands.max_bytes` allows (a command that long
        // is parsed, answered `rejected` and acknowledged); only a message over 1 MiB can
        // still wedge the session, and the broker's own size limit is the place to stop that.
        .set_max_packet_size(
            COMMAND_PACKET_LIMIT.max(m.max_packet_bytes),
            m.max_packet_bytes,
        )
        // rumqttc hands out packet ids 1..=inflight and stops taking ANY request (our
        // acks too) while the next id is still in use; far more ids than the results
        // window keeps that from happening.
        .set_inflight(RUMQTTC_INFLIGHT);
    if m.tls.enabled {
        let config = crate::uplink::tls::client_config(&m.tls, &m.host)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    if let Some((user, password)) = m.credentials()? {
        options.set_credentials(user, password.expose());
    }
    Ok(options)
}

/// Runs the command connection until `shutdown`.
pub async fn run(settings: Settings, commands: Commands, mut shutdown: watch::Receiver<bool>) {
    let options = match options(&settings) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "commands: cannot build the MQTT options; no commands");
            return;
        }
    };
    let mut delay = Duration::from_millis(settings.uplink.backoff_initial_ms);
    let max_delay = Duration::from_millis(settings.uplink.backoff_max_ms);
    loop {
        let started = tokio::time::Instant::now();
        match connection(&settings, &commands, options.clone(), &mut shutdown).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "commands: MQTT connection ended; reconnecting"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            delay = Duration::from_millis(settings.uplink.backoff_initial_ms);
        }
        let jittered = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(max_delay);
    }
}

/// One connection; `Ok` at shutdown.
async fn connection(
    settings: &Settings,
    commands: &Commands,
    options: MqttOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    eventloop
        .network_options
        .set_connection_timeout(settings.mqtt.connect_timeout_s);
    // Unbounded: a pump blocked on a full channel stops draining rumqttc's requests (our
    // acks), and the two would wait for each other. The broker's in-flight limit for this
    // client (mosquitto: max_inflight_messages, 20) bounds the commands waiting here.
    let (tx, mut events) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    PumpEvent::ConnAck(ack.session_present)
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => PumpEvent::SubAck(
                    ack.return_codes
                        .iter()
                        .all(|code| matches!(code, SubscribeReasonCode::Success(_))),
                ),
                Ok(Event::Incoming(Packet::Publish(p))) => PumpEvent::Command(p),
                Ok(Event::Incoming(Packet::PubAck(ack))) => PumpEvent::PubAck(ack.pkid),
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => PumpEvent::Published(pkid),
                Ok(_) => continue,
                Err(e) => PumpEvent::Failed(e.to_string()),
            };
            let last = matches!(event, PumpEvent::Failed(_));
            if tx.send(event).is_err() || last {
                return;
            }
        }
    });
    let _abort = AbortOnDrop(pump);
    let topic = commands_topic(settings);
    let results_topic = results_topic(settings);
    let connect_timeout = Duration::from_secs(settings.mqtt.connect_timeout_s + 1);
    match tokio::time::timeout(connect_timeout, events.recv()).await {
        Ok(Some(PumpEvent::ConnAck(session_present))) => {
            tracing::info!(%topic, session_present, "commands: connected")
        }
        Ok(Some(PumpEvent::Failed(e))) => return Err(e),
        Ok(_) => return Err("no CONNACK".into()),
        Err(_) => return Err("no CONNACK in time".into()),
    }
    client
        .try_subscribe(&topic, QoS::AtLeastOnce)
        .map_err(|e| e.to_string())?;

    // Results of this connection: sent and waiting for their packet id, then for PUBACK.
    let mut last_sent: Option<u64> = None;
    let mut awaiting_pkid: VecDeque<u64> = VecDeque::new();
    let mut by_pkid: HashMap<u16, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        // Results: keep the window full.
        let in_flight = awaiting_pkid.len() + by_pkid.len();
        if in_flight < RESULTS_IN_FLIGHT {
            let next = commands
                .store()
                .results_after(last_sent, RESULTS_IN_FLIGHT - in_flight)
                .map_err(|e| e.to_string())?;
            for (seq, payload) in next {
                if let Err(e) = client.try_publish(&results_topic, QoS::AtLeastOnce, false, payload)
                {
                    return Err(why_requests_failed(e, &mut events));
                }
                last_sent = Some(seq);
                awaiting_pkid.push_back(seq);
            }
        }
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return Err("the MQTT event loop stopped".into()) };
                match event {
                    PumpEvent::Command(first) => {
                        let mut batch = vec![first];
                        while batch.len() < ACCEPT_BATCH {
                            match events.try_recv() {
                                Ok(PumpEvent::Command(p)) => batch.push(p),
                                Ok(other) => { handle(other, &mut awaiting_pkid, &mut by_pkid, commands)?; }
                                Err(_) => break,
                            }
                        }
                        let now = crate::commands::now_ms();
                        let payloads: Vec<&[u8]> = batch
                            .iter()
                            .filter(|p| p.topic == topic)
                            .map(|p| p.payload.as_ref())
                            .collect();
                        // Nothing is acknowledged unless durably queued (or answered).
                        commands.accept(&payloads, now).await.map_err(|e| e.to_string())?;
                        for p in &batch {
                            // Waits for room in rumqttc's request queue (the pump drains it).
                            let acked = tokio::time::timeout(REQUEST_WAIT, client.ack(p)).await;
                            match acked {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => return Err(why_requests_failed(e, &mut events)),
                                Err(_) => return Err("rumqttc took no ack for 10 s".into()),
                            }
                        }
                    }
                    other => handle(other, &mut awaiting_pkid, &mut by_pkid, commands)?,
                }
            }
            _ = commands.results_added() => {}
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                let _ = client.try_disconnect();
                // Let the DISCONNECT go out.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(());
            }
        }
    }
}

/// A request that could not be queued: the event loop ended (its error is waiting in
/// `events`) or is full.
fn why_requests_failed(
    e: rumqttc::ClientError,
    events: &mut mpsc::UnboundedReceiver<PumpEvent>,
) -> String {
    while let Ok(event) = events.try_recv() {
        if let PumpEvent::Failed(why) = event {
            return why;
        }
    }
    format!("{e} (the request queue is full)")
}

fn handle(
    event: PumpEvent,
    awaiting_pkid: &mut VecDeque<u64>,
    by_pkid: &mut HashMap<u16, u64>,
    commands: &Commands,
) -> Result<(), String> {
    match event {
        PumpEvent::Published(pkid) => {
            if let Some(seq) = awaiting_pkid.pop_front() {
                by_pkid.insert(pkid, seq);
            }
        }
        PumpEvent::PubAck(pkid) => {
            if let Some(seq) = by_pkid.remove(&pkid) {
                commands
                    .store()
                    .remove_result(seq)
                    .map_err(|e| e.to_string())?;
            }
        }
        PumpEvent::Failed(e) => return Err(e),
        // Only from here on does a command published to the topic reach this gateway (until
        // then, on a first connection, the broker has no subscription to keep it for).
        PumpEvent::SubAck(true) => tracing::info!("commands: subscribed"),
        PumpEvent::SubAck(false) => {
            return Err("the broker refused the commands subscription (check its ACL)".into())
        }
        PumpEvent::ConnAck(_) | PumpEvent::Command(_) => {}
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
