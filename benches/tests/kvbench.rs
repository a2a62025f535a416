//! kvbench's own checks: every compiled-in adapter agrees with a `BTreeMap` model, the
//! workloads' verification catches an engine that returns wrong data, and the binary runs a
//! tiny configuration end to end and writes a well-formed report naming every workload.
//!
//! Peers are covered when compiled in: `cargo test -p extentdb-benches --features rust-peers
//! --test kvbench` (CI), `--features peers` with RocksDB (see `docs/benchmarks.md`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use extentdb_benches::kvbench::data::Values;
use extentdb_benches::kvbench::engine::{BatchOp, Engine, EngineConfig, EngineKind, ScanVisitor};
use extentdb_benches::kvbench::workload::{Session, Settings, Workload};
use extentdb_benches::kvbench::{Result, error};
use extentdb_benches::{Rng, key};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn config() -> EngineConfig {
    EngineConfig {
        cache_bytes: 8 << 20,
        value_bytes: 100,
        extentdb_writeback_bytes: None,
        extentdb_zero_ahead_bytes: None,
    }
}

fn value(i: u64, round: u64, long: bool) -> Vec<u8> {
    let n = if long { 3000 } else { 40 };
    (0..n).map(|j| (i * 31 + round * 7 + j) as u8).collect()
}

fn get(engine: &dyn Engine, k: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = None;
    engine.get(k, &mut |v| {
        out = Some(v.to_vec());
        Ok(())
    })?;
    Ok(out)
}

fn scan(engine: &dyn Engine, from: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let n = engine.scan(from, limit, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    if n != out.len() {
        return Err(error(format!(
            "scan reported {n} entries, visited {}",
            out.len()
        )));
    }
    Ok(out)
}

fn check_against(
    kind: EngineKind,
    engine: &dyn Engine,
    model: &Model,
    rng: &mut Rng,
) -> Result<()> {
    for i in 0..120 {
        let k = key(i);
        assert_eq!(
            get(engine, &k)?,
            model.get(k.as_slice()).cloned(),
            "{kind}: get of key {i}"
        );
    }
    let all: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scan(engine, &key(0), usize::MAX)?, all, "{kind}: full scan");
    for _ in 0..10 {
        let from = key(rng.below(120));
        let limit = usize::try_from(rng.below(15)).unwrap_or(0);
        let want: Vec<(Vec<u8>, Vec<u8>)> = model
            .range(from.to_vec()..)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            scan(engine, &from, limit)?,
            want,
            "{kind}: scan of {limit} entries"
        );
    }
    Ok(())
}

/// Drives `kind` through random operations of every kind and compares it with a model after
/// each phase, including after settling.
fn conforms(kind: EngineKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut engine = kind.open(dir.path(), &config())?;
    let mut model = Model::new();
    let mut rng = Rng(7);
    for round in 0..4u64 {
        for _ in 0..150 {
            let i = rng.below(100);
            let k = key(i).to_vec();
            match rng.below(10) {
                0..=4 => {
                    let v = value(i, round, rng.below(4) == 0);
                    engine.put(&k, &v)?;
                    model.insert(k, v);
                }
                5 | 6 => {
                    engine.delete(&k)?;
                    model.remove(&k);
                }
                7 | 8 => {
                    let keys: Vec<[u8; 16]> = (i..i + 5).map(key).collect();
                    let vals: Vec<Vec<u8>> = (i..i + 5).map(|j| value(j, round, false)).collect();
                    let mut ops = Vec::new();
                    for (j, (k, v)) in keys.iter().zip(&vals).enumerate() {
                        if j == 2 {
                            ops.push(BatchOp::Delete(k));
                            model.remove(k.as_slice());
                        } else {
                            ops.push(BatchOp::Put(k, v));
                            model.insert(k.to_vec(), v.clone());
                        }
                    }
                    engine.write_batch(&ops)?;
                }
                _ => {
                    let end = key(i + 1 + rng.below(12));
                    engine.delete_range(&k, &end)?;
                    let doomed: Vec<Vec<u8>> = model
                        .range(k.clone()..end.to_vec())
                        .map(|(k, _)| k.clone())
                        .collect();
                    for d in doomed {
                        model.remove(&d);
                    }
                }
            }
        }
        engine.sync()?;
        check_against(kind, engine.as_ref(), &model, &mut rng)?;
        engine.settle()?;
        check_against(kind, engine.as_ref(), &model, &mut rng)?;
    }
    assert!(engine.disk_bytes()? > 0, "{kind}: nothing on disk");
    engine.close()
}

