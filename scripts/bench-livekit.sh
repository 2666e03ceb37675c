#!/usr/bin/env bash
# The livekit backend's benchmarks against a real livekit-server and Go SDK users on this machine
# (not part of the test suite): the latency LiveKit adds to a conversation, and N concurrent
# sessions with the CPU of the engine, the server and the users. See benches/livekit.rs.
#
#   scripts/bench-livekit.sh [N]     latency over 10 turns, then scale with N sessions (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests >/dev/null
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
scripts/livekit-server.sh install >/dev/null
tests/livekit/peer/build.sh >/dev/null
echo "bench-livekit: latency (10 turns)"
cargo bench --features test-providers --bench livekit -- latency 10
echo "bench-livekit: scale (${1:-50} sessions)"
cargo bench --features test-providers --bench livekit -- scale "${1:-50}"
echo "bench-livekit: dispatch (50 rooms to a worker)"
cargo bench --features test-providers --bench livekit -- dispatch 50
