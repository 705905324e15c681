//! What Teltonika FMB AVL ids mean (Teltonika wiki, "FMB Teltonika Data Sending Parameters
//! ID"; meanings are per model family: the older FM series numbers its IO differently).
//! Shared by `teltonika` and `teltonika-udp`.
//!
//! ```text
//! AVL id  name (wiki)          standard attribute / alarm (when it is the event IO)
//! 239     Ignition             ignition
//! 240     Movement             movement
//! 66      External Voltage     external_voltage, mV
//! 67      Battery Voltage      battery_voltage, mV
//! 113     Battery Level        battery_level, %
//! 16      Total Odometer       odometer, m
//! 1–3     Digital Input 1–3    digital_input 1–3        event: input n changed
//! 179,180 Digital Output 1–2   digital_output 1–2       event: output n changed
//! 9, 6    Analog Input 1–2     analog 1–2, mV
//! 181     GNSS PDOP            pdop, ×10
//! 182     GNSS HDOP            hdop, ×10
//! 78      iButton              driver_key
//! 239 / 240 as the event IO: ignition on / off, movement start / end (value 1 / 0)
//! 236     Alarm                sos            value 1 (alarm event occurred)
//! 247     Crash Detection      crash          value ≠ 0
//! 246     Towing               tow            value ≠ 0 (towing started)
//! 252     Unplug               power_cut      value ≠ 0 (battery unplugged)
//! 255     Over Speeding        overspeed      value = the speed, start and end alike
//! 155–159 Geofence zone 01–05  geofence       enter and exit alike
//! 175     Auto Geofence        geofence
//! 249     Jamming              jamming        value ≠ 0 (jamming started)
//! 253     Green driving type   harsh_driving  1 acceleration, 2 braking, 3 cornering
//! ```
//!
//! The same alarm elements are standard events where the element says precisely what
//! happened (jamming, geofences: no standard event).
//!
//! The event IO of a record (`event` = `io:<id>`) says which element triggered it; the
//! element's value in the same record says which way it changed. A record whose event IO
//! is an alarm element but which does not carry that element's value is still an alarm:
//! when in doubt, a record goes first rather than last.

use crate::meaning::{AlarmKind, Attribute, Meaning, Standard, StandardEvent};
use crate::{IoKey, IoValue, Record};

pub const MEANING: Meaning = Meaning {
    attribute,
    alarm,
    event,
    stores_offline: true,
};

fn attribute(key: &IoKey) -> Option<Standard> {
    let IoKey::Id(id) = key else { return None };
    Some(match id {
        239 => Standard::unit(Attribute::Ignition),
        240 => Standard::unit(Attribute::Movement),
        66 => Standard::new(Attribute::ExternalVoltage, 1000.0),
        67 => Standard::new(Attribute::BatteryVoltage, 1000.0),
        113 => Standard::unit(Attribute::BatteryLevel),
        16 => Standard::new(Attribute::Odometer, 1000.0),
        // 1..=3 fits a u8.
        1..=3 => Standard::unit(Attribute::DigitalInput(*id as u8)),
        179 => Standard::unit(Attribute::DigitalOutput(1)),
        180 => Standard::unit(Attribute::DigitalOutput(2)),
        9 => Standard::new(Attribute::Analog(1), 1000.0),
        6 => Standard::new(Attribute::Analog(2), 1000.0),
        181 => Standard::new(Attribute::Pdop, 10.0),
        182 => Standard::new(Attribute::Hdop, 10.0),
        78 => Standard::unit(Attribute::DriverKey),
        _ => return None,
    })
}

/// The record's event IO (`io:<id>`) and that element's value in the same record.
fn event_io(record: &Record) -> Option<(u32, Option<u64>)> {
    let id: u32 = record.event.as_deref()?.strip_prefix("io:")?.parse().ok()?;
    let value = record
        .io
        .iter()
        .rev()
        .find_map(|(key, value)| match (key, value) {
            (IoKey::Id(k), IoValue::U64(v)) if *k == id => Some(*v),
            _ => None,
        });
    Some((id, value))
}

fn event(record: &Record) -> Option<StandardEvent> {
    let (id, value) = event_io(record)?;
    let started = value != Some(0);
    Some(match (id, value) {
        // 1..=3 fits a u8.
        (1..=3, _) => StandardEvent::InputChanged(id as u8),
        (179, _) => StandardEvent::OutputChanged(1),
        (180, _) => StandardEvent::OutputChanged(2),
        (239, Some(1)) => StandardEvent::IgnitionOn,
        (239, Some(0)) => StandardEvent::IgnitionOff,
        (240, Some(1)) => StandardEvent::MovementStart,
        (240, Some(0)) => StandardEvent::MovementEnd,
        (236, _) if started => StandardEvent::Sos,
        (247, _) if started => StandardEvent::Crash,
        (246, _) if started => StandardEvent::Tow,
        (252, _) if started => StandardEvent::PowerCut,
        (255, _) => StandardEvent::Overspeed,
        (253, Some(1)) => StandardEvent::HarshAcceleration,
        (253, Some(2)) => StandardEvent::HarshBraking,
        (253, Some(3)) => StandardEvent::HarshCornering,
        _ => return None,
    })
}

