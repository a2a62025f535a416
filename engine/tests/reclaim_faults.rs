//! Reclamation never takes bytes a reader can still reach: a snapshot taken before a
//! `delete_range` reads every deleted value after `compact()` until it is dropped, and an
//! iterator opened before a compaction that drops pointers keeps reading the right bytes
//! (DESIGN invariant 2c); once they are gone, the next `compact()` gives the space back.
//!
//! The I/O-error sweep over reclamation (fail the N-th call of a `compact()`) is
//! `reclaim_fault_tests` at the end of `engine/src/db.rs`; the one over a whole workload is
//! `io_errors.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::time::Duration;

mod common;

use common::{Model, scan, try_collect};
use extentdb::{Db, Options, ReadPath, Stats};

/// 256-byte blocks, values of 64 bytes and more separated, value files sealed at 8 KiB over
/// 64 KiB segments, and a 16 KiB buffer pool: the values below span several blocks and
/// files, and most reads miss the pool and go to the blocks themselves.
fn options(background: bool, read_path: ReadPath) -> Options {
    common::tiny()
        .value_threshold_bytes(64)
        .value_file_bytes(8 << 10)
        .value_segment_bytes(64 << 10)
        .cache_bytes(16 << 10)
        .read_path(read_path)
        .background_compaction(background)
}

/// A value of `len` bytes that differs from every other `(tag, len)` in every 8 bytes.
fn value(tag: u64, len: usize) -> Vec<u8> {
    let mut x = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len as u64;
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

/// Lengths from a tenth of a block to 20 KiB: most values span blocks, some span files, the
/// largest free runs long enough to be punched.
fn len_of(i: u64) -> usize {
    [100, 700, 1500, 3000, 5000, 9000, 20_000][usize::try_from(i % 7).unwrap()]
}

fn key(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:03}")
}

/// Writes `n` keys `prefix000..` with values tagged `tag + i`; returns what it wrote.
fn fill(db: &Db, prefix: &str, n: u64, tag: u64) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        let (k, v) = (key(prefix, i), value(tag + i, len_of(i)));
        db.put(&k, &v).unwrap();
        model.insert(k.into_bytes(), v);
    }
    model
}

fn reclaimed(before: &Stats, after: &Stats) -> (u64, u64) {
    (
        after.value_files_deleted - before.value_files_deleted,
        after.value_reclaimed_bytes - before.value_reclaimed_bytes,
    )
}

#[test]
fn a_snapshot_reads_every_value_a_delete_range_removed_until_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(false, ReadPath::Pool).open(dir.path()).unwrap();
    let mut old = fill(&db, "del", 60, 0);
    let keep = fill(&db, "keep", 10, 1000);
    db.compact().unwrap();
    db.verify().unwrap();

    let snapshot = db.snapshot();
    // Overwritten after the snapshot, then deleted: the snapshot must still see the first
    // values, and nobody ever sees the second ones.
    let _ = fill(&db, "del", 20, 5000);
    db.delete_range("del".."dem").unwrap();
    old.extend(keep.clone());
    db.compact().unwrap();
    let during = db.stats();
    for (k, v) in &old {
        let got = snapshot.get(k).unwrap();
        assert!(
            got.as_deref() == Some(&v[..]),
            "snapshot lost {}",
            String::from_utf8_lossy(k)
        );
    }
    let through_range: Model = try_collect(snapshot.range::<&str, _>(..))
        .unwrap()
        .into_iter()
        .collect();
    assert!(through_range == old, "the snapshot's scan differs");
    assert!(scan(&db) == keep, "the database still shows deleted keys");
    db.verify().unwrap();

    drop(snapshot);
    db.compact().unwrap();
    let after = db.stats();
    let (files, bytes) = reclaimed(&during, &after);
    assert!(
        files > 0 && bytes > 0,
        "the snapshot is gone, yet nothing was reclaimed: {after:?}"
    );
    assert!(
        after.value_disk_bytes.unwrap() < during.value_disk_bytes.unwrap(),
        "no space went back to the file system: {:?} -> {:?} bytes",
        during.value_disk_bytes,
        after.value_disk_bytes
    );
    // Every block still mapped holds live bytes, except the two a live value may share with
    // dead neighbours and the file being appended to, whose unwritten reservation (64 blocks,
    // a quarter of a segment) stays mapped.
    let bs = 256;
    let live: u64 = keep.values().map(|v| v.len() as u64).sum();
    let bound = live.div_ceil(bs) + 2 * keep.len() as u64 + 64;
    assert!(
        after.value_mapped_blocks <= bound,
        "{} blocks still mapped for {live} live bytes (at most {bound} expected): {after:?}",
        after.value_mapped_blocks
    );
    assert!(scan(&db) == keep);
    db.verify().unwrap();
    drop(db);
    let db = options(false, ReadPath::Pool).open(dir.path()).unwrap();
    assert!(scan(&db) == keep);
    db.verify().unwrap();
}

