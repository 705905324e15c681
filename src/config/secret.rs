//! Passwords and tokens: values that are never printed, and files they are read from.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A password: deserialised like a string, but printed (`Debug`) and serialised as `***`, so
/// `Settings` can be logged or dumped without leaking it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself; hand it to the MQTT client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A secret from the file `path` (the value of `key`), at most `max` bytes (`too_big` says
/// why), with trailing `\n`/`\r\n` removed. Errors name the key and the file.
pub(super) fn read_secret_file(
    key: &str,
    path: &Path,
    max: u64,
    too_big: &str,
) -> Result<Secret, String> {
    use std::io::Read;
    let why = |e: &dyn std::fmt::Display| format!("{key}: cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| why(&e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| why(&e))?;
    if bytes.len() as u64 > max {
        return Err(why(&too_big));
    }
    let text = String::from_utf8(bytes).map_err(|_| why(&"not UTF-8 text"))?;
    Ok(Secret(text.trim_end_matches(['\n', '\r']).to_string()))
}
