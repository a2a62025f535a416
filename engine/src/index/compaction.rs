//! Leveled compaction: merging tables down the levels, dropping versions no reader can see.
//!
//! Policy (LevelDB's, chosen because it bounds space amplification near 1.1 and read cost
//! at one table per level, which an engine tuned for point reads wants):
//! - level 0 is compacted into level 1 when it holds `l0_compaction_trigger` tables; all of its
//!   tables go at once, with every overlapping level-1 table;
//! - level `n >= 1` is compacted when it outgrows `level_base_bytes * multiplier^(n-1)`: one
//!   table, chosen round-robin by key, with every overlapping table of level `n+1`;
//! - a table that overlaps nothing below moves down without being rewritten.
//!
//! What is dropped, with `oldest` the oldest sequence number any snapshot reads at:
//! - a version when a newer version of the same key is at or below `oldest` (every reader sees
//!   the newer one);
//! - a version covered by a range tombstone of the inputs at or below `oldest`;
//! - a point tombstone at or below `oldest` when no deeper level holds the key;
//! - a range tombstone at or below `oldest` when no deeper level overlaps its range.
//!
//! Range tombstones are cut at the output tables' boundaries, so tables of one level never
//! overlap even by their tombstones.
//!
//! Locking: the compaction job lock serializes compactions; tables are read and written
//! without other locks; the version set and super version are taken only to publish.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::DbInner;
use crate::error::Result;
use crate::filename;
use crate::index::edit::{NUM_LEVELS, TableMeta, VersionEdit};
use crate::index::flush::{key_span, max_upper};
use crate::index::merge::{MergeIter, Source};
use crate::index::obsolete::ObsoleteFiles;
use crate::index::table::TableBuilder;
use crate::index::tombstones::TombstoneIndex;
use crate::index::version::{TableFile, Version};
use crate::key::{RangeTombstone, SeqNo, ValueKind};
use crate::options::Options;
use crate::stats::Counters;
use crate::value::block::ValueFileId;
use crate::value::dead::DeadRanges;
use crate::value::edit::ValueEdit;
use crate::value::pointer::ValuePointer;
use std::collections::BTreeMap;

/// Round-robin positions per level, guarded by the compaction job lock.
#[derive(Debug, Default)]
pub(crate) struct CompactionState {
    cursors: [Option<Bytes>; NUM_LEVELS],
}

/// One compaction: tables of `level` and the overlapping tables of `level + 1`, written to
/// `level + 1`; or, to rewrite the bottom of the tree, all tables of one level written back to
/// it.
#[derive(Debug)]
pub(crate) struct Plan {
    level: usize,
    inputs: Vec<Arc<TableFile>>,
    next: Vec<Arc<TableFile>>,
    output: usize,
}

impl Plan {
    fn output_level(&self) -> usize {
        self.output
    }

    fn is_trivial_move(&self) -> bool {
        self.output != self.level && self.next.is_empty() && self.inputs.len() == 1
    }

    fn all_inputs(&self) -> impl Iterator<Item = (usize, &Arc<TableFile>)> {
        let (level, output) = (self.level, self.output_level());
        self.inputs
            .iter()
            .map(move |f| (level, f))
            .chain(self.next.iter().map(move |f| (output, f)))
    }
}

fn level_target_bytes(options: &Options, level: usize) -> u64 {
    let exponent = u32::try_from(level.saturating_sub(1)).unwrap_or(u32::MAX);
    options
        .level_base_bytes
        .saturating_mul(options.level_multiplier.saturating_pow(exponent))
}

/// The span of keys of some tables.
fn span(files: &[Arc<TableFile>]) -> (Bound<Bytes>, Bound<Bytes>) {
    let smallest = files
        .iter()
        .map(|f| f.meta.smallest.clone())
        .min()
        .unwrap_or_default();
    let largest = files
        .iter()
        .map(|f| f.meta.largest.clone())
        .reduce(max_upper)
        .unwrap_or(Bound::Unbounded);
    (Bound::Included(smallest), largest)
}

