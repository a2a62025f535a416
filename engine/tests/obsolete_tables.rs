//! Deleting the files of tables a compaction replaced stays off the read path: a reader that
//! releases the last version holding such a table neither unlinks nor closes its file (that
//! I/O can block for milliseconds), yet the file is still deleted, by the background thread
//! or, at the latest, when the database closes; and a compaction nobody reads during still
//! deletes what it replaced before it returns.
//!
//! A [`FileSystem`] wrapper records which thread removes and closes each table file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use extentdb::fs::{FileLock, FileSystem, ReadableFile, RealFs, SegmentFile, WritableFile};
use extentdb::{Db, Options, Result};

/// What happened to a table file, and in which thread.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    thread: String,
    what: &'static str,
    path: PathBuf,
}

type Log = Arc<Mutex<Vec<Event>>>;

fn is_table(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "sst")
}

fn record(log: &Log, what: &'static str, path: &Path) {
    if is_table(path) {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        log.lock().unwrap_or_else(|e| e.into_inner()).push(Event {
            thread,
            what,
            path: path.to_path_buf(),
        });
    }
}

fn events(log: &Log) -> Vec<Event> {
    log.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The host file system, recording every removal and every last close of a table file.
#[derive(Debug)]
struct Watched {
    inner: RealFs,
    log: Log,
}

/// A file opened through [`Watched`]: its drop is the close.
#[derive(Debug)]
struct WatchedFile {
    inner: Arc<dyn ReadableFile>,
    log: Log,
}

impl Drop for WatchedFile {
    fn drop(&mut self) {
        record(&self.log, "close", self.inner.path());
    }
}

impl ReadableFile for WatchedFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl FileSystem for Watched {
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        self.inner.create(path)
    }
    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        Ok(Arc::new(WatchedFile {
            inner: self.inner.open(path)?,
            log: Arc::clone(&self.log),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        record(&self.log, "remove", path);
        self.inner.remove_file(path)
    }
    fn link_or_copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.link_or_copy(from, to)
    }
    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> Result<bool> {
        self.inner.exists(path)
    }
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.inner.lock_shared(path)
    }
    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        self.inner.open_segment(path, len_bytes, create)
    }
    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
        self.inner.open_segment_read_only(path, len_bytes)
    }
}

/// A database on a watched file system: (handle, log).
fn open(dir: &Path, background: bool) -> (Db, Log) {
    let log = Log::default();
    let fs = Watched {
        inner: RealFs,
        log: Arc::clone(&log),
    };
    let db = Options::new()
        .background_compaction(background)
        .file_system(Arc::new(fs))
        .open(dir)
        .unwrap();
    (db, log)
}

/// The table files in `dir`.
fn tables(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_table(p))
        .collect()
}

/// Two level-0 tables of a few keys each.
fn two_tables(db: &Db) {
    for round in 0..2u32 {
        for i in 0..50u32 {
            db.put(format!("key{i:03}"), format!("value {round}/{i}"))
                .unwrap();
        }
        db.flush().unwrap();
    }
}

/// In a thread named "reader": opens an iterator (pinning the current version), reads one
/// entry, lets the caller compact everything, then drops the iterator, which releases the
/// last version that holds the replaced tables. Returns the tables the iterator pinned.
fn release_in_reader(db: &Db, dir: &Path, log: &Log) -> BTreeSet<PathBuf> {
    let (pinned_tx, pinned_rx) = mpsc::channel();
    let (compacted_tx, compacted_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("reader".into())
            .spawn_scoped(s, move || {
                let mut it = db.range::<&[u8], _>(..);
                it.next().unwrap().unwrap();
                pinned_tx.send(()).unwrap();
                compacted_rx.recv().unwrap();
                drop(it);
            })
            .unwrap();
        pinned_rx.recv().unwrap();
        let pinned = tables(dir);
        assert!(pinned.len() >= 2, "{pinned:?}");
        db.compact().unwrap();
        let left = tables(dir);
        assert!(
            left.is_superset(&pinned),
            "a table a reader still pinned was deleted: {pinned:?} -> {left:?}; {:?}",
            events(log)
        );
        compacted_tx.send(()).unwrap();
        reader.join().unwrap();
        pinned
    })
}

/// No removal or close of a table happened in the reader's thread, and each of `pinned` was
/// removed and closed, in that order, in some other thread.
fn check_off_the_read_path(log: &Log, pinned: &BTreeSet<PathBuf>) {
    let events = events(log);
    let in_reader: Vec<&Event> = events.iter().filter(|e| e.thread == "reader").collect();
    assert!(
        in_reader.is_empty(),
        "the reader's thread deleted or closed table files: {in_reader:?}"
    );
    for path in pinned {
        let of = |what| {
            events
                .iter()
                .position(|e| e.what == what && &e.path == path)
        };
        let (Some(removed), Some(closed)) = (of("remove"), of("close")) else {
            panic!(
                "{} was not both removed and closed: {events:?}",
                path.display()
            );
        };
        assert!(removed < closed, "{events:?}");
    }
}

#[test]
fn a_reader_releasing_the_last_version_leaves_the_table_deletion_to_the_background_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = open(dir.path(), true);
    two_tables(&db);
    let pinned = release_in_reader(&db, dir.path(), &log);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tables(dir.path()).is_disjoint(&pinned) {
        assert!(
            Instant::now() < deadline,
            "the replaced tables were never deleted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    check_off_the_read_path(&log, &pinned);
    let deleters: BTreeSet<String> = events(&log)
        .iter()
        .filter(|e| pinned.contains(&e.path))
        .map(|e| e.thread.clone())
        .collect();
    assert_eq!(
        deleters,
        BTreeSet::from(["extentdb-obsolete".to_string()]),
        "{:?}",
        events(&log)
    );
}

#[test]
fn without_background_threads_the_close_deletes_what_a_reader_released() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = open(dir.path(), false);
    two_tables(&db);
    let pinned = release_in_reader(&db, dir.path(), &log);
    drop(db);
    let left = tables(dir.path());
    assert!(left.is_disjoint(&pinned), "{pinned:?} -> {left:?}");
    check_off_the_read_path(&log, &pinned);
}

#[test]
fn a_compaction_nobody_reads_during_deletes_the_tables_it_replaced_before_it_returns() {
    // Without background threads nothing else can hold the old version: the compaction's own
    // release is the last, and it deletes in place. (With them, the value thread may hold it
    // for a moment, and then the deleting thread deletes it: see the first test.)
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = open(dir.path(), false);
    two_tables(&db);
    let before = tables(dir.path());
    assert!(before.len() >= 2, "{before:?}");
    db.compact().unwrap();
    let after = tables(dir.path());
    assert!(after.is_disjoint(&before), "{before:?} -> {after:?}");
    let me = std::thread::current().name().unwrap().to_string();
    assert!(
        events(&log).iter().all(|e| e.thread == me),
        "{:?}",
        events(&log)
    );
    assert_eq!(common::scan(&db).len(), 50);
}