/// An iterator opened before a compaction that drops the pointers it is about to read.
///
/// What guards it: `DbInner::reclaim_values` (`engine/src/db.rs`) passes `ValueStore::reclaim`
/// a `quiescent` check, `self.super_version().alive() == 1`, and `reclaim` frees nothing while
/// it is false. The iterator pins the super version it was opened on, so `alive()` stays
/// above 1 until it is dropped. Without that check, the `compact()` below would delete every
/// value file the deleted keys lived in (`delete_file` removes it from the store's map) and
/// unmap the dead blocks of the one still being appended to, and the writes after it would
/// reuse the freed blocks. The iterator's next read would then fail with `Corruption` ("a
/// pointer names value file N, which does not exist", or "value file N has no block B"), or,
/// were the file still there, read the reused blocks and fail the pointer's checksum: the
/// loop below panics on the first such read, before the counters are even looked at. (The
/// experiment: make that closure return `true` and run this test.)
fn iterator_reads_through_a_compaction_that_drops_its_pointers(
    background: bool,
    read_path: ReadPath,
) {
    let what = format!("background {background}, {read_path:?}");
    let dir = tempfile::tempdir().unwrap();
    let db = options(background, read_path).open(dir.path()).unwrap();
    let old = fill(&db, "del", 80, 0);
    db.compact().unwrap();
    let mut iter = db.range::<&str, _>(..);
    let mut seen = Model::new();
    for _ in 0..5 {
        let (k, v) = iter.next().unwrap().unwrap();
        seen.insert(k.to_vec(), v.to_vec());
    }

    db.delete_range("del".."dem").unwrap();
    let before = db.stats();
    db.compact().unwrap();
    if background {
        // Long enough for the value thread to retry the reclamation it owes at least once.
        std::thread::sleep(Duration::from_millis(1200));
    }
    // New values, which would take the blocks of the deleted ones had they been freed.
    let new = fill(&db, "new", 80, 10_000);
    db.flush().unwrap();
    for pair in iter.by_ref() {
        let (k, v) = pair.unwrap_or_else(|e| {
            panic!("{what}: a read of the iterator failed after the compaction: {e}")
        });
        seen.insert(k.to_vec(), v.to_vec());
    }
    for (k, v) in &old {
        assert!(
            seen.get(k) == Some(v),
            "{what}: the iterator read wrong bytes for {}",
            String::from_utf8_lossy(k)
        );
    }
    assert_eq!(seen.len(), old.len(), "{what}");
    let during = db.stats();
    assert_eq!(
        reclaimed(&before, &during).0,
        0,
        "{what}: no value file the iterator reads may be deleted while it lives: {during:?}"
    );

    drop(iter);
    if background {
        // The value thread owes the reclamation it put off: it does it alone. (Not a
        // `compact()` racing with it: see `concurrent_compactions_never_poison_the_database`.)
        let waited = std::time::Instant::now();
        while db.stats().value_files_deleted == during.value_files_deleted
            && waited.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        db.compact().unwrap();
    }
    let after = db.stats();
    let (files, bytes) = reclaimed(&during, &after);
    assert!(
        files > 0 && bytes > 0,
        "{what}: the iterator is gone, yet nothing was reclaimed: {after:?}"
    );
    assert!(scan(&db) == new, "{what}");
    db.verify().unwrap();
}

#[test]
fn an_iterator_keeps_reading_correct_bytes_while_compaction_drops_its_pointers() {
    for read_path in [ReadPath::Pool, ReadPath::Mmap] {
        iterator_reads_through_a_compaction_that_drops_its_pointers(false, read_path);
    }
}

#[test]
fn the_value_thread_also_waits_for_an_iterator_of_an_older_version() {
    iterator_reads_through_a_compaction_that_drops_its_pointers(true, ReadPath::Pool);
}

/// Two threads compact while a third overwrites and range-deletes values, so that one
/// thread's reclamation deletes value files while the other's relocation pass walks the list
/// of files it took before. Returns the errors the threads met.
fn compactions_race_with_reclamation(seconds: u64) -> Vec<String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    // The background value thread races with both.
    let db = options(true, ReadPath::Pool).open(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let mut errors = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for i in 0..40 {
                    db.put(key("k", i), value(round * 100 + i, len_of(i)))
                        .map_err(|e| format!("put: {e}"))?;
                }
                db.delete_range("k010".."k030")
                    .map_err(|e| format!("delete_range: {e}"))?;
            }
            Ok::<(), String>(())
        });
        let compactors: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        db.compact().map_err(|e| format!("compact: {e}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        while started.elapsed() < Duration::from_secs(seconds) && !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        std::iter::once(writer)
            .chain(compactors)
            .filter_map(|t| t.join().unwrap().err())
            .collect::<Vec<String>>()
    });
    if errors.is_empty()
        && let Err(e) = db.verify()
    {
        errors.push(format!("verify: {e}"));
    }
    errors
}

/// Regression test for a race between reclamation and relocation, found by the crash test
/// (`EXTENTDB_CRASH_SEED=1795679406592894100`, release, 300 cycles: the child's database was
/// poisoned at cycle 16, and at cycles 1, 10 and 90 on reruns). `ValueStore::defragment` takes
/// the list of file ids, then relocates them one by one; a file that a reclamation pass in
/// another thread (the background value thread, or another `compact()`) deleted in between
/// used to be `Corruption` and poisoned the database though nothing was wrong on disk. A file
/// gone by the time the job lock is held has nothing left to relocate: the pass skips it.
#[test]
fn concurrent_compactions_never_poison_the_database() {
    let errors = compactions_race_with_reclamation(5);
    assert!(errors.is_empty(), "{errors:#?}");
}
