#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds everything and runs every test.
# Exits non-zero on any failure. Environment:
#   BUILD_DIR   build directory (default: build)
#   JOBS        parallel build jobs (default: 2)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

./deploy/install-deps.sh

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}"
cmake --build "$BUILD_DIR" -j"$JOBS"
echo "run.sh: build took $(( $(date +%s) - start ))s"

start=$(date +%s)
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$JOBS" --timeout 600
echo "run.sh: tests took $(( $(date +%s) - start ))s"
