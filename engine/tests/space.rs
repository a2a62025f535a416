//! Space comes back: overwritten, deleted and range-deleted values are counted dead once index
//! compaction drops their pointers, wholly dead blocks are punched out, dead value files are
//! deleted, mostly-dead files are evacuated and scattered ones relocated.
//!
//! These are scaled-down versions of the figures `valuebench --parts=space` measures at 1 GiB
//! (docs/benchmarks.md): 32 MiB of 64 KiB values, the default 4 KiB blocks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use extentdb::{Options, Value};

const VALUE: usize = 64 << 10;
const FILL: usize = 32 << 20;
const KEYS: usize = FILL / VALUE;

fn options() -> Options {
    Options::new()
        .value_file_bytes(4 << 20)
        .value_segment_bytes(16 << 20)
        .background_compaction(false)
}

fn key(i: usize) -> String {
    format!("key{i:05}")
}

fn value(i: usize, round: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{i}/{round}:").into_bytes();
    v.extend((0..len).map(|j| (j as u64 * 131 + i as u64 * 7 + round) as u8));
    v.truncate(len);
    v
}

/// Bytes the directory's files occupy on disk, as `du` counts them (holes excluded).
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

/// A fixed shuffle of `0..n`, so the values of neighbouring keys are not neighbours on disk.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

fn check_all(
    get: impl Fn(String) -> extentdb::Result<Option<Value>>,
    keys: impl IntoIterator<Item = usize>,
    round: u64,
    len: usize,
) {
    for i in keys {
        let got = get(key(i))
            .unwrap()
            .unwrap_or_else(|| panic!("{} lost", key(i)));
        assert!(
            got[..] == value(i, round, len)[..],
            "{} has wrong bytes",
            key(i)
        );
    }
}

#[test]
fn overwriting_every_key_then_compacting_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    for i in 0..KEYS {
        db.put(key(i), value(i, 0, VALUE)).unwrap();
    }
    for i in 0..KEYS {
        db.put(key(i), value(i, 1, VALUE)).unwrap();
    }
    db.flush().unwrap();
    let before = db.stats();
    assert_eq!(
        before.value_dead_bytes, 0,
        "nothing is dead before compaction"
    );
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.value_live_bytes, FILL as u64, "{stats:?}");
    // The first fill's files died whole and were deleted, with their dead bytes.
    assert_eq!(stats.value_dead_bytes, 0, "{stats:?}");
    assert_eq!(stats.value_reclaimed_bytes, FILL as u64, "{stats:?}");
    assert!(stats.value_files_deleted > 0, "{stats:?}");
    let amplification = stats.value_space_amplification().unwrap();
    assert!(
        amplification <= 1.15,
        "value store: {} bytes on disk for {} live: {amplification:.3}x",
        stats.value_disk_bytes.unwrap(),
        stats.value_live_bytes
    );
    // Nothing was copied to get there: dead values freed whole blocks and files.
    assert_eq!(stats.value_gc_write_amplification(), Some(0.0), "{stats:?}");
    check_all(|k| db.get(k), 0..KEYS, 1, VALUE);
    let report = db.verify().unwrap();
    assert_eq!(report.value_unaccounted_bytes, Some(0));
    drop(db);
    let db = options().open(dir.path()).unwrap();
    check_all(|k| db.get(k), 0..KEYS, 1, VALUE);
    let reopened = db.stats();
    assert_eq!(reopened.value_dead_bytes, stats.value_dead_bytes);
    assert_eq!(reopened.value_live_bytes, stats.value_live_bytes);
}

