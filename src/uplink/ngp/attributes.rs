//! NGP's root attributes from a record's io. What an io key means comes from its
//! protocol's registry entry ([`Record`]'s protocol → [`Meaning::attribute`]): this module
//! maps standard attributes to NGP names and never names a protocol's io id.
//!
//! ```text
//! standard attribute        NGP                          rule
//! ignition                  input_status bit 0           Navixy's mapper guide; only when the record reports no input 1
//!                                                        itself; NGP has no ignition attribute, so the io also stays custom
//! movement                  is_moving                    0 / 1 → false / true
//! external_voltage          board_voltage                V
//! battery_voltage           battery_voltage              V
//! battery_level             battery_level                Integer 0 … 100
//! odometer                  hardware_mileage             km
//! digital_input n           input_status bit n − 1       0 clears, non-zero sets
//! digital_output n          output_status bit n − 1
//! digital_inputs / outputs  input_status / output_status whole mask, OR-ed
//! analog n (n = 1 … 16)     analog_n                     V
//! pdop                      location.pdop                ≥ 0
//! hdop                      (location.hdop)              the record's hdop field already carries it
//! driver_key                hardware_key                 a number as 16 uppercase hex digits (0 = no key), or text
//! cell_mcc/mnc/lac/id       mobile_cells[0]              all four needed
//! (none) named like an NGP attribute (`temperature_3`, `vin`, …)   that attribute
//! (none) otherwise          avl_io_<id> / custom_<protocol>_<name>
//! ```
//!
//! A value that does not fit its NGP attribute (wrong type, out of range, no index) stays a
//! custom attribute instead: nothing a record carries is dropped for not fitting.
//!
//! [`Meaning::attribute`]: firmware_protocols::meaning::Meaning::attribute

use firmware_protocols::meaning::{number, Standard};
use firmware_protocols::registry;
use firmware_protocols::{Attribute, IoKey, IoValue, Protocol, Record};
use serde_json::{Map, Value};

use super::{float, string, MAX_STRING_BYTES};

/// "`battery_level` … %, 0 … 100".
const BATTERY_LEVEL_RANGE: std::ops::RangeInclusive<u64> = 0..=100;
/// Indexed sensor attributes: "`n` = 1 … 16".
const MAX_SENSOR_INDEX: u32 = 16;
/// Bits of a status mask.
const MAX_STATUS_BIT: u8 = 64;

/// What a record's io becomes.
#[derive(Debug, Default)]
pub(super) struct MappedIo {
    /// Predefined root attributes (`board_voltage`, `analog_1`, …).
    pub predefined: Map<String, Value>,
    /// Custom attributes (`avl_io_<id>`, `custom_<protocol>_<name>`).
    pub custom: Map<String, Value>,
    /// `input_status` / `output_status`: "bit 0 = input 1 … set bit = active".
    pub inputs: Option<u64>,
    pub outputs: Option<u64>,
    /// `location.pdop`.
    pub pdop: Option<f64>,
    pub cell: Cell,
    /// The last ignition state, for `input_status` bit 0.
    ignition: Option<bool>,
    /// Input 1 was reported itself (a bit or a whole mask): ignition does not overwrite it.
    input_1_reported: bool,
}

/// The serving cell's four parts.
#[derive(Debug, Default)]
pub(super) struct Cell {
    mcc: Option<u64>,
    mnc: Option<u64>,
    lac: Option<u64>,
    cell_id: Option<u64>,
}

impl Cell {
    /// One `mobile_cells` entry, when all four required members are known. The radio type
    /// is left out ("`GSM` (default)"): the decoders do not know it. An MCC of 0 (no
    /// network) is no cell.
    pub(super) fn complete(&self) -> Option<Value> {
        let (mcc, mnc, lac, cell_id) = (self.mcc?, self.mnc?, self.lac?, self.cell_id?);
        if mcc == 0 {
            return None;
        }
        let mut cell = Map::new();
        cell.insert("mcc".into(), mcc.into());
        cell.insert("mnc".into(), mnc.into());
        cell.insert("lac".into(), lac.into());
        cell.insert("cell_id".into(), cell_id.into());
        Some(Value::Object(cell))
    }
}

