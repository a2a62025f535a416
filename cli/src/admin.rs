//! Maintenance commands: `stats`, `verify`, `compact`, `flush` and `checkpoint`, and the size
//! and table
//! formatting they share with `kv demo`.
//!
//! Counters in `stats` (writes, flushes, cache hits...) count since the database was opened,
//! which for a `kv` command is just now: the sizes and levels are the interesting part.

use std::io::{IsTerminal, Write};
use std::path::Path;

use std::path::PathBuf;

use clap::Args;
use extentdb::{Stats, VerifyPhase};
use indicatif::{ProgressBar, ProgressStyle};

use crate::outcome::{self, Access, Failure};

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The new directory to write the copy into (must not exist).
    dest: PathBuf,
}

/// `kv stats [--json]`: sizes in KiB/MiB as text, exact byte counts in JSON.
///
/// # Errors
/// `Engine` if the database cannot be opened.
pub fn stats(dir: &Path, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::ReadOnly)?;
    let stats = db.stats();
    if json {
        writeln!(out, "{}", stats_json(&stats))?;
    } else {
        write_stats_table(&stats, out)?;
    }
    Ok(())
}

/// `kv verify [--json]`: prints what was checked; corruption is a `Corruption` failure (exit
/// code 3).
///
/// # Errors
/// `Corruption` with the engine's description of the damage.
pub fn verify(dir: &Path, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::ReadOnly)?;
    let bar = verify_progress_bar();
    let report = db.verify_with_progress(|p| {
        let phase = match p.phase {
            VerifyPhase::Tables => "tables",
            _ => "values",
        };
        if bar.message() != phase {
            bar.set_message(phase);
            bar.set_position(0);
        }
        bar.set_length(p.total_bytes);
        bar.set_position(p.done_bytes);
    });
    bar.finish_and_clear();
    let report = report?;
    if json {
        writeln!(
            out,
            "{{\"ok\":true,\"tables\":{},\"entries\":{},\"bytes\":{},\"live_values\":{},\"live_value_bytes\":{},\"value_unaccounted_bytes\":{}}}",
            report.tables,
            report.entries,
            report.bytes,
            report.live_values,
            report.live_value_bytes,
            report
                .value_unaccounted_bytes
                .map_or_else(|| "null".to_string(), |b| b.to_string())
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "ok: {} tables, {} entries, {} verified",
        report.tables,
        report.entries,
        human_bytes(report.bytes)
    )?;
    Ok(())
}

/// A progress bar on stderr for `verify`: bytes read of the current phase, with its rate and
/// ETA; hidden when stderr is not a terminal.
fn verify_progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "verifying {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message("tables");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// `kv compact`.
///
/// # Errors
/// `Engine` if the compaction fails.
pub fn compact(dir: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::Existing)?;
    db.compact()?;
    let s = db.stats();
    writeln!(out, "compacted: {}", tables_summary(&s))?;
    writeln!(
        out,
        "value files: {} live in {} files, {} on disk; {} reclaimed, {} copied",
        human_bytes(s.value_live_bytes),
        s.value_files,
        disk_bytes(s.value_disk_bytes),
        human_bytes(s.value_reclaimed_bytes),
        human_bytes(s.value_gc_written_bytes)
    )?;
    Ok(())
}

/// `kv flush`.
///
/// # Errors
/// `Engine` if the flush fails.
pub fn flush(dir: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::Existing)?;
    db.flush()?;
    writeln!(out, "flushed: {}", tables_summary(&db.stats()))?;
    Ok(())
}

/// `kv checkpoint DEST`: a consistent copy of the database in the new directory DEST.
///
/// # Errors
/// `Engine` if DEST exists or the copy fails.
pub fn checkpoint(dir: &Path, args: &CheckpointArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::Existing)?;
    db.checkpoint(&args.dest)?;
    writeln!(out, "checkpoint written to {}", args.dest.display())?;
    Ok(())
}

/// "N tables, SIZE in levels L0 L1" (non-empty levels only).
pub fn tables_summary(stats: &Stats) -> String {
    let tables: usize = stats.levels.iter().map(|l| l.tables).sum();
    let levels: Vec<String> = stats
        .levels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.tables > 0)
        .map(|(i, _)| format!("L{i}"))
        .collect();
    let levels = if levels.is_empty() {
        "no level".to_string()
    } else {
        format!("level {}", levels.join(" "))
    };
    format!(
        "{tables} tables, {} in {levels}",
        human_bytes(stats.table_bytes)
    )
}

