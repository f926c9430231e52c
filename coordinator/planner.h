// SPDX-License-Identifier: Apache-2.0
#pragma once

// Turns a selection into a plan: which host's agent exports each VM, what it
// exports and roughly how much.
//
// A running (or paused) VM goes to the host it runs on (resident_on). Halted
// and suspended VMs, largest first, go to the live host with the fewest
// planned bytes (running VMs' included) among those that have every SR of the
// disks it exports attached (PBD currently_attached), its affinity host
// breaking ties; a VM no live host can reach is planned with no host and a
// warning. With PlanOptions::agent_hosts (a distributed run) only hosts with
// a connected agent take halted VMs, and a running VM whose host has none is
// planned there with no_agent set. vm-export exports every disk; vdi-export the
// boot disk (userdevice 0, else the first bootable disk), or every disk with
// vdi_export_disks=all.

#include <set>
#include <string>
#include <vector>

#include "coordinator/backup_policy.h"
#include "coordinator/pool_inventory.h"
#include "coordinator/vm_selection.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

struct PlanOptions {
  // Uuids of the hosts whose agent is connected; null: every host can export
  // (the standalone run). Not owned.
  const std::set<std::string>* agent_hosts = nullptr;
};

// VMs in run order: every vdi-export, then every vm-export, each largest
// (estimated_bytes) first.
std::vector<v1::PlannedVm> PlanBackup(const BackupPolicy& policy,
                                      const Selection& selection,
                                      const PoolInventory& inventory,
                                      const PlanOptions& options = {});

// The disks a VM's export covers (Disk VBDs with a VDI).
std::vector<const InventoryDisk*> ExportedDisks(const InventoryVm& vm,
                                                bool vdi_export,
                                                VdiExportDisks which);

}  // namespace vmb::coordinator
