//! I/O errors: the standard workload (`common/workload.rs`) with one of its file-system calls
//! failing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::sync::Arc;

mod common;

use common::workload::{self, MustHold, OnError};
use extentdb::fs::RealFs;

/// Without faults the workload reads back everything it wrote, and its compactions do every
/// kind of reclamation, so that failing their calls tests something.
#[test]
fn the_workload_without_faults_reads_what_it_wrote_and_reclaims_every_way() {
    let root = tempfile::tempdir().unwrap();
    let report = workload::run(Arc::new(RealFs), root.path(), OnError::Stop);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.wrong.is_empty(), "{:?}", report.wrong);
    let total = |f: fn(&extentdb::Stats) -> u64| report.stats.iter().map(f).sum::<u64>();
    let did = [
        ("value files deleted", total(|s| s.value_files_deleted)),
        ("blocks punched", total(|s| s.value_punched_blocks)),
        ("segments removed", total(|s| s.value_segments_removed)),
        ("values evacuated", total(|s| s.value_evacuations)),
        ("relocations", total(|s| s.value_relocations)),
        ("flushes", total(|s| s.flushes)),
        ("compactions", total(|s| s.compactions)),
    ];
    for (what, n) in did {
        assert!(n > 0, "the workload made no {what}: {did:?}");
    }
    let checked = workload::check(
        Arc::new(RealFs),
        root.path(),
        &report.history,
        MustHold::Acked,
    )
    .unwrap();
    assert_eq!(checked.states, 1);
    eprintln!(
        "writes {:?}, {} keys at the end; {did:?}",
        workload::outcomes(&report.history),
        checked.keys
    );
}

/// The checker can fail: a database that lost an acknowledged write, or holds one never made,
/// is not accepted, and neither is a read of bytes no write gave.
#[test]
fn the_checker_rejects_a_lost_write_an_invented_one_and_a_wrong_read() {
    let root = tempfile::tempdir().unwrap();
    let report = workload::run(Arc::new(RealFs), root.path(), OnError::Stop);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let history = &report.history;
    let last = history.states()[0].iter().next_back().unwrap();
    let (lost, kept) = (last.0.clone(), last.1.clone());
    assert!(history.check_get(&lost, Some(&kept)).is_ok());
    assert!(history.check_get(&lost, Some(b"other")).is_err());
    assert!(history.check_get(&lost, None).is_err());

    let dir = workload::db_dir(root.path());
    let db = workload::options(Arc::new(RealFs), extentdb::ReadPath::Pool)
        .open(&dir)
        .unwrap();
    db.delete(&lost).unwrap();
    drop(db);
    let err = workload::check(Arc::new(RealFs), root.path(), history, MustHold::Acked).unwrap_err();
    assert!(err.contains("matching none"), "{err}");

    let db = workload::options(Arc::new(RealFs), extentdb::ReadPath::Pool)
        .open(&dir)
        .unwrap();
    db.put(&lost, &kept).unwrap();
    db.put("invented", "x").unwrap();
    drop(db);
    let err = workload::check(Arc::new(RealFs), root.path(), history, MustHold::Acked).unwrap_err();
    assert!(err.contains("matching none"), "{err}");
}
