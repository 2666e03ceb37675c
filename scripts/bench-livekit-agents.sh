#!/usr/bin/env bash
# Rooms per worker: our LiveKit agent worker (`voicebackend agent --worker` with the test
# providers) against a LiveKit Agents (Python) worker doing the same work
# (benches/livekit_agents/worker.py), under the same protocol, one after the other. A bench, not
# a test: not run by CI. See benches/livekit_agents/README.md.
#
#   scripts/bench-livekit-agents.sh [N ...]      default: 10 20 40
#
# For each N and each worker: a fresh livekit-server 1.13.5, the worker, then N Go SDK users
# (lk-peer), one per room, joining RAMP_MS apart; each speaks UTTERANCE every 4 s once the agent
# has subscribed to it. After the last user joined and SETTLE_S more, a WINDOW_S window measures
# the worker's process tree (the worker and every descendant: LiveKit Agents' job processes):
# CPU (utime + stime from /proc), RSS and PSS; then every user's report says which utterances got
# a reply (audible agent audio after the utterance's end, before the next one) and how long after
# the end of the utterance it was heard. Prints one line per trial and writes all figures to
# target/bench-livekit-agents/<time>/results.jsonl.
#
# Environment:
#   WORKERS        which workers, in order (default "voicebackend livekit-agents")
#   UTTERANCE      speech (default: espeak-ng "hello there, how are you today", 1.65 s) or buzz
#                  (the 800 ms 150 Hz buzz of benches/livekit.rs; Silero does not take it for
#                  speech reliably: use it with LKA_VAD=energy)
#   LKA_VAD        the Python worker's VAD: silero (default), inference or energy (worker.py)
#   LKA_LOAD       tree (default here: the worker tree's own CPU, as ours measures its process)
#                  or default (LiveKit's: the cgroup's CPU, which here includes the users, the
#                  server and any other work on the machine)
#   RAMP_MS SETTLE_S WINDOW_S   250, 8, 20
#   LKA_MAX_ROOMS  the LiveKit Agents worker is not run with more rooms than this (default 20:
#                  it needs 11-22 % of a core per room here, so 20 rooms overload 2 cores,
#                  and 40 of its job processes brought the machine's load to ~60)
#   COOL_LOAD      before each trial, wait (up to 2 minutes) for the 1-minute load average to
#                  fall below this (default 6), so that one trial's load does not spill into the
#                  next; the load averages before and after each trial are in its figures
#
# Each worker runs in a PID namespace of its own, with its own /proc (its job processes cannot
# outlive it; psutil, which LiveKit Agents uses on its job processes, sees the right PIDs), and
# everything runs inside a fresh network, PID and mount namespace (unshare; needs root): the
# `livekit` Python wheel (libwebrtc) gathers no loopback ICE candidates, so the namespace gets a
# veth pair with 10.77.0.1 on one end, both ends inside it; nothing inside reaches any other
# network. When the script ends, the kernel ends every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
PORT=7880
KEY=devkey
SECRET=secret

if [ "${1:-}" != "--inside" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "bench-livekit-agents: needs root (unshare --net)" >&2; exit 1; }
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    scripts/livekit-server.sh install >/dev/null
    PEER=$(tests/livekit/peer/build.sh)
    PY=$(benches/livekit_agents/setup.sh)
    echo "bench-livekit-agents: building voicebackend with the test providers" >&2
    cargo build --release --quiet --features test-providers --bin voicebackend
    OUT="$TARGET/bench-livekit-agents/$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$OUT"
    case "${UTTERANCE:=speech}" in
        speech)
            command -v espeak-ng >/dev/null && command -v sox >/dev/null \
                || { echo "bench-livekit-agents: UTTERANCE=speech needs espeak-ng and sox" >&2; exit 1; }
            espeak-ng -w "$OUT/espeak.wav" "hello there, how are you today"
            # 48 kHz, leading and trailing silence cut (the end of the file is the end of speech)
            sox "$OUT/espeak.wav" -r 48000 "$OUT/utterance.wav" \
                silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse ;;
        buzz)
            # benches/livekit.rs: common::speech(150.0, 800, 48_000)
            python3 - "$OUT/utterance.wav" <<'EOF' ;;
