#!/usr/bin/env bash
# Builds the release library and installs it for C, C++ (and Swift/Go) hosts:
#
#   scripts/install.sh [PREFIX]        # PREFIX defaults to /usr/local
#
#   PREFIX/lib/libvoicebackend.so.VERSION (stripped; SONAME libvoicebackend.so.0), with the links
#     libvoicebackend.so.0 and libvoicebackend.so, and its debug info split off into
#     PREFIX/lib/debug/libvoicebackend.so.VERSION.debug (found by gdb through a debuglink)
#   PREFIX/lib/libvoicebackend.a
#   PREFIX/include/voicebackend.h, PREFIX/include/voicebackend.hpp
#   PREFIX/lib/pkgconfig/voicebackend.pc
#   PREFIX/lib/cmake/voicebackend/voicebackendConfig.cmake, voicebackendConfigVersion.cmake
#
# Idempotent: files (and links) already as they should be are left alone, others are replaced atomically (a running
# program that has the old library mapped keeps it). Says what it does. The shared library needs
# libespeak-ng.so.1, libopus.so.0 and OpenSSL (libssl3) at load time; static users also link
# -lespeak-ng -lopus -lssl -lcrypto (pkg-config --static says so).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-/usr/local}"
case "$prefix" in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;
esac
prefix="${prefix%/}"
[ -n "$prefix" ] || prefix=/
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'install: %s\n' "$*"; }

# The crate version: the first `version = "…"` of the [package] table of Cargo.toml.
version="$(awk '
  /^\[/ { in_package = ($0 == "[package]") }
  in_package && /^version[[:space:]]*=/ { gsub(/.*=[[:space:]]*"|".*/, ""); print; exit }
' "$repo/Cargo.toml")"
[ -n "$version" ] || { echo "install: no version in $repo/Cargo.toml" >&2; exit 1; }

say "cargo build --release --lib (in $repo)"
(cd "$repo" && cargo build --release --lib)

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in
  /*) ;;
  *) target_dir="$repo/$target_dir" ;;
esac
release="$target_dir/release"
for f in libvoicebackend.so libvoicebackend.a; do
  [ -f "$release/$f" ] || { echo "install: $release/$f was not built" >&2; exit 1; }
done

# put SOURCE DEST MODE: copies unless DEST already has the same bytes; replaces by rename.
put() {
  local src="$1" dst="$2" mode="$3"
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    chmod "$mode" "$dst"
    say "up to date  $dst"
    return
  fi
  mkdir -p "$(dirname "$dst")"
  local tmp="$dst.tmp.$$"
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dst"
  say "installed   $dst"
}

# render TEMPLATE DEST: substitutes @PREFIX@ and @VERSION@.
render() {
  local template="$1" dst="$2" tmp escaped
  escaped="$(printf '%s' "$prefix" | sed 's/[&|\\]/\\&/g')"
  tmp="$(mktemp)"
  sed -e "s|@PREFIX@|$escaped|g" -e "s|@VERSION@|$version|g" "$template" >"$tmp"
  put "$tmp" "$dst" 0644
  rm -f "$tmp"
}

# link NAME TARGET: PREFIX/lib/NAME -> TARGET, unless it already is.
link() {
  local dst="$prefix/lib/$1"
  if [ -L "$dst" ] && [ "$(readlink "$dst")" = "$2" ]; then
    say "up to date  $dst -> $2"
    return
  fi
  ln -sfn "$2" "$dst"
  say "linked      $dst -> $2"
}

say "voicebackend $version into $prefix"
# The shared library ships stripped, its debug info beside it in lib/debug (objcopy's
# debuglink lets gdb and perf find it).
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
real="libvoicebackend.so.$version"
debug="$real.debug"
objcopy --only-keep-debug "$release/libvoicebackend.so" "$staging/$debug"
objcopy --strip-debug --strip-unneeded "$release/libvoicebackend.so" "$staging/$real"
(cd "$staging" && objcopy --add-gnu-debuglink="$debug" "$real")
put "$staging/$debug" "$prefix/lib/debug/$debug" 0644
put "$staging/$real" "$prefix/lib/$real" 0755
link libvoicebackend.so.0 "$real"
link libvoicebackend.so libvoicebackend.so.0
put "$release/libvoicebackend.a" "$prefix/lib/libvoicebackend.a" 0644
put "$repo/include/voicebackend.h" "$prefix/include/voicebackend.h" 0644
put "$repo/bindings/cpp/voicebackend.hpp" "$prefix/include/voicebackend.hpp" 0644
render "$repo/bindings/pkgconfig/voicebackend.pc.in" "$prefix/lib/pkgconfig/voicebackend.pc"
render "$repo/bindings/cpp/cmake/voicebackendConfig.cmake.in" \
  "$prefix/lib/cmake/voicebackend/voicebackendConfig.cmake"
render "$repo/bindings/cpp/cmake/voicebackendConfigVersion.cmake.in" \
  "$prefix/lib/cmake/voicebackend/voicebackendConfigVersion.cmake"

# The dynamic loader finds libraries in /usr/local/lib and /usr/lib through its cache.
if [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null &&
  { [ "$prefix" = /usr/local ] || [ "$prefix" = /usr ]; }; then
  say "ldconfig"
  ldconfig
else
  say "not running ldconfig for $prefix: programs find the library through an rpath" \
    "(-Wl,-rpath,$prefix/lib) or LD_LIBRARY_PATH"
fi
say "done: pkg-config --cflags --libs voicebackend (PKG_CONFIG_PATH=$prefix/lib/pkgconfig)," \
  "or CMake find_package(voicebackend) (CMAKE_PREFIX_PATH=$prefix)"
