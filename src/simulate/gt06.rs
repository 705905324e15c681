//! Concox GT06 trackers: the login (answered with its echo; the gateway closes the
//! connection on a device it refuses, since GT06 has no negative answer), then 0x12
//! locations, which nothing answers, and after each chunk a 0x13 heartbeat, whose echo (the
//! same protocol number and serial) confirms everything sent before it: the gateway stores a
//! connection's frames in order and answers the heartbeat only once it is stored.
//!
//! The heartbeats reach the broker too, as records without a device time.

use firmware_protocols::gt06::encode::{
    course_status, frame, heartbeat_content, location_content, login, scale_degrees, Gps, Lbs,
    Status,
};
use firmware_protocols::gt06::{reply, LOCATION_GPS_LBS, LOGIN, STATUS};
use firmware_protocols::record::format_rfc3339_ms;

use super::link::Link;
use super::{point, Device, Fault};

/// A GT06 answer: `78 78 05 <protocol> <serial> <crc> 0d 0a`.
const REPLY_LEN: usize = 10;

pub(super) async fn run(device: &mut Device) -> Result<(), Fault> {
    let encode = |e: firmware_protocols::gt06::encode::EncodeError| {
        Fault::Failed(format!("cannot encode a GT06 frame: {e}"))
    };
    let mut link = Link::open(device).await?;
    let mut serial: u16 = 1;
    link.send(&login(&device.id, serial).map_err(encode)?)
        .await?;
    match expect(&mut link, LOGIN, serial, "the login").await {
        Err(Fault::Closed(why)) => return Err(Fault::Refused(why)),
        other => other?,
    }
    for chunk in device.chunks() {
        let n = (chunk.end - chunk.start) as usize;
        let mut bytes = Vec::with_capacity(n * 40 + 20);
        for k in chunk {
            serial = serial.wrapping_add(1);
            bytes.extend(
                frame(LOCATION_GPS_LBS, &location(device.index, k), serial).map_err(encode)?,
            );
        }
        serial = serial.wrapping_add(1);
        bytes.extend(frame(STATUS, &heartbeat_content(&STATUS_BLOCK), serial).map_err(encode)?);
        device.pace().await;
        link.send(&bytes).await?;
        device.sent(n);
        expect(
            &mut link,
            STATUS,
            serial,
            "the heartbeat after the locations",
        )
        .await?;
        device.acked(n);
    }
    link.linger().await
}

/// Reads one answer; it must echo `protocol` and `serial`.
async fn expect(link: &mut Link, protocol: u8, serial: u16, what: &str) -> Result<(), Fault> {
    let got = link.read_exact(REPLY_LEN, what).await?;
    if got == reply(protocol, serial) {
        return Ok(());
    }
    let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
    Err(Fault::Failed(format!(
        "wrong answer to {what} (serial {serial}): {hex}"
    )))
}

/// Terminal info 0x40 (GPS tracking on), voltage level 4, GSM signal 4, no alarm, English.
const STATUS_BLOCK: Status = Status {
    terminal_info: 0x40,
    voltage_level: 4,
    gsm_signal: 4,
    alarm: 0,
    language: 2,
};

/// Record `k` of a device as an 0x12 location (GPS + LBS).
fn location(device: usize, k: u64) -> Vec<u8> {
    let p = point(device, k);
    // `2026-01-01T00:00:00.000Z` into the six binary bytes YY MM DD hh mm ss.
    let t = format_rfc3339_ms(p.time_ms);
    let num = |at: usize| t.get(at..at + 2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let gps = Gps {
        time: [num(2), num(5), num(8), num(11), num(14), num(17)],
        info_length: 12,
        satellites: p.satellites,
        lat: scale_degrees(p.lat),
        lon: scale_degrees(p.lon),
        speed: p.speed_kmh as u8,
        course_status: course_status(p.course_deg as u16, p.lat >= 0.0, p.lon < 0.0, true),
    };
    let lbs = Lbs {
        mcc: 246,
        mnc: 1,
        lac: 0x1234,
        cell_id: 0x00AB_CDEF,
    };
    location_content(&gps, &lbs)
}
