//! What the gateway answers each packet, from the v1.1 / v2.0 documents' code tables.
//!
//! "Not stored" (the buffer refused a good packet under the `reject` policy) has no code of
//! its own. It is answered with the zero answer of each type – `#ASD#0`, `#AD#0`, `#AB#0`,
//! `#AM#0`, `#AL#0` – because zero is the protocol's "not registered" for black boxes and
//! messages, and for SD/D it is the least damaging of the documented codes: `-1` tells the
//! device the packet itself is malformed, which firmware may take as a reason to drop it,
//! while `0` ("incorrect time") at worst makes it resend. Either way the device is told
//! "not accepted", never "accepted".

use super::fields::Fault;
use crate::Reply;

/// `#AL#1`: device authorised.
pub(super) const LOGIN_OK: &[u8] = b"#AL#1\r\n";
/// `#AL#0`: device refused (also the answer to a login that cannot be parsed).
pub(super) const LOGIN_REFUSED: &[u8] = b"#AL#0\r\n";
/// `#AL#01`: password verification error.
pub(super) const LOGIN_BAD_PASSWORD: &[u8] = b"#AL#01\r\n";
/// `#AL#10`: checksum verification error (v2.0).
pub(super) const LOGIN_BAD_CRC: &[u8] = b"#AL#10\r\n";
/// `#AP#`: ping answered.
pub(super) const PING: &[u8] = b"#AP#\r\n";

/// The two position packets, whose answers share their codes except for the v2.0 ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DataKind {
    /// `#SD#`, answered `#ASD#`.
    Short,
    /// `#D#`, answered `#AD#`.
    Extended,
}

impl DataKind {
    fn prefix(self) -> &'static str {
        match self {
            DataKind::Short => "#ASD#",
            DataKind::Extended => "#AD#",
        }
    }
}

/// Registered / not stored.
pub(super) fn data_stored(kind: DataKind) -> Reply {
    let (yes, no): (&[u8], &[u8]) = match kind {
        DataKind::Short => (b"#ASD#1\r\n", b"#ASD#0\r\n"),
        DataKind::Extended => (b"#AD#1\r\n", b"#AD#0\r\n"),
    };
    Reply {
        accepted: Some(yes.to_vec()),
        refused: Some(no.to_vec()),
    }
}

/// The error answer for a refused SD or D packet.
pub(super) fn data_error(kind: DataKind, fault: Fault) -> Vec<u8> {
    let code = match (kind, fault) {
        (_, Fault::Structure) => "-1",
        (_, Fault::Time) => "0",
        (_, Fault::Coordinates) => "10",
        (_, Fault::Motion) => "11",
        (_, Fault::Satellites) => "12",
        (DataKind::Short, Fault::Checksum) => "13",
        (DataKind::Extended, Fault::InputsOutputs) => "13",
        (DataKind::Extended, Fault::Adc) => "14",
        (DataKind::Extended, Fault::Params) => "15",
        (DataKind::Extended, Fault::Checksum) => "16",
        // An SD body has no such fields; a parser bug should still answer "malformed".
        (DataKind::Short, Fault::InputsOutputs | Fault::Adc | Fault::Params) => "-1",
    };
    format!("{}{code}\r\n", kind.prefix()).into_bytes()
}

/// `#AB#<n>` when the `n` messages are stored, `#AB#0` when not.
pub(super) fn black_box_stored(count: usize) -> Reply {
    Reply {
        accepted: Some(format!("#AB#{count}\r\n").into_bytes()),
        refused: Some(b"#AB#0\r\n".to_vec()),
    }
}

/// A refused black box: `#AB#` with an empty count for a bad checksum (v2.0), otherwise
/// `#AB#0` – nothing of the packet was registered, since one bad message refuses it all.
pub(super) fn black_box_error(fault: Fault) -> Vec<u8> {
    match fault {
        Fault::Checksum => b"#AB#\r\n".to_vec(),
        _ => b"#AB#0\r\n".to_vec(),
    }
}

/// `#AM#1` received / `#AM#0` not stored.
pub(super) fn message_stored() -> Reply {
    Reply {
        accepted: Some(b"#AM#1\r\n".to_vec()),
        refused: Some(b"#AM#0\r\n".to_vec()),
    }
}

/// A refused driver message: `#AM#01` for a bad checksum (v2.0), `#AM#0` otherwise.
pub(super) fn message_error(fault: Fault) -> Vec<u8> {
    match fault {
        Fault::Checksum => b"#AM#01\r\n".to_vec(),
        _ => b"#AM#0\r\n".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_documents() {
        let sd = |f| String::from_utf8(data_error(DataKind::Short, f)).unwrap();
        let d = |f| String::from_utf8(data_error(DataKind::Extended, f)).unwrap();
        assert_eq!(sd(Fault::Structure), "#ASD#-1\r\n");
        assert_eq!(sd(Fault::Time), "#ASD#0\r\n");
        assert_eq!(sd(Fault::Coordinates), "#ASD#10\r\n");
        assert_eq!(sd(Fault::Motion), "#ASD#11\r\n");
        assert_eq!(sd(Fault::Satellites), "#ASD#12\r\n");
        assert_eq!(sd(Fault::Checksum), "#ASD#13\r\n");
        assert_eq!(d(Fault::InputsOutputs), "#AD#13\r\n");
        assert_eq!(d(Fault::Adc), "#AD#14\r\n");
        assert_eq!(d(Fault::Params), "#AD#15\r\n");
        assert_eq!(d(Fault::Checksum), "#AD#16\r\n");
        assert_eq!(black_box_error(Fault::Checksum), b"#AB#\r\n");
        assert_eq!(black_box_error(Fault::Time), b"#AB#0\r\n");
        assert_eq!(message_error(Fault::Checksum), b"#AM#01\r\n");
        assert_eq!(
            black_box_stored(3).accepted.as_deref(),
            Some(&b"#AB#3\r\n"[..])
        );
    }
}
