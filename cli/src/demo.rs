//! `kv demo`: the engine's whole life cycle on realistic data, checked against a model.
//!
//! Every write goes to the database and to an in-memory `BTreeMap` model; every read is
//! compared byte for byte with the model. The phases, in order:
//!
//! 1. load: user records (small JSON-like values) in batches of 100, in random order, binary
//!    blobs of 4-64 KiB, then updates of 10% and deletes of 1% of the users;
//! 2. read a random sample of keys (hits and misses);
//! 3. scan a prefix forward and backward;
//! 4. take a snapshot, delete a quarter of the users with one range delete, and check that
//!    the database no longer sees them while the snapshot still does;
//! 5. flush and compact, and check the snapshot again; drop it, range-delete half of the
//!    blobs and compact once more: the space of the deleted blobs comes back (punched out of
//!    the value files, or whole files deleted);
//! 6. close, reopen and `verify`;
//! 7. compare the whole contents, forward and backward, with the model.
//!
//! The first failed check stops the demo with exit code 1. The data comes from a seeded
//! generator, so a failure reproduces with the same `--keys` and `--seed`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use extentdb::{Db, Options, Stats, WriteBatch};

use crate::admin::{self, human_bytes};
use crate::escape;
use crate::outcome::Failure;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work in directory D (created if missing, must be empty) and keep it afterwards.
    /// Default: a temporary directory, removed at the end.
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,
    /// Number of user records; one binary blob is added per 25 users.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50_000,
        value_parser = clap::value_parser!(u32).range(1..=10_000_000)
    )]
    keys: u32,
    /// Seed of the generated data and samples.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Users read back in the sample phase, at most.
const READ_SAMPLE: usize = 20_000;
/// Users per write batch in the load phase.
const BATCH_USERS: usize = 100;
/// Users per blob.
const USERS_PER_BLOB: u32 = 25;
const BLOB_MIN_BYTES: u64 = 4 << 10;
const BLOB_MAX_BYTES: u64 = 64 << 10;

/// Sized so that a 50,000-user demo fills several memtables and reaches level 2.
fn demo_options() -> Options {
    Options::new()
        .memtable_bytes(8 << 20)
        .table_target_bytes(8 << 20)
        .level_base_bytes(32 << 20)
        .cache_bytes(32 << 20)
}

/// `kv demo [--dir D] [--keys N] [--seed S]`.
///
/// # Errors
/// `Usage` if D is not empty; `Engine` if the engine fails or a check does not hold.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let (_temp, dir) = work_dir(args.dir.as_deref())?;
    let blobs = args.keys.div_ceil(USERS_PER_BLOB);
    writeln!(
        out,
        "extentdb demo: {} users and {blobs} blobs in {} (seed {})",
        args.keys,
        dir.display(),
        args.seed
    )?;
    let mut demo = Demo {
        db: Some(demo_options().open(&dir)?),
        dir,
        model: BTreeMap::new(),
        rng: Rng(args.seed),
        users: args.keys,
        blobs,
        checks: Checks(0),
        phases: Vec::new(),
    };
    writeln!(
        out,
        "\n{:<24} {:>9} {:>10} {:>12}",
        "phase", "ops", "time", "ops/s"
    )?;
    demo.phase(out, "load", Demo::load)?;
    demo.phase(out, "read sample", Demo::read_sample)?;
    demo.phase(out, "scan prefix both ways", Demo::scan_prefix)?;
    demo.phase(
        out,
        "snapshot + delete-range",
        Demo::snapshot_and_delete_range,
    )?;
    let before_close = demo.db()?.stats();
    demo.phase(out, "reopen + verify", Demo::reopen_and_verify)?;
    demo.phase(out, "check all vs model", Demo::check_everything)?;
    demo.report(out, &before_close)
}

