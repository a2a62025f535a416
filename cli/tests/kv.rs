//! The `kv` binary, run as a user would: its output, and its exit codes (0 ok, 1 not found,
//! 2 usage error, 3 corruption, 4 locked, 1 any other error).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `kv --db DIR ARGS...`.
fn kv(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kv"))
        .arg("--db")
        .arg(dir)
        .args(args)
        .env_remove("KVDB_DIR")
        .output()
        .unwrap()
}

/// Runs `kv`, asserts exit code 0 and returns its standard output.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = kv(dir, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "kv {args:?}: stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Like [`ok`], for a command run just after this process dropped its handle on the database:
/// retries while `kv` exits 4 (locked), for at most 10 s.
///
/// The handle's lock is released when it is dropped, but a child that another test of this
/// process is spawning at that moment holds a copy of the lock's descriptor until its `exec`
/// closes it, so the lock may outlive the drop by that long.
fn ok_once_released(dir: &Path, args: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = kv(dir, args);
        if out.status.code() != Some(4) || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(dir, args)
}

/// Runs `kv --db DIR ARGS...` with `input` on standard input.
fn kv_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .arg("--db")
        .arg(dir)
        .args(args)
        .env_remove("KVDB_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread so that a child filling its stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn fresh() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn put_then_get_round_trips() {
    let dir = fresh();
    ok(dir.path(), &["put", "user:1", "ada lovelace"]);
    assert_eq!(ok(dir.path(), &["get", "user:1"]), "ada lovelace\n");
    ok(dir.path(), &["put", "user:1", "grace"]);
    assert_eq!(ok(dir.path(), &["get", "user:1"]), "grace\n");
}

#[test]
fn binary_keys_and_values_are_escaped_and_raw_writes_exact_bytes() {
    let dir = fresh();
    ok(dir.path(), &["put", "k\\x00\\xff", "v\\x01\\x0a\\\\="]);
    assert_eq!(
        ok(dir.path(), &["get", "k\\x00\\xff"]),
        "v\\x01\\x0a\\\\=\n"
    );
    let raw = kv(dir.path(), &["get", "--raw", "k\\x00\\xff"]);
    assert_eq!(raw.status.code(), Some(0));
    assert_eq!(raw.stdout, b"v\x01\n\\=");
    // Keys escape `=` so the first " = " of a scan line separates key and value.
    ok(dir.path(), &["put", "a=b", "c = d"]);
    assert_eq!(
        ok(dir.path(), &["scan"]),
        "a\\x3db = c = d\nk\\x00\\xff = v\\x01\\x0a\\\\=\n"
    );
}

#[test]
fn value_file_is_stored_byte_for_byte() {
    let dir = fresh();
    let file = dir.path().join("value.bin");
    let bytes: Vec<u8> = (0..=255).cycle().take(10_000).collect();
    std::fs::write(&file, &bytes).unwrap();
    let db = dir.path().join("db");
    ok(
        &db,
        &["put", "blob", "--value-file", file.to_str().unwrap()],
    );
    assert_eq!(kv(&db, &["get", "--raw", "blob"]).stdout, bytes);
}

