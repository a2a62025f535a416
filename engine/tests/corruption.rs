//! Damaged bytes on disk are reported as `Error::Corruption` naming the damaged file, never
//! read as wrong values and never a panic, a hang or an unbounded allocation.
//!
//! Targeted cases damage one byte of a write-ahead log record in the middle of the log, of a
//! table block and of a manifest record. Sweeps damage the bytes of every file kind of a small
//! database in turn (a write-ahead log, a table, the manifest, a manifest full of extent
//! records and dead ranges, `CURRENT`, a value segment): each byte XORed, each byte zeroed,
//! each 512-byte sector zeroed, the file cut at each length, and in a segment each sector
//! overwritten by its neighbour (a misdirected write). Each case reopens a copy of the database
//! and reads everything: every read must return exactly the right data or an error, within
//! [`CASE_TIME_LIMIT`] and without any single allocation over the documented bound (a counting
//! global allocator measures it). A damaged log tail may instead be dropped, as a crash would
//! leave it.
//!
//! Figures: run with `-- --nocapture` to see each sweep's counts. Files up to 256 bytes are
//! swept at every byte; larger ones at about 160 positions per damage mode by default, and at
//! every byte with `EXTENTDB_SWEEP_STRIDE=1` (best in a release build).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{Model, try_scan as scan};
use extentdb::{Db, Error, Options};

/// Files stay where they were written: no background flush or compaction. Values of 1 KiB and
/// more go to value files, over 64 KiB segments. A 4 MiB memtable, whose hash index (256 KiB)
/// stays under the allocation bound the sweeps hold every case to.
fn still() -> Options {
    Options::new()
        .memtable_bytes(4 << 20)
        .block_size_bytes(256)
        .value_segment_bytes(64 << 10)
        .background_compaction(false)
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-{}", "#".repeat((i % 23) as usize)).into_bytes()
}

fn files_named(dir: &Path, suffix_or_prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(suffix_or_prefix) || name.starts_with(suffix_or_prefix)
        })
        .collect();
    found.sort();
    found
}

fn only_file(dir: &Path, pattern: &str) -> PathBuf {
    let found = files_named(dir, pattern);
    assert_eq!(found.len(), 1, "expected one {pattern} file in {found:?}");
    found.into_iter().next().unwrap()
}

fn flip(path: &Path, offset: usize, mask: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= mask;
    fs::write(path, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Record offsets and payload lengths of a record log (`docs/format/wal.md`).
fn records(path: &Path) -> Vec<(usize, usize)> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 13 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((at, len));
        at += 13 + len;
    }
    assert_eq!(
        at,
        bytes.len(),
        "{} is not a whole number of records",
        path.display()
    );
    out
}

fn assert_corruption_in(result: extentdb::Result<impl std::fmt::Debug>, file: &Path, what: &str) {
    match result {
        Err(Error::Corruption { file: f, .. }) => {
            assert_eq!(
                f.file_name(),
                file.file_name(),
                "{what}: corruption names the wrong file"
            );
        }
        other => panic!(
            "{what}: expected corruption in {}, got {other:?}",
            file.display()
        ),
    }
}

/// Writes `n` keys and returns the model.
fn write_keys(db: &Db, n: u32) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        db.put(key(i), value(i)).unwrap();
        model.insert(key(i), value(i));
    }
    model
}

/// A database whose only write-ahead log holds `n` records (one put each), closed.
fn db_with_log_records(dir: &Path, n: u32) -> (Model, PathBuf) {
    let model = {
        let db = still().open(dir).unwrap();
        write_keys(&db, n)
    };
    let logs: Vec<PathBuf> = files_named(dir, ".wal")
        .into_iter()
        .filter(|p| fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = logs.into_iter().next().unwrap();
    assert_eq!(records(&log).len(), n as usize);
    (model, log)
}

#[test]
fn damaged_payload_of_a_middle_log_record_is_corruption_naming_the_log() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = db_with_log_records(dir.path(), 6);
    let (at, len) = records(&log)[2];
    flip(&log, at + 13 + len / 2, 0x40);
    assert_corruption_in(still().open(dir.path()), &log, "open");
    // The damage is not repaired or hidden by the failed open: it fails again.
    assert_corruption_in(still().open(dir.path()), &log, "second open");
}

#[test]
fn damaged_header_of_a_middle_log_record_is_corruption_naming_the_log() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = db_with_log_records(dir.path(), 6);
    let (at, _) = records(&log)[3];
    // The length field: the reader cannot know where the record ends.
    flip(&log, at + 5, 0x01);
    assert_corruption_in(still().open(dir.path()), &log, "open");
}

