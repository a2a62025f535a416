//! The standard workload: one small, deterministic life of a database that takes every I/O path
//! of the engine, and the model and checker that judge what a database holds after it.
//!
//! [`run`] creates a database in `root/db` on any [`FileSystem`] and, over four sessions,
//! writes small values (kept in the index) and large ones (over `value_threshold_bytes`, so in
//! value files, sealed every 8 KiB, over 16 KiB segments of the block store), one by one and in
//! batches, with `Durability::Buffered` and `Sync`; deletes keys and ranges; flushes and
//! compacts (`Db::compact()` deletes dead value files, punches dead blocks, evacuates mostly
//! dead files, and leaves alone the blocks a snapshot still reads); reads with gets, scans both
//! ways and a snapshot through the buffer pool and, in the second
//! session, through the memory map (`ReadPath::Mmap`); writes a checkpoint to `root/checkpoint`;
//! syncs; closes with writes left only in the log and reopens (recovery); opens the database
//! and the checkpoint read-only; and `verify()`s. Nothing runs in the background, so on a file
//! system that behaves the same way twice the workload makes the same calls in the same order.
//!
//! Every write is recorded in a [`History`] with its outcome: acknowledged, refused (the
//! handle is poisoned or read-only: nothing was written), or unknown (an I/O error: it may or
//! may not have reached the disk). The history keeps the states the database may be in (the
//! acknowledged writes applied in order, each unknown one applied or not) and every read the
//! workload makes is checked against them: a value no state holds is a wrong read, reported in
//! [`Report::wrong`]. After the workload, [`check`] reopens the database and requires its
//! contents to be one of those states (or, under [`MustHold::Synced`], one a prefix of the
//! history leaves that keeps every write a sync covered), every key's `get` to agree with the
//! scan, and `verify()` to pass.
//!
//! Used by the I/O-error sweep (`io_errors.rs`) and the power-loss test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use extentdb::fs::FileSystem;
use extentdb::{Db, Durability, Error, Options, ReadPath, Result, Stats, WriteBatch};

use super::Model;

/// The most states the history follows at once. Each write with an unknown outcome doubles
/// them at most; a workload that fails more than six writes without the handle refusing the
/// rest has stopped telling anything apart.
const STATES_MAX: usize = 64;

/// Value lengths, cycled: under the 64-byte threshold (kept in the index), a few blocks, and
/// more than a value file holds (values that span files).
const LENS: [usize; 8] = [8, 40, 100, 700, 1500, 3000, 9000, 20_000];

/// Keys `key000` to `key063` take values of every length.
const KEYS: u64 = 64;

/// Keys `key100` to `key147` take values of 200 bytes, written first and one after the other
/// so that they fill a value file of their own and share blocks: once three in four are
/// deleted the file is mostly dead, but few of its blocks are, and compaction evacuates it.
const SMALL: std::ops::Range<u64> = 100..148;

/// Every key the workload writes.
fn all_keys() -> impl Iterator<Item = u64> {
    (0..KEYS).chain(SMALL)
}

/// 256-byte blocks and a 4 KiB memtable (so flushes and compactions happen every few dozen
/// writes), values of 64 bytes and more in value files sealed at 8 KiB over 16 KiB segments, a
/// 16 KiB buffer pool (most reads miss it), and no background threads (the same calls in the
/// same order on every run).
pub fn options(fs: Arc<dyn FileSystem>, read_path: ReadPath) -> Options {
    super::tiny()
        .value_threshold_bytes(64)
        .value_file_bytes(8 << 10)
        .value_segment_bytes(16 << 10)
        .cache_bytes(16 << 10)
        .read_path(read_path)
        .background_compaction(false)
        .file_system(fs)
}

/// The database's directory under `root`.
pub fn db_dir(root: &Path) -> PathBuf {
    root.join("db")
}

/// The checkpoint's directory under `root`.
pub fn checkpoint_dir(root: &Path) -> PathBuf {
    root.join("checkpoint")
}

/// The name of key `i`.
pub fn key(i: u64) -> Vec<u8> {
    format!("key{i:03}").into_bytes()
}

