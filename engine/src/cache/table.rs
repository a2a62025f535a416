//! The page table: `(value file, logical block) -> run`, split into shards.
//!
//! Blocks are grouped in aligned chunks of [`CHUNK_BLOCKS`]; a shard is chosen by hashing
//! `(file, block / CHUNK_BLOCKS)`, so consecutive blocks (a value, a readahead span) mostly
//! fall in one shard and cost one lock and one hash lookup per chunk rather than per block.
//! A run that crosses a chunk boundary has slots in two shards.
//!
//! Invariants:
//! - A slot maps a block to the run whose buffer holds it; its `data` is that run's whole
//!   buffer, set once the run is Ready. A slot without data is a Loading run (or one being
//!   dropped): lookups miss on it, fills wait on its latch.
//! - A block maps to at most one run. A run's buffer may also cover blocks that now map to
//!   another run (a newer fill read them again); removal therefore always checks the run's
//!   identity (`Arc::ptr_eq`) so it never removes a newer run's slot.
//! - An empty chunk is removed, so the table's size follows the resident blocks; its slot
//!   vector is kept for the next chunk of the shard (at most [`SPARE_CHUNKS`] per shard), so
//!   that a stream of fills and evictions over scattered chunks does not allocate and free one
//!   per fill (each is 2.5 KiB, and `malloc` takes glibc's arena lock, which a writer allocating
//!   values may hold: `docs/benchmarks.md` f.4).
//!
//! Thread-safety: one `sync::RwLock` per shard. Lookups take it shared, everything that
//! changes slots takes it exclusive. Nobody holds two shard locks at once; the only lock taken
//! inside a shard lock is a run's latch (`DESIGN.md` section 4 order: shard, then frame state).
//! Read next: `evict.rs`.

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::sync::{Arc, Rank, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::value::block::ValueFileId;

use super::run::Run;

/// Blocks per chunk: the unit of sharding (so a span mostly stays in one shard).
pub(super) const CHUNK_BLOCKS: u64 = 64;

/// Shards in a normal build: enough that 2 to 32 threads rarely meet on one lock.
pub(super) const SHARDS_DEFAULT: usize = 32;

/// Empty chunks' slot vectors kept per shard for reuse.
pub(super) const SPARE_CHUNKS: usize = 8;

/// One block's entry.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub run: Arc<Run>,
    /// The run's whole buffer once it is Ready; `None` while it is Loading.
    pub data: Option<Bytes>,
}

/// The slots of one aligned chunk of one file.
#[derive(Debug)]
struct Chunk {
    slots: Vec<Option<Slot>>,
    used: usize,
}

impl Chunk {
    /// An empty chunk, on `spare`'s last slot vector if it has one (every slot of which is
    /// empty).
    fn new(spare: &mut Vec<Vec<Option<Slot>>>) -> Self {
        Self {
            slots: spare
                .pop()
                .unwrap_or_else(|| vec![None; CHUNK_BLOCKS as usize]),
            used: 0,
        }
    }
}

/// The position of a block: (chunk key, index within the chunk).
fn position(file: ValueFileId, block: u64) -> ((ValueFileId, u64), usize) {
    (
        (file, block / CHUNK_BLOCKS),
        (block % CHUNK_BLOCKS) as usize,
    )
}

/// One shard's part of the table.
#[derive(Debug, Default)]
pub(super) struct Shard {
    chunks: FxHashMap<(ValueFileId, u64), Chunk>,
    /// Slot vectors of removed chunks, all slots empty.
    spare: Vec<Vec<Option<Slot>>>,
}

impl Shard {
    pub(super) fn get(&self, file: ValueFileId, block: u64) -> Option<&Slot> {
        let (key, i) = position(file, block);
        self.chunks.get(&key)?.slots.get(i)?.as_ref()
    }

    /// Maps an absent block to `slot`. A present block is left as it is (callers check first).
    pub(super) fn insert(&mut self, file: ValueFileId, block: u64, slot: Slot) {
        let (key, i) = position(file, block);
        let spare = &mut self.spare;
        let chunk = self.chunks.entry(key).or_insert_with(|| Chunk::new(spare));
        if let Some(entry) = chunk.slots.get_mut(i)
            && entry.is_none()
        {
            *entry = Some(slot);
            chunk.used += 1;
        }
    }

