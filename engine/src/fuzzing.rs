//! Entry points for fuzz targets: every decoder of disk bytes, callable on arbitrary input;
//! and [`History`], the model of acknowledged writes the operation-sequence target judges a
//! database against after crashes, power cuts and I/O errors.
//!
//! Compiled only with the `fuzzing` feature and hidden from the documentation: this is not an
//! API. Each decoder function must return (an error or a value) for any input, never panic,
//! hang or allocate without bound; the fuzz targets in `fuzz/` check exactly that.
//! [`extent_replay`] also checks what the replay built, and [`table`] that its two readers agree,
//! and each panics (a finding) when that fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::fs::{BytesFile, ReadableFile};
use crate::index::edit::VersionEdit;
use crate::index::table::{BlockCache, ReadMode, Table, TableScan};
use crate::key::SeqNo;
use crate::value::allocator::Allocator;
use crate::value::block::PhysicalBlock;
use crate::value::edit::ValueEdit;
use crate::value::state::ValueState;
use crate::wal::LogReader;

/// Reads every record of a log file image; returns the number of records.
pub fn wal_records(data: &[u8]) -> Result<usize> {
    let file: Arc<dyn ReadableFile> = Arc::new(BytesFile::new(data.to_vec(), "fuzz.wal"));
    let mut reader = LogReader::new(file);
    let mut n = 0;
    while reader.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Decodes a write-batch payload; returns its operation count.
pub fn write_batch(data: &[u8]) -> Result<usize> {
    Ok(
        crate::batch::decode(Bytes::copy_from_slice(data), Path::new("fuzz.wal"), 0)?
            .ops
            .len(),
    )
}

/// Decodes a manifest record payload; returns the number of tables it adds.
pub fn manifest_edit(data: &[u8]) -> Result<usize> {
    Ok(VersionEdit::decode(data, Path::new("fuzz.manifest"), 0)?
        .added
        .len())
}

/// Opens a table image, verifies it, iterates it both ways, scans it forward from its start and
/// from `probe`, and looks up `probe`; returns the number of entries seen.
///
/// # Panics
/// If a forward scan does not lend exactly what the iterator returned (from its start point).
pub fn table(data: &[u8], probe: &[u8]) -> Result<u64> {
    let file: Arc<dyn ReadableFile> = Arc::new(BytesFile::new(data.to_vec(), "fuzz.sst"));
    let table = Table::open(file, 1, Arc::new(BlockCache::new(1 << 20)))?;
    let _ = table.get(probe, SeqNo::MAX, ReadMode::Blocking)?;
    let entries = table
        .iter(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .collect::<Result<Vec<_>>>()?;
    let n = entries.len() as u64;
    // The forward scans must lend what the iterator returned, from the start and from the probe.
    for from in [None, Some(probe)] {
        let mut scan = TableScan::new(Arc::clone(&table), from)?;
        let expected = entries
            .iter()
            .filter(|e| from.is_none_or(|k| &e.key.user_key[..] >= k));
        for want in expected {
            assert_eq!(
                scan.current(),
                Some(want.borrowed()),
                "table scan from {from:?}"
            );
            scan.advance()?;
        }
        assert_eq!(
            scan.current(),
            None,
            "table scan from {from:?} went past the end"
        );
    }
    for entry in table
        .iter(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .rev()
    {
        entry?;
    }
    table.verify()?;
    Ok(n)
}

/// The block size the extent replay trims value files with (the engine's default).
const REPLAY_BLOCK_BYTES: u64 = 4096;

/// Replays the value-file edits of `data` as recovery does, and checks what it built.
///
/// `data` is read as the payload of one manifest record; since a record is a sequence of
/// fields applied in order, the payloads of a whole manifest's records, concatenated, are one.
/// Its value edits (file created / removed, extent mapped / unmapped / moved, reach, dead
/// range) are applied in order to a `ValueState`; each file is trimmed to the blocks its
/// pointers reach, and the block allocator is built from the mapped runs, as
/// `ValueStore::open` does. The state must then hold DESIGN invariant 3, checked by the
/// engine's own checks (`ExtentMap::check` per file, `Allocator::check` across files: no
/// physical block mapped twice or both mapped and free, mapped + free = all blocks), and the
/// snapshot a new manifest starts with must replay to the same state. Returns the number of value files, or the error that refused the input.
///
/// # Panics
/// If a replay the engine accepted breaks invariant 3, or its snapshot does not replay to the
/// same state: both are engine bugs, which is what the fuzz target looks for.
pub fn extent_replay(data: &[u8]) -> Result<usize> {
    let path = Path::new("fuzz.manifest");
    let edit = VersionEdit::decode(data, path, 0)?;
    let state = replay_value_edits(&edit.values, path)?;
    let snapshot = VersionEdit {
        values: state.snapshot_edits(),
        ..VersionEdit::default()
    }
    .encode();
    let decoded = VersionEdit::decode(&snapshot, path, 0)
        .unwrap_or_else(|e| panic!("the snapshot of an accepted state does not decode: {e}"));
    let again = replay_value_edits(&decoded.values, path)
        .unwrap_or_else(|e| panic!("the snapshot of an accepted state does not replay: {e}"));
    assert_eq!(
        again.snapshot_edits(),
        state.snapshot_edits(),
        "the snapshot replays to another state"
    );
    Ok(state.files.len())
}

/// Applies `edits` in order, trims every file to the blocks its pointers reach and builds the
/// allocator over the mapped runs, then checks invariant 3; see [`extent_replay`].
fn replay_value_edits(edits: &[ValueEdit], path: &Path) -> Result<ValueState> {
    let mut state = ValueState::default();
    for edit in edits {
        state.apply(edit, path, 0)?;
    }
    for f in state.files.values_mut() {
        let keep = ValueState::referenced_end_block(f.end, REPLAY_BLOCK_BYTES);
        let tail = f.extents.end().since(keep).unwrap_or(0);
        f.extents.unmap(keep, tail);
    }
    let mapped: Vec<(PhysicalBlock, u64)> = state
        .files
        .values()
        .flat_map(|f| f.extents.extents().map(|e| (e.physical, e.len)))
        .collect();
    let end = mapped
        .iter()
        .map(|&(p, n)| p.add(n))
        .max()
        .unwrap_or_default();
    let allocator = Allocator::from_mapped(mapped.iter().copied(), end)?;
    for (id, f) in &state.files {
        if let Err(e) = f.extents.check() {
            panic!("value file {id}: the replayed extent map is not a function: {e}");
        }
    }
    if let Err(e) = allocator.check(&mapped) {
        panic!("the replayed block states break invariant 3: {e}");
    }
    Ok(state)
}

/// What a database holds, as an ordered map.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The most states a [`History`] follows at once. Each write with an unknown outcome doubles
/// them at most; past this many, the history has stopped telling anything apart.
const STATES_MAX: usize = 64;

/// One write, as the model applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `key` now holds `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// `key` is gone.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Every key in `[start, end)` is gone (none if `start >= end`).
    DeleteRange {
        /// First key deleted.
        start: Vec<u8>,
        /// First key kept.
        end: Vec<u8>,
    },
    /// The writes, atomically, in order.
    Batch(Vec<Write>),
}

impl Write {
    /// Applies the write to `model`.
    pub fn apply(&self, model: &mut Model) {
        match self {
            Write::Put { key, value } => {
                model.insert(key.clone(), value.clone());
            }
            Write::Delete { key } => {
                model.remove(key);
            }
            Write::DeleteRange { start, end } => {
                model.retain(|k, _| !(k >= start && k < end));
            }
            Write::Batch(writes) => writes.iter().for_each(|w| w.apply(model)),
        }
    }

    /// The same write as a write batch.
    pub fn to_batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        self.add_to(&mut batch);
        batch
    }

    fn add_to(&self, batch: &mut WriteBatch) {
        match self {
            Write::Put { key, value } => {
                batch.put(key, value);
            }
            Write::Delete { key } => {
                batch.delete(key);
            }
            Write::DeleteRange { start, end } => {
                batch.delete_range(start.as_slice()..end.as_slice());
            }
            Write::Batch(writes) => writes.iter().for_each(|w| w.add_to(batch)),
        }
    }
}

/// What a write's call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `Ok`: the write is there, and stays unless the power is lost before a sync covers it.
    Acked,
    /// `Poisoned` or `ReadOnly`: refused before anything was written, so it is never there.
    Refused,
    /// Any other error: it may or may not be there, now and after a reopen.
    Unknown,
}

