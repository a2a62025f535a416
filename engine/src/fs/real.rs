//! [`RealFs`]: the [`FileSystem`] of the host, on `std::fs`.
//!
//! Every I/O error is returned with the path it concerns in its message.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileLock, FileSystem, ReadableFile, WritableFile};
use crate::error::{Error, Result};

/// Buffer of a writable file: large enough that a table is written in few system calls.
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// The host file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

fn io_at(path: &Path, op: &str) -> impl FnOnce(std::io::Error) -> Error {
    let msg = format!("{op} {}", path.display());
    move |e| Error::Io(std::io::Error::new(e.kind(), format!("{msg}: {e}")))
}

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
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(Error::Locked(path.parent().unwrap_or(path).to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_at(path, "lock")(e)),
        }
    }
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

/// An advisory lock; the kernel releases it when the descriptor closes or the process dies.
#[derive(Debug)]
struct RealLock {
    _file: File,
}

impl FileLock for RealLock {}
