#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds examples/ against the installed package - once with
# find_package(kvflash CONFIG), once with pkg-config - and runs the programs. Also checks that the installed
# package names no build or source path, and that every installed header compiles on its own.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR C_COMPILER CXX_COMPILER WORK_DIR
set -euo pipefail
build=$1 source=$2 cc=$3 cxx=$4 work=$5
fail() { echo "install_test: $*" >&2; exit 1; }
step() { echo "install_test: $*"; }

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

libdir=$(dirname "$(find "$prefix" -name 'libkvflash.so.*.*' -print -quit)")
[ -d "$libdir" ] || fail "no libkvflash.so.MAJOR.MINOR.PATCH installed"
for f in include/kvflash/kvflash.h include/kvflash/version.h include/kvflash/attention_problem.h bin/kvflash; do
  [ -e "$prefix/$f" ] || fail "$f is not installed"
done
for f in libkvflash.so libkvflash.a cmake/kvflash/kvflashConfig.cmake cmake/kvflash/kvflashConfigVersion.cmake \
         cmake/kvflash/kvflashTargets.cmake pkgconfig/kvflash.pc; do
  [ -e "$libdir/$f" ] || fail "${libdir#$prefix/}/$f is not installed"
done
ls "$libdir"/libkvflash.so.[0-9] >/dev/null 2>&1 || fail "no SONAME link libkvflash.so.MAJOR installed"
"$prefix/bin/kvflash" --version

# An installed package that mentions the build or source tree only works on the machine that built it.
if grep -rlF -e "$(cd "$build" && pwd)" -e "$(cd "$source" && pwd)" "$libdir/cmake" "$libdir/pkgconfig"; then
  fail "the installed package refers to the build or source tree (files above)"
fi

step "every installed header compiles on its own"
for h in "$prefix"/include/kvflash/*.h; do
  echo "#include <kvflash/$(basename "$h")>" | "$cxx" -std=c++20 -Wall -Wextra -Werror -fsyntax-only \
    -I"$prefix/include" -x c++ - || fail "$h does not compile on its own (C++20)"
done
echo '#include <kvflash/kvflash.h>' | "$cc" -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only \
  -I"$prefix/include" -x c - || fail "kvflash.h is not C99"

step "examples with find_package(kvflash CONFIG)"
cmake -S "$source/examples" -B "$work/find_package" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >"$work/find_package.log" ||
  { cat "$work/find_package.log"; fail "configuring the examples failed"; }
found=$(sed -n 's/^kvflash_DIR:PATH=//p' "$work/find_package/CMakeCache.txt")
[ "$found" -ef "$libdir/cmake/kvflash" ] || fail "find_package found kvflash in '$found', not in the test prefix"
cmake --build "$work/find_package" -j 2 >>"$work/find_package.log" ||
  { cat "$work/find_package.log"; fail "building the examples failed"; }
# The CMake-built programs find the shared library through their build RPATH, with no LD_LIBRARY_PATH.
for exe in embed_c embed_c_static embed_cpp; do
  "$work/find_package/$exe" || fail "$exe (find_package) failed"
done
if readelf -d "$work/find_package/embed_c_static" | grep -q 'libkvflash'; then
  fail "embed_c_static links libkvflash dynamically"
fi

step "a C-only project with find_package (shared and static)"
cmake -S "$source/tests/install/c_only" -B "$work/c_only" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DEXAMPLES_DIR="$source/examples" >"$work/c_only.log" &&
  cmake --build "$work/c_only" -j 2 >>"$work/c_only.log" || { cat "$work/c_only.log"; fail "the C-only project failed to build"; }
"$work/c_only/embed_c_kvflash" >/dev/null || fail "embed_c (C-only, shared) failed"
"$work/c_only/embed_c_kvflash_static" >/dev/null || fail "embed_c (C-only, static) failed"

step "examples with pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion kvflash)" = "$("$prefix/bin/kvflash" --version | awk '{print $2}')" ] ||
  fail "pkg-config --modversion disagrees with kvflash --version"
[ "$(pkg-config --variable=includedir kvflash)" -ef "$prefix/include" ] || fail "pkg-config includedir is wrong"
mkdir -p "$work/pkg_config"
read -r -a cflags <<<"$(pkg-config --cflags kvflash)"
read -r -a libs <<<"$(pkg-config --libs kvflash)"
read -r -a static_libs <<<"$(pkg-config --static --libs kvflash | sed 's/-lkvflash/-Wl,-Bstatic -lkvflash -Wl,-Bdynamic/')"
unset LD_LIBRARY_PATH
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror "${cflags[@]}" "$source/examples/embed.c" "${libs[@]}" -lm \
  -o "$work/pkg_config/embed_c"
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror "${cflags[@]}" "$source/examples/embed.c" "${static_libs[@]}" -lm \
  -o "$work/pkg_config/embed_c_static"
"$cxx" -std=c++20 -Wall -Wextra -Werror "${cflags[@]}" "$source/examples/embed.cpp" "${libs[@]}" \
  -o "$work/pkg_config/embed_cpp"
# No LD_LIBRARY_PATH: the .pc file's rpath finds the shared library.
"$work/pkg_config/embed_c" || fail "embed_c (pkg-config) failed"
"$work/pkg_config/embed_c_static" || fail "embed_c_static (pkg-config --static) failed"
"$work/pkg_config/embed_cpp" || fail "embed_cpp (pkg-config) failed"
step "ok"
