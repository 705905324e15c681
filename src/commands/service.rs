//! The gateway's command service: the pure queues ([`super::state`]) mirrored into sled
//! ([`super::store`]), the directory of connected devices (device id → a bounded channel
//! into its session), and the results outbox the MQTT side publishes.
//!
//! ```text
//! MQTT / HTTP ─ accept ─▶ parse, de-duplicate, admit ─▶ sled batch + flush ─▶ (then the ack)
//!                                                  └─▶ dispatch(device)
//! session login ─ register ─▶ directory ─▶ dispatch: expired? allowed? framed? ─▶ channel
//! another device on it ─ link ─┘   (one channel per session, every device it carries)
//! session, idle ─ mark_sent (durable) ─▶ write the frame
//! session ─ answered / unregister (connection lost) ─▶ result ─▶ dispatch the next one
//! ticker ─ tick(now) ─▶ expired / no answer in time ─▶ results
//! ```
//!
//! Order of durability: a command is acknowledged to the broker only after its batch is
//! flushed; it is marked `sent` durably before its bytes are written, so a crash after the
//! write never sends it a second time (it is reported `failed` at the next start instead).
//! Results are written with the change that causes them, in the same batch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use firmware_protocols::command::{self as proto, AnswerKey, CommandAnswer, CommandBody};
use firmware_protocols::Protocol;
use tokio::sync::{mpsc, Notify};

use super::config::{CommandSettings, Source};
use super::message::{self, Body, CommandResult, Status};
use super::metrics;
use super::state::{AnswerTo, Entry, Limits, Queues, Settled};
use super::store::{Change, CommandStore};
use crate::buffer::{Buffer, BufferError};
use crate::config::Settings;

/// Devices remembered (protocol and source) after they went away, so a command for one can
/// be refused at once when its protocol takes none.
const SEEN_DEVICES: usize = 100_000;
/// Results kept in memory for `GET /commands/{id}`.
const RECENT_RESULTS: usize = 10_000;
/// Devices one session can be sent commands for. A device protocol's connection is one
/// device, but a JSON-lines connection (a local application, a hub of sensors) carries the
/// records of many, and each of them is reachable on it; past this many, the next ones are
/// not (their commands wait, queued, until they appear on a connection with room).
pub const MAX_DEVICES_PER_SESSION: usize = 64;

/// How a device is reached: its protocol and the config entry it came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub protocol: Protocol,
    pub source: Source,
}

/// A framed command for a session to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub id: String,
    /// The device it is for (a session may carry several, see [`MAX_DEVICES_PER_SESSION`]).
    pub device: String,
    pub bytes: Vec<u8>,
}

/// A session's place in the directory: the channel its devices' commands come through.
#[derive(Debug)]
pub struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<Delivery>,
    /// Cloned into the link of each device the session carries ([`Commands::link`]).
    tx: mpsc::Sender<Delivery>,
}

struct Link {
    registration: u64,
    seen: Seen,
    tx: mpsc::Sender<Delivery>,
    /// The command handed to the session's channel and not yet taken (`mark_sent`): a
    /// dispatch does not hand it again, so one device cannot fill a channel shared by many.
    handed: Option<u64>,
}

struct State {
    queues: Queues,
    next_seq: u64,
    remembered_ids: u64,
    links: HashMap<String, Link>,
    seen: HashMap<String, Seen>,
    recent: HashMap<String, CommandResult>,
    recent_order: VecDeque<String>,
}

