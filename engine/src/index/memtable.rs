//! The memtable: recent writes, ordered, in memory, until they are flushed to a table.
//!
//! Point versions live in an insert-only skip list whose nodes, keys and values are carved from
//! an arena (`skiplist.rs`): readers never block the writer or each other, and a put allocates
//! nothing of its own. Range tombstones are rare and live in a small list behind a read-write
//! lock.
//!
//! Thread safety: any number of readers; inserts come from the single commit leader
//! (`db::write`), so versions of a batch appear in sequence order (the list serializes inserts
//! anyway). A memtable is frozen (no more inserts) before it is flushed.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

use crate::sync::ordered::RwLock;
use crate::sync::{CachePadded, Rank};
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::index::skiplist::{KeyRef, Node, SkipList, buckets_for, chunk_bytes_for};
use crate::index::table::ReadMode;
use crate::key::{Entry, EntryRef, Found, InternalKey, RangeTombstone, SeqNo, ValueKind};

/// Bytes charged per range tombstone on top of its bounds: the list entry and `Bytes` headers.
const TOMBSTONE_OVERHEAD_BYTES: usize = 80;
/// Entries an iterator copies out of the skip list per refill, and the bytes that end a refill
/// sooner: inline values can be large, and a caller keeping one value keeps its whole batch.
const ITER_BATCH: usize = 64;
/// The first batch of a [`MemtableScan`], which doubles up to [`ITER_BATCH`]: a seek followed by
/// a short scan copies few versions it will not use.
const SCAN_FIRST_BATCH: usize = 8;
const ITER_BATCH_BYTES: usize = 256 << 10;

/// An in-memory, ordered buffer of recent versions.
#[derive(Debug)]
pub(crate) struct Memtable {
    entries: SkipList,
    tombstones: RwLock<Vec<RangeTombstone>>,
    /// Set once `tombstones` is not empty: a read skips their lock until then.
    has_tombstones: AtomicBool,
    /// Updated by every write: padded, so that a read's loads of the fields above do not miss
    /// after each one.
    sizes: CachePadded<Sizes>,
    /// The write-ahead log file that holds this memtable's writes.
    wal_number: u64,
}

#[derive(Debug)]
struct Sizes {
    approximate_bytes: AtomicUsize,
    /// Bytes of the separated values its pointers name (they are not in the memtable).
    value_bytes: AtomicU64,
    /// The highest sequence number inserted.
    max_seq: AtomicU64,
}

impl Memtable {
    /// An empty memtable for the log `wal_number`, expected to hold about `size_hint_bytes`
    /// (its budget; this sizes its arena's chunks and its hash index, whose bytes it charges
    /// from the start).
    pub fn new(wal_number: u64, size_hint_bytes: usize) -> Self {
        let entries = SkipList::new(
            chunk_bytes_for(size_hint_bytes),
            buckets_for(size_hint_bytes),
        );
        Self {
            sizes: CachePadded(Sizes {
                approximate_bytes: AtomicUsize::new(entries.index_bytes()),
                value_bytes: AtomicU64::new(0),
                max_seq: AtomicU64::new(0),
            }),
            entries,
            tombstones: RwLock::ranked(Rank::Leaf, Vec::new()),
            has_tombstones: AtomicBool::new(false),
            wal_number,
        }
    }

    pub fn wal_number(&self) -> u64 {
        self.wal_number
    }

    /// Records that every write up to `seq` is in this memtable.
    pub fn note_max_seq(&self, seq: SeqNo) {
        self.sizes.max_seq.fetch_max(seq.0, AtomicOrdering::Release);
    }

    pub fn max_seq(&self) -> SeqNo {
        SeqNo(self.sizes.max_seq.load(AtomicOrdering::Acquire))
    }

    pub fn approximate_bytes(&self) -> usize {
        self.sizes.approximate_bytes.load(AtomicOrdering::Relaxed)
    }

