//! `[commands]`: downlink commands from the cloud to devices (see the module doc of
//! [`crate::commands`]). Every field is documented here once, and in
//! `fleetedge.example.toml`.

use serde::{Deserialize, Serialize};

/// `[commands]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandSettings {
    /// Subscribe to `{mqtt.topic_prefix}/{gateway_id}/commands` and deliver commands to
    /// connected devices. Default false: the gateway carries data up only.
    pub enabled: bool,
    /// Commands queued (waiting or sent and not yet settled) for one device; more are
    /// `rejected` ("queue full"). Default 16.
    pub max_queued_per_device: u32,
    /// Commands queued over all devices; more are `rejected` ("queue full"). Default 10000.
    pub max_queued_total: u32,
    /// Seconds a command is kept when it names no `ttl_s`; not sent after that (`expired`).
    /// Default 86400 (one day).
    pub default_ttl_s: u64,
    /// Seconds a sent command waits for the device's answer; then `failed`. Default 60.
    pub answer_timeout_s: u64,
    /// Largest command in bytes (the `text`, or the bytes of `raw_hex`); longer ones are
    /// `rejected` ("too long"). Default 1024.
    pub max_bytes: usize,
    /// Command ids remembered so a repeated id is not sent twice (also across restarts);
    /// the oldest are forgotten beyond this. At least `max_queued_total`. Default 100000.
    pub remembered_ids: u32,
    /// Per-source allow-lists of command prefixes. A source (`listeners[N]` or `serial[N]`,
    /// the index of its entry in the config) without an entry here takes every command.
    pub allow: Vec<CommandAllow>,
}

/// One `[[commands.allow]]` entry: what devices of one listener or serial port may be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAllow {
    /// `listeners[N]` or `serial[N]`: the N-th `[[listeners]]` / `[[serial]]` entry (from 0).
    pub source: String,
    /// Command texts must start with one of these (ASCII case ignored); `raw_hex` commands
    /// are refused on a source with an allow-list. Empty: no command at all.
    pub prefixes: Vec<String>,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            enabled: false,
            max_queued_per_device: 16,
            max_queued_total: 10_000,
            default_ttl_s: 86_400,
            answer_timeout_s: 60,
            max_bytes: 1024,
            remembered_ids: 100_000,
            allow: Vec::new(),
        }
    }
}

/// A command source: which config entry a device came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Listener(usize),
    Serial(usize),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Listener(i) => write!(f, "listeners[{i}]"),
            Source::Serial(i) => write!(f, "serial[{i}]"),
        }
    }
}

impl Source {
    /// `listeners[N]` / `serial[N]`.
    pub fn parse(text: &str) -> Option<Source> {
        let index = |rest: &str| rest.strip_suffix(']').and_then(|n| n.parse().ok());
        if let Some(rest) = text.strip_prefix("listeners[") {
            index(rest).map(Source::Listener)
        } else if let Some(rest) = text.strip_prefix("serial[") {
            index(rest).map(Source::Serial)
        } else {
            None
        }
    }
}

impl CommandSettings {
    /// A sample with one allow entry, so the config loader knows the keys of
    /// `[[commands.allow]]`.
    pub fn key_sample() -> CommandSettings {
        CommandSettings {
            allow: vec![CommandAllow {
                source: String::new(),
                prefixes: Vec::new(),
            }],
            ..CommandSettings::default()
        }
    }

    /// Every problem, each naming its key; `listeners` and `serial` are the numbers of
    /// entries the sources may name.
    pub fn problems(&self, listeners: usize, serial: usize) -> Vec<String> {
        let mut problems = Vec::new();
        let mut range = |key: &str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                problems.push(format!(
                    "commands.{key}: {value} must be between {min} and {max}"
                ));
            }
        };
        range(
            "max_queued_per_device",
            self.max_queued_per_device.into(),
            1,
            1000,
        );
        range(
            "max_queued_total",
            self.max_queued_total.into(),
            1,
            1_000_000,
        );
        range("default_ttl_s", self.default_ttl_s, 1, 30 * 86_400);
        range("answer_timeout_s", self.answer_timeout_s, 1, 3600);
        range("max_bytes", self.max_bytes as u64, 1, 65_536);
        range(
            "remembered_ids",
            self.remembered_ids.into(),
            1000,
            10_000_000,
        );
        if self.max_queued_per_device > self.max_queued_total {
            problems.push(format!(
                "commands.max_queued_per_device: {} is more than commands.max_queued_total {}",
                self.max_queued_per_device, self.max_queued_total
            ));
        }
        if self.remembered_ids < self.max_queued_total {
            problems.push(format!(
                "commands.remembered_ids: {} is less than commands.max_queued_total {}; the id \
                 of a queued command must not be forgotten (a redelivery would queue it again)",
                self.remembered_ids, self.max_queued_total
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, entry) in self.allow.iter().enumerate() {
            let key = format!("commands.allow[{i}].source");
            match Source::parse(&entry.source) {
                None => problems.push(format!(
                    "{key}: {:?} must be \"listeners[N]\" or \"serial[N]\"",
                    entry.source
                )),
                Some(Source::Listener(n)) if n >= listeners => problems.push(format!(
                    "{key}: {:?} names no entry; there are {listeners} [[listeners]]",
                    entry.source
                )),
                Some(Source::Serial(n)) if n >= serial => problems.push(format!(
                    "{key}: {:?} names no entry; there are {serial} [[serial]]",
                    entry.source
                )),
                Some(source) => {
                    if !seen.insert(source) {
                        problems.push(format!("{key}: {source} has two entries"));
                    }
                }
            }
            if entry.prefixes.iter().any(String::is_empty) {
                problems.push(format!(
                    "commands.allow[{i}].prefixes: an empty prefix would allow every command; \
                     leave the source out instead"
                ));
            }
        }
        problems
    }

    /// The allow-list of `source`; `None`: every command.
    pub fn prefixes_of(&self, source: Source) -> Option<&[String]> {
        self.allow
            .iter()
            .find(|a| Source::parse(&a.source) == Some(source))
            .map(|a| a.prefixes.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_name_their_keys() {
        assert!(CommandSettings::default().problems(1, 0).is_empty());
        let bad = CommandSettings {
            max_queued_per_device: 0,
            answer_timeout_s: 0,
            allow: vec![
                CommandAllow {
                    source: "listeners[3]".into(),
                    prefixes: vec!["getinfo".into()],
                },
                CommandAllow {
                    source: "port 5027".into(),
                    prefixes: vec![String::new()],
                },
            ],
            ..CommandSettings::default()
        };
        let problems = bad.problems(1, 0).join("\n");
        for key in [
            "commands.max_queued_per_device",
            "commands.answer_timeout_s",
            "commands.allow[0].source",
            "commands.allow[1].source",
            "commands.allow[1].prefixes",
        ] {
            assert!(problems.contains(key), "{key} missing in {problems}");
        }
    }

    #[test]
    fn sources_parse_and_find_their_prefixes() {
        assert_eq!(Source::parse("listeners[2]"), Some(Source::Listener(2)));
        assert_eq!(Source::parse("serial[0]"), Some(Source::Serial(0)));
        assert_eq!(Source::parse("serial[x]"), None);
        let s = CommandSettings {
            allow: vec![CommandAllow {
                source: "listeners[1]".into(),
                prefixes: vec!["getinfo".into()],
            }],
            ..CommandSettings::default()
        };
        assert_eq!(
            s.prefixes_of(Source::Listener(1)),
            Some(&["getinfo".to_string()][..])
        );
        assert_eq!(s.prefixes_of(Source::Listener(0)), None);
    }
}
