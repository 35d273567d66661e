#!/usr/bin/env bash
# Builds everything and runs the whole test suite (CTest: unit, property, CLI, sanitizer and GPU tests;
# GPU tests report themselves skipped without a CUDA device).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
BUILD_DIR=${KVFLASH_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${KVFLASH_JOBS:-$(nproc)}"
