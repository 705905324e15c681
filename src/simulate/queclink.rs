//! Queclink GL300-style trackers: no login (every report names the IMEI); one `+RESP:GTFRI`
//! report per record, and after each chunk a `+ACK:GTHBD` heartbeat, which the gateway
//! always answers `+SACK:GTHBD,<version>,<count>$` once everything before it is stored.
//! When the listener has `ack_reports` (the device's server-ACK mode), each report's
//! `+SACK:<count>$` must arrive first, in order. Queclink has no negative answer: a device
//! the gateway refuses is disconnected.

use firmware_protocols::queclink::encode::{fri, heartbeat, Fix};

use super::link::Link;
use super::{point, Device, Fault};

/// GL300, firmware 01.02.
pub(super) const VERSION: &str = "1A0102";

pub(super) async fn run(device: &mut Device) -> Result<(), Fault> {
    let mut link = Link::open(device).await?;
    let mut count: u16 = 0;
    for chunk in device.chunks() {
        let n = (chunk.end - chunk.start) as usize;
        let mut text = String::with_capacity(n * 160 + 64);
        let mut report_counts = Vec::with_capacity(n);
        let mut send_ms = 0;
        for k in chunk {
            let p = point(device.index, k);
            send_ms = p.time_ms;
            text.push_str(&fri(
                false,
                VERSION,
                &device.id,
                &[fix(&p)],
                90,
                send_ms,
                count,
            ));
            report_counts.push(count);
            count = count.wrapping_add(1);
        }
        let heartbeat_count = count;
        count = count.wrapping_add(1);
        text.push_str(&heartbeat(VERSION, &device.id, send_ms, heartbeat_count));
        device.pace().await;
        link.send(text.as_bytes()).await?;
        device.sent(n);

        let want = format!("+SACK:GTHBD,{VERSION},{heartbeat_count:04X}$");
        let mut report_sacks = report_counts.iter();
        let mut acked_reports = 0;
        loop {
            let answer = link
                .read_until(b'$', "the heartbeat after the reports")
                .await?;
            let answer = String::from_utf8_lossy(&answer);
            let answer = answer.trim_start();
            if answer == want && (acked_reports == 0 || acked_reports == n) {
                break;
            }
            match report_sacks.next() {
                Some(c) if answer == format!("+SACK:{c:04X}$") => acked_reports += 1,
                _ => {
                    return Err(Fault::Failed(format!(
                        "wrong answer {answer:?} (waiting for {want:?} after {n} reports)"
                    )))
                }
            }
        }
        device.acked(n);
    }
    link.linger().await
}

fn fix(p: &super::Point) -> Fix {
    Fix {
        accuracy: 1,
        speed_kmh: p.speed_kmh,
        azimuth: p.course_deg as u16,
        altitude_m: p.altitude_m,
        lon: p.lon,
        lat: p.lat,
        utc_ms: p.time_ms,
        mcc: 246,
        mnc: 1,
        lac: 0x1234,
        cell_id: 0xABCDEF,
    }
}
