#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (see "Fuzzing" in the README), each for a given time, and
# prints per target how many inputs ran and whether one crashed it.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#   scripts/fuzz.sh --list                               the targets
#
# Installs what it needs first (re-runnable): the nightly toolchain if missing, and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). Builds every target named with nightly `cargo fuzz`
# (AddressSanitizer, debug assertions) into fuzz/target, then runs each with libFuzzer:
# seeds from fuzz/corpus/<target> (committed, small), new inputs into fuzz/target/corpus/<target>
# (kept between runs, not committed), the dictionary fuzz/dict/<target>.dict when there is one.
# A crash (panic, sanitizer report, timeout of one input, memory limit) leaves its input in
# fuzz/artifacts/<target>/ with the path printed; the script then exits 1 after the other targets
# ran. Reproduce one with `fuzz/target/x86_64-unknown-linux-gnu/release/<target> <input>`.
#
# Environment: FUZZ_BUILD_ARGS adds arguments to `cargo fuzz build` (CI passes
# `--codegen-units 16`: a faster build of slightly slower fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

ALL=$(cd fuzz && cargo +nightly fuzz list)
if [ "${1:-}" = "--list" ]; then
    echo "$ALL"
    exit 0
fi
SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in
    '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS <<<"$ALL"
for target in "${TARGETS[@]}"; do
    grep -qx "$target" <<<"$ALL" || { echo "fuzz: no target '$target' (scripts/fuzz.sh --list)" >&2; exit 2; }
done

build_start=$SECONDS
mkdir -p fuzz/target
build() { # cargo fuzz builds one target, or all of them
    # shellcheck disable=SC2086
    (cd fuzz && cargo +nightly fuzz build ${FUZZ_BUILD_ARGS:-} "$@") >fuzz/target/build.log 2>&1 || {
        grep -v '^ *Compiling' fuzz/target/build.log | tail -40 >&2
        echo "fuzz: the build failed (fuzz/target/build.log)" >&2
        exit 1
    }
}
if [ ${#TARGETS[@]} -eq "$(wc -l <<<"$ALL")" ]; then
    build
else
    for target in "${TARGETS[@]}"; do build "$target"; done
fi
echo "fuzz: built ${#TARGETS[@]} target(s) in $((SECONDS - build_start)) s"

crashed=()
summary=()
for target in "${TARGETS[@]}"; do
    work="fuzz/target/corpus/$target"
    artifacts="fuzz/artifacts/$target/"
    log="fuzz/target/logs/$target.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix="$artifacts")
    [ -f "fuzz/dict/$target.dict" ] && args+=(-dict="fuzz/dict/$target.dict")
    seeds=()
    [ -d "fuzz/corpus/$target" ] && seeds=("fuzz/corpus/$target")
    echo "fuzz: $target for $SECONDS_PER_TARGET s"
    status=0
    "fuzz/target/x86_64-unknown-linux-gnu/release/$target" "${args[@]}" "$work" "${seeds[@]}" \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$runs" ]; then # a crash ends libFuzzer before its final statistics
        runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    corpus=$(find "$work" -type f | wc -l)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ "$status" -ne 0 ] || [ -n "$artifact" ]; then
        crashed+=("$target")
        summary+=("$(printf '%-18s %6s s %12s runs  corpus %6s  CRASH %s (log %s)' \
            "$target" "$SECONDS_PER_TARGET" "${runs:-?}" "$corpus" "${artifact:-"(exit $status)"}" "$log")")
        grep -m1 -A12 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" || tail -20 "$log"
    else
        summary+=("$(printf '%-18s %6s s %12s runs  corpus %6s  0 crashes' \
            "$target" "$SECONDS_PER_TARGET" "${runs:-?}" "$corpus")")
    fi
done

echo "fuzz: results"
printf '  %s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
    echo "fuzz: ${#crashed[@]} target(s) crashed: ${crashed[*]}" >&2
    exit 1
fi
