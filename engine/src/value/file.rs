//! [`ValueFile`]: one value file at run time: its invalidate lock, its extent map and how far
//! it has been written.
//!
//! # Locking (`docs/locking.md`)
//!
//! - `invalidate` is the file's invalidate lock. **Shared** by every path that reads physical
//!   blocks of the file or adds its blocks to the buffer pool: the extent lookup, the read and
//!   the insertion happen under it. **Exclusive** by every path that invalidates pool blocks
//!   or frees physical blocks: the invalidation, the extent-map change and the free happen
//!   under it. A pool hit takes nothing.
//! - `extents` guards the extent map: read by fills (inside the shared invalidate lock), written
//!   by appends (which need no invalidate lock: they map fresh blocks nobody can have cached)
//!   and by remaps (inside the exclusive invalidate lock).
//! - `dead` holds the byte ranges no pointer reaches any more (a leaf lock: nothing is taken
//!   while it is held).
//! - `written` is the logical end of the appended bytes. Blocks wholly below it never change
//!   again except through an invalidation; the block it falls in may still receive appends and
//!   is therefore never cached.

use crate::cache::{ExclusiveLockToken, SharedLockToken};
use crate::sync::{AtomicU64, Mutex, Ordering, Rank, RwLock};
use crate::value::block::{LogicalBlock, ValueFileId};
use crate::value::dead::DeadRanges;
use crate::value::extent::ExtentMap;

/// A value file's run-time state.
#[derive(Debug)]
pub(crate) struct ValueFile {
    pub id: ValueFileId,
    pub invalidate: InvalidateLock,
    pub extents: RwLock<ExtentMap>,
    pub dead: Mutex<DeadRanges>,
    written: AtomicU64,
    /// Bumped when the file may have more to reclaim (values died, or it was sealed).
    changes: AtomicU64,
    /// The value of `changes` the last finished reclamation of the file saw.
    reclaimed: AtomicU64,
}

impl ValueFile {
    pub fn new(id: ValueFileId, extents: ExtentMap, dead: DeadRanges, written: u64) -> Self {
        Self {
            id,
            invalidate: InvalidateLock::default(),
            extents: RwLock::ranked(Rank::Extents, extents),
            dead: Mutex::ranked(Rank::Leaf, dead),
            written: AtomicU64::new(written),
            // A file starts out unexamined.
            changes: AtomicU64::new(1),
            reclaimed: AtomicU64::new(0),
        }
    }

    /// Notes that the file may have something new to reclaim.
    pub fn mark_changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// The change count, to hand to [`Self::mark_reclaimed`] once everything reclaimable as
    /// of now is reclaimed; `None` if nothing changed since the last time.
    pub fn unreclaimed_changes(&self) -> Option<u64> {
        let changes = self.changes.load(Ordering::Acquire);
        (changes != self.reclaimed.load(Ordering::Acquire)).then_some(changes)
    }

    /// Records that everything reclaimable as of change count `changes` is reclaimed.
    pub fn mark_reclaimed(&self, changes: u64) {
        self.reclaimed.store(changes, Ordering::Release);
    }

    /// Logical bytes some pointer may still reach: written minus dead.
    pub fn live_bytes(&self) -> u64 {
        self.written().saturating_sub(self.dead.lock().total())
    }

    /// Logical bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Publishes appended bytes (after they are written to the block store).
    pub fn set_written(&self, end: u64) {
        self.written.fetch_max(end, Ordering::AcqRel);
    }

    /// How many logical blocks from `first` on (stopping before `limit`) are mapped without a
    /// hole between them.
    pub fn mapped_run_blocks(&self, first: LogicalBlock, limit: LogicalBlock) -> u64 {
        let extents = self.extents.read();
        let mut at = first;
        while at < limit {
            let Some((_, left)) = extents.lookup(at) else {
                break;
            };
            at = at.add(left);
        }
        at.min(limit).since(first).unwrap_or(0)
    }

    /// The first block that may still change by an append: blocks below it may be cached.
    pub fn first_open_block(&self, block_size: u64) -> LogicalBlock {
        LogicalBlock(self.written() / block_size)
    }
}

/// The invalidate lock of a value file (DESIGN section 2).
///
/// With the test-only feature `test-disable-invalidate-lock` it takes nothing: the race test
/// shows that the engine then serves or caches bytes of reused blocks, which proves the lock is
/// what prevents it.
#[derive(Debug)]
pub(crate) struct InvalidateLock {
    #[cfg_attr(
        feature = "test-disable-invalidate-lock",
        allow(dead_code, reason = "the test feature compiles the lock out")
    )]
    lock: RwLock<()>,
}

impl Default for InvalidateLock {
    fn default() -> Self {
        Self {
            lock: RwLock::ranked(Rank::Invalidate, ()),
        }
    }
}

/// Proof that the invalidate lock is held shared (or, with the lock disabled, that it was
/// asked for).
#[derive(Debug)]
pub(crate) struct SharedGuard<'a> {
    #[cfg(not(feature = "test-disable-invalidate-lock"))]
    _guard: crate::sync::RwLockReadGuard<'a, ()>,
    #[cfg(feature = "test-disable-invalidate-lock")]
    _lock: std::marker::PhantomData<&'a ()>,
}

/// Proof that the invalidate lock is held exclusive.
#[derive(Debug)]
pub(crate) struct ExclusiveGuard<'a> {
    #[cfg(not(feature = "test-disable-invalidate-lock"))]
    _guard: crate::sync::RwLockWriteGuard<'a, ()>,
    #[cfg(feature = "test-disable-invalidate-lock")]
    _lock: std::marker::PhantomData<&'a ()>,
}

impl SharedGuard<'_> {
    /// The buffer pool's proof of this hold, for `file`.
    pub fn token(&self, file: ValueFileId) -> SharedLockToken<'_> {
        #[cfg(not(feature = "test-disable-invalidate-lock"))]
        return SharedLockToken::new(file, &self._guard);
        #[cfg(feature = "test-disable-invalidate-lock")]
        return SharedLockToken::unchecked(file);
    }
}

impl ExclusiveGuard<'_> {
    /// The buffer pool's proof of this hold, for `file`.
    pub fn token(&self, file: ValueFileId) -> ExclusiveLockToken<'_> {
        #[cfg(not(feature = "test-disable-invalidate-lock"))]
        return ExclusiveLockToken::new(file, &self._guard);
        #[cfg(feature = "test-disable-invalidate-lock")]
        return ExclusiveLockToken::unchecked(file);
    }
}

impl InvalidateLock {
    /// Takes the lock shared: for fills.
    pub fn shared(&self) -> SharedGuard<'_> {
        #[cfg(not(feature = "test-disable-invalidate-lock"))]
        return SharedGuard {
            _guard: self.lock.read(),
        };
        #[cfg(feature = "test-disable-invalidate-lock")]
        return SharedGuard {
            _lock: std::marker::PhantomData,
        };
    }

    /// Takes the lock exclusive: for invalidation, remapping and freeing.
    pub fn exclusive(&self) -> ExclusiveGuard<'_> {
        #[cfg(not(feature = "test-disable-invalidate-lock"))]
        return ExclusiveGuard {
            _guard: self.lock.write(),
        };
        #[cfg(feature = "test-disable-invalidate-lock")]
        return ExclusiveGuard {
            _lock: std::marker::PhantomData,
        };
    }
}
