//! The race the invalidate lock exists to close, with teeth.
//!
//! Readers (point reads, scans with readahead, and the mmap read path) read large values while
//! another thread frees value blocks and at once appends new, different values, which reuse
//! them. Every byte read is checked against what was written. A test hook widens the window
//! between a fill's extent lookup and its block read, and the one between an exclusive
//! section's pool invalidation and its remap or unmap, so the two land inside each other often.
//! The blocks are freed by:
//!
//! - relocation: every sealed value file is relocated (copy, remap, free the old blocks), and
//!   a file no pointer names is deleted;
//! - collection: keys are overwritten and range-deleted, and `Db::compact` drops their
//!   pointers, punches out the blocks left wholly dead, deletes dead files, evacuates mostly
//!   dead ones and relocates fragmented ones; every other round every file is relocated too;
//! - punching alone: a range-delete punches out the values a scan is reading ahead into.
//!
//! Built normally (`--features test-hooks`), there must be **no** stale read and no checksum
//! failure, and `Db::verify` must find no pool block that differs from the disk: a fill holds
//! the file's invalidate lock shared, a switch or a punch needs it exclusive, so no block can
//! be freed and reused between a lookup and its read.
//!
//! Built with `--features test-disable-invalidate-lock` the lock takes nothing and each test
//! must **find** what the lock prevents, or it fails: a test that cannot fail proves nothing.
//! Relocation and collection must produce stale reads (checksum failures of values whose
//! blocks were reused). Punching alone cannot: it frees only blocks no pointer reaches, and it
//! waits until no reader holds an older state that could still reach them (DESIGN invariant
//! 2c), lock or no lock. What the lock adds there is that no fill caches a block being punched
//! or finds it gone halfway; the punching test must catch one of those instead.
//!
//! The last test is about the job lock, not the invalidate lock: relocation must skip a value
//! file that the background value thread deleted after the relocation listed it.
//!
//! `EXTENTDB_RACE_SECONDS` sets the length of each run (default 3).

#![cfg(feature = "test-hooks")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test by panicking"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use extentdb::{Error, Options, ReadPath};

const KEYS: u64 = 48;

fn options(read_path: ReadPath) -> Options {
    Options::new()
        .block_size_bytes(512)
        .value_segment_bytes(64 << 10)
        .value_threshold_bytes(1024)
        .cache_bytes(128 << 10)
        .read_path(read_path)
        .test_race_window(Duration::from_millis(8))
}

/// How long each race runs: `EXTENTDB_RACE_SECONDS`, default 3.
fn race_duration() -> Duration {
    let seconds = std::env::var("EXTENTDB_RACE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(seconds)
}

/// A recognisable value for `key`: its name repeated, so bytes from any other value differ.
fn value(key: &str, len: usize) -> Vec<u8> {
    key.bytes().cycle().take(len).collect()
}

fn key(i: u64) -> String {
    format!("old{i:04}")
}

fn len_of(i: u64) -> usize {
    1500 + (i as usize * 397) % 5000
}

#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    /// Reads that found no value: the key was range-deleted (only the collection scenario
    /// deletes keys that readers look up).
    absent: AtomicU64,
    /// `Corruption` errors: bytes of a reused block that fail the pointer's checksum, or a
    /// fill that found a block punched out from under it.
    stale: AtomicU64,
    /// Of `stale`, the fills that found a block unmapped (punched) between their extent
    /// lookups.
    unmapped: AtomicU64,
    wrong: AtomicU64,
    /// What `Db::verify` said at the end: it compares every cached block with the disk.
    verified: std::sync::OnceLock<Result<(), String>>,
}

