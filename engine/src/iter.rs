//! [`Iter`]: the user's view of a key range at one snapshot, from both ends.
//!
//! Built on a [`MergeIter`] of every source that may hold versions in the range. For each
//! user key it returns the newest version at the snapshot, unless that version is a point
//! tombstone or a range tombstone visible at the snapshot covers it.
//!
//! Going forward, the first version of a key is the newest; going backward it is the oldest,
//! so the back end gathers all versions of a key before deciding. Where the two ends meet,
//! a key decided by one end is skipped by the other.
//!
//! The iterator pins the memtables and table files it reads: they stay valid however long it
//! lives. Not thread-safe; it has one owner.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::SuperVersion;
use crate::error::Result;
use crate::index::memtable::MemtableIter;
use crate::index::merge::{LevelIter, MergeIter, Source};
use crate::index::table::ReadMode;
use crate::index::tombstones::TombstoneIndex;
use crate::key::{Entry, SeqNo, ValueKind};
use crate::types::{Key, Value};
use crate::value::ValueStore;
use crate::value::block::ValueFileId;
use crate::value::pointer::ValuePointer;

/// An iterator over `(key, value)` pairs in key order; see [`Db::range`](crate::Db::range).
pub struct Iter {
    merge: MergeIter,
    tombstones: TombstoneIndex,
    snapshot: SeqNo,
    /// The last user key decided by each end.
    front_key: Option<Bytes>,
    back_key: Option<Bytes>,
    /// An entry the back end read past while gathering a key's versions.
    back_pending: Option<Entry>,
    done: bool,
    /// Keeps the sources alive.
    _pinned: Arc<SuperVersion>,
    values: Arc<ValueStore>,
    /// Readahead of the front end: where the last value read ended and the current window.
    ahead: Readahead,
}

/// The readahead window of a scan over separated values. It starts when a value begins where
/// the previous one ended in the same file, and doubles while the scan stays sequential, like
/// the kernel's readahead window; any jump resets it.
#[derive(Debug, Default)]
pub(crate) struct Readahead {
    last: Option<(ValueFileId, u64)>,
    window_bytes: u64,
}

/// First readahead window, and the largest.
const READAHEAD_MIN_BYTES: u64 = 128 << 10;
const READAHEAD_MAX_BYTES: u64 = 2 << 20;

