//! `fleetedge buffer stats` and `fleetedge buffer export`, run as the real binary against the
//! real `fleetedge run` binary. No broker: `mqtt.port` is a port nobody listens on, so the
//! uplink never drains and the backlog stays put.
//!
//! - `stats_and_export_from_the_running_gateway_then_from_the_stopped_buffer`: Teltonika
//!   records sent by two devices; while the gateway runs, both tools answer through its ops
//!   endpoint (stderr says so) with depth == records sent and the exported lines' seqs,
//!   device ids and fields (lat/lon included) matching what was sent, in order, `--limit` and
//!   `--output` honoured and nothing removed; after a SIGTERM both read the buffer directly
//!   (stderr says so) with the same answers, byte for byte for the export; then a chunk
//!   damaged on disk is skipped with a warning naming its seq, and left in place.
//! - `a_running_gateway_with_http_off_is_reported_not_bypassed`: `http.bind = ""` while the
//!   gateway holds the buffer: both tools fail with an error naming the lock and `http.bind`.
//! - `the_gateway_token_is_sent_and_a_missing_one_is_named`: with `http.token` set, the tools
//!   send it (read from the config, or from `http.token_file`); a config without it gets the
//!   gateway's 401 and is told how to set the token.
//! - `bad_configs_and_a_missing_buffer_are_named`: an unknown key fails with exit 2 naming
//!   it; a `buffer.path` with no buffer fails naming it, and is not created.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::*;
use firmware_protocols::teltonika::encode::AvlRecord;
use serde_json::Value;

/// Runs `fleetedge buffer <args> --config <config>` off the async workers, with no
/// `FLEETEDGE__` overrides from the test's environment.
async fn buffer_tool(config: &Path, args: &[&str]) -> Output {
    let mut cmd = gateway_command();
    cmd.arg("buffer").args(args).arg("--config").arg(config);
    cmd.env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLEETEDGE__") {
            cmd.env_remove(name);
        }
    }
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || cmd.output().expect("run fleetedge buffer")),
    )
    .await
    .expect("fleetedge buffer did not finish within 60 s")
    .expect("joining the tool")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The tool's stderr holds `part`.
fn stderr_has(out: &Output, part: &str) {
    let err = stderr(out);
    assert!(err.contains(part), "{part:?} not in stderr:\n{err}");
}

/// The tool succeeded; panics with its output otherwise.
fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

async fn stats_json(config: &Path) -> (Value, String) {
    let out = buffer_tool(config, &["stats", "--json"]).await;
    ok(&out, "buffer stats --json");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stats --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (json, stderr(&out))
}

