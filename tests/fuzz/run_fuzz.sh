#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a
# bounded time. Any crash, leak, timeout or sanitizer report fails the script;
# the reproducer is left in the fuzz build directory.
#   FUZZ_SECONDS   seconds per target (default 60)
#   BUILD_DIR      build directory (default build-fuzz)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
BUILD_DIR=${BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

./deploy/install-deps.sh >/dev/null
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVMB_FUZZ=ON -DVMB_SANITIZE=address,undefined "${launcher[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j"${JOBS:-2}" --target xmlrpc_fuzz policy_fuzz export_verifier_fuzz 2>&1 | tail -1

for target in xmlrpc policy export_verifier; do
  corpus="$BUILD_DIR/fuzz/corpus-$target"
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/$target/* "$corpus/" 2>/dev/null || true
  if [ "$target" = xmlrpc ]; then
    cp -n tests/testdata/real-xapi/xs620-rpc/*.xml "$corpus/" 2>/dev/null || true
  fi
  echo "run_fuzz: $target for ${FUZZ_SECONDS}s"
  log="$BUILD_DIR/fuzz/$target.log"
  if ! (cd "$BUILD_DIR/fuzz" && ./${target}_fuzz -max_total_time="$FUZZ_SECONDS" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "corpus-$target") >"$log" 2>&1; then
    cat "$log"
    echo "run_fuzz: $target FAILED; reproducer in $BUILD_DIR/fuzz" >&2
    exit 1
  fi
  grep -E '^(Done|stat::)' "$log"
done
