//! Builds valid Teltonika UDP datagrams (what a device sends), for the load simulator and
//! tests: the channel header of the module doc around the AVL data a TCP packet carries.

use crate::teltonika::encode::{encode_avl_packet, AvlRecord, Codec, EncodeError};

/// The TCP packet's preamble (4 zero bytes) and data length (4 bytes) before the AVL data.
const TCP_HEAD: usize = 8;
/// The TCP packet's CRC field after it.
const TCP_CRC: usize = 4;

/// One datagram: length, `packet_id`, `01`, `avl_packet_id`, the IMEI, and `records` as AVL
/// data in `codec`. The gateway answers it with the 7-byte ack carrying both ids and the
/// record count (0 when refused).
pub fn datagram(
    packet_id: u16,
    avl_packet_id: u8,
    imei: &str,
    codec: Codec,
    records: &[AvlRecord],
) -> Result<Vec<u8>, EncodeError> {
    let packet = encode_avl_packet(codec, records)?;
    let avl = packet
        .get(TCP_HEAD..packet.len().saturating_sub(TCP_CRC))
        .unwrap_or_default();
    let imei = imei.as_bytes();
    let imei = imei.get(..usize::from(u16::MAX)).unwrap_or(imei);
    let mut out = Vec::with_capacity(8 + imei.len() + avl.len());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.push(0x01);
    out.push(avl_packet_id);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei);
    out.extend_from_slice(avl);
    let length = out.len() - 2;
    if length > usize::from(u16::MAX) {
        return Err(EncodeError::PacketTooLarge(length));
    }
    out[..2].copy_from_slice(&(length as u16).to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teltonika::encode::IoData;
    use crate::teltonika_udp::UdpDecoder;
    use crate::{DatagramDecoder, DecoderOptions, Reply};

    fn record(k: u64) -> AvlRecord {
        AvlRecord {
            timestamp_ms: 1_767_225_600_000 + k * 1000,
            priority: 1,
            lon: 250_000_000 + k as i32,
            lat: -546_872_833,
            altitude: 112,
            angle: 90,
            satellites: 9,
            speed: 40,
            event_id: 0,
            generation_type: 0,
            io: vec![(239, IoData::U8(1)), (16, IoData::U32(1_000_000))],
        }
    }

    #[test]
    fn datagrams_round_trip_through_the_decoder() {
        let decoder = UdpDecoder::new(&DecoderOptions::new(65_535));
        for codec in [Codec::Codec8, Codec::Codec8Extended] {
            let records: Vec<AvlRecord> = (0..3).map(record).collect();
            let bytes = datagram(0xCAFE, 7, "356307042441013", codec, &records).unwrap();
            let d = decoder.decode(&bytes, 0).unwrap();
            assert_eq!(d.consumed, bytes.len());
            assert_eq!(d.records.len(), 3);
            for (r, sent) in d.records.iter().zip(&records) {
                assert_eq!(r.device_id, "356307042441013");
                assert_eq!(r.time_ms, Some(sent.timestamp_ms as i64));
                assert_eq!(r.lat, Some(f64::from(sent.lat) / 1e7));
                assert_eq!(r.lon, Some(f64::from(sent.lon) / 1e7));
            }
            let ack = |n| Some(vec![0x00, 0x05, 0xCA, 0xFE, 0x01, 7, n]);
            assert_eq!(
                d.reply,
                Reply {
                    accepted: ack(3),
                    refused: ack(0),
                }
            );
        }
    }
}
