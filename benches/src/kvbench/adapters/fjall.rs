//! fjall behind [`Engine`], with key-value separation on (fjall's default options for it: a
//! 1 KiB threshold, 64 MiB blob files, blob GC during compaction).
//!
//! Writes use fjall's default durability, `PersistMode::Buffer` per write (the journal is
//! handed to the OS, not synced); [`Engine::sync`] is `Database::persist(SyncData)`. fjall has
//! no range delete: [`Engine::delete_range`] collects the keys in the range with a key-only
//! scan and removes them in one atomic batch. Settling rotates the memtable, waits for its
//! flush and runs `Keyspace::major_compact` (both public but `#[doc(hidden)]` in fjall 3.1).
//! fjall is built without its `lz4` feature, so nothing is compressed.

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};

use crate::kvbench::Result;
use crate::kvbench::engine::{BatchOp, Engine, EngineConfig, ScanVisitor};

/// An open fjall database with the one keyspace kvbench uses.
pub struct Fjall {
    db: Database,
    keyspace: Keyspace,
    dir: PathBuf,
}

impl std::fmt::Debug for Fjall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fjall").field("dir", &self.dir).finish()
    }
}

/// Opens a new fjall database in `dir`.
///
/// # Errors
/// fjall's error.
pub fn open(dir: &Path, config: &EngineConfig) -> Result<Box<dyn Engine>> {
    let db = Database::builder(dir)
        .cache_size(config.cache_bytes)
        .open()?;
    let keyspace = db.keyspace("bench", || {
        KeyspaceCreateOptions::default().with_kv_separation(Some(KvSeparationOptions::default()))
    })?;
    Ok(Box::new(Fjall {
        db,
        keyspace,
        dir: dir.to_path_buf(),
    }))
}

impl Engine for Fjall {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.keyspace.insert(key, value)?)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.keyspace.get(key)? {
            Some(value) => visit(&value).map(|()| true),
            None => Ok(false),
        }
    }

    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        let mut batch = self.db.batch();
        for op in ops {
            match *op {
                BatchOp::Put(k, v) => batch.insert(&self.keyspace, k, v),
                BatchOp::Delete(k) => batch.remove(&self.keyspace, k),
            }
        }
        Ok(batch.commit()?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        Ok(self.keyspace.remove(key)?)
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut batch = self.db.batch();
        for guard in self.keyspace.range(start..end) {
            batch.remove(&self.keyspace, guard.key()?);
        }
        Ok(batch.commit()?)
    }

    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize> {
        let mut n = 0;
        for guard in self.keyspace.range(start..).take(limit) {
            let (k, v) = guard.into_inner()?;
            visit(&k, &v)?;
            n += 1;
        }
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncData)?)
    }

    fn settle(&mut self) -> Result<()> {
        self.keyspace.rotate_memtable_and_wait()?;
        Ok(self.keyspace.major_compact()?)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        drop(self.keyspace);
        drop(self.db);
        Ok(())
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}
