//! The uplink's publish logic as a pure state machine: what to publish next, when, and
//! when records may leave the buffer. The shape of quinn-proto's `Connection` and
//! rumqttc's `MqttState`: events and the time go in, actions come out, no IO inside.
//!
//! ```text
//!  driver (connection.rs)                         Publisher
//!  ───────────────────────                        ─────────────────────────────────────
//!  CONNACK                    ── connected(now) ─▶ fresh window + staging, status due
//!  Outgoing::Publish(pkid)    ── handle_published ▶ window learns the pkid
//!  PubAck(pkid)               ── handle_puback ──▶ acked prefix ─▶ removal.acknowledged
//!  buffer committed more      ── handle_appended ▶ read again
//!  SIGTERM                    ── start_drain ────▶ no linger, then goodbye
//!  wake-up (poll_timeout)     ── poll_action(now) ─▶ Read { after, max } ─▶ handle_read
//!                                                  Publish(message)     (already in window)
//!                                                  Remove { through }   ─▶ handle_removed
//!                                                  Disconnect           ─▶ handle_disconnect_sent
//!                                                  Reconnect(error) / Closed { … }
//! ```
//!
//! The rules it owns, each in one place:
//! - **Delete after PUBACK**: only [`Action::Remove`] takes records out of the buffer, and
//!   only through the highest seq of the acknowledged *prefix* of the window (out-of-order
//!   PUBACKs wait for the ones before them), or records NGP passed over once nothing before
//!   them is outstanding. A failed removal is held and retried on a timer ([`Removal`]);
//!   acknowledged records are never published again by this process.
//! - **PUBACK timeout**: publishes outstanding and no PUBACK for
//!   `mqtt.write_timeout_s + mqtt.keep_alive_s` (measured from the last PUBACK or from the
//!   moment the window stopped being empty) ends the connection: a broker that keeps the
//!   session but never acknowledges would otherwise hold the window full forever.
//! - **Order of messages**: the online status first on every connection, then every
//!   `mqtt.status_interval_s`; batches when full or after `uplink.linger_ms`; everything
//!   through the rate limit ([`RateLimit`], governor on the time passed in) and the window.
//! - **Shutdown**: [`Publisher::start_drain`] stops lingering and publishes what the buffer
//!   holds until it is all acknowledged or `uplink.shutdown_publish_s` passed; then the
//!   offline status (not rate limited; only if the window has room, since rumqttc would hold
//!   it and the DISCONNECT behind it), its PUBACK awaited for `goodbye_grace`, then
//!   DISCONNECT, awaited as long.
//!
//! What lives across connections: the rate limit (a reconnect does not refill the buckets)
//! and the removal state. Everything else is per connection: the window, staging and the
//! timers start afresh with each [`Publisher::connected`], and reading starts again from the
//! oldest record in the buffer (rumqttc's own retransmission is never relied on).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::alarm_lane::AlarmLane;
use super::error::UplinkError;
use super::outgoing::{Carried, Message, Outgoing};
use super::rate::RateLimit;
use super::removal::{Removal, RemovalStalled};
use super::staging::{Due, Staging};
use super::status;
use super::window::Window;
use crate::buffer::{BufferError, StoredChunk};
use crate::config::{Settings, UplinkFormat};
use crate::metrics::{self, METRICS};
use firmware_protocols::Record;

/// How long each of the two goodbye steps may take at shutdown, beyond
/// `uplink.shutdown_publish_s`: the offline status' PUBACK (a broker round trip), then the
/// DISCONNECT going out. 3 s, not 1: a gateway on a slow cellular link or a loaded CPU can
/// miss 1 s for the round trip and then leaves the offline status to the last will. Both
/// steps end early once done, so a responsive broker costs milliseconds; the worst case
/// (2 × 3 s, an unresponsive broker) stays inside the 15 s that the systemd unit's
/// `TimeoutStopSec >= 10 + shutdown_publish_s + 15` leaves for the goodbye and the flush.
pub const GOODBYE_GRACE: Duration = Duration::from_secs(3);

/// The settings the publisher works by.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub format: UplinkFormat,
    pub batch_max_records: usize,
    pub linger: Duration,
    pub max_inflight: usize,
    pub puback_timeout: Duration,
    /// `None`: the online status only on connect.
    pub status_every: Option<Duration>,
    pub shutdown_publish: Duration,
    pub goodbye_grace: Duration,
    pub max_messages_per_s: u32,
    pub max_bytes_per_s: u64,
    pub max_packet_bytes: usize,
}

impl PublisherConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let (m, u) = (&settings.mqtt, settings.uplink.options());
        PublisherConfig {
            format: u.format,
            batch_max_records: u.batch_max_records,
            linger: u.linger,
            max_inflight: m.max_inflight_batches,
            puback_timeout: Duration::from_secs(m.write_timeout_s + m.keep_alive_s),
            status_every: (m.status_interval_s > 0)
                .then(|| Duration::from_secs(m.status_interval_s)),
            shutdown_publish: u.shutdown_publish,
            goodbye_grace: GOODBYE_GRACE,
            max_messages_per_s: u.max_messages_per_s,
            max_bytes_per_s: u.max_bytes_per_s,
            max_packet_bytes: m.max_packet_bytes,
        }
    }
}

/// What the driver should do next.
#[derive(Debug)]
pub enum Action {
    /// Read whole chunks whose first seq is after `after` (`None`: from the oldest), at most
    /// `max_records` records but at least one chunk; answer with
    /// [`Publisher::handle_read`].
    Read {
        after: Option<u64>,
        max_records: usize,
    },
    /// Read durable alarm records not yet published ahead of the backlog, with seqs after
    /// `after`, at most `max_records`; answer with [`Publisher::handle_alarms_read`].
    ReadAlarms {
        after: Option<u64>,
        max_records: usize,
    },
    /// Publish this message with QoS 1; it is already counted in the window.
    Publish(Message),
    /// The broker acknowledged these alarm records, published ahead of the backlog: mark
    /// them so in the buffer (`Buffer::alarms_published`), so the backlog never sends them
    /// again, even after a restart.
    AlarmsPublished { seqs: Vec<u64> },
    /// Remove every record through `through` from the buffer; answer with
    /// [`Publisher::handle_removed`].
    Remove { through: u64 },
    /// Send DISCONNECT; tell [`Publisher::handle_disconnect_sent`] when it went out.
    Disconnect,
    /// End this connection and connect again (after the backoff).
    Reconnect(UplinkError),
    /// The graceful shutdown is complete: the connection is closed.
    Closed { offline_acknowledged: bool },
}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Publishing,
    /// Shutdown asked for: publish what the buffer holds until then.
    Draining {
        until: Instant,
    },
    /// The offline status is out (when `sent`): waiting for the window to empty.
    Offline {
        until: Instant,
        sent: bool,
    },
    /// DISCONNECT asked for: waiting for it to go out.
    Disconnecting {
        until: Instant,
        offline_acknowledged: bool,
    },
    Closed {
        offline_acknowledged: bool,
    },
}

