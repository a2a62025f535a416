//! The fill-versus-invalidate race (`DESIGN.md` section 2) as a loom model over the real pool.
//!
//! The world: a "disk" of two physical blocks A and B, a value file whose logical block 0 maps
//! to A (holding `OLD`), its invalidate lock, and a one-shard `BufferPool`. `NEW` was written to
//! B beforehand. Two threads:
//!
//! 1. a reader: under the shared invalidate lock, looks up the extent of logical block 0, then
//!    fills the pool through `BufferPool::fill`, whose `read` reads that physical block;
//! 2. a range delete / compaction commit: under the exclusive lock, invalidates logical block 0
//!    in the pool and remaps it to B; then A is freed and at once reused (overwritten with
//!    `REUSED`) by another writer.
//!
//! Afterwards the pool's entry for block 0, if any, must equal the current logical content
//! (`NEW`), and the reader must have got `OLD` or `NEW`, never `REUSED`.
//!
//! `with_lock = false` is the switch that skips the invalidate lock in both threads. The second
//! test runs that variant and asserts loom finds an interleaving with a stale fill, so the first
//! test is known to be able to fail.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p extentdb --lib --release loom -- --nocapture`.
//! Thread-safety: each model execution builds its own world; the statics only count and flag.
//! Read next: `pool.rs` (what the model exercises) or `DESIGN.md` section 7.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "model helpers: a panic is the model's failure, which loom reports"
)]

use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};
use std::time::Instant;

use bytes::Bytes;

use crate::sync::{Arc, Mutex, RwLock};
use crate::value::block::{LogicalBlock, PhysicalBlock, ValueFileId};

use super::{BufferPool, Cached, ExclusiveLockToken, FillError, SharedLockToken};

const BLOCK: usize = 4;
const OLD: [u8; BLOCK] = [1; BLOCK];
const NEW: [u8; BLOCK] = [2; BLOCK];
const REUSED: [u8; BLOCK] = [9; BLOCK];
const FILE: ValueFileId = ValueFileId(7);
const A: PhysicalBlock = PhysicalBlock(0);
const B: PhysicalBlock = PhysicalBlock(1);

/// No bound: the search is exhaustive. The models are small enough (about 10^5 executions,
/// seconds in release); set a bound here if the model grows past a couple of minutes.
const PREEMPTION_BOUND: Option<usize> = None;

struct World {
    disk: [Mutex<[u8; BLOCK]>; 2],
    extent: RwLock<PhysicalBlock>,
    invalidate_lock: RwLock<()>,
    pool: BufferPool,
}

impl World {
    fn new() -> Self {
        Self {
            disk: [Mutex::new(OLD), Mutex::new(NEW)],
            extent: RwLock::new(A),
            invalidate_lock: RwLock::new(()),
            pool: BufferPool::with_shards(16 * BLOCK as u64, BLOCK, 1),
        }
    }

    fn disk(&self, block: PhysicalBlock) -> &Mutex<[u8; BLOCK]> {
        &self.disk[block.0 as usize]
    }

    /// Thread 1: extent lookup, read, insert (E2).
    fn read_logical_0(&self, with_lock: bool) -> Result<Bytes, FillError> {
        let guard = with_lock.then(|| self.invalidate_lock.read());
        let token = match &guard {
            Some(guard) => SharedLockToken::new(FILE, guard),
            None => SharedLockToken::unchecked(FILE),
        };
        let physical = *self.extent.read();
        self.pool.fill(FILE, 0, BLOCK, &token, |block, buf| {
            assert_eq!(block, LogicalBlock(0));
            buf.copy_from_slice(&*self.disk(physical).lock());
            Ok(())
        })
    }

