//! The operations endpoint on `http.bind`: its routes (axum), answered over HTTP/1.1:
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | 200, Prometheus text ([`super::prometheus`]) |
//! | `GET /health` | 200 `ok` while the process serves HTTP at all |
//! | `GET /ready` | 200 `ready` when the buffer's commit thread runs and MQTT is connected; else 503 with the reasons |
//! | `GET /buffer/stats` | 200, the buffer's [`BufferReport`] as JSON (`fleetedge buffer stats`); 401 without the bearer token when `http.token` is set (as for export) |
//! | `GET /buffer/export[?limit=N]` | 200, the backlog as JSON lines, streamed, ending in `{"end":{"records":N,…}}` (`fleetedge buffer export`); 503 while [`MAX_EXPORTS`] run |
//! | `POST /commands` | a command (the MQTT command JSON; `id` optional) queued as if from the cloud; 200 with its first result JSON (`fleetedge command`); 503 with commands off; token as `/buffer/*` |
//! | `GET /commands/{id}` | 200 with the command's latest result JSON, 404 when unknown; token as `/buffer/*` |
//! | anything else | 404 (405 for another method on a known path) |
//!
//! `/buffer/export` reads the buffer read-only (nothing is acknowledged) on a blocking thread,
//! one slice of at most [`export::READ_RECORDS`] records at a time, into a channel of
//! [`EXPORT_QUEUE`] slices that the response body drains: memory stays bounded whatever the
//! backlog, and a slow client only holds that thread (and its connection, until the stall
//! deadline closes it), never the pipeline. An unreadable chunk is skipped (and left
//! in place) with a `{"warning": …}` line, and a failed read ends the answer with an
//! `{"error": …}` line; every record line starts with `{"seq":`.
//!
//! Every request passes [`super::access`] first: its `Host` must name this endpoint (DNS
//! rebinding), and with `http.token` set `/buffer/*` requires the bearer token. Connections
//! are served by [`super::serve`] with a header deadline ([`HEADER_TIMEOUT`]), an answer
//! deadline ([`ANSWER_TIMEOUT`]), a stall deadline ([`STALL_TIMEOUT`]) and at most
//! `http.max_connections` at once, where a newcomer evicts the oldest idle or slow
//! connection so `/health` answers whatever slow clients do.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::access::Access;
use super::prometheus;
use super::serve::{self, Limits};
use crate::buffer::Buffer;
use crate::commands::Commands;
use crate::config::HttpSettings;
use crate::inspect::export;
use crate::inspect::report::{self, BufferReport};

/// A request's head must arrive within this of the connection (or of the previous answer).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A route must have its answer's head ready within this; reading the buffer's stats takes
/// milliseconds, so this only bounds a wedged disk.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that moves no bytes for this long (a client not reading its answer) is
/// closed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `/buffer/export` answers running at once; more are answered 503.
pub const MAX_EXPORTS: usize = 2;

/// Slices (of at most [`export::READ_RECORDS`] records) an export reads ahead of its client.
pub const EXPORT_QUEUE: usize = 4;

/// The endpoint's socket, bound at start so a bad `http.bind` fails the start.
#[derive(Debug)]
pub struct HttpEndpoint {
    listener: TcpListener,
    local_addr: SocketAddr,
    max_connections: usize,
    access: Access,
}

/// Binds `http.bind`; `None` when it is empty (the endpoint is off). The error names the key.
pub async fn bind(settings: &HttpSettings) -> anyhow::Result<Option<HttpEndpoint>> {
    let Some(addr) = settings.addr().map_err(anyhow::Error::msg)? else {
        tracing::info!(
            "http.bind is empty: no /metrics, /health, /ready or /buffer endpoint (fleetedge \
             buffer stats|export cannot reach this gateway)"
        );
        return Ok(None);
    };
    let token = settings.token().map_err(anyhow::Error::msg)?;
    let listener = crate::listen::tcp(addr)
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
    if token.is_none() {
        tracing::info!(
            "http.token is not set: /buffer/stats and /buffer/export answer every local user"
        );
    }
    Ok(Some(HttpEndpoint {
        listener,
        local_addr,
        max_connections: settings.max_connections,
        access: Access::new(local_addr, token),
    }))
}

