//! Reports whose fields a report mask switches on: `GTCAN` (vehicle CAN data) and `GTOBD`
//! (OBD-II data, GV500 family). The mask says which optional fields are present, in
//! ascending bit order, and whether the GNSS part and the cell part of a fix block are
//! appended at the end; so the block's place follows from the mask, never from a search.
//!
//! Sources: GV300CAN TRACGV300CANAN002 (`<CAN Report Mask>`, `<CAN Report Expansion
//! Mask>`, `<Electric Report Mask>`, the GTCAN field table), GV500 TRACGV500AN001
//! (`<OBD Report Mask>`, the GTOBD field table).
//!
//! ```text
//! GTCAN middle: report_type, can_state, can_report_mask, {mask bits 0–21 fields},
//!               [bit 28: electric mask, its fields], [bit 29: expansion mask, its fields],
//!               [bit 30: GNSS part (7)], [bit 31: cell part (5)]
//!   bits 0–21, in this order (bit 5 comes before bit 4):
//!     0 vin  1 ignition_key  2 total_distance  3 total_fuel_used  5 engine_rpm  4 speed
//!     6 coolant_temp  7 fuel_consumption  8 fuel_level  9 range  10 accelerator_pedal
//!     11 engine_hours  12 driving_time  13 idle_time  14 idle_fuel_used  15 axle_weight_2
//!     16 tachograph  17 indicators  18 lights  19 doors  20 overspeed_time
//!     21 engine_overspeed_time   (22: HEX form only; 23–27 reserved)
//! GTOBD middle (the VIN is field 3, the device name field 4 = middle[0]):
//!               device name, report_type, obd_report_mask, {mask bits 0–19 fields},
//!               [bit 20: GNSS part (7)], [bit 21: cell part (5)], [bit 22: mileage_km]
//!   bits: 0 vin  1 connected  2 power_mv  3 supported_pids  4 engine_rpm  5 speed
//!     6 coolant_temp  7 fuel_consumption  8 dtc_cleared_distance  9 mil_distance
//!     10 mil_status  11 dtc_count  12 dtcs  13 throttle  14 engine_load  15 fuel_level
//!     16 protocol  19 odometer   (17, 18 undocumented)
//! ```
//!
//! The appended parts are read from the end (they are the last fields before the send
//! time); the masked fields in front are named only when their count is what the mask
//! says, and kept by number otherwise, with `io.mask_fields = "mismatch"`. A mask with a bit
//! this decoder has no field list for leaves the front unnamed the same way; one whose
//! undocumented bits could add fields after the appended parts (GTOBD bits 23–31) keeps no
//! position.

use super::fix::{self, CELL_FIELDS, GNSS_FIELDS};
use super::layout::{name_fields, IoField, Kind, Named, Outcome, Placed};
use super::message::{shorten, Field};
use crate::DecodeError;

use Kind::{Hex, Text, F64, U64};

/// CAN report mask bits 0–21 in emission order.
const CAN_FIELDS: [(u32, Named); 22] = [
    (0, ("can_vin", Text)),
    (1, ("can_ignition_key", U64)),
    (2, ("can_total_distance", Text)),
    (3, ("can_total_fuel_used_l", F64)),
    (5, ("can_engine_rpm", U64)),
    (4, ("can_speed_kmh", U64)),
    (6, ("can_coolant_temp_c", Text)),
    (7, ("can_fuel_consumption", Text)),
    (8, ("can_fuel_level", Text)),
    (9, ("can_range_hm", U64)),
    (10, ("can_accelerator_pedal_percent", U64)),
    (11, ("can_engine_hours", F64)),
    (12, ("can_driving_hours", F64)),
    (13, ("can_idle_hours", F64)),
    (14, ("can_idle_fuel_used_l", F64)),
    (15, ("can_axle_weight_2_kg", U64)),
    (16, ("can_tachograph", Text)),
    (17, ("can_indicators", Text)),
    (18, ("can_lights", Text)),
    (19, ("can_doors", Text)),
    (20, ("can_overspeed_hours", F64)),
    (21, ("can_engine_overspeed_hours", F64)),
];
/// CAN mask bits with no field in the ASCII report (22: HEX form only; 23–27 reserved).
const CAN_NO_FIELD: u32 = 0x0FC0_0000;
const CAN_ELECTRIC: u32 = 1 << 28;
const CAN_EXPANSION: u32 = 1 << 29;
const CAN_GNSS: u32 = 1 << 30;
const CAN_CELL: u32 = 1 << 31;

