//! NMEA 0183 from a GNSS receiver on a serial line: `RMC`, `GGA`, `GNS`, `GLL`, `VTG`, `GSA`
//! and `ZDA` sentences, combined into one record per epoch. Fact sheet:
//! `shared/protocols/nmea0183.md`; the four besides RMC/GGA are laid out in `nmea/sentences.rs`.
//!
//! ```text
//! Sentence (printable ASCII; the standard says at most 82 characters, this decoder's limit is
//! max_frame_bytes so long proprietary sentences pass too)
//!
//!   $ G N R M C , f1 , f2 , … , fn * h h \r \n
//!   │ └┬┘ └─┬─┘                      └┬┘  └─┬─┘
//!   │  │    type                      │     line end: CR LF, a bare LF, or the next `$`
//!   │  talker GP GL GA GB BD GN GQ GI │
//!   start                             XOR of every byte strictly between `$` and `*`,
//!                                     two hex digits (either case)
//!
//! RMC   $xxRMC,time,status,lat,N/S,lon,E/W,sog kn,cog,date ddmmyy,magvar,E/W[,mode[,navstatus]]
//! GGA   $xxGGA,time,lat,N/S,lon,E/W,quality,sats,hdop,alt,M,geoid sep,M,dgps age,dgps station
//! GNS   $xxGNS,time,lat,N/S,lon,E/W,mode c…c,sats,hdop,alt,geoid sep,dgps age,station[,navstatus]
//! GLL   $xxGLL,lat,N/S,lon,E/W,time,status[,mode]
//! VTG   $xxVTG,cog true,T,cog magnetic,M,sog kn,N,sog km/h,K[,mode]         (no time)
//! GSA   $xxGSA,M/A,fix 1/2/3,sv×12,PDOP,HDOP,VDOP[,system id]              (no time)
//! ZDA   $xxZDA,time,dd,mm,yyyy,zone h,zone m           (only lends its date, like an RMC's)
//! any other sentence (GSV, TXT, $P… proprietary, other talkers): consumed, nothing emitted
//!
//! Epochs: the receiver repeats a burst of sentences every fix interval. The timed sentences
//! (RMC, GGA, GNS, GLL) of one UTC time of day, and the untimed ones (VTG, GSA) that arrive
//! while that epoch is open, become one record:
//!
//!   $GNRMC,123519,…   ─┐ epoch 12:35:19 opens
//!   $GNVTG,…           │ joins it
//!   $GNGGA,123519,…    │ joins it
//!   $GNGSA,…           │ joins it (a second GSA of the epoch, one per system, adds nothing)
//!   $GNGLL,…,123519,…  ┘ every kind the receiver sends is here ─▶ record emitted
//!   $GNRMC,123520,…   ─┐ epoch 12:35:20 (its GGA is lost on the wire)
//!   $GNRMC,123521,…   ─┴─▶ a newer time, or a second sentence of a kind the epoch has,
//!                          releases 12:35:20 as it is; 12:35:21 is now open
//!
//! An epoch is emitted as soon as it has every kind of sentence the receiver has sent so far
//! (RMC and GGA before anything else is known), so a record waits for no more than its own
//! burst; an epoch missing one is released by the next, or by `finish`. A sentence of the
//! epoch just emitted that arrives after it (only while the receiver's burst is being
//! learned, the first epoch or two) only teaches the decoder to wait for it next time.
//! ```
//!
//! Into a [`Record`]: `time_ms` = RMC date (else the last RMC/ZDA date) + time of day (UTC);
//! `lat`/`lon` from the first of RMC, GNS, GGA, GLL that has both; `speed_kmh`/`course_deg` from
//! RMC (knots × 1.852), else VTG (its km/h, else its knots); `satellites`, `altitude_m` from
//! GGA, else GNS; `hdop` from GGA, else GNS, else GSA. `valid` is `false` when any sentence of
//! the epoch says there is no fix (RMC status `V` or mode `N`, GGA quality 0, GNS mode all `N`,
//! GLL status `V` or mode `N`, VTG mode `N`, GSA fix mode 1), `true` when at least one says
//! there is one and none says otherwise, `None` when none says. `event` is always `None` (a
//! receiver reports positions, not alarms).
//! `io` holds what has no record field, by NMEA name: `talker` (of the first sentence that
//! gave the position, else of any), `status`, `magnetic_variation_deg` (west negative), `mode`,
//! `nav_status`, `rmc_extra` (fields past the 13th, comma-joined), `gga_talker` (only when it
//! differs from the RMC's), `fix_quality`, `geoid_separation_m`, `dgps_age_s`, `dgps_station`,
//! `gga_extra`, `gns_mode`, `gll_status`, `gll_mode`, `vtg_mode`, `course_magnetic_deg`,
//! `selection_mode`, `fix_mode` (1–3), `pdop`, `vdop`, `satellite_ids` (the first GSA's, comma-
//! joined), `gnss_system_id`, `time_of_day` (`hhmmss.sss`, only when no date was known so
//! `time_ms` is `None`) and `gps_week_rollover_suspected` (1, only when the device time is more
//! than 512 weeks before the receive time: receivers hit by the GPS week-number rollover report
//! dates 1024 weeks in the past; flagged, not "fixed").
//!
//! Dates: two-digit years use the POSIX `%y` pivot (69–99 → 1969–1999, 00–68 → 2000–2068).
//! GGA, GNS and GLL have no date: an epoch without an RMC date takes the date of the last RMC
//! (or ZDA) seen,
//! choosing the day (that date, the day before or after) that puts it within 12 hours of that
//! sentence, so a GGA just after midnight gets the new day. With no date ever seen, `time_ms`
//! is `None` and the time of day is kept in `io`.
//!
//! Bad input never ends the stream (a serial port has no connection to close): a line with a
//! bad checksum, a missing checksum, non-printable bytes or an unparseable field of a sentence
//! this decoder reads (ZDA excepted: a bad one lends no date and is ignored), bytes
//! before a `$` (a stream joined mid-sentence, line noise) and a line with no end within
//! `max_frame_bytes` are each one `problem` frame that consumes those bytes; after an over-long
//! line the decoder drops bytes silently until the next `$` or line end. `decode` never returns
//! `Err`. Nothing is ever sent to the receiver.
//!
//! [`encode`] builds RMC and GGA sentences (the receiver side), for the load simulator and
//! tests.

