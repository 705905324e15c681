//! [`Gateway`]: the real `fleetedge run` binary with a config ([`GatewayConfig`]) written into
//! a tempdir and its output captured to a file; SIGKILL, SIGTERM and restart on the same
//! buffer; killed on drop, its log printed when the test panicked.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::{free_port, free_udp_port, loopback, wait_until};
use super::process::{await_server_start, kill_now, print_log_if_failed, read_log, tail};

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
        let child = cmd.spawn().expect("spawn fleetedge");
        let started = await_server_start(
            &mut self.child,
            child,
            self.listen_port,
            Duration::from_secs(15),
        );
        if let Err(why) = started.await {
            panic!(
                "fleetedge start #{}: {why}; config:\n{}\nlog:\n{}",
                self.starts,
                self.config_text(),
                tail(&self.log(), 20_000)
            );
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
        kill_now(&mut self.child);
        let title = format!(
            "fleetedge log ({}, {} start(s))",
            self.gateway_id, self.starts
        );
        print_log_if_failed(&title, || tail(&self.log(), 40_000).to_string());
    }
}
