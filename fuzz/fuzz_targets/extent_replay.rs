//! Any bytes as the value-file edits of a manifest (file created / removed, extent mapped /
//! unmapped / moved, reach, dead range), replayed into the value state as recovery does: the
//! replay must refuse the input with an error or build a state that satisfies DESIGN
//! invariant 3 (no physical block mapped twice or both mapped and free, mapped + free = all
//! blocks) and whose manifest snapshot replays to the same state. `extentdb::fuzzing::
//! extent_replay` panics otherwise.
//!
//! Input: the payload of a manifest record; the payloads of a manifest's records,
//! concatenated, are one (see `run.sh`, which seeds real manifests full of extent records).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = extentdb::fuzzing::extent_replay(data);
});
