//! Placeholder: being written. Decodes nothing yet; every input is an error.

use crate::{DecodeError, Decoded, DecoderOptions, StreamDecoder};

pub struct Gt06Decoder {
    max_frame_bytes: usize,
}

impl Gt06Decoder {
    pub fn new(options: &DecoderOptions) -> Self {
        Gt06Decoder {
            max_frame_bytes: options.max_frame_bytes,
        }
    }
}

impl StreamDecoder for Gt06Decoder {
    fn decode(&mut self, _input: &[u8], _now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        Err(DecodeError::new(0, "gt06 decoder not implemented yet"))
    }

    fn device_id(&self) -> Option<&str> {
        None
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}