    /// Removes the block's slot if it maps to `run`.
    pub(super) fn remove_if(&mut self, file: ValueFileId, block: u64, run: &Arc<Run>) {
        let (key, i) = position(file, block);
        let Some(chunk) = self.chunks.get_mut(&key) else {
            return;
        };
        if let Some(entry) = chunk.slots.get_mut(i)
            && entry.as_ref().is_some_and(|s| Arc::ptr_eq(&s.run, run))
        {
            *entry = None;
            chunk.used -= 1;
            if chunk.used == 0
                && let Some(chunk) = self.chunks.remove(&key)
            {
                self.keep_spare(chunk);
            }
        }
    }

    /// Gives the block's slot its run's data, if it still maps to `run`.
    pub(super) fn set_data_if(
        &mut self,
        file: ValueFileId,
        block: u64,
        run: &Arc<Run>,
        data: &Bytes,
    ) {
        let (key, i) = position(file, block);
        if let Some(chunk) = self.chunks.get_mut(&key)
            && let Some(Some(slot)) = chunk.slots.get_mut(i)
            && Arc::ptr_eq(&slot.run, run)
        {
            slot.data = Some(data.clone());
        }
    }

    /// Removes every slot of `file` in blocks `[start, end)` and returns the runs they mapped
    /// to (with repeats). Visits only the chunks present in this shard.
    pub(super) fn drain(&mut self, file: ValueFileId, start: u64, end: u64) -> Vec<Arc<Run>> {
        let (first_chunk, last_chunk) = (start / CHUNK_BLOCKS, (end - 1) / CHUNK_BLOCKS);
        let mut runs = Vec::new();
        let spare = &mut self.spare;
        self.chunks.retain(|&(f, c), chunk| {
            if f != file || c < first_chunk || c > last_chunk {
                return true;
            }
            let base = c * CHUNK_BLOCKS;
            for (i, entry) in chunk.slots.iter_mut().enumerate() {
                let block = base + i as u64;
                if block >= start
                    && block < end
                    && let Some(slot) = entry.take()
                {
                    runs.push(slot.run);
                    chunk.used -= 1;
                }
            }
            if chunk.used == 0 && spare.len() < SPARE_CHUNKS {
                spare.push(std::mem::take(&mut chunk.slots));
            }
            chunk.used > 0
        });
        runs
    }

    /// Keeps an emptied chunk's slot vector for reuse, if the shard has room for it.
    fn keep_spare(&mut self, chunk: Chunk) {
        debug_assert_eq!(chunk.used, 0);
        if self.spare.len() < SPARE_CHUNKS {
            self.spare.push(chunk.slots);
        }
    }
}

impl Shard {
    /// The loaded blocks of `file` in this shard, with the buffer of the run holding each and
    /// that run's first block.
    pub(super) fn loaded_blocks(&self, file: ValueFileId) -> Vec<(u64, Bytes, u64)> {
        let mut out = Vec::new();
        for (&(f, chunk), c) in &self.chunks {
            if f != file {
                continue;
            }
            for (i, slot) in c.slots.iter().enumerate() {
                if let Some(Slot {
                    run,
                    data: Some(data),
                }) = slot
                {
                    out.push((chunk * CHUNK_BLOCKS + i as u64, data.clone(), run.first().0));
                }
            }
        }
        out
    }
}

#[cfg(test)]
impl Shard {
    /// Every slot, for invariant checks in tests.
    pub(super) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.values().flat_map(|c| c.slots.iter().flatten())
    }
}

/// The sharded table.
#[derive(Debug)]
pub(super) struct PageTable {
    shards: Vec<RwLock<Shard>>,
}

impl PageTable {
    /// A table of `shards` shards (at least one).
    pub(super) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| RwLock::ranked(Rank::PoolShard, Shard::default()))
                .collect(),
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "the index is reduced modulo len, and new() makes len >= 1"
    )]
    fn shard(&self, file: ValueFileId, block: u64) -> &RwLock<Shard> {
        // A multiplicative mix: files and chunks are small consecutive integers.
        let mixed = (file.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (block / CHUNK_BLOCKS))
            .wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        &self.shards[((mixed >> 32) as usize) % self.shards.len()]
    }

    /// The shard holding `block`, locked shared.
    pub(super) fn read(&self, file: ValueFileId, block: u64) -> RwLockReadGuard<'_, Shard> {
        self.shard(file, block).read()
    }

    /// The shard holding `block`, locked exclusive.
    pub(super) fn write(&self, file: ValueFileId, block: u64) -> RwLockWriteGuard<'_, Shard> {
        self.shard(file, block).write()
    }

    /// Every shard, one at a time, for whole-table sweeps.
    pub(super) fn shards(&self) -> impl Iterator<Item = &RwLock<Shard>> {
        self.shards.iter()
    }

    /// Removes the slots mapping to `run` in its extent `[run.first, run.first + blocks)`.
    ///
    /// # Locking
    ///
    /// REQUIRES: no shard lock held; takes each chunk's shard lock in turn.
    pub(super) fn unmap(&self, run: &Arc<Run>, blocks: u64) {
        let start = run.first().0;
        for (lo, hi) in chunk_spans(start, start.saturating_add(blocks)) {
            let mut shard = self.write(run.file(), lo);
            for block in lo..hi {
                shard.remove_if(run.file(), block, run);
            }
        }
    }

    /// Gives every slot still mapping to `run` its data (publishing it to lookups).
    pub(super) fn set_data(&self, run: &Arc<Run>, blocks: u64, data: &Bytes) {
        let start = run.first().0;
        for (lo, hi) in chunk_spans(start, start.saturating_add(blocks)) {
            let mut shard = self.write(run.file(), lo);
            for block in lo..hi {
                shard.set_data_if(run.file(), block, run, data);
            }
        }
    }
}

