//! Sequences of operations against a `BTreeMap` model: the database must hold exactly what the
//! model holds, through flushes, compactions, reopening and snapshots.
//!
//! The database runs on a temporary directory with tiny options (4 KiB memtable, 256-byte
//! blocks, compaction after 2 level-0 tables; values of 64 bytes and more in value files of
//! 4 KiB over 64 KiB segments) so that few operations reach flushes, multi-block tables,
//! compactions, several levels, and value files that seal, die, are evacuated and reclaimed. Keys come from a small space (so operations collide)
//! plus the empty key and `0xff` keys at the edges; values are up to 1 KiB and start with a
//! write counter, so every write is distinct. Every get is compared with the model, and after
//! every `CHECK_EVERY` operations (and at the end) a full scan, forward and backward.
//!
//! A failed comparison panics with the operation index: that input is a reproducer of an
//! engine bug. With `background` set, flushes and compactions also run on background threads,
//! so a failure may need a few runs to reproduce.
#![no_main]

use std::collections::BTreeMap;
use std::ops::Bound;

use arbitrary::Arbitrary;
use extentdb::{Db, Options, Snapshot, WriteBatch};
use libfuzzer_sys::fuzz_target;

const MAX_OPS: usize = 200;
const MAX_BATCH_OPS: usize = 8;
const MAX_SNAPSHOTS: usize = 3;
const CHECK_EVERY: usize = 8;
const KEY_SPACE: u16 = 200;
const MAX_VALUE_BYTES: u16 = 1024;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct KeyChoice {
    kind: u8,
    id: u16,
}

