#!/usr/bin/env bash
# The whole test suite: formatting and lints, unit tests, integration tests through the Rust API
# and the C ABI (a C program compiled and run against the library, once more under ASan + UBSan),
# the examples, the embedded providers, the host bindings (C++ with CMake and GoogleTest, also
# under ASan + UBSan, install + pkg-config; Go with go vet, go test -race, go test -asan and the
# ProcessAudio benchmark), every cargo-fuzz target once over its committed seeds, and a minute of
# fuzzing the C ABI (libFuzzer + ASan + UBSan).
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
# A fresh checkout (CI) gains nothing from incremental compilation, which would keep a few GB of
# caches beside the binaries.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0
# The embedded language model on one thread of candle's pool, as the CLI runs it: on two shared
# cores its spinning workers ran it 6× slower (README, *The built-in agent*).
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
# The build needs ~10 GB in target/ (a CI run once failed with a full disk): say how much is free.
disk() { echo "test: disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free, target/ $(du -sh target 2>/dev/null | cut -f1)"; }
disk

# The LiveKit tests' independent peers: livekit-server v1.13.5 (built from the Go module proxy once,
# ~4 min), the Go SDK participant, and headless Chromium with livekit-client from npm.
echo "test: LiveKit peers (scripts/livekit-server.sh, tests/livekit/peer, tests/livekit/browser)"
scripts/livekit-server.sh install >/dev/null
tests/livekit/peer/build.sh >/dev/null
tests/livekit/browser/setup.sh

echo "test: cargo fmt --check"
cargo fmt --check
echo "test: cargo clippy"
cargo clippy --quiet --all-targets --features test-providers -- -D warnings
echo "test: cargo test"
cargo test --features test-providers
echo "test: the cargo-fuzz targets on their seeds (scripts/fuzz-replay.sh)"
scripts/fuzz-replay.sh
disk
echo "test: C++ binding (bindings/cpp/test.sh)"
bindings/cpp/test.sh
echo "test: Go binding (bindings/go/test.sh)"
bindings/go/test.sh
echo "test: fuzzing the C ABI for 60 s (scripts/fuzz-abi.sh)"
scripts/fuzz-abi.sh 60
disk
