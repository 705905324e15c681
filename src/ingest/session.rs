//! One device connection: read, frame, decode, append, and only then reply.
//!
//! ```text
//!   socket ──read──▶ BytesMut (≤ max_frame_bytes, freed when idle)
//!            │
//!            └─decode every complete frame─▶ [frame 1, frame 2, … frame n]
//!                                               │ records of all of them
//!                                               ▼
//!                                 ONE buffer.append ── durable / refused / failed
//!                                               │
//!            answers of frames 1 … n, in order ◀┘  (answer::answer, one write)
//! ```
//!
//! One durable point per read, not per frame: many frames in one read (a device's backlog,
//! JSON lines from a local application), and what has already arrived behind them up to
//! [`READ_BATCH_BYTES`], cost one append and one write, and still no frame is
//! answered before its records, and those of every frame before it, are durable. The rule for
//! each frame's answer is [`super::answer`], shared with UDP.
//!
//! The session awaits the append before it reads again, so a full buffer under the `block`
//! policy stops the reads, TCP flow control stops the device, and the device keeps its data.
//! A frame that fails to decode closes the connection after the frames decoded before it are
//! stored and answered: the stream cannot be trusted past it, and the device resends
//! everything it was not told was accepted.
//!
//! Downlink commands (`[commands]`): once its device has identified itself and the read
//! that did it is stored and answered, the session joins the command directory
//! ([`crate::commands::Commands::register`]) and waits for the device's bytes and its next
//! command at once. Every further device id the stream carries (a JSON-lines application
//! serving several devices) joins the same way, up to
//! [`crate::commands::MAX_DEVICES_PER_SESSION`], and its commands come on the same channel. A command is written only when the connection is idle — no partial
//! frame buffered and every reply of the last read written — so never between a data
//! packet and its answer; it is marked `sent` durably first. Answers found by the decoder
//! (`Decoded::command_answer`) are handed over after their read is settled, and a session
//! that ends fails the command it sent and was not answered.
//!
//! Memory: an idle connection holds no read buffer. The session waits until the stream is
//! readable ([`DeviceStream::wait_readable`]) before it allocates one, and frees it as soon as
//! every byte in it has been decoded; only a partial frame keeps it between reads. A task is
//! as large as its largest state, so the rare states (storing and answering a read, writing
//! a command, storing what a closed stream held back) are boxed while they last, and the
//! connection's slots ride in [`Session::run`] rather than in a task wrapped around it: what
//! an idle connection keeps is the wait (readiness, its timer, the shutdown signal).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use firmware_protocols::command::CommandAnswer;
use firmware_protocols::{DecoderOptions, Record, Reply, StreamDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::answer::{self, Close, Outcome, Verdict};
use crate::buffer::{Appended, Buffer};
use crate::metrics::{self, METRICS};

pub struct SessionConfig {
    pub protocol: String,
    /// Builds one connection's decoder (from the protocol registry).
    pub make_decoder: fn(&DecoderOptions) -> Box<dyn StreamDecoder>,
    pub decoder: DecoderOptions,
    /// Close a stream silent this long; `None` keeps it open (serial ports: a sensor may
    /// report rarely, and reopening a port resets many USB devices).
    pub idle_timeout: Option<Duration>,
    /// The device must identify itself (a login, or a frame carrying its id) this soon after
    /// the session starts (TCP); keep-alives and bad frames do not count. `None`: no such
    /// limit (serial ports).
    pub first_frame_timeout: Option<Duration>,
    /// Empty: every device is allowed.
    pub allowed_devices: super::AllowList,
    /// Close the stream after more than [`MAX_JUNK_FRAMES`] junk frames in a row (TCP).
    /// Not for serial ports: the sender is the one device wired there, and a noisy line
    /// is no reason to reopen the port.
    pub close_on_junk: bool,
    /// Downlink commands (`[commands] enabled`): the logged-in device is reachable through
    /// the command directory. `None`: no commands.
    pub commands: Option<crate::commands::Port>,
    /// The listener's (or port's) filter: which decoded records are stored
    /// (`crate::clean::filter`); shared by its sessions, so a device's state outlives one
    /// connection.
    pub filter: crate::clean::Filter,
}

/// A device's byte stream: a TCP connection, a serial port, a test pipe.
pub trait DeviceStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Resolves once a read would find bytes (or the end), without a buffer to read into, so
    /// an idle connection holds none. A stream that cannot tell resolves at once (its read
    /// then waits with a buffer: serial ports, of which there are few).
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Whether [`DeviceStream::try_read_buf`] takes what has already arrived. Then a read
    /// may start small ([`FIRST_READ_BYTES`]) and the rest is drained after it; a stream
    /// that cannot tell gets room for a whole `max_frame_bytes` in its one read.
    const DRAINS: bool = false;

    /// Reads what has already arrived, without waiting: `WouldBlock` when nothing has. A
    /// stream that cannot tell always says `WouldBlock`.
    fn try_read_buf(&self, _buf: &mut impl BufMut) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl DeviceStream for tokio::net::TcpStream {
    const DRAINS: bool = true;

    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }

    fn try_read_buf(&self, buf: &mut impl BufMut) -> std::io::Result<usize> {
        tokio::net::TcpStream::try_read_buf(self, buf)
    }
}

