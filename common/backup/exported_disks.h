// SPDX-License-Identifier: Apache-2.0
#pragma once

// Which of a VM's disks an export covers: the one rule that the planner (for
// the preview and the estimate) and the backup job (for the snapshot) share.

#include <vector>

namespace vmb {

// Why a vdi-export has nothing to export.
inline constexpr char kNoBootDiskMessage[] =
    "vdi-export: the VM has no boot disk (no disk with userdevice 0 and none "
    "bootable)";

// `disks`: the VM's disk VBDs that have a VDI, in the VM's VBD order; `Disk`
// is any type with a `VbdRecord vbd` member. A vm-export, or a vdi-export
// with vdi_export_disks=all, covers them all. Otherwise a vdi-export covers
// the seed's xvda, extended so that HVM guests (hda) work: the disk with
// userdevice 0, else the first bootable disk, else none.
template <typename Disk>
std::vector<Disk*> ExportedDisks(const std::vector<Disk*>& disks,
                                 bool vdi_export, bool all_disks) {
  if (!vdi_export || all_disks) return disks;
  for (Disk* d : disks) {
    if (d->vbd.userdevice == "0") return {d};
  }
  for (Disk* d : disks) {
    if (d->vbd.bootable) return {d};
  }
  return {};
}

}  // namespace vmb
