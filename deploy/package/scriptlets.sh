# SPDX-License-Identifier: Apache-2.0
# What vmbackup's .deb and .rpm do around install, upgrade and removal
# (docs/install.md). deploy/CMakeLists.txt puts these functions, then one
# call, into each maintainer script and scriptlet. POSIX sh; every step is
# skipped without a running systemd (a chroot, an image being built).

# systemd (re)reads the units. Nothing is enabled or started by the package.
vmb_reload_units() {
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
  fi
}

# After an upgrade, running daemons keep the old version: restarting them
# would cancel running exports, so the admin does it when no run is active.
vmb_after_install() {
  vmb_reload_units
  if [ -d /run/systemd/system ]; then
    for unit in vmbackup-agent.service vmbackup-coordinator.service; do
      if systemctl is-active --quiet "$unit"; then
        echo "vmbackup: $unit still runs the old version: systemctl restart $unit when no run is active"
      fi
    done
  fi
}

# Before removal (not upgrade): the daemons and the run timers are stopped
# and disabled, so no unit is left pointing at removed binaries.
vmb_before_removal() {
  if [ -d /run/systemd/system ]; then
    for unit in vmbackup-agent.service vmbackup-coordinator.service \
        /etc/systemd/system/timers.target.wants/vmbackup-run@*.timer; do
      case "$unit" in *'*'*) continue ;; esac
      systemctl --no-reload disable --now "${unit##*/}" || :
    done
  fi
}

# A purge (.deb only) also deletes the daemons' state: the coordinator's
# journal, the agent's job state, the checked certificate copies. What the
# admin put in /etc/vmbackup (certificates, keys, password files, configs)
# is kept.
vmb_purge_state() {
  rm -rf /var/lib/vmbackup-agent /var/lib/vmbackup-coordinator
}
