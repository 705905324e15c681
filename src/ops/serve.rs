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
//!   connection closes the *oldest idle connection*: one not in a request whose client has
//!   had its chance — a read found nothing more to read (a head trickling in, or keep-alive
//!   between requests) —
//!   and has been open at least [`EVICT_AFTER`]. It waits only while every connection is
//!   mid-request or newer than that.
//!   Why evict rather than reserve capacity: before its head is read a health check cannot
//!   be told from a slow client, so no reservation can be kept for it. A health check sends
//!   its head at once, so it is in a request by its first read (or within [`EVICT_AFTER`])
//!   and is not the one closed; slow clients are, oldest first (and each by the header
//!   deadline anyway). Requests in progress (an export streaming to its client) are never
//!   cut for a newcomer. The cost: slow clients that reconnect at once keep the accept loop
//!   busy, at most `max_connections` evictions per [`EVICT_AFTER`].
//!
//! Every request first passes [`Access`] (Host and token), then the router.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The youngest a connection may be to be evicted: a client that connects and then writes
/// its head at once gets this long for the write to arrive (a loaded machine can delay it).
pub const EVICT_AFTER: Duration = Duration::from_millis(20);

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
    let table = Arc::new(Table::new(limits.max_connections, EVICT_AFTER));
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
    let state = slot.state.clone();
    let answer_timeout = limits.answer_timeout;
    let handle = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::enter(&state);
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
    let io = TokioIo::new(Stalled::new(
        stream,
        limits.stall_timeout,
        slot.state.clone(),
    ));
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
struct Busy(Arc<ConnState>);

impl Busy {
    fn enter(state: &Arc<ConnState>) -> Busy {
        state.in_request.fetch_add(1, Ordering::SeqCst);
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_request.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_waiters();
        }
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
    /// [`EVICT_AFTER`].
    evict_after: Duration,
    open: Mutex<Open>,
    /// Woken when a connection ends or may have become evictable.
    changed: Arc<Notify>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    accepted: tokio::time::Instant,
    state: Arc<ConnState>,
    evicted: Arc<Notify>,
}

/// What the table knows of one connection, shared with its task.
struct ConnState {
    /// Requests in progress, from the head read until the answer's body is sent.
    in_request: AtomicUsize,
    /// A read found nothing more to read: the client has had its chance to send a head.
    waited: AtomicBool,
    changed: Arc<Notify>,
}

impl ConnState {
    fn evictable(&self) -> bool {
        self.waited.load(Ordering::SeqCst) && self.in_request.load(Ordering::SeqCst) == 0
    }

    fn mark_waited(&self) {
        if !self.waited.swap(true, Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
    }
}

/// One connection's place in the [`Table`], given up when dropped.
struct Slot {
    id: u64,
    table: Arc<Table>,
    state: Arc<ConnState>,
    evicted: Arc<Notify>,
}

impl Table {
    fn new(max: usize, evict_after: Duration) -> Table {
        Table {
            max: max.max(1),
            evict_after,
            open: Mutex::new(Open::default()),
            changed: Arc::new(Notify::new()),
        }
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // The map stays consistent whatever panicked while holding it: keep using it.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection: a free one, else the oldest evictable connection is
    /// told to close and its slot is taken; else waits until one ends or becomes evictable.
    async fn admit(self: &Arc<Self>) -> Slot {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = tokio::time::Instant::now();
            {
                let mut open = self.open();
                if open.by_age.len() >= self.max {
                    let idle = open
                        .by_age
                        .iter()
                        .find(|(_, e)| {
                            e.state.evictable()
                                && now.duration_since(e.accepted) >= self.evict_after
                        })
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
                        state: Arc::new(ConnState {
                            in_request: AtomicUsize::new(0),
                            waited: AtomicBool::new(false),
                            changed: self.changed.clone(),
                        }),
                        evicted: Arc::new(Notify::new()),
                    };
                    open.by_age.insert(
                        id,
                        Entry {
                            accepted: now,
                            state: slot.state.clone(),
                            evicted: slot.evicted.clone(),
                        },
                    );
                    return slot;
                }
            }
            // A connection may also become old enough: look again after that long.
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(self.evict_after) => {}
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.open().by_age.remove(&self.id);
        self.table.changed.notify_waiters();
    }
}

/// The TCP stream, failing any read or write that has waited `stall_timeout` since the
/// connection last moved bytes (hyper then closes it).
/// A read that finds nothing marks the connection's [`ConnState`] as having waited.
struct Stalled {
    stream: TcpStream,
    stall_timeout: Duration,
    stall: Pin<Box<tokio::time::Sleep>>,
    state: Arc<ConnState>,
}

impl Stalled {
    fn new(stream: TcpStream, stall_timeout: Duration, state: Arc<ConnState>) -> Stalled {
        Stalled {
            stream,
            stall_timeout,
            stall: Box::pin(tokio::time::sleep(stall_timeout)),
            state,
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
        if poll.is_pending() {
            this.state.mark_waited();
        }
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
        let table = Arc::new(Table::new(2, Duration::ZERO));
        let first = table.admit().await;
        let second = table.admit().await;
        // Neither has been read yet: not evictable, so a newcomer waits.
        let waiting = tokio::time::timeout(Duration::from_millis(100), table.admit()).await;
        assert!(waiting.is_err(), "a connection not read yet was evicted");
        // The first is in a request, the second idle (older ones are evicted first, but a
        // connection in a request never).
        first.state.mark_waited();
        let _busy = Busy::enter(&first.state);
        second.state.mark_waited();
        let third = tokio::time::timeout(Duration::from_secs(5), table.admit())
            .await
            .expect("an idle connection made room");
        tokio::time::timeout(Duration::from_secs(5), second.evicted.notified())
            .await
            .expect("the evicted connection was told");
        // Both left are busy or unread: the next one waits until one ends.
        let next = tokio::spawn({
            let table = table.clone();
            async move { table.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!next.is_finished(), "a busy connection was evicted");
        drop(second); // already evicted: frees nothing more
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!next.is_finished(), "an evicted slot was counted twice");
        // The third becomes idle: the waiting newcomer takes its place.
        third.state.mark_waited();
        let fourth = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the idle connection did not make room")
            .unwrap();
        assert!(fourth.id > third.id);
        assert_eq!(table.open().by_age.len(), 2);
        // A request that ends makes its connection idle (and evictable) again.
        drop(_busy);
        let fifth = tokio::time::timeout(Duration::from_secs(5), table.admit())
            .await
            .expect("the first connection, idle again, did not make room");
        assert!(fifth.id > fourth.id);
    }

    #[tokio::test]
    async fn a_connection_is_evicted_only_once_it_is_old_enough() {
        let table = Arc::new(Table::new(1, Duration::from_millis(300)));
        let young = table.admit().await;
        young.state.mark_waited();
        let early = tokio::time::timeout(Duration::from_millis(100), table.admit()).await;
        assert!(
            early.is_err(),
            "a connection newer than evict_after was evicted"
        );
        let later = tokio::time::timeout(Duration::from_secs(5), table.admit()).await;
        assert!(later.is_ok(), "an old enough idle connection made no room");
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
        let table = Arc::new(Table::new(1, Duration::ZERO));
        let slot = table.admit().await;
        let mut conn = Stalled::new(stream, stall_timeout, slot.state.clone());
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
