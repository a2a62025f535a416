//! The fixed parts of the table format: constants, block types, block handles, the block
//! trailer (type byte + CRC32) and the footer.
//!
//! Invariants: a block on disk is `contents ++ type:u8 ++ crc32(contents ++ type):u32`; a
//! handle names the contents only (`size_bytes` excludes the 5-byte trailer); the footer is the
//! last [`FOOTER_BYTES`] of the file. Every decode here checks lengths against the file and
//! against [`MAX_BLOCK_SIZE_BYTES`] before it allocates, and every failure is a
//! `Corruption` naming the table's path and the offset of the damaged field.
//!
//! Thread safety: plain functions and values; nothing here holds state.
//!
//! Read next: `docs/format/table.md` (the byte layout), then `block.rs`.

use std::path::Path;

use bytes::Bytes;

use super::bloom::FilterLayout;
use crate::coding::{self, Decoder};
use crate::error::{Error, Result};
use crate::fs::ReadableFile;
use crate::key::{self, RangeTombstone, SeqNo, ValueKind};

/// Identifies a table file: the last 8 bytes of every table. Written little-endian, the bytes
/// on disk spell `xdbtabl1` (`78 64 62 74 61 62 6c 31`).
pub(crate) const TABLE_MAGIC: u64 = 0x316c_6261_7462_6478;

/// A table format version: the footer's version field. DO NOT RENUMBER or reuse a number for
/// another layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum FormatVersion {
    /// The first format: a flat bloom filter. Read, and written only on request.
    V1 = 1,
    /// A blocked bloom filter, each key's probes in one 64-byte line. Written by default.
    V2 = 2,
}

impl FormatVersion {
    /// The version tables are written in.
    pub const CURRENT: Self = Self::V2;

    fn from_u32(version: u32) -> Option<Self> {
        match version {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// Where the version's bloom filter puts a key's probes.
    #[must_use]
    pub fn filter_layout(self) -> FilterLayout {
        match self {
            Self::V1 => FilterLayout::Flat,
            Self::V2 => FilterLayout::Blocked,
        }
    }
}

/// Size of the footer: three handles (16 bytes each), version, CRC, magic.
pub(crate) const FOOTER_BYTES: usize = 64;

/// Bytes of the footer the footer CRC covers: the handles and the version.
const FOOTER_CRC_COVERED_BYTES: usize = 52;

/// Bytes after every block's contents: the type byte and the CRC32.
pub(crate) const BLOCK_TRAILER_BYTES: usize = 5;

/// Bytes of the trailer (`seq << 8 | kind`) that ends every internal key on disk.
pub(crate) const KEY_TRAILER_BYTES: usize = 8;

/// The largest block contents a reader accepts and a writer produces. It bounds every
/// allocation made for a block read from disk, and keeps restart offsets within `u32`.
pub(crate) const MAX_BLOCK_SIZE_BYTES: usize = 1 << 28;

/// What a block holds. DO NOT RENUMBER: the byte is stored in every block trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum BlockType {
    /// Sorted internal keys with their values.
    Data = 1,
    /// One entry per data block: its last internal key -> its handle.
    Index = 2,
    /// The bloom filter over the table's user keys.
    Filter = 3,
    /// The table's range tombstones.
    RangeDel = 4,
}

/// Where a block's contents lie in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BlockHandle {
    /// Offset of the first byte of the contents.
    pub offset: u64,
    /// Length of the contents, excluding the block trailer.
    pub size_bytes: u64,
}

impl BlockHandle {
    /// The offset just past the block's trailer; `None` on overflow.
    #[must_use]
    pub fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size_bytes)?
            .checked_add(BLOCK_TRAILER_BYTES as u64)
    }

    /// Appends the handle as two varints (the form used in index entries).
    pub fn encode_varint(&self, buf: &mut Vec<u8>) {
        coding::put_varint(buf, self.offset);
        coding::put_varint(buf, self.size_bytes);
    }

    /// Decodes two varints; the caller checks the handle against the file.
    ///
    /// # Errors
    /// `Corruption` if the varints are damaged.
    pub fn decode_varint(d: &mut Decoder<'_>) -> Result<Self> {
        let offset = d.varint()?;
        let size_bytes = d.varint()?;
        Ok(Self { offset, size_bytes })
    }

    fn encode_fixed(&self, buf: &mut Vec<u8>) {
        coding::put_u64(buf, self.offset);
        coding::put_u64(buf, self.size_bytes);
    }

    fn decode_fixed(d: &mut Decoder<'_>) -> Result<Self> {
        let offset = d.u64()?;
        let size_bytes = d.u64()?;
        Ok(Self { offset, size_bytes })
    }
}

