//! [`TableBuilder`]: writes a sorted table from entries added in internal order.
//!
//! Blocks are written as they fill: data blocks (each closed once it reaches
//! `block_size_bytes`), then at [`TableBuilder::finish`] the filter block, the range-tombstone
//! block, the index block and the footer, in that order (`docs/format/table.md`).
//!
//! Invariants: entries arrive in strictly increasing internal order (checked on every add in
//! every build: an out-of-order table would silently lose data, and the check is one key
//! comparison); tombstones carry empty values; no block exceeds `MAX_BLOCK_SIZE_BYTES`.
//! After any error the builder is spent: later calls return `Error::Poisoned` and the caller
//! deletes the partial file.
//!
//! Thread safety: a builder has one owner (`Send`, not shared).
//!
//! Read next: `reader.rs`.

use std::cmp::Ordering;

use bytes::Bytes;

use super::block::{BlockBuilder, DEFAULT_RESTART_BYTES, DEFAULT_RESTART_INTERVAL};
use super::bloom::BloomBuilder;
use super::format::{self, BlockHandle, BlockType, Footer, FormatVersion, MAX_BLOCK_SIZE_BYTES};
use crate::error::{Error, Result};
use crate::fs::WritableFile;
use crate::key::{self, InternalKey, RangeTombstone, SeqNo, ValueKind};

/// How tables are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableOptions {
    /// A data block is closed once its contents reach this size. Default = 4096.
    pub block_size_bytes: usize,
    /// A data block starts a restart point (a key stored whole) every this many entries.
    /// Default = 16.
    pub restart_interval: usize,
    /// A data block also starts a restart point once this many bytes of entries follow the
    /// last one. Default = 512, so that a point read's scan from its restart point touches a
    /// few cache lines even when sixteen entries would span two kilobytes; it costs small
    /// entries some prefix compression (about 2 % more bytes with 100-byte values).
    pub restart_bytes: usize,
    /// Bloom filter bits per distinct user key; 0 writes a filter that matches everything.
    /// Default = 10 (about 1 % false positives).
    pub bloom_bits_per_key: u32,
    /// The format version written. Default = [`FormatVersion::CURRENT`]; an older one only
    /// for the tests that show older tables still read.
    pub format_version: FormatVersion,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            block_size_bytes: 4096,
            restart_interval: DEFAULT_RESTART_INTERVAL,
            restart_bytes: DEFAULT_RESTART_BYTES,
            bloom_bits_per_key: 10,
            format_version: FormatVersion::CURRENT,
        }
    }
}

/// What a finished table holds, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableSummary {
    /// The file's size.
    pub size_bytes: u64,
    /// Point entries (puts and deletes).
    pub entries: u64,
    /// Range tombstones.
    pub tombstones: u64,
    /// The user key of the first point entry.
    pub first_key: Option<Bytes>,
    /// The user key of the last point entry.
    pub last_key: Option<Bytes>,
    /// The highest sequence number of any entry or tombstone (0 for an empty table).
    pub max_seq: SeqNo,
}

/// Writes one table file.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    file: Box<dyn WritableFile>,
    block_size_bytes: usize,
    data: BlockBuilder,
    /// Index entries: every key is stored whole, so a reader can binary-search them all.
    index: BlockBuilder,
    filter: BloomBuilder,
    version: FormatVersion,
    tombstones: Vec<RangeTombstone>,
    /// The last key added, in on-disk form; empty before the first add.
    last_key: Vec<u8>,
    first_user_key: Option<Bytes>,
    last_user_key: Option<Bytes>,
    entries: u64,
    max_seq: SeqNo,
    poisoned: bool,
}

impl TableBuilder {
    /// A builder writing to `file`, which must be empty.
    #[must_use]
    pub fn new(file: Box<dyn WritableFile>, options: &TableOptions) -> Self {
        debug_assert!(file.is_empty());
        Self {
            file,
            block_size_bytes: options.block_size_bytes.clamp(1, MAX_BLOCK_SIZE_BYTES / 2),
            data: BlockBuilder::new(options.restart_interval)
                .with_restart_bytes(options.restart_bytes),
            index: BlockBuilder::new(1),
            filter: BloomBuilder::new(options.bloom_bits_per_key),
            version: options.format_version,
            tombstones: Vec::new(),
            last_key: Vec::new(),
            first_user_key: None,
            last_user_key: None,
            entries: 0,
            max_seq: SeqNo(0),
            poisoned: false,
        }
    }

