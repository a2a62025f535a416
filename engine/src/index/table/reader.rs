//! [`Table`]: an open table file, and [`TableIter`], a double-ended iterator over it.
//!
//! Opening reads the footer, then the filter, range-tombstone and index blocks, and keeps
//! them in memory; data blocks are read on demand through the shared [`BlockCache`]. Open
//! checks the whole layout: the footer's magic, CRC and version; that the metadata blocks lie
//! back to back before the footer; and that the index's data blocks tile the file from
//! offset 0 up to the filter block. After that every data block handle is known to be in
//! bounds, so a damaged data block can only fail its CRC or decoding (`Corruption`).
//!
//! Thread safety: a `Table` is immutable after open and `Send + Sync` (shared as
//! `Arc<Table>`); concurrent readers of one block may both read it, and the cache keeps one.
//! A `TableIter` has one owner and holds the table alive through its `Arc`.
//!
//! Read next: `docs/format/table.md`.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::block::{Block, BlockEntries, common_prefix_len};
use super::bloom::BloomFilter;
use super::cache::BlockCache;
use super::format::{self, BlockHandle, BlockType, FOOTER_BYTES, Footer, FormatVersion};
use crate::coding::Decoder;
use crate::error::{Error, Result};
use crate::fs::ReadableFile;
use crate::index::obsolete::ObsoleteFiles;
use crate::key::{self, Entry, EntryRef, Found, InternalKey, RangeTombstone, SeqNo, ValueKind};

/// Whether a read may do I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// Read missing blocks from the file.
    Blocking,
    /// Never do I/O: if a needed block is not cached, fail with `Error::WouldBlock`.
    CacheOnly,
}

/// One index entry: a data block and the last internal key in it.
#[derive(Debug)]
struct IndexEntry {
    last_key: InternalKey,
    handle: BlockHandle,
}

/// An open table file.
pub(crate) struct Table {
    /// The open file; `None` only inside `drop`, which hands it to `retired`.
    file: Option<Arc<dyn ReadableFile>>,
    /// Set once a version edit removed the table: its drop hands the file to this queue to be
    /// closed and deleted (`index/obsolete.rs`), wherever the last reference goes.
    retired: OnceLock<Arc<ObsoleteFiles>>,
    id: u64,
    path: PathBuf,
    size_bytes: u64,
    cache: Arc<BlockCache>,
    /// Data blocks in file (and key) order.
    index: Vec<IndexEntry>,
    /// The index's keys, arranged for the binary search of [`Table::block_for`].
    search: IndexSearch,
    filter: BloomFilter,
    range_tombstones: Vec<RangeTombstone>,
    version: FormatVersion,
}

