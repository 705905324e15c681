//! What a protocol's io keys and events mean, in a small shared vocabulary: the standard
//! attributes ([`Attribute`], in standard units) and the alarm kinds ([`AlarmKind`]).
//!
//! Decoders keep io keys and event names as the protocol sends them (the cloud contract's
//! `io` and `event`); each protocol's registry entry carries a [`Meaning`] that says which
//! of them stand for a standard attribute or an alarm. Consumers that need a meaning
//! (publishing alarms first, filters that never drop an alarm, NGP output) ask
//! [`Record::alarm`] / [`Record::standard`] / [`Record::standard_event`] /
//! [`Record::stored_offline`] and never name a protocol's io id themselves:
//! a new protocol is a module plus one registry line, its meanings included.
//!
//! ```text
//! attribute          unit   teltonika (FMB AVL id)   gt06    queclink              jsonl
//! ignition           0/1    239                      acc     —                     ignition
//! movement           0/1    240                      —       —                     movement
//! external_voltage   V      66 (mV)                  —       external_power_mv     external_voltage
//! battery_voltage    V      67 (mV)                  —       battery_voltage_v     battery_voltage
//! battery_level      %      113                      —       battery_percent       battery_level
//! odometer           km     16 (m)                   —       mileage_km            odometer
//! digital_input n    0/1    1–3 (DIN1–3)             —       —                     —
//! digital_output n   0/1    179, 180 (DOUT1–2)       —       —                     —
//! digital_inputs     mask   —                        —       —                     —   (wialon: inputs)
//! digital_outputs    mask   —                        —       —                     —   (wialon: outputs)
//! analog n           V      9, 6 (AIN1–2, mV)        —       —                     —   (wialon: adcN)
//! pdop / hdop        —      181 / 182 (×10)          —       —                     —
//! driver_key         —      78 (iButton)             —       —                     —   (wialon: ibutton)
//! cell_mcc/mnc/lac/id —     —                        mcc…    mcc, mnc, lac, cell_id
//! ```
//!
//! Wialon params and NMEA sentences name no standard attribute (Wialon param names are
//! free text chosen per device configuration); Wialon's fixed fields do (inputs, outputs,
//! the ADC list, iButton).
//!
//! Events a consumer can name without knowing the protocol ([`StandardEvent`]: ignition
//! on/off, movement start/end, an input or output changed, the alarms with a precise
//! meaning, …) are tabled in each protocol's `meaning` function too.
//!
//! Alarm kinds, per protocol, are tabled in each protocol's `meaning` function. A record
//! whose event is an alarm of a kind the table does not name (GT06 `alarm:0xNN`) is
//! [`AlarmKind::Other`]: still an alarm.

use crate::{IoKey, IoValue, Record};

/// A standard attribute: one meaning shared by every protocol that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Ignition (ACC line) on = 1, off = 0.
    Ignition,
    /// The device is moving = 1 (its own motion sensor or rule), still = 0.
    Movement,
    /// Vehicle (external) supply voltage, volts.
    ExternalVoltage,
    /// The device's own backup battery voltage, volts.
    BatteryVoltage,
    /// The device's own battery charge, percent.
    BatteryLevel,
    /// Odometer kept by the device, kilometres.
    Odometer,
    /// Digital input `n` (1 = the first input): active = 1, inactive = 0.
    DigitalInput(u8),
    /// Digital output `n` (1 = the first output): active = 1, inactive = 0.
    DigitalOutput(u8),
    /// All digital inputs as one bitmask, bit 0 = input 1, set bit = active.
    DigitalInputs,
    /// All digital outputs as one bitmask, bit 0 = output 1, set bit = active.
    DigitalOutputs,
    /// Analog input `n` (1 = the first), volts.
    Analog(u8),
    /// Position dilution of precision of the fix.
    Pdop,
    /// Horizontal dilution of precision; decoders also put it in [`Record::hdop`].
    Hdop,
    /// A driver or asset identification key (iButton, RFID): a number or text.
    DriverKey,
    /// The serving cell's mobile country code, network code, location area code, cell id.
    CellMcc,
    CellMnc,
    CellLac,
    CellId,
}

impl Attribute {
    /// The attributes with one name each (no index, no parts): the io keys a JSON-lines
    /// source may name directly.
    pub const ALL: [Attribute; 6] = [
        Attribute::Ignition,
        Attribute::Movement,
        Attribute::ExternalVoltage,
        Attribute::BatteryVoltage,
        Attribute::BatteryLevel,
        Attribute::Odometer,
    ];

