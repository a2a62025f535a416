//! I/O errors: the standard workload (`common/workload.rs`) on a [`FaultFs`] that fails its
//! N-th file-system call, of any kind (creations, opens, reads, appends, flushes, syncs,
//! directory syncs, renames, removals, links, listings, existence checks, locks, segment opens,
//! reads, writes and syncs, hole punches, memory maps, space queries).
//!
//! Once: that call alone fails, and the workload goes on as an application that retries
//! would. Sticky: every call from the N-th on fails, as a device that is gone, and the
//! workload stops at its first error (closing the handle on the broken device). Either way:
//! - nothing panics (each run is under `catch_unwind`) and nothing hangs (each run is bounded);
//! - no read returns bytes that no acknowledged history gives (the workload checks every get
//!   and scan against the states its history allows);
//! - reopened without faults, the database opens, `verify()` passes, and it holds every
//!   acknowledged write and nothing the history does not allow (an unacknowledged write with
//!   an I/O error may or may not be there, one refused as `Poisoned` must not);
//! - and every kind of call the workload makes was failed at least once.
//!
//! Two more sweeps, whose calls come in the scheduler's order: the workload with the background
//! threads running, and four writer threads sharing group commits, each with calls failed at
//! spread-out points (`EXTENTDB_IO_BACKGROUND_RUNS`, `EXTENTDB_IO_CONCURRENT_RUNS`).
//!
//! N runs over every `EXTENTDB_IO_SWEEP_STRIDE`-th call (default 97) and the first call of
//! each kind; `EXTENTDB_IO_SWEEP_STRIDE=1` fails every call. `EXTENTDB_IO_SWEEP_KINDS=Sync,Append`
//! (`CallKind` names) counts and fails only the calls of those kinds, each kind on its own. Syncs skip the device
//! (`FaultFs::skip_syncs`): nothing here loses power, which is the power-loss test's job.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::workload::{self, MustHold, OnError};
use extentdb::fs::{CallKind, FaultFs, Injected, RealFs, Trigger};
use extentdb::{Durability, Error, ReadPath, WriteBatch};

/// Without faults the workload reads back everything it wrote, and its compactions do every
/// kind of reclamation, so that failing their calls tests something.
#[test]
fn the_workload_without_faults_reads_what_it_wrote_and_reclaims_every_way() {
    let root = tempfile::tempdir().unwrap();
    let report = workload::run(Arc::new(RealFs), root.path(), OnError::Stop);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.wrong.is_empty(), "{:?}", report.wrong);
    let total = |f: fn(&extentdb::Stats) -> u64| report.stats.iter().map(f).sum::<u64>();
    let did = [
        ("value files deleted", total(|s| s.value_files_deleted)),
        ("blocks punched", total(|s| s.value_punched_blocks)),
        ("segments removed", total(|s| s.value_segments_removed)),
        ("values evacuated", total(|s| s.value_evacuations)),
        ("relocations", total(|s| s.value_relocations)),
        ("flushes", total(|s| s.flushes)),
        ("compactions", total(|s| s.compactions)),
    ];
    for (what, n) in did {
        assert!(n > 0, "the workload made no {what}: {did:?}");
    }
    let checked = workload::check(
        Arc::new(RealFs),
        root.path(),
        &report.history,
        MustHold::Acked,
    )
    .unwrap();
    assert_eq!(checked.states, 1);
    eprintln!(
        "writes {:?}, {} keys at the end; {did:?}",
        workload::outcomes(&report.history),
        checked.keys
    );
}

/// The checker can fail: a database that lost an acknowledged write, or holds one never made,
/// is not accepted, and neither is a read of bytes no write gave.
#[test]
fn the_checker_rejects_a_lost_write_an_invented_one_and_a_wrong_read() {
    let root = tempfile::tempdir().unwrap();
    let report = workload::run(Arc::new(RealFs), root.path(), OnError::Stop);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let history = &report.history;
    let last = history.states()[0].iter().next_back().unwrap();
    let (lost, kept) = (last.0.clone(), last.1.clone());
    assert!(history.check_get(&lost, Some(&kept)).is_ok());
    assert!(history.check_get(&lost, Some(b"other")).is_err());
    assert!(history.check_get(&lost, None).is_err());

    let dir = workload::db_dir(root.path());
    let db = workload::options(Arc::new(RealFs), extentdb::ReadPath::Pool)
        .open(&dir)
        .unwrap();
    db.delete(&lost).unwrap();
    drop(db);
    let err = workload::check(Arc::new(RealFs), root.path(), history, MustHold::Acked).unwrap_err();
    assert!(err.contains("matching none"), "{err}");

    let db = workload::options(Arc::new(RealFs), extentdb::ReadPath::Pool)
        .open(&dir)
        .unwrap();
    db.put(&lost, &kept).unwrap();
    db.put("invented", "x").unwrap();
    drop(db);
    let err = workload::check(Arc::new(RealFs), root.path(), history, MustHold::Acked).unwrap_err();
    assert!(err.contains("matching none"), "{err}");
}

