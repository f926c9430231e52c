#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the packages deploy/make-packages.sh builds (docs/install.md):

- the .deb, the .rpm and the .tar.gz hold the same files, exactly the bundle,
  vmbackup-gen-certs, the docs, the flag files, example.cfg and the units,
  root-owned, with the modes an admin expects (pki/ 0700);
- the .deb's conffiles and the .rpm's %config files are the files in
  /etc/vmbackup; the .rpm asks nothing of the host that CentOS 7's rpm 4.11
  does not have (xz payload, SHA-256 digests, no library requirements);
- as root: the .deb installed with dpkg, and the .rpm with rpm, into
  throwaway roots that hold only a shell; the installed binaries run there
  (chroot), and the installed vmbackup backs a VM of the simulator up from
  inside it; an admin's edits and files survive reinstall, removal and purge.

The packages are not built here (about two minutes): without them the tests
are skipped, unless VMB_REQUIRE_PACKAGES=1 (tests/run.sh, after it ran
deploy/make-packages.sh) makes that a failure.

Usage: VMB_PACKAGE_DIR=build/packages VMB_BUNDLE_DIR=build/bundle \
       VMB_SOURCE_DIR=. VMB_BIN_DIR=build/bin test_packages.py [-v]
"""
import base64
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_sim_independent as sim  # noqa: E402  start_simulator()

PACKAGES = Path(os.environ.get("VMB_PACKAGE_DIR", "build/packages")).resolve()
BUNDLE = Path(os.environ.get("VMB_BUNDLE_DIR", "build/bundle")).resolve()
SOURCE = Path(os.environ.get("VMB_SOURCE_DIR", ".")).resolve()
REQUIRE = os.environ.get("VMB_REQUIRE_PACKAGES") == "1"
BINARIES = ["vmbackup", "vmbackup-agent", "vmbackup-coordinator"]
CONFFILES = {"/etc/vmbackup/" + n for n in
             ("agent.flags", "cli.flags", "coordinator.flags", "example.cfg")}
# What rpm 4.11 (CentOS 7, so every XCP-ng 8.x and Citrix Hypervisor 8.x
# dom0) knows; anything else in Requires makes it refuse the package.
RPM_411_REQUIRES = {
    "/bin/sh",
    "rpmlib(CompressedFileNames) <= 3.0.4-1",
    "rpmlib(FileDigests) <= 4.6.0-1",
    "rpmlib(PayloadFilesHavePrefix) <= 4.0-1",
    "rpmlib(PayloadIsXz) <= 5.2-1",
}
# Folders a package may list without owning them.
SHARED_DIRS = {"/", "/etc", "/opt", "/usr", "/usr/bin", "/usr/lib",
               "/usr/lib/systemd", "/usr/lib/systemd/system"}
CLI_LINK = "/usr/bin/vmbackup"


def package(pattern):
    found = sorted(PACKAGES.glob(pattern))
    if len(found) != 1:
        raise AssertionError(f"expected one {pattern} in {PACKAGES}: {found}")
    return found[0]


def run(argv, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False,
                          **kw)


def ok(argv, **kw):
    r = run(argv, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{argv} exited {r.returncode}:\n{r.stdout}")
    return r.stdout


class Entry:
    """One path in a package: its kind ('d', 'f' or 'l'), mode, owner."""

    def __init__(self, kind, mode, owner, target=None):
        self.kind, self.mode, self.owner, self.target = kind, mode, owner, target

    def __repr__(self):
        return f"{self.kind} {self.mode:o} {self.owner} {self.target or ''}"


def perms_to_mode(perms):
    mode = 0
    for i, c in enumerate(perms[1:10]):
        if c != "-":
            mode |= 1 << (8 - i)
    return mode


def deb_entries(path):
    entries = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.tar"
        with open(data, "wb") as f:
            subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)],
                           stdout=f, check=True)
        with tarfile.open(data) as tar:
            for m in tar.getmembers():
                name = "/" + m.name.lstrip("./").rstrip("/")
                kind = "d" if m.isdir() else "l" if m.issym() else "f"
                entries[name.rstrip("/") or "/"] = Entry(
                    kind, m.mode & 0o7777, f"{m.uname}/{m.gname}",
                    m.linkname if m.issym() else None)
    return entries


def tgz_entries(path):
    entries = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            name = "/" + m.name.lstrip("./").rstrip("/")
            kind = "d" if m.isdir() else "l" if m.issym() else "f"
            entries[name.rstrip("/") or "/"] = Entry(
                kind, m.mode & 0o7777, "tar", m.linkname if m.issym() else None)
    return entries


def rpm_entries(path):
    out = ok(["rpm", "-qp", "--qf",
              "[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} "
              "%{FILENAMES} %{FILELINKTOS}\n]", str(path)])
    entries = {}
    for line in out.splitlines():
        perms, owner, name, *target = line.split(" ")
        kind = {"d": "d", "l": "l", "-": "f"}[perms[0]]
        entries[name] = Entry(kind, perms_to_mode(perms), owner,
                              target[0] if kind == "l" and target else None)
    return entries


def expected_files():
    """Every file and link the packages must hold, and nothing else."""
    want = set()
    for p in BUNDLE.rglob("*"):
        if not p.is_dir() or p.is_symlink():
            want.add("/opt/vmbackup/" + str(p.relative_to(BUNDLE)))
    want.add("/opt/vmbackup/bin/vmbackup-gen-certs")
    for doc in list((SOURCE / "docs").glob("*.md")) + [SOURCE / "README.md"]:
        want.add("/opt/vmbackup/share/doc/" + doc.name)
    want |= CONFFILES
    want.add(CLI_LINK)
    for unit in (SOURCE / "deploy" / "systemd").iterdir():
        want.add("/usr/lib/systemd/system/" + unit.name)
    return want


def setUpModule():
    if not any(PACKAGES.glob("*.deb")):
        if REQUIRE:
            raise AssertionError(f"no packages in {PACKAGES}")
        raise unittest.SkipTest(
            f"no packages in {PACKAGES}: deploy/make-packages.sh builds them")


class PackageContentsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lists = {"deb": deb_entries(package("vmbackup_*_amd64.deb")),
                     "rpm": rpm_entries(package("vmbackup-*.x86_64.rpm")),
                     "tgz": tgz_entries(package("vmbackup-*-x86_64.tar.gz"))}

    def test_each_package_holds_exactly_the_expected_files(self):
        want = expected_files()
        self.assertIn("/opt/vmbackup/lib/ld-linux-x86-64.so.2", want)
        for kind, entries in self.lists.items():
            files = {p for p, e in entries.items() if e.kind != "d"}
            self.assertEqual(sorted(files - want), [], f"{kind}: extra")
            self.assertEqual(sorted(want - files), [], f"{kind}: missing")
            for path, e in entries.items():
                self.assertTrue(
                    path in SHARED_DIRS or path == CLI_LINK or
                    path.startswith(("/opt/vmbackup", "/etc/vmbackup",
                                     "/usr/lib/systemd/system/vmbackup-")),
                    f"{kind}: {path} is outside vmbackup's folders")
                # Links stay inside the package (zoneinfo's are relative).
                if e.kind == "l" and path != CLI_LINK:
                    self.assertFalse(e.target.startswith("/"),
                                     f"{kind}: {path} -> {e.target}")
            self.assertEqual(entries[CLI_LINK].kind, "l", kind)
            self.assertEqual(entries[CLI_LINK].target,
                             "/opt/vmbackup/bin/vmbackup", kind)

    def test_modes_and_owners(self):
        for kind, entries in self.lists.items():
            for name in BINARIES + ["vmbackup-gen-certs"]:
                self.assertEqual(entries[f"/opt/vmbackup/bin/{name}"].mode,
                                 0o755, f"{kind}: {name}")
            for name in BINARIES:
                self.assertEqual(entries[f"/opt/vmbackup/libexec/{name}"].mode,
                                 0o755, f"{kind}: {name}")
            self.assertEqual(
                entries["/opt/vmbackup/lib/ld-linux-x86-64.so.2"].mode, 0o755)
            self.assertEqual(entries["/etc/vmbackup/pki"].kind, "d")
            self.assertEqual(entries["/etc/vmbackup/pki"].mode, 0o700, kind)
            for conf in CONFFILES:
                self.assertEqual(entries[conf].mode, 0o644, f"{kind}: {conf}")
            for path, e in entries.items():
                if e.kind != "l":
                    self.assertFalse(e.mode & 0o6002, f"{kind}: {path} {e}")
                if kind != "tgz":
                    self.assertEqual(e.owner, "root/root", f"{kind}: {path}")

    def test_units_name_files_the_package_holds(self):
        deb = self.lists["deb"]
        for unit in (SOURCE / "deploy" / "systemd").iterdir():
            for line in unit.read_text().splitlines():
                if line.startswith("Documentation=file:"):
                    self.assertIn(line.split("file:", 1)[1], deb, unit.name)
                if line.startswith(("ExecStart=", "ExecReload=")):
                    binary = line.split("=", 1)[1].split()[0]
                    if binary.startswith("/opt/"):
                        self.assertIn(binary, deb, unit.name)

    def test_deb_control(self):
        deb = str(package("vmbackup_*_amd64.deb"))
        fields = ok(["dpkg-deb", "-f", deb])
        self.assertIn("Package: vmbackup", fields)
        self.assertIn("Architecture: amd64", fields)
        # Nothing of the host's: the bundle carries its libraries.
        self.assertNotIn("Depends:", fields)
        conffiles = ok(["dpkg-deb", "-I", deb, "conffiles"]).split()
        self.assertEqual(set(conffiles), CONFFILES)
        with tempfile.TemporaryDirectory() as tmp:
            ok(["dpkg-deb", "-e", deb, tmp])
            for script in ("postinst", "prerm", "postrm"):
                path = Path(tmp) / script
                self.assertTrue(os.access(path, os.X_OK), script)
                ok(["dash", "-n", str(path)])

    def test_rpm_is_for_dom0s(self):
        rpm = str(package("vmbackup-*.x86_64.rpm"))
        requires = set(ok(["rpm", "-qp", "--requires", rpm]).splitlines())
        self.assertLessEqual(requires, RPM_411_REQUIRES,
                             "requirements rpm 4.11 or a dom0 lacks")
        info = ok(["rpm", "-qp", "--qf",
                   "%{PAYLOADCOMPRESSOR} %{FILEDIGESTALGO} %{PREFIXES}", rpm])
        self.assertEqual(info, "xz 8 (none)")
        self.assertEqual(
            set(ok(["rpm", "-qp", "--configfiles", rpm]).split()), CONFFILES)
        scripts = ok(["rpm", "-qp", "--scripts", rpm])
        for scriptlet in ("postinstall", "preuninstall", "postuninstall"):
            self.assertIn(f"{scriptlet} scriptlet (using /bin/sh)", scripts)
        self.assertNotIn("GLIBC", ok(["rpm", "-qp", "--provides", rpm]))


def make_root(tmp):
    """A throwaway root holding only what maintainer scripts may assume of
    any system: a POSIX shell and rm (no systemd)."""
    root = Path(tmp) / "root"
    (root / "bin").mkdir(parents=True)
    for source, name in (("/bin/dash", "sh"), ("/bin/rm", "rm")):
        shutil.copy(source, root / "bin" / name)
        for line in ok(["ldd", source]).splitlines():
            lib = next((w for w in line.split() if w.startswith("/")), None)
            if lib:
                (root / lib.lstrip("/")).parent.mkdir(parents=True,
                                                      exist_ok=True)
                shutil.copy(lib, root / lib.lstrip("/"))
    return root


# A systemctl that records its arguments in /systemctl.log and says that
# vmbackup-agent.service is active; with /run/systemd/system, the
# maintainer scripts take their systemd branch.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> /systemctl.log
case "$*" in
  "is-active --quiet vmbackup-agent.service") exit 0 ;;
  is-active*) exit 3 ;;
esac
exit 0
"""


