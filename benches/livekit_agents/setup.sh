#!/usr/bin/env bash
# Creates the Python venv the LiveKit Agents worker of the comparison bench runs in
# (benches/livekit_agents/worker.py): livekit-agents and livekit-plugins-silero from PyPI, pinned.
# The `livekit` rtc wheel it pulls in carries its native library (liblivekit_ffi.so, libwebrtc
# inside) and the Silero plugin carries its ONNX model: nothing is downloaded at run time.
#
#   benches/livekit_agents/setup.sh        prints the venv's python on stdout (alone on the line)
#
# Venv: ${LKA_VENV:-<repo>/target/livekit-agents-venv}. Safe to re-run: a venv that already has
# the pinned versions is left alone. Needs python3 (>= 3.10) with the venv module.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${LKA_VENV:-${CARGO_TARGET_DIR:-$REPO/target}/livekit-agents-venv}"
AGENTS_VERSION=1.8.9
REQUIREMENTS=("livekit-agents==$AGENTS_VERSION" "livekit-plugins-silero==$AGENTS_VERSION")
IMPORTS="livekit.agents, livekit.rtc, livekit.plugins.silero, numpy, psutil"

log() { echo "livekit-agents setup: $*" >&2; }

installed() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$AGENTS_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
want = sys.argv[1]
ok = m.version("livekit-agents") == want and m.version("livekit-plugins-silero") == want
import livekit.agents, livekit.rtc, livekit.plugins.silero, numpy, psutil  # noqa: E401,F401
sys.exit(0 if ok else 1)
EOF
}

if ! installed; then
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating a venv in $VENV ($(python3 --version))"
        mkdir -p "$(dirname "$VENV")"
        python3 -m venv "$VENV"
    fi
    log "installing ${REQUIREMENTS[*]} from PyPI (about 480 MB in the venv the first time)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --progress-bar off "${REQUIREMENTS[@]}" >&2
    installed || { log "error: the venv in $VENV cannot import $IMPORTS"; exit 1; }
fi
log "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("livekit-agents", "livekit", "livekit-plugins-silero", "onnxruntime")))')"
echo "$VENV/bin/python"