const ELECTRIC_FIELDS: [Named; 6] = [
    ("ev_total_voltage_v", F64),
    ("ev_charging_times", U64),
    ("ev_power_recovered", U64),
    ("ev_single_charge_kwh", F64),
    ("ev_single_discharge_kwh", F64),
    ("ev_remaining_power", Text),
];

/// Expansion mask bits 0–22 (10 and 11 have no documented field).
const EXPANSION_FIELDS: [Option<Named>; 23] = [
    Some(("can_ad_blue_level", Text)),
    Some(("can_axle_weight_1_kg", U64)),
    Some(("can_axle_weight_3_kg", U64)),
    Some(("can_axle_weight_4_kg", U64)),
    Some(("can_tacho_overspeed", Text)),
    Some(("can_tacho_motion", Text)),
    Some(("can_tacho_direction", Text)),
    Some(("can_analog_input_mv", U64)),
    Some(("can_engine_braking_factor", Text)),
    Some(("can_pedal_braking_factor", Text)),
    None,
    None,
    Some(("can_cruise_time", Text)),
    Some(("can_kick_down_time", Text)),
    Some(("can_brake_applications", U64)),
    Some(("can_driver_1_card", Text)),
    Some(("can_driver_2_card", Text)),
    Some(("can_driver_1_name", Text)),
    Some(("can_driver_2_name", Text)),
    Some(("can_registration", Text)),
    Some(("can_expansion_info", Text)),
    Some(("can_rapid_brakings", U64)),
    Some(("can_rapid_accelerations", U64)),
];

const OBD_FIELDS: [Option<Named>; 20] = [
    Some(("obd_vin", Text)),
    Some(("obd_connected", U64)),
    Some(("obd_power_mv", U64)),
    Some(("obd_supported_pids", Text)),
    Some(("obd_engine_rpm", U64)),
    Some(("obd_speed_kmh", U64)),
    Some(("obd_coolant_temp_c", Text)),
    Some(("obd_fuel_consumption", Text)),
    Some(("obd_dtc_cleared_distance_km", U64)),
    Some(("obd_mil_distance_km", U64)),
    Some(("obd_mil_status", U64)),
    Some(("obd_dtc_count", U64)),
    Some(("obd_dtcs", Text)),
    Some(("obd_throttle_percent", U64)),
    Some(("obd_engine_load_percent", U64)),
    Some(("obd_fuel_level_percent", U64)),
    Some(("obd_protocol", Text)),
    None,
    None,
    Some(("obd_odometer_km", U64)),
];
const OBD_GNSS: u32 = 1 << 20;
const OBD_CELL: u32 = 1 << 21;
const OBD_MILEAGE: u32 = 1 << 22;
/// OBD mask bits after the mileage with no documented field.
const OBD_UNKNOWN_TAIL: u32 = !0 << 23;

const CELL_NAMES: [Named; CELL_FIELDS] = [
    ("mcc", U64),
    ("mnc", U64),
    ("lac", Hex),
    ("cell_id", Hex),
    ("fix_reserved", Text),
];

