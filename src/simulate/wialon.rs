//! Wialon IPS 2.0 devices: the `#L#` login, answered `#AL#1` (`#AL#0` refused, `#AL#01`
//! wrong password), then one `#B#` black box per chunk, answered `#AB#<count>` once stored
//! (`#AB#0` refused, resent).
//!
//! Over UDP (`wialon-udp`): no login; each chunk is one datagram `2.0;<imei>#B#…|crc16`,
//! answered `#AB#<count>` to the sender once stored; sent again when no answer comes, as
//! the teltonika-udp devices do.

use firmware_protocols::wialon::encode::{black_box, login, Message};
use firmware_protocols::wialon::ProtocolVersion;

use super::link::{Link, Target};
use super::teltonika::{udp_socket, UDP_SENDS};
use super::{point, Device, Fault};

const VERSION: ProtocolVersion = ProtocolVersion::V2;

pub(super) async fn run(device: &mut Device) -> Result<(), Fault> {
    let mut link = Link::open(device).await?;
    link.send(&login(VERSION, &device.id, None)).await?;
    match answer(&mut link, "the login").await?.as_str() {
        "#AL#1" => {}
        "#AL#0" => {
            return Err(Fault::Refused(
                "the gateway answered the login #AL#0".into(),
            ))
        }
        "#AL#01" => {
            return Err(Fault::Refused(
                "the gateway answered the login #AL#01 (password)".into(),
            ))
        }
        other => {
            return Err(Fault::Failed(format!(
                "wrong answer to the login: {other:?}"
            )))
        }
    }
    for chunk in device.chunks() {
        let n = (chunk.end - chunk.start) as usize;
        let messages: Vec<Message> = chunk.map(|k| message(device.index, k)).collect();
        let packet = black_box(VERSION, &messages);
        device.pace().await;
        device.sent(n);
        let want = format!("#AB#{n}");
        for attempt in 1.. {
            link.send(&packet).await?;
            let got = answer(&mut link, "a black box").await?;
            if got == want {
                break;
            }
            if got != "#AB#0" {
                return Err(Fault::Failed(format!(
                    "wrong answer to a black box of {n}: {got:?}"
                )));
            }
            device
                .refused(attempt, format!("a black box of {n} answered #AB#0"))
                .await?;
            device.resent(n);
        }
        device.acked(n);
    }
    link.linger().await
}

pub(super) async fn run_udp(device: &mut Device) -> Result<(), Fault> {
    let Target::Net(addr) = &device.plan.target else {
        return Err(Fault::Failed("wialon-udp needs a network --target".into()));
    };
    let socket = udp_socket(addr).await?;
    let timeout = device.plan.reply_timeout;
    for chunk in device.chunks() {
        let n = (chunk.end - chunk.start) as usize;
        let messages: Vec<Message> = chunk.map(|k| message(device.index, k)).collect();
        let mut datagram = format!("2.0;{}", device.id).into_bytes();
        datagram.extend_from_slice(&black_box(VERSION, &messages));
        device.pace().await;
        device.sent(n);
        let want = format!("#AB#{n}");
        let (mut sends, mut refusals) = (0, 0);
        loop {
            if sends == UDP_SENDS {
                return Err(Fault::Failed(format!(
                    "a black box of {n}: no answer after {sends} sends, {} s apart (a device \
                     not in allowed_devices is not answered)",
                    timeout.as_secs()
                )));
            }
            if sends > 0 {
                device.resent(n);
            }
            socket
                .send(&datagram)
                .await
                .map_err(|e| Fault::Failed(format!("UDP send failed: {e}")))?;
            sends += 1;
            let mut reply = [0u8; 64];
            let got = match tokio::time::timeout(timeout, socket.recv(&mut reply)).await {
                Err(_) => continue,
                Ok(Err(e)) => return Err(Fault::Failed(format!("UDP receive failed: {e}"))),
                Ok(Ok(len)) => String::from_utf8_lossy(reply.get(..len).unwrap_or_default())
                    .trim_end()
                    .to_string(),
            };
            if got == want {
                break;
            }
            if got != "#AB#0" {
                return Err(Fault::Failed(format!(
                    "wrong answer to a black box of {n}: {got:?}"
                )));
            }
            refusals += 1;
            sends = 0;
            device
                .refused(refusals, format!("a black box of {n} answered #AB#0"))
                .await?;
            device.resent(n);
        }
        device.acked(n);
    }
    Ok(())
}

/// One answer line, without its CR LF.
async fn answer(link: &mut Link, what: &str) -> Result<String, Fault> {
    let line = link.read_until(b'\n', what).await?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

fn message(device: usize, k: u64) -> Message {
    let p = point(device, k);
    Message {
        time_ms: Some(p.time_ms),
        lat: Some(p.lat),
        lon: Some(p.lon),
        speed_kmh: Some(p.speed_kmh),
        course_deg: Some(p.course_deg),
        altitude_m: Some(p.altitude_m),
        satellites: Some(p.satellites),
        extended: None,
    }
}