impl Tally {
    fn check(&self, key: &str, got: extentdb::Result<Option<Vec<u8>>>, expected: &[u8]) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match got {
            Ok(Some(v)) if v == expected => {}
            // Wrong bytes returned as a value: never acceptable, lock or no lock.
            Ok(other) => {
                self.wrong.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "{key}: wrong value returned ({:?} bytes)",
                    other.map(|v| v.len())
                );
            }
            Err(e) => self.failed(key, e),
        }
    }

    /// Like [`Tally::check`] for the collection scenario, where a read may return any version
    /// of key `i` up to `latest`, or nothing after a range-delete.
    fn check_version(&self, i: u64, got: extentdb::Result<Option<&[u8]>>, latest: u64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match got {
            Ok(None) => {
                self.absent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(v)) => {
                if let Err(why) = is_version_of(i, v, latest) {
                    self.wrong.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{}: wrong value returned: {why}", gc_key(i));
                }
            }
            Err(e) => self.failed(&gc_key(i), e),
        }
    }

    fn failed(&self, key: &str, e: Error) {
        match e {
            // Bytes of a reused block fail the pointer's checksum; a fill that looked an
            // extent up before a punch finds the block gone.
            Error::Corruption { what, .. } => {
                self.stale.fetch_add(1, Ordering::Relaxed);
                if what.contains("has no block") {
                    self.unmapped.fetch_add(1, Ordering::Relaxed);
                }
            }
            e => panic!("{key}: unexpected error {e}"),
        }
    }
}

fn run(dir: &Path, read_path: ReadPath) -> Arc<Tally> {
    {
        let db = options(read_path).open(dir).unwrap();
        for i in 0..KEYS {
            db.put(key(i), value(&key(i), len_of(i))).unwrap();
        }
    }
    {
        // A second session's file, whose values are deleted during the race: the file is then
        // deleted whole once no reader pins a state that can reach it.
        let db = options(read_path).open(dir).unwrap();
        for i in 0..KEYS {
            let k = format!("tmp{i:04}");
            db.put(&k, value(&k, len_of(i))).unwrap();
        }
    }
    // Reopened, the values above are in value files nobody appends to: they can be relocated
    // and deleted.
    let db = options(read_path).open(dir).unwrap();
    db.delete_range("tmp".."tmp~").unwrap();
    let deadline = Instant::now() + race_duration();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    for r in 0..2u64 {
        let (db, tally, stop) = (db.clone(), Arc::clone(&tally), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7 + 3) % KEYS;
                let k = key(i);
                let got = db.get(&k).map(|v| v.map(|v| v.to_vec()));
                tally.check(&k, got, &value(&k, len_of(i)));
            }
        }));
    }
    {
        let (db, tally, stop) = (db.clone(), Arc::clone(&tally), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            // Scans alternate between an iterator and a cursor.
            for pass in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if pass.is_multiple_of(2) {
                    for (i, pair) in db.range("old".."old~").enumerate() {
                        let k = key(i as u64);
                        let got = pair.map(|(key, v)| {
                            assert_eq!(key, k.as_bytes(), "scan returned keys out of order");
                            Some(v.to_vec())
                        });
                        tally.check(&k, got, &value(&k, len_of(i as u64)));
                    }
                    continue;
                }
                let mut cursor = db.cursor("old".."old~");
                for i in 0.. {
                    let k = key(i);
                    let got = match cursor.next() {
                        Ok(None) => break,
                        Ok(Some((key, v))) => {
                            assert_eq!(key, k.as_bytes(), "cursor returned keys out of order");
                            Ok(Some(v.to_vec()))
                        }
                        Err(e) => Err(e),
                    };
                    let failed = got.is_err();
                    tally.check(&k, got, &value(&k, len_of(i)));
                    if failed {
                        break;
                    }
                }
            }
        }));
    }
    let mut round = 0u64;
    while Instant::now() < deadline {
        db.test_relocate_value_files().unwrap();
        if round.is_multiple_of(8) {
            db.compact().unwrap();
        }
        // New values land in the blocks the relocation and the deletion just freed.
        for j in 0..16 {
            let k = format!("new{round:05}-{j:02}");
            db.put(&k, value(&k, 4000)).unwrap();
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // With the readers gone nothing pins an older state: the dead file must go now if it has
    // not already.
    db.compact().unwrap();
    let verified = db.verify().map(|_| ()).map_err(|e| e.to_string());
    let stats = db.stats();
    eprintln!(
        "{read_path:?}: {} reads, {} stale, {} wrong; {round} relocation rounds, {} relocations, {} files deleted, pool: {} fills, {} hits, {} retries",
        tally.reads.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
        stats.value_relocations,
        stats.value_files_deleted,
        stats.pool_fills,
        stats.pool_hits,
        stats.pool_retries,
    );
    assert!(
        stats.value_relocations > 0,
        "the test never relocated anything"
    );
    assert!(
        stats.value_files_deleted > 0,
        "the test never deleted a value file"
    );
    eprintln!("{read_path:?}: verify after the run: {verified:?}");
    let _ = tally.verified.set(verified);
    tally
}

fn judge(tally: &Tally) {
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong bytes were returned as a value"
    );
    let stale = tally.stale.load(Ordering::Relaxed);
    if cfg!(feature = "test-disable-invalidate-lock") {
        assert!(
            stale > 0,
            "without the invalidate lock the race must show up as stale reads"
        );
    } else {
        assert_eq!(stale, 0, "stale reads with the invalidate lock held");
        assert_eq!(
            tally.verified.get(),
            Some(&Ok(())),
            "verify found stale pool blocks"
        );
    }
}