fn alarm(record: &Record) -> Option<AlarmKind> {
    let (id, value) = event_io(record)?;
    // Elements whose 0 means "the condition ended".
    let started = value != Some(0);
    match id {
        236 if started => Some(AlarmKind::Sos),
        247 if started => Some(AlarmKind::Crash),
        246 if started => Some(AlarmKind::Tow),
        252 if started => Some(AlarmKind::PowerCut),
        249 if started => Some(AlarmKind::Jamming),
        253 if started => Some(AlarmKind::HarshDriving),
        255 => Some(AlarmKind::Overspeed),
        155..=159 | 175 => Some(AlarmKind::Geofence),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn triggered_by(id: u32, value: Option<u64>) -> Record {
        let mut r = Record::new("356307042441013", Protocol::Teltonika, 0);
        r.event = Some(format!("io:{id}"));
        r.io.push((IoKey::Id(239), IoValue::U64(1)));
        if let Some(v) = value {
            r.io.push((IoKey::Id(id), IoValue::U64(v)));
        }
        r
    }

    #[test]
    fn documented_alarm_elements_classify() {
        let cases = [
            (236, Some(1), Some(AlarmKind::Sos)),
            (247, Some(1), Some(AlarmKind::Crash)),
            (246, Some(1), Some(AlarmKind::Tow)),
            (246, Some(0), None),
            (252, Some(1), Some(AlarmKind::PowerCut)),
            (252, Some(0), None),
            (255, Some(93), Some(AlarmKind::Overspeed)),
            (155, Some(0), Some(AlarmKind::Geofence)),
            (159, Some(1), Some(AlarmKind::Geofence)),
            (175, Some(1), Some(AlarmKind::Geofence)),
            (249, Some(1), Some(AlarmKind::Jamming)),
            (253, Some(2), Some(AlarmKind::HarshDriving)),
            // Not carried: still an alarm.
            (247, None, Some(AlarmKind::Crash)),
            // Ignition, movement, a digital input: events, not alarms.
            (239, Some(1), None),
            (240, Some(0), None),
            (1, Some(1), None),
        ];
        for (id, value, kind) in cases {
            assert_eq!(triggered_by(id, value).alarm(), kind, "io:{id} = {value:?}");
        }
        let mut periodic = triggered_by(247, Some(1));
        periodic.event = None;
        assert_eq!(periodic.alarm(), None);
    }

    #[test]
    fn event_elements_are_standard_events() {
        let cases = [
            (1, Some(1), Some(StandardEvent::InputChanged(1))),
            (3, None, Some(StandardEvent::InputChanged(3))),
            (179, Some(0), Some(StandardEvent::OutputChanged(1))),
            (180, Some(1), Some(StandardEvent::OutputChanged(2))),
            (239, Some(1), Some(StandardEvent::IgnitionOn)),
            (239, Some(0), Some(StandardEvent::IgnitionOff)),
            (240, Some(1), Some(StandardEvent::MovementStart)),
            (240, Some(0), Some(StandardEvent::MovementEnd)),
            (247, Some(1), Some(StandardEvent::Crash)),
            (252, Some(0), None),
            (253, Some(2), Some(StandardEvent::HarshBraking)),
            (253, Some(3), Some(StandardEvent::HarshCornering)),
            (155, Some(1), None),
            (21, Some(3), None),
        ];
        for (id, value, event) in cases {
            let r = triggered_by(id, value);
            assert_eq!(r.standard_event(), event, "io:{id} = {value:?}");
        }
    }

    #[test]
    fn udp_records_share_the_table() {
        let mut r = triggered_by(252, Some(1));
        r.protocol = Protocol::TeltonikaUdp;
        assert_eq!(r.alarm(), Some(AlarmKind::PowerCut));
    }

    #[test]
    fn standard_attributes_in_standard_units() {
        let mut r = Record::new("356307042441013", Protocol::Teltonika, 0);
        r.io = vec![
            (IoKey::Id(239), IoValue::U64(1)),
            (IoKey::Id(240), IoValue::U64(0)),
            (IoKey::Id(66), IoValue::U64(13_820)),
            (IoKey::Id(67), IoValue::U64(4_050)),
            (IoKey::Id(113), IoValue::U64(97)),
            (IoKey::Id(16), IoValue::U64(18_342_700)),
        ];
        assert_eq!(r.standard(Attribute::Ignition), Some(1.0));
        assert_eq!(r.standard(Attribute::Movement), Some(0.0));
        assert_eq!(r.standard(Attribute::ExternalVoltage), Some(13.82));
        assert_eq!(r.standard(Attribute::BatteryVoltage), Some(4.05));
        assert_eq!(r.standard(Attribute::BatteryLevel), Some(97.0));
        assert_eq!(r.standard(Attribute::Odometer), Some(18_342.7));
        r.io = vec![
            (IoKey::Id(2), IoValue::U64(1)),
            (IoKey::Id(180), IoValue::U64(0)),
            (IoKey::Id(9), IoValue::U64(4_250)),
            (IoKey::Id(181), IoValue::U64(14)),
            (IoKey::Id(78), IoValue::U64(0xAB)),
        ];
        assert_eq!(r.standard(Attribute::DigitalInput(2)), Some(1.0));
        assert_eq!(r.standard(Attribute::DigitalOutput(2)), Some(0.0));
        assert_eq!(r.standard(Attribute::Analog(1)), Some(4.25));
        assert_eq!(r.standard(Attribute::Pdop), Some(1.4));
        assert_eq!(r.standard(Attribute::DriverKey), Some(171.0));
        assert!(r.stored_offline());
    }
}
