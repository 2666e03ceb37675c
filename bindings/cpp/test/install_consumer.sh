#!/usr/bin/env bash
# Installs voicebackend with scripts/install.sh into a temporary prefix (never /usr/local) and
# builds and runs a tiny consumer (consumer/) three ways: pkg-config with the shared library,
# pkg-config --static with libvoicebackend.a, and CMake find_package(voicebackend); then builds
# bindings/cpp itself in find_package mode.
#
#   bindings/cpp/test/install_consumer.sh [WORK_DIR]
# WORK_DIR (kept afterwards) holds the prefix and the builds; default: a fresh temporary
# directory, removed when the check passed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
if [ $# -gt 0 ]; then
  work="$1"
  keep=1
  rm -rf "$work/prefix" "$work"/consumer-* "$work/bindings-cpp"
  mkdir -p "$work"
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/voicebackend-install.XXXXXX")"
  keep=0
fi
work="$(cd "$work" && pwd)"
prefix="$work/prefix"
fail() { echo "install_consumer: FAILED: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

step "scripts/install.sh $prefix"
"$repo/scripts/install.sh" "$prefix"
for f in lib/libvoicebackend.so lib/libvoicebackend.so.0 lib/libvoicebackend.a include/voicebackend.h \
  include/voicebackend.hpp lib/pkgconfig/voicebackend.pc \
  lib/cmake/voicebackend/voicebackendConfig.cmake \
  lib/cmake/voicebackend/voicebackendConfigVersion.cmake; do
  [ -f "$prefix/$f" ] || fail "$prefix/$f was not installed"
done

step "scripts/install.sh $prefix again (idempotent: everything up to date)"
again="$("$repo/scripts/install.sh" "$prefix")"
echo "$again" | grep '^install: ' | grep -v '^install: cargo'
if echo "$again" | grep -q '^install: installed'; then fail "a second install changed files"; fi
[ "$(echo "$again" | grep -c '^install: up to date')" = 10 ] ||
  fail "expected 8 files and 2 links up to date"

version="$(awk '/^\[/{p=($0=="[package]")} p&&/^version/{gsub(/.*= *"|".*/,"");print;exit}' \
  "$repo/Cargo.toml")"

step "a system library: SONAME, links, stripped, debug info split off"
real="$prefix/lib/libvoicebackend.so.$version"
readelf -d "$real" | grep -q 'Library soname: \[libvoicebackend.so.0\]' || fail "SONAME"
[ "$(readlink "$prefix/lib/libvoicebackend.so.0")" = "libvoicebackend.so.$version" ] || fail "the .so.0 link"
[ "$(readlink "$prefix/lib/libvoicebackend.so")" = "libvoicebackend.so.0" ] || fail "the .so link"
if readelf -S "$real" | grep -q '\.debug_'; then fail "the installed library is not stripped"; fi
readelf -S "$prefix/lib/debug/libvoicebackend.so.$version.debug" | grep -q '\.debug_line' ||
  fail "the split debug info has no line tables"
readelf -x .gnu_debuglink "$real" | grep -q 'libvoicebackend' || fail "no debuglink"
echo "SONAME libvoicebackend.so.0, stripped ($(stat -c %s "$real") bytes), debug info split off"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

step "pkg-config"
pkg-config --modversion voicebackend
[ "$(pkg-config --modversion voicebackend)" = "$version" ] || fail "pkg-config version != $version"
pkg-config --cflags --libs voicebackend
pkg-config --static --libs voicebackend
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror -pedantic "$here/consumer/main.cpp" -o "$work/consumer-pc" \
  $(pkg-config --cflags --libs voicebackend) -Wl,-rpath,"$prefix/lib"
"$work/consumer-pc" | tee "$work/out-pc"
grep -qx "voicebackend $version (ABI 1)" "$work/out-pc" || fail "pkg-config consumer output"

step "pkg-config --static (libvoicebackend.a + Libs.private)"
# -Bstatic picks libvoicebackend.a over the .so in the same directory; Libs.private follows.
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror -pedantic "$here/consumer/main.cpp" -o "$work/consumer-static" \
  $(pkg-config --cflags voicebackend) \
  $(pkg-config --static --libs voicebackend | sed 's/-lvoicebackend/-Wl,-Bstatic -lvoicebackend -Wl,-Bdynamic/')
if readelf -d "$work/consumer-static" | grep -q 'libvoicebackend'; then
  fail "the static consumer still needs libvoicebackend.so"
fi
"$work/consumer-static" | tee "$work/out-static"
grep -qx "voicebackend $version (ABI 1)" "$work/out-static" || fail "static consumer output"

step "CMake find_package(voicebackend 0.1)"
cmake -S "$here/consumer" -B "$work/consumer-cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >/dev/null
cmake --build "$work/consumer-cmake"
"$work/consumer-cmake/consumer" | tee "$work/out-cmake"
grep -qx "voicebackend $version (ABI 1)" "$work/out-cmake" || fail "CMake consumer output"
readelf -d "$work/consumer-cmake/consumer" | grep -q 'NEEDED.*\[libvoicebackend.so.0\]' ||
  fail "the CMake consumer does not record libvoicebackend.so.0 (the SONAME)"

step "bindings/cpp itself against the installed package (find_package mode)"
cmake -S "$here/.." -B "$work/bindings-cpp" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON | grep 'voicebackend:'
cmake --build "$work/bindings-cpp" >/dev/null
# The release library has no test providers: only the cases that need none.
"$work/bindings-cpp/voicebackend_cpp_test" Library.
"$work/bindings-cpp/voicebackend_cpp_test" Errors.UnknownProvider

step "CMake find_package refuses an incompatible version"
mkdir -p "$work/consumer-v9"
sed 's/find_package(voicebackend 0.1 REQUIRED)/find_package(voicebackend 9.0 REQUIRED)/' \
  "$here/consumer/CMakeLists.txt" >"$work/consumer-v9/CMakeLists.txt"
cp "$here/consumer/main.cpp" "$work/consumer-v9/"
if cmake -S "$work/consumer-v9" -B "$work/consumer-v9/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
  fail "find_package(voicebackend 9.0) accepted version $version"
fi
echo "find_package(voicebackend 9.0) refused, as it should"

[ "$keep" = 1 ] || rm -rf "$work"
printf '\ninstall_consumer: passed (pkg-config, pkg-config --static, CMake find_package)\n'
