//! Run buffers, recycled: a fill takes a free buffer of the length it needs instead of
//! allocating one, and a run's buffer goes back to the free lists when its last holder drops
//! it, instead of being freed.
//!
//! Why: allocating a run per fill and freeing one per eviction put the reader on glibc's malloc
//! arena lock, which a writer allocating 64 KiB values holds at the same time, and freed chunks
//! near the top of the heap were trimmed back to the kernel, to be faulted in and zeroed again
//! by the next fill (`docs/benchmarks.md`, finding 6). With recycling, a steady stream of
//! misses moves the same buffers from evicted runs to new fills: no allocator call, no page
//! fault, no zeroing.
//!
//! Why free lists of exact lengths rather than one slab carved into block frames: a run is one
//! contiguous buffer of however many blocks its fill read (a 64 KiB value spans 16 or 17 blocks
//! of 4 KiB, a readahead up to 2 MiB), so a slab would need an allocator of contiguous frame
//! ranges with its own fragmentation; and a caller may keep a run's bytes as long as it likes
//! after eviction (`DESIGN.md` section 2, last rule), which would pin slab frames outside the
//! budget. A buffer of its own per run keeps the zero-copy `Bytes` the pool hands out, and the
//! lengths a workload needs repeat (its value sizes and readahead windows). Lengths that stop
//! being asked for are released first when the budget needs room ([`RunBuffers::trim`]).
//!
//! Budget: free buffers are bounded by a share of the pool's capacity ([`FREE_SHARE`]) and
//! reported (`Stats::pool_free_bytes`). They are not counted in the resident bytes the pool
//! evicts down to: in a steady stream of misses, a fill publishes its run and evicts another
//! in one step, so the evicted buffer comes back while the new run is already counted; had the
//! free buffers to fit in the capacity with the resident ones, the evicted one would never be
//! kept. So the pool's own memory is at most capacity + capacity / 8, plus, as before, the
//! buffers of fills in flight and the bytes callers still hold after eviction. A buffer of a
//! length nobody asks for any more gives way, when the free lists are full, to one coming back.
//! A recycled buffer holds stale bytes of an earlier run: the fill's `read` must overwrite all
//! of it, which `BufferPool::fill` requires of it.
//!
//! Thread-safety: `Send + Sync`. The free lists sit behind a leaf mutex, since a buffer comes
//! back wherever its last holder drops it: under a run latch or a shard lock (eviction,
//! invalidation), or in a caller's thread. Nothing else is locked while it is held, and freed
//! memory is given back to the allocator after it is released.

use rustc_hash::FxHashMap;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering, Rank};

/// The free buffers, by length in bytes.
#[derive(Debug, Default)]
struct FreeLists {
    by_len: FxHashMap<usize, Vec<Box<[u8]>>>,
    bytes: u64,
}

impl FreeLists {
    fn pop(&mut self, len: usize) -> Option<Box<[u8]>> {
        let buf = self.by_len.get_mut(&len)?.pop()?;
        self.bytes -= len as u64;
        Some(buf)
    }

    fn push(&mut self, buf: Box<[u8]>) {
        self.bytes += buf.len() as u64;
        self.by_len.entry(buf.len()).or_default().push(buf);
    }

    /// A free buffer of another length than `len`, from the length with the most bytes free.
    fn pop_other(&mut self, len: usize) -> Option<Box<[u8]>> {
        let other = self
            .by_len
            .iter()
            .filter(|(l, bufs)| **l != len && !bufs.is_empty())
            .max_by_key(|(l, bufs)| **l * bufs.len())
            .map(|(l, _)| *l)?;
        self.pop(other)
    }
}

/// Free buffers are kept up to the pool's capacity divided by this.
pub(super) const FREE_SHARE: u64 = 8;

/// The pool's free run buffers. See the module doc.
#[derive(Debug)]
pub(super) struct RunBuffers {
    free_max_bytes: u64,
    free: Mutex<FreeLists>,
    /// Fills served by a recycled buffer.
    recycled: AtomicU64,
}

