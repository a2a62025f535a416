//! [`Cursor`]: a forward walk over a key range at one snapshot that lends each pair in place.
//!
//! An [`Iter`](crate::Iter) hands out owned keys and values, and each pair costs reference
//! counts on the buffers it shares. A cursor lends its pairs instead, valid until its next
//! call, and its sources lend theirs in turn (`index/scan.rs`): a step over inline values
//! copies nothing and counts no references. A cursor can also seek.
//!
//! For each user key it lends the newest version at the snapshot, unless that version is a
//! point tombstone or a visible range tombstone covers it: the rule [`Iter`](crate::Iter)
//! follows. Its sources are built at the first [`Cursor::next`] after it is made or seeks, so
//! making one and seeking do no I/O. Like an iterator it pins the memtables and tables it
//! reads. Not thread-safe; it has one owner.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::SuperVersion;
use crate::error::Result;
use crate::index::memtable::MemtableScan;
use crate::index::scan::{LevelScan, MergeScan, ScanSource};
use crate::index::table::{ReadMode, TableScan};
use crate::index::tombstones::TombstoneIndex;
use crate::iter::{Readahead, visible_tombstones};
use crate::key::{SeqNo, ValueKind};
use crate::value::ValueStore;
use crate::value::pointer::ValuePointer;

/// A forward cursor over `(key, value)` pairs in key order; see [`Db::cursor`](crate::Db::cursor).
///
/// ```
/// # fn main() -> extentdb::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = extentdb::Db::open(dir.path())?;
/// db.put("a", "1")?;
/// db.put("b", "2")?;
/// db.put("c", "3")?;
/// let mut cursor = db.cursor("a".."c");
/// let mut pairs = Vec::new();
/// while let Some((key, value)) = cursor.next()? {
///     pairs.push((key.to_vec(), value.to_vec())); // borrowed until the next call: copy to keep
/// }
/// assert_eq!(pairs, [(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
/// cursor.seek("b");
/// assert_eq!(cursor.next()?, Some((&b"b"[..], &b"2"[..])));
/// assert_eq!(cursor.next()?, None);
/// # Ok(())
/// # }
/// ```
pub struct Cursor {
    values: Arc<ValueStore>,
    /// The memtables and tables the cursor reads; a seek builds its sources from them again.
    sv: Arc<SuperVersion>,
    snapshot: SeqNo,
    tombstones: TombstoneIndex,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    /// Where the next call starts when it must build its sources first.
    pending: Option<Bound<Bytes>>,
    merge: Option<MergeScan>,
    /// The merge is at the pair the last call lent, so the next call moves past it first.
    lent: bool,
    /// The last user key decided (lent, or found deleted): its older versions are skipped.
    decided: Option<Vec<u8>>,
    /// The value lent, when it was read from a value file rather than lent by a source.
    value: Bytes,
    ahead: Readahead,
}

