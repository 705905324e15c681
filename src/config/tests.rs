//! Loading and checking whole config files: defaults, overrides, every problem named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::buffer::WhenFull;
use crate::uplink::payload::Compression;

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("fleetedge.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const MINIMAL: &str = r#"
gateway_id = "gw-001"
[[listeners]]
protocol = "teltonika"
bind = "127.0.0.1:5027"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
    assert_eq!(s.mqtt.client_id, "fleetedge-gw-001");
    assert_eq!(s.buffer.max_records, 1_000_000);
    assert_eq!(s.buffer.when_full, WhenFull::Block);
    assert_eq!(s.uplink.compression, Compression::Zstd);
    assert_eq!(s.uplink.linger_ms, 200);
}

#[test]
fn a_per_address_limit_above_the_connection_limit_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{MINIMAL}\n[ingest]\nmax_connections = 10\nmax_connections_per_ip = 11\n");
    let err = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap_err();
    assert!(
        err.to_string().contains("ingest.max_connections_per_ip:"),
        "{err}"
    );
    let text = format!("{MINIMAL}\n[ingest]\nmax_connections = 10\nmax_connections_per_ip = 10\n");
    let s = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap();
    assert_eq!(s.ingest.max_connections_per_ip, 10);
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([
        ("FLEETEDGE__MQTT__PORT".to_string(), "2883".to_string()),
        ("FLEETEDGE__BUFFER__PATH".to_string(), "/tmp/x".to_string()),
        ("FLEETEDGE__GATEWAY_ID".to_string(), "gw-env".to_string()),
        (
            "FLEETEDGE__UPLINK__COMPRESSION".to_string(),
            "gzip".to_string(),
        ),
    ]);
    let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(env)).unwrap();
    assert_eq!(s.mqtt.port, 2883);
    assert_eq!(s.buffer.path, PathBuf::from("/tmp/x"));
    assert_eq!(s.gateway_id, "gw-env");
    assert_eq!(s.uplink.compression, Compression::Gzip);
}

