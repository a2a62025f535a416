#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 30), starting from seed inputs
# made by the `kv` tool (real, checksummed logs, manifests and tables), so the fuzzer gets past
# the checksums from the first run. Stops with a non-zero exit at the first crash; libFuzzer
# leaves the input in artifacts/<target>/ and prints how to replay it.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]     (needs the nightly toolchain and cargo-fuzz)
set -euo pipefail

seconds=${1:-30}
shift || true
cd "$(dirname "$0")"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(wal_records write_batch manifest_edit extent_replay table ops)
fi

kv() {
    cargo run --quiet --release --manifest-path ../Cargo.toml -p extentdb-cli --bin kv -- "$@"
}

# Copies the payload of every record of a record log (docs/format/wal.md: a 13-byte header whose
# bytes 4..8 are the little-endian payload length) into its own file.
split_records() {
    local file=$1 out=$2 prefix=$3 off=0 n=0 size len
    size=$(stat -c %s "$file")
    while [ $((off + 13)) -le "$size" ]; do
        len=$(od -An -tu4 --endian=little -j $((off + 4)) -N 4 "$file" | tr -d ' ')
        [ $((off + 13 + len)) -le "$size" ] || break
        tail -c +$((off + 14)) "$file" | head -c "$len" > "$out/$prefix-$n"
        off=$((off + 13 + len))
        n=$((n + 1))
    done
}

# Writes the payloads of every record of a record log, concatenated, to `out`: for a manifest,
# one payload holding every edit of the file in order (the input of `extent_replay`).
concat_records() {
    local file=$1 out=$2 off=0 size len
    size=$(stat -c %s "$file")
    : > "$out"
    while [ $((off + 13)) -le "$size" ]; do
        len=$(od -An -tu4 --endian=little -j $((off + 4)) -N 4 "$file" | tr -d ' ')
        [ $((off + 13 + len)) -le "$size" ] || break
        tail -c +$((off + 14)) "$file" | head -c "$len" >> "$out"
        off=$((off + 13 + len))
    done
}

# Saves the database's current logs, manifests and tables as seeds, named after `step`.
harvest() {
    local db=$1 step=$2 file name
    for file in "$db"/*.wal "$db"/MANIFEST-*; do
        [ -s "$file" ] || continue
        name=$step-$(basename "$file")
        cp "$file" "corpus/wal_records/seed-$name"
        case $file in
            *.wal) split_records "$file" corpus/write_batch "seed-$name" ;;
            *)
                split_records "$file" corpus/manifest_edit "seed-$name"
                concat_records "$file" "corpus/extent_replay/seed-$name"
                ;;
        esac
    done
    for file in "$db"/*.sst; do
        [ -e "$file" ] || continue
        { printf '\0'; cat "$file"; } > "corpus/table/seed-$step-$(basename "$file")"
    done
}

seed() {
    local work db
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    db=$work/db
    mkdir -p corpus/{wal_records,write_batch,manifest_edit,extent_replay,table,ops}
    kv --db "$db" put user:1 '{"name":"ada"}'
    harvest "$db" put
    kv --db "$db" delete user:0
    harvest "$db" delete
    kv --db "$db" delete-range user:2 user:5
    harvest "$db" delete-range
    for i in $(seq 100 160); do
        kv --db "$db" put "key:$i" "value \\x00\\xff $i $i $i $i $i $i $i $i $i $i"
    done
    kv --db "$db" compact > /dev/null
    harvest "$db" compacted
    # Values over the 1 KiB threshold live in value files: the logs then hold value pointers,
    # the tables pointer entries, and the manifests extent records (reservations, reaches, dead
    # ranges, unmapped ranges, removed files).
    for i in $(seq 10 21); do
        kv --db "$db" put "big:$i" "$(large "$i" $((1100 + 300 * (i % 4))))"
        harvest "$db" large-put-$i
    done
    {
        for i in 10 13 16; do echo "delete big:$i"; done
        for i in 11 14; do echo "put big:$i $(large "again-$i" 2500)"; done
    } | kv --db "$db" batch > /dev/null
    harvest "$db" large-batch
    kv --db "$db" delete-range big:17 big:20
    harvest "$db" large-delete-range
    kv --db "$db" compact > /dev/null
    harvest "$db" large-compacted
    kv --db "$db" get big:11 > /dev/null
    harvest "$db" large-reopened
}

# A value of about `len` bytes that names `tag`.
large() {
    printf 'large-%s-%0*d' "$1" "$2" 0
}

cargo +nightly fuzz build
seed
for target in "${targets[@]}"; do
    if [ "$target" = ops ]; then
        # Longer operation sequences from the start: libFuzzer otherwise grows inputs slowly,
        # and a short run would only try a handful of operations per input.
        extra=(-len_control=0 -max_len=1024)
    else
        # A decoder allocates at most max(1 MiB, its input's size) at once
        # (docs/format/bounds.md), and no input here reaches 1 MiB: a larger malloc is a finding.
        extra=(-malloc_limit_mb=2)
    fi
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
        "${extra[@]}"
done