impl Drop for Table {
    fn drop(&mut self) {
        // The handle is moved, not cloned: the queue's is then the last one, and whichever
        // thread empties the queue closes the file, never this one.
        if let Some(obsolete) = self.retired.take()
            && let Some(file) = self.file.take()
        {
            obsolete.retire(std::mem::take(&mut self.path), file);
        }
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("size_bytes", &self.size_bytes)
            .field("data_blocks", &self.index.len())
            .field("range_tombstones", &self.range_tombstones.len())
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Reads and checks the footer, index, filter and range-tombstone blocks (kept in
    /// memory). `id` names the table in `cache` and must be unique among open tables.
    ///
    /// # Errors
    /// `Corruption` if any of them is damaged or the layout is inconsistent; `Io` if a read
    /// fails.
    pub fn open(
        file: Arc<dyn ReadableFile>,
        id: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Arc<Table>> {
        let path = file.path().to_path_buf();
        let size_bytes = file.len();
        let Some(footer_offset) = size_bytes.checked_sub(FOOTER_BYTES as u64) else {
            let what = format!("table of {size_bytes} bytes is shorter than its footer");
            return Err(Error::corruption(&path, 0, what));
        };
        let mut buf = vec![0; FOOTER_BYTES];
        file.read_exact_at(footer_offset, &mut buf)?;
        let footer = Footer::decode(&buf, &path, footer_offset)?;
        check_metadata_layout(&path, &footer, footer_offset)?;
        let read = |handle, block_type| {
            format::read_block(file.as_ref(), &path, handle, block_type, footer_offset)
        };
        let filter = read(footer.filter, BlockType::Filter)?;
        let layout = footer.version.filter_layout();
        let filter = BloomFilter::decode(filter, layout, &path, footer.filter.offset)?;
        let range_del = read(footer.range_del, BlockType::RangeDel)?;
        let range_tombstones =
            format::decode_range_tombstones(&range_del, &path, footer.range_del.offset)?;
        let index = read(footer.index, BlockType::Index)?;
        let index = Block::new(index, &path, footer.index.offset)?;
        let index = decode_index(&index, &path, footer.index.offset, footer.filter.offset)?;
        let search = IndexSearch::new(&index);
        Ok(Arc::new(Table {
            search,
            file: Some(file),
            retired: OnceLock::new(),
            id,
            path,
            size_bytes,
            cache,
            index,
            filter,
            range_tombstones,
            version: footer.version,
        }))
    }

    /// [`Self::get_hashed`], hashing `user_key` itself.
    ///
    /// # Errors
    /// As [`Self::get_hashed`].
    #[cfg(any(test, feature = "benching", feature = "fuzzing"))]
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo, mode: ReadMode) -> Result<Option<Found>> {
        self.get_hashed(user_key, super::bloom_hash(user_key), snapshot, mode)
    }

    /// The newest version of `user_key` with `seq <= snapshot` (a put or a point tombstone),
    /// consulting the bloom filter first with `hash`, the key's `bloom_hash`: a read that tries
    /// many tables hashes its key once. Range tombstones are not applied here: the caller gets
    /// them from [`Table::range_tombstones`].
    ///
    /// # Errors
    /// `WouldBlock` in `CacheOnly` mode if the data block is not cached; `Corruption` if it
    /// is damaged or disagrees with the index; `Io` if the read fails.
    pub fn get_hashed(
        &self,
        user_key: &[u8],
        hash: u64,
        snapshot: SeqNo,
        mode: ReadMode,
    ) -> Result<Option<Found>> {
        if !self.filter.may_contain_hash(hash) {
            return Ok(None);
        }
        let i = self.block_for(user_key, snapshot);
        let Some(index_entry) = self.index.get(i) else {
            return Ok(None);
        };
        let block = self.data_block(index_entry.handle, mode)?;
        match block.seek(&self.path, user_key, snapshot)? {
            Some(hit) if hit.user_key_matches => Ok(Some(Found {
                seq: hit.seq,
                kind: hit.kind,
                value: hit.value,
            })),
            Some(_) => Ok(None),
            // The index promised a key at or after the target in this block.
            None => Err(Error::corruption(
                &self.path,
                index_entry.handle.offset,
                "data block ends before its index key",
            )),
        }
    }

    /// The table's range tombstones, in the order they were added.
    #[must_use]
    pub fn range_tombstones(&self) -> &[RangeTombstone] {
        &self.range_tombstones
    }

    /// All versions whose user key lies within the bounds, in internal order; data blocks are
    /// read lazily, through the cache, as the iterator reaches them.
    #[must_use]
    pub fn iter(self: &Arc<Self>, lower: Bound<Bytes>, upper: Bound<Bytes>) -> TableIter {
        TableIter::new(Arc::clone(self), lower, upper, BlockSource::Cache)
    }

    /// Every version, in internal order, with data blocks read from the file and not kept in
    /// the cache: for passes over whole tables (compaction, accounting checks), which would
    /// otherwise evict the blocks point reads and scans are using for blocks read once.
    #[must_use]
    pub fn iter_past_cache(self: &Arc<Self>) -> TableIter {
        TableIter::new(
            Arc::clone(self),
            Bound::Unbounded,
            Bound::Unbounded,
            BlockSource::File,
        )
    }

    /// Reads every data block from the file (bypassing the cache), checking CRCs, key order
    /// within and across blocks, that each block ends with its index key, and that the filter
    /// matches every key.
    ///
    /// # Errors
    /// `Corruption` naming the first damage found; `Io` if a read fails.
    pub fn verify(&self) -> Result<u64> {
        let mut entries = 0;
        for (i, index_entry) in self.index.iter().enumerate() {
            let block = self.read_data_block(index_entry.handle)?;
            for entry in self.checked_entries(i, &block)? {
                if !self.filter.may_contain(&entry.key.user_key) {
                    let what = format!("bloom filter misses key {:?}", entry.key);
                    return Err(Error::corruption(
                        &self.path,
                        index_entry.handle.offset,
                        what,
                    ));
                }
                entries += 1;
            }
        }
        Ok(entries)
    }

    #[cfg(test)]
    /// The id the table was opened with.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The path of the table's file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version the table was written in.
    #[must_use]
    pub fn format_version(&self) -> FormatVersion {
        self.version
    }

    /// Marks the table obsolete: when its last reference is dropped, its file goes to
    /// `obsolete` to be closed and deleted there.
    pub fn retire(&self, obsolete: &Arc<ObsoleteFiles>) {
        let _ = self.retired.set(Arc::clone(obsolete));
    }

    #[cfg(test)]
    /// The size of the table's file.
    #[must_use]
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The first data block whose last key is at or after `user_key@seq`: the only block
    /// that can hold the first entry at or after it. `index.len()` if there is none.
    fn block_for(&self, user_key: &[u8], seq: SeqNo) -> usize {
        let (lo, hi) = self.search.narrow(user_key);
        lo + self
            .index
            .get(lo..hi)
            .unwrap_or_default()
            .partition_point(|e| {
                key::compare_internal(&e.last_key.user_key, e.last_key.seq, user_key, seq)
                    == Ordering::Less
            })
    }

    fn data_block_from(&self, handle: BlockHandle, source: BlockSource) -> Result<Block> {
        match source {
            BlockSource::Cache => self.data_block(handle, ReadMode::Blocking),
            BlockSource::File => self.read_data_block(handle),
        }
    }

    fn data_block(&self, handle: BlockHandle, mode: ReadMode) -> Result<Block> {
        if let Some(block) = self.cache.get(self.id, handle.offset) {
            return Ok(block);
        }
        if mode == ReadMode::CacheOnly {
            return Err(Error::WouldBlock);
        }
        let block = self.read_data_block(handle)?;
        self.cache.insert(self.id, handle.offset, block.clone());
        Ok(block)
    }

    fn read_data_block(&self, handle: BlockHandle) -> Result<Block> {
        let limit = self.size_bytes.saturating_sub(FOOTER_BYTES as u64);
        let file = self
            .file
            .as_deref()
            .ok_or_else(|| Error::invalid("table read after its file was closed"))?;
        let data = format::read_block(file, &self.path, handle, BlockType::Data, limit)?;
        Block::new(data, &self.path, handle.offset)
    }

    /// Decodes data block `i` whole and checks it against the index (`check_block`).
    fn checked_entries(&self, i: usize, block: &Block) -> Result<Vec<Entry>> {
        let entries = block.entries(&self.path)?;
        let valued_tombstone = entries
            .iter()
            .any(|e| e.key.kind == ValueKind::Delete && !e.value.is_empty());
        self.check_block(
            i,
            entries.first().map(Entry::borrowed),
            entries.last().map(Entry::borrowed),
            valued_tombstone,
        )?;
        Ok(entries)
    }

    /// Decodes data block `i` into `out`, from the last restart point before `seek` if given,
    /// and checks it against the index (`check_block`; a block decoded from a restart point
    /// past its start must still come after the previous block).
    fn decode_checked(
        &self,
        i: usize,
        block: &Block,
        seek: Option<&[u8]>,
        out: &mut BlockEntries,
    ) -> Result<()> {
        match seek {
            Some(k) => block.decode_seek_into(&self.path, k, SeqNo::MAX, out)?,
            None => block.decode_into(&self.path, out)?,
        }
        let valued_tombstone = (0..out.len())
            .filter_map(|j| out.get(j))
            .any(|e| e.kind == ValueKind::Delete && !e.value.is_empty());
        self.check_block(i, out.get(0), out.last(), valued_tombstone)
    }

    /// Checks decoded data block `i` against the index: not empty, its last key equal to the
    /// index key, its first key after the previous block's last key, and no tombstone
    /// carrying a value.
    fn check_block(
        &self,
        i: usize,
        first: Option<EntryRef<'_>>,
        last: Option<EntryRef<'_>>,
        valued_tombstone: bool,
    ) -> Result<()> {
        let index_entry = self.index.get(i);
        let agrees = match (first, last, index_entry) {
            (Some(first), Some(last), Some(index_entry)) => {
                let previous_last = i.checked_sub(1).and_then(|p| self.index.get(p));
                let after_previous = previous_last.is_none_or(|prev| {
                    let prev = &prev.last_key;
                    key::compare_internal(first.user_key, first.seq, &prev.user_key, prev.seq)
                        .is_gt()
                });
                let ends_at_index_key = last.user_key == index_entry.last_key.user_key
                    && last.seq == index_entry.last_key.seq
                    && last.kind == index_entry.last_key.kind;
                ends_at_index_key && after_previous && !valued_tombstone
            }
            _ => false,
        };
        if !agrees {
            let offset = index_entry.map_or(0, |e| e.handle.offset);
            let what = "data block disagrees with its index entry or holds a valued tombstone";
            return Err(Error::corruption(&self.path, offset, what));
        }
        Ok(())
    }
}

/// The filter, range-tombstone and index blocks must lie back to back, ending at the footer.
fn check_metadata_layout(path: &Path, footer: &Footer, footer_offset: u64) -> Result<()> {
    let order = [footer.filter, footer.range_del, footer.index];
    let mut ends = order.iter().map(BlockHandle::end_with_trailer);
    let next_starts = [footer.range_del.offset, footer.index.offset, footer_offset];
    for (handle, next_start) in order.iter().zip(next_starts) {
        if ends.next().flatten() != Some(next_start) {
            let what = "table footer: metadata blocks are not back to back before the footer";
            return Err(Error::corruption(path, handle.offset, what));
        }
    }
    Ok(())
}

/// Decodes the index block: each value is a data block handle; the blocks must tile the file
/// from 0 to `data_end` in order (key order within the index is checked by `entries`).
/// The user keys of a table's index as a binary search wants them: the prefix they all share,
/// and each key's next 8 bytes as a big-endian word. Searching the words touches a few cache
/// lines of one array, where searching the keys themselves would load an entry and then its
/// key at every step: two cache misses a step on a table that a reader has not used lately
/// (a new one from a flush or a compaction, say).
///
/// Word order follows key order: keys that both start with the shared prefix and whose words
/// differ compare as their words do (a key shorter than the word is padded with zeros, which
/// sort first, as a shorter key does). Equal words say nothing, and the keys decide.
#[derive(Debug)]
struct IndexSearch {
    shared: Bytes,
    words: Vec<u64>,
}

impl IndexSearch {
    fn new(index: &[IndexEntry]) -> Self {
        // Common to every key, not only to the first and the last, so that it holds in a
        // damaged index whose keys are out of order as well.
        let shared = index.first().map_or_else(Bytes::new, |first| {
            let first = &first.last_key.user_key;
            let n = index.iter().fold(first.len(), |n, e| {
                common_prefix_len(first.get(..n).unwrap_or_default(), &e.last_key.user_key)
            });
            first.slice(..n)
        });
        let words = index
            .iter()
            .map(|e| word_after(&e.last_key.user_key, shared.len()))
            .collect();
        Self { shared, words }
    }

    /// Entries `lo..hi` of the index: those before `lo` have user keys below `user_key`, those
    /// from `hi` on above it.
    fn narrow(&self, user_key: &[u8]) -> (usize, usize) {
        let n = self.shared.len();
        // A key shorter than the prefix is either a prefix of it (and below every key) or
        // differs from it within its length.
        match user_key.get(..n).unwrap_or(user_key).cmp(&self.shared) {
            Ordering::Less => (0, 0),
            Ordering::Greater => (self.words.len(), self.words.len()),
            Ordering::Equal => {
                let word = word_after(user_key, n);
                let lo = self.words.partition_point(|&w| w < word);
                let equal = self.words.get(lo..).unwrap_or_default();
                (lo, lo + equal.partition_point(|&w| w == word))
            }
        }
    }
}

/// Bytes `skip..skip + 8` of `key`, zero-padded, as a word whose order is theirs (the first
/// byte the most significant).
fn word_after(key: &[u8], skip: usize) -> u64 {
    let rest = key.get(skip..).unwrap_or_default();
    (0..8).fold(0, |word, i| {
        (word << 8) | u64::from(rest.get(i).copied().unwrap_or(0))
    })
}

fn decode_index(
    block: &Block,
    path: &Path,
    index_offset: u64,
    data_end: u64,
) -> Result<Vec<IndexEntry>> {
    let mut index = Vec::new();
    let mut expected_offset = 0;
    for entry in block.entries(path)? {
        let mut d = Decoder::new(&entry.value, path, index_offset, "index entry");
        let handle = BlockHandle::decode_varint(&mut d)?;
        if !d.is_empty() || handle.offset != expected_offset {
            return Err(d.error("data block handle out of place"));
        }
        format::check_handle(path, handle, data_end, BlockType::Data)?;
        expected_offset = handle.end_with_trailer().unwrap_or(u64::MAX);
        index.push(IndexEntry {
            last_key: entry.key,
            handle,
        });
    }
    if expected_offset != data_end {
        let what = "index: data blocks do not reach the filter block";
        return Err(Error::corruption(path, index_offset, what));
    }
    Ok(index)
}

/// A position of one end of a [`TableIter`]: a data block and, once loaded, its entries.
#[derive(Debug)]
struct IterEnd {
    block: usize,
    entries: Option<Arc<Vec<Entry>>>,
    /// Front: the next entry to yield. Back: one past the next entry to yield.
    pos: usize,
}

/// An iterator over the versions of a table within bounds, in internal order, from either
/// end. The two ends never cross: every entry is yielded once. After an error it yields
/// `None`.
#[derive(Debug)]
pub(crate) struct TableIter {
    table: Arc<Table>,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    source: BlockSource,
    front: IterEnd,
    back: IterEnd,
    done: bool,
}

/// Where a [`TableIter`] gets its data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockSource {
    /// The block cache, which keeps the blocks read.
    Cache,
    /// The file, leaving the cache as it was.
    File,
}

impl TableIter {
    fn new(
        table: Arc<Table>,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        source: BlockSource,
    ) -> Self {
        let blocks = table.index.len();
        let front_block = match &lower {
            Bound::Unbounded => 0,
            Bound::Included(k) => table.block_for(k, SeqNo::MAX),
            Bound::Excluded(k) => table.block_for(k, SeqNo(0)),
        };
        // The block holding the last entry within the upper bound, or the last block.
        let back_block = match &upper {
            Bound::Unbounded => blocks,
            Bound::Included(k) => table.block_for(k, SeqNo(0)),
            Bound::Excluded(k) => table.block_for(k, SeqNo::MAX),
        };
        let back_block = back_block.min(blocks.saturating_sub(1));
        Self {
            done: front_block >= blocks,
            table,
            lower,
            upper,
            source,
            front: IterEnd {
                block: front_block,
                entries: None,
                pos: 0,
            },
            back: IterEnd {
                block: back_block,
                entries: None,
                pos: 0,
            },
        }
    }