/// A value of `len` bytes, different from every other `(tag, len)` in every 8 bytes.
pub fn value(tag: u64, len: usize) -> Vec<u8> {
    let mut x = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (len as u64) ^ 0x5555;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// One write, as the model applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
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
    /// Every key in `[start, end)` is gone.
    DeleteRange {
        /// First key deleted.
        start: Vec<u8>,
        /// First key kept.
        end: Vec<u8>,
    },
    /// The operations, atomically.
    Batch(Vec<Op>),
}

impl Op {
    /// Applies the operation to `model`.
    pub fn apply(&self, model: &mut Model) {
        match self {
            Op::Put { key, value } => {
                model.insert(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                model.remove(key);
            }
            Op::DeleteRange { start, end } => {
                model.retain(|k, _| !(k >= start && k < end));
            }
            Op::Batch(ops) => ops.iter().for_each(|op| op.apply(model)),
        }
    }

    /// A short description: the keys, and the lengths of the values.
    pub fn describe(&self) -> String {
        let name = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        match self {
            Op::Put { key, value } => format!("put {} ({} bytes)", name(key), value.len()),
            Op::Delete { key } => format!("delete {}", name(key)),
            Op::DeleteRange { start, end } => {
                format!("delete range {}..{}", name(start), name(end))
            }
            Op::Batch(ops) => format!(
                "batch [{}]",
                ops.iter().map(Op::describe).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The same operation as a write batch.
    fn batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        self.add_to(&mut batch);
        batch
    }

    fn add_to(&self, batch: &mut WriteBatch) {
        match self {
            Op::Put { key, value } => {
                batch.put(key, value);
            }
            Op::Delete { key } => {
                batch.delete(key);
            }
            Op::DeleteRange { start, end } => {
                batch.delete_range(start.as_slice()..end.as_slice());
            }
            Op::Batch(ops) => ops.iter().for_each(|op| op.add_to(batch)),
        }
    }
}

/// What a write's call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It returned `Ok`: the write must be there (for `Buffered` writes, unless the machine
    /// lost power before a sync covered it).
    Acked,
    /// `Poisoned` or `ReadOnly`: refused before anything was written, so it is never there.
    Refused,
    /// Any other error: it may or may not have reached the disk.
    Unknown,
}

impl Outcome {
    fn of(result: &Result<()>) -> Self {
        match result {
            Ok(()) => Outcome::Acked,
            Err(Error::Poisoned | Error::ReadOnly) => Outcome::Refused,
            Err(_) => Outcome::Unknown,
        }
    }
}

/// A write and what became of it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The write.
    pub op: Op,
    /// The durability it asked for.
    pub durability: Durability,
    /// What the call returned.
    pub outcome: Outcome,
}

/// Every write the workload made, in order, and the states the database may be in after them.
#[derive(Debug, Clone)]
pub struct History {
    entries: Vec<Entry>,
    /// The writes `entries[..synced]` that were acknowledged survive a power loss: a successful
    /// sync (a `Sync` write, `Db::sync`, a flush) came after them.
    synced: usize,
    /// The states the database may be in now: distinct, at most [`STATES_MAX`].
    states: Vec<Model>,
    /// The states at the checkpoint, once one was written.
    checkpoint: Option<Vec<Model>>,
    /// Set when the unknown outcomes outgrew [`STATES_MAX`]: nothing more can be judged.
    overflowed: bool,
}

impl Default for History {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            synced: 0,
            states: vec![Model::new()],
            checkpoint: None,
            overflowed: false,
        }
    }
}

impl History {
    /// Every write, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many writes were acknowledged.
    pub fn acked(&self) -> usize {
        self.count(Outcome::Acked)
    }

