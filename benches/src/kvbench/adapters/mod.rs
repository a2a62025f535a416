//! One adapter per engine, each implementing [`Engine`](super::engine::Engine) with the
//! fairness rules of `engine.rs`. Peers compile only with their cargo feature.

pub mod extentdb;
#[cfg(feature = "fjall")]
pub mod fjall;
#[cfg(feature = "redb")]
pub mod redb;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
#[cfg(feature = "sled")]
pub mod sled;
