//! Flush: writing a frozen memtable to a level-0 table.
//!
//! A flush writes the table, syncs it and the directory, then logs a version edit that adds
//! the table and advances the log number past the memtable's write-ahead log; only then is
//! the log deleted. A crash at any point leaves either the log (replayed at open) or the table
//! (in the manifest), never neither. Frozen memtables are flushed oldest first, so the log
//! number only moves forward.
//!
//! Locking: the flush job lock serializes flushes; the version set and super version are taken
//! only to publish the result.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::{DbInner, SuperVersion};
use crate::error::Result;
use crate::filename;
use crate::fs::FileSystem;
use crate::index::edit::{TableMeta, VersionEdit};
use crate::index::memtable::Memtable;
use crate::index::table::{TableBuilder, TableOptions};
use crate::key::{RangeTombstone, ValueKind};
use crate::stats::Counters;
use crate::value::block::ValueFileId;
use crate::value::edit::ValueEdit;
use crate::value::pointer::ValuePointer;
use std::collections::BTreeMap;

/// Writes every version and range tombstone of `mem` to table `number`, synced. Also returns
/// how far the table's value pointers reach into each value file, for the manifest: recovery
/// trims value files to what pointers reach.
pub(crate) fn write_table(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    options: &TableOptions,
    number: u64,
    mem: &Memtable,
) -> Result<(TableMeta, Vec<ValueEdit>)> {
    let path = dir.join(filename::table(number));
    let mut builder = TableBuilder::new(fs.create(&path)?, options);
    let mut reaches: BTreeMap<ValueFileId, u64> = BTreeMap::new();
    for entry in mem.entries() {
        if entry.key.kind == ValueKind::Pointer {
            let p = ValuePointer::decode(&entry.value, &path, 0)?;
            let end = reaches.entry(p.file).or_default();
            *end = (*end).max(p.end());
        }
        builder.add(&entry.key, &entry.value)?;
    }
    let tombstones = mem.range_tombstones();
    for t in &tombstones {
        builder.add_range_tombstone(t);
    }
    let summary = builder.finish()?;
    let (smallest, largest) = key_span(summary.first_key, summary.last_key, &tombstones);
    let meta = TableMeta {
        number,
        size_bytes: summary.size_bytes,
        entries: summary.entries,
        max_seq: summary.max_seq.max(mem.max_seq()),
        smallest,
        largest,
    };
    let reaches = reaches
        .into_iter()
        .map(|(file, end)| ValueEdit::Reaches { file, end })
        .collect();
    Ok((meta, reaches))
}

/// The key span of a table: its first and last point keys widened by its range tombstones.
pub(crate) fn key_span(
    first: Option<Bytes>,
    last: Option<Bytes>,
    tombstones: &[RangeTombstone],
) -> (Bytes, Bound<Bytes>) {
    let smallest = tombstones
        .iter()
        .map(|t| t.start.clone())
        .chain(first)
        .min()
        .unwrap_or_default();
    let mut largest = last.map_or(Bound::Excluded(Bytes::new()), Bound::Included);
    for t in tombstones {
        let end = t.end.clone().map_or(Bound::Unbounded, Bound::Excluded);
        largest = max_upper(largest, end);
    }
    (smallest, largest)
}

/// The larger of two upper bounds.
pub(crate) fn max_upper(a: Bound<Bytes>, b: Bound<Bytes>) -> Bound<Bytes> {
    let key = |b: &Bound<Bytes>| match b {
        Bound::Unbounded => None,
        Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
    };
    match (key(&a), key(&b)) {
        (None, _) => a,
        (_, None) => b,
        (Some(x), Some(y)) if x > y => a,
        (Some(x), Some(y)) if y > x => b,
        // Equal keys: an inclusive bound reaches one key further.
        _ => {
            if matches!(a, Bound::Included(_)) {
                a
            } else {
                b
            }
        }
    }
}

impl DbInner {
    /// Flushes every frozen memtable, oldest first.
    ///
    /// # Errors
    /// An I/O error poisons the database: the version set may be half updated.
    pub fn flush_frozen(&self) -> Result<()> {
        let _job = self.flush_lock.lock();
        loop {
            self.check_writable()?;
            let sv = self.super_version();
            let Some(oldest) = sv.imm.last().cloned() else {
                return Ok(());
            };
            let r = self.flush_one(&sv, &oldest);
            self.poison_on_error(r)?;
            self.jobs_changed.notify_all();
        }
    }

    fn flush_one(&self, sv: &SuperVersion, mem: &Arc<Memtable>) -> Result<()> {
        // Every write after this memtable's is in the next newer memtable's log or later.
        let newer = sv.imm.iter().rev().nth(1).unwrap_or(&sv.mem);
        let log_number = newer.wal_number();
        let number = self.versions.lock().new_file_number();
        let mut edit = VersionEdit {
            log_number: Some(log_number),
            last_seq: Some(mem.max_seq()),
            ..VersionEdit::default()
        };
        let mut opened = Vec::new();
        if !mem.is_empty() {
            let (meta, reaches) =
                write_table(&self.fs, &self.dir, &self.table_options, number, mem)?;
            edit.values = reaches;
            self.fs.sync_dir(&self.dir)?;
            Counters::add(&self.counters.flush_bytes, meta.size_bytes);
            opened.push(self.versions.lock().open_table(meta.clone())?);
            edit.added.push((0, meta));
        }
        let l0_tables = {
            let mut versions = self.versions.lock();
            let flushed = versions.flushed_seq;
            edit.last_seq = edit.last_seq.max(Some(flushed));
            let version = versions.log_and_apply(edit, opened)?;
            // Released after the locks: it may hold the last reference to the flushed memtable.
            let old = self.super_version.install(|current| {
                let imm = current
                    .imm
                    .iter()
                    .filter(|m| !Arc::ptr_eq(m, mem))
                    .cloned()
                    .collect();
                current.derive(Arc::clone(&current.mem), imm, Arc::clone(&version))
            });
            drop(versions);
            drop(old);
            version.levels[0].len()
        };
        Counters::add(&self.counters.flushes, 1);
        self.delete_obsolete_wals(log_number)?;
        if l0_tables >= self.options.l0_compaction_trigger {
            self.request_jobs(false, true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SeqNo;

    #[test]
    fn key_span_widens_to_tombstones() {
        let t = |s: &'static str, e: Option<&'static str>| RangeTombstone {
            start: Bytes::from(s),
            end: e.map(Bytes::from),
            seq: SeqNo(1),
        };
        let (lo, hi) = key_span(
            Some(Bytes::from("c")),
            Some(Bytes::from("m")),
            &[t("a", Some("d"))],
        );
        assert_eq!(
            (lo, hi),
            (Bytes::from("a"), Bound::Included(Bytes::from("m")))
        );
        let (_, hi) = key_span(
            Some(Bytes::from("c")),
            Some(Bytes::from("m")),
            &[t("k", Some("m"))],
        );
        assert_eq!(hi, Bound::Included(Bytes::from("m")));
        let (_, hi) = key_span(
            Some(Bytes::from("c")),
            Some(Bytes::from("m")),
            &[t("k", Some("n"))],
        );
        assert_eq!(hi, Bound::Excluded(Bytes::from("n")));
        let (_, hi) = key_span(None, None, &[t("k", None)]);
        assert_eq!(hi, Bound::Unbounded);
    }
}