    /// How many writes had the given outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.entries.iter().filter(|e| e.outcome == outcome).count()
    }

    /// The states the database may be in now.
    pub fn states(&self) -> &[Model] {
        &self.states
    }

    /// Records a write and what its call returned.
    pub fn record(&mut self, op: Op, durability: Durability, result: &Result<()>) {
        let outcome = Outcome::of(result);
        self.states = advance(std::mem::take(&mut self.states), &op, outcome);
        if self.states.len() > STATES_MAX {
            self.overflowed = true;
            self.states.truncate(STATES_MAX);
        }
        self.entries.push(Entry {
            op,
            durability,
            outcome,
        });
        if outcome == Outcome::Acked && durability == Durability::Sync {
            self.synced();
        }
    }

    /// Records that a sync succeeded: every acknowledged write so far survives a power loss.
    pub fn synced(&mut self) {
        self.synced = self.entries.len();
    }

    /// Records that a checkpoint was written now.
    pub fn checkpointed(&mut self) {
        self.checkpoint = Some(self.states.clone());
    }

    /// `Err` naming the key if no state holds `got` at `key`.
    pub fn check_get(&self, key: &[u8], got: Option<&[u8]>) -> std::result::Result<(), String> {
        if self.overflowed
            || self
                .states
                .iter()
                .any(|s| s.get(key).map(Vec::as_slice) == got)
        {
            return Ok(());
        }
        Err(format!(
            "get {} returned {}, which no acknowledged history gives",
            String::from_utf8_lossy(key),
            describe(got)
        ))
    }

    /// `Err` if no state is exactly `found`.
    pub fn check_scan(&self, found: &Model) -> std::result::Result<(), String> {
        if self.overflowed || self.states.contains(found) {
            return Ok(());
        }
        Err(mismatch("scan", found, &self.states))
    }

    /// The states a database recovered from this history may be in: under
    /// [`MustHold::Acked`] the current ones; under [`MustHold::Synced`] also those of every
    /// prefix of the history that keeps the writes a sync covered.
    pub fn recoverable(&self, must_hold: MustHold) -> std::result::Result<Vec<Model>, String> {
        if self.overflowed {
            return Err(format!(
                "more than {STATES_MAX} possible states: too many writes failed without \
                 poisoning the handle"
            ));
        }
        let from = match must_hold {
            MustHold::Acked => return Ok(self.states.clone()),
            MustHold::Synced => self.synced,
        };
        let mut states = vec![Model::new()];
        let mut accepted: Vec<Model> = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if i >= from {
                union(&mut accepted, &states);
            }
            states = advance(states, &entry.op, entry.outcome);
            states.truncate(STATES_MAX);
        }
        union(&mut accepted, &states);
        Ok(accepted)
    }
}

/// The states `states` become once `op` with `outcome` is applied to each.
fn advance(states: Vec<Model>, op: &Op, outcome: Outcome) -> Vec<Model> {
    match outcome {
        Outcome::Refused => states,
        Outcome::Acked => states
            .into_iter()
            .map(|mut s| {
                op.apply(&mut s);
                s
            })
            .fold(Vec::new(), |mut acc, s| {
                union(&mut acc, std::slice::from_ref(&s));
                acc
            }),
        Outcome::Unknown => {
            let mut next = states.clone();
            let applied: Vec<Model> = states
                .into_iter()
                .map(|mut s| {
                    op.apply(&mut s);
                    s
                })
                .collect();
            union(&mut next, &applied);
            next
        }
    }
}

/// Adds to `into` the states of `from` it does not hold yet.
fn union(into: &mut Vec<Model>, from: &[Model]) {
    for s in from {
        if !into.contains(s) {
            into.push(s.clone());
        }
    }
}

fn describe(value: Option<&[u8]>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(v) => format!(
            "{} bytes starting {:02x?}",
            v.len(),
            v.iter().take(8).collect::<Vec<_>>()
        ),
    }
}

/// How `found` differs from the closest of `states` (the first, in key order).
fn mismatch(what: &str, found: &Model, states: &[Model]) -> String {
    let mut text = format!(
        "{what}: {} keys, matching none of the {} possible states",
        found.len(),
        states.len()
    );
    if let Some(state) = states.first() {
        let keys: std::collections::BTreeSet<&Vec<u8>> = found.keys().chain(state.keys()).collect();
        for k in keys
            .into_iter()
            .filter(|k| found.get(*k) != state.get(*k))
            .take(4)
        {
            text.push_str(&format!(
                "; {}: found {}, expected {}",
                String::from_utf8_lossy(k),
                describe(found.get(k).map(Vec::as_slice)),
                describe(state.get(k).map(Vec::as_slice))
            ));
        }
    }
    text
}

/// Which acknowledged writes a recovered database must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MustHold {
    /// Every acknowledged write: the process or its file system failed, but nothing that
    /// reached the operating system was lost.
    Acked,
    /// Every write a sync covered, and a prefix of the rest: the machine lost power.
    Synced,
}

/// What to do when a step of the workload returns an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Go on with the next step, as an application that retries would: the fault was
    /// transient.
    Continue,
    /// Stop the workload (closing the open handle): the device is gone, or the machine is
    /// about to crash.
    Stop,
}

