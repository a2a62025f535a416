//! [`BlockCache`]: the cache of checked data blocks shared by every table of a database.
//!
//! Blocks are keyed by `(table id, block offset)`, weighted by their size in bytes plus a
//! fixed overhead, and evicted by `quick_cache`'s CLOCK-Pro policy once the byte budget is
//! exceeded. A cached block has passed its CRC and restart checks; readers never re-check it.
//!
//! Invariants: a table id names one file for the life of the cache, so a cached block can
//! never be served for a different file (the engine never reuses table ids).
//!
//! Thread safety: `Send + Sync`, shared as `Arc<BlockCache>`; lookups and inserts take a
//! shard lock inside `quick_cache` for the duration of the call only. The hit and miss
//! counters are relaxed atomics: statistics, not synchronisation.
//!
//! Read next: `reader.rs`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::Block;

/// Memory a cached block costs beyond its bytes: the entry, the key and the `Bytes` header.
const BLOCK_OVERHEAD_BYTES: u64 = 64;

/// The typical block size, used only to size the cache's hash tables up front.
const TYPICAL_BLOCK_BYTES: u64 = 4096;

/// Bounds for the up-front table size, so that neither a tiny nor a huge budget misbehaves.
const ESTIMATED_BLOCKS_MIN: u64 = 16;
const ESTIMATED_BLOCKS_MAX: u64 = 1 << 20;

type CacheKey = (u64, u64);

#[derive(Debug, Clone, Copy)]
struct BlockWeighter;

impl Weighter<CacheKey, Block> for BlockWeighter {
    fn weight(&self, _key: &CacheKey, block: &Block) -> u64 {
        block.size_bytes() as u64 + BLOCK_OVERHEAD_BYTES
    }
}

/// A shared cache of decoded table blocks with a byte budget.
pub(crate) struct BlockCache {
    cache: Cache<CacheKey, Block, BlockWeighter>,
    capacity_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("weight_bytes", &self.cache.weight())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding blocks of at most about `capacity_bytes` in total (0 caches nothing).
    #[must_use]
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated_blocks = (capacity_bytes / TYPICAL_BLOCK_BYTES)
            .clamp(ESTIMATED_BLOCKS_MIN, ESTIMATED_BLOCKS_MAX);
        Self {
            cache: Cache::with_weighter(
                usize::try_from(estimated_blocks).unwrap_or(usize::MAX),
                capacity_bytes,
                BlockWeighter,
            ),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached block at `offset` of table `table_id`; counts a hit or a miss.
    #[must_use]
    pub fn get(&self, table_id: u64, offset: u64) -> Option<Block> {
        let block = self.cache.get(&(table_id, offset));
        let counter = if block.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        block
    }

    /// Caches a checked block (possibly evicting others, or not keeping it at all if it is
    /// larger than the budget).
    pub fn insert(&self, table_id: u64, offset: u64, block: Block) {
        self.cache.insert((table_id, offset), block);
    }

    /// Lookups that found their block.
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not.
    #[must_use]
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    /// The bytes currently charged to the cache.
    #[must_use]
    pub fn weight_bytes(&self) -> u64 {
        self.cache.weight()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;

    use super::*;
    use crate::index::table::block::BlockBuilder;

    fn block(size: usize) -> Block {
        let mut b = BlockBuilder::new(16);
        b.add(&[b'k'; 9], &vec![7; size]);
        Block::new(Bytes::from(b.finish()), Path::new("t"), 0).unwrap()
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = BlockCache::new(1 << 20);
        assert!(cache.get(1, 0).is_none());
        cache.insert(1, 0, block(10));
        assert!(cache.get(1, 0).is_some());
        assert!(cache.get(2, 0).is_none());
        assert_eq!((cache.hits(), cache.misses()), (1, 2));
    }

    #[test]
    fn cache_stays_within_its_byte_budget() {
        let cache = BlockCache::new(64 << 10);
        for offset in 0..1000 {
            cache.insert(1, offset, block(1000));
        }
        assert!(cache.weight_bytes() <= 64 << 10, "{}", cache.weight_bytes());
    }

    #[test]
    fn zero_budget_caches_nothing() {
        let cache = BlockCache::new(0);
        cache.insert(1, 0, block(10));
        assert!(cache.get(1, 0).is_none());
    }
}