#[test]
fn damaged_last_log_record_is_a_torn_tail_and_the_rest_survives() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (mut model, log) = db_with_log_records(dir.path(), 6);
    let (at, len) = *records(&log).last().unwrap();
    flip(&log, at + 13 + len - 1, 0x01);
    let db = still().open(dir.path()).unwrap();
    model.remove(&key(5));
    assert_eq!(scan(&db).unwrap(), model);
    db.verify().unwrap();
}

/// A database with its data in one table (and an empty log), closed.
fn db_with_one_table(dir: &Path, n: u32) -> (Model, PathBuf) {
    let model = {
        let db = still().open(dir).unwrap();
        let model = write_keys(&db, n);
        db.flush().unwrap();
        model
    };
    (model, only_file(dir, ".sst"))
}

#[test]
fn damaged_table_block_is_corruption_naming_the_table() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = db_with_one_table(dir.path(), 200);
    // Inside the first data block (blocks are about 256 bytes).
    flip(&table, 40, 0x08);
    let db = match still().open(dir.path()) {
        Ok(db) => db,
        Err(e) => return assert_corruption_in(Err::<(), _>(e), &table, "open"),
    };
    assert_corruption_in(db.verify(), &table, "verify");
    assert_corruption_in(scan(&db), &table, "scan");
    assert_corruption_in(
        db.range::<&[u8], _>(..).rev().last().unwrap(),
        &table,
        "reverse scan",
    );
    // The first key lives in the damaged block; keys elsewhere still read correctly.
    assert_corruption_in(db.get(key(0)), &table, "get");
    let last = key(199);
    assert_eq!(
        db.get(&last).unwrap().as_deref(),
        model.get(&last).map(|v| &v[..])
    );
}

/// A database whose manifest holds several edits: tables added by flushes and replaced by a
/// compaction, closed. Returns the model and the manifest.
fn db_with_manifest_edits(dir: &Path) -> (Model, PathBuf) {
    let model = {
        let db = still().open(dir).unwrap();
        let mut model = write_keys(&db, 20);
        db.flush().unwrap();
        for i in 10..30 {
            db.put(key(i), b"second").unwrap();
            model.insert(key(i), b"second".to_vec());
        }
        db.flush().unwrap();
        db.compact().unwrap();
        for i in 40..45 {
            db.put(key(i), b"third").unwrap();
            model.insert(key(i), b"third".to_vec());
        }
        db.flush().unwrap();
        model
    };
    (model, only_file(dir, "MANIFEST-"))
}

#[test]
fn damaged_first_manifest_record_is_corruption_naming_the_manifest() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_, manifest) = db_with_manifest_edits(dir.path());
    let recs = records(&manifest);
    assert!(recs.len() >= 3, "{recs:?}");
    let (at, len) = recs[0];
    flip(&manifest, at + 13 + len / 2, 0x02);
    assert_corruption_in(still().open(dir.path()), &manifest, "open");
}

#[test]
fn damaged_last_manifest_record_is_corruption_not_silent_loss() {
    let _serial = one_test_at_a_time();
    // The last edit was synced before the log it replaced was deleted: damage to it cannot
    // be a torn write, and dropping it loses the table it added.
    let dir = tempfile::tempdir().unwrap();
    let (model, manifest) = db_with_manifest_edits(dir.path());
    let (at, len) = *records(&manifest).last().unwrap();
    flip(&manifest, at + 13 + len / 2, 0x02);
    match still().open(dir.path()) {
        Err(e) => assert_corruption_in(Err::<(), _>(e), &manifest, "open"),
        Ok(db) => {
            let keys = |m: &Model| m.keys().map(|k| show(k)).collect::<Vec<_>>();
            assert_eq!(
                keys(&scan(&db).unwrap()),
                keys(&model),
                "open succeeded and lost data"
            );
        }
    }
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// Sweeps: the machinery.

/// The process's largest single allocation (or reallocation) since the counter was reset.
static LARGEST_ALLOCATION_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording the largest request it serves, so that a case can fail on
/// a decoder that sizes a buffer from damaged bytes even when the machine has the memory.
struct LargestAllocation;

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the only addition is an atomic store, which neither allocates nor
// unwinds.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION_BYTES.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller upholds `realloc`'s contract: `ptr` came from this allocator
        // (hence from `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// No case may take longer: a decoder that loops on damaged bytes fails the case instead of
/// hanging the test.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The engine's documented bound on one allocation while it opens and reads a database
/// (`docs/format/bounds.md`): the largest of the log reader's buffer,
/// the largest file of the database, and the largest value stored, which for the small
/// databases swept here is the first of them.
fn allocation_bound_bytes(dir: &Path) -> usize {
    const LOG_READ_BUFFER_BYTES: usize = 1 << 20;
    let largest_file = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len() as usize)
        .max()
        .unwrap_or(0);
    LOG_READ_BUFFER_BYTES.max(largest_file)
}

