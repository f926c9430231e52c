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

With --export it runs the vm-export benchmark instead: a whole backup job of
the same VM with build/bench/export_bench (snapshot, verified export into a
file, fsync, metadata, cleanup, commit) against `curl -s -o FILE` of the same
/export URL, both writing to the same filesystem, interleaved, and prints
wall and CPU time, their ratios to curl's, and export_bench's peak RSS.
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


def export_benchmark(build, ready, args, work):
    """The vm-export job against curl -o FILE of the same URL."""
    import shutil
    api = xmlrpc.client.ServerProxy(ready["master"])
    session = api.session.login_with_password("root", "bench")["Value"]
    vm = api.VM.get_by_name_label(session, "big")["Value"][0]
    cookie_file = os.path.join(work, "cookies")
    host = ready["master"].split("//")[1].split(":")[0]
    with open(cookie_file, "w") as f:  # keeps the session out of curl's argv
        f.write("%s\tFALSE\t/\tFALSE\t0\tsession_id\t%s\n" % (host, session))
    url = ready["master"] + "/export?ref=" + vm
    bench = os.path.join(build, "bench", "export_bench")
    curl_file = os.path.join(work, "curl.xva")
    backups = os.path.join(work, "backups")
    curl_runs, synced, ours = [], [], []
    for _ in range(args.repeat):
        if os.path.exists(curl_file):
            os.remove(curl_file)
        curl_runs.append(timed(["curl", "-s", "-b", cookie_file, "-o", curl_file,
                                "-w", "%{size_download}", url]))
        # What curl leaves in the page cache, made durable as a backup must be.
        s_wall, s_cpu, _, _ = timed(["sync", curl_file])
        synced.append((curl_runs[-1][0] + s_wall, curl_runs[-1][1] + s_cpu))
        os.remove(curl_file)
        shutil.rmtree(backups, ignore_errors=True)
        os.makedirs(backups)
        wall, cpu, _, out = timed([bench, ready["master"], "h1", "big", backups], "bench\n")
        ours.append((wall, cpu, json.loads(out)))
        shutil.rmtree(backups, ignore_errors=True)
    c_wall = statistics.median(r[0] for r in curl_runs)
    c_cpu = statistics.median(r[1] for r in curl_runs)
    nbytes = int(curl_runs[0][3])
    o_wall = statistics.median(r[0] for r in ours)
    o_cpu = statistics.median(r[1] for r in ours)
    o_export = statistics.median(r[2]["export_wall"] for r in ours)
    o_export_cpu = statistics.median(r[2]["export_cpu"] for r in ours)
    rss = max(r[2]["maxrss_kib"] for r in ours) / 1024
    print("| client | bytes | wall s | MiB/s | CPU s | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    print("| curl -s -o FILE | %d | %.2f | %.0f | %.2f | - |" % (nbytes, c_wall, nbytes / c_wall / 2**20, c_cpu))
    cs_wall = statistics.median(r[0] for r in synced)
    cs_cpu = statistics.median(r[1] for r in synced)
    print("| curl -s -o FILE; sync FILE | %d | %.2f | %.0f | %.2f | - |" % (nbytes, cs_wall, nbytes / cs_wall / 2**20, cs_cpu))
    print("| vmbackup job (whole) | %d | %.2f | %.0f | %.2f | %.1f MiB |" % (
        ours[0][2]["bytes"], o_wall, ours[0][2]["bytes"] / o_wall / 2**20, o_cpu, rss))
    print("| vmbackup job (export phase) | | %.2f | %.0f | %.2f | |" % (
        o_export, ours[0][2]["bytes"] / o_export / 2**20, o_export_cpu))
    print("\nwall: %.2fx curl (whole job), %.2fx (export phase), %.2fx curl+sync (whole job);"
          " CPU: %.2fx curl (whole job), %.2fx (export phase); RSS %.1f MiB"
          % (o_wall / c_wall, o_export / c_wall, o_wall / cs_wall, o_cpu / c_cpu,
             o_export_cpu / c_cpu, rss))
    print("(medians of %d interleaved runs; CPU is user+system of each process)" % args.repeat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size-gib", type=int, default=2)
    ap.add_argument("--export", action="store_true",
                    help="the vm-export job benchmark (see above)")
    ap.add_argument("--workdir", default=None,
                    help="where the exports are written (default: a temp dir)")
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
    if args.export:
        try:
            if args.workdir:
                os.makedirs(args.workdir, exist_ok=True)
            export_benchmark(build, ready, args, args.workdir or work)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        return
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