impl KeyChoice {
    fn bytes(self) -> Vec<u8> {
        match self.kind % 16 {
            0 => Vec::new(),
            1 => vec![0xff; 1 + usize::from(self.id % 3)],
            2 => vec![0x00; 1 + usize::from(self.id % 3)],
            _ => format!("k{:03}", self.id % KEY_SPACE).into_bytes(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct ValueChoice {
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum BatchOp {
    Put(KeyChoice, ValueChoice),
    Delete(KeyChoice),
    DeleteRange(KeyChoice, KeyChoice),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Put(KeyChoice, ValueChoice),
    Delete(KeyChoice),
    DeleteRange(KeyChoice, KeyChoice),
    Batch(Vec<BatchOp>),
    Get(KeyChoice),
    Scan {
        from: Option<KeyChoice>,
        to: Option<KeyChoice>,
        reverse: bool,
    },
    TakeSnapshot,
    SnapshotGet(u8, KeyChoice),
    SnapshotScan(u8),
    DropSnapshot(u8),
    Flush,
    Compact,
    Reopen,
}

#[derive(Arbitrary, Debug)]
struct Input {
    background: bool,
    ops: Vec<Op>,
}

/// Fields drop in order: snapshots and the database before their directory.
struct Harness {
    /// Held snapshots and the model as each saw it.
    snapshots: Vec<(Snapshot, Model)>,
    db: Option<Db>,
    model: Model,
    writes: u32,
    background: bool,
    dir: tempfile::TempDir,
}

fn options(background: bool) -> Options {
    Options::new()
        .memtable_bytes(4096)
        .block_size_bytes(256)
        .table_target_bytes(8 << 10)
        .level_base_bytes(16 << 10)
        .l0_compaction_trigger(2)
        .l0_stop_writes(8)
        .cache_bytes(64 << 10)
        .value_threshold_bytes(64)
        .value_file_bytes(4 << 10)
        .value_segment_bytes(64 << 10)
        .background_compaction(background)
}

impl Harness {
    fn new(background: bool) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = options(background).open(dir.path()).expect("open");
        Self {
            dir,
            background,
            db: Some(db),
            model: Model::new(),
            snapshots: Vec::new(),
            writes: 0,
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("the database is open")
    }

    fn value(&mut self, v: ValueChoice) -> Vec<u8> {
        self.writes += 1;
        let mut value = self.writes.to_le_bytes().to_vec();
        value.resize(4 + usize::from(v.len % MAX_VALUE_BYTES), v.fill);
        value
    }

    fn apply(&mut self, i: usize, op: Op) {
        match op {
            Op::Put(k, v) => {
                let value = self.value(v);
                self.db().put(k.bytes(), &value).expect("put");
                self.model.insert(k.bytes(), value);
            }
            Op::Delete(k) => {
                self.db().delete(k.bytes()).expect("delete");
                self.model.remove(&k.bytes());
            }
            Op::DeleteRange(from, to) => {
                let (from, to) = (from.bytes(), to.bytes());
                self.db()
                    .delete_range(from.clone()..to.clone())
                    .expect("delete_range");
                model_delete_range(&mut self.model, &from, &to);
            }
            Op::Batch(ops) => self.batch(&ops),
            Op::Get(k) => {
                let got = self.db().get(k.bytes()).expect("get");
                assert_eq!(
                    got.as_deref(),
                    self.model.get(&k.bytes()).map(Vec::as_slice),
                    "op {i}: get {:?}",
                    k.bytes()
                );
            }
            Op::Scan { from, to, reverse } => {
                let lower = from.map_or(Bound::Unbounded, |k| Bound::Included(k.bytes()));
                let upper = to.map_or(Bound::Unbounded, |k| Bound::Excluded(k.bytes()));
                if bounds_are_empty(&lower, &upper) {
                    return;
                }
                let want: Vec<_> = self
                    .model
                    .range((lower.clone(), upper.clone()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let iter = self.db().range((lower, upper));
                check_scan(i, "scan", iter, want, reverse);
            }
            Op::TakeSnapshot => {
                if self.snapshots.len() < MAX_SNAPSHOTS {
                    let snapshot = self.db().snapshot();
                    self.snapshots.push((snapshot, self.model.clone()));
                }
            }
            Op::SnapshotGet(which, k) => {
                if let Some((snapshot, model)) = pick(&self.snapshots, which) {
                    let got = snapshot.get(k.bytes()).expect("snapshot get");
                    assert_eq!(
                        got.as_deref(),
                        model.get(&k.bytes()).map(Vec::as_slice),
                        "op {i}: snapshot get {:?}",
                        k.bytes()
                    );
                }
            }
            Op::SnapshotScan(which) => {
                if let Some((snapshot, model)) = pick(&self.snapshots, which) {
                    let want = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    check_scan(
                        i,
                        "snapshot scan",
                        snapshot.range::<&[u8], _>(..),
                        want,
                        false,
                    );
                }
            }
            Op::DropSnapshot(which) => {
                if !self.snapshots.is_empty() {
                    self.snapshots
                        .remove(usize::from(which) % self.snapshots.len());
                }
            }
            Op::Flush => self.db().flush().expect("flush"),
            Op::Compact => self.db().compact().expect("compact"),
            Op::Reopen => {
                // Snapshots keep the database's files (and lock) alive: release them first.
                self.snapshots.clear();
                drop(self.db.take());
                let db = options(self.background)
                    .open(self.dir.path())
                    .expect("reopen");
                db.verify().expect("verify after reopen");
                self.db = Some(db);
            }
        }
    }

    fn batch(&mut self, ops: &[BatchOp]) {
        let mut batch = WriteBatch::new();
        for op in ops.iter().take(MAX_BATCH_OPS) {
            match *op {
                BatchOp::Put(k, v) => {
                    let value = self.value(v);
                    batch.put(k.bytes(), &value);
                    self.model.insert(k.bytes(), value);
                }
                BatchOp::Delete(k) => {
                    batch.delete(k.bytes());
                    self.model.remove(&k.bytes());
                }
                BatchOp::DeleteRange(from, to) => {
                    let (from, to) = (from.bytes(), to.bytes());
                    batch.delete_range(from.clone()..to.clone());
                    model_delete_range(&mut self.model, &from, &to);
                }
            }
        }
        self.db().write(batch).expect("write batch");
    }

    fn check_all(&self, i: usize) {
        let want: Vec<_> = self
            .model
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check_scan(
            i,
            "full scan",
            self.db().range::<&[u8], _>(..),
            want.clone(),
            false,
        );
        check_scan(
            i,
            "full reverse scan",
            self.db().range::<&[u8], _>(..),
            want,
            true,
        );
    }
}

fn pick(snapshots: &[(Snapshot, Model)], which: u8) -> Option<&(Snapshot, Model)> {
    if snapshots.is_empty() {
        None
    } else {
        snapshots.get(usize::from(which) % snapshots.len())
    }
}

fn model_delete_range(model: &mut Model, from: &[u8], to: &[u8]) {
    if from < to {
        let doomed: Vec<Vec<u8>> = model
            .range(from.to_vec()..to.to_vec())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            model.remove(&k);
        }
    }
}

/// True when `lower..upper` holds no key (`BTreeMap::range` panics on such bounds).
fn bounds_are_empty(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Excluded(u)) => l >= u,
        _ => false,
    }
}

fn check_scan(
    i: usize,
    what: &str,
    iter: extentdb::Iter,
    mut want: Vec<(Vec<u8>, Vec<u8>)>,
    reverse: bool,
) {
    let got: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
        want.reverse();
        iter.rev()
            .map(|p| p.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<extentdb::Result<_>>()
            .expect("scan")
    } else {
        iter.map(|p| p.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<extentdb::Result<_>>()
            .expect("scan")
    };
    let keys = |pairs: &[(Vec<u8>, Vec<u8>)]| -> Vec<Vec<u8>> {
        pairs.iter().map(|(k, _)| k.clone()).collect()
    };
    assert_eq!(
        keys(&got),
        keys(&want),
        "op {i}: {what} keys (reverse: {reverse})"
    );
    assert!(
        got == want,
        "op {i}: {what} values differ (reverse: {reverse})"
    );
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(input.background);
    for (i, op) in input.ops.into_iter().take(MAX_OPS).enumerate() {
        harness.apply(i, op);
        if i % CHECK_EVERY == CHECK_EVERY - 1 {
            harness.check_all(i);
        }
    }
    harness.check_all(usize::MAX);
});
