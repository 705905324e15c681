//! The sentences besides RMC and GGA that add to an epoch: GNS, GLL, VTG and GSA.
//!
//! ```text
//! GNS   $xxGNS,time,lat,N/S,lon,E/W,mode c…c,sats,hdop,alt,geoid sep,dgps age,dgps station[,navstatus]
//!         mode: one letter per system (GPS, GLONASS, Galileo, BeiDou, QZSS, NavIC…):
//!         N no fix, A autonomous, D differential, P precise, R RTK, F float RTK,
//!         E estimated, M manual, S simulator
//! GLL   $xxGLL,lat,N/S,lon,E/W,time,status A/V[,mode]
//! VTG   $xxVTG,course true,T,course magnetic,M,speed kn,N,speed km/h,K[,mode]
//! GSA   $xxGSA,selection M/A,fix 1/2/3,sv×12,PDOP,HDOP,VDOP[,system id]
//!         fix: 1 no fix, 2 2D, 3 3D; NMEA 4.1 adds the GNSS system id (1 GPS, 2 GLONASS,
//!         3 Galileo, 4 BeiDou, 5 QZSS, 6 NavIC); multi-constellation receivers send one
//!         GSA per system, all with the combined solution's DOPs
//! ```
//!
//! A field that is there but does not parse makes the sentence a problem with the field named,
//! as for RMC and GGA. Empty fields are `None`.

use super::{parse_uint, Fields, KMH_PER_KNOT};
use crate::DecodeError;

/// GNS fields up to the altitude must be there.
const GNS_MIN_FIELDS: usize = 9;
/// GLL fields up to the status must be there (the mode came with NMEA 2.3).
const GLL_MIN_FIELDS: usize = 6;
/// VTG fields up to the km/h unit must be there (the mode came with NMEA 2.3).
const VTG_MIN_FIELDS: usize = 8;
/// GSA fields up to the VDOP must be there (the system id came with NMEA 4.1).
const GSA_MIN_FIELDS: usize = 17;
/// Satellite id fields in a GSA.
const GSA_SATELLITE_FIELDS: usize = 12;

#[derive(Debug, Clone)]
pub(super) struct Gns {
    pub talker: [u8; 2],
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub mode: Option<String>,
    pub satellites: Option<u8>,
    pub hdop: Option<f64>,
    pub altitude_m: Option<f64>,
    pub geoid_separation_m: Option<f64>,
    pub nav_status: Option<String>,
}

impl Gns {
    /// A fix from at least one system: any mode letter but `N`.
    pub fn valid(&self) -> Option<bool> {
        self.mode.as_deref().map(|m| m.bytes().any(|b| b != b'N'))
    }
}

#[derive(Debug, Clone)]
pub(super) struct Gll {
    pub talker: [u8; 2],
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub status: Option<u8>,
    pub mode: Option<String>,
}

impl Gll {
    /// Status `A` and a mode other than `N`.
    pub fn valid(&self) -> Option<bool> {
        let status = self.status.map(|s| s == b'A');
        let mode = self.mode.as_deref().map(|m| m != "N");
        both(status, mode)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Vtg {
    pub talker: [u8; 2],
    pub course_deg: Option<f64>,
    pub course_magnetic_deg: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub mode: Option<String>,
}

impl Vtg {
    /// Only the mode says anything: `N` is no fix.
    pub fn valid(&self) -> Option<bool> {
        self.mode.as_deref().map(|m| m != "N")
    }
}

#[derive(Debug, Clone)]
pub(super) struct Gsa {
    pub talker: [u8; 2],
    pub selection: Option<String>,
    pub fix_mode: Option<u64>,
    pub satellite_ids: Vec<String>,
    pub pdop: Option<f64>,
    pub hdop: Option<f64>,
    pub vdop: Option<f64>,
    pub system_id: Option<String>,
}

impl Gsa {
    /// Fix mode 1 is no fix; 2 (2D) and 3 (3D) are fixes.
    pub fn valid(&self) -> Option<bool> {
        self.fix_mode.map(|m| m >= 2)
    }
}

/// Both verdicts, or whichever one there is.
pub(super) fn both(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a && b),
        (a, b) => a.or(b),
    }
}

