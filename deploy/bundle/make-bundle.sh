#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes the relocatable bundle of vmbackup's binaries (docs/install.md):
#
#   deploy/bundle/make-bundle.sh LAUNCHER OUT BINARY...
#
#   OUT/libexec/NAME   each binary, stripped
#   OUT/lib/           every shared library they load (ldd), and the dynamic
#                      loader itself as lib/ld-linux-x86-64.so.2
#   OUT/bin/NAME       the launcher (static): runs libexec/NAME through
#                      lib/ld-linux-x86-64.so.2 --library-path lib/
#   OUT/share/zoneinfo the time zones (used when the host has none)
#
# So the binaries built on Debian 12 run on any x86_64 Linux >= 3.2, whatever
# its glibc (a CentOS 7-based dom0 has 2.17), and in an empty chroot. OUT is
# replaced as a whole (made beside it, then renamed).
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: make-bundle.sh LAUNCHER OUT BINARY..." >&2
  exit 2
fi
launcher=$1
out=$2
shift 2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/libexec" "$tmp/lib"
trap 'rm -rf "$tmp"' EXIT

loader=
for binary in "$@"; do
  name=$(basename "$binary")
  cp -- "$binary" "$tmp/libexec/$name"
  strip --strip-unneeded "$tmp/libexec/$name" 2>/dev/null || true
  chmod 0755 "$tmp/libexec/$name"
  cp -- "$launcher" "$tmp/bin/$name"
  chmod 0755 "$tmp/bin/$name"
  # "libfoo.so.1 => /usr/lib/.../libfoo.so.1 (0x...)" and the loader's line
  # "/lib64/ld-linux-x86-64.so.2 (0x...)".
  while read -r soname arrow path _; do
    if [ "$arrow" = "=>" ] && [ -n "$path" ] && [ "${path#/}" != "$path" ]; then
      [ -e "$tmp/lib/$soname" ] || cp -L -- "$path" "$tmp/lib/$soname"
    elif [ "${soname#/}" != "$soname" ] && [ "${soname%ld-linux-x86-64.so.2}" != "$soname" ]; then
      loader=$soname
    elif [ "$arrow" = "=>" ] && [ "$path" = "not" ]; then
      echo "make-bundle: $binary needs $soname, which is not found" >&2
      exit 2
    fi
  done < <(ldd "$binary")
done
if [ -z "$loader" ]; then
  echo "make-bundle: no dynamic loader found in ldd's output" >&2
  exit 2
fi
cp -L -- "$loader" "$tmp/lib/ld-linux-x86-64.so.2"
# Time zones, for a host (or chroot) without /usr/share/zoneinfo: the
# launcher points TZDIR here then.
if [ -d /usr/share/zoneinfo ]; then
  mkdir -p "$tmp/share"
  cp -a /usr/share/zoneinfo "$tmp/share/zoneinfo"
  # Debian's zoneinfo/localtime points at the build machine's /etc/localtime.
  rm -f "$tmp/share/zoneinfo/localtime"
fi
chmod 0755 "$tmp/lib/ld-linux-x86-64.so.2"
chmod 0644 "$tmp"/lib/*.so*
chmod 0755 "$tmp/lib/ld-linux-x86-64.so.2"
trap - EXIT
rm -rf "$out"
mv -- "$tmp" "$out"
echo "make-bundle: $out: $# binaries, $(ls "$out/lib" | wc -l) libraries, $(du -sh "$out" | cut -f1)"
