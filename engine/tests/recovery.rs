//! Reopening a database returns exactly the acknowledged state, whatever the last operation
//! was, and the size limits hold at their edges (the largest key and large values survive
//! reopen; one byte over the key limit is `InvalidArgument`, not a panic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::path::Path;

mod common;

use common::{Model, scan, tiny};
use extentdb::{Db, Durability, Error, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options, WriteBatch};

/// Reopens `dir` and checks that it holds exactly `model`, by scan, reverse scan and gets.
fn reopen_and_check(dir: &Path, options: Options, model: &Model) -> Db {
    let db = options.open(dir).unwrap();
    assert_eq!(scan(&db), *model);
    let back: Vec<Vec<u8>> = db
        .range::<&[u8], _>(..)
        .rev()
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    let mut keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    keys.reverse();
    assert_eq!(back, keys);
    for (k, v) in model {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]), "key {k:?}");
    }
    db.verify().unwrap();
    db
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "v".repeat((i % 40) as usize)).into_bytes()
}

/// Writes keys `0..n` with `round` into both.
fn fill(db: &Db, model: &mut Model, n: u32, round: u32) {
    for i in 0..n {
        db.put(key(i), value(i, round)).unwrap();
        model.insert(key(i), value(i, round));
    }
}

#[test]
fn put_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 50, 0);
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn overwrite_survives_reopen_with_the_newest_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 50, 0);
        fill(&db, &mut model, 50, 1);
    }
    let db = reopen_and_check(dir.path(), tiny(), &model);
    fill(&db, &mut model, 25, 2);
    drop(db);
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn delete_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 50, 0);
        db.flush().unwrap();
        for i in (0..50).step_by(3) {
            db.delete(key(i)).unwrap();
            model.remove(&key(i));
        }
        // Deleting an absent key is fine and changes nothing.
        db.delete("absent").unwrap();
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn delete_range_survives_reopen_in_the_log_and_in_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 200, 0);
        db.flush().unwrap();
        // One tombstone reaches tables, one stays in the log.
        db.delete_range(key(10)..key(60)).unwrap();
        db.flush().unwrap();
        db.delete_range(key(150)..=key(170)).unwrap();
        model.retain(|k, _| !(*k >= key(10) && *k < key(60)));
        model.retain(|k, _| !(*k >= key(150) && *k <= key(170)));
    }
    let db = reopen_and_check(dir.path(), tiny(), &model);
    // Keys written after the tombstone are live again.
    db.put(key(20), "back").unwrap();
    model.insert(key(20), b"back".to_vec());
    db.delete_range(key(190)..).unwrap();
    model.retain(|k, _| *k < key(190));
    drop(db);
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn batch_survives_reopen_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 30, 0);
        let mut b = WriteBatch::new();
        b.put(key(100), "a")
            .delete(key(1))
            .delete_range(key(5)..key(8))
            .put(key(6), "inside the deleted range, after it")
            .put(key(100), "b");
        db.write_with(b, Durability::Sync).unwrap();
        model.insert(key(100), b"b".to_vec());
        model.remove(&key(1));
        model.retain(|k, _| !(*k >= key(5) && *k < key(8)));
        model.insert(key(6), b"inside the deleted range, after it".to_vec());
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn flushed_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny()
            .background_compaction(false)
            .open(dir.path())
            .unwrap();
        fill(&db, &mut model, 100, 0);
        db.flush().unwrap();
        assert!(db.stats().flushes > 0);
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn compacted_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 400, 0);
        fill(&db, &mut model, 200, 1);
        db.delete_range(key(50)..key(80)).unwrap();
        model.retain(|k, _| !(*k >= key(50) && *k < key(80)));
        db.compact().unwrap();
        let stats = db.stats();
        assert!(stats.compactions > 0, "{stats:?}");
        assert_eq!(stats.levels[0].tables, 0, "{stats:?}");
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn many_memtable_rotations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        for round in 0..6 {
            fill(&db, &mut model, 300, round);
            for i in (round..300).step_by(7) {
                db.delete(key(i)).unwrap();
                model.remove(&key(i));
            }
        }
        let stats = db.stats();
        assert!(stats.flushes >= 10, "{stats:?}");
    }
    let db = reopen_and_check(dir.path(), tiny(), &model);
    drop(db);
    // Reopening again, with nothing written in between, changes nothing.
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn state_survives_reopen_after_a_snapshot_was_held_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        fill(&db, &mut model, 200, 0);
        let old = model.clone();
        let snap = db.snapshot();
        fill(&db, &mut model, 200, 1);
        db.delete_range(key(0)..key(100)).unwrap();
        model.retain(|k, _| *k >= key(100));
        db.compact().unwrap();
        let seen: Model = snap
            .range::<&[u8], _>(..)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<extentdb::Result<_>>()
            .unwrap();
        assert_eq!(seen, old);
        drop(snap);
        db.compact().unwrap();
        assert_eq!(scan(&db), model);
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn empty_database_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    drop(Db::open(dir.path()).unwrap());
    let db = reopen_and_check(dir.path(), Options::new(), &Model::new());
    assert_eq!(db.stats().last_sequence, 0);
}