/// The last [`FOOTER_BYTES`] of a table: where the metadata blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The bloom filter block.
    pub filter: BlockHandle,
    /// The range tombstone block.
    pub range_del: BlockHandle,
    /// The format version: how the filter block is laid out.
    pub version: FormatVersion,
}

impl Footer {
    /// The footer's bytes: handles, version, CRC over both, magic.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(FOOTER_BYTES);
        self.index.encode_fixed(&mut buf);
        self.filter.encode_fixed(&mut buf);
        self.range_del.encode_fixed(&mut buf);
        coding::put_u32(&mut buf, self.version as u32);
        let crc = crc32fast::hash(&buf);
        coding::put_u32(&mut buf, crc);
        coding::put_u64(&mut buf, TABLE_MAGIC);
        debug_assert_eq!(buf.len(), FOOTER_BYTES);
        buf
    }

    /// Decodes the footer read from `offset` in `path`. The magic is checked first so that a
    /// file that is not a table (or was truncated) says so rather than reporting a bad CRC.
    ///
    /// # Errors
    /// `Corruption` for a bad magic, CRC or version.
    pub fn decode(buf: &[u8], path: &Path, offset: u64) -> Result<Self> {
        let mut d = Decoder::new(buf, path, offset, "table footer");
        if buf.len() != FOOTER_BYTES {
            return Err(d.error("wrong length"));
        }
        let covered = d.bytes(FOOTER_CRC_COVERED_BYTES)?;
        let stored_crc = d.u32()?;
        let magic = d.u64()?;
        if magic != TABLE_MAGIC {
            let at = offset + (FOOTER_BYTES - 8) as u64;
            return Err(Error::corruption(path, at, "table footer: bad magic"));
        }
        if crc32fast::hash(covered) != stored_crc {
            return Err(Error::corruption(
                path,
                offset,
                "table footer: CRC mismatch",
            ));
        }
        let mut d = Decoder::new(covered, path, offset, "table footer");
        let index = BlockHandle::decode_fixed(&mut d)?;
        let filter = BlockHandle::decode_fixed(&mut d)?;
        let range_del = BlockHandle::decode_fixed(&mut d)?;
        let version = d.u32()?;
        let version = FormatVersion::from_u32(version)
            .ok_or_else(|| d.error(&format!("unsupported format version {version}")))?;
        Ok(Self {
            index,
            filter,
            range_del,
            version,
        })
    }
}

/// The trailer written after a block's contents: type byte and CRC32 of contents ++ type.
#[must_use]
pub(crate) fn block_trailer(contents: &[u8], block_type: BlockType) -> Vec<u8> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(contents);
    hasher.update(&[block_type as u8]);
    let mut trailer = Vec::with_capacity(BLOCK_TRAILER_BYTES);
    trailer.push(block_type as u8);
    coding::put_u32(&mut trailer, hasher.finalize());
    trailer
}

/// Reads the contents of the block at `handle`, which must end at or before `limit_offset`,
/// and checks its type and CRC. The returned `Bytes` owns exactly the contents.
///
/// # Errors
/// `Corruption` if the handle is out of bounds or too large, or the type or CRC is wrong;
/// `Io` if the read fails.
pub(crate) fn read_block(
    file: &dyn ReadableFile,
    path: &Path,
    handle: BlockHandle,
    block_type: BlockType,
    limit_offset: u64,
) -> Result<Bytes> {
    check_handle(path, handle, limit_offset, block_type)?;
    // Both casts are lossless: check_handle bounded size_bytes by MAX_BLOCK_SIZE_BYTES.
    let size = handle.size_bytes as usize;
    let mut buf = vec![0; size + BLOCK_TRAILER_BYTES];
    file.read_exact_at(handle.offset, &mut buf)?;
    let trailer_offset = handle.offset + handle.size_bytes;
    let (contents, trailer) = buf.split_at(size);
    let mut d = Decoder::new(trailer, path, trailer_offset, "block trailer");
    let stored_type = d.u8()?;
    let stored_crc = d.u32()?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(contents);
    hasher.update(&[stored_type]);
    if hasher.finalize() != stored_crc {
        let what = format!("{block_type:?} block: CRC mismatch");
        return Err(Error::corruption(path, handle.offset, what));
    }
    if stored_type != block_type as u8 {
        let what = format!("expected a {block_type:?} block, found type {stored_type}");
        return Err(Error::corruption(path, trailer_offset, what));
    }
    let mut bytes = Bytes::from(buf);
    bytes.truncate(size);
    Ok(bytes)
}

