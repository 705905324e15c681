//! The decoder test kit: the harness every protocol's tests share, so that a protocol's test
//! file is its table of captures and the checks of each, and a new protocol gets the whole
//! battery by listing its frames (one capture, one line of test).
//!
//! Compiled only with the `testkit` feature, which the crate's own tests enable through a
//! dev-dependency on the crate itself (see `Cargo.toml`); the gateway never builds it.
//!
//! - [`Capture`] + [`Battery`] (and the [`capture_battery!`](crate::capture_battery) macro):
//!   every capture of a table decoded whole, fed one byte at a time, followed by the next
//!   frame, and split into two reads at every offset (each must consume exactly its own bytes
//!   and pass its checks every time), and with each of its bytes inverted in turn (the
//!   decoder must still keep its [`Contract`]).
//! - [`drain`] (and [`drain_checked`]) and [`split_at_every_offset`]: a whole session in one
//!   buffer, frame by frame like a connection loop, and the same session cut into two reads
//!   anywhere.
//! - [`check_stream`] with a [`Contract`], and [`check_ranges`]: the stream contract the
//!   property tests hold any input to (never consume 0 or more than given, never ask to buffer
//!   past the limit, errors and problems point inside the input, problems store and
//!   acknowledge nothing, records stay within what their fields can mean).
//! - [`decode_all`], [`records_fed_byte_by_byte`], [`records_split_at_every_offset`]: the
//!   same for line protocols, whose captures are compared as records.
//! - Expected-record and reply checks: [`only`], [`close`], [`time`], [`times`], [`io`],
//!   [`io_u64`], [`io_text`], [`name`], [`u`], [`answer`], [`assert_err`].
//! - [`teltonika`]: the Teltonika fact sheet's packets and AVL strategies, shared by its TCP
//!   and UDP tests.
//!
//! Everything panics (or fails the property case) with the capture's `source`, the offset and
//! what differed, so a failure names the frame it came from.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

pub mod teltonika;

use crate::record::format_rfc3339_ms;
use crate::{DecodeError, Decoded, IoKey, IoValue, Record, Reply, StreamDecoder};

/// The bytes of a capture: as printed in a document (hex or text), or built from a documented
/// layout by a function.
#[derive(Clone, Copy)]
pub enum Frame {
    /// Hex digits, as a vendor document prints a binary frame (spaces allowed).
    Hex(&'static str),
    /// A text protocol's frame as sent, line end included.
    Text(&'static str),
    /// A frame assembled field by field from a documented layout.
    Built(fn() -> Vec<u8>),
}

impl Frame {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Frame::Hex(text) => bytes(text),
            Frame::Text(text) => text.as_bytes().to_vec(),
            Frame::Built(build) => build(),
        }
    }
}

/// Hex digits (spaces allowed) as bytes; a typo in a test's hex is the test's bug.
pub fn bytes(hex_text: &str) -> Vec<u8> {
    let compact: String = hex_text.split_whitespace().collect();
    hex::decode(&compact).unwrap_or_else(|e| panic!("test hex {hex_text:?}: {e}"))
}

/// One line of a protocol's table: a frame, the decoder state it is sent in, and what its
/// decoding must say.
pub struct Capture<S: 'static> {
    /// Where the frame comes from (document and section, or the layout it was built from).
    pub source: &'static str,
    pub frame: Frame,
    /// How the decoder starts (fresh, logged in, which version…): the protocol's own type,
    /// turned into a decoder by [`Battery::decoder`].
    pub start: S,
    /// The checks of the decoded frame.
    pub check: fn(&Decoded),
}

/// A protocol's table of captures and how to decode them.
pub struct Battery<S: 'static, D> {
    pub captures: &'static [Capture<S>],
    /// A decoder in the capture's start state.
    pub decoder: fn(&S) -> D,
    /// The receive time passed to `decode`.
    pub now: i64,
    /// A complete frame sent after each capture in [`Battery::with_trailing_bytes`].
    pub next: Frame,
    /// What the decoder promises about any input, for [`Battery::corrupted`].
    pub contract: Contract,
}

