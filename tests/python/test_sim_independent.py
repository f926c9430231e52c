#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks xapi-sim against clients that share no code with the project.

The simulator (tests/xapi_sim) is exercised with Python's own xmlrpc.client and
with stock command-line tools (curl, tar, xxhsum, qemu-img, zstd, gzip), so a
misreading of the XenAPI wire formats cannot hide on both sides at once.

Run:  python3 tests/python/test_sim_independent.py -v
The simulator binary is taken from $VMB_BIN_DIR (default: <repo>/build/bin).
Only the Python standard library is used.
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("VMB_BIN_DIR") or REPO_ROOT / "build" / "bin")
SIMULATOR = BIN_DIR / "xapi-sim"

MIB = 1 << 20
READY_DEADLINE_S = 30.0
TASK_DEADLINE_S = 10.0
HTTP_TIMEOUT_S = 30.0
TOOL_TIMEOUT_S = 180.0
DOWNLOAD_TIMEOUT_S = 120
POLL_S = 0.05

ORIGINATOR = "test_sim_independent"
CHUNK_RE = re.compile(r"^(Ref:\d+)/(\d{8})$")
# XXH64 (seed 0) of the empty input, to check which xxhsum flag means XXH64.
XXH64_OF_EMPTY = "ef46db3751d8e999"


class XapiFailure(Exception):
    """A XenAPI call answered {"Status": "Failure"}."""

    def __init__(self, method, description):
        super().__init__("%s failed: %r" % (method, description))
        self.method = method
        self.description = list(description or [])


class _TimeoutTransport(xmlrpc.client.Transport):
    """xmlrpc.client's HTTP transport with a socket timeout."""

    def __init__(self, timeout):
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


def rpc_proxy(url):
    return xmlrpc.client.ServerProxy(
        url, transport=_TimeoutTransport(HTTP_TIMEOUT_S)
    )


def close_proxy(proxy):
    proxy("close")()


def xapi_response(proxy, method, *args):
    """Calls `method` and returns the raw {"Status": ...} struct."""
    fn = proxy
    for part in method.split("."):
        fn = getattr(fn, part)
    response = fn(*args)
    if not isinstance(response, dict) or response.get("Status") not in (
        "Success",
        "Failure",
    ):
        raise AssertionError(
            "%s: not a XenAPI response struct: %r" % (method, response)
        )
    return response


def xapi(proxy, method, *args):
    """Calls `method`; returns its Value or raises XapiFailure."""
    response = xapi_response(proxy, method, *args)
    if response["Status"] == "Success":
        if "Value" not in response:
            raise AssertionError("%s: Success without Value" % method)
        return response["Value"]
    raise XapiFailure(method, response.get("ErrorDescription"))


