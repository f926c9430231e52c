// SPDX-License-Identifier: Apache-2.0
#include "coordinator/planner.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#include "common/backup/exported_disks.h"

namespace vmb::coordinator {
namespace {

const InventoryVm* FindVm(const PoolInventory& inv, const std::string& uuid) {
  for (const InventoryVm& vm : inv.vms) {
    if (vm.record.uuid == uuid) return &vm;
  }
  return nullptr;
}

bool HostSees(const PoolInventory& inv, const std::string& host_ref,
              const std::string& sr_ref) {
  for (const InventorySr& sr : inv.srs) {
    if (sr.ref != sr_ref) continue;
    return std::find(sr.attached_hosts.begin(), sr.attached_hosts.end(),
                     host_ref) != sr.attached_hosts.end();
  }
  return false;
}

// About what an export of `vdi` carries: the data its VHD chain holds, each
// member's physical_utilisation (on a thin SR its allocated blocks; a thick
// SR's active disk takes its whole size), never more than the disk's size.
// Once a disk has snapshots its own physical_utilisation is only the newest
// layer, so the chain is followed (sm_config "vhd-parent", by uuid).
uint64_t EstimatedExportBytes(
    const VdiRecord& vdi,
    const std::map<std::string, const VdiRecord*>& vdis_by_uuid) {
  int64_t held = 0;
  std::set<std::string> seen;
  for (const VdiRecord* v = &vdi;
       v != nullptr && seen.insert(v->uuid).second;) {
    held += std::max<int64_t>(0, v->physical_utilisation);
    auto parent = v->sm_config.find("vhd-parent");
    if (parent == v->sm_config.end()) break;
    auto found = vdis_by_uuid.find(parent->second);
    v = found == vdis_by_uuid.end() ? nullptr : found->second;
  }
  const int64_t size = std::max<int64_t>(0, vdi.virtual_size);
  return static_cast<uint64_t>(held > 0 && held < size ? held : size);
}

std::string Where(const BackupPolicy& policy, int line) {
  return line == 0 ? "vm-selector" : absl::StrCat(policy.source, ":", line);
}

}  // namespace

std::vector<const InventoryDisk*> ExportedDisks(const InventoryVm& vm,
                                                bool vdi_export,
                                                VdiExportDisks which) {
  std::vector<const InventoryDisk*> disks;
  for (const InventoryDisk& d : vm.disks) {
    if (d.vbd.type == "Disk" && d.has_vdi) disks.push_back(&d);
  }
  return vmb::ExportedDisks(disks, vdi_export, which == VdiExportDisks::kAll);
}

std::vector<v1::PlannedVm> PlanBackup(const BackupPolicy& policy,
                                      const Selection& selection,
                                      const PoolInventory& inventory,
                                      const PlanOptions& options) {
  std::vector<v1::PlannedVm> plan;
  std::map<std::string, uint64_t> load;  // host ref -> bytes planned on it
  const auto has_agent = [&](const InventoryHost& h) {
    return options.agent_hosts == nullptr ||
           options.agent_hosts->count(h.record.uuid) > 0;
  };
  std::vector<std::pair<size_t, const InventoryVm*>> halted;
  std::map<std::string, const VdiRecord*> vdis_by_uuid;
  for (const auto& [ref, vdi] : inventory.vdi_records)
    vdis_by_uuid[vdi.uuid] = &vdi;

  auto plan_one = [&](const SelectedVm& s) {
    v1::PlannedVm p;
    p.set_uuid(s.uuid);
    p.set_name(s.name);
    p.set_kind(s.vdi_export ? v1::EXPORT_KIND_VDI : v1::EXPORT_KIND_VM);
    p.set_max_backups(static_cast<uint32_t>(s.max_backups));
    p.set_max_backups_from_rule(s.max_backups_from_rule);
    p.set_rule(s.rule);
    p.set_where(Where(policy, s.line));
    p.set_shares_name(s.shares_name);
    const InventoryVm* vm = FindVm(inventory, s.uuid);
    if (vm == nullptr) {
      p.add_warnings("the VM disappeared while the plan was made");
      plan.push_back(std::move(p));
      return;
    }
    p.set_power_state(vm->record.power_state);
    const std::vector<const InventoryDisk*> disks =
        ExportedDisks(*vm, s.vdi_export, policy.vdi_export_disks);
    uint64_t bytes = 0;
    for (const InventoryDisk* d : disks) {
      bytes += EstimatedExportBytes(d->vdi, vdis_by_uuid);
      p.add_disks(d->vbd.device.empty()
                      ? absl::StrCat("userdevice ", d->vbd.userdevice)
                      : d->vbd.device);
    }
    p.set_estimated_bytes(bytes);
    if (disks.empty()) {
      p.add_warnings(
          s.vdi_export
              ? kNoBootDiskMessage
              : "the VM has no disks: the export holds only its metadata");
    }
    const std::string& state = vm->record.power_state;
    if (state == "Running" || state == "Paused") {
      const InventoryHost* host = inventory.FindHost(vm->record.resident_on);
      if (host != nullptr) {
        p.set_host_name(host->record.name_label);
        p.set_host_uuid(host->record.uuid);
        p.set_host_reason("it runs there (resident_on)");
        load[host->ref] += bytes;
        if (!has_agent(*host)) {
          p.set_no_agent(true);
          p.add_warnings(absl::StrCat("no agent is connected on its host ",
                                      host->record.name_label));
        }
        if (!host->live)
          p.add_warnings(absl::StrCat("its host ", host->record.name_label,
                                      " is not live"));
      } else {
        p.add_warnings("it is running but XAPI names no host for it");
      }
      plan.push_back(std::move(p));
      return;
    }
    halted.emplace_back(plan.size(), vm);
    plan.push_back(std::move(p));
  };
  for (const SelectedVm& s : selection.vdi_exports) plan_one(s);
  for (const SelectedVm& s : selection.vm_exports) plan_one(s);

  // Halted and suspended VMs, after the running ones have loaded their hosts,
  // largest first: each goes where the fewest bytes are planned so far, which
  // evens out the hosts' shares (and so the run's makespan).
  std::stable_sort(halted.begin(), halted.end(),
                   [&](const auto& a, const auto& b) {
                     return plan[a.first].estimated_bytes() >
                            plan[b.first].estimated_bytes();
                   });
  for (const auto& entry : halted) {
    const size_t index = entry.first;
    const InventoryVm* vm = entry.second;
    v1::PlannedVm& p = plan[index];
    std::set<std::string> srs;
    for (const InventoryDisk* d : ExportedDisks(
             *vm, p.kind() == v1::EXPORT_KIND_VDI, policy.vdi_export_disks)) {
      srs.insert(d->vdi.sr);
    }
    const InventoryHost* best = nullptr;
    bool agentless_could = false;
    int candidates = 0;
    for (const InventoryHost& h : inventory.hosts) {
      if (!h.live) continue;
      bool sees_all = true;
      for (const std::string& sr : srs)
        sees_all = sees_all && HostSees(inventory, h.ref, sr);
      if (!sees_all) continue;
      if (!has_agent(h)) {
        agentless_could = true;
        continue;
      }
      ++candidates;
      p.add_candidate_host_uuids(h.record.uuid);
      auto better = [&](const InventoryHost& a, const InventoryHost& b) {
        if (load[a.ref] != load[b.ref]) return load[a.ref] < load[b.ref];
        const bool a_aff = a.ref == vm->record.affinity,
                   b_aff = b.ref == vm->record.affinity;
        if (a_aff != b_aff) return a_aff;
        return a.record.name_label < b.record.name_label;
      };
      if (best == nullptr || better(h, *best)) best = &h;
    }
    if (best == nullptr) {
      if (agentless_could) {
        p.set_no_agent(true);
        p.add_warnings(
            "no host with all its storage attached has a connected agent");
      } else {
        p.add_warnings(
            "no live host has all its storage attached: it cannot be "
            "exported");
      }
      continue;
    }
    if (candidates < 2) p.clear_candidate_host_uuids();
    p.set_host_name(best->record.name_label);
    p.set_host_uuid(best->record.uuid);
    p.set_host_reason(absl::StrCat(
        absl::AsciiStrToLower(vm->record.power_state), ": ",
        srs.empty() ? "any live host"
                    : "the least-loaded live host with its storage attached",
        best->ref == vm->record.affinity ? " (its affinity host)" : ""));
    load[best->ref] += p.estimated_bytes();
  }
  // Run order: every vdi-export, then every vm-export, each largest first:
  // the biggest exports start early, so no host ends the run with one long
  // export alone.
  std::stable_sort(plan.begin(), plan.end(),
                   [](const v1::PlannedVm& a, const v1::PlannedVm& b) {
                     const bool a_vdi = a.kind() == v1::EXPORT_KIND_VDI;
                     const bool b_vdi = b.kind() == v1::EXPORT_KIND_VDI;
                     if (a_vdi != b_vdi) return a_vdi;
                     return a.estimated_bytes() > b.estimated_bytes();
                   });
  return plan;
}

}  // namespace vmb::coordinator
