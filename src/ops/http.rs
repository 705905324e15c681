//! The operations endpoint on `http.bind`, served with axum (HTTP/1.1):
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | 200, Prometheus text ([`super::prometheus`]) |
//! | `GET /health` | 200 `ok` while the process serves HTTP at all |
//! | `GET /ready` | 200 `ready` when the buffer's commit thread runs and MQTT is connected; else 503 with the reasons |
//! | anything else | 404 (405 for another method on a known path) |
//!
//! It has no authentication and is meant for loopback. Its own resources are bounded like
//! everything else: at most [`MAX_CONNECTIONS`] connections at once (more wait in the
//! kernel's backlog, as device connections do), and a connection that moves no bytes for
//! [`IDLE_TIMEOUT`] is closed (hyper has no header-read timeout without a timer, so a client
//! that sends half a request would otherwise hold its slot forever).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{prometheus, Snapshot};
use crate::buffer::Buffer;
use crate::config::HttpSettings;
use crate::metrics::METRICS;

/// Connections served at once; a scraper and a health checker need a few.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection with no bytes read or written for this long is closed. Longer than the
/// usual scrape intervals would need for keep-alive is not useful: a scraper reconnects.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoint's socket, bound at start so a bad `http.bind` fails the start.
#[derive(Debug)]
pub struct HttpEndpoint {
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// Binds `http.bind`; `None` when it is empty (the endpoint is off). The error names the key.
pub async fn bind(settings: &HttpSettings) -> anyhow::Result<Option<HttpEndpoint>> {
    let Some(addr) = settings.addr().map_err(anyhow::Error::msg)? else {
        tracing::info!("http.bind is empty: no /metrics, /health or /ready endpoint");
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("http.bind: cannot listen on {addr}"))?;
    let local_addr = listener
        .local_addr()
        .with_context(|| format!("http.bind: {addr}"))?;
    if !local_addr.ip().is_loopback() {
        tracing::warn!(
            addr = %local_addr,
            "http.bind is not a loopback address: /metrics, /health and /ready have no \
             authentication; keep them on loopback or a management-only interface"
        );
    }
    Ok(Some(HttpEndpoint {
        listener,
        local_addr,
    }))
}

impl HttpEndpoint {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the returned handle is dropped (the gateway keeps it for its whole run,
    /// so `/metrics` stays readable while a shutdown drains the buffer).
    pub fn spawn(self, buffer: Buffer) -> Running {
        let addr = self.local_addr;
        tracing::info!(%addr, "serving /metrics, /health and /ready over HTTP");
        let listener = Limited {
            inner: self.listener,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            idle_timeout: IDLE_TIMEOUT,
        };
        let app = router(buffer);
        Running(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(%addr, error = %e, "the HTTP endpoint stopped");
            }
        }))
    }
}

/// The serving task; aborted on drop, whichever way the gateway's run ends.
#[derive(Debug)]
pub struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn router(buffer: Buffer) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state(buffer)
}

async fn metrics(State(buffer): State<Buffer>) -> Response {
    // `BufferStats::disk_bytes` lists sled's directory: keep that off the async workers.
    match tokio::task::spawn_blocking(move || prometheus::render(&Snapshot::collect(&buffer))).await
    {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "collecting metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "collecting metrics failed",
            )
                .into_response()
        }
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(buffer): State<Buffer>) -> (StatusCode, String) {
    match readiness(
        buffer.committer_alive(),
        METRICS.mqtt_connected.load(Ordering::Relaxed),
    ) {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Ready means records flow end to end: appends complete (the commit thread runs) and the
/// uplink can publish (MQTT connected). The error lists every reason.
pub fn readiness(committer_alive: bool, mqtt_connected: bool) -> Result<(), String> {
    let mut why = Vec::new();
    if !committer_alive {
        why.push("the buffer's commit thread is not running");
    }
    if !mqtt_connected {
        why.push("MQTT is not connected");
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("not ready: {}", why.join("; ")))
    }
}

/// The TCP listener with a connection limit: a slot is taken before `accept`.
struct Limited {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    /// [`IDLE_TIMEOUT`], shorter in tests.
    idle_timeout: Duration,
}

impl axum::serve::Listener for Limited {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                // The semaphore is never closed; should it be, stop accepting.
                return std::future::pending().await;
            };
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    return (Conn::new(stream, slot, self.idle_timeout), peer);
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One HTTP connection: holds its slot until dropped and fails any read or write that has
/// waited [`IDLE_TIMEOUT`] since the connection last moved bytes.
struct Conn {
    stream: TcpStream,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, idle_timeout: Duration) -> Conn {
        Conn {
            stream,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            _slot: slot,
        }
    }

    /// Progress resets the idle timer; waiting past it is an error (hyper then closes).
    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP connection idle too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.guard(cx, poll)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.guard(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.guard(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.guard(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_the_committer_and_mqtt_and_names_what_is_missing() {
        assert_eq!(readiness(true, true), Ok(()));
        let mqtt = readiness(true, false).unwrap_err();
        assert!(mqtt.contains("MQTT is not connected"), "{mqtt}");
        let buffer = readiness(false, true).unwrap_err();
        assert!(buffer.contains("commit thread"), "{buffer}");
        let both = readiness(false, false).unwrap_err();
        assert!(
            both.contains("MQTT") && both.contains("commit thread"),
            "{both}"
        );
    }

    #[tokio::test]
    async fn connections_are_limited_and_idle_ones_are_closed() {
        use axum::serve::Listener as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let idle_timeout = Duration::from_millis(300);
        let mut listener = Limited {
            inner,
            slots: Arc::new(Semaphore::new(1)),
            idle_timeout,
        };
        let mut first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let (mut conn, _) = listener.accept().await;
        // The only slot is taken: the second connection waits in the backlog.
        let waiting = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            waiting.is_err(),
            "a second connection was accepted past the limit"
        );

        // Bytes moving keep the connection open past the idle timeout.
        let mut buf = [0u8; 4];
        for _ in 0..3 {
            tokio::time::sleep(idle_timeout / 2).await;
            first.write_all(b"ping").await.unwrap();
            conn.read_exact(&mut buf).await.unwrap();
        }
        // Silence ends it with an error, and dropping it frees the slot.
        let started = std::time::Instant::now();
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= idle_timeout / 2);
        drop(conn);
        let next = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(next.is_ok(), "the freed slot was not reused");
    }

    #[tokio::test]
    async fn bind_names_the_key_and_empty_turns_the_endpoint_off() {
        let off = HttpSettings {
            bind: String::new(),
        };
        assert!(bind(&off).await.unwrap().is_none());
        let bad = HttpSettings {
            bind: "localhost".into(),
        };
        let err = bind(&bad).await.unwrap_err().to_string();
        assert!(err.starts_with("http.bind:"), "{err}");
        // A port already taken fails with the key and the address.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let busy = HttpSettings {
            bind: addr.to_string(),
        };
        let err = format!("{:#}", bind(&busy).await.unwrap_err());
        assert!(
            err.starts_with(&format!("http.bind: cannot listen on {addr}")),
            "{err}"
        );
    }
}
