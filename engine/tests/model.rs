//! Random operation sequences give the same answers as a `BTreeMap` model.
//!
//! Each case is a sequence of up to ~200 operations (put, delete, delete_range with every kind
//! of bound, mixed batches written `Buffered` or `Sync`, snapshots and reads through them,
//! point reads, ranges read from both ends, prefixes, cursors that seek, flush, compact, sync, a process crash, a
//! power cut) over a small key alphabet so that operations collide. The database runs on an
//! in-memory file system ([`MemFs`]) in a tiny configuration so that memtable rotation,
//! flushes, compactions and write stalls happen within a few operations. Every case runs twice:
//! with background flush and compaction threads, and without them. A second pair of tests uses
//! 400 keys and larger values with the smallest tables and levels allowed, so that tables split
//! and compactions reach levels 2 and 3.
//!
//! A crash drops the handle without a sync and reopens on the same file system, which keeps
//! everything it was given: the database must hold exactly the model. A power cut reopens on
//! what a power loss leaves ([`MemFs::after_power_loss`]: the synced state only, or seeded
//! parts of the rest): the database must hold the model as of some prefix of the writes that
//! keeps every write the last sync covered (a `Sync` batch, `Db::sync`, `Db::flush`,
//! `Db::compact`: each makes every earlier write durable, since the engine syncs each log
//! before it starts the next), and that becomes the model.
//!
//! After every reopen and at the end, a full scan must equal the model and `verify()` must
//! pass. `PROPTEST_CASES` raises the number of cases (default 64).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use extentdb::fs::{MemFs, Unsynced};
use extentdb::{Cursor, Db, Durability, Iter, Options, Snapshot, WriteBatch};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys written and read. Chosen so that prefixes, the empty key, `\0` successors and `\xff`
/// bytes all occur.
const KEYS: &[&[u8]] = &[
    b"",
    b"a",
    b"a\x00",
    b"aa",
    b"ab",
    b"b",
    b"ba",
    b"bb",
    b"c",
    b"c\xff",
    b"\xff",
    b"\xff\xff",
];

/// Range bounds: every key plus points between keys.
const BOUND_POINTS: &[&[u8]] = &[
    b"",
    b"a",
    b"a\x00",
    b"a0",
    b"aa",
    b"ab",
    b"ab\x00",
    b"b",
    b"ba",
    b"bb",
    b"bz",
    b"c",
    b"c\xff",
    b"d",
    b"\xff",
    b"\xff\xff",
    b"\xff\xff\xff",
];

const PREFIXES: &[&[u8]] = &[b"", b"a", b"ab", b"b", b"c", b"\xff", b"\xff\xff"];

