//! A process killed with SIGKILL at a random moment loses no acknowledged write, and the
//! directory lock keeps a second process out while the first holds it.
//!
//! The test binary runs itself as a child (`current_exe() --exact <child test>`, selected by
//! an environment variable; without it the child "tests" return at once). The crash child
//! writes (puts, deletes, batches, range deletes, frequent flushes and compactions, a tiny
//! memtable), half of its writes with `Durability::Sync` and half with `Durability::Buffered`:
//! both promise that an acknowledged write survives the death of the process, which is all a
//! kill takes. Around every write it appends to a separate log: an intent line before the
//! write and an ack line after it returns. The log is not synced: a killed
//! process's writes stay in the kernel's page cache, so every line written before the kill is
//! read back (only power loss would need the syncs, and it is not what this test simulates);
//! this leaves the engine's own syncs as the only ones in the loop. The parent kills the
//! child at a random moment, reopens the database and checks that it holds exactly the
//! acknowledged writes, plus perhaps the one write in flight, and that `verify()` passes; then
//! the next cycle runs on the same directory. `EXTENTDB_CRASH_CYCLES` sets the number of cycles
//! (default 20), `EXTENTDB_CRASH_SEED` the seed.
//!
//! The workload keeps value reclamation busy so that kills land inside it. Values of up to
//! 40 KiB over 256-byte blocks (most span several blocks; the largest span more than the
//! 16 KiB a punch needs), value files sealed at 32 KiB over 64 KiB segments, overwrites,
//! deletes and range deletes over 160 keys, and a `compact()` every 16 operations or so: each
//! drops pointers and records their bytes dead, unmaps and punches dead blocks, deletes dead
//! value files and emptied segments, evacuates mostly-dead files and relocates fragmented
//! ones, and the background value thread does the same in between. Freed blocks are reused by
//! the next writes. The child notes in its log when a `compact()` starts and ends and, after
//! each one, its reclamation counters; the parent prints how many kills landed inside
//! `compact()`, the counters the children last reported and the reopened database's figures.
//! Every fourth cycle the parent compacts the reopened database itself and checks it again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Model, scan};
use extentdb::{Db, Durability, Error, Options, Stats, WriteBatch};

const CHILD_DIR: &str = "EXTENTDB_CRASH_CHILD_DIR";
const CHILD_LOG: &str = "EXTENTDB_CRASH_CHILD_LOG";
const CHILD_SEED: &str = "EXTENTDB_CRASH_CHILD_SEED";
const LOCK_DIR: &str = "EXTENTDB_LOCK_CHILD_DIR";
const LOCK_READY: &str = "EXTENTDB_LOCK_CHILD_READY";
const LOCK_RELEASE: &str = "EXTENTDB_LOCK_CHILD_RELEASE";
const KEYS: u64 = 160;

/// `common::tiny()` (256-byte blocks for tables and value files) with values of 200 bytes and
/// more separated, and value files that seal at 32 KiB over 64 KiB segments: files fill, die
/// and are deleted, and segments empty, within one cycle.
fn options() -> Options {
    common::tiny()
        .value_threshold_bytes(64)
        .value_file_bytes(32 << 10)
        .value_segment_bytes(64 << 10)
}

