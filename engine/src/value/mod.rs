//! Value files: large values live outside the index, in logical byte spaces whose blocks an
//! extent map places on physical blocks of the block store (`docs/format/value.md`,
//! `docs/locking.md`).
//!
//! - `block`: the numbers (`ValueFileId`, `LogicalBlock`, `PhysicalBlock`);
//! - `pointer`: what the index stores for a separated value;
//! - `edit`, `state`: value-file records of the manifest and their replay;
//! - `extent`: one file's extent map; `allocator`: free physical blocks; `store`: segment files;
//! - `file`: a value file at run time, with its invalidate lock;
//! - `store.rs` is the block store; this file is [`ValueStore`], which ties them together:
//!   appends (the write path), reads through the buffer pool (the fill paths), and relocation
//!   (the exclusive side).
//!
//! The index knows pointers (file, logical offset, length, CRC) and nothing of physical blocks.

pub(crate) mod allocator;
pub(crate) mod block;
pub(crate) mod edit;
pub(crate) mod extent;
pub(crate) mod file;
pub(crate) mod pointer;
pub(crate) mod state;
pub(crate) mod store;

use std::collections::BTreeMap;
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
    pub cache_bytes: u64,
    pub read_path: ReadPath,
    /// Test-only: a pause between each extent lookup of a fill and its block read, and between
    /// a relocation's pool invalidation and its remap, so the race test can make the two land
    /// inside each other's window.
    #[cfg(feature = "test-hooks")]
    pub race_window: Option<std::time::Duration>,
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
}

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
    pub punched_blocks: u64,
    pub punch_unsupported: bool,
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
    appender: Mutex<Appender>,
    /// Serializes relocations: the "compaction / range-delete job lock" of the lock order, so
    /// at most one set of freed blocks waits for its record to become durable.
    relocation: Mutex<u64>,
    /// Relocations done (readable without the job lock).
    relocations: AtomicU64,
    /// Value files deleted because nothing pointed into them.
    deleted_files: AtomicU64,
    /// Blocks whose space was given back to the file system.
    punched_blocks: AtomicU64,
    /// Set when the file system refused to punch a hole: space then stays allocated (the
    /// blocks are still reused).
    punch_unsupported: AtomicBool,
}

