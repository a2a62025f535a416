//! One engine's pass over the selected workloads at one value size: new databases where a fill
//! asks for one, an untimed random fill when no fill was selected, every directory removed
//! afterwards.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Result;
use super::data::Values;
use super::engine::{EngineConfig, EngineKind};
use super::workload::{Outcome, Session, Settings, Workload};

/// One workload's figures in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The repetition, from 0.
    pub run: usize,
    /// The engine's name.
    pub engine: EngineKind,
    /// The size of every value.
    pub value_bytes: usize,
    /// The workload.
    pub workload: Workload,
    /// What it measured.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What [`run_engine`] needs besides the engine.
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    /// The repetition, from 0.
    pub run: usize,
    /// Workloads, sorted in [`Workload`]'s order.
    pub workloads: &'a [Workload],
    /// Shared workload parameters.
    pub settings: &'a Settings,
    /// Cache budget of every engine, bytes.
    pub cache_bytes: u64,
    /// Where databases are made (each in its own subdirectory).
    pub dir: &'a Path,
}

/// Runs `pass.workloads` on `kind` with values of `value_bytes`; `progress` hears of each
/// record as it is made.
///
/// # Errors
/// The engine's error or a verification failure, naming the workload. The database directory
/// is left in place for inspection.
pub fn run_engine(
    kind: EngineKind,
    value_bytes: usize,
    pass: &Pass<'_>,
    progress: &mut dyn FnMut(&Record),
) -> Result<Vec<Record>> {
    let values = Values::new(value_bytes)?;
    let config = EngineConfig {
        cache_bytes: pass.cache_bytes,
        value_bytes,
        extentdb_writeback_bytes: pass.settings.extentdb_writeback_bytes,
        extentdb_zero_ahead_bytes: pass.settings.extentdb_zero_ahead_bytes,
    };
    let mut records = Vec::new();
    let mut open: Option<(Session<'_>, PathBuf)> = None;
    for (n, &workload) in pass.workloads.iter().enumerate() {
        if workload.is_fill() || open.is_none() {
            if let Some((session, dir)) = open.take() {
                finish(session, &dir)?;
            }
            let dir = pass
                .dir
                .join(format!("{kind}-{value_bytes}-run{}-{n}", pass.run));
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            let mut session = Session::new(kind.open(&dir, &config)?, &values, pass.settings);
            if !workload.is_fill() {
                session.run(Workload::Fillrandom)?;
            }
            open = Some((session, dir));
        }
        if let Some((session, _)) = open.as_mut() {
            let record = Record {
                run: pass.run,
                engine: kind,
                value_bytes,
                workload,
                outcome: session.run(workload)?,
            };
            progress(&record);
            records.push(record);
        }
    }
    if let Some((session, dir)) = open.take() {
        finish(session, &dir)?;
    }
    Ok(records)
}

fn finish(session: Session<'_>, dir: &Path) -> Result<()> {
    session.close()?;
    fs::remove_dir_all(dir)?;
    Ok(())
}
