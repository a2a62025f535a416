//! The memtable's skip list: versions in internal-key order, insert-only, each node carved with
//! its key and value bytes from an arena the list owns.
//!
//! A memtable never removes a version: it is frozen, flushed and dropped whole. So its list needs
//! no per-node reclamation (no epochs, no reference counts) and no per-node allocation. An insert
//! copies the key and value next to the node's links in the current arena chunk; dropping the
//! list frees a few chunks. A general concurrent map allocated a node, and kept the batch buffer
//! its key and value pointed into, per version: the allocator's work and its lock, contended
//! when the flush thread freed a whole memtable, were a third of a small put.
//!
//! Thread safety: one writer at a time, any number of lock-free readers.
//! - Inserts hold the writer lock, which owns the arena: inserts are serialized, and only the
//!   writer touches memory that no reader can reach yet.
//! - A node is written whole before it is linked. The writer publishes it with a release store
//!   of each predecessor's link; readers follow links with acquire loads. A reader that reaches a
//!   node therefore sees every byte of it.
//! - After that a node never moves or changes, except for its links. Each tower link only ever
//!   points at a node published the same way, which sorts after it; the chain link (below), at
//!   a node of the same bucket published the same way.
//! - Chunks are freed only when the list is dropped, so a node borrowed from `&SkipList`
//!   outlives the borrow.
//!
//! Point lookups go through a hash index instead of the towers. A search down the towers of a
//! list larger than the CPU's cache misses the cache about once per level, and a reader beside a
//! writer spent nearly half its time there. The index is an array of buckets, each the head of a
//! chain through the nodes' `chain` links, holding the newest version of each user key; a
//! lookup at a snapshot older than that version searches the towers instead. The writer updates
//! the index under its lock; readers follow it lock-free. A node enters the index with a
//! release store after it is linked into the list, and one that a newer version replaces keeps
//! its chain link, so a reader standing on it goes on down the chain.
//!
//! Memory: chunks are sized from the memtable's budget ([`chunk_bytes_for`]), so the arena holds
//! at most the bytes of its nodes, plus the free end of the current chunk, plus up to a quarter
//! of each full chunk left unused when a node did not fit. The index takes one pointer per
//! [`BUDGET_BYTES_PER_BUCKET`] bytes of budget ([`buckets_for`]).
//!
//! Read next: `memtable.rs`, which keeps a memtable's versions in one of these.

use std::alloc::{self, Layout};
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering as AtomicOrdering};

use crate::index::table::bloom_hash;
use crate::key::{SeqNo, ValueKind, compare_internal};
use crate::sync::ordered::Mutex;
use crate::sync::{CachePadded, Rank};

/// Levels of the tallest tower. Each level keeps half of the nodes of the one below, so 24 levels
/// index about 2^24 = 16 million versions (a 1 GiB memtable of tiny entries) before searches
/// start to lengthen.
const MAX_HEIGHT: usize = 24;
/// Bounds of an arena chunk's size. A node larger than a quarter of a chunk gets a chunk of its
/// own, so at most a quarter of a chunk is left unused when a node does not fit.
const MIN_CHUNK_BYTES: usize = 4 << 10;
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// The arena chunk size for a list expected to hold about `size_hint_bytes`: an eighth of it, a
/// power of two from 4 KiB to 1 MiB. A small memtable then reserves little, and a large one
/// takes few chunks.
pub(crate) fn chunk_bytes_for(size_hint_bytes: usize) -> usize {
    (size_hint_bytes / 8)
        .checked_next_power_of_two()
        .unwrap_or(MAX_CHUNK_BYTES)
        .clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
}

/// Budget bytes per bucket of the hash index: a 32 MiB memtable of 100-byte values holds about
/// 190,000 versions in 262,144 buckets, and its index takes 2 MiB.
const BUDGET_BYTES_PER_BUCKET: usize = 128;
const MIN_BUCKETS: usize = 16;
/// 32 MiB of index, for a memtable of 512 MiB and more.
const MAX_BUCKETS: usize = 1 << 22;

/// The hash index's bucket count for a list expected to hold about `size_hint_bytes`: a power
/// of two from 16 to 4 Mi.
pub(crate) fn buckets_for(size_hint_bytes: usize) -> usize {
    (size_hint_bytes / BUDGET_BYTES_PER_BUCKET)
        .checked_next_power_of_two()
        .unwrap_or(MAX_BUCKETS)
        .clamp(MIN_BUCKETS, MAX_BUCKETS)
}

/// How many leading bytes of a user key a node keeps inline, as an integer.
const PREFIX_BYTES: usize = 16;

