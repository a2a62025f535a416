//! What the commands share: the [`Failure`] they return, and opening the database.
//!
//! A `Failure` is mapped to an exit code in one place, `main.rs`'s `report`.

use std::path::Path;

use extentdb::{Db, Options};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The key asked for is absent (exit code 1).
    NotFound(Vec<u8>),
    /// The command line is wrong in a way clap cannot see (exit code 2).
    Usage(String),
    /// The engine or the file system failed, or a demo check did not hold (exit code 1).
    Engine(String),
    /// The engine found damaged data (exit code 3).
    Corruption(String),
    /// Another handle or process holds the database (exit code 4).
    Locked(String),
    /// Standard output was closed by its reader; stop quietly (exit code 0).
    OutputClosed,
}

impl From<extentdb::Error> for Failure {
    fn from(e: extentdb::Error) -> Self {
        match e {
            extentdb::Error::Corruption { .. } => Self::Corruption(e.to_string()),
            extentdb::Error::Locked(_) => Self::Locked(e.to_string()),
            _ => Self::Engine(e.to_string()),
        }
    }
}

/// Errors writing to standard output.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self::OutputClosed
        } else {
            Self::Engine(format!("cannot write output: {e}"))
        }
    }
}

/// How a command opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads: opened read-only (`Options::read_only`), so nothing in the directory is ever
    /// written, and other readers may share it; a missing database is an error.
    ReadOnly,
    /// Maintenance: a missing database is an error.
    Existing,
    /// Writes: a missing database is created.
    CreateIfMissing,
}

/// Opens the database in `dir`.
///
/// # Errors
/// `Failure::Engine` with the engine's message (missing, I/O), `Locked` or `Corruption`.
pub fn open(dir: &Path, access: Access) -> Result<Db, Failure> {
    if access != Access::CreateIfMissing && !dir.is_dir() {
        // Checked here so that a mistyped path is not created as a side effect (the engine
        // takes its lock file before it looks for a database).
        return Err(Failure::Engine(format!(
            "no database at {}: the directory does not exist",
            dir.display()
        )));
    }
    let opened = Options::new()
        .create_if_missing(access == Access::CreateIfMissing)
        .read_only(access == Access::ReadOnly)
        .open(dir);
    match opened {
        // A read-only open is refused only by a writer: say so.
        Err(extentdb::Error::Locked(_)) if access == Access::ReadOnly => {
            Err(Failure::Locked(format!(
                "database {} is locked for writing by another process",
                dir.display()
            )))
        }
        opened => opened.map_err(Failure::from),
    }
}
