#!/usr/bin/env bash
# Builds everything and runs the whole test suite (CTest: unit, property, CLI, C API, install, sanitizer and GPU
# tests; GPU tests report themselves skipped without a CUDA device), then the Python package's tests: it is
# pip-installed into ${KVFLASH_BUILD_DIR:-build}/venv from this checkout and checked with pytest against the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
BUILD_DIR=${KVFLASH_BUILD_DIR:-build}
JOBS=${KVFLASH_JOBS:-$(nproc)}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"

# ---- Python: pip install . (scikit-build-core + nanobind), then pytest ----
VENV=$BUILD_DIR/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "nanobind>=2.0" numpy pytest
# No build isolation and a build folder inside $BUILD_DIR: a second run rebuilds only what changed. (A user's plain
# `pip install .` builds the same way in a temporary folder.)
CMAKE_BUILD_PARALLEL_LEVEL=$JOBS "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  --no-build-isolation -Cbuild-dir="$BUILD_DIR/python" .
set +e
KVFLASH_CLI=$(cd "$BUILD_DIR" && pwd)/bin/kvflash "$VENV/bin/python" -m pytest -q tests/python
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "scripts/test.sh: pytest collected no tests (tests/python); that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
