#!/bin/sh
# Runs every measurement ROUNDS times, interleaving the runtimes (the machine is shared: the load
# average is printed with every RESULT line). Needs the binaries built (see README.md).
set -e
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-$PWD/target}/release
ROUNDS=${ROUNDS:-3}
export RAYON_NUM_THREADS=1
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$HOME/.cache/voicebackend/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0}
mkdir -p results
out=${OUT:-results/runs.txt}
: > $out
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $out
  $T/ort_bench 2>&1 | tee -a $out
  TRACT_STRATEGY=concrete $T/tract_bench_patched silero1 2>&1 | tee -a $out
  TRACT_STRATEGY=concrete $T/tract_bench_patched silero32 2>&1 | tee -a $out
  # Smart Turn: tract as published (loads, wrong outputs) and patched (Softmax fold fixed).
  $T/tract_bench smart_turn 2>&1 | tee -a $out
  $T/tract_bench_patched smart_turn 2>&1 | tee -a $out
done
# candle-onnx once (Silero only; Smart Turn fails to load).
$T/candle_bench 2>&1 | tee -a $out || true