fn plan_for(version: &Version, level: usize, inputs: Vec<Arc<TableFile>>) -> Plan {
    let (lower, upper) = span(&inputs);
    let next = version.overlapping(level + 1, &lower, &upper);
    Plan {
        output: level + 1,
        level,
        inputs,
        next,
    }
}

/// The compaction the tree needs most, if any.
fn pick(version: &Version, options: &Options, state: &mut CompactionState) -> Option<Plan> {
    if version.levels[0].len() >= options.l0_compaction_trigger {
        return Some(plan_for(version, 0, version.levels[0].clone()));
    }
    let (level, score) = (1..NUM_LEVELS - 1)
        .map(|l| {
            (
                l,
                version.level_bytes(l) as f64 / level_target_bytes(options, l) as f64,
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if score < 1.0 {
        return None;
    }
    let files = version.level(level);
    let cursor = state.cursors.get_mut(level)?;
    let file = files
        .iter()
        .find(|f| cursor.as_ref().is_none_or(|c| f.meta.smallest > *c))
        .or_else(|| files.first())?;
    *cursor = Some(file.meta.smallest.clone());
    Some(plan_for(version, level, vec![Arc::clone(file)]))
}

/// True if no level below `output_level` may hold `key`.
fn is_bottommost_key(version: &Version, output_level: usize, key: &[u8]) -> bool {
    version.levels.iter().skip(output_level + 1).all(|files| {
        let i = files.partition_point(|f| f.ends_before(key));
        files.get(i).is_none_or(|f| !f.contains_key(key))
    })
}

/// True if no level below `output_level` overlaps the tombstone's range.
fn is_bottommost_range(version: &Version, output_level: usize, t: &RangeTombstone) -> bool {
    let lower = Bound::Included(t.start.clone());
    let upper = t.end.clone().map_or(Bound::Unbounded, Bound::Excluded);
    (output_level + 1..NUM_LEVELS).all(|l| version.overlapping(l, &lower, &upper).is_empty())
}

/// The part of `t` inside `[lo, hi)` (`None`: unbounded), if any.
fn clip(t: &RangeTombstone, lo: Option<&Bytes>, hi: Option<&Bytes>) -> Option<RangeTombstone> {
    let start = match lo {
        Some(lo) if *lo > t.start => lo.clone(),
        _ => t.start.clone(),
    };
    let end = match (&t.end, hi) {
        (Some(e), Some(h)) => Some(e.clone().min(h.clone())),
        (Some(e), None) => Some(e.clone()),
        (None, h) => h.cloned(),
    };
    let piece = RangeTombstone {
        start,
        end,
        seq: t.seq,
    };
    (!piece.is_empty()).then_some(piece)
}

/// What a compaction did to values.
#[derive(Debug, Default)]
struct ValueChanges {
    /// Per value file, the bytes of the pointers it dropped or moved.
    dead: BTreeMap<ValueFileId, DeadRanges>,
    /// Per value file, how far the pointers to the values it moved reach.
    reaches: BTreeMap<ValueFileId, u64>,
    /// True if it moved any value (the value store must be synced before the edit).
    evacuated: bool,
}

impl ValueChanges {
    fn note_dead(&mut self, p: &ValuePointer) {
        self.dead
            .entry(p.file)
            .or_default()
            .insert(p.offset, p.end());
    }
}

/// An output table being written.
struct Output {
    number: u64,
    builder: TableBuilder,
    /// First key of its partition of the key space (`None`: from the start).
    partition_start: Option<Bytes>,
}

impl DbInner {
    /// Runs one compaction if the tree needs one; returns whether it did.
    pub fn compact_step(&self) -> Result<bool> {
        // Declared first, dropped last: the tables this compaction replaces are deleted here
        // when it releases them, not queued for the background thread.
        let _in_place = ObsoleteFiles::deleting_in_place();
        let mut state = self.compaction_lock.lock();
        self.check_writable()?;
        let version = Arc::clone(&self.super_version().version);
        let Some(plan) = pick(&version, &self.options, &mut state) else {
            return Ok(false);
        };
        let r = self.run_compaction(&version, plan);
        self.poison_on_error(r)?;
        Ok(true)
    }

    /// Compacts every level into the deepest non-empty one, then rewrites that one.
    pub fn compact_all(&self) -> Result<()> {
        // As in `compact_step`.
        let _in_place = ObsoleteFiles::deleting_in_place();
        let _state = self.compaction_lock.lock();
        self.check_writable()?;
        let first = self.super_version().version.clone();
        let target = (1..NUM_LEVELS)
            .rev()
            .find(|&l| !first.level(l).is_empty())
            .unwrap_or(1);
        for level in 0..target {
            let version = Arc::clone(&self.super_version().version);
            let inputs = version.level(level).to_vec();
            if inputs.is_empty() {
                continue;
            }
            let plan = plan_for(&version, level, inputs);
            let r = self.run_compaction(&version, plan);
            self.poison_on_error(r)?;
        }
        // Rewrite the bottom level too: the versions it still holds that a newer version, a
        // tombstone or a range tombstone has made invisible to every reader are dropped only
        // by rewriting it (and with them the last pointers into dead value files).
        let version = Arc::clone(&self.super_version().version);
        let inputs = version.level(target).to_vec();
        if !inputs.is_empty() {
            let plan = Plan {
                level: target,
                inputs,
                next: Vec::new(),
                output: target,
            };
            let r = self.run_compaction(&version, plan);
            self.poison_on_error(r)?;
        }
        Ok(())
    }

    fn run_compaction(&self, version: &Version, plan: Plan) -> Result<()> {
        let mut edit = VersionEdit::default();
        for (level, file) in plan.all_inputs() {
            edit.removed.push((level, file.number()));
        }
        if plan.is_trivial_move() {
            for file in &plan.inputs {
                edit.added.push((plan.output_level(), file.meta.clone()));
            }
            self.install(edit, Vec::new())?;
            Counters::add(&self.counters.trivial_moves, 1);
            return Ok(());
        }
        self.values.begin_accounting_change();
        let r = self.merge_and_install(version, &plan, edit);
        self.values.end_accounting_change();
        let read_bytes = r?;
        Counters::add(&self.counters.compactions, 1);
        Counters::add(&self.counters.compaction_read_bytes, read_bytes);
        Ok(())
    }

    /// Writes the plan's output tables and installs them with `edit`; returns the bytes read.
    fn merge_and_install(
        &self,
        version: &Version,
        plan: &Plan,
        mut edit: VersionEdit,
    ) -> Result<u64> {
        let (metas, read_bytes, values) = self.merge_tables(version, plan)?;
        if values.evacuated {
            // The moved values must be durable before the tables that point at them.
            self.values.sync()?;
        }
        self.fs.sync_dir(&self.dir)?;
        let mut opened = Vec::with_capacity(metas.len());
        for meta in metas {
            Counters::add(&self.counters.compaction_write_bytes, meta.size_bytes);
            opened.push(self.versions.lock().open_table(meta.clone())?);
            edit.added.push((plan.output_level(), meta));
        }
        let dead: Vec<(ValueFileId, u64, u64)> = values
            .dead
            .iter()
            .flat_map(|(&file, ranges)| ranges.iter().map(move |(s, e)| (file, s, e - s)))
            .collect();
        edit.values.extend(
            values
                .reaches
                .into_iter()
                .map(|(file, end)| ValueEdit::Reaches { file, end }),
        );
        edit.values
            .extend(
                dead.iter()
                    .map(|&(file, offset, len)| ValueEdit::Dead { file, offset, len }),
            );
        self.install(edit, opened)?;
        // Only now, with the tables that lack the pointers published: a reader that can still
        // see them pins an older super version, which reclamation waits out.
        if !dead.is_empty() {
            self.values.note_dead(dead);
            self.request_values();
        }
        Ok(read_bytes)
    }

    /// Logs the edit and publishes the new version to readers. Then, with neither the version
    /// set's nor the super version's lock held (the caller deletes in place: see
    /// `compact_step`), releases the old one, deleting the files of the tables the edit removed
    /// unless a reader still pins it (that reader's drop queues them: `index/obsolete.rs`), and
    /// deletes what readers queued before.
    fn install(&self, edit: VersionEdit, opened: Vec<Arc<TableFile>>) -> Result<()> {
        let mut versions = self.versions.lock();
        let version = versions.log_and_apply(edit, opened)?;
        let obsolete = Arc::clone(versions.obsolete());
        let old = self.super_version.install(|current| {
            current.derive(Arc::clone(&current.mem), current.imm.clone(), version)
        });
        drop(versions);
        drop(old);
        obsolete.delete_queued();
        self.jobs_changed.notify_all();
        Ok(())
    }

    /// Merges the plan's tables into new tables of the output level. Also returns what it
    /// did to values: the ranges of the pointers it dropped and moved (now dead), and where
    /// the values it moved were written.
    fn merge_tables(
        &self,
        version: &Version,
        plan: &Plan,
    ) -> Result<(Vec<TableMeta>, u64, ValueChanges)> {
        let evacuating = self.values.evacuating();
        let mut values = ValueChanges::default();
        let oldest = self.oldest_snapshot();
        let output_level = plan.output_level();
        let inputs: Vec<&Arc<TableFile>> = plan.all_inputs().map(|(_, f)| f).collect();
        let read_bytes = inputs.iter().map(|f| f.meta.size_bytes).sum();
        let sources: Vec<Source> = inputs
            .iter()
            .map(|f| Box::new(f.table.iter_past_cache()) as Source)
            .collect();
        let tombstones: Vec<RangeTombstone> = inputs
            .iter()
            .flat_map(|f| f.table.range_tombstones().iter().cloned())
            .collect();
        let covering = TombstoneIndex::new(&tombstones);
        let kept_tombstones: Vec<RangeTombstone> = tombstones
            .iter()
            .filter(|t| t.seq > oldest || !is_bottommost_range(version, output_level, t))
            .cloned()
            .collect();

        let mut outputs = Vec::new();
        let mut current: Option<Output> = None;
        // Where the next output's share of the key space starts. Outputs are opened only for
        // an entry or tombstone to write: a share left empty by dropped versions gets no table.
        let mut next_start: Option<Bytes> = None;
        let mut last_key: Option<Bytes> = None;
        let mut last_seq_for_key: Option<SeqNo> = None;
        for entry in MergeIter::new(sources) {
            let entry = entry?;
            let key = &entry.key;
            if last_key.as_ref() != Some(&key.user_key) {
                last_key = Some(key.user_key.clone());
                last_seq_for_key = None;
                // Cut between user keys only: all versions of a key stay in one table.
                let full = current.as_ref().is_some_and(|o| {
                    o.builder.estimated_size_bytes() >= self.options.table_target_bytes
                });
                if let Some(done) = current.take_if(|_| full) {
                    outputs.push(self.finish_output(
                        done,
                        Some(&key.user_key),
                        &kept_tombstones,
                    )?);
                    next_start = Some(key.user_key.clone());
                }
            }
            let shadowed = last_seq_for_key.is_some_and(|newer| newer <= oldest);
            let dead_tombstone = key.kind == ValueKind::Delete
                && key.seq <= oldest
                && is_bottommost_key(version, output_level, &key.user_key);
            let deleted_by_range = covering.covers(&key.user_key, key.seq, oldest);
            last_seq_for_key = Some(key.seq);
            let dropped = shadowed || dead_tombstone || deleted_by_range;
            let mut value = entry.value;
            if key.kind == ValueKind::Pointer {
                let p = ValuePointer::decode(&value, &self.dir, 0)?;
                if dropped {
                    values.note_dead(&p);
                } else if evacuating.contains(&p.file) {
                    let moved = self.values.evacuate(&p, self)?;
                    values.note_dead(&p);
                    let end = values.reaches.entry(moved.file).or_default();
                    *end = (*end).max(moved.end());
                    values.evacuated = true;
                    value = Bytes::from(moved.encode());
                }
            }
            if dropped {
                continue;
            }
            let out = match current.as_mut() {
                Some(out) => out,
                None => current.insert(self.new_output(next_start.clone())?),
            };
            out.builder.add(key, &value)?;
        }
        let tombstones_left = kept_tombstones
            .iter()
            .any(|t| clip(t, next_start.as_ref(), None).is_some());
        if current.is_none() && tombstones_left {
            current = Some(self.new_output(next_start)?);
        }
        if let Some(done) = current {
            outputs.push(self.finish_output(done, None, &kept_tombstones)?);
        }
        Ok((outputs, read_bytes, values))
    }

    fn new_output(&self, partition_start: Option<Bytes>) -> Result<Output> {
        let number = self.versions.lock().new_file_number();
        let file = self.fs.create(&self.dir.join(filename::table(number)))?;
        Ok(Output {
            number,
            builder: TableBuilder::new(file, &self.table_options),
            partition_start,
        })
    }

    /// Adds the tombstone pieces of the output's partition `[start, end)` and finishes it.
    fn finish_output(
        &self,
        mut out: Output,
        end: Option<&Bytes>,
        tombstones: &[RangeTombstone],
    ) -> Result<TableMeta> {
        let pieces: Vec<RangeTombstone> = tombstones
            .iter()
            .filter_map(|t| clip(t, out.partition_start.as_ref(), end))
            .collect();
        for piece in &pieces {
            out.builder.add_range_tombstone(piece);
        }
        let summary = out.builder.finish()?;
        let (smallest, largest) = key_span(summary.first_key, summary.last_key, &pieces);
        let max_seq = pieces
            .iter()
            .map(|t| t.seq)
            .fold(summary.max_seq, SeqNo::max);
        Ok(TableMeta {
            number: out.number,
            size_bytes: summary.size_bytes,
            entries: summary.entries,
            max_seq,
            smallest,
            largest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: &'static str, end: Option<&'static str>) -> RangeTombstone {
        RangeTombstone {
            start: Bytes::from(start),
            end: end.map(Bytes::from),
            seq: SeqNo(3),
        }
    }

    #[test]
    fn clipping_keeps_only_the_partition() {
        let b = |s: &'static str| Bytes::from(s);
        assert_eq!(
            clip(&t("b", Some("k")), Some(&b("d")), Some(&b("f"))),
            Some(RangeTombstone {
                start: b("d"),
                end: Some(b("f")),
                seq: SeqNo(3)
            })
        );
        assert_eq!(
            clip(&t("b", None), None, Some(&b("c"))),
            Some(RangeTombstone {
                start: b("b"),
                end: Some(b("c")),
                seq: SeqNo(3)
            })
        );
        assert_eq!(clip(&t("b", Some("c")), Some(&b("c")), None), None);
        assert_eq!(
            clip(&t("b", None), Some(&b("x")), None),
            Some(RangeTombstone {
                start: b("x"),
                end: None,
                seq: SeqNo(3)
            })
        );
    }

    #[test]
    fn level_targets_grow_by_the_multiplier() {
        let o = Options::new().level_base_bytes(1000).level_multiplier(10);
        assert_eq!(level_target_bytes(&o, 1), 1000);
        assert_eq!(level_target_bytes(&o, 3), 100_000);
    }
}
