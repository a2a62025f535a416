//! [`Inventory`]: the files a database is made of, for operators (`kv files`, `kv extents`).
//!
//! A snapshot of in-memory state taken without stopping writers: sizes may move on right after.

/// One sorted table of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableInfo {
    /// Its level in the tree.
    pub level: usize,
    /// Its file number (`NNNNNN.sst`).
    pub number: u64,
    /// Its size on disk.
    pub size_bytes: u64,
    /// Versions it holds (tombstones included).
    pub entries: u64,
    /// The table format version it was written in (`docs/format/table.md`). A table keeps
    /// its version until a compaction rewrites it into the current one.
    pub format_version: u32,
}

/// One value file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValueFileInfo {
    /// Its id (the number it was given from the database's file counter).
    pub id: u64,
    /// Extents in its map: 1 when its blocks are contiguous.
    pub extents: usize,
    /// Blocks it maps.
    pub mapped_blocks: u64,
    /// Logical bytes written to it.
    pub written_bytes: u64,
    /// Of those, bytes no pointer reaches any more (live = written - dead).
    pub dead_bytes: u64,
}

/// One segment file of the block store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Its number (`NNNNNN.seg`).
    pub number: u64,
    /// Its length (segments are sparse: the disk holds only what was written).
    pub size_bytes: u64,
}

/// Every table, value file and segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inventory {
    /// Tables, level by level.
    pub tables: Vec<TableInfo>,
    /// Value files, by id.
    pub value_files: Vec<ValueFileInfo>,
    /// Segments, by number.
    pub segments: Vec<SegmentInfo>,
    /// The block size of value files and segments.
    pub block_size_bytes: u64,
}

/// One extent of a value file: `blocks` logical blocks from `logical_block` stored at the
/// physical blocks from `physical_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtentInfo {
    /// First logical block.
    pub logical_block: u64,
    /// First physical block of the block store.
    pub physical_block: u64,
    /// Length in blocks.
    pub blocks: u64,
    /// Bytes of its blocks that a pointer still names.
    pub live_bytes: u64,
    /// Bytes of its blocks that no pointer names any more.
    pub dead_bytes: u64,
}
