//! extentdb behind [`Engine`]: single puts and batches with `Durability::Buffered`, one
//! `Db::sync` per workload, `Db::flush` + `Db::compact` to settle.
//!
//! The cache budget is split between extentdb's two caches by where the values live: values
//! below the value threshold (1 KiB by default) are stored inline in the index's tables, so
//! the table cache gets 7/8 of the budget; larger values live in value files, so the buffer
//! pool gets 7/8. Everything else is `Options::new()`'s default, except `writeback_bytes` and
//! `zero_ahead_bytes` when `--extentdb-writeback-bytes` and `--extentdb-zero-ahead-bytes` give
//! them.

use std::path::{Path, PathBuf};

use extentdb::{Db, Durability, Options, WriteBatch};

use crate::kvbench::Result;
use crate::kvbench::engine::{BatchOp, Engine, EngineConfig, ScanVisitor};

/// extentdb's default `Options::value_threshold_bytes`: values of at least this size are
/// separated into value files.
const VALUE_THRESHOLD_BYTES: usize = 1 << 10;

/// An open extentdb database.
#[derive(Debug)]
pub struct Extentdb {
    db: Db,
    dir: PathBuf,
}

/// Opens a new extentdb database in `dir`.
///
/// # Errors
/// extentdb's error.
pub fn open(dir: &Path, config: &EngineConfig) -> Result<Box<dyn Engine>> {
    let major = config.cache_bytes / 8 * 7;
    let minor = config.cache_bytes - major;
    let (pool, tables) = if config.value_bytes >= VALUE_THRESHOLD_BYTES {
        (major, minor)
    } else {
        (minor, major)
    };
    let mut options = Options::new()
        .cache_bytes(pool)
        .table_cache_bytes(tables)
        .durability(Durability::Buffered);
    if let Some(bytes) = config.extentdb_writeback_bytes {
        options = options.writeback_bytes(bytes);
    }
    if let Some(bytes) = config.extentdb_zero_ahead_bytes {
        options = options.zero_ahead_bytes(bytes);
    }
    let db = options.open(dir)?;
    Ok(Box::new(Extentdb {
        db,
        dir: dir.to_path_buf(),
    }))
}

impl Engine for Extentdb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(key, value)?)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.db.get(key)? {
            Some(value) => visit(&value).map(|()| true),
            None => Ok(false),
        }
    }

    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        let mut batch = WriteBatch::new();
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.put(k, v),
                BatchOp::Delete(k) => batch.delete(k),
            };
        }
        Ok(self.db.write_with(batch, Durability::Buffered)?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        Ok(self.db.delete(key)?)
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        Ok(self.db.delete_range(start..end)?)
    }

    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize> {
        let mut cursor = self.db.cursor(start..);
        let mut n = 0;
        while n < limit
            && let Some((k, v)) = cursor.next()?
        {
            visit(k, v)?;
            n += 1;
        }
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.sync()?)
    }

    fn settle(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(self.db.compact()?)
    }

    fn close(self: Box<Self>) -> Result<()> {
        // Dropping the handle stops the background threads and waits for them.
        drop(self.db);
        Ok(())
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}