/// The tests of this binary run one at a time: the allocation counter is process-wide, and a
/// test building its database at the same time as another's case would be measured with it.
static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the binary's tests to one at a time (see [`ONE_TEST_AT_A_TIME`]).
fn one_test_at_a_time() -> MutexGuard<'static, ()> {
    ONE_TEST_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What reading everything in a damaged database showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The database opened and every read returned exactly the expected data.
    Intact,
    /// Some read (or the open) returned an acceptable error, and no read returned wrong data.
    Detected,
}

/// Why a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The engine panicked.
    Panic,
    /// A read returned data other than the expected data, or a scan ended early.
    WrongData,
    /// A read returned an error the sweep does not accept (say, `Io` for a checksum failure).
    BadError,
    /// Damage that must be reported was not, or damage that must be tolerated (a torn log
    /// tail) was reported.
    Misjudged,
    /// The case took longer than [`CASE_TIME_LIMIT`].
    TooSlow,
    /// One allocation exceeded the documented bound.
    TooLarge,
}

/// What one case did, as measured around it.
#[derive(Debug)]
struct CaseReport {
    outcome: Result<Outcome, (Failure, String)>,
    elapsed: Duration,
    largest_allocation_bytes: usize,
}

/// Runs `work` on a thread of its own, waiting at most `limit`, and measures its time and
/// largest allocation. A panic inside `work` is caught and reported as a failure. The caller
/// holds [`one_test_at_a_time`], so that nothing else allocates meanwhile.
fn run_case<F>(limit: Duration, work: F) -> CaseReport
where
    F: FnOnce() -> Result<Outcome, (Failure, String)> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    LARGEST_ALLOCATION_BYTES.store(0, Ordering::Relaxed);
    let started = Instant::now();
    thread::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            Err((Failure::Panic, format!("panic: {msg}")))
        });
        // The receiver is gone only after a timeout, which is already a failure.
        let _ = tx.send(result);
    });
    let outcome = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| Err((Failure::TooSlow, format!("no answer within {limit:?}"))));
    CaseReport {
        outcome,
        elapsed: started.elapsed(),
        largest_allocation_bytes: LARGEST_ALLOCATION_BYTES.load(Ordering::Relaxed),
    }
}

/// The verdict on a case: its own outcome, unless it allocated more than `bound_bytes` at once.
/// A panic stays a panic: the panic hook's backtrace may allocate more than the bound.
fn judge(report: CaseReport, bound_bytes: usize) -> Result<Outcome, (Failure, String)> {
    let panicked = matches!(report.outcome, Err((Failure::Panic, _)));
    if report.largest_allocation_bytes > bound_bytes && !panicked {
        return Err((
            Failure::TooLarge,
            format!(
                "allocated {} bytes at once, over the bound of {bound_bytes}",
                report.largest_allocation_bytes
            ),
        ));
    }
    report.outcome
}

/// Opens `dir` with `options` and reads everything: gets of every key of `expected` and of
/// absent keys, scans both ways, `verify`. Every read must return exactly what `expected`
/// holds or an error that `error_ok` accepts.
fn read_everything(
    dir: &Path,
    options: &Options,
    expected: &Model,
    error_ok: fn(&Error) -> bool,
) -> Result<Outcome, (Failure, String)> {
    let mut detected = false;
    let mut check_err = |e: Error, what: &str| {
        if error_ok(&e) {
            detected = true;
            Ok(())
        } else {
            Err((Failure::BadError, format!("{what}: unexpected error {e:?}")))
        }
    };
    let wrong = |what: String| Err((Failure::WrongData, what));
    let db = match options.clone().open(dir) {
        Ok(db) => db,
        Err(e) => {
            check_err(e, "open")?;
            return Ok(Outcome::Detected);
        }
    };
    for (k, v) in expected {
        match db.get(k) {
            Ok(got) if got.as_deref() == Some(&v[..]) => {}
            Ok(got) => return wrong(format!("get {}: wrong answer {got:?}", show(k))),
            Err(e) => check_err(e, "get")?,
        }
    }
    for absent in [b"absent".to_vec(), key(9999)] {
        match db.get(&absent) {
            Ok(None) => {}
            Ok(got) => return wrong(format!("get {}: wrong answer {got:?}", show(&absent))),
            Err(e) => check_err(e, "get")?,
        }
    }
    for reverse in [false, true] {
        let mut want: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if reverse {
            Box::new(expected.iter().rev())
        } else {
            Box::new(expected.iter())
        };
        let items = db.range::<&[u8], _>(..);
        let items: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(items.rev())
        } else {
            Box::new(items)
        };
        let mut failed = false;
        for item in items {
            match item {
                Ok((k, v)) => {
                    let expected = want.next().map(|(k, v)| (&k[..], &v[..]));
                    if expected != Some((&k[..], &v[..])) {
                        return wrong(format!(
                            "scan (reverse: {reverse}): got {}, expected {:?}",
                            show(&k),
                            expected.map(|(k, _)| show(k))
                        ));
                    }
                }
                Err(e) => {
                    check_err(e, "scan")?;
                    failed = true;
                    break;
                }
            }
        }
        if !failed && want.next().is_some() {
            return wrong(format!(
                "scan (reverse: {reverse}) ended early without an error"
            ));
        }
    }
    if let Err(e) = db.verify() {
        check_err(e, "verify")?;
    }
    Ok(if detected {
        Outcome::Detected
    } else {
        Outcome::Intact
    })
}

