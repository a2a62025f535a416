//! A read-only handle (`Options::read_only`) reads what the last writer left, including the
//! writes only its unflushed logs hold, and changes nothing in the directory: every file keeps
//! its bytes, length and modification time, and none is created or deleted. Read-only handles
//! share the directory lock with each other and exclude writers; every mutating call fails
//! with `ReadOnly`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::Path;
use std::time::SystemTime;

mod common;

use common::{Model, scan};
use extentdb::{Db, Durability, Error, Options, WriteBatch};

/// Every file of a directory: its length, modification time and a hash of its bytes.
type Listing = BTreeMap<String, (u64, SystemTime, u64)>;

fn listing(dir: &Path) -> Listing {
    let mut out = Listing::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mut hasher = DefaultHasher::new();
        hasher.write(&std::fs::read(entry.path()).unwrap());
        out.insert(
            entry.file_name().into_string().unwrap(),
            (meta.len(), meta.modified().unwrap(), hasher.finish()),
        );
    }
    out
}

/// Default options but 1 MiB segments (the files hashed stay small); values of 1 KiB and
/// more are separated into value files.
fn options() -> Options {
    Options::new().value_segment_bytes(1 << 20)
}

fn read_only() -> Options {
    options().read_only(true)
}

fn big(i: u32) -> Vec<u8> {
    format!("big-{i}-").repeat(300).into_bytes()
}

/// Builds in `dir` a database whose last session crashed: tables and value files from a
/// first session, then small and large writes, a delete and a range delete that only the
/// write-ahead log holds (Buffered, never flushed), the handle dropped. Returns its contents.
fn crashed(dir: &Path) -> Model {
    let mut model = Model::new();
    {
        let db = options().open(dir).unwrap();
        for i in 0..40u32 {
            let v = if i % 4 == 0 {
                big(i)
            } else {
                format!("v{i}").into_bytes()
            };
            db.put(format!("k{i:03}"), &v).unwrap();
            model.insert(format!("k{i:03}").into_bytes(), v);
        }
        db.flush().unwrap();
    }
    let db = options().open(dir).unwrap();
    for i in 40..80u32 {
        let v = if i % 3 == 0 {
            big(i)
        } else {
            format!("w{i}").into_bytes()
        };
        db.write_with(
            WriteBatch::new().put(format!("k{i:03}"), &v).clone(),
            Durability::Buffered,
        )
        .unwrap();
        model.insert(format!("k{i:03}").into_bytes(), v);
    }
    db.put("k001", big(1001)).unwrap();
    model.insert(b"k001".to_vec(), big(1001));
    db.delete("k002").unwrap();
    model.remove(&b"k002"[..]);
    db.delete_range("k010".."k020").unwrap();
    model.retain(|k, _| !(k.as_slice() >= b"k010".as_slice() && k.as_slice() < b"k020".as_slice()));
    assert_eq!(scan(&db), model);
    drop(db);
    model
}

/// Reads `db` every way a reader can and checks it holds `model`.
fn check_reads(db: &Db, model: &Model) {
    assert_eq!(scan(db), *model);
    let back: Vec<Vec<u8>> = db
        .range::<&[u8], _>(..)
        .rev()
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    assert_eq!(back, model.keys().rev().cloned().collect::<Vec<_>>());
    for (k, v) in model {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]), "key {k:?}");
    }
    assert!(db.get("k002").unwrap().is_none());
    assert!(db.get("k015").unwrap().is_none());
    let snap = db.snapshot();
    assert_eq!(snap.get("k001").unwrap().as_deref(), Some(&big(1001)[..]));
    assert_eq!(
        db.prefix("k04").count(),
        model.keys().filter(|k| k.starts_with(b"k04")).count()
    );
    let report = db.verify().unwrap();
    assert_eq!(report.live_values, model.len() as u64);
    assert!(db.stats().last_sequence > 0);
    assert!(!db.inventory().value_files.is_empty());
}

