// SPDX-License-Identifier: Apache-2.0
#pragma once

// Turns a selection into a plan: which host's agent exports each VM, what it
// exports and roughly how much.
//
// A running (or paused) VM goes to the host it runs on (resident_on). A halted
// or suspended VM goes to the least-loaded live host that has every SR of the
// disks it exports attached (PBD currently_attached), its affinity host
// breaking ties; a VM no live host can reach is planned with no host and a
// warning. vm-export exports every disk; vdi-export the boot disk (userdevice
// 0, else the first bootable disk), or every disk with vdi_export_disks=all.

#include <vector>

#include "coordinator/backup_policy.h"
#include "coordinator/pool_inventory.h"
#include "coordinator/vm_selection.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

// VMs in run order: every vdi-export, then every vm-export.
std::vector<v1::PlannedVm> PlanBackup(const BackupPolicy& policy,
                                      const Selection& selection,
                                      const PoolInventory& inventory);

// The disks a VM's export covers (Disk VBDs with a VDI).
std::vector<const InventoryDisk*> ExportedDisks(const InventoryVm& vm,
                                                bool vdi_export,
                                                VdiExportDisks which);

}  // namespace vmb::coordinator
