//! [`Allocator`]: which physical blocks of the block store are free, and when a freed block
//! may be handed out again.
//!
//! Every physical block below the high-water mark [`Allocator::end`] is in exactly one of three
//! states: *mapped* (the extent maps own it; the allocator does not track it), *free*
//! (allocatable), or *pending* (freed, but not yet reusable). Blocks at or past `end` are free
//! and unallocated; growing the store moves `end`. Free runs are kept maximal (neighbours
//! coalesce) in two indexes, by start and by (length, start), and a free run never touches
//! `end` (it is folded back into the space past the end instead).
//!
//! **Deferred reuse (DESIGN invariant 2).** Blocks freed by a range-delete or a compaction go
//! to [`Allocator::free_later`] with a *ticket*, and stay pending, not allocatable, until
//! [`Allocator::release`] is called with a ticket at least as large. The ticket is a
//! monotonic durability epoch chosen by the caller: it releases ticket `t` only once (a) the
//! exclusive invalidate section that freed the runs has ended, so no fill can still read them,
//! (b) every record that made them dead (the index delete or overwrite, and the extent-map
//! change) is durable, and (c) no live snapshot can still reach a value stored in them.
//! Reusing a block earlier lets a crash, a stale fill or a snapshot read someone else's
//! bytes. Tests free at once with `free_now`; recovery needs no free at all, since whatever
//! no extent maps is free when the allocator is built ([`Allocator::from_mapped`]).
//!
//! **Unpunched space.** A freed run's space goes back to the file system only when it is
//! punched out of its segment. Short runs are not punched when freed: in a store that keeps
//! being written they are soon reused, and a punch (with the discard the file system may
//! issue for it) would only give the space back for a moment. The allocator remembers them
//! as *unpunched*: free runs, or blocks past `end` that a free run folded into, whose space
//! the segment files may still hold. Handing blocks out forgets them;
//! [`Allocator::hold_unpunched`] takes the ones still free out of the free set, pending under a
//! ticket, so that they can be punched with nothing written into them meanwhile.
//!
//! Invariant 3 (mapped + free + pending = `[0, end)`, no block in two states) is checked in
//! full by [`Allocator::check`]; [`Allocator::from_mapped`] refuses a block mapped twice.
//!
//! Thread safety: none inside; the allocator sits under the block-allocator lock, below the
//! extent-map locks in the lock order (`docs/locking.md`).
//!
//! Next: `store.rs`, the physical blocks themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::block::PhysicalBlock;
use crate::error::{Error, Result};

/// Runs of physical blocks: (first block, length).
pub(crate) type Runs = Vec<(PhysicalBlock, u64)>;

/// The free-extent allocator of the block store.
#[derive(Debug, Default, Clone)]
pub(crate) struct Allocator {
    /// Free runs: start -> length. Maximal: no two are adjacent, none ends at `end`.
    by_start: BTreeMap<PhysicalBlock, u64>,
    /// The same runs by (length, start), for best fit and largest-first.
    by_len: BTreeSet<(u64, PhysicalBlock)>,
    /// Pending runs: start -> (length, ticket). Not coalesced: each waits for its own ticket.
    pending: BTreeMap<PhysicalBlock, (u64, u64)>,
    /// Ticket -> starts of its pending runs, so `release` visits only what it frees.
    by_ticket: BTreeMap<u64, Vec<PhysicalBlock>>,
    end: PhysicalBlock,
    free_blocks: u64,
    pending_blocks: u64,
    /// Above this the store would rather fragment a value over free runs than grow.
    growth_limit: Option<PhysicalBlock>,
    /// With `Some(d)`, the store grows only while less than `1/d` of it is free: past that,
    /// free runs too short for an allocation are used (largest first) before growth.
    reuse_above_fraction: Option<u64>,
    /// Unpunched runs (see the module header): start -> length, disjoint, each wholly below
    /// `end` and free, or wholly at or past `end`.
    unpunched: BTreeMap<PhysicalBlock, u64>,
    unpunched_blocks: u64,
}

/// What a corrupt block-state error names as its file: the allocator knows no path, and its
/// callers (recovery) replace it with the log they were replaying when they can.
const WHO: &str = "block allocator";

fn corrupt(block: u64, what: impl std::fmt::Display) -> Error {
    Error::corruption(
        PathBuf::from(WHO),
        0,
        format!("physical block {block}: {what}"),
    )
}