/// A GTCAN message's middle fields.
pub(super) fn can<'a>(middle: &[Field<'a>], now_ms: i64) -> Outcome<'a> {
    let head_names = [
        ("can_report_type", Text),
        ("can_state", U64),
        ("can_report_mask", Text),
    ];
    let Some(mask_field) = middle.get(2) else {
        return too_few(middle, "GTCAN", 3);
    };
    let mask = match read_mask(mask_field, "CAN report mask") {
        Ok(mask) => mask,
        Err(e) => return Outcome::Mismatch(e),
    };
    let (gnss, cell) = (mask & CAN_GNSS != 0, mask & CAN_CELL != 0);
    let tail_len = usize::from(gnss) * GNSS_FIELDS + usize::from(cell) * CELL_FIELDS;
    let Some(front_end) = middle.len().checked_sub(tail_len).filter(|&e| e >= 3) else {
        return too_few(middle, "GTCAN", 3 + tail_len);
    };
    let front = middle.get(3..front_end).unwrap_or_default();
    let names = can_names(mask, front);
    finish(middle, &head_names, front, names, (gnss, cell), &[], now_ms)
}

/// A GTOBD message's middle fields (the device name first: the VIN took its place).
pub(super) fn obd<'a>(middle: &[Field<'a>], now_ms: i64) -> Outcome<'a> {
    let head_names = [
        ("device_name", Text),
        ("obd_report_type", Text),
        ("obd_report_mask", Text),
    ];
    let Some(mask_field) = middle.get(2) else {
        return too_few(middle, "GTOBD", 3);
    };
    let mask = match read_mask(mask_field, "OBD report mask") {
        Ok(mask) => mask,
        Err(e) => return Outcome::Mismatch(e),
    };
    if mask & OBD_UNKNOWN_TAIL != 0 {
        return Outcome::Mismatch(DecodeError::new(
            mask_field.offset,
            format!(
                "OBD report mask {} sets bits above 22, which have no documented fields",
                mask_field.text
            ),
        ));
    }
    let (gnss, cell) = (mask & OBD_GNSS != 0, mask & OBD_CELL != 0);
    let mileage = usize::from(mask & OBD_MILEAGE != 0);
    let tail_len = usize::from(gnss) * GNSS_FIELDS + usize::from(cell) * CELL_FIELDS + mileage;
    let Some(front_end) = middle.len().checked_sub(tail_len).filter(|&e| e >= 3) else {
        return too_few(middle, "GTOBD", 3 + tail_len);
    };
    let front = middle.get(3..front_end).unwrap_or_default();
    let names = masked_names(mask, &OBD_FIELDS);
    let after: &[Named] = if mileage == 1 {
        &[("mileage_km", F64)]
    } else {
        &[]
    };
    finish(
        middle,
        &head_names,
        front,
        names,
        (gnss, cell),
        after,
        now_ms,
    )
}

/// Names and places everything once the mask has said how long the tail is.
fn finish<'a>(
    middle: &[Field<'a>],
    head_names: &[Named],
    front: &[Field<'a>],
    names: Option<Vec<Named>>,
    (gnss, cell): (bool, bool),
    after: &[Named],
    now_ms: i64,
) -> Outcome<'a> {
    let mut placed = Placed {
        head: name_fields(middle.get(..3).unwrap_or_default(), head_names),
        ..Placed::default()
    };
    let names = names.filter(|n| n.len() == front.len());
    let front_checked = names.is_some();
    match names {
        Some(names) => placed.head.extend(name_fields(front, &names)),
        None => {
            placed.head.extend(name_fields(front, &[]));
            placed.head.push(IoField {
                field: Field {
                    text: "mismatch",
                    offset: front.first().map_or(0, |f| f.offset),
                    number: 0,
                },
                name: ("mask_fields", Text),
            });
        }
    }
    let tail_start = 3 + front.len();
    let tail = middle.get(tail_start..).unwrap_or_default();
    let (gnss_fields, rest) = tail.split_at(if gnss { GNSS_FIELDS.min(tail.len()) } else { 0 });
    let (cell_fields, rest) = rest.split_at(if cell { CELL_FIELDS.min(rest.len()) } else { 0 });
    if gnss {
        let mut fix = match fix::parse_gnss(gnss_fields, 1, now_ms) {
            Ok(fix) => fix,
            Err(e) => return Outcome::Mismatch(e),
        };
        // The fix was placed by counting from the end. Unless the mask's fields in front
        // matched too, a value out of range says the count is off (a field appended by newer
        // firmware shifts every part): then no part of this fix is trusted.
        if !front_checked && !fix.out_of_range.is_empty() {
            return Outcome::Mismatch(DecodeError::new(
                gnss_fields.first().map_or(0, |f| f.offset),
                format!(
                    "the mask's fields do not match their count and the fix read from the \
                     end is out of range ({}); no position taken",
                    fix.out_of_range.join("; ")
                ),
            ));
        }
        if cell {
            if let Err(e) = fix::add_cell(&mut fix, cell_fields, 1) {
                return Outcome::Mismatch(e);
            }
        }
        placed.fixes.push(fix);
    } else {
        // A cell part alone: the serving cell, no position.
        placed.tail.extend(name_fields(cell_fields, &CELL_NAMES));
    }
    placed.tail.extend(name_fields(rest, after));
    Outcome::Placed(placed)
}

