#!/usr/bin/env bash
# The main job: an offline voice conversation on the embedded default providers (Whisper tiny.en
# STT, eSpeak NG TTS, the CLI's agent: exact rules for greetings, the time and arithmetic, the
# embedded SmolLM2-135M-Instruct model for the rest). Generates a sample conversation with several
# eSpeak NG voices and pauses, runs `voicebackend converse` over it and prints every turn and the
# latency table. Output: target/demo/conversation.wav (the user) and target/demo/agent.wav.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh   # what the demo uses only: not the test suite's Go, GoogleTest or Pipecat venv
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "demo: building (release)"
cargo build --release --quiet --bin voicebackend

OUT=target/demo
mkdir -p "$OUT"
# voice|words|seconds of pause after them (the answers of the language model take longer).
sentences=(
    "en-us|Hello there.|4"
    "en-gb|What is twelve plus seven?|4"
    "en-us+m3|What is the capital of France?|6"
    "en-us+f3|What time is it?|4"
    "en-us+m3|It is a lovely day today.|6"
    "en-gb|How do I boil an egg?|7"
    "en-us+f2|What is six times eight?|4"
    "en-us|Thank you, goodbye.|4"
)
# The user starts talking one second in, and pauses long enough after each sentence for the
# agent's answer, as a person would.
sox -n -r 22050 -c 1 -b 16 "$OUT/lead.wav" trim 0 1
parts=("$OUT/lead.wav")
i=0
for entry in "${sentences[@]}"; do
    IFS='|' read -r voice text pause <<<"$entry"
    # -g 5: a 50 ms gap between words, which Whisper tiny.en hears much better in eSpeak NG.
    espeak-ng -v "$voice" -s 150 -g 5 -w "$OUT/part$i.wav" "$text"
    sox -n -r 22050 -c 1 -b 16 "$OUT/pause$i.wav" trim 0 "$pause"
    parts+=("$OUT/part$i.wav" "$OUT/pause$i.wav")
    i=$((i + 1))
done
sox "${parts[@]}" -r 16000 "$OUT/conversation.wav"
rm -f "$OUT"/part*.wav "$OUT"/pause*.wav "$OUT/lead.wav"
echo "demo: sample conversation $OUT/conversation.wav ($(soxi -D "$OUT/conversation.wav") s, ${#sentences[@]} sentences, 5 voices)"
echo
target/release/voicebackend converse --input "$OUT/conversation.wav" --output "$OUT/agent.wav" "$@"
