//! The one typed settings tree, loaded from a TOML file plus environment overrides.
//!
//! Environment variables `FLEETEDGE__SECTION__KEY` override the file (`FLEETEDGE__MQTT__HOST`,
//! `FLEETEDGE__BUFFER__MAX_RECORDS`, `FLEETEDGE__GATEWAY_ID`); keys are lowercased by the
//! `config` crate, so spell them as in the file. Their values are text, never guessed at: a
//! string key takes it verbatim (`007` stays `007`), a number or boolean key parses it.
//! Every field's unit and default is documented here and in `fleetedge.example.toml`, which
//! a test keeps complete.
//!
//! Loading never stops at the first problem: [`Settings::validate`] returns every problem at
//! once, each naming its key, so an installer fixes a config in one round.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::buffer::{BufferOptions, WhenFull};
use crate::uplink::payload::Compression;
use firmware_protocols::registry;

const ENV_PREFIX: &str = "FLEETEDGE";

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
    /// TCP and UDP listeners, one per protocol and port (the protocol decides the
    /// transport). At least one listener or serial port is required.
    #[serde(default)]
    pub listeners: Vec<ListenerSettings>,
    /// Serial ports with a device (or a GNSS receiver, or a sensor) on them.
    #[serde(default)]
    pub serial: Vec<SerialSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter (`info`, `fleetedge=debug,warn`). `RUST_LOG` wins when set.
    /// Default `info`.
    pub level: String,
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub format: LogFormat,
    /// Seconds between "stats" log lines (counters and buffer depth); 0 turns them off.
    /// Default 60.
    pub stats_interval_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
            stats_interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSettings {
    /// Directory of the sled database. Default `/var/lib/fleetedge/buffer`.
    pub path: PathBuf,
    /// Most records held; then `when_full` applies. Default 1,000,000.
    pub max_records: u64,
    /// Most bytes of encoded records held. Default 536,870,912 (512 MiB).
    pub max_bytes: u64,
    /// `block` (default): stop reading from devices until the uplink drains below
    /// `resume_below_percent`; devices keep their data. Also `reject` and `drop_oldest`.
    pub when_full: WhenFullSetting,
    /// Low-water mark, percent of `max_records` and `max_bytes`, below which a full buffer
    /// accepts again. Default 90.
    pub resume_below_percent: u8,
    /// sled's page cache in bytes. sled's own default is 1 GiB and ignores cgroup limits;
    /// RSS runs a few times this. Default 8,388,608 (8 MiB).
    pub cache_capacity_bytes: u64,
    /// Alert level in stored records: a warning is logged once when the backlog reaches it
    /// and an info line once when it falls back to 90 % of it; the `above_alert` gauge
    /// follows. 0 turns it off; at most `max_records`. Default (absent): half of
    /// `max_records`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_records: Option<u64>,
    /// Once the backlog has drained to empty and sled's files take more than this many
    /// bytes, they are replaced by a fresh database (the seq counter is kept), so disk use
    /// follows the backlog. 0 = never; otherwise at least 1,048,576 (1 MiB). Default
    /// 67,108,864 (64 MiB).
    pub reclaim_above_bytes: u64,
    /// Bytes to leave free on the buffer's filesystem: below this, new records are refused
    /// per `when_full` (`block` waits; `reject` and `drop_oldest` answer "not accepted"), so
    /// sled stops before the disk is full; a drained buffer's files are reclaimed meanwhile.
    /// 0 = off; otherwise at least 1,048,576 (1 MiB). Default 33,554,432 (32 MiB).
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFullSetting {
    Block,
    Reject,
    DropOldest,
}

impl Default for BufferSettings {
    fn default() -> Self {
        BufferSettings {
            path: PathBuf::from("/var/lib/fleetedge/buffer"),
            max_records: crate::buffer::DEFAULT_MAX_RECORDS,
            max_bytes: crate::buffer::DEFAULT_MAX_BYTES,
            when_full: WhenFullSetting::Block,
            resume_below_percent: crate::buffer::DEFAULT_RESUME_BELOW_PERCENT,
            cache_capacity_bytes: crate::buffer::DEFAULT_CACHE_CAPACITY_BYTES,
            alert_records: None,
            reclaim_above_bytes: crate::buffer::DEFAULT_RECLAIM_ABOVE_BYTES,
            min_free_bytes: crate::buffer::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

impl BufferSettings {
    pub fn options(&self) -> BufferOptions {
        BufferOptions {
            path: self.path.clone(),
            max_records: self.max_records,
            max_bytes: self.max_bytes,
            resume_below_percent: self.resume_below_percent,
            cache_capacity_bytes: self.cache_capacity_bytes,
            seq_floor: None,
            alert_records: self.alert_records,
            reclaim_above_bytes: self.reclaim_above_bytes,
            min_free_bytes: self.min_free_bytes,
            salvage: false,
            when_full: match self.when_full {
                WhenFullSetting::Block => WhenFull::Block,
                WhenFullSetting::Reject => WhenFull::Reject,
                WhenFullSetting::DropOldest => WhenFull::DropOldest,
            },
        }
    }
}

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

/// `[mqtt.tls]`: TLS to the broker with rustls. Mutual TLS when a client certificate is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsSettings {
    /// Connect with TLS (usually to port 8883). Default false.
    pub enabled: bool,
    /// PEM file of the CA certificate(s) the broker's certificate must chain to. Required
    /// when `enabled`. Default none.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; set with `client_key_file`, or neither.
    /// Default none.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`. Default none.
    pub client_key_file: Option<PathBuf>,
    /// The name the broker's certificate must carry (a DNS name or an IP address), when it
    /// is not `mqtt.host` (e.g. connecting by address to a broker certified by name).
    /// Default none: `mqtt.host`.
    pub server_name: Option<String>,
}

/// A password: deserialised like a string, but printed (`Debug`) and serialised as `***`, so
/// `Settings` can be logged or dumped without leaking it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself; hand it to the MQTT client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
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

/// A secret from the file `path` (the value of `key`), at most `max` bytes (`too_big` says
/// why), with trailing `\n`/`\r\n` removed. Errors name the key and the file.
fn read_secret_file(key: &str, path: &Path, max: u64, too_big: &str) -> Result<Secret, String> {
    use std::io::Read;
    let why = |e: &dyn std::fmt::Display| format!("{key}: cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| why(&e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| why(&e))?;
    if bytes.len() as u64 > max {
        return Err(why(&too_big));
    }
    let text = String::from_utf8(bytes).map_err(|_| why(&"not UTF-8 text"))?;
    Ok(Secret(text.trim_end_matches(['\n', '\r']).to_string()))
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkSettings {
    /// What the records are published as: `batch` — `fleetedge.batch.v1` batches on
    /// `{topic_prefix}/{gateway_id}/records`, compressed per `compression` (the default);
    /// `ngp` — one Navixy Generic Protocol 1.0 JSON object per record on `ngp/{device_id}`,
    /// uncompressed (`batch_max_records`, `linger_ms`, `compression` and `zstd_level` do not
    /// apply; `mqtt.max_inflight_batches` counts messages).
    pub format: UplinkFormat,
    /// Most records in one published batch. Default 1000.
    pub batch_max_records: usize,
    /// How long a partial batch may wait for more records, milliseconds. Default 200.
    pub linger_ms: u64,
    /// Payload compression: `zstd` (default), `gzip` or `none`.
    pub compression: Compression,
    /// zstd level, 1 (fastest) to 22. Default 3.
    pub zstd_level: i32,
    /// First reconnect delay, milliseconds; doubles per failure (full jitter). Default 500.
    pub backoff_initial_ms: u64,
    /// Cap of the reconnect delay, milliseconds. Default 30,000.
    pub backoff_max_ms: u64,
    /// A connection that stayed up this many seconds resets the backoff. Default 30. One
    /// that worked (a PUBACK, up 1 s) resets it too (see `uplink::backoff`).
    pub backoff_reset_after_s: u64,
    /// Most MQTT messages published per second (batches and status; token bucket with a
    /// burst of one second's worth). 0 = unlimited, the default.
    pub max_messages_per_s: u32,
    /// Most MQTT payload bytes published per second (token bucket with a burst of
    /// `max(this, mqtt.max_packet_bytes)`, so the largest batch always goes through).
    /// 0 = unlimited, the default.
    pub max_bytes_per_s: u64,
    /// On SIGTERM/SIGINT, after the devices are stopped, seconds to keep publishing what
    /// the buffer holds and to wait for the broker's acknowledgements; records not
    /// acknowledged by then stay in the buffer for the next start. The offline status and
    /// the DISCONNECT that follow take at most about 2 s more. 0 = publish nothing more
    /// (only the offline status). Default 5.
    pub shutdown_publish_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UplinkFormat {
    Batch,
    Ngp,
}

impl Default for UplinkSettings {
    fn default() -> Self {
        UplinkSettings {
            format: UplinkFormat::Batch,
            batch_max_records: 1000,
            linger_ms: 200,
            compression: Compression::Zstd,
            zstd_level: 3,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            backoff_reset_after_s: 30,
            max_messages_per_s: 0,
            max_bytes_per_s: 0,
            shutdown_publish_s: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Device connections open at once, over all listeners; more wait in the kernel's
    /// backlog. Default 1024.
    pub max_connections: usize,
    /// Close a device connection silent for this many seconds. Default 600.
    pub idle_timeout_s: u64,
    /// A new TCP connection must identify its device (a login, or a first report carrying
    /// the device's id) within this many seconds of being accepted, or it is closed: port
    /// scanners, half-dead modems and clients that only send keep-alives would otherwise hold
    /// `max_connections` slots for `idle_timeout_s`. Counted from the accept; trickled
    /// bytes, keep-alives and bad frames before the login do not extend it. Default 30.
    pub first_frame_timeout_s: u64,
    /// Device connections one address may hold at once, over all TCP listeners; more are
    /// closed right after the accept (logged once per address until it holds fewer). 0 = no
    /// limit, the default: devices behind a mobile operator's NAT or a private APN all
    /// arrive from one address. At most `max_connections`.
    pub max_connections_per_ip: usize,
    /// Largest device frame accepted, bytes; it is also each connection's read buffer
    /// bound. Default 16,384.
    pub max_frame_bytes: usize,
    /// Keep each record's raw bytes (hex or text) in `raw`. Default false.
    pub keep_raw: bool,
    /// UDP datagrams decoded and waiting for their append at once, over all UDP
    /// listeners; more wait in the socket's receive queue. Separate from
    /// `max_connections` so long-lived TCP devices cannot starve UDP devices. Default 64.
    pub max_datagrams_in_flight: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_connections: 1024,
            idle_timeout_s: 600,
            first_frame_timeout_s: 30,
            max_connections_per_ip: 0,
            max_frame_bytes: 16 * 1024,
            keep_raw: false,
            max_datagrams_in_flight: 64,
        }
    }
}

/// The operations endpoint: `/metrics` (Prometheus text), `/health`, `/ready`, and
/// `/buffer/stats`, `/buffer/export` for `fleetedge buffer stats|export`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address and port of the endpoint; an empty string turns it off. Only `/buffer/*` can
    /// require a token: keep it on loopback (or a management-only interface).
    /// Default `127.0.0.1:9780`.
    pub bind: String,
    /// Connections served at once, 1 to 1024. At the limit a new connection closes the
    /// oldest one that is not in the middle of a request (a slow or idle client), so a
    /// health check still gets in. Default 16.
    pub max_connections: usize,
    /// Bearer token that `/buffer/stats` and `/buffer/export` require (`Authorization:
    /// Bearer <token>`; `fleetedge buffer stats|export` send it); 16 to 1024 printable ASCII
    /// characters. Meant for the environment (`FLEETEDGE__HTTP__TOKEN`, e.g. in the 0600
    /// `/etc/default/fleetedge`), as the config file is readable by every user. Never logged.
    /// Default none: `/buffer/*` is open to every local user.
    pub token: Option<Secret>,
    /// File holding `token` (read at start; a trailing newline is ignored), e.g. mode 0640
    /// owned by root, group fleetedge: readable by the service and by whoever runs
    /// `fleetedge buffer` as root. Use either this or `token`. Default none.
    pub token_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: "127.0.0.1:9780".into(),
            max_connections: 16,
            token: None,
            token_file: None,
        }
    }
}

/// Bounds of `http.token`'s length.
const HTTP_TOKEN_BYTES: std::ops::RangeInclusive<usize> = 16..=1024;
/// Bounds of `http.max_connections`.
const HTTP_MAX_CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=1024;

impl HttpSettings {
    /// The address to listen on, `None` when the endpoint is off; the error names the key.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.bind.is_empty() {
            return Ok(None);
        }
        match self.bind.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => Err(format!(
                "http.bind: {:?} needs a port other than 0",
                self.bind
            )),
            Ok(addr) => Ok(Some(addr)),
            Err(e) => Err(format!(
                "http.bind: {:?} is not an address:port ({e}); e.g. \"127.0.0.1:9780\", or \"\" for off",
                self.bind
            )),
        }
    }

    /// Every problem of the section, each naming its key (never the token's value).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.addr() {
            problems.push(e);
        }
        if !HTTP_MAX_CONNECTIONS.contains(&self.max_connections) {
            problems.push(format!(
                "http.max_connections: {} must be between {} and {}",
                self.max_connections,
                HTTP_MAX_CONNECTIONS.start(),
                HTTP_MAX_CONNECTIONS.end()
            ));
        }
        match self.token() {
            Err(e) => problems.push(e),
            Ok(None) => {}
            Ok(Some(token)) => problems.extend(token_problem(token.expose())),
        }
        problems
    }

    /// The bearer token `/buffer/*` requires: `token`, or `token_file` read now. Errors name
    /// the key and the file, never the token.
    pub fn token(&self) -> Result<Option<Secret>, String> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                Err("http.token_file: set either http.token or http.token_file, not both".into())
            }
            (Some(t), None) => Ok(Some(t.clone())),
            (None, Some(path)) => read_secret_file(
                "http.token_file",
                path,
                *HTTP_TOKEN_BYTES.end() as u64 + 2,
                "longer than a token may be",
            )
            .map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// What is wrong with `token` as an `http.token`, if anything.