/// The first [`PREFIX_BYTES`] bytes of `user_key`, zero-padded, as a big-endian integer.
///
/// Integer order of prefixes agrees with byte order of keys wherever the prefixes differ: at
/// the first differing byte either both keys have a byte (and the integer compares the two), or
/// the shorter key has ended there, and it sorts first in both orders. Equal prefixes decide
/// nothing (`a` and `a\0` share one), so the full keys are compared then.
#[expect(
    clippy::big_endian_bytes,
    reason = "an in-memory sort key, never stored: big-endian makes integer order byte order"
)]
fn key_prefix(user_key: &[u8]) -> u128 {
    let mut buf = [0u8; PREFIX_BYTES];
    for (dst, src) in buf.iter_mut().zip(user_key) {
        *dst = *src;
    }
    u128::from_be_bytes(buf)
}

/// A borrowed internal key with its prefix: what the list compares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRef<'a> {
    prefix: u128,
    user_key: &'a [u8],
    seq: SeqNo,
}

impl<'a> KeyRef<'a> {
    pub fn new(user_key: &'a [u8], seq: SeqNo) -> Self {
        Self {
            prefix: key_prefix(user_key),
            user_key,
            seq,
        }
    }

    /// True if both keys have the same user key, whatever their sequence numbers. Mostly
    /// decided by the prefixes and lengths, which are in the node's first cache line.
    fn same_user_key(&self, other: &KeyRef<'_>) -> bool {
        self.prefix == other.prefix
            && self.user_key.len() == other.user_key.len()
            && (self.user_key.len() <= PREFIX_BYTES || self.user_key == other.user_key)
    }

    /// Internal order ([`compare_internal`]), mostly decided by one integer comparison that
    /// reads nothing outside the node's first cache line: following keys to their bytes was most
    /// of the cost of an insert.
    pub fn cmp(&self, other: &KeyRef<'_>) -> Ordering {
        match self.prefix.cmp(&other.prefix) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let (a, b) = (self.user_key.len(), other.user_key.len());
        if a <= PREFIX_BYTES && b <= PREFIX_BYTES {
            // Both keys are whole in their prefixes, which differ only in zero padding: the
            // shorter key is a prefix of the longer.
            a.cmp(&b).then_with(|| other.seq.cmp(&self.seq))
        } else {
            compare_internal(self.user_key, self.seq, other.user_key, other.seq)
        }
    }
}

/// The fixed part of a node. In the arena it is followed by `height` links (the successor at
/// each level), then the user key, then the value: one allocation, mostly one cache line for a
/// comparison and the lowest links.
#[repr(C)]
struct Header {
    /// `key_prefix` of the user key: most comparisons end here.
    prefix: [u64; 2],
    seq: SeqNo,
    key_len: u32,
    value_len: u32,
    kind: ValueKind,
    height: u8,
    /// The next node in the node's hash bucket, if the node is the newest version of its key
    /// (or was, until a newer one took its place in the chain).
    chain: Link,
}

type Link = AtomicPtr<Header>;

const HEADER_BYTES: usize = size_of::<Header>();
const LINK_BYTES: usize = size_of::<Link>();
const NODE_ALIGN: usize = align_of::<Header>();

// Links follow the header directly, so they must be aligned wherever a header is.
const _: () =
    assert!(HEADER_BYTES.is_multiple_of(align_of::<Link>()) && NODE_ALIGN >= align_of::<Link>());

/// Arena bytes of a node: header, links, key and value, rounded up to the node alignment.
fn node_bytes(height: usize, key_len: usize, value_len: usize) -> usize {
    (HEADER_BYTES + height * LINK_BYTES + key_len + value_len).next_multiple_of(NODE_ALIGN)
}

/// A chunk of arena memory, freed when the arena is dropped.
struct Chunk {
    ptr: NonNull<u8>,
    layout: Layout,
}

/// The memory nodes are carved from; owned by the list, handed out under its writer lock.
struct Arena {
    chunks: Vec<Chunk>,
    /// Size of the chunks small nodes are carved from.
    chunk_bytes: usize,
    /// Free bytes at the end of the current chunk start here...
    free: *mut u8,
    /// ...and run this many bytes.
    free_bytes: usize,
    /// The state of the xorshift generator that picks tower heights.
    rng: u64,
    /// Versions inserted.
    len: usize,
}

impl Arena {
    fn new(chunk_bytes: usize) -> Self {
        Self {
            chunks: Vec::new(),
            chunk_bytes,
            free: ptr::null_mut(),
            free_bytes: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            len: 0,
        }
    }

    /// `size_bytes` (a multiple of [`NODE_ALIGN`]) of uninitialized memory aligned for a node.
    /// Aborts, as `Vec` does, if the system is out of memory.
    fn alloc(&mut self, size_bytes: usize) -> NonNull<u8> {
        debug_assert!(size_bytes > 0 && size_bytes.is_multiple_of(NODE_ALIGN));
        if size_bytes > self.free_bytes {
            if size_bytes > self.chunk_bytes / 4 {
                // A large node gets its own chunk; the current one stays current.
                return self.new_chunk(size_bytes);
            }
            self.free = self.new_chunk(self.chunk_bytes).as_ptr();
            self.free_bytes = self.chunk_bytes;
        }
        let at = self.free;
        // SAFETY: `size_bytes <= free_bytes`, so both `at` and `at + size_bytes` lie within (or
        // one past the end of) the current chunk.
        self.free = unsafe { at.add(size_bytes) };
        self.free_bytes -= size_bytes;
        // SAFETY: `at` points into a live chunk, so it is not null.
        unsafe { NonNull::new_unchecked(at) }
    }

