#!/usr/bin/env bash
# Runs a command in a fresh network namespace that has only `lo` (127.0.0.1, ::1) up, plus
# fresh PID and mount namespaces: when the command exits, every process it left behind
# (livekit-server, the agent, Chromium) is killed by the kernel. Nothing inside can reach
# any network but its own loopback. Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN).
#
#   run-in-netns.sh [--loss PCT] [--loss-all] [--netem "ARGS"] -- CMD [ARGS...]
#
#   --loss PCT    drop PCT % (e.g. 10 or 2.5) of UDP packets on lo, at random, silently on the
#                 receive path (nftables prerouting hook, so senders get no error). Loopback
#                 packets cross it once. WebRTC media/ICE/DTLS is UDP, signalling is TCP.
#   --loss-all    drop TCP (signalling, the page's HTTP) at the same rate too.
#   --netem ARGS  also run `tc qdisc add dev lo root netem ARGS` (e.g. "delay 40ms 10ms").
#                 Needs a kernel with sch_netem: the 6.18 kernel of this workplace's machines
#                 has none (CONFIG_NET_SCH_NETEM is not set), which is why --loss uses nftables.
#
# Everything a test needs must run inside, e.g.:
#   run-in-netns.sh --loss 10 -- bash -c '
#     PID=$(../../../scripts/livekit-server.sh start 7895 52000 52100); our-agent ... & node run.mjs ...'
# The exit status is the command's. With --loss, the drop counters go to stderr at the end.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
  shift
  LOSS=$1 LOSS_ALL=$2 NETEM=$3
  shift 3
  ip link set lo up
  if [ -n "$NETEM" ]; then
    # shellcheck disable=SC2086
    if ! tc qdisc add dev lo root netem $NETEM; then
      echo "run-in-netns: tc netem failed (kernel without sch_netem?)" >&2; exit 125
    fi
  fi
  if [ -n "$LOSS" ]; then
    command -v nft >/dev/null || { echo "run-in-netns: --loss needs nft (apt-get install nftables)" >&2; exit 125; }
    PER10K=$(awk -v p="$LOSS" 'BEGIN { printf "%d", p * 100 + 0.5 }')
    MATCH="meta l4proto udp"
    [ "$LOSS_ALL" = 1 ] && MATCH="meta l4proto { udp, tcp }"
    nft -f - <<NFT
table inet harness_loss {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    $MATCH counter
    $MATCH numgen random mod 10000 < $PER10K counter drop
  }
}
NFT
  fi
  export HARNESS_NETNS=1 HARNESS_LOSS="${LOSS:-0}"
  CHILD=
  forward() { [ -n "$CHILD" ] && kill -"$1" "$CHILD" 2>/dev/null; }
  trap 'forward TERM' TERM
  trap 'forward INT' INT
  set +e
  "$@" &
  CHILD=$!
  while :; do
    wait "$CHILD"; RC=$?
    kill -0 "$CHILD" 2>/dev/null || break   # wait returned because of a trapped signal
  done
  if [ -n "$LOSS" ]; then
    nft list table inet harness_loss 2>/dev/null | awk -v pct="$LOSS" '
      /counter/ { for (i = 1; i <= NF; i++) if ($i == "packets") n[++k] = $(i + 1) }
      END { if (k >= 2) printf "run-in-netns: --loss %s%%: dropped %d of %d packets (%.1f%%)\n", pct, n[2], n[1], n[1] ? 100 * n[2] / n[1] : 0 > "/dev/stderr" }'
  fi
  exit "$RC"
fi

LOSS= LOSS_ALL=0 NETEM=
while [ $# -gt 0 ]; do
  case "$1" in
    --loss) LOSS=$2; shift 2;;
    --loss-all) LOSS_ALL=1; shift;;
    --netem) NETEM=$2; shift 2;;
    --) shift; break;;
    -h|--help) sed -n '2,22p' "$0"; exit 0;;
    *) echo "run-in-netns.sh: unknown option $1 (the command goes after --)" >&2; exit 2;;
  esac
done
[ $# -gt 0 ] || { echo "usage: run-in-netns.sh [--loss PCT] [--loss-all] [--netem ARGS] -- CMD [ARGS...]" >&2; exit 2; }
if [ -n "$LOSS" ] && ! awk -v p="$LOSS" 'BEGIN { exit !(p ~ /^[0-9]+(\.[0-9]+)?$/ && p <= 100) }'; then
  echo "run-in-netns.sh: --loss takes a percentage 0-100" >&2; exit 2
fi
SELF=$(readlink -f "$0")
exec unshare --net --pid --fork --mount-proc --kill-child -- \
  bash "$SELF" --inside "$LOSS" "$LOSS_ALL" "$NETEM" "$@"