impl Allocator {
    #[cfg(test)]
    /// An allocator of an empty store: no block is mapped and `end` is 0.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The allocator of a store whose high-water mark is `end` and whose extent maps hold
    /// `runs`: every other block below `end` is free. Zero-length runs are ignored.
    ///
    /// # Errors
    /// `Corruption` if a block is mapped twice (DESIGN invariant 3) or a run reaches past
    /// `end`.
    pub fn from_mapped(
        runs: impl IntoIterator<Item = (PhysicalBlock, u64)>,
        end: PhysicalBlock,
    ) -> Result<Self> {
        let mut runs: Vec<(PhysicalBlock, u64)> = runs.into_iter().filter(|r| r.1 > 0).collect();
        runs.sort_unstable();
        let mut alloc = Self {
            end,
            ..Self::default()
        };
        let mut next = 0u64;
        for (start, len) in runs {
            let run_end = start
                .0
                .checked_add(len)
                .filter(|&e| e <= end.0)
                .ok_or_else(|| {
                    corrupt(
                        start.0,
                        format!("mapped run of {len} blocks passes the end {end}"),
                    )
                })?;
            if start.0 < next {
                return Err(corrupt(start.0, "mapped twice"));
            }
            if start.0 > next {
                alloc.insert_free(PhysicalBlock(next), start.0 - next);
            }
            next = run_end;
        }
        if next < end.0 {
            alloc.insert_free(PhysicalBlock(next), end.0 - next);
        }
        // Whether a free run was punched before the store was closed is not recorded: the
        // next trim punches every one (a punch of a hole costs the file system little).
        let free: Vec<_> = alloc.free_runs().collect();
        alloc.note_unpunched(&free);
        Ok(alloc)
    }

    /// Makes the store fill free runs too short for an allocation (largest first) rather than
    /// grow while at least `1/denominator` of it is free (see [`Self::allocate`]): freed space
    /// is reused before the store grows, at the price of splitting new values over several
    /// runs, which relocation may later join.
    pub fn reuse_before_growth(&mut self, denominator: u64) {
        self.reuse_above_fraction = Some(denominator.max(1));
    }

    #[cfg(test)]
    /// Makes the store prefer several smaller free runs over growing past `limit` (see
    /// [`Self::allocate`]); `None` (the default) lets it grow whenever no run fits. Growth
    /// past the limit still happens when the free runs are too few: allocation never fails.
    pub fn set_growth_limit(&mut self, limit: Option<PhysicalBlock>) {
        self.growth_limit = limit;
    }

    /// Allocates `n` blocks, as few runs as the free space allows, in this order of
    /// preference, which keeps values contiguous:
    /// 1. the free run starting exactly at `hint` (or growth, if `hint` is `end`): the caller
    ///    passes the block after its previous allocation, which this extends;
    /// 2. the smallest free run of at least the blocks still needed (best fit);
    /// 3. growing the store at `end`, unless that passes the growth limit;
    /// 4. several free runs, largest first, then growth for whatever they do not cover.
    ///
    /// Returns the runs in the order they should be filled. Never fails: the store grows.
    pub fn allocate(&mut self, n: u64, hint: Option<PhysicalBlock>) -> Vec<(PhysicalBlock, u64)> {
        let mut out = Vec::new();
        let mut need = n;
        if need == 0 {
            return out;
        }
        // A free run right after the previous allocation keeps a file contiguous. Growing the
        // store at its end would too, but only after every hole that fits is used: reuse
        // before growth, or freed space is never given back to new values.
        if let Some(hint) = hint
            && let Some(&len) = self.by_start.get(&hint)
        {
            need -= self.take(&mut out, hint, len, need);
        }
        if need == 0 {
            return out;
        }
        if let Some(&(len, start)) = self.by_len.range((need, PhysicalBlock(0))..).next() {
            self.take(&mut out, start, len, need);
            return out;
        }
        if self.can_grow(need) {
            self.grow(&mut out, need);
            return out;
        }
        while need > 0 {
            let Some(&(len, start)) = self.by_len.iter().next_back() else {
                self.grow(&mut out, need);
                break;
            };
            need -= self.take(&mut out, start, len, need);
        }
        out
    }

    /// Allocates `n` contiguous blocks: the smallest free run that holds them, else growth of
    /// the store (whatever the reuse policy says, unless past the growth limit). `None` if
    /// neither is possible. For relocation, whose whole point is one contiguous run: the
    /// scattered blocks it leaves are freed, so growing here does not grow the store for long.
    pub fn allocate_contiguous(&mut self, n: u64) -> Option<PhysicalBlock> {
        let mut out = Vec::with_capacity(1);
        if let Some(&(len, start)) = self.by_len.range((n, PhysicalBlock(0))..).next() {
            self.take(&mut out, start, len, n);
        } else if self
            .growth_limit
            .is_none_or(|limit| self.end.0.checked_add(n).is_some_and(|e| e <= limit.0))
        {
            self.grow(&mut out, n);
        }
        match *out.as_slice() {
            [(start, len)] if len == n => Some(start),
            _ => {
                // Not reached: one run or growth yields exactly one run of `n` blocks.
                for (start, len) in out {
                    self.insert_free(start, len);
                }
                None
            }
        }
    }