/// splitmix64: a small, seedable generator, so the test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..hi`.
    fn within(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

/// A value, named by a tag unique to its write and its length; the log stores only these, and
/// [`ValueSpec::bytes`] rebuilds the bytes. Every 8 bytes past the tag come from a generator
/// seeded by the tag, so a block of one value read in place of another's never matches.
#[derive(Debug, Clone, PartialEq)]
struct ValueSpec {
    tag: String,
    len: usize,
}

impl ValueSpec {
    fn bytes(&self) -> Vec<u8> {
        let seed = self.tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = Rng(seed);
        let mut v = Vec::with_capacity(self.len + 8);
        v.extend_from_slice(self.tag.as_bytes());
        v.push(b'=');
        while v.len() < self.len {
            v.extend_from_slice(&rng.next().to_le_bytes());
        }
        v.truncate(self.len);
        v
    }
}

/// One operation of a write batch. Keys and tags are printable and hold no spaces or `|`,
/// so a batch is one line of the ack log.
#[derive(Debug, Clone, PartialEq)]
enum WriteOp {
    Put(String, ValueSpec),
    Delete(String),
    /// `start..end`; `None` is unbounded.
    DeleteRange(Option<String>, Option<String>),
}

fn encode(ops: &[WriteOp]) -> String {
    let one = |op: &WriteOp| match op {
        WriteOp::Put(k, v) => format!("P {k} {} {}", v.tag, v.len),
        WriteOp::Delete(k) => format!("D {k}"),
        WriteOp::DeleteRange(a, b) => format!(
            "R {} {}",
            a.as_deref().unwrap_or("-"),
            b.as_deref().unwrap_or("-")
        ),
    };
    ops.iter().map(one).collect::<Vec<_>>().join("|")
}

fn decode(line: &str) -> Vec<WriteOp> {
    let bound = |s: &str| (s != "-").then(|| s.to_string());
    line.split('|')
        .map(|op| {
            let parts: Vec<&str> = op.split(' ').collect();
            match parts.as_slice() {
                ["P", k, tag, len] => WriteOp::Put(
                    (*k).into(),
                    ValueSpec {
                        tag: (*tag).into(),
                        len: len.parse().unwrap(),
                    },
                ),
                ["D", k] => WriteOp::Delete((*k).into()),
                ["R", a, b] => WriteOp::DeleteRange(bound(a), bound(b)),
                _ => panic!("bad op in the ack log: {op:?}"),
            }
        })
        .collect()
}

fn apply(model: &mut Model, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::Put(k, v) => {
                model.insert(k.clone().into_bytes(), v.bytes());
            }
            WriteOp::Delete(k) => {
                model.remove(k.as_bytes());
            }
            WriteOp::DeleteRange(a, b) => model.retain(|k, _| {
                let after_start = a.as_ref().is_none_or(|a| k[..] >= *a.as_bytes());
                let before_end = b.as_ref().is_none_or(|b| k[..] < *b.as_bytes());
                !(after_start && before_end)
            }),
        }
    }
}

fn to_batch(ops: &[WriteOp]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match op {
            WriteOp::Put(k, v) => {
                b.put(k, v.bytes());
            }
            WriteOp::Delete(k) => {
                b.delete(k);
            }
            WriteOp::DeleteRange(a, c) => {
                let lo = a.as_deref().map_or(std::ops::Bound::Unbounded, |s| {
                    std::ops::Bound::Included(s.as_bytes())
                });
                let hi = c.as_deref().map_or(std::ops::Bound::Unbounded, |s| {
                    std::ops::Bound::Excluded(s.as_bytes())
                });
                b.delete_range::<&[u8], _>((lo, hi));
            }
        }
    }
    b
}

fn random_key(rng: &mut Rng) -> String {
    format!("k{:03}", rng.below(KEYS))
}

/// A value length. Most children write 20% tiny values, inline in the index (so memtables
/// hold many); 30% separated values shorter than a block or two, so values share blocks and
/// a file can be mostly dead with no block wholly dead (evacuation's case); and the rest from
/// 400 bytes up to 40 KiB (160 blocks, more than a value file holds). A third of the children
/// (`small`) write mostly the short separated values, so files get evacuated more often.
fn random_len(rng: &mut Rng, small: bool) -> usize {
    let class = if small {
        [
            1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 10, 10, 10, 17,
        ]
    } else {
        [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ]
    };
    let len = match class[usize::try_from(rng.below(20)).unwrap()] {
        0..=3 => rng.within(8, 64),
        4..=9 => rng.within(64, 400),
        10..=16 => rng.within(400, 12 << 10),
        _ => rng.within(16 << 10, 40 << 10),
    };
    usize::try_from(len).unwrap()
}

/// Operation `i` of write `n` of the child seeded with `seed`.
fn random_op(rng: &mut Rng, seed: u64, n: u64, i: u64) -> WriteOp {
    match rng.below(50) {
        0..=33 => {
            let tag = format!("{n}.{i}.{:x}", seed & 0xff_ffff);
            let len = random_len(rng, seed.is_multiple_of(3));
            WriteOp::Put(random_key(rng), ValueSpec { tag, len })
        }
        34..=45 => WriteOp::Delete(random_key(rng)),
        _ => {
            let a = (rng.below(8) > 0).then(|| random_key(rng));
            let b = (rng.below(8) > 0).then(|| random_key(rng));
            WriteOp::DeleteRange(a, b)
        }
    }
}

