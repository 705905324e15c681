//! Operations: what an operator, a scraper or a supervisor reads from a running gateway.
//!
//! - [`http`]: the endpoint (`/metrics`, `/health`, `/ready`, `/buffer/*`): its routes, on
//!   `http.bind` (loopback by default).
//! - [`serve`]: its connections, with hyper: deadlines and the connection limit.
//! - [`access`]: the Host check and the `/buffer/*` token.
//! - [`prometheus`]: `/metrics`: the registry of [`crate::metrics`] and the buffer's gauges,
//!   in the Prometheus text format.
//!
//! The counters themselves live in [`crate::metrics`], where the hot paths bump them.

pub mod access;
pub mod commands;
pub mod http;
pub mod prometheus;
pub mod serve;