impl<S: 'static, D: StreamDecoder> Battery<S, D> {
    /// Every capture decoded from a buffer holding exactly it.
    pub fn whole(&self) {
        for case in self.captures {
            let frame = case.frame.bytes();
            let d = decode_whole(
                &mut (self.decoder)(&case.start),
                &frame,
                self.now,
                case.source,
            );
            (case.check)(&d);
        }
    }

    /// Every prefix of a capture is "need more" (`Ok(None)`), and the whole decodes the same.
    pub fn byte_by_byte(&self) {
        for case in self.captures {
            let frame = case.frame.bytes();
            let mut dec = (self.decoder)(&case.start);
            for end in 0..frame.len() {
                let got = dec.decode(&frame[..end], self.now);
                assert_eq!(got, Ok(None), "{}: prefix of {end} bytes", case.source);
            }
            (case.check)(&decode_whole(&mut dec, &frame, self.now, case.source));
        }
    }

    /// A capture followed by the next frame in the same buffer consumes only its own bytes.
    pub fn with_trailing_bytes(&self) {
        let next = self.next.bytes();
        for case in self.captures {
            let mut input = case.frame.bytes();
            let len = input.len();
            input.extend_from_slice(&next);
            let d = (self.decoder)(&case.start)
                .decode(&input, self.now)
                .unwrap_or_else(|e| panic!("{}: {e}", case.source))
                .unwrap_or_else(|| panic!("{}: incomplete with bytes after it", case.source));
            assert_eq!(d.consumed, len, "{}", case.source);
            (case.check)(&d);
        }
    }

    /// A capture arriving in two reads, cut at every offset, decodes as in one.
    pub fn split_at_every_offset(&self) {
        for case in self.captures {
            let frame = case.frame.bytes();
            let expected = decode_whole(
                &mut (self.decoder)(&case.start),
                &frame,
                self.now,
                case.source,
            );
            for cut in 1..frame.len() {
                let mut dec = (self.decoder)(&case.start);
                let first = dec.decode(&frame[..cut], self.now);
                assert_eq!(
                    first,
                    Ok(None),
                    "{}: first read of {cut} bytes",
                    case.source
                );
                let d = decode_whole(&mut dec, &frame, self.now, case.source);
                assert_eq!(d, expected, "{}: split at {cut}", case.source);
            }
        }
    }
}

impl<S: 'static, D: StreamDecoder> Battery<S, D> {
    /// Every capture with any one byte inverted still keeps the decoder's [`Contract`]: a
    /// problem, an error or a record within range, never a panic or a stall.
    pub fn corrupted(&self) {
        for case in self.captures {
            let frame = case.frame.bytes();
            for at in 0..frame.len() {
                let mut bad = frame.clone();
                bad[at] ^= 0xFF;
                let mut dec = (self.decoder)(&case.start);
                if let Err(e) = check_stream(&mut dec, &bad, self.now, &self.contract) {
                    panic!("{}: byte {at} inverted: {e}", case.source);
                }
            }
        }
    }
}

/// The five checks of [`Battery`] as `#[test]`s, for a function returning a protocol's
/// battery: `capture_battery!(battery);`.
#[macro_export]
macro_rules! capture_battery {
    ($battery:path) => {
        #[test]
        fn captures_decode_whole() {
            $battery().whole();
        }

        #[test]
        fn captures_fed_one_byte_at_a_time_need_more_until_the_last() {
            $battery().byte_by_byte();
        }

        #[test]
        fn captures_followed_by_more_bytes_consume_only_their_own() {
            $battery().with_trailing_bytes();
        }

        #[test]
        fn captures_split_into_two_reads_at_every_offset_decode_the_same() {
            $battery().split_at_every_offset();
        }

        #[test]
        fn captures_with_any_byte_inverted_keep_the_stream_contract() {
            $battery().corrupted();
        }
    };
}

/// Decodes `frame`, which must be exactly one complete frame.
pub fn decode_whole<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    frame: &[u8],
    now: i64,
    source: &str,
) -> Decoded {
    let d = dec
        .decode(frame, now)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .unwrap_or_else(|| panic!("{source}: incomplete"));
    assert_eq!(d.consumed, frame.len(), "{source}: consumed");
    d
}

/// Decodes every complete frame at the front of `buf` and removes it, like a connection loop
/// does; stops at "need more" (what is left stays in `buf`) or returns the error.
pub fn drain<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    buf: &mut Vec<u8>,
    now: i64,
) -> Result<Vec<Decoded>, DecodeError> {
    let mut out = Vec::new();
    while let Some(d) = dec.decode(buf, now)? {
        assert!(
            d.consumed > 0 && d.consumed <= buf.len(),
            "consumed {} of {}",
            d.consumed,
            buf.len()
        );
        buf.drain(..d.consumed);
        out.push(d);
    }
    Ok(out)
}

/// [`drain`] holding every frame to `contract` (and panicking where it is broken); an `Err`
/// is a broken contract only where the contract says the decoder never fails.
pub fn drain_checked<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    buf: &mut Vec<u8>,
    now: i64,
    contract: &Contract,
) -> Vec<Decoded> {
    let mut seen = Stream::default();
    let used = feed(dec, buf, now, contract, &mut seen).unwrap_or_else(|e| panic!("{e}"));
    buf.drain(..used);
    seen.frames
}