/// The export's lines, each parsed.
fn lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .expect("the export is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Checks exported lines against what the devices sent, in order, from `first_seq`.
fn check_export(got: &[Value], sent: &[(String, AvlRecord)], first_seq: u64) {
    assert_eq!(got.len(), sent.len(), "exported lines");
    for (i, (line, (imei, record))) in got.iter().zip(sent).enumerate() {
        assert_eq!(line["seq"], first_seq + i as u64, "seq of line {i}: {line}");
        if let Err(why) = check_fields(imei, record, line) {
            panic!("line {i} ({line}): {why}");
        }
    }
}

/// The buffer facts both paths must agree on.
fn depth(stats: &Value) -> (u64, u64, u64) {
    let n = |key: &str| {
        stats[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {stats}"))
    };
    (n("records"), n("oldest_seq"), n("next_seq"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_export_from_the_running_gateway_then_from_the_stopped_buffer() {
    let mut gw = Gateway::start(
        GatewayConfig::new("gw-buffer-cli", free_port()).set("uplink.shutdown_publish_s", "0"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "fleetedge.toml", &gw.config_text());
    let http = gw
        .config_text()
        .lines()
        .find_map(|l| l.strip_prefix("http.bind = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("http.bind in the test config");

    // Two devices, three packets of five records each, one after the other: seq order is
    // send order.
    let mut sent: Vec<(String, AvlRecord)> = Vec::new();
    for index in 0..2 {
        let imei = imei(5501, index);
        let mut device = Device::connect(gw.addr(), &imei, Duration::from_secs(5))
            .await
            .expect("device login");
        for packet in 0..3u64 {
            let records: Vec<AvlRecord> =
                (0..5).map(|k| avl_record(index, packet * 5 + k)).collect();
            let accepted = device
                .send(&records, Duration::from_secs(10))
                .await
                .expect("packet answered");
            assert_eq!(accepted, 5);
            sent.extend(records.into_iter().map(|r| (imei.clone(), r)));
        }
    }
    let total = sent.len() as u64;

    // --- through the running gateway ---
    let (stats, how) = stats_json(&config).await;
    assert!(
        how.contains(&format!("from the running gateway at {http}")),
        "{how}"
    );
    assert_eq!(stats["source"], "gateway", "{stats}");
    let (records, oldest_seq, next_seq) = depth(&stats);
    assert_eq!(records, total, "{stats}");
    assert_eq!(next_seq - oldest_seq, total, "{stats}");
    assert_eq!(stats["max_records"], 1_000_000, "{stats}");
    assert_eq!(stats["when_full"], "block", "{stats}");
    assert_eq!(stats["full"], false, "{stats}");
    assert_eq!(stats["quarantined_chunks"], 0, "{stats}");
    assert_eq!(
        stats["oldest_device_time"],
        Value::from(time_of(&sent[0].1)),
        "{stats}"
    );
    assert!(
        stats["oldest_age_s"].as_u64().is_some_and(|s| s < 300),
        "{stats}"
    );
    assert!(
        stats["disk_bytes"].as_u64().is_some_and(|b| b > 0),
        "{stats}"
    );

    let text = buffer_tool(&config, &["stats"]).await;
    ok(&text, "buffer stats");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("{total} records")), "{text}");
    assert!(
        text.contains(&format!("seq {oldest_seq}, received")),
        "{text}"
    );

    let out = buffer_tool(&config, &["export"]).await;
    ok(&out, "buffer export");
    stderr_has(&out, "from the running gateway at");
    stderr_has(&out, &format!("exported {total} record(s)"));
    check_export(&lines(&out.stdout), &sent, oldest_seq);
    let from_gateway = out.stdout;

    let file = dir.path().join("first7.jsonl");
    let out = buffer_tool(
        &config,
        &["export", "--limit", "7", "--output", file.to_str().unwrap()],
    )
    .await;
    ok(&out, "buffer export --limit 7 --output");
    assert!(out.stdout.is_empty(), "--output still wrote to stdout");
    check_export(
        &lines(&std::fs::read(&file).unwrap()),
        &sent[..7],
        oldest_seq,
    );

    // Nothing was acknowledged or removed.
    assert_eq!(
        depth(&stats_json(&config).await.0),
        (total, oldest_seq, next_seq)
    );

    // --- the gateway stopped: the tools open the buffer themselves ---
    assert!(
        gw.stop_gracefully(Duration::from_secs(20)).await,
        "no clean stop"
    );
    let buffer_path = PathBuf::from(
        stats["path"]
            .as_str()
            .unwrap_or_else(|| panic!("path in {stats}")),
    );
    let (direct, how) = stats_json(&config).await;
    assert!(
        how.contains(&format!(
            "from {} (gateway not running)",
            buffer_path.display()
        )),
        "{how}"
    );
    assert_eq!(direct["source"], "direct", "{direct}");
    assert_eq!(depth(&direct), (total, oldest_seq, next_seq));
    assert_eq!(direct["oldest_device_time"], stats["oldest_device_time"]);
    assert_eq!(direct["in_flight_records"], 0);

    let out = buffer_tool(&config, &["export"]).await;
    ok(&out, "buffer export (direct)");
    stderr_has(&out, "(gateway not running)");
    assert_eq!(
        out.stdout, from_gateway,
        "the direct export differs from the gateway's"
    );
    let out = buffer_tool(&config, &["export", "--limit", "3"]).await;
    ok(&out, "buffer export --limit 3 (direct)");
    check_export(&lines(&out.stdout), &sent[..3], oldest_seq);
    // Opening it directly removed nothing either (and reclaimed nothing).
    assert_eq!(
        depth(&stats_json(&config).await.0),
        (total, oldest_seq, next_seq)
    );

    // --- a chunk damaged on disk: skipped with a warning naming it, left in place ---
    let damaged = oldest_seq + 5; // the first device's second packet
    damage_chunk(&buffer_path, damaged);
    let out = buffer_tool(&config, &["export"]).await;
    ok(&out, "buffer export over a damaged chunk");
    let warning = stderr(&out);
    assert!(
        warning.contains("warning: skipped the unreadable chunk")
            && warning.contains(&format!("seq {damaged}")),
        "{warning}"
    );
    let mut expected = sent.clone();
    expected.drain(5..10);
    let got = lines(&out.stdout);
    assert_eq!(got.len(), expected.len());
    for (line, (imei, record)) in got.iter().zip(&expected) {
        check_fields(imei, record, line).unwrap_or_else(|why| panic!("{line}: {why}"));
    }
    let seqs: Vec<u64> = got.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(
        !seqs.iter().any(|s| (damaged..damaged + 5).contains(s)),
        "{seqs:?}"
    );
    let (after, _) = stats_json(&config).await;
    assert_eq!(
        after["records"], total,
        "the export moved the damaged chunk: {after}"
    );
    assert_eq!(after["quarantined_chunks"], 0, "{after}");
}

/// Overwrites the chunk stored at `seq` with a valid header over bytes that are not zstd.
fn damage_chunk(buffer_path: &Path, seq: u64) {
    let db = sled::open(buffer_path).expect("open the stopped gateway's sled database");
    let queue = db.open_tree("queue").expect("the queue tree");
    let old = queue
        .insert(seq.to_be_bytes(), &[1u8, 0, 0, 0, 5, 0xba, 0xd0][..])
        .expect("overwrite the chunk");
    assert!(old.is_some(), "no chunk starts at seq {seq}");
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_with_http_off_is_reported_not_bypassed() {
    let mut gw = Gateway::start(
        GatewayConfig::new("gw-buffer-cli-off", free_port())
            .set("http.bind", "\"\"")
            .set("uplink.shutdown_publish_s", "0"),
    )
    .await;
    let mut device = Device::connect(gw.addr(), &imei(5502, 0), Duration::from_secs(5))
        .await
        .expect("device login");
    let records: Vec<AvlRecord> = (0..3).map(|k| avl_record(0, k)).collect();
    assert_eq!(
        device
            .send(&records, Duration::from_secs(10))
            .await
            .unwrap(),
        3
    );

    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "fleetedge.toml", &gw.config_text());
    for args in [&["stats"][..], &["export"][..]] {
        let out = buffer_tool(&config, args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed something");
        assert!(
            err.contains("locked by another process")
                && err.contains("the gateway is running")
                && err.contains("http.bind = \"\"")
                && err.contains("Set http.bind"),
            "{args:?}: {err}"
        );
    }
    assert!(gw.is_running(), "the tools disturbed the gateway");
    // The gateway still has every record (the failed open touched nothing).
    assert!(gw.stop_gracefully(Duration::from_secs(20)).await);
    let out = buffer_tool(&config, &["stats", "--json"]).await;
    ok(&out, "stats after the stop");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["records"], 3, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_token_is_sent_and_a_missing_one_is_named() {
    const TOKEN: &str = "cli-test-token-0123456789";
    let gw = Gateway::start(
        GatewayConfig::new("gw-buffer-cli-token", free_port())
            .set("http.token", &toml_string(TOKEN)),
    )
    .await;
    let with_token = gw.config_text();
    let port = with_token
        .lines()
        .find_map(|l| l.strip_prefix("http.bind = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse::<u16>().ok())
        .expect("http.bind in the test config");
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            loopback(port)
        )
        .is_ok())
        .await,
        "the HTTP endpoint did not accept"
    );
    let dir = tempfile::tempdir().unwrap();

    let config = write_file(dir.path(), "token.toml", &with_token);
    let out = buffer_tool(&config, &["stats", "--json"]).await;
    ok(&out, "stats with the gateway's token");
    stderr_has(&out, "from the running gateway");

    // Without it: the gateway's 401, and how to give the token.
    let without: Vec<&str> = with_token
        .lines()
        .filter(|l| !l.starts_with("http.token"))
        .collect();
    let config = write_file(dir.path(), "none.toml", &without.join("\n"));
    let out = buffer_tool(&config, &["export"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    stderr_has(&out, "answered /buffer/export with HTTP 401");
    stderr_has(&out, "FLEETEDGE__HTTP__TOKEN");

    // From a file, as the example config suggests.
    let token_file = write_file(dir.path(), "http-token", &format!("{TOKEN}\n"));
    let config = write_file(
        dir.path(),
        "file.toml",
        &format!(
            "http.token_file = {}\n{}",
            toml_string(&token_file.display().to_string()),
            without.join("\n")
        ),
    );
    let out = buffer_tool(&config, &["export"]).await;
    ok(&out, "export with the token from http.token_file");
    stderr_has(&out, "from the running gateway");
    assert!(
        lines(&out.stdout).is_empty(),
        "records from an empty buffer"
    );
}

#[tokio::test]
async fn bad_configs_and_a_missing_buffer_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-buffer-here");
    let base = format!(
        "gateway_id = \"gw-buffer-cli-bad\"\n\
         [buffer]\npath = {}\n\
         [http]\nbind = \"127.0.0.1:{}\"\n\
         [[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:{}\"\n",
        toml_string(&missing.display().to_string()),
        free_port(),
        free_port()
    );
    let unknown = write_file(
        dir.path(),
        "unknown.toml",
        &base.replace("[buffer]\n", "[buffer]\nmax_recordz = 5\n"),
    );
    for args in [&["stats"][..], &["export"][..]] {
        let out = buffer_tool(&unknown, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("max_recordz"), "{}", stderr(&out));
    }

    // Nothing listens on http.bind and buffer.path holds no buffer: an error, not a new one.
    let config = write_file(dir.path(), "fleetedge.toml", &base);
    for args in [&["stats"][..], &["export"][..]] {
        let out = buffer_tool(&config, args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("buffer.path") && err.contains(&missing.display().to_string()),
            "{err}"
        );
        assert!(!missing.exists(), "{args:?} created the buffer directory");
    }
}
