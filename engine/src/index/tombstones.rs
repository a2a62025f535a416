//! [`TombstoneIndex`]: range tombstones cut into disjoint fragments for fast lookups.
//!
//! Overlapping tombstones are split at every start and end into fragments that do not overlap;
//! each fragment lists the sequence numbers of the tombstones that cover it, newest first.
//! "Which tombstone hides `key` at snapshot `s`" is then a binary search and a short scan.
//!
//! Immutable once built; shared freely between threads.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::key::{RangeTombstone, SeqNo};

#[derive(Debug, Clone)]
struct Fragment {
    start: Bytes,
    /// Exclusive end; `None` is the end of the key space.
    end: Option<Bytes>,
    /// Newest first.
    seqs: Vec<SeqNo>,
}

/// A lookup structure over a set of range tombstones.
#[derive(Debug, Clone, Default)]
pub(crate) struct TombstoneIndex {
    fragments: Vec<Fragment>,
}

impl TombstoneIndex {
    /// Builds the index; O(n log n + fragments).
    pub fn new<'a>(tombstones: impl IntoIterator<Item = &'a RangeTombstone>) -> Self {
        let tombstones: Vec<&RangeTombstone> =
            tombstones.into_iter().filter(|t| !t.is_empty()).collect();
        if tombstones.is_empty() {
            return Self::default();
        }
        // Every start and end is a fragment boundary; `None` (no end) sorts last.
        let mut bounds: Vec<Bytes> = Vec::with_capacity(tombstones.len() * 2);
        for t in &tombstones {
            bounds.push(t.start.clone());
            bounds.extend(t.end.clone());
        }
        bounds.sort_unstable();
        bounds.dedup();

        // Sweep the boundaries; `active` counts tombstones by (end, seq) that have started.
        let mut by_start: Vec<&RangeTombstone> = tombstones;
        by_start.sort_unstable_by(|a, b| a.start.cmp(&b.start));
        let mut next = by_start.into_iter().peekable();
        let mut active: BTreeMap<(Option<Bytes>, SeqNo), usize> = BTreeMap::new();
        let mut fragments = Vec::new();
        for (i, start) in bounds.iter().enumerate() {
            while let Some(t) = next.next_if(|t| t.start <= *start) {
                *active.entry((t.end.clone(), t.seq)).or_default() += 1;
            }
            active.retain(|(end, _), _| end.as_ref().is_none_or(|e| e > start));
            if active.is_empty() {
                continue;
            }
            let end = bounds.get(i + 1).cloned();
            let mut seqs: Vec<SeqNo> = active.keys().map(|(_, s)| *s).collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            seqs.dedup();
            fragments.push(Fragment {
                start: start.clone(),
                end,
                seqs,
            });
        }
        Self { fragments }
    }

    #[cfg(test)]
    /// True if there is no tombstone.
    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// The newest sequence number at or below `snapshot` of a tombstone covering `key`.
    pub fn max_covering(&self, key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        let after = self.fragments.partition_point(|f| f.start[..] <= *key);
        let fragment = self.fragments.get(after.checked_sub(1)?)?;
        if fragment.end.as_ref().is_some_and(|end| key >= &end[..]) {
            return None;
        }
        fragment.seqs.iter().copied().find(|&s| s <= snapshot)
    }

    /// True if a tombstone visible at `snapshot` hides the version `key@seq`.
    pub fn covers(&self, key: &[u8], seq: SeqNo, snapshot: SeqNo) -> bool {
        self.max_covering(key, snapshot).is_some_and(|t| t > seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: &str, end: Option<&str>, seq: u64) -> RangeTombstone {
        RangeTombstone {
            start: Bytes::copy_from_slice(start.as_bytes()),
            end: end.map(|e| Bytes::copy_from_slice(e.as_bytes())),
            seq: SeqNo(seq),
        }
    }

    /// The obvious answer, by looking at every tombstone.
    fn brute(ts: &[RangeTombstone], key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        ts.iter()
            .filter(|t| t.seq <= snapshot && t.contains(key))
            .map(|t| t.seq)
            .max()
    }

    #[test]
    fn overlapping_tombstones_answer_like_a_linear_scan() {
        let ts = vec![
            t("b", Some("f"), 5),
            t("d", Some("h"), 9),
            t("a", Some("c"), 2),
            t("g", None, 7),
            t("e", Some("e"), 100),
            t("d", Some("e"), 3),
        ];
        let index = TombstoneIndex::new(&ts);
        for key in ["", "a", "b", "c", "d", "d0", "e", "f", "g", "h", "z"] {
            for snap in 0..12 {
                assert_eq!(
                    index.max_covering(key.as_bytes(), SeqNo(snap)),
                    brute(&ts, key.as_bytes(), SeqNo(snap)),
                    "key {key} snapshot {snap}"
                );
            }
        }
    }

    #[test]
    fn empty_index_covers_nothing() {
        let index = TombstoneIndex::new(&[]);
        assert!(index.is_empty());
        assert!(!index.covers(b"k", SeqNo(0), SeqNo::MAX));
    }
}
