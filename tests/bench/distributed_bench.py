#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Distributed-run benchmarks: load spreading and scale.

Both start xapi-sim with a pool of their own, vmbackup-coordinator and one
vmbackup-agent per simulated host (real processes on loopback, as
deploy/demo.sh does), and print Markdown tables for docs/benchmarks.md.
Nothing here is a pass/fail test.

  tests/bench/distributed_bench.py spread [--build build] [--repeat 3]
  tests/bench/distributed_bench.py scale  [--build build] [--repeat 3] [--hosts 50] [--vms 1000]

spread: 4 hosts, each sending at most 25 MiB/s (the simulator's per-host
BANDWIDTH fault), 16 VMs with one 64 MiB disk: 10 running, placed 4/3/2/1,
and 6 halted on the shared SR. In the same run, interleaved, REPEAT times
each: the distributed run (`vmbackup run --coordinator`), the standalone run
(`vmbackup PASSWORD-FILE CONFIG`, same config) and the seed's way (one VM at
a time: the standalone run with max_concurrency=1). The ideal makespan is
the best placement's largest per-host share of the bytes actually exported
(running VMs fixed, halted VMs on any host; every placement is tried) at
25 MiB/s.

scale: HOSTS hosts with an agent each, VMS running VMs of 1 MiB spread evenly.
One distributed run on a fresh pool, REPEAT times (each figure per run and
their median); meanwhile `vmbackup status` is asked in a loop.
Reports the coordinator's CPU time per VM (user + system, from /proc, over the
run), its peak RSS (VmHWM), the status latency (median, p99, max; each call
is a whole CLI process), the latency of the call itself (build/bench/
status_bench asking GetRun in a loop from one process), the same once the run is over (and with --json, and
a `vmbackup runs` call for the process's own cost) and how many VMs were
committed. With --remote-nice N the simulator and the agents, which stand
for the pool's hosts, run at nice N, so that the coordinator and the CLI are
not queued behind 51 processes that would be other machines in a real pool.
"""
import argparse
import base64
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client

MIB = 1 << 20


def wait_for(predicate, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    sys.exit("timed out waiting for " + what)


class Pool:
    """xapi-sim, the coordinator and one agent per host, in `work`."""

    def __init__(self, build, work, fixture, max_jobs=4, remote_nice=0):
        self.build = build
        # The simulator and the agents stand for the pool's hosts, other
        # machines in a real pool: at a nice level above 0 they do not queue
        # the coordinator and the CLI behind them on this one machine.
        self.remote_nice = remote_nice
        self.work = work
        self.procs = []
        fixture_path = os.path.join(work, "fixture.json")
        with open(fixture_path, "w") as f:
            json.dump(fixture, f)
        ready_path = os.path.join(work, "ready.json")
        self._spawn("xapi-sim", ["--ready_file=" + ready_path, "--port=0",
                                 "--fixture=" + fixture_path], nice=remote_nice)
        wait_for(lambda: os.path.exists(ready_path) and os.path.getsize(ready_path) > 0,
                 "xapi-sim")
        with open(ready_path) as f:
            ready = json.load(f)
        self.master = ready["master"]
        self.password = ready["password"]
        self.password_file = os.path.join(work, "pool.pass")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, base64.b64encode(self.password.encode()))
        os.close(fd)
        port_file = os.path.join(work, "coordinator.port")
        self.coordinator = self._spawn("vmbackup-coordinator", [
            "--listen=127.0.0.1:0", "--plaintext", "--xapi-url=" + self.master,
            "--password-file=" + self.password_file,
            "--state-dir=" + os.path.join(work, "coordinator"),
            "--heartbeat-interval=1s", "--port-file=" + port_file])
        wait_for(lambda: os.path.exists(port_file) and os.path.getsize(port_file) > 0,
                 "the coordinator")
        with open(port_file) as f:
            self.address = "127.0.0.1:" + f.read().strip()
        api = xmlrpc.client.ServerProxy(self.master)
        session = api.session.login_with_password("root", self.password, "1.2", "bench")["Value"]
        hosts = api.host.get_all_records(session)["Value"]
        api.session.logout(session)
        for h in hosts.values():
            name = h["name_label"]
            self._spawn("vmbackup-agent", [
                "--coordinator=" + self.address, "--plaintext",
                "--host-uuid=" + h["uuid"], "--host-name=" + name,
                "--state-dir=" + os.path.join(work, "agent-" + name),
                "--max-jobs=%d" % max_jobs], log="agent-" + name, nice=remote_nice)

        def all_live():
            out = self.cli(["agents", "--json"], check=False)
            if out is None:
                return False
            return sum(1 for a in json.loads(out).get("agents", []) if a.get("live")) == len(hosts)
        wait_for(all_live, "the agents", timeout=120)
        # A run plans once the agents of an earlier coordinator process had
        # their chance to come back (3 heartbeat intervals after its start).
        time.sleep(3.5)

    def _spawn(self, binary, args, log=None, nice=0):
        out = open(os.path.join(self.work, (log or binary) + ".log"), "w")
        p = subprocess.Popen([os.path.join(self.build, "bin", binary)] + args,
                             stdout=out, stderr=out,
                             preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self.procs.append(p)
        return p

    def cli(self, args, check=True, binary=None):
        r = subprocess.run([binary or os.path.join(self.build, "bin", "vmbackup")] + args +
                           ["--coordinator=" + self.address, "--plaintext"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            if check:
                sys.exit("vmbackup %s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                            r.stdout, r.stderr))
            return None
        return r.stdout

    def run_distributed(self, config):
        t = time.perf_counter()
        r = subprocess.run([os.path.join(self.build, "bin", "vmbackup"), "run", config,
                            "--coordinator=" + self.address, "--plaintext"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit("distributed run failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
        return wall, json.loads(self.cli(["status", "--json"]))

    def run_standalone(self, config):
        t = time.perf_counter()
        r = subprocess.run([os.path.join(self.build, "bin", "vmbackup"), "--xapi-url", self.master,
                            self.password_file, config], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit("standalone run failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
        return wall

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def write_config(work, name, backups, lines):
    shutil.rmtree(backups, ignore_errors=True)
    os.makedirs(backups)
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write("backup_dir=%s\n" % backups)
        f.write("status_log=%s\n" % os.path.join(work, "status.log"))
        f.write("".join(l + "\n" for l in lines))
    return path


def ideal_makespan(vms, hosts, rate):
    """The best placement's largest per-host share / rate: running VMs stay,
    halted ones go anywhere (every placement is tried)."""
    fixed = {h: 0 for h in hosts}
    movable = []
    for name, (host, nbytes) in vms.items():
        if host:
            fixed[host] += nbytes
        else:
            movable.append(nbytes)
    best = None
    for placement in itertools.product(hosts, repeat=len(movable)):
        load = dict(fixed)
        for h, nbytes in zip(placement, movable):
            load[h] += nbytes
        worst = max(load.values())
        best = worst if best is None else min(best, worst)
    return best / rate, best


def spread(args, build, work):
    rate = 25 * MIB
    hosts = ["h1", "h2", "h3", "h4"]
    placed = {"h1": 4, "h2": 3, "h3": 2, "h4": 1}
    vms = []
    for h, n in placed.items():
        for i in range(n):
            vms.append({"name_label": "run-%s-%d" % (h, i + 1), "resident_on": h,
                        "disks": [{"size": str(64 * MIB), "sr": "nfs"}]})
    for i in range(6):
        vms.append({"name_label": "halted-%d" % (i + 1), "power_state": "Halted",
                    "disks": [{"size": str(64 * MIB), "sr": "nfs"}]})
    fixture = {
        "credentials": {"password": "bench"},
        "hosts": [{"name_label": h} for h in hosts],
        "srs": [{"name_label": "nfs", "type": "nfs", "shared": True, "default_sr": True}],
        "vms": vms,
        "faults": [{"id": "25MiB/s per host", "kind": "BANDWIDTH",
                    "bytes_per_second": str(rate)}],
    }
    pool = Pool(build, work, fixture)
    backups = os.path.join(work, "backups")
    common = ["vm-export=.*", "max_backups=1"]
    try:
        dist, alone, seq, ideal, placements = [], [], [], [], []
        for _ in range(args.repeat):
            cfg = write_config(work, "spread.cfg", backups, common + ["per_host_concurrency=4"])
            wall, summary = pool.run_distributed(cfg)
            dist.append(wall)
            exported = {}
            load = {h: 0 for h in hosts}
            for vm in summary["vms"]:
                running = vm["vm_name"].startswith("run-")
                nbytes = int(vm["status"].get("backup_bytes", 0))
                exported[vm["vm_name"]] = (vm["host_name"] if running else None, nbytes)
                load[vm["host_name"]] += nbytes
            if args.verbose:
                t0 = int(summary["started_unix_ms"])
                for vm in summary["vms"]:
                    st = vm["status"]
                    print("  %-10s %s %6.2f..%6.2f s %5.1f MiB" % (
                        vm["vm_name"], vm["host_name"], (int(st["started_unix_ms"]) - t0) / 1000,
                        (int(st["finished_unix_ms"]) - t0) / 1000,
                        int(st.get("backup_bytes", 0)) / MIB), file=sys.stderr)
                print("  run: %.2f s by the coordinator, %.2f s by the CLI" % (
                    (int(summary["finished_unix_ms"]) - t0) / 1000, wall), file=sys.stderr)
            i_s, i_bytes = ideal_makespan(exported, hosts, rate)
            ideal.append(i_s)
            placements.append(" ".join("%s %.0f MiB" % (h, load[h] / MIB) for h in hosts) +
                              " (best: %.0f MiB)" % (i_bytes / MIB))
            cfg = write_config(work, "spread.cfg", backups, common + ["per_host_concurrency=4"])
            alone.append(pool.run_standalone(cfg))
            cfg = write_config(work, "seq.cfg", backups, common + ["max_concurrency=1"])
            seq.append(pool.run_standalone(cfg))
        d, a, s, i = (statistics.median(x) for x in (dist, alone, seq, ideal))
        print("| run | makespan s | × ideal | speed-up vs one at a time |")
        print("|---|---:|---:|---:|")
        print("| ideal (best placement's largest share at 25 MiB/s) | %.2f | 1.00 | %.2f |" % (i, s / i))
        print("| distributed: coordinator + 4 agents | %.2f | %.3f | %.2f |" % (d, d / i, s / d))
        print("| standalone, in one process (same config) | %.2f | %.3f | %.2f |" % (a, a / i, s / a))
        print("| one VM at a time (the seed's way) | %.2f | %.3f | 1.00 |" % (s, s / i))
        print("\nper-host bytes of the distributed runs: " + "; ".join(placements))
        print("(medians of %d interleaved runs; makespan = wall time of the vmbackup command)"
              % args.repeat)
    finally:
        pool.close()


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def proc_hwm_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def scale_once(args, build, work):
    """One pool, one run: the run's figures."""
    hosts = ["h%02d" % (i + 1) for i in range(args.hosts)]
    vms = [{"name_label": "vm-%04d" % i, "resident_on": hosts[i % len(hosts)],
            "disks": [{"size": str(MIB), "sr": "nfs"}]} for i in range(args.vms)]
    fixture = {
        "credentials": {"password": "bench"},
        "hosts": [{"name_label": h} for h in hosts],
        "srs": [{"name_label": "nfs", "type": "nfs", "shared": True, "default_sr": True}],
        "vms": vms,
    }
    pool = Pool(build, work, fixture, max_jobs=2, remote_nice=args.remote_nice)
    backups = os.path.join(work, "backups")
    try:
        cfg = write_config(work, "scale.cfg", backups,
                           ["vm-export=.*", "max_backups=1", "per_host_concurrency=2"])
        pid = pool.coordinator.pid
        cpu_before = proc_cpu_seconds(pid)
        # One latency list per CLI binary; the loop takes them in turn, so
        # each sees the same run.
        clis = args.status_cli or [os.path.join(build, "bin", "vmbackup")]
        latencies_of = {c: [] for c in clis}
        done = threading.Event()

        def ask():
            while not done.is_set():
                for c in clis:
                    t = time.perf_counter()
                    pool.cli(["status"], check=False, binary=c)
                    latencies_of[c].append(time.perf_counter() - t)
        asker = threading.Thread(target=ask)
        asker.start()
        rpc = subprocess.Popen([os.path.join(build, "bench", "status_bench"), pool.address],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        wall, summary = pool.run_distributed(cfg)
        done.set()
        asker.join()
        rpc_out, _ = rpc.communicate()  # closes its input: it stops
        rpc_figures = json.loads(rpc_out)
        cpu = proc_cpu_seconds(pid) - cpu_before
        hwm = proc_hwm_mib(pid)
        idle, idle_json = [], []
        for _ in range(10):
            t = time.perf_counter()
            pool.cli(["status"])
            idle.append(time.perf_counter() - t)
            t = time.perf_counter()
            pool.cli(["status", "--json"])
            idle_json.append(time.perf_counter() - t)
        t = time.perf_counter()
        pool.cli(["runs", "--limit", "1"])
        runs_latency = time.perf_counter() - t
        committed = sum(1 for vm in summary["vms"]
                        if vm["status"].get("phase") == "JOB_PHASE_SUCCEEDED")
        def figures(latencies):
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            return (statistics.median(latencies) * 1000, p99 * 1000,
                    latencies[-1] * 1000, len(latencies))
        return {
            "hosts": len(hosts), "vms": len(vms), "wall": wall,
            "cpu_ms": cpu * 1000 / len(vms), "hwm": hwm,
            "status": [figures(latencies_of[c]) for c in clis],
            "rpc": (rpc_figures.get("median_ms", 0), rpc_figures.get("p99_ms", 0),
                    rpc_figures.get("max_ms", 0), rpc_figures.get("calls", 0)),
            "idle": (statistics.median(idle) * 1000, statistics.median(idle_json) * 1000),
            "runs": runs_latency * 1000, "committed": committed,
        }
    finally:
        pool.close()


def scale(args, build, work):
    runs = []
    for i in range(args.repeat):
        sub = os.path.join(work, "run-%d" % (i + 1))
        os.makedirs(sub)
        runs.append(scale_once(args, build, sub))
    med = statistics.median

    def row(name, cells, median, target=""):
        print("| %s | %s | %s | %s |" % (name, " | ".join(cells), median, target))
    print("| figure | %s | median | target |" % " | ".join(
        "run %d" % (i + 1) for i in range(len(runs))))
    print("|---|%s---:|---:|" % ("---:|" * len(runs)))
    r0 = runs[0]
    row("hosts / agents / VMs", ["%d / %d / %d" % (r0["hosts"], r0["hosts"], r0["vms"])] * len(runs),
        "")
    row("run wall time, s", ["%.1f" % r["wall"] for r in runs], "%.1f" % med(r["wall"] for r in runs))
    row("coordinator CPU per VM, ms", ["%.2f" % r["cpu_ms"] for r in runs],
        "**%.2f**" % med(r["cpu_ms"] for r in runs), "≤ 10")
    row("coordinator peak RSS (VmHWM), MiB", ["%.1f" % r["hwm"] for r in runs],
        "**%.1f**" % med(r["hwm"] for r in runs), "≤ 200")
    for i, c in enumerate(args.status_cli or ["vmbackup"]):
        row("`%s status` during the run: median / p99 / max, ms (calls)" % c,
            ["%.0f / %.0f / %.0f (%d)" % r["status"][i] for r in runs],
            "p99 **%.0f**" % med(r["status"][i][1] for r in runs), "p99 ≤ 100")
    row("`Control.GetRun` during the run (`status_bench`): median / p99 / max, ms (calls)",
        ["%.1f / %.1f / %.1f (%d)" % r["rpc"] for r in runs],
        "p99 %.1f" % med(r["rpc"][1] for r in runs))
    row("after the run (idle), median of 10: `vmbackup status` / `--json`, ms",
        ["%.0f / %.0f" % r["idle"] for r in runs],
        "%.0f / %.0f" % (med(r["idle"][0] for r in runs), med(r["idle"][1] for r in runs)))
    row("`vmbackup runs --limit 1` after the run (the CLI process alone, about), ms",
        ["%.0f" % r["runs"] for r in runs], "%.0f" % med(r["runs"] for r in runs))
    row("VMs committed", ["%d of %d" % (r["committed"], r["vms"]) for r in runs],
        "", "all")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["spread", "scale"])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--status-cli", action="append", default=[],
                    help="scale: a vmbackup binary to ask `status` with during the "
                    "run (repeatable: each is asked in turn; default build/bin/vmbackup)")
    ap.add_argument("--verbose", action="store_true", help="each VM's timing (spread)")
    ap.add_argument("--remote-nice", type=int, default=0,
                    help="scale: run the simulator and the agents (the pool's other "
                         "machines) at this nice level")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="vmb-dist-bench-")
    try:
        (spread if args.mode == "spread" else scale)(args, build, work)
    finally:
        if args.keep:
            print("work directory: " + work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