impl Outcome {
    /// The outcome a write's result means.
    pub fn of(result: &Result<()>) -> Self {
        match result {
            Ok(()) => Outcome::Acked,
            Err(Error::Poisoned | Error::ReadOnly) => Outcome::Refused,
            Err(_) => Outcome::Unknown,
        }
    }
}

/// The writes made to one database, and the states it may hold: now, after a process crash,
/// and after a power loss.
///
/// - **Now**, and after a **process crash** (the handle dropped without a sync, then reopened
///   on the same file system, which keeps everything it was given): every acknowledged write
///   applied in order, each unknown one applied or not.
/// - After a **power loss**: a prefix of that history that keeps every write the last
///   successful sync covered. A sync covers every write made before it, in any log: a `Sync`
///   write syncs its log, and the engine syncs a log before it starts the next, so syncing
///   the newest log makes every earlier write durable. [`History::synced`] marks such a sync:
///   a `Sync` write of at least one operation acknowledged (a batch with none, or only
///   empty ranges deleted, returns at once and syncs nothing), `Db::sync`, `Db::flush`, `Db::compact`, and the
///   sync of the old log when a write starts a new one (a caller that cannot see those allows
///   more prefixes than the true ones, never fewer).
///
/// A history with too many unknown outcomes (over `STATES_MAX`, 64, states) allows everything
/// and says so through [`History::overflowed`].
#[derive(Debug, Clone)]
pub struct History {
    /// The states the database may hold now: distinct, at most `STATES_MAX`.
    now: Vec<Model>,
    /// The states it may hold as of the last sync.
    synced: Vec<Model>,
    /// The writes since the last sync, with their outcomes, in order.
    since_sync: Vec<(Write, Outcome)>,
    overflowed: bool,
}

