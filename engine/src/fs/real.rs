//! [`RealFs`]: the [`FileSystem`] of the host, on `std::fs`.
//!
//! Every I/O error is returned with the path it concerns in its message.
//!
//! This file holds two `unsafe` blocks: the memory map of a segment file
//! ([`RealSegment::map`]), whose soundness rests on segment files never shrinking while open,
//! and the `sync_file_range` call of [`start_writeback`], which touches no memory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::Mutex;

use super::{FileLock, FileSystem, ReadableFile, SegmentFile, WritableFile, check_range, io_at};
use crate::error::{Error, Result};

/// Buffer of a writable file: large enough that a table is written in few system calls.
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// The host file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(io_at(path, "create directory"))
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_at(path, "create"))?;
        Ok(Box::new(RealWritable {
            inner: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            len: 0,
            path: path.to_path_buf(),
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        let file = File::open(path).map_err(io_at(path, "open"))?;
        let len = file.metadata().map_err(io_at(path, "stat"))?.len();
        Ok(Arc::new(RealReadable {
            file,
            len,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(io_at(from, "rename"))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(io_at(path, "remove"))
    }

    fn link_or_copy(&self, from: &Path, to: &Path) -> Result<()> {
        if std::fs::hard_link(from, to).is_ok() {
            return Ok(());
        }
        std::fs::copy(from, to).map_err(io_at(from, "copy"))?;
        File::open(to)
            .and_then(|f| f.sync_all())
            .map_err(io_at(to, "sync"))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_at(path, "list"))? {
            let entry = entry.map_err(io_at(path, "list"))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(io_at(path, "sync directory"))
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        path.try_exists().map_err(io_at(path, "stat"))
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_at(path, "open lock file"))?;
        let locked = file.try_lock();
        held_lock(file, locked, path)
    }

    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        let file = File::open(path).map_err(io_at(path, "open lock file"))?;
        let locked = file.try_lock_shared();
        held_lock(file, locked, path)
    }

    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
        let file = File::open(path).map_err(io_at(path, "open segment"))?;
        segment(file, path, len_bytes)
    }

    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(io_at(path, "open segment"))?;
        let len = file.metadata().map_err(io_at(path, "stat"))?.len();
        if create && len == 0 {
            // Sparse: no block is allocated until it is written.
            file.set_len(len_bytes)
                .map_err(io_at(path, "set length of"))?;
        }
        segment(file, path, len_bytes)
    }
}