    /// The attribute's name (also the io key a JSON-lines source uses for it); indexed
    /// attributes share their stem (`digital_input`, `analog`).
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Ignition => "ignition",
            Attribute::Movement => "movement",
            Attribute::ExternalVoltage => "external_voltage",
            Attribute::BatteryVoltage => "battery_voltage",
            Attribute::BatteryLevel => "battery_level",
            Attribute::Odometer => "odometer",
            Attribute::DigitalInput(_) => "digital_input",
            Attribute::DigitalOutput(_) => "digital_output",
            Attribute::DigitalInputs => "digital_inputs",
            Attribute::DigitalOutputs => "digital_outputs",
            Attribute::Analog(_) => "analog",
            Attribute::Pdop => "pdop",
            Attribute::Hdop => "hdop",
            Attribute::DriverKey => "driver_key",
            Attribute::CellMcc => "cell_mcc",
            Attribute::CellMnc => "cell_mnc",
            Attribute::CellLac => "cell_lac",
            Attribute::CellId => "cell_id",
        }
    }
}

/// `1` … `255` written without sign or leading zero (`adc7`'s index), else `None`.
pub(crate) fn index(text: &str) -> Option<u8> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n > 0)
}

/// One io key's standard meaning: the value divided by `divisor` is in the attribute's unit
/// (Teltonika's millivolts have divisor 1000).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standard {
    pub attribute: Attribute,
    pub divisor: f64,
}

impl Standard {
    pub const fn new(attribute: Attribute, divisor: f64) -> Self {
        Standard { attribute, divisor }
    }

    /// The same attribute in its own unit.
    pub const fn unit(attribute: Attribute) -> Self {
        Standard::new(attribute, 1.0)
    }
}

/// What kind of alarm a record carries. Records with an alarm are published ahead of a
/// backlog and are never dropped by filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// SOS / panic button.
    Sos,
    Crash,
    /// Moved with the ignition off.
    Tow,
    /// External power cut or unplugged.
    PowerCut,
    /// Entered or left a geofence.
    Geofence,
    Overspeed,
    /// Case opened, SIM changed, tampering.
    Tamper,
    LowBattery,
    /// GSM / GNSS jamming.
    Jamming,
    /// Harsh acceleration, braking or cornering.
    HarshDriving,
    Vibration,
    /// Man down / fall detected.
    Fall,
    /// An alarm the protocol names but this table does not classify.
    Other,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 13] = [
        AlarmKind::Sos,
        AlarmKind::Crash,
        AlarmKind::Tow,
        AlarmKind::PowerCut,
        AlarmKind::Geofence,
        AlarmKind::Overspeed,
        AlarmKind::Tamper,
        AlarmKind::LowBattery,
        AlarmKind::Jamming,
        AlarmKind::HarshDriving,
        AlarmKind::Vibration,
        AlarmKind::Fall,
        AlarmKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Sos => "sos",
            AlarmKind::Crash => "crash",
            AlarmKind::Tow => "tow",
            AlarmKind::PowerCut => "power_cut",
            AlarmKind::Geofence => "geofence",
            AlarmKind::Overspeed => "overspeed",
            AlarmKind::Tamper => "tamper",
            AlarmKind::LowBattery => "low_battery",
            AlarmKind::Jamming => "jamming",
            AlarmKind::HarshDriving => "harsh_driving",
            AlarmKind::Vibration => "vibration",
            AlarmKind::Fall => "fall",
            AlarmKind::Other => "other",
        }
    }

    /// The kind called `name` (its [`AlarmKind::as_str`]).
    pub fn from_name(name: &str) -> Option<AlarmKind> {
        AlarmKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What a record's event is, when it is one every consumer knows. Only events a protocol
/// names precisely are tabled (an alarm of a coarse kind stays an [`AlarmKind`] only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StandardEvent {
    LowBattery,
    /// External power cut or unplugged.
    PowerCut,
    /// External power connected again.
    PowerRestored,
    /// Towed: moved with the ignition off.
    Tow,
    /// Vibration or shock.
    Vibration,
    GnssJamming,
    /// SOS / panic button.
    Sos,
    HarshCornering,
    HarshAcceleration,
    HarshBraking,
    Crash,
    Overspeed,
    IdleStart,
    IdleEnd,
    MovementStart,
    MovementEnd,
    IgnitionOn,
    IgnitionOff,
    GnssRecovered,
    GnssLost,
    /// Digital input `n` (1 = the first) changed state.
    InputChanged(u8),
    /// Digital output `n` (1 = the first) changed state.
    OutputChanged(u8),
}