/// Where the pair a step found keeps its value.
enum Lent {
    /// In the source, with the key.
    Inline,
    /// In [`Cursor::value`].
    Separated,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Cursor {
    pub(crate) fn new(
        values: Arc<ValueStore>,
        sv: Arc<SuperVersion>,
        snapshot: SeqNo,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> Self {
        Self {
            values,
            tombstones: visible_tombstones(&sv, snapshot),
            sv,
            snapshot,
            pending: Some(lower.clone()),
            lower,
            upper,
            merge: None,
            lent: false,
            decided: None,
            value: Bytes::new(),
            ahead: Readahead::default(),
        }
    }

    /// The next pair in key order, lent until the cursor's next call; `None` at the end of
    /// the range.
    ///
    /// # Errors
    /// `Corruption` or `Io` if a table or value file cannot be read. The cursor then returns
    /// `None` until it seeks.
    #[expect(
        clippy::should_implement_trait,
        reason = "it lends its pairs, which `Iterator` cannot"
    )]
    pub fn next(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        let lent = match self.step() {
            Ok(Some(lent)) => lent,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.merge = None;
                return Err(e);
            }
        };
        let Some(e) = self.merge.as_ref().and_then(MergeScan::current) else {
            return Ok(None);
        };
        let value = match lent {
            Lent::Inline => e.value,
            Lent::Separated => &self.value[..],
        };
        Ok(Some((e.user_key, value)))
    }

    /// Moves the cursor so that its next pair is the first at or after `key` (within its
    /// range: a key below the range's start seeks to the start). It may move backward. No I/O
    /// happens until the next [`Cursor::next`].
    pub fn seek(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        let before_start = match &self.lower {
            Bound::Unbounded => false,
            Bound::Included(start) => key < &start[..],
            Bound::Excluded(start) => key <= &start[..],
        };
        self.pending = Some(if before_start {
            self.lower.clone()
        } else {
            Bound::Included(Bytes::copy_from_slice(key))
        });
        self.merge = None;
        self.ahead = Readahead::default();
    }

    /// Moves the merge to the next pair to lend and reads its value if it is separated.
    fn step(&mut self) -> Result<Option<Lent>> {
        if let Some(from) = self.pending.take() {
            self.lent = false;
            self.decided = match &from {
                // Every version of an excluded start is skipped as if already decided.
                Bound::Excluded(k) => Some(k.to_vec()),
                _ => None,
            };
            self.merge = Some(self.build(&from)?);
        }
        let Some(merge) = self.merge.as_mut() else {
            return Ok(None);
        };
        if std::mem::take(&mut self.lent) {
            merge.advance()?;
        }
        loop {
            let Some(e) = merge.current() else {
                return Ok(None);
            };
            if !below(&self.upper, e.user_key) {
                return Ok(None);
            }
            if e.seq > self.snapshot || self.decided.as_deref() == Some(e.user_key) {
                merge.advance()?;
                continue;
            }
            let decided = self.decided.get_or_insert_with(Vec::new);
            decided.clear();
            decided.extend_from_slice(e.user_key);
            let live = !self.tombstones.covers(e.user_key, e.seq, self.snapshot);
            match e.kind {
                ValueKind::Put if live => {
                    self.lent = true;
                    return Ok(Some(Lent::Inline));
                }
                ValueKind::Pointer if live => {
                    let p = ValuePointer::decode(e.value, Path::new("table"), 0)?;
                    let ahead = self.ahead.next(&p, self.values.readahead_max_bytes());
                    self.value = self.values.read_ahead(&p, ReadMode::Blocking, ahead)?;
                    self.lent = true;
                    return Ok(Some(Lent::Separated));
                }
                _ => merge.advance()?,
            }
        }
    }

    /// The merged sources positioned at `from`.
    fn build(&self, from: &Bound<Bytes>) -> Result<MergeScan> {
        let seek = match from {
            Bound::Included(k) | Bound::Excluded(k) => Some(&k[..]),
            Bound::Unbounded => None,
        };
        let mut sources = Vec::new();
        for mem in std::iter::once(&self.sv.mem).chain(&self.sv.imm) {
            sources.push(ScanSource::Memtable(MemtableScan::new(
                Arc::clone(mem),
                seek,
            )));
        }
        let version = &self.sv.version;
        for file in version.overlapping(0, from, &self.upper) {
            sources.push(ScanSource::Table(TableScan::new(
                Arc::clone(&file.table),
                seek,
            )?));
        }
        for level in 1..version.levels.len() {
            let files = version.overlapping(level, from, &self.upper);
            if !files.is_empty() {
                sources.push(ScanSource::Level(LevelScan::new(files, seek)?));
            }
        }
        Ok(MergeScan::new(sources))
    }
}

/// Whether `key` is within `upper`.
fn below(upper: &Bound<Bytes>, key: &[u8]) -> bool {
    match upper {
        Bound::Unbounded => true,
        Bound::Included(end) => key <= &end[..],
        Bound::Excluded(end) => key < &end[..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<Cursor>();
    }
}
