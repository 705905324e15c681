//! UDP listeners: each datagram is one frame. Its records are appended and the answer is
//! sent to the datagram's sender only once they are durable.
//!
//! Datagrams are handled concurrently (bounded by `ingest.max_datagrams_in_flight`), so that many
//! devices' records share one group commit instead of waiting for one fsync each. A bad
//! datagram is logged with its peer and dropped; the device resends what was not answered.
//! Answers follow the same rule as TCP frames ([`super::answer`]): a datagram from a device
//! outside `allowed_devices` gets the protocol's "not accepted" answer (Teltonika: an ack
//! with a count of 0), as a TCP login would get `00`.
//!
//! Answers to one peer leave in the order its datagrams arrived ([`AnswerOrder`]), although
//! the datagrams are stored concurrently: Wialon's `#AD#1` names no packet, so a device that
//! sent two packets must get their answers in that order (a store before a ping, too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use firmware_protocols::{DatagramDecoder, DecoderOptions};
use tokio::net::UdpSocket;
use tokio::sync::oneshot::{self, error::TryRecvError};
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
    /// Downlink commands, sent to a device's address right after its datagram is answered
    /// (where a datagram device listens).
    commands: Option<crate::commands::Port>,
    /// The listener's filter (`crate::clean::filter`).
    filter: Arc<crate::clean::Filter>,
}

impl BoundUdp {
    pub async fn bind(
        index: usize,
        l: &ListenerSettings,
        make_decoder: fn(&DecoderOptions) -> Box<dyn DatagramDecoder>,
        settings: &Settings,
        commands: Option<&crate::commands::Commands>,
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
            commands: commands.map(|c| crate::commands::Port {
                commands: c.clone(),
                source: crate::commands::config::Source::Listener(index),
            }),
            filter: Arc::new(crate::clean::Filter::new(l.filter.clone())),
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
        let mut order = AnswerOrder::default();
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
            let (earlier, answered) = order.next(peer);
            let (socket, buffer) = (self.socket.clone(), buffer.clone());
            let (protocol, protocol_id) = (self.protocol.clone(), self.protocol_id);
            // A known device's datagram: its answer to a command, and the moment to send it
            // the next one.
            let downlink = match (&self.commands, &verdict) {
                (Some(port), Verdict::Store | Verdict::Control(Some(_))) => decoded
                    .login
                    .clone()
                    .or_else(|| decoded.records.first().map(|r| r.device_id.clone()))
                    .map(|device| (port.clone(), device, decoded.command_answer.clone())),
                _ => None,
            };
            let filter = self.filter.clone();
            tasks.spawn(async move {
                let bytes = if verdict == Verdict::Store {
                    store(decoded, peer, &buffer, &filter, &protocol, protocol_id).await
                } else {
                    // Nothing to store: the same rule as a TCP frame.
                    answer::answer(&verdict, decoded.reply, Outcome::Stored).send
                };
                // After the answers to this peer's earlier datagrams (an error means that
                // task ended without answering: nothing to wait for).
                if let Some(earlier) = earlier {
                    let _ = earlier.await;
                }
                if let Some(bytes) = bytes {
                    send(&socket, &bytes, peer, &protocol).await;
                }
                if let Some((port, device, answer)) = downlink {
                    command_after_answer(&port, &device, answer, &protocol, &socket, peer).await;
                }
                let _ = answered.send(());
                drop(permit);
            });
        }
    }
}

/// Keeps each peer's answers in the order its datagrams arrived: every datagram gets the
/// signal of the peer's previous one to wait for, and a signal of its own to give once
/// answered. Bounded: finished entries are swept whenever the map has doubled, so it holds
/// about the datagrams in flight (`ingest.max_datagrams_in_flight`).
#[derive(Default)]
struct AnswerOrder {
    last: HashMap<SocketAddr, oneshot::Receiver<()>>,
    sweep_at: usize,
}

