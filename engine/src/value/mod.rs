//! Value files: large values live outside the index, in logical byte spaces whose blocks an
//! extent map places on physical blocks of the block store (`docs/format/value.md`,
//! `docs/locking.md`).
//!
//! - `block`: the numbers (`ValueFileId`, `LogicalBlock`, `PhysicalBlock`);
//! - `pointer`: what the index stores for a separated value;
//! - `edit`, `state`: value-file records of the manifest and their replay;
//! - `extent`: one file's extent map; `allocator`: free physical blocks; `store`: segment files;
//! - `dead`: the byte ranges of a file that no pointer reaches any more;
//! - `file`: a value file at run time, with its invalidate lock;
//! - `store.rs` is the block store; this file is [`ValueStore`], which ties them together:
//!   appends (the write path), reads through the buffer pool (the fill paths), and the
//!   exclusive side: reclamation of dead blocks and files, evacuation of mostly dead files (with
//!   index compaction), relocation of shredded ones (`docs/format/value.md`, "Value
//!   compaction").
//!
//! The index knows pointers (file, logical offset, length, CRC) and nothing of physical blocks.

pub(crate) mod allocator;
pub(crate) mod block;
pub(crate) mod dead;
pub(crate) mod edit;
pub(crate) mod extent;
pub(crate) mod file;
pub(crate) mod pointer;
pub(crate) mod state;
pub(crate) mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::cache::{BufferPool, Checked, FillError, PoolStats};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::index::table::ReadMode;
use crate::inspect::{ExtentInfo, SegmentInfo, ValueFileInfo};
use crate::options::ReadPath;
use crate::sync::{Mutex, Rank, RwLock};
use crate::value::allocator::Allocator;
use crate::value::block::{LogicalBlock, PhysicalBlock, ValueFileId};
use crate::value::dead::DeadRanges;
use crate::value::edit::ValueEdit;
use crate::value::extent::{Extent, ExtentMap};
use crate::value::file::ValueFile;
use crate::value::pointer::ValuePointer;
use crate::value::state::ValueState;
use crate::value::store::BlockStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How the value store is laid out and read.
#[derive(Debug, Clone)]
pub(crate) struct ValueOptions {
    pub block_size: usize,
    pub blocks_per_segment: u64,
    /// Blocks mapped at a time for appends (one manifest record per reservation).
    pub reserve_blocks: u64,
    /// A value file is sealed, and the next append starts a new one, once it holds this many
    /// bytes: reclamation deletes files, and evacuation empties them, whole.
    pub file_bytes: u64,
    /// A segment's write-back starts each time this many bytes were written to it (0: never).
    pub writeback_bytes: u64,
    /// Blocks no write has touched are zero-filled this many bytes at a time before a smaller
    /// value is appended into them (0: never): see `Options::zero_ahead_bytes`.
    pub zero_ahead_bytes: u64,
    pub cache_bytes: u64,
    pub read_path: ReadPath,
    /// Open the segment files for reads only, and leave empty ones as they are.
    pub read_only: bool,
    /// Test-only: a pause between each extent lookup of a fill and its block read, and between
    /// a relocation's pool invalidation and its remap, so the race test can make the two land
    /// inside each other's window.
    #[cfg(feature = "test-hooks")]
    pub race_window: Option<std::time::Duration>,
    /// Test-only: called each time freed blocks become reusable.
    #[cfg(feature = "test-hooks")]
    pub on_release: Option<crate::options::TestHook>,
}

/// The file being appended to, owned by the commit leader.
#[derive(Debug, Default)]
struct Appender {
    file: Option<Arc<ValueFile>>,
    /// Logical offset of the next value.
    cursor: u64,
    /// First logical block not yet mapped.
    mapped_end: LogicalBlock,
    /// Physical block after the last reservation: the next one tries to start there, so a
    /// file's blocks stay contiguous.
    next_physical: Option<PhysicalBlock>,
    /// Blocks the file's next reservation maps (0 before its first): see [`RESERVE_GROWTH`].
    next_reserve: u64,
    /// Logical offset, on a block boundary, below which every block was written or
    /// zero-filled; the blocks from here on were never touched.
    touched_end: u64,
}

/// Each reservation of a file maps twice the blocks of the one before, from
/// `ValueOptions::reserve_blocks` up to this many times that, and never past the file's size.
/// A reservation is a synced manifest record on the commit path; a file filled quickly then
/// costs a few of them rather than one per `reserve_blocks`, while a file written slowly maps
/// little ahead of its values. Blocks mapped and never written cost no disk space (segments
/// are sparse; at most `zero_ahead_bytes` of them are zero-filled ahead of the values) and are
/// trimmed when the file is sealed or the database reopened.
const RESERVE_GROWTH: u64 = 8;

/// Counters of the value store.
#[derive(Debug, Default, Clone)]
pub(crate) struct ValueStats {
    pub files: usize,
    pub mapped_blocks: u64,
    pub free_blocks: u64,
    pub pending_blocks: u64,
    pub store_blocks: u64,
    pub relocations: u64,
    pub deleted_files: u64,
    pub removed_segments: u64,
    pub punched_blocks: u64,
    pub unpunched_blocks: u64,
    pub punch_unsupported: bool,
    /// Logical bytes appended to the files that exist.
    pub written_bytes: u64,
    /// Of those, bytes no pointer reaches any more.
    pub dead_bytes: u64,
    /// Bytes the segment files occupy on disk (holes excluded); `None` if `fstat` failed.
    pub disk_bytes: Option<u64>,
    /// Bytes copied by relocation and evacuation.
    pub gc_written_bytes: u64,
    /// Bytes of written blocks freed because every byte in them was dead (reserved blocks
    /// never written are not counted).
    pub reclaimed_bytes: u64,
    /// Values rewritten to a new file by evacuation.
    pub evacuated_values: u64,
    pub pool: PoolStats,
}

/// The value files, the block store under them and the buffer pool over them.
#[derive(Debug)]
pub(crate) struct ValueStore {
    dir: PathBuf,
    options: ValueOptions,
    blocks: BlockStore,
    pool: BufferPool,
    files: RwLock<BTreeMap<ValueFileId, Arc<ValueFile>>>,
    allocator: Mutex<Allocator>,
    /// The file user writes append to.
    appender: Mutex<Appender>,
    /// The file evacuation appends to (index compaction's output for values it moves).
    gc_appender: Mutex<Appender>,
    /// Files whose live values index compaction moves to the evacuation file.
    evacuating: Mutex<BTreeSet<ValueFileId>>,
    /// Serializes everything that frees blocks (relocation, reclamation, deletion): the
    /// "compaction / range-delete job lock" of the lock order, so at most one set of freed
    /// blocks waits for its record to become durable. Holds the last ticket handed out.
    relocation: Mutex<u64>,
    /// Relocations done (readable without the job lock).
    relocations: AtomicU64,
    /// Value files deleted because nothing pointed into them.
    deleted_files: AtomicU64,
    /// Blocks whose space was given back to the file system.
    punched_blocks: AtomicU64,
    gc_written_bytes: AtomicU64,
    reclaimed_bytes: AtomicU64,
    evacuated_values: AtomicU64,
    /// Set when the file system refused to punch a hole: space then stays allocated (the
    /// blocks are still reused).
    punch_unsupported: AtomicBool,
    /// Segment files deleted because none of their blocks was in use.
    removed_segments: AtomicU64,
    /// A sequence lock over accounting changes (see [`ValueStore::begin_accounting_change`]).
    accounting_epoch: AtomicU64,
}

/// The store grows only while less than 1/8 of its blocks are free; past that, new values
/// take free runs even where they are too short to hold a whole reservation.
const REUSE_ABOVE_FRACTION: u64 = 8;

/// Freed blocks are not punched when they are freed but left for reuse (`allocator.rs`,
/// "Unpunched space"): in a store that keeps being written they are soon written again, and
/// the punch, the file system's journal entry for it and the discard it may send the disk
/// would give the space back only for a moment. They are trimmed (punched) once they pass
/// `1/TRIM_ABOVE_FRACTION` of the store, twice the share the allocator keeps free before it
/// reuses holes (`REUSE_ABOVE_FRACTION`), so that a large delete gives its space back.
const TRIM_ABOVE_FRACTION: u64 = 4;

