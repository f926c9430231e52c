// SPDX-License-Identifier: Apache-2.0
#include "coordinator/preview.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include "common/backup/export_format.h"
#include "common/base/filesystem.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "coordinator/planner.h"
#include "coordinator/pool_inventory.h"
#include "coordinator/vm_selection.h"

namespace vmb::coordinator {
namespace {

std::string Duration(absl::Duration d) {
  if (d == absl::ZeroDuration()) return "0";
  const int64_t s = absl::ToInt64Seconds(d);
  if (s % 86400 == 0) return absl::StrCat(s / 86400, "d");
  if (s % 3600 == 0) return absl::StrCat(s / 3600, "h");
  if (s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s, "s");
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void Warn(v1::PreviewReport* r, std::string where, std::string message,
          bool unmatched_rule = false) {
  v1::PlanWarning* w = r->add_warnings();
  w->set_where(std::move(where));
  w->set_message(std::move(message));
  w->set_unmatched_rule(unmatched_rule);
}

}  // namespace

std::map<std::string, std::string> PolicySettings(const BackupPolicy& p) {
  return {
      {"backup_dir", p.backup_dir},
      {"status_log", p.status_log},
      {"compress", std::string(CompressionName(p.compress))},
      {"max_backups", absl::StrCat(p.max_backups)},
      {"vdi_export_format", std::string(VdiFormatName(p.vdi_export_format))},
      {"pool_db_backup", p.pool_db_backup ? "1" : "0"},
      {"pre_clean", p.pre_clean ? "true" : "false"},
      {"ignore_extra_keys", p.ignore_extra_keys ? "true" : "false"},
      {"mail_to", absl::StrJoin(p.mail_to, ",")},
      {"mail_from", p.mail_from},
      {"mail_smtp_url", p.mail_smtp_url},
      {"mail_smtp_user", p.mail_smtp_user},
      {"mail_smtp_password_file", p.mail_smtp_password_file},
      {"mail_when", std::string(MailWhenName(p.mail_when))},
      {"mail_starttls", p.mail_starttls ? "true" : "false"},
      {"mail_smtp_ca", p.mail_smtp_ca},
      {"per_host_concurrency", absl::StrCat(p.per_host_concurrency)},
      {"max_concurrency", absl::StrCat(p.max_concurrency)},
      {"stall_timeout", Duration(p.stall_timeout)},
      {"vm_timeout", Duration(p.vm_timeout)},
      {"bandwidth_limit", absl::StrCat(p.bandwidth_limit)},
      {"require_mount", p.require_mount ? "true" : "false"},
      {"min_free_space", absl::StrCat(p.min_free_space)},
      {"vdi_export_disks",
       p.vdi_export_disks == VdiExportDisks::kAll ? "all" : "boot"},
      {"backup_dir_format", p.backup_dir_format},
      {"verify_after_run", absl::StrCat(p.verify_after_run, "%")},
  };
}

v1::PreviewReport BuildPreview(const BackupPolicy& policy, XenApiClient& client,
                               const PreviewOptions& options,
                               PoolInventory* inventory_out) {
  v1::PreviewReport r;
  r.set_source(policy.source);
  for (const auto& [k, v] : PolicySettings(policy))
    (*r.mutable_settings())[k] = v;
  for (const PolicyWarning& w : policy.warnings) {
    Warn(&r, w.line == 0 ? "" : absl::StrCat(policy.source, ":", w.line),
         w.message);
  }
  // Read-only checks of the paths a run needs. They do not stop the preview:
  // it shows everything it can, with every problem.
  std::vector<std::string> errors;
  if (!IsDirectory(policy.backup_dir)) {
    errors.push_back(absl::StrCat("backup_dir ", policy.backup_dir,
                                  " does not exist or is not a folder"));
  }
  if (options.from_config_file && !IsDirectory(Dirname(policy.status_log))) {
    errors.push_back(absl::StrCat("status_log ", policy.status_log, ": folder ",
                                  Dirname(policy.status_log),
                                  " does not exist"));
  }
  if (!policy.mail_smtp_password_file.empty() &&
      access(policy.mail_smtp_password_file.c_str(), R_OK) != 0) {
    errors.push_back(absl::StrCat("mail_smtp_password_file ",
                                  policy.mail_smtp_password_file,
                                  " cannot be read"));
  }
  auto finish = [&]() {
    r.set_valid(errors.empty());
    r.set_error(absl::StrJoin(errors, "; "));
    return r;
  };
  absl::StatusOr<PoolInventory> inventory = LoadPoolInventory(client);
  if (!inventory.ok()) {
    errors.push_back(std::string(inventory.status().message()));
    return finish();
  }
  std::vector<SelectionCandidate> candidates;
  for (const InventoryVm& vm : inventory->vms) {
    const VmRecord& v = vm.record;
    if (v.is_a_template || v.is_a_snapshot || v.is_control_domain) continue;
    candidates.push_back({v.uuid, v.name_label});
  }
  absl::StatusOr<Selection> selection = SelectVms(policy, candidates);
  if (!selection.ok()) {
    errors.push_back(std::string(selection.status().message()));
    return finish();
  }
  for (const SelectionCandidate& c : selection->excluded)
    r.add_excluded(c.name);
  for (const PolicyWarning& w : selection->warnings) {
    Warn(&r,
         w.line == 0 ? ""
                     : (policy.source == "command line"
                            ? std::string("vm-selector")
                            : absl::StrCat(policy.source, ":", w.line)),
         w.message, w.unmatched_rule);
  }
  if (inventory_out != nullptr) *inventory_out = *inventory;
  std::set<std::string> hosts;
  uint64_t total = 0;
  for (v1::PlannedVm& vm :
       PlanBackup(policy, *selection, *inventory, {options.agent_hosts})) {
    for (const std::string& w : vm.warnings()) Warn(&r, vm.name(), w);
    if (!vm.host_name().empty()) hosts.insert(vm.host_name());
    total += vm.estimated_bytes();
    *r.add_vms() = std::move(vm);
  }
  r.set_estimated_bytes(total);
  r.set_hosts(static_cast<uint32_t>(hosts.size()));
  return finish();
}

std::string FormatPreview(const v1::PreviewReport& r, bool for_run) {
  const auto& s = r.settings();
  auto get = [&](const char* k) {
    auto it = s.find(k);
    return it == s.end() ? std::string() : it->second;
  };
  std::string out =
      for_run ? absl::StrCat("VmBackup config loaded from: ", r.source(), "\n")
              : absl::StrCat("vmbackup preview of ", r.source(), "\n");
  out += "running with these settings:\n";
  for (const char* k : {"backup_dir", "status_log", "compress", "max_backups",
                        "vdi_export_format", "pool_db_backup"}) {
    absl::StrAppend(&out, absl::StrFormat("  %-17s = %s\n", k, get(k)));
  }
  // The seed's lists: sorted names, ":N" where a rule overrides max_backups.
  std::vector<std::string> excluded(r.excluded().begin(), r.excluded().end());
  std::vector<std::string> vdi, vm;
  for (const v1::PlannedVm& p : r.vms()) {
    std::string entry = EscapeForLog(p.name());
    if (p.max_backups_from_rule())
      absl::StrAppend(&entry, ":", p.max_backups());
    (p.kind() == v1::EXPORT_KIND_VDI ? vdi : vm).push_back(entry);
  }
  for (auto* list : {&excluded, &vdi, &vm})
    std::sort(list->begin(), list->end());
  absl::StrAppend(&out, "  exclude (cnt)= ", excluded.size(),
                  "\n  exclude: ", absl::StrJoin(excluded, ", "), "\n");
  absl::StrAppend(&out, "  vdi-export (cnt)= ", vdi.size(),
                  "\n  vdi-export: ", absl::StrJoin(vdi, ", "), "\n");
  absl::StrAppend(&out, "  vm-export (cnt)= ", vm.size(),
                  "\n  vm-export: ", absl::StrJoin(vm, ", "), "\n");
  out += "  vmbackup settings:";
  for (const char* k :
       {"pre_clean", "per_host_concurrency", "max_concurrency", "stall_timeout",
        "vm_timeout", "bandwidth_limit", "require_mount", "min_free_space",
        "vdi_export_disks", "backup_dir_format", "verify_after_run", "mail_to",
        "mail_when"}) {
    absl::StrAppend(&out, " ", k, "=", get(k));
  }
  out += "\n";
  if (r.vms_size() > 0) {
    absl::StrAppend(&out, "\nPlan: ", r.vms_size(), " VMs on ", r.hosts(),
                    " hosts, about ", FormatBytes(r.estimated_bytes()),
                    " of disk data to export\n");
    absl::StrAppend(
        &out, absl::StrFormat("  %-3s %-32s %-14s %-5s %-9s %-12s %-9s %s\n",
                              "#", "NAME", "EXPORT", "KEEP", "POWER", "HOST",
                              "SIZE", "UUID"));
    int n = 0;
    for (const v1::PlannedVm& p : r.vms()) {
      const std::string kind =
          p.kind() == v1::EXPORT_KIND_VDI
              ? absl::StrCat("vdi (", absl::StrJoin(p.disks(), ","), ")")
              : "vm";
      absl::StrAppend(
          &out,
          absl::StrFormat("  %-3d %-32s %-14s %-5d %-9s %-12s %-9s %s\n", ++n,
                          EscapeForLog(p.name()), kind, p.max_backups(),
                          p.power_state(),
                          p.host_name().empty() ? "(none)" : p.host_name(),
                          FormatBytes(p.estimated_bytes()), p.uuid()));
      absl::StrAppend(
          &out, "      selected by ", p.where(), " (", EscapeForLog(p.rule()),
          "); ", p.host_reason().empty() ? "no host" : p.host_reason(), "\n");
    }
  }
  if (r.warnings_size() > 0) {
    absl::StrAppend(&out, "\nWarnings (", r.warnings_size(), "):\n");
    for (const v1::PlanWarning& w : r.warnings()) {
      absl::StrAppend(
          &out, "  ",
          w.where().empty() ? "" : absl::StrCat(EscapeForLog(w.where()), ": "),
          EscapeForLog(w.message()), "\n");
    }
  }
  out += "\n";
  if (!r.valid()) {
    absl::StrAppend(&out, "ERROR ", EscapeForLog(r.error()),
                    "\nERROR preview found errors\n");
  } else {
    absl::StrAppend(
        &out,
        for_run ? "SUCCESS check of parameters"
                : "SUCCESS preview of parameters",
        r.warnings_size() > 0 ? " - WARNINGS found (see above)" : "", "\n");
  }
  return out;
}

int PreviewExitCode(const v1::PreviewReport& r) {
  if (!r.valid()) return 2;
  return r.warnings_size() > 0 ? 1 : 0;
}

}  // namespace vmb::coordinator
