//! The fill-versus-invalidate race (`DESIGN.md` section 2) as loom models over the real pool.
//!
//! The world: a "disk" of three physical blocks A, B and C; a value file whose logical block 0
//! maps to A (holding `OLD0`) and logical block 1 to B (holding `OLD1`), its extent map, its
//! invalidate lock and a one-shard `BufferPool`. `NEW` was written to C beforehand. Each model
//! races readers against one switch, which under the exclusive lock invalidates one logical
//! block in the pool and changes its extent; once the exclusive section ends, the block's old
//! physical block is free and at once reused (overwritten with `REUSED`) by another file.
//!
//! - **Remap** (compaction commit, E13): readers look up the extent of block 0 under the shared
//!   lock, then fill it through `BufferPool::fill`, whose `read` reads that physical block; the
//!   switch remaps block 0 from A to C and A is reused.
//! - **Punch** (range-delete reclamation, E11, racing scan readahead, E4): the reader, under the
//!   shared lock, clips a readahead of blocks 0-1 to the mapped run (one or two blocks) and
//!   fills it in one `fill`, whose `read` looks each block up in the extent map as the engine's
//!   `read_blocks` does: an unmapped block fails the read with `Corruption`. The switch unmaps
//!   block 1 and B is reused.
//!
//! Afterwards the pool may hold a block only with the block's current content: `NEW` or `OLD0`
//! for block 0, and nothing for block 1 once it is punched (it has no content). A reader may
//! get, for each block, a content the block really had (`OLD0` or `NEW`, `OLD1`), never
//! `REUSED`; a failed read must be a `Corruption` error. Under the lock every read succeeds.
//!
//! `with_lock = false` is the switch that skips the invalidate lock in both threads. The
//! `without_the_invalidate_lock` tests run that variant and assert loom finds an interleaving
//! with a stale block, so the locked tests are known to be able to fail.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p extentdb --lib --release loom -- --nocapture`.
//! Thread-safety: each model execution builds its own world; the statics only count and flag.
//! Read next: `pool.rs` (what the models exercise) or `DESIGN.md` section 7.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "model helpers: a panic is the model's failure, which loom reports"
)]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};
use std::time::Instant;

use bytes::Bytes;

use crate::sync::{Arc, Mutex, RwLock};
use crate::value::block::{LogicalBlock, PhysicalBlock, ValueFileId};

use super::{BufferPool, Cached, ExclusiveLockToken, FillError, SharedLockToken};

const BLOCK: usize = 4;
const OLD0: [u8; BLOCK] = [1; BLOCK];
const OLD1: [u8; BLOCK] = [3; BLOCK];
const NEW: [u8; BLOCK] = [2; BLOCK];
const REUSED: [u8; BLOCK] = [9; BLOCK];
const FILE: ValueFileId = ValueFileId(7);
const A: PhysicalBlock = PhysicalBlock(0);
const B: PhysicalBlock = PhysicalBlock(1);
const C: PhysicalBlock = PhysicalBlock(2);
const LOGICAL_BLOCKS: usize = 2;

/// Every content each logical block ever has, in either model: what a reader may get.
const WRITTEN: [&[[u8; BLOCK]]; LOGICAL_BLOCKS] = [&[OLD0, NEW], &[OLD1]];

/// The extent map: logical block -> physical block, `None` where unmapped.
type Extents = [Option<PhysicalBlock>; LOGICAL_BLOCKS];

/// No bound: every search is exhaustive. The models are small enough (at most about 10^5
/// executions, seconds in release; the punch model a few thousand); set a bound here, or for
/// one model only, if a model grows past a couple of minutes.
const PREEMPTION_BOUND: Option<usize> = None;

struct World {
    disk: [Mutex<[u8; BLOCK]>; 3],
    extents: RwLock<Extents>,
    invalidate_lock: RwLock<()>,
    pool: BufferPool,
}

impl World {
    fn new() -> Self {
        Self {
            disk: [Mutex::new(OLD0), Mutex::new(OLD1), Mutex::new(NEW)],
            extents: RwLock::new([Some(A), Some(B)]),
            invalidate_lock: RwLock::new(()),
            pool: BufferPool::with_shards(16 * BLOCK as u64, BLOCK, 1),
        }
    }

    fn disk(&self, block: PhysicalBlock) -> &Mutex<[u8; BLOCK]> {
        &self.disk[block.0 as usize]
    }

