//! The error type of every fallible operation in the engine.
//!
//! Errors are few and say what the caller can do about them: retry later (`WouldBlock`),
//! fix the call (`InvalidArgument`), stop writing (`Poisoned`, `ReadOnly`), or inspect the
//! damaged file (`Corruption`). See `docs/durability.md` for what `Poisoned` means for durability.

use std::fmt;
use std::path::PathBuf;

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error.
    Io(std::io::Error),
    /// Bytes on disk failed a checksum or could not be decoded.
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset of the damaged record, block or field.
        offset: u64,
        /// What was being decoded and what was wrong with it.
        what: String,
    },
    /// The caller passed something the engine refuses (a key that is too long, a bad option).
    InvalidArgument(String),
    /// Another `Db` (in this process or another) holds the directory's lock.
    Locked(PathBuf),
    /// A write or sync failed earlier; the database accepts no more writes until reopened.
    Poisoned,
    /// A non-blocking read would have had to wait for a lock or start I/O.
    WouldBlock,
    /// The database was opened read-only ([`crate::Options::read_only`]) and the call would
    /// have written to it.
    ReadOnly,
}

impl Error {
    pub(crate) fn corruption(
        file: impl Into<PathBuf>,
        offset: u64,
        what: impl Into<String>,
    ) -> Self {
        Self::Corruption {
            file: file.into(),
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Self::InvalidArgument(what.into())
    }

    /// True for `Error::Corruption`.
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corruption { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Corruption { file, offset, what } => {
                write!(
                    f,
                    "corruption in {} at offset {offset}: {what}",
                    file.display()
                )
            }
            Self::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Self::Locked(path) => {
                write!(
                    f,
                    "database {} is locked by another handle or process",
                    path.display()
                )
            }
            Self::Poisoned => f.write_str(
                "database is poisoned by an earlier failed write or sync; reopen it to recover",
            ),
            Self::WouldBlock => f.write_str("operation would block"),
            Self::ReadOnly => f.write_str("the database is open read-only"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}
