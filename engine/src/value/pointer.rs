//! [`ValuePointer`]: what the index stores for a value kept in a value file.
//!
//! ```text
//! pointer := file:varint offset:varint length:varint crc:u32
//! ```
//!
//! The offset is *logical*: relocation moves the bytes to other physical blocks and rewrites
//! only the extent map, so a pointer stays valid for the life of the value. The CRC-32 covers
//! the value's bytes and is checked on every read (DESIGN invariant 4).

use std::path::Path;

use crate::coding::{Decoder, put_u32, put_varint};
use crate::error::Result;
use crate::options::MAX_VALUE_BYTES;
use crate::value::block::ValueFileId;

/// Where a value lives and how to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ValuePointer {
    pub file: ValueFileId,
    /// Logical byte offset in the value file.
    pub offset: u64,
    pub len: u64,
    /// CRC-32 of the value's bytes.
    pub crc: u32,
}

impl ValuePointer {
    /// One past the last logical byte of the value.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }

    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        put_varint(buf, self.file.0);
        put_varint(buf, self.offset);
        put_varint(buf, self.len);
        put_u32(buf, self.crc);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(24);
        self.encode_into(&mut buf);
        buf
    }

    /// Decodes a pointer stored at `offset` of `file`.
    ///
    /// # Errors
    /// `Corruption` if it is truncated, has trailing bytes, or claims an impossible length.
    pub fn decode(bytes: &[u8], file: &Path, offset: u64) -> Result<Self> {
        let mut d = Decoder::new(bytes, file, offset, "value pointer");
        let p = Self {
            file: ValueFileId(d.varint()?),
            offset: d.varint()?,
            len: d.varint_len(MAX_VALUE_BYTES)? as u64,
            crc: d.u32()?,
        };
        if p.offset.checked_add(p.len).is_none() {
            return Err(d.error("value extends past the end of the logical space"));
        }
        if !d.is_empty() {
            return Err(d.error("trailing bytes"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_in_the_value_doc_encodes_byte_for_byte() {
        let p = ValuePointer {
            file: ValueFileId(7),
            offset: 8192,
            len: 65536,
            crc: 0xdead_beef,
        };
        assert_eq!(
            p.encode(),
            [0x07, 0x80, 0x40, 0x80, 0x80, 0x04, 0xef, 0xbe, 0xad, 0xde]
        );
    }

    #[test]
    fn pointers_round_trip_and_truncations_are_corruption() {
        let p = ValuePointer {
            file: ValueFileId(7),
            offset: 1 << 40,
            len: 65536,
            crc: 0xdead_beef,
        };
        let bytes = p.encode();
        assert_eq!(ValuePointer::decode(&bytes, Path::new("t"), 0).unwrap(), p);
        for len in 0..bytes.len() {
            assert!(
                ValuePointer::decode(&bytes[..len], Path::new("t"), 0)
                    .unwrap_err()
                    .is_corruption()
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(ValuePointer::decode(&long, Path::new("t"), 0).is_err());
    }
}
