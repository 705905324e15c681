//! `[mqtt]`: the broker connection, its credentials, and `[mqtt.tls]` (whose settings live
//! with the TLS code in `uplink/tls.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::range::Problems;
use super::secret::{read_secret_file, Secret};
use crate::uplink::tls::MqttTlsSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Broker host name or address. Default `127.0.0.1`.
    pub host: String,
    /// Broker TCP port. Default 1883.
    pub port: u16,
    /// MQTT client id; must be unique per broker. Default `fleetedge-<gateway_id>`.
    pub client_id: String,
    /// First topic level: batches go to `{topic_prefix}/{gateway_id}/records`.
    /// Default `fleetedge`.
    pub topic_prefix: String,
    /// MQTT keep-alive, seconds. Default 30.
    pub keep_alive_s: u64,
    /// Largest MQTT packet sent or accepted, bytes; batches are split to stay under it.
    /// Must not exceed the broker's limit. Default 262,144 (256 KiB).
    pub max_packet_bytes: usize,
    /// Batches published and not yet acknowledged (PUBACK) at once. Default 8.
    pub max_inflight_batches: usize,
    /// Give up a connection attempt after this many seconds. Default 10.
    pub connect_timeout_s: u64,
    /// A packet write to the broker that takes longer than this many seconds ends the
    /// connection. On slow links with large batches, allow for
    /// `max_packet_bytes × max_inflight_batches` at the link's rate. Default 60.
    pub write_timeout_s: u64,
    /// User name for the broker. Default none (no credentials sent).
    pub username: Option<String>,
    /// Password for `username`. Meant for the environment (`FLEETEDGE__MQTT__PASSWORD`,
    /// taken verbatim); in a file prefer `password_file`. Never logged. Default none.
    pub password: Option<Secret>,
    /// File holding the password (read at start; a trailing newline is ignored). Use either
    /// this or `password`. Default none.
    pub password_file: Option<PathBuf>,
    /// Seconds between refreshes of the retained status message on
    /// `{topic_prefix}/{gateway_id}/status` (it is always published on connect); 0 = only on
    /// connect. Default 60.
    pub status_interval_s: u64,
    /// TLS to the broker (`[mqtt.tls]`).
    pub tls: MqttTlsSettings,
}

/// Largest password file read (MQTT passwords are at most 65,535 bytes).
const MAX_PASSWORD_FILE_BYTES: u64 = 65_535 + 2;

impl MqttSettings {
    /// The user name and password to connect with: `password`, or `password_file` read now
    /// with trailing `\n`/`\r\n` removed. Errors name the key and the file, never the
    /// password.
    pub fn credentials(&self) -> Result<Option<(String, Secret)>, String> {
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err("mqtt.password_file: set either mqtt.password or \
                            mqtt.password_file, not both"
                    .into())
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        match (&self.username, password) {
            (Some(user), password) => Ok(Some((user.clone(), password.unwrap_or_default()))),
            (None, Some(_)) => Err("mqtt.username: a password is set but no user name; \
                                    MQTT sends a password only with a user name"
                .into()),
            (None, None) => Ok(None),
        }
    }
}

fn read_password_file(path: &Path) -> Result<Secret, String> {
    read_secret_file(
        "mqtt.password_file",
        path,
        MAX_PASSWORD_FILE_BYTES,
        "larger than an MQTT password can be (65535 bytes)",
    )
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            topic_prefix: "fleetedge".into(),
            keep_alive_s: 30,
            max_packet_bytes: 256 * 1024,
            max_inflight_batches: 8,
            connect_timeout_s: 10,
            write_timeout_s: 60,
            username: None,
            password: None,
            password_file: None,
            status_interval_s: 60,
            tls: MqttTlsSettings::default(),
        }
    }
}

impl MqttSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        if self.host.is_empty() {
            problems.add("mqtt.host", "must not be empty");
        }
        if self.port == 0 {
            problems.add("mqtt.port", "must not be 0");
        }
        if self.client_id.len() > 128 {
            problems.add("mqtt.client_id", "longer than 128 bytes");
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.contains(['+', '#']) {
            problems.add(
                "mqtt.topic_prefix",
                format!(
                    "{:?} must be non-empty and free of '+' and '#'",
                    self.topic_prefix
                ),
            );
        }
        problems.between("mqtt.keep_alive_s", self.keep_alive_s, 5..=65_535);
        problems.at_least("mqtt.max_packet_bytes", self.max_packet_bytes, 4096, "");
        problems.between(
            "mqtt.max_inflight_batches",
            self.max_inflight_batches,
            1..=1024,
        );
        problems.between("mqtt.connect_timeout_s", self.connect_timeout_s, 1..=300);
        problems.between("mqtt.write_timeout_s", self.write_timeout_s, 1..=3600);
    }

    /// The checks that read files (the password, the TLS certificates).
    pub(super) fn check_credentials_and_tls(&self, problems: &mut Problems) {
        if let Err(e) = self.credentials() {
            problems.extend([e]);
        }
        if let Some(user) = &self.username {
            if user.is_empty() || user.len() > 65_535 {
                problems.add("mqtt.username", "must be 1 to 65535 bytes");
            }
        }
        problems.between("mqtt.status_interval_s", self.status_interval_s, 0..=86_400);
        if self.tls.enabled {
            if let Err(e) = crate::uplink::tls::client_config(&self.tls, &self.host) {
                problems.extend([e]);
            }
        }
    }
}
