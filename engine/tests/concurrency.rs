//! Concurrent writers and readers on one database see only written values, in order, while
//! flushes and compactions run constantly; concurrent synced writers share fsyncs.
//!
//! Every value names its key and a version number, and each key has one writer that writes
//! increasing versions. A reader that starts after version `v` of a key was acknowledged must
//! see `v` or newer, never a version that was not yet started, and never an older version than
//! it saw before. Snapshots read the same thing twice; iterators return sorted, unique keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

mod common;

use common::tiny;
use extentdb::{Db, Durability, WriteBatch};

const WRITERS: usize = 3;
const KEYS_PER_WRITER: usize = 24;
const ROUNDS: u64 = 150;

fn key(writer: usize, k: usize) -> String {
    format!("w{writer}/k{k:03}")
}

fn value(key: &str, version: u64) -> Vec<u8> {
    let pad = (version % 7) as usize * 20;
    format!("{key}={version:08};{}", ".".repeat(pad)).into_bytes()
}

/// The version in `value`, after checking that it names `key` and is well formed.
fn parse(key: &[u8], value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).expect("value is not text");
    let (k, rest) = text.split_once('=').expect("value has no key");
    assert_eq!(k.as_bytes(), key, "value {text:?} read for another key");
    let (version, pad) = rest.split_once(';').expect("value has no version");
    let version: u64 = version.parse().expect("bad version");
    assert_eq!(
        pad.len(),
        (version % 7) as usize * 20,
        "value {text:?} is torn"
    );
    version
}

/// Acknowledged versions, per key: index `writer * KEYS_PER_WRITER + k`.
struct Acked(Vec<AtomicU64>);

