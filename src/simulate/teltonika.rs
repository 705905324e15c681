//! Teltonika trackers over TCP and over UDP.
//!
//! TCP, as FMB firmware does it: the IMEI packet, answered `01` (accepted) or `00`
//! (refused); then one AVL packet per chunk, answered with its record count as 4 bytes, `0`
//! when refused (resent). UDP: one datagram per chunk, answered with the 7-byte ack that
//! must echo the packet id and AVL packet id and carry the record count (`0`: refused,
//! resent). A datagram without an ack is sent again, as the device does; one that is never
//! acked is a failure. A Codec 12 command datagram (see `teltonika_udp`) is answered with
//! a Codec 12 response datagram whenever one arrives, and during `--linger-s`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use firmware_protocols::teltonika::encode::{encode_avl_packet, encode_imei, AvlRecord, IoData};
use firmware_protocols::teltonika_udp::encode::datagram;
use tokio::net::UdpSocket;

use super::commands::{Front, Responder};
use super::link::{Link, Target};
use super::{point, Device, Fault};

/// How often a UDP datagram is sent before its missing ack is a failure.
pub(super) const UDP_SENDS: u32 = 3;

pub(super) async fn run_tcp(device: &mut Device) -> Result<(), Fault> {
    let mut link = Link::open(device).await?;
    link.send(&encode_imei(&device.id)).await?;
    match link.read_exact(1, "the IMEI packet").await?.as_slice() {
        [1] => {}
        [0] => {
            return Err(Fault::Refused(
                "the gateway answered the IMEI with 00".into(),
            ))
        }
        other => return Err(wrong("the IMEI packet", other)),
    }
    for chunk in device.chunks() {
        let n = chunk.end - chunk.start;
        let packet = encode_avl_packet(device.plan.codec, &records(device.index, chunk))
            .map_err(|e| Fault::Failed(format!("cannot encode an AVL packet: {e}")))?;
        device.pace().await;
        device.sent(n as usize);
        for attempt in 0.. {
            link.send(&packet).await?;
            let reply = link.read_exact(4, "an AVL packet").await?;
            match reply.as_slice() {
                &[a, b, c, d] if u32::from_be_bytes([a, b, c, d]) == n as u32 => break,
                [0, 0, 0, 0] => {
                    let why = format!("an AVL packet of {n} records answered 0");
                    device.refused(attempt + 1, why).await?;
                    device.resent(n as usize);
                }
                other => return Err(wrong(&format!("an AVL packet of {n} records"), other)),
            }
        }
        device.acked(n as usize);
    }
    link.linger().await
}

pub(super) async fn run_udp(device: &mut Device) -> Result<(), Fault> {
    let Target::Net(addr) = &device.plan.target else {
        return Err(Fault::Failed(
            "teltonika-udp needs a network --target".into(),
        ));
    };
    let socket = udp_socket(addr).await?;
    let timeout = device.plan.reply_timeout;
    let mut commands = UdpCommands {
        responder: Responder::new(device.plan.protocol, &device.id, device.index),
        answered: device.commands_answered(),
    };
    for (i, chunk) in device.chunks().enumerate() {
        let n = chunk.end - chunk.start;
        let (packet_id, avl_packet_id) = (i as u16, i as u8);
        let bytes = datagram(
            packet_id,
            avl_packet_id,
            &device.id,
            device.plan.codec,
            &records(device.index, chunk),
        )
        .map_err(|e| Fault::Failed(format!("cannot encode a datagram: {e}")))?;
        let [p0, p1] = packet_id.to_be_bytes();
        let ack = |count: u8| [0x00, 0x05, p0, p1, 0x01, avl_packet_id, count];
        device.pace().await;
        device.sent(n as usize);
        let (mut refusals, mut sends) = (0, 0);
        loop {
            if sends == UDP_SENDS {
                return Err(Fault::Failed(format!(
                    "datagram {packet_id} of {n} records: no ack after {sends} sends, {} s apart",
                    timeout.as_secs()
                )));
            }
            if sends > 0 {
                device.resent(n as usize);
            }
            socket
                .send(&bytes)
                .await
                .map_err(|e| Fault::Failed(format!("UDP send failed: {e}")))?;
            sends += 1;
            let Some(got) = receive(&socket, timeout, packet_id, &mut commands).await? else {
                continue;
            };
            if got == ack(n as u8) {
                break;
            }
            if got != ack(0) {
                return Err(wrong(&format!("datagram {packet_id}"), &got));
            }
            refusals += 1;
            sends = 0;
            device
                .refused(
                    refusals,
                    format!("datagram {packet_id} of {n} records answered 0"),
                )
                .await?;
            device.resent(n as usize);
        }
        device.acked(n as usize);
    }
    // The gateway sends a command right after an ack, where the device listens.
    let linger = tokio::time::Instant::now() + device.plan.linger;
    while tokio::time::Instant::now() < linger {
        let left = linger.saturating_duration_since(tokio::time::Instant::now());
        if let Some(got) = receive(&socket, left, u16::MAX, &mut commands).await? {
            return Err(wrong("nothing (lingering)", &got));
        }
    }
    Ok(())
}

