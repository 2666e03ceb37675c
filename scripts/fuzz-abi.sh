#!/usr/bin/env bash
# Fuzzes the C ABI: builds tests/c/fuzz_abi.c with clang's libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer (the C side; the library is the ordinary debug build with the test
# providers) and runs it for SECONDS (default 60) on one core.
#
#   scripts/fuzz-abi.sh [SECONDS]
#
# Work directory: target/fuzz-abi (git-ignored): the corpus (kept between runs, seeded each time
# with a few hand-written inputs below), crash, leak and timeout inputs in artifacts/, the log of
# the last run in fuzz.log. Exits non-zero on any finding (a crash, a broken invariant, an ASan or
# UBSan report, a leak, an input running longer than 30 s), with the log's tail and the input.
# Replay one input: target/fuzz-abi/fuzz_abi target/fuzz-abi/artifacts/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v clang >/dev/null; then
  echo "fuzz-abi: needs clang with libFuzzer (Debian: clang; scripts/setup.sh --tests installs it)" >&2
  exit 1
fi

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
work="$target_dir/fuzz-abi"
mkdir -p "$work/lib" "$work/corpus" "$work/artifacts" "$work/home"

echo "fuzz-abi: cargo build --features test-providers --lib"
# target/debug/libvoicebackend.so is rewritten by any cargo build with whatever features it asked
# for: the fuzzer links a private copy, checked to hold the test providers.
copied=0
for attempt in 1 2 3; do
  cargo build --quiet --features test-providers --lib
  cp "$target_dir/debug/libvoicebackend.so" "$work/lib/libvoicebackend.so.tmp"
  if grep -q test-pitch-stt "$work/lib/libvoicebackend.so.tmp"; then
    mv -f "$work/lib/libvoicebackend.so.tmp" "$work/lib/libvoicebackend.so"
    ln -sfn libvoicebackend.so "$work/lib/libvoicebackend.so.0"
    copied=1
    break
  fi
  echo "fuzz-abi: the library lacks the test providers (another build overwrote it); attempt $attempt"
  touch src/lib.rs
done
[ "$copied" = 1 ] || { echo "fuzz-abi: no library with the test providers" >&2; exit 1; }

echo "fuzz-abi: clang -fsanitize=fuzzer,address,undefined tests/c/fuzz_abi.c"
clang -std=c11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I include tests/c/fuzz_abi.c -o "$work/fuzz_abi" \
  -L"$work/lib" -lvoicebackend -Wl,-rpath,"$work/lib" -lopus -lpthread -lm

# Seeds: whole conversations, so that the mutations start from inputs that reach turns, replies
# and barge-in. Bytes as LLVMFuzzerTestOneInput decodes them (op, then its arguments):
#   00 slot choice auth authorize limiter   vb_backend_create (choice: BACKEND_CONFIGS index)
#   02 slot                                 vb_backend_start
#   05 slot which                           hooks (which 03: a processor "p0")
#   08 slot backend choice callbacks script[8] return[4]   vb_session_create (choice/8: config)
#   0a slot / 0e slot ms / 16 ms / 11 slot max / 10 slot mode capacity[2] / 15 slot mode / 12 slot mode
#                                           start / a user turn / wait / poll / read_audio /
#                                           read_opus / say
seed() { printf "$2" >"$work/corpus/seed-$1"; }
# A PCM turn at 16 kHz on quick turns (config 1), the agent writes, echoes and ends.
seed pcm-turn '\x00\x00\x00\x01\x00\x00\x00\x02\x00\x08\x00\x00\x00\x00\x00\x0b\x03\x05\x07\x0f\x0f\x0f\x02\x00\x00\x00\x0a\x00\x0e\x00\x64\x16\x27\x11\x00\x1f\x16\x27\x10\x00\x00\x40\x06\x16\x27\x11\x00\x1f\x16\x27\x11\x00\x1f'
# An Opus turn both ways at 48 kHz (session config 4), packets read back.
seed opus-turn '\x00\x00\x00\x01\x00\x00\x00\x02\x00\x08\x00\x00\x20\x00\x00\x0b\x03\x0f\x0f\x0f\x0f\x0f\x02\x00\x00\x00\x0a\x00\x0e\x00\x64\x16\x27\x15\x00\x03\x16\x27\x15\x00\x03\x11\x00\x1f\x16\x27\x15\x00\x03\x15\x00\x03\x11\x00\x1f'
# The realtime pool (config 2) with a processor, an S2S backend (config 3), a session on each,
# a turn into both, a greeting said, audio read back.
seed pool-s2s '\x00\x00\x00\x02\x00\x00\x00\x05\x00\x03\x02\x00\x00\x01\x03\x00\x00\x00\x02\x01\x08\x00\x00\x00\x00\x00\x0b\x03\x0f\x0f\x0f\x0f\x0f\x02\x00\x00\x00\x08\x01\x01\x00\x01\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x02\x00\x00\x00\x0a\x00\x0a\x01\x0e\x00\x64\x0e\x01\x64\x16\x27\x11\x00\x1f\x11\x01\x1f\x12\x00\x02\x16\x27\x10\x00\x00\x40\x06\x10\x01\x00\x40\x06\x11\x00\x1f\x11\x01\x1f'

echo "fuzz-abi: running for ${seconds} s (log: $work/fuzz.log)"
start=$(date +%s)
status=0
# HOME and XDG_CACHE_HOME inside the work directory: a configuration the fuzzer makes up may turn
# on the session store's default file or look for models; nothing lands in the real home.
env -u VOICEBACKEND_MODELS -u VB_LOG -u RUST_LOG HOME="$work/home" XDG_CACHE_HOME="$work/home/.cache" \
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
  LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/c/lsan.supp}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
  "$work/fuzz_abi" -max_total_time="$seconds" -timeout=30 -max_len=512 -rss_limit_mb=4096 \
  -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$work/corpus" \
  >"$work/fuzz.log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))
grep -E '^(fuzz_abi:|stat::)' "$work/fuzz.log" || true
if [ "$status" != 0 ]; then
  echo "fuzz-abi: FAILED after ${elapsed} s (exit $status); the log's end:" >&2
  tail -n 80 "$work/fuzz.log" >&2
  exit 1
fi
echo "fuzz-abi: no findings in ${elapsed} s; corpus: $(ls "$work/corpus" | wc -l) inputs"