    fn new_chunk(&mut self, size_bytes: usize) -> NonNull<u8> {
        let Ok(layout) = Layout::from_size_align(size_bytes, NODE_ALIGN) else {
            // Sizes are bounded by the batch limits, far below `isize::MAX`.
            unreachable!("arena chunk of {size_bytes} bytes")
        };
        // SAFETY: `layout` has a non-zero size: every node has a header.
        let ptr = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        self.chunks.push(Chunk { ptr, layout });
        ptr
    }

    /// A tower height: 1, and each further level with probability 1/2.
    ///
    /// One half, not LevelDB's one quarter: a search then steps about once per level instead of
    /// about three times, and in a memtable larger than the CPU's cache each step near the
    /// bottom is a cache miss. Measured with `cargo bench -p extentdb-benches --bench
    /// components -- memtable`, 1/2 made both inserts and gets about 15% faster.
    fn random_height(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        // One zero bit per extra level: P(height > h) = 2^-h. `x` is never zero.
        (1 + x.trailing_zeros() as usize).min(MAX_HEIGHT)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in &self.chunks {
            // SAFETY: allocated in `new_chunk` with this layout, freed once, here.
            unsafe { alloc::dealloc(chunk.ptr.as_ptr(), chunk.layout) };
        }
    }
}

/// An ordered, insert-only list of versions. See the module documentation for its contract.
pub(crate) struct SkipList {
    /// A node of [`MAX_HEIGHT`] links and no key, before every other node.
    head: NonNull<Header>,
    /// Levels in use: the tallest tower inserted so far.
    height: AtomicUsize,
    /// The hash index: a power-of-two number of chain heads.
    buckets: Box<[Link]>,
    /// Taken by every insert: padded, so that the lock's and the arena's writes leave alone
    /// the line of `head` and `buckets`, which every read loads.
    writer: CachePadded<Mutex<Arena>>,
}

// SAFETY: the list owns its arena, whose memory is only freed on drop. Shared access reads node
// bytes that never change after publication and links that are atomics; writes to the arena
// happen under the writer lock, into memory no reader can reach until it is published.
unsafe impl Send for SkipList {}
// SAFETY: as above.
unsafe impl Sync for SkipList {}

