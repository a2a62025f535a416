//! The memtable: recent writes, ordered, in memory, until they are flushed to a table.
//!
//! Point versions live in a lock-free skip list (crossbeam-skiplist, reclaimed through
//! crossbeam-epoch): readers never block writers or each other. Range tombstones are rare and
//! live in a small list behind a read-write lock.
//!
//! Thread safety: any number of readers; inserts come from the single commit leader
//! (`db::write`), so versions of a batch appear in sequence order. A memtable is frozen (no
//! more inserts) before it is flushed.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

use crate::sync::Rank;
use crate::sync::ordered::RwLock;
use bytes::Bytes;
use crossbeam_skiplist::SkipMap;

use crate::error::{Error, Result};
use crate::index::table::ReadMode;
use crate::key::{Entry, Found, InternalKey, RangeTombstone, SeqNo, ValueKind, compare_internal};

/// Bytes charged per entry on top of key and value: skip-list node, tower and `Bytes` headers.
const ENTRY_OVERHEAD_BYTES: usize = 80;
/// Entries an iterator copies out of the skip list per refill.
const ITER_BATCH: usize = 64;

/// How many leading bytes of a user key [`MemKey`] keeps inline, as an integer.
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

/// A borrowed internal key with its prefix: what the skip list compares.
#[derive(Clone, Copy)]
struct KeyRef<'a> {
    prefix: u128,
    user_key: &'a [u8],
    seq: SeqNo,
}

impl KeyRef<'_> {
    /// Internal order ([`compare_internal`]), mostly decided by one integer comparison that
    /// reads nothing outside the skip-list node: following each node's key to its heap bytes
    /// was most of the cost of an insert.
    fn cmp(&self, other: &KeyRef<'_>) -> Ordering {
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

/// A borrowed internal key to search for.
#[derive(Clone, Copy)]
struct Probe<'a>(KeyRef<'a>);

impl<'a> Probe<'a> {
    fn new(user_key: &'a [u8], seq: SeqNo) -> Self {
        Probe(KeyRef {
            prefix: key_prefix(user_key),
            user_key,
            seq,
        })
    }
}

/// The skip list's key: an internal key and the leading bytes of its user key, inline.
#[derive(Debug, Clone)]
struct MemKey {
    prefix: u128,
    key: InternalKey,
}

impl MemKey {
    fn new(key: InternalKey) -> Self {
        Self {
            prefix: key_prefix(&key.user_key),
            key,
        }
    }
}

/// A borrowed view of an internal key, so lookups need not allocate an owned key.
trait KeyView {
    fn view(&self) -> KeyRef<'_>;
}

impl KeyView for MemKey {
    fn view(&self) -> KeyRef<'_> {
        KeyRef {
            prefix: self.prefix,
            user_key: &self.key.user_key,
            seq: self.key.seq,
        }
    }
}

impl KeyView for Probe<'_> {
    fn view(&self) -> KeyRef<'_> {
        self.0
    }
}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.view().cmp(&other.view())
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MemKey {}

impl<'a> Borrow<dyn KeyView + 'a> for MemKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.view().cmp(&other.view())
    }
}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn KeyView + '_ {}

/// An in-memory, ordered buffer of recent versions.
#[derive(Debug)]
pub(crate) struct Memtable {
    entries: SkipMap<MemKey, Bytes>,
    tombstones: RwLock<Vec<RangeTombstone>>,
    approximate_bytes: AtomicUsize,
    /// Bytes of the separated values its pointers name (they are not in the memtable).
    value_bytes: AtomicU64,
    /// The highest sequence number inserted.
    max_seq: AtomicU64,
    /// The write-ahead log file that holds this memtable's writes.
    wal_number: u64,
}

impl Memtable {
    pub fn new(wal_number: u64) -> Self {
        Self {
            entries: SkipMap::new(),
            tombstones: RwLock::ranked(Rank::Leaf, Vec::new()),
            approximate_bytes: AtomicUsize::new(0),
            value_bytes: AtomicU64::new(0),
            max_seq: AtomicU64::new(0),
            wal_number,
        }
    }

    pub fn wal_number(&self) -> u64 {
        self.wal_number
    }

    /// Records that every write up to `seq` is in this memtable.
    pub fn note_max_seq(&self, seq: SeqNo) {
        self.max_seq.fetch_max(seq.0, AtomicOrdering::Release);
    }

    pub fn max_seq(&self) -> SeqNo {
        SeqNo(self.max_seq.load(AtomicOrdering::Acquire))
    }

    pub fn approximate_bytes(&self) -> usize {
        self.approximate_bytes.load(AtomicOrdering::Relaxed)
    }

