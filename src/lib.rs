//! fleetedge: an edge gateway agent for telematics hardware.
//!
//! # Layout
//!
//! ```text
//! device ─▶ ingest (session per connection) ─▶ firmware-protocols decoder ─▶ records
//!    ▲                                                                        │
//!    └── reply, only after the buffer says "durable" ◀── buffer.append (group commit + fsync)
//!                                                                             │
//!          uplink: oldest unacked ─▶ batch ─▶ JSON ─▶ zstd ─▶ MQTT QoS 1 ─▶ PUBACK ─▶ remove
//! ```
//!
//! - [`config`]: the typed settings tree (TOML + `FLEETEDGE__…` environment), validated.
//! - [`buffer`]: the sled-backed durable queue.
//! - [`clean`]: duplicate suppression settings, per-listener filters, their counters.
//! - [`commands`]: downlink commands: the durable queue, the command MQTT connection, results.
//! - [`ingest`]: TCP listeners and device sessions.
//! - [`uplink`]: batching, payload encoding, the MQTT connection, backoff.
//! - [`gateway`]: wires the three together for `fleetedge run` and shuts them down.
//! - [`decode`]: `fleetedge decode`, the capture decoder for installers.
//! - [`simulate`]: `fleetedge simulate`, simulated devices for site checks and load tests.
//! - [`inspect`]: `fleetedge buffer stats|export`, the installer's look into the buffer.
//! - [`listen`]: TCP listening sockets with a backlog sized for a site's devices.
//! - [`logging`]: tracing setup; [`log_limit`]: the rate limit on bad-input warnings.
//! - [`metrics`]: process-wide counters, logged periodically.
//! - [`ops`]: the HTTP endpoint: Prometheus `/metrics`, `/health`, `/ready`.
//! - [`notify`]: the systemd notification socket (`READY=1`, `WATCHDOG=1`, `STOPPING=1`).
//! - [`watchdog`]: when the pipeline counts as making progress, and the task that pings.
//!
//! The protocol decoders live in the `firmware-protocols` crate, which does no IO.

pub mod buffer;
pub mod clean;
pub mod commands;
pub mod config;
pub mod decode;
pub mod gateway;
pub mod ingest;
pub mod inspect;
pub mod listen;
pub mod log_limit;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod simulate;
pub mod uplink;
pub mod watchdog;
