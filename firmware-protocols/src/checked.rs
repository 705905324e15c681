//! The one place every decoded record passes on its way out of a decoder: the registry wraps
//! each protocol's decoder in [`Checked`], which runs [`Record::check_ranges`] on every record
//! of every frame (and on what `finish` releases). A decoder therefore cannot hand out a
//! course of 636° or a latitude of 95° as if it were good, whichever protocol it speaks and
//! whether it runs in a live session or in `fleetedge decode`.
//!
//! ```text
//! registry ──builds──▶ Checked(decoder) ──decode──▶ Decoded { records ─▶ check_ranges() }
//! ```

use crate::{DatagramDecoder, DecodeError, Decoded, Record, StreamDecoder};

/// A decoder whose records are range-checked (see the module doc).
#[derive(Debug, Clone)]
pub struct Checked<D>(pub D);

/// `decoder` wrapped and boxed, for the registry's stream constructors.
pub fn stream(decoder: impl StreamDecoder + 'static) -> Box<dyn StreamDecoder> {
    Box::new(Checked(decoder))
}

/// `decoder` wrapped and boxed, for the registry's datagram constructors.
pub fn datagram(decoder: impl DatagramDecoder + 'static) -> Box<dyn DatagramDecoder> {
    Box::new(Checked(decoder))
}

fn check(records: &mut [Record]) {
    for record in records {
        record.check_ranges();
    }
}

impl<D: StreamDecoder> StreamDecoder for Checked<D> {
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        let mut decoded = self.0.decode(input, now_ms)?;
        if let Some(d) = &mut decoded {
            check(&mut d.records);
        }
        Ok(decoded)
    }

    fn device_id(&self) -> Option<&str> {
        self.0.device_id()
    }

    fn max_frame_bytes(&self) -> usize {
        self.0.max_frame_bytes()
    }

    fn finish(&mut self, now_ms: i64) -> Vec<Record> {
        let mut records = self.0.finish(now_ms);
        check(&mut records);
        records
    }
}

impl<D: DatagramDecoder> DatagramDecoder for Checked<D> {
    fn decode(&self, datagram: &[u8], now_ms: i64) -> Result<Decoded, DecodeError> {
        let mut decoded = self.0.decode(datagram, now_ms)?;
        check(&mut decoded.records);
        Ok(decoded)
    }
}
