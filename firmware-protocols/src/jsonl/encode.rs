//! Builds JSON lines (what a sensor or local application sends), for the load simulator and
//! tests: a [`Record`] as the record JSON of the cloud contract, one line.
//!
//! The decoder reads that JSON back into the same fields; `protocol` and `received_at` are
//! written but ignored by it (the gateway sets them), and io keys come back as names
//! (a numeric id `16` as the name `"16"`), integers as `I64`.

use crate::Record;

/// `record` as one line, `\n` included.
pub fn line(record: &Record) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string(&record.json(None))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::JsonlDecoder;
    use crate::{DecoderOptions, IoKey, IoValue, Protocol, StreamDecoder};

    #[test]
    fn a_record_round_trips_through_the_decoder() {
        let mut sent = Record::new("tank-7", Protocol::Jsonl, 5);
        sent.time_ms = Some(1_767_225_600_250);
        sent.valid = Some(true);
        sent.lat = Some(54.687_283);
        sent.lon = Some(-25.279_651);
        sent.altitude_m = Some(112.5);
        sent.speed_kmh = Some(0.0);
        sent.course_deg = Some(359.5);
        sent.satellites = Some(9);
        sent.hdop = Some(0.8);
        sent.event = Some("door".into());
        sent.io = vec![
            (IoKey::Name("level_cm".into()), IoValue::I64(131)),
            (IoKey::Name("state".into()), IoValue::Text("open".into())),
        ];
        let text = line(&sent).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);

        let mut decoder = JsonlDecoder::new(&DecoderOptions::new(4096));
        let d = decoder.decode(text.as_bytes(), 77).unwrap().unwrap();
        assert_eq!(d.consumed, text.len());
        assert!(d.problem.is_none(), "{:?}", d.problem);
        let got = d.records.first().unwrap();
        assert_eq!(
            got,
            &Record {
                received_at_ms: 77,
                ..sent
            }
        );
    }

    #[test]
    fn absent_fields_stay_absent() {
        let sent = Record::new("s-1", Protocol::Jsonl, 0);
        let text = line(&sent).unwrap();
        let mut decoder = JsonlDecoder::new(&DecoderOptions::new(4096));
        let d = decoder.decode(text.as_bytes(), 0).unwrap().unwrap();
        assert_eq!(d.records, vec![sent]);
    }
}
