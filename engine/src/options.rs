//! [`Options`]: how a database is opened and tuned, and the engine's hard limits.
//!
//! Every size has a named default and is checked at open: a bad value is
//! `Error::InvalidArgument`, never a panic later.

use std::path::Path;

use crate::db::Db;
use crate::error::{Error, Result};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 128 << 20;
/// Largest write batch accepted (its encoded size), in bytes.
pub const MAX_BATCH_BYTES: usize = 192 << 20;
/// The largest [`Options::zero_ahead_bytes`].
const MAX_ZERO_AHEAD_BYTES: u64 = 16 << 20;

/// How value files are read on a buffer-pool miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPath {
    /// `pread` into the buffer pool.
    #[default]
    Pool,
    /// Copy from a memory mapping of the segment into the buffer pool.
    Mmap,
}

/// When a write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The write reaches the operating system before it is acknowledged: it survives a crash of
    /// the process, and is lost on power loss only if no later sync covered it.
    #[default]
    Buffered,
    /// The write is on stable storage (`fdatasync`) before it is acknowledged.
    Sync,
}

/// Test-only: a callback the engine makes at a chosen point (see [`Options::test_on_release`]).
#[cfg(feature = "test-hooks")]
#[derive(Clone)]
pub(crate) struct TestHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

#[cfg(feature = "test-hooks")]
impl std::fmt::Debug for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHook")
    }
}

