#!/usr/bin/env bash
# Builds the LiveKit test peer (lk-peer) and prints the binary's path (alone, on stdout).
# Idempotent and cheap when nothing changed (Go's build cache); safe to call before every test run.
#
#   tests/livekit/peer/build.sh            -> .../target/livekit-peer/lk-peer
#   LK_PEER_OUT_DIR=/some/dir build.sh     -> /some/dir/lk-peer
#
# The peer uses LiveKit's Go SDK github.com/livekit/server-sdk-go/v2 pinned at v2.19.0 (v2.20.0
# needs modules the Go module proxy refuses). v2.19.0 builds its pion SettingEngine privately, and
# pion gathers no loopback ICE candidates by default, so a peer on 127.0.0.1 could never connect to
# a loopback-only livekit-server. server-sdk-go-v2.19.0-settingengine.patch (next to this script)
# adds one exported hook, lksdk.ConfigureSettingEngine, called just before the SDK builds each peer
# connection. The patch is applied to a COPY of the checksum-verified v2.19.0 module (from the Go
# module proxy, via `go mod download`) in the build dir, and the build uses a copy of go.mod with a
# `replace` pointing at it (`go build -modfile`): the committed go.mod/go.sum and the module cache
# stay untouched. (`go build -overlay` would be lighter but Go refuses overlays in GOMODCACHE.)
#
# Needs: go (>= 1.24; the toolchain go.mod asks for is fetched from the module proxy if older),
# gcc, pkg-config, libopus-dev (cgo Opus via gopkg.in/hraban/opus.v2) and patch. Missing Debian
# packages are installed with apt-get when running as root (or with sudo).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
OUT_DIR="${LK_PEER_OUT_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/livekit-peer}"
WORK="$OUT_DIR/build"
SDK=github.com/livekit/server-sdk-go/v2
PATCH="$HERE/server-sdk-go-v2.19.0-settingengine.patch"

log() { echo "lk-peer build: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Debian packages --------------------------------------------------------------------------
need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v patch >/dev/null 2>&1 || need+=(patch)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2 \
        || die "apt-get install ${need[*]} failed"
fi
command -v go >/dev/null 2>&1 || die "go is not installed (Debian: apt-get install golang-go)"

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"   # absolute: the replace directive and -o need it after the cd
WORK="$OUT_DIR/build"
cd "$HERE"
# One build at a time (test binaries may call this concurrently).
exec 9>"$OUT_DIR/.build.lock"
flock 9
export GOFLAGS=-mod=readonly   # go.mod/go.sum are the pins; never rewrite them here

# --- a patched copy of the SDK ------------------------------------------------------------------
version="$(go list -m -f '{{.Version}}' "$SDK")"
[ "$version" = v2.19.0 ] || die "go.mod pins $SDK $version; the patch is for v2.19.0"
sdk_json="$(go mod download -json "$SDK@$version")" || die "could not download $SDK@$version"
sdk_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$sdk_json")"
sdk_sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$sdk_json")"
[ -n "$sdk_dir" ] && [ -f "$sdk_dir/transport.go" ] || die "could not download $SDK@$version"

# The copy is redone only when the SDK's checksum or the patch changed.
stamp="$sdk_sum $(sha256sum "$PATCH" | cut -d' ' -f1)"
mkdir -p "$WORK"
if [ "$(cat "$WORK/sdk.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$WORK/sdk/go.mod" ]; then
    rm -rf "$WORK/sdk" "$WORK/sdk.stamp"
    cp -r "$sdk_dir" "$WORK/sdk.tmp"
    chmod -R u+w "$WORK/sdk.tmp"
    patch --quiet --forward --no-backup-if-mismatch -d "$WORK/sdk.tmp" -p1 <"$PATCH" >&2 \
        || { rm -rf "$WORK/sdk.tmp"; die "$PATCH does not apply to $SDK@$version"; }
    mv "$WORK/sdk.tmp" "$WORK/sdk"
    echo "$stamp" >"$WORK/sdk.stamp"
    log "patched copy of $SDK@$version in $WORK/sdk"
fi

# The committed go.mod/go.sum stay as they are (plain v2.19.0 from the proxy); the build uses a
# copy of them with one replace directive (go build -modfile).
cp go.mod "$WORK/go.tmp.mod"
cp go.sum "$WORK/go.sum"
go mod edit -modfile="$WORK/go.tmp.mod" -replace "$SDK@$version=$WORK/sdk"
cmp -s "$WORK/go.tmp.mod" "$WORK/go.mod" 2>/dev/null && rm -f "$WORK/go.tmp.mod" || mv "$WORK/go.tmp.mod" "$WORK/go.mod"

# --- build ----------------------------------------------------------------------------------------
# nolibopusfile: the Opus binding's Ogg-file reader (libopusfile) is not used.
start=$SECONDS
CGO_ENABLED=1 go build -modfile="$WORK/go.mod" -tags nolibopusfile -trimpath \
    -o "$OUT_DIR/lk-peer.tmp" . >&2 || die "go build failed"
if cmp -s "$OUT_DIR/lk-peer.tmp" "$OUT_DIR/lk-peer" 2>/dev/null; then
    rm -f "$OUT_DIR/lk-peer.tmp"
else
    mv "$OUT_DIR/lk-peer.tmp" "$OUT_DIR/lk-peer"
fi
[ $((SECONDS - start)) -lt 5 ] || log "built in $((SECONDS - start)) s"
echo "$OUT_DIR/lk-peer"
