//! [`Version`]: an immutable view of the live tables per level; [`VersionSet`]: the manifest
//! that records how versions change and recovers the latest one.
//!
//! Invariants of a version:
//! - level 0 holds tables in any key overlap, newest first;
//! - every other level holds tables sorted by key and not overlapping;
//! - for any user key, every version in level `i` is newer than every version in level `i+1`
//!   (compaction always takes all overlapping tables of the next level, and table key ranges
//!   include their range tombstones).
//!
//! A table file is deleted once it is no longer in the current version and the last reference
//! to its reader is dropped (readers pin a version for as long as they read it); the drop only
//! queues it, and another thread closes and deletes it (`obsolete.rs`).
//!
//! Thread safety: a `Version` is immutable and shared through `Arc`. A `VersionSet` is owned by
//! the database behind a mutex (`docs/locking.md`): one edit is logged at a time.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::filename;
use crate::fs::{FileSystem, ReadableFile};
use crate::index::edit::{NUM_LEVELS, TableMeta, VersionEdit};
use crate::index::obsolete::ObsoleteFiles;
use crate::index::table::{BlockCache, ReadMode, Table, bloom_hash};
use crate::index::tombstones::TombstoneIndex;
use crate::key::{Found, RangeTombstone, SeqNo};
use crate::value::edit::ValueEdit;
use crate::value::state::ValueState;
use crate::wal::{LogReader, LogWriter};

/// A live table: its manifest record and its open reader.
#[derive(Debug)]
pub(crate) struct TableFile {
    pub meta: TableMeta,
    pub table: Arc<Table>,
}

impl TableFile {
    pub fn number(&self) -> u64 {
        self.meta.number
    }

    /// True if the table may hold versions of keys in `lower..=upper`.
    pub fn overlaps(&self, lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
        below_upper(&self.meta.smallest, upper) && above_lower(&self.meta.largest, lower)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.meta.smallest[..] <= *key
            && match &self.meta.largest {
                Bound::Unbounded => true,
                Bound::Included(k) => key <= &k[..],
                Bound::Excluded(k) => key < &k[..],
            }
    }
}

/// `smallest <= upper`.
fn below_upper(smallest: &Bytes, upper: &Bound<Bytes>) -> bool {
    match upper {
        Bound::Unbounded => true,
        Bound::Included(u) => smallest <= u,
        Bound::Excluded(u) => smallest < u,
    }
}

/// `largest >= lower`, where `largest` is itself a bound.
fn above_lower(largest: &Bound<Bytes>, lower: &Bound<Bytes>) -> bool {
    match (largest, lower) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(l), Bound::Included(lo)) => l >= lo,
        (Bound::Included(l), Bound::Excluded(lo)) | (Bound::Excluded(l), Bound::Included(lo)) => {
            l > lo
        }
        // `largest` excludes `l`, the range excludes `lo`: some key in between must exist
        // past `lo` and before `l`; `lo\0` is the smallest candidate.
        (Bound::Excluded(l), Bound::Excluded(lo)) => l[..] > crate::key::successor(lo)[..],
    }
}

/// The live tables at one point in time.
#[derive(Debug, Default)]
pub(crate) struct Version {
    pub levels: [Vec<Arc<TableFile>>; NUM_LEVELS],
    pub tombstones: TombstoneIndex,
    /// Every range tombstone of every table (for iterators, which merge them with memtables').
    pub all_tombstones: Vec<RangeTombstone>,
}

impl Version {
    fn new(levels: [Vec<Arc<TableFile>>; NUM_LEVELS]) -> Self {
        let all_tombstones: Vec<RangeTombstone> = levels
            .iter()
            .flatten()
            .flat_map(|f| f.table.range_tombstones().iter().cloned())
            .collect();
        let tombstones = TombstoneIndex::new(&all_tombstones);
        Self {
            levels,
            tombstones,
            all_tombstones,
        }
    }