/// The state of one connection.
struct Connection {
    phase: Phase,
    window: Window,
    staging: Staging,
    /// The buffer may hold records beyond what was read: read before deciding it is empty.
    may_have_more: bool,
    /// A message built and waiting for the rate limit or room in the window.
    next: Option<Message>,
    status_due: bool,
    next_status_at: Option<Instant>,
    rate_until: Option<Instant>,
    /// The last PUBACK, or when the window last stopped being empty.
    acked_or_idle_at: Instant,
    /// The newest record NGP passed over on this connection. It leaves the buffer with the
    /// next acknowledged record after it, or on its own once nothing before it is
    /// outstanding, so a run of them can never fill the buffer.
    passed_over_through: Option<u64>,
    /// The broker acknowledged at least one publish on this connection.
    broker_acknowledged: bool,
    /// Alarms first (`alarm_lane.rs`).
    alarms: AlarmLane,
    /// The highest seq the backlog has read on this connection: the lane leaves those to it.
    backlog_read_through: Option<u64>,
    /// The newest acknowledged alarm the backlog has skipped: like a passed-over record it
    /// leaves with the next acknowledged record after it, or on its own once nothing
    /// before it is outstanding or staged (else an alarm stored last would stay forever).
    skipped_through: Option<u64>,
}

pub struct Publisher {
    config: PublisherConfig,
    outgoing: Outgoing,
    /// This moment's numbers for the online status (buffer depth, devices, uptime, time).
    online: Box<dyn FnMut() -> status::Online + Send>,
    rate: RateLimit,
    removal: Removal,
    connection: Option<Connection>,
    /// Alarm records acknowledged ahead of the backlog and not yet removed with it: the
    /// backlog leaves them out (across connections; the buffer's markers across restarts).
    alarms_acked: BTreeSet<u64>,
    /// Acknowledged alarms whose buffer markers are still to be set.
    alarms_to_mark: Vec<u64>,
}

impl Publisher {
    pub fn new(
        config: PublisherConfig,
        outgoing: Outgoing,
        online: Box<dyn FnMut() -> status::Online + Send>,
        now: Instant,
    ) -> Self {
        Publisher {
            rate: RateLimit::new(
                config.max_messages_per_s,
                config.max_bytes_per_s,
                config.max_packet_bytes,
                now,
            ),
            config,
            outgoing,
            online,
            removal: Removal::new(),
            connection: None,
            alarms_acked: BTreeSet::new(),
            alarms_to_mark: Vec::new(),
        }
    }

    /// A connection was established (CONNACK): start it with a fresh window and staging.
    pub fn connected(&mut self, now: Instant) {
        let c = &self.config;
        self.connection = Some(Connection {
            phase: Phase::Publishing,
            window: Window::new(c.max_inflight),
            staging: Staging::new(
                c.batch_max_records,
                c.linger,
                self.removal.acknowledged_through(),
            ),
            may_have_more: true,
            next: None,
            status_due: true,
            next_status_at: c.status_every.map(|d| now + d),
            rate_until: None,
            acked_or_idle_at: now,
            passed_over_through: None,
            broker_acknowledged: false,
            alarms: AlarmLane::new(
                c.batch_max_records,
                self.removal.acknowledged_through(),
                c.format == UplinkFormat::Batch,
            ),
            backlog_read_through: None,
            skipped_through: None,
        });
    }

    /// The connection is gone (whichever way it ended); its window and staging are dropped.
    pub fn disconnected(&mut self) {
        self.connection = None;
    }