/// Splits blocks `[start, end)` at chunk boundaries: each piece lies in one shard.
pub(super) fn chunk_spans(start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut lo = start;
    std::iter::from_fn(move || {
        if lo >= end {
            return None;
        }
        let hi = (lo / CHUNK_BLOCKS + 1)
            .saturating_mul(CHUNK_BLOCKS)
            .min(end);
        let piece = (lo, hi);
        lo = hi;
        Some(piece)
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::value::block::LogicalBlock;

    #[test]
    fn chunk_spans_split_at_chunk_boundaries() {
        let spans: Vec<_> = chunk_spans(60, 140).collect();
        assert_eq!(spans, vec![(60, 64), (64, 128), (128, 140)]);
        assert_eq!(chunk_spans(5, 5).count(), 0);
    }

    #[test]
    fn removal_spares_a_slot_of_a_newer_run() {
        let file = ValueFileId(3);
        let old = Run::new_loading(file, LogicalBlock(0));
        let new = Run::new_loading(file, LogicalBlock(0));
        let mut shard = Shard::default();
        shard.insert(
            file,
            0,
            Slot {
                run: new.clone(),
                data: None,
            },
        );
        shard.remove_if(file, 0, &old);
        assert!(shard.get(file, 0).is_some());
        shard.remove_if(file, 0, &new);
        assert!(shard.get(file, 0).is_none());
        assert!(shard.chunks.is_empty(), "an emptied chunk is removed");
    }

    #[test]
    fn an_emptied_chunk_lends_its_slots_to_the_next_chunk_up_to_the_spare_limit() {
        let file = ValueFileId(4);
        let run = Run::new_loading(file, LogicalBlock(0));
        let slot = || Slot {
            run: run.clone(),
            data: None,
        };
        let mut shard = Shard::default();
        let chunks = SPARE_CHUNKS as u64 + 2;
        for c in 0..chunks {
            shard.insert(file, c * CHUNK_BLOCKS, slot());
        }
        for c in 0..chunks - 1 {
            shard.remove_if(file, c * CHUNK_BLOCKS, &run);
        }
        assert_eq!(shard.spare.len(), SPARE_CHUNKS);
        shard.drain(file, 0, u64::MAX);
        assert_eq!(shard.spare.len(), SPARE_CHUNKS);
        assert!(shard.chunks.is_empty());
        let reused = shard.spare.last().map(|v| v.as_ptr());
        shard.insert(file, 7, slot());
        assert_eq!(shard.spare.len(), SPARE_CHUNKS - 1);
        let chunk = shard.chunks.get(&(file, 0)).unwrap();
        assert_eq!(Some(chunk.slots.as_ptr()), reused, "not the spare vector");
        assert_eq!(
            chunk.slots.iter().flatten().count(),
            1,
            "a stale slot came along"
        );
        assert!(shard.get(file, 7).is_some());
        assert!(shard.get(file, 8).is_none());
    }

    #[test]
    fn drain_removes_only_the_files_blocks_in_range() {
        let (a, b) = (ValueFileId(1), ValueFileId(2));
        let mut shard = Shard::default();
        for block in [0, 5, 70, 200] {
            let slot = Slot {
                run: Run::new_loading(a, LogicalBlock(block)),
                data: None,
            };
            shard.insert(a, block, slot);
        }
        shard.insert(
            b,
            5,
            Slot {
                run: Run::new_loading(b, LogicalBlock(5)),
                data: None,
            },
        );
        assert_eq!(shard.drain(a, 5, 71).len(), 2);
        assert!(shard.get(a, 0).is_some() && shard.get(a, 200).is_some());
        assert!(shard.get(a, 5).is_none() && shard.get(a, 70).is_none());
        assert!(shard.get(b, 5).is_some());
    }
}
