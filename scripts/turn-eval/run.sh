#!/usr/bin/env bash
# Turn-taking evaluation (issue 15): generates the labeled eSpeak NG set, runs this engine
# (benches/turn_eval.rs) and Pipecat 1.14's Silero + Smart Turn stack (pipecat_eval.py) on it,
# and prints one table side by side (also written to target/turn-eval/results[-unseen].md).
#
# Usage: scripts/turn-eval/run.sh [--unseen]
#   VB_TURN_EVAL_CONFIG='{"turn":{"silence_ms":800}}'  extra engine config merged into the
#                                                      defaults (scored as a third column
#                                                      "engine-config" beside the defaults)
# Idempotent: regenerates the set (deterministic) and overwrites the outputs. Installs nothing;
# runs scripts/python-env.sh only when the venv is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
VENV="${VOICEBACKEND_VENV:-$HOME/.cache/voicebackend/venv}"
[ -x "$VENV/bin/python" ] || scripts/python-env.sh
PY="$VENV/bin/python"

variant=set flag=()
if [ "${1:-}" = "--unseen" ]; then variant=set-unseen flag=(--unseen); fi
dir=target/turn-eval
set_dir="$dir/$variant"
suffix="${variant#set}"

"$PY" scripts/turn-eval/make_set.py "${flag[@]}" --out "$set_dir"
extra="${VB_TURN_EVAL_CONFIG:-}"
VB_TURN_EVAL_CONFIG= cargo bench --features test-providers --bench turn_eval -- \
    --set "$set_dir" --out "$dir/engine$suffix.json"
results=("$dir/engine$suffix.json")
if [ -n "$extra" ]; then
    VB_TURN_EVAL_CONFIG="$extra" cargo bench --features test-providers --bench turn_eval -- \
        --set "$set_dir" --out "$dir/engine-config$suffix.json"
    results+=("$dir/engine-config$suffix.json")
fi
"$PY" scripts/turn-eval/pipecat_eval.py --set "$set_dir" --out "$dir/pipecat$suffix.json"
results+=("$dir/pipecat$suffix.json")
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" scripts/turn-eval/score.py --set "$set_dir" --md "$dir/results$suffix.md" "${results[@]}"
