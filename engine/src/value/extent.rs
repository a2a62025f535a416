//! [`ExtentMap`]: where one value file's logical blocks are in the block store, as a sorted
//! set of extents (a run of logical blocks mapped onto an equally long run of physical blocks),
//! like a file system's extent tree.
//!
//! Invariants (checked by [`ExtentMap::check`], which the tests run after every step):
//! - extents do not overlap logically, so the map is a function from logical to physical
//!   blocks (DESIGN invariant 3 within one file; that no physical block is mapped twice
//!   *across* files is the allocator's to check, see `allocator.rs`);
//! - no extent is empty, and two extents adjacent both logically and physically are always
//!   merged into one, so the map has as few entries as the placement allows;
//! - `mapped_blocks` is the sum of the extent lengths.
//!
//! Thread safety: none inside; a value file keeps its map under its extent-map lock (read for
//! fills, write for remap, punch and append; `docs/locking.md`). Mutations that free physical
//! blocks additionally run under the file's exclusive invalidate lock, which is the caller's
//! to take.
//!
//! Next: `allocator.rs`, which owns the physical blocks the map points at.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::block::{LogicalBlock, PhysicalBlock};
use crate::error::{Error, Result};

/// A run of `len` logical blocks starting at `logical`, stored at `len` physical blocks
/// starting at `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub logical: LogicalBlock,
    pub physical: PhysicalBlock,
    pub len: u64,
}

/// The extent map of one value file.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExtentMap {
    /// Logical start -> (physical start, length in blocks); lengths are never zero.
    extents: BTreeMap<LogicalBlock, (PhysicalBlock, u64)>,
    mapped: u64,
}

impl ExtentMap {
    /// An empty map: no logical block is mapped.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The physical block of `logical` and how many blocks the extent holding it has left
    /// from there on (at least 1), or `None` if `logical` is not mapped.
    #[must_use]
    pub fn lookup(&self, logical: LogicalBlock) -> Option<(PhysicalBlock, u64)> {
        let (&start, &(physical, len)) = self.extents.range(..=logical).next_back()?;
        let into = logical.since(start)?;
        (into < len).then(|| (physical.add(into), len - into))
    }

    /// Maps the `len` logical blocks from `logical` onto the physical blocks from `physical`,
    /// merging with a neighbour that continues on both sides.
    ///
    /// # Errors
    /// `InvalidArgument` if any of the logical blocks is already mapped or either range
    /// overflows; the map is then unchanged. Recovery, which replays extent records read
    /// from disk, turns this into `Corruption` naming its log and the record's offset: a
    /// record that overlaps the map is damage, not a caller's mistake.
    pub fn map(&mut self, logical: LogicalBlock, physical: PhysicalBlock, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let logical_end = checked_end(logical.0, len, "logical")?;
        checked_end(physical.0, len, "physical")?;
        if self.overlaps(logical, logical_end) {
            return Err(Error::invalid(format!(
                "extent map: logical blocks [{logical}, {logical_end}) are already partly mapped"
            )));
        }
        let mut start = logical;
        let mut phys = physical;
        let mut total = len;
        // Merge with the predecessor if it ends exactly here, logically and physically.
        if let Some((&prev_l, &(prev_p, prev_len))) = self.extents.range(..logical).next_back()
            && prev_l.add(prev_len) == logical
            && prev_p.add(prev_len) == physical
        {
            self.extents.remove(&prev_l);
            start = prev_l;
            phys = prev_p;
            total += prev_len;
        }
        // And with the successor if it starts exactly where this one ends.
        let next_l = LogicalBlock(logical_end);
        if let Some(&(next_p, next_len)) = self.extents.get(&next_l)
            && next_p == physical.add(len)
        {
            self.extents.remove(&next_l);
            total += next_len;
        }
        self.extents.insert(start, (phys, total));
        self.mapped += len;
        Ok(())
    }

