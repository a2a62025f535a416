//! [`Db`]: the database handle, opening and recovery, reads, and maintenance.
//!
//! The write path (group commit, memtable rotation, back-pressure) is in `write.rs`; flushes
//! and compactions in `index/flush.rs` and `index/compaction.rs`; their background threads in
//! `worker.rs`.
//!
//! State that readers need is published as one [`SuperVersion`] (active memtable, frozen
//! memtables, table version) in a [`Published`] cell: a read loads it without a lock, and an
//! installer replaces it whole.
//!
//! Lock order (`docs/locking.md`): commit queue, then the WAL, then the flush or compaction
//! job lock, then the version set, then the super version.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::Rank;
use crate::sync::ordered::{Condvar, Mutex};
use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;

use crate::batch::{self, BatchOp, OpRef, WriteBatch};
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::filename::{self, FileKind};
use crate::fs::{FileLock, FileSystem, ReadOnlyFs, RealFs};
use crate::index::edit::{NUM_LEVELS, VersionEdit};
use crate::index::flush;
use crate::index::memtable::Memtable;
use crate::index::table::{BlockCache, ReadMode, TableOptions};
use crate::index::version::{Version, VersionSet};
use crate::inspect::{ExtentInfo, Inventory, TableInfo};
use crate::iter::{Iter, owned_bounds, prefix_bounds};
use crate::key::{RangeTombstone, SeqNo, ValueKind};
use crate::options::{Durability, Options};
use crate::snapshot::Snapshot;
use crate::stats::{Counters, LevelStats, Stats};
use crate::types::Value;
use crate::value::block::ValueFileId;
use crate::value::dead::DeadRanges;
use crate::value::edit::ValueEdit;
use crate::value::pointer::ValuePointer;
use crate::value::state::ValueState;
use crate::value::{ValueLog, ValueOptions, ValueStore};
use crate::wal::{LogReader, LogWriter};
use crate::worker::Workers;
use crate::write::{CommitQueue, WalState};

/// The current [`SuperVersion`].
///
/// A reader loads it without a lock and without writing to memory that another thread reads
/// (`arc_swap` keeps a reader's claim in a slot of its own thread). A read-write lock and an
/// `Arc` clone would cost every get two atomic updates of cache lines that the writer, which
/// loads the super version on every write, keeps moving between cores. Installers (rotation,
/// flush, compaction) derive the next super version from the current one, so they take turns
/// under `install`.
pub(crate) struct Published {
    current: ArcSwap<SuperVersion>,
    install: Mutex<()>,
}

impl Published {
    fn new(sv: SuperVersion) -> Self {
        Self {
            current: ArcSwap::from_pointee(sv),
            install: Mutex::ranked(Rank::SuperVersion, ()),
        }
    }

    /// The current super version, held for a short read: loading takes no lock and makes no
    /// reference count move. A long-lived holder takes [`Self::load_full`].
    pub fn load(&self) -> Guard<Arc<SuperVersion>> {
        self.current.load()
    }

    /// The current super version, as an `Arc` of its own.
    pub fn load_full(&self) -> Arc<SuperVersion> {
        self.current.load_full()
    }

    /// Replaces the current super version with what `next` derives from it, and returns the
    /// one replaced: the caller drops it once it holds no lock, as it may be the last
    /// reference to a memtable or to the tables of an old version.
    ///
    /// # Locking
    /// Takes the install lock (rank `SuperVersion`) for the derivation and the store.
    pub fn install(&self, next: impl FnOnce(&SuperVersion) -> SuperVersion) -> Arc<SuperVersion> {
        let _turn = self.install.lock();
        let current = self.current.load_full();
        self.current.swap(Arc::new(next(&current)))
    }
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("current", &self.current.load())
            .finish_non_exhaustive()
    }
}

/// What a read sees: the memtables and the table version, pinned together.
#[derive(Debug)]
pub(crate) struct SuperVersion {
    pub mem: Arc<Memtable>,
    /// Frozen memtables, newest first.
    pub imm: Vec<Arc<Memtable>>,
    pub version: Arc<Version>,
    live: Live,
}

impl SuperVersion {
    /// The successor of `self` holding `mem`, `imm` and `version`.
    pub fn derive(
        &self,
        mem: Arc<Memtable>,
        imm: Vec<Arc<Memtable>>,
        version: Arc<Version>,
    ) -> Self {
        Self {
            mem,
            imm,
            version,
            live: Live::new(&self.live.0),
        }
    }

    /// How many super versions exist (the current one and those readers still pin).
    pub fn alive(&self) -> usize {
        self.live.0.load(Ordering::SeqCst)
    }
}

/// What one pass of value compaction did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ValuePass {
    /// Work is left: a reclamation waited for readers, evacuations wait for index
    /// compaction, or a relocation was done and another may follow.
    pub owed: bool,
    /// Bytes relocation copied.
    pub copied_bytes: u64,
}

/// Counts the super versions alive. Readers pin one for each read; a value file may be deleted
/// once none but the current one is left, since every reader then sees only what the current
/// one holds.
#[derive(Debug)]
struct Live(Arc<std::sync::atomic::AtomicUsize>);

impl Live {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(counter))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Signals between writers and the background jobs.
#[derive(Debug, Default)]
pub(crate) struct JobState {
    pub shutdown: bool,
    pub flush_requested: bool,
    pub compaction_requested: bool,
    pub values_requested: bool,
}

/// Everything shared by handles, snapshots, iterators and background threads.
#[derive(Debug)]
pub(crate) struct DbInner {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub options: Options,
    pub table_options: TableOptions,
    pub cache: Arc<BlockCache>,
    pub super_version: Published,
    pub values: Arc<ValueStore>,
    pub versions: Mutex<VersionSet>,
    pub commit: CommitQueue,
    pub wal: Mutex<WalState>,
    /// The highest sequence number whose write is visible to reads.
    pub visible_seq: AtomicU64,
    /// Live snapshots: sequence number -> how many.
    snapshots: Mutex<BTreeMap<SeqNo, usize>>,
    poisoned: AtomicBool,
    pub flush_lock: Mutex<()>,
    pub compaction_lock: Mutex<crate::index::compaction::CompactionState>,
    pub jobs: Mutex<JobState>,
    pub jobs_changed: Condvar,
    pub counters: Counters,
    _lock: Box<dyn FileLock>,
}

/// An open database. Cheap to clone; all clones share one database, which closes when the
/// last clone is dropped. `Db` is `Send + Sync`.
///
/// ```
/// # fn main() -> extentdb::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// let db = extentdb::Db::open(dir.path())?;
/// db.put("fruit:apple", "red")?;
/// db.put("fruit:banana", "yellow")?;
/// assert_eq!(db.get("fruit:apple")?.as_deref(), Some(&b"red"[..]));
/// let fruits: Vec<_> = db.prefix("fruit:").collect::<extentdb::Result<_>>()?;
/// assert_eq!(fruits.len(), 2);
/// db.delete_range("fruit:a".."fruit:b")?;
/// assert!(db.get("fruit:apple")?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<DbInner>,
    /// Stops and joins the background threads when the last handle is dropped.
    _workers: Arc<Workers>,
}

impl Db {
    /// The shared state, for unit tests of the modules that work on it.
    #[cfg(test)]
    pub(crate) fn inner(&self) -> &DbInner {
        &self.inner
    }

