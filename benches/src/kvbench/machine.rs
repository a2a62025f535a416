//! The machine's limits, measured in the same run as the engines, and the process's I/O
//! counters that write amplification is computed from.
//!
//! - Disk: [`disk_write_mb_per_s`] writes a file in the benchmark directory in 1 MiB `write`s
//!   and `fdatasync`s it once at the end, inside the timed window; the file is then removed.
//! - Memory: [`memcpy_gb_per_s`] copies a 64 MiB buffer into another, repeatedly.
//! - [`written_bytes`] reads `write_bytes` of `/proc/self/io`: bytes this process caused to be
//!   sent to storage, counted when a page cache page is dirtied (or a direct write issued), by
//!   any of its threads, so engines' background threads count too.

use std::fs;
use std::path::Path;
use std::time::Instant;

use extentdb::fs::{FileSystem, RealFs};
use serde::Serialize;

use super::{Result, error};

/// Bytes per MB (decimal), as throughput is reported.
pub const MB: f64 = 1e6;

/// The machine as the run found it.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// Logical CPUs (`available_parallelism`).
    pub cpus: usize,
    /// `uname -r`, from `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub memory_bytes: u64,
}

impl MachineInfo {
    /// Reads what `/proc` says about this machine.
    #[must_use]
    pub fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
                .unwrap_or_default(),
            memory_bytes: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024),
        }
    }
}

/// The 1-minute load average, from `/proc/loadavg` (0 when unreadable).
#[must_use]
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}

/// `write_bytes` of `/proc/self/io`.
///
/// # Errors
/// The file is unreadable or has no such line (a kernel without task I/O accounting).
pub fn written_bytes() -> Result<u64> {
    let io = fs::read_to_string("/proc/self/io")?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| error("/proc/self/io has no write_bytes line"))
}

/// Sequential write bandwidth of the disk under `dir`: `mib` MiB in 1 MiB writes, the
/// write-back of each started as soon as it is written (`sync_file_range`), then one
/// `fdatasync`, timed together; in MB/s. Started write-back keeps the disk busy while the next
/// MiB is copied, which is how an engine that starts it (extentdb, RocksDB with
/// `bytes_per_sync`) writes: without it the copies and the disk's writes take turns, and the
/// probe would read about a third low on this machine.
///
/// # Errors
/// An I/O error writing, syncing or removing the file.
pub fn disk_write_mb_per_s(dir: &Path, mib: u64) -> Result<f64> {
    let path = dir.join("kvbench-disk-probe");
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // The engine's own file: its `start_writeback` is the call the engine makes.
    let mut file = RealFs.create(&path)?;
    let start = Instant::now();
    for i in 0..mib {
        file.append(&chunk)?;
        file.flush()?;
        file.start_writeback(i << 20, 1 << 20)?;
    }
    file.sync()?;
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    fs::remove_file(&path)?;
    Ok((mib << 20) as f64 / MB / secs)
}

/// Memory copy bandwidth: a 64 MiB buffer copied into another 16 times; in GB/s (bytes copied,
/// not bytes moved: a copy reads and writes each byte).
#[must_use]
pub fn memcpy_gb_per_s() -> f64 {
    const BYTES: usize = 64 << 20;
    const ROUNDS: usize = 16;
    let src = vec![0x5au8; BYTES];
    let mut dst = vec![0u8; BYTES];
    dst.copy_from_slice(&src);
    let start = Instant::now();
    for round in 0..ROUNDS {
        dst.copy_from_slice(&src);
        std::hint::black_box(dst.get(round));
    }
    (BYTES * ROUNDS) as f64 / 1e9 / start.elapsed().as_secs_f64()
}