    /// Bytes of the separated values the memtable's pointers name.
    pub fn value_bytes(&self) -> u64 {
        self.sizes.value_bytes.load(AtomicOrdering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.first().is_none() && self.tombstones.read().is_empty()
    }

    /// Adds a version, copying its key and value. Keys are unique: every version has its own
    /// sequence number.
    pub fn insert(&self, key: &[u8], seq: SeqNo, kind: ValueKind, value: &[u8]) {
        let bytes = self.entries.insert(key, seq, kind, value);
        self.sizes
            .approximate_bytes
            .fetch_add(bytes, AtomicOrdering::Relaxed);
    }

    /// Adds a version whose value, of `value_len` bytes, is in a value file.
    pub fn insert_pointer(&self, key: &[u8], seq: SeqNo, pointer: &[u8], value_len: u64) {
        self.sizes
            .value_bytes
            .fetch_add(value_len, AtomicOrdering::Relaxed);
        self.insert(key, seq, ValueKind::Pointer, pointer);
    }

    pub fn insert_range_tombstone(&self, tombstone: RangeTombstone) {
        let bytes = tombstone.start.len() + tombstone.end.as_ref().map_or(0, Bytes::len);
        self.sizes
            .approximate_bytes
            .fetch_add(bytes + TOMBSTONE_OVERHEAD_BYTES, AtomicOrdering::Relaxed);
        self.tombstones.write().push(tombstone);
        // Before the write's sequence number is made visible, which a read that must see the
        // tombstone loads (acquire) before this flag.
        self.has_tombstones.store(true, AtomicOrdering::Release);
    }

    /// The newest version of `user_key` visible at `snapshot`, tombstones included.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Option<Found> {
        let node = self.entries.get(user_key, snapshot)?;
        Some(Found {
            seq: node.seq(),
            kind: node.kind(),
            value: Bytes::copy_from_slice(node.value()),
        })
    }

    /// The highest sequence number at or below `snapshot` of a range tombstone covering `key`.
    ///
    /// # Errors
    /// `WouldBlock` in [`ReadMode::CacheOnly`] if a writer holds the tombstone list.
    pub fn max_covering_tombstone(
        &self,
        key: &[u8],
        snapshot: SeqNo,
        mode: ReadMode,
    ) -> Result<Option<SeqNo>> {
        if !self.has_tombstones.load(AtomicOrdering::Acquire) {
            return Ok(None);
        }
        let tombstones = match mode {
            ReadMode::Blocking => self.tombstones.read(),
            ReadMode::CacheOnly => self.tombstones.try_read().ok_or(Error::WouldBlock)?,
        };
        Ok(tombstones
            .iter()
            .filter(|t| t.seq <= snapshot && t.contains(key))
            .map(|t| t.seq)
            .max())
    }

    /// A copy of the range tombstones (they are few: each deletes a whole range).
    pub fn range_tombstones(&self) -> Vec<RangeTombstone> {
        self.tombstones.read().clone()
    }

    /// Every version, in internal order: for flushing.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut next = self.entries.first();
        std::iter::from_fn(move || {
            let mut batch = NodeBatch::default();
            while let Some(n) = next
                && batch.has_room()
            {
                batch.push(n);
                next = n.next();
            }
            (!batch.nodes.is_empty()).then(|| copy_entries(&batch.nodes))
        })
        .flatten()
    }
}

/// Nodes to copy out together, up to [`ITER_BATCH`] of them or [`ITER_BATCH_BYTES`] (but at
/// least one).
#[derive(Default)]
struct NodeBatch<'a> {
    nodes: Vec<Node<'a>>,
    bytes: usize,
}

impl<'a> NodeBatch<'a> {
    fn has_room(&self) -> bool {
        self.nodes.len() < ITER_BATCH && self.bytes < ITER_BATCH_BYTES
    }

    fn push(&mut self, node: Node<'a>) {
        self.bytes += node.user_key().len() + node.value().len();
        self.nodes.push(node);
    }
}