#[test]
fn range_deleting_half_the_keys_punches_their_blocks_once_the_snapshot_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    for i in shuffled(KEYS) {
        db.put(key(i), value(i, 0, VALUE)).unwrap();
    }
    let full = du(dir.path());
    assert!(full >= FILL as u64, "{full}");
    let snapshot = db.snapshot();
    db.delete_range(key(0)..key(KEYS / 2)).unwrap();
    db.compact().unwrap();
    // The snapshot reads every deleted value: nothing of theirs was freed.
    check_all(|k| snapshot.get(k), 0..KEYS / 2, 0, VALUE);
    assert_eq!(db.stats().value_dead_bytes, 0);
    assert!(db.get(key(0)).unwrap().is_none());
    drop(snapshot);
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.value_dead_bytes, (FILL / 2) as u64, "{stats:?}");
    let left = du(dir.path());
    assert!(
        left <= FILL as u64 * 6 / 10,
        "{left} bytes on disk after deleting half of {FILL} (was {full}); {stats:?}"
    );
    check_all(|k| db.get(k), KEYS / 2..KEYS, 0, VALUE);
    // The freed blocks take new values before the store grows.
    let store = stats.value_store_blocks;
    for i in 0..KEYS / 8 {
        db.put(key(i), value(i, 2, VALUE)).unwrap();
    }
    assert_eq!(db.stats().value_store_blocks, store);
    check_all(|k| db.get(k), 0..KEYS / 8, 2, VALUE);
    db.verify().unwrap();
}

#[test]
fn small_dead_values_around_live_ones_are_evacuated() {
    // 1.5 KiB values: no 4 KiB block is ever wholly dead while one value in four lives.
    const SMALL: usize = 1536;
    const N: usize = 4000;
    let dir = tempfile::tempdir().unwrap();
    let db = options()
        .value_file_bytes(1 << 20)
        .open(dir.path())
        .unwrap();
    for i in 0..N {
        db.put(key(i), value(i, 0, SMALL)).unwrap();
    }
    for i in (0..N).filter(|i| i % 4 != 0) {
        db.delete(key(i)).unwrap();
    }
    db.compact().unwrap();
    let stats = db.stats();
    assert!(stats.value_evacuations > 0, "{stats:?}");
    assert!(stats.value_files_deleted > 0, "{stats:?}");
    let amplification = stats.value_space_amplification().unwrap();
    assert!(amplification <= 1.3, "{amplification:.3}x; {stats:?}");
    // Evacuation copied the live values only, about a quarter of what was freed.
    let gc = stats.value_gc_write_amplification().unwrap();
    assert!(gc <= 0.5, "{gc:.3}; {stats:?}");
    check_all(|k| db.get(k), (0..N).step_by(4), 0, SMALL);
    assert!(db.get(key(1)).unwrap().is_none());
    assert_eq!(db.verify().unwrap().value_unaccounted_bytes, Some(0));
    drop(db);
    let db = options().open(dir.path()).unwrap();
    check_all(|k| db.get(k), (0..N).step_by(4), 0, SMALL);
    db.verify().unwrap();
}

#[test]
fn a_file_shredded_over_small_holes_is_relocated() {
    // 9 KiB values: when every other one dies, the holes are one or two 4 KiB blocks.
    const SMALL: usize = 9 << 10;
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    for i in 0..N {
        db.put(key(i), value(i, 0, SMALL)).unwrap();
    }
    for i in (0..N).step_by(2) {
        db.delete(key(i)).unwrap();
    }
    db.compact().unwrap();
    let holes = db.stats();
    assert!(holes.value_free_blocks > 0, "{holes:?}");
    assert_eq!(holes.value_relocations, 0, "{holes:?}");
    // New values fill the holes: their files' logically adjacent blocks lie apart on disk, in
    // runs of 4-8 KiB.
    for i in (0..N).step_by(2) {
        db.put(key(i), value(i, 1, SMALL)).unwrap();
    }
    db.compact().unwrap();
    let stats = db.stats();
    assert!(stats.value_relocations > 0, "{stats:?}");
    check_all(|k| db.get(k), (0..N).step_by(2), 1, SMALL);
    check_all(|k| db.get(k), (1..N).step_by(2), 0, SMALL);
    db.verify().unwrap();
}

