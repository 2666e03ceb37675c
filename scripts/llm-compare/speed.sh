#!/usr/bin/env bash
# Part B: candle 0.11.1 CPU speed for both models. One process per configuration (peak RSS
# is per process); each prints one JSON line, collected in results/*.jsonl, details in *.log.
#
#   ./speed.sh grid         as-is vs re-quantized (no-SIMD types -> Q8_0), both models,
#                           upstream candle models         -> results/speed.jsonl
#   ./speed.sh interleaved  the two engine-relevant configs alternated ROUNDS times, so that
#                           load from other work on the machine hits both alike; Gemma via
#                           upstream candle (the measured runs used a copy with RoPE tables for 4096 positions)
#                                                          -> results/speed_interleaved$TAG.jsonl
#   TAG=_1thread RAYON_NUM_THREADS=1 ./speed.sh interleaved   same on one thread (steadier
#                           when other work oversubscribes the cores)
set -euo pipefail
cd "$(dirname "$0")"
M=$HOME/.cache/voicebackend/models
SMOL=$M/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
GEMMA=$M/gemma3-270m-it/gemma-3-270m-q4_k_m.gguf
BIN=speed/target/release/llm-speed
(cd speed && cargo build --release -j1)
mkdir -p results
run() { local out=$1; shift; echo "== $* ($(cut -d' ' -f1-3 /proc/loadavg) load)" | tee -a "${out%.jsonl}.log";
        "$BIN" "$@" 2>>"${out%.jsonl}.log" | tee -a "$out"; }
case "${1:-grid}" in
grid)
  R=${RUNS:-5}; O=results/speed.jsonl; : > $O; : > results/speed.log
  run $O llama  $SMOL  speed/tokens.json smollm2-135m --requant slow --runs $R --gen 64
  run $O llama  $SMOL  speed/tokens.json smollm2-135m --requant none --runs $R --gen 64
  run $O gemma3 $GEMMA speed/tokens.json gemma3-270m  --requant none --runs $R --gen 64
  run $O gemma3 $GEMMA speed/tokens.json gemma3-270m  --requant slow --runs $R --gen 64
  ;;
interleaved)
  R=${RUNS:-4}; O=results/speed_interleaved${TAG:-}.jsonl; : > $O; : > results/speed_interleaved${TAG:-}.log
  for round in $(seq "${ROUNDS:-2}"); do
    run $O llama             $SMOL  speed/tokens.json smollm2-135m --requant slow --runs $R --gen 64
    run $O gemma3 $GEMMA speed/tokens.json gemma3-270m  --requant slow --runs $R --gen 64
  done
  ;;
  requant1) ;;
esac
# (appended) ./speed.sh requant1   one thread: what re-quantizing is worth, both models
#                                  -> results/speed_requant_1thread.jsonl
if [ "${1:-}" = requant1 ]; then
  O=results/speed_requant_1thread.jsonl; : > $O; : > results/speed_requant_1thread.log
  export RAYON_NUM_THREADS=1
  run $O gemma3 $GEMMA speed/tokens.json gemma3-270m  --requant none --runs 3 --gen 64
  run $O llama             $SMOL  speed/tokens.json smollm2-135m --requant none --runs 3 --gen 64
fi
