//! The command service against a real buffer database: what is durable, what a restart
//! makes of it, and the outbox order.

use std::time::Duration;

use firmware_protocols::command::{AnswerKey, CommandAnswer};
use firmware_protocols::Protocol;
use serde_json::Value;

use super::config::Source;
use super::{Commands, Seen};
use crate::buffer::{Buffer, BufferOptions};
use crate::config::Settings;

fn settings() -> Settings {
    toml::from_str("gateway_id = \"gw\"\n[commands]\nenabled = true\nmax_queued_per_device = 2\n")
        .expect("settings")
}

fn open(dir: &std::path::Path) -> Buffer {
    let mut o = BufferOptions::new(dir.join("buffer"));
    o.cache_capacity_bytes = 4 << 20;
    Buffer::open(o).expect("buffer")
}

fn outbox(c: &Commands) -> Vec<Value> {
    c.store()
        .results_after(None, 1000)
        .expect("outbox")
        .into_iter()
        .map(|(_, json)| serde_json::from_slice(&json).expect("result JSON"))
        .collect()
}

fn statuses(c: &Commands, id: &str) -> Vec<String> {
    outbox(c)
        .into_iter()
        .filter(|r| r["id"] == id)
        .map(|r| r["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

const JSONL: Seen = Seen {
    protocol: Protocol::Jsonl,
    source: Source::Listener(0),
};

fn cmd(id: &str, device: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","device_id":"{device}","text":"getinfo"}}"#).into_bytes()
}

#[tokio::test]
async fn queued_commands_and_remembered_ids_outlive_a_restart_and_a_sent_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = open(dir.path());
    let c = Commands::open(&settings(), buffer.clone(), 0).unwrap();
    c.accept(&[&cmd("a", "d1"), &cmd("b", "d1"), &cmd("c", "d1")], 0)
        .await
        .unwrap();
    assert_eq!(statuses(&c, "a"), ["queued"]);
    assert_eq!(statuses(&c, "c"), ["rejected"], "max_queued_per_device = 2");
    let mut reg = c.register("d1", JSONL, 1);
    let delivery = tokio::time::timeout(Duration::from_secs(1), reg.rx.recv())
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!(delivery.id, "a");
    assert_eq!(
        delivery.bytes,
        b"{\"command\":\"getinfo\",\"device_id\":\"d1\",\"id\":\"a\"}\n".to_vec()
    );
    assert!(c.mark_sent("d1", delivery.seq, 2).await);
    assert!(!c.mark_sent("d1", delivery.seq, 2).await, "sent once");
    drop(c);
    drop(buffer);

    // As after SIGKILL: "a" was sent, so it failed; "b" waits; the ids are remembered.
    let buffer = open(dir.path());
    let c = Commands::open(&settings(), buffer, 10).unwrap();
    assert_eq!(c.queued(), 1);
    // What waits is known to `GET /commands/{id}` after the restart, said to be reloaded.
    let b = c.status("b").expect("b's status after the restart");
    assert_eq!(b.status, super::message::Status::Queued);
    assert!(b.reason.unwrap_or_default().contains("restarted"));
    assert_eq!(statuses(&c, "a"), ["queued", "sent", "failed"]);
    c.accept(&[&cmd("a", "d1"), &cmd("b", "d1")], 11)
        .await
        .unwrap();
    assert_eq!(c.queued(), 1, "repeated ids are not queued again");
    let mut reg = c.register("d1", JSONL, 12);
    let delivery = reg.rx.recv().await.expect("b");
    assert_eq!(delivery.id, "b");
    assert!(c.mark_sent("d1", delivery.seq, 13).await);
    let answer = CommandAnswer {
        key: AnswerKey::CommandId("b".into()),
        text: "fine".into(),
        device_error: false,
    };
    c.answered("d1", &answer, 14);
    assert_eq!(statuses(&c, "b"), ["queued", "sent", "answered"]);
    assert_eq!(
        c.status("b").and_then(|r| r.answer).as_deref(),
        Some("fine")
    );
    assert_eq!(c.queued(), 0);
}

#[tokio::test]
async fn a_device_of_a_protocol_without_downlink_gets_a_rejection_at_its_login() {
    let dir = tempfile::tempdir().unwrap();
    let c = Commands::open(&settings(), open(dir.path()), 0).unwrap();
    c.accept(&[&cmd("n", "gnss")], 0).await.unwrap();
    let nmea = Seen {
        protocol: Protocol::Nmea,
        source: Source::Serial(0),
    };
    let mut reg = c.register("gnss", nmea, 1);
    assert!(reg.rx.try_recv().is_err(), "nothing is sent");
    let statuses = statuses(&c, "n");
    assert_eq!(statuses, ["queued", "rejected"]);
    let reason = c.status("n").and_then(|r| r.reason).unwrap_or_default();
    assert!(reason.starts_with("protocol without downlink"), "{reason}");
    // Known now: the next one is rejected at once.
    c.accept(&[&cmd("n2", "gnss")], 2).await.unwrap();
    assert_eq!(
        c.status("n2").map(|r| r.status),
        Some(super::message::Status::Rejected)
    );
}

#[tokio::test]
async fn the_outbox_is_in_order_and_a_removed_result_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let c = Commands::open(&settings(), open(dir.path()), 0).unwrap();
    c.accept(&[&cmd("x", "d"), b"{broken", &cmd("y", "d")], 0)
        .await
        .unwrap();
    let all = c.store().results_after(None, 10).unwrap();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(all.len(), 3);
    c.store().remove_result(seqs[0]).unwrap();
    let after: Vec<u64> = c
        .store()
        .results_after(None, 10)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(after, seqs[1..]);
    assert_eq!(c.store().results_after(Some(seqs[1]), 10).unwrap().len(), 1);
}

fn cmd_ttl(id: &str, device: &str, ttl_s: u64) -> Vec<u8> {
    format!(r#"{{"id":"{id}","device_id":"{device}","text":"getinfo","ttl_s":{ttl_s}}}"#)
        .into_bytes()
}

fn answer_to(id: &str) -> CommandAnswer {
    CommandAnswer {
        key: AnswerKey::CommandId(id.into()),
        text: "ok".into(),
        device_error: false,
    }
}

/// A JSON-lines connection carrying two devices: each one's commands come through the one
/// channel, framed with its id, an answer finds its device by the command id, and the end
/// of the connection fails what was outstanding on either.
#[tokio::test]
async fn every_device_a_session_carries_gets_its_commands_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = Commands::open(&settings(), open(dir.path()), 0).unwrap();
    c.accept(&[&cmd("a", "d1"), &cmd("b", "d2")], 0)
        .await
        .unwrap();
    let mut reg = c.register("d1", JSONL, 1);
    c.link(&reg, "d2", JSONL, 1);
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(1), reg.rx.recv())
            .await
            .unwrap()
            .expect("a delivery");
        got.push((d.device.clone(), d.id.clone(), d.seq, d.bytes));
    }
    got.sort();
    assert_eq!(got[0].0, "d1");
    assert_eq!(got[0].1, "a");
    assert_eq!(
        got[1].3,
        b"{\"command\":\"getinfo\",\"device_id\":\"d2\",\"id\":\"b\"}\n".to_vec()
    );
    for (device, _, seq, _) in &got {
        assert!(c.mark_sent_by(reg.id, device, *seq, 2).await, "{device}");
    }
    // d2's answer, named by its command id alone.
    c.answered_on(&["d1", "d2"], &answer_to("b"), 3);
    assert_eq!(statuses(&c, "b"), ["queued", "sent", "answered"]);
    assert_eq!(
        c.status("b").and_then(|r| r.device_id).as_deref(),
        Some("d2")
    );
    // d2 is free for its next one, on the same channel; d1's is still outstanding.
    c.accept(&[&cmd("c", "d2")], 4).await.unwrap();
    let next = reg.rx.try_recv().expect("d2's next command");
    assert_eq!((next.device.as_str(), next.id.as_str()), ("d2", "c"));
    assert!(c.mark_sent_by(reg.id, "d2", next.seq, 5).await);
    // The connection ends: both outstanding commands failed.
    c.unregister("d1", reg.id, 6);
    c.unregister("d2", reg.id, 6);
    assert_eq!(statuses(&c, "a"), ["queued", "sent", "failed"]);
    assert_eq!(statuses(&c, "c"), ["sent", "failed"]);
    assert_eq!(c.queued(), 0);
}

