//! Placeholder: being written. Decodes nothing yet; every input is an error.

use crate::{DecodeError, Decoded, DecoderOptions, StreamDecoder};

pub struct QueclinkDecoder {
    max_frame_bytes: usize,
}

impl QueclinkDecoder {
    pub fn new(options: &DecoderOptions) -> Self {
        QueclinkDecoder {
            max_frame_bytes: options.max_frame_bytes,
        }
    }
}

impl StreamDecoder for QueclinkDecoder {
    fn decode(&mut self, _input: &[u8], _now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        Err(DecodeError::new(0, "queclink decoder not implemented yet"))
    }

    fn device_id(&self) -> Option<&str> {
        None
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}