    /// Unmaps the `len` logical blocks from `logical` (to the end of the logical space if that
    /// overflows), splitting extents that straddle either edge. Unmapped blocks inside the
    /// range are skipped. Returns the physical runs that were freed, in logical order; the
    /// caller hands them to the allocator to be freed once that is safe (DESIGN invariant 2).
    pub fn unmap(&mut self, logical: LogicalBlock, len: u64) -> Vec<(PhysicalBlock, u64)> {
        if len == 0 {
            return Vec::new();
        }
        let end = LogicalBlock(logical.0.saturating_add(len));
        self.split_at(logical);
        self.split_at(end);
        let inside: Vec<LogicalBlock> = self.extents.range(logical..end).map(|(&l, _)| l).collect();
        let mut freed = Vec::with_capacity(inside.len());
        for l in inside {
            if let Some((physical, n)) = self.extents.remove(&l) {
                self.mapped -= n;
                freed.push((physical, n));
            }
        }
        freed
    }

    /// Moves the `len` logical blocks from `logical` onto the physical blocks from
    /// `physical`: what compaction does once it has copied the bytes. Returns the old
    /// physical runs, in logical order.
    ///
    /// # Errors
    /// `InvalidArgument` if any block of the range is not mapped, or a range overflows; the
    /// map is then unchanged.
    pub fn remap(
        &mut self,
        logical: LogicalBlock,
        len: u64,
        physical: PhysicalBlock,
    ) -> Result<Vec<(PhysicalBlock, u64)>> {
        let end = checked_end(logical.0, len, "logical")?;
        checked_end(physical.0, len, "physical")?;
        let mut at = logical;
        while at.0 < end {
            let Some((_, left)) = self.lookup(at) else {
                return Err(Error::invalid(format!(
                    "extent map: cannot remap [{logical}, {end}): block {at} is not mapped"
                )));
            };
            at = at.add(left);
        }
        let old = self.unmap(logical, len);
        self.map(logical, physical, len)?;
        Ok(old)
    }

    /// The extents in logical order.
    pub fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.extents
            .iter()
            .map(|(&logical, &(physical, len))| Extent {
                logical,
                physical,
                len,
            })
    }

    /// How many logical blocks are mapped.
    #[must_use]
    pub fn mapped_blocks(&self) -> u64 {
        self.mapped
    }

    /// The first logical block past the last mapped one (0 for an empty map).
    #[must_use]
    pub fn end(&self) -> LogicalBlock {
        self.extents
            .last_key_value()
            .map_or(LogicalBlock(0), |(&l, &(_, len))| l.add(len))
    }

    #[cfg(test)]
    /// True if no block is mapped.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Verifies the invariants listed at the top of this file.
    ///
    /// # Errors
    /// `InvalidArgument` naming the first violation (a bug, since every mutation keeps them).
    pub fn check(&self) -> Result<()> {
        let mut prev: Option<Extent> = None;
        let mut total = 0u64;
        for e in self.extents() {
            if e.len == 0 {
                return Err(Error::invalid(format!(
                    "extent map: empty extent at {}",
                    e.logical
                )));
            }
            if let Some(p) = prev {
                let p_end = p.logical.add(p.len);
                if p_end > e.logical {
                    return Err(Error::invalid(format!(
                        "extent map: extents at {} and {} overlap",
                        p.logical, e.logical
                    )));
                }
                if p_end == e.logical && p.physical.add(p.len) == e.physical {
                    return Err(Error::invalid(format!(
                        "extent map: extents at {} and {} are not merged",
                        p.logical, e.logical
                    )));
                }
            }
            total += e.len;
            prev = Some(e);
        }
        if total != self.mapped {
            return Err(Error::invalid(format!(
                "extent map: {total} blocks in extents, {} counted",
                self.mapped
            )));
        }
        Ok(())
    }

    /// True if any block of `[start, end)` is mapped.
    fn overlaps(&self, start: LogicalBlock, end: u64) -> bool {
        let straddles = self
            .extents
            .range(..start)
            .next_back()
            .is_some_and(|(&l, &(_, len))| l.add(len) > start);
        straddles
            || self
                .extents
                .range((Bound::Included(start), Bound::Excluded(LogicalBlock(end))))
                .next()
                .is_some()
    }

    /// Splits the extent that holds `at` (if any, and `at` is not its start) in two at `at`.
    /// Leaves the map temporarily unmerged: callers remove one of the halves.
    fn split_at(&mut self, at: LogicalBlock) {
        let Some((&start, &(physical, len))) = self.extents.range(..at).next_back() else {
            return;
        };
        let Some(head) = at.since(start) else {
            return;
        };
        if head == 0 || head >= len {
            return;
        }
        self.extents.insert(start, (physical, head));
        self.extents.insert(at, (physical.add(head), len - head));
    }
}