#[test]
fn readers_never_see_reused_blocks_through_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    judge(&run(dir.path(), ReadPath::Pool));
}

#[test]
fn readers_never_see_reused_blocks_through_the_mmap_path() {
    let dir = tempfile::tempdir().unwrap();
    judge(&run(dir.path(), ReadPath::Mmap));
}

#[test]
fn relocation_keeps_every_pointer_valid_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || options(ReadPath::Pool).test_race_window(Duration::ZERO);
    {
        let db = opts().open(dir.path()).unwrap();
        for i in 0..KEYS {
            db.put(key(i), value(&key(i), len_of(i))).unwrap();
        }
    }
    let db = opts().open(dir.path()).unwrap();
    for round in 0..3 {
        assert!(
            db.test_relocate_value_files().unwrap() > 0,
            "round {round} moved nothing"
        );
        for i in 0..KEYS {
            assert_eq!(db.get(key(i)).unwrap().unwrap(), value(&key(i), len_of(i)));
        }
        db.verify().unwrap();
    }
    let stats = db.stats();
    assert!(
        stats.value_relocations >= 3 && stats.pool_invalidations > 0,
        "{stats:?}"
    );
    drop(db);
    let db = opts().open(dir.path()).unwrap();
    for i in 0..KEYS {
        assert_eq!(db.get(key(i)).unwrap().unwrap(), value(&key(i), len_of(i)));
    }
    db.verify().unwrap();
}

// Collection: punching, deletion, evacuation and relocation, all at once.

/// Keys of the collection scenario; each round overwrites `GC_OVERWRITE` of them in key
/// order (so a scan reads ahead across their values) and range-deletes `GC_DELETE` others.
const GC_KEYS: u64 = 64;
const GC_OVERWRITE: u64 = 24;
const GC_DELETE: u64 = 8;
/// Keys one scan reads at most.
const GC_SCAN: u64 = 6;
/// Size of a value header: the key's number (u32) and the version (u64).
const GC_HEADER: usize = 12;

/// Value files seal at 16 KiB (a few values each), so files fill, die and are evacuated or
/// deleted all the time; the pool is large enough for a readahead window of 32 blocks.
///
/// The background threads run too: the value thread frees blocks and deletes files whenever
/// the readers' [`Beat`] lets it, while the writer relocates and compacts.
fn gc_options(read_path: ReadPath) -> Options {
    options(read_path)
        .value_file_bytes(16 << 10)
        .cache_bytes(256 << 10)
}

/// The readers' common beat: they all pause for the first `QUIET_MS` of every `PERIOD_MS`,
/// and a scan stops early when a pause begins. `Db::compact` frees dead blocks only at an
/// instant when no reader holds a super version older than the one its index compaction has
/// just installed (DESIGN invariant 2c); readers that never pause together hold one at nearly
/// every such instant. A reclamation that starts in a pause runs on (each file's exclusive
/// section lasts the race window) into the readers' next burst.
struct Beat {
    start: Instant,
}

