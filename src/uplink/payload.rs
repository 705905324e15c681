//! The cloud payload: one JSON batch, compressed.
//!
//! ```text
//! MQTT publish on {topic_prefix}/{gateway_id}/records, QoS 1
//! payload = compress( {"schema":"fleetedge.batch.v1",
//!                      "gateway_id":"gw-001",
//!                      "first_seq":101, "last_seq":150, "count":50,
//!                      "records":[{"seq":101, "device_id":…, …}, …]} )
//!
//! compress = zstd  → payload starts 28 b5 2f fd   (default)
//!          | gzip  → payload starts 1f 8b
//!          | none  → payload starts {
//! ```
//!
//! The codec's own magic bytes say how to read a payload, so consumers need no header and a
//! gateway can change `uplink.compression` without breaking them. Seqs in a batch are
//! strictly increasing, not necessarily contiguous (a record dropped by `drop_oldest` leaves a
//! gap); consumers drop duplicates by `(gateway_id, seq)`.

use std::io::Write;

use firmware_protocols::Record;
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "fleetedge.batch.v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

/// Builds batch payloads; keeps the zstd context alive between batches, which is most of the
/// cost of compressing small inputs.
pub struct PayloadEncoder {
    gateway_id: String,
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    json: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot encode batch {first_seq}..={last_seq} as JSON: {source}")]
    Json {
        first_seq: u64,
        last_seq: u64,
        source: serde_json::Error,
    },
    #[error("cannot compress batch {first_seq}..={last_seq}: {source}")]
    Compress {
        first_seq: u64,
        last_seq: u64,
        source: std::io::Error,
    },
}

impl PayloadEncoder {
    pub fn new(
        gateway_id: &str,
        compression: Compression,
        zstd_level: i32,
    ) -> std::io::Result<Self> {
        let zstd = match compression {
            Compression::Zstd => Some(zstd::bulk::Compressor::new(zstd_level)?),
            _ => None,
        };
        Ok(PayloadEncoder {
            gateway_id: gateway_id.to_string(),
            compression,
            zstd,
            json: Vec::with_capacity(64 * 1024),
        })
    }

    /// Size of the last batch's JSON before compression.
    pub fn last_json_len(&self) -> usize {
        self.json.len()
    }

    /// Encodes `records` (seq, record), which must be non-empty and in seq order.
    pub fn encode(&mut self, records: &[(u64, Record)]) -> Result<Vec<u8>, PayloadError> {
        let first_seq = records.first().map_or(0, |r| r.0);
        let last_seq = records.last().map_or(0, |r| r.0);
        let batch = BatchJson {
            schema: SCHEMA,
            gateway_id: &self.gateway_id,
            first_seq,
            last_seq,
            count: records.len(),
            records: RecordsJson(records),
        };
        self.json.clear();
        serde_json::to_writer(&mut self.json, &batch).map_err(|source| PayloadError::Json {
            first_seq,
            last_seq,
            source,
        })?;
        let compress_err = |source| PayloadError::Compress {
            first_seq,
            last_seq,
            source,
        };
        match (self.compression, self.zstd.as_mut()) {
            (Compression::Zstd, Some(z)) => z.compress(&self.json).map_err(compress_err),
            (Compression::Gzip, _) => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.json.len() / 4),
                    flate2::Compression::default(),
                );
                gz.write_all(&self.json).map_err(compress_err)?;
                gz.finish().map_err(compress_err)
            }
            _ => Ok(self.json.clone()),
        }
    }
}

#[derive(Serialize)]
struct BatchJson<'a> {
    schema: &'static str,
    gateway_id: &'a str,
    first_seq: u64,
    last_seq: u64,
    count: usize,
    records: RecordsJson<'a>,
}

struct RecordsJson<'a>(&'a [(u64, Record)]);

impl Serialize for RecordsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(seq, r)| r.json(Some(*seq))))
    }
}

/// Reads a payload back: picks the codec by its magic bytes. Used by tests, the load tool and
/// as the reference for consumers.
pub fn decode_payload(payload: &[u8]) -> std::io::Result<serde_json::Value> {
    let json = decompress_payload(payload)?;
    serde_json::from_slice(&json).map_err(std::io::Error::other)
}

/// The batch JSON inside a payload, whichever codec compressed it.
pub fn decompress_payload(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    Ok(if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(payload)?
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(payload), &mut out)?;
        out
    } else {
        payload.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocols::Protocol;

    fn sample(n: u64) -> Vec<(u64, Record)> {
        (0..n)
            .map(|i| {
                let mut r = Record::new("356307042441013", Protocol::Teltonika, 1_700_000_000_000);
                r.time_ms = Some(1_700_000_000_000 + i as i64 * 1000);
                r.lat = Some(54.0 + i as f64 / 1e5);
                (100 + i, r)
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_is_identified_by_its_magic() {
        for (compression, magic) in [
            (Compression::Zstd, &[0x28u8, 0xb5, 0x2f, 0xfd][..]),
            (Compression::Gzip, &[0x1f, 0x8b][..]),
            (Compression::None, &b"{"[..]),
        ] {
            let mut enc = PayloadEncoder::new("gw-1", compression, 3).unwrap();
            let payload = enc.encode(&sample(50)).unwrap();
            assert!(payload.starts_with(magic), "{compression:?}");
            let v = decode_payload(&payload).unwrap();
            assert_eq!(v["schema"], SCHEMA);
            assert_eq!(v["gateway_id"], "gw-1");
            assert_eq!(v["first_seq"], 100);
            assert_eq!(v["last_seq"], 149);
            assert_eq!(v["count"], 50);
            assert_eq!(v["records"][3]["seq"], 103);
            assert_eq!(v["records"][3]["time"], "2023-11-14T22:13:23.000Z");
        }
    }

    #[test]
    fn compression_shrinks_a_batch() {
        let mut plain = PayloadEncoder::new("gw-1", Compression::None, 3).unwrap();
        let mut zstd = PayloadEncoder::new("gw-1", Compression::Zstd, 3).unwrap();
        let records = sample(500);
        let (p, z) = (
            plain.encode(&records).unwrap(),
            zstd.encode(&records).unwrap(),
        );
        assert!(
            z.len() * 5 < p.len(),
            "zstd {} vs plain {}",
            z.len(),
            p.len()
        );
    }
}