#[test]
fn sequence_numbers_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let db = tiny().open(dir.path()).unwrap();
        db.put("a", "1").unwrap();
        db.put("b", "2").unwrap();
        db.stats().last_sequence
    };
    let db = tiny().open(dir.path()).unwrap();
    assert_eq!(db.stats().last_sequence, last);
    // A snapshot taken before a write made after reopen must not see it.
    let snap = db.snapshot();
    db.put("a", "3").unwrap();
    assert_eq!(snap.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"3"[..]));
}

#[test]
fn empty_key_works_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let db = tiny().open(dir.path()).unwrap();
        db.put("", "empty").unwrap();
        db.put("a", "a").unwrap();
        model.insert(Vec::new(), b"empty".to_vec());
        model.insert(b"a".to_vec(), b"a".to_vec());
        db.flush().unwrap();
        assert_eq!(db.get("").unwrap().as_deref(), Some(&b"empty"[..]));
        let first = db.range::<&[u8], _>(..).next().unwrap().unwrap();
        assert_eq!(
            (first.0.to_vec(), first.1.to_vec()),
            (vec![], b"empty".to_vec())
        );
    }
    let db = reopen_and_check(dir.path(), tiny(), &model);
    // A range starting at the empty key, excluded, skips it.
    let after: Vec<_> = db
        .range::<&[u8], _>((
            std::ops::Bound::Excluded(&b""[..]),
            std::ops::Bound::Unbounded,
        ))
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    assert_eq!(after, vec![b"a".to_vec()]);
    db.delete("").unwrap();
    model.remove(&b""[..]);
    drop(db);
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn longest_key_works_and_survives_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let long_a = vec![b'a'; MAX_KEY_BYTES];
    let mut long_b = vec![b'b'; MAX_KEY_BYTES];
    {
        let db = tiny().open(dir.path()).unwrap();
        db.put(&long_a, "a").unwrap();
        db.put(&long_b, "b").unwrap();
        model.insert(long_a.clone(), b"a".to_vec());
        model.insert(long_b.clone(), b"b".to_vec());
        db.flush().unwrap();
        // Its neighbours differ only in the last byte.
        *long_b.last_mut().unwrap() = b'c';
        db.put(&long_b, "c").unwrap();
        model.insert(long_b.clone(), b"c".to_vec());
        db.delete_range(long_a.clone()..=long_a.clone()).unwrap();
        model.remove(&long_a);
        db.compact().unwrap();
    }
    reopen_and_check(dir.path(), tiny(), &model);
}

#[test]
fn key_one_byte_over_the_limit_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = tiny().open(dir.path()).unwrap();
    let too_long = vec![b'k'; MAX_KEY_BYTES + 1];
    assert!(matches!(
        db.put(&too_long, "v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.delete(&too_long),
        Err(Error::InvalidArgument(_))
    ));
    let mut b = WriteBatch::new();
    b.put("fine", "v").put(&too_long, "v");
    assert!(matches!(db.write(b), Err(Error::InvalidArgument(_))));
    let value_too_large = vec![0u8; MAX_VALUE_BYTES + 1];
    assert!(matches!(
        db.put("k", &value_too_large),
        Err(Error::InvalidArgument(_))
    ));
    // Nothing of the refused writes is visible, and the database still works.
    assert!(db.get("fine").unwrap().is_none());
    assert!(scan(&db).is_empty());
    db.put("after", "ok").unwrap();
    drop(db);
    let mut model = Model::new();
    model.insert(b"after".to_vec(), b"ok".to_vec());
    reopen_and_check(dir.path(), tiny(), &model);
}