/// The fraction of block reads served by the cache, as "97.5%", or "n/a" before any read.
pub fn cache_hit_rate(stats: &Stats) -> String {
    let total = stats.block_cache_hits + stats.block_cache_misses;
    if total == 0 {
        return "n/a".into();
    }
    // Counts stay far below 2^52, where f64 is exact.
    #[expect(clippy::cast_precision_loss, reason = "a percentage for display")]
    let rate = stats.block_cache_hits as f64 * 100.0 / total as f64;
    format!("{rate:.1}%")
}

/// [`human_bytes`] of bytes on disk, or "unknown" when the file system could not say.
pub fn disk_bytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unknown".to_string(), human_bytes)
}

/// Sizes in binary units: "512 B", "1.5 KiB", "3.2 MiB", "1.0 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[expect(clippy::cast_precision_loss, reason = "a size for display")]
    let mut size = bytes as f64 / 1024.0;
    let mut unit = "KiB";
    for next in UNITS.iter().skip(1) {
        if size < 1024.0 {
            break;
        }
        size /= 1024.0;
        unit = next;
    }
    format!("{size:.1} {unit}")
}

/// Prints the level table: one row per level, and a total.
pub fn write_levels(stats: &Stats, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "  {:<6} {:>7} {:>12}", "level", "tables", "size")?;
    for (i, level) in stats.levels.iter().enumerate() {
        writeln!(
            out,
            "  {:<6} {:>7} {:>12}",
            format!("L{i}"),
            level.tables,
            human_bytes(level.size_bytes)
        )?;
    }
    let tables: usize = stats.levels.iter().map(|l| l.tables).sum();
    writeln!(
        out,
        "  {:<6} {:>7} {:>12}",
        "total",
        tables,
        human_bytes(stats.table_bytes)
    )
}

fn write_stats_table(s: &Stats, out: &mut dyn Write) -> std::io::Result<()> {
    let rows = [
        ("last sequence", s.last_sequence.to_string()),
        (
            "memtable",
            format!(
                "{} ({} frozen)",
                human_bytes(s.memtable_bytes),
                s.immutable_memtables
            ),
        ),
        ("tables", tables_summary(s)),
        ("snapshots", s.snapshots.to_string()),
        (
            "writes",
            format!("{} in {} groups", s.writes, s.write_groups),
        ),
        (
            "wal",
            format!(
                "{} written, {} syncs",
                human_bytes(s.wal_bytes),
                s.wal_syncs
            ),
        ),
        (
            "flushes",
            format!("{} ({})", s.flushes, human_bytes(s.flush_bytes)),
        ),
        (
            "compactions",
            format!(
                "{} (+{} trivial moves), read {}, wrote {}",
                s.compactions,
                s.trivial_moves,
                human_bytes(s.compaction_read_bytes),
                human_bytes(s.compaction_write_bytes)
            ),
        ),
        ("write stalls", s.write_stalls.to_string()),
        (
            "value files",
            format!(
                "{} files, {} live, {} dead, {} on disk ({} space amplification)",
                s.value_files,
                human_bytes(s.value_live_bytes),
                human_bytes(s.value_dead_bytes),
                disk_bytes(s.value_disk_bytes),
                s.value_space_amplification()
                    .map_or_else(|| "-".to_string(), |a| format!("{a:.2}x"))
            ),
        ),
        (
            "value blocks",
            format!(
                "{} mapped, {} free ({} not yet punched), {} pending, of {} (blocks){}",
                s.value_mapped_blocks,
                s.value_free_blocks,
                s.value_unpunched_blocks,
                s.value_pending_blocks,
                s.value_store_blocks,
                if s.value_punch_unsupported {
                    "; this file system cannot punch holes: freed space is reused, not returned"
                } else {
                    ""
                }
            ),
        ),
        (
            "value gc",
            format!(
                "{} reclaimed, {} copied ({} write amplification), {} files deleted, \
                 {} evacuated values, {} relocations",
                human_bytes(s.value_reclaimed_bytes),
                human_bytes(s.value_gc_written_bytes),
                s.value_gc_write_amplification()
                    .map_or_else(|| "-".to_string(), |a| format!("{a:.2}")),
                s.value_files_deleted,
                s.value_evacuations,
                s.value_relocations
            ),
        ),
        (
            "buffer pool",
            format!(
                "{} hits, {} misses, {} resident, {} in free buffers ({} fills reused one)",
                s.pool_hits,
                s.pool_misses,
                human_bytes(s.pool_resident_bytes),
                human_bytes(s.pool_free_bytes),
                s.pool_recycled_fills
            ),
        ),
        (
            "block cache",
            format!(
                "{} hits, {} misses ({} hit rate)",
                s.block_cache_hits,
                s.block_cache_misses,
                cache_hit_rate(s)
            ),
        ),
    ];
    for (name, value) in rows {
        writeln!(out, "{name:<14} {value}")?;
    }
    writeln!(out, "(counters since this open)")?;
    writeln!(out)?;
    write_levels(s, out)
}