def run_tool(args, timeout=TOOL_TIMEOUT_S, ok_codes=(0,)):
    """Runs a command-line tool; fails the test on a bad exit code."""
    try:
        proc = subprocess.run(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("%s timed out after %ss" % (args, timeout))
    if proc.returncode not in ok_codes:
        raise AssertionError(
            "%s exited %d\nstdout: %s\nstderr: %s"
            % (
                " ".join(str(a) for a in args),
                proc.returncode,
                proc.stdout.decode(errors="replace")[-2000:],
                proc.stderr.decode(errors="replace")[-2000:],
            )
        )
    return proc


def log_tail(path):
    try:
        with open(path, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")
    except OSError:
        return "(no log)"


def start_simulator(directory, extra_args=()):
    """Starts xapi-sim (port chosen by the OS) and waits for its ready file.

    Returns (process, ready-file dict, log path, open log file)."""
    ready_path = os.path.join(directory, "ready.json")
    log_path = os.path.join(directory, "xapi-sim.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(SIMULATOR), "--ready_file=" + ready_path, "--port=0"]
        + list(extra_args),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            if os.path.exists(ready_path):
                try:
                    with open(ready_path) as f:
                        ready = json.load(f)
                    break
                except (OSError, ValueError):
                    pass  # not complete yet; poll again
            if proc.poll() is not None:
                raise RuntimeError(
                    "xapi-sim exited with %s before it was ready:\n%s"
                    % (proc.returncode, log_tail(log_path))
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "xapi-sim wrote no ready file within %ss:\n%s"
                    % (READY_DEADLINE_S, log_tail(log_path))
                )
            time.sleep(POLL_S)
        for key in ("master", "hosts", "username", "password", "port"):
            if key not in ready:
                raise RuntimeError("ready file lacks %r: %r" % (key, ready))
    except BaseException:
        stop_simulator(proc)
        log.close()
        raise
    return proc, ready, log_path, log


def stop_simulator(proc):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class JsonRpcReply:
    """An HTTP reply to a JSON-RPC POST: status, content type, parsed body."""

    def __init__(self, status, content_type, body):
        self.status = status
        self.content_type = content_type
        self.text = body.decode("utf-8")  # strict: the body must be UTF-8
        self.json = json.loads(self.text) if status == 200 else None


def jsonrpc(url, method, params, request_id=1, version="2.0"):
    """POSTs a JSON-RPC request to URL/jsonrpc with urllib; never raises
    for an HTTP error status."""
    request = {"method": method, "params": params, "id": request_id}
    if version is not None:
        request["jsonrpc"] = version
    return jsonrpc_raw(url, json.dumps(request).encode("utf-8"))


def jsonrpc_raw(url, body):
    req = urllib.request.Request(
        url + "/jsonrpc",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return JsonRpcReply(r.status, r.headers.get("Content-Type"), r.read())
    except urllib.error.HTTPError as e:
        with e:
            return JsonRpcReply(e.code, e.headers.get("Content-Type"), e.read())


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MIB), b""):
            h.update(block)
    return h.hexdigest()


def vhd_checksum(data):
    """One's complement of the byte sum, the checksum field zeroed."""
    return (~sum(data)) & 0xFFFFFFFF


class SimIndependentTest(unittest.TestCase):
    """Independent clients against one xapi-sim process (the demo pool)."""

    proc = None
    class_dir = None

    # ---- simulator lifecycle -------------------------------------------------

    @classmethod
    def setUpClass(cls):
        # Missing prerequisites are errors, not skips: a silently skipped
        # suite would look like a passing one.
        if not SIMULATOR.is_file() or not os.access(SIMULATOR, os.X_OK):
            raise RuntimeError(
                "xapi-sim not found at %s (build it, or set VMB_BIN_DIR)"
                % SIMULATOR
            )
        missing = [
            tool
            for tool in ("curl", "tar", "xxhsum", "qemu-img", "zstd", "gzip")
            if shutil.which(tool) is None
        ]
        if missing:
            raise RuntimeError("required tools not installed: %s" % missing)
        cls.class_dir = tempfile.mkdtemp(prefix="vmb-sim-independent-")
        cls.snapshots = {}  # VM name -> snapshot description (shared)
        cls.proc = None
        try:
            cls._start_simulator()
            cls.master = cls.ready["master"]
            cls.host_urls = dict(cls.ready["hosts"])
            cls.rpc = rpc_proxy(cls.master)
            cls.session = xapi(
                cls.rpc,
                "session.login_with_password",
                cls.ready["username"],
                cls.ready["password"],
                "1.0",
                ORIGINATOR,
            )
            cls.xxhsum_flag = cls._detect_xxhsum_flag()
        except BaseException:
            cls._cleanup_class()
            raise

    @classmethod
    def tearDownClass(cls):
        cls._cleanup_class()

    @classmethod
    def _start_simulator(cls):
        cls.proc, cls.ready, cls.sim_log_path, cls.sim_log = start_simulator(
            cls.class_dir
        )

    @classmethod
    def _sim_log_tail(cls):
        return log_tail(cls.sim_log_path)

    @classmethod
    def _cleanup_class(cls):
        try:
            if cls.proc is not None and cls.proc.poll() is None:
                for snap in list(getattr(cls, "snapshots", {}).values()):
                    try:
                        cls._destroy_snapshot(snap["ref"])
                    except Exception as e:  # best effort; report, go on
                        sys.stderr.write("cleanup of %s: %s\n" % (snap["ref"], e))
                cls.snapshots = {}
        finally:
            if getattr(cls, "rpc", None) is not None:
                close_proxy(cls.rpc)
                cls.rpc = None
            if cls.proc is not None:
                stop_simulator(cls.proc)
                cls.proc = None
            if getattr(cls, "sim_log", None) is not None:
                cls.sim_log.close()
                cls.sim_log = None
            if cls.class_dir is not None:
                shutil.rmtree(cls.class_dir, ignore_errors=True)
                cls.class_dir = None

    @classmethod
    def _detect_xxhsum_flag(cls):
        empty = os.path.join(cls.class_dir, "empty")
        open(empty, "wb").close()
        tried = []
        for flag in ("-H64", "-H1"):
            try:
                proc = subprocess.run(
                    ["xxhsum", flag, empty],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    timeout=30,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                tried.append("%s: timeout" % flag)
                continue
            out = proc.stdout.decode(errors="replace").strip()
            tried.append("%s: rc %d %r" % (flag, proc.returncode, out))
            if proc.returncode == 0 and out.split()[:1] == [XXH64_OF_EMPTY]:
                return flag
        raise RuntimeError("no xxhsum flag computes XXH64: %s" % tried)

    @classmethod
    def _destroy_snapshot(cls, snap_ref):
        """VM.destroy, then VDI.destroy of its disks (retrying VDI_IN_USE,
        which XAPI answers for a while after an export)."""
        record = xapi(cls.rpc, "VM.get_record", cls.session, snap_ref)
        vdis = []
        for vbd in record["VBDs"]:
            vbd_rec = xapi(cls.rpc, "VBD.get_record", cls.session, vbd)
            if vbd_rec["VDI"] != "OpaqueRef:NULL":
                vdis.append(vbd_rec["VDI"])
        xapi(cls.rpc, "VM.destroy", cls.session, snap_ref)
        for vdi in vdis:
            deadline = time.monotonic() + TASK_DEADLINE_S
            while True:
                try:
                    xapi(cls.rpc, "VDI.destroy", cls.session, vdi)
                    break
                except XapiFailure as e:
                    if e.description[:1] != ["VDI_IN_USE"]:
                        raise
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(POLL_S)

    # ---- per-test helpers ----------------------------------------------------

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="test-", dir=self.class_dir)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def call(self, method, *args):
        return xapi(self.rpc, method, self.session, *args)

    def sim_json(self, path, url=None):
        with urllib.request.urlopen(
            (url or self.master) + path, timeout=HTTP_TIMEOUT_S
        ) as r:
            self.assertEqual(r.status, 200, "GET %s" % path)
            return json.loads(r.read().decode())

    def sim_state(self):
        return self.sim_json("/sim/state")

    def sim_vdi(self, uuid):
        return self.sim_json("/sim/vdi?uuid=" + urllib.parse.quote(uuid))

    def host_url(self, host_ref):
        host = xapi(self.rpc, "host.get_record", self.session, host_ref)
        name = host["name_label"]
        self.assertIn(
            name, self.host_urls, "host %s is not in the ready file" % name
        )
        return name, self.host_urls[name]

    def find_vm(self, name):
        """The one non-template, non-snapshot VM called `name`."""
        refs = self.call("VM.get_by_name_label", name)
        found = []
        for ref in refs:
            rec = self.call("VM.get_record", ref)
            if not rec["is_a_template"] and not rec["is_a_snapshot"]:
                found.append((ref, rec))
        self.assertEqual(
            len(found), 1, "expected one VM called %r, found %r" % (name, found)
        )
        return found[0]

    def disks_of(self, vm_rec):
        """[(VBD record, VDI ref)] of the VM's non-empty Disk VBDs."""
        out = []
        for vbd in vm_rec["VBDs"]:
            rec = self.call("VBD.get_record", vbd)
            if rec["type"] == "Disk" and not rec["empty"]:
                out.append((rec, rec["VDI"]))
        return out

    def snapshot_of(self, vm_name):
        """A snapshot of `vm_name`, made once and shared by the export tests.

        Returns a dict: ref, vm_ref, host (name), url (of the host the VM runs
        on), disks: list of dicts with snap_vdi, snap_uuid, src_vdi, src_uuid,
        userdevice, virtual_size, sha256 (from /sim/vdi of the source disk)."""
        cached = type(self).snapshots.get(vm_name)
        if cached is not None:
            return cached
        vm_ref, vm_rec = self.find_vm(vm_name)
        host, url = self.host_url(vm_rec["resident_on"])
        snap_ref = self.call("VM.snapshot", vm_ref, "independent-" + vm_name)
        snap = {"ref": snap_ref, "vm_ref": vm_ref, "host": host, "url": url}
        type(self).snapshots[vm_name] = snap
        snap_rec = self.call("VM.get_record", snap_ref)
        disks = []
        for vbd_rec, vdi in self.disks_of(snap_rec):
            vdi_rec = self.call("VDI.get_record", vdi)
            src_rec = self.call("VDI.get_record", vdi_rec["snapshot_of"])
            info = self.sim_vdi(src_rec["uuid"])
            disks.append(
                {
                    "snap_vdi": vdi,
                    "snap_uuid": vdi_rec["uuid"],
                    "src_vdi": vdi_rec["snapshot_of"],
                    "src_uuid": src_rec["uuid"],
                    "userdevice": vbd_rec["userdevice"],
                    "virtual_size": int(vdi_rec["virtual_size"]),
                    "sha256": info["sha256"],
                    "sim_size": int(info["virtual_size"]),
                }
            )
        snap["disks"] = disks
        return snap

    def new_task(self, label):
        return self.call("task.create", label, "test_sim_independent")

    def wait_task(self, task):
        """Polls the task until it leaves "pending" (bounded)."""
        deadline = time.monotonic() + TASK_DEADLINE_S
        while True:
            rec = self.call("task.get_record", task)
            if rec["status"] != "pending":
                return rec
            if time.monotonic() > deadline:
                self.fail(
                    "task %s still pending after %ss: %r"
                    % (task, TASK_DEADLINE_S, rec)
                )
            time.sleep(POLL_S)

    def assert_task_success(self, task, what):
        rec = self.wait_task(task)
        self.assertEqual(
            rec["status"],
            "success",
            "%s: task ended %r, error_info %r"
            % (what, rec["status"], rec.get("error_info")),
        )

    def download(self, url, out_path):
        """GETs `url` with curl, the session in a cookie; returns the HTTP
        status code."""
        proc = run_tool(
            [
                "curl",
                "-sS",
                "--max-time",
                str(DOWNLOAD_TIMEOUT_S),
                "-b",
                "session_id=" + self.session,
                "-o",
                out_path,
                "-w",
                "%{http_code}",
                url,
            ],
            timeout=DOWNLOAD_TIMEOUT_S + 30,
        )
        return int(proc.stdout.decode().strip() or "0")

    def export_url(self, base, handler, **query):
        return "%s/%s?%s" % (
            base,
            handler,
            urllib.parse.urlencode(query, safe=":"),
        )

    def export_xva(self, snap, name, **extra):
        """Downloads /export of the snapshot; checks HTTP 200 and the task.
        Returns (path, task)."""
        task = self.new_task("independent export " + name)
        path = os.path.join(self.tmp, name)
        url = self.export_url(
            snap["url"], "export", ref=snap["ref"], task_id=task, **extra
        )
        status = self.download(url, path)
        self.assertEqual(status, 200, "GET %s answered %d" % (url, status))
        self.assert_task_success(task, "export " + name)
        return path, task

    def xxh64_of(self, paths):
        """{path: lower-case XXH64} computed by xxhsum."""
        if not paths:
            return {}
        proc = run_tool(["xxhsum", self.xxhsum_flag] + list(paths))
        out = {}
        for line in proc.stdout.decode().splitlines():
            if not line.strip():
                continue
            digest, sep, name = line.partition("  ")
            self.assertTrue(sep, "unexpected xxhsum line %r" % line)
            out[name] = digest.strip().lower()
        missing = [p for p in paths if p not in out]
        self.assertFalse(missing, "xxhsum printed no hash for %s" % missing)
        return out

    def check_xva(self, path):
        """Independent structural check of an XVA written by /export.

        Lists it with `tar -tf`, extracts it with tar, checks member order,
        chunk sizes, every .xxhash against xxhsum, and the tar trailer.
        Returns (ova_xml_text, {disk_id: [(chunk_number, bytes)]})."""
        size = os.path.getsize(path)
        self.assertEqual(size % 512, 0, "XVA size %d is not a multiple of 512" % size)
        with open(path, "rb") as f:
            f.seek(size - 1024)
            tail = f.read(1024)
        self.assertEqual(
            tail, b"\0" * 1024, "XVA does not end with two zero 512-byte blocks"
        )

        members = run_tool(["tar", "-tf", path]).stdout.decode().splitlines()
        self.assertTrue(members, "tar -tf lists no members")
        self.assertEqual(members[0], "ova.xml", "first member is not ova.xml")
        self.assertEqual(
            members.count("ova.xml"), 1, "ova.xml appears more than once"
        )

        out_dir = os.path.join(self.tmp, os.path.basename(path) + ".d")
        os.mkdir(out_dir)
        run_tool(["tar", "-xf", path, "-C", out_dir])
        # XAPI's tar headers carry mode 0000: make the files readable.
        for root, dirs, files in os.walk(out_dir):
            for n in dirs:
                os.chmod(os.path.join(root, n), 0o700)
            for n in files:
                os.chmod(os.path.join(root, n), 0o600)

        # Order: ova.xml, then per disk, chunk N immediately followed by
        # chunk N's .xxhash; chunk numbers strictly ascending within a disk;
        # each disk's chunks contiguous in the stream.
        chunks = {}  # disk id -> [(number, member name)]
        seen_done = set()
        current = None
        i = 1
        while i < len(members):
            name = members[i]
            m = CHUNK_RE.match(name)
            self.assertIsNotNone(m, "unexpected member %r at %d" % (name, i))
            disk, number = m.group(1), int(m.group(2))
            self.assertLess(i + 1, len(members), "chunk %s has no .xxhash" % name)
            self.assertEqual(
                members[i + 1],
                name + ".xxhash",
                "chunk %s is not followed by its .xxhash" % name,
            )
            if disk != current:
                self.assertNotIn(
                    disk, seen_done, "chunks of %s are not contiguous" % disk
                )
                if current is not None:
                    seen_done.add(current)
                current = disk
            previous = chunks.setdefault(disk, [])
            if previous:
                self.assertGreater(
                    number,
                    previous[-1][0],
                    "%s: chunk %d after chunk %d" % (disk, number, previous[-1][0]),
                )
            previous.append((number, name))
            i += 2

        # XXH64 of every chunk, by xxhsum, against the .xxhash members.
        chunk_paths = [
            os.path.join(out_dir, name) for c in chunks.values() for _, name in c
        ]
        digests = self.xxh64_of(chunk_paths)
        for p in chunk_paths:
            with open(p + ".xxhash", "rb") as f:
                member = f.read().decode("ascii", errors="replace")
            self.assertRegex(
                member,
                r"^[0-9A-F]{16}$",
                "%s.xxhash is not 16 upper-case hex digits" % p,
            )
            self.assertEqual(
                member,
                digests[p].upper(),
                "%s: .xxhash says %s, xxhsum computes %s"
                % (os.path.relpath(p, out_dir), member, digests[p]),
            )

        with open(os.path.join(out_dir, "ova.xml"), "rb") as f:
            ova = f.read().decode("utf-8")
        data = {}
        for disk, items in chunks.items():
            data[disk] = []
            for number, name in items:
                with open(os.path.join(out_dir, name), "rb") as f:
                    data[disk].append((number, f.read()))
        return ova, data

    def reassemble(self, disk, chunks, virtual_size):
        """Chunks into a zero-filled disk image; checks numbering and sizes."""
        last = (virtual_size + MIB - 1) // MIB - 1
        numbers = [n for n, _ in chunks]
        self.assertIn(0, numbers, "%s: chunk 0 missing (never skipped)" % disk)
        self.assertIn(
            last, numbers, "%s: last chunk %d missing (never skipped)" % (disk, last)
        )
        image = bytearray(virtual_size)
        for number, body in chunks:
            self.assertLessEqual(number, last, "%s: chunk %d past the disk" % (disk, number))
            expected_len = min(MIB, virtual_size - number * MIB)
            self.assertEqual(
                len(body),
                expected_len,
                "%s: chunk %d has %d bytes, expected %d"
                % (disk, number, len(body), expected_len),
            )
            image[number * MIB : number * MIB + len(body)] = body
        return image

    def parse_ova(self, ova):
        """ova.xml -> {id: (class, snapshot record)} via xmlrpc.client."""
        wrapped = (
            "<methodResponse><params><param>"
            + ova
            + "</param></params></methodResponse>"
        )
        (top,), _ = xmlrpc.client.loads(wrapped)
        self.assertIn("objects", top, "ova.xml has no objects")
        self.assertIn("version", top, "ova.xml has no version")
        out = {}
        for obj in top["objects"]:
            for key in ("class", "id", "snapshot"):
                self.assertIn(key, obj, "ova.xml object without %r: %r" % (key, obj))
            self.assertNotIn(obj["id"], out, "ova.xml id %s twice" % obj["id"])
            out[obj["id"]] = (obj["class"], obj["snapshot"])
        return out

    def request_log_entry(self, host, task):
        log = self.sim_json("/sim/requests?host=" + urllib.parse.quote(host))
        entries = [e for e in log.get("requests", []) if e.get("task_id") == task]
        self.assertEqual(
            len(entries),
            1,
            "expected one logged request with task_id %s on %s, got %r"
            % (task, host, entries),
        )
        return entries[0]

    # ---- the tests -----------------------------------------------------------

    def test_01_xmlrpc_login_list_snapshot_destroy(self):
        # A fresh, plain xmlrpc.client session.
        rpc = rpc_proxy(self.master)
        self.addCleanup(close_proxy, rpc)
        session = xapi(
            rpc,
            "session.login_with_password",
            self.ready["username"],
            self.ready["password"],
            "1.0",
            ORIGINATOR,
        )
        self.assertTrue(
            session.startswith("OpaqueRef:"), "session ref %r" % session
        )

        records = xapi(rpc, "VM.get_all_records", session)
        self.assertIsInstance(records, dict, "VM.get_all_records: not a map")
        vms = {
            r["name_label"]
            for r in records.values()
            if not r["is_a_template"]
            and not r["is_a_snapshot"]
            and not r["is_control_domain"]
        }
        for name in ("DEV-RH6", "PROD-ubuntu14", "DEV mySql"):
            self.assertIn(name, vms, "VM %r missing from %r" % (name, sorted(vms)))
        dom0s = [r for r in records.values() if r["is_control_domain"]]
        self.assertEqual(
            len(dom0s),
            3,
            "expected 3 control domains, got %r"
            % [r["name_label"] for r in dom0s],
        )
        self.assertEqual(
            len({r["resident_on"] for r in dom0s}),
            3,
            "control domains are not on 3 distinct hosts",
        )

        by_name = xapi(rpc, "VM.get_by_name_label", session, "PROD-ubuntu14")
        kinds = sorted(
            (
                bool(records[ref]["is_a_template"]),
                records[ref]["name_label"],
            )
            for ref in by_name
            if ref in records
        )
        self.assertEqual(
            len(by_name), 2, "VM.get_by_name_label('PROD-ubuntu14') = %r" % by_name
        )
        self.assertEqual(
            kinds,
            [(False, "PROD-ubuntu14"), (True, "PROD-ubuntu14")],
            "get_by_name_label should return the VM and the template",
        )

        before = self.sim_state()
        vm_ref = next(
            ref
            for ref, r in records.items()
            if r["name_label"] == "DEV-RH6" and not r["is_a_template"]
            and not r["is_a_snapshot"]
        )
        snap = xapi(rpc, "VM.snapshot", session, vm_ref, "independent-test-01")
        snap_rec = xapi(rpc, "VM.get_record", session, snap)
        self.assertIs(snap_rec["is_a_snapshot"], True, "is_a_snapshot")
        self.assertIs(snap_rec["is_a_template"], True, "is_a_template")
        self.assertEqual(snap_rec["snapshot_of"], vm_ref, "snapshot_of")
        self.assertEqual(snap_rec["name_label"], "independent-test-01")
        self.assertIn(
            snap,
            xapi(rpc, "VM.get_record", session, vm_ref)["snapshots"],
            "the VM's snapshots do not list the new snapshot",
        )
        vm_disks = {}
        for vbd in records[vm_ref]["VBDs"]:
            b = xapi(rpc, "VBD.get_record", session, vbd)
            if b["type"] == "Disk" and not b["empty"]:
                vm_disks[b["VDI"]] = b["userdevice"]
        snap_vdis = []
        for vbd in snap_rec["VBDs"]:
            b = xapi(rpc, "VBD.get_record", session, vbd)
            self.assertEqual(b["VM"], snap, "snapshot VBD points at %r" % b["VM"])
            if b["type"] != "Disk" or b["empty"]:
                continue
            v = xapi(rpc, "VDI.get_record", session, b["VDI"])
            self.assertIs(v["is_a_snapshot"], True, "snapshot VDI is_a_snapshot")
            self.assertIn(
                v["snapshot_of"], vm_disks, "snapshot VDI's snapshot_of"
            )
            self.assertEqual(b["userdevice"], vm_disks[v["snapshot_of"]])
            src = xapi(rpc, "VDI.get_record", session, v["snapshot_of"])
            self.assertEqual(v["virtual_size"], src["virtual_size"])
            self.assertEqual(
                self.sim_vdi(v["uuid"])["sha256"],
                self.sim_vdi(src["uuid"])["sha256"],
                "a fresh snapshot's bytes differ from its disk's",
            )
            snap_vdis.append(b["VDI"])
        self.assertEqual(
            len(snap_vdis), len(vm_disks), "snapshot has a VDI per disk"
        )

        during = self.sim_state()
        self.assertEqual(during["snapshots"], before["snapshots"] + 1)
        self.assertEqual(
            during["snapshot_vdis"], before["snapshot_vdis"] + len(snap_vdis)
        )

        xapi(rpc, "VM.destroy", session, snap)
        for vdi in snap_vdis:
            # VM.destroy must leave the VDIs behind.
            xapi(rpc, "VDI.get_record", session, vdi)
            xapi(rpc, "VDI.destroy", session, vdi)
        with self.assertRaises(XapiFailure) as cm:
            xapi(rpc, "VM.get_record", session, snap)
        self.assertEqual(cm.exception.description[:1], ["HANDLE_INVALID"])
        after = self.sim_state()
        self.assertEqual(
            after["snapshots"],
            before["snapshots"],
            "snapshot count not back to the original",
        )
        self.assertEqual(
            after["snapshot_vdis"],
            before["snapshot_vdis"],
            "snapshot VDI count not back to the original",
        )
        xapi(rpc, "session.logout", session)

    def test_02_xapi_errors(self):
        def error_of(proxy, method, *args):
            response = xapi_response(proxy, method, *args)
            self.assertEqual(
                response["Status"],
                "Failure",
                "%s%r should fail, got %r" % (method, args, response),
            )
            return list(response["ErrorDescription"])

        rpc = rpc_proxy(self.master)
        self.addCleanup(close_proxy, rpc)
        err = error_of(rpc, "VM.no_such_message", self.session)
        self.assertEqual(err, ["MESSAGE_METHOD_UNKNOWN", "VM.no_such_message"])

        err = error_of(rpc, "VM.get_record", self.session)
        self.assertEqual(err[:2], ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record"])
        self.assertEqual(err[2:], ["2", "1"], "expected/received counts: %r" % err)

        bad = "OpaqueRef:00000000-0000-4000-8000-000000000000"
        err = error_of(rpc, "VM.get_record", self.session, bad)
        self.assertEqual(err, ["HANDLE_INVALID", "VM", bad])

        err = error_of(
            rpc,
            "session.login_with_password",
            self.ready["username"],
            self.ready["password"] + "-wrong",
        )
        self.assertEqual(err[:1], ["SESSION_AUTHENTICATION_FAILED"], repr(err))

        slave = rpc_proxy(self.host_urls["xcp-host2"])
        self.addCleanup(close_proxy, slave)
        err = error_of(
            slave,
            "session.login_with_password",
            self.ready["username"],
            self.ready["password"],
        )
        master_ip = urllib.parse.urlsplit(self.master).hostname
        self.assertEqual(master_ip, "127.0.0.2", "demo pool master address")
        self.assertEqual(err, ["HOST_IS_SLAVE", master_ip])

    def test_03_xva_export_with_curl_tar_xxhsum(self):
        snap = self.snapshot_of("DEV-RH6")
        self.assertEqual(len(snap["disks"]), 1, "DEV-RH6 has one disk")
        disk = snap["disks"][0]
        self.assertEqual(disk["virtual_size"], disk["sim_size"])
        path, task = self.export_xva(snap, "dev-rh6.xva")

        ova, data = self.check_xva(path)
        objects = self.parse_ova(ova)
        vdi_ids = [i for i, (cls, _) in objects.items() if cls == "VDI"]
        self.assertEqual(len(vdi_ids), 1, "ova.xml VDIs: %r" % vdi_ids)
        self.assertEqual(
            sorted(data), vdi_ids, "chunk ids do not match ova.xml's VDI"
        )
        self.assertEqual(
            objects[vdi_ids[0]][1]["uuid"],
            disk["snap_uuid"],
            "ova.xml's VDI is not the snapshot's disk",
        )
        image = self.reassemble(vdi_ids[0], data[vdi_ids[0]], disk["virtual_size"])
        self.assertEqual(
            hashlib.sha256(image).hexdigest(),
            disk["sha256"],
            "reassembled chunks differ from the source disk (/sim/vdi)",
        )

        entry = self.request_log_entry(snap["host"], task)
        self.assertEqual(entry["method"], "GET")
        self.assertTrue(entry["path"].startswith("/export?"), entry["path"])
        self.assertIs(entry["session_cookie"], True, "session_cookie: %r" % entry)
        self.assertIs(
            entry["session_in_query"], False, "session_in_query: %r" % entry
        )
        self.assertEqual(
            int(entry["bytes_sent"]),
            os.path.getsize(path),
            "bytes_sent differs from the downloaded size",
        )
        self.assertEqual(entry["outcome"], "ok", "outcome: %r" % entry)

    def test_04_compressed_exports(self):
        snap = self.snapshot_of("DEV-RH6")
        plain_path, _ = self.export_xva(snap, "plain.xva")
        with open(plain_path, "rb") as f:
            plain = f.read()

        for value in ("gzip", "true"):
            with self.subTest(use_compression=value):
                gz_path, _ = self.export_xva(
                    snap, "gz-%s.xva.gz" % value, use_compression=value
                )
                with open(gz_path, "rb") as f:
                    self.assertEqual(f.read(2), b"\x1f\x8b", "not gzip data")
                with gzip.open(gz_path, "rb") as f:
                    unzipped = f.read()
                self.assertEqual(len(unzipped), len(plain), "gunzipped size")
                self.assertTrue(
                    unzipped == plain,
                    "use_compression=%s: gunzipped bytes differ from the "
                    "uncompressed export" % value,
                )

        with self.subTest(use_compression="zstd"):
            zst_path, _ = self.export_xva(snap, "z.xva.zst", use_compression="zstd")
            with open(zst_path, "rb") as f:
                self.assertEqual(f.read(4), b"\x28\xb5\x2f\xfd", "not zstd data")
            out = os.path.join(self.tmp, "z.xva")
            run_tool(["zstd", "-d", "-q", "-f", zst_path, "-o", out])
            self.assertEqual(os.path.getsize(out), len(plain), "unzstd size")
            self.assertEqual(
                sha256_file(out),
                hashlib.sha256(plain).hexdigest(),
                "zstd -d bytes differ from the uncompressed export",
            )

    def test_05_vhd_export_with_qemu_img(self):
        snap = self.snapshot_of("DEV-RH6")
        disk = snap["disks"][0]
        size = disk["virtual_size"]
        task = self.new_task("independent vhd export")
        path = os.path.join(self.tmp, "disk.vhd")
        url = self.export_url(
            snap["url"], "export_raw_vdi", vdi=disk["snap_vdi"], format="vhd",
            task_id=task,
        )
        status = self.download(url, path)
        self.assertEqual(status, 200, "GET %s answered %d" % (url, status))
        self.assert_task_success(task, "export_raw_vdi format=vhd")

        # The footer, as the VHD specification lays it out.
        with open(path, "rb") as f:
            head = f.read(512)
            f.seek(-512, os.SEEK_END)
            footer = f.read(512)
        self.assertEqual(os.path.getsize(path) % 512, 0, "VHD size % 512")
        self.assertEqual(footer[:8], b"conectix", "footer cookie")
        self.assertEqual(head, footer, "footer copy at 0 differs from footer")
        self.assertEqual(int.from_bytes(footer[60:64], "big"), 3, "disk type")
        self.assertEqual(
            int.from_bytes(footer[48:56], "big"), size, "footer current size"
        )
        self.assertEqual(
            int.from_bytes(footer[64:68], "big"),
            vhd_checksum(footer[:64] + b"\0\0\0\0" + footer[68:]),
            "footer checksum",
        )

        with open(path, "rb") as f:
            f.seek(512)
            header = f.read(1024)
        self.assertEqual(header[:8], b"cxsparse", "dynamic header cookie")
        self.assertEqual(
            int.from_bytes(header[8:16], "big"), 0xFFFFFFFFFFFFFFFF, "data offset"
        )
        self.assertEqual(int.from_bytes(header[16:24], "big"), 2048, "BAT offset")
        block = int.from_bytes(header[32:36], "big")
        self.assertEqual(block, 2 * MIB, "block size")
        self.assertEqual(
            int.from_bytes(header[28:32], "big"),
            (size + block - 1) // block,
            "max table entries",
        )
        self.assertEqual(
            int.from_bytes(header[36:40], "big"),
            vhd_checksum(header[:36] + b"\0\0\0\0" + header[40:]),
            "dynamic header checksum",
        )

        # qemu-img check: 0 = clean; 63 = the format has no check (qemu's vpc
        # driver implements none), which is not an error of the image.
        proc = run_tool(["qemu-img", "check", "-f", "vpc", path], ok_codes=(0, 63))
        if proc.returncode == 63:
            self.assertIn(
                b"does not support checks", proc.stderr, proc.stderr.decode()
            )
        info = json.loads(
            run_tool(
                ["qemu-img", "info", "--output=json", "-f", "vpc", path]
            ).stdout.decode()
        )
        self.assertEqual(info.get("format"), "vpc", "qemu-img info: %r" % info)

        # qemu sizes a VHD by its CHS geometry unless told to trust the
        # footer's current size, so convert both ways.
        escaped = path.replace(",", ",,")
        full = os.path.join(self.tmp, "full.raw")
        run_tool(
            [
                "qemu-img", "convert",
                "--image-opts",
                "driver=vpc,force_size_calc=current_size,file.filename=" + escaped,
                "-O", "raw", full,
            ]
        )
        with open(full, "rb") as f:
            converted = f.read()
        self.assertGreaterEqual(len(converted), size, "converted image too short")
        self.assertEqual(
            hashlib.sha256(converted[:size]).hexdigest(),
            disk["sha256"],
            "qemu-img convert (current_size) differs from the source disk",
        )
        self.assertEqual(
            converted[size:].count(0),
            len(converted) - size,
            "bytes past virtual_size are not zero",
        )

        plain = os.path.join(self.tmp, "plain.raw")
        run_tool(["qemu-img", "convert", "-f", "vpc", "-O", "raw", path, plain])
        with open(plain, "rb") as f:
            by_chs = f.read()
        geometry = footer[56:60]
        chs_size = (
            int.from_bytes(geometry[0:2], "big") * geometry[2] * geometry[3] * 512
        )
        self.assertIn(
            len(by_chs),
            (chs_size, len(converted)),
            "qemu-img convert -f vpc gave %d bytes; neither the CHS size %d "
            "nor the current size" % (len(by_chs), chs_size),
        )
        common = min(len(by_chs), size)
        self.assertTrue(
            by_chs[:common] == converted[:common],
            "qemu-img convert -f vpc bytes differ from the disk's",
        )
        self.assertEqual(by_chs[size:].count(0), max(0, len(by_chs) - size))

    def test_06_raw_export(self):
        snap = self.snapshot_of("DEV-RH6")
        disk = snap["disks"][0]
        task = self.new_task("independent raw export")
        path = os.path.join(self.tmp, "disk.raw")
        url = self.export_url(
            snap["url"], "export_raw_vdi", vdi=disk["snap_vdi"], format="raw",
            task_id=task,
        )
        status = self.download(url, path)
        self.assertEqual(status, 200, "GET %s answered %d" % (url, status))
        self.assert_task_success(task, "export_raw_vdi format=raw")
        self.assertEqual(
            os.path.getsize(path), disk["virtual_size"], "raw size != virtual_size"
        )
        self.assertEqual(
            sha256_file(path), disk["sha256"], "raw bytes differ from the disk's"
        )

    def test_07_export_of_running_vm_fails(self):
        vm_ref, vm_rec = self.find_vm("DEV-RH6")
        self.assertEqual(vm_rec["power_state"], "Running")
        host, url = self.host_url(vm_rec["resident_on"])
        task = self.new_task("independent export of a running VM")
        path = os.path.join(self.tmp, "running.html")
        status = self.download(
            self.export_url(url, "export", ref=vm_ref, task_id=task), path
        )
        with open(path, "rb") as f:
            body = f.read().decode(errors="replace")
        self.assertEqual(status, 500, "HTTP status; body %r" % body[:500])
        self.assertIn("VM_BAD_POWER_STATE", body)
        rec = self.wait_task(task)
        self.assertEqual(rec["status"], "failure", "task: %r" % rec)
        self.assertEqual(
            list(rec["error_info"])[:2],
            ["VM_BAD_POWER_STATE", vm_ref],
            "error_info %r" % rec["error_info"],
        )

    def test_08_two_disk_vm(self):
        snap = self.snapshot_of("PROD-ubuntu14")
        self.assertEqual(len(snap["disks"]), 2, "PROD-ubuntu14 has two disks")
        snap_rec = self.call("VM.get_record", snap["ref"])
        cds = []
        for vbd in snap_rec["VBDs"]:
            rec = self.call("VBD.get_record", vbd)
            if rec["type"] == "CD":
                cds.append(rec)
        self.assertEqual(len(cds), 1, "the snapshot keeps the empty CD drive")
        self.assertIs(cds[0]["empty"], True)

        path, _ = self.export_xva(snap, "prod-ubuntu14.xva")
        ova, data = self.check_xva(path)
        objects = self.parse_ova(ova)
        self.assertEqual(
            len(data), 2, "chunks for %d disk ids: %r" % (len(data), sorted(data))
        )
        vdi_objects = {i: rec for i, (cls, rec) in objects.items() if cls == "VDI"}
        self.assertEqual(
            sorted(data),
            sorted(vdi_objects),
            "chunk ids differ from ova.xml's VDI ids",
        )
        vbd_objects = [rec for cls, rec in objects.values() if cls == "VBD"]
        self.assertEqual(
            sorted(v["type"] for v in vbd_objects),
            ["CD", "Disk", "Disk"],
            "ova.xml VBDs",
        )
        for v in vbd_objects:
            if v["type"] == "Disk":
                self.assertIn(v["VDI"], vdi_objects, "Disk VBD's VDI id")

        by_uuid = {d["src_uuid"]: d for d in snap["disks"]}
        matched = set()
        for disk_id, rec in sorted(vdi_objects.items()):
            vdi_ref = self.call("VDI.get_by_uuid", rec["uuid"])
            source = self.call("VDI.get_record", vdi_ref)["snapshot_of"]
            source_uuid = self.call("VDI.get_record", source)["uuid"]
            self.assertIn(source_uuid, by_uuid, "%s is not a snapshot of a disk of the VM" % disk_id)
            disk = by_uuid[source_uuid]
            matched.add(source_uuid)
            self.assertEqual(int(rec["virtual_size"]), disk["virtual_size"])
            image = self.reassemble(disk_id, data[disk_id], disk["virtual_size"])
            self.assertEqual(
                hashlib.sha256(image).hexdigest(),
                disk["sha256"],
                "%s (userdevice %s) reassembles to other bytes than VDI %s"
                % (disk_id, disk["userdevice"], source_uuid),
            )
        self.assertEqual(matched, set(by_uuid), "every disk matched once")

    def test_09_jsonrpc_with_urllib(self):
        """JSON-RPC with nothing but urllib and json. The simulator models
        XenServer 7.2, which answers every request in the v1 shape with
        "id": 0 and errors as arrays (docs/xapi-sim.md 5.1)."""
        user, password = self.ready["username"], self.ready["password"]
        reply = jsonrpc(self.master, "session.login_with_password", [user, password], 17)
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.content_type, "application/json")
        self.assertEqual(set(reply.json), {"result", "error", "id"}, reply.text)
        self.assertIsNone(reply.json["error"])
        self.assertEqual(reply.json["id"], 0, "7.2 always answers id 0")
        session = reply.json["result"]
        self.assertTrue(session.startswith("OpaqueRef:"), reply.text)
        self.assertTrue(
            reply.text.startswith('{"result": "OpaqueRef:'),
            "ocaml-rpc's old printer puts a space after ':' and ','",
        )

        records = jsonrpc(self.master, "VM.get_all_records", [session]).json["result"]
        xml_records = self.call("VM.get_all_records")
        self.assertEqual(set(records), set(xml_records), "same VM refs on both protocols")
        for ref, rec in records.items():
            xml = xml_records[ref]
            self.assertEqual(rec["name_label"], xml["name_label"])
            self.assertEqual(rec["uuid"], xml["uuid"])
            # int64: a JSON integer, the XML-RPC untyped digits.
            self.assertIsInstance(rec["memory_static_max"], int)
            self.assertEqual(rec["memory_static_max"], int(xml["memory_static_max"]))
            self.assertEqual(rec["domid"], int(xml["domid"]))
            self.assertIsInstance(rec["is_a_template"], bool)
            self.assertIsInstance(rec["HVM_shadow_multiplier"], float)
            self.assertIsInstance(rec["VBDs"], list)
            self.assertEqual(rec["VBDs"], xml["VBDs"])
        names = {r["name_label"] for r in records.values()}
        for name in ("DEV-RH6", "PROD-ubuntu14", "DEV mySql", "PRD-web:8080,v2"):
            self.assertIn(name, names)
        snapshot = [r for r in records.values() if r["is_a_snapshot"]][0]
        self.assertRegex(snapshot["snapshot_time"], r"^\d{8}T\d\d:\d\d:\d\dZ$")

        # The XML-RPC session works over JSON-RPC and the other way round.
        self.assertIsInstance(
            jsonrpc(self.master, "host.get_all", [self.session]).json["result"], list
        )
        self.assertIsInstance(xapi(self.rpc, "host.get_all", session), list)

        reply = jsonrpc(self.master, "session.login_with_password", [user, password + "-x"])
        self.assertEqual(reply.status, 200)
        self.assertIsNone(reply.json["result"])
        self.assertEqual(
            reply.json["error"],
            ["SESSION_AUTHENTICATION_FAILED", user, "Authentication failure"],
        )

        reply = jsonrpc(self.master, "session.logout", [session], version=None)
        self.assertEqual(reply.json, {"result": "", "error": None, "id": 0})
        reply = jsonrpc(self.master, "VM.get_all", [session])
        self.assertEqual(reply.json["error"], ["SESSION_INVALID", session])

        # A request XAPI cannot read (no id) is the HTTP 500 page.
        reply = jsonrpc_raw(
            self.master, b'{"jsonrpc": "2.0", "method": "VM.get_all", "params": []}'
        )
        self.assertEqual(reply.status, 500)
        self.assertEqual(reply.content_type, "text/html")
        self.assertIn("INTERNAL_ERROR: [ Invalid field 'id' in request body ]", reply.text)

    def test_10_system_list_methods(self):
        rpc = rpc_proxy(self.master)
        self.addCleanup(close_proxy, rpc)
        methods = rpc.system.listMethods()  # a bare array, no Status/Value
        self.assertIsInstance(methods, list)
        self.assertTrue(all(isinstance(m, str) for m in methods))
        for m in ("session.login_with_password", "session.logout",
                  "VM.get_all_records", "VM.snapshot", "VDI.destroy",
                  "task.cancel", "host.get_address"):
            self.assertIn(m, methods)
        self.assertNotIn("system.listMethods", methods)
        self.assertEqual(len(methods), len(set(methods)), "no duplicates")
        # Every listed method is known to the dispatcher (unknown methods
        # fail before the session is looked at, so a dead session will do).
        dead = xapi(rpc, "session.login_with_password",
                    self.ready["username"], self.ready["password"])
        xapi(rpc, "session.logout", dead)
        for m in methods:
            response = xapi_response(rpc, m, dead)
            if response["Status"] == "Failure":
                self.assertNotEqual(
                    response["ErrorDescription"][0], "MESSAGE_METHOD_UNKNOWN", m
                )
        # On a pool member too, without a session; and over JSON-RPC.
        member = rpc_proxy(self.host_urls["xcp-host2"])
        self.addCleanup(close_proxy, member)
        self.assertEqual(member.system.listMethods(), methods)
        reply = jsonrpc(self.host_urls["xcp-host2"], "system.listMethods", [])
        self.assertEqual(reply.json["result"], methods)


class SimJsonRpcLaterReleaseTest(unittest.TestCase):
    """JSON-RPC of a simulator modelling XCP-ng 8.2.1: answers in the
    request's version with its id, v2 errors as XAPI's error object."""

    proc = None

    @classmethod
    def setUpClass(cls):
        if not SIMULATOR.is_file():
            raise RuntimeError("xapi-sim not found at %s" % SIMULATOR)
        cls.class_dir = tempfile.mkdtemp(prefix="vmb-sim-jsonrpc-")
        cls.sim_log = None
        try:
            demo = run_tool([SIMULATOR, "--print-demo-fixture"]).stdout
            fixture = json.loads(demo)
            fixture.setdefault("settings", {})["product_version"] = "8.2.1"
            fixture["srs"].append(
                {"name_label": "huge", "shared": True,
                 "physical_size": str(2**62 + 1)}
            )
            path = os.path.join(cls.class_dir, "fixture.json")
            with open(path, "w") as f:
                json.dump(fixture, f)
            cls.proc, cls.ready, cls.sim_log_path, cls.sim_log = start_simulator(
                cls.class_dir, ["--fixture=" + path]
            )
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        stop_simulator(cls.proc)
        cls.proc = None
        if cls.sim_log is not None:
            cls.sim_log.close()
            cls.sim_log = None
        shutil.rmtree(cls.class_dir, ignore_errors=True)

    def test_v1_and_v2_shapes_and_int64(self):
        master = self.ready["master"]
        user, password = self.ready["username"], self.ready["password"]
        reply = jsonrpc(master, "session.login_with_password", [user, password], "abc")
        self.assertEqual(reply.content_type, "application/json")
        self.assertEqual(set(reply.json), {"jsonrpc", "result", "id"})
        self.assertEqual(reply.json["jsonrpc"], "2.0")
        self.assertEqual(reply.json["id"], "abc")
        session = reply.json["result"]

        reply = jsonrpc(master, "session.login_with_password", [user, "wrong"], 7)
        self.assertEqual(
            reply.json,
            {"jsonrpc": "2.0", "id": 7,
             "error": {"code": 1, "message": "SESSION_AUTHENTICATION_FAILED",
                       "data": [user, "Authentication failure"]}},
        )
        reply = jsonrpc(master, "session.login_with_password", [user, "wrong"], 8,
                        version=None)
        self.assertEqual(
            reply.json,
            {"result": None, "id": 8,
             "error": ["SESSION_AUTHENTICATION_FAILED", user, "Authentication failure"]},
        )

        # int64 beyond 2**53 survives JSON (Python's json reads exact ints).
        sr = jsonrpc(master, "SR.get_by_name_label", [session, "huge"]).json["result"][0]
        size = jsonrpc(master, "SR.get_physical_size", [session, sr]).json["result"]
        self.assertEqual(size, 2**62 + 1)
        rpc = rpc_proxy(master)
        self.addCleanup(close_proxy, rpc)
        self.assertEqual(xapi(rpc, "SR.get_physical_size", session, sr), str(2**62 + 1))

        records = jsonrpc(master, "VM.get_all_records", [session]).json["result"]
        self.assertIn("PROD-ubuntu14", {r["name_label"] for r in records.values()})
        member = self.ready["hosts"]["xcp-host2"]
        reply = jsonrpc(member, "VM.get_all", [session])
        self.assertEqual(reply.json["error"]["message"], "HOST_IS_SLAVE")
        self.assertEqual(reply.json["error"]["data"], ["127.0.0.2"])
        self.assertEqual(jsonrpc(master, "session.logout", [session]).json["result"], "")
        reply = jsonrpc(master, "VM.get_all", [session])
        self.assertEqual(reply.json["error"]["message"], "SESSION_INVALID")


if __name__ == "__main__":
    unittest.main()