/// A whole session decoded in one buffer, then again split into two reads at every offset:
/// every split must consume all of it and give the same frames (as `compare` sees them: a
/// line protocol may hand back a separator as a frame of its own).
pub fn split_at_every_offset<D, T>(
    decoder: impl Fn() -> D,
    session: &[u8],
    now: i64,
    compare: impl Fn(Vec<Decoded>) -> T,
) where
    D: StreamDecoder,
    T: PartialEq + std::fmt::Debug,
{
    let expected = drain(&mut decoder(), &mut session.to_vec(), now)
        .unwrap_or_else(|e| panic!("the whole session: {e}"));
    let expected = compare(expected);
    for split in 0..=session.len() {
        let mut dec = decoder();
        let mut buf = session[..split].to_vec();
        let mut frames = drain(&mut dec, &mut buf, now)
            .unwrap_or_else(|e| panic!("first read of {split} bytes: {e}"));
        buf.extend_from_slice(&session[split..]);
        frames.extend(
            drain(&mut dec, &mut buf, now).unwrap_or_else(|e| panic!("split {split}: {e}")),
        );
        assert!(buf.is_empty(), "split {split}: {} bytes left", buf.len());
        assert_eq!(compare(frames), expected, "split {split}");
    }
}

/// What a decoder promises about any input, for [`check_stream`].
#[derive(Clone, Copy)]
pub struct Contract {
    /// The decoder may give up on a stream (`Err`); line protocols never do, they skip.
    pub may_fail: bool,
    /// Frames may carry an answer.
    pub answers: bool,
    /// Frames may identify the device (a login).
    pub logins: bool,
    /// Feed at most the frame limit at a time, as the gateway does; "need more" is then only
    /// allowed at the end of the input.
    pub windowed: bool,
    /// A problem may point just past its frame (a line protocol's missing field at the line's
    /// end); otherwise it points inside it.
    pub problem_at_frame_end: bool,
    /// Every record carries the device the stream has identified at that point.
    pub records_of_the_stream_device: bool,
    /// Every record passes [`check_ranges`]. Off for a decoder whose raw output may still be
    /// out of range: the registry's `checked` wrapper clears such values after it.
    pub ranges: bool,
    /// The protocol's own checks of every record, after [`check_ranges`].
    pub record: fn(&Record, i64) -> Result<(), TestCaseError>,
}

impl Contract {
    /// A binary or session protocol: may close the stream, answers, logs devices in.
    pub const SESSION: Contract = Contract {
        may_fail: true,
        answers: true,
        logins: true,
        windowed: false,
        problem_at_frame_end: false,
        records_of_the_stream_device: false,
        ranges: true,
        record: no_more_checks,
    };

    /// A line protocol that never answers (NMEA, JSON lines): never fails, skips bad lines.
    pub const SILENT_LINES: Contract = Contract {
        may_fail: false,
        answers: false,
        logins: false,
        windowed: false,
        problem_at_frame_end: true,
        records_of_the_stream_device: false,
        ranges: false,
        record: no_more_checks,
    };
}

fn no_more_checks(_: &Record, _: i64) -> Result<(), TestCaseError> {
    Ok(())
}

/// What [`check_stream`] saw.
#[derive(Debug, Default)]
pub struct Stream {
    pub frames: Vec<Decoded>,
    /// The error that ended the stream, if any.
    pub error: Option<DecodeError>,
    /// Bytes left undecoded (waiting for more, or at the error).
    pub left: usize,
    /// What `finish` released at the end.
    pub finished: Vec<Record>,
}

impl Stream {
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.frames
            .iter()
            .flat_map(|d| &d.records)
            .chain(&self.finished)
    }
}

/// Feeds `input` as one buffer, consuming frames until an error or "need more", then calls
/// `finish`, checking `contract` and [`check_ranges`] on the way.
pub fn check_stream<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    input: &[u8],
    now: i64,
    contract: &Contract,
) -> Result<Stream, TestCaseError> {
    let mut seen = Stream::default();
    let used = feed(dec, input, now, contract, &mut seen)?;
    seen.left = input.len() - used;
    seen.finished = dec.finish(now);
    for r in &seen.finished {
        if contract.ranges {
            check_ranges(r, now)?;
        }
        (contract.record)(r, now)?;
    }
    Ok(seen)
}