    /// Adds a version of a key. `Delete` entries must have empty values.
    ///
    /// # Errors
    /// `InvalidArgument` if `key` does not sort after the previous key, a tombstone has a
    /// value, the sequence number exceeds `SeqNo::MAX`, or the entry alone exceeds the block
    /// size limit (the builder stays usable); `Io` if a block write fails (the builder is
    /// then spent); `Poisoned` after an earlier I/O error.
    pub fn add(&mut self, key: &InternalKey, value: &[u8]) -> Result<()> {
        self.check_usable()?;
        self.check_entry(key, value)?;
        let entry_bound =
            BlockBuilder::entry_size_bound_bytes(&key.user_key, value) + format::KEY_TRAILER_BYTES;
        if !self.data.is_empty()
            && self.data.size_estimate_bytes() + entry_bound > MAX_BLOCK_SIZE_BYTES
        {
            self.flush_data_block()?;
        }
        if self.last_user_key.as_ref() != Some(&key.user_key) {
            self.filter.add_key(&key.user_key);
            self.last_user_key = Some(key.user_key.clone());
        }
        if self.first_user_key.is_none() {
            self.first_user_key = Some(key.user_key.clone());
        }
        self.last_key.clear();
        format::encode_internal_key(&mut self.last_key, &key.user_key, key.seq, key.kind);
        self.data.add(&self.last_key, value);
        self.entries += 1;
        self.max_seq = self.max_seq.max(key.seq);
        if self.data.size_estimate_bytes() >= self.block_size_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn check_entry(&self, key: &InternalKey, value: &[u8]) -> Result<()> {
        if key.seq > SeqNo::MAX {
            return Err(Error::invalid(format!(
                "sequence number {} too large",
                key.seq
            )));
        }
        if key.kind == ValueKind::Delete && !value.is_empty() {
            return Err(Error::invalid("a tombstone cannot carry a value"));
        }
        let entry_bound = BlockBuilder::entry_size_bound_bytes(&key.user_key, value)
            + format::KEY_TRAILER_BYTES
            + 8;
        if entry_bound > MAX_BLOCK_SIZE_BYTES {
            return Err(Error::invalid(format!(
                "entry of {} bytes exceeds the table block limit {MAX_BLOCK_SIZE_BYTES}",
                key.user_key.len() + value.len()
            )));
        }
        if let Some((prev_key, prev_seq, _)) = format::decode_internal_key(&self.last_key) {
            let order = key::compare_internal(prev_key, prev_seq, &key.user_key, key.seq);
            if order != Ordering::Less {
                return Err(Error::invalid(format!(
                    "table entries out of order: {key:?} after {:?}@{prev_seq}",
                    prev_key.escape_ascii().to_string()
                )));
            }
        }
        Ok(())
    }

    /// Adds a range tombstone; tombstones may come in any order and are stored as given.
    pub fn add_range_tombstone(&mut self, tombstone: &RangeTombstone) {
        debug_assert!(tombstone.seq <= SeqNo::MAX);
        self.max_seq = self.max_seq.max(tombstone.seq);
        self.tombstones.push(tombstone.clone());
    }

    /// The size the file would have if finished now (roughly: metadata is estimated).
    #[must_use]
    pub fn estimated_size_bytes(&self) -> u64 {
        let tombstone_bytes: usize = self
            .tombstones
            .iter()
            .map(|t| t.start.len() + t.end.as_ref().map_or(0, Bytes::len) + 12)
            .sum();
        let pending = self.data.size_estimate_bytes()
            + self.index.size_estimate_bytes()
            + self.filter.size_estimate_bytes()
            + tombstone_bytes
            + 4 * format::BLOCK_TRAILER_BYTES
            + format::FOOTER_BYTES;
        self.file.len() + pending as u64
    }

    #[cfg(test)]
    /// True if neither an entry nor a tombstone was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries == 0 && self.tombstones.is_empty()
    }

    /// Writes the remaining blocks and the footer, then syncs the file.
    ///
    /// # Errors
    /// `Io` if a write or the sync fails; `InvalidArgument` if a metadata block would exceed
    /// the block size limit; `Poisoned` after an earlier I/O error.
    pub fn finish(mut self) -> Result<TableSummary> {
        self.check_usable()?;
        if !self.data.is_empty() {
            self.flush_data_block()?;
        }
        let version = self.version;
        let filter = self.filter.finish(version.filter_layout());
        let filter = self.write_block(&filter, BlockType::Filter)?;
        let range_del = format::encode_range_tombstones(&self.tombstones);
        let range_del = self.write_block(&range_del, BlockType::RangeDel)?;
        let index = self.index.finish();
        let index = self.write_block(&index, BlockType::Index)?;
        let footer = Footer {
            index,
            filter,
            range_del,
            version,
        };
        self.file.append(&footer.encode())?;
        self.file.sync()?;
        Ok(TableSummary {
            size_bytes: self.file.len(),
            entries: self.entries,
            tombstones: self.tombstones.len() as u64,
            first_key: self.first_user_key,
            last_key: self.last_user_key,
            max_seq: self.max_seq,
        })
    }