impl Beat {
    const PERIOD_MS: u128 = 60;
    const QUIET_MS: u128 = 30;

    fn quiet(&self) -> bool {
        self.start.elapsed().as_millis() % Self::PERIOD_MS < Self::QUIET_MS
    }

    fn wait(&self) {
        while self.quiet() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn gc_key(i: u64) -> String {
    format!("gc{i:04}")
}

fn gc_key_number(key: &[u8]) -> u64 {
    let digits = key
        .strip_prefix(b"gc")
        .expect("a scan returned a foreign key");
    std::str::from_utf8(digits).unwrap().parse().unwrap()
}

/// 3 to 10 blocks of 512 bytes, different for every version.
fn gc_len(i: u64, version: u64) -> usize {
    1500 + ((i * 397 + version * 131) % 3500) as usize
}

/// Version `version` of key `i`: a header naming both, then xorshift bytes seeded by both, so
/// the bytes of any other value (another key, another version) differ.
fn gc_value(i: u64, version: u64) -> Vec<u8> {
    let len = gc_len(i, version);
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&u32::try_from(i).unwrap().to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    let mut x = ((i << 32) | version).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Ok if `got` is, byte for byte, one of the versions `1..=latest` of key `i`.
fn is_version_of(i: u64, got: &[u8], latest: u64) -> Result<(), String> {
    let Some((key, version)) = got.get(..GC_HEADER).map(|h| h.split_at(4)) else {
        return Err(format!("{} bytes, shorter than a header", got.len()));
    };
    let key = u64::from(u32::from_le_bytes(key.try_into().unwrap()));
    let version = u64::from_le_bytes(version.try_into().unwrap());
    if key != i || version == 0 || version > latest {
        return Err(format!(
            "header names key {key} version {version} (newest written: {latest})"
        ));
    }
    if got != gc_value(i, version) {
        return Err(format!(
            "{} bytes that are not version {version} ({} bytes)",
            got.len(),
            gc_len(i, version)
        ));
    }
    Ok(())
}

/// Two point readers and one scanner, on the readers' beat.
fn spawn_gc_readers(
    db: &extentdb::Db,
    latest: &Arc<Vec<AtomicU64>>,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
    beat: &Arc<Beat>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for r in 0..3u64 {
        let (db, latest, tally, stop, beat) = (
            db.clone(),
            Arc::clone(latest),
            Arc::clone(tally),
            Arc::clone(stop),
            Arc::clone(beat),
        );
        threads.push(std::thread::spawn(move || {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                beat.wait();
                i = (i * 7 + 3) % GC_KEYS;
                if r == 2 {
                    scan_gc(&db, i, &latest, &tally, &beat);
                    continue;
                }
                let got = db.get(gc_key(i));
                // Read after the get: any version the get can have seen is at most this.
                let newest = latest[i as usize].load(Ordering::SeqCst);
                match got {
                    Ok(v) => tally.check_version(i, Ok(v.as_deref()), newest),
                    Err(e) => tally.check_version(i, Err(e), newest),
                }
            }
        }));
    }
    threads
}

/// A short scan from key `first`, reading ahead across values written side by side.
fn scan_gc(db: &extentdb::Db, first: u64, latest: &[AtomicU64], tally: &Tally, beat: &Beat) {
    let end = first + GC_SCAN;
    if first.is_multiple_of(2) {
        cursor_gc(db, first, latest, tally, beat);
        return;
    }
    let mut after = None;
    for pair in db.range(gc_key(first)..gc_key(end)) {
        match pair {
            Ok((key, v)) => {
                let i = gc_key_number(&key);
                assert!(
                    (first..end).contains(&i) && after < Some(i),
                    "a scan of [{first}, {end}) returned key {i} after {after:?}"
                );
                after = Some(i);
                let newest = latest[i as usize].load(Ordering::SeqCst);
                tally.check_version(i, Ok(Some(&v)), newest);
            }
            Err(e) => tally.check_version(first, Err(e), 0),
        }
        if beat.quiet() {
            break;
        }
    }
}

/// [`scan_gc`] through a cursor.
fn cursor_gc(db: &extentdb::Db, first: u64, latest: &[AtomicU64], tally: &Tally, beat: &Beat) {
    let end = first + GC_SCAN;
    let mut after = None;
    let mut cursor = db.cursor(gc_key(first)..gc_key(end));
    loop {
        match cursor.next() {
            Ok(None) => break,
            Ok(Some((key, v))) => {
                let i = gc_key_number(key);
                assert!(
                    (first..end).contains(&i) && after < Some(i),
                    "a cursor over [{first}, {end}) returned key {i} after {after:?}"
                );
                after = Some(i);
                let newest = latest[i as usize].load(Ordering::SeqCst);
                tally.check_version(i, Ok(Some(v)), newest);
            }
            Err(e) => {
                tally.check_version(first, Err(e), 0);
                break;
            }
        }
        if beat.quiet() {
            break;
        }
    }
}

/// What the collection scenario did: its rounds, and the counters as the readers stopped.
struct GcFigures {
    rounds: u64,
    stats: extentdb::Stats,
}

/// Readers (point reads, short scans with readahead) check every byte against the versions
/// written, while one thread in a loop overwrites and range-deletes keys, compacts (which
/// drops the dead pointers, punches wholly dead blocks, deletes dead files, evacuates mostly
/// dead ones and relocates fragmented ones), relocates every sealed file every other round,
/// and at once writes new values into the freed blocks.
fn run_gc(dir: &Path, read_path: ReadPath) -> (Arc<Tally>, GcFigures) {
    let db = gc_options(read_path).open(dir).unwrap();
    // The newest version of each key whose write has begun: a reader may see any version up
    // to it.
    let latest: Arc<Vec<AtomicU64>> = Arc::new((0..GC_KEYS).map(|_| AtomicU64::new(0)).collect());
    let put = |i: u64| {
        let version = latest[i as usize].fetch_add(1, Ordering::SeqCst) + 1;
        db.put(gc_key(i), gc_value(i, version)).unwrap();
    };
    (0..GC_KEYS).for_each(put);
    let deadline = Instant::now() + race_duration();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let beat = Arc::new(Beat {
        start: Instant::now(),
    });
    let threads = spawn_gc_readers(&db, &latest, &tally, &stop, &beat);
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        // New values first: they land in the blocks the last round freed.
        let first = rounds * 11 % GC_KEYS;
        (0..GC_OVERWRITE)
            .map(|j| (first + j) % GC_KEYS)
            .for_each(put);
        let start = (rounds * 29 + 40) % GC_KEYS;
        db.delete_range(gc_key(start)..gc_key(start + GC_DELETE))
            .unwrap();
        db.compact().unwrap();
        if rounds % 2 == 1 {
            db.test_relocate_value_files().unwrap();
        }
        rounds += 1;
    }
    let stats = db.stats();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    db.compact().unwrap();
    let verified = db.verify().map(|_| ()).map_err(|e| e.to_string());
    let reads = tally.reads.load(Ordering::Relaxed);
    let absent = tally.absent.load(Ordering::Relaxed);
    let stale = tally.stale.load(Ordering::Relaxed);
    let wrong = tally.wrong.load(Ordering::Relaxed);
    eprintln!(
        "{read_path:?} collection: {reads} reads: {} ok, {absent} absent, {stale} stale ({} \
         unmapped), {wrong} wrong; {rounds} rounds: {} bytes reclaimed, {} files deleted, \
         {} evacuations, {} relocations, {} blocks punched; pool: {} fills, {} hits, \
         {} retries, {} invalidations; verify at the end: {verified:?}",
        reads - absent - stale - wrong,
        tally.unmapped.load(Ordering::Relaxed),
        stats.value_reclaimed_bytes,
        stats.value_files_deleted,
        stats.value_evacuations,
        stats.value_relocations,
        stats.value_punched_blocks,
        stats.pool_fills,
        stats.pool_hits,
        stats.pool_retries,
        stats.pool_invalidations,
    );
    let _ = tally.verified.set(verified);
    (tally, GcFigures { rounds, stats })
}

/// Every kind of freeing must have happened while the readers ran.
fn judge_gc(tally: &Tally, figures: &GcFigures) {
    let s = &figures.stats;
    assert!(figures.rounds > 0, "no round ran");
    assert!(s.value_reclaimed_bytes > 0, "nothing was reclaimed: {s:?}");
    assert!(
        s.value_files_deleted > 0,
        "no value file was deleted: {s:?}"
    );
    assert!(s.value_evacuations > 0, "nothing was evacuated: {s:?}");
    assert!(s.value_relocations > 0, "nothing was relocated: {s:?}");
    judge(tally);
}

#[test]
fn readers_never_see_punched_or_evacuated_blocks_through_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (tally, figures) = run_gc(dir.path(), ReadPath::Pool);
    judge_gc(&tally, &figures);
}

