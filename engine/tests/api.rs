//! The public API behaves like an ordered map that survives reopening.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

mod common;

use common::tiny;
use extentdb::{Db, Durability, Error, WriteBatch};

fn collect(
    it: impl Iterator<Item = extentdb::Result<(extentdb::Key, extentdb::Value)>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    common::try_collect(it).unwrap()
}

#[test]
fn put_get_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("a", "1").unwrap();
    db.put("b", "2").unwrap();
    assert_eq!(db.get("a").unwrap().unwrap(), b"1");
    db.delete("a").unwrap();
    assert!(db.get("a").unwrap().is_none());
    assert_eq!(db.get("b").unwrap().unwrap(), b"2");
    assert!(db.get("zz").unwrap().is_none());
}

#[test]
fn empty_key_is_an_ordinary_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("", "empty").unwrap();
    assert_eq!(db.get("").unwrap().unwrap(), b"empty");
    assert_eq!(
        collect(db.range::<&[u8], _>(..)),
        vec![(vec![], b"empty".to_vec())]
    );
}

#[test]
fn compaction_leaves_the_block_cache_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let db = tiny().open(dir.path()).unwrap();
    for i in 0..2000u32 {
        db.put(format!("key{:06}", i * 7919 % 2000), format!("value-{i}"))
            .unwrap();
    }
    db.flush().unwrap();
    assert!(db.get("key000042").unwrap().is_some());
    let before = db.stats();
    db.compact().unwrap();
    let after = db.stats();
    assert!(
        after.compactions > before.compactions,
        "the test needs a compaction"
    );
    assert_eq!(
        (after.block_cache_hits, after.block_cache_misses),
        (before.block_cache_hits, before.block_cache_misses),
        "compaction went through the block cache"
    );
}

#[test]
fn data_survives_reopen_through_flushes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u32)
        .map(|i| {
            (
                format!("key{i:06}").into_bytes(),
                format!("value-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes(),
            )
        })
        .collect();
    {
        let db = tiny().open(dir.path()).unwrap();
        for (k, v) in &expected {
            db.put(k, v).unwrap();
        }
        for (k, _) in expected.iter().step_by(3) {
            db.put(k, b"overwritten").unwrap();
        }
        db.flush().unwrap();
        db.compact().unwrap();
        let stats = db.stats();
        assert!(stats.flushes > 0 && stats.compactions > 0, "{stats:?}");
        db.verify().unwrap();
    }
    let db = tiny().open(dir.path()).unwrap();
    for (i, (k, v)) in expected.iter().enumerate() {
        let want: &[u8] = if i % 3 == 0 { b"overwritten" } else { v };
        assert_eq!(db.get(k).unwrap().unwrap(), want, "key {i}");
    }
    let all = collect(db.range::<&[u8], _>(..));
    assert_eq!(all.len(), expected.len());
    let back: Vec<_> = collect(db.range::<&[u8], _>(..))
        .into_iter()
        .rev()
        .collect();
    let mut rev = collect(db.range::<&[u8], _>(..).rev());
    rev.reverse();
    assert_eq!(rev, all);
    drop(back);
}

#[test]
fn delete_range_hides_keys_at_once_and_snapshots_still_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = tiny().open(dir.path()).unwrap();
    for i in 0..1000u32 {
        db.put(format!("k{i:04}"), format!("v{i}")).unwrap();
    }
    let snap = db.snapshot();
    db.delete_range("k0100".."k0900").unwrap();
    assert!(db.get("k0500").unwrap().is_none());
    assert_eq!(db.get("k0099").unwrap().unwrap(), b"v99");
    assert_eq!(db.get("k0900").unwrap().unwrap(), b"v900");
    assert_eq!(snap.get("k0500").unwrap().unwrap(), b"v500");
    assert_eq!(collect(db.range::<&[u8], _>(..)).len(), 200);
    db.compact().unwrap();
    assert_eq!(snap.get("k0500").unwrap().unwrap(), b"v500");
    assert_eq!(collect(snap.range::<&[u8], _>(..)).len(), 1000);
    drop(snap);
    db.compact().unwrap();
    assert_eq!(collect(db.range::<&[u8], _>(..)).len(), 200);
    db.put("k0500", "back").unwrap();
    assert_eq!(db.get("k0500").unwrap().unwrap(), b"back");
}

#[test]
fn batches_apply_atomically_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut b = WriteBatch::new();
    b.put("x", "1")
        .put("x", "2")
        .delete("y")
        .put("z", "3")
        .delete_range("z".."zz");
    db.write_with(b, Durability::Sync).unwrap();
    assert_eq!(db.get("x").unwrap().unwrap(), b"2");
    assert!(db.get("z").unwrap().is_none());
}

#[test]
fn second_open_of_a_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert!(matches!(Db::open(dir.path()), Err(Error::Locked(_))));
    drop(db);
    Db::open(dir.path()).unwrap();
}

#[test]
fn prefix_scan_and_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let db = tiny().open(dir.path()).unwrap();
    for k in ["a", "b/1", "b/2", "b/3", "c"] {
        db.put(k, k).unwrap();
    }
    let keys: Vec<Vec<u8>> = collect(db.prefix("b/"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![b"b/1".to_vec(), b"b/2".to_vec(), b"b/3".to_vec()]
    );
    let mut it = db.prefix("b/");
    assert_eq!(it.next_back().unwrap().unwrap().0, b"b/3");
    assert_eq!(it.next().unwrap().unwrap().0, b"b/1");
    assert_eq!(it.next_back().unwrap().unwrap().0, b"b/2");
    assert!(it.next().is_none());
}

#[test]
fn handles_are_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    fn sendable<T: Send + 'static>() {}
    shareable::<Db>();
    sendable::<extentdb::Snapshot>();
    sendable::<extentdb::Iter>();
    sendable::<extentdb::Value>();
}
