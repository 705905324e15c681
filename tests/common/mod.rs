//! Helpers for the integration tests: real processes only.
//!
//! - [`free_port`]: a loopback port nobody listens on (bind `127.0.0.1:0`, read, drop).
//! - [`Mosquitto`]: a broker on a port of ours, with its config, log and persistence file in a
//!   tempdir; killed on drop.
//! - [`Gateway`]: the real `fleetedge run` binary with a config written into a tempdir, its
//!   stderr captured to a file; SIGKILL and restart on the same buffer; killed on drop.
//! - [`Collector`]: an MQTT subscriber on `fleetedge/+/records` that decodes every batch,
//!   checks its shape, and keeps every record it carried.
//! - [`Device`]: a simulated Teltonika tracker (IMEI login, Codec 8 packets, count replies),
//!   and [`run_device`], a device's whole life: connect, send, count only what was answered,
//!   reconnect and resend on any failure.
//! - [`Ledger`] and [`verify_delivery`]: what the devices sent and had accepted, checked
//!   against what reached the broker.
//!
//! Every wait has a timeout and every loop is bounded in count or time. When a test panics,
//! the gateway's and the broker's logs are printed (from `Drop`) to help debugging.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use firmware_protocols::record::format_rfc3339_ms;
use firmware_protocols::teltonika::encode::{encode_codec8, encode_imei, AvlRecord, IoData};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const RECORDS_TOPIC_FILTER: &str = "fleetedge/+/records";
pub const SCHEMA: &str = "fleetedge.batch.v1";

// ---------------------------------------------------------------------------------------------
// Ports and small waits
// ---------------------------------------------------------------------------------------------

