#!/usr/bin/env bash
# Creates the Python environment that the `pipecat` backend's tests run their Pipecat bot in
# (tests/pipecat/bot.py): a venv with pipecat-ai 1.14.0 from PyPI, with the extras the bot uses:
#
#   silero     Silero VAD (the ONNX model ships inside the package; onnxruntime is a core dependency)
#   websocket  SingleClientWebsocketServerTransport (websockets, fastapi)
#   whisper    pipecat's Whisper STT service on faster-whisper (CTranslate2), which loads the
#              offline model directory that scripts/fetch-models.sh installs
#
# The bot's TTS is eSpeak NG through libespeak-ng (a Debian package from scripts/setup.sh).
#
# aiortc (a WebRTC peer in Python) is the independent client of the direct WebRTC tests
# (tests/webrtc/client.py, run by tests/webrtc_aiortc.rs).
#
# Venv: ${VOICEBACKEND_VENV:-$HOME/.cache/voicebackend/venv}. Idempotent: a venv whose pinned
# packages are already installed is left alone. Needs python3 with the venv module.
set -euo pipefail

VENV="${VOICEBACKEND_VENV:-$HOME/.cache/voicebackend/venv}"
REQUIREMENTS=("pipecat-ai[silero,websocket,whisper]==1.14.0" "aiortc==1.16.0")
# Checked after installing: what the bot imports.
IMPORTS="pipecat, pipecat.transports.websocket.server, pipecat.serializers.protobuf, pipecat.audio.vad.silero, pipecat.services.whisper.stt, faster_whisper, aiortc"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import $IMPORTS" 2>/dev/null \
    && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pipecat-ai"))')" = "1.14.0" ]; then
    echo "python-env: pipecat-ai 1.14.0 already in $VENV"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "python-env: creating a venv in $VENV ($(python3 --version))"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi
echo "python-env: installing ${REQUIREMENTS[*]} from PyPI (about 400 MB, a few minutes the first time)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --progress-bar off "${REQUIREMENTS[@]}"
"$VENV/bin/python" -c "import $IMPORTS" \
    || { echo "python-env: the venv in $VENV cannot import the bot's modules" >&2; exit 1; }
echo "python-env: ready: $VENV/bin/python with pipecat-ai $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pipecat-ai"))')"
