//! Merging iterators: many sorted streams of versions as one, in internal order, from both
//! ends.
//!
//! [`MergeIter`] merges any number of double-ended sources (memtables, level-0 tables, levels).
//! It keeps one peeked entry per source per end and picks the smallest (front) or largest
//! (back) by a linear scan: the number of sources is small (memtables + level-0 tables + one
//! per level), so a scan beats a heap's bookkeeping. Front and back never cross: an entry held
//! at one end of a source is also a candidate for the other end once the source is exhausted.
//!
//! [`LevelIter`] walks the non-overlapping tables of one level as one stream, opening a
//! table's iterator only when the walk reaches it.
//!
//! Not thread-safe; each iterator has one owner.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::index::table::TableIter;
use crate::index::version::TableFile;
use crate::key::Entry;

/// A sorted stream of versions that can be consumed from both ends.
pub(crate) type Source = Box<dyn DoubleEndedIterator<Item = Result<Entry>> + Send>;

#[derive(Default)]
struct Slot {
    front: Option<Entry>,
    back: Option<Entry>,
    /// The source returned `None` (from either end): only `front`/`back` remain.
    exhausted: bool,
}

/// Merges sources into one stream in internal order.
pub(crate) struct MergeIter {
    sources: Vec<Source>,
    slots: Vec<Slot>,
    failed: bool,
}

impl std::fmt::Debug for MergeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeIter")
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl MergeIter {
    pub fn new(sources: Vec<Source>) -> Self {
        let slots = sources.iter().map(|_| Slot::default()).collect();
        Self {
            sources,
            slots,
            failed: false,
        }
    }

    /// Peeks every source at one end; returns the index of the best candidate.
    fn pick(&mut self, front: bool) -> Result<Option<usize>> {
        let mut best: Option<(usize, &Entry)> = None;
        for (i, (slot, source)) in self.slots.iter_mut().zip(&mut self.sources).enumerate() {
            let held = if front {
                &mut slot.front
            } else {
                &mut slot.back
            };
            if held.is_none() && !slot.exhausted {
                let next = if front {
                    source.next()
                } else {
                    source.next_back()
                };
                match next.transpose()? {
                    Some(e) => *held = Some(e),
                    None => slot.exhausted = true,
                }
            }
            let candidate = if front {
                slot.front.as_ref().or(slot.back.as_ref())
            } else {
                slot.back.as_ref().or(slot.front.as_ref())
            };
            if let Some(c) = candidate {
                let better =
                    best.is_none_or(|(_, b)| if front { c.key < b.key } else { c.key > b.key });
                if better {
                    best = Some((i, c));
                }
            }
        }
        Ok(best.map(|(i, _)| i))
    }

    fn take(&mut self, front: bool) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        match self.pick(front) {
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
            Ok(None) => None,
            Ok(Some(i)) => {
                let slot = self.slots.get_mut(i)?;
                let entry = if front {
                    slot.front.take().or_else(|| slot.back.take())
                } else {
                    slot.back.take().or_else(|| slot.front.take())
                };
                entry.map(Ok)
            }
        }
    }
}

impl Iterator for MergeIter {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Result<Entry>> {
        self.take(true)
    }
}

impl DoubleEndedIterator for MergeIter {
    fn next_back(&mut self) -> Option<Result<Entry>> {
        self.take(false)
    }
}

/// The tables of one level (sorted, not overlapping) as one stream.
pub(crate) struct LevelIter {
    files: Vec<Arc<TableFile>>,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    /// Tables `front..=back` are not yet exhausted; `None` once they all are.
    range: Option<(usize, usize)>,
    front_iter: Option<(usize, TableIter)>,
    back_iter: Option<(usize, TableIter)>,
}

impl LevelIter {
    pub fn new(files: Vec<Arc<TableFile>>, lower: Bound<Bytes>, upper: Bound<Bytes>) -> Self {
        let range = files.len().checked_sub(1).map(|last| (0, last));
        Self {
            files,
            lower,
            upper,
            range,
            front_iter: None,
            back_iter: None,
        }
    }

    fn step(&mut self, front: bool) -> Option<Result<Entry>> {
        loop {
            let (lo, hi) = self.range?;
            let i = if front { lo } else { hi };
            // When both ends reach the same table they must share one iterator, or they
            // would each return its entries.
            let shared = lo == hi;
            let (slot, other) = if front {
                (&mut self.front_iter, &mut self.back_iter)
            } else {
                (&mut self.back_iter, &mut self.front_iter)
            };
            if slot.as_ref().is_none_or(|(n, _)| *n != i) {
                *slot = match other.take() {
                    Some((n, it)) if shared && n == i => Some((n, it)),
                    other_iter => {
                        *other = other_iter;
                        Some((
                            i,
                            open_table_iter(&self.files, &self.lower, &self.upper, i)?,
                        ))
                    }
                };
            }
            let (_, it) = slot.as_mut()?;
            let item = if front { it.next() } else { it.next_back() };
            if let Some(item) = item {
                return Some(item);
            }
            *slot = None;
            self.range = match (lo, hi) {
                _ if lo == hi => None,
                _ if front => Some((lo + 1, hi)),
                _ => Some((lo, hi - 1)),
            };
        }
    }
}

fn open_table_iter(
    files: &[Arc<TableFile>],
    lower: &Bound<Bytes>,
    upper: &Bound<Bytes>,
    i: usize,
) -> Option<TableIter> {
    let file = files.get(i)?;
    Some(file.table.iter(lower.clone(), upper.clone()))
}

impl Iterator for LevelIter {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Result<Entry>> {
        self.step(true)
    }
}

impl DoubleEndedIterator for LevelIter {
    fn next_back(&mut self) -> Option<Result<Entry>> {
        self.step(false)
    }
}
