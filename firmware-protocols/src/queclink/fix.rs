//! Fix blocks: checking that 12 fields are one, parsing it, and finding where the blocks are
//! among a report's middle fields.
//!
//! Field lists differ per model and firmware, so the blocks are located by shape rather
//! than by a table of layouts (fact sheet §5: "locate the fix block by the Number field and
//! the known block size"):
//!
//! - numbered reports (GTFRI …): the first field `p` (at most [`MAX_PREFIX`] fields in) that
//!   holds a Number `k` in 1..=15 and is followed by `k` fields-exact fix blocks;
//! - single-block reports (GTIGN …): the first `q` where 12 fields form a fix block.
//!
//! A block is checked field by field (accuracy and speed unsigned decimals, longitude within
//! ±180 and latitude within ±90 and both or neither present, a 14-digit UTC time, MCC and MNC
//! up to 4 digits, LAC and cell id up to 8 hex digits), which a block shifted by even one
//! field fails: a decimal lands in the time field or the time in the MCC field. Candidates
//! whose blocks carry a time or a position are preferred over empty-ish ones, so runs of
//! empty fields are not mistaken for a block while a real one is there; among empty-ish
//! readings the one with the most cell fields and a documented accuracy wins.
//!
//! When nothing fits, the diagnostic comes from the candidate with the fewest bad fields,
//! which is the intended layout with its one broken field in practice.

use super::message::{shorten, Field};
use super::{FIX_BLOCK_FIELDS, MAX_FIXES};
use crate::record::days_from_civil;
use crate::DecodeError;

/// The most report-specific fields looked at before the Number field or the single block
/// (GL300: 2, GV300 GTERI: 3; newer models a few more).
pub(super) const MAX_PREFIX: usize = 12;

/// One parsed fix block.
#[derive(Debug, Clone)]
pub(super) struct Fix<'a> {
    /// GPS accuracy: 0 = no current fix, 1–50 = HDOP.
    pub accuracy: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub azimuth: Option<f64>,
    pub altitude_m: Option<f64>,
    /// Latitude and longitude, degrees; both or neither.
    pub position: Option<(f64, f64)>,
    /// The GPS UTC time field (14 digits), when present.
    pub utc_text: Option<&'a str>,
    /// That time as ms since the epoch, when it is a real calendar time.
    pub utc_ms: Option<i64>,
    pub mcc: Option<u64>,
    pub mnc: Option<u64>,
    pub lac: Option<u64>,
    pub cell_id: Option<u64>,
    /// Field 12: `00` reserved on many models, a value on some.
    pub reserved: &'a str,
}

impl Fix<'_> {
    /// A block with a time or a position, as opposed to one made of empty fields only.
    fn is_strong(&self) -> bool {
        self.utc_text.is_some() || self.position.is_some()
    }

    /// How much a block without time or position still looks like one: its cell fields
    /// (present whenever the modem is registered) and an accuracy in the documented 0–50.
    fn weak_score(&self) -> usize {
        let cells = [self.mcc, self.mnc, self.lac, self.cell_id];
        let accuracy = self.accuracy.is_some_and(|a| a <= 50.0);
        cells.iter().filter(|c| c.is_some()).count() + usize::from(accuracy)
    }
}

/// Keeps the better of two readings made of empty-ish blocks only; the earlier on a tie.
fn keep_weak<'a>(weak: &mut Option<(usize, Located<'a>)>, found: Located<'a>) {
    let score = found.fixes.iter().map(Fix::weak_score).sum::<usize>();
    if weak.as_ref().is_none_or(|(best, _)| score > *best) {
        *weak = Some((score, found));
    }
}

/// Why some fields were not a fix block: how many fields were bad (to rank candidate
/// layouts) and the first one.
#[derive(Debug)]
pub(super) struct NotABlock {
    bad_fields: usize,
    pub first: DecodeError,
}

/// Where the blocks are: `middle[..prefix_len]` before them, `middle[suffix_start..]` after.
#[derive(Debug)]
pub(super) struct Located<'a> {
    pub prefix_len: usize,
    /// A Number field sits at `middle[prefix_len]` (numbered reports).
    pub numbered: bool,
    pub fixes: Vec<Fix<'a>>,
    pub suffix_start: usize,
}

