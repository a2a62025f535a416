//! Sorted tables (SSTables): immutable files of internal keys in order, with their values
//! inline, a bloom filter, the table's range tombstones and an index of data blocks.
//!
//! - `format`: constants, block handles, block trailers (type + CRC32), footer.
//! - `block`: the prefix-compressed block with restart points (data and index blocks).
//! - `bloom`: the per-table bloom filter over user keys.
//! - `cache`: the shared [`BlockCache`] of checked data blocks.
//! - `builder`: [`TableBuilder`] writes a table.
//! - `reader`: [`Table`] reads one, [`TableIter`] iterates it.
//!
//! Invariants: a table is written once, in internal key order, and never modified; every byte
//! of it is covered by a block CRC or the footer's CRC and magic, so damage reads as
//! `Error::Corruption`, never as a panic or a wrong value.
//!
//! Thread safety: [`Table`] and [`BlockCache`] are `Send + Sync`; builders and iterators
//! have one owner.
//!
//! Read next: `docs/format/table.md`, then `builder.rs` and `reader.rs`.

mod block;
mod bloom;
mod builder;
mod cache;
mod format;
mod reader;

pub(crate) use bloom::bloom_hash;
#[cfg(feature = "benching")]
pub(crate) use bloom::{BloomBuilder, BloomFilter, FilterLayout};
pub(crate) use builder::{TableBuilder, TableOptions};
pub(crate) use cache::BlockCache;
#[cfg(test)]
pub(crate) use format::FormatVersion;
pub(crate) use reader::{ReadMode, Table, TableIter, TableScan};