    fn above_lower(&self, user_key: &[u8]) -> bool {
        match &self.lower {
            Bound::Unbounded => true,
            Bound::Included(k) => user_key >= &k[..],
            Bound::Excluded(k) => user_key > &k[..],
        }
    }

    fn below_upper(&self, user_key: &[u8]) -> bool {
        match &self.upper {
            Bound::Unbounded => true,
            Bound::Included(k) => user_key <= &k[..],
            Bound::Excluded(k) => user_key < &k[..],
        }
    }

    /// The entries of `block`, shared with the other end if it holds the same block.
    fn load(&self, block: usize, other: &IterEnd) -> Result<Arc<Vec<Entry>>> {
        if other.block == block
            && let Some(entries) = &other.entries
        {
            return Ok(Arc::clone(entries));
        }
        let Some(index_entry) = self.table.index.get(block) else {
            // Cursors stay within the index (see `new` and the crossing checks).
            debug_assert!(false, "block {block} outside the index");
            return Ok(Arc::new(Vec::new()));
        };
        let data = self
            .table
            .data_block_from(index_entry.handle, self.source)?;
        Ok(Arc::new(self.table.checked_entries(block, &data)?))
    }

    fn fail(&mut self, e: Error) -> Option<Result<Entry>> {
        self.done = true;
        Some(Err(e))
    }

