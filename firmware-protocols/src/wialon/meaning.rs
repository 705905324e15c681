//! What Wialon IPS packets mean in the standard vocabulary. Wialon IPS names no alarm
//! packet (`#M#`, the driver's message, is the only event the decoder gives,
//! `driver_message`, and it is neither an alarm nor a standard event). Param names are free
//! text chosen in each device's configuration, so no param has a documented standard
//! meaning; the extended data packet's fixed fields do:
//!
//! ```text
//! io (field of #D#)      standard attribute
//! inputs                 digital_inputs (bitmask, bit 0 = input 1)
//! outputs                digital_outputs
//! adc1, adc2, …          analog 1, 2, … (the ADC list, volts)
//! ibutton                driver_key
//! ```

use crate::meaning::{index, key_name, Attribute, Meaning, Standard};
use crate::IoKey;

pub const MEANING: Meaning = Meaning {
    attribute,
    alarm: |_| None,
    event: |_| None,
    stores_offline: true,
};

fn attribute(key: &IoKey) -> Option<Standard> {
    let name = key_name(key)?;
    Some(Standard::unit(match name {
        "inputs" => Attribute::DigitalInputs,
        "outputs" => Attribute::DigitalOutputs,
        "ibutton" => Attribute::DriverKey,
        _ => Attribute::Analog(index(name.strip_prefix("adc")?)?),
    }))
}

#[cfg(test)]
mod tests {
    use crate::meaning::Attribute;
    use crate::{IoKey, IoValue, Protocol, Record};

    #[test]
    fn fixed_fields_are_standard_attributes_and_params_are_not() {
        let mut r = Record::new("2000000000", Protocol::Wialon, 0);
        let name = |n: &str| IoKey::Name(n.into());
        r.io = vec![
            (name("inputs"), IoValue::U64(5)),
            (name("outputs"), IoValue::U64(2)),
            (name("adc2"), IoValue::F64(3.6)),
            (name("adc02"), IoValue::F64(9.0)),
            (name("pwr_ext"), IoValue::F64(12.5)),
        ];
        assert_eq!(r.standard(Attribute::DigitalInputs), Some(5.0));
        assert_eq!(r.standard(Attribute::DigitalOutputs), Some(2.0));
        assert_eq!(r.standard(Attribute::Analog(2)), Some(3.6));
        assert_eq!(r.standard(Attribute::Analog(1)), None);
        assert_eq!(r.standard(Attribute::ExternalVoltage), None);
    }

    #[test]
    fn driver_messages_are_not_alarms() {
        for protocol in [Protocol::Wialon, Protocol::WialonUdp] {
            let mut r = Record::new("2000000000", protocol, 0);
            r.event = Some("driver_message".into());
            assert_eq!(r.alarm(), None);
        }
    }
}
