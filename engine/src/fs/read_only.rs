//! [`ReadOnlyFs`]: a [`FileSystem`] that passes reads to another and refuses every change.
//!
//! A read-only `Db` (`Options::read_only`) runs on it. The `Db` itself never attempts a write
//! in that mode (`db.rs` decides what a read-only open skips); this layer is the safety net
//! that turns any write a later change might add into `Error::ReadOnly` instead of a changed
//! file, and it is where the directory lock is taken shared instead of exclusively.
//!
//! Thread safety: as the wrapped file system.

use std::path::Path;
use std::sync::Arc;

use super::{FileLock, FileSystem, ReadableFile, SegmentFile, WritableFile};
use crate::error::{Error, Result};

/// Reads through `inner`; refuses to create, rename, remove, link or sync anything.
#[derive(Debug)]
pub(crate) struct ReadOnlyFs {
    inner: Arc<dyn FileSystem>,
}

impl ReadOnlyFs {
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        Self { inner }
    }
}

/// The lock of a directory without a lock file: nothing is held.
#[derive(Debug)]
struct NoLock;

impl FileLock for NoLock {}

impl FileSystem for ReadOnlyFs {
    fn create_dir_all(&self, _path: &Path) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn create(&self, _path: &Path) -> Result<Box<dyn WritableFile>> {
        Err(Error::ReadOnly)
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        self.inner.open(path)
    }

    fn rename(&self, _from: &Path, _to: &Path) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn remove_file(&self, _path: &Path) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn link_or_copy(&self, _from: &Path, _to: &Path) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn sync_dir(&self, _path: &Path) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        self.inner.exists(path)
    }

    /// The lock, shared. A missing lock file is not created: the directory was never opened
    /// for writing (a checkpoint, say), and it is read without a lock. A writer that opens it
    /// meanwhile is not kept out; what it changes under this handle fails the checksums of
    /// the values read rather than returning wrong bytes (DESIGN invariant 4).
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        if !self.inner.exists(path)? {
            return Ok(Box::new(NoLock));
        }
        self.inner.lock_shared(path)
    }

    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        self.inner.lock_shared(path)
    }

    /// Opens the existing segment for reads; a creation (`create`) is refused.
    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        if create {
            return Err(Error::ReadOnly);
        }
        self.inner.open_segment_read_only(path, len_bytes)
    }

    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
        self.inner.open_segment_read_only(path, len_bytes)
    }
}
