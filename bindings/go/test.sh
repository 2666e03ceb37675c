#!/usr/bin/env bash
# Builds libvoicebackend with the test providers and checks the Go binding: gofmt, go vet, the
# tests under the race detector and again under AddressSanitizer, the example programs on
# generated audio, and the ProcessAudio benchmark. Needs cargo and Go >= 1.22; no network (the module uses only the standard library).
#
#   bindings/go/test.sh            # from anywhere
#   VB_SKIP_CARGO=1 bindings/go/test.sh   # the library is already built
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off

step() { printf '\n==> %s\n' "$*"; }

if [[ -z "${VB_SKIP_CARGO:-}" ]]; then
  step "cargo build --features test-providers --lib (may wait for the cargo build lock)"
  (cd "$root" && cargo build --features test-providers --lib)
fi
lib="$root/target/debug/libvoicebackend.so"
[[ -f "$lib" ]] || { echo "missing $lib" >&2; exit 1; }

cd "$here"
step "go version: $(go version)"

step "gofmt"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
  echo "not gofmt-clean:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "README.md shows examples/minimal/main.go as it is"
diff <(sed -n '/^```go$/,/^```$/p' README.md | sed '1d;$d') examples/minimal/main.go ||
  { echo "README.md's Go host differs from examples/minimal/main.go" >&2; exit 1; }

step "go vet ./..."
go vet ./...

step "go test -race -count=1 ./..."
go test -race -count=1 ./...

# The cgo side (and Go's own heap) under AddressSanitizer: -asan builds the package's C with
# -fsanitize=address and checks at exit for leaked C memory (Go >= 1.25). The library is not
# instrumented, but it allocates through the same malloc. -race and -asan exclude each other.
# tests/c/lsan.supp says what LeakSanitizer is told to ignore, and why.
step "go test -asan -count=1 ./..."
LSAN_OPTIONS="suppressions=$root/tests/c/lsan.supp" go test -asan -count=1 ./...

step "examples: build, then run examples/minimal on generated speech with the test providers"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/minimal" ./examples/minimal
go build -o "$bin/speechgen" ./examples/speechgen
"$bin/speechgen" -pitch 200,250 |
  VB_STT=test-pitch-stt VB_TTS=test-tone-tts timeout 60 "$bin/minimal" 2>"$bin/events.txt"
grep -v state_changed "$bin/events.txt" | sed 's/^/    /'
for want in 'transcript_final "pitch 200 hz for' 'agent_response "You said: pitch 200 hz for' \
            'transcript_final "pitch 250 hz for' 'agent_response "You said: pitch 250 hz for' \
            'state_changed stopped'; do
  grep -qF "$want" "$bin/events.txt" || { echo "examples/minimal: no '$want' in its output" >&2; exit 1; }
done
echo "examples/minimal: both turns transcribed and answered"

step "go test -run '^\$' -bench ProcessAudio -benchtime 20000x ./backend"
go test -run '^$' -bench ProcessAudio -benchtime 20000x ./backend | tee "$bin/bench.txt"
awk '
  /^BenchmarkProcessAudio\/int16-/               { go = $3 }
  /^BenchmarkProcessAudioC\/c_loop-/             { c = $3 }
  /^BenchmarkProcessAudioC\/cgo_call-/           { cgo = $3 }
  /^BenchmarkProcessAudio\/int16_0samples-/      { go0 = $3 }
  /^BenchmarkProcessAudioC\/c_loop_0samples-/    { c0 = $3 }
  /^BenchmarkProcessAudioC\/cgo_call_0samples-/  { cgo0 = $3 }
  END {
    printf "\nTryProcessAudioInt16, 20 ms at 48 kHz: %.0f ns/op; C call %.0f ns/op (from a C loop), %.0f ns/op (one cgo call)\n", go, c, cgo
    printf "binding overhead, 0-sample calls (the C call nearly free): %.0f ns above the C call, %.0f ns above the bare cgo call (target <= 2000 ns)\n", go0 - c0, go0 - cgo0
    if (go0 - c0 > 2000) { print "over the 2 us target"; exit 1 }
  }' "$bin/bench.txt"

step "all Go binding checks passed"