impl StandardEvent {
    /// The event a standard name means: the names GT06's decoder gives its alarm byte and a
    /// JSON-lines source uses (with the spellings both are seen with: `shock`, `overspeed`).
    pub fn from_name(name: &str) -> Option<StandardEvent> {
        use StandardEvent::*;
        Some(match name {
            "low_battery" => LowBattery,
            "power_cut" => PowerCut,
            "power_restored" => PowerRestored,
            "tow" => Tow,
            "vibration" | "shock" => Vibration,
            "gps_jamming" => GnssJamming,
            "sos" => Sos,
            "harsh_turn" => HarshCornering,
            "harsh_acceleration" => HarshAcceleration,
            "harsh_braking" => HarshBraking,
            "crash" => Crash,
            "over_speed" | "overspeed" => Overspeed,
            "idle_end" => IdleEnd,
            "idle_start" => IdleStart,
            "movement_start" => MovementStart,
            "movement_end" => MovementEnd,
            "ignition_off" => IgnitionOff,
            "ignition_on" => IgnitionOn,
            "gps_recovered" => GnssRecovered,
            "gps_lost" => GnssLost,
            _ => return None,
        })
    }
}

/// One protocol's meanings, carried by its registry entry.
#[derive(Debug, Clone, Copy)]
pub struct Meaning {
    /// The standard attribute an io key of this protocol stands for.
    pub attribute: fn(&IoKey) -> Option<Standard>,
    /// The alarm a record of this protocol carries (from its event, and for Teltonika the
    /// value of the io that triggered it).
    pub alarm: fn(&Record) -> Option<AlarmKind>,
    /// The standard event a record of this protocol carries.
    pub event: fn(&Record) -> Option<StandardEvent>,
    /// The device keeps records while offline and sends them later (trackers). A source
    /// that does not (a serial NMEA receiver, JSON lines) has its records as they happen,
    /// so their receive time may stand in for a missing device time.
    pub stores_offline: bool,
}

impl Meaning {
    /// A live source with no standard attributes, events or alarms (NMEA).
    pub const NONE: Meaning = Meaning {
        attribute: |_| None,
        alarm: |_| None,
        event: |_| None,
        stores_offline: false,
    };
}

impl Record {
    /// The alarm this record carries, per its protocol's registry entry.
    pub fn alarm(&self) -> Option<AlarmKind> {
        // Every protocol's alarms are events: most records have none (and this runs on
        // every append).
        self.event.as_ref()?;
        (crate::registry::meaning(self.protocol).alarm)(self)
    }

    /// The standard event this record carries, per its protocol's registry entry.
    pub fn standard_event(&self) -> Option<StandardEvent> {
        self.event.as_ref()?;
        (crate::registry::meaning(self.protocol).event)(self)
    }

    /// Whether this record's device keeps records while offline ([`Meaning::stores_offline`]).
    pub fn stored_offline(&self) -> bool {
        crate::registry::meaning(self.protocol).stores_offline
    }

    /// The value of a standard attribute, in the attribute's unit, if the record carries
    /// it as a number (the last such io wins, as in the frame).
    pub fn standard(&self, attribute: Attribute) -> Option<f64> {
        let meaning = crate::registry::meaning(self.protocol);
        self.io.iter().rev().find_map(|(key, value)| {
            let standard = (meaning.attribute)(key).filter(|s| s.attribute == attribute)?;
            number(value).map(|v| v / standard.divisor)
        })
    }
}

/// An io value as a number, if it is one.
pub fn number(value: &IoValue) -> Option<f64> {
    match value {
        IoValue::U64(v) => Some(*v as f64),
        IoValue::I64(v) => Some(*v as f64),
        IoValue::F64(v) if v.is_finite() => Some(*v),
        _ => None,
    }
}

/// The io key's name, if it is a named key.
pub(crate) fn key_name(key: &IoKey) -> Option<&str> {
    match key {
        IoKey::Name(name) => Some(name),
        IoKey::Id(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    #[test]
    fn names_round_trip() {
        for kind in AlarmKind::ALL {
            assert_eq!(AlarmKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(AlarmKind::from_name("position"), None);
    }

    #[test]
    fn nmea_has_no_meanings() {
        let mut r = Record::new("gps", Protocol::Nmea, 0);
        r.event = Some("sos".into());
        r.io.push((IoKey::Name("ignition".into()), IoValue::U64(1)));
        assert_eq!(r.alarm(), None);
        assert_eq!(r.standard(Attribute::Ignition), None);
        assert_eq!(r.standard_event(), None);
        assert!(!r.stored_offline());
    }

    #[test]
    fn standard_event_names_and_indexes() {
        assert_eq!(
            StandardEvent::from_name("shock"),
            Some(StandardEvent::Vibration)
        );
        assert_eq!(
            StandardEvent::from_name("ignition_on"),
            Some(StandardEvent::IgnitionOn)
        );
        assert_eq!(StandardEvent::from_name("alarm:0x2a"), None);
        assert_eq!(index("7"), Some(7));
        assert_eq!(index("255"), Some(255));
        for bad in ["", "0", "07", "256", "+1", "x"] {
            assert_eq!(index(bad), None, "{bad:?}");
        }
    }
}
