//! Where each report type's fix blocks are: the documented field lists of the @Track air
//! interface documents, keyed by report type and, where the families differ, by the device
//! type in the protocol version. Nothing here searches: a block is read only at the place a
//! layout names, and when no layout fits the message keeps no position.
//!
//! Sources: fact sheet `shared/protocols/queclink.md` (GL300 TRACGL300AN001, GV200
//! TRACGV200AN003, GMT100 TRACGMT100AN001) and the GV300 TRACGV300AN002 / GV300CAN
//! TRACGV300CANAN002 report tables (the "all of the above report messages have the same
//! format" lists and their examples).
//!
//! ```text
//! middle = the fields between the device name and the send time (field 4 = middle[0])
//!
//! layout          before the blocks                     blocks          after the blocks
//! position (P1)   GL: report_id, report_type             Number + N×12   GL: battery_percent
//!   GEO SPD SOS   GV: external_power_mv, report_id_type                  GV: mileage_km
//!   RTL PNL NMR   other device types: 2 fields, by number                1 field, by number
//!   DIS DOG IGL HBM TOW EPS IOB GES GIN GOT LSA
//! FRI             as P1                                  Number + N×12   GL: battery_percent
//!                                                                        GV200: mileage_km,
//!   hour_meter, analog_in_1, analog_in_2, backup_battery_percent, device_status, 2 reserved
//!                                                                        GV: mileage_km
//!                                                                        (, hour_meter, …)
//! ERI             eri_mask, external_power_mv,           Number + N×12   mileage_km, hour_meter,
//!                 report_id_type                                         then the ERI-mask blocks
//! IGN / IGF       ignition_off/on_duration_s             one block       (hour_meter, mileage_km)
//! STT             motion_state                           one block       —
//! BPL             battery_voltage_v                      one block       —  or 1 field
//! LBC             call_number                            one block       —
//! EPN EPF BTC STC —  or 1 field                          one block       1 field  or —
//! IDN             1 field                                one block       1 field
//! IDF             2 fields                               one block       1 field
//! CAN OBD         report masks: see `mask`
//! INF GPS PNA PFA PDP VER BAT IOS CSQ CID TMZ      no fix block: every field by number
//! ```
//!
//! Device types (first 2 hex digits of a 6-digit protocol version, first 6 of a 10-digit
//! one): GL = 02 21 (GL200), 1A 30 (GL300), 2C (GL300W); GV = 04 35 (GV200), 06 25 (GV300),
//! 08 3F (GMT100), 0F 2F (GV55), 10 (GV55 Lite), 1F 36 (GV500), 27 (GV300W), 31 (GV65),
//! 41 (GV75W), 4F (GV56), 50 (GV55W), 6E (GV310LAU), F1 (GV350M), 802004 (GV58LAU),
//! 802005 (GV355CEU), 80201E (GV30CEU). Other device types get the family-independent
//! layouts, with the fields around the blocks kept by number.
//!
//! Matching, in two passes over the layouts that apply: first the field count must be
//! exactly the layout's; then (newer firmware appends fields, fact sheet §5) it may be
//! longer, the extra trailing fields kept by number. In both, the fields the layout names as
//! a block must parse as one ([`fix`]): a layout shifted by one field fails there (the time
//! lands in a decimal field), so a message whose fields fit no layout keeps no position.
//! When the count fits a layout exactly and a field it names is of the wrong form (`fast`
//! where the speed is), the message is broken, not of another layout ([`Misfit`]).

use super::fix::{self, Fix, CELL_FIELDS, GNSS_FIELDS};
use super::message::Field;
use super::MAX_FIXES;
use crate::DecodeError;

/// Fields in one whole fix block.
pub(super) const BLOCK: usize = GNSS_FIELDS + CELL_FIELDS;

/// How a named field's value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    U64,
    F64,
    /// Hex digits, kept as a number (LAC, cell id).
    Hex,
    Text,
    /// No documented name: kept as `field_<n>`, text.
    Raw,
}

pub(super) type Named = (&'static str, Kind);

pub(super) const RAW: Named = ("", Kind::Raw);

/// A field with what to call it.
#[derive(Debug, Clone, Copy)]
pub(super) struct IoField<'a> {
    pub field: Field<'a>,
    pub name: Named,
}

/// A message's fields laid out: named fields before the blocks, the blocks, fields after.
#[derive(Debug, Default)]
pub(super) struct Placed<'a> {
    pub head: Vec<IoField<'a>>,
    pub fixes: Vec<Fix<'a>>,
    pub tail: Vec<IoField<'a>>,
}

/// What the layouts say about a message.
#[derive(Debug)]
pub(super) enum Outcome<'a> {
    /// A layout fits; `fixes` may be empty (Number 0, a type without a block).
    Placed(Placed<'a>),
    /// The report type has no layout here.
    Unknown,
    /// The report type's layouts do not fit the fields; why.
    Mismatch(DecodeError),
}

