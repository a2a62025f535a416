//! Medians over runs, ratios against extentdb, the terminal table and the JSON report.
//!
//! Derived figures, per record: throughput = ops / seconds and logical bytes / seconds; write
//! amplification = disk bytes written over the timed window / logical bytes written (and, for
//! workloads that settle, with the settling's writes added); space amplification = bytes on
//! disk / key and value bytes of the live keys. Each summary figure is the median of the runs'
//! figures, and the ratio against extentdb is the ratio of medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::engine::EngineKind;
use super::machine::{MB, MachineInfo};
use super::runner::Record;
use super::workload::{Settings, Workload};

/// Machine figures measured in one run, before its engines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMachine {
    /// The repetition, from 0.
    pub run: usize,
    /// Sequential write bandwidth with one `fdatasync`, MB/s.
    pub disk_mb_per_s: f64,
    /// Memory copy bandwidth, GB/s.
    pub memcpy_gb_per_s: f64,
    /// 1-minute load average when the run started.
    pub load_average: f64,
}

/// Medians over runs of one engine, value size and workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The engine.
    pub engine: EngineKind,
    /// The size of every value.
    pub value_bytes: usize,
    /// The workload.
    pub workload: Workload,
    /// Runs that measured it.
    pub runs: usize,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Logical MB/s (keys and values read or written).
    pub mb_per_sec: f64,
    /// `ops_per_sec` / extentdb's, when extentdb ran it.
    pub ratio_to_extentdb: Option<f64>,
    /// Disk writes / logical writes over the timed window.
    pub write_amp: Option<f64>,
    /// The same with the untimed settling's writes added.
    pub write_amp_with_settle: Option<f64>,
    /// Bytes on disk / live bytes at the end of the workload.
    pub space_amp: Option<f64>,
    /// Fills: logical MB/s / the disk's sequential MB/s (medians).
    pub disk_fraction: Option<f64>,
    /// `readwhilewriting`: reader p50 / p99 / p999 alone, microseconds.
    pub idle_us: Option<[f64; 3]>,
    /// `readwhilewriting`: reader p50 / p99 / p999 beside the writer, microseconds.
    pub busy_us: Option<[f64; 3]>,
    /// `readwhilewriting`: the median of each run's busy p99 / idle p99.
    pub p99_busy_over_idle: Option<f64>,
    /// `deleterange`: seconds to read the keys left.
    pub read_rest_seconds: Option<f64>,
    /// Writing workloads: milliseconds of the sync that ends the timed window. Absent from
    /// reports written before it was measured.
    #[serde(default)]
    pub sync_ms: Option<f64>,
}

/// The parts of a JSON report that `kvbench --replot` reads back.
#[derive(Debug, Deserialize)]
pub struct SavedReport {
    /// Per-run machine figures.
    pub run_machine: Vec<RunMachine>,
    /// Medians.
    pub summary: Vec<SummaryRow>,
}

/// The JSON file of one kvbench invocation.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `kvbench`.
    pub tool: &'static str,
    /// Seconds since the Unix epoch when it started.
    pub started_unix_secs: u64,
    /// The command line.
    pub command: Vec<String>,
    /// The durability every engine ran with.
    pub durability: &'static str,
    /// The cache budget of every engine, bytes.
    pub cache_bytes: u64,
    /// Workload parameters (`num` as for the first value size).
    pub settings: Settings,
    /// Keys per database for each value size.
    pub keys_per_value_size: Vec<(usize, u64)>,
    /// Engines, in the order of the first run.
    pub engines: Vec<EngineKind>,
    /// Value sizes.
    pub value_sizes: Vec<usize>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// The machine.
    pub machine: MachineInfo,
    /// Per-run machine figures.
    pub run_machine: Vec<RunMachine>,
    /// 1-minute load average at the end.
    pub load_average_end: f64,
    /// Every record of every run.
    pub records: Vec<Record>,
    /// Medians.
    pub summary: Vec<SummaryRow>,
}