pub mod encode;
mod sentences;

use sentences::{both, Gll, Gns, Gsa, Vtg};

use crate::record::days_from_civil;
use crate::{
    DecodeError, Decoded, DecoderOptions, IoKey, IoValue, Protocol, Record, StreamDecoder,
};

/// The device id records get when the serial port's config names none.
pub const FALLBACK_DEVICE_ID: &str = "unknown";

/// Talker ids of satellite receivers whose RMC/GGA become records: GPS, GLONASS, Galileo,
/// BeiDou (both spellings), multi-constellation, QZSS, NavIC. Sentences from other talkers
/// (`II` instruments, `EC` ECDIS, …) are not a GNSS receiver's fix and are skipped silently.
fn is_gnss_talker(talker: [u8; 2]) -> bool {
    matches!(
        &talker,
        b"GP" | b"GL" | b"GA" | b"GB" | b"BD" | b"GN" | b"GQ" | b"GI"
    )
}

const DAY_MS: i64 = 86_400_000;
const HALF_DAY_MS: i64 = DAY_MS / 2;
const KMH_PER_KNOT: f64 = 1.852;
/// Half the 1024-week GPS rollover period: a device time this far before the receive time
/// is no clock drift.
const ROLLOVER_SUSPECT_MS: i64 = 512 * 7 * DAY_MS;
/// RMC fields up to the date must be there; magnetic variation, mode and nav status are
/// later additions and may be missing.
const RMC_MIN_FIELDS: usize = 9;
/// GGA fields up to the altitude must be there.
const GGA_MIN_FIELDS: usize = 9;
/// RMC fields this decoder knows (NMEA 4.1); later ones go to `rmc_extra`.
const RMC_KNOWN_FIELDS: usize = 13;
/// GGA fields this decoder knows; later ones go to `gga_extra`.
const GGA_KNOWN_FIELDS: usize = 14;

/// Sans-IO decoder for one serial port carrying NMEA 0183.
#[derive(Debug, Clone)]
pub struct NmeaDecoder {
    max_frame_bytes: usize,
    keep_raw: bool,
    allow_missing_checksum: bool,
    /// From the serial port's config; `None` means records get [`FALLBACK_DEVICE_ID`].
    configured_id: Option<String>,
    /// After an over-long line: drop bytes until the next `$` or line end.
    skipping: bool,
    /// The open epoch: its first timed sentence arrived, more of its burst may still come.
    pending: Option<Epoch>,
    /// The last date an RMC or ZDA carried, with that sentence's time of day.
    last_date: Option<DateRef>,
    /// Every kind of sentence (`KIND_*` bits) the receiver's epochs have held: an open epoch
    /// with all of them is complete. Starts as RMC + GGA; only grows.
    burst: u8,
    /// The epoch emitted last: its time of day and kinds, so a sentence of it arriving late is
    /// learned as part of the burst instead of starting an epoch of its own.
    emitted: Option<(Option<i64>, u8)>,
}

/// Sentence kinds that make up an epoch, as bits.
const KIND_RMC: u8 = 1;
const KIND_GGA: u8 = 1 << 1;
const KIND_GNS: u8 = 1 << 2;
const KIND_GLL: u8 = 1 << 3;
const KIND_VTG: u8 = 1 << 4;
const KIND_GSA: u8 = 1 << 5;

#[derive(Debug, Clone, Copy)]
struct DateRef {
    days: i64,
    time_of_day_ms: i64,
}

/// What one epoch has collected so far.
#[derive(Debug, Clone)]
struct Epoch {
    time_of_day_ms: Option<i64>,
    /// Receive time of the epoch's first sentence: when the fix reached the gateway.
    received_at_ms: i64,
    /// `KIND_*` bits of the sentences it holds.
    kinds: u8,
    rmc: Option<Rmc>,
    gga: Option<Gga>,
    gns: Option<Gns>,
    gll: Option<Gll>,
    vtg: Option<Vtg>,
    gsa: Option<Gsa>,
    /// The epoch's sentences in arrival order, `\n`-joined, when `keep_raw` is on.
    raw: Option<String>,
}

#[derive(Debug, Clone)]
struct Rmc {
    talker: [u8; 2],
    status: Option<u8>,
    lat: Option<f64>,
    lon: Option<f64>,
    speed_kmh: Option<f64>,
    course_deg: Option<f64>,
    date_days: Option<i64>,
    magnetic_variation_deg: Option<f64>,
    mode: Option<String>,
    nav_status: Option<String>,
    extra: Option<String>,
}

#[derive(Debug, Clone)]
struct Gga {
    talker: [u8; 2],
    lat: Option<f64>,
    lon: Option<f64>,
    quality: Option<u64>,
    satellites: Option<u8>,
    hdop: Option<f64>,
    altitude_m: Option<f64>,
    geoid_separation_m: Option<f64>,
    dgps_age_s: Option<f64>,
    dgps_station: Option<String>,
    extra: Option<String>,
}

/// A checksummed sentence, parsed as far as this decoder cares. Timed ones carry their time
/// of day (`None` when the field is empty).
enum Sentence {
    Rmc(Option<i64>, Rmc),
    Gga(Option<i64>, Gga),
    Gns(Option<i64>, Gns),
    Gll(Option<i64>, Gll),
    Vtg(Vtg),
    Gsa(Gsa),
    /// A date and time of day from ZDA.
    Date(DateRef),
    Other,
}