pub(super) fn parse_gns(
    talker: [u8; 2],
    f: &Fields<'_>,
) -> Result<(Option<i64>, Gns), DecodeError> {
    const K: &str = "GNS";
    f.need(K, GNS_MIN_FIELDS)?;
    let time = f.time(K, 1)?;
    let lat = f.coordinate(K, 2, true)?;
    let lon = f.coordinate(K, 4, false)?;
    let mode = match f.text(6) {
        "" => None,
        m if m.len() <= 8 && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
        _ => return Err(f.bad(K, 6, "mode", "expected one letter per system")),
    };
    let satellites = parse_uint(f.text(7))
        .ok_or_else(|| f.bad(K, 7, "satellites in use", "expected a number"))?
        .map(|n| u8::try_from(n).map_err(|_| f.bad(K, 7, "satellites in use", "more than 255")))
        .transpose()?;
    Ok((
        time,
        Gns {
            talker,
            lat,
            lon,
            mode,
            satellites,
            hdop: f.decimal(K, 8, "HDOP", false)?,
            altitude_m: f.decimal(K, 9, "altitude", true)?,
            geoid_separation_m: f.decimal(K, 10, "geoid separation", true)?,
            nav_status: f.letter(K, 13, "navigational status")?,
        },
    ))
}

pub(super) fn parse_gll(
    talker: [u8; 2],
    f: &Fields<'_>,
) -> Result<(Option<i64>, Gll), DecodeError> {
    const K: &str = "GLL";
    f.need(K, GLL_MIN_FIELDS)?;
    let lat = f.coordinate(K, 1, true)?;
    let lon = f.coordinate(K, 3, false)?;
    let time = f.time(K, 5)?;
    let status = match f.text(6).as_bytes() {
        [] => None,
        [s @ (b'A' | b'V')] => Some(*s),
        _ => return Err(f.bad(K, 6, "status", "expected A or V")),
    };
    Ok((
        time,
        Gll {
            talker,
            lat,
            lon,
            status,
            mode: f.letter(K, 7, "mode")?,
        },
    ))
}

pub(super) fn parse_vtg(talker: [u8; 2], f: &Fields<'_>) -> Result<Vtg, DecodeError> {
    const K: &str = "VTG";
    f.need(K, VTG_MIN_FIELDS)?;
    for (at, unit) in [(2, "T"), (4, "M"), (6, "N"), (8, "K")] {
        if !(f.text(at).is_empty() || f.text(at) == unit) {
            return Err(f.bad(K, at, "unit", &format!("expected {unit}")));
        }
    }
    let course_deg = f.decimal(K, 1, "course over ground, true", false)?;
    let course_magnetic_deg = f.decimal(K, 3, "course over ground, magnetic", false)?;
    for (at, course) in [(1, course_deg), (3, course_magnetic_deg)] {
        if course.is_some_and(|c| c > 360.0) {
            return Err(f.bad(K, at, "course over ground", "more than 360 degrees"));
        }
    }
    let knots = f.decimal(K, 5, "speed over ground, knots", false)?;
    let kmh = f.decimal(K, 7, "speed over ground, km/h", false)?;
    Ok(Vtg {
        talker,
        course_deg,
        course_magnetic_deg,
        // The receiver's own km/h, else its knots converted.
        speed_kmh: kmh.or(knots.map(|kn| kn * KMH_PER_KNOT)),
        mode: f.letter(K, 9, "mode")?,
    })
}

pub(super) fn parse_gsa(talker: [u8; 2], f: &Fields<'_>) -> Result<Gsa, DecodeError> {
    const K: &str = "GSA";
    f.need(K, GSA_MIN_FIELDS)?;
    let selection = match f.text(1) {
        "" => None,
        s @ ("M" | "A") => Some(s.to_owned()),
        _ => return Err(f.bad(K, 1, "selection mode", "expected M or A")),
    };
    let fix_mode = match parse_uint(f.text(2)) {
        Some(m @ (None | Some(1..=3))) => m,
        _ => return Err(f.bad(K, 2, "fix mode", "expected 1, 2 or 3")),
    };
    let mut satellite_ids = Vec::new();
    for at in 3..3 + GSA_SATELLITE_FIELDS {
        match parse_uint(f.text(at)) {
            Some(None) => {}
            Some(Some(_)) => satellite_ids.push(f.text(at).to_owned()),
            None => return Err(f.bad(K, at, "satellite id", "expected a number")),
        }
    }
    let system_id = match f.text(18) {
        "" => None,
        id if id.len() == 1 && id.bytes().all(|b| b.is_ascii_hexdigit()) => Some(id.to_owned()),
        _ => return Err(f.bad(K, 18, "system id", "expected one hex digit")),
    };
    Ok(Gsa {
        talker,
        selection,
        fix_mode,
        satellite_ids,
        pdop: f.decimal(K, 15, "PDOP", false)?,
        hdop: f.decimal(K, 16, "HDOP", false)?,
        vdop: f.decimal(K, 17, "VDOP", false)?,
        system_id,
    })
}