    fn finish(&mut self) -> Option<Result<Entry>> {
        self.done = true;
        None
    }
}

impl IterEnd {
    /// Entries of the loaded block (0 if none is loaded).
    fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |entries| entries.len())
    }

    /// Entry `i` of the loaded block, for this end to yield or skip. Each entry is handed to
    /// one end only once (the ends never cross), so when this cursor alone holds the block the
    /// entry is moved out instead of cloned: a scan then costs no reference-count traffic per
    /// entry. When the other end shares the block it is cloned, since the other end holds the
    /// same `Arc` and must not see entries change under it.
    fn take(&mut self, i: usize) -> Option<Entry> {
        let entries = self.entries.as_mut()?;
        match Arc::get_mut(entries) {
            Some(owned) => owned.get_mut(i).map(|e| Entry {
                key: InternalKey::new(std::mem::take(&mut e.key.user_key), e.key.seq, e.key.kind),
                value: std::mem::take(&mut e.value),
            }),
            None => entries.get(i).cloned(),
        }
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.done || self.front.block > self.back.block {
                return self.finish();
            }
            if self.front.entries.is_none() {
                match self.load(self.front.block, &self.back) {
                    Ok(entries) => {
                        self.front.entries = Some(entries);
                        self.front.pos = 0;
                    }
                    Err(e) => return self.fail(e),
                }
            }
            let end = match &self.back.entries {
                Some(_) if self.back.block == self.front.block => self.back.pos,
                _ => self.front.len(),
            };
            let entry = (self.front.pos < end)
                .then(|| self.front.take(self.front.pos))
                .flatten();
            let Some(entry) = entry else {
                if self.front.block >= self.back.block {
                    return self.finish();
                }
                self.front.block += 1;
                self.front.entries = None;
                continue;
            };
            self.front.pos += 1;
            if !self.above_lower(&entry.key.user_key) {
                continue;
            }
            if !self.below_upper(&entry.key.user_key) {
                return self.finish();
            }
            return Some(Ok(entry));
        }
    }
}

impl DoubleEndedIterator for TableIter {
    fn next_back(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.done || self.front.block > self.back.block {
                return self.finish();
            }
            if self.back.entries.is_none() {
                match self.load(self.back.block, &self.front) {
                    Ok(entries) => {
                        self.back.pos = entries.len();
                        self.back.entries = Some(entries);
                    }
                    Err(e) => return self.fail(e),
                }
            }
            let start = match &self.front.entries {
                Some(_) if self.front.block == self.back.block => self.front.pos,
                _ => 0,
            };
            if self.back.pos <= start {
                if self.back.block <= self.front.block {
                    return self.finish();
                }
                self.back.block -= 1;
                self.back.entries = None;
                continue;
            }
            self.back.pos -= 1;
            let Some(entry) = self.back.take(self.back.pos) else {
                return self.finish();
            };
            if !self.below_upper(&entry.key.user_key) {
                continue;
            }
            if !self.above_lower(&entry.key.user_key) {
                return self.finish();
            }
            return Some(Ok(entry));
        }
    }
}

/// A forward walk over a table's versions from a seek target, lending each version in place:
/// data blocks are decoded one at a time into buffers the walk reuses, so a step costs no
/// allocation and no reference count. Blocks are checked against the index as [`TableIter`]
/// checks them. Upper bounds are the caller's to check.
#[derive(Debug)]
pub(crate) struct TableScan {
    table: Arc<Table>,
    /// The data block decoded in `entries`.
    block: usize,
    entries: BlockEntries,
    pos: usize,
}

impl TableScan {
    /// Positioned at the first version at or after `from` (newest version first), or at the
    /// table's first version with `None`.
    ///
    /// # Errors
    /// `Io` or `Corruption` reading the first block.
    pub fn new(table: Arc<Table>, from: Option<&[u8]>) -> Result<Self> {
        let block = from.map_or(0, |k| table.block_for(k, SeqNo::MAX));
        let mut scan = Self {
            table,
            block,
            entries: BlockEntries::default(),
            pos: 0,
        };
        if scan.block < scan.table.index.len() {
            scan.load(from)?;
            if let Some(k) = from {
                scan.pos = scan.entries.lower_bound(k, SeqNo::MAX);
            }
            scan.next_block_if_done()?;
        }
        Ok(scan)
    }

