//! The login and the packets built from the GPS / LBS / status blocks (locations, 4G
//! locations, heartbeats, alarms, LBS + status) into a login or a [`Record`], and those
//! blocks' readers, which the other packet modules share. The caller has already framed the
//! packet and checked its CRC; errors here are content too short for the fields the packet
//! type must carry.
//!
//! Trailing fields that some firmware leaves out (the heartbeat's alarm and language bytes,
//! the GT06N's status bytes) are read while bytes remain rather than required: a heartbeat
//! that went unanswered for want of a language byte would make the device reconnect forever.
//! Bytes past the known fields are kept in io `extra`, never dropped.

use crate::cursor::Cursor;
use crate::record::{days_from_civil, to_hex};
use crate::{DecodeError, IoKey, IoValue, Protocol, Record};

/// Latitude and longitude are degrees × 60 × 30000.
const SCALE: f64 = 1_800_000.0;

/// One sound frame, split into its parts.
pub(super) struct Frame<'a> {
    /// The whole frame, start to stop bits.
    pub bytes: &'a [u8],
    pub protocol: u8,
    /// The information content, between the protocol number and the serial.
    pub content: &'a [u8],
    /// Frame offset of the first content byte.
    pub content_at: usize,
    pub serial: u16,
}

/// What every record of a connection shares.
pub(super) struct Context<'a> {
    pub device_id: &'a str,
    pub now_ms: i64,
    /// Keep the whole frame as lowercase hex in `raw`.
    pub keep_raw: bool,
}

pub(super) struct Login {
    pub imei: String,
    pub device_type: Option<u16>,
    pub time_zone_minutes: Option<i32>,
}

/// 8 bytes of BCD terminal id (the IMEI behind one 0 nibble), then on newer firmware a type
/// identifier and a time zone / language word.
pub(super) fn login(frame: &Frame<'_>) -> Result<Login, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let id_at = cur.offset();
    let id = cur.take(8, "terminal ID")?;
    let mut imei = String::with_capacity(16);
    for (i, &byte) in id.iter().enumerate() {
        for nibble in [byte >> 4, byte & 0x0F] {
            if nibble > 9 {
                return Err(DecodeError::new(
                    id_at + i,
                    format!("terminal ID byte 0x{byte:02x} is not BCD"),
                ));
            }
            imei.push(char::from(b'0' + nibble));
        }
    }
    // A 15-digit IMEI fills 16 nibbles with a leading 0; keep all 16 if that nibble is not 0
    // (an IMEISV or a vendor id), so no digit is lost.
    if imei.starts_with('0') {
        imei.remove(0);
    }
    let device_type = (cur.remaining() >= 2).then(|| cur.u16("type identifier"));
    let zone = (cur.remaining() >= 2).then(|| cur.u16("time zone / language"));
    Ok(Login {
        imei,
        device_type: device_type.transpose()?,
        time_zone_minutes: zone.transpose()?.map(time_zone_minutes),
    })
}

/// Bits 15..4: the zone × 100 as a plain number (800 = 8:00, 530 = 5:30); bit 3: west.
fn time_zone_minutes(word: u16) -> i32 {
    let hhmm = i32::from(word >> 4);
    let minutes = hhmm / 100 * 60 + hhmm % 100;
    if word & 0x08 != 0 {
        -minutes
    } else {
        minutes
    }
}

/// Which cell block a packet carries after its GPS block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Cells {
    /// None (0x10, 0x1E).
    None,
    /// 2G: MCC, MNC (1, or 2 with MCC bit 15), LAC u16, cell id u24.
    Gsm,
    /// 4G (0xA0, 0xA3, 0xA4): MCC, MNC (1 or 2), LAC u32, cell id u64.
    Lte,
}

/// What follows the LBS block of a location.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tail {
    /// Nothing described (0x10, 0x12, 0x1E): any bytes go to `extra`.
    None,
    /// GT06N (0x22, 0xA0 and clones): ACC, upload mode, re-upload, then a u32 mileage.
    Gt06n,
}

