//! The eviction policy: S3-FIFO (Yang et al., "FIFO queues are all you need for cache
//! eviction", SOSP 2023), over runs.
//!
//! - A **small** FIFO (10% of the budget) takes new runs. A run hit while in it (its 2-bit
//!   counter is above zero) moves on to the main FIFO when it reaches the head; one never hit is
//!   evicted and its key goes to the ghost queue. A one-pass scan therefore flows through the
//!   small queue and out without touching the main queue.
//! - A **main** FIFO (the rest) holds runs that proved themselves. At the head, a run with a
//!   count above zero is reinserted with the count lowered by one (CLOCK's second chance, with
//!   up to three chances); one at zero is evicted.
//! - A **ghost** FIFO remembers the keys `(file, first block)` of runs recently evicted from the
//!   small queue (no data, at most `capacity / block size` keys). A fill whose run has a ghost
//!   key goes straight to the main queue: it was evicted too early.
//!
//! Why S3-FIFO: scan resistance (scans and readahead must not flush hot values), no work and no
//! lock on a hit (one relaxed counter, unlike LRU's list move), and a policy of plain queues
//! that is short enough to check by eye. CLOCK-Pro, used by quick_cache for the table block
//! cache, resists scans as well but needs more state per entry and a more intricate hand
//! discipline; 2Q needs a list move on hit.
//!
//! Invariants: the queues hold only runs that were published Ready; a run dropped by
//! invalidation stays in its queue as a dead entry until it reaches the head (or until dead
//! entries are half the queues, when they are swept out), so invalidation never needs this
//! lock for long. Byte totals per queue include dead entries until they are removed.
//!
//! Thread-safety: `Evictor` is plain data behind the pool's evictor mutex, which is taken only
//! by fills (publish and evict) and briefly by invalidation, never by a hit and never with a
//! shard lock held. Eviction never takes an invalidate lock and never evicts a Loading run
//! (E17). Read next: `pool.rs`.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::sync::Arc;
use crate::value::block::{LogicalBlock, ValueFileId};

use super::run::Run;

/// A ghost key: the start of a run that was evicted from the small queue.
type GhostKey = (ValueFileId, LogicalBlock);

/// A queued run and its length (kept here so the byte totals need no latch).
#[derive(Debug)]
struct Entry {
    run: Arc<Run>,
    bytes: u64,
}

/// A FIFO of runs with its byte total.
#[derive(Debug, Default)]
struct Fifo {
    entries: VecDeque<Entry>,
    bytes: u64,
}

impl Fifo {
    fn push(&mut self, entry: Entry) {
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Drops dead entries; returns how many.
    fn sweep(&mut self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.run.is_ready());
        self.bytes = self.entries.iter().map(|e| e.bytes).sum();
        before - self.entries.len()
    }
}

/// Keys of recently evicted small-queue runs, in FIFO order with a membership count.
#[derive(Debug, Default)]
struct Ghost {
    order: VecDeque<GhostKey>,
    count: FxHashMap<GhostKey, u32>,
    max: usize,
}

impl Ghost {
    fn contains(&self, key: &GhostKey) -> bool {
        self.count.contains_key(key)
    }

    fn push(&mut self, key: GhostKey) {
        if self.max == 0 {
            return;
        }
        *self.count.entry(key).or_insert(0) += 1;
        self.order.push_back(key);
        while self.order.len() > self.max {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(n) = self.count.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.count.remove(&old);
                }
            }
        }
    }
}

/// The S3-FIFO queues.
#[derive(Debug)]
pub(super) struct Evictor {
    small: Fifo,
    main: Fifo,
    ghost: Ghost,
    /// The small queue's share of the budget.
    small_target_bytes: u64,
    /// Queued runs known to be dropped (by invalidation) but not yet removed.
    dead: usize,
}

impl Evictor {
    /// Queues for a pool of `capacity_bytes` caching blocks of `block_size_bytes`.
    pub(super) fn new(capacity_bytes: u64, block_size_bytes: usize) -> Self {
        let block = (block_size_bytes as u64).max(1);
        Self {
            small: Fifo::default(),
            main: Fifo::default(),
            ghost: Ghost {
                max: usize::try_from(capacity_bytes / block).unwrap_or(usize::MAX),
                ..Ghost::default()
            },
            small_target_bytes: capacity_bytes / 10,
            dead: 0,
        }
    }

