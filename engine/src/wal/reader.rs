//! [`LogReader`]: reads the records of a write-ahead log or manifest file back, in order, and
//! tells a torn tail (a crash mid-append: stop cleanly) from damage in the middle (corruption).
//!
//! How a record is judged, at offset `X` (details and rationale in `docs/format/wal.md`):
//!
//! 1. Fewer than 13 bytes left, a header CRC mismatch, or a length over the limit: the header
//!    cannot be trusted, so look for a complete valid record anywhere after `X`.
//! 2. A trusted header whose payload runs past the end of the file: a torn tail. No record can
//!    follow, because every byte to the end belongs to this record's payload.
//! 3. A trusted header, payload in the file, payload CRC mismatch: look for a complete valid
//!    record after this record's end (not inside its payload, which may legitimately contain
//!    bytes that look like a record).
//! 4. Both CRCs valid but an unknown kind: corruption. The record is whole, so it is not torn.
//!
//! When a search finds a later valid record the damage is in the middle and
//! `Error::Corruption` names the file and `X`; otherwise the bytes from `X` are a torn tail:
//! `next_record` returns `Ok(None)` and [`LogReader::torn_tail_bytes`] says how many were
//! dropped. The search checks the 9-byte header CRC at each offset and hashes a payload only
//! behind a valid header, so it costs O(file size); a budget bounds the payload hashing even on
//! adversarial input, and exhausting it reports corruption rather than guessing.
//!
//! Invariants: `valid_len() <= file length`; every byte before `valid_len()` belongs to a
//! record already returned. Nothing read from the file can panic, overflow or make the reader
//! allocate more than one read buffer plus `min(record length, bytes left in the file)`.
//!
//! Thread-safety: a `LogReader` is used by one thread (`&mut self`); the file it reads may be
//! shared.
//!
//! Read next: `docs/format/wal.md`.

use std::path::Path;
use std::sync::Arc;

use super::format::{HEADER_BYTES, HEADER_BYTES_U64, Header, MAX_PAYLOAD_BYTES, RecordKind};
use crate::error::{Error, Result};
use crate::fs::ReadableFile;

/// Bytes read per system call: a log is read front to back, so big reads amortise the calls
/// while keeping the reader's memory small and fixed.
pub(crate) const READ_BUFFER_BYTES: usize = 1 << 20;

/// What the search for a later record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Later {
    /// No complete valid record follows: the damaged bytes are a torn tail.
    Nothing,
    /// A complete valid record begins at this offset.
    RecordAt(u64),
    /// The payload-hashing budget ran out before the search could decide.
    Undecided,
}

/// Reads the records of one log file in order.
#[derive(Debug)]
pub(crate) struct LogReader {
    file: Arc<dyn ReadableFile>,
    /// The file's length when opened; bytes appended later are not read.
    file_len: u64,
    /// Bytes of the file starting at `buf_offset`.
    buf: Vec<u8>,
    buf_offset: u64,
    /// The most `buf` will hold; at least one header.
    buffer_bytes: usize,
    /// Offset of the next record, which is also the end of the last good one.
    pos: u64,
    torn_tail_bytes: u64,
    /// True once the end or a torn tail has been reached.
    at_end: bool,
    /// Take damage for a torn tail only when the file is cut short or ends in zeros.
    strict: bool,
}

impl LogReader {
    /// A reader of `file` from its start.
    pub fn new(file: Arc<dyn ReadableFile>) -> Self {
        Self::with_buffer_bytes(file, READ_BUFFER_BYTES)
    }

    /// A reader that reads `buffer_bytes` at a time (at least one header's worth). Tests use a
    /// tiny buffer so that records straddle buffer boundaries.
    pub fn with_buffer_bytes(file: Arc<dyn ReadableFile>, buffer_bytes: usize) -> Self {
        let file_len = file.len();
        Self {
            file,
            file_len,
            buf: Vec::new(),
            buf_offset: 0,
            buffer_bytes: buffer_bytes.max(HEADER_BYTES),
            pos: 0,
            torn_tail_bytes: 0,
            at_end: false,
            strict: false,
        }
    }