/// One way of damaging a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// XOR the byte at `at` with `mask`.
    Flip { at: usize, mask: u8 },
    /// Zero `len` bytes from `at` (a lost write; a 512-byte sector or one byte).
    Zero { at: usize, len: usize },
    /// Cut the file to its first `len` bytes.
    Truncate { len: usize },
    /// The sector at `at` holds the bytes of the sector at `from` (a misdirected write).
    Misdirect { at: usize, from: usize },
}

/// A disk sector: the unit of zero-fill and misdirected-write damage.
const SECTOR_BYTES: usize = 512;

impl Damage {
    /// The damaged copy of `bytes`.
    fn apply(self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        match self {
            Self::Flip { at, mask } => out[at] ^= mask,
            Self::Zero { at, len } => {
                let end = (at + len).min(out.len());
                out[at..end].fill(0);
            }
            Self::Truncate { len } => out.truncate(len),
            Self::Misdirect { at, from } => {
                let len = SECTOR_BYTES.min(out.len() - at).min(out.len() - from);
                let source = bytes[from..from + len].to_vec();
                out[at..at + len].copy_from_slice(&source);
            }
        }
        out
    }

    /// The byte range of the original file the damage changes or removes.
    fn range(self, file_len: usize) -> std::ops::Range<usize> {
        match self {
            Self::Flip { at, .. } => at..at + 1,
            Self::Zero { at, len } => at..(at + len).min(file_len),
            Self::Truncate { len } => len..file_len,
            Self::Misdirect { at, .. } => at..(at + SECTOR_BYTES).min(file_len),
        }
    }

    /// The mode's name, for the figures.
    fn mode(self) -> &'static str {
        match self {
            Self::Flip { .. } => "flip",
            Self::Zero { len: 1, .. } => "zero byte",
            Self::Zero { .. } => "zero sector",
            Self::Truncate { .. } => "truncate",
            Self::Misdirect { .. } => "misdirect",
        }
    }
}

/// Which bytes a sweep damages: every `stride`th (`EXTENTDB_SWEEP_STRIDE`; 1 means every
/// byte). Without the variable, files up to `EVERY_BYTE_UP_TO` bytes are swept whole and
/// larger ones at about `DEFAULT_CASES_PER_MODE` positions per damage mode, so that the default
/// `cargo test` stays a few seconds per sweep in a debug build.
fn stride_for(file_len: usize) -> usize {
    const EVERY_BYTE_UP_TO: usize = 256;
    const DEFAULT_CASES_PER_MODE: usize = 160;
    match std::env::var("EXTENTDB_SWEEP_STRIDE") {
        Ok(s) => s.parse::<usize>().map_or(1, |s| s.max(1)),
        Err(_) if file_len <= EVERY_BYTE_UP_TO => 1,
        Err(_) => file_len.div_ceil(DEFAULT_CASES_PER_MODE),
    }
}

/// Byte-wise damage modes a sweep can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// XOR each byte with each mask.
    Flip(&'static [u8]),
    ZeroByte,
    ZeroSector,
    Truncate,
    /// Each sector of the first `n` bytes gets the bytes of its neighbour.
    Misdirect,
}

