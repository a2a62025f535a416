//! The numbers of the value store, one type each, so the compiler keeps apart exactly the
//! quantities this engine exists not to confuse: a *logical* block of a value file (what the
//! index and the buffer pool name) and a *physical* block of the block store (where the bytes
//! are on disk today, which relocation changes).

use std::fmt;

/// A value file: a logical, append-only byte space. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ValueFileId(pub u64);

/// A block of a value file's logical byte space: logical offset / block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogicalBlock(pub u64);

/// A block of the block store: physical offset / block size, across all segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysicalBlock(pub u64);

macro_rules! block_arith {
    ($t:ident) => {
        #[allow(
            dead_code,
            reason = "generated for both block types; each uses its share"
        )]
        impl $t {
            /// The block `n` blocks further on.
            #[must_use]
            pub fn add(self, n: u64) -> $t {
                $t(self.0 + n)
            }

            /// Blocks from `earlier` to `self`; `None` if `earlier` is after `self`.
            #[must_use]
            pub fn since(self, earlier: $t) -> Option<u64> {
                self.0.checked_sub(earlier.0)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

block_arith!(LogicalBlock);
block_arith!(PhysicalBlock);

impl fmt::Display for ValueFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