    /// The newest version of `key` at `snapshot` in the tables (tombstones included; range
    /// tombstones not applied).
    pub fn get(&self, key: &[u8], snapshot: SeqNo, mode: ReadMode) -> Result<Option<Found>> {
        let hash = bloom_hash(key);
        // Level 0 tables overlap and are newest first; the newest match wins.
        let mut best: Option<Found> = None;
        for file in self.levels[0].iter().filter(|f| f.contains_key(key)) {
            if best.as_ref().is_some_and(|b| b.seq >= file.meta.max_seq) {
                continue;
            }
            if let Some(e) = file.table.get_hashed(key, hash, snapshot, mode)?
                && best.as_ref().is_none_or(|b| e.seq > b.seq)
            {
                best = Some(e);
            }
        }
        if best.is_some() {
            return Ok(best);
        }
        for level in &self.levels[1..] {
            let i = level.partition_point(|f| !f.contains_key_or_after(key));
            if let Some(file) = level.get(i).filter(|f| f.contains_key(key))
                && let Some(e) = file.table.get_hashed(key, hash, snapshot, mode)?
            {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// The tables of `level` (none past the last level).
    pub fn level(&self, level: usize) -> &[Arc<TableFile>] {
        self.levels.get(level).map_or(&[], Vec::as_slice)
    }

    /// Tables of `level` that may hold keys in `lower..upper`.
    pub fn overlapping(
        &self,
        level: usize,
        lower: &Bound<Bytes>,
        upper: &Bound<Bytes>,
    ) -> Vec<Arc<TableFile>> {
        self.levels
            .get(level)
            .map(|files| {
                files
                    .iter()
                    .filter(|f| f.overlaps(lower, upper))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels
            .get(level)
            .map_or(0, |files| files.iter().map(|f| f.meta.size_bytes).sum())
    }

    pub fn files(&self) -> impl Iterator<Item = (usize, &Arc<TableFile>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, files)| files.iter().map(move |f| (l, f)))
    }
}

impl TableFile {
    /// True if every key of the table is below `key`.
    pub fn ends_before(&self, key: &[u8]) -> bool {
        !self.contains_key_or_after(key)
    }

    /// True if the table's upper bound is at or after `key` (the table is not wholly before it).
    pub fn contains_key_or_after(&self, key: &[u8]) -> bool {
        match &self.meta.largest {
            Bound::Unbounded => true,
            Bound::Included(k) => key <= &k[..],
            Bound::Excluded(k) => key < &k[..],
        }
    }
}

/// The manifest, the current version and the counters it persists.
#[derive(Debug)]
pub(crate) struct VersionSet {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    cache: Arc<BlockCache>,
    /// Where the files of tables an edit removed go to be deleted.
    obsolete: Arc<ObsoleteFiles>,
    current: Arc<Version>,
    /// The manifest edits are appended to; `None` in a read-only database, which logs none.
    manifest: Option<LogWriter>,
    manifest_number: u64,
    next_file: u64,
    /// WAL files below this number hold only flushed writes.
    pub log_number: u64,
    /// Highest sequence number known to be in a table.
    pub flushed_seq: SeqNo,
}

impl VersionSet {
    pub fn current(&self) -> Arc<Version> {
        Arc::clone(&self.current)
    }

    /// The queue of table files to delete (`obsolete.rs`).
    pub fn obsolete(&self) -> &Arc<ObsoleteFiles> {
        &self.obsolete
    }

    pub fn new_file_number(&mut self) -> u64 {
        let n = self.next_file;
        self.next_file += 1;
        n
    }

    pub fn next_file(&self) -> u64 {
        self.next_file
    }

    /// Makes sure `number` is never handed out: a file of that number exists, though no edit
    /// recorded it (a log started after the manifest's last edit).
    pub fn mark_file_number_used(&mut self, number: u64) {
        self.next_file = self.next_file.max(number.saturating_add(1));
    }

    pub fn manifest_number(&self) -> u64 {
        self.manifest_number
    }

    /// Creates a new database: an empty manifest and `CURRENT`.
    pub fn create(dir: &Path, fs: Arc<dyn FileSystem>, cache: Arc<BlockCache>) -> Result<Self> {
        let mut set = Self {
            dir: dir.to_path_buf(),
            obsolete: Arc::new(ObsoleteFiles::new(Arc::clone(&fs))),
            fs,
            cache,
            current: Arc::new(Version::default()),
            manifest: None,
            manifest_number: 0,
            next_file: 1,
            log_number: 0,
            flushed_seq: SeqNo(0),
        };
        set.start_manifest(Vec::new())?;
        Ok(set)
    }

    /// Reads `CURRENT` and replays the manifest it names, then starts a fresh manifest that
    /// holds the recovered state in one record. Returns the value files' state too.
    pub fn recover(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        cache: Arc<BlockCache>,
    ) -> Result<(Self, ValueState)> {
        let (mut set, values) = Self::load(dir, fs, cache)?;
        set.start_manifest(values.snapshot_edits())?;
        Ok((set, values))
    }

    /// Reads `CURRENT` and replays the manifest it names, writing nothing: the set logs no
    /// edits (they fail with `ReadOnly`). Returns the value files' state too.
    pub fn load(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        cache: Arc<BlockCache>,
    ) -> Result<(Self, ValueState)> {
        let current_path = dir.join(filename::CURRENT);
        let current = fs.read_all(&current_path)?;
        let (name, manifest_number) = std::str::from_utf8(&current)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| match filename::parse(s) {
                Some(filename::FileKind::Manifest(n)) => Some((s, n)),
                _ => None,
            })
            .ok_or_else(|| {
                Error::corruption(&current_path, 0, "CURRENT does not name a manifest")
            })?;
        let manifest_path = dir.join(name);
        let mut reader = LogReader::strict(open_named(fs.as_ref(), &manifest_path, "CURRENT")?);
        let mut levels: [Vec<TableMeta>; NUM_LEVELS] = Default::default();
        let (mut log_number, mut next_file, mut last_seq) = (None, None, None);
        let mut values = ValueState::default();
        while let Some((offset, payload)) = reader.next_record()? {
            let edit = VersionEdit::decode(&payload, &manifest_path, offset)?;
            apply_metas(&mut levels, &edit, &manifest_path, offset)?;
            for v in &edit.values {
                values.apply(v, &manifest_path, offset)?;
            }
            log_number = edit.log_number.or(log_number);
            next_file = edit.next_file.or(next_file);
            last_seq = edit.last_seq.or(last_seq);
        }
        let missing = |what: &str| {
            Error::corruption(
                &manifest_path,
                reader.valid_len(),
                format!("manifest has no {what}"),
            )
        };
        let log_number = log_number.ok_or_else(|| missing("log number"))?;
        let next_file = next_file.ok_or_else(|| missing("next file number"))?;
        let last_seq = last_seq.ok_or_else(|| missing("last sequence number"))?;
        if let Some(id) = values.files.keys().find(|id| id.0 >= next_file) {
            return Err(Error::corruption(
                &manifest_path,
                0,
                format!("value file {id} is numbered past the next file number {next_file}"),
            ));
        }
        let mut files: [Vec<Arc<TableFile>>; NUM_LEVELS] = Default::default();
        for (level, metas) in levels.into_iter().enumerate() {
            for meta in metas {
                if meta.number >= next_file {
                    return Err(Error::corruption(
                        &manifest_path,
                        0,
                        format!(
                            "table {} is numbered past the next file number {next_file}",
                            meta.number
                        ),
                    ));
                }
                let file = open_table(dir, &fs, &cache, meta)?;
                if let Some(l) = files.get_mut(level) {
                    l.push(file);
                }
            }
        }
        sort_levels(&mut files);
        let set = Self {
            dir: dir.to_path_buf(),
            obsolete: Arc::new(ObsoleteFiles::new(Arc::clone(&fs))),
            fs,
            cache,
            current: Arc::new(Version::new(files)),
            manifest: None,
            manifest_number,
            next_file,
            log_number,
            flushed_seq: last_seq,
        };
        Ok((set, values))
    }

    /// Starts a new manifest holding the whole state in one record (the current version,
    /// the counters and `values`, the value files' state), and points `CURRENT` at it.
    fn start_manifest(&mut self, values: Vec<ValueEdit>) -> Result<()> {
        let number = self.new_file_number();
        let snapshot = VersionEdit {
            log_number: Some(self.log_number),
            next_file: Some(self.next_file),
            last_seq: Some(self.flushed_seq),
            added: self
                .current
                .files()
                .map(|(l, f)| (l, f.meta.clone()))
                .collect(),
            removed: Vec::new(),
            values,
        };
        let mut manifest = create_manifest(self.fs.as_ref(), &self.dir, number, &snapshot)?;
        manifest.sync()?;
        self.manifest = Some(manifest);
        self.manifest_number = number;
        self.install_current()
    }

    /// The manifest, to append an edit to.
    ///
    /// # Errors
    /// `ReadOnly` if the set was loaded read-only.
    fn manifest(&mut self) -> Result<&mut LogWriter> {
        self.manifest.as_mut().ok_or(Error::ReadOnly)
    }

    fn install_current(&self) -> Result<()> {
        install_current(self.fs.as_ref(), &self.dir, self.manifest_number)
    }

    /// Logs value-store edits durably; the table version does not change.
    ///
    /// # Errors
    /// An I/O error; the caller must then poison the database.
    pub fn log_values(&mut self, values: Vec<ValueEdit>) -> Result<()> {
        let edit = VersionEdit {
            next_file: Some(self.next_file),
            values,
            ..VersionEdit::default()
        };
        let manifest = self.manifest()?;
        manifest.add_record(&edit.encode())?;
        manifest.sync()
    }

    /// Logs `edit` durably, then makes it the current version. `opened` holds the readers of
    /// the tables the edit adds.
    ///
    /// # Errors
    /// An I/O error; the caller must then poison the database, since the manifest's tail is
    /// in an unknown state.
    pub fn log_and_apply(
        &mut self,
        mut edit: VersionEdit,
        opened: Vec<Arc<TableFile>>,
    ) -> Result<Arc<Version>> {
        edit.next_file = Some(self.next_file);
        let moved: Vec<u64> = edit.added.iter().map(|(_, m)| m.number).collect();
        if let Some(n) = edit.log_number {
            debug_assert!(n >= self.log_number);
        }
        let manifest = self.manifest()?;
        manifest.add_record(&edit.encode())?;
        manifest.sync()?;
        if let Some(n) = edit.log_number {
            self.log_number = n;
        }
        if let Some(s) = edit.last_seq {
            self.flushed_seq = s;
        }
        let mut levels = self.current.levels.clone();
        for (level, number) in &edit.removed {
            if let Some(files) = levels.get_mut(*level) {
                files.retain(|f| {
                    let keep = f.number() != *number;
                    // A table moved to another level stays; it is added back below.
                    if !keep && !moved.contains(number) {
                        f.table.retire(&self.obsolete);
                    }
                    keep
                });
            }
        }
        let moved_files: Vec<Arc<TableFile>> = self
            .current
            .files()
            .filter(|(_, f)| moved.contains(&f.number()))
            .map(|(_, f)| Arc::clone(f))
            .collect();
        for file in opened.into_iter().chain(moved_files) {
            let level = edit
                .added
                .iter()
                .find(|(_, m)| m.number == file.number())
                .map_or(0, |(l, _)| *l);
            if let Some(files) = levels.get_mut(level) {
                files.push(file);
            }
        }
        sort_levels(&mut levels);
        self.current = Arc::new(Version::new(levels));
        Ok(self.current())
    }

    /// Opens a table just written, to pass to [`Self::log_and_apply`].
    pub fn open_table(&self, meta: TableMeta) -> Result<Arc<TableFile>> {
        open_table(&self.dir, &self.fs, &self.cache, meta)
    }
}

/// Creates manifest `number` in `dir` holding `edit` as its first record (not yet synced).
pub(crate) fn create_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    edit: &VersionEdit,
) -> Result<LogWriter> {
    let mut manifest = LogWriter::new(fs.create(&dir.join(filename::manifest(number)))?);
    manifest.add_record(&edit.encode())?;
    Ok(manifest)
}

/// Points `CURRENT` at manifest `number`: write a temporary file, sync it, rename it over
/// `CURRENT`, sync the directory. A crash leaves either the old or the new name.
pub(crate) fn install_current(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<()> {
    let tmp = dir.join(filename::temp(number));
    let mut f = fs.create(&tmp)?;
    f.append(format!("{}\n", filename::manifest(number)).as_bytes())?;
    f.sync()?;
    drop(f);
    fs.rename(&tmp, &dir.join(filename::CURRENT))?;
    fs.sync_dir(dir)
}

/// Opens a file that `named_by` (`CURRENT`, the manifest) names. Such a file is never deleted
/// while it is named, so its absence is damage (`Corruption`), not an I/O failure.
fn open_named(fs: &dyn FileSystem, path: &Path, named_by: &str) -> Result<Arc<dyn ReadableFile>> {
    fs.open(path).map_err(|e| match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Error::corruption(
            path,
            0,
            format!("{named_by} names this file, which is missing"),
        ),
        e => e,
    })
}

fn open_table(
    dir: &Path,
    fs: &Arc<dyn FileSystem>,
    cache: &Arc<BlockCache>,
    meta: TableMeta,
) -> Result<Arc<TableFile>> {
    let path = dir.join(filename::table(meta.number));
    let file = open_named(fs.as_ref(), &path, "the manifest")?;
    if file.len() != meta.size_bytes {
        return Err(Error::corruption(
            &path,
            file.len(),
            format!(
                "table is {} bytes, the manifest says {}",
                file.len(),
                meta.size_bytes
            ),
        ));
    }
    let table = Table::open(file, meta.number, Arc::clone(cache))?;
    Ok(Arc::new(TableFile { meta, table }))
}

fn apply_metas(
    levels: &mut [Vec<TableMeta>; NUM_LEVELS],
    edit: &VersionEdit,
    path: &Path,
    offset: u64,
) -> Result<()> {
    for (level, number) in &edit.removed {
        let files = levels
            .get_mut(*level)
            .ok_or_else(|| Error::corruption(path, offset, "level out of range"))?;
        let before = files.len();
        files.retain(|m| m.number != *number);
        if files.len() == before {
            return Err(Error::corruption(
                path,
                offset,
                format!("edit removes table {number}, which is not in level {level}"),
            ));
        }
    }
    for (level, meta) in &edit.added {
        if levels.iter().flatten().any(|m| m.number == meta.number) {
            return Err(Error::corruption(
                path,
                offset,
                format!("edit adds table {} twice", meta.number),
            ));
        }
        levels
            .get_mut(*level)
            .ok_or_else(|| Error::corruption(path, offset, "level out of range"))?
            .push(meta.clone());
    }
    Ok(())
}

/// Level 0 newest first; other levels by smallest key.
fn sort_levels(levels: &mut [Vec<Arc<TableFile>>; NUM_LEVELS]) {
    let [l0, rest @ ..] = levels;
    l0.sort_by(|a, b| {
        b.meta
            .max_seq
            .cmp(&a.meta.max_seq)
            .then(b.number().cmp(&a.number()))
    });
    for files in rest {
        files.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
    }
}