impl std::fmt::Debug for SkipList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipList")
            .field("len", &self.len())
            .field("height", &self.height.load(AtomicOrdering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SkipList {
    /// An empty list whose arena carves small nodes from chunks of `chunk_bytes` (at least 4
    /// KiB; see [`chunk_bytes_for`]), with a hash index of `buckets` chains (a power of two; see
    /// [`buckets_for`]).
    pub fn new(chunk_bytes: usize, buckets: usize) -> Self {
        debug_assert!(buckets.is_power_of_two());
        let mut arena = Arena::new(chunk_bytes.max(MIN_CHUNK_BYTES));
        let head = arena.alloc(node_bytes(MAX_HEIGHT, 0, 0)).cast::<Header>();
        // SAFETY: `head` is fresh arena memory, aligned and sized for a node of MAX_HEIGHT links.
        unsafe {
            init_node(
                head,
                MAX_HEIGHT,
                &KeyRef::new(&[], SeqNo(0)),
                ValueKind::Delete,
                &[],
            )
        };
        Self {
            head,
            height: AtomicUsize::new(1),
            buckets: null_links(buckets),
            writer: CachePadded(Mutex::ranked(Rank::Leaf, arena)),
        }
    }

    /// Bytes of the hash index.
    pub fn index_bytes(&self) -> usize {
        self.buckets.len() * LINK_BYTES
    }

    /// The chain head of `user_key`'s bucket.
    #[expect(
        clippy::indexing_slicing,
        reason = "the index is masked below len, a power of two"
    )]
    fn bucket(&self, user_key: &[u8]) -> &Link {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the low bits pick the bucket; the hash's finalizer mixes every bit into them"
        )]
        let at = bloom_hash(user_key) as usize & (self.buckets.len() - 1);
        &self.buckets[at]
    }

    /// Versions inserted so far.
    ///
    /// # Locking
    /// Takes the writer lock (a leaf).
    pub fn len(&self) -> usize {
        self.writer.lock().len
    }

    /// Adds a version and returns the arena bytes it took. Keys must be unique (every version
    /// has its own sequence number); an equal key sorts before the one already there.
    ///
    /// # Locking
    /// Takes the writer lock (a leaf).
    pub fn insert(&self, user_key: &[u8], seq: SeqNo, kind: ValueKind, value: &[u8]) -> usize {
        let key = KeyRef::new(user_key, seq);
        let mut arena = self.writer.lock();
        // Only the writer changes the height, and it holds the lock.
        let height = self.height.load(AtomicOrdering::Relaxed);
        let mut before = [self.head(); MAX_HEIGHT];
        let mut x = self.head();
        for (level, pred) in before.iter_mut().enumerate().take(height).rev() {
            while let Some(next) = x.next_at(level)
                && next.key().cmp(&key) == Ordering::Less
            {
                x = next;
            }
            *pred = x;
        }
        debug_assert!(
            before[0]
                .next_at(0)
                .is_none_or(|n| n.key().cmp(&key) != Ordering::Equal),
            "version inserted twice"
        );
        let node_height = arena.random_height();
        let size_bytes = node_bytes(node_height, user_key.len(), value.len());
        let node = arena.alloc(size_bytes).cast::<Header>();
        // SAFETY: `node` is fresh arena memory, aligned and sized for this node; no reader can
        // reach it before the links below publish it.
        unsafe { init_node(node, node_height, &key, kind, value) };
        for (level, pred) in before.iter().enumerate().take(node_height) {
            let successor = pred.link(level).load(AtomicOrdering::Relaxed);
            // SAFETY: `node` was initialized with `node_height` links; it is unpublished.
            unsafe { link_of(node, level) }.store(successor, AtomicOrdering::Relaxed);
        }
        // Where the index will point at the node, if it becomes its key's newest version.
        let indexed = self.index_slot(&key);
        if let Some((_, rest)) = indexed {
            // SAFETY: the node is initialized and unpublished; only its writer touches it.
            unsafe { node.as_ref() }
                .chain
                .store(rest, AtomicOrdering::Relaxed);
        }
        // Publish bottom up: a reader that finds the node at some level finds it below too.
        for (level, pred) in before.iter().enumerate().take(node_height) {
            pred.link(level)
                .store(node.as_ptr(), AtomicOrdering::Release);
        }
        // Then in the index, once the node is in the list.
        if let Some((slot, _)) = indexed {
            slot.store(node.as_ptr(), AtomicOrdering::Release);
        }
        if node_height > height {
            self.height.store(node_height, AtomicOrdering::Release);
        }
        arena.len += 1;
        size_bytes
    }

    /// Where a new version of `key` goes in the index: the link to point at it, and the rest of
    /// the chain it continues. That is the link holding its key's newest version, which it
    /// replaces (the replaced version stays reachable at level 0), or else the head of its
    /// bucket, which it goes in front of. `None` if the newest version is newer than `key`
    /// (inserts may come out of sequence order): the index keeps it.
    ///
    /// # Locking
    /// REQUIRES: the writer lock, so that the chains cannot change meanwhile.
    fn index_slot(&self, key: &KeyRef<'_>) -> Option<(&Link, *mut Header)> {
        let bucket = self.bucket(key.user_key);
        let mut slot = bucket;
        // Relaxed: only the writer stores to the index, and it holds the lock.
        while let Some(at) = NonNull::new(slot.load(AtomicOrdering::Relaxed)) {
            let other = Node::new(at);
            let chain = &other.header().chain;
            if key.same_user_key(&other.key()) {
                return (other.seq() < key.seq)
                    .then(|| (slot, chain.load(AtomicOrdering::Relaxed)));
            }
            slot = chain;
        }
        Some((bucket, bucket.load(AtomicOrdering::Relaxed)))
    }

    /// The newest version of `user_key` at or below `seq`: what [`Self::seek`] to `(user_key,
    /// seq)` finds if it is a version of `user_key`. The hash index answers when the key's
    /// newest version is visible at `seq`, or the key has none; otherwise (a snapshot older
    /// than the key's last write) the towers do, in logarithmic time however many versions
    /// are newer than the snapshot.
    pub fn get(&self, user_key: &[u8], seq: SeqNo) -> Option<Node<'_>> {
        let probe = KeyRef::new(user_key, seq);
        let newest = self.newest(&probe)?;
        if newest.seq() <= seq {
            return Some(newest);
        }
        self.seek(&probe).filter(|n| probe.same_user_key(&n.key()))
    }

    /// The newest version of `key`'s user key, from the hash index.
    fn newest(&self, key: &KeyRef<'_>) -> Option<Node<'_>> {
        // Acquire: pairs with the release store that put each node in the index.
        let mut at = self.bucket(key.user_key).load(AtomicOrdering::Acquire);
        while let Some(ptr) = NonNull::new(at) {
            let node = Node::new(ptr);
            if key.same_user_key(&node.key()) {
                return Some(node);
            }
            at = node.header().chain.load(AtomicOrdering::Acquire);
        }
        None
    }

    fn head(&self) -> Node<'_> {
        Node {
            ptr: self.head,
            _list: PhantomData,
        }
    }

    /// The first node, if any.
    pub fn first(&self) -> Option<Node<'_>> {
        self.head().next_at(0)
    }

    /// The first node at or after `key`.
    pub fn seek(&self, key: &KeyRef<'_>) -> Option<Node<'_>> {
        let mut x = self.head();
        let mut level = self.height.load(AtomicOrdering::Acquire);
        loop {
            level -= 1;
            // The answer is the successor compared at level 0, not a second load of the link:
            // the writer may have linked a smaller node in between.
            let next = loop {
                match x.next_at(level) {
                    Some(n) if n.key().cmp(key) == Ordering::Less => x = n,
                    next => break next,
                }
            };
            if level == 0 {
                return next;
            }
        }
    }

    /// The last node before `key`, or the last node of all when `key` is `None`.
    pub fn seek_before(&self, key: Option<&KeyRef<'_>>) -> Option<Node<'_>> {
        let mut x = self.head();
        for level in (0..self.height.load(AtomicOrdering::Acquire)).rev() {
            while let Some(next) = x.next_at(level)
                && key.is_none_or(|k| next.key().cmp(k) == Ordering::Less)
            {
                x = next;
            }
        }
        (x.ptr != self.head).then_some(x)
    }
}

/// `n` null links, in zeroed memory: a large index costs nothing until its buckets are used.
fn null_links(n: usize) -> Box<[Link]> {
    let zeroed = Box::<[Link]>::new_zeroed_slice(n);
    // SAFETY: an `AtomicPtr` has the in-memory representation of a raw pointer, and all-zero
    // bytes are the null pointer.
    unsafe { zeroed.assume_init() }
}

/// Writes a whole node at `node`: header, null links, key and value.
///
/// # Safety
/// `node` must point at writable memory of at least `node_bytes(height, key, value)` bytes,
/// aligned to [`NODE_ALIGN`], that no other thread can reach.
unsafe fn init_node(
    node: NonNull<Header>,
    height: usize,
    key: &KeyRef<'_>,
    kind: ValueKind,
    value: &[u8],
) {
    let (Ok(key_len), Ok(value_len), Ok(height_byte)) = (
        u32::try_from(key.user_key.len()),
        u32::try_from(value.len()),
        u8::try_from(height),
    ) else {
        unreachable!("keys and values are bounded by the batch limits, heights by MAX_HEIGHT")
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "splitting a u128 into its two halves"
    )]
    let prefix = [(key.prefix >> 64) as u64, key.prefix as u64];
    let base = node.as_ptr().cast::<u8>();
    // SAFETY: the caller guarantees the memory: the header at `node`, `height` links after it,
    // then the key and value bytes, all inside the node's `node_bytes`. `key` and `value` are
    // caller borrows, so they cannot overlap memory no other thread can reach.
    unsafe {
        node.as_ptr().write(Header {
            prefix,
            seq: key.seq,
            key_len,
            value_len,
            kind,
            height: height_byte,
            chain: Link::new(ptr::null_mut()),
        });
        let links = base.add(HEADER_BYTES).cast::<Link>();
        for level in 0..height {
            links.add(level).write(Link::new(ptr::null_mut()));
        }
        let key_at = base.add(HEADER_BYTES + height * LINK_BYTES);
        ptr::copy_nonoverlapping(key.user_key.as_ptr(), key_at, key.user_key.len());
        ptr::copy_nonoverlapping(value.as_ptr(), key_at.add(key.user_key.len()), value.len());
    }
}