/// A file's physical layout is worth relocating when logically adjacent extents sit apart
/// physically (logical holes left by reclamation do not count: nothing reads across them)
/// and its contiguous physical runs average less than this. Relocation copies every mapped
/// byte of the file, so it is kept for files shredded into runs smaller than a typical large
/// value: a file written into the holes of dead 64 KiB values (runs of about 60 KiB) costs a
/// point read at most one more `pread`, which is not worth copying the file for.
const FRAGMENT_RUN_BYTES: u64 = 16 << 10;

/// True if `extents` is fragmented in the sense of [`FRAGMENT_RUN_BYTES`].
fn is_fragmented(extents: &ExtentMap, block_size: u64) -> bool {
    let mut breaks = 0u64;
    let mut prev_end: Option<LogicalBlock> = None;
    for e in extents.extents() {
        if prev_end == Some(e.logical) {
            breaks += 1;
        }
        prev_end = Some(e.logical.add(e.len));
    }
    breaks > 0 && extents.mapped_blocks() * block_size / (breaks + 1) < FRAGMENT_RUN_BYTES
}

/// The parts of the logical block runs `runs` that `extents` maps.
fn mapped_parts(extents: &ExtentMap, runs: &[(LogicalBlock, u64)]) -> Vec<(LogicalBlock, u64)> {
    let mut out = Vec::new();
    for &(first, n) in runs {
        let end = first.0.saturating_add(n);
        for e in extents.extents() {
            let (lo, hi) = (
                e.logical.0.max(first.0),
                e.logical.0.saturating_add(e.len).min(end),
            );
            if lo < hi {
                out.push((LogicalBlock(lo), hi - lo));
            }
        }
    }
    out
}

/// What the store needs from the manifest: logging value edits durably and naming files.
pub(crate) trait ValueLog {
    /// A fresh file number (shared with tables and logs).
    fn new_file_number(&self) -> u64;
    /// Appends `edits` to the manifest and syncs it.
    fn log(&self, edits: Vec<ValueEdit>) -> Result<()>;
}