/// A large value whose bytes all differ from their neighbours' in a way a misplaced read
/// would show.
fn big_value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[test]
fn sixty_four_mib_values_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let len = 64 << 20;
    let (one, two) = (big_value(len, 1), big_value(len, 2));
    {
        let db = Options::new().open(dir.path()).unwrap();
        db.put("big1", &one).unwrap();
        db.put("small", "s").unwrap();
        assert_eq!(db.get("big1").unwrap().as_deref(), Some(&one[..]));
    }
    {
        // The first value comes back from the log; the second goes through a table.
        let db = Options::new().open(dir.path()).unwrap();
        assert!(db.get("big1").unwrap().as_deref() == Some(&one[..]));
        db.put("big2", &two).unwrap();
        db.flush().unwrap();
        db.verify().unwrap();
    }
    let db = Options::new().open(dir.path()).unwrap();
    assert!(db.get("big1").unwrap().as_deref() == Some(&one[..]));
    assert!(db.get("big2").unwrap().as_deref() == Some(&two[..]));
    assert_eq!(db.get("small").unwrap().as_deref(), Some(&b"s"[..]));
    let keys: Vec<Vec<u8>> = db
        .range::<&[u8], _>(..)
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    assert_eq!(
        keys,
        vec![b"big1".to_vec(), b"big2".to_vec(), b"small".to_vec()]
    );
    db.verify().unwrap();
}

/// Writes 300-byte keys with background work off until a second log exists, then drops the
/// handle as a crash would, and moves that log one number up, leaving an empty log in its
/// place: two logs the manifest has not recorded (the second of which holds writes), as when a
/// flush failed and the writes went on. Returns what was written.
fn crash_with_unrecorded_logs(dir: &Path) -> Model {
    let db = tiny().background_compaction(false).open(dir).unwrap();
    let mut model = Model::new();
    let logs = || -> Vec<u64> {
        let mut logs: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_suffix(".wal").map(|n| n.parse().unwrap())
            })
            .collect();
        logs.sort_unstable();
        logs
    };
    for i in 0.. {
        let mut k = key(i);
        k.resize(300, b'~');
        db.put(&k, b"v").unwrap();
        model.insert(k, b"v".to_vec());
        if logs().len() == 2 {
            break;
        }
    }
    drop(db);
    let newest = *logs().last().unwrap();
    let wal = |n: u64| dir.join(format!("{n:06}.wal"));
    std::fs::rename(wal(newest), wal(newest + 1)).unwrap();
    std::fs::File::create(wal(newest)).unwrap();
    model
}

/// Logs started after the manifest's last edit have numbers the manifest never recorded as
/// used. Whichever call of the next open fails (and every call after it), the open after that
/// must recover every write: recovery must not name its new log after one of them, which its
/// manifest edit would then call the oldest live log.
#[test]
fn a_failed_recovery_never_reuses_the_number_of_an_unrecorded_log() {
    use extentdb::fs::{FaultFs, Trigger};
    for n in 1.. {
        let dir = tempfile::tempdir().unwrap();
        let model = crash_with_unrecorded_logs(dir.path());
        let fault = FaultFs::default();
        fault.arm(Trigger::nth(n).sticky());
        let first = tiny()
            .background_compaction(false)
            .file_system(std::sync::Arc::new(fault.clone()))
            .open(dir.path());
        let failed_at = fault.injected().first().cloned();
        drop(first);
        let db = tiny()
            .open(dir.path())
            .unwrap_or_else(|e| panic!("open after the open failed at {failed_at:?}: {e}"));
        assert_eq!(scan(&db), model, "after the open failed at {failed_at:?}");
        db.verify().unwrap();
        if failed_at.is_none() {
            break;
        }
    }
}
