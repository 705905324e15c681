//! The real binary under a simulated systemd: `NOTIFY_SOCKET` is a datagram socket this test
//! reads. READY must arrive only once the listener accepts, watchdog pings must keep coming
//! while records flow (and while the broker is away), STOPPING must arrive on SIGTERM, and a
//! `WATCHDOG_PID` naming another process must stop the pings.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A notification socket and the messages read from it so far.
struct NotifySocket {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        NotifySocket {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads messages until one satisfies `want` or `timeout` passes; returns it.
    fn wait_for(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if want(&msg) {
                    return Some(msg);
                }
            }
        }
        None
    }

    /// How many `WATCHDOG=1` pings arrive within `window`.
    fn count_pings(&mut self, window: Duration) -> usize {
        let before = self.pings();
        let _ = self.wait_for(window, |_| false);
        self.pings() - before
    }

    fn pings(&self) -> usize {
        self.seen
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
    }
}

fn write_config(dir: &Path, listen_port: u16, mqtt_port: u16) -> std::path::PathBuf {
    let text = format!(
        "gateway_id = \"notify-test\"\n\
         buffer.path = {}\n\
         mqtt.host = \"127.0.0.1\"\n\
         mqtt.port = {mqtt_port}\n\
         mqtt.connect_timeout_s = 2\n\
         uplink.linger_ms = 20\n\
         uplink.backoff_initial_ms = 100\n\
         uplink.backoff_max_ms = 500\n\
         http.bind = \"\"\n\
         \n[[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:{listen_port}\"\n",
        toml_string(&dir.join("buffer").display().to_string())
    );
    write_file(dir, "fleetedge.toml", &text)
}

/// The gateway child, killed if a failed assertion leaves it running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_gateway(config: &Path, notify: &Path, watchdog_pid: Option<&str>) -> Running {
    let mut cmd = gateway_command();
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", "1000000")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match watchdog_pid {
        Some(pid) => cmd.env("WATCHDOG_PID", pid),
        None => cmd.env_remove("WATCHDOG_PID"),
    };
    Running(cmd.spawn().expect("spawn fleetedge"))
}

fn sigterm(Running(child): &Running) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_listening_pings_while_working_and_stopping_on_sigterm() {
    let mqtt_port = free_port();
    let mut broker = Mosquitto::start(mqtt_port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let listen_port = free_port();
    let config = write_config(dir.path(), listen_port, mqtt_port);
    let notify_path = dir.path().join("notify");
    let mut notify = NotifySocket::bind(&notify_path);
    let mut child = spawn_gateway(&config, &notify_path, None);

    let ready = tokio::task::block_in_place(|| {
        notify.wait_for(Duration::from_secs(30), |m| m.contains("READY=1"))
    });
    let ready = ready.unwrap_or_else(|| panic!("no READY=1; got {:?}", notify.seen));
    assert!(ready.contains("STATUS=running"), "{ready}");
    // READY promises the listeners are up: no retry loop here.
    assert!(
        accepts_tcp(listen_port).await,
        "READY=1 arrived before the listener accepted"
    );

    // Records flow end to end while the pings keep coming.
    let collector = Collector::start(mqtt_port, "notify-collector").await;
    let mut device = Device::connect(loopback(listen_port), &imei(1, 0), Duration::from_secs(10))
        .await
        .expect("device login");
    let records: Vec<_> = (0..20).map(|k| avl_record(0, k)).collect();
    let acked = device
        .send(&records, Duration::from_secs(10))
        .await
        .expect("device ack");
    assert_eq!(acked, 20);
    assert_eq!(collector.wait_for(20, Duration::from_secs(20)).await, 20);
    let pings = tokio::task::block_in_place(|| notify.count_pings(Duration::from_secs(3)));
    assert!(
        pings >= 3,
        "WATCHDOG_USEC=1 s asks for a ping every 0.5 s; got {pings} in 3 s"
    );

    // A broker that goes away leaves the uplink in bounded waits, which is not a stall.
    broker.stop().await;
    let pings = tokio::task::block_in_place(|| notify.count_pings(Duration::from_secs(4)));
    assert!(
        pings >= 4,
        "pings stopped while the broker was away: {pings} in 4 s"
    );

    sigterm(&child);
    let stopping = tokio::task::block_in_place(|| {
        notify.wait_for(Duration::from_secs(10), |m| m.contains("STOPPING=1"))
    });
    assert!(stopping.is_some(), "no STOPPING=1; got {:?}", notify.seen);
    let status = tokio::task::block_in_place(|| child.0.wait()).expect("wait for fleetedge");
    assert!(status.success(), "fleetedge exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pings_when_the_watchdog_belongs_to_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen_port = free_port();
    // No broker: the gateway runs and retries, which does not matter here.
    let config = write_config(dir.path(), listen_port, free_port());
    let notify_path = dir.path().join("notify");
    let mut notify = NotifySocket::bind(&notify_path);
    let mut child = spawn_gateway(&config, &notify_path, Some("1"));

    let ready = tokio::task::block_in_place(|| {
        notify.wait_for(Duration::from_secs(30), |m| m.contains("READY=1"))
    });
    assert!(ready.is_some(), "no READY=1; got {:?}", notify.seen);
    let pings = tokio::task::block_in_place(|| notify.count_pings(Duration::from_secs(2)));
    assert_eq!(pings, 0, "pinged for WATCHDOG_PID=1: {:?}", notify.seen);

    sigterm(&child);
    let status = tokio::task::block_in_place(|| child.0.wait()).expect("wait for fleetedge");
    assert!(status.success(), "fleetedge exited with {status}");
}
