#!/bin/sh
# Makes the test speech (espeak-ng, resampled to 16 kHz mono 16-bit with sox) into data/.
set -e
cd "$(dirname "$0")/../data"
i=0
for text in "What is the weather like today?" \
            "I would like to book a table for two people at seven, please." \
            "Hmm, let me think about that for a second, because I am not sure" \
            "Yes. No. Maybe tomorrow, if it does not rain."; do
  espeak-ng -w raw$i.wav "$text"
  sox raw$i.wav -r 16000 -c 1 -b 16 speech$i.wav
  rm raw$i.wav
  i=$((i+1))
done