#[test]
fn missing_key_exits_with_code_1() {
    let dir = fresh();
    ok(dir.path(), &["put", "present", "yes"]);
    let out = kv(dir.path(), &["get", "absent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    ok(dir.path(), &["delete", "present"]);
    assert_eq!(kv(dir.path(), &["get", "present"]).status.code(), Some(1));
}

#[test]
fn scan_honours_prefix_limit_reverse_and_keys_only() {
    let dir = fresh();
    for k in ["a", "b/1", "b/2", "b/3", "c"] {
        ok(dir.path(), &["put", k, &format!("v{k}")]);
    }
    assert_eq!(
        ok(dir.path(), &["scan", "--prefix", "b/"]),
        "b/1 = vb/1\nb/2 = vb/2\nb/3 = vb/3\n"
    );
    assert_eq!(
        ok(
            dir.path(),
            &["scan", "--prefix", "b/", "--reverse", "--limit", "2"]
        ),
        "b/3 = vb/3\nb/2 = vb/2\n"
    );
    assert_eq!(
        ok(
            dir.path(),
            &["scan", "--from", "b/2", "--to", "c", "--keys-only"]
        ),
        "b/2\nb/3\n"
    );
    assert_eq!(ok(dir.path(), &["scan", "--limit", "0"]), "");
    assert_eq!(ok(dir.path(), &["scan", "--from", "z", "--to", "a"]), "");
}

#[test]
fn delete_range_removes_from_inclusive_to_exclusive() {
    let dir = fresh();
    for k in ["k1", "k2", "k3", "k4"] {
        ok(dir.path(), &["put", k, "v"]);
    }
    ok(dir.path(), &["delete-range", "k2", "k4"]);
    assert_eq!(ok(dir.path(), &["scan", "--keys-only"]), "k1\nk4\n");
    let empty = kv(dir.path(), &["delete-range", "k4", "k1"]);
    assert_eq!(empty.status.code(), Some(2));
}

#[test]
fn maintenance_commands_work_on_a_healthy_database() {
    let dir = fresh();
    for i in 0..50 {
        ok(dir.path(), &["put", &format!("key{i:03}"), "value"]);
    }
    assert!(ok(dir.path(), &["flush"]).starts_with("flushed: "));
    let compacted = ok(dir.path(), &["compact"]);
    // Everything ends in one level (small non-overlapping tables may be moved, not merged).
    let first = compacted.lines().next().unwrap_or_default();
    assert!(first.ends_with(" in level L1"), "{compacted}");
    let verify = ok(dir.path(), &["verify"]);
    assert!(
        verify.starts_with("ok: ") && verify.contains(" 50 entries"),
        "{verify}"
    );
    let stats = ok(dir.path(), &["stats"]);
    assert!(stats.contains("last sequence  50"), "{stats}");
    assert!(stats.contains("L1"), "{stats}");
    let json = ok(dir.path(), &["stats", "--json"]);
    assert!(json.starts_with("{\"last_sequence\":50,"), "{json}");
    assert_eq!(ok(dir.path(), &["scan", "--keys-only"]).lines().count(), 50);
}

#[test]
fn stats_show_dead_space_and_compact_gives_it_back() {
    let dir = fresh();
    let value = dir.path().join("value.bin");
    std::fs::write(&value, vec![7u8; 64 << 10]).unwrap();
    // Eight 64 KiB values, each written twice: the first copies die.
    for _ in 0..2 {
        for i in 0..8 {
            let key = format!("big{i}");
            ok(
                dir.path(),
                &["put", &key, "--value-file", value.to_str().unwrap()],
            );
        }
    }
    let compacted = ok(dir.path(), &["compact"]);
    // The first copies' space is back (reclaimed by this process or, in the background, by
    // one of the earlier ones).
    assert!(
        compacted.contains("value files: 512.0 KiB live in 8 files, 512.0 KiB on disk"),
        "{compacted}"
    );
    let stats = ok(dir.path(), &["stats"]);
    assert!(stats.contains("space amplification"), "{stats}");
    let json = ok(dir.path(), &["stats", "--json"]);
    assert!(json.contains("\"value_live_bytes\":524288,"), "{json}");
    assert!(json.contains("\"value_dead_bytes\":"), "{json}");
    let files = ok(dir.path(), &["files"]);
    assert!(files.contains("dead"), "{files}");
    let verify = ok(dir.path(), &["--json", "verify"]);
    assert!(verify.contains("\"value_unaccounted_bytes\":0"), "{verify}");
}

#[test]
fn verify_reports_corruption_with_exit_code_3() {
    let dir = fresh();
    for i in 0..100 {
        ok(dir.path(), &["put", &format!("key{i:03}"), "some value"]);
    }
    ok(dir.path(), &["compact"]);
    let table = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table file");
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&table, bytes).unwrap();
    let out = kv(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("kv: error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments_exit_with_code_2() {
    let dir = fresh();
    assert_eq!(kv(dir.path(), &["no-such-command"]).status.code(), Some(2));
    assert_eq!(kv(dir.path(), &["get"]).status.code(), Some(2));
    assert_eq!(
        kv(dir.path(), &["scan", "--limit", "x"]).status.code(),
        Some(2)
    );
    assert_eq!(
        kv(dir.path(), &["scan", "--prefix", "a", "--from", "b"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        kv(dir.path(), &["get", "bad\\escape"]).status.code(),
        Some(2)
    );
    let no_db = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["get", "k"])
        .env_remove("KVDB_DIR")
        .output()
        .unwrap();
    assert_eq!(no_db.status.code(), Some(2));
}

#[test]
fn db_directory_may_come_from_the_environment() {
    let dir = fresh();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(args)
            .env("KVDB_DIR", dir.path())
            .output()
            .unwrap()
    };
    assert_eq!(run(&["put", "k", "v"]).status.code(), Some(0));
    assert_eq!(run(&["get", "k"]).stdout, b"v\n");
}

#[test]
fn reading_a_missing_database_is_an_error_with_code_1_and_creates_nothing() {
    let dir = fresh();
    let missing = dir.path().join("nope");
    let out = kv(&missing, &["get", "k"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists());
}

#[test]
fn demo_runs_its_checks_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["demo", "--keys", "2000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn demo_keeps_a_given_directory_which_then_opens_with_kv() {
    let dir = fresh();
    let target = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["demo", "--keys", "300", "--dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(ok(&target, &["verify"]).starts_with("ok: "));
    // One blob per 25 users, and the demo range-deletes the first half of them.
    let blobs = ok(&target, &["scan", "--prefix", "blob:", "--keys-only"]);
    assert_eq!(blobs.lines().count(), 6, "{blobs}");
    assert!(blobs.starts_with("blob:000006\n"), "{blobs}");
    let again = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["demo", "--keys", "300", "--dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "a non-empty --dir is refused");
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = fresh();
    let help = ok(dir.path(), &["--help"]);
    for line in [
        "0  success",
        "1  key not found",
        "2  usage error",
        "3  corruption",
        "4  database locked",
    ] {
        assert!(help.contains(line), "{help}");
    }
}

#[test]
fn a_database_held_by_another_handle_exits_with_code_4() {
    let dir = fresh();
    ok(dir.path(), &["put", "k", "v"]);
    let held = extentdb::Db::open(dir.path()).unwrap();
    let out = kv(dir.path(), &["get", "k"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(kv(dir.path(), &["put", "k", "w"]).status.code(), Some(4));
    drop(held);
    assert_eq!(ok_once_released(dir.path(), &["get", "k"]), "v\n");
}

#[test]
fn hex_flag_reads_and_prints_hex() {
    let dir = fresh();
    ok(dir.path(), &["--hex", "put", "00ff", "0a0B"]);
    assert_eq!(ok(dir.path(), &["get", "--hex", "00FF"]), "0a0b\n");
    assert_eq!(ok(dir.path(), &["get", "\\x00\\xff"]), "\\x0a\\x0b\n");
    assert_eq!(ok(dir.path(), &["--hex", "scan"]), "00ff = 0a0b\n");
    for bad in ["0", "zz", "0x00"] {
        let out = kv(dir.path(), &["--hex", "get", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad hex"), "{stderr}");
    }
}

#[test]
fn json_flag_prints_one_document_per_command_and_lines_for_scan() {
    let dir = fresh();
    ok(dir.path(), &["put", "a\"", "x\\x00"]);
    ok(dir.path(), &["put", "b", "y"]);
    assert_eq!(
        ok(dir.path(), &["--json", "get", "b"]),
        "{\"key\":\"b\",\"value\":\"y\"}\n"
    );
    assert_eq!(
        ok(dir.path(), &["scan", "--json"]),
        "{\"key\":\"a\\\"\",\"value\":\"x\\\\x00\"}\n{\"key\":\"b\",\"value\":\"y\"}\n"
    );
    assert_eq!(
        ok(dir.path(), &["--json", "--hex", "scan", "--keys-only"]),
        "{\"key\":\"6122\"}\n{\"key\":\"62\"}\n"
    );
    assert_eq!(ok(dir.path(), &["--json", "count"]), "{\"count\":2}\n");
    let verify = ok(dir.path(), &["--json", "verify"]);
    assert!(verify.starts_with("{\"ok\":true,\"tables\":"), "{verify}");
    let stats = ok(dir.path(), &["--json", "stats"]);
    assert!(stats.starts_with("{\"last_sequence\":2,"), "{stats}");
}

#[test]
fn count_honours_prefix_and_range() {
    let dir = fresh();
    for k in ["a", "b/1", "b/2", "b/3", "c"] {
        ok(dir.path(), &["put", k, "v"]);
    }
    assert_eq!(ok(dir.path(), &["count"]), "5\n");
    assert_eq!(ok(dir.path(), &["count", "--prefix", "b/"]), "3\n");
    assert_eq!(
        ok(dir.path(), &["count", "--from", "b/2", "--to", "c"]),
        "2\n"
    );
    assert_eq!(ok(dir.path(), &["count", "--from", "z"]), "0\n");
    assert_eq!(
        kv(dir.path(), &["count", "--prefix", "a", "--to", "b"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn batch_applies_every_line_atomically() {
    let dir = fresh();
    ok(dir.path(), &["put", "k3", "old"]);
    ok(dir.path(), &["put", "k5", "old"]);
    let input = b"# a comment\nput k1 one\nput k\\x20two v\\x00\n\nput k3 three\r\ndelete k3\ndelete-range k4 k6\n";
    let out = kv_stdin(dir.path(), &["batch"], input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "applied 5 operations\n"
    );
    assert_eq!(ok(dir.path(), &["scan"]), "k two = v\\x00\nk1 = one\n");
    let hex = kv_stdin(dir.path(), &["--hex", "batch"], b"put 6b39 ff\n");
    assert_eq!(hex.status.code(), Some(0));
    assert_eq!(ok(dir.path(), &["get", "k9"]), "\\xff\n");
}

#[test]
fn batch_with_a_bad_line_names_it_and_writes_nothing() {
    let dir = fresh();
    ok(dir.path(), &["put", "keep", "v"]);
    for (input, line) in [
        (&b"put a 1\nput b\nput c 3\n"[..], "line 2"),
        (b"put a 1\ndelete a\nfrob x\n", "line 3"),
        (b"delete-range b a\n", "line 1"),
        (b"put a\\q 1\n", "line 1"),
    ] {
        let out = kv_stdin(dir.path(), &["batch"], input);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(line), "{stderr}");
        assert_eq!(ok(dir.path(), &["scan", "--keys-only"]), "keep\n");
    }
    let bad_hex = kv_stdin(dir.path(), &["--hex", "batch"], b"put 61 6\n");
    assert_eq!(bad_hex.status.code(), Some(2));
    assert_eq!(ok(dir.path(), &["count"]), "1\n");
}

#[test]
fn checkpoint_writes_a_copy_that_opens_on_its_own() {
    let dir = fresh();
    let db = dir.path().join("db");
    let copy = dir.path().join("copy");
    for i in 0..20 {
        ok(&db, &["put", &format!("k{i:02}"), "v"]);
    }
    ok(&db, &["checkpoint", copy.to_str().unwrap()]);
    ok(&db, &["put", "after", "v"]);
    assert_eq!(ok(&copy, &["count"]), "20\n");
    assert!(ok(&copy, &["verify"]).starts_with("ok: "));
    let again = kv(&db, &["checkpoint", copy.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing destination is refused"
    );
}

/// A small seeded generator, so a failing round trip reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Fills a database through `kv load` with random binary records, the edge cases included:
/// an empty key, an empty value, all-0x00 and all-0xff keys and values, 100 KiB values.
fn load_random_records(dir: &Path) -> usize {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (Vec::new(), b"empty key".to_vec()),
        (b"empty value".to_vec(), Vec::new()),
        (vec![0x00; 8], vec![0x00; 300]),
        (vec![0xff; 8], vec![0xff; 300]),
        (b"big".to_vec(), rng.bytes(100 << 10)),
        (b"big2".to_vec(), rng.bytes(100 << 10)),
    ];
    for _ in 0..2_500 {
        let key_len = 1 + (rng.next() % 40) as usize;
        let value_len = (rng.next() % 200) as usize;
        records.push((rng.bytes(key_len), rng.bytes(value_len)));
    }
    let mut input = Vec::new();
    for (key, value) in &records {
        input.extend_from_slice(format!("{} {}\n", hex(key), hex(value)).as_bytes());
    }
    let out = kv_stdin(dir, &["load"], &input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unique: std::collections::BTreeSet<&Vec<u8>> = records.iter().map(|(k, _)| k).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("loaded {} records\n", records.len())
    );
    unique.len()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn dump_load_dump_round_trips_random_binary_records_byte_for_byte() {
    let dir = fresh();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let unique = load_random_records(&first);
    assert_eq!(ok(&first, &["count"]), format!("{unique}\n"));
    let dumped = kv(&first, &["dump"]);
    assert_eq!(dumped.status.code(), Some(0));
    assert!(
        dumped.stderr.is_empty(),
        "no progress bar when stderr is not a terminal"
    );
    assert_eq!(
        dumped.stdout.iter().filter(|&&b| b == b'\n').count(),
        unique
    );
    let loaded = kv_stdin(&second, &["load"], &dumped.stdout);
    assert_eq!(loaded.status.code(), Some(0));
    assert_eq!(kv(&second, &["dump"]).stdout, dumped.stdout);
    assert_eq!(
        ok(&second, &["get", "--hex", &hex(b"empty value")]),
        "\n",
        "an empty value survives"
    );
    assert!(ok(&second, &["verify"]).starts_with("ok: "));
}

#[test]
fn ldb_format_round_trips_and_matches_kv_format() {
    let dir = fresh();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    load_random_records(&first);
    let ldb = kv(&first, &["dump", "--format", "ldb"]).stdout;
    let first_line =
        String::from_utf8_lossy(ldb.split(|&b| b == b'\n').next().unwrap()).into_owned();
    assert_eq!(
        first_line, "0x ==> 0x656D707479206B6579",
        "the empty key sorts first"
    );
    let loaded = kv_stdin(&second, &["load", "--format", "ldb"], &ldb);
    assert_eq!(loaded.status.code(), Some(0));
    assert_eq!(kv(&second, &["dump", "--format", "ldb"]).stdout, ldb);
    assert_eq!(kv(&second, &["dump"]).stdout, kv(&first, &["dump"]).stdout);
}

/// Runs RocksDB's `ldb` on database `dir` with `args` and `input` on its standard input.
fn ldb(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("ldb")
        .arg(format!("--db={}", dir.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "ldb {args:?}: {out:?}");
    out
}

/// Data moves between RocksDB and extentdb both ways through RocksDB's own `ldb` (Debian's
/// `rocksdb-tools`, which `.ci/run` installs): RocksDB's `dump --hex` loads into extentdb, and
/// extentdb's `dump --format ldb` loads into RocksDB, byte for byte, binary keys included.
#[test]
fn data_moves_both_ways_through_rocksdbs_own_ldb() {
    if Command::new("ldb").arg("--help").output().is_err() {
        eprintln!("SKIPPED: RocksDB's `ldb` is not installed (apt-get install rocksdb-tools)");
        return;
    }
    let dir = fresh();
    let (rocks, ours, back) = (
        dir.path().join("rocks"),
        dir.path().join("ours"),
        dir.path().join("back"),
    );
    // Records written by RocksDB itself: empty and binary keys and values, and large values
    // that extentdb stores in value files.
    let mut lines = String::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..300u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key: Vec<u8> = (0..=(i % 9)).map(|j| (x >> (j * 7)) as u8).collect();
        let len = [0usize, 1, 7, 100, 3000][(i % 5) as usize];
        let value: Vec<u8> = (0..len).map(|j| (x >> (j % 57)) as u8 ^ j as u8).collect();
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02X}")).collect::<String>();
        lines.push_str(&format!("0x{} ==> 0x{}\n", hex(&key), hex(&value)));
    }
    ldb(
        &rocks,
        &["--create_if_missing", "load", "--hex"],
        lines.as_bytes(),
    );
    let from_rocks = ldb(&rocks, &["dump", "--hex"], b"").stdout;
    let count = from_rocks
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"0x"))
        .count();
    assert!(count > 250, "RocksDB holds {count} records");

    // RocksDB -> extentdb: every record, and nothing else (the count line is skipped).
    let loaded = kv_stdin(&ours, &["load", "--format", "ldb"], &from_rocks);
    assert_eq!(loaded.status.code(), Some(0), "{loaded:?}");
    let ours_dump = kv(&ours, &["dump", "--format", "ldb"]).stdout;
    let records_only: Vec<u8> = from_rocks
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"0x"))
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        ours_dump, records_only,
        "extentdb's dump differs from RocksDB's"
    );

    // extentdb -> RocksDB: RocksDB's own dump of what it loaded is the original dump.
    ldb(&back, &["--create_if_missing", "load", "--hex"], &ours_dump);
    assert_eq!(ldb(&back, &["dump", "--hex"], b"").stdout, from_rocks);
}

#[test]
fn dump_honours_prefix_and_range() {
    let dir = fresh();
    for k in ["a", "b/1", "b/2", "c"] {
        ok(dir.path(), &["put", k, "v"]);
    }
    assert_eq!(
        ok(dir.path(), &["dump", "--prefix", "b/"]),
        "622f31 76\n622f32 76\n"
    );
    assert_eq!(
        ok(
            dir.path(),
            &[
                "--hex", "dump", "--from", "622f32", "--to", "63", "--format", "ldb"
            ]
        ),
        "0x622F32 ==> 0x76\n"
    );
}

#[test]
fn load_stops_at_a_bad_line_and_names_it() {
    let dir = fresh();
    let out = kv_stdin(dir.path(), &["load"], b"61 31\n62 32\n6z 33\n64 34\n");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    let ldb = kv_stdin(dir.path(), &["load", "--format", "ldb"], b"0x61 : 0x31\n");
    assert_eq!(ldb.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ldb.stderr).contains("line 1"));
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish_without_a_database() {
    for (shell, marker) in [
        ("bash", "_kv()"),
        ("zsh", "#compdef kv"),
        ("fish", "complete -c kv"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(["completions", shell])
            .env_remove("KVDB_DIR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("checkpoint"), "{shell}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn bench_runs_every_workload_and_reports_rates_and_percentiles() {
    let dir = fresh();
    for workload in [
        "fillseq",
        "fillrandom",
        "readrandom",
        "readseq",
        "overwrite",
        "deleterange",
    ] {
        let db = dir.path().join(workload);
        let text = ok(
            &db,
            &[
                "bench",
                "--workload",
                workload,
                "--num",
                "2000",
                "--value-size",
                "64",
            ],
        );
        assert!(text.starts_with(&format!("{workload}: ")), "{text}");
        for part in ["ops/s", "MB/s", "p50", "p99", "p999"] {
            assert!(text.contains(part), "{text}");
        }
    }
    let json = ok(
        &dir.path().join("json"),
        &["--json", "bench", "--workload", "readseq", "--num", "500"],
    );
    assert!(
        json.starts_with("{\"workload\":\"readseq\",\"ops\":500,"),
        "{json}"
    );
}

#[test]
fn files_and_extents_show_the_value_files_and_their_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let big = "x".repeat(5000);
    ok(&db, &["put", "big", &big]);
    ok(&db, &["put", "small", "v"]);
    let listing = ok(&db, &["files"]);
    assert!(listing.contains("value files (1)"), "{listing}");
    assert!(listing.contains(".seg"), "{listing}");
    // Each open flushed the write before it to a table, in the current table format.
    assert!(listing.contains("entries  format"), "{listing}");
    let json = ok(&db, &["--json", "files"]);
    assert!(
        json.contains("\"entries\":1,\"format_version\":2}"),
        "{json}"
    );
    let id_at = json.find("\"value_files\":[{\"id\":").unwrap() + "\"value_files\":[{\"id\":".len();
    let id: String = json[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let extents = ok(&db, &["extents", &format!("v{id}")]);
    assert!(extents.contains("1 extents"), "{extents}");
    let extents_json = ok(&db, &["--json", "extents", &id]);
    assert!(
        extents_json.starts_with(&format!(
            "{{\"file\":{id},\"extents\":[{{\"logical_block\":0,"
        )),
        "{extents_json}"
    );
    let missing = kv(&db, &["extents", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    let bad = kv(&db, &["extents", "seven"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Every file of a directory: its length, modification time and a hash of its bytes (read in
/// pieces: a segment file is 256 MiB, mostly holes).
fn listing(dir: &Path) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime, u64)> {
    use std::hash::Hasher as _;
    use std::io::Read as _;
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mut hasher = std::hash::DefaultHasher::new();
        let mut file = std::fs::File::open(entry.path()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.write(buf.get(..n).unwrap());
        }
        out.insert(
            entry.file_name().into_string().unwrap(),
            (meta.len(), meta.modified().unwrap(), hasher.finish()),
        );
    }
    out
}

#[test]
fn read_commands_leave_the_directory_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let big = "x".repeat(5000);
    ok(&db, &["put", "big", &big]);
    ok(&db, &["put", "small", "v"]);
    // The last writer's log is not flushed: the next writer's open would recover it into a
    // table, a new manifest and a new log.
    ok(&db, &["put", "big2", &"y".repeat(3000)]);
    let before = listing(&db);
    assert!(before.keys().any(|n| n.ends_with(".wal")), "{before:?}");
    assert_eq!(ok(&db, &["get", "big2"]), format!("{}\n", "y".repeat(3000)));
    assert_eq!(ok(&db, &["get", "big"]), format!("{big}\n"));
    assert_eq!(ok(&db, &["scan", "--keys-only"]), "big\nbig2\nsmall\n");
    assert_eq!(ok(&db, &["count"]), "3\n");
    assert_eq!(ok(&db, &["dump"]).lines().count(), 3);
    assert!(ok(&db, &["stats"]).contains("last sequence  3"));
    assert!(ok(&db, &["verify"]).starts_with("ok: "));
    assert!(ok(&db, &["files"]).contains(".seg"));
    let json = ok(&db, &["--json", "files"]);
    let id_at = json.find("\"value_files\":[{\"id\":").unwrap() + "\"value_files\":[{\"id\":".len();
    let id: String = json[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    ok(&db, &["extents", &id]);
    assert_eq!(listing(&db), before);
}

#[test]
fn read_commands_share_the_database_with_other_readers() {
    let dir = fresh();
    ok(dir.path(), &["put", "k", "v"]);
    // A read-only handle in this process: `kv` read commands open beside it.
    let reader = extentdb::Db::open_read_only(dir.path()).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_kv"))
                .arg("--db")
                .arg(dir.path())
                .args(["get", "k"])
                .env_remove("KVDB_DIR")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"v\n");
    }
    assert_eq!(ok(dir.path(), &["count"]), "1\n");
    assert_eq!(reader.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_read_command_beside_a_writer_exits_4_saying_it_is_locked_for_writing() {
    let dir = fresh();
    ok(dir.path(), &["put", "k", "v"]);
    let writer = extentdb::Db::open(dir.path()).unwrap();
    for args in [
        &["get", "k"][..],
        &["scan"],
        &["verify"],
        &["stats"],
        &["files"],
    ] {
        let out = kv(dir.path(), args);
        assert_eq!(out.status.code(), Some(4), "kv {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is locked for writing by another process"),
            "kv {args:?}: {stderr}"
        );
    }
    drop(writer);
    assert_eq!(ok_once_released(dir.path(), &["get", "k"]), "v\n");
}

#[test]
fn a_write_command_beside_a_reader_exits_4() {
    let dir = fresh();
    ok(dir.path(), &["put", "k", "v"]);
    let reader = extentdb::Db::open_read_only(dir.path()).unwrap();
    let out = kv(dir.path(), &["put", "k", "w"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    drop(reader);
    ok_once_released(dir.path(), &["put", "k", "w"]);
    assert_eq!(ok(dir.path(), &["get", "k"]), "w\n");
}
