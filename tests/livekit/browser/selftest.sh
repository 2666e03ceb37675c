#!/usr/bin/env bash
# Self-test of the harness, entirely inside a fresh network namespace (run-in-netns.sh):
# a loopback-only livekit-server, page B (listener) and page A (speaker: a fake mic playing
# espeak-ng speech, then a text stream on lk.transcription, a data packet and the participant
# attribute lk.agent.state=listening). check-selftest.mjs then checks B's report.
#
#   selftest.sh [--loss PCT] [--port 7895] [--rtc-ports 52000-52100] [--out DIR] [-- extra run.mjs args]
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
LOSS= PORT=7895 RTC=52000-52100 OUT=
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --loss) LOSS=$2; shift 2;;
    --port) PORT=$2; shift 2;;
    --rtc-ports) RTC=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --) shift; EXTRA=("$@"); break;;
    *) echo "selftest.sh: unknown argument $1" >&2; exit 2;;
  esac
done
OUT=${OUT:-$(mktemp -d /tmp/lk-selftest.XXXXXX)}
mkdir -p "$OUT"
[ -f "$HERE/dist/harness.js" ] || { echo "selftest.sh: run setup.sh first" >&2; exit 2; }
espeak-ng -w "$OUT/hello.wav" "hello there how are you"

NETNS_ARGS=()
[ -n "$LOSS" ] && NETNS_ARGS+=(--loss "$LOSS")
export HERE OUT PORT RTC
export EXTRA_ARGS="${EXTRA[*]:-}"
START=$(date +%s%N)
set +e
"$HERE/run-in-netns.sh" "${NETNS_ARGS[@]}" -- bash -c '
  set -u
  cd "$HERE"
  "$HERE/../../../scripts/livekit-server.sh" start "$PORT" "${RTC%-*}" "${RTC#*-}" >/dev/null || exit 1
  URL=ws://127.0.0.1:$PORT
  # B listens until it has the attribute change that A sends after its text stream, and audio.
  node run.mjs --url "$URL" --api-key devkey --api-secret secret --room selftest --identity listener \
    --until "attr:lk.agent.state=listening after texts>=1 && audio-ms>=600" --linger-ms 500 \
    --duration-ms 20000 --report "$OUT/b.json" $EXTRA_ARGS 2>"$OUT/b.log" &
  B=$!
  # A speaks once B is there: 1 s of silence, 1.3 s of speech, then silence (no loop in the window;
  # DTX off so packets flow all the time, which makes --loss visible),
  # then sends the text stream (+1.5 s), a data packet and the attribute, 1.5 s apart.
  node run.mjs --url "$URL" --api-key devkey --api-secret secret --room selftest --identity speaker \
    --mic "$OUT/hello.wav" --mic-pad-start-ms 1000 --mic-pad-end-ms 30000 --mic-when "participants>=1" --dtx off \
    --send-text "hello there how are you" --send-text-attrs "lk.segment_id=SG_1,lk.transcribed_track_id=TR_test,lk.transcription_final=true" \
    --send-data "ping" --send-data-topic harness --set-attr "lk.agent.state=listening" \
    --action-when "participants>=1" --action-delay-ms 1500 \
    --until "ms>=9000" --duration-ms 20000 --report "$OUT/a.json" $EXTRA_ARGS 2>"$OUT/a.log" &
  A=$!
  wait $B; RB=$?
  wait $A; RA=$?
  echo "selftest: page A exit $RA, page B exit $RB" >&2
  [ $RA = 0 ] && [ $RB = 0 ]
'
RC=$?
set -e
echo "selftest: namespace run took $(( ($(date +%s%N) - START) / 1000000 )) ms; reports in $OUT" >&2
for f in a b; do echo "--- page ${f^^} ($OUT/$f.log)"; sed 's/^/  /' "$OUT/$f.log"; done
node "$HERE/check-selftest.mjs" "$OUT/a.json" "$OUT/b.json" ${LOSS:+--loss "$LOSS"}
CRC=$?
[ $RC = 0 ] || { echo "selftest: a page failed (exit $RC)" >&2; exit 1; }
exit $CRC
