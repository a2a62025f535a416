//! The [`Engine`] trait that every benchmarked engine implements, the [`EngineKind`]s kvbench
//! knows, and the settings ([`EngineConfig`]) every engine is opened with.
//!
//! Fairness rules every adapter follows (`docs/benchmarks.md` states them too):
//! - **Durability**: no fsync per write; a workload that writes ends with one [`Engine::sync`]
//!   inside its timed window, which makes every write before it durable.
//! - **Cache**: the same memory budget, [`EngineConfig::cache_bytes`], given to each engine's
//!   block or page cache(s).
//! - **Compression**: off. Benchmark values are random bytes.
//! - Everything else is each engine's default.
//!
//! An engine is shared by reference between a reader and a writer thread in `readwhilewriting`,
//! so it is `Send + Sync`; [`Engine::settle`] takes `&mut self` because redb's compaction needs
//! exclusive access.

use std::fmt;
use std::path::Path;

use super::{Result, adapters, error};

/// What [`Engine::scan`] calls with each key and value.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// One operation of a [`Engine::write_batch`].
#[derive(Debug, Clone, Copy)]
pub enum BatchOp<'a> {
    /// Set `key` to `value`.
    Put(&'a [u8], &'a [u8]),
    /// Remove `key`.
    Delete(&'a [u8]),
}

/// A key-value engine as kvbench drives it. Keys and values are byte strings.
pub trait Engine: Send + Sync {
    /// Sets `key` to `value`, durable only after the next [`Engine::sync`].
    ///
    /// # Errors
    /// The engine's error.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Calls `visit` with the value of `key`, in place where the engine allows it; returns
    /// whether the key was found (`visit` is not called when it was not).
    ///
    /// # Errors
    /// The engine's error, or the error `visit` returned.
    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool>;

    /// Applies `ops` atomically where the engine can (all the engines here can).
    ///
    /// # Errors
    /// The engine's error.
    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()>;

    /// Removes `key`.
    ///
    /// # Errors
    /// The engine's error.
    fn delete(&self, key: &[u8]) -> Result<()>;

    /// Removes every key in `start..end`. Engines without a range delete emulate it (each
    /// adapter's documentation says how); the cost of the emulation is part of the measurement.
    ///
    /// # Errors
    /// The engine's error.
    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()>;

    /// Calls `visit` with up to `limit` entries in key order, from the first key `>= start`;
    /// returns how many it visited.
    ///
    /// # Errors
    /// The engine's error, or the error `visit` returned.
    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize>;

    /// Makes every write before it durable: the one sync a writing workload pays.
    ///
    /// # Errors
    /// The engine's error.
    fn sync(&self) -> Result<()>;

    /// Brings the engine to a settled state: writes buffered data out and runs the engine's
    /// full compaction, where it has one, so that dead data is reclaimed. Not timed.
    ///
    /// # Errors
    /// The engine's error.
    fn settle(&mut self) -> Result<()>;

    /// Closes the engine, waiting for its background work, and reports the error of doing so.
    ///
    /// # Errors
    /// The engine's error.
    fn close(self: Box<Self>) -> Result<()>;

    /// The directory the engine keeps all its files in.
    fn dir(&self) -> &Path;

    /// Bytes on disk: the blocks the files under [`Engine::dir`] occupy (holes excluded).
    ///
    /// # Errors
    /// An I/O error reading the directory.
    fn disk_bytes(&self) -> Result<u64> {
        dir_disk_bytes(self.dir())
    }
}

/// Settings every engine is opened with.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// The memory budget of the engine's caches, in bytes.
    pub cache_bytes: u64,
    /// The size of the values the run writes. extentdb uses it to split its budget between
    /// its two caches (see `adapters::extentdb`); no other engine looks at it.
    pub value_bytes: usize,
    /// extentdb's `Options::writeback_bytes`, if not its default; no other engine looks at it.
    pub extentdb_writeback_bytes: Option<u64>,
    /// extentdb's `Options::zero_ahead_bytes`, if not its default; no other engine looks at it.
    pub extentdb_zero_ahead_bytes: Option<u64>,
}

