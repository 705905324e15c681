//! Helpers for the integration tests: real processes only, one file per job.
//!
//! - [`ports`]: [`free_port`] (a loopback port nobody listens on, never handed out twice),
//!   [`free_udp_port`], [`accepts_tcp`], and [`wait_until`], the bounded poll every wait uses.
//! - [`process`]: waiting for a server child to accept, killing and reaping children, their
//!   logs (printed from `Drop` when a test failed), [`write_file`].
//! - [`broker`]: [`Mosquitto`], a broker on a port of ours with its config, log and
//!   persistence file in a tempdir; killed on drop. [`stopped_broker`].
//! - [`gateway`]: [`Gateway`], the real `fleetedge run` binary with a [`GatewayConfig`]
//!   written into a tempdir, its output captured to a file; SIGKILL and restart on the same
//!   buffer; killed on drop. [`gateway_command`] for the binary's other subcommands.
//! - [`mqtt`]: [`subscribe`], the one connect-subscribe-and-wait-for-SUBACK; on it,
//!   [`Collector`] (every gateway's record batches, checked against the cloud contract) and
//!   [`Subscriber`] (raw messages of any topic filter).
//! - [`devices`]: [`Device`], a simulated Teltonika tracker (IMEI login, Codec 8 packets,
//!   count replies), the records it sends and [`check_fields`].
//! - [`delivery`]: [`Ledger`] and [`verify_delivery`]: what the devices sent and had
//!   accepted, checked against what reached the broker.
//! - [`fleet`]: [`run_device`], a device's whole life (connect, send, count only what was
//!   answered, reconnect and resend on any failure), and a [`Fleet`] of them.
//! - [`records`]: expected records of any protocol ([`expect_records`]).
//! - [`pty`]: [`PtyPair`], a socat pty pair standing in for a serial port.
//!
//! Every wait has a timeout and every loop is bounded in count or time. When a test panics,
//! the gateway's, the broker's and socat's logs are printed (from `Drop`) to help debugging.
//!
//! Each test file says `mod common;` and uses the names re-exported here (`common::*`), so a
//! helper can move between these files without touching the tests.

#![allow(dead_code)]

mod broker;
mod delivery;
mod devices;
mod fleet;
mod gateway;
mod mqtt;
mod ports;
mod process;
mod pty;
mod records;

// Every test binary uses some of these names, none uses all of them.
#[allow(unused_imports)]
pub use self::{
    broker::*, delivery::*, devices::*, fleet::*, gateway::*, mqtt::*, ports::*, process::*,
    pty::*, records::*,
};
