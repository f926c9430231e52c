// SPDX-License-Identifier: Apache-2.0
#include "common/backup/snapshot_janitor.h"

#include <algorithm>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/xenapi_error.h"

namespace vmb {
namespace {

std::string Get(const StringMap& m, absl::string_view key) {
  auto it = m.find(std::string(key));
  return it == m.end() ? "" : it->second;
}

// The run a snapshot of ours belongs to, or nullopt when it is not ours.
std::optional<std::string> OurRun(const StringMap& other_config,
                                  const std::string& name_label,
                                  const std::string& share_id) {
  if (share_id.empty()) return std::nullopt;
  if (Get(other_config, kTagShare) == share_id) {
    return Get(other_config, kTagRun);
  }
  const std::string prefix = SnapshotName(share_id, "");
  if (absl::StartsWith(name_label, prefix) &&
      Get(other_config, kTagShare).empty()) {
    return name_label.substr(prefix.size());
  }
  return std::nullopt;
}

bool Selected(const std::optional<std::string>& run,
              const StringMap& other_config, const JanitorOptions& options) {
  if (!run) return false;
  if (options.select) return options.select(*run, Get(other_config, kTagJob));
  return options.active_runs.count(*run) == 0;
}

}  // namespace

absl::Status DestroyRetryingWhileInUse(
    const std::function<absl::Status()>& destroy, absl::Duration retry_for,
    absl::Duration first_pause, Clock& clock) {
  const absl::Time until = clock.Now() + retry_for;
  absl::Duration pause = first_pause;
  while (true) {
    absl::Status s = destroy();
    if (s.ok() || IsXenApiError(s, "HANDLE_INVALID")) return absl::OkStatus();
    // VDI_IN_USE and OTHER_OPERATION_IN_PROGRESS are UNAVAILABLE too.
    if (!absl::IsUnavailable(s) || clock.Now() + pause > until) return s;
    clock.SleepFor(pause);
    pause = std::min(pause * 2, absl::Seconds(5));
  }
}

std::string SnapshotName(absl::string_view share_id, absl::string_view run_id) {
  return absl::StrCat("vmbackup-", share_id, "-", run_id);
}

absl::StatusOr<JanitorReport> CleanUpLeftoverSnapshots(
    XenApiClient& xapi, const JanitorOptions& options) {
  VMB_ASSIGN_OR_RETURN(RecordMap<VmRecord> vms, xapi.GetAllVms());
  VMB_ASSIGN_OR_RETURN(RecordMap<VbdRecord> vbds, xapi.GetAllVbds());
  VMB_ASSIGN_OR_RETURN(RecordMap<VdiRecord> vdis, xapi.GetAllVdis());
  return CleanUpLeftoverSnapshots(xapi, vms, vbds, vdis, options);
}

JanitorReport CleanUpLeftoverSnapshots(XenApiClient& xapi,
                                       const RecordMap<VmRecord>& vms,
                                       const RecordMap<VbdRecord>& vbds,
                                       const RecordMap<VdiRecord>& vdis,
                                       const JanitorOptions& options) {
  JanitorReport report;
  std::set<std::string> handled_vdis;
  const auto retrying = [&](const std::function<absl::Status()>& destroy) {
    return DestroyRetryingWhileInUse(destroy, options.destroy_retry,
                                     options.destroy_backoff, *options.clock);
  };

  const auto vm_uuid_of = [&](const std::string& ref) -> std::string {
    auto it = vms.find(ref);
    return it == vms.end() ? "(gone)" : it->second.uuid;
  };

  for (const auto& [ref, vm] : vms) {
    if (!vm.is_a_snapshot) continue;
    std::optional<std::string> run =
        OurRun(vm.other_config, vm.name_label, options.share_id);
    if (!Selected(run, vm.other_config, options)) continue;
    const std::string what = absl::StrCat("snapshot ", vm.uuid, " of VM ",
                                          Get(vm.other_config, kTagVm).empty()
                                              ? vm_uuid_of(vm.snapshot_of)
                                              : Get(vm.other_config, kTagVm),
                                          " (run ", *run, ")");
    // Its disks: only VDIs that are snapshots themselves.
    std::vector<std::string> disks;
    for (const std::string& vbd_ref : vm.vbds) {
      auto vbd = vbds.find(vbd_ref);
      if (vbd == vbds.end()) continue;
      auto vdi = vdis.find(vbd->second.vdi);
      if (vdi == vdis.end() || !vdi->second.is_a_snapshot) continue;
      disks.push_back(vdi->first);
    }
    const std::string& vm_ref = ref;  // clang 14: no lambda capture of bindings
    absl::Status s = retrying([&] { return xapi.DestroyVm(vm_ref); });
    for (const std::string& vdi : disks) {
      handled_vdis.insert(vdi);
      if (!s.ok()) break;
      s = retrying([&] { return xapi.DestroyVdi(vdi); });
    }
    if (s.ok()) {
      report.removed.push_back(what);
    } else {
      report.problems.push_back(absl::StrCat(what, ": ", s.message()));
    }
  }
  // VDI snapshots of vdi-exports.
  for (const auto& [ref, vdi] : vdis) {
    if (!vdi.is_a_snapshot || handled_vdis.count(ref) > 0) continue;
    std::optional<std::string> run =
        OurRun(vdi.other_config, vdi.name_label, options.share_id);
    if (!Selected(run, vdi.other_config, options)) continue;
    const std::string what =
        absl::StrCat("disk snapshot ", vdi.uuid, " of VM ",
                     Get(vdi.other_config, kTagVm), " (run ", *run, ")");
    const std::string& vdi_ref = ref;
    absl::Status s = retrying([&] { return xapi.DestroyVdi(vdi_ref); });
    if (s.ok()) {
      report.removed.push_back(what);
    } else {
      report.problems.push_back(absl::StrCat(what, ": ", s.message()));
    }
  }
  return report;
}

}  // namespace vmb
