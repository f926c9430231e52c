// SPDX-License-Identifier: Apache-2.0
#include "coordinator/pool_inventory.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "common/base/status_macros.h"

namespace vmb::coordinator {
namespace {}  // namespace

const InventoryHost* PoolInventory::FindHost(const std::string& ref) const {
  for (const InventoryHost& h : hosts) {
    if (h.ref == ref) return &h;
  }
  return nullptr;
}

absl::StatusOr<PoolInventory> LoadPoolInventory(XenApiClient& client) {
  PoolInventory inv;
  VMB_ASSIGN_OR_RETURN(auto pools, client.GetAllPools());
  if (pools.size() != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pool.get_all_records returned ", pools.size(), " pools, not 1"));
  }
  inv.master_url = client.master_url();
  inv.pool = pools.begin()->second;
  VMB_ASSIGN_OR_RETURN(auto hosts, client.GetAllHosts());
  VMB_ASSIGN_OR_RETURN(auto metrics, client.GetAllHostMetrics());
  VMB_ASSIGN_OR_RETURN(auto srs, client.GetAllSrs());
  VMB_ASSIGN_OR_RETURN(auto pbds, client.GetAllPbds());
  VMB_ASSIGN_OR_RETURN(auto vms, client.GetAllVms());
  VMB_ASSIGN_OR_RETURN(auto vbds, client.GetAllVbds());
  VMB_ASSIGN_OR_RETURN(auto vdis, client.GetAllVdis());
  for (auto& [ref, h] : hosts) {
    InventoryHost host{ref, h, false, ref == inv.pool.master};
    auto m = metrics.find(h.metrics);
    host.live = m != metrics.end() && m->second.live;
    inv.hosts.push_back(std::move(host));
  }
  std::sort(inv.hosts.begin(), inv.hosts.end(),
            [](const InventoryHost& a, const InventoryHost& b) {
              return a.record.name_label < b.record.name_label;
            });
  for (auto& [ref, s] : srs) {
    InventorySr sr{ref, s, {}};
    for (const std::string& pbd_ref : s.pbds) {
      auto pbd = pbds.find(pbd_ref);
      if (pbd != pbds.end() && pbd->second.currently_attached) {
        sr.attached_hosts.push_back(pbd->second.host);
      }
    }
    inv.srs.push_back(std::move(sr));
  }
  std::sort(inv.srs.begin(), inv.srs.end(),
            [](const InventorySr& a, const InventorySr& b) {
              return a.record.name_label < b.record.name_label;
            });
  for (auto& [ref, v] : vms) {
    InventoryVm vm{ref, v, {}, 0};
    for (const std::string& vbd_ref : v.vbds) {
      auto vbd = vbds.find(vbd_ref);
      if (vbd == vbds.end()) {
        VMB_LOG(WARNING) << "VM " << v.uuid << " names VBD " << vbd_ref
                         << " which does not exist";
        continue;
      }
      InventoryDisk disk{vbd->second, {}, false};
      auto vdi = vdis.find(vbd->second.vdi);
      if (vdi != vdis.end()) {
        disk.vdi = vdi->second;
        disk.has_vdi = true;
        if (vbd->second.type == "Disk")
          vm.disk_bytes += static_cast<uint64_t>(vdi->second.virtual_size);
      }
      vm.disks.push_back(std::move(disk));
    }
    inv.vms.push_back(std::move(vm));
  }
  std::sort(inv.vms.begin(), inv.vms.end(),
            [](const InventoryVm& a, const InventoryVm& b) {
              return std::tie(a.record.name_label, a.record.uuid) <
                     std::tie(b.record.name_label, b.record.uuid);
            });
  inv.vm_records = std::move(vms);
  inv.vbd_records = std::move(vbds);
  inv.vdi_records = std::move(vdis);
  return inv;
}

std::string FormatInventory(const PoolInventory& inv) {
  std::string out;
  const InventoryHost* master = inv.FindHost(inv.pool.master);
  std::string version;
  if (master != nullptr) {
    auto brand = master->record.software_version.find("product_brand");
    auto number = master->record.software_version.find("product_version");
    if (brand != master->record.software_version.end() &&
        number != master->record.software_version.end()) {
      version = absl::StrCat(", ", brand->second, " ", number->second);
    }
  }
  absl::StrAppend(&out, "Pool \"", inv.pool.name_label, "\" (master ",
                  master != nullptr ? master->record.name_label : "?", " at ",
                  inv.master_url, version, ")\n\nHosts:\n");
  for (const InventoryHost& h : inv.hosts) {
    absl::StrAppend(
        &out, absl::StrFormat("  %-20s %-16s %s%s\n", h.record.name_label,
                              h.record.address, h.live ? "live" : "NOT LIVE",
                              h.master ? "  (master)" : ""));
  }
  out += "\nStorage repositories:\n";
  for (const InventorySr& s : inv.srs) {
    std::string where = s.record.shared ? "shared" : "local";
    if (!s.record.shared && !s.attached_hosts.empty()) {
      const InventoryHost* h = inv.FindHost(s.attached_hosts[0]);
      if (h != nullptr) where = absl::StrCat("local to ", h->record.name_label);
    }
    absl::StrAppend(
        &out,
        absl::StrFormat(
            "  %-32s %-8s %-20s %s used of %s\n", s.record.name_label,
            s.record.type, where,
            FormatBytes(static_cast<uint64_t>(s.record.physical_utilisation)),
            FormatBytes(static_cast<uint64_t>(s.record.physical_size))));
  }
  int templates = 0, snapshots = 0, control = 0, listed = 0;
  std::string rows;
  for (const InventoryVm& vm : inv.vms) {
    const VmRecord& r = vm.record;
    if (r.is_control_domain) {
      ++control;
    } else if (r.is_a_snapshot) {
      ++snapshots;
    } else if (r.is_a_template) {
      ++templates;
    } else {
      ++listed;
      const InventoryHost* host = inv.FindHost(r.resident_on);
      int disks = 0;
      for (const InventoryDisk& d : vm.disks)
        disks += d.vbd.type == "Disk" && d.has_vdi;
      absl::StrAppend(
          &rows,
          absl::StrFormat(
              "  %-32s %-9s %-12s %-13s %s\n", EscapeForLog(r.name_label),
              r.power_state, host != nullptr ? host->record.name_label : "-",
              absl::StrCat(disks, " (", FormatBytes(vm.disk_bytes), ")"),
              r.uuid));
    }
  }
  absl::StrAppend(&out, "\nVMs (", listed, "; not listed: ", templates,
                  " templates, ", snapshots, " snapshots, ", control,
                  " control domains):\n");
  absl::StrAppend(&out, absl::StrFormat("  %-32s %-9s %-12s %-13s %s\n", "NAME",
                                        "POWER", "HOST", "DISKS", "UUID"));
  out += rows;
  return out;
}

}  // namespace vmb::coordinator