impl AnswerOrder {
    fn next(&mut self, peer: SocketAddr) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (answered, wait_for_it) = oneshot::channel();
        let earlier = self.last.insert(peer, wait_for_it);
        if self.last.len() >= self.sweep_at {
            // Answered (Ok) or abandoned (Closed): nobody needs to wait for it any more.
            self.last
                .retain(|_, rx| matches!(rx.try_recv(), Err(TryRecvError::Empty)));
            self.sweep_at = (self.last.len() * 2).max(1024);
        }
        (earlier, answered)
    }
}

/// Stores a datagram's records; the answer to send once they are durable (or refused).
async fn store(
    decoded: firmware_protocols::Decoded,
    peer: SocketAddr,
    buffer: &Buffer,
    filter: &crate::clean::Filter,
    protocol: &str,
    protocol_id: Option<metrics::ProtocolId>,
) -> Option<Vec<u8>> {
    // Filtered records are answered as stored (as in `session.rs`).
    let (records, pending) = filter.apply_counted(decoded.records);
    let n = records.len() as u64;
    let appended = match records.is_empty() {
        true => Ok(Appended::Duplicate),
        false => buffer.append(records).await,
    };
    let outcome = match appended {
        Ok(stored @ Appended::Stored { .. }) => {
            metrics::records_received(protocol_id, super::session::stored_count(stored));
            filter.commit(pending);
            Outcome::Stored
        }
        Ok(Appended::Duplicate) => {
            filter.commit(pending);
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
    answer::answer(&Verdict::Store, decoded.reply, outcome).send
}

/// After a datagram of `device` was answered: hands over its answer to a command, and
/// sends its next command to the address it listens on now.
async fn command_after_answer(
    port: &crate::commands::Port,
    device: &str,
    answer: Option<firmware_protocols::command::CommandAnswer>,
    protocol: &str,
    socket: &UdpSocket,
    peer: SocketAddr,
) {
    let Some(spec) = firmware_protocols::registry::lookup(protocol) else {
        return;
    };
    let now = super::now_ms();
    if let Some(answer) = answer {
        port.commands.answered(device, &answer, now);
    }
    let seen = crate::commands::Seen {
        protocol: spec.protocol,
        source: port.source,
    };
    if let Some(delivery) = port.commands.next_for_datagram(device, seen, now).await {
        send(socket, &delivery.bytes, peer, protocol).await;
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr, protocol: &str) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        tracing::info!(%peer, %protocol, error = %e, "UDP answer not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Each datagram waits for the peer's previous one, and only that one; peers are apart.
    #[test]
    fn answers_to_one_peer_wait_for_the_earlier_ones() {
        let mut order = AnswerOrder::default();
        let (first_waits, first_done) = order.next(peer(1));
        assert!(first_waits.is_none(), "nothing before the first datagram");
        let (other_waits, _other_done) = order.next(peer(2));
        assert!(other_waits.is_none(), "another peer waits for nobody");
        let (second_waits, _second_done) = order.next(peer(1));
        let mut second_waits = second_waits.expect("the second datagram waits");
        assert!(matches!(second_waits.try_recv(), Err(TryRecvError::Empty)));
        first_done.send(()).expect("signal");
        assert!(
            second_waits.try_recv().is_ok(),
            "released by the first answer"
        );
    }

    /// Finished entries are swept, so the map stays near the datagrams in flight.
    #[test]
    fn finished_peers_are_swept() {
        let mut order = AnswerOrder::default();
        for port in 0..5000u16 {
            let (_, done) = order.next(peer(port));
            let _ = done.send(());
        }
        assert!(
            order.last.len() <= 1024,
            "{} entries kept",
            order.last.len()
        );
        // One still in flight is kept through sweeps.
        let (_, pending) = order.next(peer(60000));
        for port in 0..3000u16 {
            let (_, done) = order.next(peer(port));
            let _ = done.send(());
        }
        assert!(order.last.contains_key(&peer(60000)));
        drop(pending);
    }
}
