//! [`ValueEdit`]: changes to value files and their extent maps, recorded in the manifest next
//! to the table edits (`docs/format/value.md`, `docs/format/manifest.md`).
//!
//! ```text
//! value field := 6 file:varint                                   value file created
//!              | 7 file logical:varint physical:varint len:varint   extent mapped
//!              | 8 file logical:varint len:varint                    extent unmapped (blocks freed)
//!              | 9 file logical:varint physical:varint len:varint    extent moved (old blocks freed)
//!              | 10 file:varint                                      value file removed (all freed)
//!              | 11 file:varint end:varint                            pointers into the file reach logical byte `end` (a maximum)
//!              | 12 file:varint offset:varint len:varint              bytes no pointer reaches any more (dead)
//! ```
//!
//! Replaying these in order rebuilds every extent map; the allocator's free space is what no
//! extent maps (DESIGN invariant 3), so it needs no records of its own.

use crate::coding::{Decoder, put_varint};
use crate::error::Result;
use crate::value::block::{LogicalBlock, PhysicalBlock, ValueFileId};

pub(crate) const TAG_FILE_CREATED: u64 = 6;
pub(crate) const TAG_MAPPED: u64 = 7;
pub(crate) const TAG_UNMAPPED: u64 = 8;
pub(crate) const TAG_MOVED: u64 = 9;
pub(crate) const TAG_FILE_REMOVED: u64 = 10;
pub(crate) const TAG_REACHES: u64 = 11;
pub(crate) const TAG_DEAD: u64 = 12;

/// One change to the value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueEdit {
    FileCreated(ValueFileId),
    Mapped {
        file: ValueFileId,
        logical: LogicalBlock,
        physical: PhysicalBlock,
        len: u64,
    },
    Unmapped {
        file: ValueFileId,
        logical: LogicalBlock,
        len: u64,
    },
    Moved {
        file: ValueFileId,
        logical: LogicalBlock,
        physical: PhysicalBlock,
        len: u64,
    },
    FileRemoved(ValueFileId),
    Reaches {
        file: ValueFileId,
        end: u64,
    },
    /// `len` bytes from logical `offset` are dead: index compaction dropped the pointers to
    /// them (in the same manifest edit) and no reader can see those versions.
    Dead {
        file: ValueFileId,
        offset: u64,
        len: u64,
    },
}

impl ValueEdit {
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let mut fields = |tag: u64, values: &[u64]| {
            put_varint(buf, tag);
            for &v in values {
                put_varint(buf, v);
            }
        };
        match *self {
            Self::FileCreated(f) => fields(TAG_FILE_CREATED, &[f.0]),
            Self::Mapped {
                file,
                logical,
                physical,
                len,
            } => {
                fields(TAG_MAPPED, &[file.0, logical.0, physical.0, len]);
            }
            Self::Unmapped { file, logical, len } => {
                fields(TAG_UNMAPPED, &[file.0, logical.0, len])
            }
            Self::Moved {
                file,
                logical,
                physical,
                len,
            } => {
                fields(TAG_MOVED, &[file.0, logical.0, physical.0, len]);
            }
            Self::FileRemoved(f) => fields(TAG_FILE_REMOVED, &[f.0]),
            Self::Reaches { file, end } => fields(TAG_REACHES, &[file.0, end]),
            Self::Dead { file, offset, len } => fields(TAG_DEAD, &[file.0, offset, len]),
        }
    }

    /// Decodes the fields after `tag`; `None` if `tag` is not a value tag.
    pub fn decode(tag: u64, d: &mut Decoder<'_>) -> Result<Option<Self>> {
        let file = |d: &mut Decoder<'_>| d.varint().map(ValueFileId);
        Ok(Some(match tag {
            TAG_FILE_CREATED => Self::FileCreated(file(d)?),
            TAG_MAPPED => Self::Mapped {
                file: file(d)?,
                logical: LogicalBlock(d.varint()?),
                physical: PhysicalBlock(d.varint()?),
                len: d.varint()?,
            },
            TAG_UNMAPPED => Self::Unmapped {
                file: file(d)?,
                logical: LogicalBlock(d.varint()?),
                len: d.varint()?,
            },
            TAG_MOVED => Self::Moved {
                file: file(d)?,
                logical: LogicalBlock(d.varint()?),
                physical: PhysicalBlock(d.varint()?),
                len: d.varint()?,
            },
            TAG_FILE_REMOVED => Self::FileRemoved(file(d)?),
            TAG_REACHES => Self::Reaches {
                file: file(d)?,
                end: d.varint()?,
            },
            TAG_DEAD => Self::Dead {
                file: file(d)?,
                offset: d.varint()?,
                len: d.varint()?,
            },
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn worked_example_in_the_value_doc_encodes_byte_for_byte() {
        let edit = ValueEdit::Mapped {
            file: ValueFileId(3),
            logical: LogicalBlock(0),
            physical: PhysicalBlock(900),
            len: 256,
        };
        let mut buf = Vec::new();
        edit.encode_into(&mut buf);
        assert_eq!(buf, [0x07, 0x03, 0x00, 0x84, 0x07, 0x80, 0x02]);
        let mut d = Decoder::new(&buf, Path::new("m"), 0, "test");
        let tag = d.varint().unwrap();
        assert_eq!(ValueEdit::decode(tag, &mut d).unwrap(), Some(edit));
        assert!(d.is_empty());
    }
}