/// Which device types a layout is for.
#[derive(Debug, Clone, Copy)]
enum Devices {
    Any,
    Only(&'static [&'static str]),
}

/// One documented field list around the blocks.
#[derive(Debug)]
pub(super) struct Variant {
    devices: Devices,
    before: &'static [Named],
    /// A Number field (0–15) precedes the blocks; otherwise exactly one block.
    numbered: bool,
    after: &'static [Named],
}

/// Where a report type's position is.
#[derive(Debug)]
pub(super) enum Shape {
    /// Fix blocks in the middle, per the first fitting variant.
    Blocks(&'static [Variant]),
    /// A report mask says which fields are present (`mask`).
    Can,
    Obd,
    /// No fix block at all.
    NoFix,
}

const GL: &[&str] = &["02", "21", "1A", "30", "2C"];
const GV200: &[&str] = &["04", "35"];
const GV: &[&str] = &[
    "04", "35", "06", "25", "08", "3F", "0F", "2F", "10", "1F", "36", "27", "31", "41", "4F", "50",
    "6E", "F1", "802004", "802005", "80201E",
];
/// GV500 family: the VIN takes the device name's place and the name follows it.
const VIN_FIRST: &[&str] = &["1F", "36"];

const fn v(
    devices: Devices,
    before: &'static [Named],
    numbered: bool,
    after: &'static [Named],
) -> Variant {
    Variant {
        devices,
        before,
        numbered,
        after,
    }
}

use Devices::{Any, Only};
use Kind::{Text, F64, U64};

const GL_BEFORE: &[Named] = &[("report_id", U64), ("report_type", U64)];
const GV_BEFORE: &[Named] = &[("external_power_mv", U64), ("report_id_type", Text)];
const BATTERY: &[Named] = &[("battery_percent", U64)];
const MILEAGE: &[Named] = &[("mileage_km", F64)];

const POSITION: &[Variant] = &[
    v(Only(GL), GL_BEFORE, true, BATTERY),
    v(Only(GV), GV_BEFORE, true, MILEAGE),
    v(Any, &[RAW, RAW], true, &[RAW]),
];

const FRI: &[Variant] = &[
    v(Only(GL), GL_BEFORE, true, BATTERY),
    v(
        Only(GV200),
        GV_BEFORE,
        true,
        &[
            ("mileage_km", F64),
            ("hour_meter", Text),
            ("analog_in_1", U64),
            ("analog_in_2", U64),
            ("backup_battery_percent", U64),
            ("device_status", Text),
            RAW,
            RAW,
        ],
    ),
    v(
        Only(GV),
        GV_BEFORE,
        true,
        &[("mileage_km", F64), ("hour_meter", Text)],
    ),
    v(Only(GV), GV_BEFORE, true, MILEAGE),
    v(Any, &[RAW, RAW], true, &[RAW]),
];

const ERI: &[Variant] = &[v(
    Any,
    &[
        ("eri_mask", Text),
        ("external_power_mv", U64),
        ("report_id_type", Text),
    ],
    true,
    &[("mileage_km", F64), ("hour_meter", Text)],
)];

const IGN: &[Variant] = &[
    v(Any, &[("ignition_off_duration_s", U64)], false, &[]),
    v(
        Any,
        &[("ignition_off_duration_s", U64)],
        false,
        &[("hour_meter", Text), ("mileage_km", F64)],
    ),
];
const IGF: &[Variant] = &[
    v(Any, &[("ignition_on_duration_s", U64)], false, &[]),
    v(
        Any,
        &[("ignition_on_duration_s", U64)],
        false,
        &[("hour_meter", Text), ("mileage_km", F64)],
    ),
];
const STT: &[Variant] = &[v(Any, &[("motion_state", Text)], false, &[])];
const BPL: &[Variant] = &[
    v(Any, &[("battery_voltage_v", F64)], false, &[]),
    v(Any, &[("battery_voltage_v", F64)], false, &[RAW]),
];
const LBC: &[Variant] = &[v(Any, &[("call_number", Text)], false, &[])];
/// Power and charging events: the last known fix and the serving cell, with one field
/// before or after it depending on the model.
const POWER: &[Variant] = &[
    v(Any, &[], false, &[]),
    v(Any, &[], false, &[RAW]),
    v(Any, &[RAW], false, &[]),
];
const IDN: &[Variant] = &[v(Any, &[RAW], false, &[RAW])];
const IDF: &[Variant] = &[v(Any, &[RAW, RAW], false, &[RAW])];

/// The layout of report type `GT<kind>`, `None` when it has none here.
pub(super) fn shape(kind: &str) -> Option<Shape> {
    Some(match kind {
        "FRI" => Shape::Blocks(FRI),
        "GEO" | "SPD" | "SOS" | "RTL" | "PNL" | "NMR" | "DIS" | "DOG" | "IGL" | "HBM" | "TOW"
        | "EPS" | "IOB" | "GES" | "GIN" | "GOT" | "LSA" => Shape::Blocks(POSITION),
        "ERI" => Shape::Blocks(ERI),
        "IGN" => Shape::Blocks(IGN),
        "IGF" => Shape::Blocks(IGF),
        "STT" => Shape::Blocks(STT),
        "BPL" => Shape::Blocks(BPL),
        "LBC" => Shape::Blocks(LBC),
        "EPN" | "EPF" | "BTC" | "STC" => Shape::Blocks(POWER),
        "IDN" => Shape::Blocks(IDN),
        "IDF" => Shape::Blocks(IDF),
        "CAN" => Shape::Can,
        "OBD" => Shape::Obd,
        "INF" | "GPS" | "PNA" | "PFA" | "PDP" | "VER" | "BAT" | "IOS" | "CSQ" | "CID" | "TMZ" => {
            Shape::NoFix
        }
        _ => return None,
    })
}

/// The device type of a protocol version: `1A` of `1A0102`, `802004` of `8020040102`.
pub(super) fn device_type(version: &str) -> &str {
    let len = if version.len() > 6 { 6 } else { 2 };
    version.get(..len).unwrap_or_default()
}

/// Whether the device type puts the VIN where others put the device name.
pub(super) fn vin_first(device: &str) -> bool {
    is_in(VIN_FIRST, device)
}

fn is_in(list: &[&str], device: &str) -> bool {
    list.iter().any(|d| d.eq_ignore_ascii_case(device))
}

/// Why no variant fits a message.
#[derive(Debug)]
pub(super) enum Misfit {
    /// A variant's field count fits exactly but a field it names is of the wrong form, and
    /// no other variant fits: the message is broken (a problem, not a record).
    Broken(DecodeError),
    /// No variant fits the count, or only with extra fields and then a wrong field: a
    /// layout this decoder does not have (a record without a position). The first wrong
    /// field, if any.
    NoFit(Option<DecodeError>),
}

/// Lays out `middle` by the first variant that fits (see the module doc).
pub(super) fn place<'a>(
    variants: &[Variant],
    device: &str,
    middle: &[Field<'a>],
    now_ms: i64,
) -> Result<Placed<'a>, Misfit> {
    let applies = |v: &&Variant| match v.devices {
        Devices::Any => true,
        Devices::Only(list) => is_in(list, device),
    };
    let mut broken = None;
    let mut wrong_field = None;
    for exact in [true, false] {
        for variant in variants.iter().filter(applies) {
            match try_variant(variant, middle, exact, now_ms) {
                Ok(placed) => return Ok(placed),
                Err(Some(e)) if exact => {
                    broken.get_or_insert(e);
                }
                Err(Some(e)) => {
                    wrong_field.get_or_insert(e);
                }
                Err(None) => {}
            }
        }
    }
    Err(match broken {
        Some(e) => Misfit::Broken(e),
        None => Misfit::NoFit(wrong_field),
    })
}

