//! Damaged bytes on disk are reported as `Error::Corruption` naming the damaged file, never
//! read as wrong values and never a panic.
//!
//! Targeted cases damage one byte of a write-ahead log record in the middle of the log, of a
//! table block and of a manifest record. Sweeps damage every byte of a small table, of the
//! manifest (also one full of extent records and dead ranges) and of `CURRENT`, and the bytes
//! of the values in a value segment, in turn, reopen a copy of the database and read
//! everything: every read must return exactly the right data or an error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

mod common;

use common::{Model, try_scan as scan};
use extentdb::{Db, Error, Options};

/// Files stay where they were written: no background flush or compaction. Values of 1 KiB and
/// more go to value files, over 64 KiB segments.
fn still() -> Options {
    Options::new()
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
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = db_with_log_records(dir.path(), 6);
    let (at, _) = records(&log)[3];
    // The length field: the reader cannot know where the record ends.
    flip(&log, at + 5, 0x01);
    assert_corruption_in(still().open(dir.path()), &log, "open");
}

#[test]
fn damaged_last_log_record_is_a_torn_tail_and_the_rest_survives() {
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

/// What reading everything in a damaged database showed.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every read returned the right data.
    Intact,
    /// Some read (or the open) returned an error, and no read returned wrong data.
    Detected,
}

/// Opens `dir` and reads everything: every read must return the right data or an error
/// satisfying `error_ok`. Panics inside the engine are caught and reported as failures.
fn read_everything(
    dir: &Path,
    model: &Model,
    error_ok: &dyn Fn(&Error) -> bool,
) -> Result<Outcome, String> {
    let run = || -> Result<Outcome, String> {
        let detected = std::cell::Cell::new(false);
        let check_err = |e: Error, what: &str| {
            if error_ok(&e) {
                detected.set(true);
                Ok(())
            } else {
                Err(format!("{what}: unexpected error {e:?}"))
            }
        };
        let db = match still().open(dir) {
            Ok(db) => db,
            Err(e) => {
                check_err(e, "open")?;
                return Ok(Outcome::Detected);
            }
        };
        for (k, v) in model {
            match db.get(k) {
                Ok(got) if got.as_deref() == Some(&v[..]) => {}
                Ok(got) => return Err(format!("get {}: wrong answer {got:?}", show(k))),
                Err(e) => check_err(e, "get")?,
            }
        }
        for absent in [b"absent".to_vec(), key(9999)] {
            match db.get(&absent) {
                Ok(None) => {}
                Ok(got) => return Err(format!("get {}: wrong answer {got:?}", show(&absent))),
                Err(e) => check_err(e, "get")?,
            }
        }
        let mut want = model.iter();
        for item in db.range::<&[u8], _>(..) {
            match item {
                Ok((k, v)) => {
                    let expected = want.next().map(|(k, v)| (&k[..], &v[..]));
                    if expected != Some((&k[..], &v[..])) {
                        return Err(format!("scan: got {k:?}, expected {expected:?}"));
                    }
                }
                Err(e) => {
                    check_err(e, "scan")?;
                    break;
                }
            }
        }
        if !detected.get() && want.next().is_some() {
            return Err("scan ended early without an error".into());
        }
        let mut want = model.iter().rev();
        for item in db.range::<&[u8], _>(..).rev() {
            match item {
                Ok((k, v)) => {
                    let expected = want.next().map(|(k, v)| (&k[..], &v[..]));
                    if expected != Some((&k[..], &v[..])) {
                        return Err(format!("reverse scan: got {k:?}, expected {expected:?}"));
                    }
                }
                Err(e) => {
                    check_err(e, "reverse scan")?;
                    break;
                }
            }
        }
        if let Err(e) = db.verify() {
            check_err(e, "verify")?;
        }
        Ok(if detected.get() {
            Outcome::Detected
        } else {
            Outcome::Intact
        })
    };
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        Err(format!("panic: {msg}"))
    })
}

/// Damages every byte in `offsets` of the file `name` of the database in `pristine` with each mask, one at
/// a time, on a fresh copy; returns the failures and how many cases were detected.
fn sweep(
    pristine: &Path,
    name: &str,
    offsets: std::ops::Range<usize>,
    masks: &[u8],
    model: &Model,
    error_ok: &dyn Fn(&Error) -> bool,
) -> (Vec<String>, usize, usize) {
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut detected, mut cases) = (0, 0);
    for offset in offsets {
        for &mask in masks {
            let copy = scratch.path().join(format!("{offset}-{mask}"));
            copy_dir(pristine, &copy);
            flip(&copy.join(name), offset, mask);
            cases += 1;
            match read_everything(&copy, model, error_ok) {
                Ok(Outcome::Detected) => detected += 1,
                Ok(Outcome::Intact) => {}
                Err(e) => failures.push(format!("{name} byte {offset} ^ {mask:#04x}: {e}")),
            }
            fs::remove_dir_all(&copy).unwrap();
        }
    }
    (failures, detected, cases)
}

