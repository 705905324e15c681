//! The answer rule: what a device is told about one frame, for every transport (TCP
//! sessions, serial ports, UDP datagrams). Pure functions, no IO, so the rule is tested
//! without sockets.
//!
//! ```text
//!   frame + allow-list ──admit──▶ Verdict ──(records of Store frames appended)──▶ Outcome
//!                                    └───────────────answer(verdict, reply, outcome)──▶ Action
//! ```
//!
//! - A bad frame the stream steps past (`problem`) is answered `refused` (Wialon's error
//!   codes) and the stream goes on.
//! - A device not in `allowed_devices` (named by a login, a datagram or a report) is answered
//!   `refused` where the protocol has one (Teltonika `00`, a UDP ack of count 0), and the
//!   stream is closed; nothing of that frame is stored. TCP and UDP agree: a UDP device that
//!   is refused gets its "not accepted" answer too, so it learns at once instead of resending
//!   into silence.
//! - A login of an allowed device, or a control frame (keep-alive, heartbeat), is answered
//!   `accepted`: it asks nothing of the buffer, but like every answer it is sent only after
//!   the records of the frames before it are durable.
//! - A frame with records is answered `accepted` once they are durable, `refused` when the
//!   buffer refused them (`when_full = "reject"`); a protocol without a negative answer is
//!   closed instead, which is the only way it learns its data was not taken. A failed
//!   buffer closes without an answer.

use firmware_protocols::{Decoded, Reply};

use super::AllowList;

/// What a frame asks of the session, decided from the frame and the allow-list alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A bad frame the stream steps past; counted and logged by the caller.
    Problem,
    /// The frame names a device outside the allow-list.
    Stranger(String),
    /// A login of an allowed device (`Some(id)`) or a control frame: nothing to store.
    Control(Option<String>),
    /// Records to store before the answer.
    Store,
}

/// What became of the records a frame's answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Durable.
    Stored,
    /// The buffer is full and refused them (`when_full = "reject"`); nothing stored.
    Rejected,
    /// The buffer failed; whether anything is stored is unknown.
    Failed,
}

/// Why a stream is closed after a frame's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// A device outside `allowed_devices`.
    Stranger(String),
    /// The buffer refused the records and the protocol has no negative answer.
    CannotRefuse,
    /// The buffer failed.
    BufferFailed,
}

/// The bytes to send for one frame (in frame order, after the durable point), and whether
/// the stream ends after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Action {
    pub send: Option<Vec<u8>>,
    pub close: Option<Close>,
}

/// Looks at a decoded frame before anything is stored. `device` is the device the stream
/// knows after this frame (the decoder's id: a login, or the id a Queclink heartbeat
/// carries); `None` for datagrams, whose records name their device.
pub fn admit(frame: &Decoded, device: Option<&str>, allowed: &AllowList) -> Verdict {
    if frame.problem.is_some() {
        return Verdict::Problem;
    }
    if let Some(device) = &frame.login {
        if !allowed.allows(device) {
            return Verdict::Stranger(device.clone());
        }
        return Verdict::Control(Some(device.clone()));
    }
    // Protocols without a login frame (Queclink, UDP) name their device in every record.
    if let Some(stranger) = frame.records.iter().find(|r| !allowed.allows(&r.device_id)) {
        return Verdict::Stranger(stranger.device_id.clone());
    }
    if !frame.records.is_empty() {
        return Verdict::Store;
    }
    // A control frame that names a device outside the list (a Queclink heartbeat) is not
    // answered either: an answer would tell a stranger it is being served.
    match device {
        Some(device) if !allowed.allows(device) => Verdict::Stranger(device.to_string()),
        _ => Verdict::Control(None),
    }
}

