//! Proofs that the caller holds a value file's invalidate lock, taken as parameters by the pool
//! operations that require it (`DESIGN.md` section 2: "where a lock must be held, take its guard
//! as a parameter").
//!
//! A token borrows the guard it was made from, so it cannot outlive the lock hold, and it names
//! the file whose lock that is, so the pool can assert (in debug builds) that a fill or an
//! invalidation of file `f` was proven with `f`'s lock and not another file's: the kernel's
//! `xfs_isilocked` checked the wrong lock for a year (research notes, section 2.6).
//!
//! The tokens hold no data besides the file id and are `Send + Sync`; they prove nothing about
//! threads other than the one that holds the guard. Read next: `pool.rs`.

use std::marker::PhantomData;

use crate::sync::{RwLockReadGuard, RwLockWriteGuard};
use crate::value::block::ValueFileId;

/// Proof that the caller holds `file`'s invalidate lock **shared** (fills, readahead: E2-E6).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedLockToken<'g> {
    file: ValueFileId,
    held: PhantomData<&'g ()>,
}

impl<'g> SharedLockToken<'g> {
    /// A token for `file`, valid while `guard` (a shared hold of `file`'s invalidate lock) is.
    ///
    /// # Locking
    ///
    /// `guard` must be a guard of `file`'s invalidate lock; the type system checks only that
    /// it is *a* read guard, the pool's debug assertions check the file.
    #[cfg_attr(
        feature = "test-disable-invalidate-lock",
        allow(dead_code, reason = "with the lock disabled no guard exists to prove")
    )]
    pub(crate) fn new<T>(file: ValueFileId, _guard: &'g RwLockReadGuard<'_, T>) -> Self {
        Self {
            file,
            held: PhantomData,
        }
    }

    /// A token with no lock behind it: for unit tests and the loom model's "no lock" variant,
    /// which exist to show what goes wrong without the lock.
    #[cfg(any(test, feature = "test-disable-invalidate-lock"))]
    pub(crate) fn unchecked(file: ValueFileId) -> SharedLockToken<'static> {
        SharedLockToken {
            file,
            held: PhantomData,
        }
    }

    /// The file whose lock is held.
    pub(crate) fn file(&self) -> ValueFileId {
        self.file
    }
}

/// Proof that the caller holds `file`'s invalidate lock **exclusive** (punch, free, remap, drop:
/// E11, E13-E15).
#[derive(Debug)]
pub(crate) struct ExclusiveLockToken<'g> {
    file: ValueFileId,
    held: PhantomData<&'g ()>,
}

impl<'g> ExclusiveLockToken<'g> {
    /// A token for `file`, valid while `guard` (an exclusive hold of `file`'s invalidate lock) is.
    ///
    /// # Locking
    ///
    /// As for [`SharedLockToken::new`], with a write guard.
    #[cfg_attr(
        feature = "test-disable-invalidate-lock",
        allow(dead_code, reason = "with the lock disabled no guard exists to prove")
    )]
    pub(crate) fn new<T>(file: ValueFileId, _guard: &'g RwLockWriteGuard<'_, T>) -> Self {
        Self {
            file,
            held: PhantomData,
        }
    }

    /// A token with no lock behind it, for unit tests.
    #[cfg(any(test, feature = "test-disable-invalidate-lock"))]
    pub(crate) fn unchecked(file: ValueFileId) -> ExclusiveLockToken<'static> {
        ExclusiveLockToken {
            file,
            held: PhantomData,
        }
    }

    /// The file whose lock is held.
    pub(crate) fn file(&self) -> ValueFileId {
        self.file
    }

    #[cfg(test)]
    /// An exclusive hold also allows what a shared one does (a remap may fill).
    pub(crate) fn shared(&self) -> SharedLockToken<'_> {
        SharedLockToken {
            file: self.file,
            held: PhantomData,
        }
    }
}