    /// Opens the database in `path` with default [`Options`], creating it if needed.
    ///
    /// # Errors
    /// `Locked` if another handle or process has it open (read-only handles included),
    /// `Corruption` if its files are damaged, `Io` for I/O errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Options::new().open(path)
    }

    /// Opens the database in `path` read-only, with default [`Options`] otherwise: see
    /// [`Options::read_only`].
    ///
    /// # Errors
    /// `Locked` if a writer has it open, `InvalidArgument` if `path` does not exist or holds no
    /// database, `Corruption` if its files are damaged, `Io` for I/O errors.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Options::new().read_only(true).open(path)
    }

    /// Opens or creates the database. What a read-only open leaves out is decided here and in
    /// [`recover_wals`]; underneath, [`ReadOnlyFs`] refuses any write that would still be
    /// attempted.
    pub(crate) fn open_with(dir: &Path, options: Options) -> Result<Self> {
        let mut fs: Arc<dyn FileSystem> = options.fs.clone().unwrap_or_else(|| Arc::new(RealFs));
        let create = options.create_if_missing && !options.read_only;
        if options.read_only {
            fs = Arc::new(ReadOnlyFs::new(fs));
        }
        if !fs.exists(dir)? {
            if !create {
                return Err(Error::invalid(format!("{} does not exist", dir.display())));
            }
            create_dir_durably(fs.as_ref(), dir)?;
        }
        let lock = fs.lock(&dir.join(filename::LOCK))?;
        let cache = Arc::new(BlockCache::new(options.table_cache_bytes));
        let (versions, values) = if !fs.exists(&dir.join(filename::CURRENT))? {
            if !create {
                return Err(Error::invalid(format!(
                    "{} holds no database",
                    dir.display()
                )));
            }
            let created = VersionSet::create(dir, Arc::clone(&fs), Arc::clone(&cache))?;
            (created, ValueState::default())
        } else if options.read_only {
            VersionSet::load(dir, Arc::clone(&fs), Arc::clone(&cache))?
        } else {
            VersionSet::recover(dir, Arc::clone(&fs), Arc::clone(&cache))?
        };
        let table_options = TableOptions {
            block_size_bytes: options.block_size_bytes,
            bloom_bits_per_key: options.bloom_bits_per_key,
            #[cfg(test)]
            format_version: options.test_table_format,
            ..TableOptions::default()
        };
        let recovered = Recovered {
            versions,
            values,
            cache,
            lock,
        };
        let (inner, last_seq) = recover_wals(dir, fs, options, table_options, recovered)?;
        inner.visible_seq.store(last_seq.0, Ordering::Release);
        if !inner.options.read_only {
            inner.delete_obsolete_files()?;
        }
        let inner = Arc::new(inner);
        let workers = Arc::new(Workers::start(&inner));
        Ok(Self {
            inner,
            _workers: workers,
        })
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// `InvalidArgument` if a size limit is broken, `ReadOnly` if the database was opened
    /// read-only, `Poisoned` after an earlier write failure, `Io` if the write-ahead log
    /// cannot be written.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let mut b = WriteBatch::with_capacity_for_put(key.len(), value.len());
        b.put(key, value);
        self.write(b)
    }

    /// Deletes `key` (no error if it is absent).
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }

    /// Deletes every key in `range`, in time independent of how many keys it holds.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn delete_range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete_range(range);
        self.write(b)
    }

    /// Applies `batch` atomically with the default durability ([`Options::durability`]).
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.inner.write(batch, self.inner.options.durability)
    }

    /// Applies `batch` atomically with the given durability.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn write_with(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        self.inner.write(batch, durability)
    }

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// `Corruption` or `Io` if a table cannot be read.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        let (sv, seq) = self.inner.pin_briefly();
        self.inner
            .get_in(&sv, key.as_ref(), seq, ReadMode::Blocking)
    }

    /// Like [`Db::get`], but never waits for a lock and never starts I/O: if the answer is not
    /// in memory it returns `Err(Error::WouldBlock)`.
    ///
    /// Meant for async runtimes: call it on the executor thread, and on `WouldBlock` move the
    /// blocking `get` to a blocking pool (`spawn_blocking`), so executor threads never stall
    /// on disk reads or on writers.
    ///
    /// # Errors
    /// `WouldBlock`, or `Corruption` if a cached block is damaged.
    pub fn try_get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        let (sv, seq) = self.inner.pin_briefly();
        self.inner
            .get_in(&sv, key.as_ref(), seq, ReadMode::CacheOnly)
    }

    /// The pairs in `range`, in key order, from either end, as of now.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let (lower, upper) = owned_bounds(&range);
        let (sv, seq) = self.inner.pin();
        Iter::new(Arc::clone(&self.inner.values), sv, seq, lower, upper)
    }

    /// A forward cursor over the pairs in `range`, as of now, lending each pair in place: the
    /// fastest way to scan, and one that can seek.
    pub fn cursor<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Cursor {
        let (lower, upper) = owned_bounds(&range);
        let (sv, seq) = self.inner.pin();
        Cursor::new(Arc::clone(&self.inner.values), sv, seq, lower, upper)
    }

    /// The pairs whose keys start with `prefix`.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        let (sv, seq) = self.inner.pin();
        Iter::new(Arc::clone(&self.inner.values), sv, seq, lower, upper)
    }

    /// A consistent view of the database as of now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(Arc::clone(&self.inner))
    }

    /// Writes the memtable to a table and waits until every frozen memtable is flushed.
    ///
    /// # Errors
    /// `Io`, `Poisoned`, or `ReadOnly` if the database was opened read-only.
    pub fn flush(&self) -> Result<()> {
        self.inner.freeze_memtable()?;
        self.inner.flush_frozen()
    }

    /// Makes every acknowledged write durable (`fdatasync` of the write-ahead log).
    ///
    /// # Errors
    /// `Io` (the database is then poisoned), `Poisoned`, or `ReadOnly`.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync_wal()
    }

    /// Flushes, then compacts every level down into the last non-empty one, dropping
    /// overwritten and deleted versions no snapshot needs.
    ///
    /// # Errors
    /// `Io`, `Corruption`, `Poisoned` or `ReadOnly`.
    ///
    /// Then compacts the value files (the one being appended to is sealed first, and the next
    /// value starts a new one): frees every block whose bytes are all dead, deletes
    /// value files with nothing live, moves the live values out of files that are mostly dead
    /// (which rewrites the index once more), and relocates fragmented files. Dead blocks that
    /// a reader of an older version might still read (an iterator opened before) are left to
    /// the background value thread, which frees them once that reader is gone.
    pub fn compact(&self) -> Result<()> {
        // The file being appended to is sealed, so that it too can be cleaned.
        self.inner.values.seal_active();
        self.flush()?;
        self.inner.compact_all()?;
        self.inner.collect_values(true).map(|_| ())
    }

    /// Checks everything: every table (every block checksum, the key order inside each table,
    /// that each agrees with its index and bloom filter, that the tables of each level below
    /// 0 do not overlap); the value store (DESIGN invariants 1 and 3: extent maps, mapped +
    /// free + pending = all blocks, no stale pooled block; the dead-space accounting against
    /// every pointer); and every live value, read and checked against its pointer's CRC.
    ///
    /// # Errors
    /// `Corruption` naming the damaged file, or `Io`.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.inner.verify(&mut |_| {})
    }

    /// [`Db::verify`], calling `progress` as it goes: after each table, and every few
    /// megabytes of live values.
    ///
    /// # Errors
    /// As [`Db::verify`].
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(VerifyProgress),
    ) -> Result<VerifyReport> {
        self.inner.verify(&mut progress)
    }

    /// Counters and sizes.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Writes a consistent copy of the database into the new directory `dir` (tables are
    /// hard-linked where possible). The copy holds every write acknowledged before the call.
    ///
    /// # Errors
    /// `InvalidArgument` if `dir` exists, `Io`, `Poisoned`, or `ReadOnly` (a read-only
    /// database cannot flush the writes its memtable holds).
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.flush()?;
        self.inner.checkpoint(dir.as_ref())
    }

    /// The directory of the database.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The tables, value files and segments the database is made of.
    #[must_use]
    pub fn inventory(&self) -> Inventory {
        let version = Arc::clone(&self.inner.super_version().version);
        let tables = version
            .files()
            .map(|(level, f)| TableInfo {
                level,
                number: f.number(),
                size_bytes: f.meta.size_bytes,
                entries: f.meta.entries,
                format_version: f.table.format_version() as u32,
            })
            .collect();
        let (value_files, segments) = self.inner.values.inventory();
        Inventory {
            tables,
            value_files,
            segments,
            block_size_bytes: self.inner.options.block_size_bytes as u64,
        }
    }

    /// The extent map of value file `id` (as [`Db::inventory`] lists them), or `None` if there
    /// is no such file.
    #[must_use]
    pub fn value_file_extents(&self, id: u64) -> Option<Vec<ExtentInfo>> {
        self.inner.values.extents_of(ValueFileId(id))
    }

    /// Test-only (feature `test-hooks`): relocates every value file not being appended to,
    /// freeing its old blocks for reuse. Returns how many files moved.
    ///
    /// # Errors
    /// As [`Db::compact`].
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn test_relocate_value_files(&self) -> Result<u64> {
        self.inner.check_writable()?;
        let moved = self.inner.values.relocate_all(self.inner.as_ref());
        self.inner.poison_on_error(moved)
    }
}