    /// The broker acknowledged at least one publish on the current (or last) connection.
    pub fn broker_acknowledged(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.broker_acknowledged)
    }

    /// Shutdown or graceful goodbye under way.
    pub fn is_shutting_down(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.phase != Phase::Publishing)
    }

    /// Reading more from the buffer would be used now (the select guard on new records).
    pub fn wants_records(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.staging.wants() > 0 || c.alarms.listens())
    }

    /// Publishes (records or status) not yet acknowledged.
    pub fn batches_outstanding(&self) -> usize {
        self.connection
            .as_ref()
            .map_or(0, |c| c.window.batches_outstanding())
    }

    /// `Some` while removing acknowledged records from the buffer fails.
    pub fn removal_stalled(&self) -> Option<&RemovalStalled> {
        self.removal.stalled()
    }

    /// Shutdown asked for: publish what the buffer holds for up to `shutdown_publish`.
    pub fn start_drain(&mut self, now: Instant) {
        let until = now + self.config.shutdown_publish;
        if let Some(c) = &mut self.connection {
            if c.phase == Phase::Publishing {
                c.phase = Phase::Draining { until };
                // A status not yet published would only be followed by the offline one.
                if c.next
                    .as_ref()
                    .is_some_and(|m| m.carries == Carried::Status)
                {
                    c.next = None;
                }
                c.status_due = false;
            }
        }
    }

    /// rumqttc wrote a publish with `pkid`.
    pub fn handle_published(&mut self, pkid: u16) -> Result<(), UplinkError> {
        match &mut self.connection {
            Some(c) => Ok(c.window.on_outgoing_publish(pkid)?),
            None => Ok(()),
        }
    }

    /// The broker acknowledged `pkid`: the acknowledged prefix of the window may leave the
    /// buffer.
    pub fn handle_puback(&mut self, pkid: u16, now: Instant) -> Result<(), UplinkError> {
        let Some(c) = &mut self.connection else {
            return Ok(());
        };
        c.acked_or_idle_at = now;
        c.broker_acknowledged = true;
        let released = c.window.on_puback(pkid)?;
        let alarms = c.window.take_acked_alarms();
        if !alarms.is_empty() {
            c.alarms.acknowledged(&alarms);
            metrics::add(&METRICS.batches_published, 1);
            metrics::add(&METRICS.records_published, alarms.len() as u64);
            tracing::debug!(seqs = ?alarms, "alarm batch acknowledged");
            self.alarms_acked.extend(alarms.iter().copied());
            let skipped = alarms
                .iter()
                .copied()
                .filter(|&s| Some(s) <= c.backlog_read_through);
            c.skipped_through = c.skipped_through.max(skipped.max());
            self.alarms_to_mark.extend(alarms);
        }
        let Some(released) = released else {
            return Ok(());
        };
        self.acknowledged(released.last_seq);
        metrics::add(&METRICS.batches_published, released.batches.len() as u64);
        for b in &released.batches {
            let latency = now.saturating_duration_since(b.sent_at);
            // Latency first: whoever sees these records counted sees their latency.
            metrics::publish_latency(latency);
            metrics::add(&METRICS.records_published, b.records as u64);
            tracing::debug!(
                first_seq = b.first_seq,
                last_seq = b.last_seq,
                records = b.records,
                bytes = b.payload_bytes,
                latency_ms = latency.as_millis() as u64,
                "batch acknowledged"
            );
        }
        Ok(())
    }

    /// Records through `seq` were acknowledged: they may leave the buffer.
    fn acknowledged(&mut self, seq: u64) {
        self.removal.acknowledged(seq);
        self.alarms_acked = self.alarms_acked.split_off(&seq.saturating_add(1));
    }

    /// The buffer committed more records.
    pub fn handle_appended(&mut self) {
        if let Some(c) = &mut self.connection {
            c.may_have_more = true;
            c.alarms.appended();
        }
    }

    /// The answer to [`Action::Read`]. Alarm records already published ahead of the
    /// backlog, or claimed by the alarm lane, are left out.
    pub fn handle_read(&mut self, chunks: Vec<StoredChunk>, now: Instant) {
        let Some(c) = &mut self.connection else {
            return;
        };
        c.may_have_more = !chunks.is_empty();
        let acked = &self.alarms_acked;
        for chunk in chunks {
            c.backlog_read_through = c.backlog_read_through.max(Some(chunk.last_seq()));
            let ahead = &chunk.published_ahead;
            let acked_ahead = |seq| ahead.contains(&seq) || acked.contains(&seq);
            c.skipped_through = c.skipped_through.max(
                (chunk.first_seq..=chunk.last_seq())
                    .rev()
                    .find(|&seq| acked_ahead(seq)),
            );
            let lane = &c.alarms;
            let published = |seq| acked_ahead(seq) || lane.claims(seq);
            c.staging
                .push_chunk_except(chunk.first_seq, chunk.records, published, now);
        }
    }

    /// The answer to [`Action::ReadAlarms`]: alarm records with their seqs.
    pub fn handle_alarms_read(&mut self, records: Vec<(u64, Record)>, now: Instant) {
        let Some(c) = &mut self.connection else {
            return;
        };
        let acked = &self.alarms_acked;
        let acked_through = self.removal.acknowledged_through();
        let backlog = c.backlog_read_through;
        let taken = |seq: u64| {
            backlog.is_some_and(|b| seq <= b)
                || acked_through.is_some_and(|a| seq <= a)
                || acked.contains(&seq)
        };
        c.alarms.handle_read(records, taken, now);
    }

    /// The answer to [`Action::Remove`]: how many records left, or why none could.
    pub fn handle_removed(&mut self, through: u64, result: Result<u64, BufferError>, now: Instant) {
        self.removal
            .outcome(through, result.map(|_| ()).map_err(|e| e.to_string()), now);
    }

    /// The DISCONNECT asked for by [`Action::Disconnect`] went out. Anywhere else it is an
    /// error: nothing but a shutdown disconnects.
    pub fn handle_disconnect_sent(&mut self) -> Result<(), UplinkError> {
        match &mut self.connection {
            Some(c) => match c.phase {
                Phase::Disconnecting {
                    offline_acknowledged,
                    ..
                } => {
                    c.phase = Phase::Closed {
                        offline_acknowledged,
                    };
                    Ok(())
                }
                _ => Err(UplinkError::Disconnected),
            },
            None => Err(UplinkError::Disconnected),
        }
    }

    /// The earliest instant at which [`Publisher::poll_action`] has something new to say
    /// without an event in between (`None`: only an event will change anything).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let removal = self.removal.poll_timeout();
        let Some(c) = &self.connection else {
            return removal;
        };
        let linger = match (&c.next, c.window.has_room()) {
            (None, true) => c.staging.partial_due_at(),
            _ => None,
        };
        let phase = match c.phase {
            Phase::Publishing => c.next_status_at,
            Phase::Draining { until }
            | Phase::Offline { until, .. }
            | Phase::Disconnecting { until, .. } => Some(until),
            Phase::Closed { .. } => None,
        };
        let puback = match c.phase {
            Phase::Publishing | Phase::Draining { .. } if !c.window.is_empty() => {
                Some(c.acked_or_idle_at + self.config.puback_timeout)
            }
            _ => None,
        };
        let rate = c.rate_until.filter(|_| {
            (c.next.is_some() || c.alarms.next_message().is_some()) && c.window.has_room()
        });
        [removal, linger, phase, puback, rate]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing to do at `now`; call until it returns `None`, then wait for an event
    /// or [`Publisher::poll_timeout`].
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        loop {
            if let Some(through) = self.removal.poll(now) {
                return Some(Action::Remove { through });
            }
            if !self.alarms_to_mark.is_empty() {
                let seqs = std::mem::take(&mut self.alarms_to_mark);
                return Some(Action::AlarmsPublished { seqs });
            }
            let c = self.connection.as_mut()?;
            let draining = match c.phase {
                Phase::Publishing => false,
                Phase::Draining { until } if now >= until => return Some(self.goodbye(now)),
                Phase::Draining { .. } => true,
                Phase::Offline { until, sent } => {
                    if !c.window.is_empty() && now < until {
                        return None;
                    }
                    let offline_acknowledged = sent && c.window.is_empty();
                    c.phase = Phase::Disconnecting {
                        until: now + self.config.goodbye_grace,
                        offline_acknowledged,
                    };
                    return Some(Action::Disconnect);
                }
                Phase::Disconnecting {
                    until,
                    offline_acknowledged,
                } => {
                    return (now >= until).then_some(Action::Closed {
                        offline_acknowledged,
                    })
                }
                Phase::Closed {
                    offline_acknowledged,
                } => {
                    return Some(Action::Closed {
                        offline_acknowledged,
                    })
                }
            };
            if !c.window.is_empty() && now >= c.acked_or_idle_at + self.config.puback_timeout {
                return Some(Action::Reconnect(UplinkError::PubAckTimeout {
                    seconds: self.config.puback_timeout.as_secs(),
                    outstanding: c.window.len(),
                }));
            }
            if !draining {
                if let (Some(at), Some(every)) = (c.next_status_at, self.config.status_every) {
                    if now >= at {
                        c.status_due = true;
                        c.next_status_at = Some(now + every);
                    }
                }
            }
            // Alarms first: ahead of every backlog batch, behind only a status that is due
            // (the online status is the first message of every connection).
            let status_first = (c.status_due && !draining)
                || c.next
                    .as_ref()
                    .is_some_and(|m| m.carries == Carried::Status);
            if !status_first {
                if let Some((after, max_records)) = c.alarms.wants_read(c.backlog_read_through) {
                    return Some(Action::ReadAlarms { after, max_records });
                }
                if let Err(e) = c.alarms.build(&mut self.outgoing, now) {
                    return Some(Action::Reconnect(e.into()));
                }
                if let Some(message) = c.alarms.next_message() {
                    if !c.window.has_room() {
                        return None;
                    }
                    match self.rate.try_acquire(message.payload.len(), now) {
                        Ok(()) => {
                            c.rate_until = None;
                            let (message, seqs) = c.alarms.take_next()?;
                            return Some(Action::Publish(Self::sent_alarms(c, message, seqs, now)));
                        }
                        Err(wait) => {
                            c.rate_until = Some(now + wait);
                            return None;
                        }
                    }
                }
            }
            let wants = c.staging.wants();
            if wants > 0 && c.may_have_more {
                return Some(Action::Read {
                    after: c.staging.read_cursor(),
                    max_records: wants,
                });
            }
            if c.next.is_none() {
                if c.status_due && !draining {
                    c.status_due = false;
                    c.next = Some(self.outgoing.online(&(self.online)()));
                } else if c.staging.due(now, draining) == Due::Now {
                    let encoded = match self.outgoing.next(&mut c.staging, now) {
                        Ok(encoded) => encoded,
                        Err(e) => return Some(Action::Reconnect(e.into())),
                    };
                    c.passed_over_through = c.passed_over_through.max(encoded.passed_over_through);
                    c.next = encoded.message;
                    // Staging has room again: read before the next batch.
                    continue;
                }
            }
            if c.next.is_none() && c.window.is_empty() {
                // Every record before the passed-over ones was acknowledged (or passed over
                // too): they can go without waiting for a successor.
                if let Some(seq) = c.passed_over_through.take() {
                    self.acknowledged(seq);
                    continue;
                }
                let nothing_before = |seq: u64| c.staging.seqs().next().is_none_or(|f| f > seq);
                if let Some(seq) = c.skipped_through.filter(|&s| nothing_before(s)) {
                    c.skipped_through = None;
                    self.acknowledged(seq);
                    continue;
                }
            }
            if let Some(message) = &c.next {
                if !c.window.has_room() {
                    return None;
                }
                match self.rate.try_acquire(message.payload.len(), now) {
                    Ok(()) => {
                        c.rate_until = None;
                        let message = c.next.take()?;
                        return Some(Action::Publish(Self::sent(c, message, now)));
                    }
                    Err(wait) => {
                        c.rate_until = Some(now + wait);
                        return None;
                    }
                }
            }
            if draining
                && c.staging.is_empty()
                && c.alarms.is_idle()
                && c.window.is_empty()
                && !c.may_have_more
            {
                // Everything the buffer held is published and acknowledged.
                return Some(self.goodbye(now));
            }
            return None;
        }
    }

    /// Records `message` in the window as published at `now`.
    fn sent(c: &mut Connection, message: Message, now: Instant) -> Message {
        if c.window.is_empty() {
            c.acked_or_idle_at = now;
        }
        let bytes = message.payload.len();
        match message.carries {
            Carried::Records {
                first_seq,
                last_seq,
                count,
                json_bytes,
            } => {
                metrics::add(&METRICS.batch_json_bytes, json_bytes as u64);
                metrics::add(&METRICS.batch_payload_bytes, bytes as u64);
                c.window.sent(first_seq, last_seq, count, bytes, now);
            }
            Carried::Status => c.window.sent_without_records(bytes, now),
        }
        message
    }

    /// Records the alarm batch `message` (carrying `seqs`) in the window as published.
    fn sent_alarms(c: &mut Connection, message: Message, seqs: Vec<u64>, now: Instant) -> Message {
        if c.window.is_empty() {
            c.acked_or_idle_at = now;
        }
        let bytes = message.payload.len();
        if let Carried::Records { json_bytes, .. } = message.carries {
            metrics::add(&METRICS.batch_json_bytes, json_bytes as u64);
        }
        metrics::add(&METRICS.batch_payload_bytes, bytes as u64);
        c.window.sent_alarms(seqs, bytes, now);
        message
    }

    /// The end of draining: the offline status if the window has room (rumqttc holds
    /// requests while its in-flight window is full, and the DISCONNECT would wait behind
    /// it; then the socket simply closes and the broker publishes the same offline status
    /// as the last will), else straight to DISCONNECT.
    fn goodbye(&mut self, now: Instant) -> Action {
        let grace = self.config.goodbye_grace;
        let Some(c) = self.connection.as_mut() else {
            return Action::Closed {
                offline_acknowledged: false,
            };
        };
        let unacked = c.window.batches_outstanding();
        if unacked > 0 {
            tracing::warn!(
                unacked_batches = unacked,
                "shutdown: uplink.shutdown_publish_s passed before every batch was \
                 acknowledged; their records stay in the buffer for the next start"
            );
        }
        c.next = None;
        c.alarms.clear_next();
        if c.window.has_room() {
            c.phase = Phase::Offline {
                until: now + grace,
                sent: true,
            };
            let offline = self.outgoing.offline();
            return Action::Publish(Self::sent(c, offline, now));
        }
        c.phase = Phase::Disconnecting {
            until: now + grace,
            offline_acknowledged: false,
        };
        Action::Disconnect
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::payload::{Compression, PayloadEncoder};
    use firmware_protocols::{Protocol, Record};
    use std::path::PathBuf;

    const IMEI: &str = "356307042441013";

    fn config() -> PublisherConfig {
        PublisherConfig {
            format: UplinkFormat::Batch,
            batch_max_records: 3,
            linger: Duration::from_millis(200),
            max_inflight: 3,
            puback_timeout: Duration::from_secs(6),
            status_every: Some(Duration::from_secs(60)),
            shutdown_publish: Duration::from_secs(5),
            goodbye_grace: Duration::from_secs(3),
            max_messages_per_s: 0,
            max_bytes_per_s: 0,
            max_packet_bytes: 64 * 1024,
        }
    }

    /// A record with a device time (NGP can carry it), or without (NGP passes it over).
    fn record(timed: bool) -> Record {
        let mut r = Record::new(IMEI, Protocol::Teltonika, 1_700_000_000_000);
        if timed {
            r.time_ms = Some(1_700_000_000_000);
            r.lat = Some(54.7);
            r.lon = Some(25.3);
        }
        r
    }

    /// The config of the alarm tests: no linger, so a batch the alarms left short goes at
    /// once.
    fn eager() -> PublisherConfig {
        PublisherConfig {
            linger: Duration::ZERO,
            ..config()
        }
    }

    /// A Teltonika record triggered by a crash (AVL id 247): an alarm.
    fn alarm() -> Record {
        let mut r = record(true);
        r.event = Some("io:247".into());
        r.io.push((
            firmware_protocols::IoKey::Id(247),
            firmware_protocols::IoValue::U64(1),
        ));
        r
    }

    /// The buffer as the publisher sees it: chunks to read, removals that work or fail, and
    /// the alarm markers (seq → published ahead).
    struct FakeBuffer {
        chunks: Vec<StoredChunk>,
        removal_fails: bool,
        removals: Vec<u64>,
        alarms: std::collections::BTreeMap<u64, bool>,
    }

    impl FakeBuffer {
        fn new(chunks: &[(u64, usize)]) -> Self {
            FakeBuffer {
                chunks: chunks
                    .iter()
                    .map(|&(first_seq, n)| StoredChunk {
                        first_seq,
                        records: (0..n).map(|_| record(true)).collect(),
                        encoded_len: 100,
                        published_ahead: Vec::new(),
                    })
                    .collect(),
                removal_fails: false,
                removals: Vec::new(),
                alarms: Default::default(),
            }
        }

        /// Chunks of records, the ones at `alarms` seqs carrying an alarm.
        fn with_alarms(chunks: &[(u64, usize)], alarms: &[u64]) -> Self {
            let mut buffer = FakeBuffer::new(&[]);
            for &(first_seq, n) in chunks {
                let records = (first_seq..first_seq + n as u64)
                    .map(|seq| {
                        if alarms.contains(&seq) {
                            alarm()
                        } else {
                            record(true)
                        }
                    })
                    .collect();
                buffer.append(first_seq, records);
            }
            buffer
        }

        /// `Buffer::read_alarms`.
        fn read_alarms(&self, after: Option<u64>, max: usize) -> Vec<(u64, Record)> {
            self.alarms
                .iter()
                .filter(|(seq, published)| !**published && after.is_none_or(|a| **seq > a))
                .filter_map(|(&seq, _)| {
                    let c = self
                        .chunks
                        .iter()
                        .find(|c| (c.first_seq..=c.last_seq()).contains(&seq))?;
                    Some((seq, c.records[(seq - c.first_seq) as usize].clone()))
                })
                .take(max)
                .collect()
        }

        fn append(&mut self, first_seq: u64, records: Vec<Record>) {
            for (seq, r) in (first_seq..).zip(&records) {
                if r.alarm().is_some() {
                    self.alarms.insert(seq, false);
                }
            }
            self.chunks.push(StoredChunk {
                first_seq,
                records,
                encoded_len: 100,
                published_ahead: Vec::new(),
            });
        }

        /// `Buffer::read_after`: whole chunks after `after`, at least one, up to `max`.
        fn read_after(&self, after: Option<u64>, max: usize) -> Vec<StoredChunk> {
            let mut out: Vec<StoredChunk> = Vec::new();
            let mut n = 0;
            for c in self
                .chunks
                .iter()
                .filter(|c| after.is_none_or(|a| c.first_seq > a))
            {
                if !out.is_empty() && n + c.records.len() > max {
                    break;
                }
                n += c.records.len();
                let mut c = c.clone();
                c.published_ahead = self
                    .alarms
                    .range(c.first_seq..=c.last_seq())
                    .filter(|(_, published)| **published)
                    .map(|(seq, _)| *seq)
                    .collect();
                out.push(c);
            }
            out
        }

        /// `Buffer::ack_through`: whole chunks at or below `through`.
        fn ack_through(&mut self, through: u64) -> Result<u64, BufferError> {
            self.removals.push(through);
            if self.removal_fails {
                return Err(BufferError::Closed {
                    path: PathBuf::from("/full/disk"),
                });
            }
            let before: usize = self.chunks.iter().map(|c| c.records.len()).sum();
            self.chunks.retain(|c| c.last_seq() > through);
            self.alarms.retain(|seq, _| *seq > through);
            let after: usize = self.chunks.iter().map(|c| c.records.len()).sum();
            Ok((before - after) as u64)
        }

        fn oldest_seq(&self) -> Option<u64> {
            self.chunks.first().map(|c| c.first_seq)
        }
    }

    /// A publisher and its fake world: the buffer, rumqttc's packet ids, the clock.
    struct World {
        p: Publisher,
        buffer: FakeBuffer,
        now: Instant,
        next_pkid: u16,
        /// The seq of every record published, in publish order.
        seqs: Vec<u64>,
    }

    /// What a publish carried, as the broker would see it, with its packet id.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Sent {
        Status(&'static str),
        Records(u64, u64),
    }

    impl World {
        fn new(config: PublisherConfig, buffer: FakeBuffer) -> World {
            let now = Instant::now();
            let encoder = PayloadEncoder::new("gw", Compression::None, 3).unwrap();
            let outgoing =
                Outgoing::new(config.format, encoder, "gw", "fe", config.max_packet_bytes);
            let online = Box::new(|| status::Online {
                uptime: Duration::from_secs(1),
                buffer_records: 0,
                buffer_bytes: 0,
                connected_devices: 0,
                now: std::time::UNIX_EPOCH,
            });
            let mut p = Publisher::new(config, outgoing, online, now);
            p.connected(now);
            World {
                p,
                buffer,
                now,
                next_pkid: 1,
                seqs: Vec::new(),
            }
        }

        /// Polls until idle: reads and removals are answered by the fake buffer, publishes
        /// get their packet ids; returns the publishes and whatever else came out.
        fn step(&mut self) -> (Vec<(u16, Sent)>, Vec<Action>) {
            let (mut sent, mut other) = (Vec::new(), Vec::new());
            for _ in 0..1000 {
                let Some(action) = self.p.poll_action(self.now) else {
                    // Idle means idle: the next wake-up is in the future (no busy loop).
                    let wake = self.p.poll_timeout();
                    assert!(wake.is_none_or(|t| t > self.now), "wake-up in the past");
                    return (sent, other);
                };
                match action {
                    Action::Read { after, max_records } => {
                        let chunks = self.buffer.read_after(after, max_records);
                        self.p.handle_read(chunks, self.now);
                    }
                    Action::Remove { through } => {
                        let result = self.buffer.ack_through(through);
                        self.p.handle_removed(through, result, self.now);
                    }
                    Action::ReadAlarms { after, max_records } => {
                        let alarms = self.buffer.read_alarms(after, max_records);
                        self.p.handle_alarms_read(alarms, self.now);
                    }
                    Action::AlarmsPublished { seqs } => {
                        for seq in seqs {
                            if let Some(published) = self.buffer.alarms.get_mut(&seq) {
                                *published = true;
                            }
                        }
                    }
                    Action::Publish(m) => {
                        if let Ok(batch) = serde_json::from_slice::<serde_json::Value>(&m.payload) {
                            let records = batch["records"].as_array().cloned().unwrap_or_default();
                            self.seqs
                                .extend(records.iter().filter_map(|r| r["seq"].as_u64()));
                        }
                        let pkid = self.next_pkid;
                        self.next_pkid += 1;
                        self.p.handle_published(pkid).unwrap();
                        let what = match m.carries {
                            Carried::Records {
                                first_seq,
                                last_seq,
                                ..
                            } => Sent::Records(first_seq, last_seq),
                            Carried::Status => {
                                Sent::Status(if m.payload.windows(8).any(|w| w == b"\"online\"") {
                                    "online"
                                } else {
                                    "offline"
                                })
                            }
                        };
                        sent.push((pkid, what));
                    }
                    Action::Reconnect(_) | Action::Closed { .. } => {
                        other.push(action);
                        return (sent, other);
                    }
                    Action::Disconnect => other.push(action),
                }
            }
            panic!("poll_action never went idle");
        }

        fn sent(&mut self) -> Vec<Sent> {
            let (sent, other) = self.step();
            assert!(other.is_empty(), "{other:?}");
            sent.into_iter().map(|(_, s)| s).collect()
        }

        fn puback(&mut self, pkid: u16) {
            self.p.handle_puback(pkid, self.now).unwrap();
        }

        fn reconnect(&mut self) {
            self.p.disconnected();
            self.p.connected(self.now);
        }
    }

    #[test]
    fn the_status_goes_first_and_records_leave_only_through_the_acknowledged_prefix() {
        let mut w = World::new(config(), FakeBuffer::new(&[(1, 3), (4, 3), (7, 3)]));
        // A window of three: the status and two batches; the third waits for room.
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(1, 3),
                Sent::Records(4, 6)
            ]
        );
        // Out of order: the second batch's PUBACK removes nothing while the first is out,
        // and its place in the window stays taken until the prefix before it is acknowledged.
        w.puback(3);
        assert_eq!(w.sent(), []);
        assert!(w.buffer.removals.is_empty());
        // The status' PUBACK releases no records (it carries none) but makes room.
        w.puback(1);
        assert_eq!(w.sent(), [Sent::Records(7, 9)]);
        assert!(w.buffer.removals.is_empty());
        // The first batch's PUBACK releases both acknowledged batches, in one removal.
        w.puback(2);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [6]);
        assert_eq!(w.buffer.oldest_seq(), Some(7));
        w.puback(4);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [6, 9]);
        assert_eq!(w.buffer.oldest_seq(), None);
        assert!(w.p.handle_puback(4, w.now).is_err(), "a PUBACK twice");
    }

    #[test]
    fn a_partial_batch_waits_for_linger_unless_more_records_fill_it() {
        let mut w = World::new(config(), FakeBuffer::new(&[(1, 2)]));
        let t0 = w.now;
        assert_eq!(w.sent(), [Sent::Status("online")]);
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_millis(200)));
        w.now = t0 + Duration::from_millis(199);
        assert_eq!(w.sent(), []);
        w.now = t0 + Duration::from_millis(200);
        assert_eq!(w.sent(), [Sent::Records(1, 2)]);
        // New records fill a batch at once once the buffer says it has more.
        w.buffer.append(3, (0..3).map(|_| record(true)).collect());
        assert_eq!(w.sent(), [], "nothing read before the buffer says so");
        w.p.handle_appended();
        assert_eq!(w.sent(), [Sent::Records(3, 5)]);
    }

    #[test]
    fn no_puback_for_the_timeout_reconnects_and_a_puback_restarts_the_wait() {
        let mut w = World::new(config(), FakeBuffer::new(&[(1, 3)]));
        let t0 = w.now;
        assert_eq!(w.sent().len(), 2);
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(6)));
        // A PUBACK (for the status) at 5 s: the wait starts again from there.
        w.now = t0 + Duration::from_secs(5);
        w.puback(1);
        assert_eq!(w.sent(), []);
        w.now = t0 + Duration::from_millis(10_999);
        assert_eq!(w.sent(), []);
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(11)));
        w.now = t0 + Duration::from_secs(11);
        let (sent, other) = w.step();
        assert!(sent.is_empty());
        match &other[..] {
            [Action::Reconnect(e)] => {
                assert_eq!(
                    e.to_string(),
                    "no PUBACK for 6 s with 1 publish(es) outstanding"
                );
                assert_eq!(
                    e.reason(),
                    crate::uplink::error::FailureReason::PubAckTimeout
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            w.buffer.removals.is_empty(),
            "nothing acknowledged, nothing removed"
        );
        // The next connection publishes the unacknowledged batch again, once.
        w.reconnect();
        assert_eq!(w.sent(), [Sent::Status("online"), Sent::Records(1, 3)]);
    }

    #[test]
    fn an_idle_window_never_times_out() {
        let mut w = World::new(config(), FakeBuffer::new(&[]));
        let t0 = w.now;
        assert_eq!(w.sent(), [Sent::Status("online")]);
        w.puback(1);
        w.now = t0 + Duration::from_secs(59);
        assert_eq!(w.sent(), []);
        assert_eq!(
            w.p.poll_timeout(),
            Some(t0 + Duration::from_secs(60)),
            "only the status"
        );
    }

    #[test]
    fn the_status_goes_on_connect_then_every_interval_and_never_while_draining() {
        let mut w = World::new(config(), FakeBuffer::new(&[]));
        let t0 = w.now;
        assert_eq!(w.sent(), [Sent::Status("online")]);
        w.puback(1);
        w.now = t0 + Duration::from_secs(30);
        assert_eq!(w.sent(), []);
        w.now = t0 + Duration::from_secs(60);
        assert_eq!(w.sent(), [Sent::Status("online")]);
        w.puback(2);
        // The next one counts from when the last one was due.
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        w.now = t0 + Duration::from_secs(119);
        w.p.start_drain(w.now);
        w.now = t0 + Duration::from_secs(120);
        let (sent, _) = w.step();
        assert!(
            sent.iter().all(|(_, s)| *s != Sent::Status("online")),
            "{sent:?}"
        );

        // 0: only on connect.
        let mut once = World::new(
            PublisherConfig {
                status_every: None,
                ..config()
            },
            FakeBuffer::new(&[]),
        );
        assert_eq!(once.sent(), [Sent::Status("online")]);
        once.puback(1);
        assert_eq!(once.p.poll_timeout(), None);
        once.now += Duration::from_secs(3600);
        assert_eq!(once.sent(), []);
    }

    #[test]
    fn the_rate_limit_holds_messages_until_tokens_return() {
        let mut w = World::new(
            PublisherConfig {
                max_messages_per_s: 2,
                max_inflight: 8,
                ..config()
            },
            FakeBuffer::new(&[(1, 3), (4, 3), (7, 3)]),
        );
        let t0 = w.now;
        // A burst of one second's worth: the status and one batch.
        assert_eq!(w.sent(), [Sent::Status("online"), Sent::Records(1, 3)]);
        let wake = w.p.poll_timeout().unwrap();
        assert!(
            wake > t0 && wake <= t0 + Duration::from_millis(500),
            "{:?}",
            wake - t0
        );
        w.now = wake - Duration::from_millis(1);
        assert_eq!(w.sent(), []);
        w.now = wake;
        assert_eq!(w.sent(), [Sent::Records(4, 6)]);
        // Kept across a reconnect: the buckets are not refilled by it.
        w.reconnect();
        assert_eq!(w.sent(), [], "no token for the status yet");
        w.now = wake + Duration::from_millis(500);
        assert_eq!(w.sent(), [Sent::Status("online")]);
    }

    #[test]
    fn a_drain_publishes_what_is_left_at_once_then_says_goodbye() {
        let mut w = World::new(
            PublisherConfig {
                linger: Duration::from_secs(60),
                ..config()
            },
            FakeBuffer::new(&[(1, 2)]),
        );
        assert_eq!(
            w.sent(),
            [Sent::Status("online")],
            "the partial batch lingers"
        );
        w.puback(1);
        w.p.start_drain(w.now);
        assert!(w.p.is_shutting_down());
        assert_eq!(w.sent(), [Sent::Records(1, 2)], "no linger while draining");
        w.puback(2);
        let (sent, other) = w.step();
        assert_eq!(sent, [(3, Sent::Status("offline"))]);
        assert!(other.is_empty(), "{other:?}");
        assert_eq!(w.buffer.removals, [2]);
        w.puback(3);
        let (_, other) = w.step();
        assert!(matches!(other[..], [Action::Disconnect]), "{other:?}");
        w.p.handle_disconnect_sent().unwrap();
        let (_, other) = w.step();
        assert!(
            matches!(
                other[..],
                [Action::Closed {
                    offline_acknowledged: true
                }]
            ),
            "{other:?}"
        );
    }

    #[test]
    fn a_drain_ends_at_its_deadline_and_the_goodbye_steps_are_bounded() {
        let mut w = World::new(config(), FakeBuffer::new(&[(1, 3)]));
        let t0 = w.now;
        assert_eq!(w.sent().len(), 2);
        w.p.start_drain(t0);
        assert_eq!(w.sent(), []);
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        // No PUBACK ever: at the deadline the offline status goes anyway (room for it).
        w.now = t0 + Duration::from_secs(5);
        assert_eq!(w.sent(), [Sent::Status("offline")]);
        w.now = t0 + Duration::from_secs(8);
        let (_, other) = w.step();
        assert!(matches!(other[..], [Action::Disconnect]), "{other:?}");
        // The DISCONNECT never goes out either: closed after the grace.
        w.now = t0 + Duration::from_millis(10_999);
        assert!(w.step().1.is_empty());
        w.now = t0 + Duration::from_secs(11);
        let (_, other) = w.step();
        assert!(
            matches!(
                other[..],
                [Action::Closed {
                    offline_acknowledged: false
                }]
            ),
            "{other:?}"
        );
        assert!(w.buffer.removals.is_empty());

        // A full window at the deadline: no offline status (rumqttc would hold it), straight
        // to DISCONNECT.
        let mut full = World::new(config(), FakeBuffer::new(&[(1, 3), (4, 3)]));
        assert_eq!(full.sent().len(), 3);
        full.p.start_drain(full.now);
        full.now += Duration::from_secs(5);
        let (sent, other) = full.step();
        assert!(sent.is_empty());
        assert!(matches!(other[..], [Action::Disconnect]), "{other:?}");
    }

    #[test]
    fn ngp_passed_over_records_leave_once_nothing_before_them_is_outstanding() {
        let mut buffer = FakeBuffer::new(&[]);
        buffer.append(1, vec![record(false), record(true), record(false)]);
        let mut w = World::new(
            PublisherConfig {
                format: UplinkFormat::Ngp,
                linger: Duration::ZERO,
                ..config()
            },
            buffer,
        );
        assert_eq!(w.sent(), [Sent::Status("online"), Sent::Records(2, 2)]);
        assert!(w.buffer.removals.is_empty(), "seq 2 is outstanding");
        w.puback(1);
        w.puback(2);
        assert_eq!(w.sent(), []);
        // Seq 2's PUBACK removes through 2 (seq 1 with it); seq 3 goes on its own once the
        // window is empty.
        assert_eq!(w.buffer.removals, [2, 3]);
        assert_eq!(w.buffer.oldest_seq(), None);
    }

    #[test]
    fn a_removal_that_fails_is_held_and_retried_without_republishing() {
        let mut w = World::new(config(), FakeBuffer::new(&[(1, 3), (4, 3)]));
        let t0 = w.now;
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(1, 3),
                Sent::Records(4, 6)
            ]
        );
        // The disk is full: the removal after the first batch's PUBACK fails.
        w.buffer.removal_fails = true;
        w.puback(1);
        w.puback(2);
        let (sent, other) = w.step();
        assert!(sent.is_empty() && other.is_empty(), "{sent:?} {other:?}");
        assert_eq!(w.buffer.removals, [3]);
        let stalled = w.p.removal_stalled().unwrap().clone();
        assert_eq!(stalled.acknowledged_through, 3);
        assert_eq!(stalled.attempts, 1);
        assert!(stalled.error.contains("/full/disk"), "{}", stalled.error);
        // The connection carries on: the next PUBACK is held too, not retried before its time.
        w.puback(3);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [3]);
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        // The connection drops: the next one publishes nothing that was acknowledged,
        // although all of it is still in the buffer.
        w.reconnect();
        w.buffer.append(7, (0..3).map(|_| record(true)).collect());
        w.p.handle_appended();
        assert_eq!(w.sent(), [Sent::Status("online"), Sent::Records(7, 9)]);
        // The retry, on its timer: through everything acknowledged so far. Still failing,
        // it waits twice as long.
        w.now = t0 + Duration::from_secs(1);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [3, 6]);
        assert_eq!(w.p.removal_stalled().unwrap().attempts, 2);
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        // Space is back: the next retry removes the held range, and the state clears.
        w.buffer.removal_fails = false;
        w.now = t0 + Duration::from_secs(3);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [3, 6, 6]);
        assert_eq!(w.p.removal_stalled(), None);
        assert_eq!(w.buffer.oldest_seq(), Some(7));
        // Later acknowledgements are removed at once again.
        w.puback(4);
        w.puback(5);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [3, 6, 6, 9]);
        assert_eq!(w.buffer.oldest_seq(), None);
    }

    #[test]
    fn between_connections_only_the_removal_retries_are_due() {
        let mut w = World::new(config(), FakeBuffer::new(&[(1, 3)]));
        let t0 = w.now;
        assert_eq!(w.sent().len(), 2);
        w.buffer.removal_fails = true;
        w.puback(1);
        w.puback(2);
        assert_eq!(w.sent(), []);
        w.p.disconnected();
        assert_eq!(w.p.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        w.now = t0 + Duration::from_secs(1);
        w.buffer.removal_fails = false;
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [3, 3]);
        assert_eq!(w.p.removal_stalled(), None);
        assert_eq!(w.p.poll_timeout(), None);
    }

    #[test]
    fn an_alarm_behind_the_backlog_goes_first_in_its_own_batch_and_only_once() {
        let mut w = World::new(
            eager(),
            FakeBuffer::with_alarms(&[(1, 3), (4, 3), (7, 3)], &[8]),
        );
        // The status, then the alarm from the back of the buffer, then the backlog.
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(8, 8),
                Sent::Records(1, 3)
            ]
        );
        // The alarm's PUBACK removes nothing (records 1..=7 are still out) but marks it.
        w.puback(2);
        assert_eq!(w.sent(), []);
        assert!(w.buffer.removals.is_empty());
        assert_eq!(w.buffer.alarms.get(&8), Some(&true));
        for pkid in [1, 3] {
            w.puback(pkid);
        }
        assert_eq!(w.sent(), [Sent::Records(4, 6), Sent::Records(7, 9)]);
        w.puback(4);
        w.puback(5);
        assert_eq!(w.sent(), []);
        // Every record exactly once, the alarm first; all leave after the backlog's PUBACKs.
        assert_eq!(w.seqs, [8, 1, 2, 3, 4, 5, 6, 7, 9]);
        assert_eq!(w.buffer.removals, [3, 9]);
        assert_eq!(w.buffer.oldest_seq(), None);
        assert!(w.buffer.alarms.is_empty());
    }

    #[test]
    fn an_alarm_stored_while_the_backlog_drains_overtakes_it() {
        let mut c = eager();
        c.max_inflight = 2;
        let mut w = World::new(c, FakeBuffer::with_alarms(&[(1, 3), (4, 3), (7, 3)], &[]));
        assert_eq!(w.sent(), [Sent::Status("online"), Sent::Records(1, 3)]);
        // Staging is full and a batch waits for the window, but new appends still matter:
        // they may bring an alarm.
        assert!(w.p.wants_records());
        w.buffer.append(10, vec![record(true), alarm()]);
        w.p.handle_appended();
        // The window is full: the alarm waits for the first free place, and takes it.
        assert_eq!(w.sent(), []);
        w.puback(1);
        assert_eq!(w.sent(), [Sent::Records(11, 11)]);
        w.puback(2);
        w.puback(3);
        assert_eq!(w.sent(), [Sent::Records(4, 6), Sent::Records(7, 9)]);
        w.puback(4);
        w.puback(5);
        assert_eq!(w.sent(), [Sent::Records(10, 10)]);
        assert_eq!(w.seqs, [1, 2, 3, 11, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn an_alarm_the_backlog_has_read_goes_with_the_backlog() {
        let mut w = World::new(eager(), FakeBuffer::with_alarms(&[(1, 3), (4, 3)], &[2]));
        // The first read of a connection comes before the alarms' (the status is first),
        // so an alarm at the head of the buffer simply goes in its place.
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(1, 3),
                Sent::Records(4, 6)
            ]
        );
        assert_eq!(w.seqs, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn an_unacknowledged_alarm_is_sent_again_and_an_acknowledged_one_never() {
        let buffer = FakeBuffer::with_alarms(&[(1, 3), (4, 3), (7, 3)], &[5, 9]);
        let mut w = World::new(eager(), buffer);
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(5, 9),
                Sent::Records(1, 3)
            ]
        );
        // The connection drops before any PUBACK: the next one sends the alarms again.
        w.reconnect();
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(5, 9),
                Sent::Records(1, 3)
            ]
        );
        w.puback(5);
        assert_eq!(w.sent(), []);
        // Acknowledged now: neither a new connection nor the backlog sends them again.
        w.reconnect();
        let before = w.seqs.len();
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(1, 3),
                Sent::Records(4, 7)
            ]
        );
        for pkid in [7, 8, 9] {
            w.puback(pkid);
        }
        assert_eq!(w.sent(), [Sent::Records(8, 8)]);
        assert_eq!(w.seqs[before..], [1, 2, 3, 4, 6, 7, 8]);
    }

    #[test]
    fn an_alarm_stored_last_leaves_the_buffer_once_everything_before_it_is_acknowledged() {
        let mut w = World::new(eager(), FakeBuffer::with_alarms(&[(1, 3), (4, 1)], &[4]));
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(4, 4),
                Sent::Records(1, 3)
            ]
        );
        w.puback(2);
        assert_eq!(w.sent(), []);
        assert!(w.buffer.removals.is_empty(), "records 1..=3 are still out");
        w.puback(1);
        w.puback(3);
        assert_eq!(w.sent(), []);
        assert_eq!(w.buffer.removals, [3, 4]);
        assert_eq!(w.buffer.oldest_seq(), None);
        assert_eq!(w.seqs, [4, 1, 2, 3]);
    }

    #[test]
    fn after_a_restart_the_buffer_says_which_alarms_went_ahead() {
        let mut buffer = FakeBuffer::with_alarms(&[(1, 3), (4, 3)], &[5]);
        buffer.alarms.insert(5, true);
        // A new process: nothing in memory, the marker alone keeps record 5 from going twice.
        let mut w = World::new(eager(), buffer);
        assert_eq!(
            w.sent(),
            [
                Sent::Status("online"),
                Sent::Records(1, 3),
                Sent::Records(4, 6)
            ]
        );
        assert_eq!(w.seqs, [1, 2, 3, 4, 6]);
    }

    #[test]
    fn ngp_output_keeps_buffer_order_for_alarms() {
        let mut c = eager();
        c.format = UplinkFormat::Ngp;
        let mut w = World::new(c, FakeBuffer::with_alarms(&[(1, 3), (4, 3)], &[5]));
        let sent = w.sent();
        assert_eq!(sent[0], Sent::Status("online"));
        let seqs: Vec<u64> = sent[1..]
            .iter()
            .map(|s| match s {
                Sent::Records(first, _) => *first,
                Sent::Status(_) => 0,
            })
            .collect();
        assert_eq!(seqs, [1, 2], "the window holds the status and two messages");
        for pkid in 1..=3 {
            w.puback(pkid);
        }
        assert_eq!(
            w.sent(),
            [
                Sent::Records(3, 3),
                Sent::Records(4, 4),
                Sent::Records(5, 5)
            ]
        );
    }
}
