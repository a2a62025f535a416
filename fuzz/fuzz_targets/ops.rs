//! Sequences of operations, process crashes, power cuts and I/O failures against a model of
//! the acknowledged writes: the database must only ever hold a state the model allows,
//! through flushes, compactions, snapshots and every kind of reopen.
//!
//! The database runs on an in-memory file system that knows what a power loss keeps
//! (`MemFs`), wrapped in one that fails the calls it is told to (`FaultFs`), with tiny options
//! (4 KiB memtable, 256-byte blocks, compaction after 2 level-0 tables; values of 64 bytes and
//! more in value files of 4 KiB over 64 KiB segments) so that few operations reach flushes,
//! multi-block tables, compactions, several levels, and value files that seal, die, are
//! evacuated and reclaimed. Keys come from a small space (so operations collide), short or
//! padded to 300 bytes (so that a dozen writes fill a memtable and start a new log), plus the
//! empty key and `0xff` keys at the edges; values are up to 1 KiB and start with a write counter, so
//! every write is distinct. Writes are `Buffered` (single puts, deletes and range deletes) or,
//! as batches, either durability.
//!
//! The model is `extentdb::fuzzing::History`: the states the database may hold now (every
//! acknowledged write applied in order; a write whose call failed with an I/O error applied or
//! not; a refused one never), and the states a power loss may leave (every prefix of that
//! history that keeps the writes the last sync covered). A sync covers every write before it:
//! a `Sync` batch of at least one operation, `Db::sync`, `Db::flush` and `Db::compact` that
//! succeed, and a write during which a new log appears in the directory (the engine syncs the
//! old log before it starts the next). Within one session the model is exact: a power loss may take the
//! writes after the last of those, a suffix, in order, and nothing else. (Recovery after a
//! crash may make the recovered writes durable without the model seeing it, so after a crash
//! it may allow more than the engine could lose; never less.) The failure operations:
//!
//! - `Crash`: the handle is dropped without a sync and the database reopened on the same file
//!   system, which keeps everything it was given: nothing acknowledged may be lost.
//! - `PowerCut`: the power goes off between two operations; the database is reopened on what
//!   survives (only the synced state, or seeded parts of the rest: torn appends, old or new
//!   pages, a prefix of each directory's changes) and must hold a state a power loss may leave.
//! - `PowerCutAtSync`: the same, at the n-th sync point from now (just before the sync takes
//!   effect, or just after without its caller learning it), so in the middle of a write, a
//!   flush, a compaction or a recovery; the operation that saw the power go errs.
//! - `FailNth`: the n-th file-system call from now fails, once or from then on. Operations may
//!   then fail (errors are fine; panics and wrong bytes are not); a `Crash` then reopens, first
//!   with the failure still armed and, if that open fails, again without.
//!
//! Every `CHECK_EVERY` operations and at the end, full scans both ways and a full cursor scan
//! must each give a state the model allows. The database is then also opened on a copy of
//! what a power loss at that moment would leave (the synced state), which must hold a state a
//! power loss may leave, while the database itself runs on.
//!
//! Every reopen must succeed (once no failure is armed), give a full scan the model allows, a
//! `get` of every key it holds that agrees with the scan, and pass `verify()`. Every read is
//! checked against the states the model allows now, and every error is a finding unless a
//! failure was injected or the power is off. A failed check panics with the operation index:
//! that input is a reproducer. With `background` set, flushes and compactions also run on
//! background threads, so a failure may need a few runs to reproduce.
#![no_main]

use std::ops::Bound;
use std::sync::Arc;

use arbitrary::Arbitrary;
use extentdb::fs::{CutAt, FaultFs, FileSystem, MemFs, Trigger, Unsynced};
use extentdb::fuzzing::{History, Model, Outcome, Write};
use extentdb::{Db, Durability, Options, Snapshot};
use libfuzzer_sys::fuzz_target;

