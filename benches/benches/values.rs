//! Micro-benchmarks of large values (stored in value files, read through the buffer pool):
//! gets that hit the pool and gets that miss it, on both read paths; puts; and a scan that
//! exercises the iterator's readahead.
//!
//! - **Hit**: the values fit the pool (64 MiB default) and were all read once before timing.
//! - **Miss**: a pool of `MISS_POOL_BYTES` (512 KiB) in front of `MISS_DATA_BYTES` (32 MiB) of
//!   values read in random order, so about 98% of gets miss and fill from the block store
//!   (`pread` for `ReadPath::Pool`, a copy from a memory mapping for `ReadPath::Mmap`). The
//!   segment files were just written, so the OS page cache holds them: a miss here measures the
//!   engine's fill path, not the disk.
//! - **Scan**: `SCAN_DATA_BYTES` of 64 KiB values scanned in key order (= file order) through a
//!   pool smaller than the data, so every pass reads from the block store and the readahead
//!   window (128 KiB doubling to 2 MiB) decides how many reads it takes. Two pool sizes: one
//!   whose quarter holds the largest window, and one whose quarter does not (such fills bypass
//!   the pool; see `BufferPool::fill`).
//!
//! Writes use [`Durability::Buffered`]. Databases live in a temporary directory under the
//! workspace's `target/` (the disk of the repository). Times are short so CI's
//! `cargo bench -p extentdb-benches -- --test` stays quick.
//!
//! Run: `cargo bench -p extentdb-benches --bench values` (one group: `-- value_get`).

#![expect(
    clippy::unwrap_used,
    reason = "a benchmark should stop at the first engine error"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use extentdb::{Db, Durability, Options, ReadPath, WriteBatch};
use extentdb_benches::{Rng, key};

const SIZES: [(&str, usize); 2] = [("4KiB", 4 << 10), ("64KiB", 64 << 10)];
const PATHS: [(&str, ReadPath); 2] = [("pool", ReadPath::Pool), ("mmap", ReadPath::Mmap)];
/// Data read by the hit benchmarks: well under the default 64 MiB pool.
const HIT_DATA_BYTES: usize = 16 << 20;
const MISS_DATA_BYTES: usize = 32 << 20;
const MISS_POOL_BYTES: u64 = 512 << 10;
/// Keys the put benchmarks overwrite at random.
const WRITE_KEYS: u64 = 10_000;
const SCAN_VALUE_BYTES: usize = 64 << 10;
const SCAN_DATA_BYTES: usize = 64 << 20;
/// Pools for the scan: 8 MiB (a quarter is 2 MiB, the largest readahead window) and 4 MiB.
const SCAN_POOLS: [(&str, u64); 2] = [("pool8MiB", 8 << 20), ("pool4MiB", 4 << 20)];

/// A temporary directory on the repository's disk (`/tmp` may be a RAM file system).
fn tempdir() -> tempfile::TempDir {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    tempfile::tempdir_in(target).unwrap()
}

fn open(options: Options) -> (tempfile::TempDir, Db) {
    let dir = tempdir();
    let db = options
        .durability(Durability::Buffered)
        .open(dir.path())
        .unwrap();
    (dir, db)
}

/// Writes keys `0..n` with `size`-byte values (distinct bytes per key) and flushes the index.
fn load(db: &Db, n: u64, size: usize) {
    let mut value = vec![0u8; size];
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut batch = WriteBatch::new();
        for &i in chunk {
            value.fill(u8::try_from(i % 251).unwrap_or(0));
            batch.put(key(i), &value);
        }
        db.write(batch).unwrap();
    }
    db.flush().unwrap();
}

fn get_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("value_get_hit");
    group.throughput(Throughput::Elements(1));
    for (path_name, path) in PATHS {
        for (size_name, size) in SIZES {
            let (_dir, db) = open(Options::new().read_path(path));
            let n = (HIT_DATA_BYTES / size) as u64;
            load(&db, n, size);
            for i in 0..n {
                db.get(key(i)).unwrap().unwrap();
            }
            let mut rng = Rng(1);
            group.bench_function(format!("{path_name}/{size_name}"), |b| {
                b.iter(|| black_box(db.get(key(rng.below(n))).unwrap().unwrap()));
            });
        }
    }
    group.finish();
}

fn get_miss(c: &mut Criterion) {
    let mut group = c.benchmark_group("value_get_miss");
    group.throughput(Throughput::Elements(1));
    for (path_name, path) in PATHS {
        for (size_name, size) in SIZES {
            let options = Options::new().read_path(path).cache_bytes(MISS_POOL_BYTES);
            let (_dir, db) = open(options);
            let n = (MISS_DATA_BYTES / size) as u64;
            load(&db, n, size);
            let mut rng = Rng(2);
            group.bench_function(format!("{path_name}/{size_name}"), |b| {
                b.iter(|| black_box(db.get(key(rng.below(n))).unwrap().unwrap()));
            });
            let stats = db.stats();
            eprintln!(
                "value_get_miss/{path_name}/{size_name}: pool hits {} misses {}",
                stats.pool_hits, stats.pool_misses
            );
        }
    }
    group.finish();
}

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("value_put");
    for (size_name, size) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let (_dir, db) = open(Options::new());
        let value = vec![b'v'; size];
        let mut rng = Rng(3);
        group.bench_function(size_name, |b| {
            b.iter(|| db.put(key(rng.below(WRITE_KEYS)), &value).unwrap());
        });
    }
    group.finish();
}

fn scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("value_scan");
    group.throughput(Throughput::Bytes(SCAN_DATA_BYTES as u64));
    let n = (SCAN_DATA_BYTES / SCAN_VALUE_BYTES) as u64;
    for (pool_name, pool_bytes) in SCAN_POOLS {
        let (_dir, db) = open(Options::new().cache_bytes(pool_bytes));
        load(&db, n, SCAN_VALUE_BYTES);
        group.bench_function(format!("64KiB/{pool_name}"), |b| {
            b.iter(|| {
                let mut seen = 0u64;
                for pair in db.range::<&[u8], _>(..) {
                    black_box(pair.unwrap());
                    seen += 1;
                }
                assert_eq!(seen, n);
            });
        });
        let stats = db.stats();
        eprintln!(
            "value_scan/64KiB/{pool_name}: pool fills {} fill bytes {} hits {} misses {}",
            stats.pool_fills, stats.pool_fill_bytes, stats.pool_hits, stats.pool_misses
        );
    }
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
    targets = get_hit, get_miss, put, scan
}
criterion_main!(benches);
