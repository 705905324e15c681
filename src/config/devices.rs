//! `[[listeners]]` and `[[serial]]`: where devices are heard, and in which protocol.

use std::collections::HashSet;
use std::net::SocketAddr;

use firmware_protocols::registry;
use serde::{Deserialize, Serialize};

use super::range::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// Protocol spoken on this port, from the registry: `teltonika`, `gt06`, `queclink`,
    /// `wialon`, `nmea`, `jsonl` (TCP) or `teltonika-udp`, `wialon-udp` (UDP).
    pub protocol: String,
    /// Address and port to listen on, e.g. `0.0.0.0:5027`.
    pub bind: String,
    /// Optional allow-list of device ids (IMEIs). Empty (the default) allows every device;
    /// otherwise others are refused at login (Teltonika: answered `00`).
    #[serde(default)]
    pub allowed_devices: Vec<String>,
    /// Answer every data report where that is a device setting (Queclink `+SACK:<count>$`
    /// acknowledgement mode). Default false.
    #[serde(default)]
    pub ack_reports: bool,
    /// Which decoded records are stored (`crate::clean::config`); every rule off by default.
    #[serde(default)]
    pub filter: crate::clean::FilterSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSettings {
    /// Device path, e.g. `/dev/ttyUSB0` or `/dev/serial/by-id/…`.
    pub path: String,
    /// Line speed in baud. Default 9600.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// A stream protocol from the registry: usually `nmea` or `jsonl`.
    pub protocol: String,
    /// The device id for records from this port, for protocols whose frames carry none
    /// (required for `nmea`).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Longest wait between attempts to reopen a missing or unplugged port, milliseconds;
    /// attempts start at 500 ms and double. Default 30000.
    #[serde(default = "default_reopen_max_ms")]
    pub reopen_max_ms: u64,
    /// Which decoded records are stored (`crate::clean::config`); every rule off by default.
    #[serde(default)]
    pub filter: crate::clean::FilterSettings,
}

pub(super) fn default_baud() -> u32 {
    9600
}

pub(super) fn default_reopen_max_ms() -> u64 {
    30_000
}

/// Every listener's problems, each naming `listeners[<n>].<key>`.
pub(super) fn check_listeners(listeners: &[ListenerSettings], problems: &mut Problems) {
    let mut binds = HashSet::new();
    for (n, l) in listeners.iter().enumerate() {
        let udp = match registry::lookup(&l.protocol) {
            Some(spec) if spec.needs_device_id => {
                problems.add(
                    &format!("listeners[{n}].protocol"),
                    format!(
                        "{} frames carry no device id; use it on a [[serial]] port with device_id",
                        l.protocol
                    ),
                );
                false
            }
            Some(spec) => matches!(spec.transport, registry::Transport::Datagram(_)),
            None => {
                problems.add(
                    &format!("listeners[{n}].protocol"),
                    format!(
                        "unknown protocol {:?}; known: {}",
                        l.protocol,
                        registry::names().join(", ")
                    ),
                );
                false
            }
        };
        match l.bind.parse::<SocketAddr>() {
            Err(e) => problems.add(
                &format!("listeners[{n}].bind"),
                format!("{:?} is not an address:port ({e})", l.bind),
            ),
            Ok(addr) => {
                // TCP and UDP may share a port (Teltonika uses 5027 for both).
                if !binds.insert((udp, addr)) {
                    problems.add(
                        &format!("listeners[{n}].bind"),
                        format!("{addr} is used twice"),
                    );
                }
            }
        }
    }
}

/// Every serial port's problems, each naming `serial[<n>].<key>`.
pub(super) fn check_serial(ports: &[SerialSettings], problems: &mut Problems) {
    let mut paths = HashSet::new();
    for (n, s) in ports.iter().enumerate() {
        let key = |k: &str| format!("serial[{n}].{k}");
        match registry::lookup(&s.protocol) {
            None => problems.add(
                &key("protocol"),
                format!(
                    "unknown protocol {:?}; known: {}",
                    s.protocol,
                    registry::names().join(", ")
                ),
            ),
            Some(spec) if matches!(spec.transport, registry::Transport::Datagram(_)) => problems
                .add(
                    &key("protocol"),
                    format!(
                        "{} is a UDP protocol; a serial port needs a stream protocol",
                        s.protocol
                    ),
                ),
            Some(spec) if spec.needs_device_id && s.device_id.is_none() => problems.add(
                &key("device_id"),
                format!(
                    "{} frames carry no device id; set one for this port",
                    s.protocol
                ),
            ),
            Some(_) => {}
        }
        if s.path.is_empty() {
            problems.add(&key("path"), "must not be empty");
        } else if !paths.insert(s.path.as_str()) {
            problems.add(&key("path"), format!("{} is used twice", s.path));
        }
        problems.between(&key("baud"), s.baud, 50..=4_000_000);
        if s.device_id.as_deref().is_some_and(str::is_empty) {
            problems.add(&key("device_id"), "must not be empty");
        }
        problems.between(&key("reopen_max_ms"), s.reopen_max_ms, 500..=3_600_000);
    }
}
