#!/usr/bin/env bash
# Starts a loopback-only livekit-server (v1.13.5 from /work/tools/livekit/server, or $LIVEKIT_SERVER)
# in the background, waits until it answers, and prints its PID on stdout.
#   livekit-server.sh [--port 7895] [--rtc-ports 52000-52100] [--keys devkey:secret] [--log FILE]
# Stop it with: kill PID. Config: see /work/shared/notes/livekit.md (no STUN, no TCP, 127.0.0.1 only).
set -euo pipefail
PORT=7895; RTC=52000-52100; KEYS=devkey:secret; LOG=""
BIN=${LIVEKIT_SERVER:-/work/tools/livekit/server}
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2;;
    --rtc-ports) RTC=$2; shift 2;;
    --keys) KEYS=$2; shift 2;;
    --log) LOG=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    *) echo "livekit-server.sh: unknown argument $1" >&2; exit 2;;
  esac
done
[ -x "$BIN" ] || { echo "livekit-server.sh: no livekit-server at $BIN (set LIVEKIT_SERVER)" >&2; exit 2; }
DIR=$(mktemp -d /tmp/lk-server.XXXXXX)
LOG=${LOG:-$DIR/server.log}
cat > "$DIR/livekit.yaml" <<YAML
port: $PORT
bind_addresses: [127.0.0.1]
keys: {${KEYS%%:*}: ${KEYS#*:}}
logging: {level: info}
rtc:
  port_range_start: ${RTC%-*}
  port_range_end: ${RTC#*-}
  tcp_port: 0
  use_external_ip: false
  node_ip: 127.0.0.1
  enable_loopback_candidate: true
  ips: {includes: [127.0.0.1/32]}
  use_mdns: false
  stun_servers: [127.0.0.1:3478]
turn: {enabled: false}
YAML
# ip link set lo up is harmless outside a namespace and needed in a fresh one
ip link show lo 2>/dev/null | grep -q 'state UNKNOWN\|UP' || ip link set lo up 2>/dev/null || true
"$BIN" --config "$DIR/livekit.yaml" >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  if ! kill -0 $PID 2>/dev/null; then echo "livekit-server.sh: server exited; log $LOG:" >&2; tail -20 "$LOG" >&2; exit 1; fi
  if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then echo $PID; exit 0; fi
  sleep 0.1
done
echo "livekit-server.sh: no answer on 127.0.0.1:$PORT after 10 s; log $LOG" >&2
kill $PID; exit 1