/// `Err(None)`: the field count does not fit; `Err(Some)`: it does, but a field is wrong.
fn try_variant<'a>(
    variant: &Variant,
    middle: &[Field<'a>],
    exact: bool,
    now_ms: i64,
) -> Result<Placed<'a>, Option<DecodeError>> {
    let mut at = variant.before.len();
    let count = if variant.numbered {
        let field = middle.get(at).ok_or(None)?;
        at += 1;
        number(field).ok_or_else(|| {
            Some(DecodeError::new(
                field.offset,
                format!(
                    "Number {:?} (field {}) is not 0 to {MAX_FIXES}",
                    super::message::shorten(field.text),
                    field.number
                ),
            ))
        })?
    } else {
        1
    };
    let end = at + count * BLOCK;
    let after = middle.len().checked_sub(end).ok_or(None)?;
    // Appended fields are taken only behind blocks that parse (which is what shows the
    // reading is right): with Number 0 the count must be exact.
    let fits = if exact {
        after == variant.after.len()
    } else {
        after > variant.after.len() && count > 0
    };
    if !fits {
        return Err(None);
    }
    let mut fixes = Vec::with_capacity(count);
    for i in 0..count {
        let from = at + i * BLOCK;
        let block = middle.get(from..from + BLOCK).unwrap_or_default();
        fixes.push(fix::parse_block(block, i + 1, now_ms).map_err(Some)?);
    }
    Ok(Placed {
        head: name_fields(
            middle.get(..variant.before.len()).unwrap_or_default(),
            variant.before,
        ),
        fixes,
        tail: name_fields(middle.get(end..).unwrap_or_default(), variant.after),
    })
}

/// Pairs fields with names; fields past the names are kept by number.
pub(super) fn name_fields<'a>(fields: &[Field<'a>], names: &[Named]) -> Vec<IoField<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, &field)| IoField {
            field,
            name: names.get(i).copied().unwrap_or(RAW),
        })
        .collect()
}

/// A Number field: 0..=15 in decimal.
fn number(field: &Field<'_>) -> Option<usize> {
    let text = field.text;
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n <= MAX_FIXES)
}
