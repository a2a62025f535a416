//! `kvbench`: extentdb side by side with peer engines (fjall, RocksDB, sled, redb) on db_bench's
//! and YCSB's workloads.
//!
//! - [`engine`]: the [`Engine`](engine::Engine) trait every engine is driven through, and
//!   [`EngineKind`](engine::EngineKind), which names and opens them; [`adapters`] holds one file
//!   per engine, each peer behind the cargo feature of its name.
//! - [`data`]: keys, self-checking values and the expected state of every key, so that every
//!   workload verifies what it reads and an engine that returns wrong data fails instead of
//!   winning.
//! - [`workload`]: the workloads and what each measures; [`zipf`]: YCSB's key choosers.
//! - [`machine`]: the disk's and memory's bandwidth and the process's I/O counters.
//! - [`runner`]: one engine's pass over the workloads at one value size.
//! - [`report`]: medians over runs, the terminal table and the JSON file; [`plot`]: SVG charts.
//!
//! The binary `src/bin/kvbench.rs` parses the flags and interleaves engines run by run.
//! `docs/benchmarks.md` ("Peer comparison: kvbench") describes the method and the results.

pub mod adapters;
pub mod data;
pub mod engine;
pub mod machine;
pub mod plot;
pub mod report;
pub mod runner;
pub mod workload;
pub mod zipf;

/// Any failure of a benchmark: an engine's error, an I/O error, or a verification failure, with
/// a message saying which.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The result type of kvbench.
pub type Result<T> = std::result::Result<T, Error>;

/// An [`Error`] carrying `message`.
#[must_use]
pub fn error(message: impl Into<String>) -> Error {
    message.into().into()
}
