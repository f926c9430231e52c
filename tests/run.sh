#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds everything and runs every test:
#   1. GCC, RelWithDebInfo (build/): the .deb, .rpm and .tar.gz
#      (deploy/make-packages.sh into build/packages), then every test,
#      including the Python independent-client and package tests and the
#      streaming-RSS test;
#   2. clang with AddressSanitizer + UndefinedBehaviorSanitizer, -Wthread-safety
#      and fuzzer instrumentation (build-asan/): every test but the
#      performance ones, then each libFuzzer target for FUZZ_SECONDS.
# Exits non-zero on any failure. Environment:
#   JOBS=N           parallel build jobs (default 2)
#   FUZZ_SECONDS=N   seconds per fuzz target (default 30; 0 skips fuzzing)
#   VMB_FAST=1       stage 1 only
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
t0=$(date +%s)

./deploy/install-deps.sh

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

stage() { echo; echo "== run.sh: $* ($(( $(date +%s) - t0 ))s)"; }

stage "stage 1: GCC build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build build -j"$JOBS"
stage "stage 1: packages (deploy/make-packages.sh)"
./deploy/make-packages.sh build build/packages
stage "stage 1: tests"
# python_packages checks the packages just built, and fails without them.
VMB_REQUIRE_PACKAGES=1 ctest --test-dir build --output-on-failure -j"$JOBS" --timeout 900

if [ "${VMB_FAST:-0}" != 1 ]; then
  stage "stage 2: clang + ASan/UBSan build"
  CC=clang CXX=clang++ cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVMB_SANITIZE=address,undefined -DVMB_FUZZ=ON "${launcher[@]}" >/dev/null
  cmake --build build-asan -j"$JOBS"
  stage "stage 2: tests under sanitizers"
  ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 900 -LE perf
  if [ "$FUZZ_SECONDS" != 0 ]; then
    stage "stage 2: fuzzing (${FUZZ_SECONDS}s per target)"
    BUILD_DIR=build-asan FUZZ_SECONDS="$FUZZ_SECONDS" ./tests/fuzz/run_fuzz.sh
  fi
fi

stage "all passed"
