//! extentdb: an embedded, ordered key-value storage engine.
//!
//! Keys live in a log-structured merge tree: a write-ahead log, a lock-free memtable, sorted
//! tables in levels, a manifest and background compaction. See `ARCHITECTURE.md` for the code
//! map and `docs/` for the formats, durability and locking.
//!
//! ```
//! # fn main() -> extentdb::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! use extentdb::{Durability, Options, WriteBatch};
//!
//! let db = Options::new().cache_bytes(16 << 20).open(dir.path())?;
//! let mut batch = WriteBatch::new();
//! batch.put("user:1", "ada").put("user:2", "grace").delete("user:0");
//! db.write_with(batch, Durability::Sync)?;
//!
//! let snapshot = db.snapshot();
//! db.delete_range("user:".."user;")?;
//! assert!(db.get("user:1")?.is_none());
//! assert_eq!(snapshot.get("user:1")?.as_deref(), Some(&b"ada"[..]));
//! for pair in snapshot.range("user:1".."user:9").rev() {
//!     let (key, value) = pair?;
//!     println!("{key:?} = {value:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Limits: keys up to [`MAX_KEY_BYTES`] (64 KiB; the empty key is allowed), values up to
//! [`MAX_VALUE_BYTES`] (128 MiB), one batch up to [`MAX_BATCH_BYTES`]. Larger writes are
//! refused with [`Error::InvalidArgument`].

#![warn(missing_docs)]

mod batch;
pub(crate) mod cache;
pub(crate) mod coding;
mod cursor;
mod db;
mod error;
pub(crate) mod filename;
pub mod fs;
pub(crate) mod index;
pub(crate) mod inspect;
mod iter;
pub(crate) mod key;
mod options;
mod snapshot;
mod stats;
pub(crate) mod sync;
mod types;
pub(crate) mod value;
pub(crate) mod wal;
mod worker;
mod write;

pub use batch::WriteBatch;
pub use cursor::Cursor;
pub use db::{Db, VerifyPhase, VerifyProgress, VerifyReport};
pub use error::{Error, Result};
pub use inspect::{ExtentInfo, Inventory, SegmentInfo, TableInfo, ValueFileInfo};
pub use iter::Iter;
pub use options::{Durability, MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options, ReadPath};
pub use snapshot::Snapshot;
pub use stats::{LevelStats, Stats};
pub use types::{Key, Value};

#[cfg(feature = "benching")]
#[doc(hidden)]
pub mod benching;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
