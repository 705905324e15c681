//! The gateway's status message: retained on `{topic_prefix}/{gateway_id}/status`.
//!
//! ```text
//! on every connect, then every mqtt.status_interval_s (QoS 1, retained):
//!   {"status":"online","gateway_id":"gw-001","version":"0.1.0","uptime_s":3605,
//!    "buffer_records":120,"buffer_bytes":5210,"connected_devices":14,
//!    "time":"2026-11-23T10:00:00.120Z"}
//! last will, and published by the gateway itself on a graceful shutdown (QoS 1, retained):
//!   {"status":"offline","gateway_id":"gw-001"}
//! ```
//!
//! Retained, so a dashboard that subscribes later still learns at once whether the gateway is
//! up; the broker publishes the will when the connection dies without a DISCONNECT (crash,
//! power cut, lost link after the keep-alive). Pure: callers pass the numbers and the clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use firmware_protocols::record::format_rfc3339_ms;
use serde_json::json;

pub fn topic(topic_prefix: &str, gateway_id: &str) -> String {
    format!("{topic_prefix}/{gateway_id}/status")
}

/// What an online status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    pub uptime: Duration,
    pub buffer_records: u64,
    pub buffer_bytes: u64,
    pub connected_devices: u64,
    pub now: SystemTime,
}

pub fn online_payload(gateway_id: &str, s: &Online) -> Vec<u8> {
    let epoch_ms = s
        .now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    json!({
        "status": "online",
        "gateway_id": gateway_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.uptime.as_secs(),
        "buffer_records": s.buffer_records,
        "buffer_bytes": s.buffer_bytes,
        "connected_devices": s.connected_devices,
        "time": format_rfc3339_ms(epoch_ms),
    })
    .to_string()
    .into_bytes()
}

pub fn offline_payload(gateway_id: &str) -> Vec<u8> {
    json!({"status": "offline", "gateway_id": gateway_id})
        .to_string()
        .into_bytes()
}

/// Time since the process first asked (the uplink asks as it starts, moments after launch).
pub fn uptime() -> Duration {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    STARTED.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn online_status_has_every_documented_field() {
        let s = Online {
            uptime: Duration::from_millis(3_605_900),
            buffer_records: 120,
            buffer_bytes: 5210,
            connected_devices: 14,
            now: UNIX_EPOCH + Duration::from_millis(1_795_428_000_120),
        };
        let v: Value = serde_json::from_slice(&online_payload("gw-001", &s)).unwrap();
        assert_eq!(v["status"], "online");
        assert_eq!(v["gateway_id"], "gw-001");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["uptime_s"], 3605);
        assert_eq!(v["buffer_records"], 120);
        assert_eq!(v["buffer_bytes"], 5210);
        assert_eq!(v["connected_devices"], 14);
        assert_eq!(v["time"], "2026-11-23T10:00:00.120Z");
        assert_eq!(v.as_object().unwrap().len(), 8);
    }

    #[test]
    fn offline_status_and_topic() {
        let v: Value = serde_json::from_slice(&offline_payload("gw-001")).unwrap();
        assert_eq!(v, json!({"status": "offline", "gateway_id": "gw-001"}));
        assert_eq!(topic("fleetedge", "gw-001"), "fleetedge/gw-001/status");
    }

    #[test]
    fn uptime_grows() {
        let a = uptime();
        std::thread::sleep(Duration::from_millis(5));
        assert!(uptime() > a);
    }
}
