//! The messages the uplink publishes, built from staged records: a batch (split until it
//! fits the packet limit), or one NGP message per record, and the status messages.
//!
//! Pure: records and the clock in, a [`Message`] out. Records NGP cannot carry are passed
//! over and reported in [`Encoded::passed_over_through`]; the publisher decides when they
//! may leave the buffer.

use std::time::Instant;

use super::ngp;
use super::payload::{PayloadEncoder, PayloadError};
use super::staging::Staging;
use super::status;
use crate::config::UplinkFormat;
use crate::metrics::{self, METRICS};

/// One MQTT message ready to be published with QoS 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub carries: Carried,
}

/// What a [`Message`] carries, for the window and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// Records `first_seq..=last_seq` (`count` of them; `json_bytes` before compression).
    Records {
        first_seq: u64,
        last_seq: u64,
        count: usize,
        json_bytes: usize,
    },
    /// A status message: no records.
    Status,
}

/// What one [`Outgoing::next`] produced.
#[derive(Debug, Default)]
pub struct Encoded {
    pub message: Option<Message>,
    /// The newest record passed over (NGP could not carry it), if any.
    pub passed_over_through: Option<u64>,
}

/// Builds the messages of one gateway.
pub struct Outgoing {
    format: UplinkFormat,
    encoder: PayloadEncoder,
    gateway_id: String,
    records_topic: String,
    status_topic: String,
    max_packet_bytes: usize,
}

impl Outgoing {
    pub fn new(
        format: UplinkFormat,
        encoder: PayloadEncoder,
        gateway_id: &str,
        topic_prefix: &str,
        max_packet_bytes: usize,
    ) -> Self {
        Outgoing {
            format,
            encoder,
            gateway_id: gateway_id.to_string(),
            records_topic: format!("{topic_prefix}/{gateway_id}/records"),
            status_topic: status::topic(topic_prefix, gateway_id),
            max_packet_bytes,
        }
    }

    /// The most payload bytes a publish on `topic` may carry: fixed header (≤ 5) + topic
    /// length field (2) + topic + packet id (2).
    fn max_payload_bytes(&self, topic: &str) -> usize {
        self.max_packet_bytes.saturating_sub(topic.len() + 9)
    }

    pub fn online(&self, online: &status::Online) -> Message {
        Message {
            topic: self.status_topic.clone(),
            payload: status::online_payload(&self.gateway_id, online),
            retain: true,
            carries: Carried::Status,
        }
    }

    pub fn offline(&self) -> Message {
        Message {
            topic: self.status_topic.clone(),
            payload: status::offline_payload(&self.gateway_id),
            retain: true,
            carries: Carried::Status,
        }
    }

    /// The next message from staging, taking its records out of staging.
    pub fn next(&mut self, staging: &mut Staging, now: Instant) -> Result<Encoded, PayloadError> {
        match self.format {
            UplinkFormat::Batch => Ok(Encoded {
                message: self.next_batch(staging, now)?,
                passed_over_through: None,
            }),
            UplinkFormat::Ngp => Ok(self.next_ngp(staging, now)),
        }
    }

    /// Encodes the next batch, halving it until the payload fits the packet limit.
    fn next_batch(
        &mut self,
        staging: &mut Staging,
        now: Instant,
    ) -> Result<Option<Message>, PayloadError> {
        let limit = self.max_payload_bytes(&self.records_topic);
        let mut take = usize::MAX;
        loop {
            let batch = staging.batch(take);
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(None);
            };
            let (first_seq, last_seq, count) = (first.0, last.0, batch.len());
            let payload = self.encoder.encode(batch)?;
            if payload.len() > limit && count > 1 {
                take = count / 2;
                continue;
            }
            if payload.len() > limit {
                // One record larger than the packet limit. Config validation bounds a record's
                // JSON by its frame size so this cannot happen; if it ever does, rumqttc
                // refuses the packet, the connection fails and this error repeats loudly
                // rather than the record being dropped.
                tracing::error!(
                    seq = first_seq,
                    bytes = payload.len(),
                    limit,
                    "a single record exceeds mqtt.max_packet_bytes"
                );
            }
            staging.consume(count, now);
            return Ok(Some(Message {
                topic: self.records_topic.clone(),
                payload,
                retain: false,
                carries: Carried::Records {
                    first_seq,
                    last_seq,
                    count,
                    json_bytes: self.encoder.last_json_len(),
                },
            }));
        }
    }

    /// The next staged record NGP can carry, as its own message. Records NGP cannot carry
    /// are passed over and counted.
    fn next_ngp(&mut self, staging: &mut Staging, now: Instant) -> Encoded {
        let mut out = Encoded::default();
        loop {
            let Some((seq, record)) = staging.batch(1).first() else {
                return out;
            };
            let seq = *seq;
            let encoded = ngp::encode(record);
            let topic = ngp::topic(record);
            match encoded {
                Ok(Some(payload)) if payload.len() > self.max_payload_bytes(&topic) => {
                    // rumqttc would refuse it and fail the connection, forever.
                    tracing::error!(
                        seq,
                        bytes = payload.len(),
                        "NGP message exceeds mqtt.max_packet_bytes; not sent"
                    );
                }
                Ok(Some(payload)) => {
                    staging.consume(1, now);
                    let json_bytes = payload.len();
                    out.message = Some(Message {
                        topic,
                        payload,
                        retain: false,
                        carries: Carried::Records {
                            first_seq: seq,
                            last_seq: seq,
                            count: 1,
                            json_bytes,
                        },
                    });
                    return out;
                }
                Ok(None) => tracing::debug!(seq, "record without device time not sent as NGP"),
                Err(e) => {
                    // Sparsely: one bad device id would otherwise log every record.
                    let skipped = metrics::get(&METRICS.ngp_records_skipped) + 1;
                    if skipped.is_power_of_two() {
                        tracing::warn!(seq, skipped, error = %e, "record not sent as NGP");
                    }
                }
            }
            metrics::add(&METRICS.ngp_records_skipped, 1);
            out.passed_over_through = Some(seq);
            staging.consume(1, now);
        }
    }
}