impl HttpEndpoint {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the returned handle is dropped (the gateway keeps it for its whole run,
    /// so `/metrics` stays readable while a shutdown drains the buffer).
    pub fn spawn(self, buffer: Buffer, commands: Option<Commands>) -> Running {
        let addr = self.local_addr;
        tracing::info!(
            %addr,
            "serving /metrics, /health, /ready, /buffer/stats and /buffer/export over HTTP"
        );
        let limits = Limits {
            max_connections: self.max_connections,
            header_timeout: HEADER_TIMEOUT,
            answer_timeout: ANSWER_TIMEOUT,
            stall_timeout: STALL_TIMEOUT,
        };
        let app = router(buffer, commands);
        Running(tokio::spawn(serve::serve(
            self.listener,
            limits,
            app,
            self.access,
        )))
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

/// What the handlers share: the buffer, and the export slots.
#[derive(Clone)]
struct Ops {
    buffer: Buffer,
    exports: Arc<Semaphore>,
    /// `None` with `commands.enabled = false`.
    commands: Option<Commands>,
}

impl FromRef<Ops> for Option<Commands> {
    fn from_ref(ops: &Ops) -> Option<Commands> {
        ops.commands.clone()
    }
}

impl FromRef<Ops> for Buffer {
    fn from_ref(ops: &Ops) -> Buffer {
        ops.buffer.clone()
    }
}

fn router(buffer: Buffer, commands: Option<Commands>) -> Router {
    routes().with_state(Ops {
        buffer,
        exports: Arc::new(Semaphore::new(MAX_EXPORTS)),
        commands,
    })
}

fn routes() -> Router<Ops> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/buffer/stats", get(buffer_stats))
        .route("/buffer/export", get(buffer_export))
        .route("/commands", axum::routing::post(super::commands::submit))
        .route("/commands/{id}", get(super::commands::status))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
}

async fn metrics(State(buffer): State<Buffer>) -> Response {
    // `BufferStats::disk_bytes` lists sled's directory: keep that off the async workers.
    match tokio::task::spawn_blocking(move || prometheus::render(&buffer)).await {
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

async fn buffer_stats(State(buffer): State<Buffer>) -> Response {
    let collected = tokio::task::spawn_blocking(move || report::collect(&buffer)).await;
    let report: Result<BufferReport, String> = match collected {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match report.and_then(|r| serde_json::to_string(&r).map_err(|e| e.to_string())) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(why) => {
            tracing::error!(error = %why, "reading the buffer for /buffer/stats failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the buffer failed: {why}"),
            )
                .into_response()
        }
    }
}

/// The `limit` of a `/buffer/export` query (`None` without one); the error is the answer.
fn export_limit(query: Option<&str>) -> Result<Option<u64>, String> {
    let mut limit = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", n)) => match n.parse() {
                Ok(n) => limit = Some(n),
                Err(_) => return Err(format!("limit: {n:?} is not a record count")),
            },
            _ => return Err(format!("unknown query parameter {pair:?}; only limit=N")),
        }
    }
    Ok(limit)
}

async fn buffer_export(State(ops): State<Ops>, uri: Uri) -> Response {
    let limit = match export_limit(uri.query()) {
        Ok(limit) => limit,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let Ok(slot) = ops.exports.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_EXPORTS} exports are running already; try again when one has ended"),
        )
            .into_response();
    };
    let (tx, rx) = mpsc::channel::<Bytes>(EXPORT_QUEUE);
    let buffer = ops.buffer;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // A failed send means the client went away (the body was dropped): stop reading.
        let result = export::run(&buffer, limit, |item| {
            if let export::Item::Skipped(text) = &item {
                tracing::warn!(warning = %text, "/buffer/export");
            }
            tx.blocking_send(Bytes::from(item.into_bytes())).is_ok()
        });
        match result {
            Ok(summary) => {
                let _ = tx.blocking_send(Bytes::from(export::end_line(&summary)));
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!(error = %why, "/buffer/export stopped: reading the buffer failed");
                let _ = tx.blocking_send(Bytes::from(export::json_line("error", &why)));
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(Slices(rx)),
    )
        .into_response()
}

/// The export's channel as the stream of body chunks.
struct Slices(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Slices {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx).map(|slice| slice.map(Ok))
    }
}

async fn health(State(buffer): State<Buffer>) -> (StatusCode, String) {
    // A failing buffer database (a full disk, EIO) is unhealthy even while it recovers.
    match buffer.failing() {
        None => (StatusCode::OK, "ok".into()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: the buffer's database is failing and being reopened: {why}"),
        ),
    }
}