/// Appends a line to the child's log. Unsynced: see the file comment.
fn append(log: &mut File, line: &str) {
    log.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The reclamation counters a child reports, in the order of its `S` lines.
const COUNTERS: [&str; 7] = [
    "value files deleted",
    "bytes reclaimed",
    "blocks punched",
    "segments removed",
    "values evacuated",
    "relocations",
    "gc bytes written",
];

fn counters(s: &Stats) -> [u64; COUNTERS.len()] {
    [
        s.value_files_deleted,
        s.value_reclaimed_bytes,
        s.value_punched_blocks,
        s.value_segments_removed,
        s.value_evacuations,
        s.value_relocations,
        s.value_gc_written_bytes,
    ]
}

/// The crash child: writes until killed (or for at most 60 s).
#[test]
fn crash_child_writes_until_killed() {
    let (Ok(dir), Ok(log), Ok(seed)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_LOG),
        std::env::var(CHILD_SEED),
    ) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let mut rng = Rng(seed);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let db = match options().open(&dir) {
        Ok(db) => db,
        Err(e) => {
            append(&mut log, &format!("E open: {e}"));
            std::process::exit(3);
        }
    };
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        n += 1;
        let r = match rng.below(100) {
            0..=5 => {
                append(&mut log, "C");
                let r = db.compact();
                if r.is_ok() {
                    append(&mut log, "c");
                    let line: Vec<String> =
                        counters(&db.stats()).iter().map(u64::to_string).collect();
                    append(&mut log, &format!("S {}", line.join(" ")));
                }
                r
            }
            6..=7 => db.flush(),
            _ => {
                let ops: Vec<WriteOp> = if rng.below(5) == 0 {
                    (0..1 + rng.below(6))
                        .map(|i| random_op(&mut rng, seed, n, i))
                        .collect()
                } else {
                    vec![random_op(&mut rng, seed, n, 0)]
                };
                // Both promise to survive the death of the process.
                let durability = if rng.below(2) == 0 {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                append(&mut log, &format!("I {}", encode(&ops)));
                let r = db.write_with(to_batch(&ops), durability);
                if r.is_ok() {
                    append(&mut log, "A");
                    // An application pauses between writes: kills also land where nothing is in
                    // flight, after `Buffered` writes that no sync has covered.
                    if rng.below(4) == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                r
            }
        };
        if let Err(e) = r {
            append(&mut log, &format!("E write {n}: {e}"));
            std::process::exit(3);
        }
    }
}

fn spawn_self(test: &str, env: &[(&str, &Path)], extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// What a cycle's ack log says: the acknowledged batches, the one in flight, an error the
/// child reported, whether it was killed inside `compact()`, and the reclamation counters it
/// last reported.
struct AckLog {
    acked: Vec<Vec<WriteOp>>,
    in_flight: Option<Vec<WriteOp>>,
    error: Option<String>,
    compactions: u64,
    in_compact: bool,
    counters: [u64; COUNTERS.len()],
}

fn read_ack_log(path: &Path) -> AckLog {
    let text = fs::read_to_string(path).unwrap_or_default();
    // A line cut short by the kill does not count.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut log = AckLog {
        acked: Vec::new(),
        in_flight: None,
        error: None,
        compactions: 0,
        in_compact: false,
        counters: [0; COUNTERS.len()],
    };
    for line in complete.lines() {
        if let Some(ops) = line.strip_prefix("I ") {
            assert!(log.in_flight.is_none(), "two writes in flight");
            assert!(!log.in_compact, "a write inside compact()");
            log.in_flight = Some(decode(ops));
        } else if line == "A" {
            let ops = log.in_flight.take().expect("ack without intent");
            log.acked.push(ops);
        } else if line == "C" {
            log.in_compact = true;
        } else if line == "c" {
            log.in_compact = false;
            log.compactions += 1;
        } else if let Some(numbers) = line.strip_prefix("S ") {
            let numbers: Vec<u64> = numbers.split(' ').map(|n| n.parse().unwrap()).collect();
            log.counters = numbers.try_into().unwrap();
        } else if let Some(e) = line.strip_prefix("E ") {
            log.error = Some(e.to_string());
        }
    }
    log
}

fn keys(m: &Model) -> Vec<String> {
    m.keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Checks that `db` holds exactly `model`, value by value, and passes `verify()`; returns the
/// bytes `verify()` found neither live nor dead.
fn check_db(db: &Db, model: &Model, what: &str) -> u64 {
    for (k, v) in model {
        let got = db.get(k).unwrap_or_else(|e| panic!("{what}: get: {e}"));
        assert!(
            got.as_deref() == Some(&v[..]),
            "{what}: {} reads {:?} bytes, expected {} bytes",
            String::from_utf8_lossy(k),
            got.map(|g| g.len()),
            v.len()
        );
    }
    let report = db
        .verify()
        .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert_eq!(report.live_values, model.len() as u64, "{what}: {report:?}");
    report.value_unaccounted_bytes.unwrap_or(0)
}

#[test]
fn killed_process_loses_no_acknowledged_write() {
    let cycles: u64 = std::env::var("EXTENTDB_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let base_seed = std::env::var("EXTENTDB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed {base_seed} (EXTENTDB_CRASH_SEED to repeat), {cycles} cycles");
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("db");
    let mut rng = Rng(base_seed);
    let mut model = Model::new();
    let (mut total_acked, mut in_flight_applied) = (0usize, 0usize);
    let (mut compactions, mut killed_in_compact) = (0u64, 0u64);
    let mut reported = [0u64; COUNTERS.len()];
    let mut max_unaccounted = 0u64;
    for cycle in 0..cycles {
        let log_path: PathBuf = work.path().join(format!("acks-{cycle}"));
        let seed = rng.next();
        let mut child = spawn_self(
            "crash_child_writes_until_killed",
            &[(CHILD_DIR, &dir), (CHILD_LOG, &log_path)],
            &[(CHILD_SEED, seed.to_string())],
        );
        let delay = Duration::from_millis(rng.below(400));
        std::thread::sleep(delay);
        let exited = child.try_wait().unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        let log = read_ack_log(&log_path);
        if let Some(e) = &log.error {
            let mut stderr = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut s, &mut stderr);
            }
            // A poisoned database in the child with no failed write of its own: a background
            // job (flush, index compaction, value thread) failed and poisoned it.
            panic!("cycle {cycle} (seed {base_seed}): the child failed: {e}\n{stderr}");
        }
        assert!(
            exited.is_none(),
            "cycle {cycle}: child exited by itself: {status:?}"
        );
        compactions += log.compactions;
        killed_in_compact += u64::from(log.in_compact);
        for (sum, n) in reported.iter_mut().zip(log.counters) {
            *sum += n;
        }

        for ops in &log.acked {
            apply(&mut model, ops);
        }
        total_acked += log.acked.len();
        let db = options()
            .open(&dir)
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {base_seed}): reopen: {e}"));
        let found = scan(&db);
        let with_in_flight = log.in_flight.as_ref().map(|ops| {
            let mut m = model.clone();
            apply(&mut m, ops);
            m
        });
        if found != model {
            match with_in_flight {
                Some(m) if found == m => {
                    model = m;
                    in_flight_applied += 1;
                }
                _ => panic!(
                    "cycle {cycle} (seed {base_seed}, killed after {delay:?}{}, {} acked): \
                     recovered state is neither the acknowledged writes nor them plus the one \
                     in flight ({:?})\nfound:    {:?}\nexpected: {:?}",
                    if log.in_compact {
                        " inside compact()"
                    } else {
                        ""
                    },
                    log.acked.len(),
                    log.in_flight.as_ref().map(|ops| encode(ops)),
                    keys(&found),
                    keys(&model)
                ),
            }
        }
        let what = format!("cycle {cycle} (seed {base_seed}, killed after {delay:?})");
        let unaccounted = check_db(&db, &model, &what);
        max_unaccounted = max_unaccounted.max(unaccounted);
        if cycle % 4 == 3 {
            // Reclaim what the killed child recorded dead but did not free, on the reopened
            // database, and check it again.
            db.compact()
                .unwrap_or_else(|e| panic!("{what}: compact after reopen: {e}"));
            check_db(&db, &model, &format!("{what}, compacted after reopen"));
        }
    }
    let db = options().open(&dir).unwrap();
    let report = db.verify().unwrap();
    let s = db.stats();
    drop(db);
    eprintln!(
        "{cycles} cycles in {:.1} s, {total_acked} acknowledged writes, in-flight write \
         recovered {in_flight_applied} times, 0 violations",
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "children: {compactions} compact() calls finished, {killed_in_compact} of {cycles} \
         kills landed inside compact()"
    );
    let line: Vec<String> = COUNTERS
        .iter()
        .zip(reported)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    eprintln!(
        "children's reclamation counters (summed; each child's as of its last finished \
         compact(), its background thread's work included): {}",
        line.join(", ")
    );
    eprintln!(
        "reopened database: {} live values ({} bytes), value files {}, written {} bytes, \
         dead {} bytes, mapped {} blocks ({} free, {} pending, {} in the store), on disk {} \
         bytes, unaccounted {:?} bytes (largest after a kill: {max_unaccounted})",
        report.live_values,
        report.live_value_bytes,
        s.value_files,
        s.value_written_bytes,
        s.value_dead_bytes,
        s.value_mapped_blocks,
        s.value_free_blocks,
        s.value_pending_blocks,
        s.value_store_blocks,
        s.value_disk_bytes.unwrap(),
        report.value_unaccounted_bytes,
    );
    assert!(total_acked > 0, "no write was acknowledged in any cycle");
    if cycles >= 10 {
        assert!(compactions > 0, "no child finished a compact()");
        assert!(
            reported[0] > 0 && reported[1] > 0,
            "the children reclaimed nothing: {line:?}"
        );
    }
}

