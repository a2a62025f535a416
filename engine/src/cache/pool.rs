//! `BufferPool`: lookups (E1), single-flight fills (E2/E3), invalidation (E11/E13) and the
//! byte budget, over the page table (`table.rs`), runs (`run.rs`) and S3-FIFO (`evict.rs`).
//!
//! Invariants:
//! - **No stale fill** (`DESIGN.md` invariant 1), given the callers' locking: a fill reads and
//!   publishes only under the file's invalidate lock held shared, an invalidation runs under it
//!   exclusive, so no fill is in flight while blocks are invalidated, remapped and freed. On top
//!   of that the pool itself never publishes, returns or lets a waiter use a run that was
//!   dropped while it loaded, which is what makes the kernel's `AOP_TRUNCATED_PAGE` retry work.
//! - **Budget**: `resident_bytes` (bytes of Ready runs mapped by the table) is at most the
//!   capacity whenever no publish is in progress: publishing adds a run and evicts down to the
//!   capacity in one critical section of the evictor mutex. Loading runs are not counted; their
//!   buffers are bounded by the fills in flight, and free run buffers kept for recycling by an
//!   eighth of the capacity (`buffers.rs`). A fill whose block span exceeds a quarter of the
//!   capacity bypasses the table: it is read into a private buffer and returned, uncached (one
//!   huge value must not flush the pool, and could not fit a per-run budget anyway).
//! - **Single flight**: a block has at most one run in the table; a fill claims absent blocks
//!   as Loading runs, so concurrent misses on a block do one read and the others wait.
//!
//! Thread-safety: `BufferPool` is `Send + Sync`. Lock order, outermost first: evictor mutex,
//! shard lock (never two at once), run latch. A fill waits on latches only with no pool lock
//! held and after its own runs are published or abandoned, so two fills cannot wait for each
//! other. Hits take one shard read lock per chunk touched and never wait for I/O.
//! Read next: `loom_tests.rs` for the fill-versus-invalidate model.

use bytes::Bytes;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering, Rank};
use crate::value::block::{LogicalBlock, ValueFileId};

use super::buffers::RunBuffers;
use super::evict::Evictor;
use super::run::Run;
use super::table::{PageTable, SHARDS_DEFAULT, Slot, chunk_spans};
use super::token::{ExclusiveLockToken, SharedLockToken};

/// The answer of an unchecked lookup (tests compare raw bytes with it).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached {
    /// The requested bytes.
    Hit(Bytes),
    /// Some block is absent or still loading.
    Miss,
}

/// The answer of a checked lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The requested bytes, which match the checksum.
    Hit(Bytes),
    /// Some block is absent or still loading.
    Miss,
    /// The cached bytes do not match the checksum.
    Mismatch,
}

/// Why a fill returned no bytes.
#[derive(Debug)]
pub(crate) enum FillError {
    /// A run this fill needed was dropped (invalidated, or its load failed) while it waited.
    /// The caller must redo its extent lookup and fill again.
    Retry,
    /// The caller's `read` failed; its error.
    Failed(crate::Error),
}

/// A snapshot of the pool's counters (each exact, not one atomic picture).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolStats {
    /// Lookups answered from the pool.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// `read` calls made by fills (one per span read, including bypass reads).
    pub fills: u64,
    /// Bytes read by fills.
    pub fill_bytes: u64,
    /// Fills that read around the table because they exceeded a quarter of the capacity.
    pub bypass_fills: u64,
    /// Runs evicted to stay within the budget.
    pub evictions: u64,
    /// Runs dropped by invalidation.
    pub invalidations: u64,
    /// Times a fill waited for another fill's run.
    pub waits: u64,
    /// Fills that returned `Retry`.
    pub retries: u64,
    /// Bytes of the runs the table holds.
    pub resident_bytes: u64,
    /// Bytes of free run buffers kept for later fills (at most an eighth of the capacity).
    pub free_bytes: u64,
    /// Fills that read into a recycled buffer instead of a new one.
    pub recycled_fills: u64,
}

/// The pool's event counters.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    fill_bytes: AtomicU64,
    bypass_fills: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
    waits: AtomicU64,
    retries: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Part of a request served by one run's buffer: blocks `[first, first + blocks)`, whose bytes
/// sit in `data` from block `base` on.
#[derive(Debug)]
struct Piece {
    first: u64,
    blocks: u64,
    data: Bytes,
    base: u64,
    run: Arc<Run>,
}

/// Where a fill gets a span of blocks from, decided while claiming.
#[derive(Debug)]
enum Source {
    /// A Ready run: its buffer.
    Cached(Arc<Run>, Bytes),
    /// Another fill's Loading run: wait for it.
    Wait(Arc<Run>),
    /// Our own Loading run: read it.
    Own(Arc<Run>),
}

impl Source {
    fn run(&self) -> &Arc<Run> {
        match self {
            Self::Cached(run, _) | Self::Wait(run) | Self::Own(run) => run,
        }
    }
}

/// A span of consecutive blocks with one source.
#[derive(Debug)]
struct Segment {
    first: u64,
    blocks: u64,
    source: Source,
}

/// The buffer pool. See the module doc.
#[derive(Debug)]
pub(crate) struct BufferPool {
    table: PageTable,
    evictor: Mutex<Evictor>,
    capacity_bytes: u64,
    block_size_bytes: usize,
    resident_bytes: AtomicU64,
    /// Free run buffers, recycled by fills (`buffers.rs`).
    buffers: Arc<RunBuffers>,
    counters: Counters,
}

impl BufferPool {
    /// A pool of `capacity_bytes` caching blocks of `block_size_bytes` (at least 1).
    pub(crate) fn new(capacity_bytes: u64, block_size_bytes: usize) -> Self {
        Self::with_shards(capacity_bytes, block_size_bytes, SHARDS_DEFAULT)
    }

    /// As `new`, with `shards` page-table shards (the loom model uses one, to stay small).
    pub(crate) fn with_shards(capacity_bytes: u64, block_size_bytes: usize, shards: usize) -> Self {
        let block_size_bytes = block_size_bytes.max(1);
        Self {
            table: PageTable::new(shards),
            evictor: Mutex::ranked(
                Rank::PoolEvictor,
                Evictor::new(capacity_bytes, block_size_bytes),
            ),
            capacity_bytes,
            block_size_bytes,
            resident_bytes: AtomicU64::new(0),
            buffers: RunBuffers::new(capacity_bytes),
            counters: Counters::default(),
        }
    }