#[derive(Debug, Clone)]
enum BatchOp {
    Put(usize, usize),
    Delete(usize),
    DeleteRange(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

#[derive(Debug, Clone)]
enum Op {
    /// Key index, value length.
    Put(usize, usize),
    Delete(usize),
    DeleteRange(Bound<Vec<u8>>, Bound<Vec<u8>>),
    /// The operations, and whether the batch is written with `Durability::Sync`.
    Batch(Vec<BatchOp>, bool),
    TakeSnapshot,
    /// Snapshot index (modulo the live count), key index.
    SnapshotGet(usize, usize),
    SnapshotRange(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<bool>),
    DropSnapshot(usize),
    Get(usize),
    /// Bounds, then the ends to read from (`true` = back) until both meet.
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<bool>),
    Prefix(usize, Vec<bool>),
    /// Bounds, then the cursor's steps (`cursor_steps`), then the rest of the range.
    Cursor(Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<Option<Vec<u8>>>),
    /// The same through a snapshot (index modulo the live count).
    SnapshotCursor(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<Option<Vec<u8>>>),
    Flush,
    Compact,
    Sync,
    /// Drop the handle without a sync and reopen: what a process crash leaves.
    Crash,
    /// Cut the power and reopen on what survives: with the unsynced writes torn (seeded by the
    /// number) or all lost.
    PowerCut(Option<u64>),
}

fn options(background: bool, wide: bool) -> Options {
    let o = Options::new()
        .memtable_bytes(4096)
        .block_size_bytes(256)
        .table_target_bytes(8192)
        .level_base_bytes(16384)
        .l0_compaction_trigger(2)
        .l0_stop_writes(6)
        // Values of 128 bytes and more go to value files, read through an 8-block pool over
        // 64 KiB segments: separation, fills, evictions and segment boundaries run constantly.
        .value_threshold_bytes(128)
        .cache_bytes(8 * 256)
        .value_segment_bytes(64 << 10)
        // Value files of 4 KiB: files seal, die, get evacuated and deleted all the time.
        .value_file_bytes(4096)
        // Write-back starts every 2 KiB written to a segment.
        .writeback_bytes(2048)
        .background_compaction(background);
    if wide {
        // The smallest tables and levels allowed, so that a few hundred writes reach level 3.
        o.table_target_bytes(4096)
            .level_base_bytes(4096)
            .level_multiplier(2)
    } else {
        o
    }
}

/// Keys of the wide key space, where tables split and deeper levels compact.
const WIDE_KEYS: usize = 400;

fn key_count(wide: bool) -> usize {
    if wide { WIDE_KEYS } else { KEYS.len() }
}

fn key_of(i: usize, wide: bool) -> Vec<u8> {
    if wide {
        format!("key{i:03}").into_bytes()
    } else {
        KEYS[i % KEYS.len()].to_vec()
    }
}

fn key_index(wide: bool) -> impl Strategy<Value = usize> {
    0..key_count(wide)
}

fn value_len(wide: bool) -> impl Strategy<Value = usize> {
    if wide {
        prop_oneof![1 => 0..8usize, 4 => 300..1200usize].boxed()
    } else {
        prop_oneof![3 => 0..8usize, 2 => 8..64usize, 1 => 200..900usize].boxed()
    }
}

/// A key that may or may not be written: a range bound or a seek target.
fn point(wide: bool) -> BoxedStrategy<Vec<u8>> {
    if wide {
        (0..WIDE_KEYS + 1, any::<bool>())
            .prop_map(|(i, after)| {
                let mut k = format!("key{i:03}").into_bytes();
                if after {
                    k.push(b'!');
                }
                k
            })
            .boxed()
    } else {
        (0..BOUND_POINTS.len())
            .prop_map(|i| BOUND_POINTS[i].to_vec())
            .boxed()
    }
}

fn bound(wide: bool) -> impl Strategy<Value = Bound<Vec<u8>>> {
    let point = point(wide);
    prop_oneof![
        2 => point.clone().prop_map(Bound::Included),
        2 => point.prop_map(Bound::Excluded),
        1 => Just(Bound::Unbounded),
    ]
}

fn directions() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(any::<bool>(), 0..16)
}

/// What to do with a cursor, step by step: `None` reads the next pair, `Some(k)` seeks to `k`.
fn cursor_steps(wide: bool) -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
    prop::collection::vec(proptest::option::weighted(0.25, point(wide)), 0..24)
}

fn batch_op(wide: bool) -> impl Strategy<Value = BatchOp> {
    prop_oneof![
        4 => (key_index(wide), value_len(wide)).prop_map(|(k, v)| BatchOp::Put(k, v)),
        2 => key_index(wide).prop_map(BatchOp::Delete),
        1 => (bound(wide), bound(wide)).prop_map(|(a, b)| BatchOp::DeleteRange(a, b)),
    ]
}

