//! The record log's on-disk constants, shared by [`super::LogWriter`] and [`super::LogReader`]:
//! the header layout, the record kinds and the size limit.
//!
//! A log file is a sequence of records with no file header and no padding:
//!
//! ```text
//! record := header payload
//! header := header_crc:u32  length:u32  kind:u8  payload_crc:u32      (13 bytes, little-endian)
//! ```
//!
//! `header_crc` is the CRC-32 (IEEE, as computed by `crc32fast`) of the 9 header bytes after
//! it; `payload_crc` is the CRC-32 of the `length` payload bytes. Checking the header on its
//! own lets the reader reject a damaged `length` before it trusts it to size a read.
//!
//! Invariants: the writer never writes a `length` over [`MAX_PAYLOAD_BYTES`] nor a kind other
//! than [`RecordKind::Full`]; record kinds are never renumbered.
//!
//! Thread-safety: constants and pure functions only.
//!
//! Read next: `docs/format/wal.md` (grammar, worked example, torn tail vs corruption).

use crate::coding::{put_u32, read_u32};

/// Bytes in a record header.
pub(crate) const HEADER_BYTES: usize = 13;

/// [`HEADER_BYTES`] as a file-offset quantity.
pub(crate) const HEADER_BYTES_U64: u64 = HEADER_BYTES as u64;

/// The largest payload a record may hold. A write batch or version edit larger than this is
/// refused by the writer; a header claiming more is treated as damaged by the reader. Large
/// enough for any batch the engine accepts, small enough that one record cannot demand an
/// absurd buffer.
pub(crate) const MAX_PAYLOAD_BYTES: u32 = 256 << 20;

/// What a record holds. Stored as one byte; values are never renumbered.
///
/// Records are not fragmented, so there is one kind today. The byte exists so that a later
/// format can add kinds (a compressed payload, say) that an older reader refuses loudly
/// instead of misreading. `0` is never used: a zeroed header must not name a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A whole payload in one record.
    Full = 1,
}

impl RecordKind {
    /// The kind stored as `byte`, or `None` for a kind this version does not know.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Full),
            _ => None,
        }
    }
}

/// A header whose `header_crc` matched. Nothing else about it has been checked: `length` may
/// exceed the limit or the file, and `kind` may be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Payload bytes that follow the header.
    pub(crate) length: u32,
    /// The raw kind byte; see [`RecordKind::from_byte`].
    pub(crate) kind: u8,
    /// CRC-32 of the payload.
    pub(crate) payload_crc: u32,
}

impl Header {
    /// Decodes the first [`HEADER_BYTES`] of `bytes`. `None` if there are fewer or the header
    /// CRC does not match. This is the reader's hot check when it scans for a later record,
    /// so it does no more than one 9-byte CRC before it can say no.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let stored_crc = read_u32(bytes)?;
        let rest = bytes.get(4..HEADER_BYTES)?;
        if crc32fast::hash(rest) != stored_crc {
            return None;
        }
        Some(Self {
            length: read_u32(rest)?,
            kind: *rest.get(4)?,
            payload_crc: read_u32(rest.get(5..)?)?,
        })
    }

    /// Appends the header of a `kind` record holding `payload` to `out`.
    ///
    /// The caller has checked `payload.len() <= MAX_PAYLOAD_BYTES`; a longer payload is a bug
    /// (debug-asserted) and its length would be stored truncated.
    pub(crate) fn encode(kind: RecordKind, payload: &[u8], out: &mut Vec<u8>) {
        debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES as usize);
        let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut rest = Vec::with_capacity(HEADER_BYTES - 4);
        put_u32(&mut rest, length);
        rest.push(kind as u8);
        put_u32(&mut rest, crc32fast::hash(payload));
        put_u32(out, crc32fast::hash(&rest));
        out.extend_from_slice(&rest);
    }

    /// Payload length as a file-offset quantity.
    pub(crate) fn length_u64(self) -> u64 {
        u64::from(self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_header_decodes_to_its_fields() {
        let mut buf = Vec::new();
        Header::encode(RecordKind::Full, b"hello", &mut buf);
        assert_eq!(buf.len(), HEADER_BYTES);
        let h = Header::decode(&buf).unwrap();
        assert_eq!(h.length, 5);
        assert_eq!(h.kind, RecordKind::Full as u8);
        assert_eq!(h.payload_crc, crc32fast::hash(b"hello"));
    }

    #[test]
    fn any_single_byte_change_in_a_header_fails_its_crc() {
        let mut buf = Vec::new();
        Header::encode(RecordKind::Full, b"payload", &mut buf);
        for i in 0..HEADER_BYTES {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[i] ^= 1 << bit;
                assert_eq!(Header::decode(&damaged), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn zeroed_or_short_header_does_not_decode() {
        assert_eq!(Header::decode(&[0; HEADER_BYTES]), None);
        let mut buf = Vec::new();
        Header::encode(RecordKind::Full, b"", &mut buf);
        assert_eq!(Header::decode(&buf[..HEADER_BYTES - 1]), None);
    }

    #[test]
    fn kind_zero_and_unknown_kinds_are_not_decoded() {
        assert_eq!(RecordKind::from_byte(0), None);
        assert_eq!(RecordKind::from_byte(1), Some(RecordKind::Full));
        assert_eq!(RecordKind::from_byte(2), None);
    }
}
