//! The cloud contract of downlink commands: the command JSON the gateway accepts on
//! `{prefix}/{gateway_id}/commands` and the result JSON it publishes on
//! `{prefix}/{gateway_id}/command-results` (documented in the README, "Commands").
//!
//! ```text
//! command  {"id":"c-42","device_id":"356307042000000","text":"getinfo","ttl_s":3600}
//!          exactly one of "text" / "raw_hex"; "ttl_s" optional; any other field: rejected
//! result   {"id":"c-42","device_id":"…","status":"answered","at":"2026-…Z",
//!           "answer":"…","reason":null}
//! ```
//!
//! Pure: parsing and rendering only. What is `rejected` for reasons that need the device
//! (protocol, allow-list, queue room) is decided by the queue.

use serde::{Deserialize, Serialize};

/// Longest command id accepted (it is echoed in every result and kept for de-duplication).
pub const MAX_ID_BYTES: usize = 128;
/// Longest device id accepted.
pub const MAX_DEVICE_ID_BYTES: usize = 64;

/// A command as published by the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCommand {
    id: String,
    device_id: String,
    text: Option<String>,
    raw_hex: Option<String>,
    ttl_s: Option<u64>,
}

/// What to send, as accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Text(String),
    Raw(Vec<u8>),
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Text(t) => t.len(),
            Body::Raw(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A well-formed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: String,
    pub device_id: String,
    pub body: Body,
    pub ttl_s: Option<u64>,
}

/// A payload that is not a command, with what could be read of it for the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub id: Option<String>,
    pub device_id: Option<String>,
    pub reason: String,
}

/// Parses a command payload; `max_bytes` bounds the command's text or bytes.
pub fn parse(payload: &[u8], max_bytes: usize) -> Result<Command, Malformed> {
    let wire: WireCommand = serde_json::from_slice(payload).map_err(|e| {
        // Name what can be named: an unknown field in an otherwise fine object still has
        // its id, so the cloud can match the rejection.
        let loose: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
        let field = |name: &str| {
            loose
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .map(|s| s.chars().take(MAX_ID_BYTES).collect::<String>())
        };
        let text = e.to_string();
        let reason = if text.starts_with("unknown field") {
            format!("unknown field: {text}")
        } else {
            format!("malformed JSON: {text}")
        };
        Malformed {
            id: field("id"),
            device_id: field("device_id"),
            reason,
        }
    })?;
    let bad = |reason: String| Malformed {
        id: Some(wire.id.clone()),
        device_id: Some(wire.device_id.clone()),
        reason,
    };
    if wire.id.is_empty() || wire.id.len() > MAX_ID_BYTES {
        return Err(bad(format!(
            "malformed JSON: id must be 1 to {MAX_ID_BYTES} bytes"
        )));
    }
    if wire.device_id.is_empty() || wire.device_id.len() > MAX_DEVICE_ID_BYTES {
        return Err(bad(format!(
            "malformed JSON: device_id must be 1 to {MAX_DEVICE_ID_BYTES} bytes"
        )));
    }
    let body = match (&wire.text, &wire.raw_hex) {
        (Some(text), None) => Body::Text(text.clone()),
        (None, Some(hex_text)) => match hex::decode(hex_text) {
            Ok(bytes) => Body::Raw(bytes),
            Err(e) => return Err(bad(format!("malformed JSON: raw_hex: {e}"))),
        },
        _ => {
            return Err(bad(
                "malformed JSON: exactly one of text and raw_hex is required".into(),
            ))
        }
    };
    if body.is_empty() {
        return Err(bad("malformed JSON: the command is empty".into()));
    }
    if body.len() > max_bytes {
        return Err(bad(format!(
            "too long: {} bytes, commands.max_bytes is {max_bytes}",
            body.len()
        )));
    }
    if wire.ttl_s == Some(0) {
        return Err(bad("malformed JSON: ttl_s must be at least 1".into()));
    }
    Ok(Command {
        id: wire.id,
        device_id: wire.device_id,
        body,
        ttl_s: wire.ttl_s,
    })
}

/// Where a command stands; the `status` of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Sent,
    Answered,
    Failed,
    Expired,
    Rejected,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Sent,
        Status::Answered,
        Status::Failed,
        Status::Expired,
        Status::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Answered => "answered",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Rejected => "rejected",
        }
    }

    /// A final status: nothing follows it.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Sent)
    }
}

/// One result message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: Option<String>,
    pub device_id: Option<String>,
    pub status: Status,
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
    pub answer: Option<String>,
    pub reason: Option<String>,
}

impl CommandResult {
    pub fn new(id: &str, device_id: &str, status: Status, now_ms: i64) -> CommandResult {
        CommandResult {
            id: Some(id.to_string()),
            device_id: Some(device_id.to_string()),
            status,
            at: firmware_protocols::record::format_rfc3339_ms(now_ms),
            answer: None,
            reason: None,
        }
    }

    pub fn rejected(m: &Malformed, now_ms: i64) -> CommandResult {
        CommandResult {
            id: m.id.clone(),
            device_id: m.device_id.clone(),
            status: Status::Rejected,
            at: firmware_protocols::record::format_rfc3339_ms(now_ms),
            answer: None,
            reason: Some(m.reason.clone()),
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> CommandResult {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_answer(mut self, answer: impl Into<String>) -> CommandResult {
        self.answer = Some(answer.into());
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_parses_with_text_or_raw_hex() {
        let c = parse(
            br#"{"id":"c-42","device_id":"356307042000000","text":"getinfo","ttl_s":3600}"#,
            64,
        )
        .unwrap();
        assert_eq!(c.body, Body::Text("getinfo".into()));
        assert_eq!(c.ttl_s, Some(3600));
        let c = parse(br#"{"id":"c","device_id":"d","raw_hex":"0a0B"}"#, 64).unwrap();
        assert_eq!(c.body, Body::Raw(vec![0x0a, 0x0b]));
        assert_eq!(c.ttl_s, None);
    }

    #[test]
    fn bad_commands_are_rejected_with_their_reason_and_what_could_be_read() {
        let m = parse(b"{not json", 64).unwrap_err();
        assert!(m.reason.starts_with("malformed JSON"), "{}", m.reason);
        assert_eq!(m.id, None);
        let m = parse(br#"{"id":"c-1","device_id":"d","text":"x","colour":1}"#, 64).unwrap_err();
        assert!(m.reason.starts_with("unknown field"), "{}", m.reason);
        assert!(m.reason.contains("colour"), "{}", m.reason);
        assert_eq!(m.id.as_deref(), Some("c-1"));
        let m = parse(br#"{"id":"c-2","device_id":"d","text":"abcdef"}"#, 5).unwrap_err();
        assert!(m.reason.starts_with("too long: 6 bytes"), "{}", m.reason);
        let m = parse(
            br#"{"id":"c-3","device_id":"d","text":"a","raw_hex":"00"}"#,
            5,
        )
        .unwrap_err();
        assert!(m.reason.contains("exactly one"), "{}", m.reason);
        let m = parse(br#"{"id":"c-4","device_id":"d","raw_hex":"0g"}"#, 5).unwrap_err();
        assert!(m.reason.contains("raw_hex"), "{}", m.reason);
    }

    #[test]
    fn results_carry_every_field_of_the_contract() {
        let r = CommandResult::new("c-42", "dev", Status::Answered, 0).with_answer("ok");
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["status"], "answered");
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["answer"], "ok");
        assert!(v["reason"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 6);
    }
}
