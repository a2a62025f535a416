//! Write commands: `put`, `delete`, `delete-range` and `batch`.
//!
//! They create the database if it is missing, and every write is synced before the command
//! exits: a command that printed no error has made its write durable.
//!
//! `batch` reads operations from standard input, one per line, and applies them all in one
//! `WriteBatch` (all or nothing):
//!
//! ```text
//! put KEY VALUE
//! delete KEY
//! delete-range FROM TO
//! ```
//!
//! Fields are separated by spaces; keys and values use the escapes of `escape.rs` (a space
//! inside one is `\x20`) or hex with `--hex`. Empty lines and lines starting with `#` are
//! skipped. The first bad line stops the command with its line number, and nothing is written.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use std::io::Read;

use clap::Args;
use extentdb::{Durability, WriteBatch};

use crate::codec::Codec;
use crate::outcome::{self, Access, Failure};

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    key: OsString,
    /// The value (escapes allowed).
    #[arg(required_unless_present = "value_file")]
    value: Option<OsString>,
    /// Read the value's exact bytes from file F instead.
    #[arg(long, value_name = "F", conflicts_with = "value")]
    value_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The key.
    key: OsString,
}

#[derive(Debug, Args)]
pub struct DeleteRangeArgs {
    /// The first key deleted.
    from: OsString,
    /// The first key kept: the range ends just before it.
    to: OsString,
}

/// `kv put KEY VALUE` or `kv put KEY --value-file F`.
///
/// # Errors
/// `Usage` for a bad escape; `Engine` if the file cannot be read or the write fails (too
/// large a key or value included).
pub fn put(dir: &Path, args: &PutArgs, codec: Codec) -> Result<(), Failure> {
    let key = codec.arg(&args.key)?;
    let value = match (&args.value, &args.value_file) {
        (_, Some(file)) => std::fs::read(file)
            .map_err(|e| Failure::Engine(format!("cannot read {}: {e}", file.display())))?,
        (Some(value), None) => codec.arg(value)?,
        (None, None) => return Err(Failure::Usage("a VALUE or --value-file is required".into())),
    };
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    commit(dir, batch)
}

/// `kv delete KEY`.
///
/// # Errors
/// `Usage` for a bad escape; `Engine` if the write fails.
pub fn delete(dir: &Path, args: &DeleteArgs, codec: Codec) -> Result<(), Failure> {
    let mut batch = WriteBatch::new();
    batch.delete(codec.arg(&args.key)?);
    commit(dir, batch)
}

/// `kv delete-range FROM TO`.
///
/// # Errors
/// `Usage` for a bad escape or an empty range (FROM not before TO); `Engine` if the write
/// fails.
pub fn delete_range(dir: &Path, args: &DeleteRangeArgs, codec: Codec) -> Result<(), Failure> {
    let from = codec.arg(&args.from)?;
    let to = codec.arg(&args.to)?;
    check_range(&from, &to).map_err(Failure::Usage)?;
    let mut batch = WriteBatch::new();
    batch.delete_range(from..to);
    commit(dir, batch)
}

fn check_range(from: &[u8], to: &[u8]) -> Result<(), String> {
    if from >= to {
        return Err("FROM must sort before TO: the range [FROM, TO) is empty".into());
    }
    Ok(())
}

/// `kv batch < FILE`: prints how many operations were applied.
///
/// # Errors
/// `Usage` naming the first bad line (nothing is written then); `Engine` if standard input
/// cannot be read or the write fails.
pub fn batch(
    dir: &Path,
    codec: Codec,
    input: &mut dyn Read,
    out: &mut dyn std::io::Write,
) -> Result<(), Failure> {
    let mut text = Vec::new();
    input
        .read_to_end(&mut text)
        .map_err(|e| Failure::Engine(format!("cannot read standard input: {e}")))?;
    let batch = parse_batch(&text, codec).map_err(Failure::Usage)?;
    let n = batch.len();
    commit(dir, batch)?;
    writeln!(out, "applied {n} operations")?;
    Ok(())
}

/// Parses the whole input into one batch.
fn parse_batch(text: &[u8], codec: Codec) -> Result<WriteBatch, String> {
    let mut batch = WriteBatch::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        parse_line(line, codec, &mut batch).map_err(|e| {
            format!(
                "line {}: {e}: {:?}; nothing was written",
                i + 1,
                String::from_utf8_lossy(line)
            )
        })?;
    }
    Ok(batch)
}

fn parse_line(line: &[u8], codec: Codec, batch: &mut WriteBatch) -> Result<(), String> {
    let fields: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    let decode = |f: &[u8]| codec.decode(f);
    match fields.as_slice() {
        [b"put", key, value] => {
            batch.put(decode(key)?, decode(value)?);
        }
        [b"delete", key] => {
            batch.delete(decode(key)?);
        }
        [b"delete-range", from, to] => {
            let (from, to) = (decode(from)?, decode(to)?);
            check_range(&from, &to)?;
            batch.delete_range(from..to);
        }
        _ => {
            return Err("expected `put KEY VALUE`, `delete KEY` or `delete-range FROM TO`".into());
        }
    }
    Ok(())
}

fn commit(dir: &Path, batch: WriteBatch) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::CreateIfMissing)?;
    db.write_with(batch, Durability::Sync)?;
    Ok(())
}
