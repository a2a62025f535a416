//! [`DeadRanges`]: the byte ranges of one value file that no pointer can reach any more.
//!
//! Index compaction drops a pointer when no reader can see its version (overwritten, deleted,
//! or covered by a range tombstone) and records the pointer's range here, in the same manifest
//! edit that installs the tables without it. Value files are append-only logical spaces and no
//! two pointers share a byte, so once a range is dead it stays dead: the set only grows.
//!
//! From it come the dead-space figures (live = written - dead), the logical blocks that are
//! wholly dead (punched out by reclamation) and the files with nothing live (deleted).
//!
//! Invariants: ranges are non-empty, sorted, disjoint and never touch (adjacent ranges are
//! merged), so the set has as few entries as the dead space allows and `total` is their sum.
//!
//! Thread safety: none inside; a value file keeps its set under a leaf mutex.

use std::collections::BTreeMap;

use super::block::LogicalBlock;

/// A set of dead byte ranges `[start, end)`, merged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DeadRanges {
    /// Start -> end; disjoint and never adjacent.
    ranges: BTreeMap<u64, u64>,
    total: u64,
}

impl DeadRanges {
    /// Marks `[start, end)` dead; returns how many of its bytes were not dead already.
    pub fn insert(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let (mut lo, mut hi) = (start, end);
        let mut already = 0;
        // Every range that overlaps or touches [start, end) is absorbed into it.
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .filter(|&(_, &e)| e >= start)
            .map_or(start, |(&s, _)| s);
        let absorbed: Vec<(u64, u64)> = self
            .ranges
            .range(first..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in absorbed {
            self.ranges.remove(&s);
            already += e.min(end).saturating_sub(s.max(start));
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.ranges.insert(lo, hi);
        let added = (end - start) - already;
        self.total += added;
        added
    }

    /// The end of the last range.
    pub fn end(&self) -> Option<u64> {
        self.ranges.last_key_value().map(|(_, &e)| e)
    }

    /// Dead bytes in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Dead bytes inside `[start, end)`.
    pub fn dead_within(&self, start: u64, end: u64) -> u64 {
        self.overlapping(start, end)
            .map(|(s, e)| e.min(end).saturating_sub(s.max(start)))
            .sum()
    }

    /// True if any byte of `[start, end)` is dead.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_some()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    /// The runs of logical blocks below `limit` whose every byte is dead, as `(first, count)`,
    /// in order. Bytes from `tail` on count as dead: nothing was written there (a sealed
    /// file's last block past its end).
    pub fn dead_blocks(
        &self,
        block_size: u64,
        limit: LogicalBlock,
        tail: u64,
    ) -> Vec<(LogicalBlock, u64)> {
        let mut runs: Vec<(LogicalBlock, u64)> = Vec::new();
        let tail_range = (tail, u64::MAX);
        let all = self
            .ranges
            .iter()
            .map(|(&s, &e)| (s, e))
            .filter(|&(s, _)| s < tail)
            .map(|(s, e)| (s, if e >= tail { u64::MAX } else { e }))
            .chain((tail < u64::MAX).then_some(tail_range));
        for (start, end) in all {
            let first = start.div_ceil(block_size);
            let last = (end / block_size).min(limit.0);
            if first >= last {
                continue;
            }
            match runs.last_mut() {
                Some((f, n)) if f.0 + *n >= first => *n = (*n).max(last - f.0),
                _ => runs.push((LogicalBlock(first), last - first)),
            }
        }
        runs
    }

    /// The ranges of `[0, end)` not in the set.
    pub fn complement(&self, end: u64) -> Self {
        let mut out = Self::default();
        let mut at = 0;
        for (s, e) in self.iter() {
            if s >= end {
                break;
            }
            out.insert(at, s);
            at = e;
        }
        out.insert(at, end);
        out
    }

    /// The ranges that overlap `[start, end)`.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .filter(|&(_, &e)| e > start)
            .map_or(start, |(&s, _)| s);
        self.ranges
            .range(first..end)
            .map(|(&s, &e)| (s, e))
            .filter(move |&(s, e)| s < end && e > start)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn inserting_merges_overlapping_and_touching_ranges() {
        let mut d = DeadRanges::default();
        assert_eq!(d.insert(10, 20), 10);
        assert_eq!(d.insert(30, 40), 10);
        assert_eq!(d.insert(20, 30), 10);
        assert_eq!(d.iter().collect::<Vec<_>>(), [(10, 40)]);
        assert_eq!(d.insert(5, 15), 5);
        assert_eq!(d.insert(12, 18), 0);
        assert_eq!(d.total(), 35);
        assert_eq!(d.iter().collect::<Vec<_>>(), [(5, 40)]);
        assert!(d.intersects(39, 50));
        assert!(!d.intersects(40, 50));
        assert_eq!(d.dead_within(0, 10), 5);
        assert_eq!(
            d.complement(50).iter().collect::<Vec<_>>(),
            [(0, 5), (40, 50)]
        );
        assert_eq!(d.complement(20).iter().collect::<Vec<_>>(), [(0, 5)]);
    }

    #[test]
    fn only_wholly_dead_blocks_are_reported() {
        let mut d = DeadRanges::default();
        // Block size 10: [5, 35) covers blocks 1 and 2 wholly, 0 and 3 partly.
        d.insert(5, 35);
        assert_eq!(
            d.dead_blocks(10, LogicalBlock(100), u64::MAX),
            [(LogicalBlock(1), 2)]
        );
        // The limit keeps blocks at or past it.
        assert_eq!(
            d.dead_blocks(10, LogicalBlock(2), u64::MAX),
            [(LogicalBlock(1), 1)]
        );
        // Nothing written past 35: block 3 is then dead too, and so is everything after it
        // below the limit.
        assert_eq!(
            d.dead_blocks(10, LogicalBlock(6), 35),
            [(LogicalBlock(1), 5)]
        );
        // Written up to 38: bytes 35..38 of block 3 are live.
        assert_eq!(
            d.dead_blocks(10, LogicalBlock(6), 38),
            [(LogicalBlock(1), 2), (LogicalBlock(4), 2)]
        );
    }

    proptest! {
        /// The set agrees with a bitmap of dead bytes.
        #[test]
        fn agrees_with_a_bitmap(ops in prop::collection::vec((0u64..200, 0u64..40), 1..40)) {
            let mut d = DeadRanges::default();
            let mut bits = [false; 240];
            for (start, len) in ops {
                let before = bits.iter().filter(|&&b| b).count() as u64;
                let added = d.insert(start, start + len);
                for b in bits.iter_mut().skip(start as usize).take(len as usize) {
                    *b = true;
                }
                let after = bits.iter().filter(|&&b| b).count() as u64;
                prop_assert_eq!(added, after - before);
                prop_assert_eq!(d.total(), after);
                let ranges: Vec<(u64, u64)> = d.iter().collect();
                for pair in ranges.windows(2) {
                    prop_assert!(pair[0].1 < pair[1].0, "ranges touch: {:?}", pair);
                }
                for block in 0..24u64 {
                    let whole = (block * 10..block * 10 + 10).all(|i| bits[i as usize]);
                    let reported = d
                        .dead_blocks(10, LogicalBlock(24), u64::MAX)
                        .iter()
                        .any(|(f, n)| f.0 <= block && block < f.0 + n);
                    prop_assert_eq!(whole, reported, "block {}", block);
                    let any = (block * 10..block * 10 + 10).any(|i| bits[i as usize]);
                    prop_assert_eq!(any, d.intersects(block * 10, block * 10 + 10));
                }
            }
        }
    }
}
