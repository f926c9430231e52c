#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks deploy/gen-certs.sh with the openssl command, which shares no code
with the project: what it makes, what a second run keeps and adds, and the
arguments it refuses.

Run:  python3 tests/python/test_gen_certs.py -v
Only the Python standard library and the openssl command are used.
"""

import os
import re
import stat
import subprocess
import tempfile
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GEN_CERTS = REPO_ROOT / "deploy" / "gen-certs.sh"
TIMEOUT_S = 120

HOST1 = ("xcp-host1", "0c9f7b2e-4d1a-4e8b-9a51-2f6d3c7e8a01")
HOST2 = ("xcp-host2", "7e2a9d4c-1b3f-4c6e-8d20-5a9b1c3d4e02")
HOST3 = ("xcp-host3", "b3c1d2e4-5f6a-4b7c-8d9e-0f1a2b3c4d03")


def spec(host):
    return "%s:%s" % host


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


def sans(cert):
    """The certificate's subjectAltName entries, as openssl prints them."""
    out = openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
    lines = [l.strip() for l in out.splitlines()[1:] if l.strip()]
    return set(e.strip() for l in lines for e in l.split(","))


def public_key(path, private):
    args = ["pkey", "-in", str(path), "-pubout"] if private else \
        ["x509", "-in", str(path), "-noout", "-pubkey"]
    return openssl(*args)