/// Checks that a block and its trailer lie before `limit_offset` and are not too large.
///
/// # Errors
/// `Corruption` naming the block's offset.
pub(crate) fn check_handle(
    path: &Path,
    handle: BlockHandle,
    limit_offset: u64,
    block_type: BlockType,
) -> Result<()> {
    if handle.size_bytes > MAX_BLOCK_SIZE_BYTES as u64 {
        let what = format!(
            "{block_type:?} block of {} bytes exceeds the limit {MAX_BLOCK_SIZE_BYTES}",
            handle.size_bytes
        );
        return Err(Error::corruption(path, handle.offset, what));
    }
    match handle.end_with_trailer() {
        Some(end) if end <= limit_offset => Ok(()),
        _ => {
            let what = format!(
                "{block_type:?} block of {} bytes runs past offset {limit_offset}",
                handle.size_bytes
            );
            Err(Error::corruption(path, handle.offset, what))
        }
    }
}

/// Appends the on-disk form of an internal key: the user key, then `seq << 8 | kind` as 8
/// little-endian bytes.
pub(crate) fn encode_internal_key(buf: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: ValueKind) {
    buf.extend_from_slice(user_key);
    coding::put_u64(buf, key::pack_trailer(seq, kind));
}

/// Splits an on-disk internal key into user key, sequence number and kind; `None` if it is
/// shorter than the trailer or the kind byte is unknown.
#[must_use]
pub(crate) fn decode_internal_key(encoded: &[u8]) -> Option<(&[u8], SeqNo, ValueKind)> {
    let split = encoded.len().checked_sub(KEY_TRAILER_BYTES)?;
    let (user_key, trailer) = encoded.split_at_checked(split)?;
    let (seq, kind) = key::unpack_trailer(coding::read_u64(trailer)?)?;
    Some((user_key, seq, kind))
}

/// The smallest encoded range tombstone: empty start (1), no end (1), sequence number (8).
const MIN_TOMBSTONE_BYTES: usize = 10;

/// The range-tombstone block: `count:varint` then per tombstone
/// `start:bytes has_end:u8 [end:bytes] seq:u64`, where `bytes` is a varint length and the
/// bytes. Tombstones are stored in the order they were added.
#[must_use]
pub(crate) fn encode_range_tombstones(tombstones: &[RangeTombstone]) -> Vec<u8> {
    let mut buf = Vec::new();
    coding::put_varint(&mut buf, tombstones.len() as u64);
    for t in tombstones {
        coding::put_bytes(&mut buf, &t.start);
        match &t.end {
            Some(end) => {
                buf.push(1);
                coding::put_bytes(&mut buf, end);
            }
            None => buf.push(0),
        }
        coding::put_u64(&mut buf, t.seq.0);
    }
    buf
}