    /// Bytes of the separated values the memtable's pointers name.
    pub fn value_bytes(&self) -> u64 {
        self.value_bytes.load(AtomicOrdering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.tombstones.read().is_empty()
    }

    fn charge(&self, bytes: usize) {
        self.approximate_bytes
            .fetch_add(bytes + ENTRY_OVERHEAD_BYTES, AtomicOrdering::Relaxed);
    }

    /// Adds a version. Keys are unique: every version has its own sequence number.
    pub fn insert(&self, key: Bytes, seq: SeqNo, kind: ValueKind, value: Bytes) {
        self.charge(key.len() + value.len());
        self.entries
            .insert(MemKey::new(InternalKey::new(key, seq, kind)), value);
    }

    /// Adds a version whose value, of `value_len` bytes, is in a value file.
    pub fn insert_pointer(&self, key: Bytes, seq: SeqNo, pointer: Bytes, value_len: u64) {
        self.value_bytes
            .fetch_add(value_len, AtomicOrdering::Relaxed);
        self.insert(key, seq, ValueKind::Pointer, pointer);
    }

    pub fn insert_range_tombstone(&self, tombstone: RangeTombstone) {
        self.charge(tombstone.start.len() + tombstone.end.as_ref().map_or(0, Bytes::len));
        self.tombstones.write().push(tombstone);
    }

    /// The newest version of `user_key` visible at `snapshot`, tombstones included.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Option<Found> {
        let probe = Probe::new(user_key, snapshot);
        let entry = self
            .entries
            .lower_bound(Bound::Included(&probe as &dyn KeyView))?;
        let key = &entry.key().key;
        (key.user_key == user_key).then(|| Found {
            seq: key.seq,
            kind: key.kind,
            value: entry.value().clone(),
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
        self.entries.iter().map(|e| Entry {
            key: e.key().key.clone(),
            value: e.value().clone(),
        })
    }
}

/// A double-ended cursor over the versions of a memtable whose user keys lie in a range.
///
/// It holds no borrow of the skip list between calls: it copies entries out in small batches
/// (cheap: keys and values are reference-counted) and re-seeks from the last one it returned.
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
    fn remaining(&self) -> (Bound<Probe<'_>>, Bound<Probe<'_>>) {
        let lo = match (&self.front, &self.lower) {
            (Bound::Excluded(k), _) | (Bound::Included(k), _) => {
                Bound::Excluded(Probe::new(&k.user_key, k.seq))
            }
            (Bound::Unbounded, Bound::Included(k)) => Bound::Included(Probe::new(k, SeqNo::MAX)),
            // Past every version of `k`: versions sort newest first, so (k, 0) is the last.
            (Bound::Unbounded, Bound::Excluded(k)) => Bound::Excluded(Probe::new(k, SeqNo(0))),
            (Bound::Unbounded, Bound::Unbounded) => Bound::Unbounded,
        };
        let hi = match (&self.back, &self.upper) {
            (Bound::Excluded(k), _) | (Bound::Included(k), _) => {
                Bound::Excluded(Probe::new(&k.user_key, k.seq))
            }
            (Bound::Unbounded, Bound::Included(k)) => Bound::Included(Probe::new(k, SeqNo(0))),
            (Bound::Unbounded, Bound::Excluded(k)) => Bound::Excluded(Probe::new(k, SeqNo::MAX)),
            (Bound::Unbounded, Bound::Unbounded) => Bound::Unbounded,
        };
        (lo, hi)
    }

    fn refill(&mut self, from_front: bool) {
        let (lo, hi) = self.remaining();
        let lo_ref = lo.as_ref().map(|k| k as &dyn KeyView);
        let hi_ref = hi.as_ref().map(|k| k as &dyn KeyView);
        if !bounds_nonempty(&lo, &hi) {
            return;
        }
        let range = self.table.entries.range::<dyn KeyView, _>((lo_ref, hi_ref));
        let copy = |e: crossbeam_skiplist::map::Entry<'_, MemKey, Bytes>| Entry {
            key: e.key().key.clone(),
            value: e.value().clone(),
        };
        let batch: Vec<Entry> = if from_front {
            range.take(ITER_BATCH).map(copy).collect()
        } else {
            range.rev().take(ITER_BATCH).map(copy).collect()
        };
        if from_front {
            if let Some(last) = batch.last() {
                self.front = Bound::Excluded(last.key.clone());
            }
            self.front_buf.extend(batch);
        } else {
            if let Some(last) = batch.last() {
                self.back = Bound::Excluded(last.key.clone());
            }
            self.back_buf.extend(batch);
        }
    }
}

fn bounds_nonempty(lo: &Bound<Probe<'_>>, hi: &Bound<Probe<'_>>) -> bool {
    match (lo, hi) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(a), Bound::Included(b)) => a.0.cmp(&b.0).is_le(),
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a.0.cmp(&b.0).is_lt()
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
    use std::sync::Arc;

    use super::*;

    fn table_with(keys: &[(&str, u64)]) -> Arc<Memtable> {
        let m = Memtable::new(1);
        for (k, s) in keys {
            m.insert(
                Bytes::copy_from_slice(k.as_bytes()),
                SeqNo(*s),
                ValueKind::Put,
                Bytes::from(format!("{k}{s}")),
            );
        }
        Arc::new(m)
    }

    /// Keys whose prefixes tie or differ only in padding, around the inline length.
    fn awkward_keys() -> Vec<Vec<u8>> {
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

    #[test]
    fn prefix_order_agrees_with_internal_order() {
        let keys = awkward_keys();
        for a in &keys {
            for b in &keys {
                for (sa, sb) in [(1, 1), (1, 2), (2, 1)] {
                    let x = MemKey::new(InternalKey::new(
                        Bytes::copy_from_slice(a),
                        SeqNo(sa),
                        ValueKind::Put,
                    ));
                    let y = Probe::new(b, SeqNo(sb));
                    let expected = compare_internal(a, SeqNo(sa), b, SeqNo(sb));
                    assert_eq!(
                        x.view().cmp(&y.view()),
                        expected,
                        "{a:?}@{sa} vs {b:?}@{sb}"
                    );
                }
            }
        }
    }

    #[test]
    fn awkward_keys_iterate_in_byte_order() {
        let keys = awkward_keys();
        let m = Memtable::new(1);
        for (i, k) in keys.iter().enumerate().rev() {
            m.insert(
                Bytes::copy_from_slice(k),
                SeqNo(i as u64 + 1),
                ValueKind::Put,
                Bytes::new(),
            );
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
}