/// The median of `v` (mean of the middle two for an even count); `None` when empty.
#[must_use]
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let upper = *v.get(mid)?;
    Some(if v.len().is_multiple_of(2) {
        (*v.get(mid - 1)? + upper) / 2.0
    } else {
        upper
    })
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Medians of `records` per engine, value size and workload, with ratios against extentdb.
#[must_use]
pub fn summarize(records: &[Record], machines: &[RunMachine]) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<(usize, Workload, EngineKind), Vec<&Record>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.value_bytes, r.workload, r.engine))
            .or_default()
            .push(r);
    }
    let disk = median(machines.iter().map(|m| m.disk_mb_per_s).collect());
    let mut rows: Vec<SummaryRow> = groups
        .into_iter()
        .map(|((value_bytes, workload, engine), rs)| {
            let each = |f: &dyn Fn(&Record) -> Option<f64>| {
                median(rs.iter().filter_map(|r| f(r)).collect())
            };
            let mb_per_sec =
                each(&|r| Some(r.outcome.logical_bytes as f64 / MB / r.outcome.seconds))
                    .unwrap_or(0.0);
            let lat = |f: &dyn Fn(&Record) -> Option<f64>| each(f);
            let latency = |busy: bool| -> Option<[f64; 3]> {
                let pick = move |r: &Record, q: usize| {
                    r.outcome.latency.map(|l| {
                        let p = if busy { l.busy } else { l.idle };
                        [p.p50_us, p.p99_us, p.p999_us]
                            .get(q)
                            .copied()
                            .unwrap_or(0.0)
                    })
                };
                Some([
                    lat(&|r| pick(r, 0))?,
                    lat(&|r| pick(r, 1))?,
                    lat(&|r| pick(r, 2))?,
                ])
            };
            SummaryRow {
                engine,
                value_bytes,
                workload,
                runs: rs.len(),
                ops_per_sec: each(&|r| Some(r.outcome.ops as f64 / r.outcome.seconds))
                    .unwrap_or(0.0),
                mb_per_sec,
                ratio_to_extentdb: None,
                write_amp: each(&|r| {
                    ratio(r.outcome.disk_write_bytes, r.outcome.logical_write_bytes)
                }),
                write_amp_with_settle: each(&|r| {
                    let settle = r.outcome.settle_disk_write_bytes?;
                    ratio(
                        r.outcome.disk_write_bytes + settle,
                        r.outcome.logical_write_bytes,
                    )
                }),
                space_amp: each(&|r| ratio(r.outcome.disk_bytes?, r.outcome.live_bytes?)),
                disk_fraction: if workload.is_fill() {
                    disk.map(|d| mb_per_sec / d)
                } else {
                    None
                },
                idle_us: latency(false),
                busy_us: latency(true),
                p99_busy_over_idle: each(&|r| {
                    r.outcome.latency.map(|l| l.busy.p99_us / l.idle.p99_us)
                }),
                read_rest_seconds: each(&|r| r.outcome.read_rest_seconds),
                sync_ms: each(&|r| r.outcome.sync_seconds.map(|s| s * 1e3)),
            }
        })
        .collect();
    let base: BTreeMap<(usize, Workload), f64> = rows
        .iter()
        .filter(|r| r.engine == EngineKind::Extentdb)
        .map(|r| ((r.value_bytes, r.workload), r.ops_per_sec))
        .collect();
    for row in &mut rows {
        row.ratio_to_extentdb = base
            .get(&(row.value_bytes, row.workload))
            .filter(|&&b| b > 0.0)
            .map(|b| row.ops_per_sec / b);
    }
    rows
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

/// A human-readable size: `100 B`, `4 KiB`, `64 KiB`.
#[must_use]
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The terminal table: one block per value size, one line per workload and engine.
#[must_use]
pub fn table(rows: &[SummaryRow], machines: &[RunMachine]) -> String {
    let mut out = String::new();
    let disk = median(machines.iter().map(|m| m.disk_mb_per_s).collect());
    let mem = median(machines.iter().map(|m| m.memcpy_gb_per_s).collect());
    let _ = writeln!(
        out,
        "machine: disk {} MB/s sequential (1 MiB writes, write-back started as written, + fdatasync), memcpy {} GB/s (medians of {} runs)",
        opt(disk, 0),
        opt(mem, 1),
        machines.len()
    );
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.value_bytes).collect();
    sizes.dedup();
    for size in sizes {
        let _ = writeln!(out, "\n== {} values ==", size_name(size));
        let _ = writeln!(
            out,
            "{:<17} {:<13} {:>12} {:>9} {:>8} {:>6} {:>6} {:>6}  notes",
            "workload", "engine", "ops/s", "MB/s", "vs edb", "w-amp", "+sett", "s-amp"
        );
        for r in rows.iter().filter(|r| r.value_bytes == size) {
            let mut notes = String::new();
            if let Some(f) = r.disk_fraction {
                let _ = write!(notes, "{:.0}% of disk", f * 100.0);
            }
            if let (Some(i), Some(b)) = (r.idle_us, r.busy_us) {
                let _ = write!(
                    notes,
                    "p50/p99/p999 us idle {:.1}/{:.1}/{:.1} busy {:.1}/{:.1}/{:.1}; p99 busy/idle {}x",
                    i[0],
                    i[1],
                    i[2],
                    b[0],
                    b[1],
                    b[2],
                    opt(r.p99_busy_over_idle, 2)
                );
            }
            let sep = |notes: &String| if notes.is_empty() { "" } else { "; " };
            if let Some(ms) = r.sync_ms {
                let _ = write!(notes, "{}sync {ms:.1} ms", sep(&notes));
            }
            if let Some(s) = r.read_rest_seconds {
                let _ = write!(notes, "{}rest read in {s:.2} s", sep(&notes));
            }
            let _ = writeln!(
                out,
                "{:<17} {:<13} {:>12.0} {:>9.1} {:>8} {:>6} {:>6} {:>6}  {}",
                r.workload.name(),
                r.engine.name(),
                r.ops_per_sec,
                r.mb_per_sec,
                opt(r.ratio_to_extentdb, 2),
                opt(r.write_amp, 2),
                opt(r.write_amp_with_settle, 2),
                opt(r.space_amp, 2),
                notes
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_and_skips_non_finite_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(size_name(100), "100 B");
        assert_eq!(size_name(4096), "4 KiB");
        assert_eq!(size_name(65536), "64 KiB");
    }
}