impl Sentence {
    /// Its `KIND_*` bit and, for a timed sentence, its time of day; `None` for sentences
    /// that are not part of an epoch.
    fn member(&self) -> Option<(u8, Option<Option<i64>>)> {
        Some(match self {
            Sentence::Rmc(t, _) => (KIND_RMC, Some(*t)),
            Sentence::Gga(t, _) => (KIND_GGA, Some(*t)),
            Sentence::Gns(t, _) => (KIND_GNS, Some(*t)),
            Sentence::Gll(t, _) => (KIND_GLL, Some(*t)),
            Sentence::Vtg(_) => (KIND_VTG, None),
            Sentence::Gsa(_) => (KIND_GSA, None),
            Sentence::Date(_) | Sentence::Other => return None,
        })
    }
}

impl NmeaDecoder {
    /// A decoder for one serial port: records carry `options.device_id` (or
    /// [`FALLBACK_DEVICE_ID`] when the config has none), lines are at most
    /// `options.max_frame_bytes` including the line end, and `raw` keeps the sentence text
    /// when `options.keep_raw` is on. Sentences must carry a checksum.
    pub fn new(options: &DecoderOptions) -> Self {
        NmeaDecoder {
            max_frame_bytes: options.max_frame_bytes,
            keep_raw: options.keep_raw,
            allow_missing_checksum: false,
            configured_id: options.device_id.clone(),
            skipping: false,
            pending: None,
            last_date: None,
            burst: KIND_RMC | KIND_GGA,
            emitted: None,
        }
    }

    /// Accept sentences without `*hh` (very old receivers). Off by default: without the
    /// checksum, line noise that happens to look like a sentence becomes a record.
    pub fn allow_missing_checksum(mut self, on: bool) -> Self {
        self.allow_missing_checksum = on;
        self
    }

    /// The line length limit, at least 1 so that every call makes progress.
    fn limit(&self) -> usize {
        self.max_frame_bytes.max(1)
    }

    fn decode_frame(&mut self, input: &[u8], now_ms: i64) -> Decoded {
        let window = input.get(..self.limit()).unwrap_or(input);
        if self.skipping {
            match resync_point(window) {
                // The `$` of the next sentence: stop skipping and read it now.
                Some((0, b'$')) => self.skipping = false,
                Some((at, b'$')) => {
                    self.skipping = false;
                    return Decoded::control(at);
                }
                Some((at, _)) => {
                    self.skipping = false;
                    return Decoded::control(at + 1);
                }
                None => return Decoded::control(window.len()),
            }
        }
        match window.first() {
            Some(b'$') => self.sentence(input, window, now_ms),
            Some(b'\r' | b'\n') => {
                // Blank lines, and the CR LF left after a sentence ended at a `$`.
                let run = window
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                Decoded::control(run)
            }
            _ => self.garbage(input, window),
        }
    }

    /// Bytes that do not start with `$`: skipped as one problem up to the next `$` (kept) or
    /// through the next line end.
    fn garbage(&mut self, input: &[u8], window: &[u8]) -> Decoded {
        let consumed = match resync_point(window) {
            Some((at, b'$')) => at,
            Some((at, _)) => at + 1,
            None if input.len() >= self.limit() => {
                self.skipping = true;
                window.len()
            }
            None => return need_more(),
        };
        let shown = window.get(..consumed.min(16)).unwrap_or_default();
        Decoded::problem(
            consumed,
            DecodeError::new(
                0,
                format!(
                    "{consumed} byte(s) outside a sentence skipped (expected `$`, got {})",
                    printable(shown)
                ),
            ),
        )
    }

    /// A line starting with `$`.
    fn sentence(&mut self, input: &[u8], window: &[u8], now_ms: i64) -> Decoded {
        let end = window
            .iter()
            .skip(1)
            .position(|&b| b == b'\n' || b == b'$')
            .map(|p| p + 1);
        let (line, consumed) = match end {
            Some(at) if window.get(at) == Some(&b'$') => (window.get(..at), at),
            Some(at) => (window.get(..at), at + 1),
            None if input.len() >= self.limit() => {
                self.skipping = true;
                let reason = format!(
                    "sentence has no line end within the limit of {} bytes",
                    self.max_frame_bytes
                );
                return Decoded::problem(window.len(), DecodeError::new(0, reason));
            }
            None => return need_more(),
        };
        let line = line.unwrap_or_default();
        let line = trim_cr(line);
        match self.parse(line) {
            Ok(sentence) => {
                let records = self.accept(sentence, line, now_ms);
                Decoded {
                    records,
                    ..Decoded::control(consumed)
                }
            }
            Err(e) => Decoded::problem(consumed, e),
        }
    }