/// A predefined attribute an io value may become, with its NGP type and range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Target {
    /// Float attribute, written as value ÷ `divisor` (mV → V, m → km). Dividing by an exact
    /// 1000 rounds once, so 9 mV is written 0.009 (× 0.001 gives 0.009000000000000001).
    Float(&'static str, f64),
    /// `battery_level`: Integer 0 … 100.
    Percent(&'static str),
    /// Integer attribute (`impulse_counter_n`).
    Integer(&'static str),
    /// Boolean attribute from 0 / 1 (`is_moving`).
    Boolean(&'static str),
    /// String attribute (`hardware_key`, `vin`).
    Text(&'static str),
    /// `hardware_key` from a driver key: a number as 16 uppercase hex digits (0 means no
    /// key), text as it is.
    DriverKey,
    InputBit(u8),
    OutputBit(u8),
    InputMask,
    OutputMask,
    /// `location.pdop`, written as value ÷ `divisor`.
    Pdop(f64),
    Mcc,
    Mnc,
    Lac,
    CellId,
    /// Already carried by a record field (HDOP).
    Skip,
}

impl MappedIo {
    /// The record's io, each key placed by its standard meaning, else by its name.
    pub(super) fn of(record: &Record) -> MappedIo {
        let meaning = registry::meaning(record.protocol);
        let mut io = MappedIo::default();
        for (key, value) in &record.io {
            let placed = match (meaning.attribute)(key) {
                Some(standard) => io.place_standard(standard, value),
                None => match key {
                    IoKey::Name(name) => {
                        predefined_target(name).is_some_and(|target| io.place(target, value))
                    }
                    IoKey::Id(_) => false,
                },
            };
            if !placed {
                io.add_custom(record.protocol, key, value);
            }
        }
        if !io.input_1_reported {
            if let Some(on) = io.ignition {
                let mask = io.inputs.get_or_insert(0);
                if on {
                    *mask |= 1;
                } else {
                    *mask &= !1;
                }
            }
        }
        io
    }

    /// Places a standard attribute; `false` when it stays (also) a custom attribute.
    fn place_standard(&mut self, standard: Standard, value: &IoValue) -> bool {
        if standard.attribute == Attribute::Ignition {
            // Remembered for input bit 0; kept as a custom attribute as well, since NGP has
            // no ignition attribute and bit 0 is only a convention (sheet §5.8).
            if let Some(v) = unsigned(value) {
                self.ignition = Some(v != 0);
            }
            return false;
        }
        target(standard).is_some_and(|target| self.place(target, value))
    }

    /// Puts `value` where `target` says; `false` when it does not fit there (wrong type,
    /// out of range), so the caller keeps it as a custom attribute instead.
    fn place(&mut self, target: Target, value: &IoValue) -> bool {
        let set = |map: &mut Map<String, Value>, name: &str, v: Option<Value>| match v {
            Some(v) => {
                map.insert(name.to_owned(), v);
                true
            }
            None => false,
        };
        match target {
            Target::Float(name, divisor) => {
                let v = number(value).map(|v| v / divisor).and_then(float);
                set(&mut self.predefined, name, v)
            }
            Target::Percent(name) => {
                let v = unsigned(value).filter(|v| BATTERY_LEVEL_RANGE.contains(v));
                set(&mut self.predefined, name, v.map(Value::from))
            }
            Target::Integer(name) => set(&mut self.predefined, name, integer(value)),
            Target::Boolean(name) => {
                let v = match unsigned(value) {
                    Some(0) => Some(Value::Bool(false)),
                    Some(1) => Some(Value::Bool(true)),
                    _ => None,
                };
                set(&mut self.predefined, name, v)
            }
            Target::Text(name) => set(&mut self.predefined, name, text(value)),
            Target::DriverKey => {
                let v = match value {
                    IoValue::U64(key) if *key != 0 => Some(Value::String(format!("{key:016X}"))),
                    IoValue::U64(_) => None,
                    other => text(other),
                };
                set(&mut self.predefined, "hardware_key", v)
            }
            Target::InputBit(bit) => {
                let placed = set_bit(&mut self.inputs, bit, value);
                self.input_1_reported |= placed && bit == 0;
                placed
            }
            Target::OutputBit(bit) => set_bit(&mut self.outputs, bit, value),
            Target::InputMask => {
                let placed = or_mask(&mut self.inputs, value);
                self.input_1_reported |= placed;
                placed
            }
            Target::OutputMask => or_mask(&mut self.outputs, value),
            Target::Pdop(divisor) => match number(value).map(|v| v / divisor) {
                Some(pdop) if pdop >= 0.0 => {
                    self.pdop = Some(pdop);
                    true
                }
                _ => false,
            },
            Target::Mcc => set_part(&mut self.cell.mcc, value),
            Target::Mnc => set_part(&mut self.cell.mnc, value),
            Target::Lac => set_part(&mut self.cell.lac, value),
            Target::CellId => set_part(&mut self.cell.cell_id, value),
            Target::Skip => true,
        }
    }

    /// A custom attribute: "any extra key at the root … is passed through unchanged";
    /// `avl_io_<id>` for numbered io (the style the v1.0 docs cite), else
    /// `custom_<protocol>_<key>` (the prefix Navixy recommends against future clashes).
    /// Values NGP cannot hold (NaN, ±∞, text over 10 KB) are left out.
    fn add_custom(&mut self, protocol: Protocol, key: &IoKey, value: &IoValue) {
        let name = match key {
            IoKey::Id(id) => format!("avl_io_{id}"),
            // `teltonika-udp` → `teltonika_udp`: attribute names hold no hyphen.
            IoKey::Name(name) => format!("custom_{}_{name}", protocol.as_str().replace('-', "_")),
        };
        if name.len() > MAX_STRING_BYTES {
            return;
        }
        let value = match value {
            IoValue::U64(v) => Some(Value::from(*v)),
            IoValue::I64(v) => Some(Value::from(*v)),
            IoValue::F64(v) => float(*v),
            IoValue::Text(t) => string(t),
            // Lowercase hex, as in the record JSON; two characters a byte.
            IoValue::Bytes(b) if 2 * b.len() <= MAX_STRING_BYTES => {
                Some(Value::String(hex::encode(b)))
            }
            IoValue::Bytes(_) => None,
        };
        if let Some(value) = value {
            self.custom.insert(name, value);
        }
    }
}

/// Where a standard attribute goes in NGP (ignition is handled by [`MappedIo::of`]).
pub(super) fn target(standard: Standard) -> Option<Target> {
    let divisor = standard.divisor;
    Some(match standard.attribute {
        Attribute::Ignition => return None,
        Attribute::Movement => Target::Boolean("is_moving"),
        Attribute::ExternalVoltage => Target::Float("board_voltage", divisor),
        Attribute::BatteryVoltage => Target::Float("battery_voltage", divisor),
        Attribute::BatteryLevel => Target::Percent("battery_level"),
        Attribute::Odometer => Target::Float("hardware_mileage", divisor),
        Attribute::DigitalInput(n) if (1..=MAX_STATUS_BIT).contains(&n) => Target::InputBit(n - 1),
        Attribute::DigitalOutput(n) if (1..=MAX_STATUS_BIT).contains(&n) => {
            Target::OutputBit(n - 1)
        }
        Attribute::DigitalInput(_) | Attribute::DigitalOutput(_) => return None,
        Attribute::DigitalInputs => Target::InputMask,
        Attribute::DigitalOutputs => Target::OutputMask,
        Attribute::Analog(n) => {
            let n = usize::from(n);
            Target::Float(ANALOG.get(n.checked_sub(1)?)?, divisor)
        }
        Attribute::Pdop => Target::Pdop(divisor),
        Attribute::Hdop => Target::Skip,
        Attribute::DriverKey => Target::DriverKey,
        Attribute::CellMcc => Target::Mcc,
        Attribute::CellMnc => Target::Mnc,
        Attribute::CellLac => Target::Lac,
        Attribute::CellId => Target::CellId,
    })
}

/// A name that is a predefined NGP root attribute a value can go to (any protocol: a
/// JSON-lines sensor or a Wialon param may send `temperature_1` or `battery_level` directly).
pub(super) fn predefined_target(name: &str) -> Option<Target> {
    let fixed = match name {
        "is_moving" => Some(Target::Boolean("is_moving")),
        "hardware_mileage" => Some(Target::Float("hardware_mileage", 1.0)),
        "battery_voltage" => Some(Target::Float("battery_voltage", 1.0)),
        "board_voltage" => Some(Target::Float("board_voltage", 1.0)),
        "battery_level" => Some(Target::Percent("battery_level")),
        "input_status" => Some(Target::InputMask),
        "output_status" => Some(Target::OutputMask),
        "temperature_internal" => Some(Target::Float("temperature_internal", 1.0)),
        "humidity_internal" => Some(Target::Float("humidity_internal", 1.0)),
        "hardware_key" => Some(Target::Text("hardware_key")),
        "vin" => Some(Target::Text("vin")),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let (stem, index) = name.rsplit_once('_')?;
    let n = sensor_index(index)?;
    let table = match stem {
        "analog" => &ANALOG,
        "temperature" => &TEMPERATURE,
        "humidity" => &HUMIDITY,
        "fuel_level" => &FUEL_LEVEL,
        "fuel_temperature" => &FUEL_TEMPERATURE,
        "impulse_counter" => return Some(Target::Integer(IMPULSE_COUNTER[n - 1])),
        _ => return None,
    };
    Some(Target::Float(table[n - 1], 1.0))
}

/// `1` … `16` (no sign, no leading zero) as an index into the tables below.
fn sensor_index(text: &str) -> Option<usize> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = text.parse().ok()?;
    (1..=MAX_SENSOR_INDEX).contains(&n).then_some(n as usize)
}

/// Attribute names are `&'static str` so that [`Target`] stays `Copy`.
macro_rules! indexed {
    ($name:ident, $stem:literal) => {
        const $name: [&str; 16] = [
            concat!($stem, "_1"),
            concat!($stem, "_2"),
            concat!($stem, "_3"),
            concat!($stem, "_4"),
            concat!($stem, "_5"),
            concat!($stem, "_6"),
            concat!($stem, "_7"),
            concat!($stem, "_8"),
            concat!($stem, "_9"),
            concat!($stem, "_10"),
            concat!($stem, "_11"),
            concat!($stem, "_12"),
            concat!($stem, "_13"),
            concat!($stem, "_14"),
            concat!($stem, "_15"),
            concat!($stem, "_16"),
        ];
    };
}
indexed!(ANALOG, "analog");
indexed!(TEMPERATURE, "temperature");
indexed!(HUMIDITY, "humidity");
indexed!(FUEL_LEVEL, "fuel_level");
indexed!(FUEL_TEMPERATURE, "fuel_temperature");
indexed!(IMPULSE_COUNTER, "impulse_counter");

/// A non-negative whole io value.
fn unsigned(value: &IoValue) -> Option<u64> {
    match value {
        IoValue::U64(v) => Some(*v),
        IoValue::I64(v) => u64::try_from(*v).ok(),
        // Exact: 2^53 and below are whole numbers an f64 holds exactly.
        IoValue::F64(v) if v.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(v) => {
            Some(*v as u64)
        }
        _ => None,
    }
}

/// A whole io value as an NGP Integer ("signed or unsigned, 1–8 bytes").
fn integer(value: &IoValue) -> Option<Value> {
    match value {
        IoValue::U64(v) => Some(Value::from(*v)),
        IoValue::I64(v) => Some(Value::from(*v)),
        IoValue::F64(v)
            if v.fract() == 0.0
                && (-9_007_199_254_740_992.0..=9_007_199_254_740_992.0).contains(v) =>
        {
            Some(Value::from(*v as i64))
        }
        _ => None,
    }
}

/// Sets or clears `bit` of a status mask from a 0 / non-zero value.
fn set_bit(mask: &mut Option<u64>, bit: u8, value: &IoValue) -> bool {
    let Some(active) = unsigned(value).map(|v| v != 0) else {
        return false;
    };
    let m = mask.get_or_insert(0);
    if active {
        *m |= 1 << bit;
    } else {
        *m &= !(1 << bit);
    }
    true
}

/// Merges a whole status mask.
fn or_mask(mask: &mut Option<u64>, value: &IoValue) -> bool {
    let Some(bits) = unsigned(value) else {
        return false;
    };
    *mask.get_or_insert(0) |= bits;
    true
}

fn set_part(part: &mut Option<u64>, value: &IoValue) -> bool {
    match unsigned(value) {
        Some(v) => {
            *part = Some(v);
            true
        }
        None => false,
    }
}

/// A non-empty text value that fits NGP's String limit.
fn text(value: &IoValue) -> Option<Value> {
    match value {
        IoValue::Text(t) if !t.is_empty() => string(t),
        _ => None,
    }
}
