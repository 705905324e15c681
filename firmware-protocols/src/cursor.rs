//! A bounds-checked big-endian reader over one slice of a frame, shared by the binary
//! decoders (Teltonika, GT06).
//!
//! Every read either returns the value or a [`DecodeError`] carrying the frame offset of the
//! read, so the parsers above never index a slice themselves and never panic on short input.

use crate::DecodeError;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the frame, so errors point into the frame, not into the slice.
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Cursor { buf, pos: 0, base }
    }

    /// Frame offset of the next byte to read.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Position within this cursor's slice, for [`Cursor::since`].
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes read since position `start`.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    /// Everything not read yet; the cursor is then at the end.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => end,
            _ => return Err(self.truncated(n, what)),
        };
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated(n, what))?;
        self.pos = end;
        Ok(bytes)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        // `take` returned exactly N bytes, so this cannot fail; mapping keeps it panic-free.
        bytes.try_into().map_err(|_| self.truncated(N, what))
    }

    #[inline]
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(1, what)),
        }
    }

    #[inline]
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// A 3-byte big-endian field (the GSM cell id).
    #[inline]
    pub(crate) fn u24(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what)
            .map(|[a, b, c]: [u8; 3]| u32::from_be_bytes([0, a, b, c]))
    }

    #[inline]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_be_bytes)
    }

    #[inline]
    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.array(what).map(i16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.array(what).map(i32::from_be_bytes)
    }

    /// A 1- or 2-byte unsigned field, for the ids and counts whose width depends on the codec.
    #[inline]
    pub(crate) fn uint(&mut self, width: usize, what: &'static str) -> Result<u16, DecodeError> {
        if width == 1 {
            self.u8(what).map(u16::from)
        } else {
            self.u16(what)
        }
    }

    // Kept out of line: errors are rare and their formatting should not bloat the hot path.
    #[cold]
    #[inline(never)]
    fn truncated(&self, n: usize, what: &'static str) -> DecodeError {
        DecodeError::new(
            self.offset(),
            format!(
                "truncated {what}: needs {n} bytes, {} left",
                self.remaining()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_reports_frame_offsets() {
        let mut c = Cursor::new(&[0x01, 0x02, 0x03, 0xFF, 0xFE], 10);
        assert_eq!(c.u16("a").ok(), Some(0x0102));
        assert_eq!(c.offset(), 12);
        assert_eq!(c.u8("b").ok(), Some(3));
        assert_eq!(c.i16("c").ok(), Some(-2));
        let err = c.u8("d").unwrap_err();
        assert_eq!(err.offset, 15);
        assert!(err.reason.contains("truncated d"), "{}", err.reason);
        assert!(c.take(usize::MAX, "huge").is_err());
    }

    #[test]
    fn reads_three_byte_fields_and_the_rest() {
        let mut c = Cursor::new(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0xFF], 4);
        assert_eq!(c.u16("a").ok(), Some(0x0102));
        assert_eq!(c.offset(), 6);
        assert_eq!(c.u24("b").ok(), Some(0x030405));
        let err = c.u32("c").unwrap_err();
        assert_eq!(err.offset, 9);
        assert_eq!(err.reason, "truncated c: needs 4 bytes, 2 left");
        assert_eq!(c.rest(), &[0x06, 0xFF]);
        assert_eq!(c.remaining(), 0);
        assert!(c.take(usize::MAX, "huge").is_err());
    }
}
