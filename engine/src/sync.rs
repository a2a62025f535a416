//! The synchronisation primitives of the engine, in one place, and the lock-order checker.
//!
//! Normal builds use parking_lot's locks (no poisoning, small, fast) and std's atomics and
//! `Arc`. Under `RUSTFLAGS="--cfg loom"` the same names resolve to loom's primitives, so the
//! fill-versus-invalidate protocol can be model-checked by exhaustively exploring thread
//! interleavings (`engine/src/cache/loom_tests.rs`). Code of that protocol takes its locks,
//! atomics and `Arc`s from here, never from `std::sync` or `parking_lot` directly.
//!
//! The API is parking_lot's: `lock()`, `read()` and `write()` return guards directly. Locks
//! that loom never needs to see (the write path, the version set) use [`ordered`] directly.
//!
//! **Lock order.** A lock made with `ranked(rank, value)` carries its [`Rank`], the position
//! of the lock in `docs/locking.md`. In debug builds every thread keeps the ranks it holds, and
//! taking a ranked lock that is not ranked above all of them panics, naming both: the documented
//! order is enforced by every test run, not only by review. `try_*` acquisitions cannot
//! deadlock and are not checked. Release builds keep no state.

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use self::ordered::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use self::loom_shim::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// The position of a lock in the order of `docs/locking.md`: a thread may only take a lock
/// ranked above every lock it holds. Locks of one rank are never held together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    CommitQueue = 10,
    Wal = 20,
    /// The flush, compaction and relocation job locks.
    Job = 40,
    /// The evacuation file's appender (taken alone, or before the user appender by `verify`).
    GcAppender = 44,
    ValueAppender = 45,
    ValueFiles = 47,
    Invalidate = 50,
    Extents = 60,
    Allocator = 70,
    PoolEvictor = 75,
    PoolShard = 80,
    PoolRun = 90,
    Versions = 110,
    SuperVersion = 120,
    /// Locks under which no other lock is ever taken.
    Leaf = 130,
}

/// `T` on cache lines of its own: for state that one thread writes often, kept off the lines
/// that other threads only read, which would otherwise miss in their caches after every write.
/// 128 bytes, not 64: x86's spatial prefetcher fetches lines in aligned pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Per-thread bookkeeping of held ranks (debug builds).
mod order {
    use super::Rank;

    #[cfg(debug_assertions)]
    thread_local! {
        static HELD: std::cell::RefCell<Vec<Rank>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Records that `rank` is about to be taken; `check` is false for non-blocking attempts.
    #[cfg(debug_assertions)]
    pub(super) fn acquire(rank: Option<Rank>, check: bool) {
        let Some(rank) = rank else { return };
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if check && let Some(top) = held.iter().copied().filter(|h| *h >= rank).max() {
                panic!(
                    "lock order violation: taking {rank:?} while holding {top:?} \
                     (held: {held:?}); see docs/locking.md"
                );
            }
            held.push(rank);
        });
    }

    #[cfg(debug_assertions)]
    pub(super) fn release(rank: Option<Rank>) {
        let Some(rank) = rank else { return };
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(i) = held.iter().rposition(|h| *h == rank) {
                held.remove(i);
            }
        });
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn acquire(_: Option<Rank>, _: bool) {}

    #[cfg(not(debug_assertions))]
    pub(super) fn release(_: Option<Rank>) {}
}

/// parking_lot's locks, carrying their rank for the order checker. The engine's locks outside
/// the loom-modelled protocol (the write path, the version set) use these directly, in every
/// build; the protocol's locks use them through the names above, which loom replaces.
pub(crate) mod ordered {
    use std::ops::{Deref, DerefMut};
    use std::time::Duration;

    use super::{Rank, order};

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T> {
        rank: Option<Rank>,
        inner: parking_lot::Mutex<T>,
    }

    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T> {
        rank: Option<Rank>,
        inner: parking_lot::MutexGuard<'a, T>,
    }