    /// Verifies the checksum and parses the sentences that make records.
    fn parse(&self, line: &[u8]) -> Result<Sentence, DecodeError> {
        if let Some(at) = line.iter().position(|b| !(0x20..=0x7e).contains(b)) {
            let byte = line.get(at).copied().unwrap_or_default();
            return Err(DecodeError::new(
                at,
                format!("byte 0x{byte:02x} is not printable ASCII"),
            ));
        }
        // Printable ASCII is valid UTF-8.
        let text = std::str::from_utf8(line)
            .map_err(|e| DecodeError::new(e.valid_up_to(), "sentence is not ASCII".to_owned()))?;
        let body = match text.find('*') {
            Some(star) => {
                let body = text.get(1..star).unwrap_or_default();
                let sent = text.get(star + 1..).unwrap_or_default();
                check_sum(body, sent, star)?;
                body
            }
            None if self.allow_missing_checksum => text.get(1..).unwrap_or_default(),
            None => {
                return Err(DecodeError::new(
                    text.len(),
                    "sentence has no checksum (`*hh` before the line end)",
                ))
            }
        };
        // The address decides before the fields are split: most sentences are skipped.
        let address = body.split_once(',').map_or(body, |(a, _)| a).as_bytes();
        let &[t0, t1, k0, k1, k2] = address else {
            return Ok(Sentence::Other);
        };
        let talker = [t0, t1];
        if !is_gnss_talker(talker) {
            return Ok(Sentence::Other);
        }
        match [k0, k1, k2] {
            [b'R', b'M', b'C'] => parse_rmc(talker, &Fields::split(body)),
            [b'G', b'G', b'A'] => parse_gga(talker, &Fields::split(body)),
            [b'G', b'N', b'S'] => sentences::parse_gns(talker, &Fields::split(body))
                .map(|(t, gns)| Sentence::Gns(t, gns)),
            [b'G', b'L', b'L'] => sentences::parse_gll(talker, &Fields::split(body))
                .map(|(t, gll)| Sentence::Gll(t, gll)),
            [b'V', b'T', b'G'] => {
                sentences::parse_vtg(talker, &Fields::split(body)).map(Sentence::Vtg)
            }
            [b'G', b'S', b'A'] => {
                sentences::parse_gsa(talker, &Fields::split(body)).map(Sentence::Gsa)
            }
            // ZDA only lends its date; a bad one is ignored like any other sentence.
            [b'Z', b'D', b'A'] => {
                Ok(parse_zda(&Fields::split(body)).map_or(Sentence::Other, Sentence::Date))
            }
            _ => Ok(Sentence::Other),
        }
    }

    /// Files a good sentence into its epoch; returns the records of the epochs it completed
    /// or released (at most two: the one it released and, when that makes its own complete
    /// at once, its own).
    fn accept(&mut self, sentence: Sentence, line: &[u8], now_ms: i64) -> Vec<Record> {
        match &sentence {
            Sentence::Rmc(
                Some(t),
                Rmc {
                    date_days: Some(days),
                    ..
                },
            ) => {
                self.last_date = Some(DateRef {
                    days: *days,
                    time_of_day_ms: *t,
                });
            }
            Sentence::Date(date) => self.last_date = Some(*date),
            _ => {}
        }
        let Some((kind, timed)) = sentence.member() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match (&self.pending, timed) {
            // Untimed sentences belong to the open epoch; one that comes while none is open
            // followed the epoch just emitted: learned, not kept.
            (None, None) => {
                self.learn_late(kind);
                return out;
            }
            (Some(_), None) => {}
            (None, Some(t)) => {
                if matches!(self.emitted, Some((at, kinds)) if at == t && kinds & kind == 0) {
                    self.learn_late(kind);
                    return out;
                }
            }
            // Another time of day, or a second sentence of a kind the epoch has: the open
            // epoch is done; nothing waits behind a lost sentence.
            (Some(p), Some(t)) => {
                if p.time_of_day_ms != t || p.kinds & kind != 0 {
                    if let Some(done) = self.pending.take() {
                        out.push(self.emit(done));
                    }
                }
            }
        }
        let keep_raw = self.keep_raw;
        let epoch = self.pending.get_or_insert_with(|| Epoch {
            time_of_day_ms: timed.flatten(),
            received_at_ms: now_ms,
            kinds: 0,
            rmc: None,
            gga: None,
            gns: None,
            gll: None,
            vtg: None,
            gsa: None,
            raw: None,
        });
        if keep_raw {
            let text = String::from_utf8_lossy(line);
            match &mut epoch.raw {
                Some(raw) => {
                    raw.push('\n');
                    raw.push_str(&text);
                }
                None => epoch.raw = Some(text.into_owned()),
            }
        }
        // A repeated untimed sentence (one GSA per constellation) adds nothing: the first
        // is kept.
        if epoch.kinds & kind == 0 {
            epoch.kinds |= kind;
            match sentence {
                Sentence::Rmc(_, rmc) => epoch.rmc = Some(rmc),
                Sentence::Gga(_, gga) => epoch.gga = Some(gga),
                Sentence::Gns(_, gns) => epoch.gns = Some(gns),
                Sentence::Gll(_, gll) => epoch.gll = Some(gll),
                Sentence::Vtg(vtg) => epoch.vtg = Some(vtg),
                Sentence::Gsa(gsa) => epoch.gsa = Some(gsa),
                Sentence::Date(_) | Sentence::Other => {}
            }
        }
        if epoch.kinds & self.burst == self.burst {
            if let Some(done) = self.pending.take() {
                out.push(self.emit(done));
            }
        }
        out
    }

    /// A sentence of the epoch already emitted: the receiver sends this kind in its burst,
    /// so later epochs wait for it.
    fn learn_late(&mut self, kind: u8) {
        if let Some((_, kinds)) = &mut self.emitted {
            *kinds |= kind;
            self.burst |= kind;
        }
    }

    /// An epoch leaves: its kinds join the burst, and it is remembered for late sentences.
    fn emit(&mut self, epoch: Epoch) -> Record {
        self.burst |= epoch.kinds;
        self.emitted = Some((epoch.time_of_day_ms, epoch.kinds));
        self.epoch_record(epoch)
    }

