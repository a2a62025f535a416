//! Write commands: `put`, `delete` and `delete-range`.
//!
//! They create the database if it is missing, and every write is synced before the command
//! exits: a command that printed no error has made its write durable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;
use extentdb::{Durability, WriteBatch};

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
pub fn put(dir: &Path, args: &PutArgs) -> Result<(), Failure> {
    let key = outcome::arg_bytes(&args.key)?;
    let value = match (&args.value, &args.value_file) {
        (_, Some(file)) => std::fs::read(file)
            .map_err(|e| Failure::Engine(format!("cannot read {}: {e}", file.display())))?,
        (Some(value), None) => outcome::arg_bytes(value)?,
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
pub fn delete(dir: &Path, args: &DeleteArgs) -> Result<(), Failure> {
    let mut batch = WriteBatch::new();
    batch.delete(outcome::arg_bytes(&args.key)?);
    commit(dir, batch)
}

/// `kv delete-range FROM TO`.
///
/// # Errors
/// `Usage` for a bad escape or an empty range (FROM not before TO); `Engine` if the write
/// fails.
pub fn delete_range(dir: &Path, args: &DeleteRangeArgs) -> Result<(), Failure> {
    let from = outcome::arg_bytes(&args.from)?;
    let to = outcome::arg_bytes(&args.to)?;
    if from >= to {
        return Err(Failure::Usage(
            "FROM must sort before TO: the range [FROM, TO) is empty".into(),
        ));
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(from..to);
    commit(dir, batch)
}

fn commit(dir: &Path, batch: WriteBatch) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::CreateIfMissing)?;
    db.write_with(batch, Durability::Sync)?;
    Ok(())
}
