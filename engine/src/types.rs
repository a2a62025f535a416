//! The byte types handed to users: [`Key`] and [`Value`].
//!
//! Both are cheap, immutable, reference-counted views of bytes owned by the engine's buffers
//! (a table block, a memtable entry). Holding one keeps its bytes valid: they are never a view
//! of storage that may be reused.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

macro_rules! byte_view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Bytes);

        impl $name {
            pub(crate) fn from_bytes(b: Bytes) -> Self {
                Self(b)
            }

            /// Copies the bytes into a `Vec`.
            #[must_use]
            pub fn to_vec(&self) -> Vec<u8> {
                self.0.to_vec()
            }
        }

        impl Deref for $name {
            type Target = [u8];
            fn deref(&self) -> &[u8] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl Borrow<[u8]> for $name {
            fn borrow(&self) -> &[u8] {
                &self.0
            }
        }

        impl PartialEq<[u8]> for $name {
            fn eq(&self, other: &[u8]) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&[u8]> for $name {
            fn eq(&self, other: &&[u8]) -> bool {
                self.0 == *other
            }
        }

        impl<const N: usize> PartialEq<[u8; N]> for $name {
            fn eq(&self, other: &[u8; N]) -> bool {
                self.0 == other[..]
            }
        }

        impl<const N: usize> PartialEq<&[u8; N]> for $name {
            fn eq(&self, other: &&[u8; N]) -> bool {
                self.0 == other[..]
            }
        }

        impl PartialEq<Vec<u8>> for $name {
            fn eq(&self, other: &Vec<u8>) -> bool {
                self.0 == other[..]
            }
        }

        impl From<$name> for Vec<u8> {
            fn from(v: $name) -> Vec<u8> {
                v.0.into()
            }
        }

        impl From<&[u8]> for $name {
            fn from(b: &[u8]) -> Self {
                Self(Bytes::copy_from_slice(b))
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(b: Vec<u8>) -> Self {
                Self(Bytes::from(b))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"{}\"", self.0.escape_ascii())
            }
        }
    };
}

byte_view! {
    /// A key returned by an iterator. Dereferences to `[u8]`.
    Key
}

byte_view! {
    /// A value returned by a read. Dereferences to `[u8]`; holding it keeps its bytes valid
    /// whatever happens to the key afterwards.
    Value
}
