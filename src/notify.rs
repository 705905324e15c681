//! The service manager's notification protocol (`sd_notify`), spoken directly: one datagram
//! of `KEY=value` lines to the socket named by `NOTIFY_SOCKET`. No libsystemd, so the
//! static musl builds get it too, and a gateway started outside systemd simply has no
//! [`Notifier`].
//!
//! ```text
//! NOTIFY_SOCKET=/run/systemd/notify      a filesystem socket
//! NOTIFY_SOCKET=@/org/.../notify         "@" = Linux abstract namespace
//! WATCHDOG_USEC=30000000                 WatchdogSec in µs: ping at least this often
//! WATCHDOG_PID=1234                      the pings are expected from this pid only
//!
//! datagram: "READY=1\nSTATUS=…"  "WATCHDOG=1"  "STOPPING=1\nSTATUS=…"
//! ```

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A connection to the service manager's notification socket.
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
}

impl Notifier {
    /// The notifier the service manager asked for, if any. A `NOTIFY_SOCKET` this cannot use
    /// is logged and ignored: the gateway runs the same without it (systemd then times the
    /// start out, which names the cause in the journal next to this warning).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let target = match parse_target(value.as_encoded_bytes()) {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(notify_socket = ?value, "NOTIFY_SOCKET ignored: {reason}");
                return None;
            }
        };
        match UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s)) {
            Ok(socket) => Some(Notifier { socket, target }),
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET ignored: cannot create a socket");
                None
            }
        }
    }

    /// Sends one notification (lines of `KEY=value`). Non-blocking: a service manager that
    /// is not reading loses the message rather than stalling the gateway.
    pub fn send(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Target::Path(path) => self.socket.send_to(state.as_bytes(), path).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket
                    .send_to_addr(state.as_bytes(), &addr)
                    .map(|_| ())
            }
        }
    }

    /// [`send`](Self::send), with a failure logged rather than returned: notifications are
    /// advisory, and the watchdog's own silence is what a stuck gateway is judged by.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!(error = %e, state, "cannot notify the service manager");
        }
    }
}

fn parse_target(value: &[u8]) -> Result<Target, &'static str> {
    match value {
        [] => Err("it is empty"),
        [b'@', name @ ..] => Ok(Target::Abstract(name.to_vec())),
        [b'/', ..] => {
            let path = std::str::from_utf8(value).map_err(|_| "the path is not UTF-8")?;
            Ok(Target::Path(PathBuf::from(path)))
        }
        _ => Err("only absolute paths and @abstract names are supported"),
    }
}

/// How often the service manager wants a watchdog ping (`WatchdogSec`), if it wants them
/// from this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    // Set for another process (a wrapper that exec'd something else): not ours to feed.
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_paths_or_abstract_names() {
        assert_eq!(
            parse_target(b"/run/systemd/notify"),
            Ok(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target(b"@/org/freedesktop/systemd1/notify"),
            Ok(Target::Abstract(
                b"/org/freedesktop/systemd1/notify".to_vec()
            ))
        );
        assert!(parse_target(b"").is_err());
        assert!(parse_target(b"vsock:2:1234").is_err());
        assert!(parse_target(b"relative/path").is_err());
    }

    #[test]
    fn the_watchdog_is_ours_only_when_the_pid_matches_or_is_absent() {
        let thirty_s = Some(Duration::from_secs(30));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), thirty_s);
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("7"), 7),
            thirty_s
        );
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
    }

    #[test]
    fn notifications_reach_a_filesystem_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            target: Target::Path(path),
        };
        notifier.send("READY=1\nSTATUS=up").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("fleetedge-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let notifier = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            target: Target::Abstract(name.into_bytes()),
        };
        notifier.send("WATCHDOG=1").expect("send");
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
