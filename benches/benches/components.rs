//! Micro-benchmarks of the engine's parts, one at a time: the log writer, group commit, the
//! memtable, a table's point lookup and seek, the bloom filter, the buffer pool, the extent map
//! and the block allocator.
//!
//! The parts are internal; the `benching` feature exposes thin wrappers over them
//! (`engine/src/benching.rs`) that forward to the engine's own code. Group commit is timed
//! through the public API, since it is the write path itself. Whole-`Db` gets and puts are not
//! repeated here: `db.rs` times 100 B values (`put/100B`, `get/hit`, `get/miss`) and `values.rs`
//! 4 KiB and 64 KiB ones (`value_put`, `value_get_hit`, `value_get_miss`).
//!
//! Every benchmark checks its answer once outside the timed loop (the lookup finds the value,
//! the log reads back, the pool missed exactly as often as it filled) and passes results
//! through `black_box`. Files live in a temporary directory under the workspace's `target/`
//! (the repository's disk: `/tmp` may be a RAM file system, which would make `fdatasync` free).
//!
//! Run: `cargo bench -p extentdb-benches --bench components` (one group: `-- wal_append`).
//! CI runs each benchmark once with `-- --test`.

#![expect(
    clippy::unwrap_used,
    reason = "a benchmark should stop at the first engine error"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use extentdb::benching::{
    Allocator, BloomFilter, BloomLayout, BufferPool, Bytes, ExtentMap, LogWriter, Lookup, Memtable,
    SeqNo, Table, TableBuilder, ValueFileId, bloom_build, log_records, value_crc,
};
use extentdb::fs::{FileSystem, RealFs};
use extentdb::{Db, Durability, Options};
use extentdb_benches::{Rng, key};

const KEY_BYTES: usize = 16;
const SMALL_VALUE_BYTES: usize = 100;

const WAL_SIZES: [(&str, usize); 3] = [("100B", 100), ("4KiB", 4 << 10), ("64KiB", 64 << 10)];
/// A log benchmark starts a new file once this much is written, so disk use stays bounded.
const WAL_FILE_BYTES: u64 = 64 << 20;

/// Writers racing to commit `Durability::Sync` puts to one database.
const COMMIT_THREADS: [u64; 4] = [1, 2, 4, 8];
/// Keys each committing thread overwrites in turn.
const COMMIT_KEYS: u64 = 10_000;

/// Keys in the memtable before timing starts: the even-numbered keys `key(2 * i)`, so an
/// absent key (an odd one) lies between present ones, as a real miss does.
const MEMTABLE_KEYS: u64 = 50_000;
/// Inserts timed into one memtable before a fresh one is loaded: it then holds 150 000
/// versions, about 28 MiB of the default 32 MiB budget.
const MEMTABLE_ROUND: u64 = 100_000;

/// Entries of the table (about 12 MiB of 100 B values: it fits the default 16 MiB block cache),
/// even-numbered keys as in the memtable, and keys of the bloom filter.
const TABLE_KEYS: u64 = 100_000;
const TABLE_CACHE_BYTES: u64 = 16 << 20;
const BLOOM_BITS_PER_KEY: u32 = 10;

/// The default buffer pool and value block size.
const POOL_BYTES: u64 = 64 << 20;
const POOL_BLOCK_BYTES: usize = 4 << 10;
const POOL_SIZES: [(&str, usize); 2] = [("4KiB", 4 << 10), ("64KiB", 64 << 10)];
/// Values cached before the hit benchmarks: a quarter of the pool.
const POOL_HIT_DATA_BYTES: usize = 16 << 20;
/// The pool of the miss benchmarks: small, so it evicts on every fill once full.
const POOL_MISS_BYTES: u64 = 8 << 20;

/// Extents of the mapped value file: lengths cycle through 1..=16 blocks.
const EXTENTS: u64 = 100_000;
const EXTENT_LEN_MAX: u64 = 16;

