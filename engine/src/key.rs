//! Keys as the index sees them: user keys tagged with a sequence number and a kind.
//!
//! Every write gets a [`SeqNo`]; a key may have many versions, ordered newest first. A read at
//! snapshot `s` sees, for each user key, the newest version with `seq <= s`, unless a range
//! tombstone with a higher sequence number (also `<= s`) covers it.
//!
//! Internal order: user key ascending, then sequence number descending. In table files an
//! internal key is the user key followed by an 8-byte little-endian trailer `seq << 8 | kind`
//! (`docs/format/table.md`).

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;

/// A sequence number: the position of a write in the history of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The largest sequence number: the trailer keeps 56 bits for it.
    pub const MAX: SeqNo = SeqNo((1 << 56) - 1);

    /// The next sequence number.
    #[must_use]
    pub fn next(self) -> SeqNo {
        SeqNo(self.0 + 1)
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a version of a key is. DO NOT RENUMBER: these values are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// A point tombstone: the key was deleted.
    Delete = 0,
    /// The value is stored inline.
    Put = 1,
    /// The value is in a value file; the stored bytes are its `ValuePointer`.
    Pointer = 2,
}

impl ValueKind {
    /// Decodes a stored kind byte.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Delete),
            1 => Some(Self::Put),
            2 => Some(Self::Pointer),
            _ => None,
        }
    }
}

/// The trailer of an internal key: `seq << 8 | kind`.
#[must_use]
pub fn pack_trailer(seq: SeqNo, kind: ValueKind) -> u64 {
    debug_assert!(seq <= SeqNo::MAX);
    (seq.0 << 8) | kind as u64
}

/// Splits a trailer; `None` if the kind byte is unknown.
#[must_use]
pub fn unpack_trailer(trailer: u64) -> Option<(SeqNo, ValueKind)> {
    Some((
        SeqNo(trailer >> 8),
        ValueKind::from_u8((trailer & 0xff) as u8)?,
    ))
}

/// A version of a user key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InternalKey {
    /// The key the user wrote.
    pub user_key: Bytes,
    /// When it was written.
    pub seq: SeqNo,
    /// What was written.
    pub kind: ValueKind,
}

impl InternalKey {
    /// A version of `user_key`.
    #[must_use]
    pub fn new(user_key: Bytes, seq: SeqNo, kind: ValueKind) -> Self {
        Self {
            user_key,
            seq,
            kind,
        }
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(&self.user_key, self.seq, &other.user_key, other.seq)
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}@{}:{:?}",
            self.user_key.escape_ascii().to_string(),
            self.seq,
            self.kind
        )
    }
}

/// Internal order: user key ascending, then newest (highest sequence number) first.
#[must_use]
pub fn compare_internal(a_key: &[u8], a_seq: SeqNo, b_key: &[u8], b_seq: SeqNo) -> Ordering {
    a_key.cmp(b_key).then_with(|| b_seq.cmp(&a_seq))
}

/// One version of a key with its value (empty for tombstones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The versioned key.
    pub key: InternalKey,
    /// The value bytes; empty for a tombstone.
    pub value: Bytes,
}

/// A version borrowed from where it is stored (a decoded block, a memtable scan's buffer):
/// what scans pass along instead of an owned [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The user key.
    pub user_key: &'a [u8],
    /// The version's sequence number.
    pub seq: SeqNo,
    /// What the version is.
    pub kind: ValueKind,
    /// The inline value, the encoded pointer, or empty for a tombstone.
    pub value: &'a [u8],
}

impl Entry {
    /// The entry, borrowed.
    #[must_use]
    pub fn borrowed(&self) -> EntryRef<'_> {
        EntryRef {
            user_key: &self.key.user_key,
            seq: self.key.seq,
            kind: self.key.kind,
            value: &self.value,
        }
    }
}

impl EntryRef<'_> {
    /// Internal order: user key ascending, then sequence number descending.
    #[must_use]
    pub fn cmp_key(&self, other: &EntryRef<'_>) -> Ordering {
        compare_internal(self.user_key, self.seq, other.user_key, other.seq)
    }
}