/// What a run of the workload did.
#[derive(Debug, Default)]
pub struct Report {
    /// The writes and their outcomes.
    pub history: History,
    /// Every step that returned an error, with the error.
    pub errors: Vec<String>,
    /// Every read that returned bytes no history gives. Must stay empty.
    pub wrong: Vec<String>,
    /// The statistics of each session that got as far as its end.
    pub stats: Vec<Stats>,
    /// True if the workload stopped at an error ([`OnError::Stop`]).
    pub stopped: bool,
}

/// Runs the workload in `root/db` (and `root/checkpoint`), which must not exist yet.
pub fn run(fs: Arc<dyn FileSystem>, root: &Path, on_error: OnError) -> Report {
    run_with(fs, root, on_error, false)
}

/// [`run`], with the background flush and compaction threads running if `background`: the
/// calls then come in an order the scheduler picks, and a failure may hit a background job.
pub fn run_with(
    fs: Arc<dyn FileSystem>,
    root: &Path,
    on_error: OnError,
    background: bool,
) -> Report {
    let mut w = Workload {
        fs,
        root: root.to_path_buf(),
        on_error,
        background,
        report: Report::default(),
        tag: 0,
    };
    w.first_session();
    w.second_session();
    w.read_only_sessions();
    w.last_session();
    w.report
}

struct Workload {
    fs: Arc<dyn FileSystem>,
    root: PathBuf,
    on_error: OnError,
    background: bool,
    report: Report,
    /// Makes each value written unique.
    tag: u64,
}

impl Workload {
    fn open(&mut self, read_path: ReadPath) -> Option<Db> {
        let options =
            options(Arc::clone(&self.fs), read_path).background_compaction(self.background);
        let dir = db_dir(&self.root);
        self.step("open", || options.open(dir))
    }

