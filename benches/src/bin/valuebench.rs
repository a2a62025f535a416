//! `valuebench`: measurements of the value store that criterion's per-call timing cannot make.
//!
//! Seven parts, each printed as its own block after one line naming every parameter:
//!
//! - **threshold**: for each value size, fill `--keys` keys and read them back warm, once with
//!   `value_threshold_bytes` just above the size (values inline in the index) and once at the
//!   size (values in value files). Both caches (`table_cache_bytes`, `cache_bytes`) are
//!   `--threshold-cache-mib`, so both layouts read warm from memory. Prints fill and read ops/s
//!   and the bytes allocated on disk (`st_blocks`, so the sparse segment files count only what
//!   they hold).
//! - **seqfill**: the disk's sequential write bandwidth (kvbench's probe: `--fill-mib` MiB of
//!   1 MiB writes, each handed to write-back as it is written, then one `fdatasync`, in the same
//!   directory) alternated `--seqfill-reps` times with a fill of
//!   `--fill-mib` MiB of 64 KiB values with `Durability::Buffered` ended by `Db::sync` (which
//!   syncs the value segments, then the log). Prints every MB/s figure, the medians, and the
//!   ratio of the medians (target >= 60%).
//! - **tail**: one reader thread doing random gets of 64 KiB values (`--tail-data-mib` MiB of
//!   them behind a `--tail-pool-mib` MiB pool, so most gets miss) for `--tail-secs` seconds
//!   idle, then `--tail-secs` seconds while a second thread keeps writing new keys, forces a
//!   relocation of every value file (`Db::test_relocate_value_files`, feature `test-hooks`,
//!   enabled for this bench-only package) and runs `Db::compact` every few rounds. Prints
//!   p50/p99/p999 of both phases and the p99 ratio (target <= 1.5x). Latencies are kept in a
//!   `Vec` and sorted: a few hundred thousand samples per phase, so percentiles are exact and
//!   need no histogram crate.
//! - **cached**: random gets of `--cached-data-mib` MiB of 64 KiB values, all in a pool large
//!   enough to hold them, for `--cached-secs` seconds per mode: copy each value into one reused
//!   `Vec` (GB/s), and read one byte per value (values/s).
//!
//! - **scan**: one full scan of `--scan-data-mib` MiB of 64 KiB values (written in key order,
//!   so a scan walks each file in order and the iterator's readahead grows to 2 MiB) for pool
//!   sizes from 4 to 64 MiB. Prints MB/s and the read amplification: bytes the pool's fills read
//!   over bytes of values returned.
//! - **space** (not in the default parts: it writes several GiB and runs for minutes; ask for it
//!   with `--parts=space`): four measurements of reclamation, each in its own directory, all
//!   with 64 KiB values and F = `--space-mib` MiB:
//!   1. *overwrite*: fill F, overwrite every key once, `Db::compact`; bytes on disk of the
//!      value store (`value_disk_bytes`) and of the whole directory (`st_blocks`, like `du`)
//!      against the live bytes (target <= 1.15x);
//!   2. *range delete*: fill F in shuffled key order, take a snapshot, `delete_range` half the
//!      key space, `compact` (the snapshot must still read a deleted value), drop the snapshot,
//!      `compact`; the directory's bytes on disk (target <= 0.6 F);
//!   3. *GC write amplification*: fill F/4, then `--space-rounds` rounds of overwriting a random
//!      quarter of the keys followed by `compact`; bytes value compaction copied per byte it
//!      freed (target <= 0.3), beside a model of a classic value log fed the same writes;
//!   4. *reader tail*: like **tail**, but the busy thread overwrites, range-deletes and
//!      compacts (F/4 of values behind a `--space-pool-mib` MiB pool, `--space-secs` seconds per
//!      phase, `--space-reps` runs, medians printed; target p99 busy/idle <= 1.5x). Idle and
//!      busy alternate in windows of `--space-window-ms` (0: all idle, then all busy), so a
//!      drift of the shared machine weighs on both sides; each run also prints the reader's
//!      sleeps and preemptions per 1000 gets in each kind of window. Five ways:
//!      the busy thread ending each round with `Db::compact`, flat out and then paced to
//!      `--space-busy-mibps` MiB/s of puts (as db_bench's `readwhilewriting` paces its
//!      writer); paced, ending each round with `Db::flush` and leaving compaction and
//!      reclamation to the background threads; and two paced controls that show what any
//!      second thread costs the reader on this machine: the puts alone, and CPU alone.
//!
//! - **sync** (not in the default parts; `--parts=sync`): how long `Db::sync` takes after
//!   `--sync-mib` MiB of `Buffered` puts that no sync covered, with `Options::writeback_bytes`
//!   at its default (write-back of value segments and of the log every MiB) and at 0,
//!   alternated `--seqfill-reps` times, for 100-byte values (in the log) and 4 KiB ones (in
//!   value segments). The memtable is large enough that no memtable switch syncs in between.
//!
//! Flags (`--name=value`; defaults give a run of about a minute and a half on 2 cores):
//! `--dir=.` (a temporary directory is made inside it: use the disk under test),
//! `--parts=threshold,seqfill,tail,cached,scan`, `--keys=20000`, `--threshold-cache-mib=256`,
//! `--fill-mib=512`, `--seqfill-reps=3`, `--sync-mib=64`, `--tail-data-mib=128`, `--tail-pool-mib=8`, `--tail-secs=10`,
//! `--cached-data-mib=32`, `--cached-secs=3`, `--scan-data-mib=128`, `--space-mib=1024`,
//! `--space-rounds=8`, `--space-secs=10`, `--space-pool-mib=8`, `--space-reps=3`,
//! `--space-busy-mibps=64`, `--space-window-ms=1000`,
//! `--space-modes=compact-flat,compact,flush,background,puts,disk,spin`, and part f.4's controls
//! `--space-fs=real` (`count`, `no-punch`, `no-sync`), `--space-read=pool` (`mmap`), `--space-reader-cpu=N`,
//! `--space-memtable-value-mib=N`.
//! `--parts` defaults to `threshold,seqfill,tail,cached,scan`; `space` runs only when named
//! (`space-reader` runs its part 4 alone).
//!
//! Run: `cargo run --release -p extentdb-benches --bin valuebench -- --dir=target`.

use std::error::Error;
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use extentdb::{Db, Durability, Options, ReadPath, WriteBatch};
use extentdb_benches::kvbench::machine;
use extentdb_benches::{Rng, key, shuffled};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const MIB: u64 = 1 << 20;
const LARGE_VALUE_BYTES: usize = 64 << 10;
const THRESHOLD_SIZES: [usize; 5] = [256, 512, 1 << 10, 2 << 10, 4 << 10];

#[derive(Debug, Clone)]
struct Params {
    dir: String,
    parts: Vec<String>,
    keys: u64,
    threshold_cache_mib: u64,
    fill_mib: u64,
    seqfill_reps: u64,
    tail_data_mib: u64,
    tail_pool_mib: u64,
    tail_secs: u64,
    cached_data_mib: u64,
    cached_secs: u64,
    scan_data_mib: u64,
    space_mib: u64,
    space_rounds: u64,
    space_secs: u64,
    space_pool_mib: u64,
    space_reps: u64,
    space_busy_mibps: u64,
    /// Part f.4's idle and busy windows, in milliseconds; 0: one idle phase, then one busy one.
    space_window_ms: u64,
    /// MiB of puts before the timed `Db::sync` of part `sync` (`--sync-mib`).
    sync_mib: u64,
    /// Which busy-thread modes part f.4 runs (`compact-flat`, `compact`, `flush`,
    /// `background`, `puts`, `disk`, `spin`); all by default.
    space_modes: Vec<String>,
    /// Part f.4's file-system controls (`--space-fs`): `count` counts the engine's syncs and
    /// punches per busy round, `no-punch` runs the engine as on a file system without hole
    /// punching, `no-sync` passes no sync on to the disk; the last two tell the kernel's work
    /// for that call from the engine's own.
    space_fs: Vec<String>,
    /// How part f.4's reader fills the pool on a miss (`--space-read=pool|mmap`).
    space_read: ReadPath,
    /// Part f.4's `Options::memtable_value_bytes`, in MiB (`--space-memtable-value-mib`);
    /// `None`: the engine's default. The `background` mode flushes this often.
    space_memtable_value_mib: Option<u64>,
    /// The CPU part f.4's reader is pinned to (`--space-reader-cpu`); `None`: wherever the
    /// scheduler puts it.
    space_reader_cpu: Option<usize>,
}