const MAX_OPS: usize = 200;
const MAX_BATCH_OPS: usize = 8;
/// A `Fill` makes up to this many puts: enough to fill a memtable and start a new log.
const MAX_FILL: u8 = 32;
const MAX_SNAPSHOTS: usize = 3;
const CHECK_EVERY: usize = 8;
const KEY_SPACE: u16 = 200;
const MAX_VALUE_BYTES: u16 = 1024;
const LONG_KEY_BYTES: usize = 300;
/// A `PowerCutAtSync` picks one of the next this many sync points.
const MAX_SYNCS_AHEAD: u8 = 16;
/// A `FailNth` picks one of the next this many file-system calls.
const MAX_CALLS_AHEAD: u8 = 128;
const DB_DIR: &str = "/db";

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
            // Long keys fill the memtable (which holds only pointers to large values) within
            // a dozen writes, so that short inputs start new logs.
            3..=9 => {
                let mut key = format!("k{:03}", self.id % KEY_SPACE).into_bytes();
                key.resize(LONG_KEY_BYTES, b'~');
                key
            }
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
    /// `count % MAX_FILL + 1` puts, one call each, from the key `first` on.
    Fill {
        first: KeyChoice,
        count: u8,
        value: ValueChoice,
    },
    Delete(KeyChoice),
    DeleteRange(KeyChoice, KeyChoice),
    Batch {
        ops: Vec<BatchOp>,
        sync: bool,
    },
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
    Sync,
    Crash,
    PowerCut {
        torn: bool,
        seed: u64,
    },
    PowerCutAtSync {
        syncs: u8,
        after: bool,
        torn: bool,
        seed: u64,
    },
    FailNth {
        n: u8,
        sticky: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    background: bool,
    ops: Vec<Op>,
}

/// What a power loss keeps of the unsynced state.
fn unsynced(torn: bool, seed: u64) -> Unsynced {
    if torn {
        Unsynced::Torn { seed }
    } else {
        Unsynced::Lost
    }
}

/// Fields drop in order: snapshots before the database.
struct Harness {
    /// Held snapshots and the states the database could hold when each was taken.
    snapshots: Vec<(Snapshot, Vec<Model>)>,
    db: Option<Db>,
    history: History,
    mem: MemFs,
    fault: FaultFs,
    /// How many failures `fault` had injected when the database was last opened.
    injected_at_open: usize,
    /// What the power loss a `PowerCutAtSync` armed keeps, once it comes.
    armed_cut: Option<Unsynced>,
    writes: u32,
    background: bool,
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
        .writeback_bytes(2 << 10)
        .background_compaction(background)
}

impl Harness {
    fn new(background: bool) -> Self {
        let mem = MemFs::new();
        let fault = FaultFs::new(Arc::new(mem.clone()));
        let mut harness = Self {
            snapshots: Vec::new(),
            db: None,
            history: History::new(),
            mem,
            fault,
            injected_at_open: 0,
            armed_cut: None,
            writes: 0,
            background,
        };
        let db = harness.open().expect("open a new database");
        harness.db = Some(db);
        harness
    }

    fn open(&mut self) -> extentdb::Result<Db> {
        self.injected_at_open = self.fault.injected().len();
        options(self.background)
            .file_system(Arc::new(self.fault.clone()))
            .open(DB_DIR)
    }

    /// A handle on the open database (a cheap clone, so that `self` stays free).
    fn db(&self) -> Db {
        self.db.clone().expect("the database is open")
    }

    /// True if an error now is explained: a failure was injected since the database was
    /// opened, or the power is off.
    fn faulted(&self) -> bool {
        !self.mem.has_power() || self.fault.injected().len() > self.injected_at_open
    }

