//! The workloads, named as db_bench and YCSB name them, and what each measures.
//!
//! A [`Session`] is one open engine with the [`Expected`] state of its keys. Every workload
//! checks everything it reads against that state (value bytes, generation, presence, scan
//! order and count): a wrong answer ends the run with an error naming the key.
//!
//! Writing workloads end with one [`Engine::sync`] inside the timed window. Their disk writes are
//! the delta of `/proc/self/io`'s `write_bytes` over that window, so they include what the
//! engine's background threads wrote meanwhile, but not compaction work left after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::data::{Expected, Values, parse_key};
use super::engine::{BatchOp, Engine};
use super::machine::written_bytes;
use super::zipf::{YCSB_THETA, Zipfian};
use super::{Result, error};
use crate::{Rng, key, shuffled};

/// Bytes of every key.
pub const KEY_BYTES: usize = 16;

/// Untimed random gets before `readrandom`'s timed ones, at most.
const WARM_GETS_MAX: u64 = 100_000;

/// The fewest timed gets of `readrandom` by default: with large values the key count alone
/// (1 024 keys in 64 MiB of 64 KiB values) makes a timed phase of a few milliseconds.
pub const READS_MIN: u64 = 100_000;

/// The longest scan of YCSB workload E (YCSB's default `maxscanlength`).
const YCSB_SCAN_MAX: u64 = 100;

/// A workload. Selected workloads run in this order on one database per engine and value size;
/// each fill starts a new database.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Puts of every key in key order into a new database; space measured, then settled
    /// (untimed) so the compaction the fill owes counts in its write amplification.
    Fillseq,
    /// Puts of every key in random order into a new database; space measured, then settled.
    Fillrandom,
    /// Every key written again, in a new random order; then settled (untimed) for space.
    Overwrite,
    /// `--reads` random gets of existing keys (by default the key count, at least 100 000),
    /// after an untimed warm-up of as many, up to 100 000.
    Readrandom,
    /// One scan of the whole database in key order.
    Readseq,
    /// Seeks to a random key, each followed by `--scan-len` entries.
    Seekrandom,
    /// One reader's get latency alone, then with one writer overwriting random keys.
    Readwhilewriting,
    /// YCSB A: 50% reads, 50% updates, scrambled Zipfian keys.
    YcsbA,
    /// YCSB B: 95% reads, 5% updates.
    YcsbB,
    /// YCSB C: reads only.
    YcsbC,
    /// YCSB F: 50% reads, 50% read-modify-writes.
    YcsbF,
    /// YCSB D: 95% reads of recently inserted keys, 5% inserts.
    YcsbD,
    /// YCSB E: 95% short scans (1 to 100 entries), 5% inserts.
    YcsbE,
    /// A tenth of the key space range-deleted (with a sync), settled, then the rest read.
    Deleterange,
}

impl Workload {
    /// The name used on the command line and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fillseq => "fillseq",
            Workload::Fillrandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::Readrandom => "readrandom",
            Workload::Readseq => "readseq",
            Workload::Seekrandom => "seekrandom",
            Workload::Readwhilewriting => "readwhilewriting",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbF => "ycsb-f",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::Deleterange => "deleterange",
        }
    }

    /// Whether this workload starts a new database.
    #[must_use]
    pub fn is_fill(self) -> bool {
        matches!(self, Workload::Fillseq | Workload::Fillrandom)
    }
}

/// Parameters shared by every workload of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Keys filled (`--num`); also the operation count of random workloads but `readrandom`.
    pub num: u64,
    /// Timed gets of `readrandom` (`--reads`).
    pub reads: u64,
    /// Puts per write batch in fills and overwrite (`--batch`); 1 means single puts.
    pub batch: usize,
    /// Length of each phase of `readwhilewriting` (`--duration`).
    pub duration: Duration,
    /// Entries read after each seek of `seekrandom` (`--scan-len`).
    pub scan_len: u64,
    /// The writer's pace in `readwhilewriting`, bytes per second; 0 for flat out.
    pub writer_bytes_per_sec: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// extentdb's `Options::writeback_bytes` (`--extentdb-writeback-bytes`); `None` for its
    /// default.
    pub extentdb_writeback_bytes: Option<u64>,
    /// extentdb's `Options::zero_ahead_bytes` (`--extentdb-zero-ahead-bytes`); `None` for its
    /// default.
    pub extentdb_zero_ahead_bytes: Option<u64>,
}