    /// The record of one epoch.
    fn epoch_record(&self, epoch: Epoch) -> Record {
        let device_id = self.configured_id.as_deref().unwrap_or(FALLBACK_DEVICE_ID);
        let mut r = Record::new(device_id, Protocol::Nmea, epoch.received_at_ms);
        r.raw = epoch.raw;
        let own_date = epoch.rmc.as_ref().and_then(|rmc| rmc.date_days);
        r.time_ms = epoch.time_of_day_ms.and_then(|tod| match own_date {
            Some(days) => Some(days * DAY_MS + tod),
            None => self.last_date.map(|d| borrowed_date(d, tod)),
        });

        let verdicts = [
            epoch.rmc.as_ref().and_then(|rmc| {
                let status = rmc.status.map(|s| s == b'A');
                both(status, rmc.mode.as_deref().map(|m| m != "N"))
            }),
            epoch.gga.as_ref().and_then(|g| g.quality.map(|q| q != 0)),
            epoch.gns.as_ref().and_then(Gns::valid),
            epoch.gll.as_ref().and_then(Gll::valid),
            epoch.vtg.as_ref().and_then(Vtg::valid),
            epoch.gsa.as_ref().and_then(Gsa::valid),
        ];
        r.valid = verdicts.into_iter().fold(None, both);

        // The position and its talker: the first sentence that has both coordinates.
        let positions = [
            epoch.rmc.as_ref().map(|s| (s.lat, s.lon, s.talker)),
            epoch.gns.as_ref().map(|s| (s.lat, s.lon, s.talker)),
            epoch.gga.as_ref().map(|s| (s.lat, s.lon, s.talker)),
            epoch.gll.as_ref().map(|s| (s.lat, s.lon, s.talker)),
        ];
        let fix = positions
            .iter()
            .flatten()
            .find_map(|&(lat, lon, talker)| Some((lat?, lon?, talker)));
        if let Some((lat, lon, _)) = fix {
            r.lat = Some(lat);
            r.lon = Some(lon);
        }
        let any_talker = [
            epoch.rmc.as_ref().map(|s| s.talker),
            epoch.gns.as_ref().map(|s| s.talker),
            epoch.gga.as_ref().map(|s| s.talker),
            epoch.gll.as_ref().map(|s| s.talker),
            epoch.vtg.as_ref().map(|s| s.talker),
            epoch.gsa.as_ref().map(|s| s.talker),
        ];
        let talker = fix
            .map(|f| f.2)
            .or_else(|| any_talker.into_iter().flatten().next());

        let mut io = Vec::new();
        push_text(&mut io, "talker", talker.map(talker_text));
        if let Some(rmc) = &epoch.rmc {
            r.speed_kmh = rmc.speed_kmh;
            r.course_deg = rmc.course_deg;
            push_text(
                &mut io,
                "status",
                rmc.status.map(|s| char::from(s).to_string()),
            );
            push_f64(
                &mut io,
                "magnetic_variation_deg",
                rmc.magnetic_variation_deg,
            );
            push_text(&mut io, "mode", rmc.mode.clone());
            push_text(&mut io, "nav_status", rmc.nav_status.clone());
            push_text(&mut io, "rmc_extra", rmc.extra.clone());
        }
        if let Some(vtg) = &epoch.vtg {
            r.speed_kmh = r.speed_kmh.or(vtg.speed_kmh);
            r.course_deg = r.course_deg.or(vtg.course_deg);
            push_f64(&mut io, "course_magnetic_deg", vtg.course_magnetic_deg);
            push_text(&mut io, "vtg_mode", vtg.mode.clone());
        }
        if let Some(gga) = &epoch.gga {
            r.satellites = gga.satellites;
            r.hdop = gga.hdop;
            r.altitude_m = gga.altitude_m;
            if talker.is_some_and(|t| t != gga.talker) {
                push_text(&mut io, "gga_talker", Some(talker_text(gga.talker)));
            }
            if let Some(q) = gga.quality {
                io.push((IoKey::Name("fix_quality".into()), IoValue::U64(q)));
            }
            push_f64(&mut io, "geoid_separation_m", gga.geoid_separation_m);
            push_f64(&mut io, "dgps_age_s", gga.dgps_age_s);
            push_text(&mut io, "dgps_station", gga.dgps_station.clone());
            push_text(&mut io, "gga_extra", gga.extra.clone());
        }
        if let Some(gns) = &epoch.gns {
            r.satellites = r.satellites.or(gns.satellites);
            r.hdop = r.hdop.or(gns.hdop);
            r.altitude_m = r.altitude_m.or(gns.altitude_m);
            push_text(&mut io, "gns_mode", gns.mode.clone());
            if epoch.gga.is_none() {
                push_f64(&mut io, "geoid_separation_m", gns.geoid_separation_m);
            }
            if epoch.rmc.is_none() {
                push_text(&mut io, "nav_status", gns.nav_status.clone());
            }
        }
        if let Some(gll) = &epoch.gll {
            push_text(
                &mut io,
                "gll_status",
                gll.status.map(|s| char::from(s).to_string()),
            );
            push_text(&mut io, "gll_mode", gll.mode.clone());
        }
        if let Some(gsa) = &epoch.gsa {
            r.hdop = r.hdop.or(gsa.hdop);
            push_text(&mut io, "selection_mode", gsa.selection.clone());
            if let Some(m) = gsa.fix_mode {
                io.push((IoKey::Name("fix_mode".into()), IoValue::U64(m)));
            }
            push_f64(&mut io, "pdop", gsa.pdop);
            push_f64(&mut io, "vdop", gsa.vdop);
            let ids = Some(gsa.satellite_ids.join(",")).filter(|s| !s.is_empty());
            push_text(&mut io, "satellite_ids", ids);
            push_text(&mut io, "gnss_system_id", gsa.system_id.clone());
        }
        if r.time_ms.is_none() {
            push_text(&mut io, "time_of_day", epoch.time_of_day_ms.map(format_tod));
        }
        if let Some(t) = r.time_ms {
            if epoch.received_at_ms.saturating_sub(t) > ROLLOVER_SUSPECT_MS {
                io.push((
                    IoKey::Name("gps_week_rollover_suspected".into()),
                    IoValue::U64(1),
                ));
            }
        }
        r.io = io;
        r
    }
}