impl State {
    /// Adds `r` to the outbox in `change`.
    fn emit(&mut self, change: &mut Change, r: CommandResult, protocol: Option<Protocol>) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        change.result(seq, &r);
        change.next_seq(self.next_seq);
        metrics::count(protocol, r.status);
        tracing::debug!(id = ?r.id, device = ?r.device_id, status = r.status.as_str(), reason = ?r.reason, "command");
        self.remember(r);
    }

    /// Keeps `r` for `GET /commands/{id}` (bounded), without publishing it.
    fn remember(&mut self, r: CommandResult) {
        if let Some(id) = r.id.clone() {
            if self.recent.insert(id.clone(), r).is_none() {
                self.recent_order.push_back(id);
                if self.recent_order.len() > RECENT_RESULTS {
                    if let Some(old) = self.recent_order.pop_front() {
                        self.recent.remove(&old);
                    }
                }
            }
        }
    }

    fn protocol_of(&self, device: &str) -> Option<Protocol> {
        self.seen_of(device).map(|s| s.protocol)
    }

    fn seen_of(&self, device: &str) -> Option<Seen> {
        self.links
            .get(device)
            .map(|l| l.seen)
            .or_else(|| self.seen.get(device).copied())
    }
}

struct Inner {
    settings: CommandSettings,
    store: CommandStore,
    state: Mutex<State>,
    /// Woken when the outbox has a new result.
    results: Notify,
    registrations: AtomicU64,
    /// Bumped whenever a device's link is removed or moves to another session: sessions
    /// then take back the links of theirs that are vacant ([`Commands::relink_vacant`]).
    links_epoch: AtomicU64,
}

/// The command service; cheap to clone.
#[derive(Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").finish_non_exhaustive()
    }
}

fn to_body(body: &Body) -> CommandBody {
    match body {
        Body::Text(t) => CommandBody::Text(t.clone()),
        Body::Raw(b) => CommandBody::Raw(b.clone()),
    }
}