/// Locations: the GPS block, the cell block of `cells` when the frame has bytes for it
/// (some firmware leaves it out; a partial one is an error), then `tail`.
pub(super) fn location(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
    cells: Cells,
    tail: Tail,
) -> Result<Record, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 12);
    gps(&mut cur, &mut record, ctx.now_ms)?;
    if cells != Cells::None && cur.remaining() > 0 {
        lbs(&mut cur, &mut record.io, cells)?;
    }
    if tail == Tail::Gt06n {
        for name in ["acc", "upload_mode", "reupload"] {
            if cur.remaining() > 0 {
                let value = cur.u8(name)?;
                push(&mut record.io, name, value);
            }
        }
        if cur.remaining() >= 4 {
            let mileage = cur.u32("mileage")?;
            push(&mut record.io, "mileage", mileage);
        }
    }
    finish(&mut cur, &mut record, frame.serial);
    Ok(record)
}

/// 0x13: terminal info, voltage level, GSM signal, alarm, language; no position and no time.
/// It becomes a record so that device health (power, battery, GSM, ACC) reaches the cloud:
/// GT06 reports voltage and signal nowhere else. 0x23 (GK310) shares only the terminal
/// info byte: what follows it is firmware-specific and kept as `extra`.
pub(super) fn heartbeat(frame: &Frame<'_>, ctx: &Context<'_>) -> Record {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 12);
    record.event = Some("heartbeat".to_owned());
    // Nothing is required, so nothing can fail: every read below is guarded.
    if frame.protocol == super::HEARTBEAT_GK310 {
        if let Ok(info) = cur.u8("terminal info") {
            terminal_info(&mut record.io, info);
        }
    } else {
        let _ = status(&mut cur, &mut record.io, 0);
    }
    finish(&mut cur, &mut record, frame.serial);
    record
}

/// 0x19: an LBS block and a status block, no GPS; the alarm byte is the event.
pub(super) fn lbs_status(frame: &Frame<'_>, ctx: &Context<'_>) -> Result<Record, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 16);
    lbs(&mut cur, &mut record.io, Cells::Gsm)?;
    let alarm = status(&mut cur, &mut record.io, 4)?;
    record.event = alarm.and_then(alarm_event);
    finish(&mut cur, &mut record, frame.serial);
    Ok(record)
}

/// Alarms (0x16, 0x26, 0x32; 0x27 and the 4G 0xA3 / 0xA4): GPS block, LBS length + LBS,
/// status block, then the fence number (0x27, 0xA4) and a u32 mileage (JM-VL03) when the
/// frame has them; the alarm byte is the event.
pub(super) fn alarm(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
    cells: Cells,
    fence: bool,
) -> Result<Record, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 24);
    gps(&mut cur, &mut record, ctx.now_ms)?;

    // The length counts itself (2G: 9 = length + MCC 2 + MNC 1 + LAC 2 + cell 3).
    let length = cur.u8("LBS length")?;
    push(&mut record.io, "lbs_length", length);
    let block_at = cur.offset();
    let block = cur.take(usize::from(length).saturating_sub(1), "LBS block")?;
    lbs_block(block, block_at, cells, &mut record.io)?;

    // Terminal info through the alarm byte are required; the language byte is not.
    let alarm = status(&mut cur, &mut record.io, 4)?;
    record.event = alarm.and_then(alarm_event);
    if fence && cur.remaining() > 0 {
        let fence = cur.u8("fence number")?;
        push(&mut record.io, "fence", fence);
    }
    if cur.remaining() == 4 {
        let mileage = cur.u32("mileage")?;
        push(&mut record.io, "mileage", mileage);
    }
    finish(&mut cur, &mut record, frame.serial);
    Ok(record)
}