    fn flush_data_block(&mut self) -> Result<()> {
        debug_assert!(!self.data.is_empty());
        let contents = self.data.finish();
        let handle = self.write_block(&contents, BlockType::Data)?;
        let mut encoded = Vec::new();
        handle.encode_varint(&mut encoded);
        // The data builder was reset by finish; the block's last key is the last one added.
        self.index.add(&self.last_key, &encoded);
        Ok(())
    }

    fn write_block(&mut self, contents: &[u8], block_type: BlockType) -> Result<BlockHandle> {
        if contents.len() > MAX_BLOCK_SIZE_BYTES {
            self.poisoned = true;
            return Err(Error::invalid(format!(
                "{block_type:?} block of {} bytes exceeds the limit {MAX_BLOCK_SIZE_BYTES}",
                contents.len()
            )));
        }
        let handle = BlockHandle {
            offset: self.file.len(),
            size_bytes: contents.len() as u64,
        };
        let written = self.file.append(contents).and_then(|()| {
            self.file
                .append(&format::block_trailer(contents, block_type))
        });
        if written.is_err() {
            self.poisoned = true;
        }
        written.map(|()| handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSystem, RealFs};

    fn put(key: &'static str, seq: u64) -> InternalKey {
        InternalKey::new(
            Bytes::from_static(key.as_bytes()),
            SeqNo(seq),
            ValueKind::Put,
        )
    }

    fn builder(dir: &tempfile::TempDir, options: &TableOptions) -> TableBuilder {
        TableBuilder::new(RealFs.create(&dir.path().join("t.sst")).unwrap(), options)
    }

    #[test]
    fn out_of_order_entries_are_rejected_and_the_builder_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder(&dir, &TableOptions::default());
        b.add(&put("b", 5), b"x").unwrap();
        for bad in [put("a", 9), put("b", 5), put("b", 6)] {
            assert!(matches!(b.add(&bad, b"y"), Err(Error::InvalidArgument(_))));
        }
        b.add(&put("b", 4), b"z").unwrap();
        assert_eq!(b.finish().unwrap().entries, 2);
    }

    #[test]
    fn tombstone_with_a_value_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder(&dir, &TableOptions::default());
        let key = InternalKey::new(Bytes::from_static(b"a"), SeqNo(1), ValueKind::Delete);
        assert!(matches!(b.add(&key, b"v"), Err(Error::InvalidArgument(_))));
        b.add(&key, b"").unwrap();
    }

    #[test]
    fn summary_reports_keys_counts_and_max_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder(&dir, &TableOptions::default());
        assert!(b.is_empty());
        b.add_range_tombstone(&RangeTombstone {
            start: Bytes::from_static(b"q"),
            end: None,
            seq: SeqNo(90),
        });
        assert!(!b.is_empty());
        b.add(&put("c", 7), b"1").unwrap();
        b.add(&put("c", 3), b"2").unwrap();
        b.add(&put("e", 100), b"3").unwrap();
        let s = b.finish().unwrap();
        assert_eq!((s.entries, s.tombstones, s.max_seq), (3, 1, SeqNo(100)));
        assert_eq!(s.first_key.as_deref(), Some(&b"c"[..]));
        assert_eq!(s.last_key.as_deref(), Some(&b"e"[..]));
        assert_eq!(
            s.size_bytes,
            std::fs::metadata(dir.path().join("t.sst")).unwrap().len()
        );
    }

    #[test]
    fn estimated_size_is_close_to_the_finished_size() {
        let dir = tempfile::tempdir().unwrap();
        let options = TableOptions {
            block_size_bytes: 256,
            ..TableOptions::default()
        };
        let mut b = builder(&dir, &options);
        let mut previous = b.estimated_size_bytes();
        for i in 0..2000u32 {
            let key = Bytes::from(format!("key{i:06}"));
            b.add(&InternalKey::new(key, SeqNo(1), ValueKind::Put), &[7; 20])
                .unwrap();
            let estimate = b.estimated_size_bytes();
            assert!(estimate >= previous);
            previous = estimate;
        }
        let size = b.finish().unwrap().size_bytes;
        assert!(
            previous.abs_diff(size) < size / 20,
            "estimate {previous}, size {size}"
        );
    }
}
