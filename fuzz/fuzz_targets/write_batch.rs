//! Any bytes as a write-batch payload read from the log: the decoder must return operations or
//! an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = extentdb::fuzzing::write_batch(data);
});
