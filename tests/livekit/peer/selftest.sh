#!/usr/bin/env bash
# Self-test of the LiveKit test peer against a real livekit-server on loopback: two peers in one
# room, one speaking an espeak-ng WAV (plus a text stream on lk.transcription, a data packet and
# lk.agent.state attribute changes), the other recording; then the same with 10 % packet loss.
# Prints the measurements and a closing "N passed, N failed" line; exit 0 only if all passed.
#
#   tests/livekit/peer/selftest.sh [PORT [RTC_START]]   (default 17890, RTC UDP ports 51000-51099)
#
# Needs espeak-ng and python3 (Debian packages); builds the peer and the server if needed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
PORT="${1:-17890}"
RTC_START="${2:-51000}"
RTC_END=$((RTC_START + 99))

command -v espeak-ng >/dev/null || { echo "selftest: espeak-ng is missing (apt-get install espeak-ng)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "selftest: python3 is missing" >&2; exit 1; }

PEER="$("$HERE/build.sh")"
SERVER="$REPO/scripts/livekit-server.sh"
"$SERVER" start "$PORT" "$RTC_START" "$RTC_END" >/dev/null
TMP="$(mktemp -d "${TMPDIR:-/tmp}/lk-peer-selftest.XXXXXX")"
cleanup() { "$SERVER" stop "$PORT" || true; }
trap cleanup EXIT
cd "$TMP"
URL="ws://127.0.0.1:$PORT"
espeak-ng -w hello.wav "hello there how are you"

pass=0 fail=0
check() { # check NAME COMMAND...
    if "${@:2}"; then pass=$((pass + 1)); echo "ok    $1"; else fail=$((fail + 1)); echo "FAIL  $1"; fi
}

scenario() { # scenario NAME EXTRA_SPEAKER_ARGS...
    local name="$1"; shift
    "$PEER" --url "$URL" --room "$name" --identity user-listener --record "$name-heard.wav" \
        --report "$name-listener.json" --until-attribute lk.agent.state=listening \
        --until-identity user-speaker --duration-ms 15000 --quiet &
    local lpid=$!
    "$PEER" --url "$URL" --room "$name" --identity user-speaker --wait-subscriber \
        --speak hello.wav@300 --send-text 'lk.transcription:hello there how are you@100' \
        --send-data 'test:ping@50' --attr lk.agent.state=speaking@200 \
        --attr lk.agent.state=listening@2500 --silence=false --report "$name-speaker.json" \
        --duration-ms 4500 \
        --quiet "$@"
    local scode=$? lcode=0
    wait "$lpid" || lcode=$?
    echo "$name: speaker exit $scode, listener exit $lcode"
    [ "$scode" = 0 ] && [ "$lcode" = 0 ]
}

measure() { # measure NAME MIN_CORRELATION MIN_DROPPED_FRACTION MAX_DROPPED_FRACTION
    "$PEER" analyze --ref hello.wav --rec "$1-heard.wav" --min-correlation "$2" >"$1-corr.json" || true
    python3 - "$1" "$2" "$3" "$4" <<'EOF'
import json, sys
name, min_corr, lo, hi = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
L = json.load(open(f"{name}-listener.json")); S = json.load(open(f"{name}-speaker.json"))
corr = json.load(open(f"{name}-corr.json"))
t = [x for x in L["subscribed_tracks"] if x["participant_identity"] == "user-speaker"]
sent = S["sent"]
recv = sum(x["packets"] for x in t); lost = sum(x["lost"] for x in t)
utt = S["utterances"][0]
# speech onset on the listener's clock, from the speaker's clock via the action-clock offset
print(f"{name}: speaker frames {sent['frames_encoded']}, RTP sent {sent['rtp_packets_sent']}, "
      f"dropped {sent['rtp_packets_dropped']}; listener received {recv} packets, "
      f"lost (seq gaps) {lost}, PLC frames {sum(x['plc_frames'] for x in t)}")
print(f"{name}: correlation {corr['correlation']} at {corr['lag_ms']} ms; audible {L['audible']}")
ts = [s for s in L["text_streams"] if s["topic"] == "lk.transcription"]
attrs = [(a["key"], a["value"]) for a in L["attribute_changes"] if a["identity"] == "user-speaker" and not a.get("initial")]
data = [d for d in L["data_packets"] if d["topic"] == "test"]
print(f"{name}: text streams {[(s['text'], s['attributes']) for s in ts]}")
print(f"{name}: attribute changes {attrs}; data {[d['text'] for d in data]}; until {L['until']}")
ok = True
def need(cond, what):
    global ok
    if not cond:
        ok = False
        print(f"{name}: check failed: {what}")
need(corr["correlation"] >= min_corr, f"correlation >= {min_corr}")
# The SFU adds ~10 Opus silence frames of its own when a downtrack starts, so count losses, not
# packets: every packet the speaker dropped is a sequence gap at the listener, nothing else is lost.
need(recv >= sent["rtp_packets_sent"], "every packet sent was received")
need(sent["rtp_packets_dropped"] <= lost <= sent["rtp_packets_dropped"] + 2, "losses = packets dropped by --loss")
need(lo <= sent["rtp_packets_dropped"] / max(1, sent["frames_encoded"]) <= hi, f"dropped fraction in [{lo}, {hi}]")
need(len(ts) == 1 and ts[0]["text"] == "hello there how are you", "one lk.transcription text stream with the text")
need(len(ts) == 1 and ts[0]["attributes"].get("lk.transcription_final") == "true" and ts[0]["attributes"].get("lk.segment_id") and ts[0]["attributes"].get("lk.transcribed_track_id") == S["published_tracks"][0]["sid"], "transcription attributes")
need(attrs == [("lk.agent.state", "speaking"), ("lk.agent.state", "listening")], "attribute changes speaking, listening")
need(data and data[0]["text"] == "ping", "data packet")
need(L["until"]["satisfied"], "listener left on lk.agent.state=listening")
need(L["first_audible_ms"] is not None and L["first_remote_audio_ms"] is not None, "audio heard")
sys.exit(0 if ok else 1)
EOF
}

check "two peers, no loss: run" scenario clean
check "two peers, no loss: audio, text, attributes, data" measure clean 0.9 0 0
check "two peers, 10% loss: run" scenario lossy --loss 0.1 --loss-seed 42
check "two peers, 10% loss: audio, text, attributes, data" measure lossy 0.5 0.03 0.2
echo "files in $TMP"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
