//! The race the invalidate lock exists to close, with teeth.
//!
//! Readers (point reads, scans with readahead, and the mmap read path) read large values while
//! another thread relocates every value file (copy, remap, free the old blocks), deletes a value
//! file no pointer names any more, and at once appends new, different values, which reuse the
//! freed blocks. Every byte read is checked
//! against what was written. A test hook widens the window between a fill's extent lookup and
//! its block read, so a relocation lands inside it often.
//!
//! - Built normally (`--features test-hooks`), there must be **no** stale read and no checksum
//!   failure: the fill holds the file's invalidate lock shared, the relocation's switch needs it
//!   exclusive, so no block can be freed and reused between a lookup and its read.
//! - Built with `--features test-disable-invalidate-lock` the lock takes nothing and the test
//!   must **find** stale reads (checksum failures of values whose blocks were reused), or it
//!   fails: a test that cannot fail proves nothing.
//!
//! `EXTENTDB_RACE_SECONDS` sets the length of each run (default 3).

#![cfg(feature = "test-hooks")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use extentdb::{Error, Options, ReadPath};

const KEYS: u64 = 48;

fn options(read_path: ReadPath) -> Options {
    Options::new()
        .block_size_bytes(512)
        .value_segment_bytes(64 << 10)
        .value_threshold_bytes(1024)
        .cache_bytes(128 << 10)
        .read_path(read_path)
        .test_race_window(Duration::from_millis(8))
}

/// A recognisable value for `key`: its name repeated, so bytes from any other value differ.
fn value(key: &str, len: usize) -> Vec<u8> {
    key.bytes().cycle().take(len).collect()
}

fn key(i: u64) -> String {
    format!("old{i:04}")
}

fn len_of(i: u64) -> usize {
    1500 + (i as usize * 397) % 5000
}

#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    stale: AtomicU64,
    wrong: AtomicU64,
    /// What `Db::verify` said at the end: it compares every cached block with the disk.
    verified: std::sync::OnceLock<Result<(), String>>,
}

impl Tally {
    fn check(&self, key: &str, got: extentdb::Result<Option<Vec<u8>>>, expected: &[u8]) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match got {
            Ok(Some(v)) if v == expected => {}
            // Wrong bytes returned as a value: never acceptable, lock or no lock.
            Ok(other) => {
                self.wrong.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "{key}: wrong value returned ({:?} bytes)",
                    other.map(|v| v.len())
                );
            }
            // Bytes of a reused block fail the pointer's checksum.
            Err(Error::Corruption { .. }) => {
                self.stale.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("{key}: unexpected error {e}"),
        }
    }
}

fn run(dir: &Path, read_path: ReadPath) -> Arc<Tally> {
    {
        let db = options(read_path).open(dir).unwrap();
        for i in 0..KEYS {
            db.put(key(i), value(&key(i), len_of(i))).unwrap();
        }
    }
    {
        // A second session's file, whose values are deleted during the race: the file is then
        // deleted whole once no reader pins a state that can reach it.
        let db = options(read_path).open(dir).unwrap();
        for i in 0..KEYS {
            let k = format!("tmp{i:04}");
            db.put(&k, value(&k, len_of(i))).unwrap();
        }
    }
    // Reopened, the values above are in value files nobody appends to: they can be relocated
    // and deleted.
    let db = options(read_path).open(dir).unwrap();
    db.delete_range("tmp".."tmp~").unwrap();
    let seconds = std::env::var("EXTENTDB_RACE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    for r in 0..2u64 {
        let (db, tally, stop) = (db.clone(), Arc::clone(&tally), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7 + 3) % KEYS;
                let k = key(i);
                let got = db.get(&k).map(|v| v.map(|v| v.to_vec()));
                tally.check(&k, got, &value(&k, len_of(i)));
            }
        }));
    }
    {
        let (db, tally, stop) = (db.clone(), Arc::clone(&tally), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (i, pair) in db.range("old".."old~").enumerate() {
                    let k = key(i as u64);
                    let got = pair.map(|(key, v)| {
                        assert_eq!(key, k.as_bytes(), "scan returned keys out of order");
                        Some(v.to_vec())
                    });
                    tally.check(&k, got, &value(&k, len_of(i as u64)));
                }
            }
        }));
    }
    let mut round = 0u64;
    while Instant::now() < deadline {
        db.test_relocate_value_files().unwrap();
        if round.is_multiple_of(8) {
            db.compact().unwrap();
        }
        // New values land in the blocks the relocation and the deletion just freed.
        for j in 0..16 {
            let k = format!("new{round:05}-{j:02}");
            db.put(&k, value(&k, 4000)).unwrap();
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // With the readers gone nothing pins an older state: the dead file must go now if it has
    // not already.
    db.compact().unwrap();
    let verified = db.verify().map(|_| ()).map_err(|e| e.to_string());
    let stats = db.stats();
    eprintln!(
        "{read_path:?}: {} reads, {} stale, {} wrong; {round} relocation rounds, {} relocations, {} files deleted, pool: {} fills, {} hits, {} retries",
        tally.reads.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
        stats.value_relocations,
        stats.value_files_deleted,
        stats.pool_fills,
        stats.pool_hits,
        stats.pool_retries,
    );
    assert!(
        stats.value_relocations > 0,
        "the test never relocated anything"
    );
    assert!(
        stats.value_files_deleted > 0,
        "the test never deleted a value file"
    );
    eprintln!("{read_path:?}: verify after the run: {verified:?}");
    let _ = tally.verified.set(verified);
    tally
}

fn judge(tally: &Tally) {
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong bytes were returned as a value"
    );
    let stale = tally.stale.load(Ordering::Relaxed);
    if cfg!(feature = "test-disable-invalidate-lock") {
        assert!(
            stale > 0,
            "without the invalidate lock the race must show up as stale reads"
        );
    } else {
        assert_eq!(stale, 0, "stale reads with the invalidate lock held");
        assert_eq!(
            tally.verified.get(),
            Some(&Ok(())),
            "verify found stale pool blocks"
        );
    }
}

#[test]
fn readers_never_see_reused_blocks_through_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    judge(&run(dir.path(), ReadPath::Pool));
}

#[test]
fn readers_never_see_reused_blocks_through_the_mmap_path() {
    let dir = tempfile::tempdir().unwrap();
    judge(&run(dir.path(), ReadPath::Mmap));
}

#[test]
fn relocation_keeps_every_pointer_valid_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || options(ReadPath::Pool).test_race_window(Duration::ZERO);
    {
        let db = opts().open(dir.path()).unwrap();
        for i in 0..KEYS {
            db.put(key(i), value(&key(i), len_of(i))).unwrap();
        }
    }
    let db = opts().open(dir.path()).unwrap();
    for round in 0..3 {
        assert!(
            db.test_relocate_value_files().unwrap() > 0,
            "round {round} moved nothing"
        );
        for i in 0..KEYS {
            assert_eq!(db.get(key(i)).unwrap().unwrap(), value(&key(i), len_of(i)));
        }
        db.verify().unwrap();
    }
    let stats = db.stats();
    assert!(
        stats.value_relocations >= 3 && stats.pool_invalidations > 0,
        "{stats:?}"
    );
    drop(db);
    let db = opts().open(dir.path()).unwrap();
    for i in 0..KEYS {
        assert_eq!(db.get(key(i)).unwrap().unwrap(), value(&key(i), len_of(i)));
    }
    db.verify().unwrap();
}
