#!/usr/bin/env bash
# Builds kvflash and runs the main job: `kvflash bench` on the default backend. Extra arguments go to bench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >&2
"${KVFLASH_BUILD_DIR:-build}/bin/kvflash" bench "$@"