    /// Runs `f` under the shared invalidate lock, or under none without the lock.
    fn shared<R>(&self, with_lock: bool, f: impl FnOnce(&SharedLockToken<'_>) -> R) -> R {
        let guard = with_lock.then(|| self.invalidate_lock.read());
        match &guard {
            Some(guard) => f(&SharedLockToken::new(FILE, guard)),
            None => f(&SharedLockToken::unchecked(FILE)),
        }
    }

    /// Runs `f` under the exclusive invalidate lock, or under none without the lock.
    fn exclusive<R>(&self, with_lock: bool, f: impl FnOnce(&ExclusiveLockToken<'_>) -> R) -> R {
        let guard = with_lock.then(|| self.invalidate_lock.write());
        match &guard {
            Some(guard) => f(&ExclusiveLockToken::new(FILE, guard)),
            None => f(&ExclusiveLockToken::unchecked(FILE)),
        }
    }

    /// Remap reader: extent lookup, read, insert (E2).
    fn read_logical_0(&self, with_lock: bool) -> Result<Bytes, FillError> {
        self.shared(with_lock, |token| {
            let physical = self.extents.read()[0].unwrap();
            self.pool.fill(FILE, 0, BLOCK, token, |block, buf| {
                assert_eq!(block, LogicalBlock(0));
                buf.copy_from_slice(&*self.disk(physical).lock());
                Ok(())
            })
        })
    }

    /// Punch reader: readahead of blocks 0-1 clipped to the mapped run, then one fill (E4).
    fn read_ahead_0_1(&self, with_lock: bool) -> Result<Bytes, FillError> {
        self.shared(with_lock, |token| {
            let mapped = self
                .extents
                .read()
                .iter()
                .take_while(|e| e.is_some())
                .count();
            self.pool
                .fill(FILE, 0, mapped * BLOCK, token, |first, buf| {
                    self.read_blocks(first, buf)
                })
        })
    }

    /// The fill's `read`: each block through the extent map, as the engine's `read_blocks`.
    fn read_blocks(&self, first: LogicalBlock, buf: &mut [u8]) -> crate::Result<()> {
        for (block, bytes) in (first.0..).zip(buf.chunks_mut(BLOCK)) {
            let physical = self.extents.read()[block as usize].ok_or_else(|| {
                crate::Error::corruption(
                    "model",
                    block * BLOCK as u64,
                    format!("value file {FILE:?} has no block {block}"),
                )
            })?;
            bytes.copy_from_slice(&*self.disk(physical).lock());
        }
        Ok(())
    }

    /// The switch: invalidate `block`, map it to `to`, then free and reuse its old physical
    /// block (E11/E13).
    fn switch_and_reuse(&self, with_lock: bool, block: LogicalBlock, to: Option<PhysicalBlock>) {
        let freed = self.exclusive(with_lock, |token| {
            self.pool.invalidate(FILE, block, 1, token);
            std::mem::replace(&mut self.extents.write()[block.0 as usize], to)
        });
        // The old block is free once the exclusive section ends, and is reused at once.
        *self.disk(freed.unwrap()).lock() = REUSED;
    }

    /// A block the pool holds that is not the block's current content (DESIGN invariant 1).
    fn stale_frame(&self) -> Option<String> {
        let extents = *self.extents.read();
        (0..LOGICAL_BLOCKS).find_map(|block| {
            let current = extents[block].map(|p| *self.disk(p).lock());
            match self.pool.lookup(FILE, (block * BLOCK) as u64, BLOCK) {
                Cached::Hit(bytes) if current.is_none_or(|c| bytes[..] != c) => Some(format!(
                    "the pool caches {bytes:?} for block {block}, whose content is {current:?}"
                )),
                Cached::Hit(_) | Cached::Miss => None,
            }
        })
    }
}

/// Describes a read that returned bytes some block never held. Panics on a read that failed
/// other than cleanly, with `Corruption` (an unmapped block).
fn stale_read(read: &Result<Bytes, FillError>) -> Option<String> {
    match read {
        Ok(bytes) => bytes
            .chunks(BLOCK)
            .zip(WRITTEN)
            .any(|(got, written)| !written.iter().any(|w| got == w))
            .then(|| format!("a reader got {bytes:?}")),
        Err(FillError::Failed(e)) => {
            assert!(e.is_corruption(), "an unexpected read error: {e}");
            None
        }
        Err(FillError::Retry) => None,
    }
}

/// Which race a model runs.
#[derive(Debug, Clone, Copy)]
enum Model {
    /// Fills of block 0 against its remap from A to C.
    Remap,
    /// A readahead of blocks 0-1 against the punch of block 1.
    Punch,
}

impl Model {
    fn read(self, world: &World, with_lock: bool) -> Result<Bytes, FillError> {
        match self {
            Self::Remap => world.read_logical_0(with_lock),
            Self::Punch => world.read_ahead_0_1(with_lock),
        }
    }

    fn switch(self, world: &World, with_lock: bool) {
        match self {
            Self::Remap => world.switch_and_reuse(with_lock, LogicalBlock(0), Some(C)),
            Self::Punch => world.switch_and_reuse(with_lock, LogicalBlock(1), None),
        }
    }

    fn extents_after(self) -> Extents {
        match self {
            Self::Remap => [Some(C), Some(B)],
            Self::Punch => [Some(A), None],
        }
    }
}

/// One execution of `model` with `readers` reader threads; returns a description of what went
/// stale, if anything did, and whether a reader waited on another's latch.
fn execution(model: Model, with_lock: bool, readers: usize) -> (Option<String>, bool) {
    let world = Arc::new(World::new());
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let world = world.clone();
            loom::thread::spawn(move || model.read(&world, with_lock))
        })
        .collect();
    model.switch(&world, with_lock);
    let reads: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(*world.extents.read(), model.extents_after());
    for read in &reads {
        if with_lock {
            assert!(
                read.is_ok(),
                "a fill under the lock can neither be retried nor fail: {read:?}"
            );
        }
        if let Some(stale) = stale_read(read) {
            return (Some(stale), false);
        }
    }
    (world.stale_frame(), world.pool.stats().waits > 0)
}