impl DeviceStream for tokio_serial::SerialStream {
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

impl DeviceStream for tokio::io::DuplexStream {
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

pub struct Session {
    cfg: Arc<SessionConfig>,
    /// `ip:port` of a TCP peer, or the serial port's path.
    peer: String,
    buffer: Buffer,
    decoder: Box<dyn StreamDecoder>,
    /// The protocol's per-protocol counters, found once here so each frame only indexes.
    protocol_id: Option<metrics::ProtocolId>,
    /// The device said who it is (a login, or a frame carrying its id): from then on
    /// `first_frame_timeout` is over and its keep-alives are not junk.
    identified: bool,
    /// Frames in a row that were bad, or keep-alives before the device identified itself.
    junk: u32,
    /// The place in the command directory, once a device logged in (with commands on).
    /// Boxed: one pointer in every connection's task, commands or not.
    commands: Option<Box<Linked>>,
}

/// A session's place in the command directory and the devices reachable through it.
struct Linked {
    registration: crate::commands::Registration,
    /// In the order they appeared; at most [`crate::commands::MAX_DEVICES_PER_SESSION`].
    devices: Vec<String>,
    /// Said once per connection that more devices came than can be reached.
    warned_full: bool,
    /// [`crate::commands::Commands::links_epoch`] when this session last took back the
    /// vacant links of its devices.
    epoch: u64,
}

/// What woke an idle session.
enum Woke {
    Read(Result<std::io::Result<usize>, ()>),
    Command(crate::commands::Delivery),
    Shutdown,
}

/// Why a session ended; logged once, at the end.
#[derive(Debug)]
enum End {
    PeerClosed,
    Idle,
    NoFirstFrame,
    Shutdown,
    /// Shutdown came while an append waited (a full buffer under `block`) for longer than
    /// [`SHUTDOWN_GRACE`]: the device was not answered and resends.
    ShutdownWhileStoring,
    Refused(String),
    Malformed(String),
    /// More than [`MAX_JUNK_FRAMES`] frames in a row were junk.
    Junk,
    Io(std::io::Error),
    Buffer(String),
}

/// The frames of one read, decoded, waiting for their one durable point.
#[derive(Default)]
struct ReadFrames {
    /// Each frame's verdict and answers, in frame order.
    frames: Vec<(Verdict, Reply)>,
    /// The records of every `Store` frame, in frame order: one append.
    records: Vec<Record>,
    /// Why the stream cannot go on after these frames (a frame that broke it).
    broken: Option<End>,
    /// Answers to downlink commands found in these frames, in frame order.
    answers: Vec<CommandAnswer>,
    /// Device ids these frames identified that are not yet reachable for commands (only
    /// with commands on).
    new_devices: Vec<String>,
}

impl ReadFrames {
    /// Whether a frame ended the stream: nothing after it is decoded.
    fn ends_stream(&self) -> bool {
        self.broken.is_some() || matches!(self.frames.last(), Some((Verdict::Stranger(_), _)))
    }
}

/// Input bytes whose frames share one append at most: what a fast sender (a local
/// application streaming JSON lines, a device emptying its backlog) has queued beyond one
/// read is taken without waiting, up to this, so one fsync covers it. Bounds the decoded
/// records a session holds while they are stored. A single streaming connection waits for
/// each append's fsync before it reads on, so this sets how many lines one fsync covers:
/// 64 KiB gave 213k JSON lines/s on one connection, 256 KiB 294k at a quarter less CPU per
/// record, with the same peak RSS on 50 connections (README, Benchmarks).
const READ_BATCH_BYTES: usize = 256 * 1024;

/// Frames in a row that may be bad, or keep-alives before a login, before the connection
/// is closed: a real device sends a few, a flood of ping bytes sends thousands a second and
/// would otherwise cost a core until `first_frame_timeout_s` (or, for bad frames after a
/// login, forever).
const MAX_JUNK_FRAMES: u32 = 64;

/// How long an append may still wait once shutdown began (a full buffer under `block`
/// never frees up while the uplink is draining for shutdown).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
impl Session {
    pub fn new(cfg: Arc<SessionConfig>, peer: String, buffer: Buffer) -> Session {
        let decoder = (cfg.make_decoder)(&cfg.decoder);
        let protocol_id = metrics::ProtocolId::of(&cfg.protocol);
        Session {
            cfg,
            peer,
            buffer,
            decoder,
            protocol_id,
            identified: false,
            junk: 0,
            commands: None,
        }
    }