/// The frames at the front of `input`, checked against `contract` and added to `seen`, until
/// "need more" or an error (kept in `seen.error`); returns the bytes they used.
fn feed<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    input: &[u8],
    now: i64,
    contract: &Contract,
    seen: &mut Stream,
) -> Result<usize, TestCaseError> {
    let max = dec.max_frame_bytes();
    let mut rest = input;
    while !rest.is_empty() {
        let window = if contract.windowed {
            &rest[..rest.len().min(max)]
        } else {
            rest
        };
        match dec.decode(window, now) {
            Ok(Some(d)) => {
                prop_assert!(d.consumed > 0, "consumed 0");
                prop_assert!(
                    d.consumed <= window.len(),
                    "consumed {} of {}",
                    d.consumed,
                    window.len()
                );
                prop_assert!(
                    d.consumed <= max.max(1),
                    "frame of {} over the limit {max}",
                    d.consumed
                );
                if let Some(p) = &d.problem {
                    prop_assert!(d.records.is_empty(), "records with a problem: {p}");
                    prop_assert!(d.reply.accepted.is_none(), "a problem acknowledged: {p}");
                    if contract.problem_at_frame_end {
                        prop_assert!(p.offset <= d.consumed, "{p} past {}", d.consumed);
                    } else {
                        prop_assert!(p.offset < d.consumed, "{p} past {}", d.consumed);
                    }
                }
                if !contract.answers {
                    prop_assert_eq!(&d.reply, &Reply::default(), "this protocol never answers");
                }
                if !contract.logins {
                    prop_assert_eq!(&d.login, &None, "this protocol has no login");
                }
                for r in &d.records {
                    if contract.ranges {
                        check_ranges(r, now)?;
                    }
                    (contract.record)(r, now)?;
                    if contract.records_of_the_stream_device {
                        prop_assert_eq!(Some(r.device_id.as_str()), dec.device_id());
                    }
                }
                rest = &rest[d.consumed..];
                seen.frames.push(d);
            }
            Ok(None) => {
                prop_assert!(
                    window.len() < max,
                    "need-more with {} bytes buffered, limit {max}",
                    window.len()
                );
                prop_assert!(
                    window.len() == rest.len(),
                    "need-more below the limit in the middle of the input"
                );
                break;
            }
            Err(e) => {
                prop_assert!(
                    contract.may_fail,
                    "Err from a decoder that never fails: {e}"
                );
                prop_assert!(e.offset < rest.len(), "{e} past input {}", rest.len());
                seen.error = Some(e);
                break;
            }
        }
    }
    Ok(input.len() - rest.len())
}

/// Whatever the bytes, a record's fields stay within what they can mean: a position is both
/// coordinates within ±90°/±180°, course 0..=360, speed not negative, every number finite,
/// and the receive time is the one passed in.
pub fn check_ranges(r: &Record, now: i64) -> Result<(), TestCaseError> {
    if let Some(lat) = r.lat {
        prop_assert!((-90.0..=90.0).contains(&lat), "lat {lat}");
    }
    if let Some(lon) = r.lon {
        prop_assert!((-180.0..=180.0).contains(&lon), "lon {lon}");
    }
    prop_assert_eq!(r.lat.is_some(), r.lon.is_some(), "half a position");
    if let Some(course) = r.course_deg {
        prop_assert!((0.0..=360.0).contains(&course), "course {course}");
    }
    if let Some(speed) = r.speed_kmh {
        prop_assert!(speed >= 0.0 && speed.is_finite(), "speed {speed}");
    }
    for v in [r.altitude_m, r.hdop].into_iter().flatten() {
        prop_assert!(v.is_finite(), "altitude or hdop {v}");
    }
    for (key, value) in &r.io {
        if let IoValue::F64(v) = value {
            prop_assert!(v.is_finite(), "io {key:?} = {v}");
        }
    }
    prop_assert_eq!(r.received_at_ms, now);
    Ok(())
}

/// A line protocol's input decoded in one buffer: its records (with what `finish` releases)
/// and its problems. Panics if the contract is broken or bytes are left.
pub fn decode_all<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    input: &[u8],
    now: i64,
    contract: &Contract,
) -> (Vec<Record>, Vec<DecodeError>) {
    let seen = check_stream(dec, input, now, contract).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen.error, None);
    assert_eq!(
        seen.left,
        0,
        "left over: {:?}",
        String::from_utf8_lossy(&input[input.len() - seen.left..])
    );
    let records = seen.records().cloned().collect();
    let problems = seen.frames.into_iter().filter_map(|d| d.problem).collect();
    (records, problems)
}