/// What [`Db::verify_with_progress`] has got through: `done_bytes` of `total_bytes` in
/// `phase`. Totals are known at the start of each phase (for values, the live bytes counted by
/// the dead-space accounting, so the last report may differ slightly from `total_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyProgress {
    /// What is being read.
    pub phase: VerifyPhase,
    /// Bytes read so far in this phase.
    pub done_bytes: u64,
    /// Bytes this phase will read.
    pub total_bytes: u64,
}

/// The phases of a verification, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyPhase {
    /// Reading every table.
    Tables,
    /// Reading every live value.
    Values,
}

/// How many value bytes a verification reads between two progress reports.
const VERIFY_PROGRESS_BYTES: u64 = 4 << 20;

/// What [`Db::verify`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Tables read.
    pub tables: usize,
    /// Versions (entries) read.
    pub entries: u64,
    /// Bytes of tables read.
    pub bytes: u64,
    /// Live values read and checked.
    pub live_values: u64,
    /// Their bytes.
    pub live_value_bytes: u64,
    /// Bytes of value files that are neither named by a pointer nor counted dead: values a
    /// crash left unreferenced in the middle of a file. They are never reclaimed; 0 unless
    /// such a crash happened. `None` if the index kept changing while it was counted.
    pub value_unaccounted_bytes: Option<u64>,
}

/// What the manifest gave, and the directory lock, on the way to a running database.
struct Recovered {
    versions: VersionSet,
    values: ValueState,
    cache: Arc<BlockCache>,
    lock: Box<dyn FileLock>,
}

/// Blocks a value file maps at a time for appends: one manifest record per reservation.
const RESERVE_BYTES: u64 = 4 << 20;

/// What the write-ahead logs newer than the manifest's log number hold.
struct Replayed {
    /// Every write of the logs.
    mem: Memtable,
    /// The last sequence number written (the manifest's if the logs hold none).
    last: SeqNo,
    /// How far the replayed pointers reach into each value file.
    reaches: BTreeMap<ValueFileId, u64>,
    /// The writes of the newest log that point at values: each batch's first sequence number
    /// and its pointers, in log order.
    newest: Vec<(SeqNo, Vec<ValuePointer>)>,
}

/// Replays the write-ahead logs newer than the manifest's log number into a memtable,
/// writing nothing.
///
/// With `stop`, the newest log ends just before the batch that starts at sequence number
/// `stop` (see [`first_lost_value`]).
fn replay_wals(
    dir: &Path,
    fs: &dyn FileSystem,
    versions: &VersionSet,
    stop: Option<SeqNo>,
) -> Result<Replayed> {
    let mut wals: Vec<u64> = fs
        .list_dir(dir)?
        .iter()
        .filter_map(|name| match filename::parse(name) {
            Some(FileKind::Wal(n)) if n >= versions.log_number => Some(n),
            _ => None,
        })
        .collect();
    wals.sort_unstable();
    // The log the manifest names as the oldest live one is created before any newer log and
    // deleted only after an edit names a newer one. A newer log without it means the manifest
    // lost edits that were synced (a file cut short or rolled back): replaying would silently
    // drop the tables those edits added, whose logs are gone.
    if let Some(&oldest) = wals.first()
        && oldest != versions.log_number
    {
        return Err(Error::corruption(
            dir.join(filename::wal(versions.log_number)),
            0,
            format!(
                "the manifest names this log as the oldest live one, but it is missing and \
                 newer log {oldest} exists: the manifest lost synced edits"
            ),
        ));
    }
    let logs = wals
        .iter()
        .map(|&number| {
            let path = dir.join(filename::wal(number));
            fs.open(&path).map(|file| (path, file))
        })
        .collect::<Result<Vec<_>>>()?;
    // Replay holds every log not yet flushed: a memtable sized for all of them, which their
    // records take about as many bytes in as on disk.
    let log_bytes = logs.iter().map(|(_, file)| file.len()).sum::<u64>();
    let mem = Memtable::new(0, usize::try_from(log_bytes).unwrap_or(usize::MAX));
    let mut last = versions.flushed_seq;
    let mut reaches: BTreeMap<ValueFileId, u64> = BTreeMap::new();
    let mut newest = Vec::new();
    let count = logs.len();
    for (i, (path, file)) in logs.into_iter().enumerate() {
        let is_newest = i + 1 == count;
        let mut reader = LogReader::new(file);
        while let Some((offset, payload)) = reader.next_record()? {
            let decoded = batch::decode(Bytes::from(payload), &path, offset)?;
            if is_newest && stop == Some(decoded.first) {
                break;
            }
            if decoded.first != last.next() {
                return Err(Error::corruption(
                    &path,
                    offset,
                    format!(
                        "write batch starts at sequence {}, expected {}",
                        decoded.first,
                        last.next()
                    ),
                ));
            }
            last = decoded.last();
            let mut pointers = Vec::new();
            for op in &decoded.ops {
                if let BatchOp::PutPointer { pointer, .. } = op {
                    let p = ValuePointer::decode(pointer, &path, offset)?;
                    let end = reaches.entry(p.file).or_default();
                    *end = (*end).max(p.end());
                    pointers.push(p);
                }
            }
            if is_newest && !pointers.is_empty() {
                newest.push((decoded.first, pointers));
            }
            apply(&mem, &decoded.ops);
        }
        // Logs are synced before the next one is started: only the newest may be torn.
        if reader.torn_tail_bytes() > 0 && i + 1 < wals.len() {
            return Err(Error::corruption(
                &path,
                reader.valid_len(),
                "damaged record at the end of a log that is not the newest",
            ));
        }
    }
    Ok(Replayed {
        mem,
        last,
        reaches,
        newest,
    })
}

/// The first batch of the newest log (by its first sequence number) with a value that does
/// not read back, if any.
///
/// A log is synced only after the values it points at (`write.rs`, `sync_log`), so such a
/// batch was never synced: a power loss kept its record but not its value bytes (two files,
/// written back in any order). It and every later batch of the log are then a torn tail, to
/// be dropped like a torn record. Older logs were synced before the next was started; a value
/// of theirs that fails is damage, reported when read.
fn first_lost_value(
    values: &ValueStore,
    newest: &[(SeqNo, Vec<ValuePointer>)],
) -> Result<Option<SeqNo>> {
    for (first, pointers) in newest {
        for p in pointers {
            if !values.reads_back(p)? {
                return Ok(Some(*first));
            }
        }
    }
    Ok(None)
}

/// How the value store is laid out, from the options.
fn value_options(options: &Options) -> ValueOptions {
    let blocks_per_segment = options.value_segment_bytes / options.block_size_bytes as u64;
    ValueOptions {
        block_size: options.block_size_bytes,
        blocks_per_segment,
        reserve_blocks: (RESERVE_BYTES / options.block_size_bytes as u64)
            .clamp(1, blocks_per_segment / 4),
        file_bytes: options.value_file_bytes,
        writeback_bytes: options.writeback_bytes,
        zero_ahead_bytes: options.zero_ahead_bytes,
        cache_bytes: options.cache_bytes,
        read_path: options.read_path,
        read_only: options.read_only,
        #[cfg(feature = "test-hooks")]
        race_window: options.test_race_window,
        #[cfg(feature = "test-hooks")]
        on_release: options.test_on_release.clone(),
    }
}

