//! Any bytes as a table file: opening, verifying, iterating both ways, scanning forward and a
//! point lookup must return values or errors, never panic, and the scans must agree with the
//! iterator.
//!
//! Input layout: one byte `n`, then `n % 32` bytes of key to look up, then the table image. A
//! real table prefixed with a zero byte is therefore a valid seed (see `run.sh`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let probe_len = usize::from(n % 32).min(rest.len());
    let (probe, table) = rest.split_at(probe_len);
    let _ = extentdb::fuzzing::table(table, probe);
});
