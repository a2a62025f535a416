//! [`LogWriter`]: appends records to a write-ahead log or manifest file.
//!
//! Each call to [`LogWriter::add_record`] appends one whole record (header, then payload) at
//! the end of the file; see `format.rs` for the layout.
//!
//! Invariants: the file holds only whole records written by this writer, back to back, except
//! that after a failed write or sync its end may hold part of a record. From then on the writer
//! is poisoned and refuses every call with `Error::Poisoned`: appending after a partial record
//! would turn a harmless torn tail into damage in the middle of the log, which the reader
//! reports as corruption. The engine recovers by reopening, which starts a new log.
//!
//! Thread-safety: a `LogWriter` owns its file and needs `&mut self` to write; the engine
//! serialises writers (one commit queue for the WAL, the manifest lock for the manifest).
//!
//! Read next: `reader.rs`, then `docs/format/wal.md`.

use std::path::Path;

use super::format::{Header, MAX_PAYLOAD_BYTES, RecordKind};
use crate::error::{Error, Result};
use crate::fs::WritableFile;

/// Appends records to one log file.
#[derive(Debug)]
pub(crate) struct LogWriter {
    file: Box<dyn WritableFile>,
    /// Reused between records so that a header does not cost an allocation.
    header: Vec<u8>,
    /// Set by the first failed write, flush or sync; see the module docs.
    poisoned: bool,
    /// Write-back starts once this many bytes were flushed since it last started or the file
    /// was last synced (0: never).
    writeback_bytes: u64,
    /// Where the bytes whose write-back has not started begin.
    unstarted: u64,
}

impl LogWriter {
    /// A writer appending to `file` from its current end (normally a newly created, empty file).
    pub fn new(file: Box<dyn WritableFile>) -> Self {
        let unstarted = file.len();
        Self {
            file,
            header: Vec::new(),
            poisoned: false,
            writeback_bytes: 0,
            unstarted,
        }
    }

    /// Starts the write-back of the flushed records each time `bytes` more were flushed (0:
    /// never), so that a sync finds at most about `bytes` left to write.
    pub fn with_writeback_bytes(mut self, bytes: u64) -> Self {
        self.writeback_bytes = bytes;
        self
    }

    /// Appends one record holding `payload` and returns the record's offset in the file. The
    /// record is in the file's buffer: call [`flush`](Self::flush) or [`sync`](Self::sync) to
    /// make it survive a crash.
    ///
    /// # Errors
    /// `InvalidArgument` if `payload` is longer than `MAX_PAYLOAD_BYTES` (the writer stays
    /// usable); `Poisoned` after an earlier failure; an I/O error, which poisons the writer.
    pub fn add_record(&mut self, payload: &[u8]) -> Result<u64> {
        self.check_not_poisoned()?;
        if payload.len() > MAX_PAYLOAD_BYTES as usize {
            return Err(Error::invalid(format!(
                "log record of {} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes",
                payload.len()
            )));
        }
        let offset = self.file.len();
        self.header.clear();
        Header::encode(RecordKind::Full, payload, &mut self.header);
        let appended = self
            .file
            .append(&self.header)
            .and_then(|()| self.file.append(payload));
        self.poison_on_error(appended)?;
        debug_assert_eq!(
            self.file.len(),
            offset + self.header.len() as u64 + payload.len() as u64
        );
        Ok(offset)
    }

    /// Hands buffered records to the operating system: they then survive a process crash, but
    /// not a power loss.
    ///
    /// # Errors
    /// `Poisoned` after an earlier failure; an I/O error, which poisons the writer.
    pub fn flush(&mut self) -> Result<()> {
        self.check_not_poisoned()?;
        let flushed = self.file.flush();
        self.poison_on_error(flushed)?;
        let end = self.file.len();
        if self.writeback_bytes > 0 && end - self.unstarted >= self.writeback_bytes {
            let started = self
                .file
                .start_writeback(self.unstarted, end - self.unstarted);
            self.poison_on_error(started)?;
            self.unstarted = end;
        }
        Ok(())
    }

    /// Flushes and makes every appended record durable against power loss.
    ///
    /// # Errors
    /// `Poisoned` after an earlier failure; an I/O error, which poisons the writer. After a
    /// failed sync the kernel may have dropped the dirty pages, so retrying cannot be trusted.
    pub fn sync(&mut self) -> Result<()> {
        self.check_not_poisoned()?;
        let synced = self.file.sync();
        self.poison_on_error(synced)?;
        self.unstarted = self.file.len();
        Ok(())
    }

    #[cfg(test)]
    /// Bytes appended so far, including buffered ones: the offset of the next record.
    pub fn len(&self) -> u64 {
        self.file.len()
    }

    #[cfg(test)]
    /// True if no record has been appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of the log file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    fn check_not_poisoned(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison_on_error(&mut self, result: Result<()>) -> Result<()> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::fs::{FileSystem, RealFs};
    use crate::wal::format::HEADER_BYTES_U64;

