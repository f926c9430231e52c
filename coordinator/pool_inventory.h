// SPDX-License-Identifier: Apache-2.0
#pragma once

// One consistent read of the pool through the XenAPI: hosts and whether they
// are live, SRs and which hosts see them, and every VM with its disks. The
// planner and the CLI's `inventory` command work from it.

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "common/xapi/xenapi_client.h"

namespace vmb::coordinator {

struct InventoryHost {
  std::string ref;
  HostRecord record;
  bool live = false;
  bool master = false;
};

struct InventorySr {
  std::string ref;
  SrRecord record;
  std::vector<std::string> attached_hosts;  // refs of hosts with a plugged PBD
};

struct InventoryDisk {
  VbdRecord vbd;
  VdiRecord vdi;  // empty for a CD drive
  bool has_vdi = false;
};

struct InventoryVm {
  std::string ref;
  VmRecord record;
  std::vector<InventoryDisk> disks;  // by VBD, in the VM's order
  uint64_t disk_bytes = 0;           // total virtual size of the disks
};

struct PoolInventory {
  std::string master_url;
  PoolRecord pool;
  std::vector<InventoryHost> hosts;
  std::vector<InventorySr> srs;
  std::vector<InventoryVm>
      vms;  // every VM record: templates, snapshots, dom0s too
  // The VM, VBD and VDI records as read, for the snapshot janitor (which
  // also needs the VDI snapshots no VM holds).
  RecordMap<VmRecord> vm_records;
  RecordMap<VbdRecord> vbd_records;
  RecordMap<VdiRecord> vdi_records;

  const InventoryHost* FindHost(const std::string& ref) const;
};

// Reads the whole pool with get_all_records calls (one per class). Errors:
// those of the client.
absl::StatusOr<PoolInventory> LoadPoolInventory(XenApiClient& client);

// A human-readable listing: pool, hosts, SRs, and the VMs a backup can
// select (templates, snapshots and control domains are counted, not listed).
std::string FormatInventory(const PoolInventory& inventory);

}  // namespace vmb::coordinator