/// Owned copies of the versions of `nodes`, whose keys and values share one buffer: one
/// allocation per batch rather than two per version. A value kept by a caller keeps its batch's
/// buffer, as a value read from a table keeps its block.
fn copy_entries(nodes: &[Node<'_>]) -> Vec<Entry> {
    let total = nodes
        .iter()
        .map(|n| n.user_key().len() + n.value().len())
        .sum();
    let mut buf = Vec::with_capacity(total);
    for n in nodes {
        buf.extend_from_slice(n.user_key());
        buf.extend_from_slice(n.value());
    }
    let buf = Bytes::from(buf);
    let mut at = 0;
    nodes
        .iter()
        .map(|n| {
            let key_end = at + n.user_key().len();
            let value_end = key_end + n.value().len();
            let entry = Entry {
                key: InternalKey::new(buf.slice(at..key_end), n.seq(), n.kind()),
                value: buf.slice(key_end..value_end),
            };
            at = value_end;
            entry
        })
        .collect()
}

/// A double-ended cursor over the versions of a memtable whose user keys lie in a range.
///
/// It holds no borrow of the skip list between calls: it copies entries out in small batches
/// and seeks again from the last one it returned.
#[derive(Debug)]
pub(crate) struct MemtableIter {
    table: std::sync::Arc<Memtable>,
    /// Exclusive internal-key bounds of what has not been returned yet at each end.
    front: Bound<InternalKey>,
    back: Bound<InternalKey>,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    front_buf: VecDeque<Entry>,
    back_buf: VecDeque<Entry>,
    done: bool,
}

impl MemtableIter {
    pub fn new(table: std::sync::Arc<Memtable>, lower: Bound<Bytes>, upper: Bound<Bytes>) -> Self {
        Self {
            table,
            front: Bound::Unbounded,
            back: Bound::Unbounded,
            lower,
            upper,
            front_buf: VecDeque::new(),
            back_buf: VecDeque::new(),
            done: false,
        }
    }

    /// The internal-key bounds of the remaining range.
    fn remaining(&self) -> (Bound<KeyRef<'_>>, Bound<KeyRef<'_>>) {
        let lo = match (&self.front, &self.lower) {
            (Bound::Excluded(k), _) | (Bound::Included(k), _) => {
                Bound::Excluded(KeyRef::new(&k.user_key, k.seq))
            }
            (Bound::Unbounded, Bound::Included(k)) => Bound::Included(KeyRef::new(k, SeqNo::MAX)),
            // Past every version of `k`: versions sort newest first, so (k, 0) is the last.
            (Bound::Unbounded, Bound::Excluded(k)) => Bound::Excluded(KeyRef::new(k, SeqNo(0))),
            (Bound::Unbounded, Bound::Unbounded) => Bound::Unbounded,
        };
        let hi = match (&self.back, &self.upper) {
            (Bound::Excluded(k), _) | (Bound::Included(k), _) => {
                Bound::Excluded(KeyRef::new(&k.user_key, k.seq))
            }
            (Bound::Unbounded, Bound::Included(k)) => Bound::Included(KeyRef::new(k, SeqNo(0))),
            (Bound::Unbounded, Bound::Excluded(k)) => Bound::Excluded(KeyRef::new(k, SeqNo::MAX)),
            (Bound::Unbounded, Bound::Unbounded) => Bound::Unbounded,
        };
        (lo, hi)
    }

    fn refill(&mut self, from_front: bool) {
        let (lo, hi) = self.remaining();
        if !bounds_nonempty(&lo, &hi) {
            return;
        }
        let list = &self.table.entries;
        let above_lo = |n: &Node<'_>| match &lo {
            Bound::Unbounded => true,
            Bound::Included(k) => n.key().cmp(k).is_ge(),
            Bound::Excluded(k) => n.key().cmp(k).is_gt(),
        };
        let below_hi = |n: &Node<'_>| match &hi {
            Bound::Unbounded => true,
            Bound::Included(k) => n.key().cmp(k).is_le(),
            Bound::Excluded(k) => n.key().cmp(k).is_lt(),
        };
        let mut batch = NodeBatch::default();
        if from_front {
            let mut node = match &lo {
                Bound::Unbounded => list.first(),
                Bound::Included(k) => list.seek(k),
                Bound::Excluded(k) => list.seek(k).and_then(|n| {
                    if n.key().cmp(k).is_eq() {
                        n.next()
                    } else {
                        Some(n)
                    }
                }),
            };
            while let Some(n) = node
                && batch.has_room()
                && below_hi(&n)
            {
                batch.push(n);
                node = n.next();
            }
        } else {
            // Singly linked: each step back is a search for the last node before the current.
            let mut node = match &hi {
                Bound::Unbounded => list.seek_before(None),
                Bound::Excluded(k) => list.seek_before(Some(k)),
                Bound::Included(k) => list
                    .seek(k)
                    .filter(|n| n.key().cmp(k).is_eq())
                    .or_else(|| list.seek_before(Some(k))),
            };
            while let Some(n) = node
                && batch.has_room()
                && above_lo(&n)
            {
                batch.push(n);
                node = list.seek_before(Some(&n.key()));
            }
        }
        let batch = copy_entries(&batch.nodes);
        let (edge, buf) = if from_front {
            (&mut self.front, &mut self.front_buf)
        } else {
            (&mut self.back, &mut self.back_buf)
        };
        if let Some(last) = batch.last() {
            *edge = Bound::Excluded(last.key.clone());
        }
        buf.extend(batch);
    }
}

