#!/usr/bin/env bash
# Tests of the C++ binding:
#   1. builds the library with the test providers (cargo build --features test-providers --lib),
#   2. configures and builds bindings/cpp with CMake (GoogleTest when installed) and runs the
#      tests with ctest, then once more built with AddressSanitizer and UndefinedBehaviorSanitizer
#      (any report fails, leaks at exit included), plus the built-in runner (no GoogleTest) on the
#      quick cases,
#   3. runs the minimal C++ host example on generated speech and checks its transcript,
#   4. installs with scripts/install.sh into a temporary prefix (not /usr/local) and builds a
#      consumer with pkg-config and with CMake find_package (test/install_consumer.sh).
#
#   bindings/cpp/test.sh            # build directory: bindings/cpp/build (git-ignored)
#   VB_CPP_SKIP_INSTALL=1 bindings/cpp/test.sh    # skip step 4 (it runs a release build)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${VB_CPP_BUILD_DIR:-$here/build}"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
step() { printf '\n== cpp: %s\n' "$*"; }
fail() { echo "cpp: FAILED: $*" >&2; exit 1; }

step "cargo build --features test-providers --lib"
# target/debug/libvoicebackend.so is rewritten by any cargo build in this checkout, with
# whatever features it asked for (other developers build concurrently). The tests run against
# a private copy that is checked to hold the test providers.
mkdir -p "$build/lib"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
copied=0
for attempt in 1 2 3; do
  (cd "$repo" && cargo build --features test-providers --lib)
  cp "$target_dir/debug/libvoicebackend.so" "$build/lib/libvoicebackend.so.tmp"
  if grep -q test-pitch-stt "$build/lib/libvoicebackend.so.tmp"; then
    mv -f "$build/lib/libvoicebackend.so.tmp" "$build/lib/libvoicebackend.so"
    # Programs record the SONAME (libvoicebackend.so.0) and load that name.
    ln -sfn libvoicebackend.so "$build/lib/libvoicebackend.so.0"
    copied=1
    break
  fi
  echo "cpp: $target_dir/debug/libvoicebackend.so lacks the test providers (another build" \
    "overwrote it); rebuilding (attempt $attempt)"
  touch "$repo/src/lib.rs"
done
[ "$copied" = 1 ] || fail "could not get a library built with --features test-providers"

step "cmake configure + build ($build/cmake)"
cmake -S "$here" -B "$build/cmake" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DVOICEBACKEND_LIB_DIR="$build/lib" -DVOICEBACKEND_INCLUDE_DIR="$repo/include"
cmake --build "$build/cmake"

step "ctest"
ctest --test-dir "$build/cmake" --output-on-failure

step "the tests under AddressSanitizer + UndefinedBehaviorSanitizer ($build/asan)"
# The C++ side is instrumented; the library is not, but it allocates through the same malloc, so
# ASan also sees the bounds of its heap blocks the tests touch (event texts, callback buffers).
# tests/c/lsan.supp says what LeakSanitizer is told to ignore, and why.
sanitize="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
cmake -S "$here" -B "$build/asan" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DVOICEBACKEND_LIB_DIR="$build/lib" -DVOICEBACKEND_INCLUDE_DIR="$repo/include" \
  -DVOICEBACKEND_BUILD_EXAMPLES=OFF -DCMAKE_CXX_FLAGS="$sanitize" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build/asan" --target voicebackend_cpp_test voicebackend_cpp_operations_test
for program in voicebackend_cpp_test voicebackend_cpp_operations_test; do
  log="$build/asan/$program.log"
  started=$(date +%s)
  if ! ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS="suppressions=$repo/tests/c/lsan.supp" \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$build/asan/$program" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    fail "$program under the sanitizers (log: $log)"
  fi
  if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$log" >&2; then
    fail "a sanitizer reported in $program (log: $log)"
  fi
  echo "$program: $(tail -n 1 "$log" | tr -s ' ') under ASan + UBSan, $(( $(date +%s) - started )) s"
done

step "the built-in test runner (configured without GoogleTest), quick cases"
cmake -S "$here" -B "$build/mini" "${generator[@]}" -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON \
  -DVOICEBACKEND_LIB_DIR="$build/lib" -DVOICEBACKEND_INCLUDE_DIR="$repo/include" >/dev/null
cmake --build "$build/mini" --target voicebackend_cpp_test
for filter in Library. Errors. Raii.SessionOutlives; do
  "$build/mini/voicebackend_cpp_test" "$filter"
done

step "examples/minimal_host.cpp on generated speech"
config='{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"}'
"$build/cmake/make_speech" 150 1200 16000 >"$build/speech.raw"
"$build/cmake/minimal_host_cpp" "$config" <"$build/speech.raw" | tee "$build/minimal_host.out"
grep -q '^user:  pitch 150 hz for ' "$build/minimal_host.out" || fail "no transcript printed"
grep -q '^agent: You said: pitch 150 hz for ' "$build/minimal_host.out" || fail "no reply printed"
# A bad configuration is reported, not crashed on.
if "$build/cmake/minimal_host_cpp" '{"provider":"no-such-backend"}' </dev/null 2>"$build/err.out"; then
  fail "minimal_host_cpp accepted an unknown provider"
fi
grep -q 'VB_ERR_PROVIDER_NOT_FOUND' "$build/err.out" || fail "unexpected error output"

if [ "${VB_CPP_SKIP_INSTALL:-0}" = 1 ]; then
  step "install + consumer: skipped (VB_CPP_SKIP_INSTALL=1)"
else
  step "install + consumer (temporary prefix)"
  "$here/test/install_consumer.sh"
fi

printf '\ncpp: all passed\n'