/// The damages of `modes` for a file of `len` bytes whose first `span` bytes are of interest
/// (bytes past it are never written), at the stride for `span`. Byte-wise modes start at
/// different phases of the stride, so that a default run damages different bytes in each.
fn damages(len: usize, span: usize, modes: &[Mode]) -> Vec<Damage> {
    let stride = stride_for(span);
    let positions = |phase: usize| (phase.min(stride - 1)..span).step_by(stride);
    let sectors = span.div_ceil(SECTOR_BYTES);
    let mut out = Vec::new();
    for &mode in modes {
        match mode {
            Mode::Flip(masks) => {
                for at in positions(0) {
                    out.extend(masks.iter().map(|&mask| Damage::Flip { at, mask }));
                }
            }
            Mode::ZeroByte => {
                out.extend(positions(stride / 3).map(|at| Damage::Zero { at, len: 1 }));
            }
            Mode::ZeroSector => out.extend((0..sectors).map(|s| Damage::Zero {
                at: s * SECTOR_BYTES,
                len: SECTOR_BYTES,
            })),
            Mode::Truncate => {
                out.extend(positions(2 * stride / 3).map(|len| Damage::Truncate { len }));
                // Bytes past `span` are never written: cutting them all off is one more case.
                if span < len {
                    out.push(Damage::Truncate { len: span });
                }
            }
            Mode::Misdirect if sectors > 1 => out.extend((0..sectors).map(|s| {
                let from = if s + 1 < sectors { s + 1 } else { s - 1 };
                Damage::Misdirect {
                    at: s * SECTOR_BYTES,
                    from: from * SECTOR_BYTES,
                }
            })),
            Mode::Misdirect => {}
        }
    }
    out
}

/// What a damaged copy must read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Exactly the expected data, or an error.
    DataOrError,
    /// An error: the damage is covered by a checksum and no undamaged copy exists.
    Error,
    /// Exactly the expected data and no error (a torn log tail: an honest crash leaves it).
    Data,
}

/// A file of a closed database to damage, and how the damaged copies must read.
struct Target<'a> {
    /// The closed, undamaged database.
    pristine: &'a Path,
    /// The file to damage, in `pristine`.
    file: String,
    options: Options,
    /// Errors a read may return for the damage.
    error_ok: fn(&Error) -> bool,
}

/// The figures of one sweep over one damage mode.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    /// Damage that changed nothing (zeroing zeros), not run.
    unchanged: usize,
    detected: usize,
    intact: usize,
    failures: Vec<String>,
    panics: usize,
    wrong: usize,
    slowest: Duration,
    largest_allocation_bytes: usize,
}