    /// A reader for a log whose every record was synced before anything relied on it (the
    /// manifest). Damage there is corruption unless the file is simply cut short (a header or
    /// payload running past its end) or ends in zeros (space the file system extended but never
    /// wrote): a complete record with a bad checksum is never taken for a torn write, since
    /// dropping it could forget a table whose log is already deleted.
    pub fn strict(file: Arc<dyn ReadableFile>) -> Self {
        Self {
            strict: true,
            ..Self::new(file)
        }
    }

    /// The next record's offset and payload; `Ok(None)` at the end of the file or at a torn
    /// tail (then [`torn_tail_bytes`](Self::torn_tail_bytes) is non-zero), and on every call
    /// after that.
    ///
    /// # Errors
    /// `Corruption` naming the file and the damaged record's offset if a record is damaged and
    /// a valid record follows it (or the search for one was too costly to finish), or if a
    /// whole record has an unknown kind. An I/O error from the file. In both cases the reader
    /// does not advance: calling again returns the same error.
    pub fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        debug_assert!(self.pos <= self.file_len);
        if self.at_end {
            return Ok(None);
        }
        let offset = self.pos;
        let remaining = self.file_len.saturating_sub(offset);
        if remaining == 0 {
            self.at_end = true;
            return Ok(None);
        }
        if remaining < HEADER_BYTES_U64 {
            if self.strict {
                return Ok(self.torn_tail(offset));
            }
            return self.damaged(offset, offset + 1, "is a partial header");
        }
        let Some(header) = Header::decode(self.cached(offset, HEADER_BYTES)?) else {
            return self.damaged(offset, offset + 1, "fails its header checksum");
        };
        if header.length > MAX_PAYLOAD_BYTES {
            let reason = format!("claims {} bytes, over the limit", header.length);
            return self.damaged(offset, offset + 1, &reason);
        }
        let end = record_end(offset, header);
        if end > self.file_len {
            // The header is intact (its CRC matched), so every byte to the end of the file is
            // this record's payload: the append was cut short.
            return Ok(self.torn_tail(offset));
        }
        let payload = self.read_payload(offset + HEADER_BYTES_U64, header.length)?;
        if crc32fast::hash(&payload) != header.payload_crc {
            return self.damaged(offset, end, "fails its payload checksum");
        }
        if RecordKind::from_byte(header.kind).is_none() {
            return Err(Error::corruption(
                self.path(),
                offset,
                format!("log record has unknown kind {}", header.kind),
            ));
        }
        self.pos = end;
        Ok(Some((offset, payload)))
    }

    /// The end of the last good record: the length of the log's valid prefix. After a torn
    /// tail, the engine may treat the file as this long.
    pub fn valid_len(&self) -> u64 {
        self.pos
    }

    /// Bytes after [`valid_len`](Self::valid_len) dropped as a torn tail; 0 if none (yet).
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail_bytes
    }

    /// The path of the log file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The record at `offset` failed a check; decides between a torn tail and corruption by
    /// looking for a valid record at or after `search_from`.
    fn damaged(
        &mut self,
        offset: u64,
        search_from: u64,
        reason: &str,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        if self.strict {
            if self.zeros_to_end(offset)? {
                return Ok(self.torn_tail(offset));
            }
            let what = format!("log record {reason}; records of this log are synced before use");
            return Err(Error::corruption(self.path(), offset, what));
        }
        let what = match self.find_valid_record(search_from)? {
            Later::Nothing => return Ok(self.torn_tail(offset)),
            Later::RecordAt(later) => {
                format!("log record {reason}, yet a valid record follows at offset {later}")
            }
            Later::Undecided => format!(
                "log record {reason}, and the file holds too many record-like headers after it \
                 to tell a torn tail from damage"
            ),
        };
        Err(Error::corruption(self.path(), offset, what))
    }

    /// True if every byte from `offset` to the end of the file is zero.
    fn zeros_to_end(&mut self, offset: u64) -> Result<bool> {
        let mut at = offset;
        while at < self.file_len {
            let len = chunk_len(self.file_len - at, self.buffer_bytes);
            if self.cached(at, len)?.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += len as u64;
        }
        Ok(true)
    }

    fn torn_tail(&mut self, offset: u64) -> Option<(u64, Vec<u8>)> {
        debug_assert_eq!(offset, self.pos);
        self.torn_tail_bytes = self.file_len.saturating_sub(offset);
        self.at_end = true;
        None
    }

    /// Searches `[from, file end)` for the first offset where a complete valid record begins:
    /// header CRC valid, length within the limit, payload within the file, payload CRC valid.
    /// The kind is not checked: any whole record shows that data was written after the damage.
    fn find_valid_record(&mut self, from: u64) -> Result<Later> {
        // Hashing payloads is the only cost beyond one header CRC per offset. Real records
        // behind the damage do not overlap, so honest input hashes at most about the file's
        // length; the slack covers records nested in payloads. Past it, refuse to guess.
        let mut budget = self
            .file_len
            .saturating_mul(2)
            .saturating_add(self.buffer_bytes as u64);
        let file_len = self.file_len;
        let mut candidate = from;
        while candidate.saturating_add(HEADER_BYTES_U64) <= file_len {
            let window = self.window_at(candidate, HEADER_BYTES, usize::MAX)?;
            let starts_in_window = (window.len() + 1).saturating_sub(HEADER_BYTES) as u64;
            let found = window
                .windows(HEADER_BYTES)
                .zip(candidate..)
                .find_map(|(bytes, at)| {
                    Header::decode(bytes)
                        .filter(|h| h.length <= MAX_PAYLOAD_BYTES && record_end(at, *h) <= file_len)
                        .map(|h| (at, h))
                });
            let Some((at, header)) = found else {
                candidate += starts_in_window;
                continue;
            };
            if header.length_u64() > budget {
                return Ok(Later::Undecided);
            }
            budget -= header.length_u64();
            if self.payload_crc(at + HEADER_BYTES_U64, header.length)? == header.payload_crc {
                return Ok(Later::RecordAt(at));
            }
            candidate = at + 1;
        }
        Ok(Later::Nothing)
    }

    /// The CRC of `length` bytes at `offset`, hashed a buffer at a time.
    fn payload_crc(&mut self, offset: u64, length: u32) -> Result<u32> {
        let mut hasher = crc32fast::Hasher::new();
        let end = offset + u64::from(length);
        let mut at = offset;
        while at < end {
            let n = chunk_len(end - at, self.buffer_bytes);
            hasher.update(self.cached(at, n)?);
            at += n as u64;
        }
        Ok(hasher.finalize())
    }

    /// Reads a payload the caller has checked lies within the file, so the allocation is at
    /// most the bytes left in the file.
    fn read_payload(&mut self, offset: u64, length: u32) -> Result<Vec<u8>> {
        // Lossless: a u32 fits in usize on every target the engine supports.
        let len = length as usize;
        if len <= self.buffer_bytes {
            return Ok(self.cached(offset, len)?.to_vec());
        }
        // Bigger than the buffer: read it straight into its own allocation.
        let mut payload = vec![0; len];
        self.file.read_exact_at(offset, &mut payload)?;
        Ok(payload)
    }

    /// Exactly `len` bytes at `offset`, from the buffer. Requires `len <= buffer_bytes` and
    /// `offset + len <= file_len`.
    fn cached(&mut self, offset: u64, len: usize) -> Result<&[u8]> {
        self.window_at(offset, len, len)
    }

    /// Between `min_len` and `max_len` buffered bytes from `offset` (as many as the buffer
    /// holds), refilling the buffer at `offset` when it holds fewer than `min_len`. Requires
    /// `min_len <= buffer_bytes` and `offset + min_len <= file_len`; a violation (or a file
    /// that shrank under the reader) is an error, not a panic.
    fn window_at(&mut self, offset: u64, min_len: usize, max_len: usize) -> Result<&[u8]> {
        if self.buffered_from(offset).is_none_or(|w| w.len() < min_len) {
            let n = chunk_len(self.file_len.saturating_sub(offset), self.buffer_bytes);
            self.buf.resize(n, 0);
            if let Err(e) = self.file.read_exact_at(offset, &mut self.buf) {
                // Leave nothing stale behind for the next call to trust.
                self.buf.clear();
                self.buf_offset = 0;
                return Err(e);
            }
            self.buf_offset = offset;
        }
        match self.buffered_from(offset) {
            Some(w) if w.len() >= min_len => Ok(w.get(..max_len).unwrap_or(w)),
            _ => Err(Error::corruption(
                self.file.path(),
                offset,
                format!(
                    "log read past the end of the file ({} bytes)",
                    self.file_len
                ),
            )),
        }
    }

    /// The buffered bytes from `offset` to the end of the buffer, if the buffer holds `offset`.
    fn buffered_from(&self, offset: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset.checked_sub(self.buf_offset)?).ok()?;
        self.buf.get(start..)
    }
}

