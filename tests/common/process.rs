//! Child processes and the files of a test's tempdir: waiting for a server child to accept,
//! killing or reaping a child, a child's log (its end, printed when the test failed), writing
//! a file.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::ports::accepts_tcp;

/// A log file's text, or a line saying why it cannot be read (it is only ever shown).
pub(super) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The last `max` bytes of `text` (logs can be long; the end is what matters).
pub(super) fn tail(text: &str, max: usize) -> &str {
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
pub(super) fn reap(child: &mut Child, timeout: Duration) {
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

/// SIGKILLs the child in `slot`, if any, and reaps it.
pub(super) fn kill_now(slot: &mut Option<Child>) {
    if let Some(mut child) = slot.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// For a helper's `Drop`: when the test failed (the thread is panicking), prints the end of
/// the helper's log under `title`, to help debugging.
pub(super) fn print_log_if_failed(title: &str, log: impl FnOnce() -> String) {
    if std::thread::panicking() {
        eprintln!("----- {title} -----\n{}\n----- end of {title} -----", log());
    }
}

/// Waits up to `timeout` for `child`, a server just spawned, to accept TCP on
/// `127.0.0.1:port`, and keeps it in `slot` unless it exited (so its owner kills it on drop).
/// The error says which of the two went wrong, for the caller to add its log to.
pub(super) async fn await_server_start(
    slot: &mut Option<Child>,
    mut child: Child,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if accepts_tcp(port).await {
            *slot = Some(child);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            *slot = Some(child);
            return Err(format!("did not accept on port {port} within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = File::create(&path).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
    path
}