/// The engines kvbench can run; a peer is there only when its cargo feature was compiled in.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// extentdb.
    Extentdb,
    /// fjall, with key-value separation (its default 1 KiB threshold).
    Fjall,
    /// RocksDB, values in its SST files.
    Rocksdb,
    /// RocksDB with blob files (`enable_blob_files`, `min_blob_size` 1 KiB, blob GC on).
    RocksdbBlob,
    /// sled 0.34.
    Sled,
    /// redb: one write transaction per put or batch.
    Redb,
}

impl EngineKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [EngineKind; 6] = [
        EngineKind::Extentdb,
        EngineKind::Fjall,
        EngineKind::Rocksdb,
        EngineKind::RocksdbBlob,
        EngineKind::Sled,
        EngineKind::Redb,
    ];

    /// The name used on the command line, in reports and in JSON.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Extentdb => "extentdb",
            EngineKind::Fjall => "fjall",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::RocksdbBlob => "rocksdb-blob",
            EngineKind::Sled => "sled",
            EngineKind::Redb => "redb",
        }
    }

    /// The cargo feature that compiles this engine in (`None` for extentdb).
    #[must_use]
    pub fn feature(self) -> Option<&'static str> {
        match self {
            EngineKind::Extentdb => None,
            EngineKind::Fjall => Some("fjall"),
            EngineKind::Rocksdb | EngineKind::RocksdbBlob => Some("rocksdb"),
            EngineKind::Sled => Some("sled"),
            EngineKind::Redb => Some("redb"),
        }
    }

    /// Whether this binary was built with the engine.
    #[must_use]
    pub fn compiled_in(self) -> bool {
        match self {
            EngineKind::Extentdb => true,
            EngineKind::Fjall => cfg!(feature = "fjall"),
            EngineKind::Rocksdb | EngineKind::RocksdbBlob => cfg!(feature = "rocksdb"),
            EngineKind::Sled => cfg!(feature = "sled"),
            EngineKind::Redb => cfg!(feature = "redb"),
        }
    }

    /// The kinds this binary was built with.
    #[must_use]
    pub fn compiled() -> Vec<EngineKind> {
        Self::ALL.into_iter().filter(|k| k.compiled_in()).collect()
    }

    /// Opens a new database of this kind in `dir`, which must exist and be empty.
    ///
    /// # Errors
    /// The engine was not compiled in (the message names the feature), or the engine's error.
    pub fn open(self, dir: &Path, config: &EngineConfig) -> Result<Box<dyn Engine>> {
        match self {
            EngineKind::Extentdb => adapters::extentdb::open(dir, config),
            #[cfg(feature = "fjall")]
            EngineKind::Fjall => adapters::fjall::open(dir, config),
            #[cfg(feature = "rocksdb")]
            EngineKind::Rocksdb => adapters::rocksdb::open(dir, config, false),
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksdbBlob => adapters::rocksdb::open(dir, config, true),
            #[cfg(feature = "sled")]
            EngineKind::Sled => adapters::sled::open(dir, config),
            #[cfg(feature = "redb")]
            EngineKind::Redb => adapters::redb::open(dir, config),
            #[allow(unreachable_patterns, reason = "reached when a peer's feature is off")]
            other => Err(error(format!(
                "engine {} is not compiled into this binary: build with `--features {}`",
                other.name(),
                other.feature().unwrap_or("?")
            ))),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The blocks occupied by every file under `dir`, recursively: `st_blocks * 512`, so sparse
/// files count what they hold, not their length. A file or directory an engine's background
/// thread deletes while it is being counted holds nothing any more and counts 0.
///
/// # Errors
/// An I/O error reading the directory or a file's metadata, other than the entry being gone.
pub fn dir_disk_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let entries = match std::fs::read_dir(dir) {
        Err(e) if gone(&e) => return Ok(0),
        other => other?,
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry?;
        let meta = match entry.metadata() {
            Err(e) if gone(&e) => continue,
            other => other?,
        };
        if meta.is_dir() {
            total += dir_disk_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}
