//! A run: the pool's cached unit, one contiguous buffer of consecutive logical blocks of one
//! value file, read by one fill, and its latch (the kernel's folio lock plus `PG_uptodate`).
//!
//! A run's life is `Loading -> Ready -> Dropped` or `Loading -> Dropped`:
//!
//! - **Loading**: claimed by one fill, which owns it. Only the owner extends it (while claiming
//!   adjacent absent blocks) or publishes it. Other fills that need its blocks wait on the latch.
//! - **Ready**: holds its bytes; lookups serve them, eviction may drop it.
//! - **Dropped**: evicted, invalidated, or abandoned after a failed read. Final. It holds no
//!   bytes; a waiter that wakes to `Dropped` must retry from its extent lookup and never use
//!   anything it learnt before (the kernel's `AOP_TRUNCATED_PAGE`). Callers that cloned the
//!   bytes earlier keep them: the buffer is reference-counted.
//!
//! Invariants: the block count only grows, and only while Loading, so once a run is Dropped
//! its extent is final and whoever dropped it can find every page-table slot that maps to it.
//!
//! Thread-safety: the state and extent sit behind the latch mutex, which is innermost in the
//! lock order (`DESIGN.md` section 4: pool shard, then frame state). Nothing else is locked
//! while it is held, except that a claiming fill takes it inside its shard lock. The access
//! frequency is a relaxed atomic: it only steers eviction. Read next: `table.rs`.

use bytes::Bytes;

use crate::sync::{Arc, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, Rank};
use crate::value::block::{LogicalBlock, ValueFileId};

/// The ceiling of the 2-bit access counter (S3-FIFO).
const FREQ_MAX: usize = 3;

/// Where a run is in its life.
#[derive(Debug)]
enum RunState {
    Loading,
    Ready(Bytes),
    Dropped,
}

/// The latch-protected part of a run.
#[derive(Debug)]
struct Latch {
    state: RunState,
    /// Blocks covered, from `Run::first`. Grows only while Loading.
    blocks: u64,
}

/// What dropping a run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dropped {
    /// `Some(bytes)` if the run was Ready (it was resident and counted in the budget).
    pub ready_bytes: Option<u64>,
    /// The run's final extent, in blocks from `first`.
    pub blocks: u64,
}

/// One cached buffer of consecutive blocks. Shared by the page table, the eviction queues and
/// the fills waiting on it, through `Arc`.
#[derive(Debug)]
pub(super) struct Run {
    file: ValueFileId,
    first: LogicalBlock,
    freq: AtomicUsize,
    latch: Mutex<Latch>,
    loaded: Condvar,
    /// Byte ranges of this run whose checksum a reader already verified. A run's bytes never
    /// change once it is Ready, so a range checked once stays checked for the run's life, and
    /// later hits need not hash it again.
    verified: Mutex<Verified>,
}

/// Verified ranges remembered per run; past this, ranges are checked on every hit.
const VERIFIED_MAX: usize = 64;

/// A verified range: `(offset, len, crc)`.
type Range = (u64, usize, u32);

/// A run's verified ranges. The first is kept inline: a point read's run holds one value, and
/// a list for it cost an allocation per fill and a pointer chase per hit (`cargo bench -p
/// extentdb-benches --bench components -- buffer_pool`: a hit of a 4 KiB value 10% faster
/// inline). Readahead runs, which hold many values, spill into the list.
#[derive(Debug, Default)]
struct Verified {
    first: Option<Range>,
    more: Vec<Range>,
}

impl Verified {
    fn contains(&self, range: &Range) -> bool {
        self.first.as_ref() == Some(range) || self.more.contains(range)
    }

    fn push(&mut self, range: Range) {
        if self.first.is_none() {
            self.first = Some(range);
        } else if self.more.len() + 1 < VERIFIED_MAX {
            self.more.push(range);
        }
    }
}

