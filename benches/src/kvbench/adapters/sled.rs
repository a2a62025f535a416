//! sled 0.34 (the latest stable release) behind [`Engine`].
//!
//! sled buffers writes in memory and writes them out every 500 ms (its default
//! `flush_every_ms`), with no fsync per write; [`Engine::sync`] is `Db::flush`, which writes
//! and fsyncs everything. sled has no range delete: [`Engine::delete_range`] collects the keys in
//! the range with a scan and removes them in one atomic `Batch`. sled has no compaction to run:
//! settling is `Db::flush`.

use std::path::{Path, PathBuf};

use crate::kvbench::Result;
use crate::kvbench::engine::{BatchOp, Engine, EngineConfig, ScanVisitor};

/// An open sled database; kvbench uses its default tree.
#[derive(Debug)]
pub struct Sled {
    db: sled::Db,
    dir: PathBuf,
}

/// Opens a new sled database in `dir`.
///
/// # Errors
/// sled's error.
pub fn open(dir: &Path, config: &EngineConfig) -> Result<Box<dyn Engine>> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(config.cache_bytes)
        .open()?;
    Ok(Box::new(Sled {
        db,
        dir: dir.to_path_buf(),
    }))
}

impl Engine for Sled {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.insert(key, value)?;
        Ok(())
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.db.get(key)? {
            Some(value) => visit(&value).map(|()| true),
            None => Ok(false),
        }
    }

    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.insert(k, v),
                BatchOp::Delete(k) => batch.remove(k),
            }
        }
        Ok(self.db.apply_batch(batch)?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.remove(key)?;
        Ok(())
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for entry in self.db.range(start..end) {
            let (k, _) = entry?;
            batch.remove(k);
        }
        Ok(self.db.apply_batch(batch)?)
    }

    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize> {
        let mut n = 0;
        for entry in self.db.range(start..).take(limit) {
            let (k, v) = entry?;
            visit(&k, &v)?;
            n += 1;
        }
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush()?;
        drop(self.db);
        Ok(())
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}