    /// Serves the device until it goes away, an error, the idle timeout or shutdown; then
    /// drops `held` (what the connection holds: its slot under the connection limits, its
    /// gauge). Taking it here rather than in a wrapping task keeps one copy of the session
    /// in the task: a future that awaits another holds both its captures and the other.
    pub async fn run<S: DeviceStream, H: Send>(
        mut self,
        mut stream: S,
        shutdown: watch::Receiver<bool>,
        held: H,
    ) {
        tracing::debug!(peer = %self.peer, protocol = %self.cfg.protocol, "device connected");
        let end = self.serve(&mut stream, shutdown).await;
        let _ = stream.shutdown().await;
        // A command written and not answered on this connection has failed.
        if let (Some(port), Some(linked)) = (&self.cfg.commands, self.commands.take()) {
            let now = super::now_ms();
            for device in &linked.devices {
                port.commands
                    .unregister(device, linked.registration.id, now);
            }
        }
        // Records held back are only stored when the stream ended normally: not for a
        // refused device, and not after the buffer already failed or was given up on.
        if !matches!(
            end,
            End::Refused(_) | End::Buffer(_) | End::ShutdownWhileStoring
        ) {
            Box::pin(self.store_held_back()).await;
        }
        let device = self.decoder.device_id().unwrap_or("-");
        let (peer, protocol) = (&self.peer, &self.cfg.protocol);
        match end {
            End::PeerClosed | End::Shutdown => {
                tracing::debug!(%peer, device, %protocol, "device disconnected")
            }
            End::ShutdownWhileStoring => tracing::info!(
                %peer,
                device,
                %protocol,
                "shutdown while the buffer was full; the device was not answered and will resend"
            ),
            End::Idle => tracing::info!(%peer, device, %protocol, "idle timeout, closed"),
            End::NoFirstFrame => tracing::info!(
                %peer,
                %protocol,
                seconds = self.cfg.first_frame_timeout.unwrap_or_default().as_secs(),
                "no device identified itself within ingest.first_frame_timeout_s of connecting, closed"
            ),
            End::Junk => crate::warn_bad_input!(
                protocol,
                "closed: only bad frames, or keep-alives before a login, in a row",
                %peer,
                device,
                %protocol,
                frames = MAX_JUNK_FRAMES + 1
            ),
            End::Refused(why) => {
                metrics::add(&METRICS.devices_refused, 1);
                crate::warn_bad_input!(protocol, "device refused", %peer, device, %protocol, %why)
            }
            End::Malformed(why) => {
                metrics::frame_malformed(self.protocol_id);
                crate::warn_bad_input!(protocol, "malformed frame, connection closed", %peer, device, %protocol, reason = %why)
            }
            End::Io(e) => tracing::info!(%peer, device, %protocol, error = %e, "connection error"),
            End::Buffer(e) => {
                tracing::error!(%peer, device, %protocol, error = %e, "buffer failed, nothing acknowledged")
            }
        }
        drop(held);
    }

