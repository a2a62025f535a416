//! Entry points for the component benchmarks (`benches/benches/components.rs`): thin wrappers
//! over the engine's internal parts, so each part can be timed alone.
//!
//! Compiled only with the `benching` feature and hidden from the documentation: this is not an
//! API. Each wrapper forwards to the engine's own code and only converts arguments (fixing the
//! options the engine would pass), so a benchmark times exactly what the engine runs; nothing
//! here re-implements a part. Sequence numbers and value file ids are the engine's own types,
//! re-exported; block numbers are plain `u64`s here, converted to the engine's `LogicalBlock` and
//! `PhysicalBlock` at the call (exporting those would make their `add` methods public API).
//!
//! Thread safety: as the wrapped part (see each file). The buffer pool, the memtable and the
//! table may be shared between threads; the log writer, the table builder, the extent map and
//! the allocator change only through `&mut`.

use std::ops::Bound;
use std::sync::Arc;

pub use bytes::Bytes;

pub use crate::key::SeqNo;
pub use crate::value::block::ValueFileId;

use crate::cache::{self, Checked, FillError};
use crate::error::Result;
use crate::fs::{ReadableFile, WritableFile};
use crate::index::memtable;
use crate::index::table::{self, BlockCache, ReadMode, TableOptions};
use crate::key::{InternalKey, ValueKind};
use crate::value::allocator;
use crate::value::block::{LogicalBlock, PhysicalBlock};
use crate::value::extent;
use crate::value::file::InvalidateLock;
use crate::wal;

/// The record log writer (`wal/writer.rs`), as the WAL and the manifest use it.
#[derive(Debug)]
pub struct LogWriter(wal::LogWriter);

impl LogWriter {
    /// A writer appending to `file` (normally newly created and empty).
    #[must_use]
    pub fn new(file: Box<dyn WritableFile>) -> Self {
        Self(wal::LogWriter::new(file))
    }

    /// Appends one record; returns its offset in the file.
    ///
    /// # Errors
    /// As `LogWriter::add_record`.
    pub fn add_record(&mut self, payload: &[u8]) -> Result<u64> {
        self.0.add_record(payload)
    }

    /// Hands buffered records to the operating system (a `Durability::Buffered` commit).
    ///
    /// # Errors
    /// As `LogWriter::flush`.
    pub fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }

    /// Flushes and `fdatasync`s (a `Durability::Sync` commit).
    ///
    /// # Errors
    /// As `LogWriter::sync`.
    pub fn sync(&mut self) -> Result<()> {
        self.0.sync()
    }
}

/// Every record payload of the log `file`, in order, read with the engine's `LogReader`.
///
/// # Errors
/// As `LogReader::next_record`.
pub fn log_records(file: Arc<dyn ReadableFile>) -> Result<Vec<Vec<u8>>> {
    let mut reader = wal::LogReader::new(file);
    let mut records = Vec::new();
    while let Some((_, payload)) = reader.next_record()? {
        records.push(payload);
    }
    Ok(records)
}

/// The memtable (`index/memtable.rs`).
#[derive(Debug)]
pub struct Memtable(memtable::Memtable);

impl Memtable {
    /// An empty memtable.
    #[must_use]
    pub fn new() -> Self {
        Self(memtable::Memtable::new(
            0,
            crate::options::Options::new().memtable_bytes,
        ))
    }

    /// Adds a put of `key` at `seq`, copying both; every version needs its own sequence
    /// number.
    ///
    /// # Panics
    /// If `key` or `value` is longer than `u32::MAX` bytes (the engine's write path refuses
    /// anything over 64 KiB and 128 MiB first); in debug builds, if this version was inserted
    /// before.
    pub fn insert(&self, key: &[u8], seq: SeqNo, value: &[u8]) {
        self.0.insert(key, seq, ValueKind::Put, value);
    }

    /// The value of the newest version of `key` at or below `snapshot`.
    #[must_use]
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Option<Bytes> {
        self.0.get(key, snapshot).map(|found| found.value)
    }

    /// The bytes the memtable charges against its budget.
    #[must_use]
    pub fn approximate_bytes(&self) -> usize {
        self.0.approximate_bytes()
    }
}

impl Default for Memtable {
    fn default() -> Self {
        Self::new()
    }
}

/// The table builder (`index/table/builder.rs`) with the engine's default table options.
#[derive(Debug)]
pub struct TableBuilder(table::TableBuilder);

impl TableBuilder {
    /// A builder writing to `file`, which must be empty; 4 KiB blocks, a restart point every
    /// 16 keys and 10 bloom bits per key, the defaults of `Options`.
    #[must_use]
    pub fn new(file: Box<dyn WritableFile>) -> Self {
        Self(table::TableBuilder::new(file, &TableOptions::default()))
    }

    /// Adds a put of `key` at `seq`; keys must come in internal order.
    ///
    /// # Errors
    /// As `TableBuilder::add`.
    pub fn add(&mut self, key: &[u8], seq: SeqNo, value: &[u8]) -> Result<()> {
        let key = InternalKey::new(Bytes::copy_from_slice(key), seq, ValueKind::Put);
        self.0.add(&key, value)
    }