/// Replays the write-ahead logs newer than the manifest's log number and opens the value
/// store, trimming every value file to what the pointers reach. Then, unless read-only,
/// flushes the replayed writes to a table, logs the trimming and starts a new log; read-only,
/// the replayed writes stay in the memtable, the trimming in memory, and there is no log.
/// Returns the database and the last recovered sequence number.
fn recover_wals(
    dir: &Path,
    fs: Arc<dyn FileSystem>,
    options: Options,
    table_options: TableOptions,
    recovered: Recovered,
) -> Result<(DbInner, SeqNo)> {
    let Recovered {
        mut versions,
        values,
        cache,
        lock,
    } = recovered;
    let mut replayed = replay_wals(dir, fs.as_ref(), &versions, None)?;
    let open_values = |state: ValueState, reaches: &BTreeMap<ValueFileId, u64>| {
        ValueStore::open(
            dir,
            Arc::clone(&fs),
            value_options(&options),
            state,
            reaches,
        )
    };
    // Kept for a second opening only if the newest log points at values to check.
    let unchecked = (!replayed.newest.is_empty()).then(|| values.clone());
    let (mut values_store, mut trimmed) = open_values(values, &replayed.reaches)?;
    if let Some(state) = unchecked
        && let Some(stop) = first_lost_value(&values_store, &replayed.newest)?
    {
        drop(values_store);
        replayed = replay_wals(dir, fs.as_ref(), &versions, Some(stop))?;
        (values_store, trimmed) = open_values(state, &replayed.reaches)?;
    }
    let (
        values,
        Replayed {
            mem, last, reaches, ..
        },
    ) = (values_store, replayed);
    let (mem, writer, wal_number) = if options.read_only {
        (mem, None, versions.log_number)
    } else {
        // The replayed values may never have been synced (the logs' writer may have closed or
        // died with them written but not synced): make them durable before the table that
        // points at them is.
        values.sync_files(reaches.keys().copied())?;
        // A log started after the manifest's last edit has a number the manifest never
        // recorded as used. Handing it out again would name the new log after a file that
        // exists: its creation would replace the old log's records, and if recovery failed
        // between its edit and that creation, the next open would replay the old log as the
        // new one.
        for name in fs.list_dir(dir)? {
            if let Some(FileKind::Wal(n) | FileKind::Table(n) | FileKind::Manifest(n)) =
                filename::parse(&name)
            {
                versions.mark_file_number_used(n);
            }
        }
        let wal_number =
            persist_recovery(dir, &fs, &table_options, &mut versions, mem, last, trimmed)?;
        let writer = LogWriter::new(fs.create(&dir.join(filename::wal(wal_number)))?)
            .with_writeback_bytes(options.writeback_bytes);
        fs.sync_dir(dir)?;
        (
            Memtable::new(wal_number, options.memtable_bytes),
            Some(writer),
            wal_number,
        )
    };
    let sv = SuperVersion {
        mem: Arc::new(mem),
        imm: Vec::new(),
        version: versions.current(),
        live: Live::new(&Arc::default()),
    };
    let inner = DbInner {
        dir: dir.to_path_buf(),
        fs,
        options,
        table_options,
        cache,
        super_version: Published::new(sv),
        values: Arc::new(values),
        versions: Mutex::ranked(Rank::Versions, versions),
        commit: CommitQueue::default(),
        wal: Mutex::ranked(
            Rank::Wal,
            WalState {
                writer,
                number: wal_number,
                last_seq: last,
            },
        ),
        visible_seq: AtomicU64::new(last.0),
        snapshots: Mutex::ranked(Rank::Leaf, BTreeMap::new()),
        poisoned: AtomicBool::new(false),
        flush_lock: Mutex::ranked(Rank::Job, ()),
        compaction_lock: Mutex::ranked(Rank::Job, Default::default()),
        jobs: Mutex::ranked(Rank::Leaf, JobState::default()),
        jobs_changed: Condvar::new(),
        counters: Counters::default(),
        _lock: lock,
    };
    Ok((inner, last))
}

