//! UDP listeners: each datagram is one frame. Its records are appended and the answer is
//! sent to the datagram's sender only once they are durable.
//!
//! Datagrams are handled concurrently (bounded by `ingest.max_datagrams_in_flight`), so that many
//! devices' records share one group commit instead of waiting for one fsync each. A bad
//! datagram is logged with its peer and dropped; the device resends what was not answered.
//! Answers follow the same rule as TCP frames ([`super::answer`]): a datagram from a device
//! outside `allowed_devices` gets the protocol's "not accepted" answer (Teltonika: an ack
//! with a count of 0), as a TCP login would get `00`.

use std::net::SocketAddr;
use std::sync::Arc;

use firmware_protocols::{DatagramDecoder, DecoderOptions};
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

use tokio_util::task::TaskTracker;

use super::answer::{self, Outcome, Verdict};
use crate::buffer::{Appended, Buffer};
use crate::config::{ListenerSettings, Settings};
use crate::metrics::{self, METRICS};

/// The largest UDP payload; datagrams are read whole into a buffer this size.
const MAX_DATAGRAM: usize = 65_535;

pub struct BoundUdp {
    pub index: usize,
    pub local_addr: SocketAddr,
    protocol: String,
    /// The protocol's slot in the per-protocol counters, found once at bind.
    protocol_id: Option<metrics::ProtocolId>,
    socket: Arc<UdpSocket>,
    decoder: Arc<dyn DatagramDecoder>,
    allowed_devices: super::AllowList,
}

impl BoundUdp {
    pub async fn bind(
        index: usize,
        l: &ListenerSettings,
        make_decoder: fn(&DecoderOptions) -> Box<dyn DatagramDecoder>,
        settings: &Settings,
    ) -> anyhow::Result<BoundUdp> {
        let socket = UdpSocket::bind(&l.bind).await.map_err(|e| {
            anyhow::anyhow!(
                "listeners[{index}].bind: cannot listen on UDP {}: {e}",
                l.bind
            )
        })?;
        let local_addr = socket.local_addr()?;
        let options = DecoderOptions {
            ack_reports: l.ack_reports,
            ..super::decoder_options(settings)
        };
        Ok(BoundUdp {
            index,
            local_addr,
            protocol: l.protocol.clone(),
            protocol_id: metrics::ProtocolId::of(&l.protocol),
            socket: Arc::new(socket),
            decoder: Arc::from(make_decoder(&options)),
            allowed_devices: super::AllowList::new(&l.allowed_devices),
        })
    }

    pub async fn serve(
        self,
        limit: Arc<Semaphore>,
        buffer: Buffer,
        tasks: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (index, protocol) = (self.index, self.protocol.as_str());
        tracing::info!(listener = index, %protocol, addr = %self.local_addr, "listening on UDP");
        let mut datagram = vec![0u8; MAX_DATAGRAM];
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = shutdown.changed() => return,
            };
            let received = tokio::select! {
                r = self.socket.recv_from(&mut datagram) => r,
                _ = shutdown.changed() => return,
            };
            let (len, peer) = match received {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(listener = index, error = %e, "UDP receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let decoded = match self.decoder.decode(&datagram[..len], super::now_ms()) {
                Ok(d) => d,
                Err(e) => {
                    metrics::frame_malformed(self.protocol_id);
                    crate::warn_bad_input!(protocol, "malformed datagram dropped", %peer, %protocol, reason = %e);
                    continue;
                }
            };
            let verdict = answer::admit(&decoded, None, &self.allowed_devices);
            match &verdict {
                Verdict::Problem => {
                    if let Some(problem) = &decoded.problem {
                        metrics::frame_problem(self.protocol_id, problem);
                        crate::warn_bad_input!(protocol, "malformed datagram answered as refused", %peer, %protocol, reason = %problem);
                    }
                }
                Verdict::Stranger(device) => {
                    metrics::add(&METRICS.devices_refused, 1);
                    crate::warn_bad_input!(protocol, "device refused: not in allowed_devices", %peer, device, %protocol);
                }
                Verdict::Control(_) | Verdict::Store => {}
            }
            if verdict != Verdict::Store {
                // Nothing to store: answered at once, by the same rule as a TCP frame.
                let action = answer::answer(&verdict, decoded.reply, Outcome::Stored);
                if let Some(bytes) = action.send {
                    send(&self.socket, &bytes, peer, protocol).await;
                }
                continue;
            }
            let (socket, buffer) = (self.socket.clone(), buffer.clone());
            let (protocol, protocol_id) = (self.protocol.clone(), self.protocol_id);
            tasks.spawn(async move {
                store_and_answer(decoded, peer, &socket, &buffer, &protocol, protocol_id).await;
                drop(permit);
            });
        }
    }
}

/// Stores a datagram's records and answers it once they are durable.
async fn store_and_answer(
    decoded: firmware_protocols::Decoded,
    peer: SocketAddr,
    socket: &UdpSocket,
    buffer: &Buffer,
    protocol: &str,
    protocol_id: Option<metrics::ProtocolId>,
) {
    let n = decoded.records.len() as u64;
    let outcome = match buffer.append(decoded.records).await {
        Ok(Appended::Stored { .. }) => {
            metrics::records_received(protocol_id, n);
            Outcome::Stored
        }
        Ok(Appended::Rejected) => {
            metrics::add(&METRICS.records_refused, n);
            Outcome::Rejected
        }
        Err(e) => {
            tracing::error!(%peer, %protocol, error = %e, "buffer failed, datagram not acknowledged");
            Outcome::Failed
        }
    };
    // A datagram has no connection to close: `close` only means "no more for this one".
    if let Some(bytes) = answer::answer(&Verdict::Store, decoded.reply, outcome).send {
        send(socket, &bytes, peer, protocol).await;
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr, protocol: &str) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        tracing::info!(%peer, %protocol, error = %e, "UDP answer not sent");
    }
}