    /// Writes the metadata blocks and the footer; returns the file's size.
    ///
    /// # Errors
    /// As `TableBuilder::finish`.
    pub fn finish(self) -> Result<u64> {
        Ok(self.0.finish()?.size_bytes)
    }
}

/// An open table (`index/table/reader.rs`) and its own block cache.
#[derive(Debug)]
pub struct Table {
    table: Arc<table::Table>,
    cache: Arc<BlockCache>,
}

impl Table {
    /// Opens the table `file` with a block cache of `cache_bytes`.
    ///
    /// # Errors
    /// As `Table::open`.
    pub fn open(file: Arc<dyn ReadableFile>, cache_bytes: u64) -> Result<Self> {
        let cache = Arc::new(BlockCache::new(cache_bytes));
        let table = table::Table::open(file, 1, Arc::clone(&cache))?;
        Ok(Self { table, cache })
    }

    /// A point lookup of the newest version of `key`, as a read does: the bloom filter, the
    /// index, the block cache (reading the block on a miss) and a seek in the block.
    ///
    /// # Errors
    /// As `Table::get`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let found = self.table.get(key, SeqNo::MAX, ReadMode::Blocking)?;
        Ok(found.map(|found| found.value))
    }

    /// The first entry at or after `key` (user key and value), as a range scan positions its
    /// table iterator: the index, the block cache and decoding the block.
    ///
    /// # Errors
    /// As the table iterator.
    pub fn seek(&self, key: &[u8]) -> Option<Result<(Bytes, Bytes)>> {
        let lower = Bound::Included(Bytes::copy_from_slice(key));
        let entry = self.table.iter(lower, Bound::Unbounded).next()?;
        Some(entry.map(|entry| (entry.key.user_key, entry.value)))
    }

    /// Block cache lookups that found their block.
    #[must_use]
    pub fn cache_hits(&self) -> u64 {
        self.cache.hits()
    }

    /// Block cache lookups that did not.
    #[must_use]
    pub fn cache_misses(&self) -> u64 {
        self.cache.misses()
    }
}

/// Where a bloom filter puts a key's probes (`index/table/bloom.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BloomLayout {
    /// Anywhere in the bit array: table format version 1.
    Flat,
    /// All in one 64-byte line: table format version 2, the one written.
    Blocked,
}

impl BloomLayout {
    fn internal(self) -> table::FilterLayout {
        match self {
            Self::Flat => table::FilterLayout::Flat,
            Self::Blocked => table::FilterLayout::Blocked,
        }
    }
}

/// The contents of the filter block of a table holding `keys` (`index/table/bloom.rs`).
#[must_use]
pub fn bloom_build<'a>(
    bits_per_key: u32,
    layout: BloomLayout,
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut builder = table::BloomBuilder::new(bits_per_key);
    for key in keys {
        builder.add_key(key);
    }
    builder.finish(layout.internal())
}

/// A table's bloom filter (`index/table/bloom.rs`).
#[derive(Debug)]
pub struct BloomFilter(table::BloomFilter);

impl BloomFilter {
    /// Decodes a filter block made by [`bloom_build`] with `layout`.
    ///
    /// # Errors
    /// As `BloomFilter::decode`.
    pub fn decode(block: Vec<u8>, layout: BloomLayout) -> Result<Self> {
        let path = std::path::Path::new("bench.sst");
        Ok(Self(table::BloomFilter::decode(
            Bytes::from(block),
            layout.internal(),
            path,
            0,
        )?))
    }

    /// False only if `key` is certainly not in the filter.
    #[must_use]
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.0.may_contain(key)
    }
}

/// The answer of [`BufferPool::lookup`] (the pool's `Checked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The requested bytes, which match the checksum.
    Hit(Bytes),
    /// Some block is absent or still loading.
    Miss,
    /// The cached bytes do not match the checksum.
    Mismatch,
}

/// The checksum a value pointer holds for `value`, which [`BufferPool::lookup`] checks.
#[must_use]
pub fn value_crc(value: &[u8]) -> u32 {
    crc32fast::hash(value)
}

/// Counters of a [`BufferPool`] (a part of the pool's `PoolStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounters {
    /// Lookups answered from the pool.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Reads made by fills.
    pub fills: u64,
    /// Runs evicted to stay within the budget.
    pub evictions: u64,
}

/// The buffer pool (`cache/`), with one invalidate lock standing in for every value file's.
#[derive(Debug)]
pub struct BufferPool {
    pool: cache::BufferPool,
    invalidate: InvalidateLock,
}

impl BufferPool {
    /// A pool of `capacity_bytes` caching blocks of `block_size_bytes`.
    #[must_use]
    pub fn new(capacity_bytes: u64, block_size_bytes: usize) -> Self {
        Self {
            pool: cache::BufferPool::new(capacity_bytes, block_size_bytes),
            invalidate: InvalidateLock::default(),
        }
    }