/// Freed runs shorter than this are not punched: the file system's own extent bookkeeping
/// would cost more than the space is worth, and the blocks are reused soon anyway.
const PUNCH_MIN_BYTES: u64 = 64 << 10;

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
    /// store and the edits that record the trimming.
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        options: ValueOptions,
        mut state: ValueState,
        reaches: &BTreeMap<ValueFileId, u64>,
    ) -> Result<(Self, Vec<ValueEdit>)> {
        let bs = options.block_size as u64;
        let blocks = BlockStore::open(dir, fs, options.block_size, options.blocks_per_segment)?;
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
        let allocator = Allocator::from_mapped(mapped, store_end.max(mapped_end))?;
        let files = state
            .files
            .into_iter()
            .map(|(id, f)| (id, Arc::new(ValueFile::new(id, f.extents, f.end))))
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
            relocation: Mutex::ranked(Rank::Job, 0),
            relocations: AtomicU64::new(0),
            deleted_files: AtomicU64::new(0),
            punched_blocks: AtomicU64::new(0),
            punch_unsupported: AtomicBool::new(false),
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

    /// Appends `value` to the active value file and returns its pointer.
    ///
    /// # Locking
    /// Called by the commit leader (the WAL lock serializes appends); takes the appender,
    /// allocator and extent-map locks, and logs reservations through `log` (the version set).
    pub fn append(&self, value: &[u8], log: &dyn ValueLog) -> Result<ValuePointer> {
        let mut app = self.appender.lock();
        let file = match &app.file {
            Some(f) => Arc::clone(f),
            None => {
                let id = ValueFileId(log.new_file_number());
                log.log(vec![ValueEdit::FileCreated(id)])?;
                let f = Arc::new(ValueFile::new(id, ExtentMap::new(), 0));
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
            self.reserve(
                &mut app,
                &file,
                missing.max(self.options.reserve_blocks),
                log,
            )?;
        }
        self.write_logical(&file, offset, value)?;
        app.cursor = end;
        file.set_written(end);
        Ok(ValuePointer {
            file: file.id,
            offset,
            len: value.len() as u64,
            crc: crc32fast::hash(value),
        })
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
        let bs = self.block_size();
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (physical, left) = file
                .extents
                .read()
                .lookup(LogicalBlock(at / bs))
                .ok_or_else(|| {
                    Error::corruption(
                        &self.dir,
                        at,
                        format!("value file {} has no block for offset {at}", file.id),
                    )
                })?;
            let in_block = (at % bs) as usize;
            let room = usize::try_from(left * bs).unwrap_or(usize::MAX) - in_block;
            let piece = data.get(done..).unwrap_or_default();
            let piece = piece.get(..piece.len().min(room)).unwrap_or_default();
            self.blocks.write(physical, in_block, piece)?;
            done += piece.len();
        }
        Ok(())
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
                Ok(bytes) => return self.checked(p, bytes),
                // A run we waited for was dropped: look the extents up again.
                Err(FillError::Retry) => continue,
                Err(FillError::Failed(e)) => return Err(e),
            }
        }
    }

    /// One attempt to read the value through the pool, under the file's invalidate lock held
    /// shared for the extent lookups, the block reads and the pool insertion (E2-E4, E6).
    fn fill(&self, p: &ValuePointer, len: usize, ahead_bytes: u64) -> Result<Bytes, FillError> {
        let file = self.file(p.file).map_err(FillError::Failed)?;
        let guard = file.invalidate.shared();
        let bs = self.block_size();
        let open_block = file.first_open_block(bs);
        if LogicalBlock((p.end().max(1) - 1) / bs) >= open_block {
            // The block appends are still filling must not be cached: read it directly (E16).
            return self
                .read_uncached(&file, p.offset, len)
                .map_err(FillError::Failed);
        }
        let span = ahead_bytes
            .min((open_block.0 * bs).saturating_sub(p.offset))
            .max(p.len);
        let span = usize::try_from(span).unwrap_or(len);
        let filled = self.pool.fill(
            p.file,
            p.offset,
            span,
            &guard.token(p.file),
            |first, buf| self.read_blocks(&file, first, buf),
        );
        filled.map(|bytes| bytes.slice(..len))
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
        let mut block = first;
        let mut rest = buf;
        while !rest.is_empty() {
            let (physical, left) = file.extents.read().lookup(block).ok_or_else(|| {
                Error::corruption(
                    &self.dir,
                    block.0 * bs as u64,
                    format!("value file {} has no block {block}", file.id),
                )
            })?;
            #[cfg(feature = "test-hooks")]
            if let Some(delay) = self.options.race_window {
                std::thread::sleep(delay);
            }
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(rest.len() / bs);
            let (now, later) = rest.split_at_mut(n * bs);
            match self.options.read_path {
                ReadPath::Pool => self.blocks.read(physical, now)?,
                ReadPath::Mmap => self.blocks.read_mapped(physical, now)?,
            }
            block = block.add(n as u64);
            rest = later;
        }
        Ok(())
    }

    /// Moves every extent of `id` onto one contiguous run of new blocks, if the file has more
    /// than one extent and such a run is free. The logical addresses, and so every pointer,
    /// stay the same. Returns whether it moved anything.
    ///
    /// The copy runs under the shared invalidate lock (readers keep reading); only the switch
    /// takes it exclusive: invalidate the pool's blocks of the file, remap the extents, hand
    /// the old blocks to the allocator as pending. They become reusable once the manifest
    /// record of the move is durable (DESIGN invariant 2).
    ///
    /// # Locking
    /// Takes the relocation job lock, then the file's invalidate lock (shared, then exclusive),
    /// its extent map and the allocator; logs through `log` after the exclusive section.
    pub fn relocate(&self, id: ValueFileId, log: &dyn ValueLog) -> Result<bool> {
        self.relocate_file(id, false, log)
    }

    /// Relocates `id`; with `force`, even a file that is already contiguous (for the race test,
    /// which needs blocks freed and reused on demand).
    fn relocate_file(&self, id: ValueFileId, force: bool, log: &dyn ValueLog) -> Result<bool> {
        let mut ticket = self.relocation.lock();
        if self
            .appender
            .lock()
            .file
            .as_ref()
            .is_some_and(|f| f.id == id)
        {
            return Ok(false);
        }
        let file = self.file(id)?;
        let bs = self.options.block_size;
        // Copy, under the shared lock.
        let (before, target) = {
            let _shared = file.invalidate.shared();
            let before: Vec<Extent> = file.extents.read().extents().collect();
            let total: u64 = before.iter().map(|e| e.len).sum();
            if before.is_empty() || (before.len() < 2 && !force) {
                return Ok(false);
            }
            let runs = self.allocator.lock().allocate(total, None);
            let [(target, len)] = *runs.as_slice() else {
                self.allocator.lock().free_now(runs)?;
                return Ok(false);
            };
            debug_assert_eq!(len, total);
            let mut at = target;
            for e in &before {
                let mut buf = vec![0u8; usize::try_from(e.len).unwrap_or(usize::MAX) * bs];
                self.blocks.read(e.physical, &mut buf)?;
                self.blocks.write(at, 0, &buf)?;
                at = at.add(e.len);
            }
            self.blocks.sync()?;
            (before, target)
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
            #[cfg(feature = "test-hooks")]
            if let Some(delay) = self.options.race_window {
                std::thread::sleep(delay);
            }
            let mut extents = file.extents.write();
            // Relocations are serialized and nothing else changes a file nobody appends to.
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
        log.log(edits)?;
        // The move is durable: the old blocks hold nothing anyone can reach. Give their space
        // back to the file system while they are still pending (nothing can be written into
        // them yet), then let the allocator reuse them.
        self.punch(&freed)?;
        self.allocator.lock().release(*ticket);
        self.relocations.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Punches holes over freed runs of at least [`PUNCH_MIN_BYTES`].
    ///
    /// # Locking
    /// REQUIRES: the runs are pending in the allocator (nobody may write them meanwhile).
    fn punch(&self, freed: &[(PhysicalBlock, u64)]) -> Result<()> {
        let min_blocks = PUNCH_MIN_BYTES.div_ceil(self.block_size());
        for &(first, n) in freed.iter().filter(|(_, n)| *n >= min_blocks) {
            if self.blocks.punch(first, n)? {
                self.punched_blocks.fetch_add(n, Ordering::Relaxed);
            } else {
                self.punch_unsupported.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Deletes the value files of `dead` (no pointer anywhere names them): drops their blocks
    /// from the pool, unmaps them and frees their blocks, which become reusable once the
    /// manifest record of the removal is durable. The file being appended to is never deleted:
    /// values written to it may not have reached the index yet.
    ///
    /// # Locking
    /// Takes the relocation job lock, then each file's invalidate lock exclusive (E15); logs
    /// after the exclusive section. The caller guarantees that no reader can still hold a
    /// pointer into the files (see `DbInner::delete_dead_value_files`).
    pub fn delete_files(&self, dead: &[ValueFileId], log: &dyn ValueLog) -> Result<u64> {
        let mut ticket = self.relocation.lock();
        let active = self.appender.lock().file.as_ref().map(|f| f.id);
        let mut deleted = 0;
        for &id in dead.iter().filter(|&&id| Some(id) != active) {
            let Some(file) = self.files.read().get(&id).cloned() else {
                continue;
            };
            *ticket += 1;
            let freed = {
                let exclusive = file.invalidate.exclusive();
                self.pool.invalidate_file(id, &exclusive.token(id));
                let mut extents = file.extents.write();
                let end = extents.end();
                let freed = extents.unmap(LogicalBlock(0), end.0);
                drop(extents);
                self.allocator.lock().free_later(freed.clone(), *ticket)?;
                freed
            };
            self.files.write().remove(&id);
            log.log(vec![ValueEdit::FileRemoved(id)])?;
            self.punch(&freed)?;
            self.allocator.lock().release(*ticket);
            self.deleted_files.fetch_add(1, Ordering::Relaxed);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Relocates every fragmented file that is not being appended to.
    pub fn defragment(&self, log: &dyn ValueLog) -> Result<u64> {
        let mut moved = 0;
        for id in self.file_ids() {
            if self.relocate(id, log)? {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Test-only: relocates every file not being appended to, contiguous or not.
    #[cfg(feature = "test-hooks")]
    pub fn relocate_all(&self, log: &dyn ValueLog) -> Result<u64> {
        let mut moved = 0;
        for id in self.file_ids() {
            if self.relocate_file(id, true, log)? {
                moved += 1;
            }
        }
        Ok(moved)
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
        let extents = file.extents.read();
        Some(
            extents
                .extents()
                .map(|e| ExtentInfo {
                    logical_block: e.logical.0,
                    physical_block: e.physical.0,
                    blocks: e.len,
                })
                .collect(),
        )
    }

    /// The ids of every value file, in order.
    pub fn file_ids(&self) -> Vec<ValueFileId> {
        self.files.read().keys().copied().collect()
    }

    /// The ids of the files not being appended to: the only ones that can be deleted.
    pub fn sealed_file_ids(&self) -> Vec<ValueFileId> {
        let active = self.appender.lock().file.as_ref().map(|f| f.id);
        self.file_ids()
            .into_iter()
            .filter(|&id| Some(id) != active)
            .collect()
    }

    /// The whole store as manifest edits (for a checkpoint's manifest).
    pub fn snapshot_edits(&self) -> Vec<ValueEdit> {
        let files = self.files.read();
        let mut edits = Vec::new();
        for (&id, f) in files.iter() {
            edits.push(ValueEdit::FileCreated(id));
            for e in f.extents.read().extents() {
                edits.push(ValueEdit::Mapped {
                    file: id,
                    logical: e.logical,
                    physical: e.physical,
                    len: e.len,
                });
            }
            edits.push(ValueEdit::Reaches {
                file: id,
                end: f.written(),
            });
        }
        edits
    }

    /// Checks DESIGN invariant 3: every mapped logical block maps to one physical block, no
    /// physical block is mapped twice or both mapped and free, mapped + free = all blocks.
    ///
    /// Also checks invariant 1, no stale fill: every block the pool holds equals the block on
    /// disk, compared under the file's invalidate lock held shared so no invalidation runs
    /// in between.
    pub fn verify(&self) -> Result<()> {
        let files: Vec<Arc<ValueFile>> = self.files.read().values().cloned().collect();
        let mut mapped = Vec::new();
        for f in &files {
            let extents = f.extents.read();
            extents.check()?;
            mapped.extend(extents.extents().map(|e| (e.physical, e.len)));
        }
        self.allocator.lock().check(&mapped)?;
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
        let (files, mapped_blocks) = {
            let files = self.files.read();
            let mapped = files
                .values()
                .map(|f| f.extents.read().mapped_blocks())
                .sum();
            (files.len(), mapped)
        };
        let (free_blocks, pending_blocks, store_blocks) = {
            let allocator = self.allocator.lock();
            (
                allocator.free_blocks(),
                allocator.pending_blocks(),
                allocator.end().0,
            )
        };
        ValueStats {
            files,
            mapped_blocks,
            free_blocks,
            pending_blocks,
            store_blocks,
            relocations: self.relocations.load(Ordering::Relaxed),
            deleted_files: self.deleted_files.load(Ordering::Relaxed),
            punched_blocks: self.punched_blocks.load(Ordering::Relaxed),
            punch_unsupported: self.punch_unsupported.load(Ordering::Relaxed),
            pool: self.pool.stats(),
        }
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
    pub fn checkpoint(&self, dest: &Path) -> Result<Vec<ValueEdit>> {
        let _still = self.relocation.lock();
        let edits = self.snapshot_edits();
        self.blocks.copy_to(dest)?;
        Ok(edits)
    }
}
