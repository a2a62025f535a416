//! Read commands: `get` and `scan`.
//!
//! Both open the database without creating it and print with the escapes of `escape.rs`
//! (`get --raw` writes the exact bytes instead).

use std::ffi::OsString;
use std::io::Write;
use std::ops::Bound;
use std::path::Path;

use clap::Args;

use crate::escape;
use crate::outcome::{self, Access, Failure};

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    key: OsString,
    /// Write the value's exact bytes, without escapes or a trailing newline.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only keys starting with P.
    #[arg(long, value_name = "P", conflicts_with_all = ["from", "to"])]
    prefix: Option<OsString>,
    /// Only keys from A on (inclusive).
    #[arg(long, value_name = "A")]
    from: Option<OsString>,
    /// Only keys before B (exclusive).
    #[arg(long, value_name = "B")]
    to: Option<OsString>,
    /// Print at most N pairs.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// From the last key to the first.
    #[arg(long)]
    reverse: bool,
    /// Print keys only.
    #[arg(long)]
    keys_only: bool,
}

/// `kv get KEY [--raw]`.
///
/// # Errors
/// `NotFound` if the key is absent; `Engine` if the database cannot be read.
pub fn get(dir: &Path, args: &GetArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let key = outcome::arg_bytes(&args.key)?;
    let db = outcome::open(dir, Access::Existing)?;
    let Some(value) = db.get(&key)? else {
        return Err(Failure::NotFound(key));
    };
    if args.raw {
        out.write_all(&value)?;
    } else {
        writeln!(out, "{}", escape::value(&value))?;
    }
    Ok(())
}

/// `kv scan [--prefix P | --from A --to B] [--limit N] [--reverse] [--keys-only]`.
///
/// # Errors
/// `Usage` for a bad escape; `Engine` if the database cannot be read.
pub fn scan(dir: &Path, args: &ScanArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let prefix = args.prefix.as_deref().map(outcome::arg_bytes).transpose()?;
    let from = args.from.as_deref().map(outcome::arg_bytes).transpose()?;
    let to = args.to.as_deref().map(outcome::arg_bytes).transpose()?;
    let db = outcome::open(dir, Access::Existing)?;
    let iter = match prefix {
        Some(prefix) => db.prefix(prefix),
        None => {
            let lower = from.map_or(Bound::Unbounded, Bound::Included);
            let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
            db.range((lower, upper))
        }
    };
    let iter: Box<dyn Iterator<Item = _>> = if args.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    for pair in iter.take(args.limit.unwrap_or(usize::MAX)) {
        let (key, value) = pair?;
        if args.keys_only {
            writeln!(out, "{}", escape::key(&key))?;
        } else {
            writeln!(out, "{} = {}", escape::key(&key), escape::value(&value))?;
        }
    }
    Ok(())
}
