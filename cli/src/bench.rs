//! `kv bench`: db_bench-style workloads against a database, with throughput and latency
//! percentiles.
//!
//! Keys are 16 decimal digits (`0000000000000042`), values `--value-size` pseudo-random bytes.
//! Workloads that read, overwrite or delete first fill the keys in order, untimed. Each
//! operation is timed on its own; the percentiles are exact (every latency is kept and sorted).
//! Without `--db`, the benchmark runs in a temporary directory removed at the end. These are
//! quick checks; the numbers in the README come from `benches/`.

use std::io::{IsTerminal as _, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use extentdb::{Db, Options};
use indicatif::{ProgressBar, ProgressStyle};

use crate::outcome::Failure;

/// Keys per `deleterange` operation.
const DELETE_RANGE_KEYS: u64 = 10;

/// What `kv bench` runs (names as in LevelDB's and RocksDB's `db_bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Put N keys in order.
    Fillseq,
    /// Put N keys in random order.
    Fillrandom,
    /// Get N random keys of a filled database.
    Readrandom,
    /// Iterate over a filled database.
    Readseq,
    /// Put N random keys of a filled database again.
    Overwrite,
    /// Delete N random ranges of 10 keys of a filled database.
    Deleterange,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(long, value_enum, default_value_t = Workload::Fillrandom)]
    workload: Workload,
    /// Operations (and keys).
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    num: u64,
    /// Bytes per value.
    #[arg(long, value_name = "B", default_value_t = 100)]
    value_size: usize,
}

/// `kv bench [--workload W] [--num N] [--value-size B]`.
///
/// # Errors
/// `Engine` (or `Locked`, `Corruption`) if the database fails.
pub fn run(
    dir: Option<&Path>,
    args: &BenchArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir().map_err(|e| {
                Failure::Engine(format!("cannot create a temporary directory: {e}"))
            })?;
            temp.path()
        }
    };
    let db = Options::new().create_if_missing(true).open(dir)?;
    let value = Rng(0x0bad_cafe).bytes(args.value_size);
    if args.workload != Workload::Fillseq && args.workload != Workload::Fillrandom {
        for i in 0..args.num {
            db.put(key(i), &value)?;
        }
    }
    let bar = progress(args.num);
    let (latencies, elapsed) = timed(&db, args, &value, &bar)?;
    bar.finish_and_clear();
    report(args, &latencies, elapsed, json, out)?;
    Ok(())
}

/// Runs the workload; returns each operation's latency in nanoseconds and the total time.
fn timed(
    db: &Db,
    args: &BenchArgs,
    value: &[u8],
    bar: &ProgressBar,
) -> Result<(Vec<u64>, Duration), Failure> {
    let n = args.num;
    let mut rng = Rng(0x5eed);
    let mut latencies = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let start = Instant::now();
    let record = |t: Instant, latencies: &mut Vec<u64>| {
        latencies.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if latencies.len().is_multiple_of(1024) {
            bar.set_position(latencies.len() as u64);
        }
    };
    match args.workload {
        Workload::Readseq => {
            let mut iter = db.range::<&[u8], _>(..);
            loop {
                let t = Instant::now();
                let Some(pair) = iter.next() else { break };
                pair?;
                record(t, &mut latencies);
            }
        }
        workload => {
            for i in 0..n {
                let t = Instant::now();
                match workload {
                    Workload::Fillseq => db.put(key(i), value)?,
                    Workload::Fillrandom | Workload::Overwrite => {
                        db.put(key(rng.next() % n), value)?;
                    }
                    Workload::Readrandom => {
                        db.get(key(rng.next() % n))?;
                    }
                    // (readseq ran above.)
                    Workload::Deleterange | Workload::Readseq => {
                        let first = rng.next() % n;
                        db.delete_range(key(first)..key(first + DELETE_RANGE_KEYS))?;
                    }
                }
                record(t, &mut latencies);
            }
        }
    }
    Ok((latencies, start.elapsed()))
}

fn report(
    args: &BenchArgs,
    latencies: &[u64],
    elapsed: Duration,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let pct = |p: f64| -> u64 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index from a fraction of a count"
        )]
        let at = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
        sorted.get(at).copied().unwrap_or(0)
    };
    let ops = latencies.len() as u64;
    let secs = elapsed.as_secs_f64().max(1e-9);
    #[expect(clippy::cast_precision_loss, reason = "rates for display")]
    let (ops_per_sec, mb_per_sec) = {
        let bytes = ops * (16 + args.value_size as u64);
        (ops as f64 / secs, bytes as f64 / secs / 1e6)
    };
    let (p50, p99, p999) = (pct(0.50), pct(0.99), pct(0.999));
    let name = format!("{:?}", args.workload).to_lowercase();
    if json {
        writeln!(
            out,
            "{{\"workload\":\"{name}\",\"ops\":{ops},\"seconds\":{secs:.6},\"ops_per_sec\":{ops_per_sec:.1},\"mb_per_sec\":{mb_per_sec:.3},\"p50_ns\":{p50},\"p99_ns\":{p99},\"p999_ns\":{p999}}}"
        )
    } else {
        writeln!(
            out,
            "{name}: {ops} ops in {secs:.3} s: {ops_per_sec:.0} ops/s, {mb_per_sec:.1} MB/s; \
             latency p50 {}, p99 {}, p999 {}",
            micros(p50),
            micros(p99),
            micros(p999)
        )
    }
}

fn micros(nanos: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a latency for display")]
    let us = nanos as f64 / 1000.0;
    format!("{us:.1} us")
}

fn key(i: u64) -> String {
    format!("{i:016}")
}

fn progress(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} ops {per_sec} ETA {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// xorshift64: a seeded generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}