/// Percentiles of a latency sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Operations in the sample.
    pub ops: u64,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
}

impl Percentiles {
    /// The percentiles of `nanos` (sorted in place).
    #[must_use]
    pub fn of(nanos: &mut [u64]) -> Self {
        nanos.sort_unstable();
        let at = |q: f64| {
            let i = ((nanos.len() as f64 * q) as usize).min(nanos.len().saturating_sub(1));
            nanos.get(i).map_or(0.0, |&n| n as f64 / 1e3)
        };
        Self {
            ops: nanos.len() as u64,
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
        }
    }
}

/// `readwhilewriting`'s figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReaderLatency {
    /// The reader alone.
    pub idle: Percentiles,
    /// The reader while the writer runs.
    pub busy: Percentiles,
    /// Puts the writer made.
    pub writer_ops: u64,
}

/// What one workload measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Operations timed (gets, puts, entries scanned, keys deleted...).
    pub ops: u64,
    /// Seconds of the timed window.
    pub seconds: f64,
    /// Key and value bytes the operations read or wrote.
    pub logical_bytes: u64,
    /// Key and value bytes the operations wrote (0 for read-only workloads).
    pub logical_write_bytes: u64,
    /// `write_bytes` of `/proc/self/io` over the timed window.
    pub disk_write_bytes: u64,
    /// Seconds of the untimed settling after the workload, when it settles.
    pub settle_seconds: Option<f64>,
    /// `write_bytes` over the settling.
    pub settle_disk_write_bytes: Option<u64>,
    /// Bytes on disk at the end: for fills before settling, for overwrite and deleterange
    /// after it.
    pub disk_bytes: Option<u64>,
    /// Key and value bytes of the live keys at the end.
    pub live_bytes: Option<u64>,
    /// `deleterange`: seconds to read (and check) the keys left.
    pub read_rest_seconds: Option<f64>,
    /// Writing workloads: seconds of the one sync that ends the timed window (part of
    /// `seconds`), which writes whatever the engine left unwritten.
    pub sync_seconds: Option<f64>,
    /// `readwhilewriting`'s latencies.
    pub latency: Option<ReaderLatency>,
}

/// One open engine and the state of its keys.
pub struct Session<'a> {
    engine: Box<dyn Engine>,
    values: &'a Values,
    settings: &'a Settings,
    expected: Expected,
    rng: Rng,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dir", &self.engine.dir())
            .field("live", &self.expected.live())
            .finish_non_exhaustive()
    }
}

impl<'a> Session<'a> {
    /// A session on a new, empty `engine`.
    #[must_use]
    pub fn new(engine: Box<dyn Engine>, values: &'a Values, settings: &'a Settings) -> Self {
        Self {
            engine,
            values,
            settings,
            expected: Expected::empty(settings.num),
            rng: Rng(settings.seed),
            buf: Vec::new(),
        }
    }

    /// Closes the engine.
    ///
    /// # Errors
    /// The engine's error.
    pub fn close(self) -> Result<()> {
        self.engine.close()
    }

