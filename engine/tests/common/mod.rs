//! Helpers shared by the behaviour tests: the tiny configuration that makes flushes and
//! compactions happen constantly, and reading a database into a model map.

#![allow(dead_code, reason = "each test file uses some of these helpers")]

pub mod workload;

use std::collections::BTreeMap;

use extentdb::{Db, Key, Options, Result, Value};

/// What a database holds, as a plain ordered map.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A 4 KiB memtable, 256-byte blocks, 8 KiB tables and a 16 KiB level 1: a few hundred
/// writes flush, compact and reach deeper levels. A value segment's write-back starts every
/// 2 KiB written to it, so those calls (and their failures) come often too.
pub fn tiny() -> Options {
    Options::new()
        .memtable_bytes(4 << 10)
        .block_size_bytes(256)
        .table_target_bytes(8 << 10)
        .level_base_bytes(16 << 10)
        .l0_compaction_trigger(2)
        .l0_stop_writes(6)
        .writeback_bytes(2 << 10)
}

/// Owned pairs of an iterator, or its first error.
pub fn try_collect(
    it: impl Iterator<Item = Result<(Key, Value)>>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    it.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// Everything in the database, or the first error.
pub fn try_scan(db: &Db) -> Result<Model> {
    db.range::<&[u8], _>(..)
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// Everything in the database; panics on an error.
pub fn scan(db: &Db) -> Model {
    match try_scan(db) {
        Ok(model) => model,
        Err(e) => panic!("scan failed: {e}"),
    }
}