/// The lock child: opens the database, writes one key, says it is ready, and holds the
/// database until told to release it.
#[test]
fn lock_child_holds_the_database() {
    let (Ok(dir), Ok(ready), Ok(release)) = (
        std::env::var(LOCK_DIR),
        std::env::var(LOCK_READY),
        std::env::var(LOCK_RELEASE),
    ) else {
        return;
    };
    let db = Db::open(&dir).unwrap();
    db.put("holder", "child").unwrap();
    fs::write(&ready, b"ready").unwrap();
    let started = Instant::now();
    while !Path::new(&release).exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(db);
}

fn wait_for(path: &Path, child: &mut Child) {
    let started = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("lock child exited early: {status:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "lock child never got ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn_holder(work: &Path) -> (Child, PathBuf, PathBuf, PathBuf) {
    let dir = work.join("db");
    let ready = work.join("ready");
    let release = work.join("release");
    let mut child = spawn_self(
        "lock_child_holds_the_database",
        &[
            (LOCK_DIR, &dir),
            (LOCK_READY, &ready),
            (LOCK_RELEASE, &release),
        ],
        &[],
    );
    wait_for(&ready, &mut child);
    (child, dir, ready, release)
}

#[test]
fn second_process_is_locked_out_until_the_first_exits() {
    let work = tempfile::tempdir().unwrap();
    let (mut child, dir, _, release) = spawn_holder(work.path());
    for _ in 0..3 {
        match Db::open(&dir) {
            Err(Error::Locked(path)) => assert!(path.starts_with(&dir), "{path:?}"),
            other => panic!("expected Locked while the child holds the database, got {other:?}"),
        }
    }
    fs::write(&release, b"go").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let db = Db::open(&dir).unwrap();
    assert_eq!(db.get("holder").unwrap().as_deref(), Some(&b"child"[..]));
}

#[test]
fn lock_of_a_killed_process_is_released() {
    let work = tempfile::tempdir().unwrap();
    let (mut child, dir, _, _) = spawn_holder(work.path());
    assert!(matches!(Db::open(&dir), Err(Error::Locked(_))));
    child.kill().unwrap();
    child.wait().unwrap();
    let db = Db::open(&dir).unwrap();
    assert_eq!(db.get("holder").unwrap().as_deref(), Some(&b"child"[..]));
}
