//! extentdb: an embedded, ordered key-value storage engine.
#![warn(missing_docs)]

pub(crate) mod coding;
mod error;
pub(crate) mod fs;
pub(crate) mod key;

pub use error::{Error, Result};