    /// Stores what the decoder held back when the stream ended. Nobody is answered (the
    /// stream is gone), so this is only for protocols without acknowledgements.
    async fn store_held_back(&mut self) {
        let records = self.decoder.finish(super::now_ms());
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        match self.buffer.append(records).await {
            Ok(stored @ Appended::Stored { .. }) => {
                metrics::records_received(self.protocol_id, stored_count(stored))
            }
            Ok(Appended::Duplicate) => {}
            Ok(Appended::Rejected) => metrics::add(&METRICS.records_refused, n),
            Err(e) => tracing::error!(peer = %self.peer, error = %e, "buffer failed at stream end"),
        }
    }

    async fn serve<S: DeviceStream>(
        &mut self,
        stream: &mut S,
        mut shutdown: watch::Receiver<bool>,
    ) -> End {
        let max = self.decoder.max_frame_bytes();
        // Empty until the stream is readable; see the module doc.
        let mut input = BytesMut::new();
        // Close if nothing is read by then: the first frame's deadline until the device
        // identifies itself, then the idle timeout from the last read. Only reads move it;
        // writing a command does not, so a dead connection still ends.
        let mut silent_by = self
            .cfg
            .first_frame_timeout
            .and_then(|limit| tokio::time::Instant::now().checked_add(limit));
        loop {
            // Every complete frame in the buffer (several may arrive in one read), and what
            // the device has queued beyond it, up to READ_BATCH_BYTES: one append for all.
            let mut read = ReadFrames::default();
            let mut taken = 0;
            let mut ended = None;
            loop {
                taken += self.decode_all(&mut input, &mut read);
                if read.ends_stream() || taken >= READ_BATCH_BYTES || input.len() >= max {
                    break;
                }
                make_room::<S>(&mut input, max);
                let room = max - input.len();
                match stream.try_read_buf(&mut (&mut input).limit(room)) {
                    Ok(0) => ended = Some(End::PeerClosed),
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => ended = Some(End::Io(e)),
                }
                break;
            }
            // Frames were decoded: silence counts from their answer (below), as storing them
            // may have waited (a full buffer under `block`) longer than the idle timeout.
            let heard = taken > 0;
            if input.is_empty() {
                // Nothing partial to keep: an idle connection holds no buffer.
                input = BytesMut::new();
            }
            let answers = std::mem::take(&mut read.answers);
            let new_devices = std::mem::take(&mut read.new_devices);
            // Boxed, like the other rare states below: a task is as large as its largest
            // state, and an idle connection should pay only for waiting (see the module doc).
            let broken = match Box::pin(self.settle(read, stream, &mut shutdown)).await {
                Ok(broken) => broken,
                Err(end) => return end,
            };
            self.commands_after_settle(answers, new_devices);
            if heard && self.identified {
                silent_by = self.idle_deadline();
            }
            if let Some(end) = broken.or(ended) {
                return end;
            }
            if input.len() >= max {
                return End::Malformed(format!("no complete frame in {max} bytes"));
            }
            if *shutdown.borrow() {
                return End::Shutdown;
            }
            let limit =
                silent_by.map(|by| by.saturating_duration_since(tokio::time::Instant::now()));
            // A command is written only on an idle connection: no partial frame buffered and
            // every reply written (settle above), so never between a data packet and its
            // answer.
            let idle = input.is_empty();
            let read = async {
                stream.wait_readable().await?;
                make_room::<S>(&mut input, max);
                read_some(stream, &mut input, max).await
            };
            let deliveries = self.commands.as_mut().map(|l| &mut l.registration.rx);
            let woke = tokio::select! {
                r = read_within(limit, read) => Woke::Read(r.map_err(|_| ())),
                d = next_delivery(deliveries), if idle => Woke::Command(d),
                _ = shutdown.changed() => Woke::Shutdown,
            };
            let read = match woke {
                Woke::Read(read) => read,
                Woke::Shutdown => return End::Shutdown,
                Woke::Command(delivery) => {
                    if let Err(end) = Box::pin(self.write_command(stream, delivery)).await {
                        return end;
                    }
                    continue;
                }
            };
            match read {
                Err(_) if !self.identified && self.cfg.first_frame_timeout.is_some() => {
                    return End::NoFirstFrame
                }
                Err(_) => return End::Idle,
                Ok(Ok(0)) => return End::PeerClosed,
                Ok(Ok(_)) if self.identified => silent_by = self.idle_deadline(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return End::Io(e),
            }
        }
    }

    /// When a connection silent from now on is closed (`None`: never, serial ports, or a
    /// timeout too far away to be a time).
    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        self.cfg
            .idle_timeout
            .and_then(|limit| tokio::time::Instant::now().checked_add(limit))
    }

