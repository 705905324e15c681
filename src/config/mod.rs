//! The one typed settings tree, loaded from a TOML file plus environment overrides.
//!
//! Environment variables `FLEETEDGE__SECTION__KEY` override the file (`FLEETEDGE__MQTT__HOST`,
//! `FLEETEDGE__BUFFER__MAX_RECORDS`, `FLEETEDGE__GATEWAY_ID`); keys are lowercased by the
//! `config` crate, so spell them as in the file. Their values are text, never guessed at: a
//! string key takes it verbatim (`007` stays `007`), a number or boolean key parses it.
//! Every field's unit and default is documented next to it, in the module of its section, and
//! in `fleetedge.example.toml`, which a test keeps complete and in step with the defaults.
//!
//! Loading never stops at the first problem: [`Settings::validate`] returns every problem at
//! once, each naming its key, so an installer fixes a config in one round.
//!
//! One module per section, each checking its own keys through the shared range checks
//! (`range.rs`); checks that span sections are here. `[commands]`, `[dedup]`, the listeners'
//! filters and `[mqtt.tls]` are defined with the code they configure (`commands/config.rs`,
//! `clean/config.rs`, `uplink/tls.rs`) and re-exported here.

mod buffer;
mod devices;
mod http;
mod ingest;
mod loading;
mod log;
mod mqtt;
mod range;
mod secret;
mod unknown_keys;
mod uplink;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use self::buffer::BufferSettings;
pub use self::devices::{ListenerSettings, SerialSettings};
pub use self::http::HttpSettings;
pub use self::ingest::IngestSettings;
pub use self::log::{LogFormat, LogSettings};
pub use self::mqtt::MqttSettings;
pub use self::secret::Secret;
pub use self::uplink::{UplinkFormat, UplinkSettings};
pub use crate::uplink::tls::MqttTlsSettings;
use range::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Names this gateway in topics and payloads; cloud consumers dedupe on
    /// `(gateway_id, seq)`. Required. Letters, digits, `-`, `_`, `.` only.
    pub gateway_id: String,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub buffer: BufferSettings,
    #[serde(default)]
    pub mqtt: MqttSettings,
    #[serde(default)]
    pub uplink: UplinkSettings,
    #[serde(default)]
    pub ingest: IngestSettings,
    #[serde(default)]
    pub http: HttpSettings,
    /// `[commands]`: downlink commands (documented in `src/commands/config.rs`).
    #[serde(default)]
    pub commands: crate::commands::config::CommandSettings,
    /// Duplicate suppression at ingest (`crate::clean::config`).
    #[serde(default)]
    pub dedup: crate::clean::DedupSettings,
    /// TCP and UDP listeners, one per protocol and port (the protocol decides the
    /// transport). At least one listener or serial port is required.
    #[serde(default)]
    pub listeners: Vec<ListenerSettings>,
    /// Serial ports with a device (or a GNSS receiver, or a sensor) on them.
    #[serde(default)]
    pub serial: Vec<SerialSettings>,
}

#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Every problem at once, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.check_gateway_id(&mut problems);
        self.log.check(&mut problems);
        self.buffer.check(&mut problems);
        self.mqtt.check(&mut problems);
        self.uplink.check(&mut problems);
        self.ingest.check(&mut problems);
        self.check_across_sections(&mut problems);
        devices::check_listeners(&self.listeners, &mut problems);
        devices::check_serial(&self.serial, &mut problems);
        self.mqtt.check_credentials_and_tls(&mut problems);
        self.uplink.check_rates(&mut problems);
        self.http.check(&mut problems);
        problems.extend(
            self.commands
                .problems(self.listeners.len(), self.serial.len()),
        );
        problems.extend(self.clean_problems());
        let problems = problems.into_vec();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    fn check_gateway_id(&self, problems: &mut Problems) {
        if self.gateway_id.is_empty() {
            problems.add("gateway_id", "must not be empty");
        } else if !self
            .gateway_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problems.add(
                "gateway_id",
                format!(
                    "{:?} may only hold letters, digits, '-', '_' and '.' (it is an MQTT topic level)",
                    self.gateway_id
                ),
            );
        }
    }

    /// Bounds that tie one section's keys to another's.
    fn check_across_sections(&self, problems: &mut Problems) {
        let max_frame_bytes = self.ingest.max_frame_bytes;
        // The largest frame's records, stored, must fit an empty buffer many times over.
        let frame_bound = 64 * max_frame_bytes as u64;
        if self.buffer.max_bytes < frame_bound {
            problems.add(
                "buffer.max_bytes",
                format!(
                    "{} is below 64 × ingest.max_frame_bytes ({frame_bound})",
                    self.buffer.max_bytes
                ),
            );
        }
        if self.listeners.is_empty() && self.serial.is_empty() {
            problems.add(
                "listeners",
                "at least one [[listeners]] or [[serial]] entry is needed, e.g. protocol = \"teltonika\", bind = \"0.0.0.0:5027\"",
            );
        }
        // One record's JSON is at most about six times its frame bytes (a 3-byte Codec 8E IO
        // element becomes `"65535":255,`, and `raw` adds twice its bytes) plus fixed fields;
        // a batch of one record must always fit a packet, or the uplink could never send it.
        let one_record_bound = 6 * max_frame_bytes + 8192;
        if self.mqtt.max_packet_bytes < one_record_bound {
            problems.add(
                "mqtt.max_packet_bytes",
                format!(
                    "{} cannot carry one record from a frame of ingest.max_frame_bytes = {}; \
                     use at least {one_record_bound}",
                    self.mqtt.max_packet_bytes, max_frame_bytes
                ),
            );
        }
    }
}