/// Creates `dir` and its missing parents, and syncs the parent of each directory it created:
/// until then a power loss may take the new directory away, with every file synced in it.
fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let mut created = Vec::new();
    let mut missing = Some(dir);
    while let Some(d) = missing.filter(|d| !d.as_os_str().is_empty()) {
        if fs.exists(d)? {
            break;
        }
        created.push(d);
        missing = d.parent();
    }
    fs.create_dir_all(dir)?;
    for d in created.iter().rev() {
        let parent = d.parent().filter(|p| !p.as_os_str().is_empty());
        fs.sync_dir(parent.unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Makes recovery durable: writes the replayed writes `mem` to a table and logs it with the
/// value store's trimming edits `trimmed`, the last sequence number and a new log number,
/// which it returns (the caller creates that log).
fn persist_recovery(
    dir: &Path,
    fs: &Arc<dyn FileSystem>,
    table_options: &TableOptions,
    versions: &mut VersionSet,
    mem: Memtable,
    last: SeqNo,
    trimmed: Vec<ValueEdit>,
) -> Result<u64> {
    let wal_number = versions.new_file_number();
    let mut edit = VersionEdit {
        log_number: Some(wal_number),
        last_seq: Some(last),
        values: trimmed,
        ..VersionEdit::default()
    };
    let mut opened = Vec::new();
    if !mem.is_empty() {
        let number = versions.new_file_number();
        let (meta, reaches) = flush::write_table(fs, dir, table_options, number, &mem)?;
        fs.sync_dir(dir)?;
        opened.push(versions.open_table(meta.clone())?);
        edit.added.push((0, meta));
        edit.values.extend(reaches);
    }
    versions.log_and_apply(edit, opened)?;
    Ok(wal_number)
}

impl ValueLog for DbInner {
    fn new_file_number(&self) -> u64 {
        self.versions.lock().new_file_number()
    }

    fn log(&self, edits: Vec<ValueEdit>) -> Result<()> {
        let r = self.versions.lock().log_values(edits);
        self.poison_on_error(r)
    }
}

/// Inserts a decoded batch into a memtable.
pub(crate) fn apply(mem: &Memtable, ops: &[BatchOp]) {
    for op in ops {
        let (seq, op) = op.as_op();
        apply_op(mem, seq, op);
    }
}

/// Adds one operation of a batch, at `seq`, to `mem`.
pub(crate) fn apply_op(mem: &Memtable, seq: SeqNo, op: OpRef<'_>) {
    match op {
        OpRef::Put { key, value } => mem.insert(key, seq, ValueKind::Put, value),
        OpRef::PutPointer {
            key,
            pointer,
            value_len,
        } => mem.insert_pointer(key, seq, pointer, value_len),
        OpRef::Delete { key } => mem.insert(key, seq, ValueKind::Delete, &[]),
        OpRef::DeleteRange { start, end } => mem.insert_range_tombstone(RangeTombstone {
            start: Bytes::copy_from_slice(start),
            end: end.map(Bytes::copy_from_slice),
            seq,
        }),
    }
}

impl DbInner {
    pub fn visible(&self) -> SeqNo {
        SeqNo(self.visible_seq.load(Ordering::Acquire))
    }

    /// The current super version.
    pub fn super_version(&self) -> Arc<SuperVersion> {
        self.super_version.load_full()
    }

    /// What an unregistered read (a `get`, an iterator) reads: a super version and, taken
    /// *after* it, the sequence number to read at.
    ///
    /// The order matters. A compaction drops versions shadowed by a newer one at or below the
    /// visible sequence number of its start. Had the sequence number been taken first, a
    /// compaction could start, finish and publish in between, and the read would pin tables
    /// without the versions its older sequence number needs. Taken after, the sequence number
    /// is at least that of any compaction whose result was pinned. A write at or below it that
    /// the pinned memtables lack went into a newer memtable after the pin, and so did every
    /// write after it (memtables fill in sequence order): the read sees exactly the state at
    /// the pin, a prefix of the history.
    pub fn pin(&self) -> (Arc<SuperVersion>, SeqNo) {
        let (sv, seq) = self.pin_briefly();
        (Guard::into_inner(sv), seq)
    }

    /// As [`Self::pin`], for a read that ends before the caller's next one (a get): see
    /// [`Published::load`].
    pub fn pin_briefly(&self) -> (Guard<Arc<SuperVersion>>, SeqNo) {
        let sv = self.super_version.load();
        (sv, self.visible())
    }

    pub fn get_at(&self, key: &[u8], seq: SeqNo) -> Result<Option<Value>> {
        let sv = self.super_version();
        self.get_in(&sv, key, seq, ReadMode::Blocking)
    }

    /// The newest live value of `key` at `snapshot` in `sv`.
    pub fn get_in(
        &self,
        sv: &SuperVersion,
        key: &[u8],
        snapshot: SeqNo,
        mode: ReadMode,
    ) -> Result<Option<Value>> {
        let mut tombstone: Option<SeqNo> = None;
        let mut found = None;
        // Memtables are newer than tables, and newer memtables than older ones: the first
        // version found is the newest.
        for mem in std::iter::once(&sv.mem).chain(&sv.imm) {
            tombstone = tombstone.max(mem.max_covering_tombstone(key, snapshot, mode)?);
            if found.is_none() {
                found = mem.get(key, snapshot);
            }
        }
        tombstone = tombstone.max(sv.version.tombstones.max_covering(key, snapshot));
        if found.is_none() {
            found = sv.version.get(key, snapshot, mode)?;
        }
        let Some(found) = found.filter(|e| tombstone.is_none_or(|t| t < e.seq)) else {
            return Ok(None);
        };
        match found.kind {
            ValueKind::Put => Ok(Some(Value::from_bytes(found.value))),
            ValueKind::Pointer => {
                let pointer = ValuePointer::decode(&found.value, &self.dir, 0)?;
                Ok(Some(Value::from_bytes(self.values.read(&pointer, mode)?)))
            }
            ValueKind::Delete => Ok(None),
        }
    }

    pub fn register_snapshot(&self) -> SeqNo {
        let mut snapshots = self.snapshots.lock();
        let seq = self.visible();
        *snapshots.entry(seq).or_default() += 1;
        seq
    }

    pub fn release_snapshot(&self, seq: SeqNo) {
        let mut snapshots = self.snapshots.lock();
        if let Some(n) = snapshots.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                snapshots.remove(&seq);
            }
        }
    }

    /// The oldest sequence number any reader may still read at.
    pub fn oldest_snapshot(&self) -> SeqNo {
        let snapshots = self.snapshots.lock();
        snapshots
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.visible())
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Marks the database unwritable after a failure that left files in an unknown state.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        self.jobs_changed.notify_all();
    }

    /// Runs `f`; an error poisons the database.
    pub fn poison_on_error<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.poison();
        }
        r
    }

    /// The gate of every path that writes to the directory (writes, flushes, syncs,
    /// compactions, value reclamation): `ReadOnly` for a read-only database, `Poisoned` after
    /// an earlier failure.
    pub fn check_writable(&self) -> Result<()> {
        if self.options.read_only {
            Err(Error::ReadOnly)
        } else if self.is_poisoned() {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Wakes the value thread: a compaction made values dead.
    pub fn request_values(&self) {
        self.jobs.lock().values_requested = true;
        self.jobs_changed.notify_all();
    }

    /// Wakes the flush thread, the compaction thread, or both.
    pub fn request_jobs(&self, flush: bool, compaction: bool) {
        let mut jobs = self.jobs.lock();
        jobs.flush_requested |= flush;
        jobs.compaction_requested |= compaction;
        self.jobs_changed.notify_all();
    }

    pub fn sync_wal(&self) -> Result<()> {
        self.check_writable()?;
        let mut wal = self.wal.lock();
        let r = self.sync_log(&mut wal);
        Counters::add(&self.counters.wal_syncs, 1);
        self.poison_on_error(r)
    }

    /// Deletes files that no live state refers to: logs below the log number, tables not in
    /// the current version, old manifests and temporary files.
    ///
    /// Only at open, before any reader exists: afterwards a table is deleted once the last
    /// reference to its reader goes (`index/obsolete.rs`), and logs by
    /// [`Self::delete_obsolete_wals`].
    fn delete_obsolete_files(&self) -> Result<()> {
        let versions = self.versions.lock();
        let live: std::collections::HashSet<u64> = versions
            .current()
            .files()
            .map(|(_, f)| f.number())
            .collect();
        for name in self.fs.list_dir(&self.dir)? {
            let obsolete = match filename::parse(&name) {
                Some(FileKind::Wal(n)) => n < versions.log_number,
                Some(FileKind::Table(n)) => !live.contains(&n),
                Some(FileKind::Manifest(n)) => n != versions.manifest_number(),
                Some(FileKind::Temp) => true,
                _ => false,
            };
            if obsolete {
                self.fs.remove_file(&self.dir.join(&name))?;
            }
        }
        Ok(())
    }

    /// One pass of value compaction (docs/design.md, "Value compaction"):
    /// 1. reclaim: free the blocks whose bytes are all dead and delete sealed files with
    ///    nothing live, once no reader holds a super version older than the current one
    ///    (DESIGN invariant 2c: such a reader may still hold a pointer compaction dropped);
    /// 2. mark mostly-dead files for evacuation; with `full`, rewrite the index now so their
    ///    live values move, then reclaim the emptied files;
    /// 3. relocate fragmented files: all of them with `full`, else one (the caller paces).
    ///
    /// Invariant 2b needs no log sync here: the records that made values dead are in tables
    /// and in the manifest edit that dropped the pointers, both durable before any value is
    /// counted dead.
    pub fn collect_values(&self, full: bool) -> Result<ValuePass> {
        let r = self.collect_values_once(full);
        self.poison_on_error(r)
    }

    fn collect_values_once(&self, full: bool) -> Result<ValuePass> {
        self.check_writable()?;
        let mut pass = ValuePass::default();
        let reclaimed = self.reclaim_values()?;
        pass.owed |= !reclaimed;
        // Without `full`, index compactions move the values of marked files as they meet
        // them, and wake this thread when they have.
        if self.values.plan_evacuations() > 0 && full {
            self.compact_all()?;
            pass.owed |= !self.reclaim_values()?;
        }
        pass.copied_bytes = self
            .values
            .defragment(self, if full { usize::MAX } else { 1 })?;
        pass.owed |= pass.copied_bytes > 0;
        if full {
            // Free blocks left unpunched for reuse go back to the file system too.
            self.values.trim_unpunched()?;
        }
        Ok(pass)
    }

    /// Frees dead blocks and files if no reader pins an older super version; returns false if
    /// one did and the work was left for later.
    fn reclaim_values(&self) -> Result<bool> {
        self.values
            .reclaim(self, &|| self.super_version().alive() == 1)
    }

    /// Checks that no pointer of the index names a byte counted dead or an unmapped block,
    /// and returns the bytes neither live nor dead. Retried if a compaction recorded values
    /// dead meanwhile; `None` if it kept doing so.
    fn check_value_accounting(&self) -> Result<Option<u64>> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            let epoch = self.values.accounting_epoch();
            let sv = self.super_version();
            let live = self.live_value_ranges(&sv, true)?;
            let unchanged = || Arc::ptr_eq(&self.super_version().version, &sv.version);
            if let Some(unaccounted) = self.values.check_accounting(&live, epoch, &unchanged)? {
                return Ok(Some(unaccounted));
            }
        }
        Ok(None)
    }

    /// The byte ranges of value files that the pointers of `sv` name, every version included
    /// (shadowed ones too: a snapshot may read them); with `memtables`, the memtables' too.
    fn live_value_ranges(
        &self,
        sv: &SuperVersion,
        memtables: bool,
    ) -> Result<BTreeMap<ValueFileId, DeadRanges>> {
        let mut live: BTreeMap<ValueFileId, DeadRanges> = BTreeMap::new();
        let mut note = |entry: &crate::key::Entry, path: &Path| -> Result<()> {
            if entry.key.kind == ValueKind::Pointer {
                let p = ValuePointer::decode(&entry.value, path, 0)?;
                live.entry(p.file).or_default().insert(p.offset, p.end());
            }
            Ok(())
        };
        if memtables {
            for mem in std::iter::once(&sv.mem).chain(&sv.imm) {
                for entry in mem.entries() {
                    note(&entry, &self.dir)?;
                }
            }
        }
        for (_, file) in sv.version.files() {
            for entry in file.table.iter_past_cache() {
                note(&entry?, file.table.path())?;
            }
        }
        Ok(live)
    }

    /// Deletes the logs whose writes are all in tables.
    pub fn delete_obsolete_wals(&self, log_number: u64) -> Result<()> {
        for name in self.fs.list_dir(&self.dir)? {
            if matches!(filename::parse(&name), Some(FileKind::Wal(n)) if n < log_number) {
                self.fs.remove_file(&self.dir.join(&name))?;
            }
        }
        Ok(())
    }

    pub fn verify(&self, progress: &mut dyn FnMut(VerifyProgress)) -> Result<VerifyReport> {
        let version = Arc::clone(&self.super_version().version);
        let mut report = VerifyReport::default();
        let table_bytes = version.files().map(|(_, f)| f.meta.size_bytes).sum();
        for (_, file) in version.files() {
            report.entries += file.table.verify()?;
            report.tables += 1;
            report.bytes += file.meta.size_bytes;
            progress(VerifyProgress {
                phase: VerifyPhase::Tables,
                done_bytes: report.bytes,
                total_bytes: table_bytes,
            });
        }
        for (level, files) in version.levels.iter().enumerate().skip(1) {
            for pair in files.windows(2) {
                if let [a, b] = pair
                    && !a.ends_before(&b.meta.smallest)
                {
                    {
                        let what = format!(
                            "tables {} and {} of level {level} overlap",
                            a.number(),
                            b.number()
                        );
                        return Err(Error::corruption(b.table.path(), 0, what));
                    }
                }
            }
        }
        self.values.verify()?;
        report.value_unaccounted_bytes = self.check_value_accounting()?;
        // Every live value, read and checked against its pointer's CRC (and every table entry
        // the scan passes through decoded).
        let (sv, seq) = self.pin();
        let all = Iter::new(
            Arc::clone(&self.values),
            sv,
            seq,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
        );
        let value_bytes = {
            let v = self.values.stats();
            v.written_bytes.saturating_sub(v.dead_bytes)
        };
        let mut reported = 0;
        for pair in all {
            let (_, value) = pair?;
            report.live_values += 1;
            report.live_value_bytes += value.len() as u64;
            if report.live_value_bytes - reported >= VERIFY_PROGRESS_BYTES {
                reported = report.live_value_bytes;
                progress(VerifyProgress {
                    phase: VerifyPhase::Values,
                    done_bytes: reported,
                    total_bytes: value_bytes.max(reported),
                });
            }
        }
        progress(VerifyProgress {
            phase: VerifyPhase::Values,
            done_bytes: report.live_value_bytes,
            total_bytes: report.live_value_bytes,
        });
        Ok(report)
    }

    pub fn stats(&self) -> Stats {
        let sv = self.super_version();
        let v = self.values.stats();
        let c = &self.counters;
        let levels: Vec<LevelStats> = (0..NUM_LEVELS)
            .map(|l| LevelStats {
                tables: sv.version.level(l).len(),
                size_bytes: sv.version.level_bytes(l),
            })
            .collect();
        Stats {
            last_sequence: self.visible().0,
            memtable_bytes: sv.mem.approximate_bytes() as u64,
            immutable_memtables: sv.imm.len(),
            table_bytes: levels.iter().map(|l| l.size_bytes).sum(),
            levels,
            snapshots: self.snapshots.lock().values().sum(),
            writes: Counters::get(&c.writes),
            write_groups: Counters::get(&c.write_groups),
            wal_bytes: Counters::get(&c.wal_bytes),
            wal_syncs: Counters::get(&c.wal_syncs),
            write_stalls: Counters::get(&c.write_stalls),
            flushes: Counters::get(&c.flushes),
            flush_bytes: Counters::get(&c.flush_bytes),
            compactions: Counters::get(&c.compactions),
            trivial_moves: Counters::get(&c.trivial_moves),
            compaction_read_bytes: Counters::get(&c.compaction_read_bytes),
            compaction_write_bytes: Counters::get(&c.compaction_write_bytes),
            block_cache_hits: self.cache.hits(),
            block_cache_misses: self.cache.misses(),
            value_files: v.files,
            value_mapped_blocks: v.mapped_blocks,
            value_free_blocks: v.free_blocks,
            value_pending_blocks: v.pending_blocks,
            value_store_blocks: v.store_blocks,
            value_relocations: v.relocations,
            value_files_deleted: v.deleted_files,
            value_segments_removed: v.removed_segments,
            value_written_bytes: v.written_bytes,
            value_live_bytes: v.written_bytes.saturating_sub(v.dead_bytes),
            value_dead_bytes: v.dead_bytes,
            value_disk_bytes: v.disk_bytes,
            value_gc_written_bytes: v.gc_written_bytes,
            value_reclaimed_bytes: v.reclaimed_bytes,
            value_evacuations: v.evacuated_values,
            value_punched_blocks: v.punched_blocks,
            value_unpunched_blocks: v.unpunched_blocks,
            value_punch_unsupported: v.punch_unsupported,
            pool_hits: v.pool.hits,
            pool_misses: v.pool.misses,
            pool_fills: v.pool.fills,
            pool_fill_bytes: v.pool.fill_bytes,
            pool_evictions: v.pool.evictions,
            pool_invalidations: v.pool.invalidations,
            pool_waits: v.pool.waits,
            pool_retries: v.pool.retries,
            pool_resident_bytes: v.pool.resident_bytes,
            pool_free_bytes: v.pool.free_bytes,
            pool_recycled_fills: v.pool.recycled_fills,
        }
    }

    fn checkpoint(&self, dest: &Path) -> Result<()> {
        if self.fs.exists(dest)? {
            return Err(Error::invalid(format!(
                "checkpoint directory {} already exists",
                dest.display()
            )));
        }
        create_dir_durably(self.fs.as_ref(), dest)?;
        // The pinned super version keeps its tables from being deleted while they are linked,
        // and the values they point at from being reclaimed while they are copied.
        let (sv, flushed_seq) = {
            let versions = self.versions.lock();
            (self.super_version(), versions.flushed_seq)
        };
        let version = Arc::clone(&sv.version);
        for (_, file) in version.files() {
            let name = filename::table(file.number());
            self.fs
                .link_or_copy(&self.dir.join(&name), &dest.join(&name))?;
        }
        // Every value the pinned tables point at was written before they were: the copy holds
        // it, wherever a relocation since has moved it. The copy's index is these tables
        // alone, so every other byte of its value files is dead there.
        let live = self.live_value_ranges(&sv, false)?;
        let values = self.values.checkpoint(dest, &live)?;
        drop(sv);
        // Past every table and value file the copy names.
        let manifest_number = self.versions.lock().next_file();
        let edit = VersionEdit {
            log_number: Some(manifest_number + 1),
            next_file: Some(manifest_number + 2),
            last_seq: Some(flushed_seq),
            added: version.files().map(|(l, f)| (l, f.meta.clone())).collect(),
            removed: Vec::new(),
            values,
        };
        let mut manifest =
            crate::index::version::create_manifest(self.fs.as_ref(), dest, manifest_number, &edit)?;
        manifest.sync()?;
        crate::index::version::install_current(self.fs.as_ref(), dest, manifest_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{CallKind, FaultFs, Trigger};

    fn open_on(fs: &FaultFs, dir: &Path) -> Db {
        let mut options = Options::new().background_compaction(false);
        options.fs = Some(Arc::new(fs.clone()));
        options.open(dir).unwrap()
    }

    /// The value of key `i` in the upgrade test, at `round`: every third one separated.
    fn upgrade_value(i: u32, round: u32) -> Vec<u8> {
        let len = if i.is_multiple_of(3) { 2000 } else { 40 };
        vec![u8::try_from((i + round) % 251).unwrap(); len]
    }

    /// A database whose tables an older engine wrote in format version 1 opens, reads them
    /// through their flat filters and verifies, and compaction rewrites them into the current
    /// version without losing or changing a key.
    #[test]
    fn tables_of_format_version_1_read_until_compaction_rewrites_them() {
        use crate::index::table::FormatVersion;
        let dir = tempfile::tempdir().unwrap();
        let mut old = Options::new().background_compaction(false);
        old.test_table_format = FormatVersion::V1;
        let db = old.open(dir.path()).unwrap();
        for i in 0..300u32 {
            db.put(format!("key{i:04}"), upgrade_value(i, 0)).unwrap();
            if i % 100 == 99 {
                db.flush().unwrap();
            }
        }
        db.delete("key0007").unwrap();
        db.flush().unwrap();
        drop(db);
        let expected = |i: u32, round: u32| (i != 7).then(|| upgrade_value(i, round));
        let check = |db: &Db, round: &dyn Fn(u32) -> u32| {
            for i in 0..300u32 {
                let got = db.get(format!("key{i:04}")).unwrap();
                assert_eq!(
                    got.as_deref(),
                    expected(i, round(i)).as_deref(),
                    "key{i:04}"
                );
            }
            db.verify().unwrap();
        };
        let versions = |db: &Db| -> Vec<u32> {
            let tables = db.inventory().tables;
            tables.iter().map(|t| t.format_version).collect()
        };
        let db = Options::new()
            .background_compaction(false)
            .open(dir.path())
            .unwrap();
        let before = versions(&db);
        assert!(
            before.len() >= 4 && before.iter().all(|&v| v == 1),
            "{before:?}"
        );
        check(&db, &|_| 0);
        for i in (0..300u32).step_by(10) {
            db.put(format!("key{i:04}"), upgrade_value(i, 1)).unwrap();
        }
        db.compact().unwrap();
        let after = versions(&db);
        assert!(
            !after.is_empty() && after.iter().all(|&v| v == 2),
            "{after:?}"
        );
        check(&db, &|i| u32::from(i.is_multiple_of(10)));
    }

    #[test]
    fn failed_wal_sync_poisons_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let db = open_on(&fs, dir.path());
        db.put("before", "1").unwrap();
        fs.fail_syncs(true);
        let err = db.write_with(WriteBatch::new().put("k", "v").clone(), Durability::Sync);
        assert!(matches!(err, Err(Error::Io(_))), "{err:?}");
        fs.fail_syncs(false);
        // The fault is gone, but the log's tail is unknown: no more writes.
        assert!(matches!(db.put("after", "2"), Err(Error::Poisoned)));
        assert!(matches!(db.flush(), Err(Error::Poisoned)));
        // Reads still work.
        assert_eq!(db.get("before").unwrap().unwrap(), b"1");
        drop(db);
        let db = open_on(&fs, dir.path());
        assert_eq!(db.get("before").unwrap().unwrap(), b"1");
        assert!(db.get("after").unwrap().is_none());
        db.put("after", "3").unwrap();
    }

    #[test]
    fn failed_wal_write_poisons_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let db = open_on(&fs, dir.path());
        fs.fail_writes(true);
        assert!(matches!(db.put("k", "v"), Err(Error::Io(_))));
        fs.fail_writes(false);
        assert!(matches!(db.put("k", "v"), Err(Error::Poisoned)));
        assert!(db.inner.is_poisoned());
    }

    #[test]
    fn failed_flush_poisons_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let db = open_on(&fs, dir.path());
        db.put("k", "v").unwrap();
        fs.fail_syncs(true);
        assert!(db.flush().is_err());
        fs.fail_syncs(false);
        assert!(matches!(db.put("k2", "v"), Err(Error::Poisoned)));
        drop(db);
        let db = open_on(&fs, dir.path());
        assert_eq!(db.get("k").unwrap().unwrap(), b"v");
    }

    /// A failed `fstat` of a segment makes the bytes on disk unknown, not zero.
    #[test]
    fn stats_report_unknown_disk_bytes_when_the_file_system_cannot_say() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let db = open_on(&fs, dir.path());
        db.put("k", vec![7u8; 8 << 10]).unwrap();
        let known = db.stats();
        assert!(
            known.value_disk_bytes.is_some_and(|b| b >= 8 << 10),
            "{known:?}"
        );
        assert!(known.value_space_amplification().is_some());
        fs.arm(Trigger::nth(1).only(&[CallKind::AllocatedBytes]).sticky());
        let unknown = db.stats();
        assert_eq!(unknown.value_disk_bytes, None);
        assert_eq!(unknown.value_space_amplification(), None);
        assert_eq!(unknown.value_live_bytes, known.value_live_bytes);
    }
}

