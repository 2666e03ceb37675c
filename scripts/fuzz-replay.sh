#!/usr/bin/env bash
# Replays every cargo-fuzz target's committed seeds (fuzz/corpus/<target>: the tests' own
# messages, recordings of real peers, and the input of every bug the fuzzers found) once, as a
# regression test: what `scripts/test.sh` (and so CI) runs of the cargo-fuzz targets.
#
#   scripts/fuzz-replay.sh [TARGET...]       default: every target
#
# Why a replay and not a short fuzzing run: fuzzing needs nightly `cargo fuzz` with
# AddressSanitizer, a second build of the whole dependency tree (~15 min on 2 cores and ~7 GB,
# measured here), which CI's time and disk cannot spare. This script builds the same targets with
# the stable toolchain into target/ (the dependencies the test build made are reused) and runs
# each with libFuzzer's `-runs=0`: every seed once, every check of the target applied, no
# mutation. Fuzzing itself is `scripts/fuzz.sh` (see "Fuzzing" in the README).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
target_dir="${CARGO_TARGET_DIR:-target}"

ALL=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^voicebackend-fuzz$')
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS <<<"$ALL"
for target in "${TARGETS[@]}"; do
    grep -qx "$target" <<<"$ALL" || { echo "fuzz-replay: no target '$target' (fuzz/Cargo.toml)" >&2; exit 2; }
done

echo "fuzz-replay: cargo build --manifest-path fuzz/Cargo.toml (stable, into $target_dir)"
bins=()
for target in "${TARGETS[@]}"; do bins+=(--bin "$target"); done
cargo build --quiet --manifest-path fuzz/Cargo.toml --target-dir "$target_dir" "${bins[@]}"

failed=()
for target in "${TARGETS[@]}"; do
    seeds="fuzz/corpus/$target"
    count=$(find "$seeds" -type f 2>/dev/null | wc -l)
    if [ "$count" -eq 0 ]; then
        echo "fuzz-replay: $target has no seeds in $seeds" >&2
        failed+=("$target")
        continue
    fi
    log="$target_dir/fuzz-replay/$target.log"
    mkdir -p "$(dirname "$log")"
    if "$target_dir/debug/$target" -runs=0 "$seeds" >"$log" 2>&1; then
        printf 'fuzz-replay: %-18s %4d seeds  ok\n' "$target" "$count"
    else
        printf 'fuzz-replay: %-18s %4d seeds  FAILED (log %s)\n' "$target" "$count" "$log" >&2
        grep -m1 -A12 -E 'panicked at|ERROR:' "$log" >&2 || tail -20 "$log" >&2
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz-replay: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