    #[test]
    fn add_record_returns_consecutive_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.log");
        let mut w = LogWriter::new(RealFs.create(&path).unwrap());
        assert!(w.is_empty());
        assert_eq!(w.add_record(b"").unwrap(), 0);
        assert_eq!(w.add_record(b"abc").unwrap(), HEADER_BYTES_U64);
        assert_eq!(w.len(), 2 * HEADER_BYTES_U64 + 3);
        assert_eq!(w.path(), path);
        w.sync().unwrap();
        assert_eq!(RealFs.read_all(&path).unwrap().len() as u64, w.len());
    }

    #[test]
    fn oversized_payload_is_refused_and_writer_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(RealFs.create(&dir.path().join("log")).unwrap());
        let big = vec![0u8; MAX_PAYLOAD_BYTES as usize + 1];
        assert!(matches!(w.add_record(&big), Err(Error::InvalidArgument(_))));
        assert_eq!(w.len(), 0);
        assert_eq!(w.add_record(b"ok").unwrap(), 0);
    }

    /// A file whose appends fail after `budget` bytes, as a full disk would.
    #[derive(Debug)]
    struct FailingFile {
        budget: usize,
        len: u64,
        path: PathBuf,
    }

    impl WritableFile for FailingFile {
        fn append(&mut self, data: &[u8]) -> Result<()> {
            if data.len() > self.budget {
                return Err(Error::Io(std::io::Error::other("disk full")));
            }
            self.budget -= data.len();
            self.len += data.len() as u64;
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            Ok(())
        }
        fn start_writeback(&mut self, _offset: u64, _len: u64) -> Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            self.len
        }
        fn path(&self) -> &Path {
            &self.path
        }
    }

    /// A file that records what it was asked to write back, and can refuse it.
    #[derive(Debug, Default)]
    struct WritebackLog {
        len: u64,
        flushed: u64,
        started: std::sync::Arc<parking_lot::Mutex<Vec<(u64, u64)>>>,
        refuse: bool,
    }

    impl WritableFile for WritebackLog {
        fn append(&mut self, data: &[u8]) -> Result<()> {
            self.len += data.len() as u64;
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            self.flushed = self.len;
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            self.flush()
        }
        fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
            assert!(
                offset + len <= self.flushed,
                "write-back of unflushed bytes"
            );
            if self.refuse {
                return Err(Error::Io(std::io::Error::other("refused")));
            }
            self.started.lock().push((offset, len));
            Ok(())
        }
        fn len(&self) -> u64 {
            self.len
        }
        fn path(&self) -> &Path {
            Path::new("log")
        }
    }

    #[test]
    fn write_back_starts_each_time_enough_was_flushed_and_a_sync_resets_it() {
        let file = WritebackLog::default();
        let started = std::sync::Arc::clone(&file.started);
        let mut w = LogWriter::new(Box::new(file)).with_writeback_bytes(100);
        let record = HEADER_BYTES_U64 + 30;
        let flush_one = |w: &mut LogWriter| {
            w.add_record(&[1; 30]).unwrap();
            w.flush().unwrap();
        };
        // Enough flushed once the records reach 100 bytes: the write-back covers them all.
        let first = 100u64.div_ceil(record);
        for _ in 0..first {
            flush_one(&mut w);
        }
        assert_eq!(*started.lock(), [(0, first * record)]);
        // Appended but not flushed: nothing starts, whatever the size.
        for _ in 0..first {
            w.add_record(&[1; 30]).unwrap();
        }
        assert_eq!(started.lock().len(), 1);
        w.flush().unwrap();
        assert_eq!(started.lock()[1], (first * record, first * record));
        // A sync leaves nothing unstarted: the next 99 bytes start nothing.
        w.sync().unwrap();
        for _ in 0..99 / record {
            flush_one(&mut w);
        }
        assert_eq!(started.lock().len(), 2);

        // Off: never.
        let file = WritebackLog::default();
        let started = std::sync::Arc::clone(&file.started);
        let mut w = LogWriter::new(Box::new(file));
        for _ in 0..100 {
            flush_one(&mut w);
        }
        assert!(started.lock().is_empty());
    }

    #[test]
    fn failed_write_back_start_poisons_the_writer() {
        let file = WritebackLog {
            refuse: true,
            ..WritebackLog::default()
        };
        let mut w = LogWriter::new(Box::new(file)).with_writeback_bytes(1);
        w.add_record(b"x").unwrap();
        assert!(matches!(w.flush(), Err(Error::Io(_))));
        assert!(matches!(w.add_record(b""), Err(Error::Poisoned)));
    }

    #[test]
    fn failed_append_poisons_the_writer() {
        let file = FailingFile {
            budget: 20,
            len: 0,
            path: PathBuf::from("log"),
        };
        let mut w = LogWriter::new(Box::new(file));
        w.add_record(b"12345").unwrap();
        assert!(matches!(w.add_record(b"123456789"), Err(Error::Io(_))));
        assert!(matches!(w.add_record(b""), Err(Error::Poisoned)));
        assert!(matches!(w.flush(), Err(Error::Poisoned)));
        assert!(matches!(w.sync(), Err(Error::Poisoned)));
    }
}