/// A line protocol's input fed one byte at a time: no frame completes before a `\n`, the
/// contract holds throughout, and the records (with what `finish` releases) are returned.
pub fn records_fed_byte_by_byte<D: StreamDecoder + ?Sized>(
    dec: &mut D,
    input: &[u8],
    now: i64,
    contract: &Contract,
) -> Vec<Record> {
    let mut buf = Vec::new();
    let mut seen = Stream::default();
    for (at, &b) in input.iter().enumerate() {
        buf.push(b);
        let before = seen.frames.len();
        let used =
            feed(dec, &buf, now, contract, &mut seen).unwrap_or_else(|e| panic!("at {at}: {e}"));
        assert_eq!(seen.error, None, "at {at}");
        buf.drain(..used);
        assert!(
            b == b'\n' || seen.frames.len() == before,
            "a frame before a line end, at {at}"
        );
    }
    seen.finished = dec.finish(now);
    seen.records().cloned().collect()
}

/// A line protocol's input in two reads, split at every offset, gives the records (with what
/// `finish` releases) of one read, and consumes everything.
pub fn records_split_at_every_offset<D: StreamDecoder>(
    decoder: impl Fn() -> D,
    input: &[u8],
    now: i64,
    contract: &Contract,
) {
    let (whole, _) = decode_all(&mut decoder(), input, now, contract);
    for split in 0..=input.len() {
        let mut dec = decoder();
        let mut seen = Stream::default();
        let mut buf = input[..split].to_vec();
        let used = feed(&mut dec, &buf, now, contract, &mut seen)
            .unwrap_or_else(|e| panic!("split {split}: {e}"));
        buf.drain(..used);
        buf.extend_from_slice(&input[split..]);
        let used = feed(&mut dec, &buf, now, contract, &mut seen)
            .unwrap_or_else(|e| panic!("split {split}: {e}"));
        assert_eq!(used, buf.len(), "split {split}: bytes left");
        assert_eq!(seen.error, None, "split {split}");
        seen.finished = dec.finish(now);
        let got: Vec<Record> = seen.records().cloned().collect();
        assert_eq!(got, whole, "split at {split}");
    }
}

// ---- expected-record and reply checks ------------------------------------------------------

/// The one record of a data frame that is neither a login nor a problem.
pub fn only(d: &Decoded) -> &Record {
    assert_eq!(d.records.len(), 1, "{d:?}");
    assert!(d.problem.is_none() && d.login.is_none(), "{d:?}");
    &d.records[0]
}

/// The device time as RFC 3339 (`None` when the frame gave none).
pub fn time(r: &Record) -> Option<String> {
    r.time_ms.map(format_rfc3339_ms)
}

/// The device time of every record of a frame, as RFC 3339.
pub fn times(d: &Decoded) -> Vec<String> {
    d.records.iter().filter_map(time).collect()
}

/// `got` is `want` to within 1e-6 (degrees: about 0.1 m).
pub fn close(got: Option<f64>, want: f64) {
    let got = got.unwrap_or_else(|| panic!("expected {want}, got None"));
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

/// An io key by name.
pub fn name(n: &str) -> IoKey {
    IoKey::Name(n.to_owned())
}

/// A named unsigned io entry, as a record's io list holds it.
pub fn u(n: &str, value: u64) -> (IoKey, IoValue) {
    (name(n), IoValue::U64(value))
}

/// The value of the named io entry.
pub fn io<'a>(r: &'a Record, n: &str) -> Option<&'a IoValue> {
    r.io.iter()
        .find(|(k, _)| matches!(k, IoKey::Name(k) if k == n))
        .map(|(_, v)| v)
}

/// The value of the named io entry, if it is unsigned.
pub fn io_u64(r: &Record, n: &str) -> Option<u64> {
    match io(r, n) {
        Some(IoValue::U64(v)) => Some(*v),
        _ => None,
    }
}

/// The value of the named io entry, if it is text.
pub fn io_text<'a>(r: &'a Record, n: &str) -> Option<&'a str> {
    match io(r, n) {
        Some(IoValue::Text(v)) => Some(v),
        _ => None,
    }
}

/// The answer a frame gets once stored, with nothing sent if it is not.
pub fn answer(accepted: impl Into<Vec<u8>>) -> Reply {
    Reply {
        accepted: Some(accepted.into()),
        refused: None,
    }
}

/// An error (or problem) found at `offset` whose reason mentions `needle`.
pub fn assert_err(err: DecodeError, offset: usize, needle: &str) {
    assert_eq!(err.offset, offset, "{err}");
    assert!(
        err.reason.contains(needle),
        "{err:?} should mention {needle:?}"
    );
}
