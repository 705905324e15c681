//! Placeholder: being written. Decodes nothing yet; every datagram is an error.

use crate::{DatagramDecoder, DecodeError, Decoded, DecoderOptions};

pub struct UdpDecoder;

impl UdpDecoder {
    pub fn new(_options: &DecoderOptions) -> Self {
        UdpDecoder
    }
}

impl DatagramDecoder for UdpDecoder {
    fn decode(&self, _datagram: &[u8], _now_ms: i64) -> Result<Decoded, DecodeError> {
        Err(DecodeError::new(
            0,
            "teltonika-udp decoder not implemented yet",
        ))
    }
}