/// The link of `node` at `level`.
///
/// # Safety
/// `node` must point at an initialized node of more than `level` links that outlives `'a`.
unsafe fn link_of<'a>(node: NonNull<Header>, level: usize) -> &'a Link {
    // SAFETY: the caller guarantees the node and the level; links are initialized atomics.
    unsafe {
        &*node
            .as_ptr()
            .cast::<u8>()
            .add(HEADER_BYTES + level * LINK_BYTES)
            .cast::<Link>()
    }
}

/// A published node of a list borrowed for `'a` (or the list's head, inside this module).
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    /// Invariant: a node the list initialized and published (or its head), whose arena the
    /// list keeps until it is dropped, after `'a`.
    ptr: NonNull<Header>,
    _list: PhantomData<&'a SkipList>,
}

impl<'a> Node<'a> {
    /// The node at `ptr`, which must meet the type's invariant: a node this module read from a
    /// link or the index of a list borrowed for `'a`.
    fn new(ptr: NonNull<Header>) -> Self {
        Self {
            ptr,
            _list: PhantomData,
        }
    }

    fn header(&self) -> &'a Header {
        // SAFETY: by the invariant the header is initialized, never written again, and lives
        // for `'a`.
        unsafe { self.ptr.as_ref() }
    }

    fn link(&self, level: usize) -> &'a Link {
        debug_assert!(level < usize::from(self.header().height));
        // SAFETY: by the invariant the node is initialized and lives for `'a`; searches only
        // follow a node's link at a level they reached it on, which is below its height.
        unsafe { link_of(self.ptr, level) }
    }

    /// The successor at `level`, which must be below this node's height.
    fn next_at(&self, level: usize) -> Option<Node<'a>> {
        // Acquire: pairs with the release store that published the successor.
        NonNull::new(self.link(level).load(AtomicOrdering::Acquire)).map(Node::new)
    }

    /// The next node in order.
    pub fn next(&self) -> Option<Node<'a>> {
        self.next_at(0)
    }

    /// The key and value bytes, in that order.
    fn bytes(&self) -> &'a [u8] {
        let h = self.header();
        let len = h.key_len as usize + h.value_len as usize;
        // SAFETY: by the invariant the node's key and value bytes were written before it was
        // published and never change; they follow its links.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr
                    .as_ptr()
                    .cast::<u8>()
                    .add(HEADER_BYTES + usize::from(h.height) * LINK_BYTES),
                len,
            )
        }
    }

    pub fn user_key(&self) -> &'a [u8] {
        let (key, _) = self.bytes().split_at(self.header().key_len as usize);
        key
    }

    pub fn value(&self) -> &'a [u8] {
        let (_, value) = self.bytes().split_at(self.header().key_len as usize);
        value
    }

    pub fn seq(&self) -> SeqNo {
        self.header().seq
    }

    pub fn kind(&self) -> ValueKind {
        self.header().kind
    }

    pub fn key(&self) -> KeyRef<'a> {
        let [hi, lo] = self.header().prefix;
        KeyRef {
            prefix: u128::from(hi) << 64 | u128::from(lo),
            user_key: self.user_key(),
            seq: self.seq(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Keys whose prefixes tie or differ only in padding, around the inline length.
    pub(crate) fn awkward_keys() -> Vec<Vec<u8>> {
        let mut keys = vec![
            Vec::new(),
            vec![0],
            vec![0, 0],
            b"a".to_vec(),
            b"a\0".to_vec(),
        ];
        for len in [15, 16, 17, 40] {
            let base: Vec<u8> = (0..len).map(|i| b'k' + (i % 3) as u8).collect();
            let mut zero_tail = base.clone();
            zero_tail.push(0);
            let mut bumped = base.clone();
            *bumped.last_mut().unwrap() += 1;
            keys.extend([base, zero_tail, bumped]);
        }
        keys.push(vec![0xff; 16]);
        keys.push(vec![0xff; 17]);
        keys
    }

    /// `n`, or a fiftieth of it under Miri, which runs these tests to check the unsafe code.
    fn scaled(n: usize) -> usize {
        if cfg!(miri) { n / 50 } else { n }
    }

    /// A small deterministic generator for test keys.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// The value stored with a version: derived from it, so a reader can tell a torn node.
    /// Every 97th is larger than a quarter of the tests' 4 KiB chunks, so it gets its own.
    fn value_of(key: &[u8], seq: u64) -> Vec<u8> {
        let len = if seq.is_multiple_of(97) {
            MIN_CHUNK_BYTES / 2
        } else {
            (seq % 7) as usize * 9 + key.len() % 5
        };
        (0..len)
            .map(|i| key.len() as u8 ^ seq as u8 ^ i as u8)
            .collect()
    }

    fn collect(list: &SkipList) -> Vec<(Vec<u8>, u64)> {
        std::iter::successors(list.first(), Node::next)
            .map(|n| (n.user_key().to_vec(), n.seq().0))
            .collect()
    }

    #[test]
    fn prefix_order_agrees_with_internal_order() {
        let keys = awkward_keys();
        for a in &keys {
            for b in &keys {
                for (sa, sb) in [(1, 1), (1, 2), (2, 1)] {
                    let x = KeyRef::new(a, SeqNo(sa));
                    let y = KeyRef::new(b, SeqNo(sb));
                    let expected = compare_internal(a, SeqNo(sa), b, SeqNo(sb));
                    assert_eq!(x.cmp(&y), expected, "{a:?}@{sa} vs {b:?}@{sb}");
                }
            }
        }
    }

    #[test]
    fn a_node_keeps_the_key_kind_and_value_it_was_given() {
        let list = SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS);
        for (i, k) in awkward_keys().iter().enumerate() {
            let seq = i as u64 + 1;
            list.insert(k, SeqNo(seq), ValueKind::Pointer, &value_of(k, seq));
        }
        for (i, k) in awkward_keys().iter().enumerate() {
            let seq = i as u64 + 1;
            let n = list.seek(&KeyRef::new(k, SeqNo(seq))).unwrap();
            assert_eq!(
                (n.user_key(), n.seq(), n.kind()),
                (&k[..], SeqNo(seq), ValueKind::Pointer)
            );
            assert_eq!(n.value(), value_of(k, seq));
            assert_eq!(n.key().cmp(&KeyRef::new(k, SeqNo(seq))), Ordering::Equal);
        }
    }

    #[test]
    fn random_inserts_iterate_in_order_and_seeks_agree_with_a_sorted_model() {
        let list = SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS);
        let mut model = Vec::new();
        let mut rng = 7;
        for seq in 1..=scaled(4000) as u64 {
            let r = next_random(&mut rng);
            // Few distinct keys, so most keys have several versions; some long, some short.
            let key = format!("{:0width$}", r % 500, width = (r % 3 * 10) as usize).into_bytes();
            list.insert(&key, SeqNo(seq), ValueKind::Put, &value_of(&key, seq));
            model.push((key, seq));
        }
        model.sort_by(|(a, sa), (b, sb)| compare_internal(a, SeqNo(*sa), b, SeqNo(*sb)));
        assert_eq!(collect(&list), model);
        assert_eq!(list.len(), model.len());
        for _ in 0..scaled(2000) {
            let r = next_random(&mut rng);
            let key = format!("{:0width$}", r % 520, width = (r % 3 * 10) as usize).into_bytes();
            let probe = KeyRef::new(&key, SeqNo(r % 4100));
            let at = model.partition_point(|(k, s)| {
                compare_internal(k, SeqNo(*s), &key, probe.seq) == Ordering::Less
            });
            let found = list
                .seek(&probe)
                .map(|n| (n.user_key().to_vec(), n.seq().0));
            assert_eq!(found.as_ref(), model.get(at), "seek {probe:?}");
            let before = list
                .seek_before(Some(&probe))
                .map(|n| (n.user_key().to_vec(), n.seq().0));
            assert_eq!(
                before.as_ref(),
                at.checked_sub(1).and_then(|i| model.get(i))
            );
        }
        let last = list
            .seek_before(None)
            .map(|n| (n.user_key().to_vec(), n.seq().0));
        assert_eq!(last.as_ref(), model.last());
        assert!(
            SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS)
                .seek_before(None)
                .is_none()
        );
    }

    /// The index answers as a seek does, with few buckets (long chains), keys whose prefixes
    /// tie, and versions inserted out of sequence order.
    #[test]
    fn gets_through_the_index_agree_with_seeks() {
        let list = SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS);
        let keys = awkward_keys();
        let mut rng = 5;
        let versions = scaled(3000) as u64;
        // Sequence numbers 1..=versions, shuffled.
        let mut seqs: Vec<u64> = (1..=versions).collect();
        for i in (1..seqs.len()).rev() {
            seqs.swap(i, (next_random(&mut rng) % (i as u64 + 1)) as usize);
        }
        // Few distinct keys, so that most have several versions; fewer still under Miri.
        let space = if cfg!(miri) { 20 } else { 200 };
        let numbered = |r: u64| format!("{:0width$}", r % space, width = (r % 3 * 9) as usize);
        for seq in seqs {
            let r = next_random(&mut rng);
            let key = if r.is_multiple_of(4) {
                keys[(r >> 8) as usize % keys.len()].clone()
            } else {
                numbered(r >> 8).into_bytes()
            };
            list.insert(&key, SeqNo(seq), ValueKind::Put, &value_of(&key, seq));
        }
        // Every numbered key in each width, and keys never inserted.
        let mut probes = keys;
        probes.extend((0..space * 3).map(|r| numbered(r).into_bytes()));
        probes.extend([&b"absent"[..], &[b'0'; 30], &[b'9'; 17]].map(<[u8]>::to_vec));
        let mut hits = 0;
        for key in &probes {
            for seq in [0, 1, versions / 3, versions / 2, versions, u64::MAX >> 8] {
                let expected = list
                    .seek(&KeyRef::new(key, SeqNo(seq)))
                    .filter(|n| n.user_key() == &key[..])
                    .map(|n| n.seq());
                let found = list.get(key, SeqNo(seq));
                assert_eq!(found.map(|n| n.seq()), expected, "{key:?} at {seq}");
                if let Some(n) = found {
                    assert_eq!(n.user_key(), &key[..]);
                    assert_eq!(n.value(), value_of(key, n.seq().0));
                    hits += 1;
                }
            }
        }
        assert!(
            hits >= 30,
            "too few versions found to test anything: {hits}"
        );
    }

    #[test]
    fn a_large_node_gets_its_own_chunk_and_small_ones_keep_filling_the_current_one() {
        let list = SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS);
        let big = vec![0xab; MIN_CHUNK_BYTES];
        list.insert(b"a", SeqNo(1), ValueKind::Put, b"small");
        list.insert(b"b", SeqNo(2), ValueKind::Put, &big);
        list.insert(b"c", SeqNo(3), ValueKind::Put, b"small too");
        assert_eq!(
            list.writer.lock().chunks.len(),
            2,
            "one chunk, one large node"
        );
        let values: Vec<&[u8]> = std::iter::successors(list.first(), Node::next)
            .map(|n| n.value())
            .collect();
        assert_eq!(values, [&b"small"[..], &big[..], &b"small too"[..]]);
    }

    #[test]
    fn insert_returns_the_arena_bytes_it_took_and_small_chunks_roll_over() {
        let list = SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS);
        let mut total = 0;
        for seq in 1..=scaled(2000) as u64 {
            total += list.insert(&seq.to_le_bytes(), SeqNo(seq), ValueKind::Put, &[1; 60]);
        }
        let arena = list.writer.lock();
        assert!(
            arena.chunks.len() >= 2,
            "the test must cross a chunk boundary"
        );
        let used = arena.chunks.len() * MIN_CHUNK_BYTES - arena.free_bytes;
        let head = node_bytes(MAX_HEIGHT, 0, 0);
        // A node that does not fit leaves the rest of its chunk unused: less than the largest
        // node, per chunk.
        let largest = node_bytes(MAX_HEIGHT, 8, 60);
        assert!(
            used - head >= total && used - head - total < arena.chunks.len() * largest,
            "{used} {total}"
        );
        drop(arena);
        let seqs: Vec<u64> = std::iter::successors(list.first(), Node::next)
            .map(|n| n.seq().0)
            .collect();
        assert_eq!(seqs.len(), scaled(2000));
    }

    #[test]
    fn chunks_are_an_eighth_of_the_size_hint_within_bounds() {
        assert_eq!(chunk_bytes_for(0), MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for(4 << 10), MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for(1 << 20), 128 << 10);
        assert_eq!(chunk_bytes_for(32 << 20), MAX_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for(usize::MAX), MAX_CHUNK_BYTES);
    }

    #[test]
    fn buckets_are_one_per_128_bytes_of_the_size_hint_within_bounds() {
        assert_eq!(buckets_for(0), MIN_BUCKETS);
        assert_eq!(buckets_for(4 << 10), 32);
        assert_eq!(buckets_for(32 << 20), 256 << 10);
        assert_eq!(buckets_for((32 << 20) + 128), 512 << 10);
        assert_eq!(buckets_for(usize::MAX), MAX_BUCKETS);
        let list = SkipList::new(MIN_CHUNK_BYTES, 256);
        assert_eq!(list.index_bytes(), 256 * size_of::<usize>());
    }

    /// One writer inserts versions in a random order while readers search: every version the
    /// writer had finished before a reader looked must be found whole, the node before it must
    /// sort before it, and a walk must see the versions in order with the bytes they were
    /// written with. Chunks are small, so nodes are spread over many of them.
    #[test]
    fn readers_find_every_published_version_whole_while_a_writer_inserts() {
        let versions = scaled(20_000);
        let list = Arc::new(SkipList::new(MIN_CHUNK_BYTES, MIN_BUCKETS));
        let mut rng = 11;
        let keys: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..versions)
                .map(|_| {
                    // Keys shorter than, as long as and longer than the inline prefix.
                    let r = next_random(&mut rng);
                    let width = [3, 15, 16, 17, 24][(r % 5) as usize];
                    format!("{:0width$}", (r >> 8) % 1_000_000).into_bytes()
                })
                .collect(),
        );
        let published = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (list, keys, published, done) =
                    (list.clone(), keys.clone(), published.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut rng = 100 + r;
                    let mut checks = 0u64;
                    while !done.load(AtomicOrdering::Acquire) || checks == 0 {
                        let n = published.load(AtomicOrdering::Acquire);
                        if n == 0 {
                            continue;
                        }
                        let i = (next_random(&mut rng) % n as u64) as usize;
                        let seq = i as u64 + 1;
                        let node = list.seek(&KeyRef::new(&keys[i], SeqNo(seq))).unwrap();
                        assert_eq!((node.user_key(), node.seq()), (&keys[i][..], SeqNo(seq)));
                        assert_eq!(node.value(), value_of(&keys[i], seq));
                        let node = list.get(&keys[i], SeqNo(seq)).unwrap();
                        assert_eq!((node.user_key(), node.seq()), (&keys[i][..], SeqNo(seq)));
                        assert_eq!(node.value(), value_of(&keys[i], seq));
                        let probe = KeyRef::new(&keys[i], SeqNo(seq));
                        if let Some(before) = list.seek_before(Some(&probe)) {
                            assert_eq!(before.key().cmp(&probe), Ordering::Less);
                            assert_eq!(before.value(), value_of(before.user_key(), before.seq().0));
                        }
                        if checks.is_multiple_of(500) {
                            let walk: Vec<_> = std::iter::successors(list.first(), Node::next)
                                .map(|n| {
                                    assert_eq!(n.value(), value_of(n.user_key(), n.seq().0));
                                    (n.user_key().to_vec(), n.seq())
                                })
                                .collect();
                            assert!(walk.len() >= n);
                            assert!(walk.windows(2).all(|w| {
                                compare_internal(&w[0].0, w[0].1, &w[1].0, w[1].1) == Ordering::Less
                            }));
                        }
                        checks += 1;
                    }
                    checks
                })
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let seq = i as u64 + 1;
            list.insert(key, SeqNo(seq), ValueKind::Put, &value_of(key, seq));
            published.store(i + 1, AtomicOrdering::Release);
        }
        done.store(true, AtomicOrdering::Release);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
        assert_eq!(list.len(), versions);
    }
}