#[test]
fn environment_values_are_taken_verbatim_for_strings_and_parsed_for_typed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([
        // Numeric-looking strings keep their leading zeros and their spelling.
        ("FLEETEDGE__GATEWAY_ID".to_string(), "007".to_string()),
        ("FLEETEDGE__MQTT__USERNAME".to_string(), "0123".to_string()),
        ("FLEETEDGE__MQTT__PASSWORD".to_string(), "1e3".to_string()),
        (
            "FLEETEDGE__MQTT__TOPIC_PREFIX".to_string(),
            "TRUE".to_string(),
        ),
        // Typed keys are still parsed from the text.
        (
            "FLEETEDGE__BUFFER__MAX_RECORDS".to_string(),
            "5000".to_string(),
        ),
        (
            "FLEETEDGE__MQTT__TLS__ENABLED".to_string(),
            "false".to_string(),
        ),
    ]);
    let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(env)).unwrap();
    assert_eq!(s.gateway_id, "007");
    assert_eq!(s.mqtt.client_id, "fleetedge-007");
    assert_eq!(s.mqtt.topic_prefix, "TRUE");
    let (user, password) = s.mqtt.credentials().unwrap().unwrap();
    assert_eq!((user.as_str(), password.expose()), ("0123", "1e3"));
    assert_eq!(s.buffer.max_records, 5000);
    assert!(!s.mqtt.tls.enabled);

    let env = HashMap::from([(
        "FLEETEDGE__BUFFER__MAX_RECORDS".to_string(),
        "lots".to_string(),
    )]);
    let err = Settings::load_with_env(&write(&dir, MINIMAL), Some(env)).unwrap_err();
    assert!(err.to_string().contains("lots"), "{err}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
gateway_id = "gw/1"
[buffer]
max_records = 5
resume_below_percent = 100
[mqtt]
topic_prefix = "a/#"
[[listeners]]
protocol = "nope"
bind = "localhost"
"#;
    let err = Settings::load_with_env(&write(&dir, text), Some(HashMap::new())).unwrap_err();
    let all = err.to_string();
    for key in [
        "gateway_id:",
        "buffer.max_records:",
        "buffer.resume_below_percent:",
        "mqtt.topic_prefix:",
        "listeners[0].protocol:",
        "listeners[0].bind:",
    ] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
    assert_eq!(err.problems.len(), 6, "{all}");
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let typo = format!("{MINIMAL}\n[uplink]\nlinger_msec = 5\n");
    let err = Settings::load_with_env(&write(&dir, &typo), Some(HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("linger_msec"), "{err}");
    let bad = format!("{MINIMAL}\n[uplink]\ncompression = \"lz4\"\n");
    let err = Settings::load_with_env(&write(&dir, &bad), Some(HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("lz4"), "{err}");
    let missing = Settings::load_with_env(&dir.path().join("none.toml"), None).unwrap_err();
    assert!(missing.to_string().contains("none.toml"), "{missing}");
}

#[test]
fn every_unknown_key_and_every_bad_value_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
gateway_id = "gw-1"
colour = "blue"
[mqtt]
hots = "broker"
port = 0
[[listeners]]
protocol = "teltonika"
bind = "127.0.0.1:5027"
allowed = ["1"]
"#;
    let env = HashMap::from([("FLEETEDGE__UPLINK__LINGER".to_string(), "5".to_string())]);
    let err = Settings::load_with_env(&write(&dir, text), Some(env)).unwrap_err();
    let all = err.to_string();
    for key in [
        "colour: unknown key",
        "mqtt.hots: unknown key",
        "listeners[0].allowed: unknown key",
        "uplink.linger: unknown key",
        // Checked too, although the file also has unknown keys.
        "mqtt.port: must not be 0",
    ] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
    assert_eq!(err.problems.len(), 5, "{all}");
    assert!(
        all.contains("known here: ack_reports, allowed_devices"),
        "{all}"
    );
}

#[test]
fn passwords_come_verbatim_from_the_environment_and_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{MINIMAL}\n[mqtt]\nusername = \"gw\"\n");
    let env = HashMap::from([("FLEETEDGE__MQTT__PASSWORD".to_string(), "0012".to_string())]);
    let s = Settings::load_with_env(&write(&dir, &text), Some(env)).unwrap();
    let (user, password) = s.mqtt.credentials().unwrap().unwrap();
    assert_eq!(user, "gw");
    assert_eq!(password.expose(), "0012", "not parsed as the number 12");
    let shown = format!("{s:?}");
    assert!(!shown.contains("0012"), "{shown}");
    assert!(shown.contains("password: Some(\"***\")"), "{shown}");
    let dumped = toml::to_string(&s).unwrap();
    assert!(!dumped.contains("0012"), "{dumped}");
}

#[test]
fn password_file_is_read_and_trimmed_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret word\r\n").unwrap();
    let text = format!(
        "{MINIMAL}\n[mqtt]\nusername = \"gw\"\npassword_file = \"{}\"\n",
        file.display()
    );
    let s = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap();
    let (_, password) = s.mqtt.credentials().unwrap().unwrap();
    assert_eq!(password.expose(), "s3cret word");

    std::fs::remove_file(&file).unwrap();
    let err = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap_err();
    let all = err.to_string();
    assert!(all.contains("mqtt.password_file: cannot read"), "{all}");
    assert!(all.contains(&file.display().to_string()), "{all}");

    std::fs::write(&file, "x\n").unwrap();
    let env = HashMap::from([("FLEETEDGE__MQTT__PASSWORD".to_string(), "y".to_string())]);
    let err = Settings::load_with_env(&write(&dir, &text), Some(env)).unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
}

#[test]
fn uplink_and_tls_keys_are_validated_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{MINIMAL}\n[mqtt]\npassword = \"pw\"\nstatus_interval_s = 100000\n\
             [mqtt.tls]\nenabled = true\nclient_cert_file = \"/c.pem\"\n\
             [uplink]\nmax_bytes_per_s = 5000000000\nshutdown_publish_s = 4000\n"
    );
    let err = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap_err();
    let all = err.to_string();
    for key in [
        "mqtt.username:",
        "mqtt.status_interval_s:",
        "mqtt.tls.ca_file:",
        "uplink.max_bytes_per_s:",
        "uplink.shutdown_publish_s:",
    ] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
    assert!(!all.contains("pw"), "the password leaked into:\n{all}");
    // Disabled TLS checks no files; defaults are the documented ones.
    let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
    assert!(!s.mqtt.tls.enabled);
    assert_eq!(s.mqtt.status_interval_s, 60);
    assert_eq!(s.uplink.max_messages_per_s, 0);
    assert_eq!(s.uplink.max_bytes_per_s, 0);
    assert_eq!(s.uplink.shutdown_publish_s, 5);
}

