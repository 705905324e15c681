//! TCP listening sockets with a backlog sized for a gateway.
//!
//! `tokio::net::TcpListener::bind` (through mio) listens with a backlog of 128, the standard
//! library's value. Connections the gateway has not accepted yet wait in that queue: devices
//! while `ingest.max_connections` are open, every device of a site at once when they all
//! reconnect after a mast or network outage, `/health` behind clients trickling request
//! heads. Past 128 the kernel drops their SYNs and each client only tries again after 1, 3,
//! 7, 15… s (a health check or a modem can give up first). [`BACKLOG`] is asked for instead;
//! the kernel caps it at `net.core.somaxconn` (4096 by default since Linux 5.4).

use std::io;

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};

/// The listen backlog asked for; see the module doc.
pub const BACKLOG: u32 = 4096;

/// Listens on `addr` (an address, or `host:port` resolved as `TcpListener::bind` does: the
/// first address that binds wins) with [`BACKLOG`] and `SO_REUSEADDR`, as tokio's own bind
/// sets it.
pub async fn tcp(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last_error = None;
    for candidate in tokio::net::lookup_host(addr).await? {
        // A socket that cannot be made (IPv6 off in the kernel, for `localhost` that
        // resolves to ::1 first) is one more address that failed, as in tokio's bind.
        let socket = if candidate.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let bound = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(candidate)?;
            socket.listen(BACKLOG)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The kernel's cap on any backlog (`net.core.somaxconn`); 4096 when it cannot be read.
    fn somaxconn() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(4096)
    }

    #[tokio::test]
    async fn clients_beyond_128_complete_their_handshake_before_any_accept() {
        let listener = tcp("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: every connect must complete from the kernel's queue alone. With
        // the standard backlog of 128 the 130th SYN is dropped and its connect waits ≥ 1 s
        // for the retry (then 3 s, 7 s…), so the bound below fails it.
        let clients = 300.min(somaxconn());
        let mut open = Vec::with_capacity(clients);
        for n in 0..clients {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_millis(900), connect).await {
                Ok(Ok(stream)) => open.push(stream),
                Ok(Err(e)) => panic!("client {n} of {clients}: {e}"),
                Err(_) => panic!("client {n} of {clients}: no handshake within 0.9 s"),
            }
        }
        assert_eq!(open.len(), clients);
        drop(listener);
    }

    #[tokio::test]
    async fn a_name_resolves_and_a_taken_port_is_an_error() {
        let listener = tcp("localhost:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        let taken = tcp(addr).await;
        assert!(taken.is_err(), "bound {addr} twice");
        assert!(tcp("no-such-host.invalid:1").await.is_err());
    }
}