/// An alarm's LBS block, delimited by its length byte: the cell in the packet's form (a 4G
/// packet whose block only fits the 2G form is read in that form), the surplus as
/// `lbs_extra`, and a block too short for any cell as raw `lbs` bytes.
fn lbs_block(
    block: &[u8],
    at: usize,
    cells: Cells,
    io: &mut Vec<(IoKey, IoValue)>,
) -> Result<(), DecodeError> {
    let wide_mnc = block.first().is_some_and(|b| b & 0x80 != 0);
    let gsm_len = 8 + usize::from(wide_mnc);
    let lte_len = 15 + usize::from(wide_mnc);
    let form = if cells == Cells::Lte && block.len() >= lte_len {
        Cells::Lte
    } else if block.len() >= gsm_len {
        Cells::Gsm
    } else {
        if !block.is_empty() {
            io.push((name("lbs"), IoValue::Bytes(block.to_vec())));
        }
        return Ok(());
    };
    let mut cur = Cursor::new(block, at);
    lbs(&mut cur, io, form)?;
    let surplus = cur.rest();
    if !surplus.is_empty() {
        io.push((name("lbs_extra"), IoValue::Bytes(surplus.to_vec())));
    }
    Ok(())
}

/// The event name for an alarm byte (0x16 / 0x26 / 0x27 / 0x19 / 4G alarms): `None` for
/// 0x00 (normal, a plain position), the names of the Concox / Jimi documents' values (the
/// JM-VL03 table; names shared with the uplink's event table where one exists), and
/// `alarm:0xNN` for the rest so an unknown alarm is still visible as one.
pub fn alarm_event(alarm: u8) -> Option<String> {
    let name = match alarm {
        0x00 => return None,
        0x01 => "sos",
        0x02 => "power_cut",
        // The GT06 document calls it "shock"; it is the vibration sensor.
        0x03 => "vibration",
        0x04 => "geofence_enter",
        0x05 => "geofence_exit",
        0x06 => "over_speed",
        0x09 => "tow",
        0x0A => "gps_blind_area_enter",
        0x0B => "gps_blind_area_exit",
        0x0C => "power_on",
        0x0D => "gps_first_fix",
        0x0E => "low_external_battery",
        0x0F => "external_battery_protection",
        0x10 => "sim_changed",
        0x11 => "power_off",
        0x12 => "airplane_mode",
        0x13 => "tamper",
        0x14 => "door",
        0x15 => "power_off_low_battery",
        0x16 => "sound_alarm",
        0x17 => "fake_base_station",
        0x18 => "cover_open",
        0x19 => "low_battery",
        0x20 => "deep_sleep",
        0x23 => "fall",
        0x29 => "harsh_acceleration",
        // Sharp left / right cornering.
        0x2A | 0x2B => "harsh_turn",
        0x2C => "crash",
        0x30 => "harsh_braking",
        0x32 => "unplugged",
        0xFE => "ignition_on",
        0xFF => "ignition_off",
        other => return Some(format!("alarm:0x{other:02x}")),
    };
    Some(name.to_owned())
}

/// A record with identity, receive time and raw set; `io_hint` sizes the io list.
pub(super) fn base(frame: &Frame<'_>, ctx: &Context<'_>, io_hint: usize) -> Record {
    let mut record = Record::new(ctx.device_id, Protocol::Gt06, ctx.now_ms);
    record.io = Vec::with_capacity(io_hint);
    if ctx.keep_raw {
        record.raw = Some(to_hex(frame.bytes));
    }
    record
}

/// The 18-byte GPS block. Values outside their documented range are not passed on as
/// good: a course past 360 (the word has 10 bits) leaves `course_deg` unset, a date after
/// the end of the day after `now_ms` leaves `time_ms` unset (with `time_raw`), a position
/// past the poles or the antimeridian leaves `lat`/`lon` unset with `valid` false; each says
/// why in io `range_error`.
pub(super) fn gps(
    cur: &mut Cursor<'_>,
    record: &mut Record,
    now_ms: i64,
) -> Result<(), DecodeError> {
    let time = cur.take(6, "date/time")?;
    let info = cur.u8("GPS info length / satellites")?;
    let lat = cur.u32("latitude")?;
    let lon = cur.u32("longitude")?;
    let speed = cur.u8("speed")?;
    let course_status = cur.u16("course/status")?;

    let mut errors = Vec::new();
    record.time_ms = utc_ms(time).and_then(|t| no_later_than_tomorrow(t, now_ms, &mut errors));
    if record.time_ms.is_none() {
        record
            .io
            .push((name("time_raw"), IoValue::Bytes(time.to_vec())));
    }
    push(&mut record.io, "gps_info_length", info >> 4);
    record.satellites = Some(info & 0x0F);
    position(record, lat, lon, course_status, &mut errors);
    record.speed_kmh = Some(f64::from(speed));
    push(&mut record.io, "course_status", course_status);
    range_errors(record, errors);
    Ok(())
}