/// Runs of the workload longer than this are a hang: a clean one takes well under a second.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Every `STRIDE`-th call is failed by default (a prime, so that no period of the workload
/// lines up with it), as well as the first call of each kind; `EXTENTDB_IO_SWEEP_STRIDE=1`
/// fails every call.
const STRIDE: u64 = 97;

/// The kinds named (by their `CallKind` names, comma-separated) in
/// `EXTENTDB_IO_SWEEP_KINDS`, if set: the sweep then fails the N-th call of each of these kinds
/// alone, for every `stride()`-th N of that kind.
fn focus() -> Option<Vec<CallKind>> {
    let names = std::env::var("EXTENTDB_IO_SWEEP_KINDS").ok()?;
    let kinds = names
        .split(',')
        .map(|name| {
            CallKind::ALL
                .into_iter()
                .find(|k| format!("{k:?}").eq_ignore_ascii_case(name.trim()))
                .unwrap_or_else(|| panic!("EXTENTDB_IO_SWEEP_KINDS: no call kind {name:?}"))
        })
        .collect();
    Some(kinds)
}

fn stride() -> u64 {
    std::env::var("EXTENTDB_IO_SWEEP_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(STRIDE)
}

/// The file system of the sweep: the host's, with syncs that skip the device
/// (`FaultFs::skip_syncs`). Nothing here loses power, so the fdatasyncs would only make the
/// sweep ten times slower.
fn fault_fs() -> FaultFs {
    let fs = FaultFs::default();
    fs.skip_syncs(true);
    fs
}

/// What one run with one trigger did.
struct Case {
    injected: Vec<Injected>,
    /// Steps of the workload that returned an error.
    errors: usize,
}

/// What went wrong in a run.
#[derive(Debug)]
enum Problem {
    Panic(String),
    Hang,
    WrongRead(String),
    /// The reopened database does not open, fails `verify()`, lost an acknowledged write or
    /// holds one never made.
    Recovery(String),
    /// The trigger never fired: the workload made fewer calls than in the clean run.
    NothingFailed,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Panic(what) => write!(f, "panicked: {what}"),
            Problem::Hang => write!(f, "still running after {RUN_LIMIT:?}"),
            Problem::WrongRead(what) => write!(f, "wrong read: {what}"),
            Problem::Recovery(what) => write!(f, "recovery: {what}"),
            Problem::NothingFailed => write!(f, "no call failed"),
        }
    }
}

impl Problem {
    fn name(&self) -> &'static str {
        match self {
            Problem::Panic(_) => "panics",
            Problem::Hang => "hangs",
            Problem::WrongRead(_) => "wrong reads",
            Problem::Recovery(_) => "recovery failures",
            Problem::NothingFailed => "triggers that never fired",
        }
    }
}

/// Runs the workload with `trigger` armed in a fresh directory, then reopens it without faults
/// and checks it.
fn run_case(trigger: Trigger, on_error: OnError) -> Result<Case, Problem> {
    run_case_with(trigger, on_error, false)
}

/// [`run_case`], with the background threads running if `background`.
fn run_case_with(trigger: Trigger, on_error: OnError, background: bool) -> Result<Case, Problem> {
    let root = tempfile::tempdir().unwrap();
    let fs = fault_fs();
    fs.arm(trigger);
    let (run_fs, run_root) = (fs.clone(), root.path().to_path_buf());
    let report =
        bounded(move || workload::run_with(Arc::new(run_fs), &run_root, on_error, background))
            .map_err(|e| match e {
                Problem::Panic(what) => {
                    Problem::Panic(format!("{what} (injected {:?})", fs.injected()))
                }
                other => other,
            })?;
    fs.disarm();
    let injected = fs.injected();
    if injected.is_empty() {
        return Err(Problem::NothingFailed);
    }
    if !report.wrong.is_empty() {
        return Err(Problem::WrongRead(format!(
            "after {injected:?}: {:?}",
            report.wrong
        )));
    }
    workload::check(Arc::new(fs), root.path(), &report.history, MustHold::Acked).map_err(|e| {
        Problem::Recovery(format!(
            "after {injected:?} and the errors {:?}: {e}",
            report.errors
        ))
    })?;
    Ok(Case {
        injected,
        errors: report.errors.len(),
    })
}