/// A command waiting in a session's channel is handed once, however often the device's
/// queue changes; and one that expired there lets the next one through.
#[tokio::test]
async fn a_handed_command_is_not_handed_again_and_one_expired_in_the_channel_frees_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let c = Commands::open(&settings(), open(dir.path()), 0).unwrap();
    let mut reg = c.register("d1", JSONL, 0);
    c.accept(&[&cmd_ttl("e1", "d1", 1)], 0).await.unwrap();
    c.accept(&[&cmd_ttl("e2", "d1", 60)], 10).await.unwrap();
    let first = reg.rx.try_recv().expect("e1 handed");
    assert_eq!(first.id, "e1");
    assert!(
        reg.rx.try_recv().is_err(),
        "e1 is not handed twice, e2 waits"
    );
    // e1 expires while it waits in the channel; e2 follows once the session takes e1 and
    // finds it settled (one command per device in the channel).
    c.tick(2_000);
    assert_eq!(
        statuses(&c, "e1").last().map(String::as_str),
        Some("expired")
    );
    assert!(reg.rx.try_recv().is_err(), "e1 still holds d1's place");
    assert!(!c.mark_sent_by(reg.id, "d1", first.seq, 2_001).await);
    let second = reg.rx.try_recv().expect("e2 handed once e1 was taken");
    assert_eq!(second.id, "e2");
    assert!(c.mark_sent_by(reg.id, "d1", second.seq, 2_001).await);
}

