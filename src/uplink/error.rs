//! Why an MQTT connection ended: [`UplinkError`], and its bounded [`FailureReason`], the
//! `reason` label of `fleetedge_mqtt_connection_failures_total`.
//!
//! The message says what happened in words (with a TLS hint where one applies); the reason
//! is one of a fixed set, so the metric's series stay few whatever the broker or the network
//! says.

use crate::buffer::BufferError;

use super::payload::PayloadError;
use super::window::WindowError;

/// Why a connection (or a connection attempt) ended, other than a graceful shutdown.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The broker answered CONNECT with a refusal (bad credentials, not authorised, …).
    #[error("broker refused the connection: {0}")]
    Refused(&'static str),
    /// The connect failed (network, TLS); the description carries rumqttc's error and a hint.
    #[error("connect: {0}")]
    Connect(String),
    /// No CONNACK within `mqtt.connect_timeout_s`.
    #[error("connect: timed out")]
    ConnectTimeout,
    /// An established connection failed (network, TLS, the broker closed it).
    #[error("{0}")]
    ConnectionLost(String),
    /// The DISCONNECT went out although no shutdown asked for it.
    #[error("disconnected")]
    Disconnected,
    /// Publishes outstanding and no PUBACK for this long: the broker keeps the session but
    /// does not acknowledge.
    #[error("no PUBACK for {seconds} s with {outstanding} publish(es) outstanding")]
    PubAckTimeout { seconds: u64, outstanding: usize },
    /// rumqttc reported a packet id the window does not know.
    #[error(transparent)]
    Protocol(#[from] WindowError),
    /// rumqttc would not take a publish (its request queue is closed or full).
    #[error("publish: {0}")]
    Publish(String),
    /// The buffer could not be read, or it closed.
    #[error("buffer: {0}")]
    Buffer(#[from] BufferError),
    #[error("buffer closed")]
    BufferClosed,
    /// A batch could not be encoded.
    #[error(transparent)]
    Encode(#[from] PayloadError),
}

/// The bounded `reason` label of a connection failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Refused,
    Connect,
    ConnectTimeout,
    ConnectionLost,
    PubAckTimeout,
    Protocol,
    Buffer,
    Encode,
}

impl FailureReason {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [FailureReason; 8] = [
        FailureReason::Refused,
        FailureReason::Connect,
        FailureReason::ConnectTimeout,
        FailureReason::ConnectionLost,
        FailureReason::PubAckTimeout,
        FailureReason::Protocol,
        FailureReason::Buffer,
        FailureReason::Encode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Refused => "refused",
            FailureReason::Connect => "connect",
            FailureReason::ConnectTimeout => "connect_timeout",
            FailureReason::ConnectionLost => "connection_lost",
            FailureReason::PubAckTimeout => "puback_timeout",
            FailureReason::Protocol => "protocol",
            FailureReason::Buffer => "buffer",
            FailureReason::Encode => "encode",
        }
    }

    /// The position in [`FailureReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl UplinkError {
    pub fn reason(&self) -> FailureReason {
        match self {
            UplinkError::Refused(_) => FailureReason::Refused,
            UplinkError::Connect(_) => FailureReason::Connect,
            UplinkError::ConnectTimeout => FailureReason::ConnectTimeout,
            UplinkError::ConnectionLost(_) | UplinkError::Disconnected => {
                FailureReason::ConnectionLost
            }
            UplinkError::PubAckTimeout { .. } => FailureReason::PubAckTimeout,
            UplinkError::Protocol(_) | UplinkError::Publish(_) => FailureReason::Protocol,
            UplinkError::Buffer(_) | UplinkError::BufferClosed => FailureReason::Buffer,
            UplinkError::Encode(_) => FailureReason::Encode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_index_order_with_distinct_names() {
        for (i, r) in FailureReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureReason::ALL.len());
    }

    #[test]
    fn errors_map_to_their_reason() {
        let timeout = UplinkError::PubAckTimeout {
            seconds: 6,
            outstanding: 2,
        };
        assert_eq!(timeout.reason(), FailureReason::PubAckTimeout);
        assert_eq!(
            timeout.to_string(),
            "no PUBACK for 6 s with 2 publish(es) outstanding"
        );
        assert_eq!(
            UplinkError::Refused("not authorised").reason(),
            FailureReason::Refused
        );
        assert_eq!(
            UplinkError::Protocol(WindowError::UnknownPubAck(3)).reason(),
            FailureReason::Protocol
        );
    }
}
