//! The text primitives of a Wialon packet: fields with their frame offsets, the fault classes
//! the protocol answers with distinct codes, number grammars and the v2.0 CRC field.
//!
//! Everything works on bytes: the separators are ASCII, and a device that writes its param
//! names in some legacy code page must not make the whole packet unreadable.

use crate::crc::crc16_arc;
use crate::{DecodeError, IoValue};

/// One field of a packet and where it starts in the frame (byte 0 = the leading `#`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Field<'a> {
    pub at: usize,
    pub text: &'a [u8],
}

impl<'a> Field<'a> {
    pub(super) fn new(at: usize, text: &'a [u8]) -> Self {
        Field { at, text }
    }

    /// `NA` is the protocol's "no data"; devices also leave fields empty (`…;;…`).
    pub(super) fn is_absent(&self) -> bool {
        self.text.is_empty() || self.text == b"NA"
    }

    /// The field as text for error messages, cut so a log line stays a line.
    pub(super) fn show(&self) -> String {
        show(self.text)
    }
}

/// Bytes as text for error messages: lossy UTF-8, at most 40 bytes, control bytes escaped.
pub(super) fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 40;
    let cut = bytes.get(..LIMIT).unwrap_or(bytes);
    let mut out: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if bytes.len() > LIMIT {
        out.push('…');
    }
    out
}

/// Why a packet was refused, in the classes the protocol gives distinct answer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    Structure,
    Time,
    Coordinates,
    /// Speed, course or height.
    Motion,
    /// Satellites or HDOP.
    Satellites,
    InputsOutputs,
    Adc,
    Params,
    Checksum,
}

/// A refused packet: the fault class picks the answer, the error goes to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Bad {
    pub fault: Fault,
    pub error: DecodeError,
}

// Out of line: refusals are rare, and their formatting should not weigh on the parse loop.
#[cold]
#[inline(never)]
pub(super) fn bad(fault: Fault, at: usize, reason: String) -> Bad {
    Bad {
        fault,
        error: DecodeError::new(at, reason),
    }
}