/// What a point lookup found: the newest version of a key at a snapshot. The key itself is
/// not returned: the caller has it, and copying it would cost an allocation per read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// When the version was written.
    pub seq: SeqNo,
    /// A value or a tombstone.
    pub kind: ValueKind,
    /// The value bytes; empty for a tombstone.
    pub value: Bytes,
}

impl From<Entry> for Found {
    fn from(e: Entry) -> Self {
        Self {
            seq: e.key.seq,
            kind: e.key.kind,
            value: e.value,
        }
    }
}

/// A range tombstone: every version with a lower sequence number of every key in
/// `start..end` (`end` exclusive, `None` for no upper bound) is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeTombstone {
    /// First deleted key (inclusive).
    pub start: Bytes,
    /// First key after the range (exclusive); `None` deletes to the end of the key space.
    pub end: Option<Bytes>,
    /// When the range was deleted.
    pub seq: SeqNo,
}

impl RangeTombstone {
    /// Turns any range bounds over byte keys into `start..end` form; `None` if the range is
    /// empty.
    #[must_use]
    pub fn from_bounds(start: Bound<&[u8]>, end: Bound<&[u8]>, seq: SeqNo) -> Option<Self> {
        let start = match start {
            Bound::Unbounded => Bytes::new(),
            Bound::Included(k) => Bytes::copy_from_slice(k),
            Bound::Excluded(k) => successor(k),
        };
        let end = match end {
            Bound::Unbounded => None,
            Bound::Included(k) => Some(successor(k)),
            Bound::Excluded(k) => Some(Bytes::copy_from_slice(k)),
        };
        let t = Self { start, end, seq };
        (!t.is_empty()).then_some(t)
    }

    /// True if the range holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| *end <= self.start)
    }

    /// True if `key` lies in the range.
    #[must_use]
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && self.end.as_ref().is_none_or(|end| key < &end[..])
    }

    #[cfg(test)]
    /// True if the range deletes the version `key@seq`.
    #[must_use]
    pub fn covers(&self, key: &[u8], seq: SeqNo) -> bool {
        seq < self.seq && self.contains(key)
    }
}

/// The smallest key greater than `k`: `k` followed by a zero byte.
#[must_use]
pub fn successor(k: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(k.len() + 1);
    v.extend_from_slice(k);
    v.push(0);
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_first() {
        let a = InternalKey::new(Bytes::from_static(b"k"), SeqNo(5), ValueKind::Put);
        let b = InternalKey::new(Bytes::from_static(b"k"), SeqNo(9), ValueKind::Delete);
        let c = InternalKey::new(Bytes::from_static(b"l"), SeqNo(1), ValueKind::Put);
        assert!(b < a && a < c);
    }

    #[test]
    fn inclusive_end_covers_the_end_key_only() {
        let t =
            RangeTombstone::from_bounds(Bound::Included(b"a"), Bound::Included(b"c"), SeqNo(10))
                .unwrap();
        assert!(t.covers(b"a", SeqNo(9)) && t.covers(b"c", SeqNo(9)));
        assert!(!t.covers(b"c\0", SeqNo(9)) && !t.covers(b"b", SeqNo(10)));
    }

    #[test]
    fn empty_ranges_are_rejected() {
        assert!(
            RangeTombstone::from_bounds(Bound::Included(b"b"), Bound::Excluded(b"b"), SeqNo(1))
                .is_none()
        );
        assert!(
            RangeTombstone::from_bounds(Bound::Included(b"c"), Bound::Excluded(b"a"), SeqNo(1))
                .is_none()
        );
    }

    #[test]
    fn trailer_round_trips() {
        let t = pack_trailer(SeqNo(123_456), ValueKind::Put);
        assert_eq!(unpack_trailer(t), Some((SeqNo(123_456), ValueKind::Put)));
        assert_eq!(unpack_trailer(7), None);
    }
}