/// Answers command datagrams (a whole Codec 12 packet) as they arrive.
struct UdpCommands {
    responder: Responder,
    answered: Arc<AtomicU64>,
}

/// The next answer to datagram `packet_id` within `timeout`; `None` when none came. Late
/// acks of earlier datagrams (sent again because their ack was slow) are skipped; commands
/// are answered.
async fn receive(
    socket: &UdpSocket,
    timeout: Duration,
    packet_id: u16,
    commands: &mut UdpCommands,
) -> Result<Option<Vec<u8>>, Fault> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reply = [0u8; 4096];
    loop {
        let got = match tokio::time::timeout_at(deadline, socket.recv(&mut reply)).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(Fault::Failed(format!("UDP receive failed: {e}"))),
            Ok(Ok(len)) => reply.get(..len).unwrap_or_default(),
        };
        if let Front::Command { answer, .. } = commands.responder.front(got) {
            socket
                .send(&answer)
                .await
                .map_err(|e| Fault::Failed(format!("UDP send failed: {e}")))?;
            commands.answered.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let late = got.len() == 7 && got.get(2..4) != Some(&packet_id.to_be_bytes()[..]);
        if !late {
            return Ok(Some(got.to_vec()));
        }
    }
}

/// A UDP socket of the target's address family, connected to it (so only its answers are
/// read, and an unreachable port shows as an error).
pub(super) async fn udp_socket(addr: &str) -> Result<UdpSocket, Fault> {
    let failed = |e: std::io::Error| Fault::Failed(format!("UDP to {addr}: {e}"));
    let target: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .map_err(failed)?
        .next()
        .ok_or_else(|| Fault::Failed(format!("{addr} resolves to no address")))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await.map_err(failed)?;
    socket.connect(target).await.map_err(failed)?;
    Ok(socket)
}

fn wrong(what: &str, answer: &[u8]) -> Fault {
    let hex: String = answer.iter().map(|b| format!("{b:02x}")).collect();
    Fault::Failed(format!("wrong answer to {what}: {hex}"))
}

fn records(device: usize, chunk: std::ops::Range<u64>) -> Vec<AvlRecord> {
    chunk.map(|k| fake_record(device, k)).collect()
}

/// Record `k` of a device as an FMB sends it, with the IO a typical FMB has.
fn fake_record(device: usize, k: u64) -> AvlRecord {
    let p = point(device, k);
    AvlRecord {
        timestamp_ms: p.time_ms as u64,
        priority: 0,
        lon: (p.lon * 1e7).round() as i32,
        lat: (p.lat * 1e7).round() as i32,
        altitude: p.altitude_m as i16,
        angle: p.course_deg as u16,
        satellites: p.satellites,
        speed: p.speed_kmh as u16,
        event_id: if k.is_multiple_of(50) { 239 } else { 0 },
        generation_type: 0,
        io: vec![
            (239, IoData::U8(1)),
            (240, IoData::U8(1)),
            (21, IoData::U8(4)),
            (66, IoData::U16(12_400 + (k % 64) as u16)),
            (16, IoData::U32(1_000_000 + (k as u32).wrapping_mul(12))),
        ],
    }
}
