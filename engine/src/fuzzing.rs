//! Entry points for fuzz targets: every decoder of disk bytes, callable on arbitrary input.
//!
//! Compiled only with the `fuzzing` feature and hidden from the documentation: this is not an
//! API. Each function must return (an error or a value) for any input, never panic, hang or
//! allocate without bound; the fuzz targets in `fuzz/` check exactly that.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::fs::{BytesFile, ReadableFile};
use crate::index::edit::VersionEdit;
use crate::index::table::{BlockCache, ReadMode, Table};
use crate::key::SeqNo;
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