/// The directory to work in, and the temporary directory to remove at the end, if any.
fn work_dir(dir: Option<&Path>) -> Result<(Option<tempfile::TempDir>, PathBuf), Failure> {
    let Some(dir) = dir else {
        let temp = tempfile::Builder::new()
            .prefix("kv-demo-")
            .tempdir()
            .map_err(|e| Failure::Engine(format!("cannot create a temporary directory: {e}")))?;
        let path = temp.path().to_path_buf();
        return Ok((Some(temp), path));
    };
    let cannot = |e: std::io::Error| Failure::Engine(format!("cannot use {}: {e}", dir.display()));
    if dir.exists() && std::fs::read_dir(dir).map_err(cannot)?.next().is_some() {
        return Err(Failure::Usage(format!(
            "--dir {} is not empty: the demo needs a fresh directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(cannot)?;
    Ok((None, dir.to_path_buf()))
}

/// The number of checks that held.
struct Checks(u64);

impl Checks {
    /// Counts a check that held, or fails the demo with `what`.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> Result<(), Failure> {
        if ok {
            self.0 += 1;
            Ok(())
        } else {
            Err(Failure::Engine(format!("demo check failed: {}", what())))
        }
    }
}

/// A finished phase: its operations and time.
struct Phase {
    ops: u64,
    elapsed: Duration,
}

struct Demo {
    /// `None` only while reopening.
    db: Option<Db>,
    dir: PathBuf,
    /// What the database must hold.
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    rng: Rng,
    users: u32,
    blobs: u32,
    checks: Checks,
    phases: Vec<Phase>,
}

/// The outcome of a phase: how many operations it ran.
type Ops = Result<u64, Failure>;

impl Demo {
    fn db(&self) -> Result<&Db, Failure> {
        self.db
            .as_ref()
            .ok_or_else(|| Failure::Engine("the database is closed".into()))
    }

    /// Runs one phase, times it and prints its line.
    fn phase(
        &mut self,
        out: &mut dyn Write,
        name: &'static str,
        f: fn(&mut Self) -> Ops,
    ) -> Result<(), Failure> {
        let start = Instant::now();
        let ops = f(self)?;
        let elapsed = start.elapsed();
        writeln!(
            out,
            "{name:<24} {ops:>9} {:>10} {:>12}",
            format!("{:.2} s", elapsed.as_secs_f64()),
            ops_per_sec(ops, elapsed)
        )?;
        out.flush()?;
        self.phases.push(Phase { ops, elapsed });
        Ok(())
    }

    fn load(&mut self) -> Ops {
        let db = self.db()?.clone();
        let mut ops = 0;
        let mut ids: Vec<u32> = (0..self.users).collect();
        self.rng.shuffle(&mut ids);
        for chunk in ids.chunks(BATCH_USERS) {
            let mut batch = WriteBatch::new();
            for &id in chunk {
                let value = user_value(id, 0, &mut self.rng);
                batch.put(user_key(id), &value);
                self.model.insert(user_key(id), value);
            }
            ops += batch.len() as u64;
            db.write(batch)?;
        }
        for id in 0..self.blobs {
            let len = self.rng.between(BLOB_MIN_BYTES, BLOB_MAX_BYTES);
            let value = self.rng.bytes(len);
            db.put(blob_key(id), &value)?;
            self.model.insert(blob_key(id), value);
            ops += 1;
        }
        for _ in 0..self.users / 10 {
            let id = self.rng.below(self.users);
            let value = user_value(id, 1, &mut self.rng);
            db.put(user_key(id), &value)?;
            self.model.insert(user_key(id), value);
            ops += 1;
        }
        for _ in 0..self.users / 100 {
            let id = self.rng.below(self.users);
            db.delete(user_key(id))?;
            self.model.remove(&user_key(id));
            ops += 1;
        }
        Ok(ops)
    }

    fn read_sample(&mut self) -> Ops {
        let db = self.db()?.clone();
        let samples = READ_SAMPLE.min(self.model.len());
        let mut ops = 0;
        for i in 0..samples {
            let key = match i % 10 {
                // Misses: ids past the last user.
                0 => user_key(self.users + self.rng.below(self.users)),
                1 => blob_key(self.rng.below(self.blobs)),
                _ => user_key(self.rng.below(self.users)),
            };
            let got = db.get(&key)?;
            let want = self.model.get(&key);
            self.checks
                .check(got.as_deref() == want.map(Vec::as_slice), || {
                    format!("get {} returned the wrong value", escape::key(&key))
                })?;
            ops += 1;
        }
        Ok(ops)
    }

    fn scan_prefix(&mut self) -> Ops {
        let db = self.db()?.clone();
        let prefix = b"user:0000".as_slice();
        let want: Vec<(&Vec<u8>, &Vec<u8>)> = self
            .model
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        let forward = collect(db.prefix(prefix))?;
        let same = pairs_equal(&forward, want.iter().copied());
        self.checks
            .check(same, || "forward prefix scan differs from the model".into())?;
        let backward = collect(db.prefix(prefix).rev())?;
        let same = pairs_equal(&backward, want.iter().rev().copied());
        self.checks.check(same, || {
            "backward prefix scan differs from the model".into()
        })?;
        Ok((forward.len() + backward.len()) as u64)
    }

    fn snapshot_and_delete_range(&mut self) -> Ops {
        let db = self.db()?.clone();
        let (from, to) = (user_key(self.users / 4), user_key(self.users / 2));
        let snapshot = db.snapshot();
        let deleted: BTreeMap<Vec<u8>, Vec<u8>> = self
            .model
            .range(from.clone()..to.clone())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        db.delete_range(from.clone()..to.clone())?;
        for key in deleted.keys() {
            self.model.remove(key);
        }
        let mut ops = 1;
        let gone = db.range(from.clone()..to.clone()).next().is_none();
        self.checks
            .check(gone, || "a range-deleted key is still visible".into())?;
        ops += self.check_snapshot_slice(&snapshot, &from, &to, &deleted)?;
        db.flush()?;
        db.compact()?;
        ops += 2;
        ops += self.check_snapshot_slice(&snapshot, &from, &to, &deleted)?;
        for key in deleted.keys().step_by(97) {
            let got = db.get(key)?;
            self.checks.check(got.is_none(), || {
                format!("{} is visible after its range delete", escape::key(key))
            })?;
            ops += 1;
        }
        drop(snapshot);
        ops += self.delete_half_the_blobs(&db)?;
        Ok(ops)
    }

    /// Range-deletes half of the blobs and compacts: with no snapshot left, their blocks are
    /// freed and the value store's bytes on disk shrink.
    fn delete_half_the_blobs(&mut self, db: &Db) -> Ops {
        let (from, to) = (blob_key(0), blob_key(self.blobs / 2));
        let disk_before = db.stats().value_disk_bytes;
        let doomed: Vec<Vec<u8>> = self
            .model
            .range(from.clone()..to.clone())
            .map(|(k, _)| k.clone())
            .collect();
        db.delete_range(from.clone()..to.clone())?;
        for key in &doomed {
            self.model.remove(key);
        }
        db.compact()?;
        let after = db.stats();
        self.checks.check(after.value_reclaimed_bytes > 0, || {
            "compaction freed no block of the deleted blobs".into()
        })?;
        self.checks.check(
            matches!(
                (after.value_disk_bytes, disk_before),
                (Some(after), Some(before)) if after < before
            ),
            || {
                format!(
                    "the value store still takes {} on disk (was {})",
                    admin::disk_bytes(after.value_disk_bytes),
                    admin::disk_bytes(disk_before)
                )
            },
        )?;
        let gone = db.range(from..to).next().is_none();
        self.checks
            .check(gone, || "a range-deleted blob is still visible".into())?;
        Ok(doomed.len() as u64 + 2)
    }

    /// Checks that `snapshot` still sees exactly `deleted` between `from` and `to`.
    fn check_snapshot_slice(
        &mut self,
        snapshot: &extentdb::Snapshot,
        from: &[u8],
        to: &[u8],
        deleted: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Ops {
        let seen = collect(snapshot.range(from..to))?;
        let same = pairs_equal(&seen, deleted.iter());
        self.checks.check(same, || {
            format!(
                "the snapshot sees {} pairs in the deleted range, expected {}",
                seen.len(),
                deleted.len()
            )
        })?;
        Ok(seen.len() as u64)
    }

    fn reopen_and_verify(&mut self) -> Ops {
        drop(self.db.take());
        let db = demo_options().open(&self.dir)?;
        let report = db.verify()?;
        self.checks
            .check(report.tables > 0, || "verify read no table".into())?;
        self.db = Some(db);
        Ok(report.entries)
    }

    fn check_everything(&mut self) -> Ops {
        let db = self.db()?.clone();
        let forward = collect(db.range::<&[u8], _>(..))?;
        let same = pairs_equal(&forward, self.model.iter());
        let difference = (!same).then(|| first_difference(&forward, &self.model));
        self.checks.check(same, || difference.unwrap_or_default())?;
        let backward = collect(db.range::<&[u8], _>(..).rev())?;
        let same = pairs_equal(&backward, self.model.iter().rev());
        self.checks
            .check(same, || "the backward scan differs from the model".into())?;
        Ok((forward.len() + backward.len()) as u64)
    }

    fn report(&self, out: &mut dyn Write, before_close: &Stats) -> Result<(), Failure> {
        let stats = self.db()?.stats();
        let total: Duration = self.phases.iter().map(|p| p.elapsed).sum();
        let ops: u64 = self.phases.iter().map(|p| p.ops).sum();
        writeln!(
            out,
            "{:<24} {ops:>9} {:>10} {:>12}",
            "total",
            format!("{:.2} s", total.as_secs_f64()),
            ops_per_sec(ops, total)
        )?;
        let bytes: usize = self.model.iter().map(|(k, v)| k.len() + v.len()).sum();
        writeln!(
            out,
            "\n{} keys ({}) in the database after the run; {} checks passed",
            self.model.len(),
            human_bytes(bytes as u64),
            self.checks.0
        )?;
        writeln!(
            out,
            "before close: {} writes in {} groups, {} flushes, {} compactions, \
             {} trivial moves, {} write stalls; block cache hit rate {}",
            before_close.writes,
            before_close.write_groups,
            before_close.flushes,
            before_close.compactions,
            before_close.trivial_moves,
            before_close.write_stalls,
            admin::cache_hit_rate(before_close)
        )?;
        writeln!(
            out,
            "after reopen: {}; block cache hit rate {}",
            admin::tables_summary(&stats),
            admin::cache_hit_rate(&stats)
        )?;
        admin::write_levels(&stats, out)?;
        writeln!(
            out,
            "value files before close: {} live, {} dead, {} on disk ({} space amplification); \
             compaction reclaimed {} and copied {}",
            human_bytes(before_close.value_live_bytes),
            human_bytes(before_close.value_dead_bytes),
            admin::disk_bytes(before_close.value_disk_bytes),
            before_close
                .value_space_amplification()
                .map_or_else(|| "-".to_string(), |a| format!("{a:.2}x")),
            human_bytes(before_close.value_reclaimed_bytes),
            human_bytes(before_close.value_gc_written_bytes)
        )?;
        writeln!(out, "\nall checks passed")?;
        Ok(())
    }
}

fn user_key(id: u32) -> Vec<u8> {
    format!("user:{id:08}").into_bytes()
}

fn blob_key(id: u32) -> Vec<u8> {
    format!("blob:{id:06}").into_bytes()
}

/// A small JSON-like user record; `version` tells updates apart.
fn user_value(id: u32, version: u32, rng: &mut Rng) -> Vec<u8> {
    const CITIES: [&str; 6] = ["Lisbon", "Osaka", "Lagos", "Lima", "Oslo", "Pune"];
    let city = CITIES
        .get(rng.below(6) as usize)
        .copied()
        .unwrap_or("Nowhere");
    format!(
        "{{\"id\":{id},\"name\":\"user {id}\",\"email\":\"user{id}@example.com\",\
         \"age\":{},\"city\":\"{city}\",\"score\":{},\"version\":{version}}}",
        18 + rng.below(70),
        rng.below(100_000)
    )
    .into_bytes()
}

/// An owned key-value pair.
type Pair = (Vec<u8>, Vec<u8>);

/// Reads a whole iterator into owned pairs.
fn collect(
    iter: impl Iterator<Item = extentdb::Result<(extentdb::Key, extentdb::Value)>>,
) -> Result<Vec<Pair>, Failure> {
    iter.map(|pair| {
        pair.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(Failure::from)
    })
    .collect()
}

fn pairs_equal<'a>(
    got: &[(Vec<u8>, Vec<u8>)],
    want: impl ExactSizeIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>,
) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((k, v), (wk, wv))| k == wk && v == wv)
}

/// Describes where a full scan and the model first disagree.
fn first_difference(got: &[(Vec<u8>, Vec<u8>)], model: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    for ((k, v), (wk, wv)) in got.iter().zip(model) {
        if k != wk {
            return format!(
                "the full scan has key {} where the model has {}",
                escape::key(k),
                escape::key(wk)
            );
        }
        if v != wv {
            return format!("the value of {} differs from the model", escape::key(k));
        }
    }
    format!(
        "the full scan has {} pairs, the model {}",
        got.len(),
        model.len()
    )
}

fn ops_per_sec(ops: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "-".into();
    }
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = ops as f64 / secs;
    format!("{rate:.0}")
}

/// SplitMix64: a small, fast, seeded generator; good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u32) -> u32 {
        // The high half of a 64x32 product is below `n`: no overflow, no modulo bias to speak of.
        u32::try_from((self.next() >> 32).wrapping_mul(u64::from(n)) >> 32).unwrap_or(0)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn bytes(&mut self, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while (out.len() as u64) < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(usize::try_from(len).unwrap_or(0));
        out
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(u32::try_from(i + 1).unwrap_or(u32::MAX)) as usize;
            items.swap(i, j);
        }
    }
}