impl Run {
    /// A new Loading run of one block, owned by the fill that creates it.
    pub(super) fn new_loading(file: ValueFileId, first: LogicalBlock) -> Arc<Run> {
        Arc::new(Run {
            file,
            first,
            freq: AtomicUsize::new(0),
            latch: Mutex::ranked(
                Rank::PoolRun,
                Latch {
                    state: RunState::Loading,
                    blocks: 1,
                },
            ),
            loaded: Condvar::new(),
            verified: Mutex::ranked(Rank::Leaf, Verified::default()),
        })
    }

    /// True if `(offset, len)` was verified against `crc`.
    pub(super) fn is_verified(&self, offset: u64, len: usize, crc: u32) -> bool {
        self.verified.lock().contains(&(offset, len, crc))
    }

    /// Remembers that `(offset, len)` matches `crc`.
    pub(super) fn mark_verified(&self, offset: u64, len: usize, crc: u32) {
        self.verified.lock().push((offset, len, crc));
    }

    pub(super) fn file(&self) -> ValueFileId {
        self.file
    }

    pub(super) fn first(&self) -> LogicalBlock {
        self.first
    }

    /// Adds the next block to a Loading run; false if the run was dropped meanwhile (the
    /// owner must then start a new run).
    ///
    /// # Locking
    ///
    /// REQUIRES: the owner's shard lock of the block being added, so that the extent and the
    /// slot appear together to an invalidation.
    pub(super) fn try_extend(&self) -> bool {
        let mut latch = self.latch.lock();
        if matches!(latch.state, RunState::Loading) {
            latch.blocks += 1;
            true
        } else {
            false
        }
    }

    /// Loading -> Ready with `bytes`, waking waiters; false if the run was dropped meanwhile.
    pub(super) fn publish(&self, bytes: Bytes) -> bool {
        let mut latch = self.latch.lock();
        if !matches!(latch.state, RunState::Loading) {
            return false;
        }
        latch.state = RunState::Ready(bytes);
        drop(latch);
        self.loaded.notify_all();
        true
    }

    /// Any state -> Dropped, waking waiters. `None` if it already was Dropped (so exactly one
    /// dropper accounts for the run's bytes).
    pub(super) fn drop_run(&self) -> Option<Dropped> {
        let mut latch = self.latch.lock();
        let ready_bytes = match std::mem::replace(&mut latch.state, RunState::Dropped) {
            RunState::Dropped => return None,
            RunState::Loading => None,
            RunState::Ready(bytes) => Some(bytes.len() as u64),
        };
        let blocks = latch.blocks;
        drop(latch);
        self.loaded.notify_all();
        Some(Dropped {
            ready_bytes,
            blocks,
        })
    }

    /// Ready -> Dropped (eviction). `None` if it is not Ready: eviction never touches a
    /// Loading run (E17) and a Dropped one is already gone.
    pub(super) fn evict(&self) -> Option<Dropped> {
        let mut latch = self.latch.lock();
        if !matches!(latch.state, RunState::Ready(_)) {
            return None;
        }
        let ready_bytes = match std::mem::replace(&mut latch.state, RunState::Dropped) {
            RunState::Ready(bytes) => Some(bytes.len() as u64),
            RunState::Loading | RunState::Dropped => None,
        };
        Some(Dropped {
            ready_bytes,
            blocks: latch.blocks,
        })
    }

    /// True while the run is Ready (live in the eviction queues).
    pub(super) fn is_ready(&self) -> bool {
        matches!(self.latch.lock().state, RunState::Ready(_))
    }

    /// Waits until the run is no longer Loading. Returns its bytes if it became Ready, `None`
    /// if it was dropped. Calls `on_wait` once, before the first wait, if it has to wait.
    ///
    /// # Locking
    ///
    /// REQUIRES: no pool lock held (a waiter must not block the owner's publish or an eviction),
    /// and the caller's own Loading runs already published or abandoned (so no wait-for cycle
    /// between two fills can form).
    pub(super) fn wait_loaded(&self, on_wait: impl FnOnce()) -> Option<Bytes> {
        let mut latch = self.latch.lock();
        let mut on_wait = Some(on_wait);
        while matches!(latch.state, RunState::Loading) {
            if let Some(f) = on_wait.take() {
                f();
            }
            latch = wait(&self.loaded, latch);
        }
        match &latch.state {
            RunState::Ready(bytes) => Some(bytes.clone()),
            RunState::Loading | RunState::Dropped => None,
        }
    }