/// What kind of file `path` is: its extension, or its name without digits (`MANIFEST-`).
fn file_type(path: &std::path::Path) -> String {
    match path.extension() {
        Some(ext) => ext.to_string_lossy().into_owned(),
        None => path
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .replace(|c: char| c.is_ascii_digit(), "")
            })
            .unwrap_or_default(),
    }
}

/// Runs `f` on its own thread under `catch_unwind`; a panic or a run longer than [`RUN_LIMIT`]
/// is a problem.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Problem> {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Nothing `f` touches is looked at after a panic but the fault layer's ledger, which is
        // only ever changed whole, under its lock.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The receiver is gone only if the test already failed on a hang.
        let _ = done.send(caught);
    });
    match wait.recv_timeout(RUN_LIMIT) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => Err(Problem::Panic(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default(),
        )),
        Err(_) => Err(Problem::Hang),
    }
}

/// The calls a clean run makes: in all, per kind, and the number of the first of each kind.
fn clean_run() -> (u64, BTreeMap<CallKind, u64>, BTreeMap<CallKind, u64>) {
    let root = tempfile::tempdir().unwrap();
    let fs = fault_fs();
    let report = workload::run(Arc::new(fs.clone()), root.path(), OnError::Stop);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let first = fs
        .first_calls()
        .into_iter()
        .map(|(kind, first)| (kind, first.call))
        .collect();
    (fs.calls(), fs.counts(), first)
}

