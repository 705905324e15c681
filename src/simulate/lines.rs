//! Text protocols nothing answers: NMEA 0183 (an RMC and a GGA per record, which the
//! gateway combines) and JSON lines (one object per record). Chunks are paced and counted;
//! whether they arrived is for `--watch-mqtt` to tell. Over TCP the device closes its side
//! at the end and waits for the gateway to close in turn, which it does once it has read
//! and stored every line.

use firmware_protocols::{jsonl, nmea, Protocol, Record};

use super::link::Link;
use super::{point, Device, Fault};

pub(super) async fn run(device: &mut Device) -> Result<(), Fault> {
    let mut link = Link::open(device).await?;
    for chunk in device.chunks() {
        let n = (chunk.end - chunk.start) as usize;
        let mut text = String::with_capacity(n * 200);
        for k in chunk {
            text.push_str(&line(device, k)?);
        }
        device.pace().await;
        link.send(text.as_bytes()).await?;
        device.sent(n);
    }
    link.finish().await
}

/// Record `k` of the device in its protocol's text.
fn line(device: &Device, k: u64) -> Result<String, Fault> {
    let p = point(device.index, k);
    if device.plan.protocol == Protocol::Nmea {
        let fix = nmea::encode::Fix {
            time_ms: p.time_ms,
            lat: p.lat,
            lon: p.lon,
            speed_kmh: p.speed_kmh,
            course_deg: p.course_deg,
            satellites: p.satellites,
            hdop: 0.9,
            altitude_m: p.altitude_m,
        };
        return Ok(nmea::encode::rmc("GN", &fix) + &nmea::encode::gga("GN", &fix));
    }
    let mut r = Record::new(device.id.clone(), Protocol::Jsonl, 0);
    r.time_ms = Some(p.time_ms);
    r.valid = Some(true);
    r.lat = Some(p.lat);
    r.lon = Some(p.lon);
    r.altitude_m = Some(p.altitude_m);
    r.speed_kmh = Some(p.speed_kmh);
    r.course_deg = Some(p.course_deg);
    r.satellites = Some(p.satellites);
    jsonl::encode::line(&r).map_err(|e| Fault::Failed(format!("cannot encode a JSON line: {e}")))
}
