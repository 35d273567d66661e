#!/usr/bin/env bash
# Installs the Debian packages kvflash builds and tests with, when they are missing (fresh Debian 12).
set -euo pipefail
need=()
# clang + libclang-rt-14-dev: the GGUF fuzz target (libFuzzer); the build skips it without them.
# pkg-config, python3-dev: the install test (pkg-config builds) and the Python package (Python.h).
for pkg in cmake g++ make libgtest-dev pkg-config python3 python3-dev python3-venv python3-pip clang libclang-rt-14-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "kvflash: installing Debian packages: ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
