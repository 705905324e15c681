//! What Queclink @Track reports and io names mean. A record's event is its report type
//! without `GT`, lowercased (see the module doc); the alarm reports (@Track Air Interface
//! Protocol documents, GV / GL families):
//!
//! ```text
//! report            meaning (document)                         alarm
//! GTSOS, GTPNL      SOS / panic                                sos
//! GTCRA             crash incident                             crash
//! GTTOW             tow alarm                                  tow
//! GTEPF             external power supply off                  power_cut
//! GTGEO, GTGIN,     geofence (enter / exit)                    geofence
//!   GTGOT
//! GTSPD             speed alarm                                overspeed
//! GTHBM             harsh behaviour                            harsh_driving
//! GTBPL             backup battery low                         low_battery
//! GTJDR, GTJDS      jamming detected / jamming status          jamming
//!
//! io name               standard attribute
//! external_power_mv     external_voltage, mV
//! battery_voltage_v     battery_voltage, V
//! battery_percent       battery_level, %
//! mileage_km            odometer, km
//! mcc, mnc, lac, cell_id  cell_mcc, cell_mnc, cell_lac, cell_id
//!
//! report            standard event
//! GTSOS, GTPNL      sos
//! GTCRA             crash
//! GTTOW             tow
//! GTEPF / GTEPN     power_cut / power_restored
//! GTSPD             overspeed
//! GTIGN / GTIGF     ignition_on / ignition_off
//! ```
//!
//! Ignition on / off (GTIGN / GTIGF), power on / off (GTPNA / GTPFA), GTFRI and every other
//! report are not alarms.

use crate::meaning::{key_name, AlarmKind, Attribute, Meaning, Standard, StandardEvent};
use crate::{IoKey, Record};

pub const MEANING: Meaning = Meaning {
    attribute,
    alarm,
    event,
    stores_offline: true,
};

fn attribute(key: &IoKey) -> Option<Standard> {
    Some(match key_name(key)? {
        "external_power_mv" => Standard::new(Attribute::ExternalVoltage, 1000.0),
        "battery_voltage_v" => Standard::unit(Attribute::BatteryVoltage),
        "battery_percent" => Standard::unit(Attribute::BatteryLevel),
        "mileage_km" => Standard::unit(Attribute::Odometer),
        "mcc" => Standard::unit(Attribute::CellMcc),
        "mnc" => Standard::unit(Attribute::CellMnc),
        "lac" => Standard::unit(Attribute::CellLac),
        "cell_id" => Standard::unit(Attribute::CellId),
        _ => return None,
    })
}

fn event(record: &Record) -> Option<StandardEvent> {
    Some(match record.event.as_deref()? {
        "sos" | "pnl" => StandardEvent::Sos,
        "cra" => StandardEvent::Crash,
        "tow" => StandardEvent::Tow,
        "epf" => StandardEvent::PowerCut,
        "epn" => StandardEvent::PowerRestored,
        "spd" => StandardEvent::Overspeed,
        "ign" => StandardEvent::IgnitionOn,
        "igf" => StandardEvent::IgnitionOff,
        _ => return None,
    })
}

fn alarm(record: &Record) -> Option<AlarmKind> {
    Some(match record.event.as_deref()? {
        "sos" | "pnl" => AlarmKind::Sos,
        "cra" => AlarmKind::Crash,
        "tow" => AlarmKind::Tow,
        "epf" => AlarmKind::PowerCut,
        "geo" | "gin" | "got" => AlarmKind::Geofence,
        "spd" => AlarmKind::Overspeed,
        "hbm" => AlarmKind::HarshDriving,
        "bpl" => AlarmKind::LowBattery,
        "jdr" | "jds" => AlarmKind::Jamming,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IoValue, Protocol};

    #[test]
    fn alarm_reports_classify() {
        let cases = [
            ("sos", Some(AlarmKind::Sos)),
            ("pnl", Some(AlarmKind::Sos)),
            ("cra", Some(AlarmKind::Crash)),
            ("tow", Some(AlarmKind::Tow)),
            ("epf", Some(AlarmKind::PowerCut)),
            ("geo", Some(AlarmKind::Geofence)),
            ("spd", Some(AlarmKind::Overspeed)),
            ("hbm", Some(AlarmKind::HarshDriving)),
            ("bpl", Some(AlarmKind::LowBattery)),
            ("jdr", Some(AlarmKind::Jamming)),
            ("ign", None),
            ("igf", None),
            ("epn", None),
            ("pfa", None),
            ("ack", None),
        ];
        for (event, kind) in cases {
            let mut r = Record::new("135790246811220", Protocol::Queclink, 0);
            r.event = Some(event.into());
            assert_eq!(r.alarm(), kind, "GT{}", event.to_ascii_uppercase());
        }
        // GTFRI: no event.
        assert_eq!(
            Record::new("135790246811220", Protocol::Queclink, 0).alarm(),
            None
        );
    }

    #[test]
    fn layout_names_are_standard_attributes() {
        let mut r = Record::new("135790246811220", Protocol::Queclink, 0);
        r.io = vec![
            (
                IoKey::Name("external_power_mv".into()),
                IoValue::U64(12_400),
            ),
            (IoKey::Name("battery_voltage_v".into()), IoValue::F64(4.1)),
            (IoKey::Name("battery_percent".into()), IoValue::U64(80)),
            (IoKey::Name("mileage_km".into()), IoValue::F64(2_155.4)),
        ];
        assert_eq!(r.standard(Attribute::ExternalVoltage), Some(12.4));
        assert_eq!(r.standard(Attribute::BatteryVoltage), Some(4.1));
        assert_eq!(r.standard(Attribute::BatteryLevel), Some(80.0));
        assert_eq!(r.standard(Attribute::Odometer), Some(2_155.4));
    }
}