    /// Queues a run that just became Ready.
    pub(super) fn insert(&mut self, run: Arc<Run>, bytes: u64) {
        let entry = Entry { run, bytes };
        if self.ghost.contains(&(entry.run.file(), entry.run.first())) {
            self.main.push(entry);
        } else {
            self.small.push(entry);
        }
    }

    /// Takes the next victim out of the queues: a run that was Ready when chosen. The caller
    /// evicts it (which may find it dropped by a racing invalidation; then it simply is gone).
    /// `None` if no queued run is live.
    pub(super) fn pick_victim(&mut self) -> Option<Arc<Run>> {
        // Each pass either removes an entry or spends one unit of some run's 2-bit count, so
        // this bound is only reached if hits keep raising counts while we loop; then the main
        // queue's head is evicted regardless.
        let mut budget = 4 * (self.small.entries.len() + self.main.entries.len()) + 4;
        loop {
            let from_small =
                self.small.bytes > self.small_target_bytes || self.main.entries.is_empty();
            let entry = if from_small {
                self.small.pop()
            } else {
                self.main.pop()
            }?;
            if !entry.run.is_ready() {
                self.dead = self.dead.saturating_sub(1);
                continue;
            }
            budget = budget.saturating_sub(1);
            let hot = entry.run.freq() > 0 && budget > 0;
            match (from_small, hot) {
                (true, true) => self.main.push(entry),
                (false, true) => {
                    entry.run.cool();
                    self.main.push(entry);
                }
                (true, false) => {
                    self.ghost.push((entry.run.file(), entry.run.first()));
                    return Some(entry.run);
                }
                (false, false) => return Some(entry.run),
            }
        }
    }

    /// Notes `n` queued runs dropped by invalidation; sweeps them out once they are half the
    /// queues, so a long run of invalidations cannot grow the queues without bound.
    pub(super) fn note_dead(&mut self, n: usize) {
        self.dead += n;
        let queued = self.small.entries.len() + self.main.entries.len();
        if self.dead > 64 && self.dead * 2 > queued {
            self.small.sweep();
            self.main.sweep();
            self.dead = 0;
        }
    }

    /// Queued entries (live and dead), for tests.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.small.entries.len() + self.main.entries.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn ready(file: u64, first: u64) -> Arc<Run> {
        let run = Run::new_loading(ValueFileId(file), LogicalBlock(first));
        assert!(run.publish(Bytes::from_static(b"0123456789")));
        run
    }

    #[test]
    fn unhit_small_queue_runs_are_evicted_first_in_fifo_order() {
        let mut ev = Evictor::new(100, 10);
        let (a, b) = (ready(1, 0), ready(1, 1));
        ev.insert(a.clone(), 10);
        ev.insert(b, 10);
        let victim = ev.pick_victim().unwrap();
        assert!(Arc::ptr_eq(&victim, &a));
    }

    #[test]
    fn a_run_hit_in_the_small_queue_is_promoted_and_outlives_a_scan() {
        // Full (10 runs of 10 bytes), then a scan of 20 more runs, one eviction per insert.
        let mut ev = Evictor::new(100, 10);
        let hot = ready(1, 0);
        ev.insert(hot.clone(), 10);
        hot.touch();
        for i in 1..10 {
            ev.insert(ready(1, i), 10);
        }
        for i in 10..30 {
            ev.insert(ready(1, i), 10);
            let victim = ev.pick_victim().unwrap();
            assert!(
                !Arc::ptr_eq(&victim, &hot),
                "scan run {i} evicted the hot run"
            );
            assert!(victim.evict().is_some());
        }
    }

    #[test]
    fn a_ghost_hit_goes_straight_to_the_main_queue() {
        let mut ev = Evictor::new(100, 10);
        let first = ready(1, 7);
        ev.insert(first, 10);
        ev.insert(ready(1, 8), 10);
        assert!(ev.pick_victim().unwrap().evict().is_some());
        ev.insert(ready(1, 7), 10);
        assert_eq!(ev.main.entries.len(), 1);
    }

    #[test]
    fn dead_entries_are_skipped_and_swept() {
        let mut ev = Evictor::new(10_000, 10);
        let runs: Vec<_> = (0..200).map(|i| ready(1, i)).collect();
        for run in &runs {
            ev.insert(run.clone(), 10);
        }
        for run in runs.iter().take(150) {
            assert!(run.drop_run().is_some());
        }
        ev.note_dead(150);
        assert_eq!(ev.queued(), 50);
        let victim = ev.pick_victim().unwrap();
        assert!(Arc::ptr_eq(&victim, &runs[150]));
    }
}