/// Every field as one JSON object. Hand-written: the fields are numbers, so no string needs
/// escaping and no JSON library is needed.
fn stats_json(s: &Stats) -> String {
    let levels: Vec<String> = s
        .levels
        .iter()
        .map(|l| {
            format!(
                "{{\"tables\":{},\"size_bytes\":{}}}",
                l.tables, l.size_bytes
            )
        })
        .collect();
    let fields = [
        ("last_sequence", s.last_sequence.to_string()),
        ("memtable_bytes", s.memtable_bytes.to_string()),
        ("immutable_memtables", s.immutable_memtables.to_string()),
        ("levels", format!("[{}]", levels.join(","))),
        ("table_bytes", s.table_bytes.to_string()),
        ("snapshots", s.snapshots.to_string()),
        ("writes", s.writes.to_string()),
        ("write_groups", s.write_groups.to_string()),
        ("wal_bytes", s.wal_bytes.to_string()),
        ("wal_syncs", s.wal_syncs.to_string()),
        ("write_stalls", s.write_stalls.to_string()),
        ("flushes", s.flushes.to_string()),
        ("flush_bytes", s.flush_bytes.to_string()),
        ("compactions", s.compactions.to_string()),
        ("trivial_moves", s.trivial_moves.to_string()),
        ("compaction_read_bytes", s.compaction_read_bytes.to_string()),
        (
            "compaction_write_bytes",
            s.compaction_write_bytes.to_string(),
        ),
        ("block_cache_hits", s.block_cache_hits.to_string()),
        ("block_cache_misses", s.block_cache_misses.to_string()),
        ("value_files", s.value_files.to_string()),
        ("value_written_bytes", s.value_written_bytes.to_string()),
        ("value_live_bytes", s.value_live_bytes.to_string()),
        ("value_dead_bytes", s.value_dead_bytes.to_string()),
        (
            "value_disk_bytes",
            s.value_disk_bytes
                .map_or_else(|| "null".to_string(), |b| b.to_string()),
        ),
        (
            "value_space_amplification",
            s.value_space_amplification()
                .map_or_else(|| "null".to_string(), |a| format!("{a:.4}")),
        ),
        ("value_mapped_blocks", s.value_mapped_blocks.to_string()),
        ("value_free_blocks", s.value_free_blocks.to_string()),
        ("value_pending_blocks", s.value_pending_blocks.to_string()),
        ("value_store_blocks", s.value_store_blocks.to_string()),
        ("value_punched_blocks", s.value_punched_blocks.to_string()),
        (
            "value_unpunched_blocks",
            s.value_unpunched_blocks.to_string(),
        ),
        (
            "value_punch_unsupported",
            s.value_punch_unsupported.to_string(),
        ),
        ("value_reclaimed_bytes", s.value_reclaimed_bytes.to_string()),
        (
            "value_gc_written_bytes",
            s.value_gc_written_bytes.to_string(),
        ),
        ("value_files_deleted", s.value_files_deleted.to_string()),
        (
            "value_segments_removed",
            s.value_segments_removed.to_string(),
        ),
        ("value_evacuations", s.value_evacuations.to_string()),
        ("value_relocations", s.value_relocations.to_string()),
        ("pool_hits", s.pool_hits.to_string()),
        ("pool_misses", s.pool_misses.to_string()),
        ("pool_resident_bytes", s.pool_resident_bytes.to_string()),
        ("pool_free_bytes", s.pool_free_bytes.to_string()),
        ("pool_recycled_fills", s.pool_recycled_fills.to_string()),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_the_largest_unit_below_1024() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(disk_bytes(Some(1536)), "1.5 KiB");
        assert_eq!(disk_bytes(None), "unknown");
    }

    #[test]
    fn stats_json_is_one_object_with_every_level() {
        let json = stats_json(&Stats::default());
        assert!(json.starts_with("{\"last_sequence\":0,"), "{json}");
        assert!(json.ends_with("\"pool_recycled_fills\":0}"), "{json}");
        assert!(
            json.contains("\"value_disk_bytes\":null,\"value_space_amplification\":null,"),
            "{json}"
        );
    }
}
