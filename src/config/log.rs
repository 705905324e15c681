//! `[log]`: the log filter, format and stats interval.

use serde::{Deserialize, Serialize};

use super::range::Problems;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter (`info`, `fleetedge=debug,warn`). `RUST_LOG` wins when set.
    /// Default `info`.
    pub level: String,
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub format: LogFormat,
    /// Seconds between "stats" log lines (counters and buffer depth); 0 turns them off.
    /// Default 60.
    pub stats_interval_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
            stats_interval_s: 60,
        }
    }
}

impl LogSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            problems.add(
                "log.level",
                format!("{:?} is not a tracing filter: {e}", self.level),
            );
        }
    }
}
