//! Unknown keys: serde stops at the first one, but an installer fixing a file wants them all
//! (and the rest of the file checked too). So the raw tree is compared with the tree of known
//! keys, every unknown one reported and left out of what is deserialized.

use std::path::PathBuf;

use super::devices::{default_baud, default_reopen_max_ms};
use super::{
    BufferSettings, HttpSettings, IngestSettings, ListenerSettings, LogSettings, MqttSettings,
    Secret, SerialSettings, Settings, UplinkSettings,
};

/// Every key a config may hold: the defaults as a JSON tree, with one sample element in each
/// array of tables. The struct literals below make the compiler list every field.
pub(super) fn known_keys() -> serde_json::Value {
    let sample = Settings {
        gateway_id: String::new(),
        log: LogSettings::default(),
        // Some, because None is skipped when serialized.
        buffer: BufferSettings {
            alert_records: Some(0),
            ..BufferSettings::default()
        },
        mqtt: MqttSettings::default(),
        uplink: UplinkSettings::default(),
        ingest: IngestSettings::default(),
        dedup: crate::clean::DedupSettings::default(),
        http: HttpSettings {
            token: Some(Secret::default()),
            token_file: Some(PathBuf::new()),
            ..HttpSettings::default()
        },
        commands: crate::commands::config::CommandSettings::key_sample(),
        listeners: vec![ListenerSettings {
            protocol: String::new(),
            bind: String::new(),
            allowed_devices: Vec::new(),
            ack_reports: false,
            filter: crate::clean::FilterSettings::default(),
        }],
        serial: vec![SerialSettings {
            path: String::new(),
            baud: default_baud(),
            protocol: String::new(),
            device_id: None,
            reopen_max_ms: default_reopen_max_ms(),
            filter: crate::clean::FilterSettings::default(),
        }],
    };
    serde_json::to_value(&sample).unwrap_or(serde_json::Value::Null)
}

/// Removes from `raw` every key `known` does not have, with a problem naming each.
pub(super) fn strip_unknown_keys(
    raw: &mut serde_json::Value,
    known: &serde_json::Value,
    path: &str,
    problems: &mut Vec<String>,
) {
    use serde_json::Value;
    match (raw, known) {
        (Value::Object(map), Value::Object(known_map)) => map.retain(|key, value| {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match known_map.get(key) {
                Some(known_value) => {
                    strip_unknown_keys(value, known_value, &key_path, problems);
                    true
                }
                None => {
                    let names: Vec<&str> = known_map.keys().map(String::as_str).collect();
                    problems.push(format!(
                        "{key_path}: unknown key (in the file or a FLEETEDGE__ variable); \
                         known here: {}",
                        names.join(", ")
                    ));
                    false
                }
            }
        }),
        (Value::Array(items), Value::Array(known_items)) => {
            if let Some(element) = known_items.first() {
                for (i, item) in items.iter_mut().enumerate() {
                    strip_unknown_keys(item, element, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}
