//! The key index: a log-structured merge tree.
//!
//! - `memtable`, `skiplist`: recent writes in an arena-backed skip list;
//! - `table/`: the sorted table format (`docs/format/table.md`);
//! - `edit`, `version`: the manifest and the set of live tables (`docs/format/manifest.md`);
//! - `merge`, `tombstones`: merging sorted streams, range-tombstone lookups;
//! - `scan`: forward scans that lend versions in place, for cursors;
//! - `flush`, `compaction`: moving data from memory to level 0 and down the levels;
//! - `obsolete`: deleting the files of removed tables, off the read path.
//!
//! The index knows keys and versions; it knows nothing of value files.

pub(crate) mod compaction;
pub(crate) mod edit;
pub(crate) mod flush;
pub(crate) mod memtable;
pub(crate) mod merge;
pub(crate) mod obsolete;
pub(crate) mod scan;
pub(crate) mod skiplist;
pub(crate) mod table;
pub(crate) mod tombstones;
pub(crate) mod version;