/// Latitude, longitude, fix and course from the course/status word (shared by the GPS
/// block and the modular position); range failures are added to `errors`.
pub(super) fn position(
    record: &mut Record,
    lat: u32,
    lon: u32,
    course_status: u16,
    errors: &mut Vec<String>,
) {
    let positioned = course_status & 0x1000 != 0;
    let north = course_status & 0x0400 != 0;
    let west = course_status & 0x0800 != 0;
    let lat_deg = f64::from(lat) / SCALE;
    let lon_deg = f64::from(lon) / SCALE;
    if lat_deg <= 90.0 && lon_deg <= 180.0 {
        // `0.0 - x` rather than `-x`: a zero coordinate stays +0.0, not -0.0, in the JSON.
        record.lat = Some(if north { lat_deg } else { 0.0 - lat_deg });
        record.lon = Some(if west { 0.0 - lon_deg } else { lon_deg });
        record.valid = Some(positioned);
    } else {
        push(&mut record.io, "latitude_raw", lat);
        push(&mut record.io, "longitude_raw", lon);
        errors.push(format!(
            "position {lat_deg:.6}, {lon_deg:.6} is outside ±90°, ±180°"
        ));
        record.valid = Some(false);
    }
    let course = course_status & 0x03FF;
    if course <= 360 {
        record.course_deg = Some(f64::from(course));
    } else {
        errors.push(format!("course {course} is past 360°"));
    }
}

/// A device time `t`, unless it is at or past the start of the day after tomorrow (UTC) as
/// seen from the receive time `now_ms` (so a device a few hours ahead in a zone east of
/// UTC still passes); then `None`, with the reason added to `errors`.
pub(super) fn no_later_than_tomorrow(t: i64, now_ms: i64, errors: &mut Vec<String>) -> Option<i64> {
    const DAY_MS: i64 = 86_400_000;
    if t < (now_ms.div_euclid(DAY_MS) + 2) * DAY_MS {
        return Some(t);
    }
    errors.push(format!(
        "date/time {} is after tomorrow",
        crate::record::format_rfc3339_ms(t)
    ));
    None
}

/// The reasons a value was dropped, as one io text, when there are any.
pub(super) fn range_errors(record: &mut Record, errors: Vec<String>) {
    if !errors.is_empty() {
        record
            .io
            .push((name("range_error"), IoValue::Text(errors.join("; "))));
    }
}

/// MCC, MNC (2 bytes when MCC bit 15 is set), LAC, cell id: u16 / u24 in the 2G form,
/// u32 / u64 in the 4G form.
pub(super) fn lbs(
    cur: &mut Cursor<'_>,
    io: &mut Vec<(IoKey, IoValue)>,
    form: Cells,
) -> Result<(), DecodeError> {
    let mcc = cur.u16("MCC")?;
    let mnc = mnc(cur, mcc)?;
    let (lac, cell_id) = if form == Cells::Lte {
        (cur.u32("LAC")?, cur.u64("cell ID")?)
    } else {
        (u32::from(cur.u16("LAC")?), u64::from(cur.u24("cell ID")?))
    };
    push(io, "mcc", mcc & 0x7FFF);
    push(io, "mnc", mnc);
    push(io, "lac", lac);
    push(io, "cell_id", cell_id);
    Ok(())
}

/// The MNC after an MCC: two bytes when MCC bit 15 is set, else one.
pub(super) fn mnc(cur: &mut Cursor<'_>, mcc: u16) -> Result<u16, DecodeError> {
    if mcc & 0x8000 != 0 {
        cur.u16("MNC")
    } else {
        cur.u8("MNC").map(u16::from)
    }
}