/// Counts of one model check, kept outside loom's world (which each execution rebuilds).
struct Tally {
    executions: StdAtomicUsize,
    /// Executions with a latch wait (locked runs) or a stale block (unlocked runs).
    marked: StdAtomicUsize,
    first_reported: StdAtomicBool,
}

impl Tally {
    const fn new() -> Self {
        Self {
            executions: StdAtomicUsize::new(0),
            marked: StdAtomicUsize::new(0),
            first_reported: StdAtomicBool::new(false),
        }
    }

    fn count(&self, marked: bool) {
        self.executions.fetch_add(1, Relaxed);
        self.marked.fetch_add(usize::from(marked), Relaxed);
    }

    fn totals(&self) -> (usize, usize) {
        (self.executions.load(Relaxed), self.marked.load(Relaxed))
    }
}

fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = PREEMPTION_BOUND;
    builder.check(f);
}

/// Runs `model` with the lock and `readers` readers; panics on a stale block.
/// Returns how many executions had a reader wait on another's latch.
fn check_locked(model: Model, readers: usize, tally: &'static Tally) -> usize {
    let start = Instant::now();
    check(move || {
        let (stale, waited) = execution(model, true, readers);
        if let Some(stale) = stale {
            panic!("{model:?}: stale block with the invalidate lock: {stale}");
        }
        tally.count(waited);
    });
    let (executions, waited) = tally.totals();
    eprintln!(
        "{model:?} with the invalidate lock, {readers} reader(s): {executions} executions \
         ({waited} with a latch wait), no stale block, {:?}",
        start.elapsed()
    );
    waited
}

/// Runs `model` without the lock, one reader; asserts loom finds a stale block.
fn check_unlocked_finds_stale(model: Model, tally: &'static Tally) {
    let start = Instant::now();
    check(move || {
        let (stale, _) = execution(model, false, 1);
        tally.count(stale.is_some());
        if let Some(stale) = stale
            && !tally.first_reported.swap(true, Relaxed)
        {
            eprintln!("{model:?} without the lock, first stale execution: {stale}");
        }
    });
    let (executions, stale) = tally.totals();
    eprintln!(
        "{model:?} without the invalidate lock: {executions} executions, {stale} stale, {:?}",
        start.elapsed()
    );
    assert!(
        stale > 0,
        "loom explored {executions} executions of {model:?} and found no stale block"
    );
}

#[test]
fn loom_fill_racing_punch_and_reuse_never_caches_a_stale_block() {
    static TALLY: Tally = Tally::new();
    check_locked(Model::Remap, 1, &TALLY);
}

/// Two readers of the same block: one loads, the other waits on its latch (single flight),
/// racing the remap; neither may see or cache a stale block.
#[test]
fn loom_two_fills_racing_punch_and_reuse_never_cache_a_stale_block() {
    static TALLY: Tally = Tally::new();
    assert!(
        check_locked(Model::Remap, 2, &TALLY) > 0,
        "the model never made a fill wait"
    );
}

#[test]
fn loom_without_the_invalidate_lock_finds_the_stale_fill() {
    static TALLY: Tally = Tally::new();
    check_unlocked_finds_stale(Model::Remap, &TALLY);
}

/// A readahead over blocks 0-1 racing the punch of block 1 and the reuse of its physical
/// block: the pool never keeps block 1, and nobody reads the reused bytes.
#[test]
fn loom_readahead_racing_range_delete_punch_never_caches_the_punched_block() {
    static TALLY: Tally = Tally::new();
    check_locked(Model::Punch, 1, &TALLY);
}

#[test]
fn loom_without_the_invalidate_lock_finds_the_punched_block_cached() {
    static TALLY: Tally = Tally::new();
    check_unlocked_finds_stale(Model::Punch, &TALLY);
}