/// The lock `file` holds after a `try_lock` (exclusive or shared) that returned `locked`.
fn held_lock(
    file: File,
    locked: std::result::Result<(), std::fs::TryLockError>,
    path: &Path,
) -> Result<Box<dyn FileLock>> {
    match locked {
        Ok(()) => Ok(Box::new(RealLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::Locked(path.parent().unwrap_or(path).to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_at(path, "lock")(e)),
    }
}

/// The open segment file `file`, which must be `len_bytes` long.
fn segment(file: File, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
    let len = file.metadata().map_err(io_at(path, "stat"))?.len();
    if len != len_bytes {
        return Err(Error::corruption(
            path,
            len,
            format!("segment file is {len} bytes long, expected {len_bytes}"),
        ));
    }
    advise_random(&file);
    Ok(Arc::new(RealSegment {
        file,
        len: len_bytes,
        path: path.to_path_buf(),
        map: Mutex::new(None),
    }))
}

#[derive(Debug)]
struct RealWritable {
    inner: BufWriter<File>,
    len: u64,
    path: PathBuf,
}

impl WritableFile for RealWritable {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.inner
            .write_all(data)
            .map_err(io_at(&self.path, "write"))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(io_at(&self.path, "write"))
    }

    fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.inner
            .get_ref()
            .sync_data()
            .map_err(io_at(&self.path, "sync"))
    }

    fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
        check_range(&self.path, self.len, offset, len)?;
        start_writeback(self.inner.get_ref(), offset, len)
            .map_err(io_at(&self.path, "start write-back of"))
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct RealReadable {
    file: File,
    len: u64,
    path: PathBuf,
}

impl ReadableFile for RealReadable {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(io_at(&self.path, "read"))
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct RealSegment {
    file: File,
    len: u64,
    path: PathBuf,
    /// Created on the first `map` and kept for the life of the file, so that every reader
    /// shares one mapping instead of paying an `mmap` per read.
    map: Mutex<Option<Arc<Mmap>>>,
}

impl SegmentFile for RealSegment {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(&self.path, self.len, offset, buf.len() as u64)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(io_at(&self.path, "read"))
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        // A write past the end would grow the file beyond what the store and its memory map
        // believe its length to be.
        check_range(&self.path, self.len, offset, data.len() as u64)?;
        self.file
            .write_all_at(data, offset)
            .map_err(io_at(&self.path, "write"))
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(io_at(&self.path, "sync"))
    }

    fn start_writeback(&self, offset: u64, len: u64) -> Result<()> {
        check_range(&self.path, self.len, offset, len)?;
        start_writeback(&self.file, offset, len).map_err(io_at(&self.path, "start write-back of"))
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<bool> {
        check_range(&self.path, self.len, offset, len)?;
        if len == 0 {
            return Ok(true);
        }
        punch_hole(&self.file, offset, len).map_err(io_at(&self.path, "punch hole in"))
    }

    fn map(&self) -> Result<Arc<Mmap>> {
        let mut slot = self.map.lock();
        if let Some(map) = slot.as_ref() {
            return Ok(Arc::clone(map));
        }
        // SAFETY: `Mmap::map` is unsound if the mapped file shrinks (an access past the new
        // end raises SIGBUS) or if the bytes change while Rust code holds a reference to them.
        // Neither happens here:
        // - The engine never truncates a segment file while it exists: `RealSegment` has no
        //   method that changes the length, `write_all_at` refuses writes outside
        //   `[0, len)` so `pwrite` never changes it either, and a segment file is deleted
        //   (which keeps the inode alive until this mapping is dropped) rather than shrunk.
        //   Punching a hole keeps the size (`KEEP_SIZE`): reads of a hole return zeros, they
        //   do not fault.
        // - Blocks are rewritten only after the allocator has released them, which happens
        //   only once no fill can still read them (DESIGN invariant 2), so no reader copies
        //   out of bytes that a `pwrite` is changing; readers copy out and keep no view.
        // - Other processes stay out: the database directory's LOCK file admits one writing
        //   `Db`, and no writer while read-only handles (which never write) share it. The one
        //   exception is a read-only handle on a directory with no LOCK file (`fs/read_only.rs`),
        //   which holds no lock: a writer opening it meanwhile never shrinks a segment either
        //   (the first point holds for it too), and readers copy bytes out and check each
        //   value's CRC, so a block it rewrites fails the check rather than being returned.
        let map = unsafe { Mmap::map(&self.file) }.map_err(io_at(&self.path, "map"))?;
        let map = Arc::new(map);
        *slot = Some(Arc::clone(&map));
        Ok(map)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn allocated_bytes(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.metadata().map_err(io_at(&self.path, "stat"))?;
        Ok(meta.blocks().saturating_mul(512))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// Queues the dirty pages of `len` bytes of `file` from `offset` for writing to the disk,
/// without waiting for them: `sync_file_range(SYNC_FILE_RANGE_WRITE)`. It neither waits for
/// nor clears a write-back error, which the next `fdatasync` still reports.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;

    let (Ok(offset), Ok(len)) = (offset.try_into(), len.try_into()) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: a system call on a descriptor that `file` keeps open across it; it reads and
    // writes no memory of this process.
    let done = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere the kernel writes back on its own schedule, and `fdatasync` does the rest.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) -> std::io::Result<()> {
    Ok(())
}

/// Tells the kernel not to read ahead in a segment file: the buffer pool reads ahead itself,
/// where a scan needs it, and the kernel's readahead of values nobody asked for would take
/// the page cache's invalidate lock of the whole segment while a hole is punched in it.
/// Advice only: a kernel that refuses it changes nothing that matters.
fn advise_random(file: &File) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _refused = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Random);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = file;
}

/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`; `Ok(false)` where the file system or the kernel
/// cannot punch holes.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<bool> {
    use rustix::fs::{FallocateFlags, fallocate};
    use rustix::io::Errno;

    match fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    ) {
        Ok(()) => Ok(true),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Hole punching is only implemented on Linux; elsewhere the space is simply not returned.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn punch_hole(_file: &File, _offset: u64, _len: u64) -> std::io::Result<bool> {
    Ok(false)
}

/// An advisory lock; the kernel releases it when the descriptor closes or the process dies.
#[derive(Debug)]
struct RealLock {
    _file: File,
}

impl FileLock for RealLock {}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: u64 = 64 << 10;

    #[test]
    fn created_segment_is_sparse_and_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.seg");
        let seg = RealFs.open_segment(&path, LEN, true).unwrap();
        assert_eq!(seg.len(), LEN);
        assert_eq!(seg.path(), path);
        let mut buf = [1u8; 512];
        seg.read_exact_at(LEN - 512, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), LEN);
    }

    #[test]
    fn segment_write_read_and_map_agree_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.seg");
        let seg = RealFs.open_segment(&path, LEN, true).unwrap();
        seg.write_all_at(4096, b"hello").unwrap();
        seg.sync().unwrap();
        drop(seg);
        let seg = RealFs.open_segment(&path, LEN, false).unwrap();
        let mut buf = [0u8; 5];
        seg.read_exact_at(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let map = seg.map().unwrap();
        assert_eq!(map.len() as u64, LEN);
        assert_eq!(&map[4096..4101], b"hello");
        assert!(Arc::ptr_eq(&map, &seg.map().unwrap()), "the map is cached");
    }

    #[test]
    fn segment_of_the_wrong_length_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.seg");
        RealFs.open_segment(&path, LEN, true).unwrap();
        let err = RealFs.open_segment(&path, LEN * 2, false).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let err = RealFs.open_segment(&path, LEN / 2, true).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn missing_segment_is_an_error_without_create() {
        let dir = tempfile::tempdir().unwrap();
        let err = RealFs
            .open_segment(&dir.path().join("000000.seg"), LEN, false)
            .unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err}");
    }

    #[test]
    fn segment_io_outside_the_file_is_refused_and_never_grows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.seg");
        let seg = RealFs.open_segment(&path, LEN, true).unwrap();
        let err = seg.write_all_at(LEN - 2, b"abc").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let err = seg.write_all_at(u64::MAX, b"a").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let mut buf = [0u8; 3];
        assert!(seg.read_exact_at(LEN - 2, &mut buf).is_err());
        assert!(seg.punch_hole(LEN - 2, 3).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), LEN);
    }

    #[test]
    fn punched_hole_reads_zeros_and_keeps_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.seg");
        let seg = RealFs.open_segment(&path, LEN, true).unwrap();
        seg.write_all_at(0, &vec![7u8; LEN as usize]).unwrap();
        let map = seg.map().unwrap();
        // This machine's file system (ext4) supports hole punching.
        assert!(seg.punch_hole(4096, 8192).unwrap());
        let mut buf = vec![1u8; 8192];
        seg.read_exact_at(4096, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert!(map[4096..12288].iter().all(|&b| b == 0));
        assert_eq!(map[4095], 7);
        assert_eq!(map[12288], 7);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), LEN);
    }
}