/// Damages `target` with every damage in `damages`, each on a fresh copy of the database, and
/// reads each copy: `expect(damage)` says which data it must read as and by which rule.
/// Returns the figures per damage mode, in the order the modes first appear.
fn sweep(
    target: &Target<'_>,
    damages: &[Damage],
    expect: &dyn Fn(Damage) -> (Arc<Model>, Rule),
) -> Vec<(&'static str, Tally)> {
    let scratch = scratch_dir();
    let original = fs::read(target.pristine.join(&target.file)).unwrap();
    let bound = allocation_bound_bytes(target.pristine);
    let mut tallies: Vec<(&'static str, Tally)> = Vec::new();
    for (n, &damage) in damages.iter().enumerate() {
        let mode = damage.mode();
        if tallies.last().is_none_or(|(m, _)| *m != mode) {
            tallies.push((mode, Tally::default()));
        }
        let tally = &mut tallies.last_mut().unwrap().1;
        let damaged = damage.apply(&original);
        if damaged == original {
            tally.unchanged += 1;
            continue;
        }
        let copy = scratch.path().join(n.to_string());
        copy_dir(target.pristine, &copy);
        fs::write(copy.join(&target.file), damaged).unwrap();
        let (model, rule) = expect(damage);
        let (options, error_ok, dir) = (target.options.clone(), target.error_ok, copy.clone());
        let report = run_case(CASE_TIME_LIMIT, move || {
            let outcome = read_everything(&dir, &options, &model, error_ok)?;
            match (rule, outcome) {
                (Rule::Error, Outcome::Intact) => Err((
                    Failure::Misjudged,
                    "damage that must be detected read as undamaged".into(),
                )),
                (Rule::Data, Outcome::Detected) => Err((
                    Failure::Misjudged,
                    "a torn log tail was reported instead of dropped".into(),
                )),
                _ => Ok(outcome),
            }
        });
        tally.cases += 1;
        tally.slowest = tally.slowest.max(report.elapsed);
        tally.largest_allocation_bytes = tally
            .largest_allocation_bytes
            .max(report.largest_allocation_bytes);
        match judge(report, bound) {
            Ok(Outcome::Detected) => tally.detected += 1,
            Ok(Outcome::Intact) => tally.intact += 1,
            Err((failure, what)) => {
                tally.panics += usize::from(failure == Failure::Panic);
                tally.wrong += usize::from(failure == Failure::WrongData);
                tally
                    .failures
                    .push(format!("{} {damage:?}: {what}", target.file));
                if failure == Failure::TooSlow {
                    // The case's thread may still be running: stop rather than pile up more.
                    break;
                }
            }
        }
        let _ = fs::remove_dir_all(&copy);
    }
    tallies
}

/// Where the damaged copies go: in memory when the machine has a `tmpfs` at `/dev/shm`, where
/// the syncs of each reopening cost nothing (the sweep tests decoding, not durability), else
/// in the default temporary directory.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Prints the figures of `tallies` and fails the test on any failed case.
fn report(kind: &str, tallies: &[(&'static str, Tally)]) {
    let mut failures = Vec::new();
    for (mode, t) in tallies {
        eprintln!(
            "sweep {kind}, {mode}: {} cases ({} unchanged, not run), {} detected, {} correct \
             data, {} failed ({} panics, {} wrong data), slowest {:.1} ms, largest \
             allocation {} bytes",
            t.cases,
            t.unchanged,
            t.detected,
            t.intact,
            t.failures.len(),
            t.panics,
            t.wrong,
            t.slowest.as_secs_f64() * 1e3,
            t.largest_allocation_bytes
        );
        failures.extend(t.failures.iter().cloned());
    }
    let shown: Vec<&String> = failures.iter().take(20).collect();
    assert!(
        failures.is_empty(),
        "{kind}: {} damaged copies failed; first ones:\n{shown:#?}",
        failures.len()
    );
}

/// The name of `path` within its directory.
fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn corruption_only(e: &Error) -> bool {
    e.is_corruption()
}

const ALL_BYTEWISE: [Mode; 4] = [
    Mode::Flip(&[0xff]),
    Mode::ZeroByte,
    Mode::ZeroSector,
    Mode::Truncate,
];

// ---------------------------------------------------------------------------------------------
// Sweeps.

/// A write-ahead log (about 3 KiB, six sectors) of small puts, large values (stored as value
/// pointers), batches, deletes and range deletes, closed without a flush. Returns the log and the database's contents after
/// each prefix of its records (`states[k]`: after the first `k`).
fn db_with_a_varied_log(dir: &Path) -> (PathBuf, Vec<Arc<Model>>) {
    let large = |i: u32| -> Vec<u8> { (0..1500 + 97 * i).map(|j| (j * 13 + i) as u8).collect() };
    let db = still().open(dir).unwrap();
    let mut model = Model::new();
    let mut states = vec![Arc::new(model.clone())];
    let mut record = |model: &Model| states.push(Arc::new(model.clone()));
    for i in (0..4).chain(40..80) {
        db.put(key(i), value(i)).unwrap();
        model.insert(key(i), value(i));
        record(&model);
    }
    for i in 10..13 {
        db.put(key(i), large(i)).unwrap();
        model.insert(key(i), large(i));
        record(&model);
    }
    let mut batch = extentdb::WriteBatch::new();
    batch.put(key(20), large(20)).put(key(21), value(21));
    batch.delete(key(1)).delete_range(key(11)..key(12));
    db.write(batch).unwrap();
    for (k, v) in [(key(20), large(20)), (key(21), value(21))] {
        model.insert(k, v);
    }
    model.remove(&key(1));
    model.remove(&key(11));
    record(&model);
    db.delete(key(2)).unwrap();
    model.remove(&key(2));
    record(&model);
    db.delete_range(key(20)..key(21)).unwrap();
    model.remove(&key(20));
    record(&model);
    db.put(key(30), large(30)).unwrap();
    model.insert(key(30), large(30));
    record(&model);
    drop(db);
    let log = files_named(dir, ".wal")
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    assert_eq!(records(&log).len(), states.len() - 1);
    (log, states)
}

/// Every byte of a log: damage to a record that an undamaged record follows is `Corruption`
/// naming the log; damage that reaches the last record is a torn tail, which may be dropped
/// (the records were acknowledged but, written `Buffered`, not synced: a power loss may lose
/// them) but never read back wrong: the database then holds exactly the records before the
/// first damaged one. A log cut short opens with exactly the records it still holds whole.
#[test]
fn every_damaged_byte_of_a_log_is_corruption_or_a_dropped_tail_never_wrong_data() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (log, states) = db_with_a_varied_log(dir.path());
    let recs = records(&log);
    let len = fs::metadata(&log).unwrap().len() as usize;
    let target = Target {
        pristine: dir.path(),
        file: name_of(&log),
        options: still(),
        error_ok: corruption_only,
    };
    let record_of = |at: usize| recs.iter().rposition(|&(start, _)| start <= at).unwrap();
    let expect = |damage: Damage| {
        let range = damage.range(len);
        let first = record_of(range.start);
        let last = recs.len() - 1;
        let reaches_last = range.end > recs[last].0;
        let rule = match damage {
            Damage::Truncate { .. } => Rule::Data,
            _ if reaches_last => Rule::DataOrError,
            _ => Rule::Error,
        };
        (Arc::clone(&states[first]), rule)
    };
    let tallies = sweep(
        &target,
        &damages(
            len,
            len,
            &[
                Mode::Flip(&[0xff, 0x01]),
                Mode::ZeroByte,
                Mode::ZeroSector,
                Mode::Truncate,
            ],
        ),
        &expect,
    );
    report("log", &tallies);
}

#[test]
fn every_damaged_byte_of_a_table_gives_an_error_or_the_right_data() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = db_with_one_table(dir.path(), 24);
    let len = fs::metadata(&table).unwrap().len() as usize;
    let target = Target {
        pristine: dir.path(),
        file: name_of(&table),
        options: still(),
        error_ok: corruption_only,
    };
    let model = Arc::new(model);
    // Every byte of a table is covered by a checksum, and its size is in the manifest.
    let tallies = sweep(&target, &damages(len, len, &ALL_BYTEWISE), &|_| {
        (Arc::clone(&model), Rule::Error)
    });
    report("table", &tallies);
}

#[test]
fn every_damaged_byte_of_the_manifest_before_its_last_record_gives_an_error() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, manifest) = db_with_manifest_edits(dir.path());
    let (last, _) = *records(&manifest).last().unwrap();
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    let target = Target {
        pristine: dir.path(),
        file: name_of(&manifest),
        options: still(),
        error_ok: corruption_only,
    };
    let model = Arc::new(model);
    // The last record is left alone, so that every damage is followed by a whole record:
    // truncation, which always cuts the end, is the whole-manifest sweep's.
    let modes = [Mode::Flip(&[0xff, 0x10]), Mode::ZeroByte, Mode::ZeroSector];
    let damages: Vec<Damage> = damages(len, last, &modes)
        .into_iter()
        .filter(|d| d.range(len).end <= last)
        .collect();
    let tallies = sweep(&target, &damages, &|_| (Arc::clone(&model), Rule::Error));
    report("manifest before its last record", &tallies);
}