    /// `Some` of an `Ok` value; `None` for an error that a fault explains; panics on any other.
    fn tolerate<T>(&self, i: usize, what: &str, r: extentdb::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(_) if self.faulted() => None,
            Err(e) => panic!("op {i}: {what} failed with no fault injected: {e}"),
        }
    }

    fn value(&mut self, v: ValueChoice) -> Vec<u8> {
        self.writes += 1;
        let mut value = self.writes.to_le_bytes().to_vec();
        value.resize(4 + usize::from(v.len % MAX_VALUE_BYTES), v.fill);
        value
    }

    fn batch_write(&mut self, op: BatchOp) -> Write {
        match op {
            BatchOp::Put(k, v) => Write::Put {
                key: k.bytes(),
                value: self.value(v),
            },
            BatchOp::Delete(k) => Write::Delete { key: k.bytes() },
            BatchOp::DeleteRange(from, to) => Write::DeleteRange {
                start: from.bytes(),
                end: to.bytes(),
            },
        }
    }

    /// The number of the newest log, read from the directory (not through `fault`, so that
    /// it counts no call); `None` once the power is off.
    fn newest_log(&self) -> Option<u64> {
        let names = self.mem.list_dir(std::path::Path::new(DB_DIR)).ok()?;
        names
            .iter()
            .filter_map(|name| name.strip_suffix(".wal")?.parse().ok())
            .max()
    }

    /// Makes `write` through the API call it is most like, and records its outcome.
    ///
    /// A write that finds the memtable full starts a new log, after syncing the old one
    /// (`engine/src/write.rs`, `rotate`), before it appends itself: a new log appearing
    /// during the call is a sync of every write before it. Only writes and flushes start logs.
    fn write(&mut self, i: usize, write: Write, durability: Durability) {
        let db = self.db();
        let log_before = self.newest_log();
        let batch = write.to_batch();
        // A batch with no operation (none given, or only empty ranges deleted) returns at
        // once: there is nothing to make durable, so it syncs nothing (`Db::sync` is the call
        // that makes earlier writes durable).
        let empty = batch.is_empty();
        let result = match (&write, durability) {
            (Write::Put { key, value }, Durability::Buffered) => db.put(key, value),
            (Write::Delete { key }, Durability::Buffered) => db.delete(key),
            (Write::DeleteRange { start, end }, Durability::Buffered) => {
                db.delete_range(start.as_slice()..end.as_slice())
            }
            (Write::Batch(_), Durability::Buffered) => db.write(batch),
            (_, Durability::Sync) => db.write_with(batch, Durability::Sync),
        };
        let outcome = Outcome::of(&result);
        self.tolerate(i, "write", result);
        if log_before.is_some() && self.newest_log() > log_before {
            self.history.synced();
        }
        self.history.record(write, outcome);
        if outcome == Outcome::Acked && durability == Durability::Sync && !empty {
            self.history.synced();
        }
    }

    /// Runs a call that makes everything written so far durable when it succeeds.
    fn sync_point(&mut self, i: usize, what: &str, call: impl FnOnce(&Db) -> extentdb::Result<()>) {
        let db = self.db();
        if self.tolerate(i, what, call(&db)).is_some() {
            self.history.synced();
        }
    }

    fn apply(&mut self, i: usize, op: Op) {
        match op {
            Op::Put(k, v) => {
                let write = self.batch_write(BatchOp::Put(k, v));
                self.write(i, write, Durability::Buffered);
            }
            Op::Fill {
                first,
                count,
                value,
            } => {
                for n in 0..=u16::from(count % MAX_FILL) {
                    let key = KeyChoice {
                        id: first.id.wrapping_add(n),
                        ..first
                    };
                    let write = self.batch_write(BatchOp::Put(key, value));
                    self.write(i, write, Durability::Buffered);
                }
            }
            Op::Delete(k) => self.write(i, Write::Delete { key: k.bytes() }, Durability::Buffered),
            Op::DeleteRange(from, to) => {
                let write = self.batch_write(BatchOp::DeleteRange(from, to));
                self.write(i, write, Durability::Buffered);
            }
            Op::Batch { ops, sync } => {
                let writes = ops
                    .into_iter()
                    .take(MAX_BATCH_OPS)
                    .map(|op| self.batch_write(op))
                    .collect();
                let durability = if sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                self.write(i, Write::Batch(writes), durability);
            }
            Op::Get(k) => {
                let key = k.bytes();
                if let Some(got) = self.tolerate(i, "get", self.db().get(&key)) {
                    assert!(
                        self.history.allows_get(&key, got.as_deref()),
                        "op {i}: get {key:?} returned {:?}, which no allowed state holds",
                        got.as_deref().map(<[u8]>::len)
                    );
                }
            }
            Op::Scan { from, to, reverse } => {
                let lower = from.map_or(Bound::Unbounded, |k| Bound::Included(k.bytes()));
                let upper = to.map_or(Bound::Unbounded, |k| Bound::Excluded(k.bytes()));
                if bounds_are_empty(&lower, &upper) {
                    return;
                }
                let got = scan(self.db().range((lower.clone(), upper.clone())), reverse);
                if let Some(got) = self.tolerate(i, "scan", got) {
                    let allowed = self
                        .history
                        .states()
                        .iter()
                        .any(|s| range_of(s, &lower, &upper) == got);
                    assert!(
                        self.history.overflowed() || allowed,
                        "op {i}: scan (reverse: {reverse}) of {} keys matches no allowed state",
                        got.len()
                    );
                }
            }
            Op::TakeSnapshot => {
                if self.snapshots.len() < MAX_SNAPSHOTS {
                    let snapshot = self.db().snapshot();
                    self.snapshots
                        .push((snapshot, self.history.states().to_vec()));
                }
            }
            Op::SnapshotGet(which, k) => {
                if let Some((snapshot, states)) = pick(&self.snapshots, which) {
                    let key = k.bytes();
                    if let Some(got) = self.tolerate(i, "snapshot get", snapshot.get(&key)) {
                        assert!(
                            states
                                .iter()
                                .any(|s| s.get(&key).map(Vec::as_slice) == got.as_deref()),
                            "op {i}: snapshot get {key:?} matches no state of the snapshot"
                        );
                    }
                }
            }
            Op::SnapshotScan(which) => {
                if let Some((snapshot, states)) = pick(&self.snapshots, which) {
                    let got = scan(snapshot.range::<&[u8], _>(..), false);
                    if let Some(got) = self.tolerate(i, "snapshot scan", got) {
                        let got: Model = got.into_iter().collect();
                        assert!(
                            states.contains(&got),
                            "op {i}: snapshot scan of {} keys matches no state of the snapshot",
                            got.len()
                        );
                    }
                }
            }
            Op::DropSnapshot(which) => {
                if !self.snapshots.is_empty() {
                    self.snapshots
                        .remove(usize::from(which) % self.snapshots.len());
                }
            }
            Op::Flush => self.sync_point(i, "flush", Db::flush),
            Op::Compact => self.sync_point(i, "compact", Db::compact),
            Op::Sync => self.sync_point(i, "sync", Db::sync),
            Op::Crash => self.crash(i),
            Op::PowerCut { torn, seed } => {
                self.mem.cut_power();
                self.armed_cut = Some(unsynced(torn, seed));
            }
            Op::PowerCutAtSync {
                syncs,
                after,
                torn,
                seed,
            } => {
                let at = if after {
                    CutAt::AfterSync
                } else {
                    CutAt::BeforeSync
                };
                let n = self.mem.sync_count() + 1 + u64::from(syncs % MAX_SYNCS_AHEAD);
                self.mem.cut_power_at_sync(n, at);
                self.armed_cut = Some(unsynced(torn, seed));
            }
            Op::FailNth { n, sticky } => {
                let trigger = Trigger::nth(1 + u64::from(n % MAX_CALLS_AHEAD));
                self.fault
                    .arm(if sticky { trigger.sticky() } else { trigger });
            }
        }
    }

    /// Drops the handle without a sync and reopens on the same file system: the process
    /// crashed, the file system kept everything it was given. An armed failure stays armed
    /// for the first open; if that open fails, the next one runs without it.
    fn crash(&mut self, i: usize) {
        self.snapshots.clear();
        drop(self.db.take());
        if !self.mem.has_power() {
            return;
        }
        let mut opened = self.open();
        if opened.is_err() && self.mem.has_power() && self.faulted() {
            self.fault.disarm();
            opened = self.open();
        }
        let db = match opened {
            Ok(db) => db,
            Err(_) if !self.mem.has_power() => return,
            Err(e) => panic!("op {i}: reopen after a crash: {e}"),
        };
        self.fault.disarm();
        self.db = Some(db);
        if let Some(found) = self.check_reopened(i, "crash") {
            assert!(
                self.history.allows(&found),
                "op {i}: after a crash the database holds {}",
                self.history.describe_mismatch(&found)
            );
            self.history.crashed(found);
        }
    }

    /// Reopens on what a power loss leaves, once the power is off.
    fn power_loss(&mut self, i: usize) {
        let unsynced = self.armed_cut.take().unwrap_or(Unsynced::Lost);
        self.snapshots.clear();
        drop(self.db.take());
        self.mem = self
            .mem
            .after_power_loss(unsynced)
            .expect("image the file system");
        self.fault = FaultFs::new(Arc::new(self.mem.clone()));
        let db = self
            .open()
            .unwrap_or_else(|e| panic!("op {i}: reopen after a power loss ({unsynced:?}): {e}"));
        self.db = Some(db);
        let found = self
            .check_reopened(i, "power loss")
            .expect("no fault is armed after a power loss");
        assert!(
            self.history.allows_after_power_loss(&found),
            "op {i}: after a power loss ({unsynced:?}) the database holds {} keys, which no \
             prefix of the history that keeps every synced write leaves; now possible: {}",
            found.len(),
            self.history.describe_mismatch(&found)
        );
        self.history.lost_power(found);
    }

    /// Scans the database just reopened, checks that every `get` agrees and that `verify()`
    /// passes; returns what it holds. `None` if the power went off meanwhile.
    fn check_reopened(&mut self, i: usize, after: &str) -> Option<Model> {
        let db = self.db();
        let found: Model = match scan(db.range::<&[u8], _>(..), false) {
            Ok(pairs) => pairs.into_iter().collect(),
            Err(_) if !self.mem.has_power() => return None,
            Err(e) => panic!("op {i}: scan after a {after}: {e}"),
        };
        for (key, value) in &found {
            match db.get(key) {
                Ok(got) => assert_eq!(
                    got.as_deref(),
                    Some(value.as_slice()),
                    "op {i}: get {key:?} after a {after} disagrees with the scan"
                ),
                Err(_) if !self.mem.has_power() => return None,
                Err(e) => panic!("op {i}: get {key:?} after a {after}: {e}"),
            }
        }
        match db.verify() {
            Ok(_) => Some(found),
            Err(_) if !self.mem.has_power() => None,
            Err(e) => panic!("op {i}: verify after a {after}: {e}"),
        }
    }

    /// Opens what a power loss now would leave (only the synced state), on a copy: it must
    /// hold a state a power loss may leave. The running database is not disturbed.
    fn check_power_loss_now(&self, i: usize) {
        if !self.mem.has_power() {
            return;
        }
        let image = self
            .mem
            .after_power_loss(Unsynced::Lost)
            .expect("image the file system");
        let db = options(false)
            .file_system(Arc::new(image))
            .open(DB_DIR)
            .unwrap_or_else(|e| panic!("op {i}: open what a power loss now would leave: {e}"));
        let found: Model = scan(db.range::<&[u8], _>(..), false)
            .unwrap_or_else(|e| panic!("op {i}: scan what a power loss now would leave: {e}"))
            .into_iter()
            .collect();
        assert!(
            self.history.allows_after_power_loss(&found),
            "op {i}: a power loss now would leave {} keys, which no prefix of the history that \
             keeps every synced write leaves; now possible: {}",
            found.len(),
            self.history.describe_mismatch(&found)
        );
        db.verify()
            .unwrap_or_else(|e| panic!("op {i}: verify what a power loss now would leave: {e}"));
    }

    /// Scans everything, both ways, and forward again with a cursor.
    fn check_all(&mut self, i: usize) {
        let scans = [
            ("full scan", scan(self.db().range::<&[u8], _>(..), false)),
            ("reverse full scan", scan(self.db().range::<&[u8], _>(..), true)),
            ("full cursor scan", cursor_scan(self.db().cursor::<&[u8], _>(..))),
        ];
        for (what, got) in scans {
            if let Some(got) = self.tolerate(i, what, got) {
                let got: Model = got.into_iter().collect();
                assert!(
                    self.history.allows(&got),
                    "op {i}: {what} holds {}",
                    self.history.describe_mismatch(&got)
                );
            }
        }
    }
}