/// Free runs of the block store, between mapped runs: lengths cycle through 1..=32 blocks.
const FREE_RUNS: u64 = 100_000;
const FREE_RUN_LEN_MAX: u64 = 32;
const MAPPED_RUN_BLOCKS: u64 = 8;

/// A temporary directory on the repository's disk (`/tmp` may be a RAM file system).
fn tempdir() -> tempfile::TempDir {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    tempfile::tempdir_in(target).unwrap()
}

/// `size` bytes, different for each `seed`.
fn payload(size: usize, seed: u64) -> Vec<u8> {
    (0..size as u64)
        .map(|i| u8::try_from((i * 31 + seed) % 251).unwrap())
        .collect()
}

/// Keys `0..n` back to back in one buffer, so a key is a slice of it, as the engine's keys are
/// slices of a decoded batch.
fn key_buffer(n: u64) -> Bytes {
    Bytes::from((0..n).flat_map(key).collect::<Vec<u8>>())
}

fn key_slice(keys: &Bytes, i: u64) -> Bytes {
    let at = usize::try_from(i).unwrap() * KEY_BYTES;
    keys.slice(at..at + KEY_BYTES)
}

/// The other bench targets' settings, shortened: the whole target takes about 70 s.
fn fast_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    group
}

/// Switches `group` to settings for benchmarks whose iterations wait for `fdatasync` (about a
/// millisecond each): flat sampling, so ten samples need only a few hundred iterations.
fn waiting_for_fsync(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
}

/// Appends records of `size` bytes to a fresh log file, with `sync` or a flush after each,
/// and returns the time spent appending. Starting a new file (every `WAL_FILE_BYTES`) is not
/// timed.
fn append_records(path: &Path, size: usize, sync: bool, iters: u64) -> Duration {
    let record = payload(size, 0);
    let mut writer = LogWriter::new(RealFs.create(path).unwrap());
    let mut elapsed = Duration::ZERO;
    let mut start = Instant::now();
    for _ in 0..iters {
        let offset = writer.add_record(black_box(&record)).unwrap();
        if sync {
            writer.sync().unwrap();
        } else {
            writer.flush().unwrap();
        }
        if offset > WAL_FILE_BYTES {
            elapsed += start.elapsed();
            writer = LogWriter::new(RealFs.create(path).unwrap());
            start = Instant::now();
        }
    }
    elapsed + start.elapsed()
}

/// Writes three records of `size` bytes and reads them back with the engine's log reader.
fn check_log_round_trip(dir: &Path, size: usize) {
    let path = dir.join("check.log");
    let records: Vec<Vec<u8>> = (0..3).map(|seed| payload(size, seed)).collect();
    let mut writer = LogWriter::new(RealFs.create(&path).unwrap());
    for record in &records {
        writer.add_record(record).unwrap();
    }
    writer.sync().unwrap();
    assert_eq!(log_records(RealFs.open(&path).unwrap()).unwrap(), records);
}

/// `LogWriter::add_record`, then `flush` (what a `Durability::Buffered` commit does to the log)
/// or `sync` (a `Durability::Sync` commit with nobody to share the `fdatasync` with).
fn wal_append(c: &mut Criterion) {
    let dir = tempdir();
    let path = dir.path().join("bench.log");
    for (_, size) in WAL_SIZES {
        check_log_round_trip(dir.path(), size);
    }
    let mut group = fast_group(c, "wal_append");
    for (mode, sync) in [("buffered", false), ("sync", true)] {
        if sync {
            waiting_for_fsync(&mut group);
        }
        for (size_name, size) in WAL_SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(format!("{mode}/{size_name}"), |b| {
                b.iter_custom(|iters| append_records(&path, size, sync, iters));
            });
        }
    }
    group.finish();
}

/// `threads` writers each putting 100 B values with `Durability::Sync`, `iters` puts in all;
/// returns the wall time. Throughput is per put: with more writers, one `fdatasync` commits a
/// whole group of puts, so the time per put falls.
fn commit_concurrently(db: &Db, threads: u64, iters: u64) -> Duration {
    let value = [b'v'; SMALL_VALUE_BYTES];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let puts = iters / threads + u64::from(t < iters % threads);
            s.spawn(move || {
                for i in 0..puts {
                    let k = key(t * COMMIT_KEYS + i % COMMIT_KEYS);
                    db.write_with(single_put(&k, &value), Durability::Sync)
                        .unwrap();
                }
            });
        }
    });
    start.elapsed()
}

