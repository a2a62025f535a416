//! Little-endian encoding of on-disk integers, in one place.
//!
//! Every integer the engine writes goes through [`put_u32`], [`put_u64`] or [`put_varint`],
//! and every integer it reads through a [`Decoder`], which never panics: reading past the end
//! or an over-long varint returns `Error::Corruption` naming the file and offset.

use std::path::Path;

use crate::error::{Error, Result};

/// Appends `v` as 4 little-endian bytes.
pub fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as 8 little-endian bytes.
pub fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as an LEB128 varint (1 to 10 bytes).
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a varint length followed by the bytes.
pub fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Reads `u32` from the first 4 bytes of `b`, if there are 4.
#[must_use]
pub fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// Reads `u64` from the first 8 bytes of `b`, if there are 8.
#[must_use]
pub fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

/// A cursor over bytes read from disk. Every failure is a `Corruption` that names the file,
/// the absolute offset of the field and what was being decoded.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    base_offset: u64,
    file: &'a Path,
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// A decoder of `buf`, which starts at `base_offset` in `file`; `what` names the record
    /// kind in error messages.
    #[must_use]
    pub fn new(buf: &'a [u8], file: &'a Path, base_offset: u64, what: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            base_offset,
            file,
            what,
        }
    }

    /// The error for a damaged field at the current position.
    #[must_use]
    pub fn error(&self, detail: &str) -> Error {
        Error::corruption(
            self.file,
            self.base_offset + self.pos as u64,
            format!("{}: {detail}", self.what),
        )
    }

    /// Bytes not yet consumed.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte has been consumed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The position relative to the start of the buffer.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Consumes `n` bytes.
    ///
    /// # Errors
    /// `Corruption` if fewer than `n` bytes remain.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(self.error(&format!("needs {n} bytes, {} remain", self.remaining())));
        };
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.error("out of bounds"))?;
        self.pos = end;
        Ok(out)
    }

    /// Consumes one byte.
    ///
    /// # Errors
    /// `Corruption` at the end of the buffer.
    pub fn u8(&mut self) -> Result<u8> {
        let b = self.bytes(1)?;
        b.first().copied().ok_or_else(|| self.error("truncated"))
    }

    /// Consumes a little-endian `u32`.
    ///
    /// # Errors
    /// `Corruption` if fewer than 4 bytes remain.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        read_u32(b).ok_or_else(|| self.error("truncated u32"))
    }

    /// Consumes a little-endian `u64`.
    ///
    /// # Errors
    /// `Corruption` if fewer than 8 bytes remain.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        read_u64(b).ok_or_else(|| self.error("truncated u64"))
    }

    /// Consumes an LEB128 varint.
    ///
    /// # Errors
    /// `Corruption` if the varint is truncated or longer than 10 bytes / 64 bits.
    pub fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// Consumes a varint that must fit in `usize` and be at most `max`.
    ///
    /// # Errors
    /// `Corruption` if it is larger than `max`.
    pub fn varint_len(&mut self, max: usize) -> Result<usize> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| self.error(&format!("length {v} exceeds limit {max}")))
    }

    /// Consumes a varint length prefix and that many bytes.
    ///
    /// # Errors
    /// `Corruption` if the length is over `max` or the bytes are truncated.
    pub fn length_prefixed(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.varint_len(max)?;
        self.bytes(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ];
        for v in values {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut d = Decoder::new(&buf, Path::new("t"), 0, "test");
            assert_eq!(d.varint().unwrap(), v);
            assert!(d.is_empty());
        }
    }

    #[test]
    fn overlong_varint_is_corruption_not_panic() {
        let buf = [0xffu8; 11];
        let mut d = Decoder::new(&buf, Path::new("t"), 0, "test");
        assert!(d.varint().unwrap_err().is_corruption());
        let buf = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        let mut d = Decoder::new(&buf, Path::new("t"), 0, "test");
        assert!(d.varint().unwrap_err().is_corruption());
    }

    #[test]
    fn truncated_read_names_file_and_offset() {
        let buf = [1u8, 2, 3];
        let mut d = Decoder::new(&buf, Path::new("f.sst"), 100, "footer");
        d.u8().unwrap();
        match d.u32().unwrap_err() {
            Error::Corruption { file, offset, what } => {
                assert_eq!(file, Path::new("f.sst"));
                assert_eq!(offset, 101);
                assert!(what.starts_with("footer"));
            }
            e => panic!("unexpected {e}"),
        }
    }
}
