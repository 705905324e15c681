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
        b"{\"command\":\"getinfo\",\"id\":\"a\"}\n".to_vec()
    );
    assert!(c.mark_sent("d1", delivery.seq, 2).await);
    assert!(!c.mark_sent("d1", delivery.seq, 2).await, "sent once");
    drop(c);
    drop(buffer);

    // As after SIGKILL: "a" was sent, so it failed; "b" waits; the ids are remembered.
    let buffer = open(dir.path());
    let c = Commands::open(&settings(), buffer, 10).unwrap();
    assert_eq!(c.queued(), 1);
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
