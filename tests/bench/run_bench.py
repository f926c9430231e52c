#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Data-plane benchmark: the simulator's stream rate and our client against curl.

Starts xapi-sim with one halted VM whose disk is 2 GiB, then, in the same run
and interleaved, downloads each export with `curl -s -o /dev/null` and with
build/bench/stream_bench (the project's XapiStreamGet), REPEAT times
each, and prints a Markdown table of medians: wall time, MiB/s, CPU time
(user + system) and peak RSS. Nothing here is a pass/fail test; the figures go
to docs/benchmarks.md.

  tests/bench/run_bench.py [--build build] [--repeat 3] [--size-gib 2]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client


def start_sim(build, fixture_path, workdir):
    ready = os.path.join(workdir, "ready.json")
    log = open(os.path.join(workdir, "sim.log"), "w")
    proc = subprocess.Popen([os.path.join(build, "bin", "xapi-sim"), "--ready_file=" + ready,
                             "--port=0", "--fixture=" + fixture_path], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(ready):
            with open(ready) as f:
                return proc, json.load(f)
        if proc.poll() is not None:
            sys.exit("xapi-sim exited; see " + log.name)
        time.sleep(0.05)
    proc.kill()
    sys.exit("xapi-sim not ready after 30 s")


def timed(argv, stdin_text=None):
    """Runs argv; returns (wall seconds, cpu seconds, peak RSS KiB, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(argv, input=stdin_text, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size-gib", type=int, default=2)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    size = args.size_gib << 30
    work = tempfile.mkdtemp(prefix="vmb-bench-")
    fixture = {
        "credentials": {"password": "bench"},
        "hosts": [{"name_label": "h1"}],
        "srs": [{"name_label": "nfs", "type": "nfs", "shared": True}],
        "vms": [{"name_label": "big", "power_state": "Halted",
                 "disks": [{"size": str(size), "sr": "nfs"}]}],
    }
    fixture_path = os.path.join(work, "fixture.json")
    with open(fixture_path, "w") as f:
        json.dump(fixture, f)
    proc, ready = start_sim(build, fixture_path, work)
    try:
        api = xmlrpc.client.ServerProxy(ready["master"])
        session = api.session.login_with_password("root", "bench")["Value"]
        vm = api.VM.get_by_name_label(session, "big")["Value"][0]
        vbd = api.VM.get_record(session, vm)["Value"]["VBDs"][0]
        vdi = api.VBD.get_record(session, vbd)["Value"]["VDI"]
        cases = [
            ("raw export (2 GiB)", "/export_raw_vdi", {"vdi": vdi, "format": "raw"}),
            ("XVA export", "/export", {"ref": vm}),
            ("XVA export, zstd", "/export", {"ref": vm, "use_compression": "zstd"}),
        ]
        bench = os.path.join(build, "bench", "stream_bench")
        cookie_file = os.path.join(work, "cookies")
        with open(cookie_file, "w") as f:  # keeps the session out of curl's argv
            f.write("%s\tFALSE\t/\tFALSE\t0\tsession_id\t%s\n" % (ready["master"].split("//")[1].split(":")[0], session))
        rows = []
        for label, path, query in cases:
            q = "&".join("%s=%s" % kv for kv in query.items())
            url = ready["master"] + path + "?" + q
            results = {"curl": [], "ours": [], "ours+xxh64": []}
            for _ in range(args.repeat):
                results["curl"].append(timed(["curl", "-s", "-b", cookie_file, "-o", "/dev/null",
                                              "-w", "%{size_download}", url]))
                results["ours"].append(timed([bench, ready["master"], path] +
                                             ["%s=%s" % kv for kv in query.items()],
                                             session + "\n"))
                results["ours+xxh64"].append(timed([bench, ready["master"], path, "--sink=xxh64"] +
                                                   ["%s=%s" % kv for kv in query.items()],
                                                   session + "\n"))
            for who, runs in results.items():
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                if who == "curl":
                    nbytes = int(runs[0][3])
                    rss = "-"
                else:
                    lines = [json.loads(r[3]) for r in runs]
                    nbytes = lines[0]["bytes"]
                    rss = "%.1f MiB" % (max(l["maxrss_kib"] for l in lines) / 1024)
                rows.append((label, who, nbytes, wall, nbytes / wall / 2**20, cpu, rss))
        print("| export | client | bytes | wall s | MiB/s | CPU s | peak RSS |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for label, who, nbytes, wall, rate, cpu, rss in rows:
            print("| %s | %s | %d | %.2f | %.0f | %.2f | %s |" % (label, who, nbytes, wall, rate, cpu, rss))
        print("\n(medians of %d runs; CPU is the client's user+system time; curl's RSS is not"
              " measured separately because getrusage reports the maximum over all children)"
              % args.repeat)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