impl Readahead {
    /// The readahead to use for `p`, at most `max_bytes`, and remembers it.
    pub fn next(&mut self, p: &ValuePointer, max_bytes: u64) -> u64 {
        let sequential = self.last == Some((p.file, p.offset));
        self.window_bytes = match (sequential, self.window_bytes) {
            (false, _) => 0,
            (true, 0) => READAHEAD_MIN_BYTES,
            (true, w) => (w * 2).min(READAHEAD_MAX_BYTES),
        }
        .min(max_bytes);
        self.last = Some((p.file, p.end()));
        self.window_bytes
    }
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Iter {
    pub(crate) fn new(
        values: Arc<ValueStore>,
        sv: Arc<SuperVersion>,
        snapshot: SeqNo,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> Self {
        let mut sources: Vec<Source> = Vec::new();
        for mem in std::iter::once(&sv.mem).chain(&sv.imm) {
            let it = MemtableIter::new(Arc::clone(mem), lower.clone(), upper.clone());
            sources.push(Box::new(it.map(Ok)));
        }
        let version = &sv.version;
        for file in version.overlapping(0, &lower, &upper) {
            sources.push(Box::new(file.table.iter(lower.clone(), upper.clone())));
        }
        for level in 1..version.levels.len() {
            let files = version.overlapping(level, &lower, &upper);
            if !files.is_empty() {
                sources.push(Box::new(LevelIter::new(
                    files,
                    lower.clone(),
                    upper.clone(),
                )));
            }
        }
        Self {
            merge: MergeIter::new(sources),
            tombstones: visible_tombstones(&sv, snapshot),
            snapshot,
            front_key: None,
            back_key: None,
            back_pending: None,
            done: false,
            _pinned: sv,
            values,
            ahead: Readahead::default(),
        }
    }

    /// The pair to return for the chosen version of a key, if it is live; a separated value
    /// is read from its value file (with readahead when `front` walks values in order).
    fn visible(&mut self, e: Entry, front: bool) -> Result<Option<(Key, Value)>> {
        if self
            .tombstones
            .covers(&e.key.user_key, e.key.seq, self.snapshot)
        {
            return Ok(None);
        }
        let value = match e.key.kind {
            ValueKind::Delete => return Ok(None),
            ValueKind::Put => e.value,
            ValueKind::Pointer => {
                let p = ValuePointer::decode(&e.value, std::path::Path::new("table"), 0)?;
                let ahead = if front {
                    self.ahead.next(&p, self.values.readahead_max_bytes())
                } else {
                    0
                };
                self.values.read_ahead(&p, ReadMode::Blocking, ahead)?
            }
        };
        Ok(Some((
            Key::from_bytes(e.key.user_key),
            Value::from_bytes(value),
        )))
    }

    fn fail<T>(&mut self, e: crate::Error) -> Option<Result<T>> {
        self.done = true;
        Some(Err(e))
    }

    fn step_front(&mut self) -> Option<Result<(Key, Value)>> {
        loop {
            let e = match self
                .merge
                .next()
                .or_else(|| self.back_pending.take().map(Ok))?
            {
                Ok(e) => e,
                Err(err) => return self.fail(err),
            };
            if e.key.seq > self.snapshot
                || self.front_key.as_ref() == Some(&e.key.user_key)
                || self.back_key.as_ref() == Some(&e.key.user_key)
            {
                continue;
            }
            self.front_key = Some(e.key.user_key.clone());
            match self.visible(e, true) {
                Ok(Some(pair)) => return Some(Ok(pair)),
                Ok(None) => {}
                Err(err) => return self.fail(err),
            }
        }
    }

    fn step_back(&mut self) -> Option<Result<(Key, Value)>> {
        loop {
            let first = match self
                .back_pending
                .take()
                .map(Ok)
                .or_else(|| self.merge.next_back())?
            {
                Ok(e) => e,
                Err(err) => return self.fail(err),
            };
            let key = first.key.user_key.clone();
            // Versions come oldest first from this end: the last one at or below the
            // snapshot is the one to show.
            let mut best = (first.key.seq <= self.snapshot).then_some(first);
            loop {
                match self.merge.next_back() {
                    Some(Ok(e)) if e.key.user_key == key => {
                        if e.key.seq <= self.snapshot {
                            best = Some(e);
                        }
                    }
                    Some(Ok(e)) => {
                        self.back_pending = Some(e);
                        break;
                    }
                    Some(Err(err)) => return self.fail(err),
                    None => break,
                }
            }
            if self.front_key.as_ref() == Some(&key) {
                continue;
            }
            self.back_key = Some(key);
            if let Some(e) = best {
                match self.visible(e, false) {
                    Ok(Some(pair)) => return Some(Ok(pair)),
                    Ok(None) => {}
                    Err(err) => return self.fail(err),
                }
            }
        }
    }
}

impl Iterator for Iter {
    type Item = Result<(Key, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step_front();
        self.done |= item.is_none();
        item
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step_back();
        self.done |= item.is_none();
        item
    }
}

/// The range tombstones of every source of `sv` that a read at `snapshot` sees.
pub(crate) fn visible_tombstones(sv: &SuperVersion, snapshot: SeqNo) -> TombstoneIndex {
    let mut tombstones = sv.version.all_tombstones.clone();
    for mem in std::iter::once(&sv.mem).chain(&sv.imm) {
        tombstones.extend(mem.range_tombstones());
    }
    tombstones.retain(|t| t.seq <= snapshot);
    TombstoneIndex::new(&tombstones)
}

/// The bounds of all keys starting with `prefix`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    let lower = Bound::Included(Bytes::copy_from_slice(prefix));
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (lower, Bound::Excluded(Bytes::from(end)));
        }
    }
    (lower, Bound::Unbounded)
}

/// Owned bounds from any range over byte keys.
pub(crate) fn owned_bounds<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
    range: &R,
) -> (Bound<Bytes>, Bound<Bytes>) {
    let own = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    };
    (own(range.start_bound()), own(range.end_bound()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_carry_past_ff_bytes() {
        assert_eq!(prefix_bounds(b"ab").1, Bound::Excluded(Bytes::from("ac")));
        assert_eq!(prefix_bounds(b"a\xff").1, Bound::Excluded(Bytes::from("b")));
        assert_eq!(prefix_bounds(b"\xff\xff").1, Bound::Unbounded);
        assert_eq!(prefix_bounds(b"").1, Bound::Unbounded);
    }
}
