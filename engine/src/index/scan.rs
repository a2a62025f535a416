//! Forward scans that lend versions in place: the sources of a [`Cursor`](crate::Cursor).
//!
//! The double-ended iterators of `merge.rs` pass owned [`Entry`](crate::key::Entry)s along,
//! each holding reference counts on the buffers its key and value share. Here every source
//! instead keeps a position and lends the version there, borrowed from its own buffers
//! ([`MemtableScan`], [`TableScan`]); [`MergeScan`] lends whichever is smallest. Stepping a scan
//! over inline values copies nothing (past the memtables' batches) and counts no references.
//!
//! Sources are positioned by a seek when they are made and only move forward. None of them
//! checks an upper bound: the cursor stops at its own.
//!
//! Not thread-safe; each scan has one owner.

use std::sync::Arc;

use crate::error::Result;
use crate::index::memtable::MemtableScan;
use crate::index::table::TableScan;
use crate::index::version::TableFile;
use crate::key::EntryRef;

/// The tables of one level (sorted, not overlapping) as one forward scan, opening each table
/// only when the scan reaches it.
#[derive(Debug)]
pub(crate) struct LevelScan {
    files: Vec<Arc<TableFile>>,
    /// The table after the one `scan` walks.
    next: usize,
    scan: Option<TableScan>,
}

impl LevelScan {
    /// Positioned at the first version at or after `from` in `files` (which must all end at
    /// or after it, as `Version::overlapping` returns them), or at their first with `None`.
    ///
    /// # Errors
    /// `Io` or `Corruption` reading a first block.
    pub fn new(files: Vec<Arc<TableFile>>, from: Option<&[u8]>) -> Result<Self> {
        let mut level = Self {
            files,
            next: 0,
            scan: None,
        };
        level.open_next(from)?;
        Ok(level)
    }

    /// Opens tables from `next` on until one has a version at or after `from`.
    fn open_next(&mut self, from: Option<&[u8]>) -> Result<()> {
        while self.current().is_none() {
            let Some(file) = self.files.get(self.next) else {
                self.scan = None;
                return Ok(());
            };
            self.next += 1;
            self.scan = Some(TableScan::new(Arc::clone(&file.table), from)?);
        }
        Ok(())
    }

    fn current(&self) -> Option<EntryRef<'_>> {
        self.scan.as_ref()?.current()
    }

    fn advance(&mut self) -> Result<()> {
        if let Some(scan) = &mut self.scan {
            scan.advance()?;
        }
        self.open_next(None)
    }
}

/// One source of a [`MergeScan`].
#[derive(Debug)]
pub(crate) enum ScanSource {
    Memtable(MemtableScan),
    Table(TableScan),
    Level(LevelScan),
}

impl ScanSource {
    fn current(&self) -> Option<EntryRef<'_>> {
        match self {
            Self::Memtable(s) => s.current(),
            Self::Table(s) => s.current(),
            Self::Level(s) => s.current(),
        }
    }

    fn advance(&mut self) -> Result<()> {
        match self {
            Self::Memtable(s) => {
                s.advance();
                Ok(())
            }
            Self::Table(s) => s.advance(),
            Self::Level(s) => s.advance(),
        }
    }
}

/// Forward scans merged into one, in internal order. The smallest current version is found by
/// a linear pass over the sources after each step: they are few (memtables, level-0 tables,
/// one per level), so a pass beats a heap's bookkeeping.
#[derive(Debug)]
pub(crate) struct MergeScan {
    sources: Vec<ScanSource>,
    /// The source whose current version is the smallest; `None` once all are exhausted.
    best: Option<usize>,
}

impl MergeScan {
    pub fn new(sources: Vec<ScanSource>) -> Self {
        let mut merge = Self {
            sources,
            best: None,
        };
        merge.pick();
        merge
    }

    /// The smallest version of all sources, if any is left.
    pub fn current(&self) -> Option<EntryRef<'_>> {
        self.sources.get(self.best?)?.current()
    }

    /// Moves past the current version.
    ///
    /// # Errors
    /// A source's error reading on; the merge is then exhausted, as a failed scan must not go
    /// on without the versions that source held.
    pub fn advance(&mut self) -> Result<()> {
        let Some(source) = self.best.and_then(|i| self.sources.get_mut(i)) else {
            return Ok(());
        };
        if let Err(e) = source.advance() {
            self.sources.clear();
            self.best = None;
            return Err(e);
        }
        self.pick();
        Ok(())
    }

    fn pick(&mut self) {
        let mut best: Option<(usize, EntryRef<'_>)> = None;
        for (i, source) in self.sources.iter().enumerate() {
            if let Some(e) = source.current()
                && best.is_none_or(|(_, b)| e.cmp_key(&b).is_lt())
            {
                best = Some((i, e));
            }
        }
        self.best = best.map(|(i, _)| i);
    }
}