def add_fake_systemd(root):
    (root / "run/systemd/system").mkdir(parents=True)
    systemctl = root / "bin/systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o755)
    wants = root / "etc/systemd/system/timers.target.wants"
    wants.mkdir(parents=True)
    (wants / "vmbackup-run@weekend.timer").symlink_to(
        "/usr/lib/systemd/system/vmbackup-run@.timer")


def systemctl_calls(root):
    """The calls recorded since the last look."""
    log = root / "systemctl.log"
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


DISABLE_ALL = ["--no-reload disable --now vmbackup-agent.service",
               "--no-reload disable --now vmbackup-coordinator.service",
               "--no-reload disable --now vmbackup-run@weekend.timer"]


def chroot(root, argv):
    return run([shutil.which("chroot"), str(root)] + argv, env={})


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("chroot"),
                     "needs root for dpkg --root, rpm --root and chroot")
class InstallTest(unittest.TestCase):
    def assert_installed_binaries_run(self, root):
        for name in BINARIES:
            r = chroot(root, [f"/opt/vmbackup/bin/{name}", "--version"])
            self.assertEqual(r.returncode, 0, f"{name}: {r.stdout}")
            self.assertIn("vmbackup", r.stdout)
        # The daemons read the default flag files as installed.
        for daemon, flags in (("vmbackup-agent", "agent.flags"),
                              ("vmbackup-coordinator", "coordinator.flags")):
            r = chroot(root, [f"/opt/vmbackup/bin/{daemon}",
                              f"--flagfile=/etc/vmbackup/{flags}", "--version"])
            self.assertEqual(r.returncode, 0, f"{daemon}: {r.stdout}")
        # `vmbackup example` (the CLI through its link on PATH) is the
        # installed example.cfg.
        r = chroot(root, ["/usr/bin/vmbackup", "example"])
        self.assertEqual(r.stdout,
                         (root / "etc/vmbackup/example.cfg").read_text())
        # vmbackup-gen-certs runs (it needs bash and openssl: the host's).
        r = run([str(root / "opt/vmbackup/bin/vmbackup-gen-certs")])
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("usage", r.stdout.lower())

    def test_deb_installs_runs_upgrades_and_purges(self):
        deb = str(package("vmbackup_*_amd64.deb"))
        with tempfile.TemporaryDirectory(prefix="deb-root-") as tmp:
            root = make_root(tmp)
            admin = root / "var/lib/dpkg"
            for d in ("info", "updates", "triggers"):
                (admin / d).mkdir(parents=True)
            for f in ("status", "available"):
                (admin / f).touch()
            add_fake_systemd(root)
            dpkg = ["dpkg", f"--root={root}", "--log=/dev/null"]
            out = ok(dpkg + ["-i", deb])
            self.assertIn("ii  vmbackup", ok(dpkg + ["-l", "vmbackup"]))
            # systemd learns the units; nothing is enabled, started or
            # restarted, and the admin is told what still runs the old one.
            self.assertEqual(systemctl_calls(root), [
                "daemon-reload", "is-active --quiet vmbackup-agent.service",
                "is-active --quiet vmbackup-coordinator.service"])
            self.assertIn("vmbackup: vmbackup-agent.service still runs the "
                          "old version", out)
            self.assertNotIn("coordinator.service still runs", out)
            self.assert_installed_binaries_run(root)
            self.assertEqual((root / "etc/vmbackup/pki").stat().st_mode & 0o777,
                             0o700)
            backup_a_vm_inside(self, root)

            # The admin's edits and files survive a reinstall and removal.
            flags = root / "etc/vmbackup/agent.flags"
            flags.write_text(flags.read_text() + "# edited by the admin\n")
            (root / "etc/vmbackup/pki/ca.crt").write_text("admin's\n")
            (root / "var/lib/vmbackup-agent").mkdir(parents=True)
            ok(dpkg + ["-i", deb])
            self.assertIn("# edited by the admin", flags.read_text())
            # An upgrade disables nothing.
            self.assertFalse([c for c in systemctl_calls(root)
                              if "disable" in c])
            ok(dpkg + ["-r", "vmbackup"])
            # A removal stops and disables the daemons and the run timers.
            self.assertEqual(systemctl_calls(root),
                             DISABLE_ALL + ["daemon-reload"])
            self.assertFalse((root / "opt/vmbackup").exists())
            self.assertFalse(
                (root / "usr/lib/systemd/system/vmbackup-agent.service").exists())
            self.assertIn("# edited by the admin", flags.read_text())
            self.assertTrue((root / "var/lib/vmbackup-agent").is_dir())
            # A purge takes the conffiles and the daemons' state, never the
            # admin's certificates.
            ok(dpkg + ["--purge", "vmbackup"])
            self.assertFalse(flags.exists())
            self.assertFalse((root / "var/lib/vmbackup-agent").exists())
            self.assertEqual((root / "etc/vmbackup/pki/ca.crt").read_text(),
                             "admin's\n")

    def test_rpm_installs_verifies_and_erases(self):
        rpm_file = str(package("vmbackup-*.x86_64.rpm"))
        with tempfile.TemporaryDirectory(prefix="rpm-root-") as tmp:
            root = make_root(tmp)
            rpm = ["rpm", "--root", str(root)]
            ok(rpm + ["--initdb"])
            # --nodeps: the throwaway root's rpm database has no package
            # providing /bin/sh, though the file is there.
            add_fake_systemd(root)
            ok(rpm + ["-i", "--nodeps", rpm_file])
            self.assertIn("daemon-reload", systemctl_calls(root))
            # An upgrade (here the same version again) disables nothing.
            ok(rpm + ["-U", "--replacepkgs", "--nodeps", rpm_file])
            self.assertFalse([c for c in systemctl_calls(root)
                              if "disable" in c])
            self.assertEqual(ok(rpm + ["-q", "vmbackup"]).strip(),
                             rpm_file.rsplit("/", 1)[1][:-len(".rpm")])
            ok(rpm + ["-V", "--nodeps", "vmbackup"])
            self.assert_installed_binaries_run(root)
            flags = root / "etc/vmbackup/coordinator.flags"
            flags.write_text(flags.read_text() + "# edited by the admin\n")
            ok(rpm + ["-e", "--nodeps", "vmbackup"])
            self.assertFalse((root / "opt/vmbackup").exists())
            self.assertEqual(systemctl_calls(root),
                             DISABLE_ALL + ["daemon-reload"])
            # %config(noreplace): an edited file is kept as .rpmsave.
            self.assertIn("# edited by the admin",
                          (root / "etc/vmbackup/coordinator.flags.rpmsave")
                          .read_text())

    def test_tgz_unpacks_into_a_working_tree(self):
        tgz = package("vmbackup-*-x86_64.tar.gz")
        with tempfile.TemporaryDirectory(prefix="tgz-root-") as tmp:
            root = Path(tmp) / "root"
            root.mkdir()
            ok(["tar", "-xzf", str(tgz), "-C", str(root)])
            self.assert_installed_binaries_run(root)


