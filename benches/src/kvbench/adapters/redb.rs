//! redb behind [`Engine`]: one table of byte-string keys and values.
//!
//! redb does everything in transactions: each put, delete or batch is one write transaction
//! committed with `Durability::None` (no fsync; durable after the next `Immediate` commit), and
//! [`Engine::sync`] commits an empty transaction with `Durability::Immediate`. Each get and scan
//! opens a read transaction. [`Engine::delete_range`] is `Table::retain_in` removing everything
//! in the range, in one transaction. Settling runs `Database::compact` until it reports nothing
//! left to do.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::kvbench::engine::{BatchOp, Engine, EngineConfig, ScanVisitor};
use crate::kvbench::{Result, error};

/// The one table kvbench uses.
const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("bench");

/// An open redb database.
#[derive(Debug)]
pub struct Redb {
    db: Database,
    dir: PathBuf,
}

/// Opens a new redb database in the file `bench.redb` of `dir`.
///
/// # Errors
/// redb's error, or a cache budget beyond the address space.
pub fn open(dir: &Path, config: &EngineConfig) -> Result<Box<dyn Engine>> {
    let cache = usize::try_from(config.cache_bytes)
        .map_err(|_| error("the cache budget does not fit this machine's address space"))?;
    let db = Database::builder()
        .set_cache_size(cache)
        .create(dir.join("bench.redb"))?;
    let txn = db.begin_write()?;
    txn.open_table(TABLE)?;
    txn.commit()?;
    Ok(Box::new(Redb {
        db,
        dir: dir.to_path_buf(),
    }))
}

impl Redb {
    /// Runs `f` on the table inside one write transaction committed without fsync.
    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<'_, &[u8], &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut table = txn.open_table(TABLE)?;
            f(&mut table)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(|t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        match table.get(key)? {
            Some(value) => visit(value.value()).map(|()| true),
            None => Ok(false),
        }
    }

    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        self.write(|t| {
            for op in ops {
                match *op {
                    BatchOp::Put(k, v) => {
                        t.insert(k, v)?;
                    }
                    BatchOp::Delete(k) => {
                        t.remove(k)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.write(|t| {
            t.remove(key)?;
            Ok(())
        })
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        self.write(|t| Ok(t.retain_in::<&[u8], _>(start..end, |_, _| false)?))
    }

    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let mut n = 0;
        for entry in table.range::<&[u8]>(start..)?.take(limit) {
            let (k, v) = entry?;
            visit(k.value(), v.value())?;
            n += 1;
        }
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        self.sync()?;
        while self.db.compact()? {}
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()?;
        drop(self.db);
        Ok(())
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}
