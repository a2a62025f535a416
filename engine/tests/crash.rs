//! A process killed with SIGKILL at a random moment loses no acknowledged write, and the
//! directory lock keeps a second process out while the first holds it.
//!
//! The test binary runs itself as a child (`current_exe() --exact <child test>`, selected by
//! an environment variable; without it the child "tests" return at once). The crash child
//! writes with `Durability::Sync` (puts, deletes, batches, range deletes, occasional flush and
//! compaction, a tiny memtable) and, around every write, appends to a separate log: an intent
//! line before the write and an ack line after it returns, each synced. The parent kills the
//! child at a random moment, reopens the database and checks that it holds exactly the
//! acknowledged writes, plus perhaps the one write in flight, and that `verify()` passes; then
//! the next cycle runs on the same directory. `EXTENTDB_CRASH_CYCLES` sets the number of cycles
//! (default 20).

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
use extentdb::{Db, Durability, Error, Options, WriteBatch};

const CHILD_DIR: &str = "EXTENTDB_CRASH_CHILD_DIR";
const CHILD_LOG: &str = "EXTENTDB_CRASH_CHILD_LOG";
const CHILD_SEED: &str = "EXTENTDB_CRASH_CHILD_SEED";
const LOCK_DIR: &str = "EXTENTDB_LOCK_CHILD_DIR";
const LOCK_READY: &str = "EXTENTDB_LOCK_CHILD_READY";
const LOCK_RELEASE: &str = "EXTENTDB_LOCK_CHILD_RELEASE";
const KEYS: u64 = 64;

fn options() -> Options {
    common::tiny().durability(Durability::Sync)
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
}

/// One operation of a write batch. Keys and values are printable and hold no spaces or `|`,
/// so a batch is one line of the ack log.
#[derive(Debug, Clone, PartialEq)]
enum WriteOp {
    Put(String, String),
    Delete(String),
    /// `start..end`; `None` is unbounded.
    DeleteRange(Option<String>, Option<String>),
}

fn encode(ops: &[WriteOp]) -> String {
    let one = |op: &WriteOp| match op {
        WriteOp::Put(k, v) => format!("P {k} {v}"),
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
                ["P", k, v] => WriteOp::Put((*k).into(), (*v).into()),
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
                model.insert(k.clone().into_bytes(), v.clone().into_bytes());
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
                b.put(k, v);
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
    format!("k{:02}", rng.below(KEYS))
}

fn random_op(rng: &mut Rng, seed: u64, n: u64) -> WriteOp {
    match rng.below(20) {
        0..=12 => {
            let pad = match rng.below(10) {
                0 => 1500,
                1..=4 => rng.below(300) as usize,
                _ => rng.below(20) as usize,
            };
            let v = format!("v{seed}.{n}.{}", "x".repeat(pad));
            WriteOp::Put(random_key(rng), v)
        }
        13..=17 => WriteOp::Delete(random_key(rng)),
        _ => {
            let a = (rng.below(4) > 0).then(|| random_key(rng));
            let b = (rng.below(4) > 0).then(|| random_key(rng));
            WriteOp::DeleteRange(a, b)
        }
    }
}

fn append_synced(log: &mut File, line: &str) {
    log.write_all(line.as_bytes()).unwrap();
    log.write_all(b"\n").unwrap();
    log.sync_data().unwrap();
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
            append_synced(&mut log, &format!("E open: {e}"));
            std::process::exit(3);
        }
    };
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        n += 1;
        let r = match rng.below(50) {
            0 => db.flush(),
            1 => db.compact(),
            _ => {
                let ops: Vec<WriteOp> = if rng.below(5) == 0 {
                    (0..1 + rng.below(6))
                        .map(|_| random_op(&mut rng, seed, n))
                        .collect()
                } else {
                    vec![random_op(&mut rng, seed, n)]
                };
                append_synced(&mut log, &format!("I {}", encode(&ops)));
                let r = db.write(to_batch(&ops));
                if r.is_ok() {
                    append_synced(&mut log, "A");
                }
                r
            }
        };
        if let Err(e) = r {
            append_synced(&mut log, &format!("E write {n}: {e}"));
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

/// What a cycle's ack log says: the acknowledged batches, the one in flight, and an error the
/// child reported.
struct AckLog {
    acked: Vec<Vec<WriteOp>>,
    in_flight: Option<Vec<WriteOp>>,
    error: Option<String>,
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
    };
    for line in complete.lines() {
        if let Some(ops) = line.strip_prefix("I ") {
            assert!(log.in_flight.is_none(), "two writes in flight");
            log.in_flight = Some(decode(ops));
        } else if line == "A" {
            let ops = log.in_flight.take().expect("ack without intent");
            log.acked.push(ops);
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
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("db");
    let mut rng = Rng(base_seed);
    let mut model = Model::new();
    let (mut total_acked, mut in_flight_applied) = (0usize, 0usize);
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
            panic!("cycle {cycle} (seed {base_seed}): the child failed: {e}\n{stderr}");
        }
        assert!(
            exited.is_none(),
            "cycle {cycle}: child exited by itself: {status:?}"
        );

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
                    "cycle {cycle} (seed {base_seed}, killed after {delay:?}, {} acked): \
                     recovered state is neither the acknowledged writes nor them plus the one \
                     in flight ({:?})\nfound:    {:?}\nexpected: {:?}",
                    log.acked.len(),
                    log.in_flight,
                    keys(&found),
                    keys(&model)
                ),
            }
        }
        for (k, v) in &model {
            assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]), "cycle {cycle}");
        }
        db.verify()
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {base_seed}): verify: {e}"));
    }
    eprintln!(
        "{cycles} cycles, {total_acked} acknowledged writes, in-flight write recovered {in_flight_applied} times"
    );
    assert!(total_acked > 0, "no write was acknowledged in any cycle");
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
