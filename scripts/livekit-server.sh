#!/usr/bin/env bash
# A real LiveKit server (livekit-server v1.13.5) for the LiveKit integration tests, on loopback only.
#
#   scripts/livekit-server.sh install            build/install the server once (idempotent), print its path
#   scripts/livekit-server.sh path               same as install (for scripts: BIN=$(... path))
#   scripts/livekit-server.sh start [PORT] [RTC_START] [RTC_END]
#                                                install if needed, write a loopback-only config to a temp
#                                                dir, start the server in the background, wait until the
#                                                port answers, print its PID (stdout, alone on the line)
#   scripts/livekit-server.sh stop [PID|PORT]    stop the server started by `start` (default port 7880)
#   scripts/livekit-server.sh status [PORT]      exit 0 if a server started by this script runs on PORT
#
# Defaults: PORT 7880, RTC UDP port range 50000-50100, API key `devkey`, secret `secret`
# (override with LIVEKIT_API_KEY / LIVEKIT_API_SECRET). The server's log goes to server.log next to
# the generated config (path printed on stderr); LIVEKIT_LOG_LEVEL sets its level (default info).
#
# The server is pinned at v1.13.5: later versions depend on LiveKit's forks of pion that the Go
# module proxy refuses. The binary goes to ${XDG_CACHE_HOME:-$HOME/.cache}/voicebackend/livekit/server
# (override the directory with LIVEKIT_SERVER_DIR, or point LIVEKIT_SERVER_BIN at an existing
# v1.13.5 binary). The first build takes ~4-5 minutes on 2 cores; only the Go module proxy is used.
#
# Nothing listens on anything but 127.0.0.1: no --dev (which binds every interface and hands out
# public STUN servers), no TURN, no ICE/TCP, no mDNS, node_ip 127.0.0.1.
set -euo pipefail

VERSION=1.13.5
DIR="${LIVEKIT_SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/voicebackend/livekit}"
BIN="${LIVEKIT_SERVER_BIN:-$DIR/server}"
RUN_DIR="${LIVEKIT_RUN_DIR:-${TMPDIR:-/tmp}/voicebackend-livekit}"
API_KEY="${LIVEKIT_API_KEY:-devkey}"
API_SECRET="${LIVEKIT_API_SECRET:-secret}"

log() { echo "livekit-server.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

has_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "version $VERSION\$"; }

install_server() {
    if has_version "$BIN"; then
        echo "$BIN"
        return
    fi
    [ -n "${LIVEKIT_SERVER_BIN:-}" ] && die "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN is not livekit-server $VERSION"
    command -v go >/dev/null 2>&1 || die "go is not installed (Debian: apt-get install golang-go; Go >= 1.24 fetches its own toolchain from the module proxy)"
    mkdir -p "$DIR"
    log "building livekit-server v$VERSION into $DIR (first time: ~4-5 minutes on 2 cores)"
    local start=$SECONDS
    # go install names the binary after the package directory: cmd/server -> server.
    # GOFLAGS cleared so a caller's -mod=vendor or similar does not leak in.
    GOFLAGS= GOBIN="$DIR" go install "github.com/livekit/livekit-server/cmd/server@v$VERSION" >&2 \
        || die "go install github.com/livekit/livekit-server/cmd/server@v$VERSION failed"
    has_version "$DIR/server" || die "$DIR/server does not print version $VERSION"
    log "built in $((SECONDS - start)) s"
    echo "$DIR/server"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_server() {
    local port="${1:-7880}" rtc_start="${2:-50000}" rtc_end="${3:-50100}"
    [[ "$port" =~ ^[0-9]+$ && "$rtc_start" =~ ^[0-9]+$ && "$rtc_end" =~ ^[0-9]+$ ]] || die "usage: start [PORT] [RTC_START] [RTC_END]"
    [ "$rtc_start" -le "$rtc_end" ] || die "RTC_START $rtc_start > RTC_END $rtc_end"
    local bin
    bin="$(install_server)"
    if port_open "$port"; then
        die "127.0.0.1:$port is already in use (a server already running? try: $0 stop $port)"
    fi
    mkdir -p "$RUN_DIR"
    local cfgdir
    cfgdir="$(mktemp -d "$RUN_DIR/port-$port.XXXXXX")"
    cat >"$cfgdir/livekit.yaml" <<EOF
port: $port
bind_addresses: [127.0.0.1]
keys:
  $API_KEY: $API_SECRET
rtc:
  port_range_start: $rtc_start
  port_range_end: $rtc_end
  tcp_port: 0
  use_external_ip: false
  node_ip: 127.0.0.1
  enable_loopback_candidate: true
  ips:
    includes: [127.0.0.1/32]
  use_mdns: false
  stun_servers: [127.0.0.1:3478]
turn:
  enabled: false
logging:
  level: ${LIVEKIT_LOG_LEVEL:-info}
EOF
    # setsid: own process group, so the caller's Ctrl-C or test harness does not take it down
    # mid-test; `stop` kills it by PID.
    setsid "$bin" --config "$cfgdir/livekit.yaml" >"$cfgdir/server.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$cfgdir/pid"
    echo "$cfgdir" >"$RUN_DIR/port-$port.current"
    local i
    for i in $(seq 1 200); do   # up to 20 s
        if ! kill -0 "$pid" 2>/dev/null; then
            log "server exited during startup; log:"
            tail -n 30 "$cfgdir/server.log" >&2 || true
            exit 1
        fi
        if port_open "$port"; then
            log "livekit-server $VERSION pid $pid on ws://127.0.0.1:$port (rtc udp $rtc_start-$rtc_end, key $API_KEY), config and log in $cfgdir"
            echo "$pid"
            return
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    die "server did not answer on 127.0.0.1:$port within 20 s (log: $cfgdir/server.log)"
}

# The PID recorded by `start` for PORT (only PIDs this script started are ever signalled).
pid_for_port() {
    local cur="$RUN_DIR/port-$1.current"
    [ -f "$cur" ] || return 1
    local cfgdir
    cfgdir="$(cat "$cur")"
    [ -f "$cfgdir/pid" ] || return 1
    cat "$cfgdir/pid"
}

is_our_server() {
    # The PID is alive and still runs the server binary with one of our configs.
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--config $RUN_DIR/"
}

stop_server() {
    local arg="${1:-7880}" pid port=""
    if [ -f "$RUN_DIR/port-$arg.current" ]; then
        port="$arg"
        pid="$(pid_for_port "$arg")" || { log "no server recorded for port $arg"; return 0; }
    else
        pid="$arg"
    fi
    if ! is_our_server "$pid"; then
        log "pid $pid is not a running server started by this script; nothing to stop"
        [ -n "$port" ] && rm -f "$RUN_DIR/port-$port.current"
        return 0
    fi
    # The first SIGTERM starts a graceful shutdown that waits for participants to leave; a second
    # one forces it (livekit-server's own handling), SIGKILL is the last resort.
    kill -TERM "$pid"
    local i
    for i in $(seq 1 10); do    # 1 s for the graceful stop
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do   # 5 s for the forced stop
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    [ -n "$port" ] && rm -f "$RUN_DIR/port-$port.current"
    log "stopped pid $pid"
}

case "${1:-}" in
    install|path) install_server ;;
    start) shift; start_server "$@" ;;
    stop) shift; stop_server "$@" ;;
    status)
        pid="$(pid_for_port "${2:-7880}")" && is_our_server "$pid" && port_open "${2:-7880}" && { echo "$pid"; exit 0; }
        exit 1 ;;
    *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