/// Decodes the contents of the range-tombstone block at `file_offset`. The count is checked
/// against the bytes present before anything is allocated for it.
///
/// # Errors
/// `Corruption` if the block is damaged or has trailing bytes.
pub(crate) fn decode_range_tombstones(
    contents: &[u8],
    path: &Path,
    file_offset: u64,
) -> Result<Vec<RangeTombstone>> {
    let mut d = Decoder::new(contents, path, file_offset, "range tombstone block");
    let count = d.varint_len(d.remaining() / MIN_TOMBSTONE_BYTES)?;
    let mut tombstones = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Bytes::copy_from_slice(d.length_prefixed(MAX_BLOCK_SIZE_BYTES)?);
        let end = match d.u8()? {
            0 => None,
            1 => Some(Bytes::copy_from_slice(
                d.length_prefixed(MAX_BLOCK_SIZE_BYTES)?,
            )),
            other => return Err(d.error(&format!("bad end marker {other}"))),
        };
        let seq = SeqNo(d.u64()?);
        if seq > SeqNo::MAX {
            return Err(d.error(&format!("sequence number {seq} too large")));
        }
        tombstones.push(RangeTombstone { start, end, seq });
    }
    if !d.is_empty() {
        return Err(d.error("trailing bytes"));
    }
    Ok(tombstones)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer() -> Footer {
        Footer {
            index: BlockHandle {
                offset: 300,
                size_bytes: 40,
            },
            filter: BlockHandle {
                offset: 200,
                size_bytes: 30,
            },
            range_del: BlockHandle {
                offset: 250,
                size_bytes: 45,
            },
            version: FormatVersion::CURRENT,
        }
    }

    #[test]
    fn magic_spells_its_name_on_disk() {
        let mut buf = Vec::new();
        coding::put_u64(&mut buf, TABLE_MAGIC);
        assert_eq!(buf, b"xdbtabl1");
    }

    #[test]
    fn footer_round_trips() {
        for version in [FormatVersion::V1, FormatVersion::V2] {
            let footer = Footer {
                version,
                ..footer()
            };
            let buf = footer.encode();
            assert_eq!(buf.len(), FOOTER_BYTES);
            assert_eq!(Footer::decode(&buf, Path::new("t"), 0).unwrap(), footer);
        }
    }

    /// A version this code does not know, under a good CRC, is refused by name.
    #[test]
    fn unknown_format_versions_are_corruption() {
        for version in [0u32, 3, u32::MAX] {
            let mut buf = footer().encode();
            buf[48..52].copy_from_slice(&version.to_le_bytes());
            let crc = crc32fast::hash(&buf[..FOOTER_CRC_COVERED_BYTES]);
            buf[52..56].copy_from_slice(&crc.to_le_bytes());
            let err = Footer::decode(&buf, Path::new("t"), 0).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("unsupported format version {version}")),
                "{err}"
            );
        }
    }

    #[test]
    fn every_flipped_footer_byte_is_corruption() {
        let good = footer().encode();
        for i in 0..FOOTER_BYTES {
            let mut buf = good.clone();
            buf[i] ^= 0x10;
            let err = Footer::decode(&buf, Path::new("t"), 1000).unwrap_err();
            assert!(err.is_corruption(), "byte {i}: {err}");
        }
    }

    #[test]
    fn handle_past_the_limit_is_corruption() {
        let h = BlockHandle {
            offset: u64::MAX - 2,
            size_bytes: 10,
        };
        assert!(
            check_handle(Path::new("t"), h, u64::MAX, BlockType::Data)
                .unwrap_err()
                .is_corruption()
        );
        let h = BlockHandle {
            offset: 0,
            size_bytes: 10,
        };
        assert!(check_handle(Path::new("t"), h, 15, BlockType::Data).is_ok());
        assert!(check_handle(Path::new("t"), h, 14, BlockType::Data).is_err());
    }

    #[test]
    fn range_tombstones_round_trip() {
        let ts = vec![
            RangeTombstone {
                start: Bytes::from_static(b"a"),
                end: Some(Bytes::from_static(b"c")),
                seq: SeqNo(5),
            },
            RangeTombstone {
                start: Bytes::new(),
                end: None,
                seq: SeqNo::MAX,
            },
        ];
        let buf = encode_range_tombstones(&ts);
        assert_eq!(
            decode_range_tombstones(&buf, Path::new("t"), 0).unwrap(),
            ts
        );
        for len in 0..buf.len() {
            let err = decode_range_tombstones(&buf[..len], Path::new("t"), 0).unwrap_err();
            assert!(err.is_corruption());
        }
    }

    #[test]
    fn huge_tombstone_count_is_corruption_before_allocating() {
        let mut buf = Vec::new();
        coding::put_varint(&mut buf, u64::MAX);
        let err = decode_range_tombstones(&buf, Path::new("t"), 0).unwrap_err();
        assert!(err.is_corruption());
    }

    #[test]
    fn internal_keys_round_trip_and_short_ones_are_rejected() {
        let mut buf = Vec::new();
        encode_internal_key(&mut buf, b"abc", SeqNo(77), ValueKind::Delete);
        assert_eq!(
            decode_internal_key(&buf),
            Some((&b"abc"[..], SeqNo(77), ValueKind::Delete))
        );
        assert_eq!(decode_internal_key(&buf[..7]), None);
        buf[3] = 9;
        assert_eq!(decode_internal_key(&buf), None);
    }
}
