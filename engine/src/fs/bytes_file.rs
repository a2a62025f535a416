//! [`BytesFile`]: a read-only file held in memory, for decoding bytes that did not come from
//! disk (fuzz inputs, test fixtures) through the same readers as real files.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::ReadableFile;
use crate::error::{Error, Result};

/// An immutable in-memory file.
#[derive(Debug, Clone)]
pub struct BytesFile {
    data: Bytes,
    path: PathBuf,
}

impl BytesFile {
    /// A file named `path` holding `data`.
    pub fn new(data: impl Into<Bytes>, path: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            path: path.into(),
        }
    }
}

impl ReadableFile for BytesFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).ok();
        let src = start.and_then(|s| self.data.get(s..s.checked_add(buf.len())?));
        let Some(src) = src else {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("read past the end of {}", self.path.display()),
            )));
        };
        buf.copy_from_slice(src);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