impl ValueStore {
    /// Builds the store from the recovered state, trimming every file to the bytes its pointers
    /// reach (`reaches`, per file: what the manifest and the replayed logs say). Returns the
    /// store and the edits that record the trimming, for the caller to log (or, read-only,
    /// to drop: the trimming then holds in memory only, and the next writer redoes it).
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        options: ValueOptions,
        mut state: ValueState,
        reaches: &BTreeMap<ValueFileId, u64>,
    ) -> Result<(Self, Vec<ValueEdit>)> {
        let bs = options.block_size as u64;
        let blocks = BlockStore::open(
            dir,
            fs,
            options.block_size,
            options.blocks_per_segment,
            options.read_only,
        )?
        .with_writeback_bytes(options.writeback_bytes);
        let mut edits = Vec::new();
        for (&id, f) in &mut state.files {
            let end = f.end.max(reaches.get(&id).copied().unwrap_or(0));
            let keep = ValueState::referenced_end_block(end, bs);
            let tail = f.extents.end().since(keep).unwrap_or(0);
            if tail > 0 {
                // Blocks reserved for appends that no pointer reached before the crash.
                f.extents.unmap(keep, tail);
                edits.push(ValueEdit::Unmapped {
                    file: id,
                    logical: keep,
                    len: tail,
                });
            }
            if end > f.end {
                edits.push(ValueEdit::Reaches { file: id, end });
            }
            f.end = end;
        }
        let mapped: Vec<(PhysicalBlock, u64)> = state
            .files
            .values()
            .flat_map(|f| {
                f.extents
                    .extents()
                    .map(|e| (e.physical, e.len))
                    .collect::<Vec<_>>()
            })
            .collect();
        let store_end = blocks.end_block();
        let mapped_end = mapped
            .iter()
            .map(|(p, n)| p.add(*n))
            .max()
            .unwrap_or_default();
        let mut allocator = Allocator::from_mapped(mapped, store_end.max(mapped_end))?;
        allocator.reuse_before_growth(REUSE_ABOVE_FRACTION);
        let files = state
            .files
            .into_iter()
            .map(|(id, f)| (id, Arc::new(ValueFile::new(id, f.extents, f.dead, f.end))))
            .collect();
        let pool = BufferPool::new(options.cache_bytes, options.block_size);
        let store = Self {
            dir: dir.to_path_buf(),
            options,
            blocks,
            pool,
            files: RwLock::ranked(Rank::ValueFiles, files),
            allocator: Mutex::ranked(Rank::Allocator, allocator),
            appender: Mutex::ranked(Rank::ValueAppender, Appender::default()),
            gc_appender: Mutex::ranked(Rank::GcAppender, Appender::default()),
            evacuating: Mutex::ranked(Rank::Leaf, BTreeSet::new()),
            relocation: Mutex::ranked(Rank::Job, 0),
            relocations: AtomicU64::new(0),
            deleted_files: AtomicU64::new(0),
            punched_blocks: AtomicU64::new(0),
            punch_unsupported: AtomicBool::new(false),
            removed_segments: AtomicU64::new(0),
            accounting_epoch: AtomicU64::new(0),
            gc_written_bytes: AtomicU64::new(0),
            reclaimed_bytes: AtomicU64::new(0),
            evacuated_values: AtomicU64::new(0),
        };
        Ok((store, edits))
    }

    fn block_size(&self) -> u64 {
        self.options.block_size as u64
    }

    fn file(&self, id: ValueFileId) -> Result<Arc<ValueFile>> {
        self.files.read().get(&id).cloned().ok_or_else(|| {
            Error::corruption(
                &self.dir,
                0,
                format!("a pointer names value file {id}, which does not exist"),
            )
        })
    }

    /// Appends `value` to the active value file and returns its pointer. `synced` says the
    /// commit syncs the value at once: the append then zero-fills nothing ahead of it, as the
    /// sync would write those zeros too.
    ///
    /// # Locking
    /// Called by the commit leader (the WAL lock serializes appends); takes the appender,
    /// allocator and extent-map locks, and logs reservations through `log` (the version set).
    pub fn append(&self, value: &[u8], synced: bool, log: &dyn ValueLog) -> Result<ValuePointer> {
        self.append_to(&self.appender, value, synced, log)
    }

    /// Appends `value` to the file of `appender`, starting a new file when there is none or
    /// the current one is full.
    fn append_to(
        &self,
        appender: &Mutex<Appender>,
        value: &[u8],
        synced: bool,
        log: &dyn ValueLog,
    ) -> Result<ValuePointer> {
        let mut app = appender.lock();
        if app.cursor >= self.options.file_bytes
            && let Some(full) = app.file.take()
        {
            // Sealed: reclamation trims its reserved tail and may delete it once all dead.
            full.mark_changed();
            *app = Appender::default();
        }
        let file = match &app.file {
            Some(f) => Arc::clone(f),
            None => {
                let id = ValueFileId(log.new_file_number());
                log.log(vec![ValueEdit::FileCreated(id)])?;
                let f = Arc::new(ValueFile::new(
                    id,
                    ExtentMap::new(),
                    DeadRanges::default(),
                    0,
                ));
                self.files.write().insert(id, Arc::clone(&f));
                *app = Appender {
                    file: Some(Arc::clone(&f)),
                    ..Appender::default()
                };
                f
            }
        };
        let offset = app.cursor;
        let end = offset + value.len() as u64;
        let needed = LogicalBlock(end.div_ceil(self.block_size()));
        if let Some(missing) = needed.since(app.mapped_end).filter(|&n| n > 0) {
            let base = self.options.reserve_blocks;
            let step = app.next_reserve.max(base);
            let to_file_end = LogicalBlock(self.options.file_bytes.div_ceil(self.block_size()))
                .since(app.mapped_end)
                .unwrap_or(0);
            self.reserve(
                &mut app,
                &file,
                missing.max(step.min(to_file_end.max(base))),
                log,
            )?;
            app.next_reserve = step
                .saturating_mul(2)
                .min(base.saturating_mul(RESERVE_GROWTH));
        }
        if !synced && (value.len() as u64) < self.options.zero_ahead_bytes {
            self.zero_ahead(&mut app, &file, end)?;
        }
        self.write_logical(&file, offset, value)?;
        app.cursor = end;
        app.touched_end = app.touched_end.max(end.next_multiple_of(self.block_size()));
        file.set_written(end);
        Ok(ValuePointer {
            file: file.id,
            offset,
            len: value.len() as u64,
            crc: crc32fast::hash(value),
        })
    }

    /// Zero-fills the untouched blocks of `file` from the appender's `touched_end` to the
    /// `zero_ahead_bytes` boundary at or after `end` (clipped to the mapped blocks), a write
    /// per extent (per 64 KiB of it), if a value ending at `end` would write into them.
    /// `Options::zero_ahead_bytes` says why. Only untouched blocks: the block a value ended in
    /// keeps its bytes.
    ///
    /// # Locking
    /// REQUIRES: the appender's lock (`app`). Takes the file's extent map shared, per extent.
    fn zero_ahead(&self, app: &mut Appender, file: &ValueFile, end: u64) -> Result<()> {
        let bs = self.block_size();
        debug_assert!(
            app.touched_end >= app.cursor.next_multiple_of(bs),
            "a written block lies past the touched end"
        );
        if end <= app.touched_end {
            return Ok(());
        }
        let stop = end
            .next_multiple_of(self.options.zero_ahead_bytes)
            .next_multiple_of(bs)
            .min(app.mapped_end.0 * bs);
        if stop <= end.next_multiple_of(bs) {
            // Nothing past the value's own blocks: its write makes their pages as well.
            return Ok(());
        }
        let first = LogicalBlock(app.touched_end / bs);
        self.for_each_run(file, first, stop / bs - first.0, |physical, n| {
            self.blocks.zero_fill(physical, n)
        })?;
        app.touched_end = stop;
        Ok(())
    }

    /// Maps `n` more blocks at the end of the active file, durably, before anything is written
    /// into them: a log record may point into them as soon as it is written.
    fn reserve(
        &self,
        app: &mut Appender,
        file: &ValueFile,
        n: u64,
        log: &dyn ValueLog,
    ) -> Result<()> {
        let runs = self.allocator.lock().allocate(n, app.next_physical);
        let mut edits = Vec::with_capacity(runs.len());
        let mut logical = app.mapped_end;
        {
            let mut extents = file.extents.write();
            for &(physical, len) in &runs {
                extents.map(logical, physical, len)?;
                edits.push(ValueEdit::Mapped {
                    file: file.id,
                    logical,
                    physical,
                    len,
                });
                logical = logical.add(len);
                app.next_physical = Some(physical.add(len));
            }
        }
        app.mapped_end = logical;
        log.log(edits)
    }

    /// Writes `data` at logical `offset` of `file`, through its extent map.
    fn write_logical(&self, file: &ValueFile, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let bs = self.block_size();
        let first = LogicalBlock(offset / bs);
        let blocks = (offset + data.len() as u64).div_ceil(bs) - first.0;
        // Only the first run starts inside a block.
        let mut in_block = (offset % bs) as usize;
        let mut rest = data;
        self.for_each_run(file, first, blocks, |physical, n| {
            let room = usize::try_from(n * bs).unwrap_or(usize::MAX) - in_block;
            let (now, later) = rest.split_at(rest.len().min(room));
            self.blocks.write(physical, in_block, now)?;
            in_block = 0;
            rest = later;
            Ok(())
        })
    }

    /// The largest readahead worth doing: a readahead run must fit the pool's probation queue
    /// (a tenth of the pool under S3-FIFO) with room to spare, or it is evicted before the
    /// scan reaches it, and it must stay under the size the pool refuses to cache (a quarter).
    pub fn readahead_max_bytes(&self) -> u64 {
        self.options.cache_bytes / 16
    }

    /// Makes appended values durable: called before the write-ahead log is synced.
    pub fn sync(&self) -> Result<()> {
        self.blocks.sync()
    }

    /// Makes every block of the value files `ids` durable, whoever wrote it: recovery calls it
    /// before it makes durable the pointers it replayed from logs, whose values an earlier
    /// process may have written and never synced.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn sync_files(&self, ids: impl Iterator<Item = ValueFileId>) -> Result<()> {
        let mut runs = Vec::new();
        for id in ids {
            let Some(file) = self.files.read().get(&id).cloned() else {
                continue;
            };
            runs.extend(file.extents.read().extents().map(|e| (e.physical, e.len)));
        }
        self.blocks.sync_runs(&runs)
    }

    /// Reads the value `p` points at, checking its CRC.
    ///
    /// A pool hit takes no lock and makes no system call. On a miss the file's invalidate lock
    /// is taken shared for the extent lookup, the read and the pool insertion, so no block can
    /// be freed and reused in between. `CacheOnly` answers `WouldBlock` instead of waiting or
    /// reading.
    ///
    /// # Errors
    /// `Corruption` if the bytes fail the pointer's CRC or the pointer names no mapped block;
    /// `Io`; `WouldBlock` in `CacheOnly` mode.
    pub fn read(&self, p: &ValuePointer, mode: ReadMode) -> Result<Bytes> {
        self.read_ahead(p, mode, 0)
    }

    /// True if the value `p` points at reads back whole: its file and blocks exist and its
    /// bytes match its CRC. Read past the pool, which it leaves as it was (recovery asks it of
    /// the values of the newest log before any read).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn reads_back(&self, p: &ValuePointer) -> Result<bool> {
        let len = usize::try_from(p.len).map_err(|_| Error::invalid("value too large"))?;
        let read = self.file(p.file).and_then(|file| {
            let _shared = file.invalidate.shared();
            self.read_uncached(&file, p.offset, len)
        });
        match read {
            Ok(bytes) => Ok(crc32fast::hash(&bytes) == p.crc),
            Err(e) if e.is_corruption() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Like [`Self::read`], but a miss fills the pool with `ahead_bytes` from the value's start
    /// (clipped to the file's complete blocks) in one read: the readahead of a scan that walks
    /// a file's values in order, so the next values it asks for are hits.
    pub fn read_ahead(&self, p: &ValuePointer, mode: ReadMode, ahead_bytes: u64) -> Result<Bytes> {
        let len = usize::try_from(p.len).map_err(|_| Error::invalid("value too large"))?;
        loop {
            match self.pool.lookup_checked(p.file, p.offset, len, p.crc) {
                Checked::Hit(bytes) => return Ok(bytes),
                Checked::Mismatch => return Err(self.mismatch(p)),
                Checked::Miss => {}
            }
            if mode == ReadMode::CacheOnly {
                return Err(Error::WouldBlock);
            }
            match self.fill(p, len, ahead_bytes) {
                Ok(Checked::Hit(bytes)) => return Ok(bytes),
                Ok(Checked::Mismatch | Checked::Miss) => return Err(self.mismatch(p)),
                // A run we waited for was dropped: look the extents up again.
                Err(FillError::Retry) => continue,
                Err(FillError::Failed(e)) => return Err(e),
            }
        }
    }

    /// One attempt to read the value through the pool, under the file's invalidate lock held
    /// shared for the extent lookups, the block reads and the pool insertion (E2-E4, E6).
    fn fill(&self, p: &ValuePointer, len: usize, ahead_bytes: u64) -> Result<Checked, FillError> {
        let file = self.file(p.file).map_err(FillError::Failed)?;
        let guard = file.invalidate.shared();
        let bs = self.block_size();
        let open_block = file.first_open_block(bs);
        if LogicalBlock((p.end().max(1) - 1) / bs) >= open_block {
            // The block appends are still filling must not be cached: read it directly (E16).
            let bytes = self
                .read_uncached(&file, p.offset, len)
                .map_err(FillError::Failed)?;
            return Ok(if crc32fast::hash(&bytes) == p.crc {
                Checked::Hit(bytes)
            } else {
                Checked::Mismatch
            });
        }
        // Readahead stops at the open block and at the first hole: blocks reclamation punched
        // out hold nothing to read.
        let mapped = file.mapped_run_blocks(LogicalBlock(p.offset / bs), open_block);
        let span = ahead_bytes
            .min(((p.offset / bs + mapped) * bs).saturating_sub(p.offset))
            .max(p.len);
        let span = usize::try_from(span).unwrap_or(len);
        self.pool.fill_checked(
            p.file,
            p.offset,
            len,
            span,
            p.crc,
            &guard.token(p.file),
            |first, buf| self.read_blocks(&file, first, buf),
        )
    }

    fn checked(&self, p: &ValuePointer, bytes: Bytes) -> Result<Bytes> {
        if crc32fast::hash(&bytes) == p.crc {
            Ok(bytes)
        } else {
            Err(self.mismatch(p))
        }
    }

    fn mismatch(&self, p: &ValuePointer) -> Error {
        Error::corruption(
            &self.dir,
            p.offset,
            format!(
                "value in value file {} at offset {} ({} bytes) fails its checksum",
                p.file, p.offset, p.len
            ),
        )
    }

    /// Reads `len` bytes at logical `offset`, bypassing the pool.
    ///
    /// # Locking
    /// REQUIRES: the file's invalidate lock held shared by the caller.
    fn read_uncached(&self, file: &ValueFile, offset: u64, len: usize) -> Result<Bytes> {
        let bs = self.block_size();
        let first = LogicalBlock(offset / bs);
        let blocks = (offset + len as u64).div_ceil(bs) - first.0;
        let mut buf =
            vec![0u8; usize::try_from(blocks * bs).map_err(|_| Error::invalid("value too large"))?];
        self.read_blocks(file, first, &mut buf)?;
        let start = (offset % bs) as usize;
        Ok(Bytes::from(buf).slice(start..start + len))
    }

    /// Fills `buf` (whole blocks) from logical block `first` on, through the extent map.
    ///
    /// # Locking
    /// REQUIRES: the file's invalidate lock held shared by the caller.
    fn read_blocks(&self, file: &ValueFile, first: LogicalBlock, buf: &mut [u8]) -> Result<()> {
        let bs = self.options.block_size;
        let mut rest = buf;
        self.for_each_run(file, first, (rest.len() / bs) as u64, |physical, n| {
            #[cfg(feature = "test-hooks")]
            if let Some(delay) = self.options.race_window {
                std::thread::sleep(delay);
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let (now, later) = std::mem::take(&mut rest).split_at_mut(n * bs);
            match self.options.read_path {
                ReadPath::Pool => self.blocks.read(physical, now)?,
                ReadPath::Mmap => self.blocks.read_mapped(physical, now)?,
            }
            rest = later;
            Ok(())
        })
    }

    /// Calls `f(physical, n)` for each run of the `blocks` blocks of `file` from logical
    /// `first` on, in order, as its extent map places them: `n` blocks from `physical`.
    ///
    /// # Errors
    /// `Corruption` if a block is not mapped; the first error of `f`.
    ///
    /// # Locking
    /// Takes the file's extent map shared for each lookup, not across `f`.
    fn for_each_run(
        &self,
        file: &ValueFile,
        first: LogicalBlock,
        blocks: u64,
        mut f: impl FnMut(PhysicalBlock, u64) -> Result<()>,
    ) -> Result<()> {
        let end = first.add(blocks);
        let mut block = first;
        while block < end {
            let (physical, left) = file.extents.read().lookup(block).ok_or_else(|| {
                Error::corruption(
                    &self.dir,
                    block.0 * self.block_size(),
                    format!("value file {} has no block {block}", file.id),
                )
            })?;
            let n = left.min(end.0 - block.0);
            f(physical, n)?;
            block = block.add(n);
        }
        Ok(())
    }

    /// Moves every extent of `id` onto one contiguous run of new blocks, if the file is
    /// fragmented (see [`is_fragmented`]) and such a run is free. The logical addresses, and
    /// so every pointer, stay the same. Returns the bytes it copied (0: it moved nothing).
    ///
    /// The copy runs under the shared invalidate lock (readers keep reading); only the switch
    /// takes it exclusive: invalidate the pool's blocks of the file, remap the extents, hand
    /// the old blocks to the allocator as pending. They become reusable once the manifest
    /// record of the move is durable (DESIGN invariant 2).
    ///
    /// # Locking
    /// Takes the relocation job lock, then the file's invalidate lock (shared, then exclusive),
    /// its extent map and the allocator; logs through `log` after the exclusive section.
    pub fn relocate(&self, id: ValueFileId, log: &dyn ValueLog) -> Result<u64> {
        self.relocate_file(id, false, log)
    }

    /// Relocates `id`; with `force`, even a file that is not fragmented (for the race test,
    /// which needs blocks freed and reused on demand).
    fn relocate_file(&self, id: ValueFileId, force: bool, log: &dyn ValueLog) -> Result<u64> {
        let mut ticket = self.relocation.lock();
        if self.open_file_ids().contains(&id) {
            return Ok(0);
        }
        // Deleted since the caller listed it (reclamation runs in the background).
        let Some(file) = self.files.read().get(&id).cloned() else {
            return Ok(0);
        };
        let bs = self.options.block_size;
        // Copy, under the shared lock.
        let (before, target, total) = {
            let _shared = file.invalidate.shared();
            let extents = file.extents.read();
            let before: Vec<Extent> = extents.extents().collect();
            let total = extents.mapped_blocks();
            if before.is_empty() || !(force || is_fragmented(&extents, self.block_size())) {
                return Ok(0);
            }
            drop(extents);
            let Some(target) = self.allocator.lock().allocate_contiguous(total) else {
                return Ok(0);
            };
            let mut at = target;
            for e in &before {
                let mut buf = vec![0u8; usize::try_from(e.len).unwrap_or(usize::MAX) * bs];
                self.blocks.read(e.physical, &mut buf)?;
                self.blocks.write(at, 0, &buf)?;
                at = at.add(e.len);
            }
            self.blocks.sync()?;
            (before, target, total)
        };
        // Switch, under the exclusive lock.
        *ticket += 1;
        let mut edits = Vec::with_capacity(before.len());
        let mut freed = Vec::new();
        {
            let exclusive = file.invalidate.exclusive();
            // As the kernel's hole punch: drop the cached blocks, then change the map. It is the
            // exclusive lock, not the extent-map lock, that keeps a fill from starting in
            // between and reading a block about to be freed.
            self.pool.invalidate_file(id, &exclusive.token(id));
            self.race_window();
            let mut extents = file.extents.write();
            // Everything that changes a sealed file's map holds the job lock.
            debug_assert!(extents.extents().eq(before.iter().copied()));
            let mut at = target;
            for e in &before {
                freed.extend(extents.remap(e.logical, e.len, at)?);
                edits.push(ValueEdit::Moved {
                    file: id,
                    logical: e.logical,
                    physical: at,
                    len: e.len,
                });
                at = at.add(e.len);
            }
            drop(extents);
            self.allocator.lock().free_later(freed.clone(), *ticket)?;
        }
        // Once the move is durable, the old blocks hold nothing anyone can reach.
        self.free_when_logged(edits, &freed, *ticket, log)?;
        self.relocations.fetch_add(1, Ordering::Relaxed);
        let copied = total * self.block_size();
        self.gc_written_bytes.fetch_add(copied, Ordering::Relaxed);
        Ok(copied)
    }

    /// Test-only: the pause the race test puts inside exclusive sections.
    fn race_window(&self) {
        #[cfg(feature = "test-hooks")]
        if let Some(delay) = self.options.race_window {
            std::thread::sleep(delay);
        }
    }

    /// Punches holes over freed runs, physically adjacent ones merged into one call.
    ///
    /// # Locking
    /// REQUIRES: nobody may allocate the runs meanwhile: they are pending in the allocator, or
    /// past the store's end with the allocator lock held.
    fn punch(&self, freed: &[(PhysicalBlock, u64)]) -> Result<()> {
        let mut runs = freed.to_vec();
        runs.sort_unstable();
        let mut merged: Vec<(PhysicalBlock, u64)> = Vec::with_capacity(runs.len());
        for (first, n) in runs {
            match merged.last_mut() {
                Some((start, len)) if start.add(*len) == first => *len += n,
                _ => merged.push((first, n)),
            }
        }
        for (first, n) in merged {
            if self.blocks.punch(first, n)? {
                self.punched_blocks.fetch_add(n, Ordering::Relaxed);
            } else {
                self.punch_unsupported.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Seals the file user writes append to: the next value starts a new file, and this one
    /// may now be evacuated, relocated or deleted like any other.
    pub fn seal_active(&self) {
        let mut app = self.appender.lock();
        if let Some(file) = app.file.take() {
            file.mark_changed();
        }
        *app = Appender::default();
    }

    /// Records dead byte ranges `(file, offset, len)`, once the manifest edit that made them
    /// dead is installed: from then on they count as dead space, and reclamation may free
    /// their blocks once no reader of an older version remains.
    pub fn note_dead(&self, dead: impl IntoIterator<Item = (ValueFileId, u64, u64)>) {
        let files = self.files.read();
        for (id, offset, len) in dead {
            if let Some(f) = files.get(&id) {
                f.dead.lock().insert(offset, offset.saturating_add(len));
                f.mark_changed();
            }
        }
    }

    /// Frees what nothing can reach any more, once `quiescent()` says no reader holds a
    /// version older than the one that recorded it dead (DESIGN invariant 2c):
    /// - every logical block whose bytes are all dead is punched out: in one exclusive
    ///   section per file its pool frames are invalidated, it is unmapped and its physical
    ///   block freed; the blocks become reusable once the `Unmapped` record is durable;
    /// - every sealed file with no live byte is deleted whole;
    /// - segments with no block in use are deleted.
    ///
    /// Blocks shared with a live neighbour stay: evacuation empties them.
    ///
    /// # Locking
    /// Takes the relocation job lock for the whole pass, then per file its invalidate lock
    /// exclusive (E11/E15), its extent map and the allocator; logs once, after every file's
    /// exclusive section. `quiescent` is called after the dead ranges are read: a range
    /// recorded later is left for the next pass. Returns false if `quiescent` said no and the
    /// work was left for later.
    pub fn reclaim(&self, log: &dyn ValueLog, quiescent: &dyn Fn() -> bool) -> Result<bool> {
        let mut ticket = self.relocation.lock();
        // Files first, then which are open: a file created in between is open but would not be
        // in `open`, and would pass for a sealed file with nothing live.
        let files: Vec<Arc<ValueFile>> = self.files.read().values().cloned().collect();
        let open = self.open_file_ids();
        let bs = self.block_size();
        let mut plan = Vec::new();
        // Files with nothing new since their last reclamation are skipped; the others are
        // marked reclaimed once this pass is done with them.
        let mut examined = Vec::new();
        for file in files {
            let Some(changes) = file.unreclaimed_changes() else {
                continue;
            };
            examined.push((Arc::clone(&file), changes));
            let sealed = !open.contains(&file.id);
            if sealed && file.live_bytes() == 0 {
                plan.push((file, None));
                continue;
            }
            // A sealed file's bytes past its end were reserved and never written.
            let (limit, tail) = if sealed {
                (LogicalBlock(u64::MAX), file.written())
            } else {
                (file.first_open_block(bs), u64::MAX)
            };
            let dead = file.dead.lock().dead_blocks(bs, limit, tail);
            let runs = mapped_parts(&file.extents.read(), &dead);
            if !runs.is_empty() {
                plan.push((file, Some(runs)));
            }
        }
        if !plan.is_empty() && !quiescent() {
            return Ok(false);
        }
        if plan.is_empty() {
            for (file, changes) in examined {
                file.mark_reclaimed(changes);
            }
            self.trim(&mut ticket, false)?;
            return Ok(true);
        }
        // One ticket and one durable record for the whole pass: its exclusive sections unmap
        // the dead blocks of every file in the plan, then a single manifest sync frees them
        // all, instead of one per file.
        *ticket += 1;
        let mut edits = Vec::new();
        let mut freed = Vec::new();
        let (mut deleted, mut held_total) = (0, 0);
        for (file, runs) in plan {
            // Reserved blocks past the file's end held nothing: freeing them gives no space.
            let written = LogicalBlock(file.written().div_ceil(bs));
            let whole = [(LogicalBlock(0), written.0)];
            let held = |runs: &[(LogicalBlock, u64)]| -> u64 {
                runs.iter()
                    .map(|&(first, n)| first.add(n).min(written).since(first).unwrap_or(0))
                    .sum()
            };
            let held_blocks = match runs {
                None => {
                    let held_blocks = held(&mapped_parts(&file.extents.read(), &whole));
                    self.delete_file(&file, *ticket, &mut edits, &mut freed)?;
                    deleted += 1;
                    held_blocks
                }
                Some(runs) => {
                    self.unmap_dead(&file, &runs, *ticket, &mut edits, &mut freed)?;
                    held(&runs)
                }
            };
            held_total += held_blocks;
        }
        self.free_when_logged(edits, &freed, *ticket, log)?;
        self.deleted_files.fetch_add(deleted, Ordering::Relaxed);
        self.reclaimed_bytes
            .fetch_add(held_total * bs, Ordering::Relaxed);
        for (file, changes) in examined {
            file.mark_reclaimed(changes);
        }
        self.trim(&mut ticket, false)?;
        self.remove_free_segments()?;
        Ok(true)
    }

    /// Punches every free block left unpunched for reuse, giving its space back to the file
    /// system now ([`Self::trim`] with `all`).
    ///
    /// # Locking
    /// Takes the relocation job lock, then the allocator lock.
    pub fn trim_unpunched(&self) -> Result<()> {
        let mut ticket = self.relocation.lock();
        self.trim(&mut ticket, true)?;
        self.remove_free_segments()
    }

    /// Unmaps the logical block runs `runs` of `file` (all dead) and frees their blocks under
    /// `ticket`; appends the edits to log and the blocks freed to `edits` and `freed`.
    ///
    /// # Locking
    /// REQUIRES: the relocation job lock, which issued `ticket`. Takes the file's invalidate
    /// lock exclusive (E11); the caller logs after the exclusive section.
    fn unmap_dead(
        &self,
        file: &ValueFile,
        runs: &[(LogicalBlock, u64)],
        ticket: u64,
        edits: &mut Vec<ValueEdit>,
        freed: &mut Vec<(PhysicalBlock, u64)>,
    ) -> Result<()> {
        let mut unmapped = Vec::new();
        {
            let exclusive = file.invalidate.exclusive();
            let token = exclusive.token(file.id);
            for &(first, n) in runs {
                self.pool.invalidate(file.id, first, n, &token);
            }
            self.race_window();
            let mut extents = file.extents.write();
            for &(first, n) in runs {
                unmapped.extend(extents.unmap(first, n));
                edits.push(ValueEdit::Unmapped {
                    file: file.id,
                    logical: first,
                    len: n,
                });
            }
            drop(extents);
            self.allocator.lock().free_later(unmapped.clone(), ticket)?;
        }
        freed.extend(unmapped);
        Ok(())
    }

    /// Deletes `file`, which no pointer names: drops its blocks from the pool, unmaps them and
    /// frees its blocks under `ticket`; appends the edit to log and the blocks freed to `edits`
    /// and `freed`. The file being appended to is never deleted: values written to it may not
    /// have reached the index yet.
    ///
    /// # Locking
    /// REQUIRES: the relocation job lock, which issued `ticket`. Takes the file's invalidate
    /// lock exclusive (E15); the caller logs after the exclusive section.
    fn delete_file(
        &self,
        file: &ValueFile,
        ticket: u64,
        edits: &mut Vec<ValueEdit>,
        freed: &mut Vec<(PhysicalBlock, u64)>,
    ) -> Result<()> {
        let id = file.id;
        let unmapped = {
            let exclusive = file.invalidate.exclusive();
            self.pool.invalidate_file(id, &exclusive.token(id));
            self.race_window();
            let mut extents = file.extents.write();
            let end = extents.end();
            let freed = extents.unmap(LogicalBlock(0), end.0);
            drop(extents);
            self.allocator.lock().free_later(freed.clone(), ticket)?;
            freed
        };
        self.files.write().remove(&id);
        self.evacuating.lock().remove(&id);
        edits.push(ValueEdit::FileRemoved(id));
        freed.extend(unmapped);
        Ok(())
    }

    /// Logs `edits` (which unmap or move `freed`), then releases `ticket`: the blocks are
    /// reused only once the record that freed them is durable (DESIGN invariant 2b). They
    /// become free unpunched, for reuse or a later trim ([`Self::trim`]).
    fn free_when_logged(
        &self,
        edits: Vec<ValueEdit>,
        freed: &[(PhysicalBlock, u64)],
        ticket: u64,
        log: &dyn ValueLog,
    ) -> Result<()> {
        if cfg!(feature = "test-release-before-log") {
            // The planted bug the free-durability test must catch: a power loss before the
            // log write keeps the old mapping of blocks a writer may already have reused.
            self.release(ticket, freed);
            return log.log(edits);
        }
        log.log(edits)?;
        self.release(ticket, freed);
        Ok(())
    }

    /// Gives the space of unpunched free blocks back to the file system: all of them with
    /// `all` (`Db::compact`), else only once they are more than a quarter of the store
    /// (`TRIM_ABOVE_FRACTION`).
    ///
    /// # Locking
    /// REQUIRES: the relocation job lock, which issues `ticket`'s next value. Takes the
    /// allocator lock; holds it while punching runs past the store's end, which growth
    /// could hand out, and punches the others outside it, pending under the ticket.
    fn trim(&self, ticket: &mut u64, all: bool) -> Result<()> {
        let held = {
            let mut allocator = self.allocator.lock();
            let unpunched = allocator.unpunched_blocks();
            let due = if all {
                unpunched > 0
            } else {
                unpunched.saturating_mul(TRIM_ABOVE_FRACTION) > allocator.end().0
            };
            if !due {
                return Ok(());
            }
            *ticket += 1;
            let (held, past_end) = allocator.hold_unpunched(*ticket)?;
            self.punch(&past_end)?;
            held
        };
        self.punch(&held)?;
        // Not `Self::release`: nothing was freed here, so the free-durability hook has no
        // business with these blocks.
        self.allocator.lock().release(*ticket);
        Ok(())
    }

    /// Makes the blocks pending under tickets up to `ticket` allocatable again, recording
    /// `unpunched` (blocks among them whose space is still allocated) for a later trim.
    ///
    /// # Locking
    /// REQUIRES: every record that freed them is durable (DESIGN invariant 2b). Takes the
    /// allocator lock, and drops it before the test hook, which lets another thread allocate
    /// the blocks and then cuts the power (`engine/tests/free_durability.rs`).
    fn release(&self, ticket: u64, unpunched: &[(PhysicalBlock, u64)]) {
        {
            let mut allocator = self.allocator.lock();
            allocator.release(ticket);
            allocator.note_unpunched(unpunched);
        }
        #[cfg(feature = "test-hooks")]
        if let Some(hook) = &self.options.on_release {
            (hook.0)();
        }
    }

    /// Deletes the segment files none of whose blocks is mapped or pending.
    fn remove_free_segments(&self) -> Result<()> {
        let allocator = self.allocator.lock();
        let free: Vec<(PhysicalBlock, u64)> = allocator.free_runs().collect();
        for index in self.blocks.wholly_free_segments(&free, allocator.end()) {
            self.blocks.remove_segment(index)?;
            self.removed_segments.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Marks for evacuation every sealed file that is mostly dead inside its mapped blocks:
    /// less than half of the bytes of the blocks it still maps are live (many small dead
    /// values around a few live ones, which no whole-block punch can free). Index compaction
    /// then moves their live values to a new file and the files die whole. Returns how many
    /// files are marked.
    ///
    /// The choice between relocation and evacuation (docs/design.md, "Value compaction"):
    /// whole dead blocks are punched and need no copy; a file whose live bytes fill most of
    /// its blocks but whose blocks are scattered is relocated (copy, remap; no index write);
    /// a file whose blocks are mostly dead is evacuated (copy the few live values, rewrite
    /// their pointers), since relocating it would copy the dead bytes along.
    pub fn plan_evacuations(&self) -> usize {
        // Files first, then which are open (see `reclaim`).
        let files: Vec<Arc<ValueFile>> = self.files.read().values().cloned().collect();
        let open = self.open_file_ids();
        let bs = self.block_size();
        let mut marked = self.evacuating.lock().clone();
        for file in files.iter().filter(|f| !open.contains(&f.id)) {
            let live = file.live_bytes();
            let mapped = file.extents.read().mapped_blocks() * bs;
            if live > 0 && live.saturating_mul(2) < mapped {
                marked.insert(file.id);
            }
        }
        let n = marked.len();
        *self.evacuating.lock() = marked;
        n
    }

    /// The files whose values index compaction should move (see
    /// [`Self::plan_evacuations`]).
    pub fn evacuating(&self) -> BTreeSet<ValueFileId> {
        self.evacuating.lock().clone()
    }

    /// Copies the value `p` points at to the evacuation file and returns its new pointer.
    /// The caller (index compaction) writes the new pointer in place of `p`, with the same key
    /// and sequence number, and records `p`'s bytes dead in the same manifest edit; it syncs
    /// the store ([`Self::sync`]) before logging that edit.
    ///
    /// # Errors
    /// `Corruption` if the value fails its checksum; `Io`.
    pub fn evacuate(&self, p: &ValuePointer, log: &dyn ValueLog) -> Result<ValuePointer> {
        let len = usize::try_from(p.len).map_err(|_| Error::invalid("value too large"))?;
        let bytes = {
            let file = self.file(p.file)?;
            let _shared = file.invalidate.shared();
            self.read_uncached(&file, p.offset, len)?
        };
        let bytes = self.checked(p, bytes)?;
        let moved = self.append_to(&self.gc_appender, &bytes, false, log)?;
        self.gc_written_bytes.fetch_add(p.len, Ordering::Relaxed);
        self.evacuated_values.fetch_add(1, Ordering::Relaxed);
        Ok(moved)
    }

    /// Relocates every fragmented sealed file, at most `max_files` of them; returns the bytes
    /// copied.
    pub fn defragment(&self, log: &dyn ValueLog, max_files: usize) -> Result<u64> {
        let mut copied = 0;
        let mut moved = 0;
        for id in self.file_ids() {
            if moved == max_files {
                break;
            }
            let n = self.relocate(id, log)?;
            if n > 0 {
                copied += n;
                moved += 1;
            }
        }
        Ok(copied)
    }

    /// Test-only: relocates every file not being appended to, fragmented or not.
    #[cfg(feature = "test-hooks")]
    pub fn relocate_all(&self, log: &dyn ValueLog) -> Result<u64> {
        let mut moved = 0;
        for id in self.file_ids() {
            if self.relocate_file(id, true, log)? > 0 {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// The files being appended to: by user writes and by evacuation.
    fn open_file_ids(&self) -> BTreeSet<ValueFileId> {
        let user = self.appender.lock().file.as_ref().map(|f| f.id);
        let gc = self.gc_appender.lock().file.as_ref().map(|f| f.id);
        user.into_iter().chain(gc).collect()
    }

    /// What each value file maps, and the segments under them.
    pub fn inventory(&self) -> (Vec<ValueFileInfo>, Vec<SegmentInfo>) {
        let files: Vec<Arc<ValueFile>> = self.files.read().values().cloned().collect();
        let value_files = files
            .iter()
            .map(|f| {
                let extents = f.extents.read();
                ValueFileInfo {
                    id: f.id.0,
                    extents: extents.extents().count(),
                    mapped_blocks: extents.mapped_blocks(),
                    written_bytes: f.written(),
                    dead_bytes: f.dead.lock().total(),
                }
            })
            .collect();
        let segments = self
            .blocks
            .segments()
            .into_iter()
            .map(|(number, size_bytes)| SegmentInfo { number, size_bytes })
            .collect();
        (value_files, segments)
    }

    /// The extents of value file `id`, if it exists.
    pub fn extents_of(&self, id: ValueFileId) -> Option<Vec<ExtentInfo>> {
        let file = self.files.read().get(&id).cloned()?;
        let dead = file.dead.lock().clone();
        let written = file.written();
        let bs = self.block_size();
        let extents = file.extents.read();
        Some(
            extents
                .extents()
                .map(|e| {
                    let start = e.logical.0 * bs;
                    let end = e.logical.add(e.len).0 * bs;
                    let written_here = end.min(written).saturating_sub(start);
                    let dead_bytes = dead.dead_within(start, end.min(written));
                    ExtentInfo {
                        logical_block: e.logical.0,
                        physical_block: e.physical.0,
                        blocks: e.len,
                        live_bytes: written_here - dead_bytes,
                        dead_bytes,
                    }
                })
                .collect(),
        )
    }

    /// The ids of every value file, in order.
    pub fn file_ids(&self) -> Vec<ValueFileId> {
        self.files.read().keys().copied().collect()
    }

    /// The store as manifest edits for a copy whose index points at exactly `live` (per file,
    /// the byte ranges its pointers name): the files it names, their extents, how far they
    /// were written, and as dead every byte no pointer of the copy names.
    fn edits_for(&self, live: &BTreeMap<ValueFileId, DeadRanges>) -> Vec<ValueEdit> {
        let files = self.files.read();
        let mut edits = Vec::new();
        for (&id, f) in files.iter() {
            let Some(live) = live.get(&id) else {
                continue;
            };
            edits.push(ValueEdit::FileCreated(id));
            for e in f.extents.read().extents() {
                edits.push(ValueEdit::Mapped {
                    file: id,
                    logical: e.logical,
                    physical: e.physical,
                    len: e.len,
                });
            }
            let end = f.written();
            edits.push(ValueEdit::Reaches { file: id, end });
            edits.extend(state::dead_edits(id, &live.complement(end)));
        }
        edits
    }

    /// Marks the start of a change to the accounting that is not atomic with the index: a
    /// compaction that drops or moves pointers, from its first evacuation to its
    /// [`Self::note_dead`]. [`Self::check_accounting`] ignores what it read while one ran.
    pub fn begin_accounting_change(&self) {
        self.accounting_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the end of the change [`Self::begin_accounting_change`] began.
    pub fn end_accounting_change(&self) {
        self.accounting_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The accounting epoch: odd while a change runs; read before computing the `live` ranges
    /// handed to [`Self::check_accounting`].
    pub fn accounting_epoch(&self) -> u64 {
        self.accounting_epoch.load(Ordering::Acquire)
    }

    /// Checks the dead-space accounting against `live`, the byte ranges (per file) that the
    /// pointers of the index name, every version included: every pointer names a file that
    /// exists, mapped blocks and no dead byte. Returns the bytes that are neither live nor
    /// dead (0 unless a crash left unreferenced values behind). Bytes past the last live or
    /// dead byte of a file still being appended to are not counted: they may belong to a
    /// write or an evacuation in flight.
    ///
    /// `epoch` is [`Self::accounting_epoch`] as read before `live` was computed and
    /// `still_current` says whether the index `live` came from is still current; if a change
    /// ran in between, or the index changed, nothing is checked and `None` is returned, for
    /// the caller to retry.
    ///
    /// # Errors
    /// `Corruption` naming the first pointer that breaks the accounting.
    pub fn check_accounting(
        &self,
        live: &BTreeMap<ValueFileId, DeadRanges>,
        epoch: u64,
        still_current: &dyn Fn() -> bool,
    ) -> Result<Option<u64>> {
        // Files first, then which are open (see `reclaim`).
        let files = self.files.read().clone();
        let open = self.open_file_ids();
        let dead: BTreeMap<ValueFileId, DeadRanges> = files
            .iter()
            .map(|(&id, f)| (id, f.dead.lock().clone()))
            .collect();
        if epoch % 2 == 1 || self.accounting_epoch() != epoch || !still_current() {
            return Ok(None);
        }
        let bs = self.block_size();
        let mut unaccounted = 0;
        for (id, ranges) in live {
            let (Some(file), Some(dead)) = (files.get(id), dead.get(id)) else {
                return Err(Error::corruption(
                    &self.dir,
                    0,
                    format!("a pointer names value file {id}, which does not exist"),
                ));
            };
            let extents = file.extents.read();
            for (start, end) in ranges.iter() {
                let bad = if dead.intersects(start, end) {
                    Some("counted dead")
                } else if end > file.written() {
                    Some("past the file's end")
                } else {
                    let first = LogicalBlock(start / bs);
                    let last = LogicalBlock(end.div_ceil(bs));
                    let mut at = first;
                    while let Some((_, left)) = extents.lookup(at).filter(|_| at < last) {
                        at = at.add(left);
                    }
                    (at < last).then_some("not mapped")
                };
                if let Some(what) = bad {
                    return Err(Error::corruption(
                        &self.dir,
                        start,
                        format!("live bytes [{start}, {end}) of value file {id} are {what}"),
                    ));
                }
            }
        }
        for (id, file) in &files {
            let (live, dead) = (live.get(id), dead.get(id));
            let live_bytes = live.map_or(0, DeadRanges::total);
            let dead_bytes = dead.map_or(0, DeadRanges::total);
            let end = if open.contains(id) {
                let last = |r: Option<&DeadRanges>| r.and_then(DeadRanges::end).unwrap_or(0);
                last(live).max(last(dead))
            } else {
                file.written()
            };
            unaccounted += end.saturating_sub(live_bytes + dead_bytes);
        }
        Ok(Some(unaccounted))
    }

    /// Checks DESIGN invariant 3: every mapped logical block maps to one physical block, no
    /// physical block is mapped twice or both mapped and free, mapped + free = all blocks.
    ///
    /// Also checks invariant 1, no stale fill: every block the pool holds equals the block on
    /// disk, compared under the file's invalidate lock held shared so no invalidation runs
    /// in between.
    ///
    /// # Locking
    /// The extent maps and the allocator are checked under the job lock and both appenders,
    /// so no block is between the allocator and an extent map meanwhile.
    pub fn verify(&self) -> Result<()> {
        let files: Vec<Arc<ValueFile>> = {
            let _job = self.relocation.lock();
            let _gc = self.gc_appender.lock();
            let _user = self.appender.lock();
            let files: Vec<Arc<ValueFile>> = self.files.read().values().cloned().collect();
            let mut mapped = Vec::new();
            for f in &files {
                let extents = f.extents.read();
                extents.check()?;
                mapped.extend(extents.extents().map(|e| (e.physical, e.len)));
            }
            self.allocator.lock().check(&mapped)?;
            files
        };
        let mut disk = vec![0u8; self.options.block_size];
        for f in &files {
            let shared = f.invalidate.shared();
            for (block, cached) in self.pool.resident_blocks(f.id, &shared.token(f.id)) {
                self.read_blocks(f, block, &mut disk)?;
                if cached[..] != disk[..] {
                    return Err(Error::corruption(
                        &self.dir,
                        block.0 * self.block_size(),
                        format!(
                            "the buffer pool holds stale bytes for block {block} of value file {}",
                            f.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> ValueStats {
        let files: Vec<Arc<ValueFile>> = self.files.read().values().cloned().collect();
        let mut stats = ValueStats {
            files: files.len(),
            ..ValueStats::default()
        };
        for f in &files {
            stats.mapped_blocks += f.extents.read().mapped_blocks();
            stats.written_bytes += f.written();
            stats.dead_bytes += f.dead.lock().total();
        }
        {
            let allocator = self.allocator.lock();
            stats.free_blocks = allocator.free_blocks();
            stats.pending_blocks = allocator.pending_blocks();
            stats.store_blocks = allocator.end().0;
            stats.unpunched_blocks = allocator.unpunched_blocks();
        }
        // A failed `fstat` leaves the figure unknown rather than failing every caller of stats.
        stats.disk_bytes = self.blocks.allocated_bytes().ok();
        stats.relocations = self.relocations.load(Ordering::Relaxed);
        stats.deleted_files = self.deleted_files.load(Ordering::Relaxed);
        stats.removed_segments = self.removed_segments.load(Ordering::Relaxed);
        stats.punched_blocks = self.punched_blocks.load(Ordering::Relaxed);
        stats.punch_unsupported = self.punch_unsupported.load(Ordering::Relaxed);
        stats.gc_written_bytes = self.gc_written_bytes.load(Ordering::Relaxed);
        stats.reclaimed_bytes = self.reclaimed_bytes.load(Ordering::Relaxed);
        stats.evacuated_values = self.evacuated_values.load(Ordering::Relaxed);
        stats.pool = self.pool.stats();
        stats
    }

    /// Copies every segment into `dest` and returns the store's state as manifest edits.
    ///
    /// Segments are rewritten in place (freed blocks are reused), so they are copied, not
    /// linked. Holding the relocation lock keeps every mapped block where it is during the
    /// copy: only relocation frees blocks. Appends may write meanwhile, but only into blocks
    /// that no pointer of the checkpoint names; its open trims them.
    ///
    /// # Locking
    /// Takes the relocation job lock for the whole copy.
    pub fn checkpoint(
        &self,
        dest: &Path,
        live: &BTreeMap<ValueFileId, DeadRanges>,
    ) -> Result<Vec<ValueEdit>> {
        let _still = self.relocation.lock();
        let edits = self.edits_for(live);
        self.blocks.copy_to(dest)?;
        Ok(edits)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fs::FaultFs;
    use crate::options::Options;

    /// Records the value edits the store logs, and hands out file numbers.
    #[derive(Default)]
    struct RecordingLog {
        next: std::sync::atomic::AtomicU64,
        records: std::sync::Mutex<Vec<Vec<ValueEdit>>>,
    }

    impl ValueLog for RecordingLog {
        fn new_file_number(&self) -> u64 {
            self.next.fetch_add(1, Ordering::Relaxed) + 1
        }
        fn log(&self, edits: Vec<ValueEdit>) -> Result<()> {
            self.records.lock().unwrap().push(edits);
            Ok(())
        }
    }

    /// Blocks of 4 KiB, `reserve_blocks` mapped at a time, files of `file_bytes`, zero-filling
    /// `zero_ahead_bytes` ahead; no write-back, a 1 MiB pool.
    fn small_options(reserve_blocks: u64, file_bytes: u64, zero_ahead_bytes: u64) -> ValueOptions {
        ValueOptions {
            block_size: 4096,
            blocks_per_segment: 1024,
            reserve_blocks,
            file_bytes,
            writeback_bytes: 0,
            zero_ahead_bytes,
            cache_bytes: 1 << 20,
            read_path: ReadPath::Pool,
            read_only: false,
            #[cfg(feature = "test-hooks")]
            race_window: None,
            #[cfg(feature = "test-hooks")]
            on_release: None,
        }
    }

    fn open_store(dir: &Path, fs: Arc<dyn FileSystem>, options: ValueOptions) -> ValueStore {
        let (store, _) =
            ValueStore::open(dir, fs, options, ValueState::default(), &BTreeMap::new()).unwrap();
        store
    }

    /// Values of many sizes share blocks; zero-filling ahead of each (by a step that is no
    /// multiple of the block) must never reach a block a value was written into. Read back
    /// past the pool, from the files.
    #[test]
    fn zero_filling_ahead_never_touches_a_written_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(
            dir.path(),
            Arc::new(crate::fs::RealFs),
            small_options(4, 64 * 4096, 3 * 4096 + 100),
        );
        let log = RecordingLog::default();
        let value = |i: usize| -> Vec<u8> {
            let len = (i * 7919) % 20_000 + 1;
            (0..len).map(|j| (i * 31 + j) as u8 | 1).collect()
        };
        let pointers: Vec<ValuePointer> = (0..300)
            .map(|i| store.append(&value(i), false, &log).unwrap())
            .collect();
        assert!(
            pointers.last().unwrap().file > pointers[0].file,
            "several files"
        );
        for (i, p) in pointers.iter().enumerate() {
            assert!(store.reads_back(p).unwrap(), "value {i} at {p:?}");
        }
    }

    /// Values smaller than `zero_ahead_bytes` are zero-filled ahead of, in writes of their own;
    /// a synced commit's are not, since its sync would write those zeros too.
    #[test]
    fn a_synced_append_zero_fills_nothing() {
        let writes = |synced: bool| {
            let dir = tempfile::tempdir().unwrap();
            let fs = FaultFs::default();
            let store = open_store(
                dir.path(),
                Arc::new(fs.clone()),
                small_options(1024, 64 << 20, 64 << 10),
            );
            let log = RecordingLog::default();
            for i in 0..32u8 {
                store.append(&[i; 1000], synced, &log).unwrap();
            }
            fs.counts()
                .get(&crate::fs::CallKind::SegmentWrite)
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(writes(true), 32);
        assert_eq!(writes(false), 33, "one write of zeros, then the values");
    }

    /// A zero-fill that could reach no block past the value's own (here the file maps one
    /// block at a time) is not made: the value's write makes those pages itself.
    #[test]
    fn no_zero_fill_covers_only_the_value_itself() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let store = open_store(
            dir.path(),
            Arc::new(fs.clone()),
            small_options(1, 1 << 20, 8192),
        );
        let log = RecordingLog::default();
        let p = store.append(&[5; 4000], false, &log).unwrap();
        assert_eq!(
            fs.counts().get(&crate::fs::CallKind::SegmentWrite),
            Some(&1)
        );
        assert!(store.reads_back(&p).unwrap());
    }

    /// Reservations of a file grow geometrically, up to `RESERVE_GROWTH` times the first, never
    /// map past the file's size, and start again small in the next file.
    #[test]
    fn reservations_grow_within_a_file_and_stop_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (block, reserve, file_blocks) = (4096u64, 4u64, 128u64);
        let store = open_store(
            dir.path(),
            Arc::new(crate::fs::RealFs),
            small_options(reserve, file_blocks * block, 0),
        );
        let log = RecordingLog::default();
        let value = vec![7u8; block as usize];
        let mut pointers = Vec::new();
        // One file and the first block of the next.
        for _ in 0..=file_blocks {
            pointers.push(store.append(&value, false, &log).unwrap());
        }
        // Per reservation (one logged record, maybe of several runs): its file and blocks.
        let mapped: Vec<(ValueFileId, u64)> = log
            .records
            .lock()
            .unwrap()
            .iter()
            .filter_map(|record| {
                let runs = record.iter().filter_map(|edit| match *edit {
                    ValueEdit::Mapped { file, len, .. } => Some((file, len)),
                    _ => None,
                });
                runs.reduce(|(file, a), (_, b)| (file, a + b))
            })
            .collect();
        let first = pointers[0].file;
        let sizes: Vec<u64> = mapped
            .iter()
            .filter(|m| m.0 == first)
            .map(|m| m.1)
            .collect();
        assert_eq!(sizes, [4, 8, 16, 32, 32, 32, 4], "{mapped:?}");
        let next: Vec<u64> = mapped
            .iter()
            .filter(|m| m.0 != first)
            .map(|m| m.1)
            .collect();
        assert_eq!(next, [reserve]);
        for p in &pointers {
            assert_eq!(store.read(p, ReadMode::Blocking).unwrap(), value);
        }
    }

    /// Without hole punching the engine keeps working: freed blocks are reused, and the stats
    /// say their space stays with the file system.
    #[test]
    fn without_hole_punching_freed_blocks_are_still_reused_and_stats_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        fs.no_punch(true);
        let mut options = Options::new()
            .value_file_bytes(256 << 10)
            .background_compaction(false);
        options.fs = Some(Arc::new(fs));
        let db = options.open(dir.path()).unwrap();
        let value = |i: u8| vec![i; 64 << 10];
        for i in 0..16u8 {
            db.put([i], value(i)).unwrap();
        }
        for i in 0..16u8 {
            db.put([i], value(i + 100)).unwrap();
        }
        db.compact().unwrap();
        let stats = db.stats();
        assert!(stats.value_punch_unsupported, "{stats:?}");
        assert_eq!(stats.value_punched_blocks, 0);
        assert!(stats.value_reclaimed_bytes >= 1 << 20, "{stats:?}");
        let store = stats.value_store_blocks;
        for i in 0..16u8 {
            db.put([i], value(i + 200)).unwrap();
        }
        assert_eq!(
            db.stats().value_store_blocks,
            store,
            "the freed blocks are reused"
        );
        for i in 0..16u8 {
            assert_eq!(db.get([i]).unwrap().unwrap(), value(i + 200));
        }
        db.verify().unwrap();
    }
}