    /// Runs `workload` and returns what it measured.
    ///
    /// # Errors
    /// The engine's error, or a value, key or count that differs from what was written.
    pub fn run(&mut self, workload: Workload) -> Result<Outcome> {
        let result = match workload {
            Workload::Fillseq => self.fill((0..self.settings.num).collect()),
            Workload::Fillrandom => {
                let order = shuffled(self.settings.num, &mut self.rng);
                self.fill(order)
            }
            Workload::Overwrite => self.overwrite(),
            Workload::Readrandom => self.read_random(),
            Workload::Readseq => self.read_seq(),
            Workload::Seekrandom => self.seek_random(),
            Workload::Readwhilewriting => self.read_while_writing(),
            Workload::YcsbA
            | Workload::YcsbB
            | Workload::YcsbC
            | Workload::YcsbD
            | Workload::YcsbE
            | Workload::YcsbF => self.ycsb(workload),
            Workload::Deleterange => self.delete_range(),
        };
        result.map_err(|e| error(format!("{}: {e}", workload.name())))
    }

    fn entry_bytes(&self) -> u64 {
        (KEY_BYTES + self.values.value_bytes()) as u64
    }

    /// Writes the keys of `order`, each at its next generation, in batches of `--batch`.
    fn write_keys(&mut self, order: &[u64]) -> Result<()> {
        let batch = self.settings.batch.max(1);
        if batch == 1 {
            for &i in order {
                let g = self.expected.next_generation(i);
                self.values.make(i, g, &mut self.buf);
                self.engine.put(&key(i), &self.buf)?;
                self.expected.set(i, g);
            }
            return Ok(());
        }
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); batch];
        for chunk in order.chunks(batch) {
            let keys: Vec<[u8; KEY_BYTES]> = chunk.iter().map(|&i| key(i)).collect();
            for (&i, buf) in chunk.iter().zip(bufs.iter_mut()) {
                self.values.make(i, self.expected.next_generation(i), buf);
            }
            let ops: Vec<BatchOp<'_>> = keys
                .iter()
                .zip(&bufs)
                .map(|(k, v)| BatchOp::Put(k, v))
                .collect();
            self.engine.write_batch(&ops)?;
            for &i in chunk {
                let g = self.expected.next_generation(i);
                self.expected.set(i, g);
            }
        }
        Ok(())
    }

    /// Runs `f` timed, with the disk bytes written meanwhile.
    fn timed(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<(f64, u64)> {
        let before = written_bytes()?;
        let start = Instant::now();
        f(self)?;
        let seconds = start.elapsed().as_secs_f64();
        Ok((seconds, written_bytes()?.saturating_sub(before)))
    }

    /// Syncs the engine: its seconds.
    fn timed_sync(&mut self) -> Result<f64> {
        let start = Instant::now();
        self.engine.sync()?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// Settles the engine (untimed in the workload's figures): seconds and disk bytes written.
    fn settle(&mut self) -> Result<(f64, u64)> {
        self.timed(|s| s.engine.settle())
    }

    fn live_bytes(&self) -> u64 {
        self.expected.live() * self.entry_bytes()
    }

    fn fill(&mut self, order: Vec<u64>) -> Result<Outcome> {
        let mut sync_seconds = 0.0;
        let (seconds, written) = self.timed(|s| {
            s.write_keys(&order)?;
            sync_seconds = s.timed_sync()?;
            Ok(())
        })?;
        let disk_bytes = self.engine.disk_bytes()?;
        let (settle_seconds, settle_written) = self.settle()?;
        let bytes = order.len() as u64 * self.entry_bytes();
        Ok(Outcome {
            ops: order.len() as u64,
            seconds,
            logical_bytes: bytes,
            logical_write_bytes: bytes,
            disk_write_bytes: written,
            settle_seconds: Some(settle_seconds),
            settle_disk_write_bytes: Some(settle_written),
            disk_bytes: Some(disk_bytes),
            live_bytes: Some(self.live_bytes()),
            sync_seconds: Some(sync_seconds),
            ..Outcome::default()
        })
    }

    fn overwrite(&mut self) -> Result<Outcome> {
        let order = shuffled(self.expected.keys(), &mut self.rng);
        let mut sync_seconds = 0.0;
        let (seconds, written) = self.timed(|s| {
            s.write_keys(&order)?;
            sync_seconds = s.timed_sync()?;
            Ok(())
        })?;
        let (settle_seconds, settle_written) = self.settle()?;
        let bytes = order.len() as u64 * self.entry_bytes();
        Ok(Outcome {
            ops: order.len() as u64,
            seconds,
            logical_bytes: bytes,
            logical_write_bytes: bytes,
            disk_write_bytes: written,
            settle_seconds: Some(settle_seconds),
            settle_disk_write_bytes: Some(settle_written),
            disk_bytes: Some(self.engine.disk_bytes()?),
            live_bytes: Some(self.live_bytes()),
            sync_seconds: Some(sync_seconds),
            ..Outcome::default()
        })
    }

    /// Gets `index` and checks the answer against the expected state.
    fn get_checked(&self, index: u64) -> Result<()> {
        let want = self.expected.generation(index);
        let values = self.values;
        let found = self.engine.get(&key(index), &mut |v| {
            values.check(index, want, v).map(|_| ())
        })?;
        match (found, want) {
            (true, None) => Err(error(format!("key {index} was deleted but is found"))),
            (false, Some(_)) => Err(error(format!("key {index} was written but is missing"))),
            _ => Ok(()),
        }
    }

    fn read_random(&mut self) -> Result<Outcome> {
        let n = self.expected.keys();
        let ops = self.settings.reads;
        for _ in 0..ops.min(WARM_GETS_MAX) {
            let i = self.rng.below(n);
            self.get_checked(i)?;
        }
        let (seconds, _) = self.timed(|s| {
            for _ in 0..ops {
                let i = s.rng.below(n);
                s.get_checked(i)?;
            }
            Ok(())
        })?;
        Ok(Outcome {
            ops,
            seconds,
            logical_bytes: ops * self.entry_bytes(),
            ..Outcome::default()
        })
    }

    /// Scans up to `limit` entries from `from` and checks them: ascending, each one live at
    /// its expected generation, and no live key skipped. Returns the entries seen.
    fn scan_checked(&self, from: u64, limit: u64) -> Result<u64> {
        let mut next = from;
        let values = self.values;
        let expected = &self.expected;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let seen = self.engine.scan(&key(from), limit, &mut |k, v| {
            let index = parse_key(k)?;
            while next < index {
                if expected.generation(next).is_some() {
                    return Err(error(format!("scan skipped live key {next}")));
                }
                next += 1;
            }
            if index < next {
                return Err(error(format!("scan returned key {index} out of order")));
            }
            let want = expected
                .generation(index)
                .ok_or_else(|| error(format!("scan returned deleted key {index}")))?;
            values.check(index, Some(want), v)?;
            next = index + 1;
            Ok(())
        })?;
        let seen = seen as u64;
        if seen < limit as u64 {
            // The scan ended early: nothing live may remain after the last key it returned.
            if let Some(missed) =
                (next..expected.keys()).find(|&i| expected.generation(i).is_some())
            {
                return Err(error(format!(
                    "scan from key {from} ended after {seen} entries but key {missed} is live"
                )));
            }
        }
        Ok(seen)
    }

    fn read_seq(&mut self) -> Result<Outcome> {
        let mut seen = 0;
        let (seconds, _) = self.timed(|s| {
            seen = s.scan_checked(0, u64::MAX)?;
            Ok(())
        })?;
        if seen != self.expected.live() {
            return Err(error(format!(
                "scanned {seen} entries, {} are live",
                self.expected.live()
            )));
        }
        Ok(Outcome {
            ops: seen,
            seconds,
            logical_bytes: seen * self.entry_bytes(),
            ..Outcome::default()
        })
    }

    fn seek_random(&mut self) -> Result<Outcome> {
        let len = self.settings.scan_len.max(1);
        let seeks = (self.settings.num / len).max(1);
        let n = self.expected.keys();
        let mut entries = 0;
        let (seconds, _) = self.timed(|s| {
            for _ in 0..seeks {
                let from = s.rng.below(n);
                entries += s.scan_checked(from, len)?;
            }
            Ok(())
        })?;
        Ok(Outcome {
            ops: seeks,
            seconds,
            logical_bytes: entries * self.entry_bytes(),
            ..Outcome::default()
        })
    }

    /// One reader for `--duration` alone, then as long again with a writer beside it.
    fn read_while_writing(&mut self) -> Result<Outcome> {
        let duration = self.settings.duration;
        let mut reader_rng = Rng(self.settings.seed ^ 0x7265_6164);
        // Warmed as `readrandom` is: the busy phase follows the idle one and finds the caches
        // it filled, so an idle phase starting cold would have its p99 raised by misses the
        // busy phase never pays, and the ratio of the two lowered by them.
        let n = self.expected.keys();
        for _ in 0..n.min(WARM_GETS_MAX) {
            self.get_checked(reader_rng.below(n))?;
        }
        let idle = Percentiles::of(&mut self.reader(duration, &mut reader_rng)?);
        let stop = AtomicBool::new(false);
        let before = written_bytes()?;
        let start = Instant::now();
        let this: &Self = self;
        let (mut busy_nanos, written) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| this.writer(&stop));
            let read = this.reader(duration, &mut reader_rng);
            stop.store(true, Ordering::Relaxed);
            let written = writer
                .join()
                .map_err(|_| error("the writer thread panicked"))?;
            Ok::<_, super::Error>((read?, written?))
        })?;
        let seconds = start.elapsed().as_secs_f64();
        for &(i, g) in &written {
            self.expected.set(i, g);
        }
        self.engine.sync()?;
        let disk_written = written_bytes()?.saturating_sub(before);
        let busy = Percentiles::of(&mut busy_nanos);
        let writes = written.len() as u64;
        Ok(Outcome {
            ops: busy.ops,
            seconds,
            logical_bytes: busy.ops * self.entry_bytes(),
            logical_write_bytes: writes * self.entry_bytes(),
            disk_write_bytes: disk_written,
            latency: Some(ReaderLatency {
                idle,
                busy,
                writer_ops: writes,
            }),
            ..Outcome::default()
        })
    }

    /// Random gets for `duration`; each get's latency in nanoseconds. The writer may overwrite
    /// any key meanwhile, so a value is checked against its key but any generation is accepted.
    fn reader(&self, duration: Duration, rng: &mut Rng) -> Result<Vec<u64>> {
        let n = self.expected.keys();
        let values = self.values;
        let mut nanos = Vec::new();
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let i = rng.below(n);
            let start = Instant::now();
            let found = self
                .engine
                .get(&key(i), &mut |v| values.check(i, None, v).map(|_| ()))?;
            nanos.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if found != self.expected.generation(i).is_some() {
                return Err(error(format!(
                    "key {i}: found is {found}, expected the opposite"
                )));
            }
        }
        Ok(nanos)
    }

    /// Overwrites random live keys until `stop`, paced to `--writer-mib-per-sec`; returns the
    /// (key, generation) pairs written.
    fn writer(&self, stop: &AtomicBool) -> Result<Vec<(u64, u32)>> {
        let mut rng = Rng(self.settings.seed ^ 0x7772_6974);
        let n = self.expected.keys();
        let rate = self.settings.writer_bytes_per_sec;
        let mut buf = Vec::new();
        let mut written = Vec::new();
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let i = rng.below(n);
            let Some(g) = self.expected.generation(i) else {
                continue;
            };
            let g = g.wrapping_add(1);
            self.values.make(i, g, &mut buf);
            self.engine.put(&key(i), &buf)?;
            written.push((i, g));
            if rate > 0 {
                let due = (written.len() as u64 * self.entry_bytes()) as f64 / rate as f64;
                let ahead = due - start.elapsed().as_secs_f64();
                if ahead > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(ahead));
                }
            }
        }
        Ok(written)
    }

    /// YCSB workloads A-F, `--num` operations each, keys from a scrambled Zipfian over the
    /// filled keys (D: skewed to the latest insert).
    fn ycsb(&mut self, workload: Workload) -> Result<Outcome> {
        let zipf = Zipfian::new(self.settings.num, YCSB_THETA);
        let ops = self.settings.num;
        let mut logical = 0;
        let mut logical_writes = 0;
        let entry = self.entry_bytes();
        let (seconds, written) = self.timed(|s| {
            for _ in 0..ops {
                let roll = s.rng.below(100);
                let keys = s.expected.keys();
                let pick = zipf.next_scrambled(&mut s.rng, keys);
                match (workload, roll) {
                    (Workload::YcsbA, 0..50) | (Workload::YcsbB, 0..95) | (Workload::YcsbC, _) => {
                        s.get_checked(pick)?;
                        logical += entry;
                    }
                    (Workload::YcsbA | Workload::YcsbB, _) => {
                        s.write_keys(&[pick])?;
                        logical_writes += entry;
                    }
                    (Workload::YcsbF, 0..50) => {
                        s.get_checked(pick)?;
                        logical += entry;
                    }
                    (Workload::YcsbF, _) => {
                        s.get_checked(pick)?;
                        s.write_keys(&[pick])?;
                        logical += entry;
                        logical_writes += entry;
                    }
                    (Workload::YcsbD, 0..95) => {
                        let latest = keys - 1 - zipf.next(&mut s.rng).min(keys - 1);
                        s.get_checked(latest)?;
                        logical += entry;
                    }
                    (Workload::YcsbE, 0..95) => {
                        let len = 1 + s.rng.below(YCSB_SCAN_MAX);
                        logical += s.scan_checked(pick, len)? * entry;
                    }
                    (Workload::YcsbD | Workload::YcsbE, _) => {
                        s.write_keys(&[keys])?;
                        logical_writes += entry;
                    }
                    _ => return Err(error("not a YCSB workload")),
                }
            }
            s.engine.sync()
        })?;
        Ok(Outcome {
            ops,
            seconds,
            logical_bytes: logical + logical_writes,
            logical_write_bytes: logical_writes,
            disk_write_bytes: written,
            ..Outcome::default()
        })
    }

    /// Range-deletes a tenth of the filled keys (from the 45% mark), syncs (timed), settles,
    /// measures space, then reads and checks every key left (timed apart).
    fn delete_range(&mut self) -> Result<Outcome> {
        let num = self.settings.num;
        let from = num / 2 - num / 20;
        let to = from + (num / 10).max(1);
        let live_before = self.expected.live();
        let mut sync_seconds = 0.0;
        let (seconds, written) = self.timed(|s| {
            s.engine.delete_range(&key(from), &key(to))?;
            sync_seconds = s.timed_sync()?;
            Ok(())
        })?;
        for i in from..to {
            self.expected.delete(i);
        }
        let deleted = live_before - self.expected.live();
        let (settle_seconds, settle_written) = self.settle()?;
        let disk_bytes = self.engine.disk_bytes()?;
        let read = Instant::now();
        let seen = self.scan_checked(0, u64::MAX)?;
        let read_rest_seconds = read.elapsed().as_secs_f64();
        if seen != self.expected.live() {
            return Err(error(format!(
                "scanned {seen} entries after the range delete, {} are live",
                self.expected.live()
            )));
        }
        Ok(Outcome {
            ops: deleted,
            seconds,
            disk_write_bytes: written,
            settle_seconds: Some(settle_seconds),
            settle_disk_write_bytes: Some(settle_written),
            disk_bytes: Some(disk_bytes),
            live_bytes: Some(self.live_bytes()),
            read_rest_seconds: Some(read_rest_seconds),
            sync_seconds: Some(sync_seconds),
            ..Outcome::default()
        })
    }
}
