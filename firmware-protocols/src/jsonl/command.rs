//! JSON-line commands: the line the gateway writes, and the answer line a device writes back.
//! No vendor document; this is the specification.
//!
//! ```text
//! gateway ──▶ device   {"command":"getinfo","device_id":"tank-7","id":"c-42"}\n
//! device ──▶ gateway   {"id":"c-42","answer":"fw 1.2, uptime 3 d"}\n
//!                      {"id":"c-42","answer":"unknown command","error":true}\n
//! ```
//!
//! `device_id` names the device the command is for: one connection may carry the records of
//! many devices (a local application, a hub of sensors), and each of them can be sent
//! commands on it. The answer needs no `device_id`: the command id says whose it is.
//!
//! A line is an answer when its top-level object has both `"answer"` and a string `"id"`;
//! every other line is a record, as before (a record with an `id` member but no `answer`, or
//! an `answer` member but no string `id`, is still a record). `answer` is a string, or any
//! other JSON value, which is kept as its compact JSON text. `error` (optional, `true` or
//! `false`) says the command failed on the device. Other members (`device_id`, `time`) are
//! allowed and ignored.

use serde_json::{Map, Value};

use crate::command::{AnswerKey, CommandAnswer};
use crate::DecodeError;

/// The command line for `text` to `device_id`, `\n` included: JSON escapes whatever `text`
/// holds.
pub(crate) fn command_line(command_id: &str, device_id: &str, text: &str) -> Vec<u8> {
    let mut line = serde_json::json!({ "id": command_id, "device_id": device_id, "command": text })
        .to_string();
    line.push('\n');
    line.into_bytes()
}

/// The answer `line` (no line end) carries, `Ok(None)` when it is not an answer line.
pub(crate) fn answer(line: &[u8]) -> Result<Option<CommandAnswer>, DecodeError> {
    // Most lines are records: look for the member name before parsing anything.
    if !line.windows(8).any(|w| w == b"\"answer\"") {
        return Ok(None);
    }
    // Not one JSON object: the record parser names the problem with the right offset.
    let Ok(object) = serde_json::from_slice::<Map<String, Value>>(line) else {
        return Ok(None);
    };
    let (Some(answer), Some(Value::String(id))) = (object.get("answer"), object.get("id")) else {
        return Ok(None);
    };
    let device_error = match object.get("error") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(DecodeError::new(
                0,
                format!(
                    "answer line for command {id:?}: \"error\" must be true or false, not {other}"
                ),
            ))
        }
    };
    let text = match answer {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(Some(CommandAnswer {
        key: AnswerKey::CommandId(id.clone()),
        text,
        device_error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_one_escaped_json_line() {
        let line = command_line("c-42", "tank \"7\"", "say \"hi\"\nnow");
        assert_eq!(
            line,
            b"{\"command\":\"say \\\"hi\\\"\\nnow\",\"device_id\":\"tank \\\"7\\\"\",\"id\":\"c-42\"}\n"
                .to_vec()
        );
    }

    #[test]
    fn answer_lines_are_found_and_records_are_left_alone() {
        let a = answer(br#"{"id":"c-42","answer":"ok"}"#).unwrap().unwrap();
        assert_eq!(a.key, AnswerKey::CommandId("c-42".into()));
        assert_eq!((a.text.as_str(), a.device_error), ("ok", false));

        let a = answer(br#"{"answer":{"v":1},"error":true,"id":"x"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((a.text.as_str(), a.device_error), (r#"{"v":1}"#, true));

        for record in [
            &br#"{"device_id":"t","lat":1.0,"lon":2.0}"#[..],
            br#"{"id":"sensor-3","level":4}"#,
            br#"{"answer":42,"device_id":"t"}"#,
            br#"{"id":7,"answer":42}"#,
            br#"{"id":"c","answer":1"#,
        ] {
            assert_eq!(
                answer(record),
                Ok(None),
                "{}",
                String::from_utf8_lossy(record)
            );
        }
        let bad = answer(br#"{"id":"c","answer":"x","error":"yes"}"#).unwrap_err();
        assert!(bad.reason.contains("\"error\""), "{}", bad.reason);
    }
}