    /// Puts `runs` in the pending list under `ticket`: they are not allocatable until
    /// [`Self::release`] reaches `ticket`. See the file header for what the ticket must mean.
    ///
    /// # Errors
    /// `Corruption` if a block is not allocated (already free or pending, at or past `end`,
    /// or freed twice in `runs`); nothing is changed then.
    pub fn free_later(
        &mut self,
        runs: impl IntoIterator<Item = (PhysicalBlock, u64)>,
        ticket: u64,
    ) -> Result<()> {
        let runs = self.allocated_runs(runs)?;
        let starts = self.by_ticket.entry(ticket).or_default();
        for (start, len) in runs {
            self.pending.insert(start, (len, ticket));
            self.pending_blocks += len;
            starts.push(start);
        }
        Ok(())
    }

    /// Makes every pending run with a ticket `<= up_to_ticket` free (coalescing).
    pub fn release(&mut self, up_to_ticket: u64) {
        let later = match up_to_ticket.checked_add(1) {
            Some(first_later) => self.by_ticket.split_off(&first_later),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut self.by_ticket, later);
        for start in ready.into_values().flatten() {
            if let Some((len, _)) = self.pending.remove(&start) {
                self.pending_blocks -= len;
                self.insert_free(start, len);
            }
        }
    }

    /// Records `runs`, just made free (or folded past `end`) without a punch, as unpunched.
    pub fn note_unpunched(&mut self, runs: &[(PhysicalBlock, u64)]) {
        for &(start, len) in runs.iter().filter(|r| r.1 > 0) {
            // Never overlapping an entry: the run was allocated until it was freed, and
            // handing blocks out forgets them.
            self.unpunched.insert(start, len);
            self.unpunched_blocks += len;
        }
    }

    /// Blocks recorded as unpunched.
    #[must_use]
    pub fn unpunched_blocks(&self) -> u64 {
        self.unpunched_blocks
    }

    /// Takes every unpunched run out of the allocator's hands for a punch, and forgets it as
    /// unpunched. Returns (held, past the end): the runs below `end`, now pending under
    /// `ticket`, which the caller punches and then releases; and the runs at or past `end`,
    /// which growth may hand out at any time, so the caller punches them before it lets go of
    /// the allocator.
    ///
    /// # Errors
    /// `Corruption` if an unpunched run below `end` is not free; nothing is changed then.
    pub fn hold_unpunched(&mut self, ticket: u64) -> Result<(Runs, Runs)> {
        let (mut held, mut past_end) = (Vec::new(), Vec::new());
        for (&start, &len) in &self.unpunched {
            if start >= self.end {
                past_end.push((start, len));
                continue;
            }
            if self.free_run_holding(start, len).is_none() {
                return Err(corrupt(start.0, "unpunched but not free"));
            }
            held.push((start, len));
        }
        for &(start, len) in &held {
            let (run, run_len) = self
                .free_run_holding(start, len)
                .ok_or_else(|| corrupt(start.0, "unpunched but not free"))?;
            self.remove_free(run, run_len);
            if run < start {
                self.add_free_run(run, start.0 - run.0);
            }
            let (after, run_end) = (start.add(len), run.add(run_len));
            if after < run_end {
                self.add_free_run(after, run_end.0 - after.0);
            }
            self.pending.insert(start, (len, ticket));
            self.pending_blocks += len;
            self.by_ticket.entry(ticket).or_default().push(start);
        }
        self.unpunched.clear();
        self.unpunched_blocks = 0;
        Ok((held, past_end))
    }

    #[cfg(test)]
    /// Frees `runs` at once, without waiting for a ticket.
    ///
    /// # Errors
    /// As [`Self::free_later`].
    pub fn free_now(&mut self, runs: impl IntoIterator<Item = (PhysicalBlock, u64)>) -> Result<()> {
        for (start, len) in self.allocated_runs(runs)? {
            self.insert_free(start, len);
        }
        Ok(())
    }

