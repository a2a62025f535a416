//! Read commands: `get`, `scan` and `count`, and the key range they share with `dump`.
//!
//! All open the database without creating it and print keys and values in the form chosen by
//! `--hex` (escapes of `escape.rs` by default; `get --raw` writes the exact bytes instead).
//! With `--json`, `get` prints one object `{"key":K,"value":V}`, `scan` prints JSON lines (one
//! such object per pair, so output streams and stops cleanly under `head`), and `count` prints
//! `{"count":N}`; K and V are strings in the same escape or hex form.

use std::ffi::OsString;
use std::io::Write;
use std::ops::Bound;
use std::path::Path;

use clap::Args;
use extentdb::{Db, Iter};

use crate::codec::{Codec, Style, json_string};
use crate::outcome::{self, Access, Failure};

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    key: OsString,
    /// Write the value's exact bytes, without escapes or a trailing newline.
    #[arg(long)]
    raw: bool,
}

/// `--prefix P | --from A --to B`: which keys a command sees.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Only keys starting with P.
    #[arg(long, value_name = "P", conflicts_with_all = ["from", "to"])]
    prefix: Option<OsString>,
    /// Only keys from A on (inclusive).
    #[arg(long, value_name = "A")]
    from: Option<OsString>,
    /// Only keys before B (exclusive).
    #[arg(long, value_name = "B")]
    to: Option<OsString>,
}

impl RangeArgs {
    /// The keys of the range, in order.
    ///
    /// # Errors
    /// `Usage` for a bad escape or hex.
    pub fn iter(&self, db: &Db, codec: Codec) -> Result<Iter, Failure> {
        let decode = |arg: &Option<OsString>| arg.as_deref().map(|a| codec.arg(a)).transpose();
        let (prefix, from, to) = (
            decode(&self.prefix)?,
            decode(&self.from)?,
            decode(&self.to)?,
        );
        Ok(match prefix {
            Some(prefix) => db.prefix(prefix),
            None => {
                let lower = from.map_or(Bound::Unbounded, Bound::Included);
                let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
                db.range((lower, upper))
            }
        })
    }
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    range: RangeArgs,
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

#[derive(Debug, Args)]
pub struct CountArgs {
    #[command(flatten)]
    range: RangeArgs,
}

/// `kv get KEY [--raw]`.
///
/// # Errors
/// `NotFound` if the key is absent; `Engine` if the database cannot be read.
pub fn get(dir: &Path, args: &GetArgs, style: Style, out: &mut dyn Write) -> Result<(), Failure> {
    let key = style.codec.arg(&args.key)?;
    let db = outcome::open(dir, Access::ReadOnly)?;
    let Some(value) = db.get(&key)? else {
        return Err(Failure::NotFound(key));
    };
    if args.raw {
        out.write_all(&value)?;
    } else if style.json {
        writeln!(out, "{}", pair_json(style.codec, &key, Some(&value)))?;
    } else {
        writeln!(out, "{}", style.codec.value(&value))?;
    }
    Ok(())
}

/// `kv scan [--prefix P | --from A --to B] [--limit N] [--reverse] [--keys-only]`.
///
/// # Errors
/// `Usage` for a bad escape; `Engine` if the database cannot be read.
pub fn scan(dir: &Path, args: &ScanArgs, style: Style, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::ReadOnly)?;
    let iter = args.range.iter(&db, style.codec)?;
    let iter: Box<dyn Iterator<Item = _>> = if args.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    let codec = style.codec;
    for pair in iter.take(args.limit.unwrap_or(usize::MAX)) {
        let (key, value) = pair?;
        let value = (!args.keys_only).then_some(&value[..]);
        if style.json {
            writeln!(out, "{}", pair_json(codec, &key, value))?;
        } else if let Some(value) = value {
            writeln!(out, "{} = {}", codec.key(&key), codec.value(value))?;
        } else {
            writeln!(out, "{}", codec.key(&key))?;
        }
    }
    Ok(())
}

/// `kv count [--prefix P | --from A --to B]`.
///
/// # Errors
/// `Usage` for a bad escape; `Engine` if the database cannot be read.
pub fn count(
    dir: &Path,
    args: &CountArgs,
    style: Style,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::ReadOnly)?;
    let mut n: u64 = 0;
    for pair in args.range.iter(&db, style.codec)? {
        pair?;
        n += 1;
    }
    if style.json {
        writeln!(out, "{{\"count\":{n}}}")?;
    } else {
        writeln!(out, "{n}")?;
    }
    Ok(())
}

/// `{"key":K,"value":V}`, or `{"key":K}` without a value.
fn pair_json(codec: Codec, key: &[u8], value: Option<&[u8]>) -> String {
    let key = json_string(&codec.key(key));
    match value {
        Some(value) => format!(
            "{{\"key\":{key},\"value\":{}}}",
            json_string(&codec.value(value))
        ),
        None => format!("{{\"key\":{key}}}"),
    }
}
