//! `event_id` / `custom_event`: a record's event as NGP's predefined id (sheet §7) where its
//! protocol's registry entry says it is a [`StandardEvent`], else as text. This module names
//! standard events only, never a protocol's event names.
//!
//! ```text
//! standard event                 event_id    standard event                 event_id
//! low_battery                    1           harsh_braking                  241
//! power_cut                      2           crash                          242
//! power_restored                 4           idle_end / idle_start          301 / 302
//! tow                            101         movement_start / _end          406 / 407
//! vibration                      113         input n changed (n = 1 … 8)    500 + n
//! gnss_jamming                   116         output n changed (n = 1 … 8)   550 + n
//! sos                            202         ignition_off / ignition_on     604 / 605
//! overspeed                      224         gnss_recovered / gnss_lost     608 / 609
//! harsh_cornering / acceleration 239 / 240
//! ```
//!
//! Inputs and outputs past 8 have no id ("event ids exist only for inputs/outputs 1–8") and
//! are sent as text, like every event without a standard meaning.

use firmware_protocols::{Record, StandardEvent};

/// NGP has event ids for inputs and outputs 1 … 8.
const MAX_IO_EVENT_INDEX: u8 = 8;

/// What a record's `event` becomes.
#[derive(Debug, PartialEq)]
pub(super) enum Event<'a> {
    None,
    /// A predefined `event_id` (sheet §7).
    Id(u32),
    /// No standard id fits: sent as `custom_event`.
    Text(&'a str),
}

pub(super) fn event(record: &Record) -> Event<'_> {
    let Some(text) = record.event.as_deref() else {
        return Event::None;
    };
    match record.standard_event().and_then(event_id) {
        Some(id) => Event::Id(id),
        None => Event::Text(text),
    }
}

/// The predefined id of a standard event, if NGP has one.
pub(super) fn event_id(event: StandardEvent) -> Option<u32> {
    use StandardEvent::*;
    Some(match event {
        LowBattery => 1,
        PowerCut => 2,
        PowerRestored => 4,
        Tow => 101,
        Vibration => 113,
        GnssJamming => 116,
        Sos => 202,
        Overspeed => 224,
        HarshCornering => 239,
        HarshAcceleration => 240,
        HarshBraking => 241,
        Crash => 242,
        IdleEnd => 301,
        IdleStart => 302,
        MovementStart => 406,
        MovementEnd => 407,
        InputChanged(n) if (1..=MAX_IO_EVENT_INDEX).contains(&n) => 500 + u32::from(n),
        OutputChanged(n) if (1..=MAX_IO_EVENT_INDEX).contains(&n) => 550 + u32::from(n),
        InputChanged(_) | OutputChanged(_) => return None,
        IgnitionOff => 604,
        IgnitionOn => 605,
        GnssRecovered => 608,
        GnssLost => 609,
    })
}