#[test]
fn every_damaged_byte_of_the_manifest_gives_an_error_or_the_right_data() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, manifest) = db_with_manifest_edits(dir.path());
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    let target = Target {
        pristine: dir.path(),
        file: name_of(&manifest),
        options: still(),
        error_ok: corruption_only,
    };
    let model = Arc::new(model);
    let modes = [
        Mode::Flip(&[0xff, 0x10]),
        Mode::ZeroByte,
        Mode::ZeroSector,
        Mode::Truncate,
    ];
    let tallies = sweep(&target, &damages(len, len, &modes), &|_| {
        (Arc::clone(&model), Rule::DataOrError)
    });
    report("manifest", &tallies);
}

#[test]
fn every_damaged_byte_of_current_gives_an_error() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = db_with_manifest_edits(dir.path());
    let len = fs::metadata(dir.path().join("CURRENT")).unwrap().len() as usize;
    let target = Target {
        pristine: dir.path(),
        file: "CURRENT".into(),
        options: still(),
        error_ok: corruption_only,
    };
    let model = Arc::new(model);
    let modes = [
        Mode::Flip(&[0xff, 0x01]),
        Mode::ZeroByte,
        Mode::ZeroSector,
        Mode::Truncate,
    ];
    let tallies = sweep(&target, &damages(len, len, &modes), &|_| {
        (Arc::clone(&model), Rule::Error)
    });
    report("CURRENT", &tallies);
}

/// A database whose values live in value files: large values, some overwritten and deleted,
/// compacted (so the manifest holds extent records, dead ranges and an unmapped range), closed.
/// Returns the model and how many bytes the live values take at the start of the segment.
fn db_with_large_values(dir: &Path) -> (Model, usize) {
    let large = |i: u32, len: usize| -> Vec<u8> {
        (0..len).map(|j| (j as u32 * 31 + i * 7) as u8).collect()
    };
    let db = large_values().open(dir).unwrap();
    let mut model = Model::new();
    for i in 0..12u32 {
        let v = large(i, 1100 + 300 * (i as usize % 4));
        db.put(key(i), &v).unwrap();
        model.insert(key(i), v);
    }
    for i in (0..12u32).step_by(3) {
        db.delete(key(i)).unwrap();
        model.remove(&key(i));
    }
    db.compact().unwrap();
    let live: usize = model.values().map(Vec::len).sum();
    (model, live)
}

/// [`still`] with 8 KiB value files.
fn large_values() -> Options {
    still().value_file_bytes(8 << 10)
}

