//! Wialon IPS commands: a message to the driver `#M#` out, `#AM#` back. Fact sheets
//! `shared/protocols/wialon-ips.md` §1 and `commands.md`.
//!
//! ```text
//! gateway ──▶ device   #M#<text>\r\n
//! device ──▶ gateway   #AM#1\r\n    delivered          #AM#0\r\n  (or another code) failed
//! ```
//!
//! The IPS packet table lists `M` as sent by both sides and `#AM#` as the answer to an `M`;
//! the v1.1 table names only the server as the sender of `AM`, so a device that does not
//! answer leaves its command to the gateway's answer timeout. `#AM#` names no message, so it
//! answers the command outstanding on the connection. The gateway's `#M#` carries no CRC
//! even to a 2.0 device: like `#AL#` and `#AD#`, packets from the server have none.
//! Over UDP a device takes nothing (fact sheet §6), so `wialon-udp` has no downlink.

use crate::command::{AnswerKey, CommandAnswer, CommandError};
use crate::Protocol;

/// `#M#<text>\r\n`. The text may be any UTF-8 (drivers read their own language) without
/// control characters, which would end the packet or garble the driver's display.
pub(crate) fn command_packet(text: &str) -> Result<Vec<u8>, CommandError> {
    if let Some((offset, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(CommandError::BadText {
            protocol: Protocol::Wialon,
            offset,
            reason: format!(
                "control character U+{:04X} would end the #M# packet",
                u32::from(c)
            ),
        });
    }
    Ok(format!("#M#{text}\r\n").into_bytes())
}

/// The answer `#AM#<body>` carries: `1` is success, anything else the device's error code.
pub(super) fn answer(body: &[u8]) -> CommandAnswer {
    let text = String::from_utf8_lossy(body).trim().to_owned();
    CommandAnswer {
        key: AnswerKey::Outstanding,
        device_error: text != "1",
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_and_answers() {
        assert_eq!(
            command_packet("Привет, 5 min"),
            Ok("#M#Привет, 5 min\r\n".as_bytes().to_vec())
        );
        let e = command_packet("a\r\n#L#x");
        assert!(
            matches!(e, Err(CommandError::BadText { offset: 1, .. })),
            "{e:?}"
        );
        assert!(!answer(b"1").device_error);
        let failed = answer(b"0");
        assert_eq!((failed.text.as_str(), failed.device_error), ("0", true));
        assert_eq!(answer(b"01").key, AnswerKey::Outstanding);
    }
}