/// A forward walk over a memtable's versions from a seek target, lending each version from a
/// buffer that batches of the skip list are copied into (reused from batch to batch). Like
/// [`MemtableIter`] it holds no borrow of the list between calls: each refill seeks again from
/// the last version it copied. Upper bounds are the caller's to check.
#[derive(Debug)]
pub(crate) struct MemtableScan {
    table: std::sync::Arc<Memtable>,
    /// The keys and values of the batch, back to back.
    buf: Vec<u8>,
    slots: Vec<ScanSlot>,
    pos: usize,
    /// Versions the next refill copies at most.
    batch: usize,
}

/// Where a version of a [`MemtableScan`]'s batch lies: its key runs from where the previous
/// version's value ended to `key_end`, its value from there to `value_end`.
#[derive(Debug)]
struct ScanSlot {
    key_end: usize,
    value_end: usize,
    seq: SeqNo,
    kind: ValueKind,
}

impl MemtableScan {
    /// Positioned at the first version at or after `from` (newest version first), or at the
    /// first version of the memtable with `None`.
    pub fn new(table: std::sync::Arc<Memtable>, from: Option<&[u8]>) -> Self {
        let mut scan = Self {
            table,
            buf: Vec::new(),
            slots: Vec::new(),
            pos: 0,
            batch: SCAN_FIRST_BATCH,
        };
        let table = std::sync::Arc::clone(&scan.table);
        let start = match from {
            Some(k) => table.entries.seek(&KeyRef::new(k, SeqNo::MAX)),
            None => table.entries.first(),
        };
        scan.fill(start);
        scan
    }

    /// The version the scan is at, if any.
    pub fn current(&self) -> Option<EntryRef<'_>> {
        self.slot(self.pos)
    }

    /// Moves to the next version.
    pub fn advance(&mut self) {
        self.pos += 1;
        if self.pos < self.slots.len() {
            return;
        }
        let table = std::sync::Arc::clone(&self.table);
        let list = &table.entries;
        // Resume after the last version copied: seek to it, then step past it.
        let last = self.slots.len().checked_sub(1).and_then(|i| self.slot(i));
        let next = last.and_then(|last| {
            let key = KeyRef::new(last.user_key, last.seq);
            let node = list.seek(&key)?;
            if node.key().cmp(&key).is_eq() {
                node.next()
            } else {
                Some(node)
            }
        });
        self.fill(next);
    }

    /// Version `i` of the batch.
    fn slot(&self, i: usize) -> Option<EntryRef<'_>> {
        let slot = self.slots.get(i)?;
        let key_start = match i.checked_sub(1) {
            Some(prev) => self.slots.get(prev)?.value_end,
            None => 0,
        };
        Some(EntryRef {
            user_key: self.buf.get(key_start..slot.key_end)?,
            seq: slot.seq,
            kind: slot.kind,
            value: self.buf.get(slot.key_end..slot.value_end)?,
        })
    }

    /// Replaces the batch with copies of `start` and the nodes after it, up to `self.batch` of
    /// them or [`ITER_BATCH_BYTES`] (but at least one), and doubles the next batch.
    fn fill(&mut self, start: Option<Node<'_>>) {
        self.buf.clear();
        self.slots.clear();
        self.pos = 0;
        let limit = self.batch;
        self.batch = (self.batch * 2).min(ITER_BATCH);
        let mut node = start;
        while let Some(n) = node
            && self.slots.len() < limit
            && self.buf.len() < ITER_BATCH_BYTES
        {
            self.buf.extend_from_slice(n.user_key());
            let key_end = self.buf.len();
            self.buf.extend_from_slice(n.value());
            self.slots.push(ScanSlot {
                key_end,
                value_end: self.buf.len(),
                seq: n.seq(),
                kind: n.kind(),
            });
            node = n.next();
        }
    }
}