/// Whether readings whose blocks have neither a time nor a position are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Empty {
    /// Only when no reading with a time or a position exists (report types known to carry
    /// a block: a no-fix block may well be all empty).
    Allowed,
    /// Never (report types that may have no block at all).
    Refused,
}

/// Parses 12 fields as fix block number `fix_no` (1-based, for messages).
pub(super) fn parse_block<'a>(block: &[Field<'a>], fix_no: usize) -> Result<Fix<'a>, NotABlock> {
    let mut bad = Bad::default();
    // Missing fields (a block cut short) read as empty, so a short block can still be
    // ranked by its bad fields; it is refused below whatever they hold.
    let end = block.last().map_or(0, |f| f.offset + f.text.len());
    let get = |i: usize| {
        block.get(i).copied().unwrap_or(Field {
            text: "",
            offset: end,
            number: 0,
        })
    };
    let (acc, speed, azimuth, alt, lon, lat) = (get(0), get(1), get(2), get(3), get(4), get(5));
    let (time, mcc, mnc, lac, cell, reserved) = (get(6), get(7), get(8), get(9), get(10), get(11));

    let accuracy = bad.check(
        &acc,
        fix_no,
        "GPS accuracy",
        decimal(acc.text, false),
        "an unsigned decimal",
    );
    let speed_kmh = bad.check(
        &speed,
        fix_no,
        "speed",
        decimal(speed.text, false),
        "an unsigned decimal (km/h)",
    );
    let azimuth = bad.check(
        &azimuth,
        fix_no,
        "azimuth",
        decimal(azimuth.text, false).filter(|v| v.is_none_or(|d| d <= 360.0)),
        "degrees 0 to 360",
    );
    let altitude_m = bad.check(
        &alt,
        fix_no,
        "altitude",
        decimal(alt.text, true),
        "a signed decimal (m)",
    );
    let lon_v = bad.check(
        &lon,
        fix_no,
        "longitude",
        decimal(lon.text, true).filter(|v| v.is_none_or(|d| d.abs() <= 180.0)),
        "signed decimal degrees within ±180",
    );
    let lat_v = bad.check(
        &lat,
        fix_no,
        "latitude",
        decimal(lat.text, true).filter(|v| v.is_none_or(|d| d.abs() <= 90.0)),
        "signed decimal degrees within ±90",
    );
    let position = match (lat_v, lon_v) {
        (Some(la), Some(lo)) => Some((la, lo)),
        (None, None) => None,
        _ => {
            // One value and one empty field; a malformed field was counted already.
            if lat.is_empty() || lon.is_empty() {
                let missing = if lat.is_empty() { &lat } else { &lon };
                bad.note(missing, || {
                    format!(
                        "fix {fix_no}: longitude {:?} and latitude {:?}: one is empty",
                        shorten(lon.text),
                        shorten(lat.text)
                    )
                });
            }
            None
        }
    };
    let utc_text = bad.check(
        &time,
        fix_no,
        "GPS UTC time",
        digits14(time.text),
        "YYYYMMDDHHMMSS",
    );
    let mcc_v = bad.check(
        &mcc,
        fix_no,
        "MCC",
        uint(mcc.text, 4, 10),
        "up to 4 decimal digits",
    );
    let mnc_v = bad.check(
        &mnc,
        fix_no,
        "MNC",
        uint(mnc.text, 4, 10),
        "up to 4 decimal digits",
    );
    let lac_v = bad.check(
        &lac,
        fix_no,
        "LAC",
        uint(lac.text, 8, 16),
        "up to 8 hex digits",
    );
    let cell_v = bad.check(
        &cell,
        fix_no,
        "cell id",
        uint(cell.text, 8, 16),
        "up to 8 hex digits",
    );

    if block.len() < FIX_BLOCK_FIELDS {
        return Err(short_block(block, fix_no, bad.count));
    }
    if let Some(first) = bad.first {
        return Err(NotABlock {
            bad_fields: bad.count,
            first,
        });
    }
    Ok(Fix {
        accuracy,
        speed_kmh,
        azimuth,
        altitude_m,
        position,
        utc_text,
        utc_ms: utc_text.and_then(utc_ms),
        mcc: mcc_v,
        mnc: mnc_v,
        lac: lac_v,
        cell_id: cell_v,
        reserved: reserved.text,
    })
}