/// Splits `text` (starting at frame offset `at`) on `sep` into at most `N` fields. Returns
/// how many fields there are in all (possibly more than `N`; only the first `N` are kept),
/// so the caller can check the count without allocating.
pub(super) fn split<'a, const N: usize>(
    text: &'a [u8],
    sep: u8,
    at: usize,
) -> (usize, [Field<'a>; N]) {
    let mut out = [Field::default(); N];
    let mut count = 0;
    let mut start = 0;
    for piece in text.split(|&b| b == sep) {
        if let Some(slot) = out.get_mut(count) {
            *slot = Field::new(at + start, piece);
        }
        count += 1;
        start += piece.len() + 1;
    }
    (count, out)
}

/// An unsigned decimal integer: digits only, no sign, no point; `None` past `u64::MAX`.
pub(super) fn unsigned(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A signed 64-bit integer: an optional `-` or `+`, then digits.
pub(super) fn signed(text: &[u8]) -> Option<i64> {
    match text.split_first() {
        Some((b'-', digits)) => 0i64.checked_sub_unsigned(unsigned(digits)?),
        Some((b'+', digits)) => i64::try_from(unsigned(digits)?).ok(),
        _ => i64::try_from(unsigned(text)?).ok(),
    }
}

/// Exact powers of ten as f64 (10^22 is the largest that is exact).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A plain decimal number as devices write them: `[-]digits[.digits]` (also `5.` and `.5`),
/// no exponent, no `inf`/`nan` (which Rust's float parser would accept).
pub(super) fn decimal(text: &[u8], allow_negative: bool) -> Option<f64> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(rest) if allow_negative => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut fraction = 0usize;
    let mut seen_point = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                // Wrapping is harmless: past 15 digits the value is not used (see below).
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                count += 1;
                fraction += usize::from(seen_point);
            }
            b'.' if !seen_point => seen_point = true,
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    // Clinger's fast path: at most 15 digits is an integer below 2^53, and 10^fraction is
    // exact up to 10^22, so one IEEE division gives the correctly rounded value – the same
    // the full parser returns. Everything else takes the full parser.
    if count <= 15 {
        if let Some(&scale) = POW10.get(fraction) {
            let value = mantissa as f64 / scale;
            return Some(if negative { -value } else { value });
        }
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A text value: `Text` when it is UTF-8, else the bytes as sent.
pub(super) fn text_value(bytes: &[u8]) -> IoValue {
    match std::str::from_utf8(bytes) {
        Ok(s) => IoValue::Text(s.to_owned()),
        Err(_) => IoValue::Bytes(bytes.to_vec()),
    }
}

/// Splits a v2.0 body at the last `sep` into the part the CRC covers (up to and including
/// that separator) and the CRC field, and checks it. `body_at` is the body's frame offset.
/// Returns the covered part without its trailing separator.
pub(super) fn check_crc(body: &[u8], sep: u8, body_at: usize) -> Result<&[u8], Bad> {
    let Some(pos) = body.iter().rposition(|&b| b == sep) else {
        return Err(bad(
            Fault::Structure,
            body_at,
            format!(
                "no '{}' before a CRC field (protocol 2.0 packets end with ;crc16)",
                char::from(sep)
            ),
        ));
    };
    let covered = body.get(..=pos).unwrap_or_default();
    let field = Field::new(body_at + pos + 1, body.get(pos + 1..).unwrap_or_default());
    let computed = crc16_arc(covered);
    match crc_value(field.text) {
        Some(sent) if sent == u32::from(computed) => {
            Ok(covered.get(..pos).unwrap_or_default())
        }
        Some(_) => Err(bad(
            Fault::Checksum,
            field.at,
            format!(
                "CRC field \"{}\" does not match CRC-16/ARC {computed:04X} of the {} bytes before it",
                field.show(),
                covered.len()
            ),
        )),
        None => Err(bad(
            Fault::Checksum,
            field.at,
            format!("CRC field \"{}\" is not hexadecimal", field.show()),
        )),
    }
}

/// The CRC field as a number: hex digits of any case, leading zeros optional, an optional
/// `0x` prefix (all seen from real devices). Up to 8 digits, so a zero-padded value still
/// parses; the caller compares it with the 16-bit CRC, so a wider value simply mismatches.
fn crc_value(text: &[u8]) -> Option<u32> {
    let digits = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_every_field_and_keeps_offsets() {
        let (n, f) = split::<3>(b"a;bc;;d", b';', 10);
        assert_eq!(n, 4);
        assert_eq!((f[0].at, f[0].text), (10, &b"a"[..]));
        assert_eq!((f[1].at, f[1].text), (12, &b"bc"[..]));
        assert_eq!((f[2].at, f[2].text), (15, &b""[..]));
        assert_eq!(split::<2>(b"", b';', 0).0, 1);
    }

    #[test]
    fn number_grammars_are_strict() {
        assert_eq!(decimal(b"45.8", false), Some(45.8));
        assert_eq!(decimal(b"5.", false), Some(5.0));
        assert_eq!(decimal(b".5", false), Some(0.5));
        assert_eq!(decimal(b"-3", true), Some(-3.0));
        for bad in [
            &b"-3"[..],
            b"",
            b".",
            b"1e5",
            b"inf",
            b"nan",
            b"1.2.3",
            b"+1",
            b" 1",
        ] {
            assert_eq!(decimal(bad, false), None, "{}", show(bad));
        }
        assert_eq!(decimal(b"-", true), None);
        assert_eq!(unsigned(b"0042"), Some(42));
        assert_eq!(unsigned(b"-1"), None);
        assert_eq!(unsigned(b"99999999999999999999"), None);
        assert_eq!(unsigned(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(signed(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(signed(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(signed(b"+7"), Some(7));
        assert_eq!(signed(b"9223372036854775808"), None);
        assert_eq!(signed(b"-9223372036854775809"), None);
        for bad in [&b""[..], b"-", b"+", b"1.0", b"--1", b" 1"] {
            assert_eq!(signed(bad), None, "{}", show(bad));
        }
    }

    #[test]
    fn the_decimal_fast_path_matches_the_full_parser() {
        let samples = [
            "0",
            "-0",
            "0.1",
            "45.8",
            "14.77",
            "0.02",
            "3.6",
            "5544.6025",
            "03739.6834",
            "44.670410",
            "123456.7",
            "999999999999999",
            "0.000000000000001",
            "1234567890.12345",
            "9007199254740993",
            "12345678901234567890.5",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "-273.15",
            "179.99999999999999999",
        ];
        for text in samples {
            let want: f64 = text.parse().unwrap();
            let got = decimal(text.as_bytes(), true).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        // Every short decimal in a dense range, against the full parser.
        for i in 0..200_000u32 {
            let text = format!("{}.{:03}", i / 1000, i % 1000);
            let want: f64 = text.parse().unwrap();
            assert_eq!(decimal(text.as_bytes(), false), Some(want), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decimal_is_bit_identical_to_the_full_parser(
            text in "-?[0-9]{0,20}(\\.[0-9]{0,25})?",
        ) {
            let want = text.parse::<f64>().ok().filter(|_| text.bytes().any(|b| b.is_ascii_digit()));
            let got = decimal(text.as_bytes(), true);
            proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{}", text);
        }
    }

    #[test]
    fn crc_fields_parse_as_devices_write_them() {
        assert_eq!(crc_value(b"15CD"), Some(0x15CD));
        assert_eq!(crc_value(b"8a7"), Some(0x8A7));
        assert_eq!(crc_value(b"0x9b0"), Some(0x9B0));
        assert_eq!(crc_value(b"0015cd"), Some(0x15CD));
        assert_eq!(crc_value(b""), None);
        assert_eq!(crc_value(b"0x"), None);
        assert_eq!(crc_value(b"15CG"), None);
        assert_eq!(crc_value(b"123456789"), None);
    }

    #[test]
    fn crc_covers_the_body_up_to_the_last_separator() {
        let body = b"2.0;123456789012345;NA;15CD";
        assert_eq!(
            check_crc(body, b';', 3).ok(),
            Some(&b"2.0;123456789012345;NA"[..])
        );
        let err = check_crc(b"2.0;123456789012345;NA;15CE", b';', 3).unwrap_err();
        assert_eq!(err.fault, Fault::Checksum);
        assert_eq!(err.error.offset, 26);
        assert!(err.error.reason.contains("15CD"), "{}", err.error.reason);
        assert_eq!(
            check_crc(b"15CD", b';', 3).unwrap_err().fault,
            Fault::Structure
        );
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show(b"a\r\n"), "a\\r\\n");
        assert_eq!(show(&[b'x'; 50]).chars().count(), 41);
    }
}