    /// The version the scan is at, if any.
    pub fn current(&self) -> Option<EntryRef<'_>> {
        self.entries.get(self.pos)
    }

    /// Moves to the next version.
    ///
    /// # Errors
    /// `Io` or `Corruption` reading the next block; the scan is then exhausted.
    pub fn advance(&mut self) -> Result<()> {
        self.pos += 1;
        self.next_block_if_done()
    }

    fn next_block_if_done(&mut self) -> Result<()> {
        while self.pos >= self.entries.len() && self.block + 1 < self.table.index.len() {
            self.block += 1;
            self.load(None)?;
        }
        Ok(())
    }

    /// Decodes the current block: all of it, or with a seek target only from the last restart
    /// point before it.
    fn load(&mut self, seek: Option<&[u8]>) -> Result<()> {
        self.entries.clear();
        self.pos = 0;
        let Some(handle) = self.table.index.get(self.block).map(|e| e.handle) else {
            return Ok(());
        };
        let data = self.table.data_block(handle, ReadMode::Blocking)?;
        self.table
            .decode_checked(self.block, &data, seek, &mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::fs::{FileSystem, RealFs};
    use crate::index::table::builder::TableSummary;
    use crate::index::table::{TableBuilder, TableOptions};

    const BIG_CACHE_BYTES: u64 = 64 << 20;

    fn tiny_options() -> TableOptions {
        TableOptions {
            block_size_bytes: 64,
            restart_interval: 2,
            ..TableOptions::default()
        }
    }

    fn user_key(i: usize) -> Bytes {
        Bytes::from(format!("key{i:04}"))
    }

    /// `keys` user keys with 1 to 3 versions each (seqs 3xx, 2xx, 1xx), some of them deletes.
    fn sample(keys: usize) -> Vec<Entry> {
        let mut entries = Vec::new();
        for i in 0..keys {
            for v in 0..=(i % 3) {
                let seq = SeqNo((300 - 100 * v + i % 100) as u64);
                let kind = if (i + v) % 5 == 0 {
                    ValueKind::Delete
                } else {
                    ValueKind::Put
                };
                let value = match kind {
                    ValueKind::Delete => Bytes::new(),
                    ValueKind::Put | ValueKind::Pointer => Bytes::from(format!("value-{i}-{seq}")),
                };
                entries.push(Entry {
                    key: InternalKey::new(user_key(i), seq, kind),
                    value,
                });
            }
        }
        entries
    }

    fn tombstones() -> Vec<RangeTombstone> {
        vec![
            RangeTombstone {
                start: Bytes::from_static(b"key0003"),
                end: Some(Bytes::from_static(b"key0007")),
                seq: SeqNo(250),
            },
            RangeTombstone {
                start: Bytes::from_static(b"zz"),
                end: None,
                seq: SeqNo(400),
            },
        ]
    }

    fn write_table(
        path: &Path,
        entries: &[Entry],
        tombstones: &[RangeTombstone],
        options: &TableOptions,
    ) -> TableSummary {
        let mut builder = TableBuilder::new(RealFs.create(path).unwrap(), options);
        for e in entries {
            builder.add(&e.key, &e.value).unwrap();
        }
        for t in tombstones {
            builder.add_range_tombstone(t);
        }
        builder.finish().unwrap()
    }

    fn open(path: &Path, cache: &Arc<BlockCache>) -> Result<Arc<Table>> {
        Table::open(RealFs.open(path).unwrap(), 1, Arc::clone(cache))
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        entries: Vec<Entry>,
        table: Arc<Table>,
    }

    fn fixture(keys: usize, options: &TableOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.sst");
        let entries = sample(keys);
        write_table(&path, &entries, &tombstones(), options);
        let table = open(&path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        Fixture {
            _dir: dir,
            path,
            entries,
            table,
        }
    }

    /// What `get` must return: the newest version of `key` with `seq <= snapshot`.
    fn model_get(entries: &[Entry], key: &[u8], snapshot: SeqNo) -> Option<Entry> {
        entries
            .iter()
            .find(|e| &e.key.user_key[..] == key && e.key.seq <= snapshot)
            .cloned()
    }

    fn in_bounds(key: &[u8], lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
        let above = match lower {
            Bound::Unbounded => true,
            Bound::Included(k) => key >= &k[..],
            Bound::Excluded(k) => key > &k[..],
        };
        let below = match upper {
            Bound::Unbounded => true,
            Bound::Included(k) => key <= &k[..],
            Bound::Excluded(k) => key < &k[..],
        };
        above && below
    }

    fn bounds() -> Vec<(Bound<Bytes>, Bound<Bytes>)> {
        let points = [
            Bytes::new(),
            user_key(0),
            user_key(17),
            Bytes::from_static(b"key0017x"),
            user_key(42),
            user_key(59),
            Bytes::from_static(b"zzz"),
        ];
        let mut all = Vec::new();
        let bound_kinds = |k: &Bytes| {
            [
                Bound::Included(k.clone()),
                Bound::Excluded(k.clone()),
                Bound::Unbounded,
            ]
        };
        for lo in &points {
            for hi in &points {
                for lower in bound_kinds(lo) {
                    for upper in bound_kinds(hi) {
                        all.push((lower.clone(), upper));
                    }
                }
            }
        }
        all
    }

    /// Owned copies of what a [`TableScan`] from `from` lends, to its end or its first error
    /// (returned with what came before it).
    fn scan(table: &Arc<Table>, from: Option<&[u8]>) -> (Vec<Entry>, Option<Error>) {
        let mut got = Vec::new();
        let mut scan = match TableScan::new(Arc::clone(table), from) {
            Ok(scan) => scan,
            Err(e) => return (got, Some(e)),
        };
        while let Some(e) = scan.current() {
            got.push(Entry {
                key: InternalKey::new(Bytes::copy_from_slice(e.user_key), e.seq, e.kind),
                value: Bytes::copy_from_slice(e.value),
            });
            if let Err(e) = scan.advance() {
                return (got, Some(e));
            }
        }
        (got, None)
    }

    #[test]
    fn scan_from_every_start_lends_the_entries_from_there() {
        let f = fixture(60, &tiny_options());
        let starts = [
            Bytes::new(),
            user_key(0),
            user_key(17),
            Bytes::from_static(b"key0017x"),
            user_key(59),
            Bytes::from_static(b"zzz"),
        ];
        let (all, err) = scan(&f.table, None);
        assert!(err.is_none());
        assert_eq!(all, f.entries);
        for start in &starts {
            let (got, err) = scan(&f.table, Some(start));
            assert!(err.is_none());
            let want: Vec<Entry> = f
                .entries
                .iter()
                .filter(|e| e.key.user_key >= start)
                .cloned()
                .collect();
            assert_eq!(got, want, "from {start:?}");
        }
    }

    #[test]
    fn many_entries_round_trip_over_many_blocks() {
        let f = fixture(500, &tiny_options());
        assert!(f.table.index.len() > 100, "{} blocks", f.table.index.len());
        let read: Vec<Entry> = f
            .table
            .iter(Bound::Unbounded, Bound::Unbounded)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(read, f.entries);
        assert_eq!(f.table.verify().unwrap(), f.entries.len() as u64);
        assert_eq!(f.table.range_tombstones(), &tombstones()[..]);
        assert_eq!(
            f.table.size_bytes(),
            std::fs::metadata(&f.path).unwrap().len()
        );
        assert_eq!(f.table.path(), f.path);
        assert_eq!(f.table.id(), 1);
    }

    #[test]
    fn get_returns_the_right_version_or_tombstone_at_every_snapshot() {
        let f = fixture(200, &tiny_options());
        let snapshots = [0, 99, 100, 101, 150, 199, 200, 250, 299, 300, 350, 399, 400];
        for i in 0..200 {
            let key = user_key(i);
            for s in snapshots.iter().copied().chain([SeqNo::MAX.0, u64::MAX]) {
                let got = f.table.get(&key, SeqNo(s), ReadMode::Blocking).unwrap();
                let want = model_get(&f.entries, &key, SeqNo(s)).map(Found::from);
                assert_eq!(got, want, "{i}@{s}");
            }
        }
        for absent in [&b""[..], b"key", b"key0000x", b"key0199\0", b"zzz"] {
            assert_eq!(
                f.table.get(absent, SeqNo::MAX, ReadMode::Blocking).unwrap(),
                None
            );
        }
    }

    #[test]
    fn values_share_the_cached_block() {
        let f = fixture(20, &tiny_options());
        let a = f
            .table
            .get(b"key0001", SeqNo::MAX, ReadMode::Blocking)
            .unwrap()
            .unwrap();
        let b = f
            .table
            .get(b"key0001", SeqNo::MAX, ReadMode::Blocking)
            .unwrap()
            .unwrap();
        assert!(!a.value.is_empty());
        assert_eq!(a.value.as_ptr(), b.value.as_ptr());
    }

    #[test]
    fn iterator_honours_included_excluded_and_unbounded_bounds_both_ways() {
        let f = fixture(60, &tiny_options());
        for (lower, upper) in bounds() {
            let expected: Vec<Entry> = f
                .entries
                .iter()
                .filter(|e| in_bounds(&e.key.user_key, &lower, &upper))
                .cloned()
                .collect();
            let forward: Vec<Entry> = f
                .table
                .iter(lower.clone(), upper.clone())
                .collect::<Result<_>>()
                .unwrap();
            assert_eq!(forward, expected, "{lower:?}..{upper:?}");
            let mut backward: Vec<Entry> = f
                .table
                .iter(lower.clone(), upper.clone())
                .rev()
                .collect::<Result<_>>()
                .unwrap();
            backward.reverse();
            assert_eq!(backward, expected, "rev {lower:?}..{upper:?}");
        }
    }

    #[test]
    fn mixed_next_and_next_back_never_cross_and_yield_each_entry_once() {
        let f = fixture(60, &tiny_options());
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        for (lower, upper) in bounds() {
            let expected: Vec<Entry> = f
                .entries
                .iter()
                .filter(|e| in_bounds(&e.key.user_key, &lower, &upper))
                .cloned()
                .collect();
            for _ in 0..3 {
                let mut it = f.table.iter(lower.clone(), upper.clone());
                let (mut front, mut back) = (Vec::new(), Vec::new());
                loop {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let item = if rng.is_multiple_of(2) {
                        it.next()
                    } else {
                        it.next_back()
                    };
                    match item {
                        Some(e) if rng.is_multiple_of(2) => front.push(e.unwrap()),
                        Some(e) => back.push(e.unwrap()),
                        None => break,
                    }
                }
                assert!(it.next().is_none() && it.next_back().is_none());
                back.reverse();
                front.extend(back);
                assert_eq!(front, expected, "{lower:?}..{upper:?}");
            }
        }
    }

    #[test]
    fn range_tombstones_round_trip_through_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let summary = write_table(&path, &[], &tombstones(), &TableOptions::default());
        assert_eq!((summary.entries, summary.tombstones), (0, 2));
        assert_eq!(summary.max_seq, SeqNo(400));
        let table = open(&path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        assert_eq!(table.range_tombstones(), &tombstones()[..]);
        assert_eq!(table.iter(Bound::Unbounded, Bound::Unbounded).count(), 0);
        assert_eq!(
            table
                .get(b"key0004", SeqNo::MAX, ReadMode::Blocking)
                .unwrap(),
            None
        );
        assert_eq!(table.verify().unwrap(), 0);
    }

    #[test]
    fn empty_table_opens_and_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        write_table(&path, &[], &[], &TableOptions::default());
        let table = open(&path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        assert!(table.range_tombstones().is_empty());
        let mut it = table.iter(Bound::Unbounded, Bound::Unbounded);
        assert!(it.next().is_none() && it.next_back().is_none());
        assert_eq!(
            table.get(b"a", SeqNo::MAX, ReadMode::CacheOnly).unwrap(),
            None
        );
    }

    #[test]
    fn cache_only_get_would_block_when_cold_and_succeeds_once_warm() {
        let f = fixture(50, &tiny_options());
        let cache = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
        let table = open(&f.path, &cache).unwrap();
        let err = table
            .get(b"key0010", SeqNo::MAX, ReadMode::CacheOnly)
            .unwrap_err();
        assert!(matches!(err, Error::WouldBlock), "{err}");
        let warm = table
            .get(b"key0010", SeqNo::MAX, ReadMode::Blocking)
            .unwrap();
        let hits = cache.hits();
        let cached = table
            .get(b"key0010", SeqNo::MAX, ReadMode::CacheOnly)
            .unwrap();
        assert_eq!(cached, warm);
        let want = model_get(&f.entries, b"key0010", SeqNo::MAX).map(Found::from);
        assert_eq!(cached, want);
        assert_eq!(cache.hits(), hits + 1);
        // An absent key the filter rejects needs no block at all.
        assert_eq!(
            table.get(b"nope", SeqNo::MAX, ReadMode::CacheOnly).unwrap(),
            None
        );
    }

    #[test]
    fn iterator_blocks_come_from_the_cache_on_a_second_pass() {
        let f = fixture(50, &tiny_options());
        let cache = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
        let table = open(&f.path, &cache).unwrap();
        assert_eq!(
            table.iter(Bound::Unbounded, Bound::Unbounded).count(),
            f.entries.len()
        );
        let misses = cache.misses();
        assert_eq!(
            table.iter(Bound::Unbounded, Bound::Unbounded).count(),
            f.entries.len()
        );
        assert_eq!(cache.misses(), misses);
    }

    /// Keys over a few byte values (zero among them, as the search pads with zeros), behind one
    /// of a few shared prefixes, some shorter than the search's 8-byte words and some longer.
    fn search_key() -> impl Strategy<Value = Vec<u8>> {
        let prefix = prop::sample::select(vec![&b""[..], b"p", b"prefix/"]);
        let tail = prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xff]), 0..12);
        (prefix, tail).prop_map(|(p, t)| [p, &t[..]].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The search through the index's words finds the block a search of its keys finds.
        #[test]
        fn index_search_agrees_with_a_search_of_the_keys(
            keys in prop::collection::btree_set(search_key(), 1..60),
            probes in prop::collection::vec(search_key(), 0..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("1.sst");
            let entries: Vec<Entry> = keys
                .iter()
                .enumerate()
                .flat_map(|(i, k)| {
                    (0..=i % 2).map(move |v| Entry {
                        key: InternalKey::new(
                            Bytes::from(k.clone()),
                            SeqNo(10 - v as u64 * 5),
                            ValueKind::Put,
                        ),
                        value: Bytes::from_static(b"v"),
                    })
                })
                .collect();
            write_table(&path, &entries, &[], &tiny_options());
            let table = open(&path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
            for probe in keys.iter().chain(&probes) {
                for seq in [SeqNo(0), SeqNo(7), SeqNo::MAX] {
                    let by_keys = table.index.partition_point(|e| {
                        key::compare_internal(&e.last_key.user_key, e.last_key.seq, probe, seq)
                            == Ordering::Less
                    });
                    prop_assert_eq!(table.block_for(probe, seq), by_keys, "{:?} @ {:?}", probe, seq);
                }
            }
        }
    }

    #[test]
    fn a_pass_past_the_cache_reads_every_entry_and_leaves_the_cache_alone() {
        let f = fixture(50, &tiny_options());
        let cache = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
        let table = open(&f.path, &cache).unwrap();
        let got: Vec<Entry> = table.iter_past_cache().map(Result::unwrap).collect();
        assert_eq!(got, f.entries);
        assert_eq!(
            (cache.hits(), cache.misses(), cache.weight_bytes()),
            (0, 0, 0)
        );
        // A block cached by a reader is not what the pass uses either.
        table
            .get(b"key0010", SeqNo::MAX, ReadMode::Blocking)
            .unwrap();
        let before = (cache.hits(), cache.misses(), cache.weight_bytes());
        assert_eq!(table.iter_past_cache().rev().count(), f.entries.len());
        assert_eq!((cache.hits(), cache.misses(), cache.weight_bytes()), before);
    }

    #[test]
    fn table_and_iterator_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Table>();
        send_sync::<BlockCache>();
        send::<TableIter>();
    }

    /// Checks every read path of a possibly damaged table: each result must be a
    /// `Corruption` or exactly the right data.
    fn check_damaged(path: &Path, entries: &[Entry], what: &str) {
        let cache = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
        let table = match open(path, &cache) {
            Ok(table) => table,
            Err(e) => {
                assert!(e.is_corruption(), "{what}: open: {e}");
                return;
            }
        };
        match table.verify() {
            Ok(n) => assert_eq!(n, entries.len() as u64, "{what}: verify"),
            Err(e) => assert!(e.is_corruption(), "{what}: verify: {e}"),
        }
        let fresh = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
        let table = open(path, &fresh).unwrap();
        for e in entries {
            match table.get(&e.key.user_key, SeqNo::MAX, ReadMode::Blocking) {
                Ok(got) => {
                    let want = model_get(entries, &e.key.user_key, SeqNo::MAX).map(Found::from);
                    assert_eq!(got, want, "{what}: get");
                }
                Err(err) => assert!(err.is_corruption(), "{what}: get: {err}"),
            }
        }
        let table = open(path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        let mut forward = Vec::new();
        for item in table.iter(Bound::Unbounded, Bound::Unbounded) {
            match item {
                Ok(e) => forward.push(e),
                Err(err) => assert!(err.is_corruption(), "{what}: iter: {err}"),
            }
        }
        assert!(entries.starts_with(&forward), "{what}: iter");
        let table = open(path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        let mut backward = Vec::new();
        for item in table.iter(Bound::Unbounded, Bound::Unbounded).rev() {
            match item {
                Ok(e) => backward.push(e),
                Err(err) => assert!(err.is_corruption(), "{what}: iter back: {err}"),
            }
        }
        backward.reverse();
        assert!(entries.ends_with(&backward), "{what}: iter back");
        let table = open(path, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        let (scanned, err) = scan(&table, None);
        if let Some(err) = err {
            assert!(err.is_corruption(), "{what}: scan: {err}");
        }
        assert!(entries.starts_with(&scanned), "{what}: scan");
    }

    #[test]
    fn every_flipped_byte_gives_corruption_or_correct_data() {
        let f = fixture(12, &tiny_options());
        let good = RealFs.read_all(&f.path).unwrap();
        let damaged = f.path.with_extension("damaged");
        let mut detected = 0;
        for i in 0..good.len() {
            for mask in [0x01, 0x80] {
                let mut bytes = good.clone();
                bytes[i] ^= mask;
                let mut file = RealFs.create(&damaged).unwrap();
                file.append(&bytes).unwrap();
                file.sync().unwrap();
                check_damaged(&damaged, &f.entries, &format!("byte {i} ^ {mask:#x}"));
                let cache = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
                let table = open(&damaged, &cache);
                if table.and_then(|t| t.verify()).is_err() {
                    detected += 1;
                }
            }
        }
        // Every byte is covered by a CRC or the magic, so open + verify catch every flip.
        assert_eq!(detected, 2 * good.len());
    }

    #[test]
    fn every_truncation_is_corruption() {
        let f = fixture(12, &tiny_options());
        let good = RealFs.read_all(&f.path).unwrap();
        let truncated = f.path.with_extension("truncated");
        for len in 0..good.len() {
            let mut file = RealFs.create(&truncated).unwrap();
            file.append(&good[..len]).unwrap();
            file.sync().unwrap();
            let cache = Arc::new(BlockCache::new(BIG_CACHE_BYTES));
            let err = open(&truncated, &cache).unwrap_err();
            assert!(err.is_corruption(), "length {len}: {err}");
        }
    }

    #[test]
    fn index_disagreeing_with_a_block_is_corruption() {
        // Two tables with the same layout but different keys: splicing a data block of one
        // into the other passes the CRC yet contradicts the index.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sst"), dir.path().join("b.sst"));
        let entries_a = sample(12);
        let entries_b: Vec<Entry> = entries_a
            .iter()
            .map(|e| {
                let mut key = e.key.user_key.to_vec();
                key[0] = b'j';
                Entry {
                    key: InternalKey::new(Bytes::from(key), e.key.seq, e.key.kind),
                    value: e.value.clone(),
                }
            })
            .collect();
        write_table(&a, &entries_a, &[], &tiny_options());
        write_table(&b, &entries_b, &[], &tiny_options());
        let table_a = open(&a, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        let first = table_a.index[0].handle;
        let len = usize::try_from(first.end_with_trailer().unwrap()).unwrap();
        let mut bytes = RealFs.read_all(&a).unwrap();
        bytes[..len].copy_from_slice(&RealFs.read_all(&b).unwrap()[..len]);
        let mut file = RealFs.create(&a).unwrap();
        file.append(&bytes).unwrap();
        file.sync().unwrap();
        let table = open(&a, &Arc::new(BlockCache::new(BIG_CACHE_BYTES))).unwrap();
        assert!(table.verify().unwrap_err().is_corruption());
        let first_key = &entries_a[0].key.user_key;
        let err = table
            .get(first_key, SeqNo::MAX, ReadMode::Blocking)
            .unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let mut it = table.iter(Bound::Unbounded, Bound::Unbounded);
        assert!(it.next().unwrap().unwrap_err().is_corruption());
        assert!(it.next().is_none());
        let (scanned, err) = scan(&table, None);
        assert!(scanned.is_empty());
        assert!(err.is_some_and(|e| e.is_corruption()));
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::fs::{FileSystem, RealFs};
    use crate::index::table::format::FormatVersion;
    use crate::index::table::{TableBuilder, TableOptions};
    use crate::key::ValueKind;

    /// Writes the worked example of `docs/format/table.md` in `version`.
    fn write_example(path: &Path, version: FormatVersion) {
        let options = TableOptions {
            format_version: version,
            ..TableOptions::default()
        };
        let mut b = TableBuilder::new(RealFs.create(path).unwrap(), &options);
        let key =
            |k: &'static [u8], seq, kind| InternalKey::new(Bytes::from_static(k), SeqNo(seq), kind);
        b.add(&key(b"apple", 2, ValueKind::Put), b"red").unwrap();
        b.add(&key(b"apple", 1, ValueKind::Delete), b"").unwrap();
        b.add(&key(b"apricot", 3, ValueKind::Put), b"sweet")
            .unwrap();
        b.add_range_tombstone(&RangeTombstone {
            start: Bytes::from_static(b"b"),
            end: Some(Bytes::from_static(b"c")),
            seq: SeqNo(4),
        });
        b.finish().unwrap();
    }

    /// The example's bytes in format version 2, as annotated in `docs/format/table.md`. A
    /// change here is a format change: it needs a new format version, not an updated constant.
    const EXAMPLE_HEX: &str = "\
        00 0d 03 61 70 70 6c 65 01 02 00 00 00 00 00 00 72 65 64 05 08 00 00 01 00 00 00 00 \
        00 00 02 0d 05 72 69 63 6f 74 01 03 00 00 00 00 00 00 73 77 65 65 74 00 00 00 00 01 \
        00 00 00 01 6a 23 12 39 \
        00 00 80 00 00 00 04 00 00 00 00 00 08 02 00 02 00 00 00 00 40 10 00 00 00 40 04 00 \
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 04 10 00 10 00 00 00 00 00 00 00 00 00 \
        00 00 01 00 00 00 00 40 07 03 17 0f 13 44 \
        01 01 62 01 01 63 04 00 00 00 00 00 00 00 04 a5 ef f2 a7 \
        00 0f 02 61 70 72 69 63 6f 74 01 03 00 00 00 00 00 00 00 3b 00 00 00 00 01 00 00 00 \
        02 bd 47 f0 69 \
        99 00 00 00 00 00 00 00 1c 00 00 00 00 00 00 00 40 00 00 00 00 00 00 00 41 00 00 00 \
        00 00 00 00 86 00 00 00 00 00 00 00 0e 00 00 00 00 00 00 00 02 00 00 00 d2 6b f8 e1 \
        78 64 62 74 61 62 6c 31";

    /// The same example in format version 1, whose filter is flat: the bytes of tables written
    /// before version 2, which must still read.
    const EXAMPLE_V1_HEX: &str = "\
        00 0d 03 61 70 70 6c 65 01 02 00 00 00 00 00 00 72 65 64 05 08 00 00 01 00 00 00 00 \
        00 00 02 0d 05 72 69 63 6f 74 01 03 00 00 00 00 00 00 73 77 65 65 74 00 00 00 00 01 \
        00 00 00 01 6a 23 12 39 \
        88 88 82 82 80 80 20 80 07 03 21 2d 5b fd \
        01 01 62 01 01 63 04 00 00 00 00 00 00 00 04 a5 ef f2 a7 \
        00 0f 02 61 70 72 69 63 6f 74 01 03 00 00 00 00 00 00 00 3b 00 00 00 00 01 00 00 00 \
        02 bd 47 f0 69 \
        61 00 00 00 00 00 00 00 1c 00 00 00 00 00 00 00 40 00 00 00 00 00 00 00 09 00 00 00 \
        00 00 00 00 4e 00 00 00 00 00 00 00 0e 00 00 00 00 00 00 00 01 00 00 00 f4 55 09 f7 \
        78 64 62 74 61 62 6c 31";

    fn bytes_of(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Opens the table at `path`, checks its version, and reads the example's keys back
    /// through its filter.
    fn check_example(path: &Path, version: FormatVersion) {
        let table = Table::open(
            RealFs.open(path).unwrap(),
            7,
            Arc::new(BlockCache::new(1 << 20)),
        );
        let table = table.unwrap();
        assert_eq!(table.format_version(), version);
        let got = table
            .get(b"apple", SeqNo(1), ReadMode::Blocking)
            .unwrap()
            .unwrap();
        assert_eq!(got.kind, ValueKind::Delete);
        let got = table
            .get(b"apricot", SeqNo(9), ReadMode::Blocking)
            .unwrap()
            .unwrap();
        assert_eq!(got.value, "sweet");
        assert_eq!(table.verify().unwrap(), 3);
    }

    #[test]
    fn tiny_table_bytes_match_the_documented_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        write_example(&path, FormatVersion::CURRENT);
        let written = RealFs.read_all(&path).unwrap();
        let hex: Vec<String> = written.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(written, bytes_of(EXAMPLE_HEX), "{}", hex.join(" "));
        check_example(&path, FormatVersion::CURRENT);
    }

    /// A table written in format version 1, byte for byte as before version 2, still opens
    /// and reads through its flat filter; and asked for version 1, the builder still writes
    /// those bytes.
    #[test]
    fn version_1_tables_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.sst");
        std::fs::write(&old, bytes_of(EXAMPLE_V1_HEX)).unwrap();
        check_example(&old, FormatVersion::V1);
        let new = dir.path().join("new.sst");
        write_example(&new, FormatVersion::V1);
        assert_eq!(RealFs.read_all(&new).unwrap(), bytes_of(EXAMPLE_V1_HEX));
    }
}