    /// Thread 2: invalidate, remap, free and reuse (E11/E13).
    fn punch_and_reuse(&self, with_lock: bool) {
        {
            let guard = with_lock.then(|| self.invalidate_lock.write());
            let token = match &guard {
                Some(guard) => ExclusiveLockToken::new(FILE, guard),
                None => ExclusiveLockToken::unchecked(FILE),
            };
            self.pool.invalidate(FILE, LogicalBlock(0), 1, &token);
            *self.extent.write() = B;
        }
        // A is free once the exclusive section ends, and is reused at once.
        *self.disk(A).lock() = REUSED;
    }

    fn logical_0(&self) -> [u8; BLOCK] {
        *self.disk(*self.extent.read()).lock()
    }
}

/// One execution with `readers` reader threads; returns a description of what went stale, if
/// anything did, and whether a reader waited on another's latch.
fn execution(with_lock: bool, readers: usize) -> (Option<String>, bool) {
    let world = Arc::new(World::new());
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let world = world.clone();
            loom::thread::spawn(move || world.read_logical_0(with_lock))
        })
        .collect();
    world.punch_and_reuse(with_lock);
    let reads: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let current = world.logical_0();
    assert_eq!(current, NEW);
    for read in &reads {
        if with_lock {
            assert!(
                read.is_ok(),
                "a fill under the lock cannot be retried: {read:?}"
            );
        }
        if let Ok(bytes) = read
            && bytes[..] != OLD
            && bytes[..] != NEW
        {
            return (Some(format!("a reader got {bytes:?}")), false);
        }
    }
    let stale = match world.pool.lookup(FILE, 0, BLOCK) {
        Cached::Hit(bytes) if bytes[..] != current => Some(format!("the pool caches {bytes:?}")),
        Cached::Hit(_) | Cached::Miss => None,
    };
    (stale, world.pool.stats().waits > 0)
}

fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = PREEMPTION_BOUND;
    builder
}

/// Runs the locked model with `readers` readers; panics on a stale fill.
/// Returns how many executions had a reader wait on another's latch.
fn check_locked(readers: usize, counts: &'static [StdAtomicUsize; 2]) -> usize {
    let start = Instant::now();
    builder().check(move || {
        let (stale, waited) = execution(true, readers);
        if let Some(stale) = stale {
            panic!("stale fill with the invalidate lock: {stale}");
        }
        counts[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counts[1].fetch_add(usize::from(waited), std::sync::atomic::Ordering::Relaxed);
    });
    let [executions, waited] = counts
        .each_ref()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!(
        "with the invalidate lock, {readers} reader(s): {executions} executions \
         ({waited} with a latch wait), no stale fill, {:?}",
        start.elapsed()
    );
    waited
}

#[test]
fn loom_fill_racing_punch_and_reuse_never_caches_a_stale_block() {
    static COUNTS: [StdAtomicUsize; 2] = [StdAtomicUsize::new(0), StdAtomicUsize::new(0)];
    check_locked(1, &COUNTS);
}

/// Two readers of the same block: one loads, the other waits on its latch (single flight),
/// racing the punch; neither may see or cache a stale block.
#[test]
fn loom_two_fills_racing_punch_and_reuse_never_cache_a_stale_block() {
    static COUNTS: [StdAtomicUsize; 2] = [StdAtomicUsize::new(0), StdAtomicUsize::new(0)];
    assert!(
        check_locked(2, &COUNTS) > 0,
        "the model never made a fill wait"
    );
}

#[test]
fn loom_without_the_invalidate_lock_finds_the_stale_fill() {
    static EXECUTIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    static STALE: StdAtomicUsize = StdAtomicUsize::new(0);
    static FIRST: StdAtomicBool = StdAtomicBool::new(false);
    let start = Instant::now();
    builder().check(|| {
        EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let (Some(stale), _) = execution(false, 1) {
            STALE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !FIRST.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("without the lock, first stale execution: {stale}");
            }
        }
    });
    let (executions, stale) = (
        EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed),
        STALE.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!(
        "without the invalidate lock: {executions} executions, {stale} stale, {:?}",
        start.elapsed()
    );
    assert!(
        stale > 0,
        "loom explored {executions} executions and found no stale fill"
    );
}
