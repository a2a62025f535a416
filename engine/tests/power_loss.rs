//! Power loss at every sync point: the standard workload (`common/workload.rs`) runs on a
//! [`MemFs`], which cuts the power at one sync point (every `fdatasync` of a file or segment
//! and every directory sync is one), just before or just after it takes effect. The database
//! is then reopened on what a power loss leaves ([`MemFs::after_power_loss`]): the synced
//! state only, and that state with seeded parts of the unsynced writes kept (torn appends,
//! pages old or new, a prefix of each directory's changes).
//!
//! Each recovered database must hold a state some prefix of the acknowledged history leaves,
//! one that keeps every write a sync covered (a `Sync` write, `Db::sync`, `Db::flush`,
//! `Db::compact`, a checkpoint); every `get` must agree with the scan; `verify()` must pass;
//! a checkpoint that was acknowledged must open and hold its state; and the database must
//! take a `Sync` write and hold it across one more reopen. See `docs/testing.md`.
//!
//! By default 24 sync points spread over the workload are cut at; `EXTENTDB_POWER_POINTS=all`
//! cuts at every one (or a number: that many), and `EXTENTDB_POWER_SEEDS` sets how many torn
//! images are checked per cut (default 1, besides the synced-only image).

#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::workload::{self, History, MustHold, OnError, Op, Report};
use extentdb::fs::{CutAt, MemFs, Unsynced};
use extentdb::{Db, Durability, ReadPath, WriteBatch};

const ROOT: &str = "/power";

/// How many sync points to cut at, spread evenly over the workload: `EXTENTDB_POWER_POINTS`
/// (`all` for every one), 24 by default.
fn points_to_cut(points: u64) -> Vec<u64> {
    let wanted = match std::env::var("EXTENTDB_POWER_POINTS").as_deref() {
        Ok("all") => points,
        Ok(n) => n.parse().unwrap_or(24),
        Err(_) => 24,
    };
    let wanted = wanted.clamp(1, points);
    let mut chosen: Vec<u64> = (0..wanted).map(|j| 1 + j * points / wanted).collect();
    chosen.dedup();
    chosen
}