impl Commands {
    /// Loads the queued commands from the buffer's database. Commands that were sent when
    /// the gateway stopped get `failed` (their connection is gone; they are not sent again).
    pub fn open(settings: &Settings, buffer: Buffer, now_ms: i64) -> Result<Commands, BufferError> {
        let c = &settings.commands;
        let store = CommandStore::new(buffer);
        let loaded = store.load()?;
        let mut seen = HashMap::new();
        for (i, s) in settings.serial.iter().enumerate() {
            let protocol = firmware_protocols::registry::lookup(&s.protocol).map(|p| p.protocol);
            if let (Some(device), Some(protocol)) = (&s.device_id, protocol) {
                seen.insert(
                    device.clone(),
                    Seen {
                        protocol,
                        source: Source::Serial(i),
                    },
                );
            }
        }
        let mut state = State {
            queues: Queues::new(Limits {
                per_device: c.max_queued_per_device as usize,
                total: c.max_queued_total as usize,
                answer_timeout_ms: (c.answer_timeout_s as i64).saturating_mul(1000),
            }),
            next_seq: loaded.next_seq,
            remembered_ids: loaded.remembered_ids,
            links: HashMap::new(),
            seen,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
        };
        let mut change = Change::default();
        let mut failed = 0;
        for e in loaded.entries {
            if e.sent_at_ms.is_some() {
                change.settle(&e);
                let r = CommandResult::new(&e.id, &e.device_id, Status::Failed, now_ms)
                    .with_reason("the gateway restarted before the device answered");
                state.emit(&mut change, r, None);
                failed += 1;
            } else {
                // Known to `GET /commands/{id}` again. The stored entry keeps no queued time,
                // so `at` is this start, and the reason says so.
                state.remember(
                    CommandResult::new(&e.id, &e.device_id, Status::Queued, now_ms)
                        .with_reason("queued before the gateway restarted; `at` is the restart"),
                );
                state.queues.push(e);
            }
        }
        store.apply(change)?;
        metrics::set_queued(state.queues.total());
        tracing::info!(
            queued = state.queues.total(),
            failed_at_restart = failed,
            "commands: queue loaded"
        );
        Ok(Commands {
            inner: Arc::new(Inner {
                settings: c.clone(),
                store,
                state: Mutex::new(state),
                results: Notify::new(),
                registrations: AtomicU64::new(1),
                links_epoch: AtomicU64::new(0),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn store(&self) -> &CommandStore {
        &self.inner.store
    }

    pub fn settings(&self) -> &CommandSettings {
        &self.inner.settings
    }

    /// Resolves when a result was added to the outbox since the last call.
    pub async fn results_added(&self) {
        self.inner.results.notified().await
    }

    /// Commands queued or sent and unsettled.
    pub fn queued(&self) -> usize {
        self.state().queues.total()
    }

    /// The latest status of a command this process has seen (bounded).
    pub fn status(&self, id: &str) -> Option<CommandResult> {
        self.state().recent.get(id).cloned()
    }

    /// Why `seen`'s device cannot take `body`, if it cannot.
    fn refusal(&self, seen: Seen, body: &Body) -> Option<String> {
        if !proto::takes_commands(seen.protocol) {
            return Some(format!(
                "protocol without downlink: {} devices take no commands",
                seen.protocol.as_str()
            ));
        }
        let prefixes = self.inner.settings.prefixes_of(seen.source)?;
        match body {
            Body::Raw(_) => Some(format!(
                "not allowed: {} has a command allow-list, and raw_hex is not judged by it",
                seen.source
            )),
            Body::Text(text) => {
                let allowed = prefixes.iter().any(|p| {
                    text.as_bytes()
                        .get(..p.len())
                        .is_some_and(|start| start.eq_ignore_ascii_case(p.as_bytes()))
                });
                (!allowed).then(|| {
                    format!(
                        "not allowed: the command allow-list of {} has no prefix of it",
                        seen.source
                    )
                })
            }
        }
    }

    /// Takes command payloads (MQTT publishes, an HTTP request): parses, de-duplicates and
    /// queues them, and writes a result for every one that is rejected (or queued for a
    /// device that is not connected). Returns once all of it is durable: only then may the
    /// caller acknowledge them. An error: nothing of these is acknowledged.
    pub async fn accept(&self, payloads: &[&[u8]], now_ms: i64) -> Result<(), BufferError> {
        let settings = &self.inner.settings;
        let mut dispatch = Vec::new();
        {
            let mut st = self.state();
            let mut change = Change::default();
            let mut ids = HashSet::new();
            let mut queued = Vec::new();
            let mut failure = None;
            for payload in payloads {
                let c = match message::parse(payload, settings.max_bytes) {
                    Ok(c) => c,
                    Err(m) => {
                        let protocol = m.device_id.as_deref().and_then(|d| st.protocol_of(d));
                        crate::warn_bad_input!("commands", "command rejected", id = ?m.id, device = ?m.device_id, reason = %m.reason);
                        st.emit(&mut change, CommandResult::rejected(&m, now_ms), protocol);
                        continue;
                    }
                };
                let known = match self.inner.store.knows_id(&c.id) {
                    Ok(known) => known,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                if ids.contains(&c.id) || known {
                    metrics::duplicate();
                    tracing::info!(id = %c.id, device = %c.device_id, "command id accepted before; not sent again");
                    continue;
                }
                let seen = st.seen_of(&c.device_id);
                let refused = seen.and_then(|s| self.refusal(s, &c.body));
                if let Some(why) = refused.or_else(|| st.queues.admit(&c.device_id).err()) {
                    crate::warn_bad_input!("commands", "command rejected", id = %c.id, device = %c.device_id, reason = %why);
                    let r = CommandResult::new(&c.id, &c.device_id, Status::Rejected, now_ms)
                        .with_reason(why);
                    st.emit(&mut change, r, seen.map(|s| s.protocol));
                    continue;
                }
                ids.insert(c.id.clone());
                let ttl_s = c.ttl_s.unwrap_or(settings.default_ttl_s);
                let entry = Entry {
                    seq: st.next_seq,
                    id: c.id,
                    device_id: c.device_id,
                    body: c.body,
                    expires_at_ms: now_ms.saturating_add(
                        i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX),
                    ),
                    sent_at_ms: None,
                };
                st.next_seq = st.next_seq.saturating_add(1);
                change.next_seq(st.next_seq);
                change.queue(&entry);
                if st.links.contains_key(&entry.device_id) {
                    // Sent in a moment: `queued` is published only for devices away.
                    dispatch.push(entry.device_id.clone());
                    st.remember(CommandResult::new(
                        &entry.id,
                        &entry.device_id,
                        Status::Queued,
                        now_ms,
                    ));
                } else {
                    let r = CommandResult::new(&entry.id, &entry.device_id, Status::Queued, now_ms);
                    st.emit(&mut change, r, seen.map(|s| s.protocol));
                }
                queued.push((entry.device_id.clone(), entry.seq));
                st.queues.push(entry);
            }
            let new_ids = change.new_ids();
            let applied = match failure {
                Some(e) => Err(e),
                None => self.inner.store.apply(change),
            };
            if let Err(e) = applied {
                for (device, seq) in queued {
                    st.queues.remove(&device, seq);
                }
                return Err(e);
            }
            st.remembered_ids += new_ids;
            metrics::set_queued(st.queues.total());
        }
        self.inner.store.flush().await?;
        self.inner.results.notify_one();
        self.forget_old_ids();
        dispatch.dedup();
        for device in dispatch {
            self.dispatch(&device, now_ms);
        }
        Ok(())
    }

    /// Keeps the remembered ids within `commands.remembered_ids`.
    fn forget_old_ids(&self) {
        let bound = u64::from(self.inner.settings.remembered_ids);
        let mut st = self.state();
        if st.remembered_ids <= bound {
            return;
        }
        // Forget a tenth more than needed, so this runs once per many commands.
        let n = st.remembered_ids - bound + bound / 10;
        match self.inner.store.forget_oldest_ids(n) {
            Ok(forgotten) => st.remembered_ids = st.remembered_ids.saturating_sub(forgotten),
            Err(e) => tracing::warn!(error = %e, "commands: cannot forget old ids"),
        }
    }

    /// Hands the device's next command to its session, settling on the way those that
    /// expired and those it cannot take.
    pub fn dispatch(&self, device: &str, now_ms: i64) {
        let mut st = self.state();
        let Some(seen) = st.links.get(device).map(|l| l.seen) else {
            return;
        };
        let mut change = Change::default();
        let next = self.next_framed(&mut st, device, seen, now_ms, &mut change);
        // Under the lock: results reach the outbox in seq order (the publisher reads after
        // the last seq it sent).
        self.apply_results(change);
        let (Some(delivery), Some(link)) = (next, st.links.get_mut(device)) else {
            return;
        };
        if link.handed.is_some() {
            // At most one command per device waits in its session's channel: this one, or
            // one settled since it was handed (expired, say), whose taking finds it settled
            // and dispatches again (`mark_sent_via`). So a channel holds about one per device
            // it carries, and is not full.
            return;
        }
        let seq = delivery.seq;
        match link.tx.try_send(delivery) {
            Ok(()) => link.handed = Some(seq),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    device,
                    "commands: the session's channel is full; the command waits"
                )
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// The device's next command, framed; expired ones and those it cannot take are
    /// settled into `change` on the way.
    fn next_framed(
        &self,
        st: &mut State,
        device: &str,
        seen: Seen,
        now_ms: i64,
        change: &mut Change,
    ) -> Option<Delivery> {
        let delivery = loop {
            let (next, expired) = st.queues.next_to_send(device, now_ms);
            for e in expired {
                change.settle(&e);
                let r = CommandResult::new(&e.id, device, Status::Expired, now_ms)
                    .with_reason("ttl_s passed before the command could be sent");
                st.emit(change, r, Some(seen.protocol));
            }
            let entry = next?;
            let framed = match self.refusal(seen, &entry.body) {
                Some(why) => Err(why),
                None => proto::frame_command(
                    seen.protocol,
                    entry.token(),
                    &entry.id,
                    device,
                    &to_body(&entry.body),
                )
                .map_err(|e| format!("cannot be framed for {}: {e}", seen.protocol.as_str())),
            };
            match framed {
                Err(why) => {
                    st.queues.remove(device, entry.seq);
                    change.settle(&entry);
                    let r = CommandResult::new(&entry.id, device, Status::Rejected, now_ms)
                        .with_reason(why);
                    st.emit(change, r, Some(seen.protocol));
                }
                Ok(bytes) => {
                    break Delivery {
                        seq: entry.seq,
                        id: entry.id.clone(),
                        device: device.to_string(),
                        bytes,
                    }
                }
            }
        };
        metrics::set_queued(st.queues.total());
        Some(delivery)
    }

    /// A datagram device (UDP) is listening right after its datagram was answered: its
    /// next command, already marked sent (durably), when one is due and none is outstanding.
    pub async fn next_for_datagram(
        &self,
        device: &str,
        seen: Seen,
        now_ms: i64,
    ) -> Option<Delivery> {
        let mut change = Change::default();
        let next = {
            let mut st = self.state();
            st.seen.insert(device.to_string(), seen);
            let next = self.next_framed(&mut st, device, seen, now_ms, &mut change);
            self.apply_results(change);
            next
        };
        let delivery = next?;
        self.mark_sent(device, delivery.seq, now_ms)
            .await
            .then_some(delivery)
    }

    fn apply_results(&self, change: Change) {
        if change.is_empty() {
            return;
        }
        match self.inner.store.apply(change) {
            Ok(()) => self.inner.results.notify_one(),
            Err(e) => tracing::error!(error = %e, "commands: cannot store a result"),
        }
    }

    /// A session's device is connected (after its login): commands for it go to `rx`. A
    /// command still outstanding on an earlier connection of the device has failed.
    pub fn register(&self, device: &str, seen: Seen, now_ms: i64) -> Registration {
        let id = self.inner.registrations.fetch_add(1, Ordering::Relaxed);
        // One waiting command per device the session may carry (see `dispatch`), and room
        // for the stale copies a takeover and a take-back can leave behind.
        let (tx, rx) = mpsc::channel(2 * MAX_DEVICES_PER_SESSION);
        let registration = Registration { id, rx, tx };
        self.link(&registration, device, seen, now_ms);
        registration
    }

    /// One more device on the session of `registration` (a JSON-lines connection carrying
    /// several): its commands come through the same channel, as after [`Self::register`].
    /// The caller keeps within [`MAX_DEVICES_PER_SESSION`] per registration. `false`: a
    /// JSON-lines session named a device known as another protocol's (a tracker's IMEI),
    /// whose commands stay framed for that protocol and go to its own connection.
    pub fn link(&self, registration: &Registration, device: &str, seen: Seen, now_ms: i64) -> bool {
        self.link_with(registration, device, seen, now_ms, true)
    }

    /// After [`Self::links_epoch`] changed: takes back those of `devices` (this session's)
    /// whose link is vacant because the session that took it over has ended. A link that
    /// another live session holds stays there: taking it would fail its command in flight,
    /// and two hubs hearing the same tag would pass it back and forth.
    pub fn relink_vacant(
        &self,
        registration: &Registration,
        devices: &[String],
        seen: Seen,
        now_ms: i64,
    ) {
        let vacant: Vec<&String> = {
            let st = self.state();
            devices
                .iter()
                .filter(|d| !st.links.contains_key(d.as_str()))
                .collect()
        };
        for device in vacant {
            self.link_with(registration, device, seen, now_ms, false);
        }
    }

    /// Changes to the links so far; see [`Self::relink_vacant`].
    pub fn links_epoch(&self) -> u64 {
        self.inner.links_epoch.load(Ordering::Acquire)
    }

    fn link_with(
        &self,
        registration: &Registration,
        device: &str,
        seen: Seen,
        now_ms: i64,
        take_over: bool,
    ) -> bool {
        let mut change = Change::default();
        {
            let mut st = self.state();
            // A JSON line may name any device, a tracker's IMEI too; a device known as another
            // protocol's keeps its commands framed for that protocol and sent on its own
            // connection, whether it is connected now or away. (Its own login, below, always
            // takes its link: it is the device.)
            let known_as_other = st
                .seen_of(device)
                .is_some_and(|s| s.protocol != seen.protocol);
            if seen.protocol == Protocol::Jsonl && known_as_other {
                tracing::debug!(device, "commands: a JSON-lines connection names a device of another protocol; its link stays with that protocol");
                return false;
            }
            match st.links.get(device) {
                Some(l) if l.registration == registration.id => return true,
                Some(_) if !take_over => return false,
                Some(_) => {
                    self.inner.links_epoch.fetch_add(1, Ordering::AcqRel);
                }
                None => {}
            }
            if st.seen.len() >= SEEN_DEVICES && !st.seen.contains_key(device) {
                // Bounded: forget an arbitrary one (it is checked again when it logs in).
                if let Some(k) = st.seen.keys().next().cloned() {
                    st.seen.remove(&k);
                }
            }
            st.seen.insert(device.to_string(), seen);
            st.links.insert(
                device.to_string(),
                Link {
                    registration: registration.id,
                    seen,
                    tx: registration.tx.clone(),
                    handed: None,
                },
            );
            if let Some(e) = st.queues.connection_lost(device) {
                change.settle(&e);
                let r = CommandResult::new(&e.id, device, Status::Failed, now_ms)
                    .with_reason("connection lost after sending (the device connected again)");
                st.emit(&mut change, r, Some(seen.protocol));
            }
            self.apply_results(change);
        }
        self.dispatch(device, now_ms);
        true
    }

    /// The session of registration `id` ended: a command sent on it and not answered failed.
    pub fn unregister(&self, device: &str, id: u64, now_ms: i64) {
        let mut change = Change::default();
        {
            let mut st = self.state();
            if st.links.get(device).map(|l| l.registration) != Some(id) {
                return;
            }
            let protocol = st.links.remove(device).map(|l| l.seen.protocol);
            self.inner.links_epoch.fetch_add(1, Ordering::AcqRel);
            let Some(e) = st.queues.connection_lost(device) else {
                return;
            };
            change.settle(&e);
            let r = CommandResult::new(&e.id, device, Status::Failed, now_ms)
                .with_reason("connection lost after sending");
            st.emit(&mut change, r, protocol);
            metrics::set_queued(st.queues.total());
            self.apply_results(change);
        }
    }

    /// [`Self::mark_sent`] for the session of `registration`: `false` too when `device` has
    /// moved to another connection since the command was handed to this one (it is written
    /// there instead).
    pub async fn mark_sent_by(
        &self,
        registration: u64,
        device: &str,
        seq: u64,
        now_ms: i64,
    ) -> bool {
        self.mark_sent_via(Some(registration), device, seq, now_ms)
            .await
    }

    /// The session is about to write command `seq`: marks it sent, durably. `false`: do
    /// not write it (settled meanwhile, or the store failed).
    pub async fn mark_sent(&self, device: &str, seq: u64, now_ms: i64) -> bool {
        self.mark_sent_via(None, device, seq, now_ms).await
    }

    /// `registration`: only while `device` is linked to that session, checked with the
    /// mark and again after its flush (a device that moved meanwhile had this command
    /// failed as lost, and gets the next one on its new connection).
    async fn mark_sent_via(
        &self,
        registration: Option<u64>,
        device: &str,
        seq: u64,
        now_ms: i64,
    ) -> bool {
        let linked_here = |st: &State| {
            registration.is_none_or(|id| st.links.get(device).is_some_and(|l| l.registration == id))
        };
        {
            let mut st = self.state();
            if !linked_here(&st) {
                return false;
            }
            if let Some(link) = st.links.get_mut(device) {
                if link.handed == Some(seq) {
                    link.handed = None;
                }
            }
            if !st.queues.mark_sent(device, seq, now_ms) {
                drop(st);
                // Settled while it waited in the channel (expired, say): the one behind it
                // may go now, and nothing else would hand it over.
                self.dispatch(device, now_ms);
                return false;
            }
            let Some(entry) = st.queues.head(device).cloned() else {
                return false;
            };
            let mut change = Change::default();
            change.update(&entry);
            let r = CommandResult::new(&entry.id, device, Status::Sent, now_ms);
            let protocol = st.protocol_of(device);
            st.emit(&mut change, r, protocol);
            if let Err(e) = self.inner.store.apply(change) {
                tracing::error!(error = %e, "commands: cannot mark a command sent; not sending it");
                return false;
            }
        }
        if let Err(e) = self.inner.store.flush().await {
            tracing::error!(error = %e, "commands: cannot flush a sent mark; not sending it");
            return false;
        }
        self.inner.results.notify_one();
        // The device moved to another session during the flush: that failed this command
        // (sent, then lost with the link), so it is not written on the connection left.
        linked_here(&self.state())
    }

    /// A device answered: settles the command it answers and sends the next one.
    pub fn answered(&self, device: &str, answer: &CommandAnswer, now_ms: i64) {
        self.answered_on(&[device], answer, now_ms)
    }

    /// An answer came on a connection that carries `devices`: it settles the outstanding
    /// command of the first of them it matches (a JSON-lines answer names its command by
    /// id, so it finds its device among many), and that device's next command is sent.
    pub fn answered_on<D: AsRef<str>>(&self, devices: &[D], answer: &CommandAnswer, now_ms: i64) {
        let key = match &answer.key {
            AnswerKey::Token(t) => AnswerTo::Token(*t),
            AnswerKey::CommandId(id) => AnswerTo::Id(id.clone()),
            AnswerKey::Outstanding => AnswerTo::Outstanding,
        };
        let mut change = Change::default();
        let device;
        {
            let mut st = self.state();
            let found = devices
                .iter()
                .map(AsRef::as_ref)
                .find_map(|d| st.queues.answer(d, &key).map(|e| (d, e)));
            let Some((d, e)) = found else {
                tracing::debug!(devices = devices.len(), answer = %answer.text, "an answer that matches no command outstanding");
                return;
            };
            device = d;
            change.settle(&e);
            let r = if answer.device_error {
                CommandResult::new(&e.id, device, Status::Failed, now_ms)
                    .with_answer(answer.text.clone())
                    .with_reason("the device answered with an error")
            } else {
                CommandResult::new(&e.id, device, Status::Answered, now_ms)
                    .with_answer(answer.text.clone())
            };
            let protocol = st.protocol_of(device);
            st.emit(&mut change, r, protocol);
            metrics::set_queued(st.queues.total());
            self.apply_results(change);
        }
        self.dispatch(device, now_ms);
    }

    /// Expires and times out by the clock; call every second or so.
    pub fn tick(&self, now_ms: i64) {
        let mut change = Change::default();
        let mut again = Vec::new();
        {
            let mut st = self.state();
            let settled = st.queues.tick(now_ms);
            if settled.is_empty() {
                return;
            }
            for s in settled {
                let r = match &s {
                    Settled::Expired(e) => {
                        change.settle(e);
                        if st.links.contains_key(&e.device_id) {
                            // It may wait in its session's channel; the one behind it goes.
                            again.push(e.device_id.clone());
                        }
                        CommandResult::new(&e.id, &e.device_id, Status::Expired, now_ms)
                            .with_reason("ttl_s passed before the device was reachable")
                    }
                    Settled::TimedOut(e) => {
                        change.settle(e);
                        again.push(e.device_id.clone());
                        CommandResult::new(&e.id, &e.device_id, Status::Failed, now_ms)
                            .with_reason("no answer within commands.answer_timeout_s")
                    }
                };
                let protocol = r.device_id.as_deref().and_then(|d| st.protocol_of(d));
                st.emit(&mut change, r, protocol);
            }
            metrics::set_queued(st.queues.total());
            self.apply_results(change);
        }
        for device in again {
            self.dispatch(&device, now_ms);
        }
    }
}
