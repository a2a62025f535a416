//! [`BlockStore`]: the physical block space of the value store, laid over segment files
//! `NNNNNN.seg` in the database directory.
//!
//! Segment `i` holds physical blocks `[i * blocks_per_segment, (i + 1) * blocks_per_segment)`,
//! each `block_size` bytes. A segment file is created (sparse, at its full length) when a
//! write first touches it, and never changes length afterwards, which is what lets readers
//! map it (`fs/real.rs`). Missing segments are fine (never written, or deleted once entirely
//! free) and read as zeros, like the holes of a sparse segment: a block can be mapped before
//! anything is written to it (a reservation for appends, which relocation copies whole), and
//! a segment deleted while all free may be allocated from again before it is written. Wrong
//! bytes are never returned for a value: every value is checked against its pointer's CRC.
//!
//! The store knows nothing of logical blocks, value files or which blocks are free: the extent
//! maps and the allocator (`extent.rs`, `allocator.rs`) decide what may be read, written or
//! punched, under the rules of DESIGN section 2:
//! - reads of a physical block happen under the owning value file's shared invalidate lock;
//! - writes go only to blocks the allocator handed out and no extent map points at yet;
//! - punching (like reuse) only touches blocks the allocator has released.
//!
//! Thread safety: `BlockStore` is `Send + Sync`; every method takes `&self`. Its own locks
//! (the segment table, the dirty set, the sync serialiser) are leaves: no other lock is taken
//! while they are held. I/O runs outside them, except that creating a segment file holds the
//! segment table and `sync` holds its serialiser (only other syncs wait on it).
//!
//! Next: `docs/locking.md`, for where the callers of these methods sit in the lock order.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// Not `crate::sync`: these are leaf locks around file I/O, which loom cannot model, and the
// `Arc`s are the file system seam's own.
use parking_lot::{Mutex, RwLock};

use super::block::PhysicalBlock;
use crate::error::{Error, Result};
use crate::filename::{self, FileKind};
use crate::fs::{FileSystem, SegmentFile};

/// The page size hole punching works in: ranges are shrunk to whole pages of it.
const PUNCH_ALIGN: u64 = 4096;

/// The source of [`BlockStore::zero_fill`]'s writes.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The physical block space over segment files.
#[derive(Debug)]
pub(crate) struct BlockStore {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    block_size: usize,
    blocks_per_segment: u64,
    /// `block_size * blocks_per_segment`, which fits both `u64` and `usize`.
    segment_bytes: u64,
    /// Open segment files by index.
    segments: RwLock<BTreeMap<u64, Arc<dyn SegmentFile>>>,
    /// Segments written since the last `sync` began, each with what was written to it since
    /// its write-back last started.
    dirty: Mutex<BTreeMap<u64, Unstarted>>,
    /// A segment's write-back starts once this many bytes were written to it; 0 leaves it to
    /// the kernel's own schedule.
    writeback_bytes: u64,
    /// Held for a whole `sync`, so a second caller waits for the first one's fdatasyncs
    /// instead of finding the dirty set empty and returning before the data is durable.
    sync_serial: Mutex<()>,
}

