//! Entry points for fuzz targets: every decoder of disk bytes, callable on arbitrary input.
//!
//! Compiled only with the `fuzzing` feature and hidden from the documentation: this is not an
//! API. Each function must return (an error or a value) for any input, never panic, hang or
//! allocate without bound; the fuzz targets in `fuzz/` check exactly that. [`extent_replay`]
//! also checks what the replay built, and panics (a finding) when it breaks an invariant.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::fs::{BytesFile, ReadableFile};
use crate::index::edit::VersionEdit;
use crate::index::table::{BlockCache, ReadMode, Table};
use crate::key::SeqNo;
use crate::value::allocator::Allocator;
use crate::value::block::PhysicalBlock;
use crate::value::edit::ValueEdit;
use crate::value::state::ValueState;
use crate::wal::LogReader;

/// Reads every record of a log file image; returns the number of records.
pub fn wal_records(data: &[u8]) -> Result<usize> {
    let file: Arc<dyn ReadableFile> = Arc::new(BytesFile::new(data.to_vec(), "fuzz.wal"));
    let mut reader = LogReader::new(file);
    let mut n = 0;
    while reader.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Decodes a write-batch payload; returns its operation count.
pub fn write_batch(data: &[u8]) -> Result<usize> {
    Ok(
        crate::batch::decode(Bytes::copy_from_slice(data), Path::new("fuzz.wal"), 0)?
            .ops
            .len(),
    )
}

/// Decodes a manifest record payload; returns the number of tables it adds.
pub fn manifest_edit(data: &[u8]) -> Result<usize> {
    Ok(VersionEdit::decode(data, Path::new("fuzz.manifest"), 0)?
        .added
        .len())
}

/// Opens a table image, verifies it, iterates it both ways and looks up `probe`; returns the
/// number of entries seen.
pub fn table(data: &[u8], probe: &[u8]) -> Result<u64> {
    let file: Arc<dyn ReadableFile> = Arc::new(BytesFile::new(data.to_vec(), "fuzz.sst"));
    let table = Table::open(file, 1, Arc::new(BlockCache::new(1 << 20)))?;
    let _ = table.get(probe, SeqNo::MAX, ReadMode::Blocking)?;
    let mut n = 0;
    for entry in table.iter(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded) {
        entry?;
        n += 1;
    }
    for entry in table
        .iter(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .rev()
    {
        entry?;
    }
    table.verify()?;
    Ok(n)
}

/// The block size the extent replay trims value files with (the engine's default).
const REPLAY_BLOCK_BYTES: u64 = 4096;

/// Replays the value-file edits of `data` as recovery does, and checks what it built.
///
/// `data` is read as the payload of one manifest record; since a record is a sequence of
/// fields applied in order, the payloads of a whole manifest's records, concatenated, are one.
/// Its value edits (file created / removed, extent mapped / unmapped / moved, reach, dead
/// range) are applied in order to a `ValueState`; each file is trimmed to the blocks its
/// pointers reach, and the block allocator is built from the mapped runs, as
/// `ValueStore::open` does. The state must then hold DESIGN invariant 3, checked by the
/// engine's own checks (`ExtentMap::check` per file, `Allocator::check` across files: no
/// physical block mapped twice or both mapped and free, mapped + free = all blocks), and the
/// snapshot a new manifest starts with must replay to the same state. Returns the number of value files, or the error that refused the input.
///
/// # Panics
/// If a replay the engine accepted breaks invariant 3, or its snapshot does not replay to the
/// same state: both are engine bugs, which is what the fuzz target looks for.
pub fn extent_replay(data: &[u8]) -> Result<usize> {
    let path = Path::new("fuzz.manifest");
    let edit = VersionEdit::decode(data, path, 0)?;
    let state = replay_value_edits(&edit.values, path)?;
    let snapshot = VersionEdit {
        values: state.snapshot_edits(),
        ..VersionEdit::default()
    }
    .encode();
    let decoded = VersionEdit::decode(&snapshot, path, 0)
        .unwrap_or_else(|e| panic!("the snapshot of an accepted state does not decode: {e}"));
    let again = replay_value_edits(&decoded.values, path)
        .unwrap_or_else(|e| panic!("the snapshot of an accepted state does not replay: {e}"));
    assert_eq!(
        again.snapshot_edits(),
        state.snapshot_edits(),
        "the snapshot replays to another state"
    );
    Ok(state.files.len())
}

/// Applies `edits` in order, trims every file to the blocks its pointers reach and builds the
/// allocator over the mapped runs, then checks invariant 3; see [`extent_replay`].
fn replay_value_edits(edits: &[ValueEdit], path: &Path) -> Result<ValueState> {
    let mut state = ValueState::default();
    for edit in edits {
        state.apply(edit, path, 0)?;
    }
    for f in state.files.values_mut() {
        let keep = ValueState::referenced_end_block(f.end, REPLAY_BLOCK_BYTES);
        let tail = f.extents.end().since(keep).unwrap_or(0);
        f.extents.unmap(keep, tail);
    }
    let mapped: Vec<(PhysicalBlock, u64)> = state
        .files
        .values()
        .flat_map(|f| f.extents.extents().map(|e| (e.physical, e.len)))
        .collect();
    let end = mapped
        .iter()
        .map(|&(p, n)| p.add(n))
        .max()
        .unwrap_or_default();
    let allocator = Allocator::from_mapped(mapped.iter().copied(), end)?;
    for (id, f) in &state.files {
        if let Err(e) = f.extents.check() {
            panic!("value file {id}: the replayed extent map is not a function: {e}");
        }
    }
    if let Err(e) = allocator.check(&mapped) {
        panic!("the replayed block states break invariant 3: {e}");
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::block::{LogicalBlock, ValueFileId};

    fn payload(edits: &[ValueEdit]) -> Vec<u8> {
        VersionEdit {
            values: edits.to_vec(),
            ..VersionEdit::default()
        }
        .encode()
    }

    fn mapped(file: u64, logical: u64, physical: u64, len: u64) -> ValueEdit {
        ValueEdit::Mapped {
            file: ValueFileId(file),
            logical: LogicalBlock(logical),
            physical: PhysicalBlock(physical),
            len,
        }
    }

    #[test]
    fn extent_replay_accepts_a_consistent_history() {
        let f = ValueFileId(3);
        let data = payload(&[
            ValueEdit::FileCreated(f),
            mapped(3, 0, 10, 4),
            ValueEdit::Reaches {
                file: f,
                end: 4 * REPLAY_BLOCK_BYTES,
            },
            ValueEdit::Moved {
                file: f,
                logical: LogicalBlock(1),
                physical: PhysicalBlock(40),
                len: 2,
            },
            ValueEdit::Dead {
                file: f,
                offset: 0,
                len: 100,
            },
        ]);
        assert_eq!(extent_replay(&data).unwrap(), 1);
    }

    #[test]
    fn extent_replay_refuses_a_block_mapped_twice_within_or_across_files() {
        let within = payload(&[
            ValueEdit::FileCreated(ValueFileId(1)),
            mapped(1, 0, 10, 4),
            mapped(1, 4, 12, 2),
            ValueEdit::Reaches {
                file: ValueFileId(1),
                end: u64::MAX,
            },
        ]);
        assert!(extent_replay(&within).unwrap_err().is_corruption());
        let across = payload(&[
            ValueEdit::FileCreated(ValueFileId(1)),
            ValueEdit::FileCreated(ValueFileId(2)),
            mapped(1, 0, 10, 4),
            mapped(2, 0, 13, 1),
            ValueEdit::Reaches {
                file: ValueFileId(1),
                end: u64::MAX,
            },
            ValueEdit::Reaches {
                file: ValueFileId(2),
                end: u64::MAX,
            },
        ]);
        assert!(extent_replay(&across).unwrap_err().is_corruption());
    }
}
