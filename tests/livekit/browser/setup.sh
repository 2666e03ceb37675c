#!/usr/bin/env bash
# Idempotent setup for the LiveKit browser harness:
#   - Debian's chromium (/usr/bin/chromium) if missing; nftables (run-in-netns.sh --loss) if missing;
#     espeak-ng (selftest.sh's speech) if missing
#   - npm ci from the committed package-lock.json (node_modules/ is not committed)
#   - bundles src/harness.js + livekit-client into dist/harness.js (esbuild)
# Never downloads a browser of its own (no `playwright install`).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

say() { echo "setup.sh: $*"; }

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v nft >/dev/null || need_apt+=(nftables)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
else
  say "chromium, nftables, espeak-ng already installed"
fi
say "$(/usr/bin/chromium --version 2>/dev/null | head -1)"

command -v node >/dev/null || { say "node is missing (Node.js 20 is expected on this machine)"; exit 1; }
# npm ci only when node_modules was not installed from this exact package-lock.json
LOCK_SUM=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.harness-lock-sha256 2>/dev/null)" != "$LOCK_SUM" ]; then
  say "npm ci (package-lock.json)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  echo "$LOCK_SUM" > node_modules/.harness-lock-sha256
else
  say "node_modules up to date with package-lock.json"
fi
say "versions: $(node -e 'for (const p of ["livekit-client","livekit-server-sdk","playwright-core","esbuild"]) process.stdout.write(p+"@"+require("./node_modules/"+p+"/package.json").version+" ")')"

if [ ! -f dist/harness.js ] || [ -n "$(find src build.mjs package-lock.json -newer dist/harness.js 2>/dev/null | head -1)" ]; then
  node build.mjs | sed 's/^/setup.sh: /'
else
  say "dist/harness.js up to date"
fi
say "ready"
