#!/usr/bin/env bash
# Checks the shared library's ABI surface: its SONAME carries the major version, and every symbol it exports is
# the C API (kvflash_*) or the C++ namespace (demangles to kvflash::..., or to the vtable/typeinfo of a kvflash::
# class). Usage: check_exports.sh LIBRARY MAJOR_VERSION
set -euo pipefail
lib=$1
major=$2
fail() { echo "check_exports: $*" >&2; exit 1; }

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "libkvflash.so.$major" ] || fail "SONAME is '$soname', expected libkvflash.so.$major"

symbols=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//')
[ -n "$symbols" ] || fail "no exported symbols in $lib"
bad=0
c_count=0
cxx_count=0
while IFS=$'\t' read -r mangled demangled; do
  if [[ "$mangled" == kvflash_* ]]; then
    c_count=$((c_count + 1))
  elif [[ "$demangled" =~ ^((vtable|VTT|typeinfo|typeinfo\ name)\ for\ )?kvflash:: ]]; then
    cxx_count=$((cxx_count + 1))
  else
    echo "check_exports: exported symbol outside kvflash_* / kvflash:: : $mangled ($demangled)" >&2
    bad=1
  fi
done < <(paste <(echo "$symbols") <(echo "$symbols" | c++filt))
[ "$bad" = 0 ] || fail "foreign symbols are exported (see above)"

# The C calls must be exported unmangled (extern "C"), and the C++ API must be reachable too.
for sym in kvflash_version kvflash_last_error kvflash_type_from_name kvflash_row_bytes kvflash_quantize_row \
           kvflash_dequantize_row kvflash_problem_create kvflash_attend kvflash_plan_route kvflash_cache_create \
           kvflash_memory_report_create kvflash_plan_workspace; do
  grep -qx "$sym" <<<"$symbols" || fail "$sym is not exported"
done
grep -q '^_ZN7kvflash12quantize_row' <<<"$symbols" || fail "kvflash::quantize_row is not exported"
echo "check_exports: $soname exports $c_count C and $cxx_count C++ symbols, all kvflash_* / kvflash::"