    /// Whether this connection can carry several devices for commands: JSON lines, whose
    /// command lines name their device. The other protocols' frames do not.
    fn carries_many(&self) -> bool {
        self.cfg.protocol == firmware_protocols::Protocol::Jsonl.as_str()
    }

    /// Whether `device`, identified by a frame of this read, is to be linked for commands
    /// once the read is settled (`pending`: those found so far in it). On JSON lines every
    /// device up to the limit, and one past it, to be warned about; on the others the
    /// device the connection speaks for.
    fn links_for_commands(&self, device: &str, pending: &[String]) -> bool {
        let linked = self.commands.as_deref();
        if !self.carries_many() {
            // One device: the one it identified last (a Wialon `#L#` as another id moves it).
            return pending.is_empty()
                && linked.is_none_or(|l| l.devices.first().is_none_or(|d| d != device));
        }
        let count = linked.map_or(0, |l| l.devices.len()) + pending.len();
        let warned = linked.is_some_and(|l| l.warned_full);
        if count > crate::commands::MAX_DEVICES_PER_SESSION
            || (warned && count >= crate::commands::MAX_DEVICES_PER_SESSION)
        {
            return false;
        }
        !linked.is_some_and(|l| l.devices.iter().any(|d| d == device))
            && !pending.iter().any(|d| d == device)
    }