/// A loopback port that was free a moment ago. Ports handed out once are never handed out
/// again by this process, so tests running in parallel do not collide with each other.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no fresh free port in 100 tries");
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether something accepts TCP on `127.0.0.1:port` (one attempt, 500 ms at most).
pub async fn accepts_tcp(port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            TcpStream::connect(loopback(port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The last `max` bytes of `text` (logs can be long; the end is what matters).
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Waits up to `timeout` for `child` to exit; SIGKILLs it if it did not.
fn reap(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// Mosquitto
// ---------------------------------------------------------------------------------------------

fn mosquitto_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(
            [
                "/usr/sbin",
                "/usr/local/sbin",
                "/usr/bin",
                "/opt/homebrew/sbin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
        .expect("mosquitto is not installed (see .ci/install-deps)")
}

/// A mosquitto broker on `127.0.0.1:port`.
///
/// Persistence is on, in the tempdir: [`Mosquitto::stop`] stops the broker with SIGTERM, on
/// which mosquitto saves its sessions, so a collector's persistent session (its subscription
/// and the QoS 1 messages queued for it) survives a broker restart. Without that, a batch the
/// broker acknowledged to the gateway but had not yet delivered to the collector would be
/// lost by the broker, and a restart test would fail for the broker's fault, not the
/// gateway's.
pub struct Mosquitto {
    port: u16,
    dir: tempfile::TempDir,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    pub async fn start(port: u16) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir for mosquitto");
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let text = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {}/\n\
             persistence_file mosquitto.db\n\
             max_queued_messages 0\n\
             log_dest file {}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             # Only has an effect when the tests run as root: stay root so the broker can\n\
             # write its log and database into our tempdir.\n\
             user root\n",
            dir.path().display(),
            log.display()
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let mut broker = Mosquitto {
            port,
            dir,
            conf,
            log,
            child: None,
        };
        broker.spawn().await;
        broker
    }

    /// A broker whose listeners and security are `conf` (mosquitto.conf lines: `listener`s
    /// with their `cafile`/`certfile`/`keyfile`/`require_certificate`, `allow_anonymous`,
    /// `password_file`, `per_listener_settings true` first if needed) instead of the one
    /// anonymous listener of [`Mosquitto::start`]. `port` must be a plain TCP listener in
    /// `conf`: the start waits for it. Persistence and logging as in [`Mosquitto::start`].
    pub async fn start_with_conf(port: u16, conf: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir for mosquitto");
        let conf_path = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let text = format!(
            "{conf}\n\
             persistence true\n\
             persistence_location {}/\n\
             persistence_file mosquitto.db\n\
             max_queued_messages 0\n\
             log_dest file {}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             user root\n",
            dir.path().display(),
            log.display()
        );
        std::fs::write(&conf_path, text).expect("write mosquitto.conf");
        let mut broker = Mosquitto {
            port,
            dir,
            conf: conf_path,
            log,
            child: None,
        };
        broker.spawn().await;
        broker
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if accepts_tcp(self.port).await {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "mosquitto on port {} exited at start ({status}); log:\n{}",
                    self.port,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not accept on port {} within 10 s; log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the broker with SIGTERM (it saves its sessions), waiting up to 5 s before a
    /// SIGKILL. Every client connection drops.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        tokio::task::spawn_blocking(move || reap(&mut child, Duration::from_secs(5)))
            .await
            .expect("reaping mosquitto");
    }

    /// Starts the broker again on the same port, config and persistence file.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto log (port {}, {}) -----\n{}\n----- end of mosquitto log -----",
                self.port,
                self.dir.path().display(),
                tail(&self.log(), 20_000)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

/// A `Command` for the gateway binary under test. `FLEETEDGE_TEST_EXEC_PREFIX`, if set, is a
/// space-separated command put in front of it: `cross/test` runs the ARM test binaries under
/// qemu-user, and without binfmt_misc the ARM gateway they spawn must be started through qemu
/// too (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`). Signals to the qemu process reach the
/// gateway, so SIGTERM/SIGKILL tests behave the same.
pub fn gateway_command() -> Command {
    let exe = env!("CARGO_BIN_EXE_fleetedge");
    let prefix = std::env::var("FLEETEDGE_TEST_EXEC_PREFIX").unwrap_or_default();
    let mut words = prefix.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// A gateway config: every key as a dotted TOML key (`buffer.max_records`) with a TOML value
/// literal, so a test overrides any default with [`GatewayConfig::set`] without clashing
/// tables. `buffer.path` and the listener are filled in by [`Gateway::start`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub gateway_id: String,
    keys: BTreeMap<String, String>,
    listener_keys: BTreeMap<String, String>,
    /// Listeners added with [`GatewayConfig::listener`]; when there are none, the config has
    /// the one default Teltonika listener (with the [`GatewayConfig::set_listener`] keys).
    listeners: Vec<AddedListener>,
    /// `[[serial]]` entries added with [`GatewayConfig::serial`], each as (key, TOML value).
    serial: Vec<Vec<(String, String)>>,
}

/// One `[[listeners]]` entry added with [`GatewayConfig::listener`]; its port is chosen by
/// [`Gateway::start`].
#[derive(Debug, Clone)]
struct AddedListener {
    protocol: String,
    keys: Vec<(String, String)>,
}

/// Whether `protocol` runs over UDP (per the registry); unknown names count as TCP so the
/// gateway itself reports them.
pub fn is_udp_protocol(protocol: &str) -> bool {
    firmware_protocols::registry::lookup(protocol).is_some_and(|spec| {
        matches!(
            spec.transport,
            firmware_protocols::registry::Transport::Datagram(_)
        )
    })
}

/// A loopback port free for both TCP (see [`free_port`]) and UDP a moment ago.
pub fn free_udp_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if std::net::UdpSocket::bind(loopback(port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port in 100 tries");
}

impl GatewayConfig {
    /// Defaults for tests: the broker on `127.0.0.1:mqtt_port`, a small linger, fast
    /// reconnects, a small sled cache, and the HTTP endpoint on a free loopback port of its
    /// own (the default 9780 would collide between gateways running in parallel).
    pub fn new(gateway_id: &str, mqtt_port: u16) -> GatewayConfig {
        let mut keys = BTreeMap::new();
        for (k, v) in [
            ("log.level", "\"info\"".to_string()),
            ("mqtt.host", "\"127.0.0.1\"".to_string()),
            ("mqtt.port", mqtt_port.to_string()),
            ("mqtt.keep_alive_s", "5".to_string()),
            ("mqtt.connect_timeout_s", "2".to_string()),
            ("uplink.linger_ms", "20".to_string()),
            ("uplink.backoff_initial_ms", "100".to_string()),
            ("uplink.backoff_max_ms", "500".to_string()),
            ("buffer.cache_capacity_bytes", "4194304".to_string()),
            ("http.bind", format!("\"127.0.0.1:{}\"", free_port())),
        ] {
            keys.insert(k.to_string(), v);
        }
        GatewayConfig {
            gateway_id: gateway_id.to_string(),
            keys,
            listener_keys: BTreeMap::new(),
            listeners: Vec::new(),
            serial: Vec::new(),
        }
    }

    /// Adds a `[[listeners]]` entry for `protocol` on a free loopback port (TCP, or UDP for
    /// datagram protocols such as `teltonika-udp`), with extra keys as (key, TOML value
    /// literal), e.g. `&[("ack_reports", "true")]`. Once one is added, the default Teltonika
    /// listener is not written; at least one added listener must be TCP ([`Gateway::start`]
    /// waits for it to accept). [`Gateway::listener_addr`] gives the bound address.
    pub fn listener(mut self, protocol: &str, keys: &[(&str, &str)]) -> GatewayConfig {
        self.listeners.push(AddedListener {
            protocol: protocol.to_string(),
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        self
    }

    /// Adds a `[[serial]]` entry: `path`, `protocol`, and extra keys as (key, TOML value
    /// literal), e.g. `&[("device_id", "\"gnss-1\""), ("reopen_max_ms", "1000")]`. Listeners
    /// are unaffected (the default Teltonika listener stays unless others are added).
    pub fn serial(mut self, path: &Path, protocol: &str, keys: &[(&str, &str)]) -> GatewayConfig {
        let mut entry = vec![
            ("path".to_string(), toml_string(&path.display().to_string())),
            ("protocol".to_string(), toml_string(protocol)),
        ];
        entry.extend(keys.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.serial.push(entry);
        self
    }

    /// Sets `key` (dotted, e.g. `buffer.when_full`) to a TOML value literal (`"\"block\""`,
    /// `100`).
    pub fn set(mut self, key: &str, toml_value: &str) -> GatewayConfig {
        self.keys.insert(key.to_string(), toml_value.to_string());
        self
    }

    /// Sets a key of the test's one `[[listeners]]` entry (e.g. `allowed_devices`).
    pub fn set_listener(mut self, key: &str, toml_value: &str) -> GatewayConfig {
        self.listener_keys
            .insert(key.to_string(), toml_value.to_string());
        self
    }

    /// `ports[i]` is the port of added listener `i` (unused without added listeners).
    fn render(&self, buffer_dir: &Path, listen_port: u16, ports: &[u16]) -> String {
        let mut text = format!("gateway_id = \"{}\"\n", self.gateway_id);
        let mut keys = self.keys.clone();
        // A test may put the buffer elsewhere (on a small tmpfs) with `set("buffer.path", …)`.
        keys.entry("buffer.path".into()).or_insert_with(|| {
            format!(
                "\"{}\"",
                buffer_dir.display().to_string().replace('\\', "\\\\")
            )
        });
        for (k, v) in &keys {
            text.push_str(&format!("{k} = {v}\n"));
        }
        if self.listeners.is_empty() {
            text.push_str(&format!(
                "\n[[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:{listen_port}\"\n"
            ));
            for (k, v) in &self.listener_keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        for (l, port) in self.listeners.iter().zip(ports) {
            text.push_str(&format!(
                "\n[[listeners]]\nprotocol = {}\nbind = \"127.0.0.1:{port}\"\n",
                toml_string(&l.protocol)
            ));
            for (k, v) in &l.keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        for entry in &self.serial {
            text.push_str("\n[[serial]]\n");
            for (k, v) in entry {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    }
}

/// `s` as a TOML basic string literal.
pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The real `fleetedge run`, as a child process.
pub struct Gateway {
    pub gateway_id: String,
    pub listen_port: u16,
    /// (protocol, port) of each listener added with [`GatewayConfig::listener`], in order.
    pub listeners: Vec<(String, u16)>,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Gateway {
    /// Writes the config into a fresh tempdir (buffer in `<tempdir>/buffer`, a free listener
    /// port), starts the binary and waits until the listener accepts.
    pub async fn start(config: GatewayConfig) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir for the gateway");
        let ports: Vec<u16> = config
            .listeners
            .iter()
            .map(|l| {
                if is_udp_protocol(&l.protocol) {
                    free_udp_port()
                } else {
                    free_port()
                }
            })
            .collect();
        let listen_port = if config.listeners.is_empty() {
            free_port()
        } else {
            config
                .listeners
                .iter()
                .zip(&ports)
                .find(|(l, _)| !is_udp_protocol(&l.protocol))
                .map(|(_, port)| *port)
                .expect("Gateway::start waits for a TCP listener: add at least one")
        };
        let config_path = dir.path().join("fleetedge.toml");
        let text = config.render(&dir.path().join("buffer"), listen_port, &ports);
        std::fs::write(&config_path, text).expect("write the gateway config");
        let log_path = dir.path().join("fleetedge.log");
        let mut gateway = Gateway {
            gateway_id: config.gateway_id.clone(),
            listen_port,
            listeners: config
                .listeners
                .iter()
                .map(|l| l.protocol.clone())
                .zip(ports)
                .collect(),
            dir,
            config_path,
            log_path,
            child: None,
            starts: 0,
        };
        gateway.spawn().await;
        gateway
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.listen_port)
    }

    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The loopback address of added listener `index` (in [`GatewayConfig::listener`] order).
    pub fn listener_addr(&self, index: usize) -> SocketAddr {
        loopback(self.listeners[index].1)
    }

    /// The loopback address of the first added listener for `protocol`.
    pub fn listener_addr_of(&self, protocol: &str) -> SocketAddr {
        let port = self
            .listeners
            .iter()
            .find(|(p, _)| p == protocol)
            .unwrap_or_else(|| panic!("no {protocol} listener in {:?}", self.listeners))
            .1;
        loopback(port)
    }

    /// Waits up to `timeout` for a log line holding every one of `parts`; returns it.
    pub async fn wait_for_log_line(&self, parts: &[&str], timeout: Duration) -> Option<String> {
        let find = || {
            self.log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        };
        wait_until(timeout, || find().is_some()).await;
        find()
    }

    /// Like [`Gateway::wait_for_log_line`], but only lines the current start wrote (after the
    /// harness's marker for it) count: after a restart, a line from the run before is no
    /// proof.
    pub async fn wait_for_log_line_this_start(
        &self,
        parts: &[&str],
        timeout: Duration,
    ) -> Option<String> {
        let marker = format!("===== test harness: start #{} =====", self.starts);
        let find = || {
            let log = self.log();
            let from = log.rfind(&marker)?;
            log[from..]
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        };
        wait_until(timeout, || find().is_some()).await;
        find()
    }

    /// How many log lines hold every one of `parts`.
    pub fn count_log_lines(&self, parts: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    pub fn config_text(&self) -> String {
        read_log(&self.config_path)
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the gateway is already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the gateway log");
        let _ = writeln!(log, "===== test harness: start #{} =====", self.starts);
        let stdout = log.try_clone().expect("clone the log handle");
        let mut cmd = gateway_command();
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        // Our settings, not whatever the environment of the test run says.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FLEETEDGE__") {
                cmd.env_remove(name);
            }
        }
        self.child = Some(cmd.spawn().expect("spawn fleetedge"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if accepts_tcp(self.listen_port).await {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "fleetedge exited at start #{} ({status}); config:\n{}\nlog:\n{}",
                    self.starts,
                    self.config_text(),
                    tail(&self.log(), 20_000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "fleetedge did not accept on port {} within 15 s; log:\n{}",
                self.listen_port,
                tail(&self.log(), 20_000)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown code runs, exactly like a power cut for the process.
    pub async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            tokio::task::spawn_blocking(move || {
                let _ = child.wait();
            })
            .await
            .expect("reaping fleetedge");
        }
    }

    /// SIGTERM, the way systemd stops the service; waits up to `timeout` for the exit and
    /// returns whether it was a clean one (SIGKILLs it otherwise).
    pub async fn stop_gracefully(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return status.success();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            false
        })
        .await
        .expect("reaping fleetedge")
    }

    /// Starts the binary again with the same config, on the same buffer and port.
    pub async fn restart(&mut self) {
        self.kill_9().await;
        self.spawn().await;
    }

    /// Whether the process is still running (it should never exit on its own).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- fleetedge log ({}, {} start(s)) -----\n{}\n----- end of fleetedge log -----",
                self.gateway_id,
                self.starts,
                tail(&self.log(), 40_000)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Collector
// ---------------------------------------------------------------------------------------------

/// One record as it arrived at the broker.
#[derive(Debug, Clone)]
pub struct Got {
    pub gateway_id: String,
    pub seq: u64,
    pub device_id: String,
    pub time: String,
    /// The whole record JSON, `seq` included.
    pub record: Value,
}

#[derive(Debug, Default)]
pub struct Collected {
    pub batches: u64,
    /// The largest payload seen, in bytes.
    pub max_payload_bytes: usize,
    pub records: Vec<Got>,
    /// Distinct (device_id, time) seen.
    pub unique: HashSet<(String, String)>,
    /// Every way a batch broke the cloud contract.
    pub errors: Vec<String>,
    /// Every record JSON of every batch, in arrival order, including records that `records`
    /// leaves out (e.g. a null `time`, which the contract allows for records without a
    /// device time).
    pub every_record: Vec<Value>,
}

/// An MQTT subscriber to every gateway's record batches.
///
/// It uses a persistent session (clean session off), so its subscription and the messages
/// queued for it survive a restart of the broker (see [`Mosquitto`]).
pub struct Collector {
    state: Arc<Mutex<Collected>>,
    task: tokio::task::JoinHandle<()>,
    _client: AsyncClient,
}

impl Collector {
    /// Connects, subscribes with QoS 1 and returns once the SUBACK arrived.
    pub async fn start(broker_port: u16, client_id: &str) -> Collector {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker_port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(false)
            .set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client
            .subscribe(RECORDS_TOPIC_FILTER, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(ack))) => return Ok(ack),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match subscribed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("collector on port {broker_port}: {e}"),
            Err(_) => panic!("collector on port {broker_port}: no SUBACK within 10 s"),
        }
        let state = Arc::new(Mutex::new(Collected::default()));
        let task = {
            let (state, client) = (state.clone(), client.clone());
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let mut s = state.lock().unwrap();
                            take_batch(&mut s, &p.topic, &p.payload);
                        }
                        Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                            // The broker forgot us: subscribe again (never awaited here).
                            let _ = client.try_subscribe(RECORDS_TOPIC_FILTER, QoS::AtLeastOnce);
                        }
                        Ok(_) => {}
                        // Broker gone: rumqttc reconnects on the next poll.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        Collector {
            state,
            task,
            _client: client,
        }
    }

    /// Waits until `n` distinct (device_id, time) records arrived; returns how many did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        wait_until(timeout, || self.unique_count() >= n).await;
        self.unique_count()
    }

    /// Waits until every (device_id, time) in `keys` arrived; returns how many are missing.
    pub async fn wait_for_all(&self, keys: &HashSet<(String, String)>, timeout: Duration) -> usize {
        let missing = || {
            let s = self.state.lock().unwrap();
            keys.iter().filter(|k| !s.unique.contains(*k)).count()
        };
        wait_until(timeout, || missing() == 0).await;
        missing()
    }

    pub fn unique_count(&self) -> usize {
        self.state.lock().unwrap().unique.len()
    }

    /// A copy of everything so far.
    /// The largest payload seen so far, in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.state.lock().unwrap().max_payload_bytes
    }

    /// Every record JSON so far (see [`Collected::every_record`]).
    pub fn every_record(&self) -> Vec<Value> {
        self.state.lock().unwrap().every_record.clone()
    }

    /// Waits up to `timeout` until `done` holds for every record so far; returns them.
    pub async fn wait_for_records(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_until(timeout, || done(&self.state.lock().unwrap().every_record)).await;
        self.every_record()
    }

    pub fn snapshot(&self) -> (Vec<Got>, Vec<String>, u64) {
        let s = self.state.lock().unwrap();
        (s.records.clone(), s.errors.clone(), s.batches)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decodes one payload, checks the batch against the cloud contract and keeps its records.
fn take_batch(s: &mut Collected, topic: &str, payload: &[u8]) {
    s.batches += 1;
    s.max_payload_bytes = s.max_payload_bytes.max(payload.len());
    let batch = match fleetedge::uplink::payload::decode_payload(payload) {
        Ok(b) => b,
        Err(e) => {
            s.errors.push(format!(
                "{topic}: undecodable payload ({} bytes): {e}",
                payload.len()
            ));
            return;
        }
    };
    let mut bad = |why: String| s.errors.push(format!("{topic}: {why}"));
    if batch["schema"] != SCHEMA {
        bad(format!("schema is {}", batch["schema"]));
    }
    let gateway_id = batch["gateway_id"].as_str().unwrap_or_default().to_string();
    let topic_gateway = topic.split('/').nth(1).unwrap_or_default();
    if gateway_id.is_empty() || gateway_id != topic_gateway {
        bad(format!(
            "gateway_id {:?} on topic {topic}",
            batch["gateway_id"]
        ));
    }
    let Some(records) = batch["records"].as_array() else {
        bad("no records array".into());
        return;
    };
    if records.is_empty() {
        bad("an empty batch".into());
    }
    if batch["count"].as_u64() != Some(records.len() as u64) {
        bad(format!(
            "count {} but {} records",
            batch["count"],
            records.len()
        ));
    }
    let seqs: Vec<Option<u64>> = records.iter().map(|r| r["seq"].as_u64()).collect();
    if seqs.iter().any(Option::is_none) {
        bad("a record without a numeric seq".into());
    }
    let seqs: Vec<u64> = seqs.into_iter().flatten().collect();
    if seqs.windows(2).any(|w| w[0] >= w[1]) {
        bad(format!("seqs not strictly increasing: {seqs:?}"));
    }
    if batch["first_seq"].as_u64() != seqs.first().copied() {
        bad(format!(
            "first_seq {} but the first record has seq {:?}",
            batch["first_seq"],
            seqs.first()
        ));
    }
    if batch["last_seq"].as_u64() != seqs.last().copied() {
        bad(format!(
            "last_seq {} but the last record has seq {:?}",
            batch["last_seq"],
            seqs.last()
        ));
    }
    for r in records {
        s.every_record.push(r.clone());
        let (Some(seq), Some(device_id), Some(time)) = (
            r["seq"].as_u64(),
            r["device_id"].as_str(),
            r["time"].as_str(),
        ) else {
            s.errors.push(format!(
                "{topic}: a record without seq, device_id or time: {r}"
            ));
            continue;
        };
        s.unique.insert((device_id.to_string(), time.to_string()));
        s.records.push(Got {
            gateway_id: gateway_id.clone(),
            seq,
            device_id: device_id.to_string(),
            time: time.to_string(),
            record: r.clone(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber: any topic, raw messages
// ---------------------------------------------------------------------------------------------

/// One message as a [`Subscriber`] received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Set on a retained message delivered because of the subscription.
    pub retain: bool,
    pub at: Instant,
}

impl Received {
    /// The payload as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// An MQTT subscriber (clean session, QoS 1) to one topic filter that keeps every message
/// it receives, with its retain flag and arrival time.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
    _client: AsyncClient,
}

impl Subscriber {
    /// Connects to `127.0.0.1:broker_port`, subscribes and returns once the SUBACK arrived.
    pub async fn start(broker_port: u16, client_id: &str, filter: &str) -> Subscriber {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker_port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(true)
            .set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        let messages = Arc::new(Mutex::new(Vec::new()));
        // Messages may arrive right after the SUBACK (retained ones): keep them too.
        let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("subscriber {client_id} on port {broker_port}: {e}"),
            Err(_) => panic!("subscriber {client_id} on port {broker_port}: no SUBACK in 10 s"),
        }
        let task = {
            let messages = messages.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            messages.lock().unwrap().push(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                                at: Instant::now(),
                            });
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        Subscriber {
            messages,
            task,
            _client: client,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a message that satisfies `pred`; returns the first one.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let find = || self.messages().into_iter().find(|m| pred(m));
        wait_until(timeout, || find().is_some()).await;
        find()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Simulated Teltonika device
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// What the devices sent, and the check against the broker
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct SentRecord {
    pub imei: String,
    pub record: AvlRecord,
    /// How many times the record went out in a packet (resends after a lost reply count).
    pub times_sent: u32,
    /// The gateway answered the packet carrying it with its full count.
    pub accepted: bool,
}

/// Every record the devices sent, keyed by (device_id, time) as the record JSON writes them.
#[derive(Debug, Default)]
pub struct Ledger {
    pub records: HashMap<(String, String), SentRecord>,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

impl Ledger {
    pub fn sent(&mut self, imei: &str, records: &[AvlRecord]) {
        for r in records {
            self.records
                .entry((imei.to_string(), time_of(r)))
                .or_insert_with(|| SentRecord {
                    imei: imei.to_string(),
                    record: r.clone(),
                    times_sent: 0,
                    accepted: false,
                })
                .times_sent += 1;
        }
    }

    pub fn accepted(&mut self, imei: &str, records: &[AvlRecord]) {
        for r in records {
            if let Some(s) = self.records.get_mut(&(imei.to_string(), time_of(r))) {
                s.accepted = true;
            }
        }
    }

    pub fn accepted_count(&self) -> usize {
        self.records.values().filter(|s| s.accepted).count()
    }

    pub fn resent_count(&self) -> usize {
        self.records.values().filter(|s| s.times_sent > 1).count()
    }
}

/// What the broker received, checked against the ledger:
///
/// - every batch met the contract (schema, gateway_id, count, first/last seq, seq order);
/// - every record came from a device, with every field as the device encoded it;
/// - no `(gateway_id, seq)` carries two different records (seqs are never reused);
/// - a record arrives under more than one seq only if the device sent it more than once
///   (a lost reply); copies under the same seq are identical (redelivery);
/// - every accepted record arrived;
/// - with `exactly_once`, every record arrived exactly once.
///
/// Returns every violation, so a failing test shows them all.
pub fn verify_delivery(
    ledger: &Ledger,
    got: &[Got],
    batch_errors: &[String],
    gateway_id: &str,
    exactly_once: bool,
) -> Vec<String> {
    let mut problems: Vec<String> = batch_errors.iter().map(|e| format!("batch: {e}")).collect();
    let mut by_seq: HashMap<(&str, u64), &Got> = HashMap::new();
    let mut seqs_of: HashMap<(&str, &str), HashSet<u64>> = HashMap::new();
    let mut deliveries: HashMap<(&str, &str), usize> = HashMap::new();
    for g in got {
        if g.gateway_id != gateway_id {
            problems.push(format!(
                "seq {}: gateway_id {:?}, want {gateway_id:?}",
                g.seq, g.gateway_id
            ));
        }
        match ledger.records.get(&(g.device_id.clone(), g.time.clone())) {
            None => problems.push(format!(
                "seq {}: a record no device sent: {} @ {}",
                g.seq, g.device_id, g.time
            )),
            Some(s) => {
                if let Err(e) = check_fields(&s.imei, &s.record, &g.record) {
                    problems.push(format!("seq {} ({} @ {}): {e}", g.seq, g.device_id, g.time));
                }
            }
        }
        match by_seq.get(&(g.gateway_id.as_str(), g.seq)) {
            Some(first) if first.record != g.record => problems.push(format!(
                "({}, {}) carries two different records:\n  {}\n  {}",
                g.gateway_id, g.seq, first.record, g.record
            )),
            Some(_) => {}
            None => {
                by_seq.insert((g.gateway_id.as_str(), g.seq), g);
            }
        }
        seqs_of
            .entry((g.device_id.as_str(), g.time.as_str()))
            .or_default()
            .insert(g.seq);
        *deliveries
            .entry((g.device_id.as_str(), g.time.as_str()))
            .or_default() += 1;
    }
    for ((device, time), seqs) in &seqs_of {
        let sent = ledger
            .records
            .get(&(device.to_string(), time.to_string()))
            .map_or(0, |s| s.times_sent);
        if seqs.len() as u32 > sent {
            let mut seqs: Vec<_> = seqs.iter().collect();
            seqs.sort();
            problems.push(format!(
                "{device} @ {time} was sent {sent} time(s) but stored under {} seqs {seqs:?}",
                seqs.len()
            ));
        }
    }
    let mut missing: Vec<_> = ledger
        .records
        .iter()
        .filter(|(key, s)| s.accepted && !seqs_of.contains_key(&(key.0.as_str(), key.1.as_str())))
        .map(|(key, _)| format!("{} @ {}", key.0, key.1))
        .collect();
    missing.sort();
    if !missing.is_empty() {
        problems.push(format!(
            "{} accepted record(s) never reached the broker, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if exactly_once {
        let mut twice: Vec<_> = deliveries
            .iter()
            .filter(|(_, n)| **n != 1)
            .map(|((d, t), n)| format!("{d} @ {t} ×{n}"))
            .collect();
        twice.sort();
        if !twice.is_empty() {
            problems.push(format!(
                "{} record(s) arrived more than once, e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(10)]
            ));
        }
        let not_arrived = ledger
            .records
            .keys()
            .filter(|k| !seqs_of.contains_key(&(k.0.as_str(), k.1.as_str())))
            .count();
        if not_arrived > 0 {
            problems.push(format!("{not_arrived} sent record(s) never arrived"));
        }
    }
    problems
}

/// Panics with every problem (and the first few lines of context) if there are any.
pub fn assert_no_problems(what: &str, problems: &[String]) {
    if !problems.is_empty() {
        let shown: Vec<_> = problems.iter().take(30).cloned().collect();
        panic!(
            "{what}: {} problem(s):\n  - {}",
            problems.len(),
            shown.join("\n  - ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A device's life
// ---------------------------------------------------------------------------------------------

/// How a simulated device behaves.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub addr: SocketAddr,
    pub imei: String,
    pub index: usize,
    pub per_packet: usize,
    /// Stop after this many accepted records (`None`: until `stop` is set).
    pub total: Option<u64>,
    /// Pause after each answered packet.
    pub pace: Duration,
    /// How long to wait for a count reply before giving up on the connection and resending.
    pub reply_timeout: Duration,
    /// The device gives up (an error) after this.
    pub deadline: Instant,
}

/// Live counters of one device, readable while it runs.
#[derive(Debug, Default)]
pub struct DeviceProgress {
    pub accepted_records: AtomicU64,
    pub refused_packets: AtomicU64,
    pub reconnects: AtomicU64,
    /// Set while a packet waits for its reply: when it was written.
    pub waiting_since: Mutex<Option<Instant>>,
    pub done: AtomicBool,
    /// Set while the device holds back because of [`Controls::pause`].
    pub paused: AtomicBool,
}

/// What the test tells running devices.
#[derive(Debug, Default)]
pub struct Controls {
    /// Devices without a `total` finish after their current packet.
    pub stop: AtomicBool,
    /// Devices send no new packet while set (the current one still gets its reply).
    pub pause: AtomicBool,
}

impl DeviceProgress {
    /// How long the current packet has waited for its reply, if one is outstanding.
    pub fn waiting_for(&self) -> Option<Duration> {
        self.waiting_since.lock().unwrap().map(|t| t.elapsed())
    }
}

/// Runs a device like firmware does: log in, send packets of `per_packet` records, count a
/// packet's records as accepted only when the reply equals its record count, and on a
/// refusal (`0`), a timeout or a broken connection keep the packet and send it again (on a
/// new connection unless it was a refusal). Returns an error for anything a gateway must
/// never do (a reply other than 0 or the count) or when the deadline passes.
pub async fn run_device(
    plan: DevicePlan,
    ledger: SharedLedger,
    progress: Arc<DeviceProgress>,
    controls: Arc<Controls>,
) -> Result<(), String> {
    let mut k: u64 = 0;
    let mut conn: Option<Device> = None;
    let mut attempts: u64 = 0;
    loop {
        let finished = match plan.total {
            Some(total) => k >= total,
            None => controls.stop.load(Ordering::SeqCst),
        };
        if finished {
            progress.done.store(true, Ordering::SeqCst);
            return Ok(());
        }
        if Instant::now() > plan.deadline {
            return Err(format!(
                "device {} passed its deadline with {k} records accepted",
                plan.imei
            ));
        }
        if controls.pause.load(Ordering::SeqCst) {
            // Between packets only: nothing is outstanding while paused.
            progress.paused.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        progress.paused.store(false, Ordering::SeqCst);
        attempts += 1;
        if attempts > 100_000 {
            return Err(format!("device {}: too many attempts", plan.imei));
        }
        let n = match plan.total {
            Some(total) => (total - k).min(plan.per_packet as u64),
            None => plan.per_packet as u64,
        };
        let packet: Vec<AvlRecord> = (k..k + n).map(|i| avl_record(plan.index, i)).collect();
        let device = match conn.as_mut() {
            Some(d) => d,
            None => match Device::connect(plan.addr, &plan.imei, Duration::from_secs(3)).await {
                Ok(d) => conn.insert(d),
                Err(_) => {
                    progress.reconnects.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        ledger.lock().unwrap().sent(&plan.imei, &packet);
        *progress.waiting_since.lock().unwrap() = Some(Instant::now());
        let reply = match device.write_packet(&packet).await {
            Ok(()) => device.read_reply(plan.reply_timeout).await,
            Err(e) => Err(e),
        };
        *progress.waiting_since.lock().unwrap() = None;
        match reply {
            Ok(r) if u64::from(r) == n => {
                ledger.lock().unwrap().accepted(&plan.imei, &packet);
                progress.accepted_records.fetch_add(n, Ordering::SeqCst);
                k += n;
                if !plan.pace.is_zero() {
                    tokio::time::sleep(plan.pace).await;
                }
            }
            Ok(0) => {
                progress.refused_packets.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(other) => {
                return Err(format!(
                    "device {}: a packet of {n} records was answered {other}",
                    plan.imei
                ))
            }
            Err(_) => {
                conn = None;
                progress.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Several devices against one gateway, each in its own task.
pub struct Fleet {
    pub ledger: SharedLedger,
    pub progress: Vec<Arc<DeviceProgress>>,
    pub controls: Arc<Controls>,
    tasks: tokio::task::JoinSet<Result<(), String>>,
}

impl Fleet {
    pub fn start(plans: Vec<DevicePlan>) -> Fleet {
        let ledger = SharedLedger::default();
        let controls = Arc::new(Controls::default());
        let mut tasks = tokio::task::JoinSet::new();
        let mut progress = Vec::new();
        for plan in plans {
            let p = Arc::new(DeviceProgress::default());
            progress.push(p.clone());
            tasks.spawn(run_device(plan, ledger.clone(), p, controls.clone()));
        }
        Fleet {
            ledger,
            progress,
            controls,
            tasks,
        }
    }

    pub fn accepted_records(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.accepted_records.load(Ordering::SeqCst))
            .sum()
    }

    /// Holds every device between packets and waits (up to `timeout`) until all are held.
    pub async fn pause(&self, timeout: Duration) -> bool {
        self.controls.pause.store(true, Ordering::SeqCst);
        wait_until(timeout, || {
            self.progress
                .iter()
                .all(|p| p.paused.load(Ordering::SeqCst) || p.done.load(Ordering::SeqCst))
        })
        .await
    }

    pub fn resume(&self) {
        self.controls.pause.store(false, Ordering::SeqCst);
    }

    /// What the devices had accepted so far: the (device_id, time) of every accepted record.
    pub fn accepted_keys(&self) -> HashSet<(String, String)> {
        self.ledger.lock().unwrap().accepted_keys()
    }

    pub fn refused_packets(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.refused_packets.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits for every device to finish (within `timeout`); returns what they sent and
    /// their errors.
    pub async fn join(mut self, timeout: Duration) -> (Ledger, Vec<String>) {
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(Ok(())))) => {}
                Ok(Some(Ok(Err(e)))) => errors.push(e),
                Ok(Some(Err(e))) => errors.push(format!("device task: {e}")),
                Ok(None) => break,
                Err(_) => {
                    errors.push(format!("devices did not finish within {timeout:?}"));
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        let ledger = std::mem::take(&mut *self.ledger.lock().unwrap());
        (ledger, errors)
    }
}

/// The same plan for `devices` devices (IMEIs from `imei_base`, indexes 0..devices).
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub imei_base: u64,
    pub devices: usize,
    pub per_packet: usize,
    pub total: Option<u64>,
    pub pace: Duration,
    pub reply_timeout: Duration,
    pub run_for_at_most: Duration,
}

impl FleetSpec {
    pub fn plans(&self, addr: SocketAddr) -> Vec<DevicePlan> {
        let deadline = Instant::now() + self.run_for_at_most;
        (0..self.devices)
            .map(|index| DevicePlan {
                addr,
                imei: imei(self.imei_base, index),
                index,
                per_packet: self.per_packet,
                total: self.total,
                pace: self.pace,
                reply_timeout: self.reply_timeout,
                deadline,
            })
            .collect()
    }
}

impl Ledger {
    /// The (device_id, time) of every accepted record.
    pub fn accepted_keys(&self) -> HashSet<(String, String)> {
        self.records
            .iter()
            .filter(|(_, s)| s.accepted)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = File::create(&path).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
    path
}

// ---------------------------------------------------------------------------------------------
// Expected records (any protocol), checked against what reached the broker
// ---------------------------------------------------------------------------------------------

/// Numbers within 1e-6 (relative to their size), everything else equal.
pub fn same_value(got: &Value, want: &Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => (g - w).abs() <= 1e-6 * w.abs().max(1.0),
        _ => got == want,
    }
}

/// How record JSON `got` differs from `want`: every top-level key of `want` must match
/// (numbers approximately); `want["io"]` must be a subset of `got["io"]`.
pub fn record_mismatches(got: &Value, want: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, w) in want.as_object().expect("want is an object") {
        if key == "io" {
            for (io_key, wv) in w.as_object().expect("want io is an object") {
                let gv = &got["io"][io_key];
                if !same_value(gv, wv) {
                    problems.push(format!("io.{io_key}: want {wv}, got {gv}"));
                }
            }
        } else if !same_value(&got[key], w) {
            problems.push(format!("{key}: want {w}, got {}", got[key]));
        }
    }
    problems
}

/// A record JSON's (device_id, time), both as JSON text (a null time is `null`).
pub fn record_key(v: &Value) -> (String, String) {
    (v["device_id"].to_string(), v["time"].to_string())
}

/// Waits up to `timeout` until a record for every `want` (by device_id and time) reached the
/// broker, then panics with every problem: a want that never arrived, arrived more than once
/// or differs in a field it names; a record of one of `devices` that is not wanted and not
/// accepted by `extra_ok` (e.g. a heartbeat record).
pub async fn expect_records(
    collector: &Collector,
    timeout: Duration,
    devices: &[&str],
    wants: &[Value],
    extra_ok: impl Fn(&Value) -> bool,
) {
    let keys: Vec<(String, String)> = wants.iter().map(record_key).collect();
    let all = collector
        .wait_for_records(timeout, |recs| {
            keys.iter()
                .all(|k| recs.iter().any(|r| record_key(r) == *k))
        })
        .await;
    let mut problems = Vec::new();
    for (want, key) in wants.iter().zip(&keys) {
        let found: Vec<&Value> = all.iter().filter(|r| record_key(r) == *key).collect();
        let at = format!("{} @ {}", want["device_id"], want["time"]);
        match found.as_slice() {
            [] => problems.push(format!("never arrived (within {timeout:?}): {at}")),
            [got] => {
                for p in record_mismatches(got, want) {
                    problems.push(format!("{at}: {p}"));
                }
            }
            more => problems.push(format!("{at} arrived {} times: {more:?}", more.len())),
        }
    }
    for r in &all {
        let ours = devices.iter().any(|d| r["device_id"] == *d);
        if ours && !keys.contains(&record_key(r)) && !extra_ok(r) {
            problems.push(format!("unexpected record: {r}"));
        }
    }
    assert_no_problems("records at the broker", &problems);
}

/// The collector's contract errors, except records with a null `time` that carry a seq and
/// a device_id: the contract writes absent values as null, and some records (a GT06
/// heartbeat) have no device time.
pub fn contract_errors(collector: &Collector) -> Vec<String> {
    const TIMELESS: &str = "a record without seq, device_id or time: ";
    let (_, errors, _) = collector.snapshot();
    errors
        .into_iter()
        .filter(|e| {
            let Some(at) = e.find(TIMELESS) else {
                return true;
            };
            let record: Value = serde_json::from_str(&e[at + TIMELESS.len()..]).unwrap_or_default();
            !(record["seq"].is_u64() && record["device_id"].is_string() && record["time"].is_null())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// socat pty pairs
// ---------------------------------------------------------------------------------------------

/// `socat pty,link=<dir>/<name> pty,link=<dir>/<name>-dev`: the gateway opens `port`, the test
/// writes to `dev`. Killed (and its links removed) on drop.
pub struct PtyPair {
    pub port: PathBuf,
    pub dev: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl PtyPair {
    pub fn start(dir: &Path, name: &str) -> PtyPair {
        let mut pair = PtyPair {
            port: dir.join(name),
            dev: dir.join(format!("{name}-dev")),
            log: dir.join(format!("socat-{name}.log")),
            child: None,
        };
        pair.spawn();
        pair
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "socat is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("socat log");
        let child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", self.port.display()))
            .arg(format!("pty,raw,echo=0,link={}", self.dev.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn socat (see .ci/install-deps)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Both links, pointing at live ptys (a killed socat leaves stale ones behind).
        while !(self.port.exists() && self.dev.exists() && self.started()) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("socat exited at start ({status}): {}", self.socat_log());
            }
            assert!(
                Instant::now() < deadline,
                "socat made no ptys within 5 s: {}",
                self.socat_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether this socat run logged its transfer loop (its ptys exist and are linked).
    pub fn started(&self) -> bool {
        let runs = self
            .socat_log()
            .matches("starting data transfer loop")
            .count();
        let starts = self.socat_log().matches("PTY is").count() / 2;
        runs >= 1 && runs == starts
    }

    pub fn socat_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The device end, opened for writing.
    pub fn open_dev(&self) -> File {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.dev)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.dev.display()))
    }

    /// SIGKILL: the ptys vanish at once (like an unplugged adapter); the links socat leaves
    /// behind are removed, as the device node of an unplugged adapter would be.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.port);
        let _ = std::fs::remove_file(&self.dev);
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- socat log ({}) -----\n{}",
                self.port.display(),
                self.socat_log()
            );
        }
    }
}

/// Writes `text` to the device end, within 5 s: a pty whose reader stopped blocks the writer
/// once its buffer is full, so the write runs on its own thread and a stall fails the test.
pub fn write_all(dev: &mut File, text: &str) {
    let mut handle = dev.try_clone().expect("clone the pty handle");
    let bytes = text.as_bytes().to_vec();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(handle.write_all(&bytes).and_then(|()| handle.flush()));
    });
    match result.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("writing {text:?} to the pty: {e}"),
        Err(_) => panic!("writing {text:?} to the pty did not finish within 5 s"),
    }
}

/// A broker with a subscribed collector (persistent session), then stopped.
pub async fn stopped_broker(collector_id: &str) -> (Mosquitto, Collector) {
    let port = free_port();
    let mut broker = Mosquitto::start(port).await;
    let collector = Collector::start(port, collector_id).await;
    broker.stop().await;
    (broker, collector)
}
