//! [`VersionEdit`]: one atomic change to the set of live tables, as stored in the manifest.
//!
//! Each manifest record is one edit (`docs/format/manifest.md`):
//!
//! ```text
//! edit  := field*
//! field := 1 varint                      log number: WALs below it are flushed
//!        | 2 varint                      next file number
//!        | 3 varint                      last sequence number
//!        | 4 level:u8 table              table added
//!        | 5 level:u8 number:varint      table removed
//! table := number size entries max_seq (all varint) smallest:bytes largest
//! largest := 0 | 1 bytes | 2 bytes       unbounded | inclusive | exclusive
//! ```
//!
//! Tags are never renumbered; an unknown tag is corruption, since skipping it could lose a
//! removal and resurrect deleted data.

use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;

use crate::coding::{Decoder, put_bytes, put_varint};
use crate::error::Result;
use crate::key::SeqNo;
use crate::options::MAX_KEY_BYTES;
use crate::value::edit::ValueEdit;

/// Number of levels of the tree.
pub(crate) const NUM_LEVELS: usize = 7;

const TAG_LOG_NUMBER: u64 = 1;
const TAG_NEXT_FILE: u64 = 2;
const TAG_LAST_SEQ: u64 = 3;
const TAG_ADD_TABLE: u64 = 4;
const TAG_REMOVE_TABLE: u64 = 5;

/// What the manifest records of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMeta {
    pub number: u64,
    pub size_bytes: u64,
    pub entries: u64,
    pub max_seq: SeqNo,
    /// Smallest user key of a version or range tombstone in the table.
    pub smallest: Bytes,
    /// Upper bound of the user keys of its versions and range tombstones.
    pub largest: Bound<Bytes>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub log_number: Option<u64>,
    pub next_file: Option<u64>,
    pub last_seq: Option<SeqNo>,
    pub added: Vec<(usize, TableMeta)>,
    pub removed: Vec<(usize, u64)>,
    /// Value-file changes, applied in order (`value::edit`).
    pub values: Vec<ValueEdit>,
}

impl VersionEdit {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut field = |tag, v| {
            put_varint(&mut buf, tag);
            put_varint(&mut buf, v);
        };
        if let Some(n) = self.log_number {
            field(TAG_LOG_NUMBER, n);
        }
        if let Some(n) = self.next_file {
            field(TAG_NEXT_FILE, n);
        }
        if let Some(s) = self.last_seq {
            field(TAG_LAST_SEQ, s.0);
        }
        for (level, t) in &self.added {
            put_varint(&mut buf, TAG_ADD_TABLE);
            buf.push(*level as u8);
            for v in [t.number, t.size_bytes, t.entries, t.max_seq.0] {
                put_varint(&mut buf, v);
            }
            put_bytes(&mut buf, &t.smallest);
            match &t.largest {
                Bound::Unbounded => buf.push(0),
                Bound::Included(k) => {
                    buf.push(1);
                    put_bytes(&mut buf, k);
                }
                Bound::Excluded(k) => {
                    buf.push(2);
                    put_bytes(&mut buf, k);
                }
            }
        }
        for (level, number) in &self.removed {
            put_varint(&mut buf, TAG_REMOVE_TABLE);
            buf.push(*level as u8);
            put_varint(&mut buf, *number);
        }
        for v in &self.values {
            v.encode_into(&mut buf);
        }
        buf
    }

    pub fn decode(payload: &[u8], file: &Path, offset: u64) -> Result<Self> {
        let mut d = Decoder::new(payload, file, offset, "manifest edit");
        let mut edit = Self::default();
        while !d.is_empty() {
            match d.varint()? {
                TAG_LOG_NUMBER => edit.log_number = Some(d.varint()?),
                TAG_NEXT_FILE => edit.next_file = Some(d.varint()?),
                TAG_LAST_SEQ => {
                    let seq = SeqNo(d.varint()?);
                    if seq > SeqNo::MAX {
                        return Err(d.error("sequence number out of range"));
                    }
                    edit.last_seq = Some(seq);
                }
                TAG_ADD_TABLE => {
                    let level = decode_level(&mut d)?;
                    let number = d.varint()?;
                    let size_bytes = d.varint()?;
                    let entries = d.varint()?;
                    let max_seq = SeqNo(d.varint()?);
                    let smallest = Bytes::copy_from_slice(d.length_prefixed(MAX_KEY_BYTES + 1)?);
                    let largest = match d.u8()? {
                        0 => Bound::Unbounded,
                        1 => Bound::Included(Bytes::copy_from_slice(
                            d.length_prefixed(MAX_KEY_BYTES + 1)?,
                        )),
                        2 => Bound::Excluded(Bytes::copy_from_slice(
                            d.length_prefixed(MAX_KEY_BYTES + 1)?,
                        )),
                        _ => return Err(d.error("bad largest-key bound")),
                    };
                    let meta = TableMeta {
                        number,
                        size_bytes,
                        entries,
                        max_seq,
                        smallest,
                        largest,
                    };
                    edit.added.push((level, meta));
                }
                TAG_REMOVE_TABLE => {
                    let level = decode_level(&mut d)?;
                    edit.removed.push((level, d.varint()?));
                }
                tag => match ValueEdit::decode(tag, &mut d)? {
                    Some(v) => edit.values.push(v),
                    None => return Err(d.error("unknown field tag")),
                },
            }
        }
        Ok(edit)
    }
}

