//! One device connection: read, frame, decode, append, and only then reply.
//!
//! ```text
//!   socket ──read──▶ BytesMut (≤ max_frame_bytes) ──decode──▶ Decoded { records, reply }
//!                                                               │
//!            reply.accepted ◀── buffer.append(records) says durable
//!            reply.refused  ◀── buffer full under `reject`
//! ```
//!
//! The session awaits each append before it reads again, so a full buffer under the `block`
//! policy stops the reads, TCP flow control stops the device, and the device keeps its data.
//! A frame that fails to decode closes the connection: the stream cannot be trusted past it,
//! and the device resends everything it was not told was accepted.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use firmware_protocols::{Decoded, DecoderOptions, StreamDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

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
    /// The first complete frame must arrive this soon after the session starts (TCP);
    /// `None`: no such limit (serial ports).
    pub first_frame_timeout: Option<Duration>,
    /// Empty: every device is allowed.
    pub allowed_devices: super::AllowList,
}

pub struct Session {
    cfg: Arc<SessionConfig>,
    /// `ip:port` of a TCP peer, or the serial port's path.
    peer: String,
    buffer: Buffer,
    decoder: Box<dyn StreamDecoder>,
    /// The protocol's per-protocol counters, found once here so each frame only indexes.
    protocol_id: Option<metrics::ProtocolId>,
}

