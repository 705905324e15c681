//! The floor under the gateway's one-record shapes: a Teltonika TCP server that answers every
//! AVL packet with its record count and does nothing else — no decoding beyond the framing,
//! no buffer, no fsync, no MQTT. It runs on the same tokio runtime shape as `fleetedge run`
//! (two workers), so `scripts/bench-floor` can measure what one frame in and one answer out
//! cost on this machine before any of the gateway's own work: the kernel's TCP path, epoll
//! and one task wake-up per frame. Not a product; a yardstick for issue 9's targets.
//!
//!   cargo run --release --example ack_floor -- 127.0.0.1:PORT

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest AVL packet accepted, as the gateway's default `max_frame_bytes`.
const MAX_PACKET: usize = 16 * 1024;

fn main() -> std::io::Result<()> {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: ack_floor ADDRESS:PORT");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = device(stream).await {
                eprintln!("ack_floor: {e}");
            }
        });
    }
}

/// The IMEI packet is answered `01`; each AVL packet with its record count (4 bytes BE).
async fn device(mut stream: TcpStream) -> std::io::Result<()> {
    let mut input = Vec::with_capacity(1000);
    let mut logged_in = false;
    let mut answers = Vec::new();
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            if logged_in {
                let Some((len, count)) = avl_packet(rest)? else {
                    break;
                };
                used += len;
                answers.extend_from_slice(&u32::from(count).to_be_bytes());
            } else {
                let Some(len) = imei_packet(rest) else { break };
                used += len;
                logged_in = true;
                answers.push(1);
            }
        }
        input.drain(..used);
        if !answers.is_empty() {
            stream.write_all(&answers).await?;
            answers.clear();
        }
    }
}

/// `u16 BE length, IMEI`: its length (answered `01`).
fn imei_packet(b: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
    (b.len() >= 2 + len).then_some(2 + len)
}

/// `00000000, u32 BE data length, codec, count, …, count, u32 CRC`: its length and record
/// count (answered as 4 bytes BE). The CRC is not checked.
fn avl_packet(b: &[u8]) -> std::io::Result<Option<(usize, u8)>> {
    let Some(header) = b.get(..10) else {
        return Ok(None);
    };
    let data_len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let total = 8 + data_len + 4;
    if total > MAX_PACKET {
        return Err(std::io::Error::other(format!(
            "an AVL packet of {total} bytes"
        )));
    }
    if b.len() < total {
        return Ok(None);
    }
    Ok(Some((total, header[9])))
}
