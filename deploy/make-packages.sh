#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds vmbackup's packages (docs/install.md):
#
#   deploy/make-packages.sh [BUILD_DIR [OUT_DIR]]
#
# BUILD_DIR (default build) is configured as RelWithDebInfo if it has no
# CMake cache yet (the build type every test runs; the bundle's binaries are
# stripped), then built; OUT_DIR (default BUILD_DIR/packages) receives
#   vmbackup_VERSION_amd64.deb        Debian, Ubuntu
#   vmbackup-VERSION-1.x86_64.rpm     XCP-ng, Citrix Hypervisor dom0s (rpm 4.11+)
#   vmbackup-VERSION-x86_64.tar.gz    anything else: tar -xzf FILE -C /
#   SHA256SUMS
# Needs dpkg-deb and rpmbuild (deploy/install-deps.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
out=${2:-$build/packages}
jobs=${JOBS:-2}

for tool in dpkg-deb rpmbuild cpack; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "make-packages: $tool is missing (deploy/install-deps.sh installs it)" >&2
    exit 2
  fi
done
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
if grep -Eq '^VMB_(SANITIZE:STRING=.+|FUZZ:BOOL=ON)$' "$build/CMakeCache.txt"; then
  echo "make-packages: $build is a sanitizer or fuzzing build, which has no bundle; give another BUILD_DIR" >&2
  exit 2
fi
cmake -S . -B "$build" >/dev/null
cmake --build "$build" -j"$jobs" --target bundle

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/vmbackup[_-]*.deb "$out"/vmbackup-*.rpm "$out"/vmbackup-*.tar.gz "$out/SHA256SUMS"
# CPack's own work folder, kept out of OUT_DIR.
work="$build/cpack"
rm -rf "$work"
(cd "$build" && cpack -G "DEB;RPM;TGZ" -B "$PWD/cpack" >/dev/null) || {
  echo "make-packages: cpack failed; its logs are in $work/_CPack_Packages" >&2
  exit 1
}
mv "$work"/vmbackup*.deb "$work"/vmbackup*.rpm "$work"/vmbackup*.tar.gz "$out/"
(cd "$out" && sha256sum vmbackup* > SHA256SUMS)
for f in "$out"/vmbackup*; do
  echo "make-packages: $f ($(du -h "$f" | cut -f1))"
done
