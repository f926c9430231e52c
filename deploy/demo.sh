#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The demo, on a simulated pool: installs what is missing, builds, starts
# xapi-sim (a 3-host XenServer pool on 127.0.0.2-4), shows what vmbackup sees
# of it, previews a VmBackup.py config and then backs the pool up into
# ./demo-backups (twice: the second run shows retention), as cron would.
#
#   ./deploy/demo.sh            run the demo and stop the simulator at the end
#   KEEP_RUNNING=1 ./deploy/demo.sh   leave the simulator running (Ctrl-C stops it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
BUILD_DIR=${BUILD_DIR:-build}
run_dir="$root/demo-run"

./deploy/install-deps.sh

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j"${JOBS:-2}" --target xapi-sim vmbackup vmbackup-coordinator vmbackup-agent

rm -rf "$run_dir"
mkdir -p "$run_dir"
"$BUILD_DIR/bin/xapi-sim" --ready_file="$run_dir/ready.json" --port=0 >"$run_dir/xapi-sim.log" 2>&1 &
sim_pid=$!
daemon_pids=()
sink_pid=
stop() {
  for pid in "${daemon_pids[@]}" $sink_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${daemon_pids[@]}" $sink_pid; do wait "$pid" 2>/dev/null || true; done
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
}
trap stop EXIT

for _ in $(seq 1 300); do
  [ -s "$run_dir/ready.json" ] && break
  if ! kill -0 "$sim_pid" 2>/dev/null; then
    echo "demo: xapi-sim failed to start:" >&2
    cat "$run_dir/xapi-sim.log" >&2
    exit 2
  fi
  sleep 0.1
done
[ -s "$run_dir/ready.json" ] || { echo "demo: xapi-sim not ready after 30 s" >&2; exit 2; }

read -r master password < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["master"], r["password"])' "$run_dir/ready.json")

# A VmBackup password file (base64 of the password, mode 0600), as the seed's
# create-password-file writes it.
umask 077
printf '%s' "$password" | base64 -w0 >"$run_dir/VmBackup.pass"

echo
echo "== Simulated pool: master $master (log: demo-run/xapi-sim.log)"
echo "== vmbackup --xapi-url $master inventory demo-run/VmBackup.pass"
echo
"$BUILD_DIR/bin/vmbackup" --xapi-url "$master" inventory "$run_dir/VmBackup.pass"

# A config file in VmBackup.py's format, previewed against the pool, then
# run. The demo's share starts empty each time.
rm -rf "$root/demo-backups"
mkdir -p "$root/demo-backups"
# An SMTP server on loopback to receive the e-mail report (Debian's
# python3-aiosmtpd, when installed): the demo shows what a run mails.
mail_lines=
if /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
  mkdir -p "$run_dir/mail"
  /usr/bin/python3 "$root/tests/python/smtp_sink.py" --port-file="$run_dir/smtp.port" \
    --out-dir="$run_dir/mail" >"$run_dir/smtp.log" 2>&1 &
  sink_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$run_dir/smtp.port" ] && break
    sleep 0.1
  done
  if [ -s "$run_dir/smtp.port" ]; then
    mail_lines="mail_to=backup-admins@example.com
mail_from=vmbackup@example.com
mail_smtp_url=smtp://127.0.0.1:$(cat "$run_dir/smtp.port")
# the demo's relay is local and plain; a real one gets STARTTLS (the default)
mail_starttls=false"
  fi
fi
cat >"$run_dir/weekend.cfg" <<CFG
# Weekend VMs (the README's weekend.cfg, on the demo pool)
backup_dir=$root/demo-backups
status_log=$run_dir/status.log
max_backups=3
pool_db_backup=1
per_host_concurrency=2
compress=zstd
exclude=PROD-ubuntu12-benchmark
vdi-export=PROD-CentOS7-large-user-disks
vm-export=PROD-ubuntu14
vm-export=DEV-RH.*:2
vm-export=PROD-WinSvr
vm-export=TEST-.*
$mail_lines
CFG
echo
echo "== vmbackup --xapi-url $master demo-run/VmBackup.pass demo-run/weekend.cfg preview"
echo
code=0
"$BUILD_DIR/bin/vmbackup" --xapi-url "$master" "$run_dir/VmBackup.pass" "$run_dir/weekend.cfg" \
  preview || code=$?