impl Default for History {
    fn default() -> Self {
        Self {
            now: vec![Model::new()],
            synced: vec![Model::new()],
            since_sync: Vec::new(),
            overflowed: false,
        }
    }
}

impl History {
    /// The history of a new, empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// The states the database may hold now.
    pub fn states(&self) -> &[Model] {
        &self.now
    }

    /// True once unknown outcomes made too many states to follow: nothing is judged.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Records a write and what its call returned.
    pub fn record(&mut self, write: Write, outcome: Outcome) {
        self.now = advance(std::mem::take(&mut self.now), &write, outcome);
        if self.now.len() > STATES_MAX {
            self.overflowed = true;
            self.now.truncate(STATES_MAX);
        }
        self.since_sync.push((write, outcome));
    }

    /// Records a successful sync: every write recorded so far survives a power loss.
    pub fn synced(&mut self) {
        self.synced = self.now.clone();
        self.since_sync.clear();
    }

    /// True if some state now holds `got` at `key`.
    pub fn allows_get(&self, key: &[u8], got: Option<&[u8]>) -> bool {
        self.overflowed
            || self
                .now
                .iter()
                .any(|s| s.get(key).map(Vec::as_slice) == got)
    }

    /// True if `found` is a state the database may hold now, or after a process crash.
    pub fn allows(&self, found: &Model) -> bool {
        self.overflowed || self.now.contains(found)
    }

    /// True if `found` is a state a power loss may leave: a prefix of the history that keeps
    /// every write the last sync covered.
    pub fn allows_after_power_loss(&self, found: &Model) -> bool {
        if self.overflowed || self.synced.contains(found) {
            return true;
        }
        let mut states = self.synced.clone();
        for (write, outcome) in &self.since_sync {
            states = advance(states, write, *outcome);
            states.truncate(STATES_MAX);
            if states.contains(found) {
                return true;
            }
        }
        false
    }

    /// Records that the database was reopened after a process crash and holds `found` (one
    /// of [`History::states`]): the unknown outcomes are settled. What the last sync covered
    /// is unchanged; the writes after it are still only as durable as the engine made them.
    pub fn crashed(&mut self, found: Model) {
        if !self.overflowed {
            self.now = vec![found];
        }
    }

    /// Records that the database was reopened after a power loss and holds `found`: the new
    /// start of the history, durable as a whole (the power loss left it on the disk).
    pub fn lost_power(&mut self, found: Model) {
        *self = Self {
            now: vec![found.clone()],
            synced: vec![found],
            since_sync: Vec::new(),
            overflowed: false,
        };
    }

    /// How `found` differs from the first state the database may hold now: the first few
    /// keys that differ, for a failure message.
    pub fn describe_mismatch(&self, found: &Model) -> String {
        let mut text = format!(
            "{} keys, matching none of the {} states now possible",
            found.len(),
            self.now.len()
        );
        if let Some(state) = self.now.first() {
            let keys: std::collections::BTreeSet<&Vec<u8>> =
                found.keys().chain(state.keys()).collect();
            for k in keys
                .into_iter()
                .filter(|k| found.get(*k) != state.get(*k))
                .take(4)
            {
                text.push_str(&format!(
                    "; {:?}: found {}, expected {}",
                    String::from_utf8_lossy(k),
                    describe_value(found.get(k)),
                    describe_value(state.get(k))
                ));
            }
        }
        text
    }
}

/// The states `states` become once `write` with `outcome` is applied to each.
fn advance(states: Vec<Model>, write: &Write, outcome: Outcome) -> Vec<Model> {
    let applied = |states: Vec<Model>| {
        states.into_iter().map(|mut s| {
            write.apply(&mut s);
            s
        })
    };
    match outcome {
        Outcome::Refused => states,
        Outcome::Acked => applied(states).fold(Vec::new(), union),
        Outcome::Unknown => applied(states.clone()).fold(states, union),
    }
}

/// `states` with `s` added unless it holds it already.
fn union(mut states: Vec<Model>, s: Model) -> Vec<Model> {
    if !states.contains(&s) {
        states.push(s);
    }
    states
}

