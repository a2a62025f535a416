//! No early reuse across a power loss (DESIGN invariant 2b): a freed value block may be handed
//! out again only once the manifest record that freed it (the `Unmapped` of a punch, the
//! `FileRemoved` of a deleted file, the `Moved` of a relocation) is durable. Otherwise a power
//! loss can keep the old mapping while the block already holds another value's bytes: the
//! recovered extent maps then map the block twice, and a pointer that survives reads someone
//! else's bytes.
//!
//! The power-loss test cannot see an early release: single-threaded, nothing allocates between
//! the release and the log write, and every block user logs its own record after the free's
//! in the same manifest, whose sync covers both. The window needs a second thread, so each
//! test here builds it on purpose. A test hook (`Options::test_on_release`, feature
//! `test-hooks`) stops the freeing thread right after its freed blocks become reusable. While
//! it waits, this thread writes values with `Durability::Sync` into new reservations, which
//! reuse the freed blocks (the test checks that they do, or it would prove nothing), and then
//! the power is cut ([`MemFs::cut_power`]). Every image a power loss can leave (the synced
//! state and torn ones) must reopen, pass `Db::verify`, and hold exactly the acknowledged
//! writes, byte for byte.
//!
//! With the engine's order (log and sync the record, punch, release) the record is durable
//! when the hook runs, and there must be no violation. Built with the feature
//! `test-release-before-log`, the engine releases before the log write: the record is lost
//! with the power, the image maps the reused blocks twice, reopening fails with `Corruption`,
//! and each test must find that, or it fails. See `docs/testing.md`, "Early reuse across a
//! power loss".

#![cfg(all(
    feature = "test-hooks",
    any(target_os = "linux", target_os = "android")
))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Model;
use common::workload::value;
use extentdb::fs::{MemFs, Unsynced};
use extentdb::{Db, Durability, Options, WriteBatch};

/// Values of six 512-byte blocks, so that each takes blocks of its own.
const VALUE_BYTES: usize = 3000;
/// Values written before blocks are freed.
const OLD_VALUES: u64 = 16;
/// Values written while the freeing thread waits: more than one 32-block reservation.
const NEW_VALUES: u64 = 8;
/// Torn images checked per cut, besides the synced state.
const TORN_SEEDS: u64 = 3;
/// How long to wait for the freeing thread to reach the hook before failing.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

fn db_dir() -> PathBuf {
    Path::new("/free").join("db")
}

/// 512-byte blocks in 64 KiB segments (32-block reservations), no background threads: blocks
/// are freed only by the operation under test, on the thread the test starts.
fn options(fs: &MemFs) -> Options {
    Options::new()
        .block_size_bytes(512)
        .value_segment_bytes(64 << 10)
        .value_threshold_bytes(1024)
        .background_compaction(false)
        .file_system(Arc::new(fs.clone()))
}

fn old_key(i: u64) -> Vec<u8> {
    format!("old{i:03}").into_bytes()
}

fn new_key(i: u64) -> Vec<u8> {
    format!("new{i:03}").into_bytes()
}

/// Where the freeing thread is, as the release hook and the test see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The hook lets releases pass.
    Idle,
    /// The next release stops its thread.
    Armed,
    /// A thread released blocks and waits in the hook.
    Stopped,
    /// The stopped thread may go on.
    Resumed,
}

/// The release hook's switch: stops the first release after [`Pause::arm`] until
/// [`Pause::resume`].
struct Pause {
    stage: Mutex<Stage>,
    changed: Condvar,
}

impl Pause {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            stage: Mutex::new(Stage::Idle),
            changed: Condvar::new(),
        })
    }

    /// Called by the engine each time freed blocks become reusable.
    fn on_release(&self) {
        let mut stage = self.stage.lock().unwrap();
        if *stage != Stage::Armed {
            return;
        }
        *stage = Stage::Stopped;
        self.changed.notify_all();
        while *stage == Stage::Stopped {
            stage = self.changed.wait(stage).unwrap();
        }
    }

    fn arm(&self) {
        *self.stage.lock().unwrap() = Stage::Armed;
    }

    /// Waits until `freeing` stops in the hook; panics if it ends first or takes too long.
    fn wait_stopped<T>(&self, freeing: &JoinHandle<T>) {
        let deadline = Instant::now() + HOOK_TIMEOUT;
        let mut stage = self.stage.lock().unwrap();
        while *stage != Stage::Stopped {
            assert!(
                !freeing.is_finished(),
                "the freeing thread ended without reaching the release hook (nothing was freed, or \
                 the hook is gone): the test would prove nothing"
            );
            assert!(
                Instant::now() < deadline,
                "the freeing thread did not reach the release hook"
            );
            stage = self
                .changed
                .wait_timeout(stage, Duration::from_millis(20))
                .unwrap()
                .0;
        }
    }

    fn resume(&self) {
        *self.stage.lock().unwrap() = Stage::Resumed;
        self.changed.notify_all();
    }
}

/// Which value file maps each physical block.
fn block_owners(db: &Db) -> BTreeMap<u64, u64> {
    let mut owners = BTreeMap::new();
    for file in db.inventory().value_files {
        for e in db.value_file_extents(file.id).unwrap_or_default() {
            for block in e.physical_block..e.physical_block + e.blocks {
                owners.insert(block, file.id);
            }
        }
    }
    owners
}

fn put_synced(db: &Db, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    db.write_with(batch, Durability::Sync).unwrap();
}

