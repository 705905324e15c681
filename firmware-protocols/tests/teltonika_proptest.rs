//! Properties of the Teltonika TCP decoder: no panics on any input, honest `consumed`, never
//! asking to buffer past the limit, and encoder/decoder round trips.

use firmware_protocols::teltonika::encode::{
    encode_codec16, encode_codec8, encode_codec8_extended, encode_imei, AvlRecord, IoData,
};
use firmware_protocols::teltonika::TcpDecoder;
use firmware_protocols::testkit::teltonika::avl_record;
use firmware_protocols::testkit::{self, Contract};
use firmware_protocols::{IoKey, IoValue, StreamDecoder};
use proptest::collection::vec;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;

/// The kit's stream contract. Ranges are not checked: arbitrary bytes make any coordinate,
/// and the registry's `checked` wrapper clears what is out of range after this decoder.
const CONTRACT: Contract = Contract {
    ranges: false,
    ..Contract::SESSION
};

fn check_stream(dec: &mut TcpDecoder, input: &[u8]) -> Result<(), TestCaseError> {
    testkit::check_stream(dec, input, NOW, &CONTRACT).map(drop)
}

/// The io list a decoder must return for `r`: named fields, then elements grouped by width.
fn expected_io(r: &AvlRecord, codec16: bool) -> Vec<(IoKey, IoValue)> {
    let mut out = vec![(
        IoKey::Name("priority".into()),
        IoValue::U64(r.priority.into()),
    )];
    if codec16 {
        out.push((
            IoKey::Name("generation_type".into()),
            IoValue::U64(r.generation_type.into()),
        ));
    }
    let rank = |v: &IoData| match v {
        IoData::U8(_) => 0,
        IoData::U16(_) => 1,
        IoData::U32(_) => 2,
        IoData::U64(_) => 3,
        IoData::Bytes(_) => 4,
    };
    let mut io = r.io.clone();
    io.sort_by_key(|(_, v)| rank(v)); // stable: keeps the order within a group
    for (id, v) in io {
        let value = match v {
            IoData::Bytes(b) => IoValue::Bytes(b),
            other => IoValue::U64(other.as_u64().unwrap_or_default()),
        };
        out.push((IoKey::Id(id.into()), value));
    }
    out
}

fn check_round_trip(
    frame: &[u8],
    records: &[AvlRecord],
    codec16: bool,
) -> Result<(), TestCaseError> {
    let mut dec = TcpDecoder::new(1 << 20);
    dec.decode(&encode_imei("356307042441013"), NOW).unwrap();
    let d = dec.decode(frame, NOW);
    prop_assert!(matches!(d, Ok(Some(_))), "{d:?}");
    let d = d.unwrap().unwrap();
    prop_assert_eq!(d.consumed, frame.len());
    prop_assert_eq!(d.records.len(), records.len());
    prop_assert_eq!(
        d.reply.accepted,
        Some((records.len() as u32).to_be_bytes().to_vec())
    );
    for (got, want) in d.records.iter().zip(records) {
        prop_assert_eq!(got.time_ms, Some(want.timestamp_ms as i64));
        prop_assert_eq!(got.lat, Some(f64::from(want.lat) / 1e7));
        prop_assert_eq!(got.lon, Some(f64::from(want.lon) / 1e7));
        prop_assert_eq!(got.altitude_m, Some(f64::from(want.altitude)));
        prop_assert_eq!(got.course_deg, Some(f64::from(want.angle)));
        prop_assert_eq!(got.speed_kmh, Some(f64::from(want.speed)));
        prop_assert_eq!(got.satellites, Some(want.satellites));
        prop_assert_eq!(got.valid, Some(want.satellites > 0));
        let event = (want.event_id != 0).then(|| format!("io:{}", want.event_id));
        prop_assert_eq!(&got.event, &event);
        prop_assert_eq!(&got.io, &expected_io(want, codec16));
        // IO 182 is HDOP x10; the last one in frame (grouped) order wins.
        let hdop = expected_io(want, codec16)
            .into_iter()
            .filter_map(|(k, v)| match (k, v) {
                (IoKey::Id(182), IoValue::U64(v)) => Some(v as f64 / 10.0),
                _ => None,
            })
            .next_back();
        prop_assert_eq!(got.hdop, hdop);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_in_capture_mode(
        input in vec(any::<u8>(), 0..600),
        max in 1usize..700,
    ) {
        check_stream(&mut TcpDecoder::for_capture(max), &input)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_in_a_session(
        input in vec(any::<u8>(), 0..600),
        max in 1usize..700,
    ) {
        check_stream(&mut TcpDecoder::new(max), &input)?;
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_imei_never_panic(
        tail in vec(any::<u8>(), 0..600),
        max in 17usize..700,
    ) {
        let mut input = encode_imei("356307042441013");
        input.extend(tail);
        check_stream(&mut TcpDecoder::new(max), &input)?;
    }

    /// Random bytes rarely get past the preamble; start from a real packet and corrupt it.
    #[test]
    fn corrupted_valid_packets_never_panic(
        records in vec(avl_record(true, true, 12), 1..4),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = encode_codec8_extended(&records).unwrap();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        let mut input = encode_imei("356307042441013");
        input.extend_from_slice(&frame[..cut.index(frame.len() + 1)]);
        check_stream(&mut TcpDecoder::new(4096), &input)?;
        check_stream(&mut TcpDecoder::for_capture(4096), &frame)?;
    }

    #[test]
    fn codec8_packets_round_trip(records in vec(avl_record(false, false, 12), 0..8)) {
        let frame = encode_codec8(&records).unwrap();
        check_round_trip(&frame, &records, false)?;
    }

    #[test]
    fn codec8_extended_packets_round_trip(records in vec(avl_record(true, true, 12), 0..8)) {
        let frame = encode_codec8_extended(&records).unwrap();
        check_round_trip(&frame, &records, false)?;
    }

    #[test]
    fn codec16_packets_round_trip(records in vec(avl_record(true, false, 12), 0..8)) {
        let frame = encode_codec16(&records).unwrap();
        check_round_trip(&frame, &records, true)?;
    }

    /// A stream of valid packets cut into arbitrary reads decodes like the whole buffer.
    #[test]
    fn arbitrary_read_boundaries_do_not_change_the_result(
        packets in vec(vec(avl_record(false, false, 12), 1..4), 1..4),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut all = encode_imei("356307042441013");
        for records in &packets {
            all.extend(encode_codec8(records).unwrap());
            all.push(0xFF);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(all.len() + 1)).collect();
        cuts.push(all.len());
        cuts.sort_unstable();

        let mut dec = TcpDecoder::new(4096);
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut counts = Vec::new();
        for cut in cuts {
            buf.extend_from_slice(&all[fed..cut]);
            fed = cut;
            while let Some(d) = dec.decode(&buf, NOW).unwrap() {
                buf.drain(..d.consumed);
                counts.push(d.records.len());
            }
        }
        prop_assert!(buf.is_empty());
        let mut want = vec![0];
        for records in &packets {
            want.push(records.len());
            want.push(0);
        }
        prop_assert_eq!(counts, want);
    }
}