    impl<T> Mutex<T> {
        /// A lock at `rank` of the documented order.
        pub fn ranked(rank: Rank, value: T) -> Self {
            Self {
                rank: Some(rank),
                inner: parking_lot::Mutex::new(value),
            }
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            order::acquire(self.rank, true);
            MutexGuard {
                rank: self.rank,
                inner: self.inner.lock(),
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.inner
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.inner
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            order::release(self.rank);
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T> {
        rank: Option<Rank>,
        inner: parking_lot::RwLock<T>,
    }

    #[derive(Debug)]
    pub(crate) struct RwLockReadGuard<'a, T> {
        rank: Option<Rank>,
        inner: parking_lot::RwLockReadGuard<'a, T>,
    }

    #[derive(Debug)]
    pub(crate) struct RwLockWriteGuard<'a, T> {
        rank: Option<Rank>,
        inner: parking_lot::RwLockWriteGuard<'a, T>,
    }

    impl<T> RwLock<T> {
        /// A lock outside the documented order, for tests.
        #[cfg(test)]
        pub fn new(value: T) -> Self {
            Self {
                rank: None,
                inner: parking_lot::RwLock::new(value),
            }
        }

        /// A lock at `rank` of the documented order.
        pub fn ranked(rank: Rank, value: T) -> Self {
            Self {
                rank: Some(rank),
                inner: parking_lot::RwLock::new(value),
            }
        }

        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            order::acquire(self.rank, true);
            RwLockReadGuard {
                rank: self.rank,
                inner: self.inner.read(),
            }
        }

        pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
            let inner = self.inner.try_read()?;
            order::acquire(self.rank, false);
            Some(RwLockReadGuard {
                rank: self.rank,
                inner,
            })
        }

        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            order::acquire(self.rank, true);
            RwLockWriteGuard {
                rank: self.rank,
                inner: self.inner.write(),
            }
        }
    }

    impl<T> Deref for RwLockReadGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.inner
        }
    }

    impl<T> Drop for RwLockReadGuard<'_, T> {
        fn drop(&mut self) {
            order::release(self.rank);
        }
    }

    impl<T> Deref for RwLockWriteGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.inner
        }
    }

    impl<T> DerefMut for RwLockWriteGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.inner
        }
    }

    impl<T> Drop for RwLockWriteGuard<'_, T> {
        fn drop(&mut self) {
            order::release(self.rank);
        }
    }

    /// parking_lot's condition variable over the ranked mutex. Waiting releases the mutex and
    /// takes it back; its rank stays recorded as held, which is what the order means: no other
    /// lock is taken by the waiting thread meanwhile.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Self(parking_lot::Condvar::new())
        }

        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            self.0.wait(&mut guard.inner);
        }

        /// Waits at most `timeout`; returns true if the time ran out.
        pub fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, timeout: Duration) -> bool {
            self.0.wait_for(&mut guard.inner, timeout).timed_out()
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        #[cfg(debug_assertions)]
        #[should_panic(expected = "lock order violation")]
        fn taking_a_lower_ranked_lock_panics_in_debug_builds() {
            let versions = Mutex::ranked(Rank::Versions, ());
            let wal = Mutex::ranked(Rank::Wal, ());
            let _v = versions.lock();
            let _w = wal.lock();
        }

        #[test]
        fn locks_taken_in_order_and_released_in_any_order_pass() {
            let wal = Mutex::ranked(Rank::Wal, ());
            let versions = RwLock::ranked(Rank::Versions, ());
            let leaf = Mutex::ranked(Rank::Leaf, ());
            let w = wal.lock();
            let v = versions.read();
            drop(w);
            let l = leaf.lock();
            drop(v);
            drop(l);
            // Everything was released: the lowest rank may be taken again.
            let _again = wal.lock();
            let _v2 = versions.write();
        }

        #[test]
        #[cfg(debug_assertions)]
        #[should_panic(expected = "lock order violation")]
        fn two_locks_of_one_rank_are_never_held_together() {
            let flush = Mutex::ranked(Rank::Job, ());
            let compaction = Mutex::ranked(Rank::Job, ());
            let _f = flush.lock();
            let _c = compaction.lock();
        }
    }
}

/// loom's locks behind parking_lot's method names (loom's are std-shaped and poison). Ranks
/// are accepted and ignored: loom explores orders exhaustively by itself.
#[cfg(loom)]
mod loom_shim {
    pub(crate) use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

    use super::Rank;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }

        pub fn ranked(_: Rank, v: T) -> Self {
            Self::new(v)
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn new(v: T) -> Self {
            Self(loom::sync::RwLock::new(v))
        }

        pub fn ranked(_: Rank, v: T) -> Self {
            Self::new(v)
        }

        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
            self.0.try_read().ok()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }

        /// Waits; unlike parking_lot's, takes the guard by value and returns it.
        pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
