//! The ops endpoint's connections, served with hyper's HTTP/1.1 server so that its own
//! deadlines apply (axum's `serve` offers none):
//!
//! - **Header deadline**: a request's head must arrive within [`Limits::header_timeout`]
//!   of the connection, or of the previous answer on a kept-alive one (hyper's
//!   `header_read_timeout`); a client trickling bytes cannot hold a connection longer.
//! - **Answer deadline**: a route must produce its answer's head within
//!   [`Limits::answer_timeout`], else 503 (the body of `/buffer/export` then streams).
//! - **Stall deadline**: a connection that moves no bytes for [`Limits::stall_timeout`] is
//!   closed — a client that stops reading an answer.
//! - **Connection limit**: at most [`Limits::max_connections`] at once. At the limit a new
//!   connection closes the *oldest connection that is not in a request* (waiting for a head,
//!   or idle between requests), and waits only when every connection is mid-request.
//!   Why evict rather than reserve capacity: before its head is read a health check cannot
//!   be told from a slow client, so no reservation can be kept for it; evicting the oldest
//!   idle one means a flood of slow clients only ever delays a real request by one accept,
//!   and each slow client is dropped anyway by the header deadline. Requests in progress
//!   (an export streaming to its client) are never cut for a newcomer.
//!
//! Every request first passes [`Access`] (Host and token), then the router.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::access::Access;

/// The deadlines and the connection limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub answer_timeout: Duration,
    pub stall_timeout: Duration,
}

/// Accepts and serves connections until the task is aborted.
pub async fn serve(listener: TcpListener, limits: Limits, app: Router, access: Access) {
    let table = Arc::new(Table::new(limits.max_connections));
    let service = TowerToHyperService::new(app);
    let access = Arc::new(access);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = table.admit().await;
        tokio::spawn(connection(
            stream,
            slot,
            limits,
            service.clone(),
            access.clone(),
        ));
    }
}

/// Serves one connection until it ends, a deadline passes or it is evicted.
async fn connection(
    stream: TcpStream,
    slot: Slot,
    limits: Limits,
    service: TowerToHyperService<Router>,
    access: Arc<Access>,
) {
    let in_request = slot.in_request.clone();
    let answer_timeout = limits.answer_timeout;
    let handle = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::enter(&in_request);
        let (service, access) = (service.clone(), access.clone());
        async move {
            if let Err(refused) = access.check(request.uri().path(), request.headers()) {
                return Ok::<_, Infallible>(guarded(
                    (refused.status, refused.text).into_response(),
                    busy,
                ));
            }
            let routed = hyper::service::Service::call(&service, request);
            let response = match tokio::time::timeout(answer_timeout, routed).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no answer within {} s", answer_timeout.as_secs()),
                )
                    .into_response(),
            };
            Ok(guarded(response, busy))
        }
    });
    let io = TokioIo::new(Stalled::new(stream, limits.stall_timeout));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, handle);
    tokio::select! {
        // Timeouts and client errors end the connection; there is nobody to tell.
        _ = conn => {}
        _ = slot.evicted.notified() => {}
    }
}

/// The response with `busy` held until its body has been sent (or dropped).
fn guarded(response: Response<Body>, busy: Busy) -> Response<Body> {
    response.map(|body| Body::new(GuardedBody { body, _busy: busy }))
}

/// Counts a request in progress on its connection while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A body that keeps its request counted as in progress until it is sent or dropped.
struct GuardedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The open connections, oldest first.
struct Table {
    max: usize,
    open: Mutex<Open>,
    freed: Notify,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    in_request: Arc<AtomicUsize>,
    evicted: Arc<Notify>,
}

/// One connection's place in the [`Table`], given up when dropped.
struct Slot {
    id: u64,
    table: Arc<Table>,
    in_request: Arc<AtomicUsize>,
    evicted: Arc<Notify>,
}

impl Table {
    fn new(max: usize) -> Table {
        Table {
            max: max.max(1),
            open: Mutex::new(Open::default()),
            freed: Notify::new(),
        }
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // The map stays consistent whatever panicked while holding it: keep using it.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection: a free one, else the oldest connection not in a request
    /// is told to close and its slot is taken; else waits for a connection to end.
    async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut open = self.open();
                if open.by_age.len() >= self.max {
                    let idle = open
                        .by_age
                        .iter()
                        .find(|(_, e)| e.in_request.load(Ordering::SeqCst) == 0)
                        .map(|(&id, _)| id);
                    if let Some(entry) = idle.and_then(|id| open.by_age.remove(&id)) {
                        entry.evicted.notify_one();
                    }
                }
                if open.by_age.len() < self.max {
                    let id = open.next_id;
                    open.next_id += 1;
                    let slot = Slot {
                        id,
                        table: self.clone(),
                        in_request: Arc::new(AtomicUsize::new(0)),
                        evicted: Arc::new(Notify::new()),
                    };
                    open.by_age.insert(
                        id,
                        Entry {
                            in_request: slot.in_request.clone(),
                            evicted: slot.evicted.clone(),
                        },
                    );
                    return slot;
                }
            }
            freed.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.open().by_age.remove(&self.id);
        self.table.freed.notify_waiters();
    }
}

/// The TCP stream, failing any read or write that has waited `stall_timeout` since the
/// connection last moved bytes (hyper then closes it).
struct Stalled {
    stream: TcpStream,
    stall_timeout: Duration,
    stall: Pin<Box<tokio::time::Sleep>>,
}

impl Stalled {
    fn new(stream: TcpStream, stall_timeout: Duration) -> Stalled {
        Stalled {
            stream,
            stall_timeout,
            stall: Box::pin(tokio::time::sleep(stall_timeout)),
        }
    }

    /// Progress resets the timer; waiting past it is an error.
    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + self.stall_timeout;
                self.stall.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match self.stall.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP connection stalled",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Stalled {
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

impl AsyncWrite for Stalled {
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

    #[tokio::test]
    async fn at_the_limit_the_oldest_idle_connection_makes_room_and_busy_ones_do_not() {
        let table = Arc::new(Table::new(2));
        let first = table.admit().await;
        let second = table.admit().await;
        let _busy = Busy::enter(&first.in_request);
        // The first is in a request: the second (idle) is evicted for the third.
        let third = tokio::time::timeout(Duration::from_secs(5), table.admit())
            .await
            .expect("an idle connection made room");
        tokio::time::timeout(Duration::from_secs(5), second.evicted.notified())
            .await
            .expect("the evicted connection was told");
        // Both left are busy: the next one waits until one ends.
        let _busy_third = Busy::enter(&third.in_request);
        let waiting = tokio::time::timeout(Duration::from_millis(100), table.admit()).await;
        assert!(waiting.is_err(), "a busy connection was evicted");
        let next = tokio::spawn({
            let table = table.clone();
            async move { table.admit().await }
        });
        drop(second); // already evicted: frees nothing more
        drop(first);
        let fourth = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the freed slot was not reused")
            .unwrap();
        assert!(fourth.id > third.id);
        assert_eq!(table.open().by_age.len(), 2);
    }

    #[tokio::test]
    async fn a_connection_that_moves_no_bytes_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let stall_timeout = Duration::from_millis(300);
        let mut conn = Stalled::new(stream, stall_timeout);
        let mut buf = [0u8; 4];
        for _ in 0..3 {
            tokio::time::sleep(stall_timeout / 2).await;
            client.write_all(b"ping").await.unwrap();
            conn.read_exact(&mut buf).await.unwrap();
        }
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
