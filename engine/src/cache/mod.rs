//! The buffer pool: a fixed-budget cache of value-file blocks, keyed by (value file, logical
//! block) like the kernel's page cache is keyed by (mapping, index).
//!
//! # What is cached
//!
//! The cached unit is a **run**: one contiguous, reference-counted buffer (`bytes::Bytes`)
//! holding one or more consecutive logical blocks of one value file, read by one fill. Every
//! block a run covers maps to it in the page table, so a multi-block value cached by one fill
//! is returned later as a zero-copy slice of that buffer. A request that straddles runs is
//! assembled with one copy. A caller keeps its `Bytes` valid however long it likes: eviction
//! and invalidation only remove the table's references, and a run's memory is freed when the
//! last holder drops it (`DESIGN.md` section 2, last rule).
//!
//! # The protocol (`DESIGN.md` section 2; research notes section 2.7, E1-E17)
//!
//! | operation | invalidate lock | pool locks | may wait |
//! |---|---|---|---|
//! | [`BufferPool::lookup`] (E1, E5, E7) | none | shard (shared), per chunk | no |
//! | [`BufferPool::fill`] (E2-E4, E6) | **shared**, proven by [`SharedLockToken`] | shard (excl.), evictor, latch | on another fill's latch |
//! | [`BufferPool::invalidate`], [`BufferPool::invalidate_file`] (E11, E13-E15) | **exclusive**, proven by [`ExclusiveLockToken`] | shard (excl.), latch, evictor | no |
//! | eviction, inside a fill (E17) | **none**, never | evictor, shard, latch | no; skips Loading runs |
//!
//! A fill that waited for another fill's run and finds it dropped (invalidated, or its read
//! failed) returns [`FillError::Retry`]: the caller redoes its extent lookup, as the kernel
//! does on `AOP_TRUNCATED_PAGE`. With correct locking a waited-on run cannot be invalidated
//! (the waiter's shared hold excludes the invalidator), so `Retry` then means a failed read;
//! the pool still checks, so a locking bug degrades into a retry instead of a stale value. A
//! caller loops on `Retry`; each round either finds the blocks Ready or claims them itself, and
//! a fill never gets `Retry` for a run it reads itself unless that run was invalidated, so a
//! reader makes progress once invalidations stop.
//!
//! Single flight: a fill first claims every absent block of its request (as Loading runs,
//! one per maximal absent span), then reads and publishes its own runs, and only then waits for
//! runs other fills are loading. No fill waits while it owns an unpublished run, so fills can
//! never wait for each other in a cycle.
//!
//! Budget: see `pool.rs`; recycled buffers: `buffers.rs`. Fills of more than a quarter of the capacity bypass the table.
//! Eviction policy: S3-FIFO, see `evict.rs` for what it is and why.
//!
//! # Files
//!
//! - `pool.rs`: [`BufferPool`], [`Cached`], [`FillError`], [`PoolStats`].
//! - `run.rs`: a run and its latch (Loading / Ready / Dropped, with a condition variable).
//! - `buffers.rs`: the free run buffers fills recycle instead of allocating.
//! - `table.rs`: the sharded page table.
//! - `evict.rs`: S3-FIFO.
//! - `token.rs`: [`SharedLockToken`], [`ExclusiveLockToken`], the lock proofs.
//! - `loom_tests.rs`: the fill-versus-invalidate model.
//!
//! # Model checking with loom
//!
//! Every lock, atomic and `Arc` here comes from `crate::sync`, so under `--cfg loom` the pool
//! runs on loom's primitives. The model in `loom_tests.rs` races a fill against a
//! punch-and-reuse and checks that no stale block is cached; its twin without the invalidate
//! lock checks that loom finds the stale fill (a model that cannot fail proves nothing):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p extentdb --lib --release loom
//! ```
//!
//! Use a separate target dir (`CARGO_TARGET_DIR=target/loom`) to keep the normal build's
//! cache. `LOOM_MAX_PREEMPTIONS` bounds the search if the model grows; the model sets its own
//! bound. Keep loom-visible state small: the model uses a one-shard pool.
//!
//! Thread-safety of the whole: [`BufferPool`] is `Send + Sync`; see each file for its part.
//! Read next: `pool.rs`.

mod buffers;
mod evict;
mod pool;
mod run;
mod table;
mod token;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(all(test, loom))]
pub(crate) use pool::Cached;
pub(crate) use pool::{BufferPool, Checked, FillError, PoolStats};
pub(crate) use token::{ExclusiveLockToken, SharedLockToken};