#[test]
fn a_file_written_into_the_holes_of_dead_large_values_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    // Every other value dies: holes of 15 blocks between live values.
    for i in 0..KEYS {
        db.put(key(i), value(i, 0, VALUE)).unwrap();
    }
    for i in (0..KEYS).step_by(2) {
        db.delete(key(i)).unwrap();
    }
    db.compact().unwrap();
    // New values fill the holes in runs of 60 KiB: not worth copying a file for.
    for i in (0..KEYS).step_by(2) {
        db.put(key(i), value(i, 1, VALUE)).unwrap();
    }
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.value_relocations, 0, "{stats:?}");
    assert_eq!(stats.value_gc_written_bytes, 0, "{stats:?}");
    check_all(|k| db.get(k), (0..KEYS).step_by(2), 1, VALUE);
    check_all(|k| db.get(k), (1..KEYS).step_by(2), 0, VALUE);
    db.verify().unwrap();
}

#[test]
fn overwrites_come_back_in_the_background_without_compact() {
    let dir = tempfile::tempdir().unwrap();
    // Background threads on; a memtable is frozen after 4 MiB of values, so index compaction
    // sees the overwrites long before its 32 MiB of index entries would fill it.
    let db = options()
        .background_compaction(true)
        .memtable_value_bytes(4 << 20)
        .open(dir.path())
        .unwrap();
    for round in 0..4 {
        for i in 0..KEYS {
            db.put(key(i), value(i, round, VALUE)).unwrap();
        }
    }
    let written = 4 * FILL as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let bound = 2 * FILL as u64;
    while db.stats().value_disk_bytes.unwrap() > bound && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stats = db.stats();
    assert!(
        stats.value_disk_bytes.unwrap() <= bound,
        "{} bytes on disk after writing {written} bytes over {FILL} live: {stats:?}",
        stats.value_disk_bytes.unwrap()
    );
    assert!(stats.flushes >= 8, "{stats:?}");
    check_all(|k| db.get(k), 0..KEYS, 3, VALUE);
    db.verify().unwrap();
}

/// Freed blocks are reused without being punched while they are a small share of the store,
/// and `compact` punches whatever is left.
#[test]
fn freed_blocks_are_reused_unpunched_until_compact_trims_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = options()
        .background_compaction(true)
        .memtable_value_bytes(1 << 20)
        .open(dir.path())
        .unwrap();
    for i in 0..KEYS {
        db.put(key(i), value(i, 0, VALUE)).unwrap();
    }
    // A sixteenth of the keys overwritten: the freed blocks stay far under a quarter of the
    // store, so no trim punches them.
    let some = 0..KEYS / 16;
    let wait_for = |what: &str, done: &dyn Fn(&extentdb::Stats) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done(&db.stats()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {:?}",
                db.stats()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // Overwritten four times, so that index compactions meet the old pointers and drop them.
    for round in 1..=4 {
        for i in some.clone() {
            db.put(key(i), value(i, round, VALUE)).unwrap();
        }
    }
    db.flush().unwrap();
    // At least one round's values freed: the 15 blocks wholly inside each of them.
    let freed = (some.len() * 15) as u64;
    wait_for("the overwritten values reclaimed", &|s| {
        s.value_unpunched_blocks >= freed
    });
    let stats = db.stats();
    assert_eq!(stats.value_punched_blocks, 0, "{stats:?}");
    let store_blocks = stats.value_store_blocks;
    // Written again, the same keys' new values go into the freed blocks: the store hardly
    // grows (one reservation at most), and the blocks they took are no longer unpunched.
    for i in some.clone() {
        db.put(key(i), value(i, 5, VALUE)).unwrap();
    }
    db.flush().unwrap();
    let stats = db.stats();
    assert!(
        stats.value_store_blocks <= store_blocks + (8 << 20) / 4096,
        "the store grew from {store_blocks} blocks instead of reusing: {stats:?}"
    );
    assert_eq!(stats.value_punched_blocks, 0, "{stats:?}");
    let du_before = du(dir.path());
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.value_unpunched_blocks, 0, "{stats:?}");
    assert!(stats.value_punched_blocks > 0, "{stats:?}");
    assert!(
        du(dir.path()) < du_before,
        "compact gave no space back: {stats:?}"
    );
    check_all(|k| db.get(k), some.clone(), 5, VALUE);
    check_all(|k| db.get(k), KEYS / 16..KEYS, 0, VALUE);
    db.verify().unwrap();
}
