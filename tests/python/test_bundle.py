#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the relocatable bundle (build/bundle, `cmake --build build --target
bundle`): each launcher runs its binary through the bundled loader and
libraries, with an empty environment, and inside an empty chroot holding
only the bundle and the CA certificates (as root; skipped otherwise).

Usage: VMB_BUNDLE_DIR=build/bundle test_bundle.py [-v]
"""
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

BUNDLE = Path(os.environ.get("VMB_BUNDLE_DIR", "build/bundle")).resolve()
BINARIES = ["vmbackup", "vmbackup-agent", "vmbackup-coordinator"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run(argv, root=None):
    if root is not None:
        argv = [shutil.which("chroot"), str(root)] + argv
    return subprocess.run(argv, env={}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120,
                          check=False)


class BundleTest(unittest.TestCase):
    def test_layout(self):
        loader = BUNDLE / "lib" / "ld-linux-x86-64.so.2"
        self.assertTrue(loader.is_file(), loader)
        for name in BINARIES:
            self.assertTrue(os.access(BUNDLE / "bin" / name, os.X_OK), name)
            self.assertTrue((BUNDLE / "libexec" / name).is_file(), name)
            # The launcher is static: it needs no loader of the host's.
            if shutil.which("file"):
                out = subprocess.run(["file", "-L", str(BUNDLE / "bin" / name)],
                                     stdout=subprocess.PIPE, text=True,
                                     check=False).stdout
                self.assertIn("statically linked", out)

    def test_every_library_is_in_the_bundle(self):
        for name in BINARIES:
            out = run([str(BUNDLE / "lib" / "ld-linux-x86-64.so.2"),
                       "--library-path", str(BUNDLE / "lib"), "--list",
                       str(BUNDLE / "libexec" / name)])
            self.assertEqual(out.returncode, 0, out.stdout)
            self.assertNotIn("not found", out.stdout)
            for line in out.stdout.splitlines():
                if "=>" in line:
                    path = line.split("=>")[1].split("(")[0].strip()
                    self.assertTrue(path.startswith(str(BUNDLE / "lib")),
                                    f"{name}: {line.strip()}")

    def test_runs_with_an_empty_environment(self):
        for name in BINARIES:
            out = run([str(BUNDLE / "bin" / name), "--version"])
            self.assertEqual(out.returncode, 0, f"{name}: {out.stdout}")
            self.assertIn("vmbackup", out.stdout)
            out = run([str(BUNDLE / "bin" / name), "--help"])
            self.assertEqual(out.returncode, 0, f"{name}: {out.stdout}")
            self.assertIn("--", out.stdout)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("chroot"),
                         "needs root for chroot")
    def test_runs_in_an_empty_chroot(self):
        with tempfile.TemporaryDirectory(prefix="bundle-chroot-") as root:
            root = Path(root)
            shutil.copytree(BUNDLE, root / "opt" / "vmbackup", symlinks=True)
            if CA_BUNDLE.is_file():
                (root / "etc" / "ssl" / "certs").mkdir(parents=True)
                shutil.copy(CA_BUNDLE, root / "etc" / "ssl" / "certs")
            # Nothing else: no shell, no libc, no /proc.
            self.assertEqual(sorted(p.name for p in root.iterdir()),
                             ["etc", "opt"] if CA_BUNDLE.is_file()
                             else ["opt"])
            for name in BINARIES:
                out = run([f"/opt/vmbackup/bin/{name}", "--version"], root)
                self.assertEqual(out.returncode, 0, f"{name}: {out.stdout}")
                self.assertIn("0.", out.stdout)
                out = run([f"/opt/vmbackup/bin/{name}", "--help"], root)
                self.assertEqual(out.returncode, 0, f"{name}: {out.stdout}")
            # A flag error is the daemon's own message and exit status 2.
            out = run(["/opt/vmbackup/bin/vmbackup-agent",
                       "--coordinator=192.0.2.1:7441", "--plaintext",
                       "--host-uuid=3c6f2d6e-1b7a-4c1e-9a52-7d3e0f4b2a11",
                       "--state-dir=/state"], root)
            self.assertEqual(out.returncode, 2, out.stdout)
            self.assertIn("--plaintext refuses --coordinator", out.stdout)


if __name__ == "__main__":
    unittest.main()
