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
    targets=(wal_records write_batch manifest_edit table ops)
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

# Saves the database's current logs, manifests and tables as seeds, named after `step`.
harvest() {
    local db=$1 step=$2 file name
    for file in "$db"/*.wal "$db"/MANIFEST-*; do
        [ -s "$file" ] || continue
        name=$step-$(basename "$file")
        cp "$file" "corpus/wal_records/seed-$name"
        case $file in
            *.wal) split_records "$file" corpus/write_batch "seed-$name" ;;
            *) split_records "$file" corpus/manifest_edit "seed-$name" ;;
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
    mkdir -p corpus/{wal_records,write_batch,manifest_edit,table,ops}
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
}

cargo +nightly fuzz build
seed
for target in "${targets[@]}"; do
    extra=()
    # Longer operation sequences from the start: libFuzzer otherwise grows inputs slowly, and a
    # short run would only try a handful of operations per input.
    [ "$target" = ops ] && extra=(-len_control=0 -max_len=1024)
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
        "${extra[@]}"
done