    /// Runs `f` unless the workload has stopped; records its error.
    fn step<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T>) -> Option<T> {
        if self.report.stopped {
            return None;
        }
        match f() {
            Ok(v) => Some(v),
            Err(e) => {
                self.report.errors.push(format!("{what}: {e}"));
                self.report.stopped = self.on_error == OnError::Stop;
                None
            }
        }
    }

    fn close(&mut self, db: Db) {
        if !self.report.stopped {
            self.report.stats.push(db.stats());
        }
        drop(db);
    }

    fn next_value(&mut self, i: u64) -> Vec<u8> {
        self.tag += 1;
        let len = LENS
            .iter()
            .cycle()
            .nth(usize::try_from(i + self.tag).unwrap_or(0))
            .copied()
            .unwrap_or(0);
        value(self.tag, len)
    }

    /// Writes `op` through the API call it is most like.
    fn write(&mut self, db: &Db, op: Op, durability: Durability) {
        if self.report.stopped {
            return;
        }
        let result = match (&op, durability) {
            (Op::Put { key, value }, Durability::Buffered) => db.put(key, value),
            (Op::Delete { key }, Durability::Buffered) => db.delete(key),
            (Op::DeleteRange { start, end }, Durability::Buffered) => {
                db.delete_range(start.as_slice()..end.as_slice())
            }
            (Op::Batch(_), Durability::Buffered) => db.write(op.batch()),
            (_, Durability::Sync) => db.write_with(op.batch(), Durability::Sync),
        };
        let what = op.describe();
        self.report.history.record(op, durability, &result);
        self.step(&what, || result);
    }

    fn put(&mut self, db: &Db, i: u64, durability: Durability) {
        let op = Op::Put {
            key: key(i),
            value: self.next_value(i),
        };
        self.write(db, op, durability);
    }

    /// A put of 200 bytes.
    fn put_small(&mut self, db: &Db, i: u64) {
        self.tag += 1;
        let op = Op::Put {
            key: key(i),
            value: value(self.tag, 200),
        };
        self.write(db, op, Durability::Buffered);
    }

    fn get(&mut self, db: &Db, i: u64) {
        let k = key(i);
        if let Some(got) = self.step("get", || db.get(&k))
            && let Err(e) = self.report.history.check_get(&k, got.as_deref())
        {
            self.report.wrong.push(e);
        }
    }

    fn gets(&mut self, db: &Db, keys: impl Iterator<Item = u64>) {
        for i in keys {
            self.get(db, i);
        }
    }

    /// A scan forwards, then backwards.
    fn scan(&mut self, db: &Db) {
        if let Some(found) = self.step("scan", || super::try_scan(db))
            && let Err(e) = self.report.history.check_scan(&found)
        {
            self.report.wrong.push(e);
        }
        let backwards = self.step("reverse scan", || {
            db.range::<&[u8], _>(..)
                .rev()
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Model>>()
        });
        if let Some(found) = backwards
            && let Err(e) = self.report.history.check_scan(&found)
        {
            self.report.wrong.push(format!("reverse {e}"));
        }
    }

    fn flush(&mut self, db: &Db) {
        if self.step("flush", || db.flush()).is_some() {
            self.report.history.synced();
        }
    }

    fn compact(&mut self, db: &Db) {
        if self.step("compact", || db.compact()).is_some() {
            self.report.history.synced();
        }
    }

    /// Creates the database; fills it with values of every size, overwrites and deletes most
    /// of them and compacts (dead files, dead blocks, evacuation); writes a checkpoint; leaves
    /// writes only in the log.
    fn first_session(&mut self) {
        let Some(db) = self.open(ReadPath::Pool) else {
            return;
        };
        for i in SMALL {
            self.put_small(&db, i);
        }
        for i in 0..48 {
            let durability = if i % 12 == 11 {
                Durability::Sync
            } else {
                Durability::Buffered
            };
            self.put(&db, i * 5 % 48, durability);
        }
        self.gets(&db, [3, 40, 47, 99].into_iter());
        self.scan(&db);
        let batch = Op::Batch(vec![
            Op::Put {
                key: key(48),
                value: value(1000, 9000),
            },
            Op::Put {
                key: key(49),
                value: value(1001, 30),
            },
            Op::Delete { key: key(1) },
            Op::DeleteRange {
                start: key(20),
                end: key(23),
            },
        ]);
        self.write(&db, batch, Durability::Sync);
        self.flush(&db);
        for i in 0..32 {
            self.put(&db, i, Durability::Buffered);
        }
        for i in (0..48).step_by(6).chain(SMALL.filter(|i| i % 4 != 0)) {
            self.write(&db, Op::Delete { key: key(i) }, Durability::Buffered);
        }
        let range = Op::DeleteRange {
            start: key(30),
            end: key(38),
        };
        self.write(&db, range, Durability::Buffered);
        self.compact(&db);
        self.gets(&db, all_keys());
        self.scan(&db);
        let checkpoint = checkpoint_dir(&self.root);
        if self
            .step("checkpoint", || db.checkpoint(&checkpoint))
            .is_some()
        {
            self.report.history.checkpointed();
            self.report.history.synced();
        }
        for i in 50..60 {
            self.put(&db, i, Durability::Buffered);
        }
        if self.step("sync", || db.sync()).is_some() {
            self.report.history.synced();
        }
        // Left in the log for the next open to recover: a synced write and an overwrite of it
        // right after, which a retry after a failed sync of the log could give the same
        // sequence number.
        for i in 60..KEYS {
            self.put(&db, i, Durability::Buffered);
        }
        self.put(&db, 61, Durability::Sync);
        self.put(&db, 61, Durability::Buffered);
        self.write(&db, Op::Delete { key: key(2) }, Durability::Buffered);
        self.close(db);
    }

    /// Recovers the log; reads everything through the memory map; overwrites, batches and
    /// compacts again; verifies.
    fn second_session(&mut self) {
        let Some(db) = self.open(ReadPath::Mmap) else {
            return;
        };
        self.gets(&db, all_keys());
        self.scan(&db);
        // A snapshot keeps the values the writes below overwrite and delete readable through
        // the compaction, which must leave their blocks alone.
        let snapshot = db.snapshot();
        let at_snapshot = self.report.history.states.clone();
        for i in (0..KEYS).step_by(4) {
            self.put(&db, i, Durability::Buffered);
        }
        let batch = Op::Batch(vec![
            Op::DeleteRange {
                start: key(40),
                end: key(52),
            },
            Op::Put {
                key: key(44),
                value: value(2000, 20_000),
            },
            Op::Delete { key: key(8) },
        ]);
        self.write(&db, batch, Durability::Buffered);
        self.put(&db, 9, Durability::Sync);
        self.compact(&db);
        let through_snapshot = self.step("scan a snapshot", || {
            snapshot
                .range::<&[u8], _>(..)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Model>>()
        });
        if let Some(found) = through_snapshot
            && !at_snapshot.contains(&found)
        {
            self.report
                .wrong
                .push(mismatch("snapshot scan", &found, &at_snapshot));
        }
        drop(snapshot);
        self.gets(&db, 0..KEYS);
        self.scan(&db);
        self.step("verify", || db.verify());
        self.close(db);
    }

    /// Reads the database, and the checkpoint, through read-only handles.
    fn read_only_sessions(&mut self) {
        let read_only = options(Arc::clone(&self.fs), ReadPath::Pool).read_only(true);
        let dir = db_dir(&self.root);
        let Some(db) = self.step("open read-only", || read_only.open(dir)) else {
            return;
        };
        self.gets(&db, (0..KEYS).step_by(3));
        self.scan(&db);
        drop(db);
        let Some(states) = self.report.history.checkpoint.clone() else {
            return;
        };
        let read_only = options(Arc::clone(&self.fs), ReadPath::Mmap).read_only(true);
        let dir = checkpoint_dir(&self.root);
        let Some(found) = self.step("read the checkpoint", || {
            let db = read_only.open(dir)?;
            super::try_scan(&db)
        }) else {
            return;
        };
        if !states.contains(&found) {
            self.report
                .wrong
                .push(mismatch("checkpoint scan", &found, &states));
        }
    }

    /// Writes once more after a clean reopen, and flushes.
    fn last_session(&mut self) {
        let Some(db) = self.open(ReadPath::Pool) else {
            return;
        };
        self.gets(&db, (1..KEYS).step_by(5));
        for i in (1..KEYS).step_by(7) {
            self.put(&db, i, Durability::Buffered);
        }
        let range = Op::DeleteRange {
            start: key(10),
            end: key(14),
        };
        self.write(&db, range, Durability::Sync);
        self.flush(&db);
        self.scan(&db);
        self.close(db);
    }
}