/// Fails call N of the workload for every `stride()`-th N and the first call of each kind:
/// that call only (`sticky` false, and the workload goes on after errors) or every call from
/// it on (`sticky`, and the workload stops at its first error). Every run must end without a
/// panic or a hang and read no wrong bytes; the reopened database must hold every acknowledged
/// write and nothing the history does not allow, and pass `verify()`. Every kind of call the
/// workload makes must have been failed.
fn sweep(sticky: bool) {
    let (calls, counts, first) = clean_run();
    let (calls_again, counts_again, _) = clean_run();
    assert_eq!(
        (calls, &counts),
        (calls_again, &counts_again),
        "the workload must make the same calls every time"
    );
    let stride = usize::try_from(stride()).unwrap();
    // Each target: the kinds counted (None: all) and the call of those to fail.
    let mut targets: Vec<(Option<CallKind>, u64)> = match focus() {
        None => (1..=calls)
            .step_by(stride)
            .chain(first.values().copied())
            .map(|n| (None, n))
            .collect(),
        Some(kinds) => kinds
            .into_iter()
            .flat_map(|k| {
                let of_kind = counts.get(&k).copied().unwrap_or(0);
                (1..=of_kind).step_by(stride).map(move |n| (Some(k), n))
            })
            .collect(),
    };
    targets.sort_unstable();
    targets.dedup();

    let on_error = if sticky {
        OnError::Stop
    } else {
        OnError::Continue
    };
    let mut failed_kinds: BTreeMap<CallKind, u64> = BTreeMap::new();
    let mut first_failed: BTreeMap<CallKind, u64> = BTreeMap::new();
    let mut with_error = 0u64;
    let mut absorbed = BTreeMap::<(CallKind, String), u64>::new();
    let mut problems: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for &(kind, n) in &targets {
        let mut trigger = Trigger::nth(n);
        if let Some(kind) = kind {
            trigger = trigger.only(&[kind]);
        }
        if sticky {
            trigger = trigger.sticky();
        }
        let case = match run_case(trigger, on_error) {
            Ok(case) => case,
            Err(problem) => {
                let what = kind.map_or(String::new(), |k| format!(" of kind {k:?}"));
                let text = format!("failing call {n}{what} (sticky {sticky}): {problem}");
                eprintln!("{text}");
                problems.entry(problem.name()).or_default().push(text);
                continue;
            }
        };
        let first_kind = case.injected[0].kind;
        *first_failed.entry(first_kind).or_default() += 1;
        for f in &case.injected {
            *failed_kinds.entry(f.kind).or_default() += 1;
        }
        if case.errors > 0 {
            with_error += 1;
        } else {
            let file = file_type(&case.injected[0].path);
            *absorbed.entry((first_kind, file)).or_default() += 1;
        }
    }
    let counted = |name| problems.get(name).map_or(0, Vec::len);
    eprintln!(
        "sticky {sticky}: a clean run makes {calls} calls {counts:?}\n\
         failed call N for {} values of N (every {stride}-th, and the first of each kind, \
         or of the kinds in EXTENTDB_IO_SWEEP_KINDS); \
         the first call failed, by kind: {first_failed:?}\n\
         {with_error} runs returned an error; in {} the engine absorbed the failure: {absorbed:?}\n\
         calls failed in all, by kind: {failed_kinds:?}\n\
         panics={} hangs={} wrong reads={} recovery failures={} triggers that never fired={}",
        targets.len(),
        absorbed.values().sum::<u64>(),
        counted("panics"),
        counted("hangs"),
        counted("wrong reads"),
        counted("recovery failures"),
        counted("triggers that never fired"),
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let never: Vec<_> = counts
        .keys()
        .filter(|k| !failed_kinds.contains_key(k))
        .filter(|k| {
            targets
                .iter()
                .all(|(focus, _)| focus.is_none_or(|f| f == **k))
        })
        .collect();
    assert!(
        never.is_empty(),
        "kinds the workload makes but the sweep never failed: {never:?}"
    );
}

#[test]
fn the_workload_survives_any_one_call_failing() {
    sweep(false);
}

#[test]
fn the_workload_survives_the_file_system_failing_from_any_call_on() {
    sweep(true);
}

/// With the background threads running, the calls come in an order the scheduler picks and a
/// failure may hit a flush or compaction job while writers wait for it: calls are failed at
/// spread-out points, once and sticky, and each run must still end, without a panic, with a
/// database that reopens holding every acknowledged write.
#[test]
fn background_jobs_failing_never_hang_writers_or_lose_writes() {
    let (calls, _, _) = clean_run();
    let runs = std::env::var("EXTENTDB_IO_BACKGROUND_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16u64);
    let mut problems = Vec::new();
    let (mut fired, mut with_error) = (0u64, 0u64);
    for i in 0..runs {
        let n = 1 + (i * 7919 + 13) % calls;
        let sticky = i % 2 == 1;
        let trigger = if sticky {
            Trigger::nth(n).sticky()
        } else {
            Trigger::nth(n)
        };
        let on_error = if sticky {
            OnError::Stop
        } else {
            OnError::Continue
        };
        match run_case_with(trigger, on_error, true) {
            Ok(case) => {
                fired += 1;
                with_error += u64::from(case.errors > 0);
            }
            // Background jobs the scheduler did not run make fewer calls.
            Err(Problem::NothingFailed) => {}
            Err(problem) => {
                let text = format!("background, failing call {n} (sticky {sticky}): {problem}");
                eprintln!("{text}");
                problems.push(text);
            }
        }
    }
    eprintln!(
        "background threads: {runs} runs, {fired} injected a failure, {with_error} saw an \
         error, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

/// What one writer thread did to its own keys: each put, and whether it was acknowledged.
type WriterLog = Vec<(Vec<u8>, Vec<u8>, bool)>;

/// Four threads write their own keys (values of 8 bytes to 20 KiB, every seventh `Sync`,
/// flushing now and then), so their writes share group commits, while the N-th call fails.
/// Each acknowledged put must read back at once; after the writers end, a `compact()`, the
/// drop and a reopen without faults, each key must hold its last acknowledged value or a
/// later put of it that returned an I/O error, and `verify()` must pass.
fn concurrent_case(n: u64, sticky: bool, background: bool) -> Result<bool, Problem> {
    let root = tempfile::tempdir().unwrap();
    let dir = workload::db_dir(root.path());
    let fs = fault_fs();
    let trigger = Trigger::nth(n);
    fs.arm(if sticky { trigger.sticky() } else { trigger });
    let options =
        workload::options(Arc::new(fs.clone()), ReadPath::Pool).background_compaction(background);
    let run_dir = dir.clone();
    let logs = bounded(move || -> Result<Vec<WriterLog>, Problem> {
        let Ok(db) = options.open(&run_dir) else {
            return Ok(Vec::new());
        };
        let db = Arc::new(db);
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let db = Arc::clone(&db);
                std::thread::spawn(move || write_own_keys(&db, t))
            })
            .collect();
        let logs = writers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| Problem::Panic("a writer panicked".into()))?
            })
            .collect::<Result<Vec<_>, Problem>>()?;
        let _ = db.compact();
        Ok(logs)
    })??;
    fs.disarm();
    let fired = !fs.injected().is_empty();
    let db = workload::options(Arc::new(fs.clone()), ReadPath::Pool)
        .open(&dir)
        .map_err(|e| Problem::Recovery(format!("reopen: {e}")))?;
    db.verify()
        .map_err(|e| Problem::Recovery(format!("verify: {e}")))?;
    for log in &logs {
        for (key, _, _) in log {
            let got = db
                .get(key)
                .map_err(|e| Problem::Recovery(format!("get: {e}")))?;
            let puts: Vec<_> = log.iter().filter(|(k, _, _)| k == key).collect();
            let from = puts.iter().rposition(|(_, _, acked)| *acked);
            let mut allowed: Vec<Option<&[u8]>> = match from {
                Some(i) => puts[i..]
                    .iter()
                    .map(|(_, v, _)| Some(v.as_slice()))
                    .collect(),
                None => puts.iter().map(|(_, v, _)| Some(v.as_slice())).collect(),
            };
            if from.is_none() {
                allowed.push(None);
            }
            if !allowed.contains(&got.as_deref()) {
                // Which of the key's puts came back, if any: an older one points at a lost log
                // tail, bytes of none at a damaged value.
                let read = match got.as_deref() {
                    None => "nothing".to_string(),
                    Some(v) => puts.iter().position(|(_, p, _)| p == v).map_or_else(
                        || format!("{} bytes of none of its puts", v.len()),
                        |i| format!("its put {i}"),
                    ),
                };
                return Err(Problem::Recovery(format!(
                    "{} lost its last acknowledged put, {} of {}, and read {read} (injected {:?})",
                    String::from_utf8_lossy(key),
                    from.map_or(0, |i| i + 1),
                    puts.len(),
                    fs.injected()
                )));
            }
        }
    }
    Ok(fired)
}