class GenCertsTest(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="gen-certs-")
        self.dir = Path(self._tmp.name) / "certs"

    def tearDown(self):
        self._tmp.cleanup()

    def gen(self, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([str(GEN_CERTS), *args], capture_output=True,
                              text=True, timeout=TIMEOUT_S, env=e)

    def gen_ok(self, *args):
        r = self.gen(*args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def verify(self, cert, purpose):
        out = openssl("verify", "-CAfile", str(self.dir / "ca.crt"),
                      "-purpose", purpose, str(cert))
        self.assertIn(": OK", out)

    def test_makes_the_ca_and_one_certificate_per_peer(self):
        self.gen_ok(str(self.dir), "backup.example.org", spec(HOST1), spec(HOST2))
        names = sorted(p.name for p in self.dir.iterdir())
        self.assertEqual(names, sorted([
            "ca.crt", "ca.key", "coordinator.crt", "coordinator.key",
            "cli.crt", "cli.key", "agent-xcp-host1.crt", "agent-xcp-host1.key",
            "agent-xcp-host2.crt", "agent-xcp-host2.key"]))
        for p in self.dir.iterdir():
            mode = stat.S_IMODE(p.stat().st_mode)
            if p.suffix == ".key":
                self.assertEqual(mode, 0o600, p.name)
            else:
                self.assertEqual(mode & 0o077, 0o044, p.name)  # readable certs
        ca = openssl("x509", "-in", str(self.dir / "ca.crt"), "-noout", "-text")
        self.assertRegex(ca, r"CA:TRUE")
        # The coordinator serves; agents and the CLI are clients.
        self.verify(self.dir / "coordinator.crt", "sslserver")
        self.assertEqual(sans(self.dir / "coordinator.crt"),
                         {"DNS:backup.example.org", "DNS:localhost",
                          "IP Address:127.0.0.1"})
        for name, uuid in (HOST1, HOST2):
            cert = self.dir / ("agent-%s.crt" % name)
            self.verify(cert, "sslclient")
            self.assertEqual(sans(cert),
                             {"URI:urn:vmbackup:host:" + uuid, "DNS:" + name})
        self.verify(self.dir / "cli.crt", "sslclient")
        self.assertEqual(sans(self.dir / "cli.crt"),
                         {"URI:urn:vmbackup:operator:cli"})
        # An agent's certificate is not a server's, nor the CLI's.
        r = subprocess.run(["openssl", "verify", "-CAfile", str(self.dir / "ca.crt"),
                            "-purpose", "sslserver",
                            str(self.dir / "agent-xcp-host1.crt")],
                           capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertNotEqual(r.returncode, 0)
        # Each key belongs to its certificate.
        for stem in ("ca", "coordinator", "cli", "agent-xcp-host1", "agent-xcp-host2"):
            self.assertEqual(public_key(self.dir / (stem + ".key"), True),
                             public_key(self.dir / (stem + ".crt"), False), stem)

    def test_an_ip_address_names_the_coordinator_by_ip(self):
        self.gen_ok(str(self.dir), "192.0.2.10")
        self.assertEqual(sans(self.dir / "coordinator.crt"),
                         {"IP Address:192.0.2.10", "DNS:localhost",
                          "IP Address:127.0.0.1"})

    def test_a_second_run_adds_hosts_and_keeps_everything_else(self):
        self.gen_ok(str(self.dir), "backup.example.org", spec(HOST1))
        before = {p.name: p.read_bytes() for p in self.dir.iterdir()}
        r = self.gen_ok(str(self.dir), "backup.example.org", spec(HOST1), spec(HOST3))
        self.assertIn("kept", r.stdout)
        after = {p.name: p.read_bytes() for p in self.dir.iterdir()}
        for name, content in before.items():
            self.assertEqual(after[name], content, name + " was rewritten")
        self.assertEqual(set(after) - set(before),
                         {"agent-xcp-host3.crt", "agent-xcp-host3.key"})
        self.verify(self.dir / "agent-xcp-host3.crt", "sslclient")

    def test_refuses_bad_arguments_naming_them_and_writes_nothing(self):
        cases = [
            ((), "usage"),
            ((str(self.dir),), "usage"),
            ((str(self.dir), "coord", "xcp-host1"), "'xcp-host1' is not HOST_NAME:HOST_UUID"),
            ((str(self.dir), "coord", "xcp-host1:not-a-uuid"), "'not-a-uuid'"),
            ((str(self.dir), "coord", "../evil:" + HOST1[1]), "'../evil'"),
            ((str(self.dir), "coord", "a/b:" + HOST1[1]), "'a/b'"),
            ((str(self.dir), "coord", spec(HOST1), "xcp-host1:" + HOST2[1]),
             "given twice"),
            ((str(self.dir), "coord", spec(HOST1), "other:" + HOST1[1]), "given twice"),
            ((str(self.dir), "bad name!"), "neither a DNS name nor an IP address"),
        ]
        for args, message in cases:
            r = self.gen(*args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
            self.assertIn(message, r.stderr, args)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)  # one line
            self.assertFalse(self.dir.exists(), args)
        r = self.gen(str(self.dir), "coord", env={"VMB_CERT_DAYS": "soon"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("VMB_CERT_DAYS=soon", r.stderr)

    def test_refuses_to_reissue_over_another_hosts_certificate(self):
        self.gen_ok(str(self.dir), "coord", spec(HOST1))
        r = self.gen(str(self.dir), "coord", "xcp-host1:" + HOST2[1])
        self.assertEqual(r.returncode, 2)
        self.assertIn("agent-xcp-host1.crt exists but is not for URI:urn:vmbackup:host:"
                      + HOST2[1], r.stderr)
        r = self.gen(str(self.dir), "another-coordinator")
        self.assertEqual(r.returncode, 2)
        self.assertIn("coordinator.crt exists but is not for DNS:another-coordinator",
                      r.stderr)

    def test_refuses_a_ca_certificate_without_its_key(self):
        self.gen_ok(str(self.dir), "coord")
        ca = (self.dir / "ca.crt").read_bytes()
        (self.dir / "ca.key").unlink()
        r = self.gen(str(self.dir), "coord", spec(HOST1))
        self.assertEqual(r.returncode, 2)
        self.assertIn("ca.crt exists without ca.key", r.stderr)
        self.assertEqual((self.dir / "ca.crt").read_bytes(), ca)
        self.assertFalse((self.dir / "agent-xcp-host1.crt").exists())

    def test_validity_follows_the_environment(self):
        r = self.gen(str(self.dir), "coord", env={"VMB_CERT_DAYS": "30"})
        self.assertEqual(r.returncode, 0, r.stderr)
        end = openssl("x509", "-in", str(self.dir / "cli.crt"), "-noout", "-enddate")
        # Expires within 31 days: `openssl x509 -checkend` (seconds).
        self.assertTrue(re.match(r"notAfter=", end))
        r = subprocess.run(["openssl", "x509", "-in", str(self.dir / "cli.crt"),
                            "-noout", "-checkend", str(31 * 86400)],
                           capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertNotEqual(r.returncode, 0, "expected to expire within 31 days")
        r = subprocess.run(["openssl", "x509", "-in", str(self.dir / "cli.crt"),
                            "-noout", "-checkend", str(29 * 86400)],
                           capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 0, "expected to be valid for 29 days")


if __name__ == "__main__":
    unittest.main()