fn describe_value(value: Option<&Vec<u8>>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(v) => format!(
            "{} bytes starting {:02x?}",
            v.len(),
            v.iter().take(8).collect::<Vec<_>>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::block::{LogicalBlock, ValueFileId};

    fn payload(edits: &[ValueEdit]) -> Vec<u8> {
        VersionEdit {
            values: edits.to_vec(),
            ..VersionEdit::default()
        }
        .encode()
    }

    fn mapped(file: u64, logical: u64, physical: u64, len: u64) -> ValueEdit {
        ValueEdit::Mapped {
            file: ValueFileId(file),
            logical: LogicalBlock(logical),
            physical: PhysicalBlock(physical),
            len,
        }
    }

    #[test]
    fn extent_replay_accepts_a_consistent_history() {
        let f = ValueFileId(3);
        let data = payload(&[
            ValueEdit::FileCreated(f),
            mapped(3, 0, 10, 4),
            ValueEdit::Reaches {
                file: f,
                end: 4 * REPLAY_BLOCK_BYTES,
            },
            ValueEdit::Moved {
                file: f,
                logical: LogicalBlock(1),
                physical: PhysicalBlock(40),
                len: 2,
            },
            ValueEdit::Dead {
                file: f,
                offset: 0,
                len: 100,
            },
        ]);
        assert_eq!(extent_replay(&data).unwrap(), 1);
    }

    #[test]
    fn extent_replay_refuses_a_block_mapped_twice_within_or_across_files() {
        let within = payload(&[
            ValueEdit::FileCreated(ValueFileId(1)),
            mapped(1, 0, 10, 4),
            mapped(1, 4, 12, 2),
            ValueEdit::Reaches {
                file: ValueFileId(1),
                end: u64::MAX,
            },
        ]);
        assert!(extent_replay(&within).unwrap_err().is_corruption());
        let across = payload(&[
            ValueEdit::FileCreated(ValueFileId(1)),
            ValueEdit::FileCreated(ValueFileId(2)),
            mapped(1, 0, 10, 4),
            mapped(2, 0, 13, 1),
            ValueEdit::Reaches {
                file: ValueFileId(1),
                end: u64::MAX,
            },
            ValueEdit::Reaches {
                file: ValueFileId(2),
                end: u64::MAX,
            },
        ]);
        assert!(extent_replay(&across).unwrap_err().is_corruption());
    }

    fn put(key: &str, value: &str) -> Write {
        Write::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn model(pairs: &[(&str, &str)]) -> Model {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn history_after_power_loss_allows_the_prefixes_that_keep_every_synced_write() {
        let mut h = History::new();
        h.record(put("a", "1"), Outcome::Acked);
        h.record(put("b", "1"), Outcome::Acked);
        h.synced();
        h.record(put("a", "2"), Outcome::Acked);
        h.record(put("c", "1"), Outcome::Acked);
        assert!(h.allows(&model(&[("a", "2"), ("b", "1"), ("c", "1")])));
        assert!(!h.allows(&model(&[("a", "2"), ("b", "1")])));
        for prefix in [
            model(&[("a", "1"), ("b", "1")]),
            model(&[("a", "2"), ("b", "1")]),
            model(&[("a", "2"), ("b", "1"), ("c", "1")]),
        ] {
            assert!(h.allows_after_power_loss(&prefix), "{prefix:?}");
        }
        // A hole (the later write kept, the earlier lost) and a synced write lost.
        assert!(!h.allows_after_power_loss(&model(&[("a", "1"), ("b", "1"), ("c", "1")])));
        assert!(!h.allows_after_power_loss(&model(&[("a", "1")])));
    }

    #[test]
    fn history_lets_unknown_writes_go_either_way_and_refused_ones_never_happen() {
        let mut h = History::new();
        h.record(put("a", "1"), Outcome::Unknown);
        h.record(put("b", "1"), Outcome::Refused);
        h.record(put("c", "1"), Outcome::Acked);
        assert!(h.allows(&model(&[("a", "1"), ("c", "1")])));
        assert!(h.allows(&model(&[("c", "1")])));
        assert!(!h.allows(&model(&[("a", "1"), ("b", "1"), ("c", "1")])));
        assert!(h.allows_get(b"a", None) && h.allows_get(b"a", Some(b"1")));
        assert!(!h.allows_get(b"b", Some(b"1")));
        h.crashed(model(&[("c", "1")]));
        assert!(!h.allows_get(b"a", Some(b"1")));
        // What the crash settled is not durable: a power loss may still take it.
        assert!(h.allows_after_power_loss(&Model::new()));
        h.lost_power(model(&[("c", "1")]));
        assert!(!h.allows_after_power_loss(&Model::new()));
    }
}
