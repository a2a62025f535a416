//! Bulk export and import: `dump` writes a range of the database to stdout, `load` reads it
//! back from stdin.
//!
//! Two text formats, both one record per line and both binary-safe (every byte is hex):
//!
//! ```text
//! kv  (default)   <key hex> SP <value hex> LF          6b6579 76616c7565
//! ldb             0x<KEY HEX> " ==> " 0x<VALUE HEX> LF  0x6B6579 ==> 0x76616C7565
//! ```
//!
//! In `kv`, hex is lowercase on output (either case on input), there is exactly one space, and
//! an empty key or value is an empty hex string (`6b ` is key `k` with an empty value). `ldb`
//! is RocksDB's `ldb dump --hex` / `ldb load --hex` format (uppercase hex on output). Records
//! come out in key order, so `dump | load` into an empty database and `dump` again gives the
//! same bytes.
//!
//! `load` writes in batches of [`LOAD_BATCH_RECORDS`] records or [`LOAD_BATCH_BYTES`] bytes,
//! whichever comes first, and syncs at the end: a load is not atomic as a whole. A bad line
//! stops it with its line number and the count of records already written.
//!
//! Progress bars (records, bytes, rate, and ETA when stdin is a file of known size) go to
//! stderr and are hidden when stderr is not a terminal.

use std::io::{BufRead, IsTerminal as _, Write};
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use extentdb::{Durability, WriteBatch};
use indicatif::{ProgressBar, ProgressStyle};

use crate::codec::{Codec, from_hex, to_hex, to_hex_upper};
use crate::outcome::{self, Access, Failure};
use crate::read::RangeArgs;

/// Records per write batch in `load`, at most.
pub const LOAD_BATCH_RECORDS: usize = 1_000;
/// Encoded bytes per write batch in `load` before it is written (one larger record still goes
/// in a batch of its own).
pub const LOAD_BATCH_BYTES: usize = 4 << 20;
/// Records between two updates of a progress bar's message.
const PROGRESS_EVERY_RECORDS: u64 = 1_000;

/// The line format of `dump` and `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `<key hex> <value hex>`, lowercase.
    Kv,
    /// RocksDB `ldb --hex`: `0x<KEY> ==> 0x<VALUE>`.
    Ldb,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// The line format.
    #[arg(long, value_enum, default_value_t = Format::Kv)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The line format.
    #[arg(long, value_enum, default_value_t = Format::Kv)]
    format: Format,
}

/// `kv dump [--prefix P | --from A --to B] [--format kv|ldb]`.
///
/// # Errors
/// `Usage` for a bad range argument; `Engine` (or `Corruption`) if the database cannot be read.
pub fn dump(dir: &Path, args: &DumpArgs, codec: Codec, out: &mut dyn Write) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::ReadOnly)?;
    let bar = progress(None, "dumped");
    let mut records: u64 = 0;
    for pair in args.range.iter(&db, codec)? {
        let (key, value) = pair?;
        let line = format_line(args.format, &key, &value);
        out.write_all(line.as_bytes())?;
        records += 1;
        bar.inc(line.len() as u64);
        if records.is_multiple_of(PROGRESS_EVERY_RECORDS) {
            bar.set_message(format!("{records} records"));
        }
    }
    bar.finish_with_message(format!("{records} records"));
    Ok(())
}

/// `kv load [--format kv|ldb] < FILE`: prints how many records were loaded.
///
/// # Errors
/// `Usage` naming the first bad line; `Engine` if stdin cannot be read or a write fails.
pub fn load(
    dir: &Path,
    args: &LoadArgs,
    input: &mut dyn BufRead,
    input_bytes: Option<u64>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let db = outcome::open(dir, Access::CreateIfMissing)?;
    let bar = progress(input_bytes, "loaded");
    let mut batch = WriteBatch::new();
    let mut records: u64 = 0;
    let mut line = Vec::new();
    for number in 1_u64.. {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::Engine(format!("cannot read standard input: {e}")))?;
        if read == 0 {
            break;
        }
        bar.inc(read as u64);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let parsed = parse_line(args.format, text).map_err(|e| {
            Failure::Usage(format!(
                "line {number}: {e}; the {records} records before it were loaded"
            ))
        })?;
        let Some((key, value)) = parsed else {
            continue;
        };
        batch.put(key, value);
        records += 1;
        if batch.len() >= LOAD_BATCH_RECORDS || batch.encoded_bytes() >= LOAD_BATCH_BYTES {
            db.write(std::mem::take(&mut batch))?;
        }
        if records.is_multiple_of(PROGRESS_EVERY_RECORDS) {
            bar.set_message(format!("{records} records"));
        }
    }
    db.write_with(batch, Durability::Sync)?;
    bar.finish_with_message(format!("{records} records"));
    writeln!(out, "loaded {records} records")?;
    Ok(())
}