/// The answer to a frame. `outcome` is the fate of the records appended for this frame and
/// every frame before it in the same read (one append); frames whose verdict is not
/// [`Verdict::Store`] ignore it.
pub fn answer(verdict: &Verdict, reply: Reply, outcome: Outcome) -> Action {
    let Reply { accepted, refused } = reply;
    match verdict {
        Verdict::Problem => Action {
            send: refused,
            close: None,
        },
        Verdict::Stranger(device) => Action {
            send: refused,
            close: Some(Close::Stranger(device.clone())),
        },
        Verdict::Control(_) => Action {
            send: accepted,
            close: None,
        },
        Verdict::Store => match outcome {
            Outcome::Stored => Action {
                send: accepted,
                close: None,
            },
            Outcome::Rejected => match refused {
                Some(no) => Action {
                    send: Some(no),
                    close: None,
                },
                None => Action {
                    send: None,
                    close: Some(Close::CannotRefuse),
                },
            },
            Outcome::Failed => Action {
                send: None,
                close: Some(Close::BufferFailed),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use firmware_protocols::{DecodeError, Protocol, Record};

    use super::*;

    fn reply() -> Reply {
        Reply {
            accepted: Some(b"yes".to_vec()),
            refused: Some(b"no".to_vec()),
        }
    }

    fn frame(login: Option<&str>, devices: &[&str]) -> Decoded {
        Decoded {
            login: login.map(str::to_string),
            records: devices
                .iter()
                .map(|d| Record::new(d.to_string(), Protocol::Queclink, 0))
                .collect(),
            reply: reply(),
            ..Decoded::control(1)
        }
    }

    fn only(devices: &[&str]) -> AllowList {
        AllowList::new(&devices.iter().map(|d| d.to_string()).collect::<Vec<_>>())
    }

    fn send(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }

    #[test]
    fn an_allowed_login_is_answered_accepted_whatever_the_buffer_did() {
        let v = admit(&frame(Some("1"), &[]), Some("1"), &only(&["1"]));
        assert_eq!(v, Verdict::Control(Some("1".into())));
        for outcome in [Outcome::Stored, Outcome::Rejected, Outcome::Failed] {
            let a = answer(&v, reply(), outcome);
            assert_eq!(a.send, send(b"yes"));
            assert_eq!(a.close, None);
        }
    }

    #[test]
    fn a_stranger_is_refused_and_closed_by_login_or_by_report() {
        let allowed = only(&["1"]);
        for f in [frame(Some("2"), &[]), frame(None, &["1", "2"])] {
            let v = admit(&f, None, &allowed);
            assert_eq!(v, Verdict::Stranger("2".into()));
            let a = answer(&v, reply(), Outcome::Stored);
            assert_eq!(a.send, send(b"no"));
            assert_eq!(a.close, Some(Close::Stranger("2".into())));
        }
    }

    #[test]
    fn a_stranger_without_a_negative_answer_is_closed_silently() {
        let v = admit(&frame(None, &["2"]), None, &only(&["1"]));
        let a = answer(&v, Reply::default(), Outcome::Stored);
        assert_eq!(a.send, None);
        assert_eq!(a.close, Some(Close::Stranger("2".into())));
    }

    #[test]
    fn an_empty_allow_list_allows_every_device() {
        assert_eq!(
            admit(&frame(None, &["7"]), Some("7"), &AllowList::default()),
            Verdict::Store
        );
        assert_eq!(
            admit(&frame(Some("7"), &[]), Some("7"), &AllowList::default()),
            Verdict::Control(Some("7".into()))
        );
    }

    #[test]
    fn records_are_answered_by_what_the_buffer_did() {
        let v = admit(&frame(None, &["1"]), Some("1"), &only(&["1"]));
        assert_eq!(v, Verdict::Store);
        assert_eq!(answer(&v, reply(), Outcome::Stored).send, send(b"yes"));
        let rejected = answer(&v, reply(), Outcome::Rejected);
        assert_eq!((rejected.send, rejected.close), (send(b"no"), None));
        let failed = answer(&v, reply(), Outcome::Failed);
        assert_eq!(
            (failed.send, failed.close),
            (None, Some(Close::BufferFailed))
        );
    }

    #[test]
    fn rejected_records_of_a_protocol_that_cannot_refuse_close_the_stream() {
        let quiet = Reply {
            accepted: Some(b"yes".to_vec()),
            refused: None,
        };
        let a = answer(&Verdict::Store, quiet, Outcome::Rejected);
        assert_eq!((a.send, a.close), (None, Some(Close::CannotRefuse)));
    }

    #[test]
    fn a_control_frame_is_answered_accepted() {
        for device in [None, Some("1")] {
            let v = admit(&frame(None, &[]), device, &only(&["1"]));
            assert_eq!(v, Verdict::Control(None));
            assert_eq!(answer(&v, reply(), Outcome::Failed).send, send(b"yes"));
        }
    }

    #[test]
    fn a_control_frame_naming_a_stranger_is_not_answered() {
        // A Queclink heartbeat carries its IMEI but no record and no login.
        let quiet = Reply {
            accepted: Some(b"+SACK:GTHBD,1A0102,0001$".to_vec()),
            refused: None,
        };
        let mut heartbeat = frame(None, &[]);
        heartbeat.reply = quiet.clone();
        let v = admit(&heartbeat, Some("2"), &only(&["1"]));
        assert_eq!(v, Verdict::Stranger("2".into()));
        let a = answer(&v, quiet, Outcome::Stored);
        assert_eq!((a.send, a.close), (None, Some(Close::Stranger("2".into()))));
    }

    #[test]
    fn a_problem_is_answered_refused_and_the_stream_goes_on() {
        let mut f = Decoded::problem(3, DecodeError::new(0, "bad checksum"));
        f.reply = reply();
        // A problem is never a stranger, even with a strict allow-list.
        let v = admit(&f, Some("2"), &only(&["1"]));
        assert_eq!(v, Verdict::Problem);
        let a = answer(&v, f.reply.clone(), Outcome::Stored);
        assert_eq!((a.send, a.close), (send(b"no"), None));
    }
}
