//! `kvbench`: extentdb side by side with peer engines on db_bench's and YCSB's workloads.
//!
//! Every repetition (`--runs`) first measures the machine (sequential disk writes with one
//! `fdatasync`, memory copy), then runs every value size, and within it every engine in turn,
//! starting each repetition at the next engine: machine drift hits all engines alike. Each
//! engine gets a new database per fill, the same cache budget and the same durability (no
//! fsync per write, one sync at the end of each writing workload, inside the timed window).
//! Prints a table of medians with ratios against extentdb, writes a JSON report and SVG charts
//! to `--out`. The library side is `extentdb_benches::kvbench`; `docs/benchmarks.md` ("Peer
//! comparison: kvbench") explains the figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use extentdb_benches::kvbench::engine::EngineKind;
use extentdb_benches::kvbench::machine::{self, MachineInfo};
use extentdb_benches::kvbench::report::{self, Report, RunMachine, size_name};
use extentdb_benches::kvbench::runner::{Pass, Record, run_engine};
use extentdb_benches::kvbench::workload::{KEY_BYTES, READS_MIN, Settings, Workload};
use extentdb_benches::kvbench::{Result, data, error, plot};

/// What every engine's durability is, as reports print it.
const DURABILITY: &str = "no fsync per write; one sync (extentdb Db::sync, fjall persist(SyncData), \
RocksDB flush_wal(true), sled flush, redb Immediate commit) ends each writing workload, inside its timed window";

/// Compare extentdb with peer engines (fjall, RocksDB, sled, redb) on db_bench and YCSB workloads.
///
/// Engines run interleaved within each repetition; figures are medians over `--runs`. Every
/// workload checks what it reads, so an engine returning wrong data fails the run.
#[derive(Debug, Parser)]
#[command(name = "kvbench", version)]
struct Args {
    /// Engines to compare, comma-separated [default: every engine compiled in]. Peers need
    /// their cargo feature: `--features rust-peers` (fjall, sled, redb), `rocksdb`, or `peers`.
    #[arg(long, value_enum, value_delimiter = ',')]
    engines: Vec<EngineKind>,

    /// Workloads, comma-separated [default: all]; they run in the order listed below, whatever
    /// the order given. Fills start a new database; other workloads reuse the last one (an
    /// untimed fillrandom makes it when no fill is selected).
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,

    /// Value sizes in bytes, comma-separated; `k` suffix for KiB (at least 16 bytes).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "100,4k,64k")]
    value_sizes: Vec<usize>,

    /// Keys per database, for every value size. Exclusive with --data-mib.
    #[arg(long, conflicts_with = "data_mib", value_parser = clap::value_parser!(u64).range(10..))]
    num: Option<u64>,

    /// Timed gets of readrandom [default: the key count, at least 100 000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    reads: Option<u64>,

    /// Key and value bytes per database, in MiB: keys = data / (16 + value size), at least 10.
    /// Used when --num is not given.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    data_mib: u64,

    /// Repetitions; figures are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,

    /// Cache budget of every engine, MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    cache_mib: u64,

    /// Directory under which databases are made (a temporary directory inside it, removed at
    /// the end). Its disk is the one measured.
    #[arg(long, default_value = "target")]
    dir: PathBuf,

    /// Directory for the JSON report (`kvbench-<unix time>.json`) and the SVG charts.
    #[arg(long, default_value = "target/kvbench")]
    out: PathBuf,

    /// Length of each phase of readwhilewriting: `2s`, `500ms` or seconds.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    duration: Duration,

    /// Puts per write batch in fills and overwrite; 1 for single puts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,

    /// Entries read after each seek of seekrandom.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    scan_len: u64,

    /// The writer's pace in readwhilewriting, MiB/s of keys and values; 0 for flat out.
    #[arg(long, default_value_t = 64)]
    writer_mib_per_sec: u64,

    /// extentdb only: bytes written to a value segment or log between starts of its write-back
    /// (`Options::writeback_bytes`; 0 for none) [default: the engine's default, 1 MiB].
    #[arg(long)]
    extentdb_writeback_bytes: Option<u64>,

    /// extentdb only: before a value smaller than this is appended into untouched blocks, they
    /// are zero-filled up to the next multiple of it, in one write (`Options::zero_ahead_bytes`;
    /// 0 for none) [default: the engine's default, 64 KiB].
    #[arg(long)]
    extentdb_zero_ahead_bytes: Option<u64>,

    /// MiB written by the disk bandwidth probe of each run.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    disk_probe_mib: u64,

    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Skip the SVG charts.
    #[arg(long)]
    no_plots: bool,

    /// Run nothing: read a JSON report of an earlier run, print its table and draw its charts
    /// into `--out`.
    #[arg(long, value_name = "JSON")]
    replot: Option<PathBuf>,
}

fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let (digits, scale) = match t.strip_suffix("kib").or_else(|| t.strip_suffix('k')) {
        Some(d) => (d, 1024),
        None => (t.as_str(), 1),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size in bytes (e.g. 100, 4k, 64k)"))?;
    let bytes = n
        .checked_mul(scale)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if !(data::MIN_VALUE_BYTES..=extentdb::MAX_VALUE_BYTES).contains(&bytes) {
        return Err(format!(
            "value size {bytes} is outside {}..={} bytes",
            data::MIN_VALUE_BYTES,
            extentdb::MAX_VALUE_BYTES
        ));
    }
    Ok(bytes)
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration (e.g. 2s, 500ms, 1.5)");
    let secs: f64 = if let Some(ms) = t.strip_suffix("ms") {
        ms.trim().parse::<f64>().map_err(|_| bad())? / 1e3
    } else {
        t.strip_suffix('s')
            .unwrap_or(t)
            .trim()
            .parse()
            .map_err(|_| bad())?
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(format!(
            "duration `{s}` must be above 0 and at most an hour"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints the table of a saved report and draws its charts into `out`.
fn replot(path: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let bytes =
        std::fs::read(path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
    let saved: report::SavedReport = serde_json::from_slice(&bytes)
        .map_err(|e| error(format!("{} is not a kvbench report: {e}", path.display())))?;
    println!("{}", report::table(&saved.summary, &saved.run_machine));
    for chart in plot::write_plots(&saved.summary, out)? {
        println!("chart: {}", chart.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvbench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(path) = &args.replot {
        return replot(path, &args.out);
    }
    let mut engines = if args.engines.is_empty() {
        EngineKind::compiled()
    } else {
        args.engines.clone()
    };
    let mut seen = Vec::new();
    engines.retain(|e| {
        let first = !seen.contains(e);
        seen.push(*e);
        first
    });
    if let Some(missing) = engines.iter().find(|e| !e.compiled_in()) {
        return Err(error(format!(
            "engine {missing} is not compiled into this binary: build with `--features {}` \
             (compiled in: {})",
            missing.feature().unwrap_or("?"),
            EngineKind::compiled()
                .iter()
                .map(|e| e.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut workloads = if args.workloads.is_empty() {
        <Workload as clap::ValueEnum>::value_variants().to_vec()
    } else {
        args.workloads.clone()
    };
    workloads.sort_unstable();
    workloads.dedup();
    let mut sizes = args.value_sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let cache_bytes = args.cache_mib << 20;
    let runs = usize::try_from(args.runs).unwrap_or(usize::MAX);

    std::fs::create_dir_all(&args.dir)?;
    let base = tempfile::Builder::new()
        .prefix("kvbench-")
        .tempdir_in(&args.dir)?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine_info = MachineInfo::read();
    println!(
        "kvbench: engines {} | workloads {} | values {} | {} | runs {runs} | cache {} MiB each | \
         batch {} | durability: {DURABILITY} | dir {} | load {:.2}",
        engines
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(","),
        workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(","),
        sizes
            .iter()
            .map(|&s| size_name(s))
            .collect::<Vec<_>>()
            .join(","),
        args.num.map_or_else(
            || format!("{} MiB of data per database", args.data_mib),
            |n| format!("{n} keys per database")
        ),
        args.cache_mib,
        args.batch,
        base.path().display(),
        machine::load_average(),
    );

    let mut records: Vec<Record> = Vec::new();
    let mut run_machine = Vec::new();
    let mut settings_used = None;
    let mut keys_per_value_size = Vec::new();
    for run in 0..runs {
        let load = machine::load_average();
        let disk = machine::disk_write_mb_per_s(base.path(), args.disk_probe_mib)?;
        let mem = machine::memcpy_gb_per_s();
        println!(
            "run {}/{runs}: disk {disk:.0} MB/s, memcpy {mem:.1} GB/s, load {load:.2}",
            run + 1
        );
        run_machine.push(RunMachine {
            run,
            disk_mb_per_s: disk,
            memcpy_gb_per_s: mem,
            load_average: load,
        });
        for &size in &sizes {
            let num = args
                .num
                .unwrap_or_else(|| ((args.data_mib << 20) / (KEY_BYTES + size) as u64).max(10));
            let settings = Settings {
                num,
                reads: args.reads.unwrap_or(num.max(READS_MIN)),
                batch: usize::try_from(args.batch).unwrap_or(1),
                duration: args.duration,
                scan_len: args.scan_len,
                writer_bytes_per_sec: args.writer_mib_per_sec << 20,
                seed: args.seed.wrapping_add(run as u64),
                extentdb_writeback_bytes: args.extentdb_writeback_bytes,
                extentdb_zero_ahead_bytes: args.extentdb_zero_ahead_bytes,
            };
            let pass = Pass {
                run,
                workloads: &workloads,
                settings: &settings,
                cache_bytes,
                dir: base.path(),
            };
            let mut order = engines.clone();
            order.rotate_left(run % engines.len().max(1));
            for engine in order {
                let mut progress = |r: &Record| {
                    println!(
                        "  {:<12} {:>7} {:<17} {:>12.0} ops/s {:>9.1} MB/s",
                        engine.name(),
                        size_name(size),
                        r.workload.name(),
                        r.outcome.ops as f64 / r.outcome.seconds,
                        r.outcome.logical_bytes as f64 / machine::MB / r.outcome.seconds,
                    );
                };
                let made = run_engine(engine, size, &pass, &mut progress).map_err(|e| {
                    error(format!(
                        "{engine}, {} values, run {}: {e}",
                        size_name(size),
                        run + 1
                    ))
                })?;
                records.extend(made);
            }
            if run == 0 {
                keys_per_value_size.push((size, num));
            }
            settings_used.get_or_insert(settings);
        }
    }

    let summary = report::summarize(&records, &run_machine);
    println!("\n{}", report::table(&summary, &run_machine));
    std::fs::create_dir_all(&args.out)?;
    let report = Report {
        tool: "kvbench",
        started_unix_secs: started,
        command: std::env::args().collect(),
        durability: DURABILITY,
        cache_bytes,
        settings: settings_used.ok_or_else(|| error("no value size to run"))?,
        keys_per_value_size,
        engines,
        value_sizes: sizes,
        workloads,
        machine: machine_info,
        run_machine,
        load_average_end: machine::load_average(),
        records,
        summary,
    };
    let json_path = args.out.join(format!("kvbench-{started}.json"));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    println!("report: {}", json_path.display());
    if !args.no_plots {
        for path in plot::write_plots(&report.summary, &args.out)? {
            println!("chart: {}", path.display());
        }
    }
    println!("load average at the end: {:.2}", report.load_average_end);
    Ok(())
}
