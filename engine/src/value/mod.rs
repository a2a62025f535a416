//! Value files: large values live outside the index, in logical byte spaces whose blocks an
//! extent map places on physical blocks of the block store (`docs/format/value.md`).
//!
//! - `block`: the numbers (`ValueFileId`, `LogicalBlock`, `PhysicalBlock`).

pub(crate) mod block;