impl StreamDecoder for NmeaDecoder {
    /// Never `Err`: see the module doc.
    fn decode(&mut self, input: &[u8], now_ms: i64) -> Result<Option<Decoded>, DecodeError> {
        if input.is_empty() {
            return Ok(None);
        }
        let decoded = self.decode_frame(input, now_ms);
        Ok((decoded.consumed > 0).then_some(decoded))
    }

    /// The configured id; `None` when the port's config names none (records then carry
    /// [`FALLBACK_DEVICE_ID`]).
    fn device_id(&self) -> Option<&str> {
        self.configured_id.as_deref()
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The epoch still waiting for its other sentence, if any (end of a capture, a port
    /// closed). Its `received_at_ms` stays the arrival of its first sentence. A live stream
    /// never depends on this: the next epoch releases the pending one.
    fn finish(&mut self, _now_ms: i64) -> Vec<Record> {
        let pending = self.pending.take();
        pending.map(|epoch| self.emit(epoch)).into_iter().collect()
    }
}

/// `Decoded` with `consumed: 0` is the internal "need more bytes"; `decode` maps it to `None`.
fn need_more() -> Decoded {
    Decoded::control(0)
}

/// Where the stream can be picked up again: the offset and byte of the first `$` or `\n`.
fn resync_point(window: &[u8]) -> Option<(usize, u8)> {
    window
        .iter()
        .position(|&b| b == b'$' || b == b'\n')
        .and_then(|at| window.get(at).map(|&b| (at, b)))
}

fn trim_cr(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
}

/// Up to a few bytes for an error message: text when printable, else hex.
fn printable(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!("0x{}", crate::record::to_hex(bytes))
    }
}

/// `sent` must be two hex digits equal to the XOR of `body`; `star` is the `*`'s offset.
fn check_sum(body: &str, sent: &str, star: usize) -> Result<(), DecodeError> {
    let computed = body.bytes().fold(0u8, |acc, b| acc ^ b);
    let parsed = match sent.as_bytes() {
        [h, l] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
            u8::from_str_radix(sent, 16).ok()
        }
        _ => None,
    };
    match parsed {
        Some(v) if v == computed => Ok(()),
        Some(v) => Err(DecodeError::new(
            star + 1,
            format!("checksum {v:02X} does not match {computed:02X}, the XOR of the sentence"),
        )),
        None => Err(DecodeError::new(
            star + 1,
            format!("checksum field {sent:?} is not two hex digits"),
        )),
    }
}

/// The fields of a sentence body (`$` and `*hh` stripped) with their offsets in the line.
struct Fields<'a> {
    body: &'a str,
    /// (offset in the line, text); field 0 is the address.
    list: Vec<(usize, &'a str)>,
}

/// Offset of the body in the line: right after the `$`.
const BODY_OFFSET: usize = 1;

impl<'a> Fields<'a> {
    fn split(body: &'a str) -> Self {
        let mut list = Vec::with_capacity(16);
        let mut start = 0;
        // Byte-wise: fields are a few bytes each, too short for a searcher to pay off.
        for (at, &b) in body.as_bytes().iter().enumerate() {
            if b == b',' {
                list.push((BODY_OFFSET + start, body.get(start..at).unwrap_or_default()));
                start = at + 1;
            }
        }
        list.push((BODY_OFFSET + start, body.get(start..).unwrap_or_default()));
        Fields { body, list }
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    /// Field `i`; a missing trailing field reads as empty.
    fn text(&self, i: usize) -> &'a str {
        self.list.get(i).map_or("", |f| f.1)
    }

    /// The offset of field `i` in the line (the line end for a missing field).
    fn offset(&self, i: usize) -> usize {
        self.list
            .get(i)
            .map_or(BODY_OFFSET + self.body.len(), |f| f.0)
    }

    /// Fields `from..`, comma-joined as sent, if there are any.
    fn rest(&self, from: usize) -> Option<String> {
        let (at, _) = self.list.get(from)?;
        self.body.get(at - BODY_OFFSET..).map(str::to_owned)
    }

    /// A field-naming error: `RMC field 3 (latitude) "48x7": <why>`.
    fn bad(&self, kind: &str, i: usize, name: &str, why: &str) -> DecodeError {
        DecodeError::new(
            self.offset(i),
            format!("{kind} field {i} ({name}) {:?}: {why}", self.text(i)),
        )
    }

    fn need(&self, kind: &str, min: usize) -> Result<(), DecodeError> {
        // Field 0 is the address, so data field count is len - 1.
        let have = self.len().saturating_sub(1);
        if have < min {
            return Err(DecodeError::new(
                BODY_OFFSET + self.body.len(),
                format!("{kind} has {have} fields, expected at least {min}"),
            ));
        }
        Ok(())
    }

    fn time(&self, kind: &str, i: usize) -> Result<Option<i64>, DecodeError> {
        parse_time_of_day(self.text(i)).map_err(|why| {
            self.bad(
                kind,
                i,
                "UTC time",
                &format!("expected hhmmss(.sss), {why}"),
            )
        })
    }

    fn decimal(
        &self,
        kind: &str,
        i: usize,
        name: &str,
        signed: bool,
    ) -> Result<Option<f64>, DecodeError> {
        parse_decimal(self.text(i), signed).ok_or_else(|| {
            let what = if signed {
                "expected a decimal number"
            } else {
                "expected an unsigned decimal number"
            };
            self.bad(kind, i, name, what)
        })
    }