#[test]
fn buffer_alert_and_reclaim_keys_default_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
    assert_eq!(s.buffer.alert_records, None);
    let half = s.buffer.options().alert_level();
    assert_eq!(half, 500_000, "half of max_records");
    assert_eq!(s.buffer.reclaim_above_bytes, 64 << 20);
    let ok = format!(
        "{MINIMAL}\n[buffer]\nmax_records = 10000\nalert_records = 0\nreclaim_above_bytes = 0\n"
    );
    let s = Settings::load_with_env(&write(&dir, &ok), Some(HashMap::new())).unwrap();
    assert_eq!(s.buffer.options().alert_level(), 0, "0 turns the alert off");
    let bad = format!(
            "{MINIMAL}\n[buffer]\nmax_records = 10000\nalert_records = 10001\nreclaim_above_bytes = 1000\n"
        );
    let err = Settings::load_with_env(&write(&dir, &bad), Some(HashMap::new())).unwrap_err();
    let all = err.to_string();
    assert!(all.contains("buffer.alert_records:"), "{all}");
    assert!(all.contains("buffer.reclaim_above_bytes:"), "{all}");
    assert_eq!(err.problems.len(), 2, "{all}");
}

/// The commented example must name every setting, so installers can find them all.
#[test]
fn example_config_is_complete_and_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleetedge.example.toml");
    Settings::load_with_env(&example, Some(HashMap::new())).unwrap();
    // Optional sections (a serial port) are shown commented out with `#: `; with the
    // marker removed the example must still be valid and name every key.
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("#: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::load_with_env(&write(&dir, &text), Some(HashMap::new())).unwrap();
    assert!(!s.serial.is_empty(), "the example shows no [[serial]] port");
    let file: toml::Table = toml::from_str(&text).unwrap();
    let mut listed = Vec::new();
    leaf_keys("", &toml::Value::Table(file), &mut listed);
    let mut all = Vec::new();
    let defaults = toml::Value::try_from(&s).unwrap();
    leaf_keys("", &defaults, &mut all);
    for key in &all {
        assert!(
            listed.contains(key),
            "fleetedge.example.toml does not list {key}"
        );
    }
}

/// The example shows the default value of every key it sets (only the gateway id, the
/// listeners and serial ports, and the optional `#: ` samples are choices of its own), so it
/// never teaches a stale default.
#[test]
fn example_config_shows_the_default_values() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleetedge.example.toml");
    let mut shown = Settings::load_with_env(&example, Some(HashMap::new())).unwrap();
    let uncommented = std::fs::read_to_string(&example)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("#: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let with_samples =
        Settings::load_with_env(&write(&dir, &uncommented), Some(HashMap::new())).unwrap();
    // The serial port is only shown as a sample; its defaulted keys are checked too.
    shown.serial = with_samples.serial;
    // A struct literal, so a new section cannot be left out of the comparison.
    let defaults = Settings {
        gateway_id: shown.gateway_id.clone(),
        log: LogSettings::default(),
        buffer: BufferSettings::default(),
        mqtt: MqttSettings {
            client_id: format!("fleetedge-{}", shown.gateway_id),
            ..MqttSettings::default()
        },
        uplink: UplinkSettings::default(),
        ingest: IngestSettings::default(),
        http: HttpSettings::default(),
        commands: crate::commands::config::CommandSettings::default(),
        dedup: crate::clean::DedupSettings::default(),
        listeners: shown
            .listeners
            .iter()
            .map(|l| ListenerSettings {
                protocol: l.protocol.clone(),
                bind: l.bind.clone(),
                allowed_devices: Vec::new(),
                ack_reports: false,
                filter: crate::clean::FilterSettings::default(),
            })
            .collect(),
        serial: shown
            .serial
            .iter()
            .map(|s| SerialSettings {
                path: s.path.clone(),
                // A GNSS receiver's usual speed, chosen for the sample.
                baud: s.baud,
                protocol: s.protocol.clone(),
                device_id: s.device_id.clone(),
                reopen_max_ms: devices::default_reopen_max_ms(),
                filter: crate::clean::FilterSettings::default(),
            })
            .collect(),
    };
    let mut in_example = Vec::new();
    leaf_values("", &toml::Value::try_from(&shown).unwrap(), &mut in_example);
    let mut by_default = Vec::new();
    leaf_values(
        "",
        &toml::Value::try_from(&defaults).unwrap(),
        &mut by_default,
    );
    let differ: Vec<String> = in_example
        .iter()
        .filter(|pair| !by_default.contains(pair))
        .map(|(key, value)| {
            let default = by_default.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            format!("{key} = {value} (default: {default:?})")
        })
        .collect();
    assert!(
        differ.is_empty(),
        "fleetedge.example.toml shows values other than the defaults:\n{}",
        differ.join("\n")
    );
    assert_eq!(in_example.len(), by_default.len(), "{in_example:?}");
}