/// What `--help` prints; the module doc says what each part measures.
const USAGE: &str = "\
valuebench: measurements of extentdb's value store (see the header of
benches/src/bin/valuebench.rs for what each part measures)

Usage: valuebench [--name=value]...

  --dir=.                 a temporary directory is made inside it: use the disk under test
  --parts=threshold,seqfill,tail,cached,scan
                          also: space (all four reclamation measurements), space-reader, sync
  --keys=20000  --threshold-cache-mib=256
  --fill-mib=512  --seqfill-reps=3  --sync-mib=64
  --tail-data-mib=128  --tail-pool-mib=8  --tail-secs=10
  --cached-data-mib=32  --cached-secs=3  --scan-data-mib=128
  --space-mib=1024  --space-rounds=8  --space-secs=10  --space-pool-mib=8  --space-reps=3
  --space-busy-mibps=64  --space-window-ms=1000 (0: all idle, then all busy)
  --space-modes=compact-flat,compact,flush,background,puts,disk,spin
  --space-fs=real (controls for part f.4, comma-separated: count, no-punch, no-sync)
  --space-read=pool (mmap: part f.4 fills the pool from a mapping instead of pread)
  --space-reader-cpu=N (pin part f.4's reader to CPU N; unpinned by default)
  --space-memtable-value-mib=N (part f.4's Options::memtable_value_bytes; the engine's default)
";

impl Params {
    fn parse() -> Res<Self> {
        let mut p = Self {
            dir: ".".into(),
            parts: ["threshold", "seqfill", "tail", "cached", "scan"]
                .map(String::from)
                .into(),
            keys: 20_000,
            threshold_cache_mib: 256,
            fill_mib: 512,
            seqfill_reps: 3,
            tail_data_mib: 128,
            tail_pool_mib: 8,
            tail_secs: 10,
            cached_data_mib: 32,
            cached_secs: 3,
            scan_data_mib: 128,
            space_mib: 1024,
            space_rounds: 8,
            space_secs: 10,
            space_pool_mib: 8,
            space_reps: 3,
            space_busy_mibps: 64,
            space_window_ms: 1000,
            sync_mib: 64,
            space_modes: [
                "compact-flat",
                "compact",
                "flush",
                "background",
                "puts",
                "disk",
                "spin",
            ]
            .map(String::from)
            .to_vec(),
            space_fs: Vec::new(),
            space_read: ReadPath::Pool,
            space_reader_cpu: None,
            space_memtable_value_mib: None,
        };
        for arg in std::env::args().skip(1) {
            if arg == "--help" || arg == "-h" {
                print!("{USAGE}");
                std::process::exit(0);
            }
            let (name, value) = arg
                .strip_prefix("--")
                .and_then(|a| a.split_once('='))
                .ok_or_else(|| format!("expected --name=value, got {arg:?}"))?;
            let number = || value.parse::<u64>();
            match name {
                "dir" => p.dir = value.into(),
                "parts" => p.parts = value.split(',').map(String::from).collect(),
                "keys" => p.keys = number()?,
                "threshold-cache-mib" => p.threshold_cache_mib = number()?,
                "fill-mib" => p.fill_mib = number()?,
                "seqfill-reps" => p.seqfill_reps = number()?,
                "tail-data-mib" => p.tail_data_mib = number()?,
                "tail-pool-mib" => p.tail_pool_mib = number()?,
                "tail-secs" => p.tail_secs = number()?,
                "cached-data-mib" => p.cached_data_mib = number()?,
                "cached-secs" => p.cached_secs = number()?,
                "scan-data-mib" => p.scan_data_mib = number()?,
                "space-mib" => p.space_mib = number()?,
                "space-rounds" => p.space_rounds = number()?,
                "space-secs" => p.space_secs = number()?,
                "space-pool-mib" => p.space_pool_mib = number()?,
                "space-reps" => p.space_reps = number()?,
                "space-busy-mibps" => p.space_busy_mibps = number()?,
                "space-window-ms" => p.space_window_ms = number()?,
                "sync-mib" => p.sync_mib = number()?,
                "space-fs" => {
                    p.space_fs = value
                        .split(',')
                        .filter(|c| *c != "real")
                        .map(String::from)
                        .collect();
                    if let Some(c) = p
                        .space_fs
                        .iter()
                        .find(|c| !["count", "no-punch", "no-sync"].contains(&c.as_str()))
                    {
                        return Err(format!(
                            "--space-fs takes real, count, no-punch or no-sync, got {c:?}"
                        )
                        .into());
                    }
                }
                "space-reader-cpu" => p.space_reader_cpu = Some(value.parse()?),
                "space-memtable-value-mib" => p.space_memtable_value_mib = Some(number()?),
                "space-read" => {
                    p.space_read = match value {
                        "pool" => ReadPath::Pool,
                        "mmap" => ReadPath::Mmap,
                        _ => {
                            return Err(
                                format!("--space-read takes pool or mmap, got {value:?}").into()
                            );
                        }
                    }
                }
                "space-modes" => {
                    p.space_modes = value.split(',').map(String::from).collect();
                }
                _ => return Err(format!("unknown flag --{name}").into()),
            }
        }
        Ok(p)
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

/// A value whose bytes depend on its key, so a read of the wrong value is visible.
fn value_for(i: u64, buf: &mut [u8]) {
    buf.fill(u8::try_from(i % 251).unwrap_or(0));
}

/// Bytes allocated on disk under `dir` (like `du`), recursively.
fn allocated_bytes(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn main() -> Res<()> {
    let p = Params::parse()?;
    println!(
        "valuebench: dir={} parts={} keys={} threshold-cache-mib={} fill-mib={} \
         seqfill-reps={} tail-data-mib={} tail-pool-mib={} tail-secs={} cached-data-mib={} cached-secs={} scan-data-mib={} \
         space-mib={} space-rounds={} space-secs={} space-pool-mib={} space-reps={} \
         space-busy-mibps={} space-window-ms={} (extentdb built with feature test-hooks)",
        p.dir,
        p.parts.join(","),
        p.keys,
        p.threshold_cache_mib,
        p.fill_mib,
        p.seqfill_reps,
        p.tail_data_mib,
        p.tail_pool_mib,
        p.tail_secs,
        p.cached_data_mib,
        p.cached_secs,
        p.scan_data_mib,
        p.space_mib,
        p.space_rounds,
        p.space_secs,
        p.space_pool_mib,
        p.space_reps,
        p.space_busy_mibps,
        p.space_window_ms
    );
    if p.runs("threshold") {
        threshold(&p)?;
    }
    if p.runs("seqfill") {
        seqfill(&p)?;
    }
    if p.runs("tail") {
        tail(&p)?;
    }
    if p.runs("cached") {
        cached(&p)?;
    }
    if p.runs("scan") {
        scan(&p)?;
    }
    if p.runs("space") {
        space(&p)?;
    } else if p.runs("space-reader") {
        space_reader_tail(&p)?;
    }
    if p.runs("sync") {
        sync_after_puts(&p)?;
    }
    Ok(())
}

fn tempdir(p: &Params) -> Res<tempfile::TempDir> {
    std::fs::create_dir_all(&p.dir)?;
    Ok(tempfile::tempdir_in(&p.dir)?)
}

/// Part a: inline versus separated values around the threshold.
fn threshold(p: &Params) -> Res<()> {
    println!(
        "threshold: {} keys per run, single puts (Buffered), then flush; reads: one warm pass, \
         then {} random gets timed; caches {} MiB each",
        p.keys, p.keys, p.threshold_cache_mib
    );
    println!(
        "  {:>6} {:>9} {:>12} {:>12} {:>12}",
        "size", "layout", "fill ops/s", "read ops/s", "disk MiB"
    );
    for size in THRESHOLD_SIZES {
        for (layout, threshold) in [("inline", size + 1), ("separate", size)] {
            let dir = tempdir(p)?;
            let cache = p.threshold_cache_mib * MIB;
            let db = Options::new()
                .durability(Durability::Buffered)
                .value_threshold_bytes(threshold)
                .cache_bytes(cache)
                .table_cache_bytes(cache)
                .open(dir.path())?;
            let mut value = vec![0u8; size];
            let start = Instant::now();
            for i in 0..p.keys {
                value_for(i, &mut value);
                db.put(key(i), &value)?;
            }
            db.flush()?;
            let fill = start.elapsed();
            let disk = allocated_bytes(dir.path())?;
            for i in 0..p.keys {
                db.get(key(i))?.ok_or("key lost")?;
            }
            let mut rng = Rng(7);
            let start = Instant::now();
            for _ in 0..p.keys {
                let i = rng.below(p.keys);
                let v = db.get(key(i))?.ok_or("key lost")?;
                if v.len() != size {
                    return Err("wrong value size".into());
                }
            }
            let read = start.elapsed();
            println!(
                "  {:>6} {:>9} {:>12.0} {:>12.0} {:>12.1}",
                size,
                layout,
                rate(p.keys, fill),
                rate(p.keys, read),
                disk as f64 / MIB as f64
            );
        }
    }
    Ok(())
}

/// MB/s of one fill of `mib` MiB of 64 KiB values (single `Buffered` puts, then `Db::sync`)
/// into a new database in `dir`, which is removed afterwards.
fn fill_bandwidth(dir: &Path, mib: u64) -> Res<f64> {
    let db_dir = dir.join("db");
    let db = Options::new()
        .durability(Durability::Buffered)
        .open(&db_dir)?;
    let n = mib * MIB / LARGE_VALUE_BYTES as u64;
    let mut value = vec![0u8; LARGE_VALUE_BYTES];
    let start = Instant::now();
    for i in 0..n {
        value_for(i, &mut value);
        db.put(key(i), &value)?;
    }
    db.sync()?;
    let synced = start.elapsed();
    drop(db);
    std::fs::remove_dir_all(&db_dir)?;
    Ok(rate(n * LARGE_VALUE_BYTES as u64, synced) / 1e6)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Part b: a sequential fill of 64 KiB values against the disk's bandwidth, alternated
/// `--seqfill-reps` times (disk, fill, disk, fill, ...) so both see the same noise.
fn seqfill(p: &Params) -> Res<()> {
    let dir = tempdir(p)?;
    let (mut disk, mut fill) = (Vec::new(), Vec::new());
    for _ in 0..p.seqfill_reps {
        disk.push(machine::disk_write_mb_per_s(dir.path(), p.fill_mib)?);
        fill.push(fill_bandwidth(dir.path(), p.fill_mib)?);
    }
    let show = |xs: &[f64]| joined(xs, 0);
    println!(
        "seqfill: {} MiB of 64 KiB single puts (Buffered) then Db::sync, vs {} MiB of 1 MiB \
         writes (write-back started as written) + fdatasync, alternated {} times",
        p.fill_mib, p.fill_mib, p.seqfill_reps
    );
    println!("  disk MB/s: {}", show(&disk));
    println!("  fill MB/s: {}", show(&fill));
    let (disk, fill) = (median(&mut disk), median(&mut fill));
    println!(
        "  medians: disk {disk:.0} MB/s, fill {fill:.0} MB/s; fill/disk {:.0}% (target >= 60%)",
        100.0 * fill / disk
    );
    Ok(())
}

/// Part `sync`: how long `Db::sync` takes after `--sync-mib` MiB of `Buffered` puts that no
/// sync covered, with write-back starting every MiB (the default) and with it off, alternated
/// `--seqfill-reps` times; for 100-byte values (the log holds them) and 4 KiB ones (the value
/// segments do). The memtable is made large enough that no memtable switch syncs in between.
fn sync_after_puts(p: &Params) -> Res<()> {
    println!(
        "sync: Db::sync after {} MiB of Buffered puts, write-back every MiB and off, alternated \
         {} times",
        p.sync_mib, p.seqfill_reps
    );
    let bytes = p.sync_mib * MIB;
    for value_bytes in [100usize, 4 << 10] {
        let value = vec![0x5au8; value_bytes];
        let puts = bytes / (value_bytes as u64 + 16);
        let (mut on, mut off) = (Vec::new(), Vec::new());
        let (mut puts_on, mut puts_off) = (Vec::new(), Vec::new());
        for _ in 0..p.seqfill_reps {
            for (writeback, sync_ms, puts_ms) in
                [(MIB, &mut on, &mut puts_on), (0, &mut off, &mut puts_off)]
            {
                let dir = tempdir(p)?;
                let db = Options::new()
                    .durability(Durability::Buffered)
                    .memtable_bytes(1 << 30)
                    .memtable_value_bytes(2 * bytes)
                    .writeback_bytes(writeback)
                    .open(dir.path())?;
                let start = Instant::now();
                for i in 0..puts {
                    db.put(key(i), &value)?;
                }
                puts_ms.push(start.elapsed().as_secs_f64() * 1e3);
                let start = Instant::now();
                db.sync()?;
                sync_ms.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let show = |xs: &[f64]| joined(xs, 1);
        println!(
            "  {value_bytes} B values: sync ms with write-back every MiB {} (median {:.1}), off {} \
             (median {:.1}); the puts before it, ms: {} and {}",
            show(&on),
            median(&mut on.clone()),
            show(&off),
            median(&mut off.clone()),
            show(&puts_on),
            show(&puts_off)
        );
    }
    Ok(())
}

/// `xs` with `digits` decimals, space-separated.
fn joined(xs: &[f64], digits: usize) -> String {
    xs.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sorted latencies in nanoseconds -> the `q` quantile, in microseconds.
fn quantile_us(sorted: &[u64], q: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    let at = ((last as f64) * q).round() as usize;
    sorted.get(at.min(last)).copied().unwrap_or(0) as f64 / 1e3
}

/// Random gets of keys `0..n` until `stop`; returns sorted latencies (ns).
fn read_latencies(db: &Db, n: u64, seed: u64, stop: &AtomicBool) -> Res<Vec<u64>> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(1 << 20);
    while !stop.load(Ordering::Relaxed) {
        let i = rng.below(n);
        let start = Instant::now();
        let v = db.get(key(i))?.ok_or("key lost")?;
        out.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if v.first() != Some(&u8::try_from(i % 251).unwrap_or(0)) {
            return Err(format!("key {i} read a wrong value").into());
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// What the busy thread did.
#[derive(Debug, Default)]
struct Churn {
    rounds: u64,
    puts: u64,
    relocated_files: u64,
    compactions: u64,
}

/// Writes new keys, relocates every value file and compacts every 4th round, until `stop`.
fn churn(db: &Db, first_key: u64, stop: &AtomicBool) -> Res<Churn> {
    const PUTS_PER_ROUND: u64 = 16;
    let mut c = Churn::default();
    let mut value = vec![0u8; LARGE_VALUE_BYTES];
    let mut next = first_key;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..PUTS_PER_ROUND {
            value_for(next, &mut value);
            db.put(key(next), &value)?;
            next += 1;
            c.puts += 1;
        }
        c.relocated_files += db.test_relocate_value_files()?;
        c.rounds += 1;
        if c.rounds.is_multiple_of(4) {
            db.compact()?;
            c.compactions += 1;
        }
    }
    Ok(c)
}

fn print_phase(name: &str, lat: &[u64], secs: u64, db: &Db, before: &extentdb::Stats) {
    let s = db.stats();
    let hits = s.pool_hits - before.pool_hits;
    let misses = s.pool_misses - before.pool_misses;
    println!(
        "  {name:>4}: {} gets ({:.0}/s), pool hit ratio {:.1}%, p50 {:.1} us, p99 {:.1} us, \
         p999 {:.1} us, max {:.1} us",
        lat.len(),
        lat.len() as f64 / secs as f64,
        100.0 * hits as f64 / (hits + misses).max(1) as f64,
        quantile_us(lat, 0.5),
        quantile_us(lat, 0.99),
        quantile_us(lat, 0.999),
        quantile_us(lat, 1.0),
    );
}

/// Part c: reader latency idle versus during relocations, writes and compactions.
fn tail(p: &Params) -> Res<()> {
    let dir = tempdir(p)?;
    let n = p.tail_data_mib * MIB / LARGE_VALUE_BYTES as u64;
    let options = || {
        Options::new()
            .durability(Durability::Buffered)
            .cache_bytes(p.tail_pool_mib * MIB)
    };
    {
        // Loaded in one session and read in the next: files of an earlier session are never
        // appended to again, so they are the ones relocation moves.
        let db = options().open(dir.path())?;
        let mut value = vec![0u8; LARGE_VALUE_BYTES];
        for i in 0..n {
            value_for(i, &mut value);
            db.put(key(i), &value)?;
        }
        db.flush()?;
    }
    let db = options().open(dir.path())?;
    println!(
        "tail: 1 reader, random gets of {n} x 64 KiB ({} MiB) through a {} MiB pool, {} s idle \
         then {} s with 1 thread putting new 64 KiB keys (16 per round), \
         Db::test_relocate_value_files each round, Db::compact every 4th round",
        p.tail_data_mib, p.tail_pool_mib, p.tail_secs, p.tail_secs
    );
    let secs = Duration::from_secs(p.tail_secs);
    let stop = AtomicBool::new(false);
    let before = db.stats();
    let idle = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("reader".into())
            .spawn_scoped(s, || read_latencies(&db, n, 11, &stop))?;
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        reader.join().map_err(|_| "reader panicked")?
    })?;
    print_phase("idle", &idle, p.tail_secs, &db, &before);
    let stop = AtomicBool::new(false);
    let before = db.stats();
    let (busy, work) = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("reader".into())
            .spawn_scoped(s, || read_latencies(&db, n, 12, &stop))?;
        let writer = std::thread::Builder::new()
            .name("churn".into())
            .spawn_scoped(s, || churn(&db, n, &stop))?;
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        let busy = reader.join().map_err(|_| "reader panicked")?;
        let work = writer.join().map_err(|_| "writer panicked")?;
        Ok::<_, Box<dyn Error + Send + Sync>>((busy?, work?))
    })?;
    print_phase("busy", &busy, p.tail_secs, &db, &before);
    let after = db.stats();
    println!(
        "  busy work: {} rounds, {} puts, {} files relocated ({} relocations in stats), \
         {} compactions, {} pool invalidations, {} fill retries",
        work.rounds,
        work.puts,
        work.relocated_files,
        after.value_relocations - before.value_relocations,
        work.compactions,
        after.pool_invalidations - before.pool_invalidations,
        after.pool_retries - before.pool_retries
    );
    println!(
        "  p99 busy/idle {:.2}x (target <= 1.5x); p50 {:.2}x; p999 {:.2}x",
        quantile_us(&busy, 0.99) / quantile_us(&idle, 0.99).max(1e-9),
        quantile_us(&busy, 0.5) / quantile_us(&idle, 0.5).max(1e-9),
        quantile_us(&busy, 0.999) / quantile_us(&idle, 0.999).max(1e-9),
    );
    Ok(())
}

/// Part d: warm-pool get throughput, copying the value out versus touching one byte.
fn cached(p: &Params) -> Res<()> {
    let dir = tempdir(p)?;
    let n = p.cached_data_mib * MIB / LARGE_VALUE_BYTES as u64;
    let db = Options::new()
        .durability(Durability::Buffered)
        .cache_bytes((p.cached_data_mib * 4).max(64) * MIB)
        .open(dir.path())?;
    let mut value = vec![0u8; LARGE_VALUE_BYTES];
    let mut batch = WriteBatch::new();
    for i in 0..n {
        value_for(i, &mut value);
        batch.put(key(i), &value);
        if i % 64 == 63 {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    db.write(batch)?;
    db.flush()?;
    for i in 0..n {
        db.get(key(i))?.ok_or("key lost")?;
    }
    let before = db.stats();
    let secs = Duration::from_secs(p.cached_secs);
    let mut rng = Rng(13);
    let mut out: Vec<u8> = Vec::with_capacity(LARGE_VALUE_BYTES);
    let (mut copied, start) = (0u64, Instant::now());
    while start.elapsed() < secs {
        for _ in 0..64 {
            let v = db.get(key(rng.below(n)))?.ok_or("key lost")?;
            out.clear();
            out.extend_from_slice(&v);
            black_box(&out);
            copied += 1;
        }
    }
    let copy = start.elapsed();
    let (mut inspected, start) = (0u64, Instant::now());
    let mut sum = 0u64;
    while start.elapsed() < secs {
        for _ in 0..64 {
            let v = db.get(key(rng.below(n)))?.ok_or("key lost")?;
            sum += u64::from(v.first().copied().unwrap_or(0));
            inspected += 1;
        }
    }
    black_box(sum);
    let inspect = start.elapsed();
    let s = db.stats();
    println!(
        "cached: random gets of {n} x 64 KiB ({} MiB), pool {} MiB, warm; {} s per mode; \
         pool misses while timed: {}",
        p.cached_data_mib,
        (p.cached_data_mib * 4).max(64),
        p.cached_secs,
        s.pool_misses - before.pool_misses
    );
    println!(
        "  copy into a reused Vec: {:.0} gets/s = {:.2} GB/s",
        rate(copied, copy),
        rate(copied * LARGE_VALUE_BYTES as u64, copy) / 1e9
    );
    println!(
        "  inspect one byte:       {:.0} values/s = {:.2} GB/s of values",
        rate(inspected, inspect),
        rate(inspected * LARGE_VALUE_BYTES as u64, inspect) / 1e9
    );
    Ok(())
}

/// Part e: readahead of a scan against the pool size.
fn scan(p: &Params) -> Res<()> {
    const POOLS_MIB: [u64; 5] = [4, 8, 16, 32, 64];
    let n = p.scan_data_mib * MIB / LARGE_VALUE_BYTES as u64;
    println!(
        "scan: one scan of {n} x 64 KiB ({} MiB) written in key order, per pool size (fresh \
         open, so the pool starts empty; the OS page cache holds the segments)",
        p.scan_data_mib
    );
    println!(
        "  {:>8} {:>8} {:>10} {:>8} {:>8} {:>10}",
        "pool MiB", "MB/s", "fill MiB", "fills", "hits", "read amp"
    );
    let dir = tempdir(p)?;
    {
        let db = Options::new()
            .durability(Durability::Buffered)
            .open(dir.path())?;
        let mut value = vec![0u8; LARGE_VALUE_BYTES];
        for i in 0..n {
            value_for(i, &mut value);
            db.put(key(i), &value)?;
        }
        db.flush()?;
    }
    for pool_mib in POOLS_MIB {
        let db = Options::new()
            .cache_bytes(pool_mib * MIB)
            .open(dir.path())?;
        let before = db.stats();
        let start = Instant::now();
        let mut seen = 0u64;
        for pair in db.range::<&[u8], _>(..) {
            let (_, v) = pair?;
            black_box(v.first());
            seen += 1;
        }
        let elapsed = start.elapsed();
        if seen != n {
            return Err(format!("scan saw {seen} of {n} keys").into());
        }
        let s = db.stats();
        let fill_bytes = s.pool_fill_bytes - before.pool_fill_bytes;
        let data_bytes = n * LARGE_VALUE_BYTES as u64;
        println!(
            "  {:>8} {:>8.0} {:>10.0} {:>8} {:>8} {:>9.1}x",
            pool_mib,
            rate(data_bytes, elapsed) / 1e6,
            fill_bytes as f64 / MIB as f64,
            s.pool_fills - before.pool_fills,
            s.pool_hits - before.pool_hits,
            fill_bytes as f64 / data_bytes as f64
        );
    }
    Ok(())
}

/// The file size of the value-log model of part f.3: `Options::value_file_bytes`' default, so the
/// model's files seal where extentdb's do.
const VLOG_FILE_BYTES: u64 = 64 * MIB;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// How many 64 KiB values make `size_mib` MiB.
fn large_values(size_mib: u64) -> u64 {
    size_mib * MIB / LARGE_VALUE_BYTES as u64
}

/// Puts a 64 KiB value under each of `keys`, in that order; the value of key `i` is
/// `value_for(i + salt)`, so a read can tell which generation it got.
fn put_large(db: &Db, keys: impl IntoIterator<Item = u64>, salt: u64) -> Res<()> {
    let mut value = vec![0u8; LARGE_VALUE_BYTES];
    for i in keys {
        value_for(i + salt, &mut value);
        db.put(key(i), &value)?;
    }
    Ok(())
}

/// Checks that key `i` reads generation `salt` (see [`put_large`]) through `get`.
fn check_large(got: Option<extentdb::Value>, i: u64, salt: u64) -> Res<()> {
    let v = got.ok_or_else(|| format!("key {i} lost"))?;
    let want = u8::try_from((i + salt) % 251).unwrap_or(0);
    if v.len() != LARGE_VALUE_BYTES || v.iter().any(|&b| b != want) {
        return Err(format!("key {i} read a wrong value").into());
    }
    Ok(())
}

fn timed<T>(f: impl FnOnce() -> Res<T>) -> Res<(T, Duration)> {
    let start = Instant::now();
    let out = f()?;
    Ok((out, start.elapsed()))
}

/// What value compaction did between `before` and `after`, on one line.
fn reclamation(before: &extentdb::Stats, after: &extentdb::Stats) -> String {
    format!(
        "reclaimed {:.1} MiB, gc copied {:.1} MiB, {} files deleted, {} blocks punched, \
         {} evacuations, {} relocations, {} segments removed, {} blocks pending{}",
        mib(after.value_reclaimed_bytes - before.value_reclaimed_bytes),
        mib(after.value_gc_written_bytes - before.value_gc_written_bytes),
        after.value_files_deleted - before.value_files_deleted,
        after.value_punched_blocks - before.value_punched_blocks,
        after.value_evacuations - before.value_evacuations,
        after.value_relocations - before.value_relocations,
        after.value_segments_removed - before.value_segments_removed,
        after.value_pending_blocks,
        if after.value_punch_unsupported {
            ", HOLE PUNCHING UNSUPPORTED"
        } else {
            ""
        }
    )
}

/// Part f: space on disk, reclamation and its write amplification.
fn space(p: &Params) -> Res<()> {
    space_overwrite(p)?;
    space_range_delete(p)?;
    space_gc_amplification(p)?;
    space_reader_tail(p)
}

fn space_options() -> Options {
    Options::new().durability(Durability::Buffered)
}

/// Part f.1: every value overwritten once, then compacted.
fn space_overwrite(p: &Params) -> Res<()> {
    let dir = tempdir(p)?;
    let n = large_values(p.space_mib);
    let db = space_options().open(dir.path())?;
    let ((), fill) = timed(|| put_large(&db, 0..n, 0))?;
    let ((), overwrite) = timed(|| put_large(&db, 0..n, 1))?;
    let peak = allocated_bytes(dir.path())?;
    let before = db.stats();
    let ((), compact) = timed(|| Ok(db.compact()?))?;
    check_large(db.get(key(n / 2))?, n / 2, 1)?;
    let s = db.stats();
    let du = allocated_bytes(dir.path())?;
    println!(
        "space/overwrite: {n} x 64 KiB ({} MiB) filled in {:.1} s, every key overwritten once \
         in {:.1} s (directory then {:.1} MiB), Db::compact in {:.2} s",
        p.space_mib,
        fill.as_secs_f64(),
        overwrite.as_secs_f64(),
        mib(peak),
        compact.as_secs_f64()
    );
    println!(
        "  before compact: {:.1} MiB counted dead, {} memtable flushes, {} index compactions \
         (a value counts dead once index compaction drops its pointer)",
        mib(before.value_dead_bytes),
        before.flushes,
        before.compactions
    );
    println!("  compact: {}", reclamation(&before, &s));
    println!(
        "  on disk: value store {:.1} MiB, directory (du) {:.1} MiB; live {:.1} MiB; \
         disk/live: value store {:.3}x, directory {:.3}x (target <= 1.15x)",
        s.value_disk_bytes.map_or(f64::NAN, mib),
        mib(du),
        mib(s.value_live_bytes),
        s.value_space_amplification().unwrap_or(f64::NAN),
        du as f64 / s.value_live_bytes.max(1) as f64
    );
    drop(db);
    Ok(dir.close()?)
}

/// Part f.2: half the key space range-deleted under a snapshot, then compacted.
fn space_range_delete(p: &Params) -> Res<()> {
    let dir = tempdir(p)?;
    let n = large_values(p.space_mib);
    let half = n / 2;
    let db = space_options().open(dir.path())?;
    let order = shuffled(n, &mut Rng(21));
    let ((), fill) = timed(|| put_large(&db, order.iter().copied(), 0))?;
    let filled = allocated_bytes(dir.path())?;
    // The deleted key written first: its value sits at the start of the oldest value file.
    let probe = order
        .iter()
        .copied()
        .find(|&i| i < half)
        .ok_or("nothing to delete")?;
    let snap = db.snapshot();
    db.delete_range(key(0)..key(half))?;
    let ((), held) = timed(|| Ok(db.compact()?))?;
    let held_du = allocated_bytes(dir.path())?;
    let gone = db.get(key(probe))?.is_none();
    check_large(snap.get(key(probe))?, probe, 0)?;
    drop(snap);
    let before = db.stats();
    let ((), compact) = timed(|| Ok(db.compact()?))?;
    let s = db.stats();
    let du = allocated_bytes(dir.path())?;
    println!(
        "space/range-delete: {n} x 64 KiB ({} MiB) in shuffled key order in {:.1} s \
         (directory {:.1} MiB), delete_range of keys 0..{half} under a snapshot",
        p.space_mib,
        fill.as_secs_f64(),
        mib(filled)
    );
    println!(
        "  snapshot held: Db::compact in {:.2} s, directory {:.1} MiB; key {probe} reads \
         {} from the db and its old 64 KiB value from the snapshot: {}",
        held.as_secs_f64(),
        mib(held_du),
        if gone { "nothing" } else { "A VALUE" },
        if gone { "ok" } else { "WRONG" }
    );
    if !gone {
        return Err(format!("key {probe} still read after delete_range").into());
    }
    println!(
        "  snapshot dropped: Db::compact in {:.2} s; {}",
        compact.as_secs_f64(),
        reclamation(&before, &s)
    );
    println!(
        "  on disk: value store {:.1} MiB, directory (du) {:.1} MiB = {:.3} x F (target <= 0.6); \
         live {:.1} MiB",
        s.value_disk_bytes.map_or(f64::NAN, mib),
        mib(du),
        du as f64 / (p.space_mib * MIB) as f64,
        mib(s.value_live_bytes)
    );
    drop(db);
    Ok(dir.close()?)
}

/// A classic value log (WiscKey-style) fed the same writes as extentdb in part f.3, to compare
/// what its garbage collection would copy. Values are appended in write order to files of
/// [`VLOG_FILE_BYTES`]; after each round, every sealed file more than half dead is cleaned: its
/// live values are appended again at the head (copied) and the whole file is freed. Freed bytes
/// count the whole file, as extentdb's `value_reclaimed_bytes` counts every block freed, so
/// copied / freed is the same ratio as extentdb's `value_gc_write_amplification`. A model, not
/// a measurement, because extentdb cannot show the dead ratios such a log would act on: a value
/// counts dead only once index compaction drops its pointer, which `Db::compact` does in the
/// same call that reclaims it (`Db::inventory` before `compact` shows the round's overwrites as
/// still live). The model is generous to the value log in one way (it pays nothing for rewriting
/// the moved values' pointers in the index) and is one point of a trade-off: a log that cleaned
/// later would copy less but keep more dead bytes on disk, hence [`Self::disk_bytes`].
#[derive(Debug)]
struct ValueLogModel {
    /// Per key, the file holding its current value.
    file_of: Vec<Option<usize>>,
    /// Per file: values appended, values still current, and whether it was cleaned.
    written: Vec<u64>,
    live: Vec<u64>,
    cleaned: Vec<bool>,
    values_per_file: u64,
    copied_values: u64,
    freed_values: u64,
}

impl ValueLogModel {
    fn new(keys: u64) -> Self {
        Self {
            file_of: vec![None; usize::try_from(keys).unwrap_or(0)],
            written: Vec::new(),
            live: Vec::new(),
            cleaned: Vec::new(),
            values_per_file: VLOG_FILE_BYTES / LARGE_VALUE_BYTES as u64,
            copied_values: 0,
            freed_values: 0,
        }
    }

    fn append(&mut self, k: u64) {
        if self
            .written
            .last()
            .is_none_or(|&w| w == self.values_per_file)
        {
            self.written.push(0);
            self.live.push(0);
            self.cleaned.push(false);
        }
        let head = self.written.len() - 1;
        let slot = self
            .file_of
            .get_mut(usize::try_from(k).unwrap_or(usize::MAX));
        if let Some(slot) = slot {
            if let Some(live) = slot.and_then(|old| self.live.get_mut(old)) {
                *live -= 1;
            }
            *slot = Some(head);
        }
        if let (Some(w), Some(l)) = (self.written.last_mut(), self.live.last_mut()) {
            *w += 1;
            *l += 1;
        }
    }

    /// Cleans every sealed file (not the head) more than half dead.
    fn collect(&mut self) {
        let sealed = self.written.len().saturating_sub(1);
        for f in 0..sealed {
            let (Some(&written), Some(&live)) = (self.written.get(f), self.live.get(f)) else {
                continue;
            };
            if self.cleaned.get(f) == Some(&true) || live * 2 >= written {
                continue;
            }
            let keys: Vec<u64> = (0u64..)
                .zip(&self.file_of)
                .filter(|&(_, at)| *at == Some(f))
                .map(|(k, _)| k)
                .collect();
            for k in keys {
                self.append(k);
                self.copied_values += 1;
            }
            if let Some(c) = self.cleaned.get_mut(f) {
                *c = true;
            }
            self.freed_values += written;
        }
    }

    /// Bytes copied and bytes freed so far.
    fn bytes(&self) -> (u64, u64) {
        let v = LARGE_VALUE_BYTES as u64;
        (self.copied_values * v, self.freed_values * v)
    }

    /// Bytes of the files not cleaned: what the log holds on disk, live and dead.
    fn disk_bytes(&self) -> u64 {
        let values: u64 = (self.written.iter().zip(&self.cleaned))
            .filter(|&(_, &cleaned)| !cleaned)
            .map(|(&w, _)| w)
            .sum();
        values * LARGE_VALUE_BYTES as u64
    }
}

/// Part f.3: bytes value compaction copies per byte it frees, in rounds of random overwrites.
fn space_gc_amplification(p: &Params) -> Res<()> {
    let dir = tempdir(p)?;
    let n = large_values(p.space_mib / 4);
    let db = space_options().open(dir.path())?;
    let mut vlog = ValueLogModel::new(n);
    put_large(&db, 0..n, 0)?;
    (0..n).for_each(|k| vlog.append(k));
    println!(
        "space/gc: {n} x 64 KiB ({} MiB), then {} rounds of overwriting a random {} keys (25%) \
         and Db::compact; value-log model: {} MiB files, cleaned when more than half dead",
        p.space_mib / 4,
        p.space_rounds,
        n / 4,
        VLOG_FILE_BYTES / MIB
    );
    println!(
        "  {:>5} {:>10} {:>12} {:>12} {:>8} {:>8} {:>10} {:>12} {:>12}",
        "round",
        "compact s",
        "copied MiB",
        "freed MiB",
        "evacs",
        "relocs",
        "du MiB",
        "vlog copied",
        "vlog freed"
    );
    let start = db.stats();
    let mut rng = Rng(31);
    for round in 1..=p.space_rounds {
        let mut picked = shuffled(n, &mut rng);
        picked.truncate(usize::try_from(n / 4)?);
        put_large(&db, picked.iter().copied(), round)?;
        picked.iter().for_each(|&k| vlog.append(k));
        let ((), compact) = timed(|| Ok(db.compact()?))?;
        vlog.collect();
        let s = db.stats();
        let (copied, freed) = vlog.bytes();
        println!(
            "  {:>5} {:>10.2} {:>12.1} {:>12.1} {:>8} {:>8} {:>10.1} {:>12.1} {:>12.1}",
            round,
            compact.as_secs_f64(),
            mib(s.value_gc_written_bytes - start.value_gc_written_bytes),
            mib(s.value_reclaimed_bytes - start.value_reclaimed_bytes),
            s.value_evacuations - start.value_evacuations,
            s.value_relocations - start.value_relocations,
            mib(allocated_bytes(dir.path())?),
            mib(copied),
            mib(freed)
        );
    }
    let s = db.stats();
    let copied = s.value_gc_written_bytes - start.value_gc_written_bytes;
    let freed = s.value_reclaimed_bytes - start.value_reclaimed_bytes;
    let (vlog_copied, vlog_freed) = vlog.bytes();
    println!("  all rounds: {}", reclamation(&start, &s));
    let inv = db.inventory();
    let bs = inv.block_size_bytes;
    println!(
        "  block store: {:.1} MiB mapped, {:.1} MiB free, {:.1} MiB pending, {:.1} MiB of \
         address space (segments are sparse: free blocks are holes); {} value files in {} \
         extents (mean extent {:.0} KiB)",
        mib(s.value_mapped_blocks * bs),
        mib(s.value_free_blocks * bs),
        mib(s.value_pending_blocks * bs),
        mib(s.value_store_blocks * bs),
        inv.value_files.len(),
        inv.value_files.iter().map(|f| f.extents).sum::<usize>(),
        (s.value_mapped_blocks * bs) as f64
            / 1024.0
            / inv
                .value_files
                .iter()
                .map(|f| f.extents)
                .sum::<usize>()
                .max(1) as f64
    );
    println!(
        "  gc write amplification (copied/freed): extentdb {:.3} (target <= 0.3; \
         value_gc_write_amplification since open {:.3}), value-log model {:.3}; \
         written by users {:.1} MiB; on disk after the last round: extentdb value store \
         {:.1} MiB, value-log model {:.1} MiB, live {:.1} MiB",
        copied as f64 / freed.max(1) as f64,
        s.value_gc_write_amplification().unwrap_or(f64::NAN),
        vlog_copied as f64 / vlog_freed.max(1) as f64,
        mib(p.space_rounds * (n / 4) * LARGE_VALUE_BYTES as u64),
        s.value_disk_bytes.map_or(f64::NAN, mib),
        mib(vlog.disk_bytes()),
        mib(s.value_live_bytes)
    );
    drop(db);
    Ok(dir.close()?)
}

/// What the reclaiming thread of part f.4 did.
#[derive(Debug, Default)]
struct Reclaiming {
    rounds: u64,
    puts: u64,
    compact: Duration,
    compact_max: Duration,
}

/// While `phase` is busy, in rounds: overwrites 16 random keys of `0..n` (with the same bytes, so the
/// reader's check holds, while the old copies die), puts 16 new keys past `n` and range-deletes
/// them, then ends the round as `busy.end` says. With `busy.mibps`, rounds start no faster than
/// that many MiB/s of puts allow. The two controls do part of the work: `Spin` no database call
/// at all, `Puts` the puts alone. Pauses while `phase` is idle or settling; returns once it is
/// done.
fn reclaim_churn(db: &Db, dir: &Path, n: u64, phase: &Phase, busy: Busy) -> Res<Reclaiming> {
    const PUTS_PER_ROUND: u64 = 16;
    // The `disk` control's file, rewritten from the start every round.
    let plain = if busy.end == RoundEnd::Disk {
        Some(File::create(dir.join("disk-control"))?)
    } else {
        None
    };
    let mut value = vec![0u8; LARGE_VALUE_BYTES];
    let round_bytes = 2 * PUTS_PER_ROUND * LARGE_VALUE_BYTES as u64;
    let pace = busy
        .mibps
        .map(|r| Duration::from_secs_f64(round_bytes as f64 / (r * MIB) as f64));
    let mut c = Reclaiming::default();
    let mut rng = Rng(41);
    let mut next = n;
    let mut due = Instant::now();
    loop {
        match phase.get() {
            Phase::DONE => break,
            Phase::BUSY => {}
            _ => {
                // Paused for an idle window; the pace starts afresh, without a burst to catch up.
                std::thread::sleep(Duration::from_millis(1));
                due = Instant::now();
                continue;
            }
        }
        if let Some(pace) = pace {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            due += pace;
        }
        if busy.end == RoundEnd::Spin {
            // As long as the round's puts would take, without touching the database.
            let until = Instant::now() + pace.unwrap_or(Duration::from_millis(10)) / 2;
            let mut x = 1u64;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            c.rounds += 1;
            continue;
        }
        if let Some(file) = &plain {
            use std::os::unix::fs::FileExt;
            for i in 0..2 * PUTS_PER_ROUND {
                value_for(i, &mut value);
                file.write_all_at(&value, i * LARGE_VALUE_BYTES as u64)?;
            }
            let ((), took) = timed(|| Ok(file.sync_data()?))?;
            c.compact += took;
            c.compact_max = c.compact_max.max(took);
            c.rounds += 1;
            continue;
        }
        put_large(db, (0..PUTS_PER_ROUND).map(|_| rng.below(n)), 0)?;
        put_large(db, next..next + PUTS_PER_ROUND, 0)?;
        c.puts += 2 * PUTS_PER_ROUND;
        c.rounds += 1;
        if busy.end == RoundEnd::Puts {
            // The new keys are overwritten next round instead of range-deleted.
            continue;
        }
        db.delete_range(key(next)..key(next + PUTS_PER_ROUND))?;
        next += PUTS_PER_ROUND;
        if busy.end == RoundEnd::Background {
            continue;
        }
        let ((), took) = timed(|| {
            match busy.end {
                RoundEnd::Compact => db.compact()?,
                _ => db.flush()?,
            }
            Ok(())
        })?;
        c.compact += took;
        c.compact_max = c.compact_max.max(took);
    }
    Ok(c)
}

/// How a round of the busy thread of part f.4 ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundEnd {
    /// `Db::compact`: a manual compaction of everything, then value compaction.
    Compact,
    /// `Db::flush`: the background threads compact the index and reclaim the values.
    Flush,
    /// Nothing: the engine flushes when its memtable's values reach
    /// `Options::memtable_value_bytes` (64 MiB by default), and its background threads compact
    /// the index and reclaim the values, as in an application that never calls either.
    Background,
    /// Control: the puts alone, no range delete, no flush.
    Puts,
    /// Control: no database call; the round's bytes written to a plain file and synced, as
    /// `flush` makes the disk write them.
    Disk,
    /// Control: no database call, only CPU.
    Spin,
}

/// How the busy thread of part f.4 runs.
#[derive(Debug, Clone, Copy)]
struct Busy {
    /// Puts per second at most, in MiB; `None`: flat out.
    mibps: Option<u64>,
    end: RoundEnd,
}

impl Busy {
    fn describe(self) -> String {
        let pace = self.mibps.map_or_else(
            || "flat out".to_string(),
            |r| format!("paced to {r} MiB/s of puts"),
        );
        let work = match self.end {
            RoundEnd::Compact => "puts, a range delete and Db::compact every round",
            RoundEnd::Flush => {
                "puts, a range delete and Db::flush every round; background compaction and \
                 reclamation"
            }
            RoundEnd::Background => {
                "puts and a range delete every round; the engine flushes, compacts and reclaims \
                 on its own"
            }
            RoundEnd::Puts => "control: the puts alone",
            RoundEnd::Disk => "control: the same bytes written to a plain file and synced",
            RoundEnd::Spin => "control: CPU only, no database call",
        };
        format!("{pace}; {work}")
    }
}

/// The phase of a run of part f.4, shared by its coordinator, reader and busy thread.
#[derive(Debug)]
struct Phase(AtomicU8);

impl Phase {
    /// The reader's latencies count as idle; the busy thread pauses.
    const IDLE: u8 = 0;
    /// The busy thread works; the reader's latencies count as busy.
    const BUSY: u8 = 1;
    /// After a busy window: the busy thread pauses, the reader's latencies count for neither,
    /// so background work a busy window started has time to end before the next idle window.
    const SETTLE: u8 = 2;
    /// Every thread returns.
    const DONE: u8 = 3;

    fn new(phase: u8) -> Self {
        Self(AtomicU8::new(phase))
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, phase: u8) {
        self.0.store(phase, Ordering::Release);
    }
}

/// The calling thread's context switches so far: (voluntary, involuntary), from
/// `/proc/thread-self/status`. A voluntary one is a sleep (a lock, a condition variable, I/O);
/// an involuntary one is a preemption (another thread or process wanted the CPU). `(0, 0)`
/// where the file is missing.
fn context_switches() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// What the reader of part f.4 saw in one kind of window: latencies (sorted at the end) and
/// its context switches (voluntary, involuntary).
#[derive(Debug, Default)]
struct Seen {
    latencies: Vec<u64>,
    switches: (u64, u64),
}

impl Seen {
    /// Sleeps and preemptions per 1000 gets.
    fn switches_per_1000(&self) -> (f64, f64) {
        let gets = self.latencies.len().max(1) as f64;
        (
            self.switches.0 as f64 * 1000.0 / gets,
            self.switches.1 as f64 * 1000.0 / gets,
        )
    }
}

/// Random gets of `0..n` until `phase` is done; the latency of each get that started and
/// ended in the same idle or busy phase goes to that phase, and so do the reader's context
/// switches (counted at each change of phase). Returns (idle, busy).
fn phased_latencies(db: &Db, n: u64, seed: u64, phase: &Phase) -> Res<(Seen, Seen)> {
    let mut rng = Rng(seed);
    let (mut idle, mut busy) = (Seen::default(), Seen::default());
    idle.latencies.reserve(1 << 20);
    busy.latencies.reserve(1 << 20);
    let mut current = phase.get();
    let mut since = context_switches();
    loop {
        let at_start = phase.get();
        if at_start != current {
            let now = context_switches();
            let seen = match current {
                Phase::IDLE => Some(&mut idle),
                Phase::BUSY => Some(&mut busy),
                _ => None,
            };
            if let Some(seen) = seen {
                seen.switches.0 += now.0 - since.0;
                seen.switches.1 += now.1 - since.1;
            }
            (current, since) = (at_start, now);
        }
        if at_start == Phase::DONE {
            break;
        }
        let i = rng.below(n);
        let start = Instant::now();
        let v = db.get(key(i))?.ok_or("key lost")?;
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if v.first() != Some(&u8::try_from(i % 251).unwrap_or(0)) {
            return Err(format!("key {i} read a wrong value").into());
        }
        if phase.get() != at_start {
            continue;
        }
        match at_start {
            Phase::IDLE => idle.latencies.push(nanos),
            Phase::BUSY => busy.latencies.push(nanos),
            _ => {}
        }
    }
    idle.latencies.sort_unstable();
    busy.latencies.sort_unstable();
    Ok((idle, busy))
}

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) -> Res<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("pin to CPU {cpu}: {e}"))?;
    Ok(())
}

/// Part f.4 counts the gets slower than this, in microseconds: about twice the idle p99 on a
/// quiet machine. The p99 of a get that misses the pool sits where the body of the latencies
/// meets a tail of slow ones, about 1% of all gets here, so a small change in that share moves
/// the p99 from about 25 to about 55 us; the share itself shows how much a busy thread added.
const SLOW_US: u64 = 40;

/// Percentage of the sorted latencies (ns) above `micros`.
fn percent_over(sorted: &[u64], micros: u64) -> f64 {
    let over = sorted.len() - sorted.partition_point(|&ns| ns <= micros * 1000);
    over as f64 * 100.0 / sorted.len().max(1) as f64
}

/// One run of part f.4 in a fresh directory: (idle latencies, busy latencies), sorted.
///
/// With `--space-window-ms=0`, `--space-secs` idle, then `--space-secs` busy. Otherwise the
/// two alternate in windows of that length (idle, busy, then a quarter window to settle), for
/// `--space-secs` of each in total: slow drifts of the shared machine then weigh on both
/// sides alike instead of on whichever phase they fall in.
fn reader_run(p: &Params, n: u64, run: u64, busy: Busy) -> Res<(Vec<u64>, Vec<u64>)> {
    let dir = tempdir(p)?;
    let mut options = space_options()
        .cache_bytes(p.space_pool_mib * MIB)
        .read_path(p.space_read);
    if let Some(mib) = p.space_memtable_value_mib {
        options = options.memtable_value_bytes(mib * MIB);
    }
    let mut counted = None;
    if !p.space_fs.is_empty() {
        let fs = Arc::new(extentdb::fs::FaultFs::new(Arc::new(extentdb::fs::RealFs)));
        fs.no_punch(p.space_fs.iter().any(|c| c == "no-punch"));
        fs.skip_syncs(p.space_fs.iter().any(|c| c == "no-sync"));
        options = options.file_system(Arc::clone(&fs) as _);
        counted = Some(fs);
    }
    let db = options.open(dir.path())?;
    put_large(&db, 0..n, 0)?;
    db.flush()?;
    if let Some(fs) = &counted {
        fs.reset_counts();
    }
    let secs = Duration::from_secs(p.space_secs);
    let before = db.stats();
    // Flushes and compactions that ran during idle windows: background work leaking into them.
    let mut idle_jobs = 0;
    let phase = Phase::new(if p.space_window_ms == 0 {
        Phase::IDLE
    } else {
        Phase::SETTLE
    });
    let phase_ref = &phase;
    let ((idle_seen, busy_seen), work) = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("reader".into())
            .spawn_scoped(s, || {
                if let Some(cpu) = p.space_reader_cpu {
                    pin_to_cpu(cpu)?;
                }
                phased_latencies(&db, n, 100 + run, phase_ref)
            })?;
        let writer = std::thread::Builder::new()
            .name("reclaim".into())
            .spawn_scoped(s, || reclaim_churn(&db, dir.path(), n, phase_ref, busy))?;
        let jobs = |s: &extentdb::Stats| s.flushes + s.compactions;
        let mut window = |kind: u8, length: Duration| {
            let start = jobs(&db.stats());
            phase.set(kind);
            std::thread::sleep(length);
            if kind == Phase::IDLE {
                idle_jobs += jobs(&db.stats()) - start;
            }
        };
        if p.space_window_ms == 0 {
            window(Phase::IDLE, secs);
            window(Phase::BUSY, secs);
        } else {
            let length = Duration::from_millis(p.space_window_ms);
            for _ in 0..(secs.as_millis() / length.as_millis().max(1)).max(1) {
                window(Phase::IDLE, length);
                window(Phase::BUSY, length);
                window(Phase::SETTLE, length / 4);
            }
        }
        phase.set(Phase::DONE);
        let latencies = reader.join().map_err(|_| "reader panicked")?;
        let work = writer.join().map_err(|_| "writer panicked")?;
        Ok::<_, Box<dyn Error + Send + Sync>>((latencies?, work?))
    })?;
    let (idle, busy) = (&idle_seen.latencies, &busy_seen.latencies);
    let (idle_sleeps, idle_preempted) = idle_seen.switches_per_1000();
    let (busy_sleeps, busy_preempted) = busy_seen.switches_per_1000();
    let s = db.stats();
    let q = |lat: &[u64]| {
        format!(
            "{:.1} / {:.1} / {:.1}",
            quantile_us(lat, 0.5),
            quantile_us(lat, 0.99),
            quantile_us(lat, 0.999)
        )
    };
    println!(
        "  run {}: idle {} us ({} gets), busy {} us ({} gets); p99 busy/idle {:.2}x; gets over \
         {SLOW_US} us: idle {:.2}%, busy {:.2}%; reader sleeps / preemptions per 1000 gets: idle {:.1} / {:.1}, busy {:.1} / {:.1}; {} flushes \
         and compactions during idle windows; pool fills into recycled buffers: {}; busy work: {} rounds, {} puts, compact, flush or sync mean {:.1} ms max {:.1} ms; {}; {} pool \
         invalidations, {} fill waits, {} fill retries; table block cache {} hits, {} misses; \
         {} flushes, {} compactions",
        run + 1,
        q(idle),
        idle.len(),
        q(busy),
        busy.len(),
        quantile_us(busy, 0.99) / quantile_us(idle, 0.99).max(1e-9),
        percent_over(idle, SLOW_US),
        percent_over(busy, SLOW_US),
        idle_sleeps,
        idle_preempted,
        busy_sleeps,
        busy_preempted,
        idle_jobs,
        s.pool_recycled_fills - before.pool_recycled_fills,
        work.rounds,
        work.puts,
        work.compact.as_secs_f64() * 1e3 / work.rounds.max(1) as f64,
        work.compact_max.as_secs_f64() * 1e3,
        reclamation(&before, &s),
        s.pool_invalidations - before.pool_invalidations,
        s.pool_waits - before.pool_waits,
        s.pool_retries - before.pool_retries,
        s.block_cache_hits - before.block_cache_hits,
        s.block_cache_misses - before.block_cache_misses,
        s.flushes - before.flushes,
        s.compactions - before.compactions
    );
    if let Some(fs) = &counted {
        use extentdb::fs::CallKind;
        let counts = fs.counts();
        let per_round = |kinds: &[CallKind]| {
            let calls: u64 = kinds.iter().filter_map(|k| counts.get(k)).sum();
            calls as f64 / work.rounds.max(1) as f64
        };
        println!(
            "    per busy round: {:.2} file and segment syncs, {:.2} directory syncs, {:.2} \
             punches, {:.2} files created",
            per_round(&[CallKind::Sync, CallKind::SegmentSync]),
            per_round(&[CallKind::SyncDir]),
            per_round(&[CallKind::PunchHole]),
            per_round(&[CallKind::Create])
        );
    }
    drop(db);
    dir.close()?;
    Ok((idle_seen.latencies, busy_seen.latencies))
}

/// Part f.4: reader latency idle versus during overwrites, range deletes and compactions, with
/// the busy thread flat out and then paced.
fn space_reader_tail(p: &Params) -> Res<()> {
    let n = large_values(p.space_mib / 4);
    let paced = Some(p.space_busy_mibps);
    let modes = [
        ("compact-flat", None, RoundEnd::Compact),
        ("compact", paced, RoundEnd::Compact),
        ("flush", paced, RoundEnd::Flush),
        ("background", paced, RoundEnd::Background),
        ("puts", paced, RoundEnd::Puts),
        ("disk", paced, RoundEnd::Disk),
        ("spin", paced, RoundEnd::Spin),
    ];
    for (name, mibps, end) in modes {
        if !p.space_modes.iter().any(|m| m == name) {
            continue;
        }
        let busy = Busy { mibps, end };
        let pace = busy.describe();
        let windows = if p.space_window_ms == 0 {
            "then".to_string()
        } else {
            format!(
                "alternating in windows of {} ms (each busy one followed by {} ms to settle) with",
                p.space_window_ms,
                p.space_window_ms / 4
            )
        };
        println!(
            "space/reader: 1 reader, random gets of {n} x 64 KiB ({} MiB) through a {} MiB pool, \
             {} s idle {windows} {} s with 1 busy thread ({pace}), rounds of 16 overwrites of \
             random keys and 16 puts of new ones; {} runs, fresh directory each; p50 / p99 / p999",
            p.space_mib / 4,
            p.space_pool_mib,
            p.space_secs,
            p.space_secs,
            p.space_reps
        );
        let mut figures: [Vec<f64>; 7] = Default::default();
        for run in 0..p.space_reps {
            let (idle, loaded) = reader_run(p, n, run, busy)?;
            let values = [
                quantile_us(&idle, 0.5),
                quantile_us(&idle, 0.99),
                quantile_us(&idle, 0.999),
                quantile_us(&loaded, 0.5),
                quantile_us(&loaded, 0.99),
                quantile_us(&loaded, 0.999),
                quantile_us(&loaded, 0.99) / quantile_us(&idle, 0.99).max(1e-9),
            ];
            for (column, v) in figures.iter_mut().zip(values) {
                column.push(v);
            }
        }
        let [i50, i99, i999, b50, b99, b999, ratio] = figures.map(|mut c| median(&mut c));
        println!(
            "  medians of {} runs ({pace}): idle {i50:.1} / {i99:.1} / {i999:.1} us, busy \
             {b50:.1} / {b99:.1} / {b999:.1} us; p99 busy/idle {ratio:.2}x (target <= 1.5x)",
            p.space_reps
        );
    }
    Ok(())
}
