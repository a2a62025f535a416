//! RocksDB (the `rocksdb` crate) behind [`Engine`], with or without blob files.
//!
//! Writes use `WriteOptions::default()`: the WAL is written to the OS per write, not synced
//! (RocksDB's default); [`Engine::sync`] is `DB::flush_wal(true)`. The cache budget is one LRU
//! block cache. Compression is off (values are random bytes). With blob files on, values of at
//! least 1 KiB (the threshold extentdb and fjall use) go to blob files, blob garbage
//! collection runs during compaction (default age cutoff 0.25), and blob reads have no cache of
//! their own: RocksDB 7.8's C API cannot set a blob cache. Settling is `DB::flush` and a
//! manual compaction of the whole key range (`compact_range`, default options: every level is
//! merged down into the last one, which is not rewritten on its own). `delete_range` is
//! RocksDB's own range tombstone. Write-back of every file starts each MiB written
//! (`bytes_per_sync`, `wal_bytes_per_sync`), as extentdb's default does for value segments.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteBatch};

use crate::kvbench::Result;
use crate::kvbench::engine::{BatchOp, Engine, EngineConfig, ScanVisitor};

/// The value size from which values go to blob files when they are on.
const MIN_BLOB_BYTES: u64 = 1 << 10;

/// Bytes written to a file between starts of its write-back: extentdb's default
/// `Options::writeback_bytes`.
const WRITEBACK_BYTES: u64 = 1 << 20;

/// An open RocksDB database.
pub struct Rocksdb {
    db: DB,
    /// Kept beside the database that uses it.
    _cache: Cache,
    dir: PathBuf,
}

impl std::fmt::Debug for Rocksdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rocksdb").field("dir", &self.dir).finish()
    }
}

/// Opens a new RocksDB database in `dir`, with blob files when `blob_files`.
///
/// # Errors
/// RocksDB's error, or a cache budget beyond the address space.
pub fn open(dir: &Path, config: &EngineConfig, blob_files: bool) -> Result<Box<dyn Engine>> {
    let cache_bytes = usize::try_from(config.cache_bytes)
        .map_err(|_| crate::kvbench::error("the cache budget does not fit the address space"))?;
    let cache = Cache::new_lru_cache(cache_bytes)?;
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(DBCompressionType::None);
    options.set_bottommost_compression_type(DBCompressionType::None);
    // RocksDB's default (0) leaves all write-back to the kernel and the final sync.
    options.set_bytes_per_sync(WRITEBACK_BYTES);
    options.set_wal_bytes_per_sync(WRITEBACK_BYTES);
    if blob_files {
        options.set_enable_blob_files(true);
        options.set_min_blob_size(MIN_BLOB_BYTES);
        options.set_blob_compression_type(DBCompressionType::None);
        options.set_enable_blob_gc(true);
    }
    let db = DB::open(&options, dir)?;
    Ok(Box::new(Rocksdb {
        db,
        _cache: cache,
        dir: dir.to_path_buf(),
    }))
}

impl Engine for Rocksdb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(key, value)?)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.db.get_pinned(key)? {
            Some(value) => visit(&value).map(|()| true),
            None => Ok(false),
        }
    }

    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.put(k, v),
                BatchOp::Delete(k) => batch.delete(k),
            }
        }
        Ok(self.db.write(batch)?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        Ok(self.db.delete(key)?)
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(start, end);
        Ok(self.db.write(batch)?)
    }

    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(start);
        let mut n = 0;
        while n < limit {
            match (it.key(), it.value()) {
                (Some(k), Some(v)) => visit(k, v)?,
                _ => break,
            }
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }

    fn settle(&mut self) -> Result<()> {
        self.db.flush()?;
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush_wal(true)?;
        drop(self.db);
        Ok(())
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}
