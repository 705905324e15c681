//! Ingest: device connections in, records into the buffer, replies out after durability.
//!
//! - [`tcp`]: listeners, the connection limit (taken before `accept`), one task per device.
//! - [`session`]: one device connection: read, frame, decode, append, reply.
//!
//! Protocols are looked up by name in [`decoder_for`]; a listener names its protocol in the
//! config.

pub mod session;
pub mod tcp;

use firmware_protocols::{teltonika, StreamDecoder};

/// A fresh decoder for one connection of `protocol`, or `None` for an unknown name.
pub fn decoder_for(
    protocol: &str,
    max_frame_bytes: usize,
    keep_raw: bool,
) -> Option<Box<dyn StreamDecoder>> {
    match protocol {
        "teltonika" => Some(Box::new(
            teltonika::TcpDecoder::new(max_frame_bytes).keep_raw(keep_raw),
        )),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, the receive time stamped on records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