/// The names of the CAN mask's fields in emission order, with the electric and expansion
/// masks read from `front` where the mask says they are; `None` when a set bit has no
/// documented field list.
fn can_names(mask: u32, front: &[Field<'_>]) -> Option<Vec<Named>> {
    if mask & CAN_NO_FIELD != 0 {
        return None;
    }
    let mut names: Vec<Named> = CAN_FIELDS
        .iter()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|&(_, name)| name)
        .collect();
    if mask & CAN_ELECTRIC != 0 {
        let sub = read_mask(front.get(names.len())?, "").ok()?;
        if sub >> ELECTRIC_FIELDS.len() != 0 {
            return None;
        }
        names.push(("ev_report_mask", Text));
        names.extend(
            ELECTRIC_FIELDS
                .iter()
                .enumerate()
                .filter(|(bit, _)| sub & (1 << bit) != 0)
                .map(|(_, &name)| name),
        );
    }
    if mask & CAN_EXPANSION != 0 {
        let sub = read_mask(front.get(names.len())?, "").ok()?;
        if sub >> EXPANSION_FIELDS.len() != 0 {
            return None;
        }
        names.push(("can_expansion_mask", Text));
        names.extend(masked_names(sub, &EXPANSION_FIELDS)?);
    }
    Some(names)
}

/// The names of `mask`'s bits below `fields.len()`; `None` when a set bit has none. Bits
/// at and above `fields.len()` are the caller's.
fn masked_names(mask: u32, fields: &[Option<Named>]) -> Option<Vec<Named>> {
    let mut names = Vec::new();
    for (bit, name) in fields.iter().enumerate() {
        if mask & (1 << bit) != 0 {
            names.push((*name)?);
        }
    }
    Some(names)
}

/// Up to 8 hex digits.
fn read_mask(field: &Field<'_>, what: &str) -> Result<u32, DecodeError> {
    match fix::uint(field.text, 8, 16) {
        Some(Some(mask)) => u32::try_from(mask).map_err(|_| bad_mask(field, what)),
        _ => Err(bad_mask(field, what)),
    }
}

#[cold]
fn bad_mask(field: &Field<'_>, what: &str) -> DecodeError {
    DecodeError::new(
        field.offset,
        format!(
            "{what} {:?} (field {}) is not up to 8 hex digits",
            shorten(field.text),
            field.number
        ),
    )
}

#[cold]
fn too_few<'a>(middle: &[Field<'a>], report: &str, wanted: usize) -> Outcome<'a> {
    Outcome::Mismatch(DecodeError::new(
        middle.first().map_or(0, |f| f.offset),
        format!(
            "{report}: {} fields between the device name and the send time, its mask needs at \
             least {wanted}",
            middle.len()
        ),
    ))
}
