#!/usr/bin/env bash
# The soak (benches/soak.rs): 500 sessions with speech every 4 s for 10 minutes, then the same with
# a network STT that drops its connections every 30 s and an agent that fails and stalls.
# Not in CI (20 minutes). Knobs: VB_SOAK_SESSIONS, VB_SOAK_SECONDS, VB_SOAK_WARMUP_SECONDS,
# VB_SOAK_HISTORY_TURNS (the sessions' history_max_turns; the warm-up covers filling it),
# VB_SOAK_SPREAD_DROPS=1 (the STT server drops each connection at its own moment of the 30 s
# period instead of all of them at once).
# Exit status 1 when a run fails one of its checks (printed as FAIL lines).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export VB_SOAK_SESSIONS="${VB_SOAK_SESSIONS:-500}" VB_SOAK_SECONDS="${VB_SOAK_SECONDS:-600}"
cargo build --release --features test-providers --bench soak
status=0
echo "== soak: test providers (load: $(cut -d' ' -f1-3 /proc/loadavg))"
cargo bench --features test-providers --bench soak || status=1
echo "== soak: faults (load: $(cut -d' ' -f1-3 /proc/loadavg))"
cargo bench --features test-providers --bench soak -- --faults || status=1
exit "$status"
