//! socat pty pairs: a serial port for the gateway and its device end for the test.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{kill_now, print_log_if_failed};

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
        kill_now(&mut self.child);
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
        let title = format!("socat log ({})", self.port.display());
        print_log_if_failed(&title, || self.socat_log());
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
