//! Micro-benchmarks of the public API: puts, gets (hit and miss), range scans and batches.
//!
//! Each benchmark opens a fresh database in a temporary directory with default options and
//! [`Durability::Buffered`] writes (the write reaches the OS, not the disk), so the numbers
//! measure the engine, not `fdatasync`. Times are kept short so the suite runs in a few
//! minutes; CI smoke-tests it with `cargo bench -p extentdb-benches -- --test`.
//!
//! Run: `cargo bench -p extentdb-benches` (one group: `-- put`).

#![expect(
    clippy::unwrap_used,
    reason = "a benchmark should stop at the first engine error"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use extentdb::{Db, Durability, Options, WriteBatch};
use extentdb_benches::{Rng, key};

/// Keys the write benchmarks overwrite at random: bounded, so disk use stays bounded however
/// many iterations criterion runs.
const WRITE_KEYS: u64 = 100_000;
/// Keys loaded before the read benchmarks.
const READ_KEYS: u64 = 50_000;
const SMALL_VALUE_BYTES: usize = 100;
const LARGE_VALUE_BYTES: usize = 4 << 10;
const SCAN_KEYS: u64 = 1_000;
const BATCH_PUTS: u64 = 100;

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new()
        .durability(Durability::Buffered)
        .open(dir.path())
        .unwrap();
    (dir, db)
}

/// A database holding `READ_KEYS` keys with 100-byte values, flushed to tables, every block
/// read once so the cache is warm.
fn loaded() -> (tempfile::TempDir, Db) {
    let (dir, db) = open();
    let value = vec![b'v'; SMALL_VALUE_BYTES];
    for chunk in (0..READ_KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut batch = WriteBatch::new();
        for &i in chunk {
            batch.put(key(i), &value);
        }
        db.write(batch).unwrap();
    }
    db.flush().unwrap();
    assert_eq!(db.range::<&[u8], _>(..).count() as u64, READ_KEYS);
    for i in 0..READ_KEYS {
        db.get(key(i)).unwrap().unwrap();
    }
    (dir, db)
}

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("put");
    group.throughput(Throughput::Elements(1));
    for (name, size) in [("100B", SMALL_VALUE_BYTES), ("4KiB", LARGE_VALUE_BYTES)] {
        let (_dir, db) = open();
        let value = vec![b'v'; size];
        let mut rng = Rng(1);
        group.bench_function(name, |b| {
            b.iter(|| db.put(key(rng.below(WRITE_KEYS)), &value).unwrap());
        });
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(BATCH_PUTS));
    let (_dir, db) = open();
    let value = vec![b'v'; SMALL_VALUE_BYTES];
    let mut rng = Rng(2);
    group.bench_function("100x100B", |b| {
        b.iter_batched(
            || {
                let mut batch = WriteBatch::new();
                for _ in 0..BATCH_PUTS {
                    batch.put(key(rng.below(WRITE_KEYS)), &value);
                }
                batch
            },
            |batch| db.write(batch).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn get(c: &mut Criterion) {
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    let (_dir, db) = loaded();
    let mut rng = Rng(3);
    group.bench_function("hit", |b| {
        b.iter(|| black_box(db.get(key(rng.below(READ_KEYS))).unwrap().unwrap()));
    });
    group.bench_function("miss", |b| {
        b.iter(|| {
            let absent = READ_KEYS + rng.below(READ_KEYS);
            assert!(db.get(key(absent)).unwrap().is_none());
        });
    });
    group.finish();
}

fn range(c: &mut Criterion) {
    let mut group = c.benchmark_group("range");
    group.throughput(Throughput::Elements(SCAN_KEYS));
    let (_dir, db) = loaded();
    let mut rng = Rng(4);
    group.bench_function("1000keys", |b| {
        b.iter(|| {
            let start = rng.below(READ_KEYS - SCAN_KEYS);
            let mut n = 0;
            for pair in db.range(key(start)..key(start + SCAN_KEYS)) {
                black_box(pair.unwrap());
                n += 1;
            }
            assert_eq!(n as u64, SCAN_KEYS);
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = put, batch, get, range
}
criterion_main!(benches);