    /// A `ddmm.mmmm` / `dddmm.mmmm` field and its hemisphere letter.
    fn coordinate(&self, kind: &str, i: usize, lat: bool) -> Result<Option<f64>, DecodeError> {
        let (name, letters, max) = if lat {
            ("latitude", [b'N', b'S'], 90.0)
        } else {
            ("longitude", [b'E', b'W'], 180.0)
        };
        let value = self.text(i);
        let hemisphere = self.text(i + 1);
        if value.is_empty() && hemisphere.is_empty() {
            return Ok(None);
        }
        let Some(magnitude) = parse_ddmm(value) else {
            let format = if lat { "ddmm.mmmm" } else { "dddmm.mmmm" };
            return Err(self.bad(
                kind,
                i,
                name,
                &format!("expected {format} with minutes < 60"),
            ));
        };
        if magnitude > max {
            return Err(self.bad(kind, i, name, &format!("more than {max} degrees")));
        }
        let sign = match hemisphere.as_bytes() {
            [h] if *h == letters[0] => 1.0,
            [h] if *h == letters[1] => -1.0,
            _ => {
                let expected = format!(
                    "expected {} or {}",
                    char::from(letters[0]),
                    char::from(letters[1])
                );
                return Err(self.bad(kind, i + 1, &format!("{name} hemisphere"), &expected));
            }
        };
        Ok(Some(sign * magnitude))
    }

    /// A one-letter field kept as text (status, mode, nav status).
    fn letter(&self, kind: &str, i: usize, name: &str) -> Result<Option<String>, DecodeError> {
        match self.text(i) {
            "" => Ok(None),
            s if s.len() == 1 && s.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Ok(Some(s.to_owned()))
            }
            _ => Err(self.bad(kind, i, name, "expected one letter")),
        }
    }
}

fn parse_rmc(talker: [u8; 2], f: &Fields<'_>) -> Result<Sentence, DecodeError> {
    const K: &str = "RMC";
    f.need(K, RMC_MIN_FIELDS)?;
    let time = f.time(K, 1)?;
    let status = match f.text(2).as_bytes() {
        [] => None,
        [s @ (b'A' | b'V')] => Some(*s),
        _ => return Err(f.bad(K, 2, "status", "expected A or V")),
    };
    let lat = f.coordinate(K, 3, true)?;
    let lon = f.coordinate(K, 5, false)?;
    let speed_kmh = f
        .decimal(K, 7, "speed over ground, knots", false)?
        .map(|kn| kn * KMH_PER_KNOT);
    let course_deg = f.decimal(K, 8, "course over ground", false)?;
    if course_deg.is_some_and(|c| c > 360.0) {
        return Err(f.bad(K, 8, "course over ground", "more than 360 degrees"));
    }
    let date_days = parse_date(f.text(9))
        .map_err(|why| f.bad(K, 9, "date", &format!("expected ddmmyy, {why}")))?;
    let variation = f.decimal(K, 10, "magnetic variation", false)?;
    let magnetic_variation_deg = match (variation, f.text(11).as_bytes()) {
        // Some receivers print the direction letter even with no variation.
        (None, [] | [b'E' | b'W']) => None,
        (Some(v), [b'E']) => Some(v),
        (Some(v), [b'W']) => Some(-v),
        _ => {
            return Err(f.bad(
                K,
                11,
                "magnetic variation direction",
                "expected E or W with a variation",
            ))
        }
    };
    Ok(Sentence::Rmc(
        time,
        Rmc {
            talker,
            status,
            lat,
            lon,
            speed_kmh,
            course_deg,
            date_days,
            magnetic_variation_deg,
            mode: f.letter(K, 12, "mode")?,
            nav_status: f.letter(K, 13, "navigational status")?,
            extra: f.rest(RMC_KNOWN_FIELDS + 1),
        },
    ))
}

fn parse_gga(talker: [u8; 2], f: &Fields<'_>) -> Result<Sentence, DecodeError> {
    const K: &str = "GGA";
    f.need(K, GGA_MIN_FIELDS)?;
    let time = f.time(K, 1)?;
    let lat = f.coordinate(K, 2, true)?;
    let lon = f.coordinate(K, 4, false)?;
    let quality =
        parse_uint(f.text(6)).ok_or_else(|| f.bad(K, 6, "fix quality", "expected a number"))?;
    let satellites = parse_uint(f.text(7))
        .ok_or_else(|| f.bad(K, 7, "satellites in use", "expected a number"))?
        .map(|n| u8::try_from(n).map_err(|_| f.bad(K, 7, "satellites in use", "more than 255")))
        .transpose()?;
    let hdop = f.decimal(K, 8, "HDOP", false)?;
    let altitude_m = f.decimal(K, 9, "altitude", true)?;
    metres(f, 9, 10, "altitude")?;
    let geoid_separation_m = f.decimal(K, 11, "geoid separation", true)?;
    metres(f, 11, 12, "geoid separation")?;
    let dgps_age_s = f.decimal(K, 13, "age of DGPS data", false)?;
    let dgps_station = Some(f.text(14))
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Ok(Sentence::Gga(
        time,
        Gga {
            talker,
            lat,
            lon,
            quality,
            satellites,
            hdop,
            altitude_m,
            geoid_separation_m,
            dgps_age_s,
            dgps_station,
            extra: f.rest(GGA_KNOWN_FIELDS + 1),
        },
    ))
}

/// The unit field after a GGA height: `M`, or empty when the height is empty too.
fn metres(f: &Fields<'_>, value: usize, unit: usize, name: &str) -> Result<(), DecodeError> {
    match (f.text(value).is_empty(), f.text(unit)) {
        (_, "M") | (true, "") => Ok(()),
        _ => Err(f.bad("GGA", unit, &format!("{name} unit"), "expected M")),
    }
}

/// `$xxZDA,hhmmss.ss,dd,mm,yyyy,zh,zm`: a date with a four-digit year.
fn parse_zda(f: &Fields<'_>) -> Option<DateRef> {
    let time_of_day_ms = parse_time_of_day(f.text(1)).ok()??;
    let day = parse_fixed(f.text(2), 2)?;
    let month = parse_fixed(f.text(3), 2)?;
    let year = parse_fixed(f.text(4), 4)?;
    let days = civil_days(year, month, day).ok()?;
    Some(DateRef {
        days,
        time_of_day_ms,
    })
}

