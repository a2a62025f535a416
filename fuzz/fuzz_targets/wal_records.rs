//! Any bytes as a write-ahead log (or manifest) file: the record reader must return records or
//! an error, never panic, hang or allocate more than the file's size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = extentdb::fuzzing::wal_records(data);
});