    #[cfg(test)]
    /// The byte budget.
    pub(crate) fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> PoolStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            fills: get(&c.fills),
            fill_bytes: get(&c.fill_bytes),
            bypass_fills: get(&c.bypass_fills),
            evictions: get(&c.evictions),
            invalidations: get(&c.invalidations),
            waits: get(&c.waits),
            retries: get(&c.retries),
            resident_bytes: get(&self.resident_bytes),
            free_bytes: self.buffers.free_bytes(),
            recycled_fills: self.buffers.recycled(),
        }
    }

    fn block_size(&self) -> u64 {
        self.block_size_bytes as u64
    }

    /// The blocks `[first, end)` touching bytes `[offset, offset + len)`, `len > 0`; `None` if
    /// they leave the u64 byte space.
    fn block_span(&self, offset: u64, len: usize) -> Option<(u64, u64)> {
        let last = offset.checked_add(len as u64 - 1)?;
        Some((
            offset / self.block_size(),
            (last / self.block_size()).checked_add(1)?,
        ))
    }

    /// Bytes `[offset, offset + len)` of `file` if every block they touch is cached and loaded.
    /// Zero-copy (a slice of the run's buffer) when one run covers them, else one copy.
    ///
    /// # Locking
    ///
    /// None needed (E1): no invalidate lock, no I/O, never waits for a fill. Takes each
    /// touched chunk's shard lock shared, briefly. Does not allocate when one run covers the
    /// request.
    #[cfg(test)]
    pub(crate) fn lookup(&self, file: ValueFileId, offset: u64, len: usize) -> Cached {
        if len == 0 {
            return Cached::Hit(Bytes::new());
        }
        let found = self.block_span(offset, len);
        let found = found.and_then(|(first, end)| self.collect_ready(file, first, end));
        let bytes = found.and_then(|(one, more)| self.assemble(one, more, offset, len));
        match bytes {
            Some(bytes) => {
                bump(&self.counters.hits, 1);
                Cached::Hit(bytes)
            }
            None => {
                bump(&self.counters.misses, 1);
                Cached::Miss
            }
        }
    }

    /// Like [`Self::lookup`], but the bytes must match `crc` (CRC-32): a checksum mismatch is
    /// reported, never the bytes. When one run covers the request, the run remembers that the
    /// range was verified, so later hits of the same value return it without hashing it again.
    ///
    /// # Locking
    ///
    /// As [`Self::lookup`], plus the covering run's small verified-range list, briefly.
    pub(crate) fn lookup_checked(
        &self,
        file: ValueFileId,
        offset: u64,
        len: usize,
        crc: u32,
    ) -> Checked {
        if len == 0 {
            let empty = crc32fast::hash(&[]) == crc;
            return if empty {
                Checked::Hit(Bytes::new())
            } else {
                Checked::Mismatch
            };
        }
        let found = self.block_span(offset, len);
        let Some((last, earlier)) =
            found.and_then(|(first, end)| self.collect_ready(file, first, end))
        else {
            bump(&self.counters.misses, 1);
            return Checked::Miss;
        };
        let one_run = earlier.is_empty().then(|| Arc::clone(&last.run));
        let Some(bytes) = self.assemble(last, earlier, offset, len) else {
            bump(&self.counters.misses, 1);
            return Checked::Miss;
        };
        bump(&self.counters.hits, 1);
        if one_run
            .as_ref()
            .is_some_and(|run| run.is_verified(offset, len, crc))
        {
            return Checked::Hit(bytes);
        }
        if crc32fast::hash(&bytes) != crc {
            return Checked::Mismatch;
        }
        if let Some(run) = one_run {
            run.mark_verified(offset, len, crc);
        }
        Checked::Hit(bytes)
    }

    /// The pieces covering blocks `[first, end)` if all are Ready: the last piece, and the
    /// earlier ones (an empty, unallocated `Vec` when one run covers everything).
    fn collect_ready(
        &self,
        file: ValueFileId,
        first: u64,
        end: u64,
    ) -> Option<(Piece, Vec<Piece>)> {
        let mut current: Option<(Piece, *const Run)> = None;
        let mut done = Vec::new();
        for (lo, hi) in chunk_spans(first, end) {
            let shard = self.table.read(file, lo);
            for block in lo..hi {
                let slot = shard.get(file, block)?;
                let data = slot.data.as_ref()?;
                let run = Arc::as_ptr(&slot.run);
                if let Some((piece, ptr)) = &mut current
                    && std::ptr::eq(*ptr, run)
                    && piece.first + piece.blocks == block
                {
                    piece.blocks += 1;
                    continue;
                }
                slot.run.touch();
                let piece = Piece {
                    first: block,
                    blocks: 1,
                    data: data.clone(),
                    base: slot.run.first().0,
                    run: Arc::clone(&slot.run),
                };
                if let Some((previous, _)) = current.replace((piece, run)) {
                    done.push(previous);
                }
            }
        }
        current.map(|(piece, _)| (piece, done))
    }

    /// Bytes `[offset, offset + len)` from `earlier` then `last`, which cover them in block
    /// order: a slice of `last` when `earlier` is empty, else a copy.
    fn assemble(&self, last: Piece, earlier: Vec<Piece>, offset: u64, len: usize) -> Option<Bytes> {
        let bs = self.block_size();
        if earlier.is_empty() {
            let start = usize::try_from(offset.checked_sub(last.base * bs)?).ok()?;
            let end = start.checked_add(len)?;
            return (end <= last.data.len()).then(|| last.data.slice(start..end));
        }
        let mut out = Vec::with_capacity(len);
        let end = offset + len as u64;
        for piece in earlier.iter().chain(std::iter::once(&last)) {
            let lo = (piece.first * bs).max(offset);
            let hi = (piece.first + piece.blocks).saturating_mul(bs).min(end);
            let from = usize::try_from(lo.checked_sub(piece.base * bs)?).ok()?;
            let to = usize::try_from(hi.checked_sub(piece.base * bs)?).ok()?;
            out.extend_from_slice(piece.data.get(from..to)?);
        }
        (out.len() == len).then(|| Bytes::from(out))
    }

    /// Bytes `[offset, offset + len)` of `file`, reading what is not cached.
    ///
    /// Blocks already cached are used; blocks another fill is loading are waited for (single
    /// flight: one read per block, counted in `waits`); absent blocks are claimed as one new
    /// Loading run per maximal absent span and read with `read(first_block, buf)`, `buf` being
    /// the span's block-aligned bytes, then published. `buf` may hold an earlier run's bytes
    /// (run buffers are recycled: `buffers.rs`): on success `read` must have written every
    /// byte of it. A fill spanning more than a quarter of
    /// the capacity reads its whole span into a private buffer instead and caches nothing.
    ///
    /// # Errors
    ///
    /// - `FillError::Retry` if a run it needed was dropped (invalidated, or its owner's read
    ///   failed) before it was Ready; the caller redoes its extent lookup. Nothing dropped is
    ///   ever returned or cached.
    /// - `FillError::Failed(e)` if `read` failed with `e`; the blocks this fill had claimed are
    ///   removed and their waiters woken (they get `Retry`).
    ///
    /// # Locking
    ///
    /// REQUIRES: `file`'s invalidate lock held shared (`token`), across the caller's extent
    /// lookup and this call, since `read` reads physical blocks (E2/E3). `read` runs with no
    /// pool lock held. Eviction triggered here takes no invalidate lock.
    ///
    /// The engine reads values through `fill_checked`; this form serves tests and the
    /// `benching` wrappers.
    #[cfg(any(test, feature = "benching"))]
    pub(crate) fn fill(
        &self,
        file: ValueFileId,
        offset: u64,
        len: usize,
        token: &SharedLockToken<'_>,
        read: impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()>,
    ) -> Result<Bytes, FillError> {
        self.fill_from(file, offset, len, token, read)
            .map(|(bytes, _)| bytes)
    }

    /// A value's fill: as `fill` of `span_len` bytes at `offset` (the value's `len`
    /// bytes plus readahead; at least `len`), returning the value's bytes checked against
    /// `crc`. When one run holds the value, the run remembers it as verified, as
    /// [`Self::lookup_checked`] does, so the hits that follow do not hash it again.
    ///
    /// # Errors
    ///
    /// As `fill`. A checksum mismatch is `Ok(Checked::Mismatch)`; never `Miss`.
    ///
    /// # Locking
    ///
    /// As `fill`.
    #[expect(
        clippy::too_many_arguments,
        reason = "fill's arguments plus the value's length and checksum"
    )]
    pub(crate) fn fill_checked(
        &self,
        file: ValueFileId,
        offset: u64,
        len: usize,
        span_len: usize,
        crc: u32,
        token: &SharedLockToken<'_>,
        read: impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()>,
    ) -> Result<Checked, FillError> {
        let (bytes, one_run) = self.fill_from(file, offset, span_len.max(len), token, read)?;
        let bytes = bytes.slice(..len.min(bytes.len()));
        if crc32fast::hash(&bytes) != crc {
            return Ok(Checked::Mismatch);
        }
        if let Some(run) = one_run {
            run.mark_verified(offset, len, crc);
        }
        Ok(Checked::Hit(bytes))
    }

    /// `fill`, plus the run that holds all the bytes when one cached run does.
    fn fill_from(
        &self,
        file: ValueFileId,
        offset: u64,
        len: usize,
        token: &SharedLockToken<'_>,
        mut read: impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()>,
    ) -> Result<(Bytes, Option<Arc<Run>>), FillError> {
        debug_assert_eq!(token.file(), file, "fill proven with another file's lock");
        if len == 0 {
            return Ok((Bytes::new(), None));
        }
        let Some((first, end)) = self.block_span(offset, len) else {
            return Err(FillError::Failed(crate::Error::invalid(format!(
                "pool fill of {len} bytes at offset {offset} overflows"
            ))));
        };
        let span_bytes = (end - first).saturating_mul(self.block_size());
        if span_bytes > self.capacity_bytes / 4 {
            let bytes = self.fill_bypass(first, end, offset, len, &mut read)?;
            return Ok((bytes, None));
        }
        let mut segments = self.claim(file, first, end);
        self.load_own(&mut segments, &mut read)?;
        let mut pieces = Vec::with_capacity(segments.len());
        for segment in segments {
            pieces.push(self.resolve(segment)?);
        }
        let last = pieces.pop().ok_or(FillError::Retry)?;
        let one_run = pieces.is_empty().then(|| Arc::clone(&last.run));
        let bytes = self
            .assemble(last, pieces, offset, len)
            .ok_or(FillError::Retry)?;
        Ok((bytes, one_run))
    }

    /// A fill too large to cache: one read of the whole span into a private buffer.
    fn fill_bypass(
        &self,
        first: u64,
        end: u64,
        offset: u64,
        len: usize,
        read: &mut impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()>,
    ) -> Result<Bytes, FillError> {
        let span_bytes = (end - first) * self.block_size();
        let mut buf = vec![0; usize::try_from(span_bytes).map_err(|_| too_large(span_bytes))?];
        read(LogicalBlock(first), &mut buf).map_err(FillError::Failed)?;
        bump(&self.counters.fills, 1);
        bump(&self.counters.bypass_fills, 1);
        bump(&self.counters.fill_bytes, span_bytes);
        let data = Bytes::from(buf);
        let start =
            usize::try_from(offset - first * self.block_size()).map_err(|_| too_large(offset))?;
        let range = start..start + len;
        data.get(range.clone())
            .map(|_| data.slice(range))
            .ok_or(FillError::Retry)
    }

    /// Walks blocks `[first, end)` once, shard by shard: notes each cached or loading block's
    /// run and claims each absent block, extending our previous Loading run when the block
    /// follows it. Returns the request as segments in block order.
    fn claim(&self, file: ValueFileId, first: u64, end: u64) -> Vec<Segment> {
        let mut segments: Vec<Segment> = Vec::new();
        for (lo, hi) in chunk_spans(first, end) {
            let mut shard = self.table.write(file, lo);
            for block in lo..hi {
                let source = match shard.get(file, block) {
                    Some(Slot {
                        run,
                        data: Some(data),
                    }) => Source::Cached(run.clone(), data.clone()),
                    Some(Slot { run, data: None }) => Source::Wait(run.clone()),
                    None => {
                        let run = match segments.last() {
                            Some(Segment {
                                source: Source::Own(run),
                                first,
                                blocks,
                            }) if first + blocks == block && run.try_extend() => run.clone(),
                            _ => Run::new_loading(file, LogicalBlock(block)),
                        };
                        shard.insert(
                            file,
                            block,
                            Slot {
                                run: run.clone(),
                                data: None,
                            },
                        );
                        Source::Own(run)
                    }
                };
                push_block(&mut segments, block, source);
            }
        }
        segments
    }

    /// Reads and publishes this fill's own runs, in block order (so waiters on early blocks
    /// wake early). On a read error or a run dropped under us, abandons the rest.
    fn load_own(
        &self,
        segments: &mut [Segment],
        read: &mut impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()>,
    ) -> Result<(), FillError> {
        let mut outcome = Ok(());
        for segment in segments.iter_mut() {
            let Source::Own(run) = &segment.source else {
                continue;
            };
            let run = run.clone();
            if outcome.is_err() {
                self.abandon(&run);
                continue;
            }
            match self.load_run(&run, segment, read) {
                Ok(data) => segment.source = Source::Cached(run, data),
                Err(e) => {
                    self.abandon(&run);
                    outcome = Err(e);
                }
            }
        }
        if matches!(outcome, Err(FillError::Retry)) {
            bump(&self.counters.retries, 1);
        }
        outcome
    }

    /// Reads one own run and publishes it; `Retry` if it was dropped (invalidated) meanwhile.
    fn load_run(
        &self,
        run: &Arc<Run>,
        segment: &Segment,
        read: &mut impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()>,
    ) -> Result<Bytes, FillError> {
        let span_bytes = segment.blocks * self.block_size();
        let len = usize::try_from(span_bytes).map_err(|_| too_large(span_bytes))?;
        // A failed read drops the buffer, which goes back to the free lists unpublished.
        let mut buf = RunBuffers::take(&self.buffers, len);
        read(run.first(), buf.as_mut_slice()).map_err(FillError::Failed)?;
        bump(&self.counters.fills, 1);
        bump(&self.counters.fill_bytes, span_bytes);
        let data = Bytes::from_owner(buf);
        if self.publish(run, segment.blocks, &data) {
            Ok(data)
        } else {
            Err(FillError::Retry)
        }
    }

    /// Loading -> Ready: wakes waiters, queues the run, evicts down to the budget, then lets
    /// lookups see it. False if the run was dropped while it loaded.
    fn publish(&self, run: &Arc<Run>, blocks: u64, data: &Bytes) -> bool {
        {
            let mut evictor = self.evictor.lock();
            // The buffer's `Bytes` is reference-counted from the start (`from_owner`), so the
            // hit path's clones never allocate.
            if !run.publish(data.clone()) {
                return false;
            }
            let bytes = data.len() as u64;
            self.resident_bytes.fetch_add(bytes, Ordering::Relaxed);
            evictor.insert(run.clone(), bytes);
            self.evict_over_budget(&mut evictor);
        }
        self.table.set_data(run, blocks, data);
        true
    }

    /// Evicts until the resident bytes fit the budget or nothing evictable is left.
    ///
    /// # Locking
    ///
    /// REQUIRES: the evictor mutex (`evictor`). Takes shard locks; never an invalidate lock,
    /// and never waits for a Loading run (E17).
    fn evict_over_budget(&self, evictor: &mut Evictor) {
        while self.resident_bytes.load(Ordering::Relaxed) > self.capacity_bytes {
            let Some(victim) = evictor.pick_victim() else {
                return;
            };
            if let Some(dropped) = victim.evict() {
                let bytes = dropped.ready_bytes.unwrap_or(0);
                self.resident_bytes.fetch_sub(bytes, Ordering::Relaxed);
                bump(&self.counters.evictions, 1);
                self.table.unmap(&victim, dropped.blocks);
            }
        }
    }

    /// Drops one of our own Loading runs that will not be published: waiters wake to `Retry`.
    fn abandon(&self, run: &Arc<Run>) {
        if let Some(dropped) = run.drop_run() {
            self.table.unmap(run, dropped.blocks);
        }
    }

    /// The bytes of one segment: its buffer, after waiting for another fill's run if need be.
    fn resolve(&self, segment: Segment) -> Result<Piece, FillError> {
        let (run, data) = match segment.source {
            Source::Cached(run, data) => (run, data),
            Source::Wait(run) | Source::Own(run) => {
                let data = run.wait_loaded(|| bump(&self.counters.waits, 1));
                let Some(data) = data else {
                    bump(&self.counters.retries, 1);
                    return Err(FillError::Retry);
                };
                (run, data)
            }
        };
        Ok(Piece {
            first: segment.first,
            blocks: segment.blocks,
            data,
            base: run.first().0,
            run,
        })
    }

    /// Every loaded block of `file` and its cached bytes, for `Db::verify` to compare with the
    /// disk (DESIGN invariant 1).
    ///
    /// # Locking
    ///
    /// REQUIRES: `file`'s invalidate lock held (`token`), so no invalidation runs meanwhile.
    /// Takes each shard lock shared, one at a time.
    pub(crate) fn resident_blocks(
        &self,
        file: ValueFileId,
        token: &SharedLockToken<'_>,
    ) -> Vec<(LogicalBlock, Bytes)> {
        debug_assert_eq!(token.file(), file);
        let bs = self.block_size();
        let mut out = Vec::new();
        for shard in self.table.shards() {
            for (block, data, first) in shard.read().loaded_blocks(file) {
                let start = usize::try_from((block - first) * bs).unwrap_or(usize::MAX);
                if let Some(bytes) = data.get(start..start.saturating_add(self.block_size_bytes)) {
                    out.push((LogicalBlock(block), data.slice_ref(bytes)));
                }
            }
        }
        out.sort_by_key(|(block, _)| *block);
        out
    }

    /// Drops every run with a block in `[first, first + n)` of `file`: all their table
    /// entries go, so no later lookup or fill returns them. Callers holding their bytes keep
    /// them. A fill waiting on a dropped Loading run gets `Retry`.
    ///
    /// # Locking
    ///
    /// REQUIRES: `file`'s invalidate lock held exclusive (`token`) from before this call to
    /// after the extent-map update and the free of the blocks (E11/E13). Takes shard locks one
    /// at a time and the evictor mutex briefly.
    pub(crate) fn invalidate(
        &self,
        file: ValueFileId,
        first: LogicalBlock,
        n: u64,
        token: &ExclusiveLockToken<'_>,
    ) {
        debug_assert_eq!(
            token.file(),
            file,
            "invalidate proven with another file's lock"
        );
        if n == 0 {
            return;
        }
        let (start, end) = (first.0, first.0.saturating_add(n));
        // Few chunks: visit their shards; many (a whole file): sweep every shard once.
        let mut runs = Vec::new();
        if end - start <= 64 * super::table::CHUNK_BLOCKS {
            for (lo, hi) in chunk_spans(start, end) {
                runs.extend(self.table.write(file, lo).drain(file, lo, hi));
            }
        } else {
            for shard in self.table.shards() {
                runs.extend(shard.write().drain(file, start, end));
            }
        }
        self.drop_runs(runs);
    }

    /// Drops every run of `file` (E15: drop or truncate a value file).
    ///
    /// # Locking
    ///
    /// As for [`BufferPool::invalidate`].
    pub(crate) fn invalidate_file(&self, file: ValueFileId, token: &ExclusiveLockToken<'_>) {
        self.invalidate(file, LogicalBlock(0), u64::MAX, token);
    }

    /// Drops the runs whose slots an invalidation removed, and their other slots.
    fn drop_runs(&self, runs: Vec<Arc<Run>>) {
        let mut dead_ready = 0;
        for run in runs {
            let Some(dropped) = run.drop_run() else {
                continue;
            };
            bump(&self.counters.invalidations, 1);
            if let Some(bytes) = dropped.ready_bytes {
                self.resident_bytes.fetch_sub(bytes, Ordering::Relaxed);
                dead_ready += 1;
            }
            self.table.unmap(&run, dropped.blocks);
        }
        if dead_ready > 0 {
            self.evictor.lock().note_dead(dead_ready);
        }
    }
}

