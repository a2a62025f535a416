//! `kv`: the command-line tool of extentdb.
//!
//! Reads and writes single keys, scans ranges, runs maintenance, and with `kv demo` exercises
//! the whole engine against an in-memory model. Every command opens the database named by
//! `--db` (or `$KVDB_DIR`), does one thing, and closes it.
//!
//! Exit codes are part of the interface (see [`EXIT_CODES`]), with one line on stderr for
//! every failure. The tool never panics on bad input. Keys and values are shown and read with
//! the escapes of `escape.rs`, or as hex with `--hex` (`codec.rs`).
//!
//! One file per command group: `read.rs` (get, scan, count), `write.rs` (put, delete,
//! delete-range, batch), `admin.rs` (stats, verify, compact, flush, checkpoint), `dump.rs`
//! (dump, load), `bench.rs`, `demo.rs`; `outcome.rs` and `codec.rs` hold what they share.

mod admin;
mod bench;
mod codec;
mod demo;
mod dump;
mod escape;
mod inspect;
mod outcome;
mod read;
mod write;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::codec::{Codec, Style};
use crate::outcome::Failure;

/// The exit codes, shown by `kv --help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  key not found (get), or any other error
  2  usage error (bad arguments, bad escape or hex, bad input line)
  3  corruption found (for example by verify)
  4  database locked by another handle or process";

/// Read, write and inspect an extentdb database.
#[derive(Debug, Parser)]
#[command(name = "kv", version, about, max_term_width = 100, after_help = EXIT_CODES)]
struct Cli {
    /// The database directory.
    #[arg(long, env = "KVDB_DIR", global = true, value_name = "DIR")]
    db: Option<PathBuf>,

    /// Read and print keys and values as hex digits (two per byte) instead of escapes.
    #[arg(long, global = true)]
    hex: bool,

    /// Print JSON (get, count, stats, verify: one object; scan: one object per line).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

/// Keys and values on the command line may use `\xNN` for any byte and `\\` for a backslash;
/// output uses the same escapes.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the value of a key (exit code 1 if it is absent).
    Get(read::GetArgs),
    /// Set a key to a value.
    Put(write::PutArgs),
    /// Delete a key (no error if it is absent).
    Delete(write::DeleteArgs),
    /// Delete every key from FROM (inclusive) to TO (exclusive).
    DeleteRange(write::DeleteRangeArgs),
    /// Print the pairs of a range or prefix as `key = value` lines, in key order.
    Scan(read::ScanArgs),
    /// Count the keys of a range or prefix.
    Count(read::CountArgs),
    /// Apply `put`, `delete` and `delete-range` lines from stdin atomically.
    Batch,
    /// Print sizes, levels and counters.
    Stats,
    /// Read and check every table; exit code 3 on corruption.
    Verify,
    /// List the tables, value files and segments the database is made of.
    Files,
    /// Print the extent map of one value file (ids as `kv files` lists them).
    Extents(inspect::ExtentsArgs),
    /// Write a consistent copy of the database to a new directory.
    Checkpoint(admin::CheckpointArgs),
    /// Write a range to stdout as `<key hex> <value hex>` lines (or `--format ldb`).
    Dump(dump::DumpArgs),
    /// Put the records of a `dump` (or `ldb dump --hex`) read from stdin, in batches.
    Load(dump::LoadArgs),
    /// Flush the memtable, then compact every level into the last one.
    Compact,
    /// Write the memtable to a table.
    Flush,
    /// Load, read, scan, delete, compact, reopen and check a database against a model.
    Demo(demo::DemoArgs),
    /// Run a db_bench-style workload and print ops/s, MB/s and latency percentiles.
    Bench(bench::BenchArgs),
    /// Print a shell completion script (`source <(kv completions bash)`).
    Completions {
        /// The shell.
        shell: CompletionShell,
    },
}

/// The shells `kv completions` writes scripts for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(failure),
    }
}

fn run(cli: Cli, out: &mut dyn std::io::Write) -> Result<(), Failure> {
    let db = cli.db;
    let db_dir = db.clone();
    let style = Style {
        codec: if cli.hex { Codec::Hex } else { Codec::Escape },
        json: cli.json,
    };
    let codec = style.codec;
    let dir = move || {
        db.ok_or_else(|| {
            Failure::Usage(
                "the database directory is required: pass --db DIR or set KVDB_DIR".into(),
            )
        })
    };
    match cli.command {
        Command::Get(args) => read::get(&dir()?, &args, style, out),
        Command::Scan(args) => read::scan(&dir()?, &args, style, out),
        Command::Count(args) => read::count(&dir()?, &args, style, out),
        Command::Put(args) => write::put(&dir()?, &args, codec),
        Command::Delete(args) => write::delete(&dir()?, &args, codec),
        Command::DeleteRange(args) => write::delete_range(&dir()?, &args, codec),
        Command::Batch => write::batch(&dir()?, codec, &mut std::io::stdin().lock(), out),
        Command::Stats => admin::stats(&dir()?, style.json, out),
        Command::Verify => admin::verify(&dir()?, style.json, out),
        Command::Files => inspect::files(&dir()?, style.json, out),
        Command::Extents(args) => inspect::extents(&dir()?, &args, style.json, out),
        Command::Checkpoint(args) => admin::checkpoint(&dir()?, &args, out),
        Command::Dump(args) => dump::dump(&dir()?, &args, codec, out),
        Command::Load(args) => {
            let stdin = std::io::stdin();
            let input_bytes = stdin_file_bytes();
            dump::load(&dir()?, &args, &mut stdin.lock(), input_bytes, out)
        }
        Command::Compact => admin::compact(&dir()?, out),
        Command::Flush => admin::flush(&dir()?, out),
        Command::Demo(args) => demo::run(&args, out),
        Command::Bench(args) => bench::run(db_dir.as_deref(), &args, style.json, out),
        Command::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut out = out;
            clap_complete::generate(shell, &mut Cli::command(), "kv", &mut out);
            Ok(())
        }
    }
}

/// The size of standard input if it is a regular file (for a progress bar with an ETA).
fn stdin_file_bytes() -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        let file = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().ok()?);
        let meta = file.metadata().ok()?;
        meta.is_file().then_some(meta.len())
    }
    #[cfg(not(unix))]
    None
}

/// Prints what went wrong and picks the exit code.
fn report(failure: Failure) -> ExitCode {
    match failure {
        // The reader of our output went away (`kv scan | head`): not an error.
        Failure::OutputClosed => ExitCode::SUCCESS,
        Failure::NotFound(key) => {
            eprintln!("kv: not found: {}", escape::key(&key));
            ExitCode::from(1)
        }
        Failure::Corruption(message) => {
            eprintln!("kv: error: {message}");
            ExitCode::from(3)
        }
        Failure::Locked(message) => {
            eprintln!("kv: error: {message}");
            ExitCode::from(4)
        }
        // Clap prints the message with the usage line and exits with code 2.
        Failure::Usage(message) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
        Failure::Engine(message) => {
            eprintln!("kv: error: {message}");
            ExitCode::from(1)
        }
    }
}