fn op(wide: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (key_index(wide), value_len(wide)).prop_map(|(k, v)| Op::Put(k, v)),
        6 => key_index(wide).prop_map(Op::Delete),
        3 => (bound(wide), bound(wide)).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        4 => (prop::collection::vec(batch_op(wide), 1..8), prop::bool::weighted(0.25))
            .prop_map(|(ops, sync)| Op::Batch(ops, sync)),
        2 => Just(Op::TakeSnapshot),
        3 => (any::<usize>(), key_index(wide)).prop_map(|(s, k)| Op::SnapshotGet(s, k)),
        2 => (any::<usize>(), bound(wide), bound(wide), directions())
            .prop_map(|(s, a, b, d)| Op::SnapshotRange(s, a, b, d)),
        1 => any::<usize>().prop_map(Op::DropSnapshot),
        6 => key_index(wide).prop_map(Op::Get),
        3 => (bound(wide), bound(wide), directions()).prop_map(|(a, b, d)| Op::Range(a, b, d)),
        1 => (0..PREFIXES.len(), directions()).prop_map(|(p, d)| Op::Prefix(p, d)),
        3 => (bound(wide), bound(wide), cursor_steps(wide))
            .prop_map(|(a, b, steps)| Op::Cursor(a, b, steps)),
        2 => (any::<usize>(), bound(wide), bound(wide), cursor_steps(wide))
            .prop_map(|(s, a, b, steps)| Op::SnapshotCursor(s, a, b, steps)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Sync),
        1 => Just(Op::Crash),
        1 => proptest::option::of(any::<u64>()).prop_map(Op::PowerCut),
    ]
}

/// A value that names the write that made it, so a stale version can never pass for the
/// current one.
fn make_value(counter: &mut u64, len: usize) -> Vec<u8> {
    *counter += 1;
    let mut v = format!("v{counter}.").into_bytes();
    v.resize(len.max(v.len()), b'x');
    v
}

fn in_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>, key: &Vec<u8>) -> bool {
    (lo.clone(), hi.clone()).contains(key)
}