fn single_put(k: &[u8], value: &[u8]) -> extentdb::WriteBatch {
    let mut batch = extentdb::WriteBatch::new();
    batch.put(k, value);
    batch
}

fn group_commit(c: &mut Criterion) {
    let mut group = fast_group(c, "group_commit");
    waiting_for_fsync(&mut group);
    group.throughput(Throughput::Elements(1));
    for threads in COMMIT_THREADS {
        let dir = tempdir();
        let db = Options::new().open(dir.path()).unwrap();
        let before = db.stats();
        group.bench_function(format!("{threads}threads"), |b| {
            b.iter_custom(|iters| commit_concurrently(&db, threads, iters));
        });
        let after = db.stats();
        let (writes, syncs) = (
            after.writes - before.writes,
            after.wal_syncs - before.wal_syncs,
        );
        // Nothing ran if a filter on the command line left this benchmark out.
        if writes == 0 {
            continue;
        }
        assert!(
            (1..=writes).contains(&syncs),
            "{writes} writes, {syncs} syncs"
        );
        assert_eq!(db.get(key(0)).unwrap().unwrap(), [b'v'; SMALL_VALUE_BYTES]);
        eprintln!(
            "group_commit/{threads}threads: {writes} puts, {syncs} log syncs, {:.2} puts per sync",
            writes as f64 / syncs as f64
        );
    }
    group.finish();
}

/// A memtable holding keys `2 * i` for `i` in `0..MEMTABLE_KEYS` with `value`, at sequence
/// numbers `1..=MEMTABLE_KEYS`.
fn loaded_memtable(keys: &Bytes, value: &Bytes) -> Memtable {
    let memtable = Memtable::new();
    for i in 0..MEMTABLE_KEYS {
        memtable.insert(&key_slice(keys, 2 * i), SeqNo(i + 1), value);
    }
    memtable
}

/// Inserts new versions of random keys into a loaded memtable; loading and dropping memtables
/// (one per `MEMTABLE_ROUND` inserts) is not timed.
fn insert_versions(keys: &Bytes, value: &Bytes, rng: &mut Rng, iters: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let memtable = loaded_memtable(keys, value);
        let round = left.min(MEMTABLE_ROUND);
        let start = Instant::now();
        for seq in MEMTABLE_KEYS + 1..=MEMTABLE_KEYS + round {
            let k = key_slice(keys, 2 * rng.below(MEMTABLE_KEYS));
            memtable.insert(&k, SeqNo(seq), value);
        }
        elapsed += start.elapsed();
        black_box(&memtable);
        left -= round;
    }
    elapsed
}

fn memtable(c: &mut Criterion) {
    let mut group = fast_group(c, "memtable");
    group.throughput(Throughput::Elements(1));
    let keys = key_buffer(2 * MEMTABLE_KEYS);
    let value = Bytes::from(payload(SMALL_VALUE_BYTES, 0));
    let mut rng = Rng(5);
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| insert_versions(&keys, &value, &mut rng, iters));
    });
    let memtable = loaded_memtable(&keys, &value);
    assert_eq!(memtable.get(&key(14), SeqNo::MAX), Some(value.clone()));
    assert_eq!(memtable.get(&key(15), SeqNo::MAX), None);
    group.bench_function("get_hit", |b| {
        b.iter(|| black_box(memtable.get(&key(2 * rng.below(MEMTABLE_KEYS)), SeqNo::MAX)));
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| {
            let absent = 2 * rng.below(MEMTABLE_KEYS) + 1;
            black_box(memtable.get(&key(absent), SeqNo::MAX))
        });
    });
    group.finish();
}