impl RunBuffers {
    /// Free lists for a pool of `capacity_bytes`.
    pub(super) fn new(capacity_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            free_max_bytes: capacity_bytes / FREE_SHARE,
            free: Mutex::ranked(Rank::Leaf, FreeLists::default()),
            recycled: AtomicU64::new(0),
        })
    }

    /// A buffer of `len` bytes from `buffers` for a fill to read into: a free one of that
    /// length if there is one (holding stale bytes), else a new one of zeros. (An associated
    /// function: loom's `Arc` cannot be a method receiver.)
    pub(super) fn take(buffers: &Arc<Self>, len: usize) -> RunBuffer {
        let free = buffers.free.lock().pop(len);
        let buf = match free {
            Some(buf) => {
                buffers.recycled.fetch_add(1, Ordering::Relaxed);
                buf
            }
            None => vec![0; len].into_boxed_slice(),
        };
        RunBuffer {
            buf,
            home: Arc::clone(buffers),
        }
    }

    /// Keeps `buf` for a later fill, making room by freeing buffers of other lengths if need
    /// be; frees it if it is larger than all the free lists may hold.
    fn give_back(&self, buf: Box<[u8]>) {
        let len = buf.len() as u64;
        if len == 0 || len > self.free_max_bytes {
            return;
        }
        let mut released = Vec::new();
        {
            let mut free = self.free.lock();
            while free.bytes + len > self.free_max_bytes {
                match free.pop_other(buf.len()) {
                    Some(other) => released.push(other),
                    None => break,
                }
            }
            if free.bytes + len <= self.free_max_bytes {
                free.push(buf);
            } else {
                released.push(buf);
            }
        }
        // Given back to the allocator with no lock held.
        drop(released);
    }

    /// Bytes of free buffers kept for later fills.
    pub(super) fn free_bytes(&self) -> u64 {
        self.free.lock().bytes
    }

    /// Fills served by a recycled buffer so far.
    pub(super) fn recycled(&self) -> u64 {
        self.recycled.load(Ordering::Relaxed)
    }
}

/// One run's buffer: owned by a fill while it reads, then by the run's `Bytes`
/// (`Bytes::from_owner`), whose last clone's drop hands it back to the free lists.
#[derive(Debug)]
pub(super) struct RunBuffer {
    buf: Box<[u8]>,
    home: Arc<RunBuffers>,
}

impl RunBuffer {
    /// The bytes to read into; stale if the buffer was recycled.
    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl AsRef<[u8]> for RunBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for RunBuffer {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_dropped_run_buffer_is_handed_to_the_next_fill_of_its_length() {
        let buffers = RunBuffers::new(1 << 20);
        let mut first = RunBuffers::take(&buffers, 4096);
        first.as_mut_slice().fill(7);
        let bytes = Bytes::from_owner(first);
        let held = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(
            buffers.free_bytes(),
            0,
            "freed while a caller holds a slice"
        );
        drop(held);
        assert_eq!(buffers.free_bytes(), 4096);
        let second = RunBuffers::take(&buffers, 4096);
        assert_eq!(second.as_ref(), &[7; 4096][..], "not the recycled buffer");
        assert_eq!(buffers.recycled(), 1);
        assert_eq!(buffers.free_bytes(), 0);
        let other = RunBuffers::take(&buffers, 8192);
        assert_eq!(other.as_ref(), &[0; 8192][..], "served from another length");
        assert_eq!(buffers.recycled(), 1);
    }

    #[test]
    fn free_buffers_stay_within_their_share_and_new_lengths_push_out_old_ones() {
        // 8 000 bytes of pool: at most 1 000 free.
        let buffers = RunBuffers::new(8_000);
        let (a, b, c) = (
            RunBuffers::take(&buffers, 600),
            RunBuffers::take(&buffers, 300),
            RunBuffers::take(&buffers, 300),
        );
        drop(a);
        drop(b);
        assert_eq!(buffers.free_bytes(), 900);
        // No room for a second 300: the 600 gives way (another length, the most bytes).
        drop(c);
        assert_eq!(buffers.free_bytes(), 600);
        let (d, e) = (
            RunBuffers::take(&buffers, 300),
            RunBuffers::take(&buffers, 300),
        );
        assert_eq!(buffers.recycled(), 2);
        assert_eq!(buffers.free_bytes(), 0);
        drop((d, e));
        // Larger than the share: never kept, and pushes nothing out.
        drop(RunBuffers::take(&buffers, 1_001));
        assert_eq!(buffers.free_bytes(), 600);
        assert_eq!(buffers.recycled(), 2);
    }
}
