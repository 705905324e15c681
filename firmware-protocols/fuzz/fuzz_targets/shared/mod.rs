//! What every registry-driven fuzz target does: build the protocol's decoder from the
//! registry and drive it the way the gateway does, checking the decoder's contract.

use firmware_protocols::registry::{self, Transport};
use firmware_protocols::DecoderOptions;

pub const MAX_FRAME_BYTES: usize = 2048;

pub fn drive(protocol: &str, data: &[u8]) {
    let spec = registry::lookup(protocol).expect("protocol in the registry");
    let options = DecoderOptions {
        keep_raw: true,
        device_id: Some("fuzz".into()),
        ack_reports: true,
        ..DecoderOptions::new(MAX_FRAME_BYTES)
    };
    match spec.transport {
        Transport::Datagram(make) => {
            let _ = make(&options).decode(data, 0);
        }
        Transport::Stream(make) => {
            let mut decoder = make(&options);
            let mut rest = data;
            while !rest.is_empty() {
                match decoder.decode(rest, 0) {
                    Ok(Some(frame)) => {
                        assert!(frame.consumed > 0 && frame.consumed <= rest.len());
                        assert!(frame.problem.is_none() || frame.records.is_empty());
                        rest = &rest[frame.consumed..];
                    }
                    Ok(None) => {
                        assert!(rest.len() < MAX_FRAME_BYTES, "asked to buffer past the limit");
                        break;
                    }
                    Err(_) => break,
                }
            }
            let _ = decoder.finish(0);
        }
    }
}
