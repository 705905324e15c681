//! [`Mosquitto`]: a real broker on a port of ours, with its config, log and persistence file
//! in a tempdir; stopped with SIGTERM (it saves its sessions), restarted, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::mqtt::Collector;
use super::ports::free_port;
use super::process::{await_server_start, kill_now, print_log_if_failed, read_log, reap, tail};

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
    /// A broker with one anonymous listener on `127.0.0.1:port`.
    pub async fn start(port: u16) -> Mosquitto {
        Mosquitto::start_with_conf(
            port,
            &format!("listener {port} 127.0.0.1\nallow_anonymous true"),
        )
        .await
    }

    /// A broker whose listeners and security are `conf` (mosquitto.conf lines: `listener`s
    /// with their `cafile`/`certfile`/`keyfile`/`require_certificate`, `allow_anonymous`,
    /// `password_file`, `per_listener_settings true` first if needed) instead of the one
    /// anonymous listener of [`Mosquitto::start`]. `port` must be a plain TCP listener in
    /// `conf`: the start waits for it. Persistence is on and everything is logged, to files
    /// in the broker's tempdir.
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
             # Only has an effect when the tests run as root: stay root so the broker can\n\
             # write its log and database into our tempdir.\n\
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
        let started =
            await_server_start(&mut self.child, child, self.port, Duration::from_secs(10));
        if let Err(why) = started.await {
            panic!(
                "mosquitto on port {}: {why}; log:\n{}",
                self.port,
                self.log()
            );
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
        kill_now(&mut self.child);
        let title = format!(
            "mosquitto log (port {}, {})",
            self.port,
            self.dir.path().display()
        );
        print_log_if_failed(&title, || tail(&self.log(), 20_000).to_string());
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