fn decode_level(d: &mut Decoder<'_>) -> Result<usize> {
    let level = usize::from(d.u8()?);
    if level >= NUM_LEVELS {
        return Err(d.error("level out of range"));
    }
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::block::{LogicalBlock, PhysicalBlock, ValueFileId};

    fn sample() -> VersionEdit {
        VersionEdit {
            log_number: Some(7),
            next_file: Some(12),
            last_seq: Some(SeqNo(99)),
            added: vec![
                (
                    0,
                    TableMeta {
                        number: 9,
                        size_bytes: 4096,
                        entries: 10,
                        max_seq: SeqNo(98),
                        smallest: Bytes::from("a"),
                        largest: Bound::Included(Bytes::from("m")),
                    },
                ),
                (
                    3,
                    TableMeta {
                        number: 10,
                        size_bytes: 1,
                        entries: 0,
                        max_seq: SeqNo(5),
                        smallest: Bytes::new(),
                        largest: Bound::Unbounded,
                    },
                ),
            ],
            removed: vec![(1, 4), (2, 5)],
            values: vec![
                ValueEdit::FileCreated(ValueFileId(3)),
                ValueEdit::Mapped {
                    file: ValueFileId(3),
                    logical: LogicalBlock(0),
                    physical: PhysicalBlock(900),
                    len: 256,
                },
                ValueEdit::Unmapped {
                    file: ValueFileId(3),
                    logical: LogicalBlock(5),
                    len: 2,
                },
                ValueEdit::Moved {
                    file: ValueFileId(3),
                    logical: LogicalBlock(10),
                    physical: PhysicalBlock(4),
                    len: 3,
                },
                ValueEdit::Reaches {
                    file: ValueFileId(3),
                    end: 70_000,
                },
                ValueEdit::FileRemoved(ValueFileId(2)),
            ],
        }
    }

    #[test]
    fn worked_example_in_the_manifest_doc_encodes_byte_for_byte() {
        let edit = VersionEdit {
            log_number: Some(7),
            added: vec![(
                0,
                TableMeta {
                    number: 9,
                    size_bytes: 4096,
                    entries: 10,
                    max_seq: SeqNo(98),
                    smallest: Bytes::from("a"),
                    largest: Bound::Included(Bytes::from("m")),
                },
            )],
            ..VersionEdit::default()
        };
        let expected = [
            0x01, 0x07, 0x04, 0x00, 0x09, 0x80, 0x20, 0x0a, 0x62, 0x01, 0x61, 0x01, 0x01, 0x6d,
        ];
        assert_eq!(edit.encode(), expected);
    }

    #[test]
    fn edits_round_trip() {
        let e = sample();
        assert_eq!(
            VersionEdit::decode(&e.encode(), Path::new("m"), 0).unwrap(),
            e
        );
    }

    #[test]
    fn every_truncation_or_bad_tag_is_corruption_or_a_shorter_edit() {
        let bytes = sample().encode();
        let full = sample();
        for len in 0..bytes.len() {
            // A prefix that ends at a field boundary decodes to a different, shorter edit.
            if let Ok(prefix) = VersionEdit::decode(&bytes[..len], Path::new("m"), 0) {
                assert_ne!(prefix, full, "prefix of {len} bytes");
            }
        }
        let mut bad = bytes.clone();
        bad.insert(0, 77);
        assert!(
            VersionEdit::decode(&bad, Path::new("m"), 0)
                .unwrap_err()
                .is_corruption()
        );
    }
}
