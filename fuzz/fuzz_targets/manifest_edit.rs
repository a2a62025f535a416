//! Any bytes as a manifest record (a version edit): the decoder must return an edit or an
//! error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = extentdb::fuzzing::manifest_edit(data);
});