#[test]
fn every_compiled_engine_agrees_with_a_model() -> Result<()> {
    for kind in EngineKind::compiled() {
        conforms(kind).map_err(|e| error(format!("{kind}: {e}")))?;
    }
    Ok(())
}

/// An engine that lies in one way, to show that the workloads notice.
struct Liar {
    inner: Box<dyn Engine>,
    lie: Lie,
}

#[derive(Clone, Copy)]
enum Lie {
    /// Flips the last byte of every value read by a get.
    FlipByte,
    /// Answers every get with the value of the key after it.
    NeighbourValue,
    /// Scans skip every 7th entry.
    SkipInScan,
    /// Deletes do nothing.
    IgnoreRangeDelete,
}

impl Engine for Liar {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)
    }

    fn get(&self, k: &[u8], visit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.lie {
            Lie::FlipByte => self.inner.get(k, &mut |v| {
                let mut v = v.to_vec();
                if let Some(b) = v.last_mut() {
                    *b ^= 1;
                }
                visit(&v)
            }),
            Lie::NeighbourValue => {
                let mut next = k.to_vec();
                if let Some(b) = next.last_mut() {
                    *b = if *b == b'0' { b'1' } else { b'0' };
                }
                self.inner.get(&next, visit)
            }
            _ => self.inner.get(k, visit),
        }
    }

    fn write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        self.inner.write_batch(ops)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.inner.delete(key)
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        match self.lie {
            Lie::IgnoreRangeDelete => Ok(()),
            _ => self.inner.delete_range(start, end),
        }
    }

    fn scan(&self, start: &[u8], limit: usize, visit: &mut ScanVisitor<'_>) -> Result<usize> {
        let Lie::SkipInScan = self.lie else {
            return self.inner.scan(start, limit, visit);
        };
        let mut n = 0;
        let mut shown = 0;
        self.inner.scan(start, limit, &mut |k, v| {
            n += 1;
            if n % 7 == 0 {
                return Ok(());
            }
            shown += 1;
            visit(k, v)
        })?;
        Ok(shown)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn settle(&mut self) -> Result<()> {
        self.inner.settle()
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.inner.close()
    }

    fn dir(&self) -> &Path {
        self.inner.dir()
    }
}

fn run_with_lie(lie: Lie, workloads: &[Workload]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let values = Values::new(100)?;
    let settings = Settings {
        num: 300,
        reads: 300,
        batch: 1,
        duration: std::time::Duration::from_millis(20),
        scan_len: 10,
        writer_bytes_per_sec: 0,
        seed: 3,
        extentdb_writeback_bytes: None,
        extentdb_zero_ahead_bytes: None,
    };
    let inner = EngineKind::Extentdb.open(dir.path(), &config())?;
    let mut session = Session::new(Box::new(Liar { inner, lie }), &values, &settings);
    for &w in workloads {
        session.run(w)?;
    }
    session.close()
}

#[test]
fn workloads_reject_an_engine_that_returns_wrong_data() -> Result<()> {
    let cases = [
        (Lie::FlipByte, Workload::Readrandom, "payload"),
        (
            Lie::NeighbourValue,
            Workload::Readrandom,
            "holds the value of key",
        ),
        (Lie::SkipInScan, Workload::Readseq, "skipped live key"),
        (Lie::SkipInScan, Workload::Seekrandom, "skipped live key"),
        (Lie::FlipByte, Workload::Readwhilewriting, "payload"),
        (
            Lie::NeighbourValue,
            Workload::YcsbC,
            "holds the value of key",
        ),
        (Lie::IgnoreRangeDelete, Workload::Deleterange, "deleted key"),
    ];
    for (lie, workload, says) in cases {
        let err = run_with_lie(lie, &[Workload::Fillrandom, workload])
            .err()
            .ok_or_else(|| error(format!("{} accepted wrong data", workload.name())))?;
        assert!(
            err.to_string().contains(says),
            "{}: error {err:?} should say {says:?}",
            workload.name()
        );
    }
    // The honest engine passes the same workloads.
    let all = <Workload as clap::ValueEnum>::value_variants();
    let dir = tempfile::tempdir()?;
    let values = Values::new(100)?;
    let settings = Settings {
        num: 300,
        reads: 300,
        batch: 4,
        duration: std::time::Duration::from_millis(20),
        scan_len: 10,
        writer_bytes_per_sec: 0,
        seed: 3,
        extentdb_writeback_bytes: None,
        extentdb_zero_ahead_bytes: None,
    };
    let mut session = Session::new(
        EngineKind::Extentdb.open(dir.path(), &config())?,
        &values,
        &settings,
    );
    for &w in all {
        session.run(w)?;
    }
    session.close()
}