async fn ready(State(buffer): State<Buffer>) -> (StatusCode, String) {
    let ready = readiness(buffer.committer_alive(), crate::metrics::mqtt_connected());
    // Removal after PUBACK failing (the uplink holds the acknowledged range and retries):
    // the buffer cannot shrink, so the gateway is not ready even while MQTT is up.
    let ready = ready.and_then(|()| match crate::uplink::removal_stalled() {
        None => Ok(()),
        Some(s) => Err(format!(
            "not ready: removing acknowledged records (through seq {}) from the buffer has failed {} time(s) for {} s: {}",
            s.acknowledged_through,
            s.attempts,
            s.since.elapsed().as_secs(),
            s.error
        )),
    });
    // Low disk space or a failing database: new records are refused, say why.
    match (ready, buffer.refusing()) {
        (Ok(()), None) => (StatusCode::OK, "ready".into()),
        (Ok(()), Some(buffer)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: buffer refusing records: {buffer}"),
        ),
        (Err(why), None) => (StatusCode::SERVICE_UNAVAILABLE, why),
        (Err(why), Some(buffer)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}; buffer refusing records: {buffer}"),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

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

    #[test]
    fn the_export_query_takes_only_a_limit() {
        assert_eq!(export_limit(None), Ok(None));
        assert_eq!(export_limit(Some("")), Ok(None));
        assert_eq!(export_limit(Some("limit=25")), Ok(Some(25)));
        assert!(export_limit(Some("limit=-1"))
            .unwrap_err()
            .contains("limit"));
        assert!(export_limit(Some("all=1")).unwrap_err().contains("all=1"));
    }

    const TOKEN: &str = "test-token-0123456789";

    /// Serves the routes as the gateway does (with [`TOKEN`]) on a loopback port of its own.
    async fn serve(buffer: Buffer) -> (SocketAddr, Ops, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ops = Ops {
            buffer,
            exports: Arc::new(Semaphore::new(MAX_EXPORTS)),
            commands: None,
        };
        let app = routes().with_state(ops.clone());
        let limits = Limits {
            max_connections: 4,
            header_timeout: HEADER_TIMEOUT,
            answer_timeout: ANSWER_TIMEOUT,
            stall_timeout: STALL_TIMEOUT,
        };
        let access = Access::new(addr, Some(Secret::new(TOKEN)));
        let task = tokio::spawn(serve::serve(listener, limits, app, access));
        (addr, ops, task)
    }

    #[tokio::test]
    async fn buffer_routes_report_and_stream_the_backlog_without_removing_it() {
        use crate::inspect::client;
        use firmware_protocols::{Protocol, Record};

        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(crate::buffer::BufferOptions {
            seq_floor: Some(1),
            ..crate::buffer::BufferOptions::new(dir.path().join("db"))
        })
        .unwrap();
        for chunk in 0..3 {
            let records = (0..4)
                .map(|i| Record::new(format!("dev-{chunk}-{i}"), Protocol::Gt06, 1_000 + i))
                .collect();
            buffer.append(records).await.unwrap();
        }
        let (addr, ops, task) = serve(buffer.clone()).await;
        let token = Some(Secret::new(TOKEN));
        let token = token.as_ref();

        let mut refused = client::get(addr, "/buffer/export", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(refused.status, 401);
        assert!(refused.text(1024).await.unwrap().contains("Bearer"));
        let wrong = Secret::new("test-token-0123456780");
        let refused = client::get(addr, "/buffer/stats", Some(&wrong))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(refused.status, 401);
        let mut health = client::get(addr, "/health", None).await.unwrap().unwrap();
        assert_eq!(
            (health.status, health.text(64).await.unwrap().as_str()),
            (200, "ok"),
            "/health needs no token"
        );

        let mut stats = client::get(addr, "/buffer/stats", token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.status, 200);
        let report: BufferReport =
            serde_json::from_str(&stats.text(1 << 20).await.unwrap()).unwrap();
        assert_eq!(
            (report.records, report.oldest_seq, report.next_seq),
            (12, Some(1), 13)
        );

        let mut export = client::get(addr, "/buffer/export?limit=10", token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(export.status, 200);
        let mut lines = Vec::new();
        while let Some(line) = export.read_line(1 << 20).await.unwrap() {
            lines.push(serde_json::from_slice::<serde_json::Value>(&line).unwrap());
        }
        // The records, then the end line that counts them.
        let end = lines.pop().expect("an end line");
        assert_eq!(
            end,
            serde_json::json!({"end": {"records": 10, "skipped_chunks": 0}})
        );
        for v in &lines {
            assert_eq!(v["protocol"], "gt06", "{v}");
        }
        let seqs: Vec<_> = lines.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_eq!(buffer.stats().records, 12, "the export removed records");

        let mut bad = client::get(addr, "/buffer/export?limit=x", token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bad.status, 400);
        assert!(bad.text(1024).await.unwrap().contains("limit"));

        // Every export slot taken: the next one is told to come back later.
        let held = ops
            .exports
            .clone()
            .acquire_many_owned(MAX_EXPORTS as u32)
            .await
            .unwrap();
        let mut busy = client::get(addr, "/buffer/export", token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(busy.status, 503);
        assert!(busy
            .text(1024)
            .await
            .unwrap()
            .contains("exports are running"));
        drop(held);
        task.abort();
    }

    #[tokio::test]
    async fn bind_names_the_key_and_empty_turns_the_endpoint_off() {
        let off = HttpSettings {
            bind: String::new(),
            ..HttpSettings::default()
        };
        assert!(bind(&off).await.unwrap().is_none());
        let bad = HttpSettings {
            bind: "localhost".into(),
            ..HttpSettings::default()
        };
        let err = bind(&bad).await.unwrap_err().to_string();
        assert!(err.starts_with("http.bind:"), "{err}");
        // A port already taken fails with the key and the address.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let busy = HttpSettings {
            bind: addr.to_string(),
            ..HttpSettings::default()
        };
        let err = format!("{:#}", bind(&busy).await.unwrap_err());
        assert!(
            err.starts_with(&format!("http.bind: cannot listen on {addr}")),
            "{err}"
        );
    }
}