    /// After a read's frames are stored and answered: the devices they identified join the
    /// command directory, the links of this session's devices that another session took
    /// over and has let go are taken back, and the answers to commands are handed over.
    fn commands_after_settle(&mut self, answers: Vec<CommandAnswer>, new_devices: Vec<String>) {
        let Some(port) = &self.cfg.commands else {
            return;
        };
        let now = super::now_ms();
        let epoch = port.commands.links_epoch();
        let many = self.carries_many();
        // Hubs only: a single-device connection whose device connected again elsewhere is
        // usually dead, and checking on every change anywhere would cost every read a lock.
        let relink = many && self.commands.as_deref().is_some_and(|l| l.epoch != epoch);
        let protocol = match new_devices.is_empty() && !relink {
            true => None,
            false => firmware_protocols::registry::lookup(&self.cfg.protocol).map(|s| s.protocol),
        };
        if let Some(protocol) = protocol {
            let seen = crate::commands::Seen {
                protocol,
                source: port.source,
            };
            if let (true, Some(linked)) = (relink, self.commands.as_deref_mut()) {
                linked.epoch = epoch;
                port.commands
                    .relink_vacant(&linked.registration, &linked.devices, seen, now);
            }
            for device in new_devices {
                match &mut self.commands {
                    None => {
                        let registration = port.commands.register(&device, seen, now);
                        self.commands = Some(Box::new(Linked {
                            registration,
                            devices: vec![device],
                            warned_full: false,
                            epoch,
                        }));
                    }
                    Some(linked) if !many => {
                        // Logged in as another device: the connection speaks for that one
                        // now, and what was outstanding for the old one has failed.
                        let id = linked.registration.id;
                        for old in std::mem::take(&mut linked.devices) {
                            port.commands.unregister(&old, id, now);
                        }
                        port.commands.link(&linked.registration, &device, seen, now);
                        linked.devices.push(device);
                    }
                    Some(linked)
                        if linked.devices.len() < crate::commands::MAX_DEVICES_PER_SESSION =>
                    {
                        // Kept even when refused (a tracker's IMEI), so it is not tried
                        // again on every line.
                        port.commands.link(&linked.registration, &device, seen, now);
                        linked.devices.push(device);
                    }
                    Some(linked) => {
                        if !linked.warned_full {
                            linked.warned_full = true;
                            tracing::warn!(
                                peer = %self.peer,
                                protocol = %self.cfg.protocol,
                                device = %device,
                                limit = crate::commands::MAX_DEVICES_PER_SESSION,
                                "a connection carries more device ids than can take commands through \
                                 it; commands for the rest wait, queued, until they come on another \
                                 connection"
                            );
                        }
                    }
                }
            }
        }
        for answer in answers {
            match &self.commands {
                Some(linked) => port.commands.answered_on(&linked.devices, &answer, now),
                None => {
                    tracing::debug!(peer = %self.peer, "a command answer before the device logged in; ignored")
                }
            }
        }
    }

    /// Writes one command: marked sent (durably) first, so a crash after the write never
    /// sends it twice.
    async fn write_command<S: DeviceStream>(
        &mut self,
        stream: &mut S,
        delivery: crate::commands::Delivery,
    ) -> Result<(), End> {
        let (Some(port), Some(linked)) = (&self.cfg.commands, &self.commands) else {
            return Ok(());
        };
        let device = delivery.device.as_str();
        if !port
            .commands
            .mark_sent_by(
                linked.registration.id,
                device,
                delivery.seq,
                super::now_ms(),
            )
            .await
        {
            return Ok(());
        }
        tracing::debug!(peer = %self.peer, %device, id = %delivery.id, "command sent");
        write(stream, &delivery.bytes).await
    }

    /// Takes every complete frame off the front of `input` into `read`, judging each by the
    /// allow-list; stops after a frame that ends the stream (a stranger, a broken frame).
    /// Returns the bytes taken.
    fn decode_all(&mut self, input: &mut BytesMut, read: &mut ReadFrames) -> usize {
        if read.ends_stream() {
            return 0;
        }
        let now = super::now_ms();
        let mut used = 0;
        while used < input.len() {
            let rest = input.get(used..).unwrap_or_default();
            let mut decoded = match self.decoder.decode(rest, now) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    read.broken = Some(End::Malformed(e.to_string()));
                    break;
                }
            };
            if decoded.consumed == 0 {
                // A decoder bug; going on would handle the same frame forever.
                read.broken = Some(End::Malformed("decoder consumed no bytes".into()));
                break;
            }
            used += decoded.consumed.min(rest.len());
            read.answers.extend(decoded.command_answer.take());
            let device = self.decoder.device_id();
            let verdict = answer::admit(&decoded, device, &self.cfg.allowed_devices);
            // Junk: bad frames, and keep-alives from a device that has not said who it is.
            let identifies = match &verdict {
                Verdict::Store | Verdict::Control(Some(_)) => true,
                Verdict::Control(None) => device.is_some(),
                Verdict::Problem | Verdict::Stranger(_) => false,
            };
            if identifies {
                self.identified = true;
                self.junk = 0;
                if let (Some(_), Some(device)) = (&self.cfg.commands, device) {
                    if self.links_for_commands(device, &read.new_devices) {
                        read.new_devices.push(device.to_string());
                    }
                }
            } else if matches!(verdict, Verdict::Problem) || !self.identified {
                self.junk = self.junk.saturating_add(1);
            }
            match &verdict {
                // The first frame's records are moved, not copied: one-frame reads (the
                // common case for one-record devices) allocate no second vector.
                Verdict::Store if read.records.is_empty() => {
                    read.records = std::mem::take(&mut decoded.records)
                }
                Verdict::Store => read.records.append(&mut decoded.records),
                Verdict::Problem => {
                    // The protocol skips or answers a bad frame and the stream stays in sync.
                    if let Some(problem) = &decoded.problem {
                        metrics::frame_problem(self.protocol_id, problem);
                        crate::warn_bad_input!(self.cfg.protocol, "malformed frame skipped",
                            peer = %self.peer,
                            device = self.decoder.device_id().unwrap_or("-"),
                            protocol = %self.cfg.protocol,
                            reason = %problem
                        );
                    }
                }
                Verdict::Control(Some(device)) => {
                    tracing::debug!(peer = %self.peer, device, "device logged in")
                }
                Verdict::Control(None) | Verdict::Stranger(_) => {}
            }
            let stranger = matches!(verdict, Verdict::Stranger(_));
            read.frames.push((verdict, decoded.reply));
            if stranger {
                break;
            }
            if self.cfg.close_on_junk && self.junk > MAX_JUNK_FRAMES {
                read.broken = Some(End::Junk);
                break;
            }
        }
        input.advance(used);
        used
    }

