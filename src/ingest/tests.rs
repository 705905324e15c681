//! Sessions over an in-memory pipe with a real buffer: one durable point per read, answers
//! in frame order, and what is stored and answered before a stream is closed.

use std::sync::Arc;
use std::time::Duration;

use firmware_protocols::registry::{self, Transport};
use firmware_protocols::teltonika::encode::{encode_avl_packet, encode_imei, AvlRecord, Codec};
use firmware_protocols::{queclink, DecoderOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

use super::session::{Session, SessionConfig};
use super::AllowList;
use crate::buffer::{Buffer, BufferOptions, StoredChunk};

const IMEI: &str = "356307042441013";
const STRANGER: &str = "356307042441099";

struct Rig {
    _dir: tempfile::TempDir,
    buffer: Buffer,
    /// The device's end of the pipe.
    device: DuplexStream,
    session: tokio::task::JoinHandle<()>,
    _shutdown: watch::Sender<bool>,
}

fn rig(protocol: &str, allowed: &[&str], ack_reports: bool) -> Rig {
    rig_timed(protocol, allowed, ack_reports, Duration::from_secs(30))
}

fn rig_timed(protocol: &str, allowed: &[&str], ack_reports: bool, first_frame: Duration) -> Rig {
    rig_with(
        protocol,
        allowed,
        ack_reports,
        first_frame,
        Duration::from_secs(30),
        |_| None,
    )
}

/// A rig whose session takes commands from the service `commands` builds on its buffer.
fn rig_with(
    protocol: &str,
    allowed: &[&str],
    ack_reports: bool,
    first_frame: Duration,
    idle: Duration,
    commands: impl FnOnce(&Buffer) -> Option<crate::commands::Port>,
) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = BufferOptions::new(dir.path().join("buffer"));
    opts.seq_floor = Some(1);
    let buffer = Buffer::open(opts).expect("buffer opens");
    let commands = commands(&buffer);
    let Some(Transport::Stream(make_decoder)) = registry::lookup(protocol).map(|s| s.transport)
    else {
        panic!("{protocol} is a stream protocol");
    };
    let cfg = Arc::new(SessionConfig {
        protocol: protocol.to_string(),
        make_decoder,
        decoder: DecoderOptions {
            ack_reports,
            ..DecoderOptions::new(16 * 1024)
        },
        idle_timeout: Some(idle),
        first_frame_timeout: Some(first_frame),
        allowed_devices: AllowList::new(&allowed.iter().map(|d| d.to_string()).collect::<Vec<_>>()),
        close_on_junk: true,
        commands,
        filter: crate::clean::Filter::new(Default::default()),
    });
    let (device, gateway) = tokio::io::duplex(64 * 1024);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let session = Session::new(cfg, "test-peer".into(), buffer.clone());
    let session = tokio::spawn(session.run(gateway, shutdown, ()));
    Rig {
        _dir: dir,
        buffer,
        device,
        session,
        _shutdown: shutdown_tx,
    }
}

impl Rig {
    /// Exactly `n` answer bytes, within a bound.
    async fn answers(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(10), self.device.read_exact(&mut got))
            .await
            .expect("answers in time")
            .expect("answers read");
        got
    }

    /// Everything the session still sends, until it closes the stream.
    async fn rest_until_closed(&mut self) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.device.read_to_end(&mut got))
            .await
            .expect("the session closes the stream in time")
            .expect("read to the end");
        got
    }

    fn chunks(&self) -> Vec<StoredChunk> {
        self.buffer
            .read_after(None, 10_000, 1 << 24)
            .expect("buffer reads")
    }
}

fn avl(k: u64) -> AvlRecord {
    AvlRecord {
        timestamp_ms: 1_767_225_600_000 + k * 1000,
        lat: 546_872_833,
        lon: 252_797_000,
        satellites: 9,
        ..AvlRecord::default()
    }
}

fn packet(first: u64, n: u64) -> Vec<u8> {
    let records: Vec<AvlRecord> = (first..first + n).map(avl).collect();
    encode_avl_packet(Codec::Codec8, &records).expect("packet encodes")
}

async fn login(rig: &mut Rig) {
    rig.device
        .write_all(&encode_imei(IMEI))
        .await
        .expect("write");
    assert_eq!(rig.answers(1).await, [1], "the login is accepted");
}

