//! Who may ask the ops endpoint what, decided per request before any route runs:
//!
//! - **Host**: the `Host` header must name the endpoint — `localhost`, a loopback address,
//!   or the bound address (any IP address when bound to `0.0.0.0`/`::`), with the bound
//!   port (no port means 80). Anything else is answered 421: a page in a browser on the
//!   gateway's network that rebinds its own DNS name to 127.0.0.1 still sends its own name,
//!   so it cannot read `/metrics` or the buffer. No `Host` at all is 400.
//! - **Token**: with `http.token` set, `/buffer/*` (which serves every buffered position)
//!   and `/commands*` (which sends commands to devices) require
//!   `Authorization: Bearer <token>`, compared in constant time; 401 otherwise.
//!   `/metrics`, `/health` and `/ready` stay open for scrapers and supervisors.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The rules for one endpoint.
#[derive(Debug, Clone)]
pub struct Access {
    bound: SocketAddr,
    token: Option<Secret>,
}

/// Why a request was refused: its status and the text of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub text: String,
}

impl Access {
    pub fn new(bound: SocketAddr, token: Option<Secret>) -> Access {
        Access { bound, token }
    }

    /// `Ok` when a request for `path` with `headers` may be answered.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let refuse = |status, text: String| Err(Refusal { status, text });
        let Some(host) = headers.get(header::HOST) else {
            return refuse(StatusCode::BAD_REQUEST, "a Host header is required".into());
        };
        let host = host.to_str().unwrap_or_default();
        if !host_names_endpoint(host, self.bound) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {host:?} is not this endpoint: use localhost:{port} or \
                     127.0.0.1:{port}",
                    port = self.bound.port()
                ),
            );
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let guarded = |prefix: &str| {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        // /commands sends commands to devices: the same token as the buffer's positions.
        if !(guarded("/buffer") || guarded("/commands")) {
            return Ok(());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(token.expose().as_bytes())) {
            Ok(())
        } else {
            refuse(
                StatusCode::UNAUTHORIZED,
                "/buffer/* and /commands require Authorization: Bearer <http.token>".into(),
            )
        }
    }
}

/// Whether `host` (a `Host` header: `name[:port]`, `[v6][:port]`) names the endpoint bound
/// to `bound`.
fn host_names_endpoint(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) => (ip, rest),
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (name, host.get(name.len()..).unwrap_or(port)),
            None => (host, ""),
        },
    };
    let port = match port.strip_prefix(':') {
        Some(p) => p.parse::<u16>().ok(),
        None if port.is_empty() => Some(80),
        None => None,
    };
    if port != Some(bound.port()) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bound.ip() || bound.ip().is_unspecified(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(auth) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        }
        h
    }

    fn status(access: &Access, path: &str, host: Option<&str>, auth: Option<&str>) -> u16 {
        match access.check(path, &headers(host, auth)) {
            Ok(()) => 200,
            Err(r) => r.status.as_u16(),
        }
    }

    #[test]
    fn the_host_must_name_this_endpoint_with_its_port() {
        let loopback = Access::new("127.0.0.1:9780".parse().unwrap(), None);
        for ok in [
            "127.0.0.1:9780",
            "localhost:9780",
            "LocalHost:9780",
            "127.0.0.2:9780",
            "[::1]:9780",
        ] {
            assert_eq!(status(&loopback, "/metrics", Some(ok), None), 200, "{ok}");
        }
        for misdirected in [
            "evil.example:9780",
            "127.0.0.1:9781",
            "127.0.0.1",
            "localhost",
            "10.0.0.5:9780",
            "[::1]",
            "[::1:9780",
            "127.0.0.1:x",
            "",
        ] {
            assert_eq!(
                status(&loopback, "/health", Some(misdirected), None),
                421,
                "{misdirected:?}"
            );
        }
        assert_eq!(status(&loopback, "/health", None, None), 400);

        let lan = Access::new("10.0.0.5:80".parse().unwrap(), None);
        assert_eq!(status(&lan, "/metrics", Some("10.0.0.5"), None), 200);
        assert_eq!(status(&lan, "/metrics", Some("10.0.0.5:80"), None), 200);
        assert_eq!(status(&lan, "/metrics", Some("10.0.0.6"), None), 421);
        assert_eq!(status(&lan, "/metrics", Some("gateway.lan"), None), 421);
        // Bound to every address: any address literal is the endpoint, a name is not.
        let any = Access::new("[::]:9780".parse().unwrap(), None);
        assert_eq!(status(&any, "/metrics", Some("10.0.0.6:9780"), None), 200);
        assert_eq!(status(&any, "/metrics", Some("[fe80::1]:9780"), None), 200);
        assert_eq!(
            status(&any, "/metrics", Some("rebound.example:9780"), None),
            421
        );
    }

    #[test]
    fn with_a_token_only_buffer_paths_need_it() {
        let token = "0123456789abcdef";
        let access = Access::new("127.0.0.1:9780".parse().unwrap(), Some(Secret::new(token)));
        let host = Some("127.0.0.1:9780");
        let bearer = format!("Bearer {token}");
        for path in ["/buffer/stats", "/buffer/export", "/buffer"] {
            assert_eq!(status(&access, path, host, None), 401, "{path}");
            assert_eq!(status(&access, path, host, Some(&bearer)), 200, "{path}");
        }
        for wrong in [
            "Bearer 0123456789abcdeX",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
        ] {
            assert_eq!(
                status(&access, "/buffer/export", host, Some(wrong)),
                401,
                "{wrong}"
            );
        }
        assert_eq!(
            status(
                &access,
                "/buffer/stats",
                host,
                Some(&format!("bearer {token}"))
            ),
            200
        );
        for open in ["/metrics", "/health", "/ready", "/bufferx"] {
            assert_eq!(status(&access, open, host, None), 200, "{open}");
        }
        // The Host check comes first, token or not.
        assert_eq!(
            status(&access, "/buffer/stats", Some("evil:9780"), Some(&bearer)),
            421
        );
        let open = Access::new("127.0.0.1:9780".parse().unwrap(), None);
        assert_eq!(status(&open, "/buffer/export", host, None), 200);
    }
}