/// How to open a database. Build with [`Options::new`], then call [`Options::open`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Options {
    pub(crate) cache_bytes: u64,
    pub(crate) table_cache_bytes: u64,
    pub(crate) value_threshold_bytes: usize,
    pub(crate) value_segment_bytes: u64,
    pub(crate) value_file_bytes: u64,
    pub(crate) value_gc_bytes_per_sec: u64,
    pub(crate) writeback_bytes: u64,
    pub(crate) zero_ahead_bytes: u64,
    pub(crate) read_path: ReadPath,
    pub(crate) memtable_bytes: usize,
    pub(crate) memtable_value_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) block_size_bytes: usize,
    pub(crate) table_target_bytes: u64,
    pub(crate) level_base_bytes: u64,
    pub(crate) level_multiplier: u64,
    pub(crate) l0_compaction_trigger: usize,
    pub(crate) l0_stop_writes: usize,
    pub(crate) max_immutable_memtables: usize,
    pub(crate) bloom_bits_per_key: u32,
    pub(crate) create_if_missing: bool,
    pub(crate) background_compaction: bool,
    pub(crate) read_only: bool,
    /// Test-only: see [`Options::test_race_window`].
    #[cfg(feature = "test-hooks")]
    pub(crate) test_race_window: Option<std::time::Duration>,
    /// Test-only: see [`Options::test_on_release`].
    #[cfg(feature = "test-hooks")]
    pub(crate) test_on_release: Option<TestHook>,
    /// The file system to run on; the host's ([`crate::fs::RealFs`]) unless one is given.
    pub(crate) fs: Option<std::sync::Arc<dyn crate::fs::FileSystem>>,
    /// Test-only: the table format version flushes and compactions write, to make the
    /// databases an older engine left.
    #[cfg(test)]
    pub(crate) test_table_format: crate::index::table::FormatVersion,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            cache_bytes: 64 << 20,
            table_cache_bytes: 16 << 20,
            value_threshold_bytes: 1 << 10,
            value_segment_bytes: 256 << 20,
            value_file_bytes: 64 << 20,
            value_gc_bytes_per_sec: 64 << 20,
            writeback_bytes: 1 << 20,
            zero_ahead_bytes: 64 << 10,
            read_path: ReadPath::Pool,
            memtable_bytes: 32 << 20,
            memtable_value_bytes: 64 << 20,
            durability: Durability::Buffered,
            block_size_bytes: 4 << 10,
            table_target_bytes: 32 << 20,
            level_base_bytes: 128 << 20,
            level_multiplier: 10,
            l0_compaction_trigger: 4,
            l0_stop_writes: 16,
            max_immutable_memtables: 2,
            bloom_bits_per_key: 10,
            create_if_missing: true,
            background_compaction: true,
            read_only: false,
            fs: None,
            #[cfg(test)]
            test_table_format: crate::index::table::FormatVersion::CURRENT,
            #[cfg(feature = "test-hooks")]
            test_race_window: None,
            #[cfg(feature = "test-hooks")]
            test_on_release: None,
        }
    }

    /// Memory of the buffer pool, which caches blocks of value files. Default = 64 MiB.
    pub fn cache_bytes(mut self, size_bytes: u64) -> Self {
        self.cache_bytes = size_bytes;
        self
    }

    /// Memory for cached blocks of the index's tables. Default = 16 MiB.
    pub fn table_cache_bytes(mut self, size_bytes: u64) -> Self {
        self.table_cache_bytes = size_bytes;
        self
    }

    /// Values of at least this many bytes are stored in value files, smaller ones in the index.
    /// Default = 1 KiB.
    pub fn value_threshold_bytes(mut self, size_bytes: usize) -> Self {
        self.value_threshold_bytes = size_bytes;
        self
    }

    /// Size of one segment file of the block store. Default = 256 MiB.
    pub fn value_segment_bytes(mut self, size_bytes: u64) -> Self {
        self.value_segment_bytes = size_bytes;
        self
    }

    /// A value file is sealed once this many bytes were appended to it, and the next value
    /// starts a new one. Reclamation deletes a sealed file once nothing in it is live, and
    /// evacuation empties sealed files that are mostly dead. Default = 64 MiB.
    pub fn value_file_bytes(mut self, size_bytes: u64) -> Self {
        self.value_file_bytes = size_bytes;
        self
    }

    /// How many bytes per second background value compaction may copy when it relocates
    /// fragmented value files (punching dead blocks copies nothing and is not limited).
    /// `Db::compact` is not limited. Default = 64 MiB/s.
    pub fn value_gc_bytes_per_sec(mut self, bytes_per_sec: u64) -> Self {
        self.value_gc_bytes_per_sec = bytes_per_sec;
        self
    }

    /// Write-back to the disk of a value segment, or of the write-ahead log, starts each time
    /// this many more bytes were written to it, without waiting for it: the disk then writes
    /// while appends go on, and a sync (`Db::sync`, a `Durability::Sync` write, a memtable
    /// switch) finds at most about this much per file left to write instead of every byte
    /// since the last one. 0 leaves write-back to the kernel's own schedule. Default = 1 MiB.
    pub fn writeback_bytes(mut self, size_bytes: u64) -> Self {
        self.writeback_bytes = size_bytes;
        self
    }

    /// Before a value smaller than this (at most 16 MiB) is appended into blocks of its value file that no
    /// write has touched yet, those blocks are written with zeros, this many bytes at a time,
    /// in one write. The page cache then takes them in large folios, once, and the small
    /// values that follow overwrite pages it already holds, instead of each write allocating
    /// and accounting a page of its own: that halves the kernel's cost of a 4 KiB append. The
    /// zeros are never written back on their own: write-back starts only over written values,
    /// and a synced write skips the zeroing. 0 turns it off. Default = 64 KiB.
    pub fn zero_ahead_bytes(mut self, size_bytes: u64) -> Self {
        self.zero_ahead_bytes = size_bytes;
        self
    }

    /// How value blocks are read on a buffer-pool miss. Default = [`ReadPath::Pool`].
    pub fn read_path(mut self, path: ReadPath) -> Self {
        self.read_path = path;
        self
    }

    /// The memtable is also frozen once the separated values its writes point at add up to
    /// this many bytes. Large values live in value files, so their memtable stays small; this
    /// bounds how much can be written before index compaction sees which values were
    /// overwritten or deleted, and their space can come back. Default = 64 MiB.
    pub fn memtable_value_bytes(mut self, size_bytes: u64) -> Self {
        self.memtable_value_bytes = size_bytes;
        self
    }

    /// Size at which the memtable is frozen and flushed to a table. It counts the versions
    /// written and, from the start, the memtable's hash index: one pointer per 128 bytes of
    /// this size, rounded up to a power of two (2 MiB of the default). Default = 32 MiB.
    pub fn memtable_bytes(mut self, size_bytes: usize) -> Self {
        self.memtable_bytes = size_bytes;
        self
    }

    /// Durability of writes that do not name one. Default = [`Durability::Buffered`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Target size of a table data block, and the block size of value files. Default = 4 KiB.
    pub fn block_size_bytes(mut self, size_bytes: usize) -> Self {
        self.block_size_bytes = size_bytes;
        self
    }

    /// Size at which compaction starts a new output table. Default = 32 MiB.
    pub fn table_target_bytes(mut self, size_bytes: u64) -> Self {
        self.table_target_bytes = size_bytes;
        self
    }

    /// Size of level 1; each deeper level is `level_multiplier` times larger. Default = 128 MiB.
    pub fn level_base_bytes(mut self, size_bytes: u64) -> Self {
        self.level_base_bytes = size_bytes;
        self
    }

    /// Growth factor between levels. Default = 10.
    pub fn level_multiplier(mut self, factor: u64) -> Self {
        self.level_multiplier = factor;
        self
    }

    /// Number of level-0 tables that starts a compaction. Default = 4.
    pub fn l0_compaction_trigger(mut self, tables: usize) -> Self {
        self.l0_compaction_trigger = tables;
        self
    }

    /// Number of level-0 tables at which writers wait for compaction. Default = 16.
    pub fn l0_stop_writes(mut self, tables: usize) -> Self {
        self.l0_stop_writes = tables;
        self
    }

    /// Frozen memtables waiting for flush before writers wait. Default = 2.
    pub fn max_immutable_memtables(mut self, memtables: usize) -> Self {
        self.max_immutable_memtables = memtables;
        self
    }

    /// Bloom filter bits per key; 0 disables filters. Default = 10 (about 1% false positives).
    pub fn bloom_bits_per_key(mut self, bits: u32) -> Self {
        self.bloom_bits_per_key = bits;
        self
    }

    /// Create the database if the directory holds none. Default = true.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Run flushes and compactions on a background thread. With `false` they run only in
    /// [`Db::flush`] and [`Db::compact`] and when writers must make room. Default = true.
    pub fn background_compaction(mut self, enabled: bool) -> Self {
        self.background_compaction = enabled;
        self
    }

    /// Open the database read-only. Default = false.
    ///
    /// A read-only handle never writes, creates, renames, truncates, syncs or deletes anything
    /// in the directory, so several of them (in any processes) can read one database at once:
    /// - the directory lock is taken *shared*: read-only handles keep out writers and writers
    ///   keep them out (`Locked` either way), but read-only handles share it. A directory whose
    ///   lock file is missing (a checkpoint never opened for writing) is read without a lock;
    /// - a missing directory, or one that holds no database, is an error whatever
    ///   [`Options::create_if_missing`] says;
    /// - recovery happens in memory only: the write-ahead logs the last writer left are
    ///   replayed into the memtable and stay where they are (no new log, no flush, no new
    ///   manifest, no trimming of value files recorded, no obsolete file deleted); the next
    ///   writer to open the database recovers them as usual;
    /// - there are no background threads, and [`Db::put`], [`Db::delete`],
    ///   [`Db::delete_range`], [`Db::write`], [`Db::write_with`], [`Db::flush`], [`Db::sync`],
    ///   [`Db::compact`] and [`Db::checkpoint`] return `Error::ReadOnly`.
    ///
    /// Reads, iterators, snapshots, [`Db::verify`], [`Db::stats`] and [`Db::inventory`] work
    /// as on a writable handle, on the state as of the open: writes a writer makes later are
    /// not seen (and a writer cannot open while the read-only handle lives).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The file system the database runs on. Default = the host's ([`crate::fs::RealFs`]).
    ///
    /// Every file the engine reads or writes goes through it, so another implementation can
    /// keep a database in memory or inject faults into any call.
    pub fn file_system(mut self, fs: std::sync::Arc<dyn crate::fs::FileSystem>) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Test-only (feature `test-hooks`): pause for `delay` inside the two windows the
    /// invalidate lock protects: between a buffer-pool fill's extent lookup and its block read,
    /// and between a relocation's pool invalidation and its extent remap.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn test_race_window(mut self, delay: std::time::Duration) -> Self {
        self.test_race_window = Some(delay);
        self
    }

    /// Test-only (feature `test-hooks`): calls `hook` each time value blocks that a manifest
    /// record freed become reusable, on the thread that freed them, right after they do (the
    /// thread still holds the reclamation job lock). The record must be durable by then (DESIGN
    /// invariant 2b): the free-durability test pauses here, reuses the blocks and cuts the
    /// power.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn test_on_release(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.test_on_release = Some(TestHook(std::sync::Arc::new(hook)));
        self
    }

    /// Opens (or creates) the database in `path`.
    ///
    /// # Errors
    /// `InvalidArgument` for bad options, `Locked` if another handle holds the directory,
    /// `Corruption` if its files are damaged, `Io` for I/O errors.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        self.validate()?;
        Db::open_with(path.as_ref(), self)
    }

    fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(what))
            }
        };
        check(
            self.memtable_bytes >= 4 << 10,
            "memtable_bytes must be at least 4 KiB",
        )?;
        check(
            self.memtable_bytes <= 1 << 30,
            "memtable_bytes must be at most 1 GiB",
        )?;
        check(
            self.memtable_value_bytes >= 1 << 20,
            "memtable_value_bytes must be at least 1 MiB",
        )?;
        check(
            (64..=(4 << 20)).contains(&self.block_size_bytes),
            "block_size_bytes must be between 64 B and 4 MiB",
        )?;
        check(
            self.table_target_bytes >= 4 << 10,
            "table_target_bytes must be at least 4 KiB",
        )?;
        check(
            self.level_base_bytes >= 4 << 10,
            "level_base_bytes must be at least 4 KiB",
        )?;
        check(
            (2..=100).contains(&self.level_multiplier),
            "level_multiplier must be 2..=100",
        )?;
        check(
            self.l0_compaction_trigger >= 1,
            "l0_compaction_trigger must be at least 1",
        )?;
        check(
            self.l0_stop_writes > self.l0_compaction_trigger,
            "l0_stop_writes must exceed l0_compaction_trigger",
        )?;
        check(
            (1..=16).contains(&self.max_immutable_memtables),
            "max_immutable_memtables must be 1..=16",
        )?;
        check(
            self.bloom_bits_per_key <= 64,
            "bloom_bits_per_key must be at most 64",
        )?;
        check(
            self.value_threshold_bytes >= 1,
            "value_threshold_bytes must be at least 1",
        )?;
        let block = self.block_size_bytes as u64;
        check(
            self.value_segment_bytes >= 4 * block && self.value_segment_bytes.is_multiple_of(block),
            "value_segment_bytes must be a multiple of block_size_bytes, at least 4 blocks",
        )?;
        check(
            self.value_file_bytes >= block,
            "value_file_bytes must be at least one block",
        )?;
        check(
            self.value_gc_bytes_per_sec >= 1 << 20,
            "value_gc_bytes_per_sec must be at least 1 MiB/s",
        )?;
        check(
            self.zero_ahead_bytes <= MAX_ZERO_AHEAD_BYTES,
            "zero_ahead_bytes must be at most 16 MiB",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ahead_is_bounded_and_can_be_off() {
        let dir = tempfile::tempdir().unwrap();
        let err = Options::new()
            .zero_ahead_bytes(MAX_ZERO_AHEAD_BYTES + 1)
            .open(dir.path())
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("zero_ahead_bytes")),
            "{err:?}"
        );
        for bytes in [0, MAX_ZERO_AHEAD_BYTES] {
            let db = Options::new()
                .zero_ahead_bytes(bytes)
                .open(dir.path())
                .unwrap();
            for i in 0..64u8 {
                db.put([i], vec![i; 3000]).unwrap();
            }
            for i in 0..64u8 {
                assert_eq!(db.get([i]).unwrap().unwrap(), vec![i; 3000]);
            }
        }
    }
}