#[test]
fn every_damaged_byte_of_a_manifest_of_extent_records_gives_an_error_or_the_right_data() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = db_with_large_values(dir.path());
    let manifest = only_file(dir.path(), "MANIFEST-");
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    let target = Target {
        pristine: dir.path(),
        file: name_of(&manifest),
        options: large_values(),
        error_ok: corruption_only,
    };
    let model = Arc::new(model);
    let tallies = sweep(&target, &damages(len, len, &ALL_BYTEWISE), &|_| {
        (Arc::clone(&model), Rule::DataOrError)
    });
    report("manifest of extent records", &tallies);
    let detected: usize = tallies.iter().map(|(_, t)| t.detected).sum();
    assert!(detected > 0, "no damage to {} was detected", target.file);
}

/// Every byte of a value segment that holds live values: a damaged value is a checksum error
/// on every path that reads it, never wrong bytes. Bytes that no live value covers (dead
/// values, free blocks) may be read back intact. A misdirected write (a sector holding its
/// neighbour's bytes) is caught the same way.
#[test]
fn damaged_bytes_of_a_value_segment_give_an_error_or_the_right_data() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, live) = db_with_large_values(dir.path());
    let segment = only_file(dir.path(), ".seg");
    let bytes = fs::read(&segment).unwrap();
    // The values were appended from the start of the segment; dead ones are punched out and
    // the rest of the (sparse) file was never written.
    let written = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    assert!(written >= live, "{written} bytes written for {live} live");
    let target = Target {
        pristine: dir.path(),
        file: name_of(&segment),
        options: large_values(),
        error_ok: corruption_only,
    };
    let model = Arc::new(model);
    let modes = [
        Mode::Flip(&[0xff]),
        Mode::ZeroByte,
        Mode::ZeroSector,
        Mode::Truncate,
        Mode::Misdirect,
    ];
    // Bytes past `written` hold no value and no read reaches them: by default the sweep stays
    // on the written bytes; `EXTENTDB_SWEEP_STRIDE` sweeps the whole file.
    let span = if std::env::var_os("EXTENTDB_SWEEP_STRIDE").is_some() {
        bytes.len()
    } else {
        written
    };
    let damages = damages(bytes.len(), span, &modes);
    let tallies = sweep(&target, &damages, &|_| {
        (Arc::clone(&model), Rule::DataOrError)
    });
    report("value segment", &tallies);
    // Every damaged byte of a live value is detected: at least one flip in `stride` of the
    // live bytes (give or take the ends of each value).
    let stride = stride_for(span);
    let flips = &tallies[0].1;
    assert!(
        (flips.detected + 2 * model.len()) * stride >= live,
        "only {} of {} flipped bytes were detected, for {live} live bytes",
        flips.detected,
        flips.cases
    );
}

/// The machinery has teeth: a case that allocates past the bound, one that panics and one
/// that does not answer in time are each failures.
#[test]
fn the_sweep_harness_fails_an_oversized_allocation_a_panic_and_a_slow_case() {
    let _serial = one_test_at_a_time();
    let bound = 1 << 20;
    let within = run_case(CASE_TIME_LIMIT, || {
        std::hint::black_box(vec![1u8; 1 << 10]);
        Ok(Outcome::Intact)
    });
    assert_eq!(judge(within, bound), Ok(Outcome::Intact));
    let oversized = run_case(CASE_TIME_LIMIT, move || {
        std::hint::black_box(vec![1u8; bound + 1]);
        Ok(Outcome::Intact)
    });
    assert!(matches!(
        judge(oversized, bound),
        Err((Failure::TooLarge, _))
    ));
    let panicked = run_case(CASE_TIME_LIMIT, || panic!("planted"));
    assert!(matches!(judge(panicked, bound), Err((Failure::Panic, _))));
    let slow = run_case(Duration::from_millis(50), || {
        thread::sleep(Duration::from_millis(500));
        Ok(Outcome::Intact)
    });
    assert!(matches!(judge(slow, bound), Err((Failure::TooSlow, _))));
}

/// The manifest's last edit of this database moved the log number past a log and let it be
/// deleted; without that edit the manifest names the deleted log as live, and replaying it
/// would silently lose the table the edit added. Recovery must refuse instead.
#[test]
fn a_manifest_cut_before_an_edit_that_deleted_a_log_is_corruption_not_silent_loss() {
    let _serial = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_, manifest) = db_with_manifest_edits(dir.path());
    let (last, _) = *records(&manifest).last().unwrap();
    let bytes = fs::read(&manifest).unwrap();
    fs::write(&manifest, &bytes[..last]).unwrap();
    for options in [still(), still().read_only(true)] {
        match options.open(dir.path()) {
            Err(e) => assert!(e.is_corruption(), "{e:?}"),
            Ok(_) => panic!("a manifest that lost a synced edit opened"),
        }
    }
}
