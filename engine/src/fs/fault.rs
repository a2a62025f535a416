//! [`FaultFs`]: the host file system with switches that make writes or syncs fail, for tests
//! of how the engine reacts to I/O errors.
//!
//! Faults are switched on and off while the engine runs; every file created through a
//! `FaultFs` checks the switches on each call. A segment file's writes and hole punches fail
//! with `fail_writes`, its syncs with `fail_syncs`; reads and memory maps never fail. With
//! `no_punch`, hole punching is unsupported, as on a file system without it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{FileLock, FileSystem, ReadableFile, RealFs, SegmentFile, WritableFile};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct Switches {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
    no_punch: AtomicBool,
}

/// A file system whose writes and syncs can be made to fail.
#[derive(Debug, Default, Clone)]
pub(crate) struct FaultFs {
    switches: Arc<Switches>,
}

impl FaultFs {
    pub fn fail_writes(&self, on: bool) {
        self.switches.fail_writes.store(on, Ordering::SeqCst);
    }

    pub fn fail_syncs(&self, on: bool) {
        self.switches.fail_syncs.store(on, Ordering::SeqCst);
    }

    pub fn no_punch(&self, on: bool) {
        self.switches.no_punch.store(on, Ordering::SeqCst);
    }
}

fn injected(what: &str) -> Error {
    Error::Io(std::io::Error::other(format!("injected {what} failure")))
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        RealFs.create_dir_all(path)
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        if self.switches.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("create"));
        }
        Ok(Box::new(FaultFile {
            inner: RealFs.create(path)?,
            switches: Arc::clone(&self.switches),
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn ReadableFile>> {
        RealFs.open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        RealFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        RealFs.remove_file(path)
    }

    fn link_or_copy(&self, from: &Path, to: &Path) -> Result<()> {
        RealFs.link_or_copy(from, to)
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        RealFs.list_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        if self.switches.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("directory sync"));
        }
        RealFs.sync_dir(path)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        RealFs.exists(path)
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        RealFs.lock(path)
    }

    fn lock_shared(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        RealFs.lock_shared(path)
    }

    fn open_segment_read_only(&self, path: &Path, len_bytes: u64) -> Result<Arc<dyn SegmentFile>> {
        RealFs.open_segment_read_only(path, len_bytes)
    }

    fn open_segment(
        &self,
        path: &Path,
        len_bytes: u64,
        create: bool,
    ) -> Result<Arc<dyn SegmentFile>> {
        // Opening an existing segment writes nothing, so only a creation can fail.
        if create && self.switches.fail_writes.load(Ordering::SeqCst) && !RealFs.exists(path)? {
            return Err(injected("create"));
        }
        Ok(Arc::new(FaultSegment {
            inner: RealFs.open_segment(path, len_bytes, create)?,
            switches: Arc::clone(&self.switches),
        }))
    }
}

#[derive(Debug)]
struct FaultSegment {
    inner: Arc<dyn SegmentFile>,
    switches: Arc<Switches>,
}

impl SegmentFile for FaultSegment {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact_at(offset, buf)
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if self.switches.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        self.inner.write_all_at(offset, data)
    }

    fn sync(&self) -> Result<()> {
        if self.switches.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("sync"));
        }
        self.inner.sync()
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<bool> {
        if self.switches.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("punch hole"));
        }
        if self.switches.no_punch.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.inner.punch_hole(offset, len)
    }

    fn map(&self) -> Result<Arc<memmap2::Mmap>> {
        self.inner.map()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn allocated_bytes(&self) -> Result<u64> {
        self.inner.allocated_bytes()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Box<dyn WritableFile>,
    switches: Arc<Switches>,
}

impl WritableFile for FaultFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        if self.switches.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        self.inner.append(data)
    }

    fn flush(&mut self) -> Result<()> {
        if self.switches.fail_writes.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        self.inner.flush()
    }

    fn sync(&mut self) -> Result<()> {
        if self.switches.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected("sync"));
        }
        self.inner.sync()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_fail_segment_writes_syncs_and_punches() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let seg = fs
            .open_segment(&dir.path().join("000000.seg"), 8192, true)
            .unwrap();
        seg.write_all_at(0, b"before").unwrap();
        seg.sync().unwrap();

        fs.fail_writes(true);
        assert!(seg.write_all_at(0, b"during").is_err());
        assert!(seg.punch_hole(0, 4096).is_err());
        assert!(
            fs.open_segment(&dir.path().join("000001.seg"), 8192, true)
                .is_err()
        );
        seg.sync().unwrap();
        let mut buf = [0u8; 6];
        seg.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"before", "a failed write changes nothing");
        fs.fail_writes(false);

        fs.fail_syncs(true);
        seg.write_all_at(0, b"after!").unwrap();
        assert!(seg.sync().is_err());
        fs.fail_syncs(false);
        seg.sync().unwrap();
    }
}
