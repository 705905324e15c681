//! Every protocol in one table: adding a protocol means adding a module and one line here.
//!
//! ```text
//! name            transport   default port   device id from
//! teltonika       stream      5027           IMEI packet
//! teltonika-udp   datagram    5027           every datagram
//! gt06            stream      5023           login packet
//! queclink        stream      5004           every report
//! wialon          stream      5039           #L# login
//! wialon-udp      datagram    5039           every datagram (imei before the packet)
//! nmea            stream      —              config (serial port)
//! jsonl           stream      —              each line, else config
//! ```
//!
//! Each entry also carries the protocol's [`Meaning`]: which io keys are standard
//! attributes (ignition, voltages, odometer, inputs, …), which events are alarms or standard
//! events, and whether the device stores records while offline, tabled in the protocol's
//! own `meaning` module.
//!
//! Ports are the ones installers know from other tracking servers. "Stream" protocols run
//! over TCP listeners and serial ports; "datagram" protocols over UDP listeners.
//!
//! Every constructor wraps its decoder with [`checked`], so each record of every protocol is
//! range-checked once, here. [`ProtocolSpec::capture_decoder`] builds the decoder
//! `fleetedge decode` uses: one that also reads a capture starting mid-connection (no login
//! seen; the device id is then unknown and records still decode).

use crate::meaning::Meaning;
use crate::{checked, gt06, jsonl, nmea, queclink, teltonika, teltonika_udp, wialon};
use crate::{DatagramDecoder, DecoderOptions, Protocol, StreamDecoder};

/// How a protocol's bytes arrive.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    /// A byte stream (TCP or a serial port): the decoder frames it.
    Stream(fn(&DecoderOptions) -> Box<dyn StreamDecoder>),
    /// Datagrams (UDP): one frame each.
    Datagram(fn(&DecoderOptions) -> Box<dyn DatagramDecoder>),
}

/// One protocol's entry.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolSpec {
    pub protocol: Protocol,
    pub transport: Transport,
    /// The port installers know for it, if it has one.
    pub default_port: Option<u16>,
    /// Captures are text (`fleetedge decode` reads them raw) rather than hex.
    pub text: bool,
    /// Frames carry no device id: a serial port needs `device_id` in its config.
    pub needs_device_id: bool,
    /// What its io keys and events mean: standard attributes and alarm kinds
    /// (`crate::meaning`; each protocol's table lives in its own module).
    pub meaning: Meaning,
}

impl ProtocolSpec {
    pub fn name(&self) -> &'static str {
        self.protocol.as_str()
    }

    /// Whether the gateway can send this protocol's devices commands
    /// ([`command::frame_command`](crate::command::frame_command)); `false` means a command
    /// for such a device is rejected with [`CommandError::NoDownlink`](crate::command::CommandError).
    pub fn takes_commands(&self) -> bool {
        crate::command::takes_commands(self.protocol)
    }
}

pub const PROTOCOLS: &[ProtocolSpec] = &[
    ProtocolSpec {
        protocol: Protocol::Teltonika,
        transport: Transport::Stream(|o| {
            checked::stream(teltonika::TcpDecoder::new(o.max_frame_bytes).keep_raw(o.keep_raw))
        }),
        default_port: Some(5027),
        text: false,
        needs_device_id: false,
        meaning: teltonika::meaning::MEANING,
    },
    ProtocolSpec {
        protocol: Protocol::TeltonikaUdp,
        transport: Transport::Datagram(|o| checked::datagram(teltonika_udp::UdpDecoder::new(o))),
        default_port: Some(5027),
        text: false,
        needs_device_id: false,
        meaning: teltonika::meaning::MEANING,
    },
    ProtocolSpec {
        protocol: Protocol::Gt06,
        transport: Transport::Stream(|o| checked::stream(gt06::Gt06Decoder::new(o))),
        default_port: Some(5023),
        text: false,
        needs_device_id: false,
        meaning: gt06::meaning::MEANING,
    },
    ProtocolSpec {
        protocol: Protocol::Queclink,
        transport: Transport::Stream(|o| checked::stream(queclink::QueclinkDecoder::new(o))),
        default_port: Some(5004),
        text: true,
        needs_device_id: false,
        meaning: queclink::meaning::MEANING,
    },
    ProtocolSpec {
        protocol: Protocol::Wialon,
        transport: Transport::Stream(|o| checked::stream(wialon::WialonDecoder::new(o))),
        default_port: Some(5039),
        text: true,
        needs_device_id: false,
        meaning: wialon::meaning::MEANING,
    },
    ProtocolSpec {
        protocol: Protocol::WialonUdp,
        transport: Transport::Datagram(|o| checked::datagram(wialon::UdpDecoder::new(o))),
        default_port: Some(5039),
        text: true,
        needs_device_id: false,
        meaning: wialon::meaning::MEANING,
    },
    ProtocolSpec {
        protocol: Protocol::Nmea,
        transport: Transport::Stream(|o| checked::stream(nmea::NmeaDecoder::new(o))),
        default_port: None,
        text: true,
        needs_device_id: true,
        meaning: Meaning::NONE,
    },
    ProtocolSpec {
        protocol: Protocol::Jsonl,
        transport: Transport::Stream(|o| checked::stream(jsonl::JsonlDecoder::new(o))),
        default_port: None,
        text: true,
        needs_device_id: false,
        meaning: jsonl::meaning::MEANING,
    },
];