import math, struct, sys, wave
rate, n = 48000, 48000 * 800 // 1000
def s(i):
    t = i / rate
    h = sum(math.sin(t * 150.0 * k * 2 * math.pi) / k for k in range(1, 11))
    return int(h * (0.75 + 0.25 * math.sin(t * 4 * 2 * math.pi)) * 7000)
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
w.writeframes(struct.pack(f"<{n}h", *(s(i) for i in range(n)))); w.close()
EOF
        *) echo "bench-livekit-agents: UTTERANCE=$UTTERANCE: speech or buzz" >&2; exit 2 ;;
    esac
    export OUT PEER PY UTTERANCE
    echo "bench-livekit-agents: results in $OUT" >&2
    exec unshare --net --pid --fork --mount-proc --kill-child -- bash "$0" --inside "$@"
fi

# ---- inside the namespaces -----------------------------------------------------------------------
shift
ROOMS=("$@")
[ ${#ROOMS[@]} -gt 0 ] || ROOMS=(10 20 40)
WORKERS=${WORKERS:-voicebackend livekit-agents}
RAMP_MS=${RAMP_MS:-250}
SETTLE_S=${SETTLE_S:-8}
WINDOW_S=${WINDOW_S:-20}
LKA_MAX_ROOMS=${LKA_MAX_ROOMS:-20}
COOL_LOAD=${COOL_LOAD:-6}
EVERY_MS=4000
JUDGE_MS=3000
export LKA_VAD=${LKA_VAD:-silero} LKA_LOAD=${LKA_LOAD:-tree}
export LIVEKIT_RUN_DIR="$OUT/run"   # the server's config and log; never another run's
VB="$TARGET/release/voicebackend"
MEASURE="python3 $REPO/benches/livekit_agents/measure.py"
SAMPLE="nice -n -10 $MEASURE sample"   # ahead of the load it measures, so the readings are on time

ip link set lo up
ip link add lkb0 type veth peer name lkb1
ip addr add 10.77.0.1/24 dev lkb0
ip link set lkb0 up
ip link set lkb1 up

# WORKER_PID: the `unshare` holding the worker's PID namespace; WORKER_MAIN: the worker (PID 1
# there). Killing the first ends every process of the worker.
WORKER_PID="" WORKER_MAIN="" SERVER_STARTED="" PEER_PIDS=()
cleanup() {
    [ -n "$WORKER_PID" ] && { kill -KILL "$WORKER_PID" 2>/dev/null || true; }
    for p in "${PEER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [ -n "$SERVER_STARTED" ] && scripts/livekit-server.sh stop "$PORT" >/dev/null 2>&1
    WORKER_PID="" WORKER_MAIN="" SERVER_STARTED="" PEER_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Stops the worker: SIGTERM (both drain; the rooms have ended by then), a second SIGTERM after
# 5 s (LiveKit Agents then exits at once), after 10 s SIGKILL to its namespace's holder (the
# kernel then kills every process in it).
stop_worker() {
    local i
    kill -TERM "$WORKER_MAIN" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$WORKER_PID" 2>/dev/null || break
        [ "$i" = 50 ] && { kill -TERM "$WORKER_MAIN" 2>/dev/null || true; }
        sleep 0.1
    done
    kill -KILL "$WORKER_PID" 2>/dev/null || true
    wait "$WORKER_PID" 2>/dev/null || true
    WORKER_PID="" WORKER_MAIN=""
}

cool_down() {
    local i
    for i in $(seq 120); do
        awk -v max="$COOL_LOAD" '{ exit !($1 < max) }' /proc/loadavg && return
        sleep 1
    done
    echo "bench-livekit-agents: load average still $(loadavg) after 2 minutes; going on" >&2
}

trial() {
    local worker=$1 n=$2 dir="$OUT/$1-$2"
    mkdir -p "$dir"
    local rtc_end=$((50000 + 4 * n + 200))
    cool_down
    local before; before=$(loadavg)
    scripts/livekit-server.sh start "$PORT" 50000 "$rtc_end" >"$dir/server.pid" 2>"$dir/server.err"
    SERVER_STARTED=1
    local server_pid; server_pid=$(cat "$dir/server.pid")
    local server_log; server_log="$(cat "$LIVEKIT_RUN_DIR/port-$PORT.current")/server.log"
    case "$worker" in
        voicebackend)
            LIVEKIT_API_KEY=$KEY LIVEKIT_API_SECRET=$SECRET unshare --pid --mount-proc --fork --kill-child -- \
                "$VB" agent --worker \
                --url "ws://127.0.0.1:$PORT" --stt test-pitch-stt --tts test-tone-tts \
                >"$dir/worker.log" 2>&1 &
            WORKER_PID=$! ;;
        livekit-agents)
            (cd "$REPO/benches/livekit_agents" && exec unshare --pid --mount-proc --fork --kill-child -- \
                "$PY" -m livekit.agents start worker.py \
                --url "ws://127.0.0.1:$PORT" --api-key "$KEY" --api-secret "$SECRET") \
                >"$dir/worker.log" 2>&1 &
            WORKER_PID=$! ;;
        *) echo "unknown worker $worker" >&2; exit 2 ;;
    esac
    local i
    for i in $(seq 50); do
        WORKER_MAIN=$($MEASURE children "$WORKER_PID" | awk '{ print $1 }')
        [ -n "$WORKER_MAIN" ] && break
        sleep 0.1
    done
    [ -n "$WORKER_MAIN" ] || { echo "bench-livekit-agents: $worker did not start" >&2; exit 1; }
    for i in $(seq 300); do   # up to 30 s
        grep -q "worker registered" "$server_log" 2>/dev/null && break
        kill -0 "$WORKER_PID" 2>/dev/null || { echo "$worker exited; log: $dir/worker.log" >&2; tail "$dir/worker.log" >&2; exit 1; }
        sleep 0.1
    done
    grep -q "worker registered" "$server_log" || { echo "$worker did not register in 30 s" >&2; exit 1; }
    sleep 3
    local idle; idle=$($MEASURE tree "$WORKER_PID")

    # Enough utterances that the first user still speaks at the end of the window.
    local ramp_s=$(( (n * RAMP_MS + 999) / 1000 ))
    local k=$(( (ramp_s + SETTLE_S + WINDOW_S) * 1000 / EVERY_MS + 2 ))
    local duration=$(( 10000 + 500 + k * EVERY_MS + JUDGE_MS ))
    local speak=() j
    for j in $(seq 0 $((k - 1))); do speak+=(--speak "$OUT/utterance.wav@$((500 + j * EVERY_MS))"); done
    PEER_PIDS=()
    for i in $(seq 0 $((n - 1))); do
        "$PEER" --url "ws://127.0.0.1:$PORT" --room "room-$i" --identity "user-$i" --wait-subscriber \
            "${speak[@]}" --duration-ms "$duration" --report "$dir/peer-$i.json" --quiet \
            2>"$dir/peer-$i.err" &
        PEER_PIDS+=($!)
        sleep "$(awk -v ms="$RAMP_MS" 'BEGIN { print ms / 1000 }')"
    done
    sleep "$SETTLE_S"
    local sample0 busy sample1
    sample0=$($SAMPLE "$WORKER_PID" "$server_pid" "${PEER_PIDS[@]}")
    sleep "$((WINDOW_S / 2))"
    busy=$($MEASURE tree "$WORKER_PID")
    sleep "$((WINDOW_S - WINDOW_S / 2))"
    sample1=$($SAMPLE "$WORKER_PID" "$server_pid" "${PEER_PIDS[@]}")
    local after; after=$(loadavg)
    for p in "${PEER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PEER_PIDS=()
    cat >"$dir/trial.json" <<EOF
{"worker": "$worker", "rooms": $n,
 "vad": "$([ "$worker" = livekit-agents ] && echo "$LKA_VAD" || echo "voicebackend")",
 "load_fnc": "$([ "$worker" = livekit-agents ] && echo "$LKA_LOAD" || echo "process")",
 "utterance": "$UTTERANCE", "judge_ms": $JUDGE_MS, "every_ms": $EVERY_MS,
 "utterances_per_user": $k, "loadavg_before": "$before", "loadavg_after": "$after",
 "idle": $idle, "busy": $busy, "sample0": $sample0, "sample1": $sample1}
EOF
    stop_worker
    scripts/livekit-server.sh stop "$PORT" >/dev/null 2>&1 || true
    SERVER_STARTED=""
    $MEASURE summarize "$dir" >>"$OUT/results.jsonl"
}

echo "bench-livekit-agents: rooms ${ROOMS[*]}; workers $WORKERS; utterance $UTTERANCE; LiveKit Agents VAD $LKA_VAD, load $LKA_LOAD; $(nproc) cores" >&2
for n in "${ROOMS[@]}"; do
    for w in $WORKERS; do
        if [ "$w" = livekit-agents ] && [ "$n" -gt "$LKA_MAX_ROOMS" ]; then
            echo "bench-livekit-agents: livekit-agents N=$n skipped (over LKA_MAX_ROOMS=$LKA_MAX_ROOMS)" >&2
            continue
        fi
        trial "$w" "$n"
    done
done
echo "bench-livekit-agents: figures in $OUT/results.jsonl" >&2