#[test]
fn readers_never_see_punched_or_evacuated_blocks_through_the_mmap_path() {
    let dir = tempfile::tempdir().unwrap();
    let (tally, figures) = run_gc(dir.path(), ReadPath::Mmap);
    judge_gc(&tally, &figures);
}

// Punching, aimed at the one window it opens.

/// Values of one punch round: two live ones written side by side, then six that the round
/// range-deletes, which its `compact` punches out (the same `compact` seals the file, so the
/// next round writes to a new one, and may evacuate, delete or relocate older files).
fn punch_keys(round: u64) -> Vec<(String, usize)> {
    let live = [
        (format!("p{round:05}a0"), 1100),
        (format!("p{round:05}a1"), 1500),
    ];
    let doomed = (0..6).map(|j| (format!("p{round:05}d{j}"), 2000));
    live.into_iter().chain(doomed).collect()
}

/// A scanner reads the two live values of the newest round over and over: the second follows
/// the first, so it is read ahead from into the dead values after it. Each round the writer
/// waits until that readahead is cached, range-deletes the dead values and compacts: the
/// punch of their blocks drops the cached run, and the scanner at once fills it again, inside
/// the punch's exclusive section if there is no lock.
///
/// Under the invalidate lock the refill waits for the punch and stops at the hole. Without it
/// the refill looks the blocks up before they are unmapped and reads them after: it caches
/// blocks that no longer exist (which `Db::verify` reports), or a later extent lookup of the
/// same fill finds a block gone (a `Corruption` error for a live value).
fn run_punch(dir: &Path, read_path: ReadPath) -> (Arc<Tally>, extentdb::Stats, u64) {
    let db = options(read_path)
        .test_race_window(Duration::from_millis(4))
        .background_compaction(false)
        .open(dir)
        .unwrap();
    let current = Arc::new(AtomicU64::new(0));
    let scans = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let scanner = {
        let (db, current, scans, stop, tally) = (
            db.clone(),
            Arc::clone(&current),
            Arc::clone(&scans),
            Arc::clone(&stop),
            Arc::clone(&tally),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let round = current.load(Ordering::SeqCst);
                let live = punch_keys(round);
                let range = format!("p{round:05}a")..format!("p{round:05}b");
                for (pair, (k, len)) in db.range(range).zip(&live) {
                    let got = pair.map(|(key, v)| {
                        assert_eq!(key, k.as_bytes(), "a scan returned an unexpected key");
                        Some(v.to_vec())
                    });
                    tally.check(k, got, &value(k, *len));
                }
                scans.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + race_duration();
    let mut round = 0;
    while Instant::now() < deadline && !scanner.is_finished() {
        round += 1;
        for (k, len) in punch_keys(round) {
            db.put(&k, value(&k, len)).unwrap();
        }
        current.store(round, Ordering::SeqCst);
        // Two scans begun after the store: the second found the new values with readahead.
        let seen = scans.load(Ordering::SeqCst);
        while scans.load(Ordering::SeqCst) < seen + 2 && !scanner.is_finished() {
            std::thread::sleep(Duration::from_micros(100));
        }
        db.delete_range(format!("p{round:05}d")..format!("p{round:05}e"))
            .unwrap();
        db.compact().unwrap();
    }
    let stats = db.stats();
    stop.store(true, Ordering::Relaxed);
    scanner.join().unwrap();
    // No compaction first: a block cached by mistake must still be there to be found.
    let verified = db.verify().map(|_| ()).map_err(|e| e.to_string());
    eprintln!(
        "{read_path:?} punch: {} reads, {} stale ({} unmapped), {} wrong; {round} rounds: \
         {} bytes reclaimed, {} relocations, {} evacuations, {} files deleted; pool: {} fills, \
         {} hits, {} retries, {} invalidations; verify at the end: {verified:?}",
        tally.reads.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.unmapped.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
        stats.value_reclaimed_bytes,
        stats.value_relocations,
        stats.value_evacuations,
        stats.value_files_deleted,
        stats.pool_fills,
        stats.pool_hits,
        stats.pool_retries,
        stats.pool_invalidations,
    );
    let _ = tally.verified.set(verified);
    (tally, stats, round)
}

fn judge_punch(tally: &Tally, stats: &extentdb::Stats) {
    // `compact` also seals, evacuates, deletes and relocates files here; what the test judges
    // is specific to punching: only an unmapped block can be "no block" to `verify`.
    assert!(
        stats.value_reclaimed_bytes > 0 && stats.value_punched_blocks > 0,
        "nothing was punched: {stats:?}"
    );
    if !cfg!(feature = "test-disable-invalidate-lock") {
        judge(tally);
        return;
    }
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong bytes were returned as a value"
    );
    let cached_punched = matches!(
        tally.verified.get(),
        Some(Err(e)) if e.contains("has no block")
    );
    assert!(
        cached_punched || tally.unmapped.load(Ordering::Relaxed) > 0,
        "without the invalidate lock a readahead must cache a punched block or find it gone"
    );
}

#[test]
fn readahead_never_caches_punched_blocks_through_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (tally, stats, _) = run_punch(dir.path(), ReadPath::Pool);
    judge_punch(&tally, &stats);
}

