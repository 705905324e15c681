//! `POST /commands` and `GET /commands/{id}`: the installer's way to send a command
//! (`fleetedge command`) through the same queue as the cloud's. Protected like `/buffer/*`
//! by `http.token` ([`super::access`]).
//!
//! `POST /commands` takes the MQTT command JSON; without an `id` it gets one
//! (`http-<unix ms>-<n>`). The answer is the command's first result JSON (`queued`,
//! `sent`, or `rejected` with the reason); a payload with no readable id is answered 400
//! with the reason. `GET /commands/{id}` answers the latest result this process has seen.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::commands::message::CommandResult;
use crate::commands::Commands;

/// Largest request body.
const MAX_BODY: usize = 256 * 1024;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn off() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "commands are off (commands.enabled = false)",
    )
        .into_response()
}

fn json(r: &CommandResult) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], r.to_json()).into_response()
}

pub async fn submit(State(commands): State<Option<Commands>>, body: Bytes) -> Response {
    let Some(commands) = commands else {
        return off();
    };
    if body.len() > MAX_BODY {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the command is too large").into_response();
    }
    let now = crate::commands::now_ms();
    // Give the command an id when it has none; anything else is judged as from MQTT.
    let (payload, id) = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut map)) => {
            let id = match map.get("id").and_then(|v| v.as_str()) {
                Some(id) => id.to_string(),
                None => {
                    let id = format!("http-{now}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
                    map.insert("id".into(), serde_json::Value::String(id.clone()));
                    id
                }
            };
            (
                serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default(),
                id,
            )
        }
        Ok(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "malformed JSON: a command is an object",
            )
                .into_response()
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")).into_response(),
    };
    if let Some(known) = commands.status(&id) {
        return json(&known);
    }
    if let Err(e) = commands.accept(&[&payload], now).await {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the command could not be queued: {e}"),
        )
            .into_response();
    }
    match commands.status(&id) {
        Some(r) => json(&r),
        // Accepted before this process started (a remembered id): not sent again.
        None => (
            StatusCode::CONFLICT,
            format!("command id {id:?} was accepted before; not sent again"),
        )
            .into_response(),
    }
}

pub async fn status(State(commands): State<Option<Commands>>, Path(id): Path<String>) -> Response {
    let Some(commands) = commands else {
        return off();
    };
    match commands.status(&id) {
        Some(r) => json(&r),
        None => (
            StatusCode::NOT_FOUND,
            format!("no command {id:?} seen by this gateway since it started"),
        )
            .into_response(),
    }
}