/// Writer `t`'s puts to its 20 keys; an acknowledged put must read back.
fn write_own_keys(db: &extentdb::Db, t: u64) -> Result<WriterLog, Problem> {
    let mut log = WriterLog::new();
    for i in 0..150u64 {
        let key = format!("t{t}k{:02}", i % 20).into_bytes();
        let value = workload::value(t * 1000 + i, [8, 100, 3000, 20_000][(i % 4) as usize]);
        let mut batch = WriteBatch::new();
        batch.put(&key, &value);
        let durability = if i % 7 == 0 {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        match db.write_with(batch, durability) {
            Ok(()) => {
                if let Ok(got) = db.get(&key)
                    && got.as_deref() != Some(value.as_slice())
                {
                    return Err(Problem::WrongRead(format!(
                        "{} does not read back its acknowledged put",
                        String::from_utf8_lossy(&key)
                    )));
                }
                log.push((key, value, true));
            }
            Err(Error::Poisoned) => {}
            Err(_) => log.push((key, value, false)),
        }
        if i % 50 == 49 {
            let _ = db.flush();
        }
    }
    Ok(log)
}

/// [`concurrent_case`] for calls spread over the first 7,600 (a run makes about 7,700 when
/// nothing fails), once and sticky, with and without the background threads;
/// `EXTENTDB_IO_CONCURRENT_RUNS` sets how many (default 16).
#[test]
fn concurrent_writers_lose_no_acknowledged_write_when_a_call_fails() {
    let runs = std::env::var("EXTENTDB_IO_CONCURRENT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16u64);
    let mut problems = Vec::new();
    let mut fired = 0;
    for r in 0..runs {
        let n = if r == 0 {
            u64::MAX
        } else {
            1 + (r * 397) % 8000
        };
        let (sticky, background) = (r % 2 == 1, r % 4 < 2);
        match concurrent_case(n, sticky, background) {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err(problem) => {
                let text = format!(
                    "concurrent writers, failing call {n} (sticky {sticky}, background \
                 {background}): {problem}"
                );
                eprintln!("{text}");
                problems.push(text);
            }
        }
    }
    eprintln!(
        "concurrent writers: {runs} runs, {fired} injected a failure, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