fn report(failures: &[String], detected: usize, cases: usize) {
    let shown: Vec<&String> = failures.iter().take(20).collect();
    assert!(
        failures.is_empty(),
        "{} of {cases} damaged copies read wrong data or failed badly ({detected} detected); \
         first ones:\n{shown:#?}",
        failures.len()
    );
}

#[test]
fn every_damaged_byte_of_a_table_gives_an_error_or_the_right_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, table) = db_with_one_table(dir.path(), 24);
    let name = table.file_name().unwrap().to_string_lossy().into_owned();
    let error_ok = |e: &Error| e.is_corruption();
    let len = fs::metadata(&table).unwrap().len() as usize;
    let (failures, detected, cases) = sweep(dir.path(), &name, 0..len, &[0xff], &model, &error_ok);
    report(&failures, detected, cases);
    // Every byte of a table is covered by a checksum.
    assert_eq!(detected, cases, "undetected damage in {name}");
}

#[test]
fn every_damaged_byte_of_the_manifest_before_its_last_record_gives_an_error_or_the_right_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, manifest) = db_with_manifest_edits(dir.path());
    let name = manifest.file_name().unwrap().to_string_lossy().into_owned();
    let (last, _) = *records(&manifest).last().unwrap();
    let error_ok = |e: &Error| e.is_corruption();
    let (failures, detected, cases) =
        sweep(dir.path(), &name, 0..last, &[0xff, 0x10], &model, &error_ok);
    report(&failures, detected, cases);
    assert_eq!(detected, cases, "undetected damage in {name}");
}

#[test]
fn every_damaged_byte_of_the_manifest_gives_an_error_or_the_right_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, manifest) = db_with_manifest_edits(dir.path());
    let name = manifest.file_name().unwrap().to_string_lossy().into_owned();
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    let error_ok = |e: &Error| e.is_corruption();
    let (failures, detected, cases) =
        sweep(dir.path(), &name, 0..len, &[0xff, 0x10], &model, &error_ok);
    report(&failures, detected, cases);
}

#[test]
fn every_damaged_byte_of_current_gives_an_error_or_the_right_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = db_with_manifest_edits(dir.path());
    // A damaged name may point at a missing file: an I/O error is then a fair answer.
    let error_ok = |e: &Error| e.is_corruption() || matches!(e, Error::Io(_));
    let len = fs::metadata(dir.path().join("CURRENT")).unwrap().len() as usize;
    let (failures, detected, cases) = sweep(
        dir.path(),
        "CURRENT",
        0..len,
        &[0xff, 0x01],
        &model,
        &error_ok,
    );
    report(&failures, detected, cases);
    assert_eq!(detected, cases);
}

/// A database whose values live in value files: large values, some overwritten and deleted,
/// compacted (so the manifest holds extent records, dead ranges and an unmapped range), closed.
/// Returns the model and how many bytes the live values take at the start of the segment.
fn db_with_large_values(dir: &Path) -> (Model, usize) {
    let large = |i: u32, len: usize| -> Vec<u8> {
        (0..len).map(|j| (j as u32 * 31 + i * 7) as u8).collect()
    };
    let db = still().value_file_bytes(8 << 10).open(dir).unwrap();
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

#[test]
fn every_damaged_byte_of_a_manifest_of_extent_records_gives_an_error_or_the_right_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = db_with_large_values(dir.path());
    let manifest = only_file(dir.path(), "MANIFEST-");
    let name = manifest.file_name().unwrap().to_string_lossy().into_owned();
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    let error_ok = |e: &Error| e.is_corruption();
    let (failures, detected, cases) = sweep(dir.path(), &name, 0..len, &[0xff], &model, &error_ok);
    report(&failures, detected, cases);
    assert!(detected > 0, "no damage to {name} was detected");
}

/// Every byte of a value segment that holds live values: a damaged value is a checksum error
/// on every path that reads it, never wrong bytes. Bytes that no live value covers (dead
/// values, free blocks) may be read back intact. `EXTENTDB_SWEEP_STRIDE` (default 7) sets
/// which bytes are damaged: every one with 1.
#[test]
fn damaged_bytes_of_a_value_segment_give_an_error_or_the_right_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, live) = db_with_large_values(dir.path());
    let segment = only_file(dir.path(), ".seg");
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    // The values were appended from the start of the segment; dead ones are punched out.
    let written = fs::read(&segment)
        .unwrap()
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    assert!(written >= live, "{written} bytes written for {live} live");
    let stride = std::env::var("EXTENTDB_SWEEP_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7usize)
        .max(1);
    let error_ok = |e: &Error| e.is_corruption();
    let (mut failures, mut detected, mut cases) = (Vec::new(), 0, 0);
    for offset in (0..written).step_by(stride) {
        let (f, d, c) = sweep(
            dir.path(),
            &name,
            offset..offset + 1,
            &[0xff],
            &model,
            &error_ok,
        );
        failures.extend(f);
        detected += d;
        cases += c;
    }
    report(&failures, detected, cases);
    // Every damaged byte of a live value is detected: at least one case in `stride` of the
    // live bytes (give or take the ends of each value).
    assert!(
        (detected + 2 * model.len()) * stride >= live,
        "only {detected} of {cases} damaged bytes were detected, for {live} live bytes"
    );
}