/// The time of an epoch with a time of day but no date of its own: the day of the last date
/// seen, or the day before or after, whichever puts it within 12 hours of that sentence.
fn borrowed_date(date: DateRef, time_of_day_ms: i64) -> i64 {
    let mut days = date.days;
    let gap = time_of_day_ms - date.time_of_day_ms;
    if gap > HALF_DAY_MS {
        days -= 1;
    } else if gap < -HALF_DAY_MS {
        days += 1;
    }
    days * DAY_MS + time_of_day_ms
}

/// `hhmmss` or `hhmmss.f…` (any number of fraction digits, milliseconds kept, the rest
/// truncated) to milliseconds of the day; empty is `None`. Second 60 (a leap second) is
/// accepted and lands on the next second, as POSIX time does.
fn parse_time_of_day(text: &str) -> Result<Option<i64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let bytes = whole.as_bytes();
    if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err("not six digits".to_owned());
    }
    let two = |at: usize| -> i64 {
        let d = |i: usize| i64::from(bytes.get(i).copied().unwrap_or(b'0') - b'0');
        d(at) * 10 + d(at + 1)
    };
    let (h, m, s) = (two(0), two(2), two(4));
    if h > 23 || m > 59 || s > 60 {
        return Err(format!("{h:02}:{m:02}:{s:02} is not a time of day"));
    }
    let ms = match fraction {
        None => 0,
        Some(f) if f.bytes().all(|b| b.is_ascii_digit()) => fraction_ms(f),
        Some(_) => return Err("fraction is not digits".to_owned()),
    };
    Ok(Some(((h * 60 + m) * 60 + s) * 1000 + ms))
}

/// Milliseconds of a decimal fraction's digits (`"5"` → 500, `"123456"` → 123).
fn fraction_ms(digits: &str) -> i64 {
    let mut ms = 0;
    let mut bytes = digits.bytes();
    for _ in 0..3 {
        ms = ms * 10 + bytes.next().map_or(0, |b| i64::from(b - b'0'));
    }
    ms
}

/// `ddmmyy` to days since the epoch; empty is `None`. POSIX `%y` pivot.
fn parse_date(text: &str) -> Result<Option<i64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let [d, m, y] = [0, 2, 4].map(|at| text.get(at..at + 2).and_then(|s| parse_fixed(s, 2)));
    let (Some(day), Some(month), Some(yy), 6) = (d, m, y, text.len()) else {
        return Err("not six digits".to_owned());
    };
    let year = if yy >= 69 { 1900 + yy } else { 2000 + yy };
    civil_days(year, month, day).map(Some)
}

/// Days since the epoch of a calendar date, or why it is not one.
fn civil_days(year: i64, month: i64, day: i64) -> Result<i64, String> {
    let last = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return Err(format!("month {month} is not 1..=12")),
    };
    if !(1..=last).contains(&day) {
        return Err(format!(
            "day {day} is not in 1..={last} for {year}-{month:02}"
        ));
    }
    Ok(days_from_civil(year, month, day))
}

/// Exactly `width` ASCII digits.
fn parse_fixed(text: &str, width: usize) -> Option<i64> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Digits only (no sign, at most 18 so it fits); empty is `Some(None)`, bad is `None`.
fn parse_uint(text: &str) -> Option<Option<u64>> {
    if text.is_empty() {
        return Some(None);
    }
    if text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(Some)
}

/// `[-]digits[.digits]` (either side of the point may be empty, not both); empty is
/// `Some(None)`, bad is `None`. Checked by hand because `f64::from_str` also takes `inf`,
/// `NaN`, exponents and a `+` sign, none of which NMEA has.
fn parse_decimal(text: &str, signed: bool) -> Option<Option<f64>> {
    if text.is_empty() {
        return Some(None);
    }
    let unsigned = match text.strip_prefix('-') {
        Some(rest) if signed => rest,
        Some(_) => return None,
        None => text,
    };
    let mut digits = 0;
    let mut points = 0;
    for b in unsigned.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => points += 1,
            _ => return None,
        }
    }
    if digits == 0 || points > 1 {
        return None;
    }
    text.parse().ok().map(Some)
}

/// `ddmm.mmmm` / `dddmm.mmmm` (any number of degree digits, since some emitters drop leading
/// zeros, and any number of minute decimals) to unsigned degrees.
fn parse_ddmm(text: &str) -> Option<f64> {
    let whole = text.split_once('.').map_or(text, |(w, _)| w);
    if whole.is_empty() || whole.len() > 5 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = parse_decimal(text, false)??;
    let whole: u32 = whole.parse().ok()?;
    let degrees = f64::from(whole / 100);
    if whole % 100 >= 60 {
        return None;
    }
    let minutes = value - degrees * 100.0;
    Some(degrees + minutes / 60.0)
}

fn talker_text(talker: [u8; 2]) -> String {
    talker.iter().map(|&b| char::from(b)).collect()
}

/// `hhmmss.sss`, the NMEA form, for an epoch whose date is unknown.
fn format_tod(ms: i64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}{:02}{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

fn push_text(io: &mut Vec<(IoKey, IoValue)>, name: &str, value: Option<String>) {
    if let Some(v) = value {
        io.push((IoKey::Name(name.to_owned()), IoValue::Text(v)));
    }
}

fn push_f64(io: &mut Vec<(IoKey, IoValue)>, name: &str, value: Option<f64>) {
    if let Some(v) = value {
        io.push((IoKey::Name(name.to_owned()), IoValue::F64(v)));
    }
}