/// What [`check`] found.
#[derive(Debug)]
pub struct Checked {
    /// Keys the recovered database holds.
    pub keys: usize,
    /// How many states it was allowed to be in.
    pub states: usize,
}

/// Reopens `root/db` on `fs` and checks it against `history`: it opens; its scan is one of the
/// states `history` allows under `must_hold`; a `get` of every key the history names agrees
/// with the scan; `verify()` passes. Also checks the checkpoint, if the workload wrote one.
///
/// # Errors
/// A description of the first thing found wrong.
pub fn check(
    fs: Arc<dyn FileSystem>,
    root: &Path,
    history: &History,
    must_hold: MustHold,
) -> std::result::Result<Checked, String> {
    let states = history.recoverable(must_hold)?;
    let db = options(Arc::clone(&fs), ReadPath::Pool)
        .open(db_dir(root))
        .map_err(|e| format!("reopen: {e}"))?;
    let found = super::try_scan(&db).map_err(|e| format!("scan after reopen: {e}"))?;
    if !states.contains(&found) {
        return Err(mismatch("recovered database", &found, &states));
    }
    for i in all_keys() {
        let k = key(i);
        let got = db.get(&k).map_err(|e| format!("get after reopen: {e}"))?;
        if got.as_deref() != found.get(&k).map(Vec::as_slice) {
            return Err(format!(
                "get {} after reopen disagrees with the scan",
                String::from_utf8_lossy(&k)
            ));
        }
    }
    db.verify()
        .map_err(|e| format!("verify after reopen: {e}"))?;
    drop(db);
    if let Some(states) = &history.checkpoint {
        let db = options(fs, ReadPath::Pool)
            .open(checkpoint_dir(root))
            .map_err(|e| format!("open the checkpoint: {e}"))?;
        let found = super::try_scan(&db).map_err(|e| format!("scan the checkpoint: {e}"))?;
        if !states.contains(&found) {
            return Err(mismatch("checkpoint", &found, states));
        }
        db.verify()
            .map_err(|e| format!("verify the checkpoint: {e}"))?;
    }
    Ok(Checked {
        keys: found.len(),
        states: states.len(),
    })
}

/// The number of writes per outcome, for reports.
pub fn outcomes(history: &History) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("acked", history.count(Outcome::Acked)),
        ("refused", history.count(Outcome::Refused)),
        ("unknown", history.count(Outcome::Unknown)),
    ])
}
