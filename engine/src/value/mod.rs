//! Value files: large values live outside the index, in logical byte spaces whose blocks an
//! extent map places on physical blocks of the block store (`docs/format/value.md`).
//!
//! - `block`: the numbers (`ValueFileId`, `LogicalBlock`, `PhysicalBlock`).
//! - `extent`: one value file's map from logical to physical block runs.
//! - `allocator`: which physical blocks are free, and when freed ones may be reused.
//! - `store`: the physical block space itself, over fixed-size segment files.

#![allow(dead_code, reason = "wired in by the value store integration")]

pub(crate) mod allocator;
pub(crate) mod block;
pub(crate) mod extent;
pub(crate) mod store;
