//! [`ValueState`]: the value files and their extent maps as the manifest describes them.
//!
//! Recovery replays every [`ValueEdit`] of the manifest, in order, into a `ValueState`; the new
//! manifest written at open then holds [`ValueState::snapshot_edits`], the same state in the
//! fewest records. The running store is built from it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::value::block::{LogicalBlock, ValueFileId};
use crate::value::dead::DeadRanges;
use crate::value::edit::ValueEdit;
use crate::value::extent::ExtentMap;

/// One value file as recorded.
#[derive(Debug, Default, Clone)]
pub(crate) struct FileState {
    pub extents: ExtentMap,
    /// How far pointers into the file recorded so far reach (logical bytes): blocks past it
    /// hold nothing any pointer names and are trimmed at open.
    pub end: u64,
    /// Bytes no pointer reaches any more.
    pub dead: DeadRanges,
}

/// Every value file.
#[derive(Debug, Default, Clone)]
pub(crate) struct ValueState {
    pub files: BTreeMap<ValueFileId, FileState>,
}

impl ValueState {
    /// Applies one edit read at `offset` of the manifest `path`.
    ///
    /// # Errors
    /// `Corruption` if the edit contradicts the state (an extent over a mapped range, a file
    /// used before it was created or created twice).
    pub fn apply(&mut self, edit: &ValueEdit, path: &Path, offset: u64) -> Result<()> {
        let bad = |what: String| Error::corruption(path, offset, what);
        match *edit {
            ValueEdit::FileCreated(id) => {
                if self.files.insert(id, FileState::default()).is_some() {
                    return Err(bad(format!("value file {id} created twice")));
                }
            }
            ValueEdit::FileRemoved(id) => {
                if self.files.remove(&id).is_none() {
                    return Err(bad(format!("removal of unknown value file {id}")));
                }
            }
            ValueEdit::Mapped {
                file,
                logical,
                physical,
                len,
            } => {
                let extents = &mut self.known(file, path, offset)?.extents;
                extents
                    .map(logical, physical, len)
                    .map_err(|e| bad(format!("value file {file}: {e}")))?;
            }
            ValueEdit::Unmapped { file, logical, len } => {
                self.known(file, path, offset)?.extents.unmap(logical, len);
            }
            ValueEdit::Moved {
                file,
                logical,
                physical,
                len,
            } => {
                let extents = &mut self.known(file, path, offset)?.extents;
                extents
                    .remap(logical, len, physical)
                    .map_err(|e| bad(format!("value file {file}: {e}")))?;
            }
            ValueEdit::Reaches { file, end } => {
                let f = self.known(file, path, offset)?;
                f.end = f.end.max(end);
            }
            ValueEdit::Dead {
                file,
                offset: start,
                len,
            } => {
                let end = start
                    .checked_add(len)
                    .ok_or_else(|| bad(format!("value file {file}: dead range overflows")))?;
                self.known(file, path, offset)?.dead.insert(start, end);
            }
        }
        Ok(())
    }

    /// The state of `file`, which an earlier edit must have created.
    fn known(&mut self, file: ValueFileId, path: &Path, offset: u64) -> Result<&mut FileState> {
        self.files.get_mut(&file).ok_or_else(|| {
            Error::corruption(path, offset, format!("edit of unknown value file {file}"))
        })
    }

    /// The whole state as edits: each file's creation, its extents and how far it is used.
    pub fn snapshot_edits(&self) -> Vec<ValueEdit> {
        let mut edits = Vec::new();
        for (&file, state) in &self.files {
            edits.push(ValueEdit::FileCreated(file));
            for e in state.extents.extents() {
                edits.push(ValueEdit::Mapped {
                    file,
                    logical: e.logical,
                    physical: e.physical,
                    len: e.len,
                });
            }
            edits.push(ValueEdit::Reaches {
                file,
                end: state.end,
            });
            edits.extend(dead_edits(file, &state.dead));
        }
        edits
    }

    /// The first logical block past the bytes a pointer may reference in `file`.
    pub fn referenced_end_block(end: u64, block_size: u64) -> LogicalBlock {
        LogicalBlock(end.div_ceil(block_size))
    }
}

/// `dead` as manifest edits of `file`.
pub(crate) fn dead_edits(file: ValueFileId, dead: &DeadRanges) -> impl Iterator<Item = ValueEdit> {
    dead.iter().map(move |(start, end)| ValueEdit::Dead {
        file,
        offset: start,
        len: end - start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::block::PhysicalBlock;

    fn apply_all(edits: &[ValueEdit]) -> Result<ValueState> {
        let mut state = ValueState::default();
        for e in edits {
            state.apply(e, Path::new("MANIFEST"), 0)?;
        }
        Ok(state)
    }

    #[test]
    fn replaying_the_snapshot_of_a_state_gives_the_same_state() {
        let f = ValueFileId(4);
        let state = apply_all(&[
            ValueEdit::FileCreated(f),
            ValueEdit::Mapped {
                file: f,
                logical: LogicalBlock(0),
                physical: PhysicalBlock(10),
                len: 8,
            },
            ValueEdit::Moved {
                file: f,
                logical: LogicalBlock(2),
                physical: PhysicalBlock(40),
                len: 2,
            },
            ValueEdit::Unmapped {
                file: f,
                logical: LogicalBlock(6),
                len: 2,
            },
            ValueEdit::Reaches { file: f, end: 3000 },
            ValueEdit::Dead {
                file: f,
                offset: 100,
                len: 900,
            },
            ValueEdit::Dead {
                file: f,
                offset: 1000,
                len: 24,
            },
        ])
        .unwrap();
        let again = apply_all(&state.snapshot_edits()).unwrap();
        assert_eq!(again.snapshot_edits(), state.snapshot_edits());
        let file = &again.files[&f];
        assert_eq!(file.end, 3000);
        assert_eq!(file.dead.iter().collect::<Vec<_>>(), [(100, 1024)]);
        assert_eq!(
            file.extents.lookup(LogicalBlock(3)),
            Some((PhysicalBlock(41), 1))
        );
        assert_eq!(file.extents.lookup(LogicalBlock(6)), None);
    }

    #[test]
    fn edits_that_contradict_the_state_are_corruption() {
        let f = ValueFileId(1);
        let map = ValueEdit::Mapped {
            file: f,
            logical: LogicalBlock(0),
            physical: PhysicalBlock(0),
            len: 4,
        };
        assert!(apply_all(&[map]).unwrap_err().is_corruption());
        assert!(
            apply_all(&[ValueEdit::FileCreated(f), ValueEdit::FileCreated(f)])
                .unwrap_err()
                .is_corruption()
        );
        assert!(
            apply_all(&[ValueEdit::FileCreated(f), map, map])
                .unwrap_err()
                .is_corruption()
        );
        let moved = ValueEdit::Moved {
            file: f,
            logical: LogicalBlock(8),
            physical: PhysicalBlock(50),
            len: 2,
        };
        assert!(
            apply_all(&[ValueEdit::FileCreated(f), map, moved])
                .unwrap_err()
                .is_corruption()
        );
        assert!(
            apply_all(&[ValueEdit::FileRemoved(f)])
                .unwrap_err()
                .is_corruption()
        );
    }
}