fn pick<T>(snapshots: &[T], which: u8) -> Option<&T> {
    snapshots.get(usize::from(which) % snapshots.len().max(1))
}

/// True when `lower..upper` holds no key (`BTreeMap::range` panics on such bounds).
fn bounds_are_empty(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Excluded(u)) => l >= u,
        _ => false,
    }
}

fn range_of(
    model: &Model,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .range((lower.clone(), upper.clone()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The pairs of `iter` in key order, read forwards or backwards.
fn scan(iter: extentdb::Iter, reverse: bool) -> extentdb::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let owned = |p: extentdb::Result<(extentdb::Key, extentdb::Value)>| {
        p.map(|(k, v)| (k.to_vec(), v.to_vec()))
    };
    if reverse {
        let mut pairs: Vec<_> = iter.rev().map(owned).collect::<extentdb::Result<_>>()?;
        pairs.reverse();
        Ok(pairs)
    } else {
        iter.map(owned).collect()
    }
}

/// The pairs a cursor lends, copied, in key order.
fn cursor_scan(mut cursor: extentdb::Cursor) -> extentdb::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut pairs = Vec::new();
    while let Some((k, v)) = cursor.next()? {
        pairs.push((k.to_vec(), v.to_vec()));
    }
    Ok(pairs)
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(input.background);
    for (i, op) in input.ops.into_iter().take(MAX_OPS).enumerate() {
        harness.apply(i, op);
        if !harness.mem.has_power() {
            harness.power_loss(i);
        }
        if i % CHECK_EVERY == CHECK_EVERY - 1 {
            harness.check_all(i);
            harness.check_power_loss_now(i);
        }
    }
    harness.check_all(usize::MAX);
    harness.check_power_loss_now(usize::MAX);
    // A last crash: recovery must give back everything acknowledged.
    harness.crash(usize::MAX);
    if !harness.mem.has_power() {
        harness.power_loss(usize::MAX);
    }
});