/// A device that moved to another connection gets its command there, not on the old one
/// it was handed to.
#[tokio::test]
async fn a_command_handed_to_a_connection_the_device_left_is_not_written_there() {
    let dir = tempfile::tempdir().unwrap();
    let c = Commands::open(&settings(), open(dir.path()), 0).unwrap();
    let mut old = c.register("d1", JSONL, 0);
    c.accept(&[&cmd("m", "d1")], 1).await.unwrap();
    let stale = old.rx.try_recv().expect("handed to the first connection");
    let mut new = c.register("d1", JSONL, 2);
    let fresh = new
        .rx
        .try_recv()
        .expect("handed again to the new connection");
    assert_eq!(fresh.id, "m");
    assert!(!c.mark_sent_by(old.id, "d1", stale.seq, 3).await);
    assert!(c.mark_sent_by(new.id, "d1", fresh.seq, 3).await);
    assert_eq!(statuses(&c, "m"), ["sent"]);
}

/// One device whose commands keep expiring before its session takes them cannot crowd
/// another device of the same session out of the shared channel.
#[tokio::test]
async fn expiring_commands_of_one_device_do_not_starve_another_on_the_same_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.commands.max_queued_per_device = 200;
    s.commands.max_queued_total = 400;
    let c = Commands::open(&s, open(dir.path()), 0).unwrap();
    let mut reg = c.register("d0", JSONL, 0);
    c.link(&reg, "d1", JSONL, 0);
    // The session is busy (takes nothing) while 130 of d0's commands expire.
    for k in 0..130 {
        c.accept(&[&cmd_ttl(&format!("x{k}"), "d0", 1)], k * 2_000)
            .await
            .unwrap();
        c.tick(k * 2_000 + 1_500);
    }
    c.accept(&[&cmd("for-d1", "d1")], 300_000).await.unwrap();
    let mut taken = Vec::new();
    while let Ok(d) = reg.rx.try_recv() {
        let sent = c.mark_sent_by(reg.id, &d.device, d.seq, 300_001).await;
        taken.push((d.id, sent));
    }
    assert!(taken.len() <= 3, "at most one per device waits: {taken:?}");
    assert!(
        taken.iter().any(|(id, sent)| id == "for-d1" && *sent),
        "d1's command went out: {taken:?}"
    );
}

/// A device another session took over, and then let go of, is taken back by the session
/// that still carries it; one held by a live session of another protocol is not taken.
#[tokio::test]
async fn a_vacant_link_is_taken_back_and_another_protocols_live_link_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = Commands::open(&settings(), open(dir.path()), 0).unwrap();
    let mut a = c.register("tag", JSONL, 0);
    let epoch = c.links_epoch();
    let b = c.register("tag", JSONL, 1); // heard by a second hub: it has the link now
    assert_ne!(c.links_epoch(), epoch);
    c.relink_vacant(&a, &["tag".to_string()], JSONL, 2);
    c.accept(&[&cmd("t-1", "tag")], 3).await.unwrap();
    assert!(a.rx.try_recv().is_err(), "b holds the link while it lives");
    let epoch = c.links_epoch();
    c.unregister("tag", b.id, 4);
    drop(b);
    assert_ne!(c.links_epoch(), epoch);
    c.relink_vacant(&a, &["tag".to_string()], JSONL, 5);
    let d =
        a.rx.try_recv()
            .expect("a took the vacant link back and gets t-1");
    assert_eq!(d.id, "t-1");

    // A tracker keeps its link when a JSON line names its IMEI, while it is connected and
    // while it is away, and gets it again at its next login.
    const IMEI: &str = "356307042441013";
    let teltonika = Seen {
        protocol: Protocol::Teltonika,
        source: Source::Listener(1),
    };
    let tracker = c.register(IMEI, teltonika, 6);
    assert!(!c.link(&a, IMEI, JSONL, 7));
    c.unregister(IMEI, tracker.id, 8);
    drop(tracker);
    c.relink_vacant(&a, &[IMEI.to_string()], JSONL, 9);
    c.accept(&[&cmd("t-2", IMEI)], 10).await.unwrap();
    assert!(
        a.rx.try_recv().is_err(),
        "not framed as a JSON line for the app"
    );
    assert_eq!(statuses(&c, "t-2"), ["queued"], "waits for the tracker");
    let mut tracker = c.register(IMEI, teltonika, 11);
    let d = tracker
        .rx
        .try_recv()
        .expect("the tracker's command at its login");
    assert_eq!(d.id, "t-2");
}