fn short_block(block: &[Field<'_>], fix_no: usize, bad_fields: usize) -> NotABlock {
    let offset = block.first().map_or(0, |f| f.offset);
    NotABlock {
        bad_fields: bad_fields + 1,
        first: DecodeError::new(
            offset,
            format!(
                "fix {fix_no}: {} fields where a fix block has {FIX_BLOCK_FIELDS}",
                block.len()
            ),
        ),
    }
}

/// Counts bad fields and keeps the first one's error.
#[derive(Default)]
struct Bad {
    count: usize,
    first: Option<DecodeError>,
}

impl Bad {
    /// `parsed`: `Some(Some(v))` a value, `Some(None)` an empty field, `None` malformed.
    fn check<T>(
        &mut self,
        field: &Field<'_>,
        fix_no: usize,
        name: &str,
        parsed: Option<Option<T>>,
        expected: &str,
    ) -> Option<T> {
        match parsed {
            Some(value) => value,
            None => {
                self.note(field, || {
                    format!(
                        "fix {fix_no}: {name} {:?} (field {}) is not {expected}",
                        shorten(field.text),
                        field.number
                    )
                });
                None
            }
        }
    }

    /// Counts a bad field; only the first one's message is built (candidate layouts are
    /// tried and thrown away by the dozen on garbled input).
    #[cold]
    fn note(&mut self, field: &Field<'_>, reason: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(DecodeError::new(field.offset, reason()));
        }
    }
}

/// A decimal such as `4.3`, `-70.0`, `121.354335` or `92`: digits, at most one point with
/// digits on both sides, a leading `-` when `signed`. `Some(None)` for an empty field,
/// `None` when malformed. (`str::parse::<f64>` alone would take `inf`, `1e5` or `+1`.)
pub(super) fn decimal(text: &str, signed: bool) -> Option<Option<f64>> {
    if text.is_empty() {
        return Some(None);
    }
    let digits = match text.strip_prefix('-') {
        Some(rest) if signed => rest,
        Some(_) => return None,
        None => text,
    };
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return None;
    }
    text.parse::<f64>().ok().map(Some)
}

/// Up to `max_len` digits in `radix`: `Some(None)` when empty, `None` when malformed.
fn uint(text: &str, max_len: usize, radix: u32) -> Option<Option<u64>> {
    if text.is_empty() {
        return Some(None);
    }
    if text.len() > max_len || !text.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok().map(Some)
}

fn digits14(text: &str) -> Option<Option<&str>> {
    if text.is_empty() {
        Some(None)
    } else if text.len() == 14 && text.bytes().all(|c| c.is_ascii_digit()) {
        Some(Some(text))
    } else {
        None
    }
}

/// `YYYYMMDDHHMMSS` (UTC) as ms since the epoch; `None` for a date that does not exist.
pub(super) fn utc_ms(text: &str) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(8..10)?, num(10..12)?, num(12..14)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// A Number field: 1..=15 in decimal.
fn number(field: &Field<'_>) -> Option<usize> {
    let text = field.text;
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| (1..=MAX_FIXES).contains(n))
}

/// Blocks `0..count` after position `p` (the Number field), or why not. A Number whose
/// blocks run past the send time fails with `None`: ranking it costs a parse of what is
/// there, done only when no candidate fits ([`short_of_fields`]).
fn numbered_at<'a>(
    middle: &[Field<'a>],
    p: usize,
    count: usize,
) -> Result<Located<'a>, Option<NotABlock>> {
    let start = p + 1;
    // count <= MAX_FIXES, so this cannot overflow; the allocation is bounded the same way.
    let end = start + count * FIX_BLOCK_FIELDS;
    if end > middle.len() {
        return Err(None);
    }
    let mut fixes = Vec::with_capacity(count);
    let mut bad: Option<NotABlock> = None;
    for i in 0..count {
        let from = start + i * FIX_BLOCK_FIELDS;
        let block = middle
            .get(from..from + FIX_BLOCK_FIELDS)
            .unwrap_or_default();
        match parse_block(block, i + 1) {
            Ok(fix) => fixes.push(fix),
            Err(e) => match &mut bad {
                Some(b) => b.bad_fields += e.bad_fields,
                None => bad = Some(e),
            },
        }
    }
    match bad {
        Some(e) => Err(Some(e)),
        None => Ok(Located {
            prefix_len: p,
            numbered: true,
            fixes,
            suffix_start: end,
        }),
    }
}