echo "(preview exit code $code: 0 valid, 1 valid with warnings, 2 invalid)"

# The daemons: a coordinator, and one agent per pool member (each exports
# the VMs of its own host), talking mutual TLS with certificates of a CA made
# for the demo. On a real pool they run under systemd (docs/operations.md,
# docs/security.md).
# Each host's uuid and name, asked with Python's own XML-RPC client.
mapfile -t pool_hosts < <(python3 -c '
import sys, xmlrpc.client
x = xmlrpc.client.ServerProxy(sys.argv[1])
s = x.session.login_with_password("root", sys.argv[2], "1.2", "demo")["Value"]
for ref, h in x.host.get_all_records(s)["Value"].items():
    print(h["uuid"], h["name_label"])
x.session.logout(s)' "$master" "$password")
cert_specs=()
for line in "${pool_hosts[@]}"; do
  read -r host_uuid host_name <<<"$line"
  cert_specs+=("$host_name:$host_uuid")
done
certs="$run_dir/certs"
echo
echo "== deploy/gen-certs.sh demo-run/certs localhost ${cert_specs[*]}"
"$root/deploy/gen-certs.sh" "$certs" localhost "${cert_specs[@]}" | sed 's/^/   /'
# The operator's flags for the vmbackup CLI, in a flag file.
cat >"$run_dir/cli.flags" <<FLAGS
--mtls-ca=$certs/ca.crt
--mtls-cert=$certs/cli.crt
--mtls-key=$certs/cli.key
FLAGS
export VMBACKUP_FLAGFILE="$run_dir/cli.flags"
"$BUILD_DIR/bin/vmbackup-coordinator" --listen=127.0.0.1:0 \
  --mtls-ca="$certs/ca.crt" --mtls-cert="$certs/coordinator.crt" \
  --mtls-key="$certs/coordinator.key" \
  --xapi-url="$master" --password-file="$run_dir/VmBackup.pass" \
  --state-dir="$run_dir/coordinator" --port-file="$run_dir/coordinator.port" \
  >"$run_dir/coordinator.log" 2>&1 &
daemon_pids+=($!)
for _ in $(seq 1 300); do
  [ -s "$run_dir/coordinator.port" ] && break
  sleep 0.1
done
[ -s "$run_dir/coordinator.port" ] || { echo "demo: the coordinator did not start:" >&2; cat "$run_dir/coordinator.log" >&2; exit 2; }
coordinator="127.0.0.1:$(cat "$run_dir/coordinator.port")"
export VMBACKUP_COORDINATOR="$coordinator"
for line in "${pool_hosts[@]}"; do
  read -r host_uuid host_name <<<"$line"
  "$BUILD_DIR/bin/vmbackup-agent" --coordinator="$coordinator" \
    --mtls-ca="$certs/ca.crt" --mtls-cert="$certs/agent-$host_name.crt" \
    --mtls-key="$certs/agent-$host_name.key" \
    --host-uuid="$host_uuid" --host-name="$host_name" \
    --state-dir="$run_dir/agent-$host_name" >"$run_dir/agent-$host_name.log" 2>&1 &
  daemon_pids+=($!)
done
for _ in $(seq 1 300); do
  live=$("$BUILD_DIR/bin/vmbackup" agents --json 2>/dev/null | python3 -c '
import json, sys
print(sum(1 for a in json.load(sys.stdin).get("agents", []) if a.get("live")))' 2>/dev/null || echo 0)
  [ "$live" = "$(( ${#daemon_pids[@]} - 1 ))" ] && break
  sleep 0.1
done

echo
echo "== run 1, distributed over mutual TLS: vmbackup run demo-run/weekend.cfg"
echo "   (VMBACKUP_COORDINATOR=$coordinator; VMBACKUP_FLAGFILE=demo-run/cli.flags"
echo "   gives --mtls-ca, --mtls-cert and --mtls-key)"
echo
code=0
"$BUILD_DIR/bin/vmbackup" run "$run_dir/weekend.cfg" || code=$?
echo "(run exit code $code: 0 success, 1 warnings, 2 errors)"
echo
echo "== vmbackup agents"
"$BUILD_DIR/bin/vmbackup" agents || true
echo
echo "== vmbackup status (the run above)"
"$BUILD_DIR/bin/vmbackup" status || true
if [ -n "$mail_lines" ]; then
  for _ in $(seq 1 100); do
    [ -s "$run_dir/mail/1.json" ] && break
    sleep 0.1
  done
  echo
  echo "== The e-mail report the run sent (received by demo-run/mail/, an SMTP server on loopback)"
  /usr/bin/python3 -c '
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("   (no e-mail arrived: see demo-run/coordinator.log)")
print("From:    " + m["mail_from"])
print("To:      " + ", ".join(m["rcpt_tos"]))
print("Subject: " + m["subject"])
print()
print(m["text"].replace("\r\n", "\n"))' "$run_dir/mail/1.json"
fi

echo
echo "== run 2, the seed's cron form, in one process: vmbackup --xapi-url $master demo-run/VmBackup.pass demo-run/weekend.cfg"
echo
code=0
"$BUILD_DIR/bin/vmbackup" --xapi-url "$master" "$run_dir/VmBackup.pass" \
  "$run_dir/weekend.cfg" 2>>"$run_dir/vmbackup-diagnostics.log" || code=$?
echo "(run exit code $code: 0 success, 1 warnings, 2 errors)"

echo
echo "== What is on the share (demo-backups/): VM folders and their backups"
(cd "$root/demo-backups" && find . -mindepth 1 -maxdepth 2 | sort | sed 's/^\.\///')
newest=$(cd "$root/demo-backups" && ls -d PROD-ubuntu14/backup-* | tail -1)
echo
echo "== One backup: demo-backups/$newest"
(cd "$root/demo-backups/$newest" && find . -type f | sort | sed 's/^\.\///' | xargs ls -l)
echo
echo "== Its manifest.json"
cat "$root/demo-backups/$newest/manifest.json"
echo
echo "== Restore it through an agent: vmbackup restore demo-backups/$newest --name 'PROD-ubuntu14 restore test'"
echo "   (the coordinator picks the host that sees the SR; its agent uploads the"
echo "   file, checked against manifest.json as it streams)"
echo
code=0
"$BUILD_DIR/bin/vmbackup" restore "$root/demo-backups/$newest" \
  --name "PROD-ubuntu14 restore test" || code=$?
echo "(restore exit code $code: 0 restored, 1 with warnings, 2 not restored)"
echo
echo "== A vdi-export, by VM and date: vmbackup restore --vm PROD-CentOS7-large-user-disks --backup-dir demo-backups --dry-run"
echo
"$BUILD_DIR/bin/vmbackup" restore --vm PROD-CentOS7-large-user-disks \
  --backup-dir "$root/demo-backups" --dry-run || true
echo
echo "== status.log (demo-run/status.log)"
cat "$run_dir/status.log"
echo
echo "== Snapshots left in the pool by the runs: $(curl -s "$master/sim/state" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(1 for n in s.get("snapshot_names", []) if n.startswith("vmbackup-")))')"

cat <<TXT

The simulated pool's password is in demo-run/ready.json. Run the demo with
KEEP_RUNNING=1 to keep the pool up and talk to it with any XenAPI client, for
example Python's own:
  python3 -c "import xmlrpc.client as x; print(x.ServerProxy('$master').session.login_with_password('root', '$password'))"
and look at what it holds: curl $master/sim/state
Each backup folder holds manifest.json; check a file with sha256sum. The
run's diagnostics (one line per job step) are in demo-run/vmbackup-diagnostics.log.
TXT

if [ "${KEEP_RUNNING:-0}" = 1 ]; then
  echo
  echo "Simulator left running (pid $sim_pid); press Ctrl-C to stop it."
  wait "$sim_pid"
fi
