#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the files deploy/ installs: the systemd units pass
`systemd-analyze verify` (in a throwaway root holding the bundle at
/opt/vmbackup and systemd's own units), and the default flag files are read
without an error by the binaries they are for.

Usage: VMB_BUNDLE_DIR=build/bundle test_deploy_files.py [-v]
"""
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(os.environ.get("VMB_BUNDLE_DIR", "build/bundle")).resolve()
UNITS = sorted((REPO_ROOT / "deploy" / "systemd").iterdir())
ETC = REPO_ROOT / "deploy" / "etc"


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120, check=False)


class SystemdUnitsTest(unittest.TestCase):
    @unittest.skipUnless(shutil.which("systemd-analyze"),
                         "needs systemd-analyze (Debian: systemd)")
    def test_units_verify(self):
        self.assertEqual(
            sorted(u.name for u in UNITS),
            ["vmbackup-agent.service", "vmbackup-coordinator.service",
             "vmbackup-run@.service", "vmbackup-run@.timer"])
        with tempfile.TemporaryDirectory(prefix="units-") as root:
            root = Path(root)
            shutil.copytree(BUNDLE, root / "opt" / "vmbackup", symlinks=True)
            shutil.copytree("/usr/lib/systemd/system",
                            root / "usr" / "lib" / "systemd" / "system",
                            symlinks=True)
            (root / "bin").mkdir()
            shutil.copy("/bin/kill", root / "bin" / "kill")
            system = root / "etc" / "systemd" / "system"
            system.mkdir(parents=True)
            for unit in UNITS:
                shutil.copy(unit, system / unit.name)
            names = []
            for unit in UNITS:
                name = unit.name.replace("@.", "@weekend.")
                names.append(f"/etc/systemd/system/{name}")
                if name != unit.name:
                    shutil.copy(unit, system / name)
            out = run(["systemd-analyze", "verify", f"--root={root}"] + names)
            self.assertEqual(out.returncode, 0, out.stdout)
            # Unknown keys and other complaints are warnings, exit 0.
            self.assertEqual(out.stdout.strip(), "", out.stdout)

    def test_units_work_on_a_dom0s_systemd_219(self):
        """A CentOS 7-based dom0 runs systemd 219. It ignores, with a log
        line, the directives newer than it: those may only take privileges
        away (or be what the daemons also do themselves), never be what
        makes a unit work."""
        known_to_219 = {
            "Description", "Documentation", "After", "Wants", "Type",
            "ExecStart", "ExecReload", "Restart", "RestartSec",
            "RestartPreventExitStatus", "TimeoutStopSec", "KillMode",
            "NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome",
            "ProtectSystem", "RestrictAddressFamilies",
            "CapabilityBoundingSet", "SystemCallArchitectures", "UMask",
            "WantedBy", "Environment", "SuccessExitStatus", "OnCalendar",
            "Persistent"}
        # Newer, and safe to lose: hardening, or a folder the daemon makes
        # itself (mode 0700) when missing.
        ignorable = {
            "StateDirectory": "235", "StateDirectoryMode": "235",
            "ProtectKernelTunables": "232", "ProtectKernelModules": "232",
            "ProtectControlGroups": "232", "RestrictSUIDSGID": "242",
            "LockPersonality": "235", "RestrictRealtime": "231",
            "RandomizedDelaySec": "229"}
        for unit in UNITS:
            for line in unit.read_text().splitlines():
                if not line or line[0] in "#[" or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                self.assertTrue(key in known_to_219 or key in ignorable,
                                f"{unit.name}: {key}= is unknown to systemd "
                                "219 and not known to be safe to ignore")
                if key == "ProtectSystem":
                    # "strict" (232) reads as invalid on 219 and is ignored.
                    self.assertIn(value, ("yes", "full", "strict"))

    def test_no_secret_on_a_command_line(self):
        for unit in UNITS:
            for line in unit.read_text().splitlines():
                if line.startswith("ExecStart="):
                    self.assertNotIn("password=", line.lower(), unit.name)
                    self.assertRegex(line, r"--flagfile=|vmbackup run ",
                                     unit.name)


class FlagFilesTest(unittest.TestCase):
    def test_daemons_read_their_flag_files(self):
        for binary, flags in (("vmbackup-agent", "agent.flags"),
                              ("vmbackup-coordinator", "coordinator.flags")):
            out = run([str(BUNDLE / "bin" / binary),
                       f"--flagfile={ETC / flags}", "--version"])
            self.assertEqual(out.returncode, 0, f"{flags}: {out.stdout}")

    def test_the_cli_reads_its_flag_file(self):
        out = run([str(BUNDLE / "bin" / "vmbackup"), "status",
                   f"--flagfile={ETC / 'cli.flags'}", "--help"])
        self.assertEqual(out.returncode, 0, out.stdout)

    def test_a_flag_file_with_a_typo_is_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".flags") as f:
            f.write((ETC / "agent.flags").read_text() + "--max-jobz=3\n")
            f.flush()
            out = run([str(BUNDLE / "bin" / "vmbackup-agent"),
                       f"--flagfile={f.name}", "--version"])
            self.assertEqual(out.returncode, 2, out.stdout)
            self.assertIn("max", out.stdout)


if __name__ == "__main__":
    unittest.main()