    /// Free blocks below `end`.
    #[must_use]
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }

    /// Freed blocks waiting for their ticket.
    #[must_use]
    pub fn pending_blocks(&self) -> u64 {
        self.pending_blocks
    }

    /// The high-water mark: every block at or past it is free and was never handed out since
    /// the store last shrank to it.
    #[must_use]
    pub fn end(&self) -> PhysicalBlock {
        self.end
    }

    /// The free runs below `end`, by start: for punching holes in long ones.
    pub fn free_runs(&self) -> impl Iterator<Item = (PhysicalBlock, u64)> + '_ {
        self.by_start.iter().map(|(&start, &len)| (start, len))
    }

    /// Verifies DESIGN invariant 3 against `mapped`, every run the extent maps hold: mapped,
    /// free and pending runs cover `[0, end)` exactly, with no block in two of them, and the
    /// allocator's own indexes and counters agree.
    ///
    /// # Errors
    /// `Corruption` naming the first block found in two states or in none.
    pub fn check(&self, mapped: &[(PhysicalBlock, u64)]) -> Result<()> {
        self.check_indexes()?;
        let mut all: Vec<(PhysicalBlock, u64, &str)> = mapped
            .iter()
            .filter(|r| r.1 > 0)
            .map(|&(s, l)| (s, l, "mapped"))
            .chain(self.free_runs().map(|(s, l)| (s, l, "free")))
            .chain(self.pending.iter().map(|(&s, &(l, _))| (s, l, "pending")))
            .collect();
        all.sort_unstable_by_key(|r| r.0);
        let mut next = 0u64;
        let mut prev_state = "";
        for (start, len, state) in all {
            if start.0 < next {
                return Err(corrupt(start.0, format!("both {prev_state} and {state}")));
            }
            if start.0 > next {
                return Err(corrupt(next, "neither mapped, free nor pending"));
            }
            next = start.0.checked_add(len).ok_or_else(|| {
                corrupt(start.0, format!("{state} run of {len} blocks overflows"))
            })?;
            prev_state = state;
        }
        match next.cmp(&self.end.0) {
            std::cmp::Ordering::Less => Err(corrupt(next, "neither mapped, free nor pending")),
            std::cmp::Ordering::Greater => Err(corrupt(
                self.end.0,
                format!("{prev_state} at or past the end"),
            )),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The free-run indexes agree, runs are maximal and below `end`, and counters add up.
    fn check_indexes(&self) -> Result<()> {
        if self.by_len.len() != self.by_start.len() {
            return Err(corrupt(0, "free-run indexes differ in size"));
        }
        let mut prev_end: Option<u64> = None;
        let mut free = 0u64;
        for (start, len) in self.free_runs() {
            if len == 0 || !self.by_len.contains(&(len, start)) {
                return Err(corrupt(start.0, "free run missing from the length index"));
            }
            if prev_end == Some(start.0) {
                return Err(corrupt(start.0, "free runs not coalesced"));
            }
            let end = start.0.saturating_add(len);
            if end >= self.end.0 {
                return Err(corrupt(start.0, "free run reaches the end"));
            }
            prev_end = Some(end);
            free += len;
        }
        let pending: u64 = self.pending.values().map(|&(len, _)| len).sum();
        let ticketed: usize = self.by_ticket.values().map(Vec::len).sum();
        if free != self.free_blocks || pending != self.pending_blocks {
            return Err(corrupt(0, "free or pending block count is off"));
        }
        if ticketed != self.pending.len() {
            return Err(corrupt(0, "pending runs and tickets disagree"));
        }
        let mut unpunched = 0u64;
        for (&start, &len) in &self.unpunched {
            let free = self.free_run_holding(start, len).is_some();
            if len == 0 || !(free || start >= self.end) {
                return Err(corrupt(
                    start.0,
                    "unpunched but neither free nor past the end",
                ));
            }
            unpunched += len;
        }
        if unpunched != self.unpunched_blocks {
            return Err(corrupt(0, "unpunched block count is off"));
        }
        Ok(())
    }

    /// Validates runs to be freed: each lies below `end` and is neither free nor pending nor
    /// in `runs` twice. Returns them without zero-length runs.
    fn allocated_runs(
        &self,
        runs: impl IntoIterator<Item = (PhysicalBlock, u64)>,
    ) -> Result<Vec<(PhysicalBlock, u64)>> {
        let mut runs: Vec<(PhysicalBlock, u64)> = runs.into_iter().filter(|r| r.1 > 0).collect();
        runs.sort_unstable();
        let mut prev_end = 0u64;
        for &(start, len) in &runs {
            let end = start
                .0
                .checked_add(len)
                .filter(|&e| e <= self.end.0)
                .ok_or_else(|| {
                    corrupt(
                        start.0,
                        format!("freed run of {len} blocks passes the end {}", self.end),
                    )
                })?;
            if start.0 < prev_end {
                return Err(corrupt(start.0, "freed twice"));
            }
            if overlaps(&self.by_start, start, end, |&len| len) {
                return Err(corrupt(start.0, "freed but already free"));
            }
            if overlaps(&self.pending, start, end, |&(len, _)| len) {
                return Err(corrupt(start.0, "freed but already pending"));
            }
            prev_end = end;
        }
        Ok(runs)
    }

    fn can_grow(&self, n: u64) -> bool {
        let mostly_full = self
            .reuse_above_fraction
            .is_none_or(|d| self.free_blocks.saturating_mul(d) < self.end.0);
        mostly_full
            && self
                .growth_limit
                .is_none_or(|limit| self.end.0.checked_add(n).is_some_and(|e| e <= limit.0))
    }

    /// Hands out `n` blocks at `end`.
    fn grow(&mut self, out: &mut Vec<(PhysicalBlock, u64)>, n: u64) {
        let start = self.end;
        self.end = start.add(n);
        self.forget_unpunched(start, n);
        push_run(out, start, n);
    }

    /// Hands out the first `min(need, len)` blocks of the free run `(start, len)`, keeping
    /// the rest free; the rest starts where the caller's next hint will point. Returns how
    /// many blocks were taken.
    fn take(
        &mut self,
        out: &mut Vec<(PhysicalBlock, u64)>,
        start: PhysicalBlock,
        len: u64,
        need: u64,
    ) -> u64 {
        let taken = need.min(len);
        self.remove_free(start, len);
        if taken < len {
            self.add_free_run(start.add(taken), len - taken);
        }
        self.forget_unpunched(start, taken);
        push_run(out, start, taken);
        taken
    }

    /// The free run `(start, length)` that holds all of `[start, start + len)`, if one does.
    fn free_run_holding(&self, start: PhysicalBlock, len: u64) -> Option<(PhysicalBlock, u64)> {
        self.by_start
            .range(..=start)
            .next_back()
            .map(|(&s, &l)| (s, l))
            .filter(|&(s, l)| s.0.saturating_add(l) >= start.0.saturating_add(len))
    }

    /// Blocks `[start, start + len)` are being handed out: no longer unpunched.
    fn forget_unpunched(&mut self, start: PhysicalBlock, len: u64) {
        if self.unpunched.is_empty() {
            return;
        }
        let end = start.add(len);
        let straddling = self
            .unpunched
            .range(..start)
            .next_back()
            .filter(|(s, l)| s.add(**l) > start)
            .map(|(s, _)| *s);
        let met: Vec<PhysicalBlock> = straddling
            .into_iter()
            .chain(self.unpunched.range(start..end).map(|(s, _)| *s))
            .collect();
        for s in met {
            let Some(l) = self.unpunched.remove(&s) else {
                continue;
            };
            self.unpunched_blocks -= l;
            if s < start {
                self.note_unpunched(&[(s, start.0 - s.0)]);
            }
            let entry_end = s.add(l);
            if entry_end > end {
                self.note_unpunched(&[(end, entry_end.0 - end.0)]);
            }
        }
    }

    /// Frees `(start, len)`, merging with free neighbours and folding a run that reaches
    /// `end` back into the space past it.
    fn insert_free(&mut self, start: PhysicalBlock, len: u64) {
        let mut start = start;
        let mut len = len;
        if let Some((&prev, &prev_len)) = self.by_start.range(..start).next_back()
            && prev.add(prev_len) == start
        {
            self.remove_free(prev, prev_len);
            start = prev;
            len += prev_len;
        }
        let after = start.add(len);
        if let Some(&next_len) = self.by_start.get(&after) {
            self.remove_free(after, next_len);
            len += next_len;
        }
        if start.add(len) == self.end {
            self.end = start;
        } else {
            self.add_free_run(start, len);
        }
    }

    fn add_free_run(&mut self, start: PhysicalBlock, len: u64) {
        self.by_start.insert(start, len);
        self.by_len.insert((len, start));
        self.free_blocks += len;
    }

    fn remove_free(&mut self, start: PhysicalBlock, len: u64) {
        self.by_start.remove(&start);
        self.by_len.remove(&(len, start));
        self.free_blocks -= len;
    }
}

/// True if a run of `runs` (keyed by start, its length read by `len_of`) meets
/// `[start, end)`.
fn overlaps<V>(
    runs: &BTreeMap<PhysicalBlock, V>,
    start: PhysicalBlock,
    end: u64,
    len_of: impl Fn(&V) -> u64,
) -> bool {
    let before = runs
        .range(..start)
        .next_back()
        .is_some_and(|(s, v)| s.0.saturating_add(len_of(v)) > start.0);
    before || runs.range(start..PhysicalBlock(end)).next().is_some()
}

/// Appends a run, extending the last one if it continues it.
fn push_run(out: &mut Vec<(PhysicalBlock, u64)>, start: PhysicalBlock, len: u64) {
    if let Some(last) = out.last_mut()
        && last.0.add(last.1) == start
    {
        last.1 += len;
        return;
    }
    out.push((start, len));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> PhysicalBlock {
        PhysicalBlock(n)
    }

    /// An allocator over `[0, end)` with exactly `free` free and everything else mapped;
    /// returns the mapped runs too, for `check`.
    #[test]
    fn with_an_eighth_free_short_runs_are_filled_before_the_store_grows() {
        // 100 blocks, 16 free in runs of 4: more than an eighth.
        let (mut a, _) = with_free(100, &[(10, 4), (30, 4), (50, 4), (70, 4)]);
        a.reuse_before_growth(8);
        // Largest first; among equals, the last.
        assert_eq!(
            a.allocate(10, None),
            vec![(p(70), 4), (p(50), 4), (p(30), 2)]
        );
        assert_eq!(a.end(), p(100));
        // Now 6 of 100 are free, under an eighth: a run that does not fit grows the store.
        assert_eq!(a.allocate(5, None), vec![(p(100), 5)]);
    }

    #[test]
    fn a_contiguous_allocation_takes_one_run_or_grows_never_several() {
        let (mut a, _) = with_free(100, &[(10, 4), (30, 8), (50, 4)]);
        a.reuse_before_growth(8);
        assert_eq!(a.allocate_contiguous(6), Some(p(30)));
        assert_eq!(a.allocate_contiguous(6), Some(p(100)));
        assert_eq!(a.end(), p(106));
        a.set_growth_limit(Some(p(106)));
        assert_eq!(a.allocate_contiguous(5), None);
        assert_eq!(a.free_blocks(), 10);
    }

    fn with_free(end: u64, free: &[(u64, u64)]) -> (Allocator, Vec<(PhysicalBlock, u64)>) {
        let mut mapped = Vec::new();
        let mut next = 0;
        for &(s, l) in free {
            if s > next {
                mapped.push((p(next), s - next));
            }
            next = s + l;
        }
        if next < end {
            mapped.push((p(next), end - next));
        }
        let a = Allocator::from_mapped(mapped.clone(), p(end)).unwrap();
        a.check(&mapped).unwrap();
        (a, mapped)
    }

    #[test]
    fn unpunched_runs_are_forgotten_when_handed_out_and_held_out_of_reach_for_a_punch() {
        let (mut a, mut mapped) = with_free(100, &[(10, 8), (40, 8)]);
        // Free runs of an opened store may hold space: all unpunched.
        assert_eq!(a.unpunched_blocks(), 16);
        assert_eq!(a.allocate(4, Some(p(10))), vec![(p(10), 4)]);
        mapped.push((p(10), 4));
        assert_eq!(a.unpunched_blocks(), 12);
        a.check(&mapped).unwrap();
        let (held, past_end) = a.hold_unpunched(1).unwrap();
        assert_eq!(held, vec![(p(14), 4), (p(40), 8)]);
        assert!(past_end.is_empty());
        assert_eq!((a.free_blocks(), a.pending_blocks()), (0, 12));
        a.check(&mapped).unwrap();
        // Nothing held can be handed out while it is punched: the store grows instead.
        assert_eq!(a.allocate(4, None), vec![(p(100), 4)]);
        mapped.push((p(100), 4));
        a.release(1);
        assert_eq!((a.free_blocks(), a.unpunched_blocks()), (12, 0));
        a.check(&mapped).unwrap();
    }

    #[test]
    fn an_unpunched_tail_folds_past_the_end_and_growth_forgets_what_it_reuses() {
        let (mut a, _) = with_free(100, &[]);
        a.free_later([(p(90), 10)], 1).unwrap();
        a.release(1);
        a.note_unpunched(&[(p(90), 10)]);
        assert_eq!(a.end(), p(90));
        a.check(&[(p(0), 90)]).unwrap();
        assert_eq!(a.allocate(4, None), vec![(p(90), 4)]);
        assert_eq!(a.unpunched_blocks(), 6);
        a.check(&[(p(0), 94)]).unwrap();
        let (held, past_end) = a.hold_unpunched(2).unwrap();
        assert!(held.is_empty());
        assert_eq!(past_end, vec![(p(94), 6)]);
        assert_eq!(a.unpunched_blocks(), 0);
    }

    #[test]
    fn check_refuses_an_unpunched_run_that_is_mapped() {
        let (mut a, mapped) = with_free(100, &[(10, 4)]);
        a.note_unpunched(&[(p(50), 2)]);
        let err = a.check(&mapped).unwrap_err().to_string();
        assert!(err.contains("unpunched but neither free"), "{err}");
        assert!(a.hold_unpunched(1).is_err());
        // Refused whole: nothing moved.
        assert_eq!((a.free_blocks(), a.pending_blocks()), (4, 0));
    }

    #[test]
    fn from_mapped_frees_the_gaps_and_folds_a_free_tail_into_the_end() {
        let a = Allocator::from_mapped([(p(2), 3), (p(8), 2)], p(20)).unwrap();
        assert_eq!(
            a.free_runs().collect::<Vec<_>>(),
            vec![(p(0), 2), (p(5), 3)]
        );
        assert_eq!(a.end(), p(10));
        assert_eq!(a.free_blocks(), 5);
        a.check(&[(p(2), 3), (p(8), 2)]).unwrap();
    }

    #[test]
    fn from_mapped_detects_a_block_mapped_twice() {
        let err = Allocator::from_mapped([(p(0), 4), (p(10), 2), (p(3), 2)], p(20)).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let err = Allocator::from_mapped([(p(18), 4)], p(20)).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let err = Allocator::from_mapped([(p(u64::MAX), 4)], p(20)).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn freed_neighbours_coalesce_into_one_run() {
        let (mut a, _) = with_free(20, &[]);
        a.free_now([(p(4), 2), (p(8), 2)]).unwrap();
        assert_eq!(a.free_runs().count(), 2);
        a.free_now([(p(6), 2)]).unwrap();
        assert_eq!(a.free_runs().collect::<Vec<_>>(), vec![(p(4), 6)]);
        a.check(&[(p(0), 4), (p(10), 10)]).unwrap();
        // A run reaching the end lowers the end instead of staying free.
        a.free_now([(p(10), 10)]).unwrap();
        assert_eq!(a.end(), p(4));
        assert_eq!(a.free_blocks(), 0);
        a.check(&[(p(0), 4)]).unwrap();
    }

    #[test]
    fn allocation_takes_the_smallest_run_that_fits() {
        let (mut a, mut mapped) = with_free(40, &[(0, 8), (10, 3), (20, 5), (30, 4)]);
        assert_eq!(a.allocate(4, None), vec![(p(30), 4)]);
        assert_eq!(a.allocate(3, None), vec![(p(10), 3)]);
        assert_eq!(a.allocate(2, None), vec![(p(20), 2)]);
        mapped.extend([(p(30), 4), (p(10), 3), (p(20), 2)]);
        a.check(&mapped).unwrap();
    }

    #[test]
    fn hint_extends_the_previous_allocation() {
        let (mut a, _) = with_free(40, &[(0, 2), (10, 6), (20, 9)]);
        // The run at the hint wins although a better fit exists.
        assert_eq!(a.allocate(2, Some(p(10))), vec![(p(10), 2)]);
        assert_eq!(a.allocate(2, Some(p(12))), vec![(p(12), 2)]);
        // A hint run too short is used up, and the rest found by best fit.
        assert_eq!(a.allocate(4, Some(p(14))), vec![(p(14), 2), (p(0), 2)]);
        // A hint at the end does not grow the store while a free run fits: reuse comes first.
        let end = a.end();
        assert_eq!(a.allocate(3, None), vec![(p(20), 3)]);
        assert_eq!(a.allocate(5, Some(end)), vec![(p(23), 5)]);
        // With no free run that fits, it grows, contiguous with the hint.
        assert_eq!(a.allocate(2, Some(end)), vec![(end, 2)]);
        // A hint at an allocated block is ignored.
        assert_eq!(a.allocate(1, Some(p(5))), vec![(p(28), 1)]);
    }

    #[test]
    fn store_grows_when_no_free_run_fits() {
        let (mut a, _) = with_free(20, &[(2, 3), (10, 3)]);
        assert_eq!(a.allocate(4, None), vec![(p(20), 4)]);
        assert_eq!(a.end(), p(24));
        let mut fresh = Allocator::new();
        assert_eq!(fresh.allocate(7, None), vec![(p(0), 7)]);
        assert_eq!(fresh.allocate(0, None), vec![]);
        assert_eq!(fresh.end(), p(7));
    }

    #[test]
    fn growth_limit_makes_several_runs_largest_first_before_growing() {
        let (mut a, _) = with_free(20, &[(2, 3), (10, 4), (16, 2)]);
        a.set_growth_limit(Some(p(20)));
        assert_eq!(a.allocate(8, None), vec![(p(10), 4), (p(2), 3), (p(16), 1)]);
        assert_eq!(a.allocate(3, None), vec![(p(17), 1), (p(20), 2)]);
        assert_eq!(a.end(), p(22));
    }

    #[test]
    fn pending_runs_are_not_allocatable_until_released() {
        let (mut a, _) = with_free(20, &[]);
        a.free_later([(p(4), 4)], 7).unwrap();
        a.free_later([(p(12), 2)], 9).unwrap();
        assert_eq!(a.pending_blocks(), 6);
        assert_eq!(a.free_blocks(), 0);
        assert_eq!(a.allocate(2, Some(p(4))), vec![(p(20), 2)]);
        a.check(&[(p(0), 4), (p(8), 4), (p(14), 8)]).unwrap();

        a.release(6);
        assert_eq!(a.pending_blocks(), 6);
        a.release(8);
        assert_eq!(a.pending_blocks(), 2);
        assert_eq!(a.free_blocks(), 4);
        assert_eq!(a.allocate(2, Some(p(4))), vec![(p(4), 2)]);
        a.release(u64::MAX);
        assert_eq!(a.pending_blocks(), 0);
        a.check(&[(p(0), 6), (p(8), 4), (p(14), 8)]).unwrap();
    }

    #[test]
    fn freeing_a_block_twice_is_corruption_and_changes_nothing() {
        let (mut a, mapped) = with_free(20, &[(4, 2)]);
        a.free_later([(p(10), 2)], 1).unwrap();
        for runs in [
            vec![(p(5), 2)],
            vec![(p(9), 2)],
            vec![(p(0), 1), (p(0), 1)],
            vec![(p(19), 2)],
            vec![(p(20), 1)],
        ] {
            assert!(
                a.free_now(runs.clone()).unwrap_err().is_corruption(),
                "{runs:?}"
            );
            assert!(
                a.free_later(runs.clone(), 2).unwrap_err().is_corruption(),
                "{runs:?}"
            );
        }
        assert_eq!(a.free_blocks(), 2);
        assert_eq!(a.pending_blocks(), 2);
        let still: Vec<_> = mapped
            .iter()
            .flat_map(|&(s, l)| s.0..s.0 + l)
            .filter(|b| !(10..12).contains(b))
            .map(|b| (p(b), 1))
            .collect();
        a.check(&still).unwrap();
    }

    #[test]
    fn check_detects_a_block_both_mapped_and_free_or_in_no_state() {
        let (a, mut mapped) = with_free(10, &[(2, 2)]);
        assert!(a.check(&[(p(0), 10)]).unwrap_err().is_corruption());
        mapped.pop();
        assert!(a.check(&mapped).unwrap_err().is_corruption());
        assert!(
            a.check(&[(p(0), 2), (p(4), 7)])
                .unwrap_err()
                .is_corruption()
        );
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum State {
        Mapped,
        Free,
        Pending(u64),
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
    fn random_allocate_free_release_agree_with_a_bitmap_model() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut a = Allocator::new();
            if seed % 2 == 0 {
                a.set_growth_limit(Some(p(48)));
            }
            // Blocks at or past the allocator's end are Free in the model.
            let mut model: Vec<State> = Vec::new();
            let mut owned: Vec<(PhysicalBlock, u64)> = Vec::new();
            let mut ticket = 0u64;
            let mut hint = None;
            for step in 0..400 {
                match rng.below(10) {
                    0..=3 => {
                        let n = 1 + rng.below(9);
                        let runs = a.allocate(n, hint.take());
                        assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), n);
                        for &(s, l) in &runs {
                            for b in s.0..s.0 + l {
                                if model.len() <= b as usize {
                                    model.resize(b as usize + 1, State::Free);
                                }
                                assert_eq!(
                                    model[b as usize],
                                    State::Free,
                                    "seed {seed} step {step}: block {b} handed out"
                                );
                                model[b as usize] = State::Mapped;
                            }
                            owned.push((s, l));
                        }
                        hint = runs.last().map(|&(s, l)| s.add(l));
                    }
                    4..=6 if !owned.is_empty() => {
                        let (start, len) =
                            owned.swap_remove(rng.below(owned.len() as u64) as usize);
                        // Free only the tail of a run sometimes, as a partial delete does.
                        let skip = rng.below(len);
                        if skip > 0 {
                            owned.push((start, skip));
                        }
                        let (s, l) = (start.add(skip), len - skip);
                        let later = rng.below(3) > 0;
                        if later {
                            a.free_later([(s, l)], ticket).unwrap();
                        } else {
                            a.free_now([(s, l)]).unwrap();
                        }
                        for b in s.0..s.0 + l {
                            model[b as usize] = if later {
                                State::Pending(ticket)
                            } else {
                                State::Free
                            };
                        }
                        if rng.below(4) == 0 {
                            ticket += 1;
                        }
                    }
                    7 => {
                        let up_to = rng.below(ticket + 1);
                        a.release(up_to);
                        for st in &mut model {
                            if matches!(*st, State::Pending(t) if t <= up_to) {
                                *st = State::Free;
                            }
                        }
                    }
                    _ => {
                        // A double free of a live, free or pending block is always refused.
                        let b = rng.below(model.len().max(1) as u64 + 4);
                        let state = model.get(b as usize).copied().unwrap_or(State::Free);
                        if state != State::Mapped {
                            assert!(a.free_now([(p(b), 1)]).is_err(), "seed {seed} step {step}");
                        }
                    }
                }
                a.check(&owned)
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                let end = a.end().0 as usize;
                assert!(model.iter().skip(end).all(|&s| s == State::Free));
                let count = |want: fn(&State) -> bool| {
                    model.iter().take(end).filter(|s| want(s)).count() as u64
                };
                assert_eq!(a.free_blocks(), count(|s| *s == State::Free));
                assert_eq!(
                    a.pending_blocks(),
                    count(|s| matches!(s, State::Pending(_)))
                );
            }
        }
    }
}
