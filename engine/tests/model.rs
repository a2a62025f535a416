//! Random operation sequences give the same answers as a `BTreeMap` model.
//!
//! Each case is a sequence of up to ~200 operations (put, delete, delete_range with every kind
//! of bound, mixed batches, snapshots and reads through them, point reads, ranges read from
//! both ends, prefixes, flush, compact, drop-and-reopen) over a small key alphabet so that
//! operations collide. The database runs in a tiny configuration so that memtable rotation,
//! flushes, compactions and write stalls happen within a few operations. Every case runs twice:
//! with background flush and compaction threads, and without them. A second pair of tests uses
//! 400 keys and larger values with the smallest tables and levels allowed, so that tables split
//! and compactions reach levels 2 and 3.
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

use extentdb::{Db, Iter, Options, Snapshot, WriteBatch};
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
    Batch(Vec<BatchOp>),
    TakeSnapshot,
    /// Snapshot index (modulo the live count), key index.
    SnapshotGet(usize, usize),
    SnapshotRange(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<bool>),
    DropSnapshot(usize),
    Get(usize),
    /// Bounds, then the ends to read from (`true` = back) until both meet.
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<bool>),
    Prefix(usize, Vec<bool>),
    Flush,
    Compact,
    Reopen,
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

fn bound(wide: bool) -> impl Strategy<Value = Bound<Vec<u8>>> {
    let point = if wide {
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
    };
    prop_oneof![
        2 => point.clone().prop_map(Bound::Included),
        2 => point.prop_map(Bound::Excluded),
        1 => Just(Bound::Unbounded),
    ]
}

fn directions() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(any::<bool>(), 0..16)
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
        4 => prop::collection::vec(batch_op(wide), 1..8).prop_map(Op::Batch),
        2 => Just(Op::TakeSnapshot),
        3 => (any::<usize>(), key_index(wide)).prop_map(|(s, k)| Op::SnapshotGet(s, k)),
        2 => (any::<usize>(), bound(wide), bound(wide), directions())
            .prop_map(|(s, a, b, d)| Op::SnapshotRange(s, a, b, d)),
        1 => any::<usize>().prop_map(Op::DropSnapshot),
        6 => key_index(wide).prop_map(Op::Get),
        3 => (bound(wide), bound(wide), directions()).prop_map(|(a, b, d)| Op::Range(a, b, d)),
        1 => (0..PREFIXES.len(), directions()).prop_map(|(p, d)| Op::Prefix(p, d)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
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

fn check_everything(db: &Db, model: &Model, wide: bool, when: &str) -> Result<(), TestCaseError> {
    let all = model_range(model, &Bound::Unbounded, &Bound::Unbounded);
    check_iter(
        db.range::<&[u8], _>(..),
        all.clone(),
        &[],
        &format!("full scan {when}"),
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

fn apply_batch_op(
    model: &mut Model,
    batch: &mut WriteBatch,
    op: &BatchOp,
    counter: &mut u64,
    wide: bool,
) {
    match op {
        BatchOp::Put(k, len) => {
            let v = make_value(counter, *len);
            batch.put(key_of(*k, wide), &v);
            model.insert(key_of(*k, wide), v);
        }
        BatchOp::Delete(k) => {
            batch.delete(key_of(*k, wide));
            model.remove(&key_of(*k, wide));
        }
        BatchOp::DeleteRange(lo, hi) => {
            batch.delete_range((lo.clone(), hi.clone()));
            model.retain(|k, _| !in_range(lo, hi, k));
        }
    }
}

fn run(ops: &[Op], background: bool, wide: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(fail)?;
    let open = || {
        options(background, wide)
            .open(dir.path())
            .map_err(|e| fail(format!("open: {e}")))
    };
    let mut db = Some(open()?);
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    let mut counter = 0u64;
    for (i, op) in ops.iter().enumerate() {
        let Some(d) = db.as_ref() else {
            return Err(fail("database closed"));
        };
        let at = |what: &str| format!("op {i} {op:?}: {what}");
        let r = |e: extentdb::Error| fail(at(&e.to_string()));
        match op {
            Op::Put(k, len) => {
                let v = make_value(&mut counter, *len);
                d.put(key_of(*k, wide), &v).map_err(r)?;
                model.insert(key_of(*k, wide), v);
            }
            Op::Delete(k) => {
                d.delete(key_of(*k, wide)).map_err(r)?;
                model.remove(&key_of(*k, wide));
            }
            Op::DeleteRange(lo, hi) => {
                d.delete_range((lo.clone(), hi.clone())).map_err(r)?;
                model.retain(|k, _| !in_range(lo, hi, k));
            }
            Op::Batch(bops) => {
                let mut batch = WriteBatch::new();
                let mut next = model.clone();
                for bop in bops {
                    apply_batch_op(&mut next, &mut batch, bop, &mut counter, wide);
                }
                d.write(batch).map_err(r)?;
                model = next;
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
                check_iter(it, model_range(&model, lo, hi), dirs, &at("range"))?;
            }
            Op::Prefix(p, dirs) => {
                let it = d.prefix(PREFIXES[*p]);
                check_iter(it, model_prefix(&model, PREFIXES[*p]), dirs, &at("prefix"))?;
            }
            Op::Flush => d.flush().map_err(r)?,
            Op::Compact => d.compact().map_err(r)?,
            Op::Reopen => {
                // Snapshots hold the database open: they must go first.
                snapshots.clear();
                drop(db.take());
                let reopened = open()?;
                check_everything(&reopened, &model, wide, &at("after reopen"))?;
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
            // No crash happens here, so every byte of every value file is live or dead.
            prop_assert!(
                report.value_unaccounted_bytes.is_none_or(|b| b == 0),
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
        check_iter(it, all, &[], &format!("snapshot {n} at the end"))?;
    }
    check_everything(d, &model, wide, "at the end")?;
    snapshots.clear();
    drop(db);
    let reopened = open()?;
    check_everything(&reopened, &model, wide, "after the final reopen")
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