impl Acked {
    fn new() -> Self {
        Self(
            (0..WRITERS * KEYS_PER_WRITER)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    fn get(&self, writer: usize, k: usize) -> u64 {
        self.0[writer * KEYS_PER_WRITER + k].load(Ordering::Acquire)
    }

    fn set(&self, writer: usize, k: usize, version: u64) {
        self.0[writer * KEYS_PER_WRITER + k].store(version, Ordering::Release);
    }

    fn all(&self) -> Vec<u64> {
        self.0.iter().map(|a| a.load(Ordering::Acquire)).collect()
    }
}

fn index_of(key: &[u8]) -> usize {
    let text = std::str::from_utf8(key).unwrap();
    let (w, k) = text
        .strip_prefix('w')
        .and_then(|t| t.split_once("/k"))
        .unwrap();
    w.parse::<usize>().unwrap() * KEYS_PER_WRITER + k.parse::<usize>().unwrap()
}

/// How the readers read: through a registered snapshot, or through plain `get` and `range`.
#[derive(Clone, Copy, PartialEq)]
enum ReadPath {
    Snapshot,
    Plain,
}

#[test]
fn readers_see_only_written_values_in_order_while_compaction_runs() {
    readers_and_writers(ReadPath::Snapshot);
}

#[test]
fn plain_reads_see_only_written_values_in_order_while_compaction_runs() {
    readers_and_writers(ReadPath::Plain);
}

fn readers_and_writers(path: ReadPath) {
    let dir = tempfile::tempdir().unwrap();
    let db = tiny().open(dir.path()).unwrap();
    let acked = Arc::new(Acked::new());
    let done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, acked) = (db.clone(), Arc::clone(&acked));
            thread::spawn(move || {
                for round in 1..=ROUNDS {
                    if round % 5 == 0 {
                        // A whole round of this writer's keys as one batch.
                        let mut b = WriteBatch::new();
                        for k in 0..KEYS_PER_WRITER {
                            b.put(key(w, k), value(&key(w, k), round));
                        }
                        db.write(b).unwrap();
                        for k in 0..KEYS_PER_WRITER {
                            acked.set(w, k, round);
                        }
                    } else {
                        for k in 0..KEYS_PER_WRITER {
                            db.put(key(w, k), value(&key(w, k), round)).unwrap();
                            acked.set(w, k, round);
                        }
                    }
                }
            })
        })
        .collect();

    let point_readers: Vec<_> = (0..2)
        .map(|r| {
            let (db, acked, done) = (db.clone(), Arc::clone(&acked), Arc::clone(&done));
            thread::spawn(move || {
                let mut seen: HashMap<usize, u64> = HashMap::new();
                let mut i = r;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    i = (i * 31 + 7) % (WRITERS * KEYS_PER_WRITER);
                    let (w, k) = (i / KEYS_PER_WRITER, i % KEYS_PER_WRITER);
                    let before = acked.get(w, k);
                    let got = match path {
                        ReadPath::Plain => db.get(key(w, k)).unwrap(),
                        ReadPath::Snapshot => db.snapshot().get(key(w, k)).unwrap(),
                    };
                    let after = acked.get(w, k);
                    let version = match got {
                        None => 0,
                        Some(v) => parse(key(w, k).as_bytes(), &v),
                    };
                    assert!(
                        version >= before,
                        "{}: read version {version} after version {before} was acknowledged",
                        key(w, k)
                    );
                    assert!(
                        version <= after + 1,
                        "{}: version {version} was never written",
                        key(w, k)
                    );
                    let last = seen.entry(i).or_default();
                    assert!(
                        version >= *last,
                        "{}: went back from {last} to {version}",
                        key(w, k)
                    );
                    *last = version;
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let scanner = {
        let (db, acked, done) = (db.clone(), Arc::clone(&acked), Arc::clone(&done));
        thread::spawn(move || {
            let mut scans = 0u64;
            while !done.load(Ordering::Acquire) {
                let before = acked.all();
                let forward = scans.is_multiple_of(2);
                let snap = db.snapshot();
                let it = match path {
                    ReadPath::Plain => db.range::<&[u8], _>(..),
                    ReadPath::Snapshot => snap.range::<&[u8], _>(..),
                };
                let items: Vec<_> = if forward {
                    it.map(|r| r.unwrap()).collect()
                } else {
                    it.rev().map(|r| r.unwrap()).collect()
                };
                let after = acked.all();
                for pair in items.windows(2) {
                    let ordered = if forward {
                        pair[0].0 < pair[1].0
                    } else {
                        pair[0].0 > pair[1].0
                    };
                    assert!(
                        ordered,
                        "scan out of order or repeated: {:?} then {:?}",
                        pair[0].0, pair[1].0
                    );
                }
                let mut present = vec![false; before.len()];
                for (k, v) in &items {
                    let i = index_of(k);
                    present[i] = true;
                    let version = parse(k, v);
                    assert!(
                        version >= before[i],
                        "{k:?}: scan saw {version}, {} was acknowledged",
                        before[i]
                    );
                    assert!(
                        version <= after[i] + 1,
                        "{k:?}: version {version} never written"
                    );
                }
                for (i, was) in present.iter().enumerate() {
                    assert!(*was || before[i] == 0, "key {i} missing from a scan");
                }
                scans += 1;
            }
            scans
        })
    };

    let snapshotter = {
        let (db, done) = (db.clone(), Arc::clone(&done));
        thread::spawn(move || {
            let mut checks = 0u64;
            while !done.load(Ordering::Acquire) {
                let snap = db.snapshot();
                let read = |snap: &extentdb::Snapshot| -> Vec<(Vec<u8>, Vec<u8>)> {
                    snap.prefix("w1/")
                        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                        .collect()
                };
                let first = read(&snap);
                let points: Vec<_> = (0..KEYS_PER_WRITER)
                    .map(|k| snap.get(key(1, k)).unwrap().map(|v| v.to_vec()))
                    .collect();
                thread::sleep(std::time::Duration::from_millis(3));
                let second = read(&snap);
                assert_eq!(first, second, "a snapshot changed while held");
                for (k, p) in points.iter().enumerate() {
                    let from_scan = first
                        .iter()
                        .find(|(key_bytes, _)| key_bytes[..] == *key(1, k).as_bytes())
                        .map(|(_, v)| v.clone());
                    assert_eq!(
                        *p,
                        from_scan,
                        "snapshot get and scan disagree on {}",
                        key(1, k)
                    );
                }
                checks += 1;
            }
            checks
        })
    };

    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let reads: u64 = point_readers.into_iter().map(|r| r.join().unwrap()).sum();
    let scans = scanner.join().unwrap();
    let snapshot_checks = snapshotter.join().unwrap();
    let stats = db.stats();
    eprintln!("{reads} point reads, {scans} scans, {snapshot_checks} snapshot checks; {stats:?}");
    assert!(
        stats.flushes > 5 && stats.compactions > 0,
        "too little background work: {stats:?}"
    );
    assert!(reads > 0 && scans > 0 && snapshot_checks > 0);

    db.verify().unwrap();
    let check_final = |db: &Db| {
        for w in 0..WRITERS {
            for k in 0..KEYS_PER_WRITER {
                let got = db.get(key(w, k)).unwrap().unwrap();
                assert_eq!(parse(key(w, k).as_bytes(), &got), ROUNDS);
            }
        }
        assert_eq!(db.range::<&[u8], _>(..).count(), WRITERS * KEYS_PER_WRITER);
    };
    check_final(&db);
    drop(db);
    let db = tiny().open(dir.path()).unwrap();
    check_final(&db);
    db.verify().unwrap();
}

#[test]
fn concurrent_synced_writers_share_fsyncs() {
    const THREADS: usize = 8;
    const WRITES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, barrier) = (db.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for i in 0..WRITES {
                    let mut b = WriteBatch::new();
                    b.put(format!("t{t}/{i:03}"), format!("{t}.{i}"));
                    db.write_with(b, Durability::Sync).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = db.stats();
    let total = (THREADS * WRITES) as u64;
    assert_eq!(stats.writes, total, "{stats:?}");
    assert!(stats.wal_syncs >= 1, "{stats:?}");
    assert!(
        stats.wal_syncs < total,
        "{} syncs for {total} concurrent synced writes: no group commit ({stats:?})",
        stats.wal_syncs
    );
    assert!(stats.write_groups < total, "{stats:?}");
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    for t in 0..THREADS {
        for i in 0..WRITES {
            let got = db.get(format!("t{t}/{i:03}")).unwrap();
            assert_eq!(got.as_deref(), Some(format!("{t}.{i}").as_bytes()));
        }
    }
}

#[test]
fn a_sync_write_waits_for_its_own_fsync_even_when_grouped_with_buffered_writes() {
    // Buffered writers keep the log busy; every synced write must still be counted in a sync.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let buffered: Vec<_> = (0..2)
        .map(|t| {
            let (db, stop) = (db.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) {
                    db.put(format!("b{t}/{i}"), "x").unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for i in 0..30 {
        let before = db.stats().wal_syncs;
        let mut b = WriteBatch::new();
        b.put(format!("s/{i}"), "y");
        db.write_with(b, Durability::Sync).unwrap();
        assert!(
            db.stats().wal_syncs > before,
            "synced write {i} returned without a sync"
        );
    }
    stop.store(true, Ordering::Release);
    for t in buffered {
        t.join().unwrap();
    }
}