fn bounds_nonempty(lo: &Bound<KeyRef<'_>>, hi: &Bound<KeyRef<'_>>) -> bool {
    match (lo, hi) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(a), Bound::Included(b)) => a.cmp(b).is_le(),
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a.cmp(b).is_lt()
        }
    }
}

impl Iterator for MemtableIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.done {
            return None;
        }
        if self.front_buf.is_empty() {
            self.refill(true);
        }
        // Entries buffered at the back are past everything left in the skip list.
        match self
            .front_buf
            .pop_front()
            .or_else(|| self.back_buf.pop_back())
        {
            Some(e) => Some(e),
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl DoubleEndedIterator for MemtableIter {
    fn next_back(&mut self) -> Option<Entry> {
        if self.done {
            return None;
        }
        if self.back_buf.is_empty() {
            self.refill(false);
        }
        match self
            .back_buf
            .pop_front()
            .or_else(|| self.front_buf.pop_back())
        {
            Some(e) => Some(e),
            None => {
                self.done = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::RangeBounds;
    use std::sync::Arc;

    use super::*;
    use crate::index::skiplist::tests::awkward_keys;
    use crate::key::compare_internal;

    /// A xorshift generator: cheap, seeded, the same sequence everywhere (Miri included).
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn table_with(keys: &[(&str, u64)]) -> Arc<Memtable> {
        let m = Memtable::new(1, 4 << 10);
        for (k, s) in keys {
            m.insert(
                k.as_bytes(),
                SeqNo(*s),
                ValueKind::Put,
                format!("{k}{s}").as_bytes(),
            );
        }
        Arc::new(m)
    }

    #[test]
    fn awkward_keys_iterate_in_byte_order() {
        let keys = awkward_keys();
        let m = Memtable::new(1, 4 << 10);
        for (i, k) in keys.iter().enumerate().rev() {
            m.insert(k, SeqNo(i as u64 + 1), ValueKind::Put, &[]);
        }
        let mut expected: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        expected.sort_unstable();
        let got: Vec<Bytes> = m.entries().map(|e| e.key.user_key).collect();
        assert_eq!(got, expected);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                m.get(k, SeqNo::MAX).unwrap().seq,
                SeqNo(i as u64 + 1),
                "{k:?}"
            );
        }
    }

    #[test]
    fn a_new_memtable_charges_its_hash_index() {
        let m = Memtable::new(1, 32 << 20);
        assert!(m.is_empty());
        assert_eq!(m.approximate_bytes(), 2 << 20);
        m.insert(b"k", SeqNo(1), ValueKind::Put, b"v");
        assert!(m.approximate_bytes() > 2 << 20);
    }

    #[test]
    fn range_tombstones_cover_keys_at_snapshots_that_see_them() {
        let m = table_with(&[("a", 1), ("c", 2)]);
        let covering = |key: &[u8], snapshot| {
            m.max_covering_tombstone(key, SeqNo(snapshot), ReadMode::Blocking)
                .unwrap()
        };
        assert_eq!(covering(b"b", 10), None);
        m.insert_range_tombstone(RangeTombstone {
            start: Bytes::from_static(b"b"),
            end: Some(Bytes::from_static(b"d")),
            seq: SeqNo(3),
        });
        m.insert_range_tombstone(RangeTombstone {
            start: Bytes::from_static(b"c"),
            end: None,
            seq: SeqNo(5),
        });
        assert_eq!(covering(b"a", 10), None);
        assert_eq!(covering(b"b", 10), Some(SeqNo(3)));
        assert_eq!(covering(b"c", 10), Some(SeqNo(5)));
        assert_eq!(covering(b"c", 4), Some(SeqNo(3)));
        assert_eq!(covering(b"c", 2), None);
        assert_eq!(covering(b"zz", 10), Some(SeqNo(5)));
        assert_eq!(
            m.max_covering_tombstone(b"b", SeqNo(10), ReadMode::CacheOnly)
                .unwrap(),
            Some(SeqNo(3))
        );
    }

    #[test]
    fn get_returns_newest_version_visible_at_snapshot() {
        let m = table_with(&[("a", 1), ("a", 5), ("b", 3)]);
        assert_eq!(m.get(b"a", SeqNo(10)).unwrap().seq, SeqNo(5));
        assert_eq!(m.get(b"a", SeqNo(4)).unwrap().seq, SeqNo(1));
        assert!(m.get(b"a", SeqNo(0)).is_none());
        assert!(m.get(b"c", SeqNo(10)).is_none());
        assert!(m.get(b"", SeqNo(10)).is_none());
    }

    #[test]
    fn iterator_meets_in_the_middle_without_repeating() {
        let keys: Vec<(String, u64)> = (0..500).map(|i| (format!("k{i:04}"), i % 3 + 1)).collect();
        let refs: Vec<(&str, u64)> = keys.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        let m = table_with(&refs);
        let mut it = MemtableIter::new(m, Bound::Unbounded, Bound::Unbounded);
        let mut seen = Vec::new();
        let mut back = Vec::new();
        for i in 0.. {
            let e = if i % 3 == 0 {
                it.next_back().map(|e| (true, e))
            } else {
                it.next().map(|e| (false, e))
            };
            match e {
                Some((true, e)) => back.push(e.key.user_key),
                Some((false, e)) => seen.push(e.key.user_key),
                None => break,
            }
        }
        back.reverse();
        seen.extend(back);
        let expected: Vec<Bytes> = keys
            .iter()
            .map(|(k, _)| Bytes::copy_from_slice(k.as_bytes()))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn iterator_respects_user_key_bounds_for_every_version() {
        let m = table_with(&[("a", 1), ("b", 2), ("b", 7), ("c", 3), ("d", 4)]);
        let it = MemtableIter::new(
            m.clone(),
            Bound::Excluded(Bytes::from("a")),
            Bound::Included(Bytes::from("c")),
        );
        let got: Vec<(Bytes, u64)> = it.map(|e| (e.key.user_key, e.key.seq.0)).collect();
        assert_eq!(
            got,
            vec![
                (Bytes::from("b"), 7),
                (Bytes::from("b"), 2),
                (Bytes::from("c"), 3)
            ]
        );
        let it = MemtableIter::new(
            m,
            Bound::Included(Bytes::from("b")),
            Bound::Excluded(Bytes::from("c")),
        );
        let got: Vec<u64> = it.rev().map(|e| e.key.seq.0).collect();
        assert_eq!(got, vec![2, 7]);
    }

    /// Random bounds of every kind and a random mix of `next` and `next_back` over many
    /// versions of few keys, so refills of 64 fall between versions of one key, against a
    /// sorted model.
    #[test]
    fn iterator_agrees_with_a_sorted_model_for_any_bounds_and_either_end() {
        let mut random = xorshift(99);
        // Miri, which runs these tests in CI, takes a few rounds.
        for round in 0..if cfg!(miri) { 3 } else { 200 } {
            let m = Memtable::new(1, 4 << 10);
            let mut model: Vec<(Vec<u8>, u64)> = Vec::new();
            for seq in 1..=random() % 400 {
                let k = format!("k{}", random() % 40).into_bytes();
                m.insert(&k, SeqNo(seq), ValueKind::Put, b"v");
                model.push((k, seq));
            }
            model.sort_by(|a, b| compare_internal(&a.0, SeqNo(a.1), &b.0, SeqNo(b.1)));
            let m = Arc::new(m);
            let mut bound = || -> Bound<Bytes> {
                let k = Bytes::from(format!("k{}", random() % 42));
                match random() % 3 {
                    0 => Bound::Unbounded,
                    1 => Bound::Included(k),
                    _ => Bound::Excluded(k),
                }
            };
            let (lower, upper) = (bound(), bound());
            let in_range = |k: &[u8]| {
                let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (
                    lower.as_ref().map(|b| &b[..]),
                    upper.as_ref().map(|b| &b[..]),
                );
                RangeBounds::<[u8]>::contains(&bounds, k)
            };
            let expected: Vec<(Vec<u8>, u64)> =
                model.iter().filter(|(k, _)| in_range(k)).cloned().collect();
            let mut it = MemtableIter::new(Arc::clone(&m), lower.clone(), upper.clone());
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let (from_front, e) = if random().is_multiple_of(2) {
                    (true, it.next())
                } else {
                    (false, it.next_back())
                };
                let Some(e) = e else { break };
                let v = (e.key.user_key.to_vec(), e.key.seq.0);
                if from_front {
                    front.push(v);
                } else {
                    back.push(v);
                }
            }
            back.reverse();
            front.extend(back);
            assert_eq!(front, expected, "round {round}: {lower:?}..{upper:?}");
        }
    }

    /// A scan from a random start over many versions of few keys (so that refills of 64 fall
    /// between versions of one key), against a sorted model. In half the rounds versions are
    /// inserted as the scan goes: it must still return, in order and with their values, every
    /// version that was there when it started; without inserts, exactly those.
    #[test]
    fn scan_agrees_with_a_sorted_model_while_versions_are_inserted() {
        let mut random = xorshift(7);
        let value = |k: &[u8], seq: u64| [k, &seq.to_le_bytes()].concat();
        // Under Miri, two rounds (one with inserts) of at most 150 versions: enough to cross
        // refills and arena chunks.
        let (rounds, versions) = if cfg!(miri) { (2, 150) } else { (200, 400) };
        for round in 0..rounds {
            let m = Arc::new(Memtable::new(1, 4 << 10));
            let mut seq = 0;
            let mut insert = |k: Vec<u8>| {
                seq += 1;
                m.insert(&k, SeqNo(seq), ValueKind::Put, &value(&k, seq));
                (k, seq)
            };
            let mut before: Vec<(Vec<u8>, u64)> = (0..random() % versions)
                .map(|_| insert(format!("k{:02}", random() % 40).into_bytes()))
                .collect();
            before.sort_by(|a, b| compare_internal(&a.0, SeqNo(a.1), &b.0, SeqNo(b.1)));
            let from = (!random().is_multiple_of(3))
                .then(|| format!("k{:02}", random() % 42).into_bytes());
            before.retain(|(k, _)| from.as_deref().is_none_or(|f| k.as_slice() >= f));
            let inserting = round % 2 == 1;
            let mut scan = MemtableScan::new(Arc::clone(&m), from.as_deref());
            let mut got: Vec<(Vec<u8>, u64)> = Vec::new();
            while let Some(e) = scan.current() {
                assert_eq!(e.value, value(e.user_key, e.seq.0), "round {round}");
                if let Some((k, s)) = got.last() {
                    let order = compare_internal(k, SeqNo(*s), e.user_key, e.seq);
                    assert!(order.is_lt(), "round {round}: out of order after {k:?}@{s}");
                }
                got.push((e.user_key.to_vec(), e.seq.0));
                scan.advance();
                if inserting && random().is_multiple_of(4) {
                    insert(format!("k{:02}", random() % 40).into_bytes());
                }
            }
            if inserting {
                let missing: Vec<_> = before.iter().filter(|v| !got.contains(v)).collect();
                assert!(missing.is_empty(), "round {round}: missing {missing:?}");
            } else {
                assert_eq!(got, before, "round {round}: from {from:?}");
            }
        }
    }

    #[test]
    fn a_refill_of_large_values_stops_at_the_byte_cap() {
        let m = Memtable::new(1, 32 << 20);
        let value = vec![7; 100 << 10];
        for i in 0..10u64 {
            m.insert(
                format!("k{i}").as_bytes(),
                SeqNo(i + 1),
                ValueKind::Put,
                &value,
            );
        }
        let mut it = MemtableIter::new(Arc::new(m), Bound::Unbounded, Bound::Unbounded);
        assert_eq!(it.next().unwrap().value.len(), value.len());
        // Three values reach 256 KiB: one returned, two buffered, not 63.
        assert_eq!(it.front_buf.len(), 2);
        assert_eq!(it.count(), 9);
    }
}
