//! Large values live in value files: they round-trip, survive reopen, are read through the
//! buffer pool (hits take no I/O, `try_get` never blocks), unreferenced tails are trimmed at
//! open, and checkpoints carry the value files. Relocation is tested in `race.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use extentdb::{Error, Options, ReadPath};

fn options() -> Options {
    Options::new()
        .block_size_bytes(512)
        .value_segment_bytes(64 << 10)
        .value_threshold_bytes(1024)
        .cache_bytes(256 << 10)
}

fn big(tag: u64, len: usize) -> Vec<u8> {
    let mut v = format!("value {tag}:").into_bytes();
    v.extend((0..len).map(|i| (i as u64 * 31 + tag) as u8));
    v.truncate(len);
    v
}

#[test]
fn large_values_round_trip_through_value_files_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [1024usize, 1500, 4096, 65 << 10, 300 << 10, 1 << 20];
    {
        let db = options().open(dir.path()).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            db.put(format!("k{i}"), big(i as u64, n)).unwrap();
        }
        db.put("small", "inline").unwrap();
        let stats = db.stats();
        assert_eq!(stats.value_files, 1, "{stats:?}");
        assert!(stats.value_mapped_blocks > 0);
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(db.get(format!("k{i}")).unwrap().unwrap(), big(i as u64, n));
        }
    }
    for read_path in [ReadPath::Pool, ReadPath::Mmap] {
        let db = options().read_path(read_path).open(dir.path()).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(
                db.get(format!("k{i}")).unwrap().unwrap(),
                big(i as u64, n),
                "{read_path:?}"
            );
        }
        assert_eq!(db.get("small").unwrap().unwrap(), b"inline");
        let report = db.verify().unwrap();
        assert_eq!(report.live_values, sizes.len() as u64 + 1);
    }
}

#[test]
fn a_cached_value_is_a_pool_hit_and_try_get_never_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = options().open(dir.path()).unwrap();
        db.put("a", big(1, 8000)).unwrap();
        db.put("b", big(2, 8000)).unwrap();
    }
    let db = options().open(dir.path()).unwrap();
    // Cold: the value is on disk, so a non-blocking read must refuse.
    assert!(matches!(db.try_get("a"), Err(Error::WouldBlock)));
    let before = db.stats();
    assert_eq!(db.get("a").unwrap().unwrap(), big(1, 8000));
    let after_fill = db.stats();
    assert_eq!(after_fill.pool_fills, before.pool_fills + 1);
    // Warm: served from the pool, blocking or not, without another fill.
    assert_eq!(db.get("a").unwrap().unwrap(), big(1, 8000));
    assert_eq!(db.try_get("a").unwrap().unwrap(), big(1, 8000));
    let warm = db.stats();
    assert_eq!(warm.pool_fills, after_fill.pool_fills);
    assert!(warm.pool_hits >= after_fill.pool_hits + 2);
    assert!(matches!(db.try_get("b"), Err(Error::WouldBlock)));
    assert!(db.try_get("missing").unwrap().is_none());
}

#[test]
fn reserved_blocks_no_pointer_reaches_are_trimmed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let block = 512u64;
    {
        let db = options().open(dir.path()).unwrap();
        db.put("only", big(7, 3000)).unwrap();
        // A reservation maps far more than one value needs.
        assert!(db.stats().value_mapped_blocks > 3000u64.div_ceil(block) + 1);
    }
    let db = options().open(dir.path()).unwrap();
    let stats = db.stats();
    assert_eq!(
        stats.value_mapped_blocks,
        3000u64.div_ceil(block),
        "{stats:?}"
    );
    assert_eq!(db.get("only").unwrap().unwrap(), big(7, 3000));
    db.verify().unwrap();
}

#[test]
fn checkpoint_carries_the_value_files() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    let db = options().open(dir.path().join("db")).unwrap();
    for i in 0..20u64 {
        db.put(format!("k{i:02}"), big(i, 2000 + i as usize * 100))
            .unwrap();
    }
    db.checkpoint(&copy).unwrap();
    db.put("after", big(99, 5000)).unwrap();
    drop(db);
    let cp = options().open(&copy).unwrap();
    for i in 0..20u64 {
        assert_eq!(
            cp.get(format!("k{i:02}")).unwrap().unwrap(),
            big(i, 2000 + i as usize * 100)
        );
    }
    assert!(cp.get("after").unwrap().is_none());
    cp.verify().unwrap();
}

#[test]
fn a_damaged_value_is_corruption_not_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = options().open(dir.path()).unwrap();
        db.put("v", vec![7u8; 4000]).unwrap();
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.iter().position(|&b| b == 7).unwrap() + 100;
    bytes[at] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let db = options().open(dir.path()).unwrap();
    assert!(db.get("v").unwrap_err().is_corruption());
    assert!(db.verify().unwrap_err().is_corruption());
}
