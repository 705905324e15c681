//! What GT06 io names and alarm events mean. The alarm events are the names
//! [`super::alarm_event`] gives the alarm byte (Concox / Jimi JM-VL03 table).
//!
//! ```text
//! io / event                                        standard attribute / alarm
//! acc (terminal status bit 1)                       ignition
//! mcc, mnc, lac, cell_id                            cell_mcc, cell_mnc, cell_lac, cell_id
//! sos                                               sos
//! power_cut, unplugged                              power_cut
//! vibration                                         vibration
//! geofence_enter, geofence_exit                     geofence
//! over_speed                                        overspeed
//! tow                                               tow
//! low_battery, low_external_battery,
//!   external_battery_protection                     low_battery
//! tamper, cover_open, sim_changed                   tamper
//! fake_base_station                                 jamming
//! crash                                             crash
//! harsh_acceleration, harsh_braking, harsh_turn     harsh_driving
//! fall                                              fall
//! door, sound_alarm, alarm:0xNN (unnamed byte)      other
//! ```
//!
//! Not alarms: heartbeat, ignition_on / ignition_off, power_on / power_off,
//! power_off_low_battery, gps_first_fix, gps_blind_area_enter / _exit, airplane_mode,
//! deep_sleep, address_request, command_answer.
//!
//! Standard events: the event names [`StandardEvent::from_name`] knows (`sos`,
//! `power_cut`, `vibration`, `over_speed`, `tow`, `crash`, `harsh_*`, `ignition_on`, …).

use crate::meaning::{key_name, AlarmKind, Attribute, Meaning, Standard, StandardEvent};
use crate::{IoKey, Record};

pub const MEANING: Meaning = Meaning {
    attribute,
    alarm,
    event: |record| StandardEvent::from_name(record.event.as_deref()?),
    stores_offline: true,
};

fn attribute(key: &IoKey) -> Option<Standard> {
    Some(Standard::unit(match key_name(key)? {
        "acc" => Attribute::Ignition,
        "mcc" => Attribute::CellMcc,
        "mnc" => Attribute::CellMnc,
        "lac" => Attribute::CellLac,
        "cell_id" => Attribute::CellId,
        _ => return None,
    }))
}

fn alarm(record: &Record) -> Option<AlarmKind> {
    let event = record.event.as_deref()?;
    Some(match event {
        "sos" => AlarmKind::Sos,
        "power_cut" | "unplugged" => AlarmKind::PowerCut,
        "vibration" => AlarmKind::Vibration,
        "geofence_enter" | "geofence_exit" => AlarmKind::Geofence,
        "over_speed" => AlarmKind::Overspeed,
        "tow" => AlarmKind::Tow,
        "low_battery" | "low_external_battery" | "external_battery_protection" => {
            AlarmKind::LowBattery
        }
        "tamper" | "cover_open" | "sim_changed" => AlarmKind::Tamper,
        "fake_base_station" => AlarmKind::Jamming,
        "crash" => AlarmKind::Crash,
        "harsh_acceleration" | "harsh_braking" | "harsh_turn" => AlarmKind::HarshDriving,
        "fall" => AlarmKind::Fall,
        "door" | "sound_alarm" => AlarmKind::Other,
        other if other.starts_with("alarm:") => AlarmKind::Other,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IoValue, Protocol};

    fn with_alarm_byte(byte: u8) -> Record {
        let mut r = Record::new("868120145233604", Protocol::Gt06, 0);
        r.event = super::super::alarm_event(byte);
        r
    }

    #[test]
    fn documented_alarm_bytes_classify() {
        let cases = [
            (0x00, None),
            (0x01, Some(AlarmKind::Sos)),
            (0x02, Some(AlarmKind::PowerCut)),
            (0x03, Some(AlarmKind::Vibration)),
            (0x04, Some(AlarmKind::Geofence)),
            (0x05, Some(AlarmKind::Geofence)),
            (0x06, Some(AlarmKind::Overspeed)),
            (0x09, Some(AlarmKind::Tow)),
            (0x0C, None),
            (0x13, Some(AlarmKind::Tamper)),
            (0x19, Some(AlarmKind::LowBattery)),
            (0x23, Some(AlarmKind::Fall)),
            (0x2C, Some(AlarmKind::Crash)),
            (0x30, Some(AlarmKind::HarshDriving)),
            (0x32, Some(AlarmKind::PowerCut)),
            (0xFE, None),
            (0xFF, None),
            // Not in the table: still an alarm.
            (0x3A, Some(AlarmKind::Other)),
        ];
        for (byte, kind) in cases {
            assert_eq!(
                with_alarm_byte(byte).alarm(),
                kind,
                "alarm byte {byte:#04x}"
            );
        }
        let mut heartbeat = Record::new("868120145233604", Protocol::Gt06, 0);
        heartbeat.event = Some("heartbeat".into());
        assert_eq!(heartbeat.alarm(), None);
    }

    #[test]
    fn acc_is_ignition() {
        let mut r = Record::new("868120145233604", Protocol::Gt06, 0);
        r.io.push((IoKey::Name("acc".into()), IoValue::U64(1)));
        r.io.push((IoKey::Name("charging".into()), IoValue::U64(0)));
        assert_eq!(r.standard(Attribute::Ignition), Some(1.0));
        assert_eq!(r.standard(Attribute::Movement), None);
    }
}