fn model_range(model: &Model, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Pairs {
    model
        .iter()
        .filter(|(k, _)| in_range(lo, hi, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn model_prefix(model: &Model, prefix: &[u8]) -> Pairs {
    model
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Reads `it` from the ends named by `dirs` (then forward) and compares with `expected`.
fn check_iter(
    mut it: Iter,
    expected: Pairs,
    dirs: &[bool],
    what: &str,
) -> Result<(), TestCaseError> {
    let mut want: VecDeque<_> = expected.into();
    let mut step = 0;
    loop {
        let back = dirs.get(step).copied().unwrap_or(false);
        step += 1;
        let (got, expected) = if back {
            (it.next_back(), want.pop_back())
        } else {
            (it.next(), want.pop_front())
        };
        let got = got
            .transpose()
            .map_err(|e| fail(format!("{what}: step {step}: {e}")))?
            .map(|(k, v)| (k.to_vec(), v.to_vec()));
        prop_assert_eq!(&got, &expected, "{}: step {} (back = {})", what, step, back);
        if expected.is_none() {
            break;
        }
    }
    prop_assert!(
        it.next().is_none(),
        "{}: iterator resumed after its end",
        what
    );
    prop_assert!(
        it.next_back().is_none(),
        "{}: iterator resumed after its end",
        what
    );
    Ok(())
}

/// Takes `steps` with `cursor` (a seek puts the model's position at the first pair at or after
/// its key), then reads to the end, comparing every pair with `expected`.
fn check_cursor(
    mut cursor: Cursor,
    expected: &Pairs,
    steps: &[Option<Vec<u8>>],
    what: &str,
) -> Result<(), TestCaseError> {
    let mut pos = 0;
    let reads = steps
        .iter()
        .map(Some)
        .chain(std::iter::repeat_n(None, expected.len() + 2));
    for (step, seek) in reads.enumerate() {
        if let Some(Some(key)) = seek {
            cursor.seek(key);
            pos = expected.partition_point(|(k, _)| k < key);
            continue;
        }
        let got = cursor
            .next()
            .map_err(|e| fail(format!("{what}: step {step}: {e}")))?
            .map(|(k, v)| (k.to_vec(), v.to_vec()));
        let want = expected.get(pos).cloned();
        prop_assert_eq!(&got, &want, "{}: step {}", what, step);
        pos += usize::from(want.is_some());
    }
    Ok(())
}

fn check_everything(db: &Db, model: &Model, wide: bool, when: &str) -> Result<(), TestCaseError> {
    let all = model_range(model, &Bound::Unbounded, &Bound::Unbounded);
    check_iter(
        db.range::<&[u8], _>(..),
        all.clone(),
        &[],
        &format!("full scan {when}"),
    )?;
    check_cursor(
        db.cursor::<&[u8], _>(..),
        &all,
        &[],
        &format!("full cursor scan {when}"),
    )?;
    let mut reversed = all;
    reversed.reverse();
    let back: Pairs = db
        .range::<&[u8], _>(..)
        .rev()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<extentdb::Result<_>>()
        .map_err(|e| fail(format!("reverse scan {when}: {e}")))?;
    prop_assert_eq!(back, reversed, "reverse scan {}", when);
    for i in 0..key_count(wide) {
        let key = key_of(i, wide);
        let got = db
            .get(&key)
            .map_err(|e| fail(format!("get {key:?} {when}: {e}")))?
            .map(|v| v.to_vec());
        prop_assert_eq!(got, model.get(&key).cloned(), "get {:?} {}", key, when);
    }
    db.verify()
        .map_err(|e| fail(format!("verify {when}: {e}")))?;
    Ok(())
}

/// One change a write made, with the value it wrote: what replaying the write does to a model.
#[derive(Debug, Clone)]
enum Change {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

impl Change {
    fn apply(&self, model: &mut Model) {
        match self {
            Change::Put(k, v) => {
                model.insert(k.clone(), v.clone());
            }
            Change::Delete(k) => {
                model.remove(k);
            }
            Change::DeleteRange(lo, hi) => model.retain(|k, _| !in_range(lo, hi, k)),
        }
    }
}

fn batch_change(op: &BatchOp, counter: &mut u64, wide: bool) -> Change {
    match op {
        BatchOp::Put(k, len) => Change::Put(key_of(*k, wide), make_value(counter, *len)),
        BatchOp::Delete(k) => Change::Delete(key_of(*k, wide)),
        BatchOp::DeleteRange(lo, hi) => Change::DeleteRange(lo.clone(), hi.clone()),
    }
}

/// The model, and what a power loss may leave of it: the model as of the last sync, and the
/// writes acknowledged since, each as the changes it made.
#[derive(Debug, Default)]
struct History {
    now: Model,
    synced: Model,
    since_sync: Vec<Vec<Change>>,
}

impl History {
    /// Records an acknowledged write.
    fn record(&mut self, changes: Vec<Change>) {
        changes.iter().for_each(|c| c.apply(&mut self.now));
        self.since_sync.push(changes);
    }

    /// Records a successful sync: every write so far survives a power loss.
    fn synced(&mut self) {
        self.synced = self.now.clone();
        self.since_sync.clear();
    }

    /// The number of writes since the last sync after which the model is `found`, if any.
    fn prefix_leaving(&self, found: &Model) -> Option<usize> {
        let mut state = self.synced.clone();
        if &state == found {
            return Some(0);
        }
        for (n, changes) in self.since_sync.iter().enumerate() {
            changes.iter().for_each(|c| c.apply(&mut state));
            if &state == found {
                return Some(n + 1);
            }
        }
        None
    }

    /// Starts again from `found`, which a power loss left on the disk.
    fn restart(&mut self, found: Model) {
        self.synced = found.clone();
        self.now = found;
        self.since_sync.clear();
    }
}

fn open(fs: &MemFs, background: bool, wide: bool) -> Result<Db, TestCaseError> {
    options(background, wide)
        .file_system(Arc::new(fs.clone()))
        .open("/db")
        .map_err(|e| fail(format!("open: {e}")))
}

fn run(ops: &[Op], background: bool, wide: bool) -> Result<(), TestCaseError> {
    let mut fs = MemFs::new();
    let mut db = Some(open(&fs, background, wide)?);
    let mut history = History::default();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    let mut counter = 0u64;
    // A power cut may leave value bytes no pointer names; until then there are none.
    let mut power_cut = false;
    for (i, op) in ops.iter().enumerate() {
        let Some(d) = db.as_ref() else {
            return Err(fail("database closed"));
        };
        let at = |what: &str| format!("op {i} {op:?}: {what}");
        let r = |e: extentdb::Error| fail(at(&e.to_string()));
        let model = &history.now;
        match op {
            Op::Put(k, len) => {
                let v = make_value(&mut counter, *len);
                d.put(key_of(*k, wide), &v).map_err(r)?;
                history.record(vec![Change::Put(key_of(*k, wide), v)]);
            }
            Op::Delete(k) => {
                d.delete(key_of(*k, wide)).map_err(r)?;
                history.record(vec![Change::Delete(key_of(*k, wide))]);
            }
            Op::DeleteRange(lo, hi) => {
                d.delete_range((lo.clone(), hi.clone())).map_err(r)?;
                history.record(vec![Change::DeleteRange(lo.clone(), hi.clone())]);
            }
            Op::Batch(bops, sync) => {
                let changes: Vec<Change> = bops
                    .iter()
                    .map(|bop| batch_change(bop, &mut counter, wide))
                    .collect();
                let mut batch = WriteBatch::new();
                for change in &changes {
                    match change {
                        Change::Put(k, v) => batch.put(k, v),
                        Change::Delete(k) => batch.delete(k),
                        Change::DeleteRange(lo, hi) => batch.delete_range((lo.clone(), hi.clone())),
                    };
                }
                let durability = if *sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                // A batch of empty ranges only is empty: it returns at once and syncs nothing.
                let writes_nothing = batch.is_empty();
                d.write_with(batch, durability).map_err(r)?;
                history.record(changes);
                if *sync && !writes_nothing {
                    history.synced();
                }
            }
            Op::TakeSnapshot => snapshots.push((d.snapshot(), model.clone())),
            Op::SnapshotGet(s, k) => {
                if let Some((snap, m)) = snapshots.get(s % snapshots.len().max(1)) {
                    let got = snap.get(key_of(*k, wide)).map_err(r)?.map(|v| v.to_vec());
                    prop_assert_eq!(
                        got,
                        m.get(&key_of(*k, wide)).cloned(),
                        "{}",
                        at("snapshot get")
                    );
                }
            }
            Op::SnapshotRange(s, lo, hi, dirs) => {
                if let Some((snap, m)) = snapshots.get(s % snapshots.len().max(1)) {
                    let it = snap.range((lo.clone(), hi.clone()));
                    check_iter(it, model_range(m, lo, hi), dirs, &at("snapshot range"))?;
                }
            }
            Op::DropSnapshot(s) => {
                if !snapshots.is_empty() {
                    let n = snapshots.len();
                    snapshots.remove(s % n);
                }
            }
            Op::Get(k) => {
                let got = d.get(key_of(*k, wide)).map_err(r)?.map(|v| v.to_vec());
                prop_assert_eq!(got, model.get(&key_of(*k, wide)).cloned(), "{}", at("get"));
            }
            Op::Range(lo, hi, dirs) => {
                let it = d.range((lo.clone(), hi.clone()));
                check_iter(it, model_range(model, lo, hi), dirs, &at("range"))?;
            }
            Op::Prefix(p, dirs) => {
                let it = d.prefix(PREFIXES[*p]);
                check_iter(it, model_prefix(model, PREFIXES[*p]), dirs, &at("prefix"))?;
            }
            Op::Cursor(lo, hi, steps) => {
                let cursor = d.cursor((lo.clone(), hi.clone()));
                check_cursor(cursor, &model_range(model, lo, hi), steps, &at("cursor"))?;
            }
            Op::SnapshotCursor(s, lo, hi, steps) => {
                if let Some((snap, m)) = snapshots.get(s % snapshots.len().max(1)) {
                    let cursor = snap.cursor((lo.clone(), hi.clone()));
                    let expected = model_range(m, lo, hi);
                    check_cursor(cursor, &expected, steps, &at("snapshot cursor"))?;
                }
            }
            Op::Flush => {
                d.flush().map_err(r)?;
                history.synced();
            }
            Op::Compact => {
                d.compact().map_err(r)?;
                history.synced();
            }
            Op::Sync => {
                d.sync().map_err(r)?;
                history.synced();
            }
            Op::Crash => {
                // Snapshots hold the database open: they must go first.
                snapshots.clear();
                drop(db.take());
                let reopened = open(&fs, background, wide)?;
                check_everything(&reopened, &history.now, wide, &at("after a crash"))?;
                db = Some(reopened);
            }
            Op::PowerCut(seed) => {
                snapshots.clear();
                fs.cut_power();
                drop(db.take());
                let unsynced = seed.map_or(Unsynced::Lost, |seed| Unsynced::Torn { seed });
                fs = fs
                    .after_power_loss(unsynced)
                    .map_err(|e| fail(at(&format!("power loss: {e}"))))?;
                power_cut = true;
                let reopened = open(&fs, background, wide)?;
                let found = scan_all(&reopened).map_err(r)?;
                prop_assert!(
                    history.prefix_leaving(&found).is_some(),
                    "{}: {} keys, which no prefix of the {} writes since the last sync leaves \
                     ({} keys synced, {} now)",
                    at("after a power cut"),
                    found.len(),
                    history.since_sync.len(),
                    history.synced.len(),
                    history.now.len()
                );
                history.restart(found);
                check_everything(&reopened, &history.now, wide, &at("after a power cut"))?;
                db = Some(reopened);
            }
        }
        if let Some(d) = db.as_ref() {
            prop_assert_eq!(
                d.stats().snapshots,
                snapshots.len(),
                "{}",
                at("live snapshots")
            );
            // DESIGN invariants 1-4 after every step: checksums of every table and live value,
            // extent maps a function, mapped + free = all blocks, no stale pooled block.
            let report = d.verify().map_err(|e| fail(at(&format!("verify: {e}"))))?;
            // Until the power is cut, every byte of every value file is live or dead.
            prop_assert!(
                power_cut || report.value_unaccounted_bytes.is_none_or(|b| b == 0),
                "{}: {:?} bytes neither live nor dead",
                at("accounting"),
                report.value_unaccounted_bytes
            );
        }
    }
    let Some(d) = db.as_ref() else {
        return Err(fail("database closed"));
    };
    if std::env::var_os("MODEL_STATS").is_some() {
        let stats = d.stats();
        let levels: Vec<usize> = stats.levels.iter().map(|l| l.tables).collect();
        eprintln!(
            "wide {wide}: {} ops, tables per level {levels:?}, value files {} \
             (deleted {}, evacuated values {}, reclaimed {} B, dead {} B)",
            ops.len(),
            stats.value_files,
            stats.value_files_deleted,
            stats.value_evacuations,
            stats.value_reclaimed_bytes,
            stats.value_dead_bytes,
        );
    }
    for (n, (snap, m)) in snapshots.iter().enumerate() {
        let it = snap.range::<&[u8], _>(..);
        let all = model_range(m, &Bound::Unbounded, &Bound::Unbounded);
        check_iter(it, all.clone(), &[], &format!("snapshot {n} at the end"))?;
        let cursor = snap.cursor::<&[u8], _>(..);
        check_cursor(
            cursor,
            &all,
            &[],
            &format!("snapshot {n} cursor at the end"),
        )?;
    }
    check_everything(d, &history.now, wide, "at the end")?;
    snapshots.clear();
    drop(db);
    let reopened = open(&fs, background, wide)?;
    check_everything(&reopened, &history.now, wide, "after the final reopen")
}

/// Everything in the database.
fn scan_all(db: &Db) -> extentdb::Result<Model> {
    db.range::<&[u8], _>(..)
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_operations_match_a_btreemap_with_and_without_background_compaction(
        ops in prop::collection::vec(op(false), 1..200)
    ) {
        run(&ops, false, false)?;
        run(&ops, true, false)?;
    }

    #[test]
    fn random_operations_over_many_keys_match_a_btreemap_through_deeper_levels(
        ops in prop::collection::vec(op(true), 1..200)
    ) {
        run(&ops, false, true)?;
    }

    #[test]
    fn random_operations_over_many_keys_match_a_btreemap_with_background_compaction(
        ops in prop::collection::vec(op(true), 1..200)
    ) {
        run(&ops, true, true)?;
    }
}
