//! [`Snapshot`]: a frozen, consistent view of the database.
//!
//! A snapshot is a sequence number registered with the database; while it is held,
//! compaction keeps every version it can see. Reads through it see exactly the writes
//! acknowledged before it was taken. Dropping it releases those versions.

use std::ops::RangeBounds;
use std::sync::Arc;

use crate::cursor::Cursor;
use crate::db::DbInner;
use crate::error::Result;
use crate::iter::{Iter, owned_bounds, prefix_bounds};
use crate::key::SeqNo;
use crate::types::Value;

/// A consistent read-only view at one point in the history. See [`Db::snapshot`](crate::Db::snapshot).
#[derive(Debug)]
pub struct Snapshot {
    db: Arc<DbInner>,
    seq: SeqNo,
}

impl Snapshot {
    pub(crate) fn new(db: Arc<DbInner>) -> Self {
        let seq = db.register_snapshot();
        Self { db, seq }
    }

    /// The sequence number the snapshot reads at.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.seq.0
    }

    /// The value of `key` as of the snapshot.
    ///
    /// # Errors
    /// `Corruption` or `Io` if a table cannot be read.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.db.get_at(key.as_ref(), self.seq)
    }

    /// The pairs in `range` as of the snapshot, in key order, from either end.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let (lower, upper) = owned_bounds(&range);
        Iter::new(
            Arc::clone(&self.db.values),
            self.db.super_version(),
            self.seq,
            lower,
            upper,
        )
    }

    /// A forward cursor over the pairs in `range` as of the snapshot; see
    /// [`Db::cursor`](crate::Db::cursor).
    pub fn cursor<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Cursor {
        let (lower, upper) = owned_bounds(&range);
        Cursor::new(
            Arc::clone(&self.db.values),
            self.db.super_version(),
            self.seq,
            lower,
            upper,
        )
    }

    /// The pairs whose keys start with `prefix`, as of the snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        Iter::new(
            Arc::clone(&self.db.values),
            self.db.super_version(),
            self.seq,
            lower,
            upper,
        )
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.db.release_snapshot(self.seq);
    }
}