impl BlockStore {
    /// Opens the block store in `dir`, opening every segment file there.
    ///
    /// An empty segment file (its creation cut short by a crash) is given its length; with
    /// `read_only` it is left as it is and not opened (it holds no data, and a missing segment
    /// reads as zeros), and the others are opened for reads only.
    ///
    /// # Errors
    /// `InvalidArgument` if `block_size` or `blocks_per_segment` is zero or a segment would
    /// not fit in memory addresses; `Corruption` for a `.seg` file whose name is not a
    /// segment's or whose length is not `block_size * blocks_per_segment`; any I/O error.
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        block_size: usize,
        blocks_per_segment: u64,
        read_only: bool,
    ) -> Result<Self> {
        let segment_bytes = (block_size as u64)
            .checked_mul(blocks_per_segment)
            .filter(|&b| b > 0 && usize::try_from(b).is_ok())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "block store: {blocks_per_segment} blocks of {block_size} bytes is no \
                     valid segment size"
                ))
            })?;
        let mut segments = BTreeMap::new();
        for name in fs.list_dir(dir)? {
            let path = dir.join(&name);
            let index = match filename::parse(&name) {
                Some(FileKind::Segment(index)) if name == filename::segment(index) => index,
                _ if name.ends_with(".seg") => {
                    return Err(Error::corruption(path, 0, "stray segment file name"));
                }
                _ => continue,
            };
            if index
                .checked_add(1)
                .and_then(|n| n.checked_mul(segment_bytes))
                .is_none()
            {
                return Err(Error::corruption(
                    path,
                    0,
                    "segment index past the block space",
                ));
            }
            // `create` only matters for an empty file: a creation that a crash cut short
            // between making the file and setting its length, before any write (the
            // directory is synced after both). It holds no data, so it is set to its length
            // rather than refused; were it real damage instead, every value in it fails its
            // checksum on read (DESIGN invariant 4).
            let segment = if !read_only {
                fs.open_segment(&path, segment_bytes, true)?
            } else if fs.open(&path)?.is_empty() {
                continue;
            } else {
                fs.open_segment_read_only(&path, segment_bytes)?
            };
            // Every offset computed below trusts this length; a file system layer that got it
            // wrong would turn reads past the end into errors far from the cause.
            if segment.len() != segment_bytes {
                return Err(Error::corruption(
                    path,
                    segment.len(),
                    "segment of the wrong length",
                ));
            }
            segments.insert(index, segment);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            fs,
            block_size,
            blocks_per_segment,
            segment_bytes,
            segments: RwLock::new(segments),
            dirty: Mutex::new(BTreeMap::new()),
            writeback_bytes: 0,
            sync_serial: Mutex::new(()),
        })
    }

    /// Starts the write-back of a segment each time `bytes` more were written to it (0: never),
    /// so the disk works while appends go on, and a sync finds at most about `bytes` per
    /// segment left to write instead of everything written since the last one.
    pub fn with_writeback_bytes(mut self, bytes: u64) -> Self {
        self.writeback_bytes = bytes;
        self
    }

    #[cfg(test)]
    /// How many segment files exist.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }

    /// Every segment file: its number and length.
    #[must_use]
    pub fn segments(&self) -> Vec<(u64, u64)> {
        self.segments
            .read()
            .iter()
            .map(|(n, f)| (*n, f.len()))
            .collect()
    }

    /// The bytes the segment files occupy on disk (holes excluded), as `du` counts them.
    ///
    /// # Errors
    /// Any error of `fstat`.
    pub fn allocated_bytes(&self) -> Result<u64> {
        let segments: Vec<Arc<dyn SegmentFile>> =
            self.segments.read().values().map(Arc::clone).collect();
        segments
            .iter()
            .try_fold(0u64, |sum, s| Ok(sum.saturating_add(s.allocated_bytes()?)))
    }

    /// The segments (by index) whose every block is free: in one of `free`, the free runs,
    /// or at or past `end`, the allocator's high-water mark.
    #[must_use]
    pub fn wholly_free_segments(
        &self,
        free: &[(PhysicalBlock, u64)],
        end: PhysicalBlock,
    ) -> Vec<u64> {
        let per = self.blocks_per_segment;
        self.segments
            .read()
            .keys()
            .copied()
            .filter(|&index| {
                let (first, last) = (index * per, (index + 1) * per);
                first >= end.0
                    || free
                        .iter()
                        .any(|&(start, n)| start.0 <= first && start.0.saturating_add(n) >= last)
            })
            .collect()
    }

    /// Deletes segment `index`, whose blocks must all be free: its space goes back to the
    /// file system whole. A later write to one of its blocks creates it again, sparse.
    ///
    /// # Locking
    /// REQUIRES: the caller holds the allocator, so no block of the segment is handed out
    /// meanwhile.
    ///
    /// # Errors
    /// Any I/O error; the segment then stays open.
    pub fn remove_segment(&self, index: u64) -> Result<()> {
        let path = self.dir.join(filename::segment(index));
        let mut segments = self.segments.write();
        let Some(removed) = segments.remove(&index) else {
            return Ok(());
        };
        self.dirty.lock().remove(&index);
        self.fs.remove_file(&path)?;
        drop(segments);
        // Closed after the map's lock, which every read takes: the last close of an unlinked
        // file frees its blocks, which may wait for the disk (a discard).
        drop(removed);
        self.fs.sync_dir(&self.dir)
    }

    /// The first physical block past the last segment file.
    #[must_use]
    pub fn end_block(&self) -> PhysicalBlock {
        let segments = self.segments.read();
        let end = segments.keys().next_back().map_or(0, |last| last + 1);
        PhysicalBlock(end * self.blocks_per_segment)
    }

    /// Copies every segment file into the directory `dest` (for a checkpoint), synced.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        const CHUNK_BYTES: usize = 1 << 20;
        let segments: Vec<(u64, Arc<dyn SegmentFile>)> = self
            .segments
            .read()
            .iter()
            .map(|(i, f)| (*i, Arc::clone(f)))
            .collect();
        let mut buf = vec![0u8; CHUNK_BYTES];
        for (index, segment) in segments {
            let mut out = self.fs.create(&dest.join(filename::segment(index)))?;
            let mut at = 0u64;
            while at < segment.len() {
                let n =
                    usize::try_from(segment.len() - at).map_or(CHUNK_BYTES, |r| r.min(CHUNK_BYTES));
                let chunk = buf.get_mut(..n).unwrap_or_default();
                segment.read_exact_at(at, chunk)?;
                out.append(chunk)?;
                at += n as u64;
            }
            out.sync()?;
        }
        self.fs.sync_dir(dest)
    }

    /// Reads the contiguous physical blocks from `first` into `buf`, a whole number of blocks,
    /// with `pread`; a range that crosses segments is split.
    ///
    /// Blocks of a segment that does not exist read as zeros.
    ///
    /// # Errors
    /// `InvalidArgument` if `buf` is not a whole number of blocks or the range overflows; any
    /// I/O error.
    pub fn read(&self, first: PhysicalBlock, buf: &mut [u8]) -> Result<()> {
        self.check_whole_blocks(buf.len())?;
        let pos = self.byte_pos(first, 0)?;
        self.for_each_piece(pos, buf.len(), |index, offset, range| {
            let piece = piece_mut(buf, range)?;
            match self.existing(index) {
                Some(segment) => segment.read_exact_at(offset, piece),
                None => {
                    piece.fill(0);
                    Ok(())
                }
            }
        })
    }

    /// [`Self::read`] through the segments' memory maps: the bytes are copied out, so the
    /// caller never holds a view of a block that may be reused.
    ///
    /// # Errors
    /// As [`Self::read`], and any error of `mmap`.
    pub fn read_mapped(&self, first: PhysicalBlock, buf: &mut [u8]) -> Result<()> {
        self.check_whole_blocks(buf.len())?;
        let pos = self.byte_pos(first, 0)?;
        self.for_each_piece(pos, buf.len(), |index, offset, range| {
            let Some(segment) = self.existing(index) else {
                piece_mut(buf, range)?.fill(0);
                return Ok(());
            };
            let map = segment.map()?;
            let len = range.len();
            let src = usize::try_from(offset)
                .ok()
                .and_then(|start| map.get(start..start.checked_add(len)?))
                .ok_or_else(|| {
                    Error::corruption(segment.path(), offset, "mapping shorter than the segment")
                })?;
            piece_mut(buf, range)?.copy_from_slice(src);
            Ok(())
        })
    }

    /// Writes `data` from byte `offset_in_block` of block `first` on (it may run on over
    /// following blocks and segments), creating segment files as they are first touched.
    /// Durable after the next [`Self::sync`].
    ///
    /// # Errors
    /// `InvalidArgument` if `offset_in_block` is not inside a block or the range overflows;
    /// any I/O error (the blocks' contents are then undefined).
    pub fn write(&self, first: PhysicalBlock, offset_in_block: usize, data: &[u8]) -> Result<()> {
        if offset_in_block >= self.block_size {
            return Err(Error::invalid(format!(
                "block store: offset {offset_in_block} is outside a block of {} bytes",
                self.block_size
            )));
        }
        let pos = self.byte_pos(first, offset_in_block)?;
        self.for_each_piece(pos, data.len(), |index, offset, range| {
            let segment = self.segment_for_write(index)?;
            let piece = data
                .get(range)
                .ok_or_else(|| Error::invalid("block store: piece outside the data"))?;
            segment.write_all_at(offset, piece)?;
            // Only after the write: a `sync` that takes the dirty set in between must not
            // clear a segment whose write it did not cover.
            match self.note_written(index, offset, piece.len() as u64) {
                Some(span) => segment.start_writeback(span.start, span.end - span.start),
                None => Ok(()),
            }
        })
    }

    /// Writes zeros over the `n` blocks from `first`, creating segment files as needed, and
    /// leaves them out of the write-back this store starts: they are about to be overwritten.
    /// The point is the page cache: the blocks enter it in one write, in large folios, and
    /// the small writes that fill them next find their pages there (see
    /// `ValueOptions::zero_ahead_bytes`).
    ///
    /// # Errors
    /// `InvalidArgument` if the range overflows; any I/O error.
    pub fn zero_fill(&self, first: PhysicalBlock, n: u64) -> Result<()> {
        let pos = self.byte_pos(first, 0)?;
        let len = n
            .checked_mul(self.block_size as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| Error::invalid(format!("block store: cannot zero {n} blocks")))?;
        self.for_each_piece(pos, len, |index, offset, range| {
            let segment = self.segment_for_write(index)?;
            let mut at = offset;
            let mut left = range.len();
            while left > 0 {
                let piece = ZEROS.get(..left.min(ZEROS.len())).unwrap_or_default();
                segment.write_all_at(at, piece)?;
                at += piece.len() as u64;
                left -= piece.len();
            }
            Ok(())
        })
    }

    /// Marks segment `index` dirty with `len` bytes written at `offset`. Returns the span
    /// whose write-back is due: all that was written to the segment since its write-back
    /// last started, once that is `writeback_bytes` or more.
    fn note_written(&self, index: u64, offset: u64, len: u64) -> Option<Range<u64>> {
        let mut dirty = self.dirty.lock();
        let unstarted = dirty.entry(index).or_default();
        unstarted.add(offset, len);
        (self.writeback_bytes > 0 && unstarted.bytes >= self.writeback_bytes)
            .then(|| unstarted.take())
    }

    /// Makes every write completed before this call durable: `fdatasync` of each segment
    /// written since the last sync.
    ///
    /// # Errors
    /// Any I/O error. The segments not yet synced stay dirty, but the caller must poison the
    /// database (DESIGN section 5): after a failed fsync the kernel may have dropped the
    /// dirty pages, and a later successful sync proves nothing about them.
    pub fn sync(&self) -> Result<()> {
        let _serial = self.sync_serial.lock();
        let dirty = std::mem::take(&mut *self.dirty.lock());
        let segments: Vec<(u64, Arc<dyn SegmentFile>)> = {
            let open = self.segments.read();
            dirty
                .keys()
                .filter_map(|i| open.get(i).map(|s| (*i, Arc::clone(s))))
                .collect()
        };
        for (n, (_, segment)) in segments.iter().enumerate() {
            if let Err(e) = segment.sync() {
                let unsynced = segments.get(n..).unwrap_or_default();
                let mut dirty = self.dirty.lock();
                for (i, _) in unsynced {
                    dirty.entry(*i).or_default();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Makes the physical block runs `runs` durable, whoever wrote them (for recovery, where
    /// blocks written by an earlier process are not in this store's dirty set): `fdatasync`
    /// of every existing segment they touch, and of the segments already dirty.
    ///
    /// # Errors
    /// As [`Self::sync`].
    pub fn sync_runs(&self, runs: &[(PhysicalBlock, u64)]) -> Result<()> {
        {
            let mut dirty = self.dirty.lock();
            for &(first, n) in runs.iter().filter(|(_, n)| *n > 0) {
                let last = first.0.saturating_add(n - 1);
                for index in first.0 / self.blocks_per_segment..=last / self.blocks_per_segment {
                    dirty.entry(index).or_default();
                }
            }
        }
        self.sync()
    }

    /// Punches a hole over the `n` blocks from `first`, returning their disk space to the
    /// file system; they read as zeros afterwards. Only the whole pages of the range
    /// ([`PUNCH_ALIGN`]) are punched: a file system zeroes the partial pages of a punch by
    /// writing them, which would cost a write to save nothing, so blocks smaller than a page
    /// keep the pages they share. Blocks in segments that do not exist are already holes.
    /// Returns `false` if the file system cannot punch holes.
    ///
    /// # Errors
    /// `InvalidArgument` if the range overflows; any I/O error.
    pub fn punch(&self, first: PhysicalBlock, n: u64) -> Result<bool> {
        let pos = self.byte_pos(first, 0)?;
        let end = n
            .checked_mul(self.block_size as u64)
            .and_then(|b| b.checked_add(pos))
            .ok_or_else(|| Error::invalid(format!("block store: cannot punch {n} blocks")))?;
        let (start, stop) = (
            pos.next_multiple_of(PUNCH_ALIGN),
            end / PUNCH_ALIGN * PUNCH_ALIGN,
        );
        let Some(len) = stop
            .checked_sub(start)
            .filter(|&l| l > 0)
            .and_then(|l| usize::try_from(l).ok())
        else {
            return Ok(true);
        };
        let mut punched = true;
        self.for_each_piece(start, len, |index, offset, range| {
            let segment = self.segments.read().get(&index).cloned();
            if let Some(segment) = segment {
                punched &= segment.punch_hole(offset, range.len() as u64)?;
            }
            Ok(())
        })?;
        Ok(punched)
    }

    /// Calls `f(segment index, offset in segment, range of the caller's buffer)` for each
    /// segment that `[pos, pos + len)` of the block space touches, in order.
    fn for_each_piece(
        &self,
        pos: u64,
        len: usize,
        mut f: impl FnMut(u64, u64, Range<usize>) -> Result<()>,
    ) -> Result<()> {
        if pos.checked_add(len as u64).is_none() {
            return Err(Error::invalid("block store: byte range overflows"));
        }
        let mut done = 0usize;
        while done < len {
            let at = pos + done as u64;
            let index = at / self.segment_bytes;
            let offset = at % self.segment_bytes;
            let room = self.segment_bytes - offset;
            // `room` is at most a segment, which fits `usize` (checked at open).
            let n = (len - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            f(index, offset, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    /// The byte position of `offset_in_block` in block `block` of the whole block space.
    fn byte_pos(&self, block: PhysicalBlock, offset_in_block: usize) -> Result<u64> {
        block
            .0
            .checked_mul(self.block_size as u64)
            .and_then(|b| b.checked_add(offset_in_block as u64))
            .ok_or_else(|| Error::invalid(format!("block store: block {block} is out of range")))
    }

    fn check_whole_blocks(&self, len: usize) -> Result<()> {
        if len.is_multiple_of(self.block_size) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "block store: {len} bytes is not a whole number of {}-byte blocks",
                self.block_size
            )))
        }
    }

    /// The open segment `index`, if it exists.
    fn existing(&self, index: u64) -> Option<Arc<dyn SegmentFile>> {
        self.segments.read().get(&index).cloned()
    }

    /// The segment `index`, created (and its directory entry made durable) if missing.
    fn segment_for_write(&self, index: u64) -> Result<Arc<dyn SegmentFile>> {
        let open = self.segments.read().get(&index).cloned();
        if let Some(segment) = open {
            return Ok(segment);
        }
        let mut segments = self.segments.write();
        if let Some(segment) = segments.get(&index) {
            return Ok(Arc::clone(segment));
        }
        let path = self.dir.join(filename::segment(index));
        let segment = self.fs.open_segment(&path, self.segment_bytes, true)?;
        // Before anyone can write data that an extent record will point at: a crash must not
        // lose the file under durable records. If this fails the segment is not entered, and
        // the next write opens the (already created) file again and retries the sync.
        self.fs.sync_dir(&self.dir)?;
        segments.insert(index, Arc::clone(&segment));
        Ok(segment)
    }
}

/// What was written to a segment since its write-back last started: the span of those writes,
/// in bytes from the segment's start, and how many bytes they wrote. Appends make the span
/// about as long as the bytes; starting the write-back of a longer one only costs the kernel
/// a walk past its clean pages.
#[derive(Debug, Default)]
struct Unstarted {
    span: Range<u64>,
    bytes: u64,
}

impl Unstarted {
    fn add(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        self.span = if self.bytes == 0 {
            offset..end
        } else {
            self.span.start.min(offset)..self.span.end.max(end)
        };
        self.bytes = self.bytes.saturating_add(len);
    }

    /// The span, leaving nothing unstarted.
    fn take(&mut self) -> Range<u64> {
        std::mem::take(self).span
    }
}

/// The part `range` of `buf`; the ranges come from `for_each_piece` over `buf.len()`.
fn piece_mut(buf: &mut [u8], range: Range<usize>) -> Result<&mut [u8]> {
    buf.get_mut(range)
        .ok_or_else(|| Error::invalid("block store: piece outside the buffer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{CallKind, FaultFs, RealFs, Trigger};

    /// Tiny segments, so that small writes cross segment boundaries.
    const BLOCK: usize = 256;
    const BLOCKS_PER_SEGMENT: u64 = 4;

    fn open(dir: &Path) -> BlockStore {
        BlockStore::open(dir, Arc::new(RealFs), BLOCK, BLOCKS_PER_SEGMENT, false).unwrap()
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn write_then_read_round_trips_across_a_segment_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert_eq!(store.segment_count(), 0);
        // Blocks 2..8: the end of segment 0, all of segment 1.
        let data = pattern(6 * BLOCK, 1);
        store.write(PhysicalBlock(2), 0, &data).unwrap();
        assert_eq!(store.segment_count(), 2);
        let mut buf = vec![0; 6 * BLOCK];
        store.read(PhysicalBlock(2), &mut buf).unwrap();
        assert_eq!(buf, data);
        // Unwritten blocks of an existing segment read as zeros.
        let mut buf = vec![1; 2 * BLOCK];
        store.read(PhysicalBlock(0), &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn write_at_an_offset_in_a_block_leaves_the_rest_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.write(PhysicalBlock(3), 0, &[9; BLOCK]).unwrap();
        store.write(PhysicalBlock(3), 200, &[5; 100]).unwrap();
        let mut buf = vec![0; 2 * BLOCK];
        store.read(PhysicalBlock(3), &mut buf).unwrap();
        assert!(buf[..200].iter().all(|&b| b == 9));
        assert!(buf[200..300].iter().all(|&b| b == 5));
        assert!(buf[300..].iter().all(|&b| b == 0));
    }

    #[test]
    fn read_mapped_equals_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let data = pattern(10 * BLOCK, 7);
        store.write(PhysicalBlock(1), 0, &data).unwrap();
        let mut by_read = vec![0; 10 * BLOCK];
        let mut by_map = vec![1; 10 * BLOCK];
        store.read(PhysicalBlock(1), &mut by_read).unwrap();
        store.read_mapped(PhysicalBlock(1), &mut by_map).unwrap();
        assert_eq!(by_read, data);
        assert_eq!(by_map, data);
        // A write after the map exists is seen through it.
        store.write(PhysicalBlock(2), 0, &[0xAB; BLOCK]).unwrap();
        store
            .read_mapped(PhysicalBlock(2), &mut by_map[..BLOCK])
            .unwrap();
        assert!(by_map[..BLOCK].iter().all(|&b| b == 0xAB));
    }

    #[test]
    fn punch_returns_true_on_this_file_system_and_reads_zeros_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        // Hole punching works in whole file-system blocks: use 4 KiB blocks here.
        let store = BlockStore::open(
            dir.path(),
            Arc::new(RealFs),
            4096,
            BLOCKS_PER_SEGMENT,
            false,
        )
        .unwrap();
        store
            .write(PhysicalBlock(0), 0, &vec![3; 8 * 4096])
            .unwrap();
        // Blocks 3..6 span the segment boundary; block 100's segment does not exist.
        assert!(store.punch(PhysicalBlock(3), 3).unwrap());
        assert!(store.punch(PhysicalBlock(100), 1).unwrap());
        let mut buf = vec![0; 8 * 4096];
        store.read(PhysicalBlock(0), &mut buf).unwrap();
        assert!(buf[..3 * 4096].iter().all(|&b| b == 3));
        assert!(buf[3 * 4096..6 * 4096].iter().all(|&b| b == 0));
        assert!(buf[6 * 4096..].iter().all(|&b| b == 3));
        let mut mapped = vec![1; 8 * 4096];
        store.read_mapped(PhysicalBlock(0), &mut mapped).unwrap();
        assert_eq!(mapped, buf);
    }

    #[test]
    fn reopen_sees_the_segments_and_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(BLOCK, 3);
        {
            let store = open(dir.path());
            store.write(PhysicalBlock(1), 0, &data).unwrap();
            store.write(PhysicalBlock(9), 0, &data).unwrap();
            store.sync().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.segment_count(), 2);
        let mut buf = vec![0; BLOCK];
        store.read(PhysicalBlock(9), &mut buf).unwrap();
        assert_eq!(buf, data);
        // Segment 1 (blocks 4..8) was never written: it reads as zeros, as a hole does.
        store.read(PhysicalBlock(5), &mut buf).unwrap();
        assert_eq!(buf, vec![0; BLOCK]);
        buf.fill(1);
        store.read_mapped(PhysicalBlock(5), &mut buf).unwrap();
        assert_eq!(buf, vec![0; BLOCK]);
    }

    #[test]
    fn segment_file_of_the_wrong_length_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let seg_bytes = BLOCK as u64 * BLOCKS_PER_SEGMENT;
        RealFs
            .open_segment(&dir.path().join(filename::segment(2)), seg_bytes + 1, true)
            .unwrap();
        let err = BlockStore::open(
            dir.path(),
            Arc::new(RealFs),
            BLOCK,
            BLOCKS_PER_SEGMENT,
            false,
        )
        .unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn empty_segment_left_by_a_crash_during_creation_is_given_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut cut_short = RealFs
            .create(&dir.path().join(filename::segment(1)))
            .unwrap();
        cut_short.sync().unwrap();
        drop(cut_short);
        let store = open(dir.path());
        assert_eq!(store.segment_count(), 1);
        let mut buf = vec![1; BLOCK];
        store.read(PhysicalBlock(7), &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn stray_segment_file_name_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let seg_bytes = BLOCK as u64 * BLOCKS_PER_SEGMENT;
        // The same index as 000012.seg, under another name.
        RealFs
            .open_segment(&dir.path().join("12.seg"), seg_bytes, true)
            .unwrap();
        let err = BlockStore::open(
            dir.path(),
            Arc::new(RealFs),
            BLOCK,
            BLOCKS_PER_SEGMENT,
            false,
        )
        .unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn bad_sizes_and_ranges_are_invalid_arguments() {
        let dir = tempfile::tempdir().unwrap();
        for (block, per_segment) in [(0, 4), (256, 0), (usize::MAX, 4)] {
            let r = BlockStore::open(dir.path(), Arc::new(RealFs), block, per_segment, false);
            assert!(
                matches!(r, Err(Error::InvalidArgument(_))),
                "{block} x {per_segment}"
            );
        }
        let store = open(dir.path());
        let mut buf = vec![0; BLOCK + 1];
        assert!(matches!(
            store.read(PhysicalBlock(0), &mut buf),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            store.write(PhysicalBlock(0), BLOCK, b"x"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            store.write(PhysicalBlock(u64::MAX), 0, b"x"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(store.punch(PhysicalBlock(u64::MAX), 1).is_err());
        assert_eq!(store.segment_count(), 0);
    }

    #[test]
    fn fault_switches_make_segment_writes_and_syncs_fail() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        let store = BlockStore::open(
            dir.path(),
            Arc::new(fs.clone()),
            BLOCK,
            BLOCKS_PER_SEGMENT,
            false,
        )
        .unwrap();
        store.write(PhysicalBlock(0), 0, &[1; BLOCK]).unwrap();

        fs.fail_writes(true);
        assert!(store.write(PhysicalBlock(1), 0, &[2; BLOCK]).is_err());
        assert!(
            store.write(PhysicalBlock(4), 0, &[2; BLOCK]).is_err(),
            "segment creation"
        );
        // A whole page (16 blocks of 256 bytes): a punch of less calls nothing.
        assert!(store.punch(PhysicalBlock(0), 16).is_err());
        assert!(store.punch(PhysicalBlock(0), 1).unwrap());
        fs.fail_writes(false);
        assert_eq!(store.segment_count(), 1);

        fs.fail_syncs(true);
        assert!(store.sync().is_err());
        fs.fail_syncs(false);
        // The failed segment stayed dirty, so it is synced now.
        store.sync().unwrap();
        // Nothing is dirty any more: a sync touches no file, so the switch cannot fire.
        fs.fail_syncs(true);
        store.sync().unwrap();
        // A new segment's directory entry is synced when it is created.
        assert!(store.write(PhysicalBlock(8), 0, &[3; BLOCK]).is_err());
        fs.fail_syncs(false);
        store.write(PhysicalBlock(8), 0, &[3; BLOCK]).unwrap();
        assert_eq!(store.segment_count(), 2);
    }

    /// A store over segments of 64 blocks (16 KiB) whose write-back starts every `every`
    /// bytes, on a `FaultFs` that counts the starts.
    fn counting(dir: &Path, every: u64) -> (BlockStore, FaultFs) {
        let fs = FaultFs::default();
        let store = BlockStore::open(dir, Arc::new(fs.clone()), BLOCK, 64, false)
            .unwrap()
            .with_writeback_bytes(every);
        (store, fs)
    }

    fn writeback_starts(fs: &FaultFs) -> u64 {
        fs.counts()
            .get(&CallKind::SegmentWriteback)
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn write_back_starts_each_time_enough_was_written_to_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (store, fs) = counting(dir.path(), 1000);
        // Ten appends of 300 bytes: the 4th and the 8th bring 1,200 unstarted bytes.
        for i in 0..10u64 {
            let at = i * 300;
            let (block, offset) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            store
                .write(PhysicalBlock(block), offset, &pattern(300, i as u8))
                .unwrap();
        }
        assert_eq!(writeback_starts(&fs), 2);
        // The data is all there, write-back or not.
        let mut buf = vec![0; 12 * BLOCK];
        store.read(PhysicalBlock(0), &mut buf).unwrap();
        for i in 0..10usize {
            assert_eq!(buf[i * 300..][..300], pattern(300, i as u8)[..]);
        }

        // A sync leaves nothing unstarted: 600 bytes before it and 600 after start nothing.
        let (store, fs) = counting(dir.path(), 1000);
        store.write(PhysicalBlock(20), 0, &[1; 600]).unwrap();
        store.sync().unwrap();
        store.write(PhysicalBlock(30), 0, &[1; 600]).unwrap();
        assert_eq!(writeback_starts(&fs), 0);

        // Each segment counts its own bytes: 600 in each of two segments start nothing.
        store.write(PhysicalBlock(64), 0, &[2; 600]).unwrap();
        assert_eq!(writeback_starts(&fs), 0);
        store.write(PhysicalBlock(70), 0, &[2; 400]).unwrap();
        assert_eq!(writeback_starts(&fs), 1);

        // Off: never.
        let (store, fs) = counting(dir.path(), 0);
        store.write(PhysicalBlock(0), 0, &[3; 10 * BLOCK]).unwrap();
        assert_eq!(writeback_starts(&fs), 0);
    }

    /// Zero-filled blocks read as zeros, may span segments, and neither start a write-back
    /// nor count toward the next one: only what is written does.
    #[test]
    fn zero_fill_writes_zeros_and_leaves_write_back_to_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (store, fs) = counting(dir.path(), 1000);
        store.write(PhysicalBlock(50), 0, &[9; 8 * BLOCK]).unwrap();
        assert_eq!(writeback_starts(&fs), 1);
        // Over what was written, and on into the next segment (64 blocks each).
        store.zero_fill(PhysicalBlock(50), 20).unwrap();
        let mut back = vec![1u8; 20 * BLOCK];
        store.read(PhysicalBlock(50), &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0));
        assert_eq!(store.segment_count(), 2);
        store.zero_fill(PhysicalBlock(0), 40).unwrap();
        assert_eq!(writeback_starts(&fs), 1, "zeros start no write-back");
        // 600 written bytes are all the unstarted bytes there are: no start yet.
        store.write(PhysicalBlock(10), 0, &[1; 600]).unwrap();
        assert_eq!(writeback_starts(&fs), 1, "zeros count toward no write-back");
        store.write(PhysicalBlock(12), 0, &[1; 400]).unwrap();
        assert_eq!(writeback_starts(&fs), 2);
    }

    #[test]
    fn write_back_covers_the_span_written_since_it_last_started() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _fs) = counting(dir.path(), 1000);
        assert_eq!(store.note_written(0, 0, 600), None);
        assert_eq!(store.note_written(0, 600, 600), Some(0..1200));
        assert_eq!(store.note_written(0, 1200, 999), None);
        // Out of order: the span runs from the lowest offset to the highest end.
        assert_eq!(store.note_written(0, 5000, 1), Some(1200..5001));
        assert_eq!(store.note_written(0, 100, 2000), Some(100..2100));
        // A segment stays dirty, for the next sync, after its write-back started.
        assert!(store.dirty.lock().contains_key(&0));
    }

    #[test]
    fn a_failed_write_back_start_fails_the_write_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let (store, fs) = counting(dir.path(), 1000);
        fs.arm(Trigger::nth(1).only(&[CallKind::SegmentWriteback]));
        let err = store.write(PhysicalBlock(0), 0, &[4; 1000]).unwrap_err();
        assert!(err.to_string().contains("segment write-back"), "{err}");
        fs.disarm();
        // The bytes were written and the segment is still dirty: the next sync covers them.
        assert!(store.dirty.lock().contains_key(&0));
        store.sync().unwrap();
    }

    /// On the host's file system the call is made for real, and a range outside the segment is
    /// refused before it is.
    #[test]
    fn real_segments_start_write_back_of_ranges_inside_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).with_writeback_bytes(BLOCK as u64);
        store
            .write(PhysicalBlock(0), 0, &pattern(3 * BLOCK, 9))
            .unwrap();
        let segment = store.existing(0).unwrap();
        segment.start_writeback(0, segment.len()).unwrap();
        assert!(matches!(
            segment.start_writeback(1, segment.len()),
            Err(Error::InvalidArgument(_))
        ));
        let mut buf = vec![0; 3 * BLOCK];
        store.read(PhysicalBlock(0), &mut buf).unwrap();
        assert_eq!(buf, pattern(3 * BLOCK, 9));
    }
}
