//! The record log: an append-only file of checksummed records, used for the write-ahead log
//! (one record per atomic write batch) and the manifest (one record per version edit).
//!
//! - `format.rs`: the header layout, record kinds and size limit, shared by both sides.
//! - `writer.rs`: [`LogWriter`] appends whole records; after a failed write it is poisoned.
//! - `reader.rs`: [`LogReader`] reads them back and tells a torn tail (the last append was cut
//!   short by a crash: stop cleanly) from damage in the middle (`Error::Corruption`).
//!
//! Records are never fragmented: one payload, one record, one header. A payload is opaque here;
//! the batch and version-edit encodings live with their owners.
//!
//! Invariants: a record is either returned whole with both of its CRCs verified, or not at all.
//! Only the bytes after the last good record can be dropped, and only when no complete valid
//! record follows them. After a torn tail the engine must not append to the same file (new
//! records after the garbage would make it look like damage in the middle): it replays the log
//! and starts a new one.
//!
//! Thread-safety: a writer or reader belongs to one thread at a time; see each type.
//!
//! Read next: `docs/format/wal.md` for the byte layout, a worked example and the torn-tail rule.

mod format;
mod reader;
mod writer;

pub(crate) use reader::LogReader;
pub(crate) use writer::LogWriter;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSystem, RealFs};

    /// The worked example of `docs/format/wal.md`, byte for byte. If this test fails, the
    /// format changed: old logs no longer read. Change the doc and add a kind, never renumber.
    const WORKED_EXAMPLE: [u8; 31] = [
        0xac, 0x37, 0x41, 0x01, 0x05, 0x00, 0x00, 0x00, 0x01, 0x86, 0xa6, 0x10, 0x36, b'h', b'e',
        b'l', b'l', b'o', //
        0x1e, 0x3d, 0x69, 0xdb, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn writer_output_matches_the_worked_example_in_the_format_doc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.log");
        let mut w = LogWriter::new(RealFs.create(&path).unwrap());
        assert_eq!(w.add_record(b"hello").unwrap(), 0);
        assert_eq!(w.add_record(b"").unwrap(), 18);
        w.sync().unwrap();
        assert_eq!(RealFs.read_all(&path).unwrap(), WORKED_EXAMPLE);
    }

    #[test]
    fn worked_example_in_the_format_doc_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.log");
        let mut f = RealFs.create(&path).unwrap();
        f.append(&WORKED_EXAMPLE).unwrap();
        f.sync().unwrap();
        let mut r = LogReader::new(RealFs.open(&path).unwrap());
        assert_eq!(r.next_record().unwrap(), Some((0, b"hello".to_vec())));
        assert_eq!(r.next_record().unwrap(), Some((18, Vec::new())));
        assert_eq!(r.next_record().unwrap(), None);
        assert_eq!((r.valid_len(), r.torn_tail_bytes()), (31, 0));
    }
}