/// The offset just past the record at `offset` with `header`; saturates rather than wraps so
/// that an absurd value compares as past the end of the file.
fn record_end(offset: u64, header: Header) -> u64 {
    offset
        .saturating_add(HEADER_BYTES_U64)
        .saturating_add(header.length_u64())
}

/// `min(remaining, buffer_bytes)` as a `usize`.
fn chunk_len(remaining: u64, buffer_bytes: usize) -> usize {
    usize::try_from(remaining).map_or(buffer_bytes, |r| r.min(buffer_bytes))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::coding::put_u32;
    use crate::fs::{FileSystem, RealFs};
    use crate::wal::LogWriter;

    /// Deterministic, incompressible-looking bytes (xorshift64).
    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn payloads(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| pseudo_random(i as u64 + 1, n))
            .collect()
    }

    /// Writes `payloads` as a new log at `path`; returns each record's offset.
    fn write_log(path: &Path, payloads: &[Vec<u8>]) -> Vec<u64> {
        let mut w = LogWriter::new(RealFs.create(path).unwrap());
        let offsets = payloads.iter().map(|p| w.add_record(p).unwrap()).collect();
        w.sync().unwrap();
        offsets
    }

    fn overwrite(path: &Path, bytes: &[u8]) {
        let mut f = RealFs.create(path).unwrap();
        f.append(bytes).unwrap();
        f.sync().unwrap();
    }

    /// Records as `(offset, payload)`, in file order.
    type Records = Vec<(u64, Vec<u8>)>;

    /// Every record up to the first `Ok(None)` or error, the error if any, and the reader.
    fn read_log(path: &Path, buffer_bytes: usize) -> (Records, Option<Error>, LogReader) {
        let mut r = LogReader::with_buffer_bytes(RealFs.open(path).unwrap(), buffer_bytes);
        let mut records = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(rec)) => records.push(rec),
                Ok(None) => return (records, None, r),
                Err(e) => return (records, Some(e), r),
            }
        }
    }

    fn expected(offsets: &[u64], payloads: &[Vec<u8>]) -> Records {
        offsets
            .iter()
            .copied()
            .zip(payloads.iter().cloned())
            .collect()
    }

    fn assert_corruption_at(err: Option<Error>, path: &Path, at: u64) {
        match err {
            Some(Error::Corruption { file, offset, what }) => {
                assert_eq!(file, path, "{what}");
                assert_eq!(offset, at, "{what}");
            }
            other => panic!("expected corruption at {at}, got {other:?}"),
        }
    }

    fn log_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("000007.log")
    }

    /// Buffer sizes from the smallest allowed (one header) to the default.
    const BUFFERS: [usize; 4] = [HEADER_BYTES, 40, 4096, READ_BUFFER_BYTES];

    #[test]
    fn strict_reader_reports_a_damaged_final_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let payloads = payloads(&[10, 20, 30]);
        let offsets = write_log(&path, &payloads);
        let clean = std::fs::read(&path).unwrap();
        for at in offsets[2] as usize..clean.len() {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x10;
            overwrite(&path, &bytes);
            let file = RealFs.open(&path).unwrap();
            let mut r = LogReader::strict(file);
            let mut got = Vec::new();
            let err = loop {
                match r.next_record() {
                    Ok(Some(rec)) => got.push(rec),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            assert_eq!(got.len(), 2, "byte {at}");
            assert_corruption_at(err, &path, offsets[2]);
        }
    }

    #[test]
    fn strict_reader_takes_a_cut_short_or_zeroed_tail_for_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let payloads = payloads(&[10, 20, 30]);
        let offsets = write_log(&path, &payloads);
        let clean = std::fs::read(&path).unwrap();
        let mut zeroed = clean.clone();
        zeroed[offsets[2] as usize..].fill(0);
        for bytes in [
            &clean[..clean.len() - 1],
            &clean[..offsets[2] as usize + 5],
            &zeroed[..],
        ] {
            overwrite(&path, bytes);
            let mut r = LogReader::strict(RealFs.open(&path).unwrap());
            assert!(r.next_record().unwrap().is_some());
            assert!(r.next_record().unwrap().is_some());
            assert!(r.next_record().unwrap().is_none());
            assert_eq!(r.valid_len(), offsets[2]);
        }
    }

    #[test]
    fn empty_file_reads_as_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        write_log(&path, &[]);
        let (records, err, r) = read_log(&path, READ_BUFFER_BYTES);
        assert!(records.is_empty());
        assert!(err.is_none());
        assert_eq!((r.valid_len(), r.torn_tail_bytes()), (0, 0));
    }

    #[test]
    fn records_of_sizes_zero_to_several_mib_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let sizes = [
            0,
            1,
            12,
            13,
            14,
            1000,
            READ_BUFFER_BYTES - HEADER_BYTES,
            READ_BUFFER_BYTES - 1,
            READ_BUFFER_BYTES,
            READ_BUFFER_BYTES + 1,
            0,
            3 * READ_BUFFER_BYTES + 7,
            5,
        ];
        let ps = payloads(&sizes);
        let offsets = write_log(&path, &ps);
        let (records, err, r) = read_log(&path, READ_BUFFER_BYTES);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(records, expected(&offsets, &ps));
        assert_eq!(r.valid_len(), RealFs.open(&path).unwrap().len());
        assert_eq!(r.torn_tail_bytes(), 0);
    }

    #[test]
    fn records_straddling_read_buffers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let sizes: Vec<usize> = (0..600).map(|i| (i * 7919) % 300).chain([10_000]).collect();
        let ps = payloads(&sizes);
        let offsets = write_log(&path, &ps);
        for buffer in BUFFERS {
            let (records, err, _) = read_log(&path, buffer);
            assert!(err.is_none(), "buffer {buffer}: {err:?}");
            assert_eq!(records, expected(&offsets, &ps), "buffer {buffer}");
        }
    }

    #[test]
    fn truncated_trailing_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[10, 0, 70, 100]);
        let offsets = write_log(&path, &ps);
        let full = RealFs.read_all(&path).unwrap();
        let last = offsets[3];
        for cut in last..full.len() as u64 {
            overwrite(&path, &full[..cut as usize]);
            for buffer in BUFFERS {
                let (records, err, r) = read_log(&path, buffer);
                assert!(err.is_none(), "cut {cut} buffer {buffer}: {err:?}");
                assert_eq!(records, expected(&offsets[..3], &ps[..3]), "cut {cut}");
                assert_eq!(r.valid_len(), last);
                assert_eq!(r.torn_tail_bytes(), cut - last);
            }
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[5, 50, 500]);
        let offsets = write_log(&path, &ps);
        let mut bytes = RealFs.read_all(&path).unwrap();
        let valid = bytes.len() as u64;
        for zeros in [1, 12, 13, 14, 4096, READ_BUFFER_BYTES + 5] {
            bytes.truncate(valid as usize);
            bytes.resize(valid as usize + zeros, 0);
            overwrite(&path, &bytes);
            for buffer in [HEADER_BYTES, 4096, READ_BUFFER_BYTES] {
                let (records, err, r) = read_log(&path, buffer);
                assert!(err.is_none(), "zeros {zeros}: {err:?}");
                assert_eq!(records, expected(&offsets, &ps));
                assert_eq!(r.valid_len(), valid);
                assert_eq!(r.torn_tail_bytes(), zeros as u64);
            }
        }
    }

    #[test]
    fn garbage_after_the_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[5, 50, 500]);
        let offsets = write_log(&path, &ps);
        let clean = RealFs.read_all(&path).unwrap();
        for (seed, len) in [(1, 1), (2, 13), (3, 100), (4, 5000), (5, 2 << 20)] {
            let mut bytes = clean.clone();
            bytes.extend(pseudo_random(seed + 1000, len));
            overwrite(&path, &bytes);
            let (records, err, r) = read_log(&path, READ_BUFFER_BYTES);
            assert!(err.is_none(), "garbage {len}: {err:?}");
            assert_eq!(records, expected(&offsets, &ps));
            assert_eq!(r.valid_len(), clean.len() as u64);
            assert_eq!(r.torn_tail_bytes(), len as u64);
        }
    }

    #[test]
    fn flipping_a_byte_in_a_middle_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20, 40, 30]);
        let offsets = write_log(&path, &ps);
        let clean = RealFs.read_all(&path).unwrap();
        for i in offsets[1]..offsets[2] {
            for mask in [0x01, 0x80, 0xff] {
                let mut bytes = clean.clone();
                bytes[i as usize] ^= mask;
                overwrite(&path, &bytes);
                for buffer in [HEADER_BYTES, 64, READ_BUFFER_BYTES] {
                    let (records, err, r) = read_log(&path, buffer);
                    assert_eq!(records, expected(&offsets[..1], &ps[..1]), "byte {i}");
                    assert_corruption_at(err, &path, offsets[1]);
                    assert_eq!(r.valid_len(), offsets[1]);
                    assert_eq!(r.torn_tail_bytes(), 0);
                }
            }
        }
    }

    #[test]
    fn damaged_length_in_a_middle_record_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20, 40, 30, 10]);
        let offsets = write_log(&path, &ps);
        let clean = RealFs.read_all(&path).unwrap();
        let length_field = offsets[1] as usize + 4;
        // Past the end of the file, over the limit, into the next record, and zero.
        for length in [u32::MAX, MAX_PAYLOAD_BYTES + 1, 1 << 20, 45, 0] {
            let mut bytes = clean.clone();
            let mut field = Vec::new();
            put_u32(&mut field, length);
            bytes[length_field..length_field + 4].copy_from_slice(&field);
            overwrite(&path, &bytes);
            let (records, err, _) = read_log(&path, READ_BUFFER_BYTES);
            assert_eq!(records, expected(&offsets[..1], &ps[..1]));
            assert_corruption_at(err, &path, offsets[1]);
        }
    }

    #[test]
    fn damaged_final_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20, 40, 30]);
        let offsets = write_log(&path, &ps);
        let clean = RealFs.read_all(&path).unwrap();
        for i in offsets[2]..clean.len() as u64 {
            let mut bytes = clean.clone();
            bytes[i as usize] ^= 0x10;
            overwrite(&path, &bytes);
            let (records, err, r) = read_log(&path, 64);
            assert!(err.is_none(), "byte {i}: {err:?}");
            assert_eq!(records, expected(&offsets[..2], &ps[..2]));
            assert_eq!(r.valid_len(), offsets[2]);
            assert_eq!(r.torn_tail_bytes(), clean.len() as u64 - offsets[2]);
        }
    }

    #[test]
    fn damage_followed_only_by_damaged_records_is_a_torn_tail() {
        // Several unsynced records can all be lost in a crash; none of them is a valid record
        // after the first damage, so nothing proves the damage is in the middle.
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20, 40, 30, 25]);
        let offsets = write_log(&path, &ps);
        let mut bytes = RealFs.read_all(&path).unwrap();
        bytes[offsets[2] as usize + 20] ^= 1;
        bytes[offsets[3] as usize + 2] ^= 1;
        overwrite(&path, &bytes);
        let (records, err, r) = read_log(&path, READ_BUFFER_BYTES);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(records, expected(&offsets[..2], &ps[..2]));
        assert_eq!(r.valid_len(), offsets[2]);
    }

    #[test]
    fn whole_record_of_unknown_kind_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20]);
        let offsets = write_log(&path, &ps);
        let mut bytes = RealFs.read_all(&path).unwrap();
        // A final record with kind 9 and both CRCs valid: whole, so not a torn tail.
        let payload = b"from a newer version";
        let mut rest = Vec::new();
        put_u32(&mut rest, payload.len() as u32);
        rest.push(9);
        put_u32(&mut rest, crc32fast::hash(payload));
        put_u32(&mut bytes, crc32fast::hash(&rest));
        bytes.extend_from_slice(&rest);
        bytes.extend_from_slice(payload);
        overwrite(&path, &bytes);
        let (records, err, _) = read_log(&path, READ_BUFFER_BYTES);
        assert_eq!(records, expected(&offsets, &ps));
        assert_corruption_at(err, &path, offsets[0] + HEADER_BYTES_U64 + 20);
    }

    #[test]
    fn payload_that_embeds_a_record_does_not_turn_a_torn_tail_into_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        // The last payload carries a whole encoded log (a value holding a copy of a log file).
        let inner_path = dir.path().join("inner.log");
        write_log(&inner_path, &payloads(&[30, 30]));
        let mut last = pseudo_random(99, 40);
        last.extend(RealFs.read_all(&inner_path).unwrap());
        last.extend(pseudo_random(98, 40));
        let ps = vec![pseudo_random(1, 10), last];
        let offsets = write_log(&path, &ps);
        let clean = RealFs.read_all(&path).unwrap();
        // Cut short after the embedded records: the header is intact and runs past the end.
        let cut = clean.len() - 20;
        overwrite(&path, &clean[..cut]);
        let (records, err, r) = read_log(&path, READ_BUFFER_BYTES);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(records, expected(&offsets[..1], &ps[..1]));
        assert_eq!(r.torn_tail_bytes(), cut as u64 - offsets[1]);
        // The file's length was recorded but the payload's last page never written.
        let mut zeroed = clean.clone();
        let len = zeroed.len();
        zeroed[len - 20..].fill(0);
        overwrite(&path, &zeroed);
        let (records, err, r) = read_log(&path, READ_BUFFER_BYTES);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(records, expected(&offsets[..1], &ps[..1]));
        assert_eq!(r.valid_len(), offsets[1]);
    }

    #[test]
    fn search_that_would_hash_far_more_than_the_file_is_corruption() {
        // Adversarial tail: a header with a valid CRC at every 13th byte, each claiming the
        // rest of the file with a wrong payload CRC. Hashing every claim would be quadratic.
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20]);
        let offsets = write_log(&path, &ps);
        let mut bytes = RealFs.read_all(&path).unwrap();
        bytes.push(0xAA); // the damaged byte the reader stops at
        let fakes = 2000u32;
        for k in 0..fakes {
            let mut rest = Vec::new();
            put_u32(&mut rest, (fakes - k - 1) * HEADER_BYTES as u32);
            rest.push(RecordKind::Full as u8);
            put_u32(&mut rest, 0xDEAD_BEEF);
            put_u32(&mut bytes, crc32fast::hash(&rest));
            bytes.extend_from_slice(&rest);
        }
        overwrite(&path, &bytes);
        let (records, err, _) = read_log(&path, 64);
        assert_eq!(records, expected(&offsets, &ps));
        let err = err.unwrap();
        assert!(
            err.to_string().contains("too many record-like headers"),
            "{err}"
        );
        assert_corruption_at(Some(err), &path, offsets[0] + HEADER_BYTES_U64 + 20);
    }

    #[test]
    fn reader_does_not_advance_past_corruption_or_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let ps = payloads(&[20, 20, 20]);
        let offsets = write_log(&path, &ps);
        let clean = RealFs.read_all(&path).unwrap();
        let mut bytes = clean.clone();
        bytes[offsets[1] as usize + 15] ^= 1;
        overwrite(&path, &bytes);
        let mut r = LogReader::new(RealFs.open(&path).unwrap());
        assert_eq!(r.next_record().unwrap(), Some((0, ps[0].clone())));
        assert!(r.next_record().unwrap_err().is_corruption());
        assert!(r.next_record().unwrap_err().is_corruption());
        assert_eq!(r.valid_len(), offsets[1]);

        overwrite(&path, &clean[..clean.len() - 1]);
        let mut r = LogReader::new(RealFs.open(&path).unwrap());
        for _ in 0..2 {
            r.next_record().unwrap().unwrap();
        }
        assert_eq!(r.next_record().unwrap(), None);
        assert_eq!(r.next_record().unwrap(), None);
        assert_eq!(r.torn_tail_bytes(), clean.len() as u64 - 1 - offsets[2]);
    }
}
