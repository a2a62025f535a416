//! The one I/O seam: every file operation of the engine goes through [`FileSystem`].
//!
//! No other module touches `std::fs`. That keeps one place where a fault can be injected into
//! any call (a failing write, a lost fsync, a torn rename) and where an in-memory file system
//! can stand in for the disk. [`RealFs`] is the implementation on the host's file system;
//! [`MemFs`] keeps everything in memory and can show what a power loss would leave;
//! `ReadOnlyFs` wraps another to refuse every change, under a read-only `Db`; [`FaultFs`]
//! wraps another to count every call and fail the ones a test picks.
//!
//! Thread safety: a `FileSystem`, its `ReadableFile`s and its `SegmentFile`s are shared between
//! threads; a `WritableFile` has one owner at a time.
//!
//! Segment files ([`SegmentFile`]) hold the block store's physical blocks
//! (`value/store.rs`): fixed-length sparse files written in place with `pwrite`, read with
//! `pread` or through a cached read-only memory map, and shrunk on disk only by punching holes,
//! never by truncation. That last rule is what makes the memory map sound (see `real.rs`).

#[cfg(feature = "fuzzing")]
mod bytes_file;
mod fault;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod mem;
mod read_only;
mod real;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

#[cfg(feature = "fuzzing")]
pub use bytes_file::BytesFile;
pub use fault::{CallKind, FaultFs, FirstCall, Injected, Trigger};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use mem::{CutAt, MemFs, Unsynced};
pub(crate) use read_only::ReadOnlyFs;
pub use real::RealFs;

use crate::error::Result;