/// Terminal info (with its bits spelled out), voltage level, GSM signal, alarm, language; the
/// first `required` of these five must be there, the rest are read while bytes remain.
/// Returns the alarm byte when present.
fn status(
    cur: &mut Cursor<'_>,
    io: &mut Vec<(IoKey, IoValue)>,
    required: usize,
) -> Result<Option<u8>, DecodeError> {
    const FIELDS: [&str; 5] = [
        "terminal_info",
        "voltage_level",
        "gsm_signal",
        "alarm",
        "language",
    ];
    let mut alarm = None;
    for (index, field) in FIELDS.into_iter().enumerate() {
        if index >= required && cur.remaining() == 0 {
            break;
        }
        let value = cur.u8(field)?;
        match index {
            0 => terminal_info(io, value),
            3 => {
                push(io, field, value);
                alarm = Some(value);
            }
            _ => push(io, field, value),
        }
    }
    Ok(alarm)
}

/// The terminal information byte and its bits.
fn terminal_info(io: &mut Vec<(IoKey, IoValue)>, value: u8) {
    push(io, "terminal_info", value);
    push(io, "armed", value & 1);
    push(io, "acc", value >> 1 & 1);
    push(io, "charging", value >> 2 & 1);
    // 100 SOS, 011 low battery, 010 power cut, 001 shock, 000 normal.
    push(io, "terminal_alarm", value >> 3 & 0x07);
    push(io, "gps_tracking", value >> 6 & 1);
    push(io, "oil_cut", value >> 7);
}

/// Undescribed trailing bytes as `extra`, then the serial.
pub(super) fn finish(cur: &mut Cursor<'_>, record: &mut Record, serial: u16) {
    let extra = cur.rest();
    if !extra.is_empty() {
        record
            .io
            .push((name("extra"), IoValue::Bytes(extra.to_vec())));
    }
    push(&mut record.io, "serial", serial);
}

/// `YY MM DD hh mm ss` (binary, year 2000 + YY) as UTC ms; `None` for an impossible date,
/// such as the all-zero time a device sends before its first fix.
pub(super) fn utc_ms(time: &[u8]) -> Option<i64> {
    let &[yy, month, day, hour, minute, second] = time else {
        return None;
    };
    let year = 2000 + i64::from(yy);
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, i64::from(month), i64::from(day));
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some(seconds * 1000)
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

pub(super) fn name(key: &str) -> IoKey {
    IoKey::Name(key.to_owned())
}

pub(super) fn push(io: &mut Vec<(IoKey, IoValue)>, key: &str, value: impl Into<u64>) {
    io.push((name(key), IoValue::U64(value.into())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_and_read_as_utc() {
        assert_eq!(utc_ms(&[11, 11, 15, 14, 36, 29]), Some(1_321_367_789_000));
        assert_eq!(utc_ms(&[0, 1, 1, 0, 0, 0]), Some(946_684_800_000));
        assert!(utc_ms(&[24, 2, 29, 23, 59, 59]).is_some());
        for bad in [
            [0, 0, 0, 0, 0, 0],
            [23, 2, 29, 0, 0, 0],
            [24, 4, 31, 0, 0, 0],
            [24, 13, 1, 0, 0, 0],
            [24, 1, 1, 24, 0, 0],
            [24, 1, 1, 0, 60, 0],
            [24, 1, 1, 0, 0, 60],
        ] {
            assert_eq!(utc_ms(&bad), None, "{bad:?}");
        }
        assert_eq!(utc_ms(&[1, 2, 3]), None);
    }

    #[test]
    fn time_zone_word_is_hhmm_times_16_with_a_west_bit() {
        assert_eq!(time_zone_minutes(800 << 4 | 0x02), 480);
        assert_eq!(time_zone_minutes(530 << 4), 330);
        assert_eq!(time_zone_minutes(500 << 4 | 0x08), -300);
        assert_eq!(time_zone_minutes(0), 0);
    }

    #[test]
    fn alarm_bytes_name_their_events() {
        assert_eq!(alarm_event(0), None);
        assert_eq!(alarm_event(1).as_deref(), Some("sos"));
        assert_eq!(alarm_event(3).as_deref(), Some("vibration"));
        assert_eq!(alarm_event(0x2A).as_deref(), Some("harsh_turn"));
        assert_eq!(alarm_event(0x3A).as_deref(), Some("alarm:0x3a"));
    }
}