    /// The value read path's first step: bytes `[offset, offset + len)` of `file` if cached,
    /// checked against `crc` (CRC-32). No lock, no I/O.
    #[must_use]
    pub fn lookup(&self, file: ValueFileId, offset: u64, len: usize, crc: u32) -> Lookup {
        match self.pool.lookup_checked(file, offset, len, crc) {
            Checked::Hit(bytes) => Lookup::Hit(bytes),
            Checked::Miss => Lookup::Miss,
            Checked::Mismatch => Lookup::Mismatch,
        }
    }

    /// The value read path's second step on a miss: takes the invalidate lock shared and fills
    /// the pool with `[offset, offset + len)` of `file`, calling `read(first_block, buf)` for
    /// each absent span (`first_block` a logical block number). `Ok(None)` when the pool asks
    /// for a retry (a run this fill waited for was dropped).
    ///
    /// # Errors
    /// The error of `read`.
    pub fn fill(
        &self,
        file: ValueFileId,
        offset: u64,
        len: usize,
        mut read: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<Option<Bytes>> {
        let guard = self.invalidate.shared();
        let read = |first: LogicalBlock, buf: &mut [u8]| read(first.0, buf);
        match self.pool.fill(file, offset, len, &guard.token(file), read) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(FillError::Retry) => Ok(None),
            Err(FillError::Failed(e)) => Err(e),
        }
    }

    /// The counters now.
    #[must_use]
    pub fn counters(&self) -> PoolCounters {
        let stats = self.pool.stats();
        PoolCounters {
            hits: stats.hits,
            misses: stats.misses,
            fills: stats.fills,
            evictions: stats.evictions,
        }
    }
}

/// One value file's extent map (`value/extent.rs`).
#[derive(Debug, Default)]
pub struct ExtentMap(extent::ExtentMap);

impl ExtentMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self(extent::ExtentMap::new())
    }

    /// Maps `len` logical blocks from `logical_block` onto the physical blocks from
    /// `physical_block`.
    ///
    /// # Errors
    /// As `ExtentMap::map`.
    pub fn map(&mut self, logical_block: u64, physical_block: u64, len: u64) -> Result<()> {
        self.0.map(
            LogicalBlock(logical_block),
            PhysicalBlock(physical_block),
            len,
        )
    }

    /// The physical block of `logical_block` and how many blocks its extent has left from
    /// there.
    #[must_use]
    pub fn lookup(&self, logical_block: u64) -> Option<(u64, u64)> {
        let (physical, left) = self.0.lookup(LogicalBlock(logical_block))?;
        Some((physical.0, left))
    }

    /// The number of extents.
    #[must_use]
    pub fn extents(&self) -> usize {
        self.0.extents().count()
    }

    /// Verifies the map's invariants.
    ///
    /// # Errors
    /// As `ExtentMap::check`.
    pub fn check(&self) -> Result<()> {
        self.0.check()
    }
}

/// The block allocator (`value/allocator.rs`). Runs are `(first physical block, blocks)`.
#[derive(Debug)]
pub struct Allocator(allocator::Allocator);

fn physical_runs(runs: impl IntoIterator<Item = (u64, u64)>) -> Vec<(PhysicalBlock, u64)> {
    runs.into_iter()
        .map(|(start, len)| (PhysicalBlock(start), len))
        .collect()
}

impl Allocator {
    /// The allocator of a store of `end_block` blocks whose extent maps hold `mapped`.
    ///
    /// # Errors
    /// As `Allocator::from_mapped`.
    pub fn from_mapped(
        mapped: impl IntoIterator<Item = (u64, u64)>,
        end_block: u64,
    ) -> Result<Self> {
        let mapped = physical_runs(mapped);
        Ok(Self(allocator::Allocator::from_mapped(
            mapped,
            PhysicalBlock(end_block),
        )?))
    }

    /// Allocates `n` blocks, extending `hint_block` if it starts a free run.
    pub fn allocate(&mut self, n: u64, hint_block: Option<u64>) -> Vec<(u64, u64)> {
        let runs = self.0.allocate(n, hint_block.map(PhysicalBlock));
        runs.into_iter()
            .map(|(start, len)| (start.0, len))
            .collect()
    }

    /// Frees `runs` once [`Self::release`] reaches `ticket`: how the engine frees.
    ///
    /// # Errors
    /// As `Allocator::free_later`.
    pub fn free_later(
        &mut self,
        runs: impl IntoIterator<Item = (u64, u64)>,
        ticket: u64,
    ) -> Result<()> {
        self.0.free_later(physical_runs(runs), ticket)
    }

    /// Makes every run freed with a ticket up to `ticket` allocatable.
    pub fn release(&mut self, ticket: u64) {
        self.0.release(ticket);
    }

    /// Free blocks below the store's end.
    #[must_use]
    pub fn free_blocks(&self) -> u64 {
        self.0.free_blocks()
    }

    /// Verifies the allocator against `mapped`, every run the extent maps hold.
    ///
    /// # Errors
    /// As `Allocator::check`.
    pub fn check(&self, mapped: &[(u64, u64)]) -> Result<()> {
        self.0.check(&physical_runs(mapped.iter().copied()))
    }
}
