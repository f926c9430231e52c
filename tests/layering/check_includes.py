#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks that every project include points down the layers (DESIGN §2).

    base <- xapi <- backup <- {agent, coordinator}
    base <- rpc <- {agent, coordinator}

A file may include headers of its own layer and of the layers below it,
never above, and agent/ and coordinator/ never include each other (only the
vmbackup binary's main wires both). Usage: check_includes.py SOURCE_DIR.
Exit 0 when clean; else prints every offending line and exits 1.
"""
import os
import re
import sys

# Layer of a path, and which layers it may include.
ALLOWED = {
    "common/base": {"common/base"},
    "common/xapi": {"common/base", "common/xapi", "proto"},
    "common/backup": {"common/base", "common/xapi", "common/backup", "proto"},
    "common/rpc": {"common/base", "common/rpc"},
    "agent": {"common/base", "common/xapi", "common/backup", "common/rpc",
              "proto", "agent"},
    "coordinator": {"common/base", "common/xapi", "common/backup",
                    "common/rpc", "proto", "coordinator"},
}
# Mains that wire the two daemon libraries together.
EXCEPTIONS = {"coordinator/vmbackup_main.cc": {"agent"}}
# Include paths are repository-relative; others are third-party headers.
PROJECT_TOPS = {"common", "agent", "coordinator", "proto", "tests"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if path == layer or path.startswith(layer + "/"):
            return layer
    return None


def main():
    root = sys.argv[1]
    problems = []
    checked = 0
    for top in ("common", "agent", "coordinator"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                layer = layer_of(path)
                if layer is None:
                    problems.append(f"{path}: not in any layer folder "
                                    f"(common/base, common/xapi, common/backup, common/rpc)")
                    continue
                allowed = ALLOWED[layer] | EXCEPTIONS.get(path, set())
                checked += 1
                with open(os.path.join(root, path), encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        top = m.group(1).split("/")[0]
                        if top not in PROJECT_TOPS:
                            continue  # a third-party header
                        target = layer_of(m.group(1)) or top
                        if target not in allowed:
                            problems.append(f"{path}:{n}: includes {m.group(1)} "
                                            f"({layer} may include only "
                                            f"{', '.join(sorted(allowed))})")
    for p in problems:
        print(p)
    print(f"check_includes: {checked} files, {len(problems)} problems")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