fn token_problem(token: &str) -> Option<String> {
    if !HTTP_TOKEN_BYTES.contains(&token.len()) {
        Some(format!(
            "http.token: must be {} to {} characters long (it is {}); leave it out for no token",
            HTTP_TOKEN_BYTES.start(),
            HTTP_TOKEN_BYTES.end(),
            token.len()
        ))
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some(
            "http.token: only printable ASCII characters without spaces (it goes in an HTTP \
             header)"
                .into(),
        )
    } else {
        None
    }
}

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
}

fn default_baud() -> u32 {
    9600
}

fn default_reopen_max_ms() -> u64 {
    30_000
}

/// Every key a config may hold: the defaults as a JSON tree, with one sample element in each
/// array of tables. The struct literals below make the compiler list every field.
fn known_keys() -> serde_json::Value {
    let sample = Settings {
        gateway_id: String::new(),
        log: LogSettings::default(),
        // Some, because None is skipped when serialized.
        buffer: BufferSettings {
            alert_records: Some(0),
            ..BufferSettings::default()
        },
        mqtt: MqttSettings::default(),
        uplink: UplinkSettings::default(),
        ingest: IngestSettings::default(),
        http: HttpSettings {
            token: Some(Secret::default()),
            token_file: Some(PathBuf::new()),
            ..HttpSettings::default()
        },
        listeners: vec![ListenerSettings {
            protocol: String::new(),
            bind: String::new(),
            allowed_devices: Vec::new(),
            ack_reports: false,
        }],
        serial: vec![SerialSettings {
            path: String::new(),
            baud: default_baud(),
            protocol: String::new(),
            device_id: None,
            reopen_max_ms: default_reopen_max_ms(),
        }],
    };
    serde_json::to_value(&sample).unwrap_or(serde_json::Value::Null)
}