/// Why a session ended; logged once, at the end.
#[derive(Debug)]
enum End {
    PeerClosed,
    Idle,
    NoFirstFrame,
    Shutdown,
    Refused(String),
    Malformed(String),
    Io(std::io::Error),
    Buffer(String),
}

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
        }
    }

    /// Serves the device until it goes away, an error, the idle timeout or shutdown.
    pub async fn run<S>(mut self, mut stream: S, shutdown: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tracing::debug!(peer = %self.peer, protocol = %self.cfg.protocol, "device connected");
        let end = self.serve(&mut stream, shutdown).await;
        let _ = stream.shutdown().await;
        // Records held back are only stored when the stream ended normally: not for a
        // refused device, and not after the buffer already failed.
        if !matches!(end, End::Refused(_) | End::Buffer(_)) {
            self.store_held_back().await;
        }
        let device = self.decoder.device_id().unwrap_or("-");
        let (peer, protocol) = (&self.peer, &self.cfg.protocol);
        match end {
            End::PeerClosed | End::Shutdown => {
                tracing::debug!(%peer, device, %protocol, "device disconnected")
            }
            End::Idle => tracing::info!(%peer, device, %protocol, "idle timeout, closed"),
            End::NoFirstFrame => tracing::info!(
                %peer,
                %protocol,
                seconds = self.cfg.first_frame_timeout.unwrap_or_default().as_secs(),
                "no complete frame within ingest.first_frame_timeout_s of connecting, closed"
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
            Ok(Appended::Stored { .. }) => metrics::records_received(self.protocol_id, n),
            Ok(Appended::Rejected) => metrics::add(&METRICS.records_refused, n),
            Err(e) => tracing::error!(peer = %self.peer, error = %e, "buffer failed at stream end"),
        }
    }

    async fn serve<S>(&mut self, stream: &mut S, mut shutdown: watch::Receiver<bool>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let max = self.decoder.max_frame_bytes();
        let mut input = BytesMut::with_capacity(max.min(8 * 1024));
        // Until the first frame, the deadline counts from the start, not from the last read.
        let mut first_frame_by = self
            .cfg
            .first_frame_timeout
            .map(|limit| tokio::time::Instant::now() + limit);
        loop {
            // Everything complete in the buffer first: several frames may arrive in one read.
            loop {
                let decoded = match self.decoder.decode(&input, super::now_ms()) {
                    Ok(Some(d)) => d,
                    Ok(None) => break,
                    Err(e) => return End::Malformed(e.to_string()),
                };
                if decoded.consumed == 0 {
                    // A decoder bug; going on would handle the same frame forever.
                    return End::Malformed("decoder consumed no bytes".into());
                }
                input.advance(decoded.consumed.min(input.len()));
                first_frame_by = None;
                if let Err(end) = self.handle(decoded, stream).await {
                    return end;
                }
            }
            if input.len() >= max {
                return End::Malformed(format!("no complete frame in {max} bytes"));
            }
            if *shutdown.borrow() {
                return End::Shutdown;
            }
            input.reserve(max.min(8 * 1024).min(max - input.len()));
            let limit = match first_frame_by {
                Some(by) => Some(by.saturating_duration_since(tokio::time::Instant::now())),
                None => self.cfg.idle_timeout,
            };
            let read = tokio::select! {
                r = read_within(limit, read_some(stream, &mut input, max)) => r,
                _ = shutdown.changed() => return End::Shutdown,
            };
            match read {
                Err(_) if first_frame_by.is_some() => return End::NoFirstFrame,
                Err(_) => return End::Idle,
                Ok(Ok(0)) => return End::PeerClosed,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return End::Io(e),
            }
        }
    }

    async fn handle<S>(&mut self, decoded: Decoded, stream: &mut S) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let Decoded {
            login,
            records,
            reply,
            problem,
            ..
        } = decoded;
        if let Some(problem) = problem {
            // The protocol skips or answers a bad frame and the stream stays in sync.
            metrics::frame_problem(self.protocol_id, &problem);
            crate::warn_bad_input!(self.cfg.protocol, "malformed frame skipped",
                peer = %self.peer,
                device = self.decoder.device_id().unwrap_or("-"),
                protocol = %self.cfg.protocol,
                reason = %problem
            );
            if let Some(no) = reply.refused {
                write(stream, &no).await?;
            }
            return Ok(());
        }
        if let Some(device) = login {
            if !self.cfg.allowed_devices.allows(&device) {
                if let Some(no) = reply.refused {
                    write(stream, &no).await?;
                }
                return Err(End::Refused(format!("{device} is not in allowed_devices")));
            }
            tracing::debug!(peer = %self.peer, device, "device logged in");
            if let Some(yes) = reply.accepted {
                write(stream, &yes).await?;
            }
            return Ok(());
        }
        if records.is_empty() {
            if let Some(yes) = reply.accepted {
                write(stream, &yes).await?;
            }
            return Ok(());
        }
        // Protocols without a login frame (Queclink) name their device in every report.
        if let Some(stranger) = records
            .iter()
            .find(|r| !self.cfg.allowed_devices.allows(&r.device_id))
        {
            let why = format!("{} is not in allowed_devices", stranger.device_id);
            if let Some(no) = reply.refused {
                write(stream, &no).await?;
            }
            return Err(End::Refused(why));
        }
        let n = records.len();
        match self.buffer.append(records).await {
            Ok(Appended::Stored { .. }) => {
                metrics::records_received(self.protocol_id, n as u64);
                if let Some(yes) = reply.accepted {
                    write(stream, &yes).await?;
                }
                Ok(())
            }
            Ok(Appended::Rejected) => {
                metrics::add(&METRICS.records_refused, n as u64);
                tracing::debug!(peer = %self.peer, records = n, "buffer full, records refused");
                match reply.refused {
                    Some(no) => {
                        write(stream, &no).await?;
                        Ok(())
                    }
                    // A protocol without a negative answer (GT06 positions, NMEA): only a
                    // closed connection tells the device its data was not taken.
                    None => Err(End::Buffer("buffer full and the protocol cannot refuse; closed so the device keeps its data".into())),
                }
            }
            Err(e) => Err(End::Buffer(e.to_string())),
        }
    }
}

/// `read` within `limit`, or without a limit; `Err(())` when the time ran out.
async fn read_within<F>(limit: Option<Duration>, read: F) -> Result<std::io::Result<usize>, ()>
where
    F: std::future::Future<Output = std::io::Result<usize>>,
{
    match limit {
        Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| ()),
        None => Ok(read.await),
    }
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