#[test]
fn readahead_never_caches_punched_blocks_through_the_mmap_path() {
    let dir = tempfile::tempdir().unwrap();
    let (tally, stats, _) = run_punch(dir.path(), ReadPath::Mmap);
    judge_punch(&tally, &stats);
}

// Relocation racing the value thread.

/// Relocation lists the value files, then relocates them one by one under the job lock; the
/// background value thread may delete one of them in between, once nothing in it is live and
/// no reader pins an older state. Relocating a file that is gone must skip it, not fail with
/// `Corruption` (which poisons the database). `Db::compact` relocates fragmented files the
/// same way.
#[test]
fn relocation_skips_a_value_file_the_value_thread_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(ReadPath::Pool)
        .test_race_window(Duration::ZERO)
        .value_file_bytes(4 << 10)
        .open(dir.path())
        .unwrap();
    for round in 0..3 {
        for j in 0..32 {
            let k = format!("k{round}-{j:02}");
            db.put(&k, value(&k, 3000)).unwrap();
        }
        db.delete_range(format!("k{round}-")..format!("k{round}-~"))
            .unwrap();
        // An iterator opened before the compaction keeps the compaction's own reclamation
        // from deleting the dead files: the value thread deletes them once it is dropped.
        let pin = db.range("a".."b");
        db.compact().unwrap();
        let deleted = db.stats().value_files_deleted;
        drop(pin);
        let deadline = Instant::now() + Duration::from_secs(2);
        while db.stats().value_files_deleted == deleted && Instant::now() < deadline {
            db.test_relocate_value_files().unwrap();
        }
        assert!(
            db.stats().value_files_deleted > deleted,
            "round {round}: the value thread deleted nothing"
        );
    }
    db.verify().unwrap();
}