/// Removes from `raw` every key `known` does not have, with a problem naming each.
fn strip_unknown_keys(
    raw: &mut serde_json::Value,
    known: &serde_json::Value,
    path: &str,
    problems: &mut Vec<String>,
) {
    use serde_json::Value;
    match (raw, known) {
        (Value::Object(map), Value::Object(known_map)) => map.retain(|key, value| {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match known_map.get(key) {
                Some(known_value) => {
                    strip_unknown_keys(value, known_value, &key_path, problems);
                    true
                }
                None => {
                    let names: Vec<&str> = known_map.keys().map(String::as_str).collect();
                    problems.push(format!(
                        "{key_path}: unknown key (in the file or a FLEETEDGE__ variable); \
                         known here: {}",
                        names.join(", ")
                    ));
                    false
                }
            }
        }),
        (Value::Array(items), Value::Array(known_items)) => {
            if let Some(element) = known_items.first() {
                for (i, item) in items.iter_mut().enumerate() {
                    strip_unknown_keys(item, element, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
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
    /// Loads `path` with `FLEETEDGE__…` overrides from the process environment, then
    /// validates.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let one = |p: String| ConfigError { problems: vec![p] };
        if !path.exists() {
            return Err(one(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(env),
            )
            .build()
            .map_err(|e| one(format!("{}: {e}", path.display())))?;
        // serde stops at the first unknown key; an installer fixing a file wants them all, and
        // the rest of the file checked too. So unknown keys are found against the tree of
        // known ones, reported, and left out of what is deserialized.
        let mut raw: serde_json::Value = built
            .clone()
            .try_deserialize()
            .map_err(|e| one(format!("{}: {e}", path.display())))?;
        let mut problems = Vec::new();
        strip_unknown_keys(&mut raw, &known_keys(), "", &mut problems);
        let source = if problems.is_empty() {
            built
        } else {
            config::Config::try_from(&raw).map_err(|e| one(format!("{}: {e}", path.display())))?
        };
        let mut settings: Settings = match source.try_deserialize() {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                return Err(ConfigError { problems });
            }
        };
        if settings.mqtt.client_id.is_empty() {
            settings.mqtt.client_id = format!("fleetedge-{}", settings.gateway_id);
        }
        if let Err(e) = settings.validate() {
            problems.extend(e.problems);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(settings)
    }

    /// Every problem at once, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.validate_basics();
        let m = &self.mqtt;
        if let Err(e) = m.credentials() {
            problems.push(e);
        }
        if let Some(user) = &m.username {
            if user.is_empty() || user.len() > 65_535 {
                problems.push("mqtt.username: must be 1 to 65535 bytes".into());
            }
        }
        if m.status_interval_s > 86_400 {
            problems.push(format!(
                "mqtt.status_interval_s: {} must be between 0 and 86400",
                m.status_interval_s
            ));
        }
        if m.tls.enabled {
            if let Err(e) = crate::uplink::tls::client_config(m) {
                problems.push(e);
            }
        }
        let u = &self.uplink;
        if u.max_bytes_per_s > u64::from(u32::MAX) {
            problems.push(format!(
                "uplink.max_bytes_per_s: {} must be at most {}",
                u.max_bytes_per_s,
                u32::MAX
            ));
        }
        if u.shutdown_publish_s > 3600 {
            problems.push(format!(
                "uplink.shutdown_publish_s: {} must be between 0 and 3600",
                u.shutdown_publish_s
            ));
        }
        problems.extend(self.http.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    fn validate_basics(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, why: String| problems.push(format!("{key}: {why}"));

        if self.gateway_id.is_empty() {
            bad("gateway_id", "must not be empty".into());
        } else if !self
            .gateway_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bad(
                "gateway_id",
                format!(
                    "{:?} may only hold letters, digits, '-', '_' and '.' (it is an MQTT topic level)",
                    self.gateway_id
                ),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            bad(
                "log.level",
                format!("{:?} is not a tracing filter: {e}", self.log.level),
            );
        }
        let b = &self.buffer;
        if b.path.as_os_str().is_empty() {
            bad("buffer.path", "must not be empty".into());
        }
        // A Teltonika frame carries up to 255 records and is stored whole: a smaller buffer
        // could never take it, and its device would resend it forever.
        if b.max_records < 256 {
            bad(
                "buffer.max_records",
                format!("{} is below the minimum of 256", b.max_records),
            );
        }
        if b.max_bytes < 1024 * 1024 {
            bad(
                "buffer.max_bytes",
                format!("{} is below the minimum of 1048576 (1 MiB)", b.max_bytes),
            );
        }
        if !(1..=99).contains(&b.resume_below_percent) {
            bad(
                "buffer.resume_below_percent",
                format!("{} must be between 1 and 99", b.resume_below_percent),
            );
        }
        if b.cache_capacity_bytes < 1024 * 1024 {
            bad(
                "buffer.cache_capacity_bytes",
                format!(
                    "{} is below the minimum of 1048576 (1 MiB)",
                    b.cache_capacity_bytes
                ),
            );
        }
        if let Some(alert) = b.alert_records.filter(|&a| a > b.max_records) {
            bad(
                "buffer.alert_records",
                format!(
                    "{alert} is above buffer.max_records ({}); 0 turns the alert off",
                    b.max_records
                ),
            );
        }
        if b.reclaim_above_bytes != 0 && b.reclaim_above_bytes < 1024 * 1024 {
            bad(
                "buffer.reclaim_above_bytes",
                format!(
                    "{} must be 0 (never) or at least 1048576 (1 MiB)",
                    b.reclaim_above_bytes
                ),
            );
        }
        if b.min_free_bytes != 0 && b.min_free_bytes < 1024 * 1024 {
            bad(
                "buffer.min_free_bytes",
                format!(
                    "{} must be 0 (off) or at least 1048576 (1 MiB): sled grows its files in \
                     512 KiB segments",
                    b.min_free_bytes
                ),
            );
        }
        let m = &self.mqtt;
        if m.host.is_empty() {
            bad("mqtt.host", "must not be empty".into());
        }
        if m.port == 0 {
            bad("mqtt.port", "must not be 0".into());
        }
        if m.client_id.len() > 128 {
            bad("mqtt.client_id", "longer than 128 bytes".into());
        }
        if m.topic_prefix.is_empty() || m.topic_prefix.contains(['+', '#']) {
            bad(
                "mqtt.topic_prefix",
                format!(
                    "{:?} must be non-empty and free of '+' and '#'",
                    m.topic_prefix
                ),
            );
        }
        if !(5..=65_535).contains(&m.keep_alive_s) {
            bad(
                "mqtt.keep_alive_s",
                format!("{} must be between 5 and 65535", m.keep_alive_s),
            );
        }
        if m.max_packet_bytes < 4096 {
            bad(
                "mqtt.max_packet_bytes",
                format!("{} is below the minimum of 4096", m.max_packet_bytes),
            );
        }
        if !(1..=1024).contains(&m.max_inflight_batches) {
            bad(
                "mqtt.max_inflight_batches",
                format!("{} must be between 1 and 1024", m.max_inflight_batches),
            );
        }
        if !(1..=300).contains(&m.connect_timeout_s) {
            bad(
                "mqtt.connect_timeout_s",
                format!("{} must be between 1 and 300", m.connect_timeout_s),
            );
        }
        if !(1..=3600).contains(&m.write_timeout_s) {
            bad(
                "mqtt.write_timeout_s",
                format!("{} must be between 1 and 3600", m.write_timeout_s),
            );
        }
        let u = &self.uplink;
        if !(1..=100_000).contains(&u.batch_max_records) {
            bad(
                "uplink.batch_max_records",
                format!("{} must be between 1 and 100000", u.batch_max_records),
            );
        }
        if !(1..=22).contains(&u.zstd_level) {
            bad(
                "uplink.zstd_level",
                format!("{} must be between 1 and 22", u.zstd_level),
            );
        }
        if u.backoff_initial_ms == 0 {
            bad("uplink.backoff_initial_ms", "must be at least 1".into());
        }
        if u.backoff_max_ms < u.backoff_initial_ms {
            bad(
                "uplink.backoff_max_ms",
                format!(
                    "{} is below uplink.backoff_initial_ms ({})",
                    u.backoff_max_ms, u.backoff_initial_ms
                ),
            );
        }
        let i = &self.ingest;
        if i.max_connections == 0 {
            bad("ingest.max_connections", "must be at least 1".into());
        }
        if i.max_connections_per_ip > i.max_connections {
            bad(
                "ingest.max_connections_per_ip",
                format!(
                    "{} exceeds ingest.max_connections ({}); use 0 for no limit",
                    i.max_connections_per_ip, i.max_connections
                ),
            );
        }
        if !(1..=65_536).contains(&i.max_datagrams_in_flight) {
            bad(
                "ingest.max_datagrams_in_flight",
                format!("{} must be between 1 and 65536", i.max_datagrams_in_flight),
            );
        }
        if i.idle_timeout_s == 0 {
            bad("ingest.idle_timeout_s", "must be at least 1".into());
        }
        if !(1..=i.idle_timeout_s.max(1)).contains(&i.first_frame_timeout_s) {
            bad(
                "ingest.first_frame_timeout_s",
                format!(
                    "{} must be between 1 and ingest.idle_timeout_s ({})",
                    i.first_frame_timeout_s, i.idle_timeout_s
                ),
            );
        }
        if !(256..=1024 * 1024).contains(&i.max_frame_bytes) {
            bad(
                "ingest.max_frame_bytes",
                format!("{} must be between 256 and 1048576", i.max_frame_bytes),
            );
        }
        // The largest frame's records, stored, must fit an empty buffer many times over.
        let frame_bound = 64 * i.max_frame_bytes as u64;
        if b.max_bytes < frame_bound {
            bad(
                "buffer.max_bytes",
                format!(
                    "{} is below 64 × ingest.max_frame_bytes ({frame_bound})",
                    b.max_bytes
                ),
            );
        }
        if self.listeners.is_empty() && self.serial.is_empty() {
            bad(
                "listeners",
                "at least one [[listeners]] or [[serial]] entry is needed, e.g. protocol = \"teltonika\", bind = \"0.0.0.0:5027\"".into(),
            );
        }
        // One record's JSON is at most about six times its frame bytes (a 3-byte Codec 8E IO
        // element becomes `"65535":255,`, and `raw` adds twice its bytes) plus fixed fields;
        // a batch of one record must always fit a packet, or the uplink could never send it.
        let one_record_bound = 6 * i.max_frame_bytes + 8192;
        if m.max_packet_bytes < one_record_bound {
            bad(
                "mqtt.max_packet_bytes",
                format!(
                    "{} cannot carry one record from a frame of ingest.max_frame_bytes = {}; \
                     use at least {one_record_bound}",
                    m.max_packet_bytes, i.max_frame_bytes
                ),
            );
        }
        let mut binds = std::collections::HashSet::new();
        for (n, l) in self.listeners.iter().enumerate() {
            let udp = match registry::lookup(&l.protocol) {
                Some(spec) if spec.needs_device_id => {
                    bad(
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
                    bad(
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
                Err(e) => bad(
                    &format!("listeners[{n}].bind"),
                    format!("{:?} is not an address:port ({e})", l.bind),
                ),
                Ok(addr) => {
                    // TCP and UDP may share a port (Teltonika uses 5027 for both).
                    if !binds.insert((udp, addr)) {
                        bad(
                            &format!("listeners[{n}].bind"),
                            format!("{addr} is used twice"),
                        );
                    }
                }
            }
        }
        let mut paths = std::collections::HashSet::new();
        for (n, s) in self.serial.iter().enumerate() {
            let key = |k: &str| format!("serial[{n}].{k}");
            match registry::lookup(&s.protocol) {
                None => bad(
                    &key("protocol"),
                    format!(
                        "unknown protocol {:?}; known: {}",
                        s.protocol,
                        registry::names().join(", ")
                    ),
                ),
                Some(spec) if matches!(spec.transport, registry::Transport::Datagram(_)) => bad(
                    &key("protocol"),
                    format!(
                        "{} is a UDP protocol; a serial port needs a stream protocol",
                        s.protocol
                    ),
                ),
                Some(spec) if spec.needs_device_id && s.device_id.is_none() => bad(
                    &key("device_id"),
                    format!(
                        "{} frames carry no device id; set one for this port",
                        s.protocol
                    ),
                ),
                Some(_) => {}
            }
            if s.path.is_empty() {
                bad(&key("path"), "must not be empty".into());
            } else if !paths.insert(s.path.as_str()) {
                bad(&key("path"), format!("{} is used twice", s.path));
            }
            if !(50..=4_000_000).contains(&s.baud) {
                bad(
                    &key("baud"),
                    format!("{} must be between 50 and 4000000", s.baud),
                );
            }
            if s.device_id.as_deref().is_some_and(str::is_empty) {
                bad(&key("device_id"), "must not be empty".into());
            }
            if !(500..=3_600_000).contains(&s.reopen_max_ms) {
                bad(
                    &key("reopen_max_ms"),
                    format!("{} must be between 500 and 3600000", s.reopen_max_ms),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("fleetedge.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = r#"
gateway_id = "gw-001"
[[listeners]]
protocol = "teltonika"
bind = "127.0.0.1:5027"
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
        assert_eq!(s.mqtt.client_id, "fleetedge-gw-001");
        assert_eq!(s.buffer.max_records, 1_000_000);
        assert_eq!(s.buffer.when_full, WhenFullSetting::Block);
        assert_eq!(s.uplink.compression, Compression::Zstd);
        assert_eq!(s.uplink.linger_ms, 200);
    }

    #[test]
    fn a_per_address_limit_above_the_connection_limit_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            format!("{MINIMAL}\n[ingest]\nmax_connections = 10\nmax_connections_per_ip = 11\n");
        let err = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap_err();
        assert!(
            err.to_string().contains("ingest.max_connections_per_ip:"),
            "{err}"
        );
        let text =
            format!("{MINIMAL}\n[ingest]\nmax_connections = 10\nmax_connections_per_ip = 10\n");
        let s = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap();
        assert_eq!(s.ingest.max_connections_per_ip, 10);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let env = HashMap::from([
            ("FLEETEDGE__MQTT__PORT".to_string(), "2883".to_string()),
            ("FLEETEDGE__BUFFER__PATH".to_string(), "/tmp/x".to_string()),
            ("FLEETEDGE__GATEWAY_ID".to_string(), "gw-env".to_string()),
            (
                "FLEETEDGE__UPLINK__COMPRESSION".to_string(),
                "gzip".to_string(),
            ),
        ]);
        let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(env)).unwrap();
        assert_eq!(s.mqtt.port, 2883);
        assert_eq!(s.buffer.path, PathBuf::from("/tmp/x"));
        assert_eq!(s.gateway_id, "gw-env");
        assert_eq!(s.uplink.compression, Compression::Gzip);
    }

    #[test]
    fn environment_values_are_taken_verbatim_for_strings_and_parsed_for_typed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let env = HashMap::from([
            // Numeric-looking strings keep their leading zeros and their spelling.
            ("FLEETEDGE__GATEWAY_ID".to_string(), "007".to_string()),
            ("FLEETEDGE__MQTT__USERNAME".to_string(), "0123".to_string()),
            ("FLEETEDGE__MQTT__PASSWORD".to_string(), "1e3".to_string()),
            (
                "FLEETEDGE__MQTT__TOPIC_PREFIX".to_string(),
                "TRUE".to_string(),
            ),
            // Typed keys are still parsed from the text.
            (
                "FLEETEDGE__BUFFER__MAX_RECORDS".to_string(),
                "5000".to_string(),
            ),
            (
                "FLEETEDGE__MQTT__TLS__ENABLED".to_string(),
                "false".to_string(),
            ),
        ]);
        let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(env)).unwrap();
        assert_eq!(s.gateway_id, "007");
        assert_eq!(s.mqtt.client_id, "fleetedge-007");
        assert_eq!(s.mqtt.topic_prefix, "TRUE");
        let (user, password) = s.mqtt.credentials().unwrap().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("0123", "1e3"));
        assert_eq!(s.buffer.max_records, 5000);
        assert!(!s.mqtt.tls.enabled);

        let env = HashMap::from([(
            "FLEETEDGE__BUFFER__MAX_RECORDS".to_string(),
            "lots".to_string(),
        )]);
        let err = Settings::load_with_env(&write(&dir, MINIMAL), Some(env)).unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
gateway_id = "gw/1"
[buffer]
max_records = 5
resume_below_percent = 100
[mqtt]
topic_prefix = "a/#"
[[listeners]]
protocol = "nope"
bind = "localhost"
"#;
        let err = Settings::load_with_env(&write(&dir, text), Some(HashMap::new())).unwrap_err();
        let all = err.to_string();
        for key in [
            "gateway_id:",
            "buffer.max_records:",
            "buffer.resume_below_percent:",
            "mqtt.topic_prefix:",
            "listeners[0].protocol:",
            "listeners[0].bind:",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
        assert_eq!(err.problems.len(), 6, "{all}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let typo = format!("{MINIMAL}\n[uplink]\nlinger_msec = 5\n");
        let err = Settings::load_with_env(&write(&dir, &typo), Some(HashMap::new())).unwrap_err();
        assert!(err.to_string().contains("linger_msec"), "{err}");
        let bad = format!("{MINIMAL}\n[uplink]\ncompression = \"lz4\"\n");
        let err = Settings::load_with_env(&write(&dir, &bad), Some(HashMap::new())).unwrap_err();
        assert!(err.to_string().contains("lz4"), "{err}");
        let missing = Settings::load_with_env(&dir.path().join("none.toml"), None).unwrap_err();
        assert!(missing.to_string().contains("none.toml"), "{missing}");
    }

    #[test]
    fn every_unknown_key_and_every_bad_value_are_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
gateway_id = "gw-1"
colour = "blue"
[mqtt]
hots = "broker"
port = 0
[[listeners]]
protocol = "teltonika"
bind = "127.0.0.1:5027"
allowed = ["1"]
"#;
        let env = HashMap::from([("FLEETEDGE__UPLINK__LINGER".to_string(), "5".to_string())]);
        let err = Settings::load_with_env(&write(&dir, text), Some(env)).unwrap_err();
        let all = err.to_string();
        for key in [
            "colour: unknown key",
            "mqtt.hots: unknown key",
            "listeners[0].allowed: unknown key",
            "uplink.linger: unknown key",
            // Checked too, although the file also has unknown keys.
            "mqtt.port: must not be 0",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
        assert_eq!(err.problems.len(), 5, "{all}");
        assert!(
            all.contains("known here: ack_reports, allowed_devices"),
            "{all}"
        );
    }

    #[test]
    fn passwords_come_verbatim_from_the_environment_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}\n[mqtt]\nusername = \"gw\"\n");
        let env = HashMap::from([("FLEETEDGE__MQTT__PASSWORD".to_string(), "0012".to_string())]);
        let s = Settings::load_with_env(&write(&dir, &text), Some(env)).unwrap();
        let (user, password) = s.mqtt.credentials().unwrap().unwrap();
        assert_eq!(user, "gw");
        assert_eq!(password.expose(), "0012", "not parsed as the number 12");
        let shown = format!("{s:?}");
        assert!(!shown.contains("0012"), "{shown}");
        assert!(shown.contains("password: Some(\"***\")"), "{shown}");
        let dumped = toml::to_string(&s).unwrap();
        assert!(!dumped.contains("0012"), "{dumped}");
    }

    #[test]
    fn password_file_is_read_and_trimmed_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret word\r\n").unwrap();
        let text = format!(
            "{MINIMAL}\n[mqtt]\nusername = \"gw\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let s = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap();
        let (_, password) = s.mqtt.credentials().unwrap().unwrap();
        assert_eq!(password.expose(), "s3cret word");

        std::fs::remove_file(&file).unwrap();
        let err = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap_err();
        let all = err.to_string();
        assert!(all.contains("mqtt.password_file: cannot read"), "{all}");
        assert!(all.contains(&file.display().to_string()), "{all}");

        std::fs::write(&file, "x\n").unwrap();
        let env = HashMap::from([("FLEETEDGE__MQTT__PASSWORD".to_string(), "y".to_string())]);
        let err = Settings::load_with_env(&write(&dir, &text), Some(env)).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn uplink_and_tls_keys_are_validated_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}\n[mqtt]\npassword = \"pw\"\nstatus_interval_s = 100000\n\
             [mqtt.tls]\nenabled = true\nclient_cert_file = \"/c.pem\"\n\
             [uplink]\nmax_bytes_per_s = 5000000000\nshutdown_publish_s = 4000\n"
        );
        let err = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap_err();
        let all = err.to_string();
        for key in [
            "mqtt.username:",
            "mqtt.status_interval_s:",
            "mqtt.tls.ca_file:",
            "uplink.max_bytes_per_s:",
            "uplink.shutdown_publish_s:",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
        assert!(!all.contains("pw"), "the password leaked into:\n{all}");
        // Disabled TLS checks no files; defaults are the documented ones.
        let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
        assert!(!s.mqtt.tls.enabled);
        assert_eq!(s.mqtt.status_interval_s, 60);
        assert_eq!(s.uplink.max_messages_per_s, 0);
        assert_eq!(s.uplink.max_bytes_per_s, 0);
        assert_eq!(s.uplink.shutdown_publish_s, 5);
    }

    #[test]
    fn buffer_alert_and_reclaim_keys_default_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
        assert_eq!(s.buffer.alert_records, None);
        let half = s.buffer.options().alert_level();
        assert_eq!(half, 500_000, "half of max_records");
        assert_eq!(s.buffer.reclaim_above_bytes, 64 << 20);
        let ok = format!(
            "{MINIMAL}\n[buffer]\nmax_records = 10000\nalert_records = 0\nreclaim_above_bytes = 0\n"
        );
        let s = Settings::load_with_env(&write(&dir, &ok), Some(HashMap::new())).unwrap();
        assert_eq!(s.buffer.options().alert_level(), 0, "0 turns the alert off");
        let bad = format!(
            "{MINIMAL}\n[buffer]\nmax_records = 10000\nalert_records = 10001\nreclaim_above_bytes = 1000\n"
        );
        let err = Settings::load_with_env(&write(&dir, &bad), Some(HashMap::new())).unwrap_err();
        let all = err.to_string();
        assert!(all.contains("buffer.alert_records:"), "{all}");
        assert!(all.contains("buffer.reclaim_above_bytes:"), "{all}");
        assert_eq!(err.problems.len(), 2, "{all}");
    }

    /// The commented example must name every setting, so installers can find them all.
    #[test]
    fn example_config_is_complete_and_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleetedge.example.toml");
        Settings::load_with_env(&example, Some(HashMap::new())).unwrap();
        // Optional sections (a serial port) are shown commented out with `#: `; with the
        // marker removed the example must still be valid and name every key.
        let text = std::fs::read_to_string(&example)
            .unwrap()
            .lines()
            .map(|l| l.strip_prefix("#: ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap();
        assert!(!s.serial.is_empty(), "the example shows no [[serial]] port");
        let file: toml::Table = toml::from_str(&text).unwrap();
        let mut listed = Vec::new();
        leaf_keys("", &toml::Value::Table(file), &mut listed);
        let mut all = Vec::new();
        let defaults = toml::Value::try_from(&s).unwrap();
        leaf_keys("", &defaults, &mut all);
        for key in &all {
            assert!(
                listed.contains(key),
                "fleetedge.example.toml does not list {key}"
            );
        }
    }

    #[test]
    fn http_bind_is_an_address_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let load = |bind: &str| {
            let text = format!("{MINIMAL}\n[http]\nbind = {bind:?}\n");
            Settings::load_with_env(&write(&dir, &text), Some(HashMap::new()))
        };
        let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
        assert_eq!(s.http.bind, "127.0.0.1:9780");
        assert_eq!(load("").unwrap().http.addr(), Ok(None));
        let v6 = load("[::1]:9100").unwrap().http.addr().unwrap();
        assert_eq!(v6, Some("[::1]:9100".parse().unwrap()));
        for bad in ["localhost", "localhost:9780", "127.0.0.1", "127.0.0.1:0"] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains("http.bind:"), "{bad}: {err}");
        }
    }

    #[test]
    fn http_connections_and_token_are_checked_naming_the_key_never_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let load = |http: &str, env: &[(&str, &str)]| {
            let text = format!("{MINIMAL}\n[http]\n{http}\n");
            let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            Settings::load_with_env(&write(&dir, &text), Some(env.collect()))
        };
        let s = load("", &[]).unwrap();
        assert_eq!(s.http.max_connections, 16);
        assert_eq!(s.http.token(), Ok(None));
        for bad in ["0", "1025"] {
            let err = load(&format!("max_connections = {bad}"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("http.max_connections: "), "{bad}: {err}");
        }
        let good = "0123456789abcdef-ok";
        let s = load("", &[("FLEETEDGE__HTTP__TOKEN", good)]).unwrap();
        assert_eq!(s.http.token(), Ok(Some(Secret::new(good))));
        assert!(!format!("{s:?}").contains(good), "the token was printed");
        for bad in ["short", "with a space in the token"] {
            let err = load(&format!("token = {bad:?}"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("http.token: "), "{bad}: {err}");
            assert!(!err.contains(bad), "the token is in the error: {err}");
        }
        let file = dir.path().join("http-token");
        std::fs::write(&file, format!("{good}\n")).unwrap();
        let from_file = format!("token_file = {:?}", file.display().to_string());
        let s = load(&from_file, &[]).unwrap();
        assert_eq!(s.http.token(), Ok(Some(Secret::new(good))));
        let both = load(&from_file, &[("FLEETEDGE__HTTP__TOKEN", good)])
            .unwrap_err()
            .to_string();
        assert!(both.contains("http.token_file: set either"), "{both}");
        let missing = load("token_file = \"/nonexistent/token\"", &[])
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("http.token_file: cannot read /nonexistent/token"),
            "{missing}"
        );
    }

    fn leaf_keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaf_keys(&p, v, out);
                }
            }
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for item in items {
                    leaf_keys(&format!("{prefix}[]"), item, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
}