    /// Records a hit (saturating at the 2-bit ceiling; a lost race only loses a count).
    pub(super) fn touch(&self) {
        let freq = self.freq.load(Ordering::Relaxed);
        if freq < FREQ_MAX {
            self.freq.store(freq + 1, Ordering::Relaxed);
        }
    }

    pub(super) fn freq(&self) -> usize {
        self.freq.load(Ordering::Relaxed)
    }

    /// One step down the 2-bit counter (a second chance spent in the main queue).
    pub(super) fn cool(&self) {
        let freq = self.freq.load(Ordering::Relaxed);
        self.freq.store(freq.saturating_sub(1), Ordering::Relaxed);
    }
}

/// `Condvar::wait` with one shape for both builds: parking_lot's takes `&mut guard`, the loom
/// shim's takes and returns the guard.
#[cfg(not(loom))]
fn wait<'a, T>(condvar: &Condvar, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(&mut guard);
    guard
}

#[cfg(loom)]
fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn run() -> Arc<Run> {
        Run::new_loading(ValueFileId(1), LogicalBlock(4))
    }

    #[test]
    fn owner_extends_a_loading_run_but_not_a_dropped_one() {
        let r = run();
        assert!(r.try_extend());
        assert_eq!(r.drop_run().map(|d| d.blocks), Some(2));
        assert!(!r.try_extend());
    }

    #[test]
    fn publish_after_drop_is_refused_and_the_waiter_sees_dropped() {
        let r = run();
        assert!(r.drop_run().is_some());
        assert!(!r.publish(Bytes::from_static(b"x")));
        assert_eq!(r.wait_loaded(|| panic!("waited on a dropped run")), None);
    }

    #[test]
    fn exactly_one_dropper_accounts_for_a_ready_run() {
        let r = run();
        assert!(r.publish(Bytes::from_static(b"abcd")));
        assert_eq!(
            r.evict(),
            Some(Dropped {
                ready_bytes: Some(4),
                blocks: 1
            })
        );
        assert_eq!(r.drop_run(), None);
        assert_eq!(r.evict(), None);
    }

    #[test]
    fn eviction_never_drops_a_loading_run() {
        let r = run();
        assert_eq!(r.evict(), None);
        assert!(r.publish(Bytes::from_static(b"abcd")));
        assert!(r.is_ready());
    }

    #[test]
    fn verified_ranges_are_remembered_up_to_the_bound() {
        let r = run();
        let ranges: Vec<Range> = (0..VERIFIED_MAX as u64 + 5)
            .map(|i| (i * 100, 40, i as u32))
            .collect();
        for &(offset, len, crc) in &ranges {
            assert!(!r.is_verified(offset, len, crc));
            r.mark_verified(offset, len, crc);
        }
        let (kept, dropped) = ranges.split_at(VERIFIED_MAX);
        assert!(kept.iter().all(|&(o, l, c)| r.is_verified(o, l, c)));
        assert!(dropped.iter().all(|&(o, l, c)| !r.is_verified(o, l, c)));
        // Offset, length and checksum must all match.
        assert!(!r.is_verified(0, 40, 1));
        assert!(!r.is_verified(0, 41, 0));
        assert!(!r.is_verified(1, 40, 0));
    }

    #[test]
    fn frequency_saturates_at_three_and_cools_to_zero() {
        let r = run();
        for _ in 0..10 {
            r.touch();
        }
        assert_eq!(r.freq(), 3);
        for _ in 0..10 {
            r.cool();
        }
        assert_eq!(r.freq(), 0);
    }
}
