//! [`Stats`]: what [`Db::stats`](crate::Db::stats) reports, and the counters behind it.
//!
//! Counters are relaxed atomics: each is exact, but a `Stats` is not one atomic picture.

use std::sync::atomic::{AtomicU64, Ordering};

/// Event counters kept while the database is open.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub writes: AtomicU64,
    pub write_groups: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub write_stalls: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub trivial_moves: AtomicU64,
    pub compaction_read_bytes: AtomicU64,
    pub compaction_write_bytes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One level of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelStats {
    /// Tables in the level.
    pub tables: usize,
    /// Their total size in bytes.
    pub size_bytes: u64,
}

/// A report on the database.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// The sequence number of the last acknowledged write.
    pub last_sequence: u64,
    /// Bytes held by the active memtable.
    pub memtable_bytes: u64,
    /// Frozen memtables waiting to be flushed.
    pub immutable_memtables: usize,
    /// Per level, from level 0.
    pub levels: Vec<LevelStats>,
    /// Total bytes of all live tables.
    pub table_bytes: u64,
    /// Snapshots currently held.
    pub snapshots: usize,
    /// Write batches committed since open.
    pub writes: u64,
    /// Groups the batches were committed in (one WAL write each).
    pub write_groups: u64,
    /// Bytes appended to the write-ahead log since open.
    pub wal_bytes: u64,
    /// `fdatasync` calls on the write-ahead log since open.
    pub wal_syncs: u64,
    /// Times a writer waited for a flush or compaction.
    pub write_stalls: u64,
    /// Memtables flushed since open.
    pub flushes: u64,
    /// Bytes of tables written by flushes.
    pub flush_bytes: u64,
    /// Compactions run (trivial moves excluded).
    pub compactions: u64,
    /// Tables moved down a level without rewriting.
    pub trivial_moves: u64,
    /// Bytes read by compactions.
    pub compaction_read_bytes: u64,
    /// Bytes written by compactions.
    pub compaction_write_bytes: u64,
    /// Table block cache hits.
    pub block_cache_hits: u64,
    /// Table block cache misses.
    pub block_cache_misses: u64,
    /// Value files.
    pub value_files: usize,
    /// Blocks mapped by value files' extent maps.
    pub value_mapped_blocks: u64,
    /// Free blocks of the block store, reusable now.
    pub value_free_blocks: u64,
    /// Freed blocks waiting until the record that freed them is durable.
    pub value_pending_blocks: u64,
    /// Blocks of the block store (mapped, free and pending).
    pub value_store_blocks: u64,
    /// Value files relocated (extents moved, pointers unchanged).
    pub value_relocations: u64,
    /// Value files deleted because no pointer named them any more.
    pub value_files_deleted: u64,
    /// Segment files deleted because none of their blocks was in use.
    pub value_segments_removed: u64,
    /// Logical bytes appended to the value files that exist.
    pub value_written_bytes: u64,
    /// Of those, bytes still named by a pointer (`value_written_bytes - value_dead_bytes`).
    pub value_live_bytes: u64,
    /// Bytes no pointer names any more: overwritten, deleted or range-deleted values that index
    /// compaction dropped. Freed as their blocks become wholly dead or their files are
    /// evacuated.
    pub value_dead_bytes: u64,
    /// Bytes the block store's segment files occupy on disk, holes excluded (what `du`
    /// counts); `None` if the file system could not say (a failed `fstat`).
    pub value_disk_bytes: Option<u64>,
    /// Bytes value compaction copied: relocations and evacuations.
    pub value_gc_written_bytes: u64,
    /// Bytes of written blocks freed because nothing in them was live.
    pub value_reclaimed_bytes: u64,
    /// Values evacuated (moved to a new file, their pointers rewritten by index compaction).
    pub value_evacuations: u64,
    /// Freed blocks whose space was given back to the file system (hole punching).
    pub value_punched_blocks: u64,
    /// Free blocks whose space the segment files may still hold: freed blocks are left
    /// unpunched for reuse, and punched once they pass a quarter of the store, and all of them
    /// by `Db::compact`.
    pub value_unpunched_blocks: u64,
    /// True if the file system refused to punch holes: freed blocks are still reused, but their
    /// space is not returned to the file system.
    pub value_punch_unsupported: bool,
    /// Buffer pool: lookups served from memory.
    pub pool_hits: u64,
    /// Buffer pool: lookups that needed a fill.
    pub pool_misses: u64,
    /// Buffer pool: fills (reads from the block store).
    pub pool_fills: u64,
    /// Buffer pool: bytes read by fills.
    pub pool_fill_bytes: u64,
    /// Buffer pool: runs evicted for space.
    pub pool_evictions: u64,
    /// Buffer pool: runs dropped by invalidation.
    pub pool_invalidations: u64,
    /// Buffer pool: fills that waited for another fill of the same block.
    pub pool_waits: u64,
    /// Buffer pool: fills retried from the extent lookup because a run they waited for was
    /// dropped.
    pub pool_retries: u64,
    /// Buffer pool: bytes held.
    pub pool_resident_bytes: u64,
    /// Buffer pool: bytes of free run buffers kept for later fills instead of being freed
    /// (at most an eighth of `Options::cache_bytes`, on top of `pool_resident_bytes`).
    pub pool_free_bytes: u64,
    /// Buffer pool: fills that read into a recycled buffer instead of allocating one.
    pub pool_recycled_fills: u64,
}

impl Stats {
    /// Space amplification of the value store: bytes on disk per live logical byte
    /// (`value_disk_bytes / value_live_bytes`); `None` while nothing is live, or if the bytes
    /// on disk are unknown.
    #[must_use]
    pub fn value_space_amplification(&self) -> Option<f64> {
        let disk = self.value_disk_bytes?;
        (self.value_live_bytes > 0).then(|| disk as f64 / self.value_live_bytes as f64)
    }

    /// Write amplification of value compaction: bytes it copied per byte it freed
    /// (`value_gc_written_bytes / value_reclaimed_bytes`); `None` before anything is freed.
    #[must_use]
    pub fn value_gc_write_amplification(&self) -> Option<f64> {
        (self.value_reclaimed_bytes > 0)
            .then(|| self.value_gc_written_bytes as f64 / self.value_reclaimed_bytes as f64)
    }
}