def backup_a_vm_inside(test, root):
    """The installed standalone vmbackup, chrooted into root, backs a VM of
    the simulator (on the host's loopback) up to a folder inside root."""
    with tempfile.TemporaryDirectory(prefix="sim-") as simdir:
        proc, ready, log_path, log = sim.start_simulator(simdir)
        try:
            etc = root / "etc/vmbackup"
            pw = etc / "VmBackup.pass"
            pw.write_text(base64.b64encode(ready["password"].encode()).decode())
            pw.chmod(0o600)
            (root / "backups").mkdir()
            (etc / "test.cfg").write_text(
                "backup_dir=/backups\nstatus_log=/backups/status.log\n"
                "max_backups=2\nvm-export=DEV-RH6\n")
            r = chroot(root, ["/opt/vmbackup/bin/vmbackup", "--xapi-url",
                              ready["master"], "/etc/vmbackup/VmBackup.pass",
                              "/etc/vmbackup/test.cfg"])
            test.assertEqual(r.returncode, 0, r.stdout + sim.log_tail(log_path))
            backups = list((root / "backups/DEV-RH6").glob("backup-*"))
            test.assertEqual(len(backups), 1, backups)
            test.assertTrue((backups[0] / "success").exists())
            test.assertTrue(list(backups[0].glob("*.xva")))
            test.assertIn("DEV-RH6", (root / "backups/status.log").read_text())
        finally:
            sim.stop_simulator(proc)
            log.close()


if __name__ == "__main__":
    unittest.main()