/// Why Number `count` at `p` does not fit, ranked by the bad fields of the blocks that are
/// there (the last one cut short) plus one: a right Number whose last block is short beats
/// a shifted reading of the fields.
fn short_of_fields(middle: &[Field<'_>], p: usize, count: usize) -> NotABlock {
    let start = p + 1;
    let bad_fields = 1
        + (0..count)
            .map(|i| {
                let from = (start + i * FIX_BLOCK_FIELDS).min(middle.len());
                let to = (from + FIX_BLOCK_FIELDS).min(middle.len());
                let block = middle.get(from..to).unwrap_or_default();
                if block.is_empty() {
                    return 0;
                }
                let short = block.len() < FIX_BLOCK_FIELDS;
                match parse_block(block, i + 1) {
                    Ok(_) => 0,
                    // A short block's own penalty is the one added above.
                    Err(e) if short => e.bad_fields.saturating_sub(1),
                    Err(e) => e.bad_fields,
                }
            })
            .sum::<usize>();
    let at = middle.get(p).map_or(0, |f| f.offset);
    NotABlock {
        bad_fields,
        first: DecodeError::new(
            at,
            format!(
                "Number {count} (field {}) needs {} fields of fix blocks, only {} follow \
                 before the send time",
                middle.get(p).map_or(0, |f| f.number),
                count * FIX_BLOCK_FIELDS,
                middle.len().saturating_sub(start)
            ),
        ),
    }
}

/// Finds a Number field followed by that many fix blocks. `Err` carries the best
/// diagnostic, `None` inside it when no field even looked like a Number.
pub(super) fn find_numbered<'a>(
    middle: &[Field<'a>],
    empty: Empty,
) -> Result<Located<'a>, Option<NotABlock>> {
    let candidates = || {
        middle
            .iter()
            .enumerate()
            .take(MAX_PREFIX + 1)
            .filter_map(|(p, field)| Some((p, number(field)?)))
    };
    let mut weak: Option<(usize, Located<'a>)> = None;
    for (p, count) in candidates() {
        match numbered_at(middle, p, count) {
            Ok(found) if found.fixes.iter().any(Fix::is_strong) => return Ok(found),
            Ok(found) => keep_weak(&mut weak, found),
            Err(_) => {}
        }
    }
    if let (Some((_, found)), Empty::Allowed) = (weak, empty) {
        return Ok(found);
    }
    // Nothing fits: the diagnostic, in a second pass so the happy path never pays for it.
    let mut best: Option<NotABlock> = None;
    for (p, count) in candidates() {
        match numbered_at(middle, p, count) {
            Ok(_) => {}
            Err(Some(e)) => keep_best(&mut best, e),
            Err(None) => keep_best(&mut best, short_of_fields(middle, p, count)),
        }
    }
    Err(best)
}

/// Finds one fix block without a Number field before it.
pub(super) fn find_single<'a>(
    middle: &[Field<'a>],
    empty: Empty,
) -> Result<Located<'a>, Option<NotABlock>> {
    let Some(last) = middle.len().checked_sub(FIX_BLOCK_FIELDS) else {
        return Err(None);
    };
    let mut weak: Option<(usize, Located<'a>)> = None;
    let mut best: Option<NotABlock> = None;
    for q in 0..=last.min(MAX_PREFIX) {
        let block = middle.get(q..q + FIX_BLOCK_FIELDS).unwrap_or_default();
        let found = parse_block(block, 1).map(|fix| Located {
            prefix_len: q,
            numbered: false,
            fixes: vec![fix],
            suffix_start: q + FIX_BLOCK_FIELDS,
        });
        match found {
            Ok(found) if found.fixes.iter().any(Fix::is_strong) => return Ok(found),
            Ok(found) => keep_weak(&mut weak, found),
            Err(e) => keep_best(&mut best, e),
        }
    }
    match (weak, empty) {
        (Some((_, found)), Empty::Allowed) => Ok(found),
        _ => Err(best),
    }
}

/// Keeps the candidate with the fewest bad fields; the earlier one on a tie.
fn keep_best(best: &mut Option<NotABlock>, e: NotABlock) {
    if best.as_ref().is_none_or(|b| e.bad_fields < b.bad_fields) {
        *best = Some(e);
    }
}
