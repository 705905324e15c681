//! `[http]`: the operations endpoint's address, connection limit and token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::range::Problems;
use super::secret::{read_secret_file, Secret};

/// The operations endpoint: `/metrics` (Prometheus text), `/health`, `/ready`, and
/// `/buffer/stats`, `/buffer/export` for `fleetedge buffer stats|export`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address and port of the endpoint; an empty string turns it off. Only `/buffer/*` can
    /// require a token: keep it on loopback (or a management-only interface).
    /// Default `127.0.0.1:9780`.
    pub bind: String,
    /// Connections served at once, 1 to 1024. At the limit a new connection closes the
    /// oldest one that is not in the middle of a request (a slow or idle client), so a
    /// health check still gets in. Default 16.
    pub max_connections: usize,
    /// Bearer token that `/buffer/stats` and `/buffer/export` require (`Authorization:
    /// Bearer <token>`; `fleetedge buffer stats|export` send it); 16 to 1024 printable ASCII
    /// characters. Meant for the environment (`FLEETEDGE__HTTP__TOKEN`, e.g. in the 0600
    /// `/etc/default/fleetedge`), as the config file is readable by every user. Never logged.
    /// Default none: `/buffer/*` is open to every local user.
    pub token: Option<Secret>,
    /// File holding `token` (read at start; a trailing newline is ignored), e.g. mode 0640
    /// owned by root, group fleetedge: readable by the service and by whoever runs
    /// `fleetedge buffer` as root. Use either this or `token`. Default none.
    pub token_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: "127.0.0.1:9780".into(),
            max_connections: 16,
            token: None,
            token_file: None,
        }
    }
}

/// Bounds of `http.token`'s length.
const HTTP_TOKEN_BYTES: std::ops::RangeInclusive<usize> = 16..=1024;
/// Bounds of `http.max_connections`.
const HTTP_MAX_CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=1024;

impl HttpSettings {
    /// The address to listen on, `None` when the endpoint is off; the error names the key.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.bind.is_empty() {
            return Ok(None);
        }
        match self.bind.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => Err(format!(
                "http.bind: {:?} needs a port other than 0",
                self.bind
            )),
            Ok(addr) => Ok(Some(addr)),
            Err(e) => Err(format!(
                "http.bind: {:?} is not an address:port ({e}); e.g. \"127.0.0.1:9780\", or \"\" for off",
                self.bind
            )),
        }
    }

    /// Every problem of the section, each naming its key (never the token's value).
    pub(super) fn check(&self, problems: &mut Problems) {
        problems.extend(self.addr().err());
        problems.between(
            "http.max_connections",
            self.max_connections,
            HTTP_MAX_CONNECTIONS,
        );
        match self.token() {
            Err(e) => problems.extend([e]),
            Ok(None) => {}
            Ok(Some(token)) => problems.extend(token_problem(token.expose())),
        }
    }

    /// The bearer token `/buffer/*` requires: `token`, or `token_file` read now. Errors name
    /// the key and the file, never the token.
    pub fn token(&self) -> Result<Option<Secret>, String> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                Err("http.token_file: set either http.token or http.token_file, not both".into())
            }
            (Some(t), None) => Ok(Some(t.clone())),
            (None, Some(path)) => read_secret_file(
                "http.token_file",
                path,
                *HTTP_TOKEN_BYTES.end() as u64 + 2,
                "longer than a token may be",
            )
            .map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// What is wrong with `token` as an `http.token`, if anything.
fn token_problem(token: &str) -> Option<String> {
    if !HTTP_TOKEN_BYTES.contains(&token.len()) {
        Some(format!(
            "http.token: must be {} to {} characters long (it is {}); leave it out for no token",
            HTTP_TOKEN_BYTES.start(),
            HTTP_TOKEN_BYTES.end(),
            token.len()
        ))
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some(
            "http.token: only printable ASCII characters without spaces (it goes in an HTTP \
             header)"
                .into(),
        )
    } else {
        None
    }
}
