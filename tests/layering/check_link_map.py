#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks a program linked with vmb_agent alone (and --as-needed): its link
map loads nothing of the coordinator library or the config parser, and its
dynamic section needs no RE2 (what `ldd` would show first-hand).
Usage: check_link_map.py MAP PROGRAM."""
import re
import subprocess
import sys

FORBIDDEN_IN_MAP = [
    (re.compile(r"libvmb_coordinator\.a"), "the coordinator library"),
    (re.compile(r"backup_policy\.cc\.o|vm_selection\.cc\.o"),
     "the config parser or the VM selection"),
]
# The map must show that the agent library really was linked.
REQUIRED_IN_MAP = [re.compile(r"libvmb_agent\.a\(vm_backup_job\.cc\.o\)")]
FORBIDDEN_NEEDED = [(re.compile(r"libre2"), "RE2")]


def main():
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        text = f.read()
    problems = [f"the link map loads {what}: {m.group(0)}"
                for rx, what in FORBIDDEN_IN_MAP
                for m in [rx.search(text)] if m]
    problems += [f"the link map lacks {rx.pattern}: is this the right map?"
                 for rx in REQUIRED_IN_MAP if not rx.search(text)]
    dynamic = subprocess.run(["readelf", "-d", sys.argv[2]], check=True,
                             capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    if not needed:
        problems.append("readelf shows no NEEDED entries: is this the program?")
    problems += [f"the program needs {what}: {n}"
                 for rx, what in FORBIDDEN_NEEDED for n in needed if rx.search(n)]
    for p in problems:
        print(p)
    print(f"check_link_map: needs {' '.join(needed)}; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
