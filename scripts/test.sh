#!/usr/bin/env bash
# The whole test suite: formatting and lints, unit tests, integration tests through the Rust API
# and the C ABI (a C program compiled and run against the library), the examples, the embedded
# providers, and the host bindings (C++ with CMake and GoogleTest, install + pkg-config; Go with
# go vet, go test -race and the ProcessAudio benchmark).
# Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

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