/// Adds `block` to the last segment if it continues it from the same run, else starts one.
fn push_block(segments: &mut Vec<Segment>, block: u64, source: Source) {
    if let Some(last) = segments.last_mut()
        && last.first + last.blocks == block
        && Arc::ptr_eq(last.source.run(), source.run())
        && std::mem::discriminant(&last.source) == std::mem::discriminant(&source)
    {
        last.blocks += 1;
        return;
    }
    segments.push(Segment {
        first: block,
        blocks: 1,
        source,
    });
}

fn too_large(bytes: u64) -> FillError {
    FillError::Failed(crate::Error::invalid(format!(
        "a pool fill of {bytes} bytes does not fit in memory"
    )))
}

#[cfg(all(test, not(loom)))]
#[allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is the test's failure"
)]
mod tests {
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;

    const BS: usize = 16;

    /// The byte at `offset` of `file`: distinct across files, blocks and positions.
    fn byte_at(file: ValueFileId, offset: u64) -> u8 {
        (file.0 * 131 + offset * 7 + offset / BS as u64) as u8
    }

    fn expected(file: ValueFileId, offset: u64, len: usize) -> Vec<u8> {
        (offset..offset + len as u64)
            .map(|o| byte_at(file, o))
            .collect()
    }

    /// A `read` that serves the file's content.
    fn disk(file: ValueFileId) -> impl FnMut(LogicalBlock, &mut [u8]) -> crate::Result<()> {
        move |block, buf| {
            let base = block.0 * BS as u64;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = byte_at(file, base + i as u64);
            }
            Ok(())
        }
    }

    fn shared(file: ValueFileId) -> SharedLockToken<'static> {
        SharedLockToken::unchecked(file)
    }

    fn exclusive(file: ValueFileId) -> ExclusiveLockToken<'static> {
        ExclusiveLockToken::unchecked(file)
    }

    fn fill(pool: &BufferPool, file: ValueFileId, offset: u64, len: usize) -> Bytes {
        pool.fill(file, offset, len, &shared(file), disk(file))
            .unwrap()
    }

    fn hit(pool: &BufferPool, file: ValueFileId, offset: u64, len: usize) -> Option<Bytes> {
        match pool.lookup(file, offset, len) {
            Cached::Hit(bytes) => Some(bytes),
            Cached::Miss => None,
        }
    }

    /// Bytes of the distinct Ready runs the table maps: must equal `resident_bytes`.
    fn recount_resident(pool: &BufferPool) -> u64 {
        let mut seen: Vec<*const Run> = Vec::new();
        let mut total = 0;
        for shard in pool.table.shards() {
            for slot in shard.read().slots() {
                let ptr = Arc::as_ptr(&slot.run);
                if let Some(data) = &slot.data
                    && !seen.contains(&ptr)
                {
                    seen.push(ptr);
                    total += data.len() as u64;
                }
            }
        }
        total
    }

    #[test]
    fn pool_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<BufferPool>();
    }

    #[test]
    fn hit_after_fill_returns_identical_bytes_zero_copy_from_the_run() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(1);
        let filled = fill(&pool, file, 5, 40);
        assert_eq!(&filled[..], &expected(file, 5, 40)[..]);
        let again = hit(&pool, file, 5, 40).unwrap();
        assert_eq!(again, filled);
        assert_eq!(again.as_ptr(), filled.as_ptr(), "not a slice of the run");
        let inner = hit(&pool, file, 20, 10).unwrap();
        assert_eq!(inner.as_ptr(), filled[15..].as_ptr());
        assert_eq!(&inner[..], &expected(file, 20, 10)[..]);
        let stats = pool.stats();
        assert_eq!((stats.hits, stats.misses, stats.fills), (2, 0, 1));
        assert_eq!(stats.resident_bytes, 3 * BS as u64);
    }

    #[test]
    fn checked_lookup_verifies_once_per_run_and_reports_a_mismatch() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(9);
        let filled = fill(&pool, file, 5, 40);
        let crc = crc32fast::hash(&filled);
        let run = {
            let (last, earlier) = pool.collect_ready(file, 0, 1).unwrap();
            assert!(earlier.is_empty());
            last.run
        };
        assert!(!run.is_verified(5, 40, crc));
        assert_eq!(
            pool.lookup_checked(file, 5, 40, crc),
            Checked::Hit(filled.clone())
        );
        // The run remembers the range: the next hit is served without hashing it.
        assert!(run.is_verified(5, 40, crc));
        assert_eq!(pool.lookup_checked(file, 5, 40, crc), Checked::Hit(filled));
        // A checksum the bytes do not match is never answered with the bytes.
        assert_eq!(pool.lookup_checked(file, 5, 40, crc ^ 1), Checked::Mismatch);
        assert!(!run.is_verified(5, 40, crc ^ 1));
        assert_eq!(pool.lookup_checked(file, 5000, 40, crc), Checked::Miss);
    }

    #[test]
    fn checked_fill_leaves_its_value_verified_and_never_returns_a_mismatch() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(9);
        let expected = Bytes::from(expected(file, 5, 40));
        let crc = crc32fast::hash(&expected);
        let bad = pool.fill_checked(file, 5, 40, 2 * BS, crc ^ 1, &shared(file), disk(file));
        assert_eq!(bad.ok(), Some(Checked::Mismatch));
        let run = {
            let (last, earlier) = pool.collect_ready(file, 0, 2).unwrap();
            assert!(earlier.is_empty(), "readahead span not one run");
            last.run
        };
        assert!(!run.is_verified(5, 40, crc ^ 1));
        // The value, not the readahead span, is returned and remembered as verified.
        let good = pool.fill_checked(file, 5, 40, 2 * BS, crc, &shared(file), disk(file));
        assert_eq!(good.ok(), Some(Checked::Hit(expected.clone())));
        assert!(run.is_verified(5, 40, crc));
        assert_eq!(
            pool.lookup_checked(file, 5, 40, crc),
            Checked::Hit(expected)
        );
    }

    #[test]
    fn lookup_straddling_two_runs_is_assembled_correctly() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(2);
        let first = fill(&pool, file, 0, 2 * BS);
        let second = fill(&pool, file, 2 * BS as u64, 2 * BS);
        let both = hit(&pool, file, 10, 40).unwrap();
        assert_eq!(&both[..], &expected(file, 10, 40)[..]);
        assert_ne!(
            both.as_ptr(),
            first[10..].as_ptr(),
            "two runs cannot be one slice"
        );
        let reads = StdAtomicUsize::new(0);
        let refill = pool
            .fill(file, 10, 40, &shared(file), |_, _| {
                reads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
        assert_eq!(refill, both);
        assert_eq!(
            reads.load(Ordering::Relaxed),
            0,
            "a cached span was read again"
        );
        drop(second);
    }

    #[test]
    fn runs_crossing_a_chunk_boundary_are_one_zero_copy_run() {
        let pool = BufferPool::new(1024 * BS as u64, BS);
        let file = ValueFileId(3);
        let offset = 62 * BS as u64;
        let filled = fill(&pool, file, offset, 4 * BS);
        let again = hit(&pool, file, offset, 4 * BS).unwrap();
        assert_eq!(again.as_ptr(), filled.as_ptr());
        assert_eq!(pool.stats().fills, 1);
    }

    #[test]
    fn fill_reads_only_the_absent_spans_and_uses_cached_blocks() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(4);
        fill(&pool, file, BS as u64, 1);
        fill(&pool, file, 4 * BS as u64, 1);
        let mut spans = Vec::new();
        let mut inner = disk(file);
        let got = pool
            .fill(file, 0, 6 * BS, &shared(file), |block, buf| {
                spans.push((block.0, buf.len()));
                inner(block, buf)
            })
            .unwrap();
        assert_eq!(&got[..], &expected(file, 0, 6 * BS)[..]);
        assert_eq!(spans, vec![(0, BS), (2, 2 * BS), (5, BS)]);
    }

    #[test]
    fn concurrent_misses_on_one_block_perform_exactly_one_read() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(5);
        let reads = StdAtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(8);
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    let mut inner = disk(file);
                    let got = pool
                        .fill(file, 3, 8, &shared(file), |block, buf| {
                            reads.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(100));
                            inner(block, buf)
                        })
                        .unwrap();
                    assert_eq!(&got[..], &expected(file, 3, 8)[..]);
                });
            }
        });
        assert_eq!(reads.load(Ordering::Relaxed), 1);
        let stats = pool.stats();
        assert_eq!(stats.fills, 1);
        assert!(stats.waits >= 1, "{stats:?}");
        assert_eq!(stats.retries, 0);
    }

    /// Starts a fill of block 0 whose read blocks until told; returns its handle, once the
    /// read has started, and the sender that lets the read finish with the given result.
    fn blocked_fill<'s>(
        s: &'s thread::Scope<'s, '_>,
        pool: &'s BufferPool,
        file: ValueFileId,
    ) -> (
        thread::ScopedJoinHandle<'s, Result<Bytes, FillError>>,
        mpsc::Sender<bool>,
    ) {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let handle = s.spawn(move || {
            let mut inner = disk(file);
            pool.fill(file, 0, BS, &shared(file), |block, buf| {
                started_tx.send(()).unwrap();
                if go_rx.recv().unwrap() {
                    inner(block, buf)
                } else {
                    Err(crate::Error::Io(std::io::Error::other(
                        "injected read failure",
                    )))
                }
            })
        });
        started_rx.recv().unwrap();
        (handle, go_tx)
    }

    /// Starts a second fill of block 0 and returns once it waits on the first one's run.
    fn waiting_fill<'s>(
        s: &'s thread::Scope<'s, '_>,
        pool: &'s BufferPool,
        file: ValueFileId,
    ) -> thread::ScopedJoinHandle<'s, Result<Bytes, FillError>> {
        let waits = pool.stats().waits;
        let handle = s.spawn(move || pool.fill(file, 0, BS, &shared(file), disk(file)));
        while pool.stats().waits == waits {
            thread::sleep(Duration::from_millis(1));
        }
        handle
    }

    #[test]
    fn waiter_gets_retry_when_the_run_it_waits_on_is_invalidated() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(6);
        thread::scope(|s| {
            let (loader, go) = blocked_fill(s, &pool, file);
            let waiter = waiting_fill(s, &pool, file);
            pool.invalidate(file, LogicalBlock(0), 1, &exclusive(file));
            assert!(matches!(waiter.join().unwrap(), Err(FillError::Retry)));
            go.send(true).unwrap();
            assert!(matches!(loader.join().unwrap(), Err(FillError::Retry)));
        });
        assert_eq!(pool.lookup(file, 0, BS), Cached::Miss);
        let stats = pool.stats();
        assert_eq!(
            (stats.retries, stats.invalidations, stats.resident_bytes),
            (2, 1, 0)
        );
        assert_eq!(recount_resident(&pool), 0);
    }

    #[test]
    fn waiter_gets_retry_when_the_loaders_read_fails() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(7);
        thread::scope(|s| {
            let (loader, go) = blocked_fill(s, &pool, file);
            let waiter = waiting_fill(s, &pool, file);
            go.send(false).unwrap();
            assert!(matches!(loader.join().unwrap(), Err(FillError::Failed(_))));
            assert!(matches!(waiter.join().unwrap(), Err(FillError::Retry)));
        });
        assert_eq!(pool.lookup(file, 0, BS), Cached::Miss);
        assert_eq!(&fill(&pool, file, 0, BS)[..], &expected(file, 0, BS)[..]);
        assert!(hit(&pool, file, 0, BS).is_some());
    }

    #[test]
    fn failed_read_removes_every_block_the_fill_claimed() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(8);
        fill(&pool, file, 2 * BS as u64, 1);
        let got = pool.fill(file, 0, 6 * BS, &shared(file), |_, _| {
            Err(crate::Error::Io(std::io::Error::other("injected")))
        });
        assert!(matches!(got, Err(FillError::Failed(crate::Error::Io(_)))));
        for block in [0, 1, 3, 4, 5] {
            assert_eq!(pool.lookup(file, block * BS as u64, 1), Cached::Miss);
        }
        assert!(hit(&pool, file, 2 * BS as u64, BS).is_some());
        assert_eq!(
            &fill(&pool, file, 0, 6 * BS)[..],
            &expected(file, 0, 6 * BS)[..]
        );
        assert!(hit(&pool, file, 0, 6 * BS).is_some());
    }

    #[test]
    fn fills_past_the_budget_read_into_the_buffers_of_evicted_runs() {
        // Room for 8 one-block runs, and for one free buffer of a block (an eighth).
        let pool = BufferPool::new(8 * BS as u64, BS);
        let (a, b) = (ValueFileId(20), ValueFileId(21));
        for block in 0..8 {
            fill(&pool, a, block * BS as u64, BS);
        }
        assert_eq!(pool.stats().recycled_fills, 0);
        // Each fill now evicts one of `a`'s runs, whose buffer the next fill reads into: it
        // must hold only `b`'s bytes however the earlier run's bytes differed.
        for block in 0..8 {
            let got = fill(&pool, b, block * BS as u64, BS);
            assert_eq!(&got[..], &expected(b, block * BS as u64, BS)[..]);
        }
        let stats = pool.stats();
        assert_eq!(stats.recycled_fills, 7, "{stats:?}");
        assert_eq!(stats.free_bytes, BS as u64, "{stats:?}");
        assert_eq!(stats.resident_bytes, 8 * BS as u64);
        for block in 0..8 {
            let cached = hit(&pool, b, block * BS as u64, BS).unwrap();
            assert_eq!(&cached[..], &expected(b, block * BS as u64, BS)[..]);
        }
    }

    #[test]
    fn a_value_a_caller_holds_keeps_its_buffer_out_of_the_free_lists() {
        let pool = BufferPool::new(8 * BS as u64, BS);
        let file = ValueFileId(22);
        let held = fill(&pool, file, 0, BS);
        pool.invalidate(file, LogicalBlock(0), 1, &exclusive(file));
        assert_eq!(pool.stats().free_bytes, 0);
        fill(&pool, file, 0, BS);
        assert_eq!(pool.stats().recycled_fills, 0);
        assert_eq!(&held[..], &expected(file, 0, BS)[..]);
        drop(held);
        assert_eq!(pool.stats().free_bytes, BS as u64);
    }

    #[test]
    fn loader_whose_run_is_invalidated_while_reading_returns_retry_and_caches_nothing() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(9);
        let got = pool.fill(file, 0, BS, &shared(file), |block, buf| {
            pool.invalidate(file, block, 1, &exclusive(file));
            disk(file)(block, buf)
        });
        assert!(matches!(got, Err(FillError::Retry)));
        assert_eq!(pool.lookup(file, 0, BS), Cached::Miss);
        assert_eq!(pool.stats().resident_bytes, 0);
    }

    #[test]
    fn invalidate_drops_overlapping_runs_and_later_lookups_miss() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let file = ValueFileId(10);
        fill(&pool, file, 0, 4 * BS);
        fill(&pool, file, 4 * BS as u64, 2 * BS);
        pool.invalidate(file, LogicalBlock(3), 1, &exclusive(file));
        for block in 0..4 {
            assert_eq!(
                pool.lookup(file, block * BS as u64, 1),
                Cached::Miss,
                "block {block}"
            );
        }
        assert!(hit(&pool, file, 4 * BS as u64, 2 * BS).is_some());
        let stats = pool.stats();
        assert_eq!(stats.invalidations, 1);
        assert_eq!(stats.resident_bytes, 2 * BS as u64);
        assert_eq!(recount_resident(&pool), stats.resident_bytes);
    }

    #[test]
    fn invalidate_file_drops_every_run_of_that_file_only() {
        let pool = BufferPool::new(1024 * BS as u64, BS);
        let (a, b) = (ValueFileId(11), ValueFileId(12));
        for offset in [0, 5_000 * BS as u64, 900_000 * BS as u64] {
            fill(&pool, a, offset, BS);
            fill(&pool, b, offset, BS);
        }
        pool.invalidate_file(a, &exclusive(a));
        for offset in [0, 5_000 * BS as u64, 900_000 * BS as u64] {
            assert_eq!(pool.lookup(a, offset, BS), Cached::Miss);
            assert!(hit(&pool, b, offset, BS).is_some());
        }
        assert_eq!(pool.stats().invalidations, 3);
        assert_eq!(pool.stats().resident_bytes, 3 * BS as u64);
    }

    #[test]
    fn holders_keep_valid_bytes_after_invalidate_and_eviction() {
        let pool = BufferPool::new(8 * BS as u64, BS);
        let file = ValueFileId(13);
        let invalidated = fill(&pool, file, 0, 2 * BS);
        let evicted = fill(&pool, file, 2 * BS as u64, 2 * BS);
        pool.invalidate(file, LogicalBlock(0), 2, &exclusive(file));
        for block in 10..40 {
            fill(&pool, file, block * BS as u64, BS);
        }
        assert_eq!(
            pool.lookup(file, 2 * BS as u64, BS),
            Cached::Miss,
            "not evicted"
        );
        assert!(pool.stats().evictions > 0);
        assert_eq!(&invalidated[..], &expected(file, 0, 2 * BS)[..]);
        assert_eq!(&evicted[..], &expected(file, 2 * BS as u64, 2 * BS)[..]);
    }

    #[test]
    fn fill_larger_than_a_quarter_of_capacity_is_returned_but_not_cached() {
        let pool = BufferPool::new(16 * BS as u64, BS);
        let file = ValueFileId(14);
        let got = fill(&pool, file, 7, 4 * BS);
        assert_eq!(&got[..], &expected(file, 7, 4 * BS)[..]);
        assert_eq!(pool.lookup(file, 7, 4 * BS), Cached::Miss);
        let stats = pool.stats();
        assert_eq!((stats.bypass_fills, stats.resident_bytes), (1, 0));
        let small = fill(&pool, file, 0, 4 * BS);
        assert_eq!(&small[..], &expected(file, 0, 4 * BS)[..]);
        assert!(
            hit(&pool, file, 0, 4 * BS).is_some(),
            "a quarter of the capacity is cached"
        );
    }

    #[test]
    fn empty_requests_hit_with_no_bytes() {
        let pool = BufferPool::new(16 * BS as u64, BS);
        assert_eq!(
            pool.lookup(ValueFileId(1), 99, 0),
            Cached::Hit(Bytes::new())
        );
        let got = pool.fill(ValueFileId(1), 99, 0, &shared(ValueFileId(1)), |_, _| {
            panic!("an empty fill read")
        });
        assert!(got.unwrap().is_empty());
    }

    #[test]
    fn requests_at_the_top_of_the_byte_space_do_not_overflow() {
        let pool = BufferPool::new(16 * BS as u64, 1);
        let file = ValueFileId(1);
        assert_eq!(pool.lookup(file, u64::MAX, 1), Cached::Miss);
        assert_eq!(pool.lookup(file, u64::MAX, 2), Cached::Miss);
        let got = pool.fill(file, u64::MAX, 2, &shared(file), |_, _| Ok(()));
        assert!(matches!(
            got,
            Err(FillError::Failed(crate::Error::InvalidArgument(_)))
        ));
    }

    /// A small deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// One random operation; checks every byte it gets back.
    fn random_op(pool: &BufferPool, rng: &mut XorShift) {
        let file = ValueFileId(rng.below(3));
        let offset = rng.below(200 * BS as u64);
        let len = rng.below(6 * BS as u64) as usize;
        match rng.below(10) {
            0 => {
                let n = rng.below(8);
                pool.invalidate(file, LogicalBlock(offset / BS as u64), n, &exclusive(file));
            }
            1..=4 => {
                if let Some(bytes) = hit(pool, file, offset, len) {
                    assert_eq!(&bytes[..], &expected(file, offset, len)[..]);
                }
            }
            _ => match pool.fill(file, offset, len, &shared(file), disk(file)) {
                Ok(bytes) => assert_eq!(&bytes[..], &expected(file, offset, len)[..]),
                Err(FillError::Retry) => {}
                Err(FillError::Failed(e)) => panic!("{e}"),
            },
        }
    }

    #[test]
    fn budget_is_never_exceeded_under_a_random_workload() {
        let pool = BufferPool::new(20 * BS as u64, BS);
        let mut rng = XorShift(0x5EED);
        for _ in 0..20_000 {
            random_op(&pool, &mut rng);
            let resident = pool.stats().resident_bytes;
            assert!(resident <= pool.capacity_bytes(), "{resident} resident");
            assert_eq!(recount_resident(&pool), resident);
        }
        let stats = pool.stats();
        assert!(
            stats.hits > 0 && stats.evictions > 0 && stats.invalidations > 0,
            "{stats:?}"
        );
        assert!(
            pool.evictor.lock().queued() <= 20 + 64 * 2 + 1,
            "dead entries pile up"
        );
    }

    #[test]
    fn concurrent_random_workload_returns_correct_bytes_within_budget() {
        let pool = BufferPool::new(20 * BS as u64, BS);
        thread::scope(|s| {
            for seed in 1..=4 {
                let pool = &pool;
                s.spawn(move || {
                    let mut rng = XorShift(seed * 0x9E37_79B9);
                    for _ in 0..5_000 {
                        random_op(pool, &mut rng);
                    }
                });
            }
        });
        let resident = pool.stats().resident_bytes;
        assert!(resident <= pool.capacity_bytes());
        assert_eq!(recount_resident(&pool), resident);
    }

    #[test]
    fn one_pass_scan_does_not_evict_a_small_hot_set() {
        let pool = BufferPool::new(64 * BS as u64, BS);
        let (hot, cold) = (ValueFileId(20), ValueFileId(21));
        for block in 0..8 {
            fill(&pool, hot, block * BS as u64, BS);
            for _ in 0..3 {
                assert!(hit(&pool, hot, block * BS as u64, BS).is_some());
            }
        }
        for block in 0..2_000 {
            fill(&pool, cold, block * BS as u64, BS);
        }
        let hot_hits = (0..8)
            .filter(|b| hit(&pool, hot, b * BS as u64, BS).is_some())
            .count();
        let scan_hits = (0..2_000)
            .filter(|b| hit(&pool, cold, b * BS as u64, BS).is_some())
            .count();
        assert_eq!(hot_hits, 8, "the scan evicted part of the hot set");
        let (hot_rate, scan_rate) = (hot_hits as f64 / 8.0, scan_hits as f64 / 2_000.0);
        assert!(
            hot_rate > 10.0 * scan_rate,
            "hot {hot_rate}, scan {scan_rate}"
        );
    }

    #[test]
    fn lock_tokens_are_made_from_the_invalidate_lock_guards() {
        let pool = BufferPool::new(16 * BS as u64, BS);
        let file = ValueFileId(30);
        let lock = crate::sync::RwLock::new(());
        {
            let guard = lock.read();
            let token = SharedLockToken::new(file, &guard);
            assert_eq!(
                &pool.fill(file, 0, 4, &token, disk(file)).unwrap()[..],
                &expected(file, 0, 4)[..]
            );
        }
        let guard = lock.write();
        let token = ExclusiveLockToken::new(file, &guard);
        assert!(
            pool.fill(file, BS as u64, 4, &token.shared(), disk(file))
                .is_ok()
        );
        pool.invalidate_file(file, &token);
        assert_eq!(pool.lookup(file, 0, 4), Cached::Miss);
    }
}