/// One record as a line of `format`, with its newline.
fn format_line(format: Format, key: &[u8], value: &[u8]) -> String {
    match format {
        Format::Kv => format!("{} {}\n", to_hex(key), to_hex(value)),
        Format::Ldb => format!("0x{} ==> 0x{}\n", to_hex_upper(key), to_hex_upper(value)),
    }
}

/// A key and its value, as read from a line.
type Record = (Vec<u8>, Vec<u8>);

/// One line of `format` (without its newline) as a key and a value; `None` for the summary
/// line `ldb dump` ends with (`Keys in range: N`), which holds no record.
fn parse_line(format: Format, line: &[u8]) -> Result<Option<Record>, String> {
    if format == Format::Ldb && is_ldb_summary(line) {
        return Ok(None);
    }
    let (key, value) = match format {
        Format::Kv => {
            let mut fields = line.splitn(2, |&b| b == b' ');
            let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
                return Err("expected `<key hex> <value hex>`".into());
            };
            (key, value)
        }
        Format::Ldb => {
            let at = line
                .windows(5)
                .position(|w| w == b" ==> ")
                .ok_or("expected `0x<KEY> ==> 0x<VALUE>`")?;
            let (key, value) = (line.get(..at), line.get(at + 5..));
            (strip_0x(key)?, strip_0x(value)?)
        }
    };
    Ok(Some((from_hex(key)?, from_hex(value)?)))
}

/// True for the line `Keys in range: N` that `ldb dump` prints after the records.
fn is_ldb_summary(line: &[u8]) -> bool {
    line.strip_prefix(b"Keys in range: ")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// `0x...` or `0X...` without the prefix.
fn strip_0x(field: Option<&[u8]>) -> Result<&[u8], String> {
    field
        .and_then(|f| f.strip_prefix(b"0x").or_else(|| f.strip_prefix(b"0X")))
        .ok_or_else(|| "expected `0x<KEY> ==> 0x<VALUE>`".into())
}

/// A bar over `total_bytes` (with ETA), or a spinner if the total is unknown; hidden when
/// stderr is not a terminal.
fn progress(total_bytes: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total_bytes {
        Some(total) => (
            ProgressBar::new(total),
            format!(
                "{verb} {{msg}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}}"
            ),
        ),
        None => (
            ProgressBar::new_spinner(),
            format!("{{spinner}} {verb} {{msg}}, {{bytes}} {{bytes_per_sec}} {{elapsed}}"),
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.set_message("0 records");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_round_trip_empty_and_binary_records() {
        for format in [Format::Kv, Format::Ldb] {
            for (key, value) in [(&b""[..], &b""[..]), (b"\x00\xff k", b"\n\r ==> ")] {
                let line = format_line(format, key, value);
                let text = line.strip_suffix('\n').unwrap().as_bytes();
                assert_eq!(
                    parse_line(format, text).unwrap(),
                    Some((key.to_vec(), value.to_vec()))
                );
            }
        }
    }

    #[test]
    fn lines_look_like_the_documented_formats() {
        assert_eq!(format_line(Format::Kv, b"key", b"\xff"), "6b6579 ff\n");
        assert_eq!(
            format_line(Format::Ldb, b"key", b"\xff"),
            "0x6B6579 ==> 0xFF\n"
        );
        assert_eq!(format_line(Format::Kv, b"k", b""), "6b \n");
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(parse_line(Format::Kv, b"6b").is_err());
        assert!(parse_line(Format::Kv, b"6b 76 77").is_err());
        assert!(parse_line(Format::Kv, b"zz 76").is_err());
        assert!(parse_line(Format::Ldb, b"6B ==> 0x76").is_err());
        assert!(parse_line(Format::Ldb, b"0x6B : 0x76").is_err());
        assert_eq!(
            parse_line(Format::Ldb, b"0x6b ==> 0X").unwrap(),
            Some((b"k".to_vec(), Vec::new()))
        );
        // `ldb dump` ends with a count, which is no record; a malformed one is an error.
        assert_eq!(parse_line(Format::Ldb, b"Keys in range: 3").unwrap(), None);
        assert!(parse_line(Format::Ldb, b"Keys in range: three").is_err());
        assert!(parse_line(Format::Kv, b"Keys in range: 3").is_err());
    }
}