/// I/O errors during reclamation. `Db::compact()` of a database full of dead values (whole
/// dead files, dead blocks inside live files, mostly-dead files to evacuate, fragmented files
/// to relocate, emptied segments) runs on a [`FaultFs`](crate::fs::FaultFs) that fails its N-th
/// call: only that call, of any kind (reads, opens and listings too), for every N the
/// compaction makes; and every mutating call (a create, write, flush, sync, directory sync,
/// rename, removal, link or hole punch) from the N-th mutating one on until the handle is
/// dropped, for every third N. Each time the compaction must return an error or succeed,
/// never panic; an error must leave the database poisoned and still readable; and after a
/// reopen without faults every acknowledged write must be there, `verify()` must pass, and a
/// second `compact()` must free what the failed one did not.
///
/// The sweep over a whole workload is `engine/tests/io_errors.rs`; the behaviour tests of
/// reclamation are `engine/tests/reclaim_faults.rs`.
#[cfg(test)]
mod reclaim_fault_tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use crate::error::{Error, Result};
    use crate::fs::{CallKind, FaultFs, Trigger};
    use crate::options::Options;
    use crate::{Db, Stats};

    /// The host file system, counting every call and failing the ones the sweep picks. Its
    /// syncs skip the device (`FaultFs::skip_syncs`): no machine crashes in these tests, so
    /// durability on the device is not what they check, and skipping the fdatasyncs makes the
    /// sweep several times faster.
    fn fault_fs() -> FaultFs {
        let fs = FaultFs::default();
        fs.skip_syncs(true);
        fs
    }

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    /// 256-byte blocks, values of 64 bytes and more separated, value files sealed at 8 KiB
    /// over 64 KiB segments, no background threads (the sweep must be deterministic).
    fn open(fs: &FaultFs, dir: &Path) -> Result<Db> {
        let mut options = Options::new()
            .memtable_bytes(4 << 10)
            .block_size_bytes(256)
            .table_target_bytes(8 << 10)
            .level_base_bytes(16 << 10)
            .l0_compaction_trigger(2)
            .l0_stop_writes(6)
            .value_threshold_bytes(64)
            .value_file_bytes(8 << 10)
            .value_segment_bytes(16 << 10)
            .cache_bytes(16 << 10)
            .background_compaction(false);
        options.fs = Some(Arc::new(fs.clone()));
        options.open(dir)
    }

    fn value(tag: u64, len: usize) -> Vec<u8> {
        let mut x = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    fn put(db: &Db, model: &mut Model, key: String, tag: u64, len: usize) {
        let v = value(tag, len);
        db.put(&key, &v).unwrap();
        model.insert(key.into_bytes(), v);
    }

    fn delete_range(db: &Db, model: &mut Model, start: &str, end: &str) {
        db.delete_range(start..end).unwrap();
        model.retain(|k, _| !(k.as_slice() >= start.as_bytes() && k.as_slice() < end.as_bytes()));
    }

    fn scan(db: &Db) -> Result<Model> {
        db.range::<&[u8], _>(..)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    }

    /// Builds, in `dir`, a database whose next `compact()` has every kind of reclamation to
    /// do; returns what it holds.
    fn build(dir: &Path) -> Model {
        let fs = fault_fs();
        let db = open(&fs, dir).unwrap();
        let mut model = Model::new();
        let big = [700, 1500, 3000, 5000, 9000, 20_000];
        // Values that span blocks and files, and small ones that share blocks.
        for i in 0..48u64 {
            put(
                &db,
                &mut model,
                format!("big{i:03}"),
                i,
                big[(i % 6) as usize],
            );
        }
        for i in 0..160u64 {
            put(
                &db,
                &mut model,
                format!("small{i:03}"),
                1000 + i,
                100 + (i % 5) as usize * 20,
            );
        }
        db.compact().unwrap();
        // Free short runs all over the store (the values of up to 3000 bytes: holes of at most
        // 12 blocks), then fill them again: reservations of 16 blocks take several, and the
        // new files are fragmented.
        for i in (0..48u64).filter(|i| i % 6 < 3) {
            db.delete(format!("big{i:03}")).unwrap();
            model.remove(format!("big{i:03}").as_bytes());
        }
        db.compact().unwrap();
        for i in 0..40u64 {
            put(
                &db,
                &mut model,
                format!("new{i:03}"),
                2000 + i,
                big[(i % 4) as usize],
            );
        }
        // Now the dead values of the swept compaction: whole files, blocks inside live files,
        // mostly-dead files of small values.
        delete_range(&db, &mut model, "new000", "new010");
        for i in 10..40u64 {
            if i % 4 == 0 {
                put(&db, &mut model, format!("new{i:03}"), 3000 + i, 300);
            }
        }
        for i in 0..160u64 {
            if i % 4 != 0 {
                db.delete(format!("small{i:03}")).unwrap();
                model.remove(format!("small{i:03}").as_bytes());
            }
        }
        delete_range(&db, &mut model, "big030", "big040");
        model
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    fn reclamation(before: &Stats, after: &Stats) -> [(&'static str, u64); 6] {
        [
            (
                "files deleted",
                after.value_files_deleted - before.value_files_deleted,
            ),
            (
                "bytes reclaimed",
                after.value_reclaimed_bytes - before.value_reclaimed_bytes,
            ),
            (
                "blocks punched",
                after.value_punched_blocks - before.value_punched_blocks,
            ),
            (
                "segments removed",
                after.value_segments_removed - before.value_segments_removed,
            ),
            (
                "values evacuated",
                after.value_evacuations - before.value_evacuations,
            ),
            (
                "relocations",
                after.value_relocations - before.value_relocations,
            ),
        ]
    }

    /// What one `compact()` with the N-th call failing did.
    #[derive(Debug)]
    struct Outcome {
        calls: u64,
        failed: Vec<CallKind>,
        compacted: Result<()>,
    }

    /// Copies `template`, opens it, arms the trigger at `fail_at` and compacts; then checks
    /// the handle and drops it, reopens without faults, checks again, compacts again and checks
    /// that. `fail_at` 0 fails nothing.
    /// Returns the outcome and the stats after the second compaction.
    fn run_one(template: &Path, model: &Model, fail_at: u64, sticky: bool) -> (Outcome, Stats) {
        let what = format!("failing call {fail_at} (sticky {sticky})");
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("db");
        copy_dir(template, &dir);
        let fs = fault_fs();
        let db = open(&fs, &dir).unwrap();
        fs.reset_counts();
        // A single failure may be of any call; a device that stays broken refuses writes
        // and syncs, but the sweep still reads the handle it leaves.
        let mutating: Vec<CallKind> = CallKind::ALL
            .into_iter()
            .filter(|k| k.is_mutating())
            .collect();
        fs.arm(if sticky {
            Trigger::nth(fail_at).only(&mutating).sticky()
        } else {
            Trigger::nth(fail_at)
        });
        let compacted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.compact()))
            .unwrap_or_else(|_| panic!("{what}: compact() panicked"));
        let counts = fs.counts();
        let outcome = Outcome {
            calls: counts
                .iter()
                .filter(|(k, _)| !sticky || k.is_mutating())
                .map(|(_, n)| n)
                .sum(),
            failed: fs.injected().iter().map(|f| f.kind).collect(),
            compacted,
        };
        // A device that stays broken stays broken until the handle is gone.
        if !sticky {
            fs.disarm();
        }
        match &outcome.compacted {
            Err(e) => {
                assert!(
                    !outcome.failed.is_empty(),
                    "{what}: compact() failed by itself: {e}"
                );
                // The database refuses writes until reopened, but still reads.
                assert!(
                    matches!(db.put("after", "x"), Err(Error::Poisoned)),
                    "{what}: {e} did not poison the database ({:?})",
                    outcome.failed
                );
                let found = scan(&db).unwrap_or_else(|e| panic!("{what}: read after {e}"));
                assert!(
                    found == *model,
                    "{what}: the poisoned handle reads other data"
                );
            }
            Ok(()) => {
                // The one error not returned: deleting a table no version holds any more
                // (`index/obsolete.rs`), which the next open retries.
                assert!(
                    outcome.failed.iter().all(|f| *f == CallKind::RemoveFile),
                    "{what}: compact() succeeded though {:?} failed",
                    outcome.failed
                );
                assert!(scan(&db).unwrap() == *model, "{what}");
                db.verify()
                    .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
                if !sticky {
                    db.put("after", "x")
                        .unwrap_or_else(|e| panic!("{what}: write after compact(): {e}"));
                    db.delete("after").unwrap();
                }
            }
        }
        drop(db);
        fs.disarm();

        let db = open(&fs, &dir).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        let found = scan(&db).unwrap_or_else(|e| panic!("{what}: read after reopen: {e}"));
        assert!(
            found == *model,
            "{what}: reopened database differs from the writes"
        );
        db.verify()
            .unwrap_or_else(|e| panic!("{what}: verify after reopen: {e}"));
        db.compact()
            .unwrap_or_else(|e| panic!("{what}: compact after reopen: {e}"));
        assert!(
            scan(&db).unwrap() == *model,
            "{what}: after the second compact()"
        );
        db.verify()
            .unwrap_or_else(|e| panic!("{what}: verify after the second compact(): {e}"));
        let stats = db.stats();
        (outcome, stats)
    }

    /// Blocks mapped but not yet written that a clean run need not have: the files being
    /// appended to (one of user writes, one of evacuation) keep up to one reservation of 16 blocks
    /// (a quarter of a 16 KiB segment) mapped past their last value, wherever they are.
    const RESERVED_TAILS_BLOCKS: u64 = 2 * 16;

    /// Sweeps `compact()` of the template with its N-th mutating call failing, for every
    /// `stride`-th N it makes; `sticky`: every call from the N-th on fails.
    fn sweep(sticky: bool, stride: usize) {
        let work = tempfile::tempdir().unwrap();
        let template = work.path().join("template");
        let model = build(&template);

        // The compaction without faults: what it has to do, how many calls it makes, and what
        // a reopen and a second compaction leave.
        let (clean, reference) = run_one(&template, &model, 0, sticky);
        let calls = clean.calls;
        {
            let fs = fault_fs();
            let probe = tempfile::tempdir().unwrap();
            copy_dir(&template, probe.path());
            let db = open(&fs, probe.path()).unwrap();
            let before = db.stats();
            db.compact().unwrap();
            let did = reclamation(&before, &db.stats());
            eprintln!("a clean compact() makes {calls} calls and reclaims {did:?}");
            for (name, n) in did {
                assert!(n > 0, "the workload leaves no {name} to do: {did:?}");
            }
        }
        let (mut injected, mut errors) = (0u64, 0u64);
        let mut kinds: BTreeMap<CallKind, u64> = BTreeMap::new();
        for fail_at in (1..=calls).step_by(stride) {
            let (outcome, stats) = run_one(&template, &model, fail_at, sticky);
            injected += 1;
            errors += u64::from(outcome.compacted.is_err());
            if let Some(first) = outcome.failed.first() {
                *kinds.entry(*first).or_default() += 1;
            }
            // Whatever the failure left behind, the compaction after the reopen freed it.
            let left = format!(
                "failing call {fail_at} ({:?}, sticky {sticky}): after the second compact() \
                 {} value files map {} blocks with {} dead bytes; a clean run leaves {}, {}, {}",
                outcome.failed,
                stats.value_files,
                stats.value_mapped_blocks,
                stats.value_dead_bytes,
                reference.value_files,
                reference.value_mapped_blocks,
                reference.value_dead_bytes
            );
            assert!(stats.value_files <= reference.value_files, "{left}");
            assert!(
                stats.value_dead_bytes <= reference.value_dead_bytes,
                "{left}"
            );
            assert!(
                stats.value_mapped_blocks <= reference.value_mapped_blocks + RESERVED_TAILS_BLOCKS,
                "{left}"
            );
        }
        eprintln!(
            "sticky {sticky}: {injected} failures injected (first failed call by kind: \
             {kinds:?}), {errors} compactions returned an error, {} succeeded",
            injected - errors
        );
    }

    #[test]
    fn a_compaction_survives_any_one_of_its_calls_failing() {
        sweep(false, 1);
    }

    #[test]
    fn a_compaction_survives_the_file_system_failing_from_any_call_on() {
        sweep(true, 3);
    }
}
