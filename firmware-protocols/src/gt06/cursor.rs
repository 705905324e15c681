//! A bounds-checked big-endian reader over a packet's information content.
//!
//! Every read returns the value or a [`DecodeError`] carrying the frame offset of the read,
//! so the packet parsers never index a slice themselves and never panic on short content.

use crate::DecodeError;

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the frame, so errors point into the frame, not into the slice.
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize) -> Self {
        Cursor { buf, pos: 0, base }
    }

    /// Frame offset of the next byte to read.
    pub(super) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Everything not read yet; the cursor is then at the end.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
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
    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(1, what)),
        }
    }

    #[inline]
    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// A 3-byte big-endian field (the GSM cell id).
    #[inline]
    pub(super) fn u24(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what)
            .map(|[a, b, c]: [u8; 3]| u32::from_be_bytes([0, a, b, c]))
    }

    #[inline]
    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
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
