#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs, with apt-get, every Debian package vmbackup needs to build, test and run
# its demo. Idempotent: packages already installed are skipped, and nothing is
# fetched when all are present. Runs as root (or through sudo when available).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config ccache clang libclang-rt-14-dev
  # libraries (Debian bookworm versions: gRPC 1.51, protobuf 3.21, Abseil 20220623)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libcurl4-openssl-dev libxml2-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev libzstd-dev zlib1g-dev libssl-dev
  libre2-dev libmicrohttpd-dev
  # independent peers and checkers used by the tests and the demo
  python3 curl tar xxhash qemu-utils zstd gzip openssl
  # a real SMTP server for the e-mail report's tests and the demo
  python3-aiosmtpd
  # systemd-analyze, which checks deploy/systemd's units
  systemd
  # rpmbuild, which CPack uses for the .rpm (deploy/make-packages.sh)
  rpm
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "install-deps: must run as root (or with sudo) to install: ${missing[*]}" >&2
    exit 2
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