/// Writes `OLD_VALUES` values, lets `prepare` change them (in `model` too), then runs `free`
/// on another thread. When `free` has made blocks reusable, writes `NEW_VALUES` values with
/// `Durability::Sync`, checks that they took freed blocks, cuts the power and checks every
/// image of what survived. Returns the violations found.
fn reuse_then_power_loss(prepare: fn(&Db, &mut Model), free: fn(&Db)) -> Vec<String> {
    let fs = MemFs::new();
    let pause = Pause::new();
    let hook = Arc::clone(&pause);
    let db = options(&fs)
        .test_on_release(move || hook.on_release())
        .open(db_dir())
        .unwrap();
    let mut model = Model::new();
    for i in 0..OLD_VALUES {
        let v = value(i, VALUE_BYTES);
        put_synced(&db, &old_key(i), &v);
        model.insert(old_key(i), v);
    }
    prepare(&db, &mut model);

    let before = block_owners(&db);
    pause.arm();
    let freeing = std::thread::spawn({
        let db = db.clone();
        move || free(&db)
    });
    pause.wait_stopped(&freeing);
    for i in 0..NEW_VALUES {
        let v = value(OLD_VALUES + i, VALUE_BYTES);
        put_synced(&db, &new_key(i), &v);
        assert_eq!(db.get(new_key(i)).unwrap().as_deref(), Some(v.as_slice()));
        model.insert(new_key(i), v);
    }
    let reused = block_owners(&db)
        .iter()
        .filter(|&(block, owner)| before.get(block).is_some_and(|old| old != owner))
        .count();
    assert!(
        reused > 0,
        "no freed block was reused before the power cut: the test would prove nothing"
    );
    fs.cut_power();
    pause.resume();
    // The freeing thread fails on the dead file system, or never touches it again; either is
    // what a power loss does to it.
    freeing.join().expect("the freeing thread panicked");
    drop(db);

    let images =
        std::iter::once(Unsynced::Lost).chain((1..=TORN_SEEDS).map(|seed| Unsynced::Torn { seed }));
    images
        .filter_map(|unsynced| {
            check_image(&fs, unsynced, &model)
                .err()
                .map(|e| format!("{unsynced:?} ({reused} reused blocks): {e}"))
        })
        .collect()
}

/// Reopens what a power loss leaves (`unsynced`) and checks it holds exactly `model`.
fn check_image(fs: &MemFs, unsynced: Unsynced, model: &Model) -> Result<(), String> {
    let image = fs
        .after_power_loss(unsynced)
        .map_err(|e| format!("image: {e}"))?;
    let db = options(&image)
        .open(db_dir())
        .map_err(|e| format!("reopen: {e}"))?;
    db.verify().map_err(|e| format!("verify: {e}"))?;
    for (key, want) in model {
        let got = db
            .get(key)
            .map_err(|e| format!("get {}: {e}", String::from_utf8_lossy(key)))?;
        if got.as_deref() != Some(want.as_slice()) {
            return Err(format!(
                "{} does not read back the bytes acknowledged for it",
                String::from_utf8_lossy(key)
            ));
        }
    }
    let held = common::try_scan(&db).map_err(|e| format!("scan: {e}"))?;
    if held != *model {
        return Err(format!(
            "the scan holds {} keys, the acknowledged writes leave {}",
            held.len(),
            model.len()
        ));
    }
    Ok(())
}

/// Built normally, there must be no violation. Built with the planted early release (feature
/// `test-release-before-log`), there must be one, or the test has no teeth.
fn judge(violations: &[String]) {
    if cfg!(feature = "test-release-before-log") {
        assert!(
            !violations.is_empty(),
            "blocks released before their free was logged went unnoticed"
        );
        println!(
            "the planted early release was caught ({} violations), e.g. {}",
            violations.len(),
            violations.first().map_or("", String::as_str)
        );
    } else {
        assert!(
            violations.is_empty(),
            "{} violations:\n{}",
            violations.len(),
            violations.join("\n")
        );
    }
}

/// Seals the value file the old values went to, so that it can be relocated or reclaimed.
fn seal(db: &Db, _: &mut Model) {
    db.compact().unwrap();
}

/// Deletes six neighbouring old values (whole blocks die, the file stays live).
fn delete_some(db: &Db, model: &mut Model) {
    for i in 1..7 {
        db.delete(old_key(i)).unwrap();
        model.remove(&old_key(i));
    }
}

/// Deletes every old value (the file dies whole).
fn delete_all(db: &Db, model: &mut Model) {
    for i in 0..OLD_VALUES {
        db.delete(old_key(i)).unwrap();
        model.remove(&old_key(i));
    }
}

/// Compaction frees what the deletes killed. A power cut fails it, as it fails any call.
fn compact(db: &Db) {
    let _ = db.compact();
}

/// Relocation copies the sealed file's live blocks elsewhere and frees the old ones.
fn relocate(db: &Db) {
    let _ = db.test_relocate_value_files();
}

#[test]
fn punched_blocks_are_reused_only_after_the_unmap_is_durable() {
    judge(&reuse_then_power_loss(delete_some, compact));
}

#[test]
fn a_deleted_files_blocks_are_reused_only_after_its_removal_is_durable() {
    judge(&reuse_then_power_loss(delete_all, compact));
}

#[test]
fn relocated_blocks_are_reused_only_after_the_move_is_durable() {
    judge(&reuse_then_power_loss(seal, relocate));
}
