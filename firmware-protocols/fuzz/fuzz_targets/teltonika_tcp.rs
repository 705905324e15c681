//! Feeds arbitrary bytes to the Teltonika TCP decoder, capture and session flavours, the way a
//! connection loop does: frame after frame until an error or "need more".
//!
//! Run: `cd firmware-protocols/fuzz && cargo +nightly fuzz run teltonika_tcp`

#![no_main]

use firmware_protocols::teltonika::TcpDecoder;
use firmware_protocols::StreamDecoder;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_BYTES: usize = 1280;

fn drive(mut decoder: TcpDecoder, data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match decoder.decode(rest, 0) {
            Ok(Some(frame)) => {
                assert!(frame.consumed > 0 && frame.consumed <= rest.len());
                assert!(frame.consumed <= MAX_FRAME_BYTES);
                rest = &rest[frame.consumed..];
            }
            Ok(None) => {
                assert!(
                    rest.len() < MAX_FRAME_BYTES,
                    "asked to buffer past the limit"
                );
                break;
            }
            Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    drive(
        TcpDecoder::for_capture(MAX_FRAME_BYTES).keep_raw(true),
        data,
    );
    // A session already past its IMEI, so AVL parsing is reached without a valid login.
    let mut session = TcpDecoder::new(MAX_FRAME_BYTES);
    let _ = session.decode(b"\x00\x0f356307042441013", 0);
    drive(session, data);
});