    /// The read's one durable point: appends its records at once, then writes every frame's
    /// answer in frame order in one write. `Ok(Some(end))`: the stream ends after these
    /// answers (a frame broke it); `Err`: it ends now (a stranger, the buffer, the socket).
    async fn settle<S: DeviceStream>(
        &mut self,
        read: ReadFrames,
        stream: &mut S,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<End>, End> {
        let ReadFrames {
            frames,
            records,
            broken,
            answers: _,
            new_devices: _,
        } = read;
        // Filtered records are answered as stored; the filter's state moves on once the
        // kept ones are durable.
        let (records, pending) = self.cfg.filter.apply_counted(records);
        let n = records.len() as u64;
        let mut failure = None;
        let outcome = if records.is_empty() {
            self.cfg.filter.commit(pending);
            Outcome::Stored
        } else {
            let appended = tokio::select! {
                a = self.buffer.append(records) => a,
                _ = shutdown_then(SHUTDOWN_GRACE, shutdown) => return Err(End::ShutdownWhileStoring),
            };
            match appended {
                Ok(stored @ Appended::Stored { .. }) => {
                    metrics::records_received(self.protocol_id, stored_count(stored));
                    self.cfg.filter.commit(pending);
                    Outcome::Stored
                }
                Ok(Appended::Duplicate) => {
                    self.cfg.filter.commit(pending);
                    Outcome::Stored
                }
                Ok(Appended::Rejected) => {
                    metrics::add(&METRICS.records_refused, n);
                    tracing::debug!(peer = %self.peer, records = n, "buffer full, records refused");
                    Outcome::Rejected
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    Outcome::Failed
                }
            }
        };
        let mut answers = Vec::new();
        let mut close = None;
        for (verdict, reply) in frames {
            let action = answer::answer(&verdict, reply, outcome);
            answers.extend(action.send.unwrap_or_default());
            if action.close.is_some() {
                close = action.close;
                break;
            }
        }
        if !answers.is_empty() {
            write(stream, &answers).await?;
        }
        match close {
            None => Ok(broken),
            Some(Close::Stranger(device)) => {
                Err(End::Refused(format!("{device} is not in allowed_devices")))
            }
            // Only a closed connection tells the device its data was not taken.
            Some(Close::CannotRefuse) => Err(End::Buffer(
                "buffer full and the protocol cannot refuse; closed so the device keeps its data"
                    .into(),
            )),
            Some(Close::BufferFailed) => Err(End::Buffer(failure.unwrap_or_default())),
        }
    }
}

/// The next command for one of this session's devices; never, without commands.
async fn next_delivery(
    rx: Option<&mut tokio::sync::mpsc::Receiver<crate::commands::Delivery>>,
) -> crate::commands::Delivery {
    match rx {
        // Never closed while the session lives (its registration holds a sender); were it,
        // waking for it again and again would spin and keep renewing the idle timer.
        Some(rx) => match rx.recv().await {
            Some(delivery) => delivery,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Records an append stored (fewer than given when some were duplicates).
pub(super) fn stored_count(appended: Appended) -> u64 {
    match appended {
        Appended::Stored {
            first_seq,
            last_seq,
        } => last_seq - first_seq + 1,
        Appended::Rejected | Appended::Duplicate => 0,
    }
}

/// Resolves [`SHUTDOWN_GRACE`] after shutdown began; never, while it has not.
async fn shutdown_then(grace: Duration, shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
    tokio::time::sleep(grace).await;
}

/// `read` within `limit`, or without a limit; `Err(_)` when the time ran out. Not an async fn
/// around `timeout`: that would hold `read` twice in every idle connection's task (its
/// argument, and inside the timeout it awaits). A duration too long for the clock never
/// ends (tokio's far future), as no limit should.
fn read_within<F>(limit: Option<Duration>, read: F) -> tokio::time::Timeout<F>
where
    F: std::future::Future<Output = std::io::Result<usize>>,
{
    tokio::time::timeout(limit.unwrap_or(Duration::MAX), read)
}

/// A device that stops reading must not hold its connection slot forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), End> {
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await;
    match written {
        Ok(result) => result.map_err(End::Io),
        Err(_) => Err(End::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the device did not read its reply within 30 s",
        ))),
    }
}

/// A fresh read buffer's size: most reads are one small frame, and an allocation this small
/// comes from the allocator's per-thread cache (glibc's ends just above 1,000 bytes), where a
/// `max_frame_bytes` one per read cost a search of the free lists and a merge of freed
/// chunks each time (`malloc_consolidate`, in the one-record shapes' profiles).
const FIRST_READ_BYTES: usize = 1000;

/// Makes room for the next read: [`FIRST_READ_BYTES`] in a fresh buffer of a stream that
/// drains (`max` for one that cannot), and as much again as the buffer holds once that is
/// used up (a large frame, a fast sender), never past `max` bytes buffered.
fn make_room<S: DeviceStream>(input: &mut BytesMut, max: usize) {
    let first = if S::DRAINS { FIRST_READ_BYTES } else { max };
    let want = input
        .capacity()
        .max(first)
        .min(max.saturating_sub(input.len()));
    // A no-op while the spare capacity already holds `want`.
    input.reserve(want);
}

/// Reads once, never past `max` bytes buffered.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut BytesMut,
    max: usize,
) -> std::io::Result<usize> {
    let room = max.saturating_sub(input.len());
    let mut limited = (&mut *stream).take(room as u64);
    limited.read_buf(input).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_room_starts_small_on_a_draining_stream_and_grows_to_max_frame_bytes() {
        let max = 16 * 1024;
        let mut input = BytesMut::new();
        make_room::<tokio::net::TcpStream>(&mut input, max);
        let first = input.capacity();
        assert!(
            (FIRST_READ_BYTES..2 * FIRST_READ_BYTES).contains(&first),
            "{first}"
        );
        // A read that filled it: the next one gets at least as much again.
        input.resize(first, b'x');
        make_room::<tokio::net::TcpStream>(&mut input, max);
        assert!(
            input.capacity() - input.len() >= first,
            "{}",
            input.capacity()
        );
        // Near max_frame_bytes: room for the rest of a frame still (reads stop at max).
        input.resize(max - 10, b'x');
        make_room::<tokio::net::TcpStream>(&mut input, max);
        let room = input.capacity() - input.len();
        assert!(room >= 10, "{room}");
        // A stream that cannot drain gets room for a whole frame in its one read.
        let mut input = BytesMut::new();
        make_room::<tokio::io::DuplexStream>(&mut input, max);
        assert!(input.capacity() >= max);
    }
}
