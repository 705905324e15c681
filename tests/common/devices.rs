//! A simulated Teltonika tracker: [`Device`] (IMEI login, Codec 8 packets, count replies),
//! the deterministic records it sends ([`avl_record`]) and the check of a record JSON that
//! reached the broker against what the device encoded ([`check_fields`]).

use std::net::SocketAddr;
use std::time::Duration;

use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::teltonika::encode::{encode_codec8, encode_imei, AvlRecord, IoData};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// IMEI of device `index` in a test: 15 digits, distinct per (test base, index).
pub fn imei(base: u64, index: usize) -> String {
    format!("{:015}", 356_307_040_000_000 + base * 1000 + index as u64)
}

/// Record `k` of device `index`: deterministic (a resend is a true duplicate), distinct
/// device times (`t0 + k s + 7 ms`), southern and western coordinates for some devices, IO
/// in every fixed width, HDOP (IO 182) in every third record and an event in every tenth.
pub fn avl_record(index: usize, k: u64) -> AvlRecord {
    let t0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let sign = if index % 2 == 1 { -1 } else { 1 };
    let mut io = vec![
        (239, IoData::U8((k % 2) as u8)),
        (21, IoData::U8(((k + index as u64) % 6) as u8)),
        (66, IoData::U16(12_000 + (k % 600) as u16)),
        (241, IoData::U32(24_602 + index as u32)),
        (16, IoData::U32(1_000_000 + (k as u32) * 13)),
        (78, IoData::U64(0x0102_0304_0506_0708 + k)),
    ];
    if k.is_multiple_of(3) {
        io.push((182, IoData::U16(7 + (k % 20) as u16)));
    }
    AvlRecord {
        timestamp_ms: t0 + k * 1000 + 7,
        priority: (k % 3) as u8,
        lon: sign * (250_000_000 + index as i32 * 100_000 + (k % 100_000) as i32 * 37),
        lat: sign * (546_872_833 - (k % 100_000) as i32 * 11),
        altitude: if k.is_multiple_of(5) {
            -12
        } else {
            112 + (k % 7) as i16
        },
        angle: ((k * 3) % 360) as u16,
        satellites: if k.is_multiple_of(17) {
            0
        } else {
            9 + (k % 4) as u8
        },
        speed: 40 + (k % 30) as u16,
        event_id: if k.is_multiple_of(10) { 239 } else { 0 },
        generation_type: 0,
        io,
    }
}

/// The device time of a record, as the record JSON writes it.
pub fn time_of(r: &AvlRecord) -> String {
    format_rfc3339_ms(r.timestamp_ms as i64)
}

/// Checks a record JSON that arrived at the broker against what the device encoded.
pub fn check_fields(imei: &str, sent: &AvlRecord, got: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut eq = |field: &str, want: Value| {
        if got[field] != want {
            problems.push(format!("{field}: want {want}, got {}", got[field]));
        }
    };
    eq("device_id", Value::from(imei));
    eq("protocol", Value::from("teltonika"));
    eq("time", Value::from(time_of(sent)));
    eq("valid", Value::from(sent.satellites > 0));
    eq("satellites", Value::from(sent.satellites));
    eq(
        "event",
        if sent.event_id == 0 {
            Value::Null
        } else {
            Value::from(format!("io:{}", sent.event_id))
        },
    );
    let mut close = |field: &str, want: Option<f64>| {
        let ok = match (want, got[field].as_f64()) {
            (None, None) => got[field].is_null(),
            (Some(w), Some(g)) => (w - g).abs() <= 1e-9 * w.abs().max(1.0),
            _ => false,
        };
        if !ok {
            problems.push(format!("{field}: want {want:?}, got {}", got[field]));
        }
    };
    close("lat", Some(f64::from(sent.lat) / 1e7));
    close("lon", Some(f64::from(sent.lon) / 1e7));
    close("altitude_m", Some(f64::from(sent.altitude)));
    close("speed_kmh", Some(f64::from(sent.speed)));
    close("course_deg", Some(f64::from(sent.angle)));
    let hdop = sent
        .io
        .iter()
        .find(|(id, _)| *id == 182)
        .and_then(|(_, v)| v.as_u64())
        .map(|v| v as f64 / 10.0);
    close("hdop", hdop);
    let mut io = serde_json::Map::new();
    io.insert("priority".into(), Value::from(sent.priority));
    for (id, value) in &sent.io {
        io.insert(
            id.to_string(),
            Value::from(value.as_u64().expect("fixed-width IO")),
        );
    }
    if got["io"] != Value::Object(io.clone()) {
        problems.push(format!("io: want {}, got {}", Value::Object(io), got["io"]));
    }
    if got["received_at"].as_str().is_none() {
        problems.push(format!("received_at: {}", got["received_at"]));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// One device connection, logged in.
pub struct Device {
    pub imei: String,
    stream: TcpStream,
    /// Reply bytes read but not yet returned (reads may be interrupted by a timeout).
    pending: Vec<u8>,
}

impl Device {
    /// Connects and logs in (IMEI packet, expects `01`), within `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        imei: &str,
        timeout: Duration,
    ) -> std::io::Result<Device> {
        let login = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            stream.write_all(&encode_imei(imei)).await?;
            let mut answer = [0u8; 1];
            stream.read_exact(&mut answer).await?;
            if answer[0] != 0x01 {
                return Err(std::io::Error::other(format!(
                    "login of {imei} answered {:02x}",
                    answer[0]
                )));
            }
            Ok(Device {
                imei: imei.to_string(),
                stream,
                pending: Vec::new(),
            })
        };
        tokio::time::timeout(timeout, login)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "login timed out"))?
    }

    /// Writes one Codec 8 packet.
    pub async fn write_packet(&mut self, records: &[AvlRecord]) -> std::io::Result<()> {
        let packet = encode_codec8(records).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.stream.write_all(&packet).await?;
        self.stream.flush().await
    }

    /// Reads the 4-byte count reply. A timeout (`ErrorKind::TimedOut`) loses nothing: a later
    /// call continues where this one stopped.
    pub async fn read_reply(&mut self, timeout: Duration) -> std::io::Result<u32> {
        let read = async {
            while self.pending.len() < 4 {
                let mut chunk = [0u8; 64];
                let n = self.stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "gateway closed the connection",
                    ));
                }
                self.pending.extend_from_slice(&chunk[..n]);
            }
            let reply: [u8; 4] = self.pending[..4].try_into().expect("4 bytes");
            self.pending.drain(..4);
            Ok(u32::from_be_bytes(reply))
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))?
    }

    /// Sends one packet and returns the gateway's count reply.
    pub async fn send(&mut self, records: &[AvlRecord], timeout: Duration) -> std::io::Result<u32> {
        self.write_packet(records).await?;
        self.read_reply(timeout).await
    }
}
