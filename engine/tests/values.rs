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
        // In a table: a value of the newest log that fails at recovery is taken for one a
        // power loss took, and its write is dropped (docs/durability.md).
        db.flush().unwrap();
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

#[test]
fn a_value_file_nothing_points_into_is_deleted_and_its_blocks_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = options().open(dir.path()).unwrap();
        for i in 0..20u64 {
            db.put(format!("tmp{i:02}"), big(i, 6000)).unwrap();
        }
    }
    {
        let db = options().open(dir.path()).unwrap();
        db.put("keep", big(100, 5000)).unwrap();
        let snapshot = db.snapshot();
        db.delete_range("tmp".."tmp~").unwrap();
        db.compact().unwrap();
        // A snapshot can still read the deleted values: their file stays.
        assert_eq!(db.stats().value_files_deleted, 0);
        assert_eq!(snapshot.get("tmp03").unwrap().unwrap(), big(3, 6000));
        drop(snapshot);
        db.compact().unwrap();
        let stats = db.stats();
        assert_eq!(stats.value_files_deleted, 1, "{stats:?}");
        assert!(stats.value_free_blocks > 0);
        assert!(db.get("tmp03").unwrap().is_none());
        assert_eq!(db.get("keep").unwrap().unwrap(), big(100, 5000));
        // New values take the freed blocks instead of growing the store.
        let store = stats.value_store_blocks;
        for i in 0..10u64 {
            db.put(format!("new{i}"), big(200 + i, 6000)).unwrap();
        }
        assert_eq!(db.stats().value_store_blocks, store);
        db.verify().unwrap();
    }
    let db = options().open(dir.path()).unwrap();
    // The first session's file is gone; `compact` sealed the second's, which holds `keep`, and
    // the new values went to a third.
    assert_eq!(db.stats().value_files, 2);
    assert_eq!(db.get("keep").unwrap().unwrap(), big(100, 5000));
    for i in 0..10u64 {
        assert_eq!(
            db.get(format!("new{i}")).unwrap().unwrap(),
            big(200 + i, 6000)
        );
    }
    db.verify().unwrap();
}

#[test]
fn a_value_file_an_open_iterator_may_read_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = options().open(dir.path()).unwrap();
        for i in 0..5u64 {
            db.put(format!("tmp{i}"), big(i, 3000)).unwrap();
        }
    }
    let db = options().open(dir.path()).unwrap();
    let mut iter = db.range::<&str, _>(..);
    db.delete_range("tmp".."tmp~").unwrap();
    db.compact().unwrap();
    assert_eq!(
        db.stats().value_files_deleted,
        0,
        "an iterator still pins the old state"
    );
    assert_eq!(iter.next().unwrap().unwrap().1, big(0, 3000));
    drop(iter);
    db.compact().unwrap();
    assert_eq!(db.stats().value_files_deleted, 1);
}

#[test]
fn the_inventory_lists_tables_value_files_segments_and_extents() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    for i in 0..10u64 {
        db.put(format!("k{i}"), big(i, 3000)).unwrap();
    }
    db.flush().unwrap();
    let inv = db.inventory();
    assert_eq!(inv.block_size_bytes, 512);
    assert_eq!(inv.tables.len(), 1);
    assert_eq!(inv.tables[0].level, 0);
    assert_eq!(inv.tables[0].entries, 10);
    assert_eq!(inv.tables[0].format_version, 2);
    assert_eq!(inv.value_files.len(), 1);
    let file = &inv.value_files[0];
    assert_eq!(file.written_bytes, 30_000);
    assert_eq!(file.extents, 1);
    assert_eq!(inv.segments.len(), 1);
    assert_eq!(inv.segments[0].size_bytes, 64 << 10);
    let extents = db.value_file_extents(file.id).unwrap();
    assert_eq!(extents.len(), 1);
    assert_eq!(extents[0].logical_block, 0);
    assert_eq!(extents[0].blocks, file.mapped_blocks);
    assert!(db.value_file_extents(file.id + 1000).is_none());
}

#[test]
fn verify_reports_its_progress_through_tables_then_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    for i in 0..600u64 {
        db.put(format!("k{i:04}"), big(i, 10_000)).unwrap();
    }
    db.compact().unwrap();
    let mut seen: Vec<extentdb::VerifyProgress> = Vec::new();
    let report = db.verify_with_progress(|p| seen.push(p)).unwrap();
    let tables: Vec<_> = seen
        .iter()
        .filter(|p| p.phase == extentdb::VerifyPhase::Tables)
        .collect();
    let values: Vec<_> = seen
        .iter()
        .filter(|p| p.phase == extentdb::VerifyPhase::Values)
        .collect();
    assert_eq!(tables.len(), report.tables);
    let last = tables.last().unwrap();
    assert_eq!(
        (last.done_bytes, last.total_bytes),
        (report.bytes, report.bytes)
    );
    // About 6 MB of values: a report every 4 MiB, then the last one.
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(values[0].total_bytes, 6_000_000);
    assert!(values[0].done_bytes >= 4 << 20);
    let end = values.last().unwrap();
    assert_eq!((end.done_bytes, end.total_bytes), (6_000_000, 6_000_000));
    assert_eq!(report.live_value_bytes, 6_000_000);
    // Tables come first.
    assert!(
        seen.iter()
            .position(|p| p.phase == extentdb::VerifyPhase::Values)
            > Some(0)
    );
}
