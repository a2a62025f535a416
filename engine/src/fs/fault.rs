//! [`FaultFs`]: the host file system with switches that make writes or syncs fail, for tests
//! of how the engine reacts to I/O errors.
//!
//! Faults are switched on and off while the engine runs; every file created through a
//! `FaultFs` checks the switches on each call.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{FileLock, FileSystem, ReadableFile, RealFs, WritableFile};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct Switches {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
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