#[tokio::test]
async fn the_frames_of_one_read_share_one_append_and_are_answered_in_order() {
    let mut rig = rig("teltonika", &[], false);
    login(&mut rig).await;
    let mut three = packet(0, 1);
    three.extend(packet(1, 2));
    three.extend(packet(3, 3));
    rig.device.write_all(&three).await.expect("write");
    let answers = rig.answers(12).await;
    assert_eq!(answers, [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    let chunks = rig.chunks();
    assert_eq!(chunks.len(), 1, "one append for the three packets");
    let times: Vec<Option<i64>> = chunks[0].records.iter().map(|r| r.time_ms).collect();
    let want: Vec<Option<i64>> = (0..6).map(|k| Some(avl(k).timestamp_ms as i64)).collect();
    assert_eq!(times, want, "records in frame order");
}

#[tokio::test]
async fn frames_before_a_broken_one_are_stored_and_answered_before_the_close() {
    let mut rig = rig("teltonika", &[], false);
    login(&mut rig).await;
    let mut bytes = packet(0, 2);
    bytes.extend(packet(2, 1));
    // A preamble that is not zero: the stream cannot be trusted past it.
    bytes.extend([0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 8, 1, 2, 3]);
    rig.device.write_all(&bytes).await.expect("write");
    let answers = rig.rest_until_closed().await;
    assert_eq!(answers, [0, 0, 0, 2, 0, 0, 0, 1]);
    let stored: usize = rig.chunks().iter().map(|c| c.records.len()).sum();
    assert_eq!(stored, 3);
    rig.session.await.expect("the session ends");
}

#[tokio::test]
async fn a_stranger_after_an_allowed_device_closes_the_stream_after_its_answer() {
    let mut rig = rig("queclink", &[IMEI], true);
    let fix = fix();
    let report = |imei: &str, count: u16| {
        queclink::encode::fri(
            false,
            "1A0102",
            imei,
            std::slice::from_ref(&fix),
            90,
            fix.utc_ms,
            count,
        )
    };
    let text = report(IMEI, 1) + &report(STRANGER, 2) + &report(IMEI, 3);
    rig.device.write_all(text.as_bytes()).await.expect("write");
    let answers = rig.rest_until_closed().await;
    // Queclink has no negative answer: the allowed report's SACK, then the close.
    assert_eq!(String::from_utf8_lossy(&answers), "+SACK:0001$");
    let chunks = rig.chunks();
    let devices: Vec<&str> = chunks
        .iter()
        .flat_map(|c| c.records.iter().map(|r| r.device_id.as_str()))
        .collect();
    assert_eq!(
        devices,
        [IMEI],
        "only the allowed report before the stranger"
    );
}

fn fix() -> queclink::encode::Fix {
    queclink::encode::Fix {
        accuracy: 1,
        speed_kmh: 40.0,
        azimuth: 90,
        altitude_m: 112.0,
        lon: 25.2797,
        lat: 54.687283,
        utc_ms: 1_767_225_600_000,
        mcc: 246,
        mnc: 1,
        lac: 0x1234,
        cell_id: 0xABCDEF,
    }
}

#[tokio::test]
async fn json_lines_of_one_read_are_one_append() {
    let mut rig = rig("jsonl", &[], false);
    let mut text = String::new();
    for k in 0..40 {
        text.push_str(&format!(
            "{{\"device_id\":\"sensor-1\",\"time\":\"2026-01-01T00:00:{:02}.000Z\",\"lat\":54.0,\"lon\":25.0}}\n",
            k % 60
        ));
    }
    rig.device.write_all(text.as_bytes()).await.expect("write");
    // Nothing answers JSON lines: the device's close ends the session once all is stored.
    rig.device.shutdown().await.expect("half-close");
    assert!(rig.rest_until_closed().await.is_empty());
    let chunks = rig.chunks();
    assert_eq!(chunks.len(), 1, "one append for the whole read");
    assert_eq!(chunks[0].records.len(), 40);
}

#[tokio::test]
async fn a_heartbeat_from_a_stranger_is_not_answered() {
    let mut stranger = rig("queclink", &[IMEI], false);
    let text = queclink::encode::heartbeat("1A0102", STRANGER, 1_767_225_600_000, 7);
    stranger
        .device
        .write_all(text.as_bytes())
        .await
        .expect("write");
    assert!(
        stranger.rest_until_closed().await.is_empty(),
        "no +SACK:GTHBD"
    );
    // The allowed device's heartbeat is answered.
    let mut allowed = rig("queclink", &[IMEI], false);
    let text = queclink::encode::heartbeat("1A0102", IMEI, 1_767_225_600_000, 7);
    allowed
        .device
        .write_all(text.as_bytes())
        .await
        .expect("write");
    let want = "+SACK:GTHBD,1A0102,0007$";
    assert_eq!(
        String::from_utf8_lossy(&allowed.answers(want.len()).await),
        want
    );
}

#[tokio::test]
async fn keep_alives_before_a_login_do_not_hold_the_connection_past_the_first_frame_timeout() {
    let limit = Duration::from_millis(600);
    let mut silent = rig_timed("teltonika", &[], false, limit);
    let started = std::time::Instant::now();
    // A Teltonika ping byte every 100 ms, never a login: closed at the limit all the same.
    let closed = loop {
        if silent.device.write_all(&[0xFF]).await.is_err() {
            break true;
        }
        if silent.session.is_finished() || started.elapsed() > limit * 10 {
            break silent.session.is_finished();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= limit, "closed before the limit");
    // A device that logs in stays past the limit, and its keep-alives then are fine.
    let mut device = rig_timed("teltonika", &[], false, limit);
    login(&mut device).await;
    for _ in 0..8 {
        device.device.write_all(&[0xFF]).await.expect("still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    device.device.write_all(&packet(0, 1)).await.expect("write");
    assert_eq!(device.answers(4).await, [0, 0, 0, 1]);
}

#[tokio::test]
async fn a_flood_of_keep_alives_before_a_login_is_closed_at_once() {
    let mut flood = rig("teltonika", &[], false);
    flood.device.write_all(&[0xFF; 200]).await.expect("write");
    // Closed by the junk bound, long before the 30 s first-frame timeout.
    assert!(flood.rest_until_closed().await.is_empty());
    flood.session.await.expect("the session ends");
}

/// A rig whose session takes commands, and the command service.
fn commands_rig(protocol: &str, idle: Duration) -> (Rig, crate::commands::Commands) {
    use crate::commands::{Commands, Port};
    let settings: crate::config::Settings =
        toml::from_str("gateway_id = \"gw\"\n[commands]\nenabled = true\n").expect("settings");
    let mut service = None;
    let rig = rig_with(protocol, &[], false, idle, idle, |buffer| {
        let c = Commands::open(&settings, buffer.clone(), 0).expect("commands open");
        service = Some(c.clone());
        Some(Port {
            commands: c,
            source: crate::commands::config::Source::Listener(0),
        })
    });
    let Some(c) = service else {
        panic!("the rig built the service")
    };
    (rig, c)
}

fn command_for(id: &str, device: &str, text: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","device_id":"{device}","text":"{text}"}}"#).into_bytes()
}

/// One JSON line from each of `tag-0` … `tag-{n-1}`.
fn tag_lines(n: usize) -> String {
    (0..n)
        .map(|k| {
            format!(
                "{{\"device_id\":\"tag-{k}\",\"time\":\"2026-01-01T00:00:00.000Z\",\"lat\":54.0,\"lon\":25.0}}\n"
            )
        })
        .collect()
}

/// Command `id` is not written on the rig's connection (nothing more comes within 500 ms)
/// and is still queued.
async fn waits_unwritten(rig: &mut Rig, c: &crate::commands::Commands, id: &str) {
    let mut buf = [0u8; 4096];
    let more = tokio::time::timeout(Duration::from_millis(500), rig.device.read(&mut buf)).await;
    assert!(
        more.is_err(),
        "nothing more is written ({id} waits): {more:?}"
    );
    assert_eq!(
        c.status(id).map(|r| r.status),
        Some(crate::commands::message::Status::Queued)
    );
}

/// One JSON-lines connection carrying more devices than can take commands through it: the
/// first `MAX_DEVICES_PER_SESSION` get theirs on it (each line names its device), the rest
/// wait, queued, and every record is stored all the same.
#[tokio::test]
async fn a_json_lines_connection_takes_commands_for_its_first_64_devices() {
    use crate::commands::MAX_DEVICES_PER_SESSION;
    let (mut rig, c) = commands_rig("jsonl", Duration::from_secs(30));
    let devices = MAX_DEVICES_PER_SESSION + 2;
    rig.device
        .write_all(tag_lines(devices).as_bytes())
        .await
        .expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rig.chunks().iter().map(|c| c.records.len()).sum::<usize>() < devices {
        assert!(tokio::time::Instant::now() < deadline, "every line stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (last_linked, first_over) = (MAX_DEVICES_PER_SESSION - 1, MAX_DEVICES_PER_SESSION);
    let command = |id: &str, k: usize| command_for(id, &format!("tag-{k}"), "ping");
    // Accepted now (the session dispatches with the clock, so a made-up time would have
    // them expired); whether before or after the session linked the devices, they go out.
    c.accept(
        &[
            &command("to-0", 0),
            &command("to-last", last_linked),
            &command("to-over", first_over),
        ],
        crate::commands::now_ms(),
    )
    .await
    .expect("commands accepted");
    let mut out = Vec::new();
    let mut seen = String::new();
    while !(seen.contains("to-0") && seen.contains("to-last")) {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), rig.device.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            other => panic!("the commands of linked devices: {other:?}; got {seen:?}"),
        }
        seen = String::from_utf8_lossy(&out).into_owned();
    }
    assert!(
        seen.contains(&format!(r#""device_id":"tag-{last_linked}""#)),
        "{seen}"
    );
    // The device past the limit was not reachable here: its command waits, unsent.
    waits_unwritten(&mut rig, &c, "to-over").await;
    rig.session.abort();
}

/// A Wialon connection that logs in again as another device speaks for that one from then
/// on: its commands are written there, the first device's are not (its frames do not name
/// a device, so the connection carries one).
#[tokio::test]
async fn a_connection_of_another_protocol_that_logs_in_again_speaks_for_its_new_device() {
    let (mut rig, c) = commands_rig("wialon", Duration::from_secs(30));
    for login in ["#L#dev-a;NA\r\n", "#L#dev-b;NA\r\n"] {
        rig.device.write_all(login.as_bytes()).await.expect("write");
        assert_eq!(rig.answers(7).await, b"#AL#1\r\n");
    }
    c.accept(
        &[
            &command_for("to-a", "dev-a", "for a"),
            &command_for("to-b", "dev-b", "for b"),
        ],
        crate::commands::now_ms(),
    )
    .await
    .expect("accepted");
    assert_eq!(rig.answers(10).await, b"#M#for b\r\n");
    // Nothing for dev-a on dev-b's connection.
    waits_unwritten(&mut rig, &c, "to-a").await;
    rig.session.abort();
}

/// Writing commands does not keep a silent connection open: the idle timeout counts from
/// the last read. (Each command used to restart it, so a dead hub connection whose devices
/// kept getting commands was never closed.)
#[tokio::test]
async fn commands_written_to_a_silent_connection_do_not_hold_off_its_idle_timeout() {
    let (mut rig, c) = commands_rig("jsonl", Duration::from_secs(2));
    let devices = 16;
    rig.device
        .write_all(tag_lines(devices).as_bytes())
        .await
        .expect("write");
    let (mut from_gateway, _to_gateway) = tokio::io::split(rig.device);
    let closed = tokio::spawn(async move {
        let mut sink = Vec::new();
        from_gateway.read_to_end(&mut sink).await.map(|_| sink)
    });
    // One command every 400 ms, each to another device (so each is written at once).
    let mut accepted = 0;
    while accepted < devices && !closed.is_finished() {
        let id = format!("c-{accepted}");
        let now = crate::commands::now_ms();
        c.accept(
            &[&command_for(&id, &format!("tag-{accepted}"), "ping")],
            now,
        )
        .await
        .expect("accepted");
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let written = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the session closed the connection")
        .expect("reader")
        .expect("read to the end");
    assert!(
        accepted < devices,
        "closed only after all {devices} commands, 400 ms apart, at a 2 s idle timeout"
    );
    assert!(
        String::from_utf8_lossy(&written).contains("c-0"),
        "commands were written meanwhile: {accepted} accepted, written {:?}",
        String::from_utf8_lossy(&written)
    );
}

/// Timeouts too long to be a point in time (a config meaning "never") do not break the
/// session: it answers and stores as usual.
#[tokio::test]
async fn timeouts_too_long_for_a_deadline_mean_no_deadline() {
    let mut rig = rig_with(
        "teltonika",
        &[],
        false,
        Duration::MAX,
        Duration::MAX,
        |_| None,
    );
    login(&mut rig).await;
    rig.device.write_all(&packet(0, 2)).await.expect("write");
    assert_eq!(rig.answers(4).await, [0, 0, 0, 2]);
    assert_eq!(
        rig.chunks().iter().map(|c| c.records.len()).sum::<usize>(),
        2
    );
}
