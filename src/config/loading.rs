//! Reading the file and the `FLEETEDGE__…` environment into [`Settings`], with every
//! problem (unknown keys, bad values, failed checks) reported at once.

use std::collections::HashMap;
use std::path::Path;

use super::unknown_keys::{known_keys, strip_unknown_keys};
use super::{ConfigError, Settings};

const ENV_PREFIX: &str = "FLEETEDGE";

impl Settings {
    /// Loads `path` with `FLEETEDGE__…` overrides from the process environment, then
    /// validates.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let one = |p: String| ConfigError { problems: vec![p] };
        if !path.exists() {
            return Err(one(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(env),
            )
            .build()
            .map_err(|e| one(format!("{}: {e}", path.display())))?;
        // serde stops at the first unknown key; an installer fixing a file wants them all, and
        // the rest of the file checked too. So unknown keys are found against the tree of
        // known ones, reported, and left out of what is deserialized.
        let mut raw: serde_json::Value = built
            .clone()
            .try_deserialize()
            .map_err(|e| one(format!("{}: {e}", path.display())))?;
        let mut problems = Vec::new();
        strip_unknown_keys(&mut raw, &known_keys(), "", &mut problems);
        let source = if problems.is_empty() {
            built
        } else {
            config::Config::try_from(&raw).map_err(|e| one(format!("{}: {e}", path.display())))?
        };
        let mut settings: Settings = match source.try_deserialize() {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                return Err(ConfigError { problems });
            }
        };
        if settings.mqtt.client_id.is_empty() {
            settings.mqtt.client_id = format!("fleetedge-{}", settings.gateway_id);
        }
        if let Err(e) = settings.validate() {
            problems.extend(e.problems);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(settings)
    }
}