impl ProtocolSpec {
    /// The decoder `fleetedge decode` runs for a capture of this protocol: for stream
    /// protocols with a login (Teltonika's IMEI packet, the GT06 login, Wialon's `#L#`), one
    /// that also takes data frames before any login, giving their records an empty device id
    /// (printed as `null`); for the others the live decoder, which needs no login. `None` for
    /// datagram protocols: every datagram names its device.
    pub fn capture_decoder(&self, options: &DecoderOptions) -> Option<Box<dyn StreamDecoder>> {
        let make = match self.transport {
            Transport::Stream(make) => make,
            Transport::Datagram(_) => return None,
        };
        Some(match self.protocol {
            Protocol::Teltonika => checked::stream(
                teltonika::TcpDecoder::for_capture(options.max_frame_bytes)
                    .keep_raw(options.keep_raw),
            ),
            Protocol::Gt06 => checked::stream(gt06::Gt06Decoder::for_capture(options)),
            Protocol::Wialon => checked::stream(wialon::WialonDecoder::for_capture(options)),
            // Queclink names its device in every report; NMEA and JSON lines have no login.
            _ => make(options),
        })
    }
}

/// The protocol called `name`.
pub fn lookup(name: &str) -> Option<&'static ProtocolSpec> {
    PROTOCOLS.iter().find(|p| p.name() == name)
}

/// The meanings of `protocol`'s io keys and events.
pub fn meaning(protocol: Protocol) -> &'static Meaning {
    match PROTOCOLS.iter().find(|p| p.protocol == protocol) {
        Some(spec) => &spec.meaning,
        // Every protocol has an entry (checked by a test); a missing one means nothing.
        None => &Meaning::NONE,
    }
}

/// All names, for error messages.
pub fn names() -> Vec<&'static str> {
    PROTOCOLS.iter().map(ProtocolSpec::name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_resolve() {
        let names = names();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} twice");
            assert_eq!(lookup(n).map(ProtocolSpec::name), Some(*n));
        }
        assert!(lookup("nope").is_none());
    }

    #[test]
    fn every_protocol_has_an_entry() {
        use Protocol::*;
        for protocol in [
            Teltonika,
            TeltonikaUdp,
            Gt06,
            Queclink,
            Wialon,
            Nmea,
            Jsonl,
            WialonUdp,
        ] {
            assert!(
                PROTOCOLS.iter().any(|p| p.protocol == protocol),
                "{protocol:?}"
            );
        }
    }

    #[test]
    fn every_entry_builds_its_decoder() {
        let o = DecoderOptions {
            device_id: Some("dev-1".into()),
            ..DecoderOptions::new(4096)
        };
        for p in PROTOCOLS {
            match p.transport {
                Transport::Stream(make) => assert_eq!(make(&o).max_frame_bytes(), 4096),
                Transport::Datagram(make) => drop(make(&o)),
            }
            let capture = p.capture_decoder(&o);
            assert_eq!(
                capture.map(|d| d.max_frame_bytes()),
                matches!(p.transport, Transport::Stream(_)).then_some(4096),
                "{}",
                p.name()
            );
        }
    }
}