/// A file system the engine can run on.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// Creates (or truncates) `path` for writing from the start.
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Opens an existing file for random-access reads.
    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> Result<()>;
    /// Makes `to` a new name of `from`, or a full copy where links are not supported.
    fn link_or_copy(&self, from: &Path, to: &Path) -> Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> Result<Vec<String>>;
    /// Makes the directory's entries (creations, renames, deletions) durable.
    fn sync_dir(&self, path: &Path) -> Result<()>;
    /// True if `path` exists.
    fn exists(&self, path: &Path) -> Result<bool>;
    /// Takes an exclusive advisory lock on `path` (creating it), held until the returned guard
    /// is dropped or the process dies.
    ///
    /// # Errors
    /// `Error::Locked` if anyone else holds it.
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>>;
    /// Takes a shared advisory lock on the existing file `path` (never creating it): any number
    /// of shared holders at once, but none while someone holds it through [`Self::lock`].
    ///
    /// # Errors
    /// `Error::Locked` if someone holds it exclusively; `Io` if it is missing.
    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>>;
    /// Opens the segment file `path`, which is exactly `len_bytes` long.
    ///
    /// With `create`, a missing file is created as a sparse file of `len_bytes`; so is an
    /// existing empty one (a creation that a crash cut short before its length was set, which
    /// holds no data). The caller syncs the directory to make a creation durable.
    ///
    /// # Errors
    /// `Corruption` if the file exists with any other length; `Io` if it is missing and
    /// `create` is false, or on any I/O failure.
    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>>;
    /// Opens the existing segment file `path`, which is exactly `len_bytes` long, for reads
    /// only: its writes, syncs and hole punches fail.
    ///
    /// # Errors
    /// `Corruption` if the file has any other length; `Io` if it is missing or on any I/O
    /// failure.
    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>>;

    /// Reads a whole file.
    ///
    /// # Errors
    /// Any I/O error.
    fn read_all(&self, path: &Path) -> Result<Vec<u8>> {
        let file = self.open(path)?;
        let len = usize::try_from(file.len()).map_err(|_| {
            crate::Error::invalid(format!("{} is too large to read", path.display()))
        })?;
        let mut buf = vec![0; len];
        file.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// A file being written from its start to its end.
///
/// `append` may buffer; `flush` hands buffered bytes to the operating system (they then survive
/// a process crash); `sync` also makes them durable against power loss.
pub trait WritableFile: Send + Debug {
    /// Appends bytes.
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Hands buffered bytes to the operating system.
    fn flush(&mut self) -> Result<()>;
    /// Flushes and makes the contents durable (`fdatasync`).
    fn sync(&mut self) -> Result<()>;
    /// Starts writing `len` bytes from `offset`, handed to the operating system by
    /// [`Self::flush`], to the disk without waiting for them, as
    /// [`SegmentFile::start_writeback`] does.
    ///
    /// # Errors
    /// `InvalidArgument` if the range goes past the bytes appended; any I/O error.
    fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()>;
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// True if nothing has been appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The path the file was created at.
    fn path(&self) -> &Path;
}

/// A file read at arbitrary offsets, shared between threads.
pub trait ReadableFile: Send + Sync + Debug {
    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// An I/O error, or `UnexpectedEof` (as `Error::Io`) if the file ends first.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// The file's length in bytes when it was opened.
    fn len(&self) -> u64;
    /// True if the file was empty when it was opened.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The path the file was opened at.
    fn path(&self) -> &Path;
}

/// A fixed-length file of the block store, read and written in place at arbitrary offsets and
/// shared between threads.
///
/// Its length never changes while it is open: writes must lie inside it, and freeing space is
/// done by punching holes, which keep the length. A memory map of it therefore never
/// outlives the bytes it covers.
pub trait SegmentFile: Send + Sync + Debug {
    /// Fills `buf` from `offset` with `pread`.
    ///
    /// # Errors
    /// `InvalidArgument` if the range is not inside the file; any I/O error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Writes all of `data` at `offset` with `pwrite`; durable only after [`Self::sync`].
    ///
    /// # Errors
    /// `InvalidArgument` if the range is not inside the file (a write must never grow it);
    /// any I/O error.
    fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    ///
    /// # Errors
    /// Any I/O error. After a failure the kernel may have dropped the dirty pages: the caller
    /// must not assume a later successful sync covers the earlier writes.
    fn sync(&self) -> Result<()>;
    /// Starts writing the dirty pages of `len` bytes from `offset` to the disk and returns
    /// without waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that a later
    /// [`Self::sync`] finds less left to write. Durability still takes that sync. A file system
    /// with no write-back of its own has nothing to start.
    ///
    /// # Errors
    /// `InvalidArgument` if the range is not inside the file; any I/O error.
    fn start_writeback(&self, offset: u64, len: u64) -> Result<()>;
    /// Deallocates `len` bytes from `offset` (`fallocate(PUNCH_HOLE | KEEP_SIZE)`); reads of
    /// the range then return zeros. The length of the file is unchanged.
    ///
    /// Returns `Ok(false)` if the file system cannot punch holes (the range is left as it
    /// was), `Ok(true)` once the range is a hole.
    ///
    /// # Errors
    /// `InvalidArgument` if the range is not inside the file; any other I/O error.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<bool>;
    /// A read-only memory map of the whole file, created on first use and shared afterwards.
    ///
    /// # Errors
    /// Any error of `mmap`.
    fn map(&self) -> Result<Arc<memmap2::Mmap>>;
    /// The file's length in bytes, fixed at open.
    fn len(&self) -> u64;
    /// True if the file has no bytes (never, for a segment the engine opened).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes the file occupies on disk (`st_blocks * 512`, what `du` counts): holes,
    /// punched or never written, take none.
    ///
    /// # Errors
    /// Any error of `fstat`.
    fn allocated_bytes(&self) -> Result<u64>;
    /// The path the file was opened at.
    fn path(&self) -> &Path;
}

/// Maps an I/O error of `op` on `path` to `Error::Io` naming both.
pub(crate) fn io_at<'a>(
    path: &'a Path,
    op: &'a str,
) -> impl FnOnce(std::io::Error) -> crate::Error + 'a {
    // The message is formatted only on failure: this wraps every read of the hot path.
    move |e| {
        crate::Error::Io(std::io::Error::new(
            e.kind(),
            format!("{op} {}: {e}", path.display()),
        ))
    }
}

/// `InvalidArgument` unless `[offset, offset + len)` lies inside a file of `file_len` bytes.
pub(crate) fn check_range(path: &Path, file_len: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(crate::Error::invalid(format!(
            "range of {len} bytes at {offset} is outside {} ({file_len} bytes)",
            path.display()
        ))),
    }
}

/// A held directory lock; dropping it releases the lock.
pub trait FileLock: Send + Sync + Debug {}