/// A table of keys `2 * i` for `i` in `0..TABLE_KEYS` with 100 B values (`payload(100, i)`),
/// every data block read once so the block cache is warm.
fn warm_table(dir: &Path) -> Table {
    let path = dir.join("000001.sst");
    let mut builder = TableBuilder::new(RealFs.create(&path).unwrap());
    for i in 0..TABLE_KEYS {
        builder
            .add(&key(2 * i), SeqNo(i + 1), &payload(SMALL_VALUE_BYTES, i))
            .unwrap();
    }
    builder.finish().unwrap();
    let table = Table::open(RealFs.open(&path).unwrap(), TABLE_CACHE_BYTES).unwrap();
    for i in 0..TABLE_KEYS {
        let value = table.get(&key(2 * i)).unwrap().unwrap();
        assert_eq!(value, payload(SMALL_VALUE_BYTES, i));
    }
    table
}

/// Point lookups and seeks in a table whose blocks are all cached: the bloom filter, a binary
/// search of the index, a block cache hit, then a seek in the block (`get`) or decoding the
/// block (`seek`, as a range scan positions its table iterator).
fn table(c: &mut Criterion) {
    let mut group = fast_group(c, "table");
    group.throughput(Throughput::Elements(1));
    let dir = tempdir();
    let table = warm_table(dir.path());
    let (k, v) = table.seek(&key(41)).unwrap().unwrap();
    assert_eq!(
        (&k[..], &v[..]),
        (&key(42)[..], &payload(SMALL_VALUE_BYTES, 21)[..])
    );
    assert_eq!(table.get(&key(41)).unwrap(), None);
    let misses = table.cache_misses();
    let mut rng = Rng(6);
    group.bench_function("get_hit", |b| {
        b.iter(|| black_box(table.get(&key(2 * rng.below(TABLE_KEYS))).unwrap()));
    });
    group.bench_function("get_absent", |b| {
        b.iter(|| black_box(table.get(&key(2 * rng.below(TABLE_KEYS) + 1)).unwrap()));
    });
    group.bench_function("seek", |b| {
        b.iter(|| {
            black_box(
                table
                    .seek(&key(2 * rng.below(TABLE_KEYS)))
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    assert_eq!(
        table.cache_misses(),
        misses,
        "a timed lookup missed the block cache"
    );
    assert!(table.cache_hits() > 0);
    group.finish();
}

/// Building the filter of a 100 000-key table, and probing it for present and absent keys, in
/// both layouts: flat (table format version 1) and blocked (version 2). The `cold` probes go
/// round a set of filters larger than the L2 cache, as a get does over the filters of tables
/// a writer has just made, so most probes miss the cache.
fn bloom(c: &mut Criterion) {
    let mut group = fast_group(c, "bloom");
    let keys: Vec<[u8; KEY_BYTES]> = (0..TABLE_KEYS).map(key).collect();
    let slices = || keys.iter().map(<[u8; KEY_BYTES]>::as_slice);
    for (name, layout) in [
        ("flat", BloomLayout::Flat),
        ("blocked", BloomLayout::Blocked),
    ] {
        group.throughput(Throughput::Elements(TABLE_KEYS));
        group.bench_function(format!("build_100k_keys/{name}"), |b| {
            b.iter(|| black_box(bloom_build(BLOOM_BITS_PER_KEY, layout, slices())));
        });
        let filter =
            BloomFilter::decode(bloom_build(BLOOM_BITS_PER_KEY, layout, slices()), layout).unwrap();
        assert!(slices().all(|k| filter.may_contain(k)));
        let absent = TABLE_KEYS..2 * TABLE_KEYS;
        let false_positives = absent.filter(|&i| filter.may_contain(&key(i))).count();
        assert!(
            false_positives < 2 * TABLE_KEYS as usize / 100,
            "{false_positives} false positives"
        );
        group.throughput(Throughput::Elements(1));
        let mut rng = Rng(7);
        group.bench_function(format!("probe_hit/{name}"), |b| {
            b.iter(|| black_box(filter.may_contain(&key(rng.below(TABLE_KEYS)))));
        });
        group.bench_function(format!("probe_miss/{name}"), |b| {
            b.iter(|| black_box(filter.may_contain(&key(TABLE_KEYS + rng.below(TABLE_KEYS)))));
        });
        // 64 filters of 122 KiB: 7.6 MiB, past the L2 cache of this machine (2 MiB a core).
        let filters: Vec<BloomFilter> = (0..64u64)
            .map(|f| {
                let keys: Vec<[u8; KEY_BYTES]> =
                    (0..TABLE_KEYS).map(|i| key(f * TABLE_KEYS + i)).collect();
                let block = bloom_build(
                    BLOOM_BITS_PER_KEY,
                    layout,
                    keys.iter().map(<[u8; KEY_BYTES]>::as_slice),
                );
                BloomFilter::decode(block, layout).unwrap()
            })
            .collect();
        let mut round = (0u64..).zip(&filters).cycle();
        group.bench_function(format!("probe_hit_cold/{name}"), |b| {
            b.iter(|| {
                let (f, filter) = round.next().unwrap();
                black_box(filter.may_contain(&key(f * TABLE_KEYS + rng.below(TABLE_KEYS))))
            });
        });
    }
    group.finish();
}

/// The stand-in for the block store: every block read returns the bytes of `source` from the
/// start, so a fill costs the pool's work plus one copy, not I/O.
fn read_from(source: &[u8]) -> impl FnMut(u64, &mut [u8]) -> extentdb::Result<()> + '_ {
    |_, buf| {
        assert_eq!(
            buf.len(),
            source.len(),
            "a fill read other than one value's blocks"
        );
        buf.copy_from_slice(source);
        Ok(())
    }
}

/// Lookups of cached values (one run each, so a hit is a zero-copy slice; the CRC is checked
/// on the first hit and remembered by the run), and lookups that miss followed by the fill that
/// reads the value and evicts another (what a value read does on a miss, without the value
/// store's own CRC check).
fn buffer_pool(c: &mut Criterion) {
    let mut group = fast_group(c, "buffer_pool");
    group.throughput(Throughput::Elements(1));
    let file = ValueFileId(1);
    let mut rng = Rng(8);
    for (size_name, size) in POOL_SIZES {
        let source = payload(size, 0);
        let crc = value_crc(&source);
        let pool = BufferPool::new(POOL_BYTES, POOL_BLOCK_BYTES);
        let values = (POOL_HIT_DATA_BYTES / size) as u64;
        for i in 0..values {
            let offset = i * size as u64;
            assert_eq!(pool.lookup(file, offset, size, crc), Lookup::Miss);
            let filled = pool.fill(file, offset, size, read_from(&source));
            assert_eq!(filled.unwrap().unwrap(), source);
            assert_eq!(
                pool.lookup(file, offset, size, crc),
                Lookup::Hit(source.clone().into())
            );
        }
        let before = pool.counters();
        group.bench_function(format!("hit/{size_name}"), |b| {
            b.iter(|| black_box(pool.lookup(file, rng.below(values) * size as u64, size, crc)));
        });
        assert_eq!(
            pool.counters().misses,
            before.misses,
            "a timed lookup missed"
        );
    }
    for (size_name, size) in POOL_SIZES {
        let source = payload(size, 0);
        let pool = BufferPool::new(POOL_MISS_BYTES, POOL_BLOCK_BYTES);
        // Each value is new, at the next offset: the pool has never seen it. Filling the pool
        // twice over first makes every timed fill evict.
        let mut next = 0u64;
        let mut miss_and_fill = || {
            let offset = next * size as u64;
            next += 1;
            let missed = pool.lookup(file, offset, size, 0) == Lookup::Miss;
            let filled = pool.fill(file, offset, size, read_from(&source)).unwrap();
            (missed, filled)
        };
        for _ in 0..2 * POOL_MISS_BYTES / size as u64 {
            let (missed, filled) = miss_and_fill();
            assert!(missed);
            assert_eq!(filled.unwrap(), source);
        }
        let before = pool.counters();
        assert!(before.evictions > 0);
        group.bench_function(format!("miss_fill/{size_name}"), |b| {
            b.iter(|| black_box(miss_and_fill()));
        });
        let after = pool.counters();
        assert_eq!(after.hits, before.hits, "a timed lookup hit");
        assert_eq!(after.misses - before.misses, after.fills - before.fills);
    }
    group.finish();
}

/// The first logical block, physical block and length of extent `i`: lengths cycle through
/// 1..=16 blocks; logically the extents are back to back, physically in reverse order, so no
/// two merge.
fn extent(i: u64) -> (u64, u64, u64) {
    let cycles = i / EXTENT_LEN_MAX;
    let into = i % EXTENT_LEN_MAX;
    let cycle_blocks = EXTENT_LEN_MAX * (EXTENT_LEN_MAX + 1) / 2;
    let logical = cycles * cycle_blocks + into * (into + 1) / 2;
    let physical = (EXTENTS - i) * 2 * EXTENT_LEN_MAX;
    (logical, physical, into + 1)
}

/// `ExtentMap::lookup` of a random block in a map of 100 000 extents: what every pool fill
/// and uncached read does per extent it crosses.
fn extent_lookup(c: &mut Criterion) {
    let mut group = fast_group(c, "extent_map");
    group.throughput(Throughput::Elements(1));
    let mut map = ExtentMap::new();
    for i in 0..EXTENTS {
        let (logical, physical, len) = extent(i);
        map.map(logical, physical, len).unwrap();
    }
    map.check().unwrap();
    assert_eq!(map.extents() as u64, EXTENTS);
    let (logical, physical, len) = extent(EXTENTS / 2 + 3);
    assert_eq!(map.lookup(logical + 2), Some((physical + 2, len - 2)));
    let (last, _, last_len) = extent(EXTENTS - 1);
    let blocks = last + last_len;
    assert_eq!(map.lookup(blocks), None);
    let mut rng = Rng(9);
    group.bench_function("lookup_100k_extents", |b| {
        b.iter(|| black_box(map.lookup(rng.below(blocks))));
    });
    group.finish();
}

/// An allocation and its free, as the engine frees (`free_later`, then `release` of the
/// ticket), in a store fragmented into 100 000 free runs of 1..=32 blocks between mapped runs:
/// best fit finds a run of the size, so the store returns to the same state each time.
fn allocator(c: &mut Criterion) {
    let mut group = fast_group(c, "allocator");
    group.throughput(Throughput::Elements(1));
    // Mapped runs of 8 blocks, the holes between them 1..=32 blocks long; the store ends with
    // a mapped run.
    let mut mapped = Vec::new();
    let mut at = 0;
    for i in 0..=FREE_RUNS {
        mapped.push((at, MAPPED_RUN_BLOCKS));
        at += MAPPED_RUN_BLOCKS + 1 + i % FREE_RUN_LEN_MAX;
    }
    let end = mapped.last().unwrap().0 + MAPPED_RUN_BLOCKS;
    let mut alloc = Allocator::from_mapped(mapped.iter().copied(), end).unwrap();
    let free = alloc.free_blocks();
    let mut ticket = 0u64;
    for blocks in [1u64, 16] {
        let mut alloc_free = || {
            let runs = alloc.allocate(blocks, None);
            let got: u64 = runs.iter().map(|r| r.1).sum();
            ticket += 1;
            alloc.free_later(runs, ticket).unwrap();
            alloc.release(ticket);
            got
        };
        assert_eq!(alloc_free(), blocks);
        group.bench_function(format!("alloc_free/{blocks}blocks"), |b| {
            b.iter(|| black_box(alloc_free()));
        });
        assert_eq!(alloc.free_blocks(), free);
        alloc.check(&mapped).unwrap();
    }
    group.finish();
}

criterion_group!(
    benches,
    wal_append,
    group_commit,
    memtable,
    table,
    bloom,
    buffer_pool,
    extent_lookup,
    allocator
);
criterion_main!(benches);
