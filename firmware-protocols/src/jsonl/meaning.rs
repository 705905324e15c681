//! What JSON-lines io keys and events mean. A local source has no vendor vocabulary, so it
//! uses the standard one: an io key named like a standard attribute
//! ([`Attribute::as_str`]: `ignition`, `external_voltage`, …) is that attribute in its unit,
//! and an `event` named like an alarm kind ([`AlarmKind::as_str`]: `sos`, `crash`, `tow`,
//! `power_cut`, `geofence`, `overspeed`, …) is that alarm, and one named like a standard
//! event ([`StandardEvent::from_name`]: `ignition_on`, `movement_start`, …) is that event.
//! Other names mean nothing here. JSON lines are read as they are written
//! (`stores_offline` false).

use crate::meaning::{key_name, AlarmKind, Attribute, Meaning, Standard, StandardEvent};
use crate::{IoKey, Record};

pub const MEANING: Meaning = Meaning {
    attribute,
    alarm,
    event: |record| StandardEvent::from_name(record.event.as_deref()?),
    stores_offline: false,
};

fn attribute(key: &IoKey) -> Option<Standard> {
    let name = key_name(key)?;
    Attribute::ALL
        .into_iter()
        .find(|a| a.as_str() == name)
        .map(Standard::unit)
}

fn alarm(record: &Record) -> Option<AlarmKind> {
    AlarmKind::from_name(record.event.as_deref()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IoValue, Protocol};

    #[test]
    fn standard_names_mean_themselves() {
        let mut r = Record::new("tank-7", Protocol::Jsonl, 0);
        r.event = Some("sos".into());
        r.io = vec![
            (IoKey::Name("ignition".into()), IoValue::U64(1)),
            (IoKey::Name("external_voltage".into()), IoValue::F64(12.6)),
            (IoKey::Name("level_cm".into()), IoValue::I64(131)),
        ];
        assert_eq!(r.alarm(), Some(AlarmKind::Sos));
        assert_eq!(r.standard(Attribute::Ignition), Some(1.0));
        assert_eq!(r.standard(Attribute::ExternalVoltage), Some(12.6));
        r.event = Some("door".into());
        assert_eq!(r.alarm(), None);
    }
}
