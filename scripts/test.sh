#!/usr/bin/env bash
# The whole test suite: formatting and lints, unit tests, integration tests through the Rust API
# and the C ABI (a C program compiled and run against the library), the examples, the embedded
# providers, and the host bindings (C++ with CMake and GoogleTest, install + pkg-config; Go with
# go vet, go test -race and the ProcessAudio benchmark).
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

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
echo "test: C++ binding (bindings/cpp/test.sh)"
bindings/cpp/test.sh
echo "test: Go binding (bindings/go/test.sh)"
bindings/go/test.sh
