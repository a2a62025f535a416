//! Inspection commands: `files` (every table, value file and segment) and `extents FILE` (the
//! extent map of one value file). Human tables by default, one JSON document with `--json`.

use std::io::Write;
use std::path::Path;

use clap::Args;

use crate::admin::human_bytes;
use crate::outcome::{self, Access, Failure};

#[derive(Debug, Args)]
pub struct ExtentsArgs {
    /// The value file's id, as `kv files` lists it (`7` or `v7`).
    file: String,
}

/// `kv files [--json]`.
///
/// # Errors
/// `Engine` if the database cannot be opened.
pub fn files(dir: &Path, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::ReadOnly)?;
    let inv = db.inventory();
    if json {
        let tables: Vec<String> = inv
            .tables
            .iter()
            .map(|t| {
                format!(
                    "{{\"level\":{},\"number\":{},\"size_bytes\":{},\"entries\":{},\
                     \"format_version\":{}}}",
                    t.level, t.number, t.size_bytes, t.entries, t.format_version
                )
            })
            .collect();
        let files: Vec<String> = inv
            .value_files
            .iter()
            .map(|f| {
                format!(
                    "{{\"id\":{},\"extents\":{},\"mapped_blocks\":{},\"written_bytes\":{},\"dead_bytes\":{}}}",
                    f.id, f.extents, f.mapped_blocks, f.written_bytes, f.dead_bytes
                )
            })
            .collect();
        let segments: Vec<String> = inv
            .segments
            .iter()
            .map(|s| {
                format!(
                    "{{\"number\":{},\"size_bytes\":{}}}",
                    s.number, s.size_bytes
                )
            })
            .collect();
        writeln!(
            out,
            "{{\"block_size_bytes\":{},\"tables\":[{}],\"value_files\":[{}],\"segments\":[{}]}}",
            inv.block_size_bytes,
            tables.join(","),
            files.join(","),
            segments.join(",")
        )?;
        return Ok(());
    }
    writeln!(out, "tables ({})", inv.tables.len())?;
    writeln!(
        out,
        "  {:>5}  {:>10}  {:>10}  {:>10}  {:>6}",
        "level", "file", "size", "entries", "format"
    )?;
    for t in &inv.tables {
        let name = format!("{:06}.sst", t.number);
        writeln!(
            out,
            "  {:>5}  {name:>10}  {:>10}  {:>10}  {:>6}",
            t.level,
            human_bytes(t.size_bytes),
            t.entries,
            t.format_version
        )?;
    }
    writeln!(
        out,
        "value files ({}), blocks of {}",
        inv.value_files.len(),
        human_bytes(inv.block_size_bytes)
    )?;
    writeln!(
        out,
        "  {:>8}  {:>8}  {:>10}  {:>10}  {:>10}",
        "file", "extents", "mapped", "written", "dead"
    )?;
    for f in &inv.value_files {
        let mapped = human_bytes(f.mapped_blocks * inv.block_size_bytes);
        let name = format!("v{}", f.id);
        writeln!(
            out,
            "  {name:>8}  {:>8}  {mapped:>10}  {:>10}  {:>10}",
            f.extents,
            human_bytes(f.written_bytes),
            human_bytes(f.dead_bytes)
        )?;
    }
    writeln!(out, "segments ({})", inv.segments.len())?;
    for s in &inv.segments {
        let name = format!("{:06}.seg", s.number);
        writeln!(
            out,
            "  {name:>10}  {:>10} (sparse)",
            human_bytes(s.size_bytes)
        )?;
    }
    Ok(())
}

/// `kv extents FILE [--json]`.
///
/// # Errors
/// `Usage` for an id that is not a number, `Engine` if there is no such value file.
pub fn extents(
    dir: &Path,
    args: &ExtentsArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let digits = args.file.strip_prefix('v').unwrap_or(&args.file);
    let id: u64 = digits.parse().map_err(|_| {
        Failure::Usage(format!(
            "`{}` is not a value file id (such as 7 or v7)",
            args.file
        ))
    })?;
    let db = outcome::open(dir, Access::ReadOnly)?;
    let Some(extents) = db.value_file_extents(id) else {
        return Err(Failure::Engine(format!(
            "there is no value file v{id} (see `kv files`)"
        )));
    };
    if json {
        let rows: Vec<String> = extents
            .iter()
            .map(|e| {
                format!(
                    "{{\"logical_block\":{},\"physical_block\":{},\"blocks\":{},\"live_bytes\":{},\"dead_bytes\":{}}}",
                    e.logical_block, e.physical_block, e.blocks, e.live_bytes, e.dead_bytes
                )
            })
            .collect();
        writeln!(out, "{{\"file\":{id},\"extents\":[{}]}}", rows.join(","))?;
        return Ok(());
    }
    writeln!(out, "value file v{id}: {} extents", extents.len())?;
    writeln!(
        out,
        "  {:>14}  {:>14}  {:>10}  {:>10}  {:>10}",
        "logical", "physical", "blocks", "live", "dead"
    )?;
    for e in &extents {
        let logical = format!("{}..{}", e.logical_block, e.logical_block + e.blocks);
        let physical = format!("{}..{}", e.physical_block, e.physical_block + e.blocks);
        writeln!(
            out,
            "  {logical:>14}  {physical:>14}  {:>10}  {:>10}  {:>10}",
            e.blocks,
            human_bytes(e.live_bytes),
            human_bytes(e.dead_bytes)
        )?;
    }
    Ok(())
}