#[test]
fn http_bind_is_an_address_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let load = |bind: &str| {
        let text = format!("{MINIMAL}\n[http]\nbind = {bind:?}\n");
        Settings::load_with_env(&write(&dir, &text), Some(HashMap::new()))
    };
    let s = Settings::load_with_env(&write(&dir, MINIMAL), Some(HashMap::new())).unwrap();
    assert_eq!(s.http.bind, "127.0.0.1:9780");
    assert_eq!(load("").unwrap().http.addr(), Ok(None));
    let v6 = load("[::1]:9100").unwrap().http.addr().unwrap();
    assert_eq!(v6, Some("[::1]:9100".parse().unwrap()));
    for bad in ["localhost", "localhost:9780", "127.0.0.1", "127.0.0.1:0"] {
        let err = load(bad).unwrap_err().to_string();
        assert!(err.contains("http.bind:"), "{bad}: {err}");
    }
}

#[test]
fn http_connections_and_token_are_checked_naming_the_key_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let load = |http: &str, env: &[(&str, &str)]| {
        let text = format!("{MINIMAL}\n[http]\n{http}\n");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load_with_env(&write(&dir, &text), Some(env.collect()))
    };
    let s = load("", &[]).unwrap();
    assert_eq!(s.http.max_connections, 16);
    assert_eq!(s.http.token(), Ok(None));
    for bad in ["0", "1025"] {
        let err = load(&format!("max_connections = {bad}"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.max_connections: "), "{bad}: {err}");
    }
    let good = "0123456789abcdef-ok";
    let s = load("", &[("FLEETEDGE__HTTP__TOKEN", good)]).unwrap();
    assert_eq!(s.http.token(), Ok(Some(Secret::new(good))));
    assert!(!format!("{s:?}").contains(good), "the token was printed");
    for bad in ["short", "with a space in the token"] {
        let err = load(&format!("token = {bad:?}"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.token: "), "{bad}: {err}");
        assert!(!err.contains(bad), "the token is in the error: {err}");
    }
    let file = dir.path().join("http-token");
    std::fs::write(&file, format!("{good}\n")).unwrap();
    let from_file = format!("token_file = {:?}", file.display().to_string());
    let s = load(&from_file, &[]).unwrap();
    assert_eq!(s.http.token(), Ok(Some(Secret::new(good))));
    let both = load(&from_file, &[("FLEETEDGE__HTTP__TOKEN", good)])
        .unwrap_err()
        .to_string();
    assert!(both.contains("http.token_file: set either"), "{both}");
    let missing = load("token_file = \"/nonexistent/token\"", &[])
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("http.token_file: cannot read /nonexistent/token"),
        "{missing}"
    );
}

/// Every leaf key of `value` (`a.b`, `listeners[].bind`: any element may name it).
fn leaf_keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    let mut leaves = Vec::new();
    leaf_values(prefix, value, &mut leaves);
    out.extend(leaves.into_iter().map(|(key, _)| without_indices(&key)));
}

/// `listeners[2].bind` → `listeners[].bind`.
fn without_indices(key: &str) -> String {
    let mut out = String::new();
    let mut in_brackets = false;
    for c in key.chars() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            _ if in_brackets => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Every leaf of `value` with its dotted key (array elements numbered), for comparing values.
fn leaf_values(prefix: &str, value: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_values(&p, v, out);
            }
        }
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
            for (i, item) in items.iter().enumerate() {
                leaf_values(&format!("{prefix}[{i}]"), item, out);
            }
        }
        _ => out.push((prefix.to_string(), value.clone())),
    }
}
