#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests through the Rust API and the C ABI (a C
# program compiled and run against the library), the examples, the embedded providers, plus
# formatting and lints. Safe to re-run.
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