fn kvbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kvbench: {e}"))
}

#[test]
fn a_tiny_run_writes_a_report_with_every_workload_of_every_engine() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let engines: Vec<&str> = EngineKind::compiled()
        .into_iter()
        .map(EngineKind::name)
        .collect();
    let engines_arg = engines.join(",");
    let dir_arg = dir.path().display().to_string();
    let out_arg = out.display().to_string();
    let output = kvbench(&[
        "--engines",
        &engines_arg,
        "--num",
        "200",
        "--runs",
        "1",
        "--value-sizes",
        "100,4k",
        "--duration",
        "30ms",
        "--disk-probe-mib",
        "1",
        "--dir",
        &dir_arg,
        "--out",
        &out_arg,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kvbench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json_path = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .ok_or_else(|| error("no JSON report"))?;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path)?)?;
    let summary = report["summary"]
        .as_array()
        .ok_or_else(|| error("no summary"))?;
    let workloads = <Workload as clap::ValueEnum>::value_variants();
    for engine in &engines {
        for size in [100, 4096] {
            for w in workloads {
                let row = summary
                    .iter()
                    .find(|r| {
                        r["engine"] == *engine
                            && r["workload"] == w.name()
                            && r["value_bytes"] == size
                    })
                    .ok_or_else(|| error(format!("no summary of {engine} {size} {}", w.name())))?;
                let ops = row["ops_per_sec"].as_f64().unwrap_or(0.0);
                assert!(ops > 0.0, "{engine} {size} {}: {ops} ops/s", w.name());
                // The workloads that end with a timed sync report it, and only they.
                let synced =
                    w.is_fill() || matches!(w, Workload::Overwrite | Workload::Deleterange);
                assert_eq!(
                    row["sync_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
                    synced,
                    "{engine} {size} {}: sync_ms {}",
                    w.name(),
                    row["sync_ms"]
                );
            }
        }
    }
    let records = report["records"].as_array().map_or(0, Vec::len);
    assert_eq!(records, engines.len() * 2 * workloads.len());
    for chart in [
        "throughput-100.svg",
        "throughput-4096.svg",
        "space-amp.svg",
        "write-amp.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(chart))?;
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}"
        );
    }
    assert!(stdout.contains("vs edb"), "no table in:\n{stdout}");
    Ok(())
}

#[test]
fn bad_flags_get_a_clear_error() {
    for (args, says) in [
        (&["--value-sizes", "8"][..], "outside"),
        (&["--value-sizes", "big"][..], "not a size"),
        (&["--duration=0s"][..], "must be above 0"),
        (&["--engines", "leveldb"][..], "invalid value"),
        (&["--num", "5"][..], "--num"),
        (
            &["--num", "100", "--data-mib", "4"][..],
            "cannot be used with",
        ),
    ] {
        let output = kvbench(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    if !EngineKind::Rocksdb.compiled_in() {
        let output = kvbench(&["--engines", "rocksdb", "--runs", "1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--features rocksdb"), "{stderr}");
    }
}

/// The extentdb-only flags reach the engine's options: an out-of-range value comes back as
/// the engine's own refusal, and an in-range one runs.
#[test]
fn extentdb_flags_reach_its_options() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir_arg = dir.path().display().to_string();
    let out_arg = dir.path().join("out").display().to_string();
    let run = |zero_ahead: &str| {
        kvbench(&[
            "--engines",
            "extentdb",
            "--workloads",
            "fillrandom",
            "--value-sizes",
            "4k",
            "--num",
            "64",
            "--runs",
            "1",
            "--disk-probe-mib",
            "1",
            "--extentdb-zero-ahead-bytes",
            zero_ahead,
            "--dir",
            &dir_arg,
            "--out",
            &out_arg,
        ])
    };
    let refused = run("1000000000");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "accepted: {stderr}");
    assert!(stderr.contains("zero_ahead_bytes"), "{stderr}");
    let ran = run("0");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    Ok(())
}