/// `start + len`, or `InvalidArgument` if the block numbers overflow.
fn checked_end(start: u64, len: u64, which: &str) -> Result<u64> {
    start.checked_add(len).ok_or_else(|| {
        Error::invalid(format!(
            "extent map: {which} range of {len} blocks at {start} overflows"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(n: u64) -> LogicalBlock {
        LogicalBlock(n)
    }

    fn p(n: u64) -> PhysicalBlock {
        PhysicalBlock(n)
    }

    #[test]
    fn map_then_lookup_finds_each_block_and_what_is_left() {
        let mut m = ExtentMap::new();
        m.map(l(10), p(100), 5).unwrap();
        assert_eq!(m.lookup(l(9)), None);
        assert_eq!(m.lookup(l(10)), Some((p(100), 5)));
        assert_eq!(m.lookup(l(12)), Some((p(102), 3)));
        assert_eq!(m.lookup(l(14)), Some((p(104), 1)));
        assert_eq!(m.lookup(l(15)), None);
        assert_eq!(m.mapped_blocks(), 5);
        assert_eq!(m.end(), l(15));
        m.check().unwrap();
    }

    #[test]
    fn adjacent_extents_merge_only_when_contiguous_on_both_sides() {
        let mut m = ExtentMap::new();
        m.map(l(0), p(100), 4).unwrap();
        m.map(l(8), p(108), 4).unwrap();
        // Fills the gap contiguously on both sides: three extents become one.
        m.map(l(4), p(104), 4).unwrap();
        assert_eq!(
            m.extents().collect::<Vec<_>>(),
            vec![Extent {
                logical: l(0),
                physical: p(100),
                len: 12
            }]
        );
        // Logically adjacent but physically elsewhere: stays separate.
        m.map(l(12), p(500), 2).unwrap();
        assert_eq!(m.extents().count(), 2);
        assert_eq!(m.lookup(l(11)), Some((p(111), 1)));
        m.check().unwrap();
    }

    #[test]
    fn unmap_in_the_middle_splits_the_extent_and_returns_exactly_the_freed_run() {
        let mut m = ExtentMap::new();
        m.map(l(0), p(100), 10).unwrap();
        assert_eq!(m.unmap(l(3), 4), vec![(p(103), 4)]);
        assert_eq!(
            m.extents().collect::<Vec<_>>(),
            vec![
                Extent {
                    logical: l(0),
                    physical: p(100),
                    len: 3
                },
                Extent {
                    logical: l(7),
                    physical: p(107),
                    len: 3
                },
            ]
        );
        assert_eq!(m.mapped_blocks(), 6);
        assert_eq!(m.lookup(l(5)), None);
        m.check().unwrap();
    }

    #[test]
    fn unmap_across_holes_returns_only_mapped_runs() {
        let mut m = ExtentMap::new();
        m.map(l(0), p(10), 4).unwrap();
        m.map(l(8), p(50), 4).unwrap();
        assert_eq!(m.unmap(l(2), 8), vec![(p(12), 2), (p(50), 2)]);
        assert_eq!(m.unmap(l(100), 5), vec![]);
        assert_eq!(m.unmap(l(0), u64::MAX), vec![(p(10), 2), (p(52), 2)]);
        assert!(m.is_empty());
        assert_eq!(m.end(), l(0));
        m.check().unwrap();
    }

    #[test]
    fn remap_of_a_range_spanning_two_extents_returns_both_old_runs() {
        let mut m = ExtentMap::new();
        m.map(l(0), p(100), 4).unwrap();
        m.map(l(4), p(200), 4).unwrap();
        let old = m.remap(l(2), 4, p(300)).unwrap();
        assert_eq!(old, vec![(p(102), 2), (p(200), 2)]);
        assert_eq!(m.lookup(l(1)), Some((p(101), 1)));
        assert_eq!(m.lookup(l(2)), Some((p(300), 4)));
        assert_eq!(m.lookup(l(6)), Some((p(202), 2)));
        assert_eq!(m.mapped_blocks(), 8);
        m.check().unwrap();
    }

    #[test]
    fn remap_back_to_contiguous_blocks_merges() {
        let mut m = ExtentMap::new();
        m.map(l(0), p(100), 2).unwrap();
        m.map(l(2), p(7), 2).unwrap();
        m.map(l(4), p(104), 2).unwrap();
        assert_eq!(m.remap(l(2), 2, p(102)).unwrap(), vec![(p(7), 2)]);
        assert_eq!(m.extents().count(), 1);
        m.check().unwrap();
    }

    #[test]
    fn remap_of_a_range_with_a_hole_is_refused_and_changes_nothing() {
        let mut m = ExtentMap::new();
        m.map(l(0), p(100), 2).unwrap();
        m.map(l(3), p(103), 2).unwrap();
        let before: Vec<_> = m.extents().collect();
        assert!(matches!(
            m.remap(l(0), 5, p(0)),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(m.extents().collect::<Vec<_>>(), before);
    }

    #[test]
    fn overlapping_map_is_refused_and_changes_nothing() {
        let mut m = ExtentMap::new();
        m.map(l(10), p(100), 5).unwrap();
        for (start, len) in [(8, 3), (14, 1), (10, 5), (0, 100), (12, 1)] {
            assert!(
                matches!(m.map(l(start), p(900), len), Err(Error::InvalidArgument(_))),
                "[{start}, +{len})"
            );
        }
        assert!(m.map(l(u64::MAX), p(0), 2).is_err());
        assert!(m.map(l(0), p(u64::MAX), 2).is_err());
        assert_eq!(m.mapped_blocks(), 5);
        m.map(l(15), p(0), 1).unwrap();
        m.map(l(9), p(1), 1).unwrap();
        m.check().unwrap();
    }

    /// A tiny deterministic generator, so a failing sequence reproduces from its seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn random_map_unmap_remap_agree_with_a_per_block_model() {
        const BLOCKS: u64 = 64;
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut m = ExtentMap::new();
            let mut model: Vec<Option<PhysicalBlock>> = vec![None; BLOCKS as usize];
            // Physical blocks handed out once and never again, as a fresh allocator would;
            // sometimes a run directly after the previous one, to exercise merging.
            let mut next_physical = 0u64;
            for step in 0..300 {
                let start = rng.below(BLOCKS);
                let len = 1 + rng.below((BLOCKS - start).min(8));
                let range = start as usize..(start + len) as usize;
                match rng.below(3) {
                    0 => {
                        let phys = next_physical + rng.below(2) * 3;
                        next_physical = phys + len;
                        let free = model[range.clone()].iter().all(Option::is_none);
                        let r = m.map(l(start), p(phys), len);
                        assert_eq!(r.is_ok(), free, "seed {seed} step {step}: map");
                        if free {
                            for (i, slot) in model[range].iter_mut().enumerate() {
                                *slot = Some(p(phys + i as u64));
                            }
                        }
                    }
                    1 => {
                        let mut expect: Vec<PhysicalBlock> =
                            model[range.clone()].iter().flatten().copied().collect();
                        let mut got = Vec::new();
                        for (first, n) in m.unmap(l(start), len) {
                            got.extend((0..n).map(|i| first.add(i)));
                        }
                        expect.sort();
                        got.sort();
                        assert_eq!(got, expect, "seed {seed} step {step}: unmap");
                        model[range].fill(None);
                    }
                    _ => {
                        let phys = next_physical;
                        next_physical += len;
                        let full = model[range.clone()].iter().all(Option::is_some);
                        let r = m.remap(l(start), len, p(phys));
                        assert_eq!(r.is_ok(), full, "seed {seed} step {step}: remap");
                        if let Ok(old) = r {
                            let mut got = Vec::new();
                            for (first, n) in old {
                                got.extend((0..n).map(|i| first.add(i)));
                            }
                            let expect: Vec<PhysicalBlock> =
                                model[range.clone()].iter().flatten().copied().collect();
                            assert_eq!(got, expect, "seed {seed} step {step}: remap old");
                            for (i, slot) in model[range].iter_mut().enumerate() {
                                *slot = Some(p(phys + i as u64));
                            }
                        }
                    }
                }
                m.check().unwrap();
                let mut seen = std::collections::HashSet::new();
                for (i, want) in model.iter().enumerate() {
                    let got = m.lookup(l(i as u64)).map(|(phys, _)| phys);
                    assert_eq!(got, *want, "seed {seed} step {step}: lookup {i}");
                    if let Some(phys) = got {
                        assert!(seen.insert(phys), "physical block {phys} mapped twice");
                    }
                }
                assert_eq!(m.mapped_blocks(), seen.len() as u64);
            }
        }
    }
}