#[test]
fn a_read_only_open_after_a_crash_reads_the_unflushed_writes_and_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = crashed(dir.path());
    let before = listing(dir.path());
    assert!(
        before.keys().any(|n| n.ends_with(".seg")),
        "no value file: {before:?}"
    );
    // Twice: nothing the first open did is needed by the second.
    for _ in 0..2 {
        let db = read_only().open(dir.path()).unwrap();
        check_reads(&db, &model);
        drop(db);
        assert_eq!(listing(dir.path()), before);
    }
    // The next writer recovers as usual.
    let db = options().open(dir.path()).unwrap();
    check_reads(&db, &model);
}

/// The control of the test above: a writer's open of the same directory rewrites the
/// manifest, flushes the logs and starts a new one, so the listing does see recovery's writes.
#[test]
fn a_writable_open_after_a_crash_changes_files_the_listing_sees() {
    let dir = tempfile::tempdir().unwrap();
    crashed(dir.path());
    let before = listing(dir.path());
    drop(options().open(dir.path()).unwrap());
    assert_ne!(listing(dir.path()), before);
}

#[test]
fn a_read_only_open_leaves_an_empty_segment_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = crashed(dir.path());
    // A segment creation that a crash cut short before its length was set.
    std::fs::write(dir.path().join("000099.seg"), b"").unwrap();
    let before = listing(dir.path());
    let db = read_only().open(dir.path()).unwrap();
    check_reads(&db, &model);
    drop(db);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn two_read_only_handles_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = crashed(dir.path());
    let a = read_only().open(dir.path()).unwrap();
    let b = read_only().open(dir.path()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| check_reads(&a, &model));
        s.spawn(|| check_reads(&b, &model));
    });
}

#[test]
fn a_read_only_open_fails_while_a_writer_has_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("k", "v").unwrap();
    let err = Db::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    drop(db);
    let db = Db::open_read_only(dir.path()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_writer_open_fails_while_a_read_only_handle_has_the_database() {
    let dir = tempfile::tempdir().unwrap();
    drop(options().open(dir.path()).unwrap());
    let reader = read_only().open(dir.path()).unwrap();
    let err = options().open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    drop(reader);
    options().open(dir.path()).unwrap().put("k", "v").unwrap();
}

#[test]
fn every_mutating_call_on_a_read_only_handle_fails_with_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let model = crashed(dir.path());
    let before = listing(dir.path());
    let db = read_only().open(dir.path()).unwrap();
    let checkpoint = dir.path().with_extension("checkpoint");
    let results = [
        ("put", db.put("x", "y")),
        ("put of a large value", db.put("x", big(7))),
        ("delete", db.delete("k001")),
        ("delete_range", db.delete_range("k000".."k999")),
        ("write", db.write(WriteBatch::new().put("x", "y").clone())),
        (
            "write_with",
            db.write_with(WriteBatch::new().put("x", "y").clone(), Durability::Sync),
        ),
        ("flush", db.flush()),
        ("sync", db.sync()),
        ("compact", db.compact()),
        ("checkpoint", db.checkpoint(&checkpoint)),
    ];
    for (what, r) in results {
        let err = r.expect_err(what);
        assert!(matches!(err, Error::ReadOnly), "{what}: {err:?}");
        assert_eq!(err.to_string(), "the database is open read-only");
    }
    assert!(!checkpoint.exists());
    // Nothing changed, and the handle still reads.
    check_reads(&db, &model);
    drop(db);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_read_only_open_of_a_missing_directory_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = read_only()
        .create_if_missing(true)
        .open(&missing)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!missing.exists());
}

#[test]
fn a_read_only_open_of_a_directory_without_a_database_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_only()
        .create_if_missing(true)
        .open(dir.path())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_checkpoint_without_a_lock_file_opens_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let model = crashed(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy");
    options()
        .open(dir.path())
        .unwrap()
        .checkpoint(&copy)
        .unwrap();
    let before = listing(&copy);
    assert!(!before.contains_key("LOCK"), "{before:?}");
    let db = read_only().open(&copy).unwrap();
    check_reads(&db, &model);
    drop(db);
    assert_eq!(listing(&copy), before);
}
