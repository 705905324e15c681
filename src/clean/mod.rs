//! Clean data at the edge: what keeps resent and unwanted records off the metered link.
//!
//! - Duplicate suppression lives in the buffer (`buffer/dedup.rs`): it must be decided
//!   against what is durable and logged in the same sled batch as the records. Its settings
//!   (`[dedup]`) are here, in [`config`].
//! - [`filter`]: the per-listener (and per-serial-port) filters installers expect, applied
//!   after decoding and before storing. Pure: state per device, bounded, time passed in.
//! - [`metrics`]: duplicates by protocol, filtered records by reason.
//!
//! Both answer the device as if its records were stored: a dropped record is one the
//! installer (filters) or the gateway (a duplicate of a stored one) chose not to keep, so a
//! resend would only be dropped again.

pub mod config;
pub mod filter;
pub mod metrics;

pub use config::{DedupSettings, FilterSettings};
pub use filter::{Filter, FilterReason};