/// How many torn images to check per cut, besides the synced one: `EXTENTDB_POWER_SEEDS`, 1
/// by default.
fn torn_seeds() -> u64 {
    std::env::var("EXTENTDB_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Which syncs the disk ignores ([`MemFs::ignore_syncs`]); none for an honest one.
type Lies = Option<fn(&Path) -> bool>;

/// Runs the workload on a fresh `MemFs`, with the power cut at `cut` if given.
fn run(cut: Option<(u64, CutAt)>, lies: Lies) -> (MemFs, Report) {
    let fs = MemFs::new();
    if let Some((number, at)) = cut {
        fs.cut_power_at_sync(number, at);
    }
    if let Some(lies) = lies {
        fs.ignore_syncs(lies);
    }
    let report = workload::run(Arc::new(fs.clone()), Path::new(ROOT), OnError::Stop);
    (fs, report)
}

/// Checks a database recovered from `image` against the history of `report`, then that it
/// takes a synced write and keeps it across one more reopen.
fn check(image: &MemFs, history: &History) -> Result<(), String> {
    let root = Path::new(ROOT);
    workload::check(Arc::new(image.clone()), root, history, MustHold::Synced)?;
    let open =
        || workload::options(Arc::new(image.clone()), ReadPath::Pool).open(workload::db_dir(root));
    let db = open().map_err(|e| format!("second open: {e}"))?;
    let mut batch = WriteBatch::new();
    batch.put(b"after the power loss", workload::value(7, 3000));
    db.write_with(batch, Durability::Sync)
        .map_err(|e| format!("write after recovery: {e}"))?;
    drop(db);
    let db = open().map_err(|e| format!("third open: {e}"))?;
    let got = db
        .get(b"after the power loss")
        .map_err(|e| format!("get after the third open: {e}"))?;
    if got.as_deref() != Some(workload::value(7, 3000).as_slice()) {
        return Err("a synced write after recovery was lost by a clean reopen".into());
    }
    db.verify()
        .map_err(|e| format!("verify after the third open: {e}"))?;
    Ok(())
}

/// The images a cut is checked on: the synced state, then `torn_seeds()` torn ones.
fn images_of(number: u64, at: CutAt) -> impl Iterator<Item = Unsynced> {
    let base = number * 2 + u64::from(at == CutAt::AfterSync);
    std::iter::once(Unsynced::Lost).chain((0..torn_seeds()).map(move |i| Unsynced::Torn {
        seed: base.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i,
    }))
}

/// What cutting the power at one sync point found.
#[derive(Default)]
struct Outcome {
    images: u64,
    violations: Vec<String>,
    acked: usize,
}

/// Cuts the power at sync point `number`, at `at`, and checks every image of what is left.
fn cut_and_check(number: u64, at: CutAt, lies: Lies) -> Outcome {
    let (fs, report) = run(Some((number, at)), lies);
    let mut outcome = Outcome {
        acked: report.history.acked(),
        ..Outcome::default()
    };
    if fs.has_power() {
        outcome.violations.push(format!(
            "sync point {number} was not reached: the workload is not deterministic"
        ));
        return outcome;
    }
    for wrong in &report.wrong {
        outcome.violations.push(format!(
            "cut at sync {number} {at:?}: read before the cut: {wrong}"
        ));
    }
    for unsynced in images_of(number, at) {
        outcome.images += 1;
        let checked = fs
            .after_power_loss(unsynced)
            .map_err(|e| format!("image: {e}"))
            .and_then(|image| check(&image, &report.history));
        if let Err(e) = checked {
            outcome
                .violations
                .push(format!("cut at sync {number} {at:?}, {unsynced:?}: {e}"));
        }
    }
    outcome
}

#[test]
fn every_sync_point_survives_a_power_cut_before_and_after_it() {
    let (fs, clean) = run(None, None);
    assert!(
        clean.errors.is_empty() && clean.wrong.is_empty(),
        "the workload fails without a power cut: {:?} {:?}",
        clean.errors,
        clean.wrong
    );
    let points = fs.sync_count();
    assert!(points > 50, "only {points} sync points");
    let cuts: Vec<(u64, CutAt)> = points_to_cut(points)
        .into_iter()
        .flat_map(|n| [(n, CutAt::BeforeSync), (n, CutAt::AfterSync)])
        .collect();
    // Each cut is independent: spread them over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<(u64, CutAt)> =
                    cuts.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|(n, at)| cut_and_check(n, at, None))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a cut panicked"))
            .collect()
    });
    let images: u64 = outcomes.iter().map(|o| o.images).sum();
    let acked: usize = outcomes.iter().map(|o| o.acked).sum();
    let violations: Vec<&String> = outcomes.iter().flat_map(|o| &o.violations).collect();
    println!(
        "{points} sync points in the workload ({} writes acknowledged); {} cuts at {} of \
         them; {images} images checked ({} torn per cut); {acked} acknowledged writes judged; \
         {} violations",
        clean.history.acked(),
        cuts.len(),
        cuts.len() / 2,
        torn_seeds(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations, first ones:\n{}",
        violations.len(),
        violations
            .iter()
            .take(10)
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How many of 8 cuts spread over the workload find a violation on a disk that ignores the
/// syncs `lies` accepts.
fn violations_with_lies(lies: fn(&Path) -> bool) -> usize {
    let (fs, _) = run(None, None);
    let cuts = points_to_cut(fs.sync_count()).into_iter().step_by(3);
    cuts.filter(|&n| {
        !cut_and_check(n, CutAt::AfterSync, Some(lies))
            .violations
            .is_empty()
    })
    .count()
}

/// Teeth: a disk that ignores the log's syncs (as a log writer that skipped its `fdatasync`
/// would) loses acknowledged `Sync` writes at a power loss, and the checks see it.
#[test]
fn the_checks_fail_when_the_logs_syncs_are_ignored() {
    let found = violations_with_lies(|p| p.extension().is_some_and(|e| e == "wal"));
    assert!(found > 0, "no cut found the lost log syncs");
}

/// Teeth: a disk that ignores the database directory's syncs (as an engine that never
/// synced the directory after creating a file would) loses files at a power loss, and the
/// checks see it.
#[test]
fn the_checks_fail_when_the_directorys_syncs_are_ignored() {
    let found = violations_with_lies(|p| p == workload::db_dir(Path::new(ROOT)));
    assert!(found > 0, "no cut found the lost directory syncs");
}

/// Writes of the background run: puts of every size over 40 keys (so values die and the
/// value thread reclaims them), deletes, range deletes and batches.
const BACKGROUND_WRITES: u64 = 160;

/// `op` as a write batch.
fn to_batch(op: &Op, batch: &mut WriteBatch) {
    match op {
        Op::Put { key, value } => {
            batch.put(key, value);
        }
        Op::Delete { key } => {
            batch.delete(key);
        }
        Op::DeleteRange { start, end } => {
            batch.delete_range(start.as_slice()..end.as_slice());
        }
        Op::Batch(ops) => ops.iter().for_each(|op| to_batch(op, batch)),
    }
}

/// The `i`th write of the background run.
fn background_op(i: u64) -> Op {
    let key = |n: u64| workload::key(n % 40);
    let put = |n: u64| Op::Put {
        key: key(n),
        value: workload::value(
            i,
            match n % 4 {
                0 => 30,
                1 => 700,
                2 => 3000,
                _ => 9000,
            },
        ),
    };
    match i % 10 {
        6 => Op::Delete { key: key(i * 3) },
        7 => Op::DeleteRange {
            start: key(i),
            end: key(i + 3),
        },
        8 => Op::Batch(vec![
            put(i * 5),
            Op::Delete { key: key(i + 1) },
            put(i * 11),
        ]),
        _ => put(i * 7),
    }
}

/// Writes [`BACKGROUND_WRITES`] writes with the flush, compaction and value threads running,
/// every fourth with `Sync`, compacting now and then, until a write fails.
fn background_run(fs: &MemFs) -> History {
    let mut history = History::default();
    let options =
        workload::options(Arc::new(fs.clone()), ReadPath::Pool).background_compaction(true);
    let Ok(db) = options.open(workload::db_dir(Path::new(ROOT))) else {
        return history;
    };
    for i in 0..BACKGROUND_WRITES {
        let op = background_op(i);
        let durability = if i % 4 == 3 {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        let mut batch = WriteBatch::new();
        to_batch(&op, &mut batch);
        let result = db.write_with(batch, durability);
        let failed = result.is_err();
        history.record(op, durability, &result);
        let step = match i % 40 {
            19 => Some(Db::sync(&db)),
            39 => Some(db.compact()),
            _ => None,
        };
        match step {
            Some(Ok(())) => history.synced(),
            Some(Err(_)) => break,
            None if failed => break,
            None => {}
        }
    }
    history
}

/// The background path: flushes, index compactions and value reclamation run on their
/// threads while the writer writes. Their syncs interleave differently on each run, so a
/// sync point's number does not name the same moment twice; every cut is still a real power
/// loss, judged against that run's own history. A run that ends before its cut is skipped.
#[test]
fn power_cuts_with_background_jobs_keep_a_prefix() {
    let fs = MemFs::new();
    let history = background_run(&fs);
    assert_eq!(history.acked(), BACKGROUND_WRITES as usize);
    let points = fs.sync_count();
    let (mut cut, mut skipped, mut images, mut violations) = (0, 0, 0u64, Vec::new());
    for (j, number) in points_to_cut(points).into_iter().enumerate() {
        let at = if j % 2 == 0 {
            CutAt::BeforeSync
        } else {
            CutAt::AfterSync
        };
        let fs = MemFs::new();
        fs.cut_power_at_sync(number, at);
        let history = background_run(&fs);
        if fs.has_power() {
            skipped += 1;
            continue;
        }
        cut += 1;
        for unsynced in images_of(number, at) {
            images += 1;
            let checked = fs
                .after_power_loss(unsynced)
                .map_err(|e| format!("image: {e}"))
                .and_then(|image| check(&image, &history));
            if let Err(e) = checked {
                violations.push(format!("cut at sync {number} {at:?}, {unsynced:?}: {e}"));
            }
        }
    }
    println!(
        "background: {points} sync points in the first run; {cut} cuts, {skipped} not \
         reached; {images} images checked; {} violations",
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations, first ones:\n{}",
        violations.len(),
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Regression: the directories `Db::open` created were never synced in their parents, so a
/// power loss took the whole database away, with every `Sync` write in it.
#[test]
fn a_new_database_directory_survives_a_power_loss() {
    let fs = MemFs::new();
    let options = || common::tiny().file_system(Arc::new(fs.clone()));
    let db = options().open("/new/parent/db").unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"k", b"v");
    db.write_with(batch, Durability::Sync).unwrap();
    let image = fs.after_power_loss(Unsynced::Lost).unwrap();
    drop(db);
    let db = common::tiny()
        .file_system(Arc::new(image))
        .create_if_missing(false)
        .open("/new/parent/db")
        .unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(b"v".as_slice()));
}
/// Regression: recovery wrote the values of an unsynced log into a synced table without
/// syncing the value bytes the table points at, so a power loss after a clean restart left
/// pointers to lost bytes (`Corruption` on every read of those keys).
#[test]
fn recovery_syncs_the_values_it_makes_durable() {
    let fs = MemFs::new();
    let options = || {
        common::tiny()
            .value_threshold_bytes(64)
            .background_compaction(false)
            .file_system(Arc::new(fs.clone()))
    };
    let value = workload::value(1, 5000);
    let db = options().open("/db").unwrap();
    db.put(b"k", &value).unwrap();
    // A clean close leaves the write in the log and the value in a segment, neither synced;
    // the next open recovers the write into a table and makes it durable.
    drop(db);
    drop(options().open("/db").unwrap());
    let image = fs.after_power_loss(Unsynced::Lost).unwrap();
    let db = common::tiny()
        .value_threshold_bytes(64)
        .file_system(Arc::new(image))
        .open("/db")
        .unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(value.as_slice()));
    db.verify().unwrap();
}

/// Regression: a power loss could keep a `Buffered` write's log record but not its value
/// bytes (two files, written back in any order); recovery replayed the pointer and every read
/// of the key was `Corruption`. Such a record, and every later one, is now a torn tail.
#[test]
fn a_logged_write_whose_value_was_lost_is_a_torn_tail() {
    let fs = MemFs::new();
    let db = common::tiny()
        .value_threshold_bytes(64)
        .background_compaction(false)
        .file_system(Arc::new(fs.clone()))
        .open("/db")
        .unwrap();
    let (large, later) = (workload::value(1, 5000), workload::value(2, 10));
    db.put(b"large", &large).unwrap();
    db.put(b"later", &later).unwrap();
    let (mut kept, mut dropped) = (0, 0);
    for seed in 0..64 {
        let image = fs.after_power_loss(Unsynced::Torn { seed }).unwrap();
        let db = common::tiny()
            .value_threshold_bytes(64)
            .file_system(Arc::new(image))
            .open("/db")
            .unwrap();
        let got = db.get(b"large").unwrap();
        assert!(got.is_none() || got.as_deref() == Some(large.as_slice()));
        if got.is_none() {
            assert_eq!(
                db.get(b"later").unwrap(),
                None,
                "seed {seed}: a hole in the history"
            );
            dropped += 1;
        } else {
            kept += 1;
        }
        db.verify().unwrap();
    }
    assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");
}
