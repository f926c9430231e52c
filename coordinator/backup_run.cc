// SPDX-License-Identifier: Apache-2.0
#include "coordinator/backup_run.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

#include "common/backup/backup_layout.h"
#include "common/backup/export_format.h"
#include "common/backup/snapshot_janitor.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "common/base/status_util.h"
#include "coordinator/pool_db_dump.h"
#include "coordinator/pool_inventory.h"
#include "coordinator/preview.h"
#include "coordinator/status_log.h"

namespace vmb::coordinator {
namespace {

// The seed's log, one line at a time from any thread.
class RunLog {
 public:
  RunLog(std::ostream* out, Clock* clock, absl::TimeZone zone)
      : out_(out), clock_(clock), zone_(zone) {}

  void Line(absl::string_view text) {
    const std::string prefix =
        SeedLogPrefix(absl::ToCivilSecond(clock_->Now(), zone_));
    absl::MutexLock lock(&mu_);
    if (out_ == nullptr) return;
    // Several lines (the settings block) each get the prefix.
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      *out_ << prefix << line << "\n";
    }
    out_->flush();
  }

 private:
  std::ostream* const out_;
  Clock* const clock_;
  const absl::TimeZone zone_;
  absl::Mutex mu_;
};

std::string NewRunId(absl::Time now) {
  absl::BitGen gen;
  return absl::StrCat(
      absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()), "-",
      absl::StrFormat("%04x", absl::Uniform<uint32_t>(gen, 0, 0x10000)));
}

std::string NewUuid() {
  absl::BitGen gen;
  const uint64_t hi = absl::Uniform<uint64_t>(gen);
  const uint64_t lo = absl::Uniform<uint64_t>(gen);
  const std::string hex = absl::StrFormat("%016x%016x", hi, lo);
  // Version 4, variant 10.
  std::string u = absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-4",
                               hex.substr(13, 3), "-");
  const char variant = "89ab"[(lo >> 62) & 3];
  absl::StrAppend(&u, std::string(1, variant), hex.substr(17, 3), "-",
                  hex.substr(20, 12));
  return u;
}

bool LooksLikeUuid(absl::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-'
             : !absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// The share's identity, which tags our snapshots: made once, kept in
// backup_dir.
absl::StatusOr<std::string> ShareId(Filesystem& fs,
                                    const std::string& backup_dir) {
  const std::string path = JoinPath(backup_dir, kShareIdFileName);
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::string> text = fs.ReadFile(path, 4096);
    if (text.ok()) {
      const std::string id(absl::StripAsciiWhitespace(*text));
      if (!LooksLikeUuid(id)) {
        return absl::FailedPreconditionError(absl::StrCat(
            path, " does not hold a share id; remove it to make a new one"));
      }
      return id;
    }
    if (!absl::IsNotFound(text.status())) return text.status();
    absl::Status s = WriteNewFile(fs, path, NewUuid() + "\n");
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
  }
  return absl::InternalError(absl::StrCat("cannot read ", path));
}

// One VM of the run.
struct Item {
  v1::PlannedVm plan;
  v1::JobSpec spec;
  std::vector<std::string> warnings;  // from planning and folder choice
  v1::JobStatus status;
  v1::VmOutcome outcome;
  bool started = false;
};

class Run {
 public:
  Run(const BackupPolicy& policy, const BackupRunOptions& o)
      : policy_(policy),
        o_(o),
        log_(o.out, o.clock, o.time_zone),
        status_log_(o.fs, o.clock, o.time_zone,
                    o.from_config_file ? policy.status_log : "",
                    o.server_name) {}

  BackupRunResult Execute();

 private:
  // Ends the run before any VM: logs and records `why`.
  BackupRunResult& Fatal(const std::string& why) {
    log_.Line(absl::StrCat("ERROR ", EscapeForLog(why), " - FATAL ERROR"));
    result_.fatal = why;
    return Finish();
  }
  BackupRunResult& Finish();
  bool Cancelled() const {
    return o_.cancel != nullptr && o_.cancel->HasBeenNotified();
  }
  void LogSpace(absl::string_view when);
  void DumpPoolDb(const PoolInventory& inventory);
  void Dispatch(std::vector<Item>& items, Executor& executor);
  void RunItem(Item& item, Executor& executor);
  void Record(Item& item);

  const BackupPolicy& policy_;
  const BackupRunOptions& o_;
  RunLog log_;
  StatusLog status_log_;
  BackupRunResult result_;
  absl::Mutex mu_;  // result_ counts while jobs run
  bool began_ = false;
};

void Run::LogSpace(absl::string_view when) {
  absl::StatusOr<SpaceInfo> space = o_.fs->Space(policy_.backup_dir);
  if (space.ok()) {
    log_.Line(absl::StrCat(when, ": ", FormatBytes(space->free_bytes),
                           " free of ", FormatBytes(space->total_bytes), " on ",
                           policy_.backup_dir));
  }
}

void Run::DumpPoolDb(const PoolInventory& inventory) {
  const InventoryHost* master = inventory.FindHost(inventory.pool.master);
  PoolDbDumpOptions d;
  d.backup_dir = policy_.backup_dir;
  d.master_name = master != nullptr ? master->record.name_label : "master";
  d.master_url = o_.xapi->master_url();
  for (const InventoryHost& h : inventory.hosts)
    d.redirect_hosts.push_back(IdentityOfHost(h.record));
  d.tls = o_.tls;
  d.keep = policy_.max_backups;
  d.time_zone = o_.time_zone;
  absl::StatusOr<PoolDbDumpResult> dump =
      DumpPoolDatabase(*o_.xapi, *o_.fs, *o_.clock, d);
  if (!dump.ok()) {
    log_.Line(absl::StrCat("ERROR failed to backup pool metadata: ",
                           EscapeForLog(dump.status().message())));
    absl::MutexLock lock(&mu_);
    ++result_.errors;
    return;
  }
  log_.Line(absl::StrCat("pool database dump: ", EscapeForLog(dump->path), " (",
                         FormatBytes(dump->bytes), ")"));
  for (const std::string& old : dump->removed) {
    log_.Line(absl::StrCat("Deleting oldest pool database dump ", old));
  }
}

void Run::Record(Item& item) {
  const v1::JobStatus& st = item.status;
  const absl::string_view kind = ExportKindName(item.plan.kind());
  const std::string& name = item.plan.name();
  const absl::Duration elapsed =
      absl::Milliseconds(static_cast<int64_t>(st.finished_unix_ms()) -
                         static_cast<int64_t>(st.started_unix_ms()));
  const int64_t minutes = std::max<int64_t>(0, absl::ToInt64Minutes(elapsed));
  std::vector<std::string> warnings = item.warnings;
  warnings.insert(warnings.end(), st.warnings().begin(), st.warnings().end());
  v1::VmOutcome& outcome = item.outcome;
  outcome.set_vm_uuid(item.plan.uuid());
  outcome.set_vm_name(name);
  outcome.set_host_name(item.plan.host_name());
  *outcome.mutable_status() = st;
  outcome.mutable_status()->clear_warnings();
  for (const std::string& w : warnings)
    outcome.mutable_status()->add_warnings(w);

  std::string status_line;
  if (st.phase() == v1::JOB_PHASE_SUCCEEDED) {
    for (const std::string& w : warnings) {
      log_.Line(
          absl::StrCat("WARNING ", EscapeForLog(name), ": ", EscapeForLog(w)));
    }
    log_.Line(absl::StrCat("*** success: ", EscapeForLog(st.backup_folder()),
                           " : ", FormatBytes(st.backup_bytes())));
    log_.Line(absl::StrCat("VmBackup ", kind, " ", EscapeForLog(name), " - ",
                           warnings.empty() ? "***Success***" : "***WARNING***",
                           " t:", minutes));
    status_line = StatusLog::Completed(!warnings.empty(), name, elapsed,
                                       st.backup_bytes());
  } else {
    const std::string reason = st.xenapi_error().code().empty()
                                   ? st.error_message()
                                   : st.xenapi_error().code();
    log_.Line(absl::StrCat("ERROR ", st.status_token(), " ", EscapeForLog(name),
                           " (", item.plan.uuid(), ") at ", st.error_step(),
                           ": ", EscapeForLog(st.error_message())));
    log_.Line(absl::StrCat("VmBackup ", kind, " ", EscapeForLog(name),
                           " - ***ERROR*** t:", minutes));
    status_line = StatusLog::Failed(st.status_token(), name, reason);
  }
  absl::Status s = status_log_.JobEnd(kind, item.plan.host_name(), status_line);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) result_.run_warnings.push_back(std::string(s.message()));
  if (st.phase() != v1::JOB_PHASE_SUCCEEDED) {
    ++result_.errors;
  } else if (!warnings.empty()) {
    ++result_.warnings;
  } else {
    ++result_.succeeded;
  }
}

void Run::RunItem(Item& item, Executor& executor) {
  log_.Line(absl::StrCat(
      "*** ", ExportKindName(item.plan.kind()), " begin ",
      EscapeForLog(item.plan.name()), " (", item.plan.uuid(), ") from ",
      item.plan.host_name(), " into ",
      EscapeForLog(JoinPath(policy_.backup_dir, item.spec.vm_folder()))));
  absl::Status s =
      status_log_.JobBegin(ExportKindName(item.plan.kind()),
                           item.plan.host_name(), item.plan.name());
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    result_.run_warnings.push_back(std::string(s.message()));
  }
  item.status = executor.RunJob(item.spec, nullptr, o_.cancel);
}

void Run::Dispatch(std::vector<Item>& items, Executor& executor) {
  const int per_host = std::max(1, policy_.per_host_concurrency);
  const int max_total = policy_.max_concurrency;  // 0: no limit
  std::map<std::string, int> running_on;          // host uuid -> running
  int running = 0;
  size_t started = 0;
  absl::Mutex mu;
  // The first item (in run order) that may start now, or -1.
  auto next = [&]() -> int {
    if (max_total > 0 && running >= max_total) return -1;
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].started) continue;
      if (running_on[items[i].plan.host_uuid()] < per_host)
        return static_cast<int>(i);
    }
    return -1;
  };
  auto worker = [&]() {
    while (true) {
      int i = -1;
      {
        absl::MutexLock lock(&mu);
        auto ready = [&]() {
          mu.AssertHeld();
          return started == items.size() || next() >= 0;
        };
        mu.Await(absl::Condition(&ready));
        if (started == items.size()) return;
        i = next();
        items[i].started = true;
        ++started;
        ++running;
        ++running_on[items[i].plan.host_uuid()];
      }
      Item& item = items[static_cast<size_t>(i)];
      if (item.plan.host_uuid().empty()) {
        item.status.set_phase(v1::JOB_PHASE_FAILED);
        item.status.set_status_token("NO-HOST");
        item.status.set_error_step("plan");
        item.status.set_error_message(item.plan.host_reason().empty()
                                          ? "no live host can export this VM"
                                          : item.plan.host_reason());
      } else if (Cancelled()) {
        item.status.set_phase(v1::JOB_PHASE_CANCELLED);
        item.status.set_status_token("CANCELLED");
        item.status.set_error_step("dispatch");
        item.status.set_error_message("the run was cancelled before this VM");
      } else {
        RunItem(item, executor);
      }
      Record(item);
      absl::MutexLock lock(&mu);
      --running;
      --running_on[item.plan.host_uuid()];
    }
  };
  std::set<std::string> hosts;
  for (const Item& item : items) hosts.insert(item.plan.host_uuid());
  size_t workers = static_cast<size_t>(per_host) * hosts.size();
  if (max_total > 0)
    workers = std::min(workers, static_cast<size_t>(max_total));
  workers = std::max<size_t>(1, std::min(workers, items.size()));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < workers; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
}

BackupRunResult& Run::Finish() {
  LogSpace("Space status");
  for (const std::string& w : result_.run_warnings) {
    log_.Line(absl::StrCat("WARNING ", EscapeForLog(w)));
  }
  const bool errors = result_.errors > 0 || !result_.fatal.empty();
  const bool warnings = result_.warnings > 0 || !result_.run_warnings.empty();
  const std::string counts = absl::StrCat(
      "S:", result_.succeeded, " W:", result_.warnings, " E:", result_.errors);
  const char* word = errors     ? "**ERRORS DETECTED**"
                     : warnings ? "**WARNING(s)**"
                                : "Success";
  if (began_) {
    absl::Status s =
        status_log_.RunEnd(errors     ? "ERROR"
                           : warnings ? "WARNING"
                                      : "SUCCESS",
                           result_.succeeded, result_.warnings, result_.errors);
    if (!s.ok()) log_.Line(absl::StrCat("WARNING ", EscapeForLog(s.message())));
  }
  log_.Line(absl::StrCat("VmBackup ended - ", word, " - ", counts));
  result_.exit_code = errors ? 2 : warnings ? 1 : 0;
  return result_;
}

BackupRunResult Run::Execute() {
  result_.run_id = o_.run_id.empty() ? NewRunId(o_.clock->Now()) : o_.run_id;
  log_.Line(absl::StrCat("VmBackup running on ", o_.server_name, " (run ",
                         result_.run_id, ") ..."));
  // status.log first, as the seed: a run that cannot start still says so.
  if (o_.from_config_file) {
    absl::StatusOr<FileInfo> dir = o_.fs->Stat(Dirname(policy_.status_log));
    if (!dir.ok() || !dir->is_dir) {
      return Fatal(absl::StrCat("status_log ", policy_.status_log, ": folder ",
                                Dirname(policy_.status_log),
                                " does not exist"));
    }
  }
  absl::Status s = status_log_.RunBegin();
  if (!s.ok()) return Fatal(std::string(s.message()));
  began_ = true;

  absl::StatusOr<FileInfo> dir = o_.fs->Stat(policy_.backup_dir);
  if (!dir.ok() || !dir->is_dir) {
    return Fatal(absl::StrCat("backup_dir ", policy_.backup_dir,
                              " does not exist or is not a folder"));
  }
  // The share's lock first: a second run on this share stops here, before
  // it touches anything of the first one's (its write probe included).
  absl::StatusOr<std::unique_ptr<FileLock>> lock =
      o_.fs->LockFile(JoinPath(policy_.backup_dir, kLockFileName));
  if (!lock.ok()) {
    return Fatal(absl::IsUnavailable(lock.status())
                     ? absl::StrCat("another vmbackup run is using ",
                                    policy_.backup_dir, " (",
                                    lock.status().message(), ")")
                     : absl::StrCat("failed to write to backup directory "
                                    "area (",
                                    lock.status().message(), ")"));
  }
  // The seed's writable check.
  const std::string probe = JoinPath(policy_.backup_dir, kWriteTestFileName);
  (void)o_.fs->RemoveFile(probe);  // a crashed run's, if any
  s = WriteNewFile(*o_.fs, probe, "");
  if (s.ok()) s = o_.fs->RemoveFile(probe);
  if (!s.ok()) {
    return Fatal(absl::StrCat("failed to write to backup directory area (",
                              s.message(), ")"));
  }
  absl::StatusOr<std::string> share_id = ShareId(*o_.fs, policy_.backup_dir);
  if (!share_id.ok()) return Fatal(std::string(share_id.status().message()));

  // Selection and plan: once, against the pool master.
  PoolInventory inventory;
  const v1::PreviewReport plan =
      BuildPreview(policy_, *o_.xapi, {o_.from_config_file}, &inventory);
  log_.Line(std::string(
      absl::StripTrailingAsciiWhitespace(FormatPreview(plan, true))));
  if (!plan.valid()) return Fatal(plan.error());
  if (o_.tls.pins != nullptr) {  // the hosts' pins by uuid and name too
    std::vector<HostIdentity> hosts;
    for (const InventoryHost& h : inventory.hosts)
      hosts.push_back(IdentityOfHost(h.record));
    absl::Status s = o_.tls.pins->SetPoolHosts(hosts);
    if (!s.ok()) return Fatal(std::string(s.message()));
  }
  // A rule that matches nothing may mean a VM that should be backed up is
  // not (renamed, deleted): the run ends with a warning.
  for (const v1::PlanWarning& w : plan.warnings()) {
    if (w.unmatched_rule()) {
      result_.run_warnings.push_back(
          absl::StrCat(w.where(), w.where().empty() ? "" : ": ", w.message()));
    }
  }

  // Snapshots of this share's crashed runs (the lock says none is running).
  JanitorOptions janitor;
  janitor.share_id = *share_id;
  janitor.active_runs = {result_.run_id};
  janitor.destroy_retry = o_.snapshot_destroy_timeout;
  janitor.clock = o_.clock;
  // From the records the plan was made from: the lock was already held.
  const JanitorReport cleaned = CleanUpLeftoverSnapshots(
      *o_.xapi, inventory.vm_records, inventory.vbd_records,
      inventory.vdi_records, janitor);
  for (const std::string& r : cleaned.removed) {
    log_.Line(absl::StrCat("removed a leftover snapshot: ", EscapeForLog(r)));
  }
  for (const std::string& p : cleaned.problems) {
    result_.run_warnings.push_back(absl::StrCat("leftover snapshot: ", p));
  }
  LogSpace("Space before backups");
  if (policy_.pool_db_backup) DumpPoolDb(inventory);

  // Folders and jobs.
  std::map<std::string, int> names;  // selectable VMs per name
  for (const InventoryVm& vm : inventory.vms) {
    const VmRecord& r = vm.record;
    if (!r.is_a_template && !r.is_a_snapshot && !r.is_control_domain) {
      ++names[r.name_label];
    }
  }
  std::vector<Item> items;
  for (const v1::PlannedVm& p : plan.vms()) {
    Item item;
    item.plan = p;
    for (const std::string& w : p.warnings()) item.warnings.push_back(w);
    v1::JobSpec& spec = item.spec;
    spec.set_job_id(absl::StrCat(result_.run_id, "/", p.uuid()));
    spec.set_run_id(result_.run_id);
    spec.set_attempt(1);
    spec.set_vm_uuid(p.uuid());
    spec.set_vm_name(p.name());
    spec.set_kind(p.kind());
    spec.set_compression(p.kind() == v1::EXPORT_KIND_VDI ? v1::COMPRESSION_NONE
                                                         : policy_.compress);
    spec.set_vdi_format(policy_.vdi_export_format);
    spec.set_backup_dir(policy_.backup_dir);
    spec.set_max_backups(
        static_cast<uint32_t>(std::max(1, static_cast<int>(p.max_backups()))));
    spec.set_stall_timeout_ms(static_cast<uint64_t>(
        absl::ToInt64Milliseconds(policy_.stall_timeout)));
    spec.set_vm_timeout_ms(
        static_cast<uint64_t>(absl::ToInt64Milliseconds(policy_.vm_timeout)));
    spec.set_bandwidth_limit_bytes_per_sec(policy_.bandwidth_limit);
    spec.set_pre_clean(policy_.pre_clean);
    spec.set_require_mount(policy_.require_mount);
    spec.set_min_free_space(policy_.min_free_space);
    spec.set_vdi_export_all_disks(policy_.vdi_export_disks ==
                                  VdiExportDisks::kAll);
    spec.set_backup_dir_format(policy_.backup_dir_format);
    spec.set_share_id(*share_id);
    spec.set_host_uuid(p.host_uuid());
    spec.set_host_name(p.host_name());
    absl::StatusOr<VmFolderChoice> folder = ChooseVmFolder(
        *o_.fs, policy_.backup_dir, p.uuid(), p.name(), names[p.name()] > 1);
    if (!folder.ok()) return Fatal(std::string(folder.status().message()));
    spec.set_vm_folder(folder->folder);
    if (!folder->warning.empty()) item.warnings.push_back(folder->warning);
    items.push_back(std::move(item));
  }

  ExecutorSetup setup;
  setup.xapi = o_.xapi;
  setup.fs = o_.fs;
  setup.clock = o_.clock;
  setup.master_url = o_.xapi->master_url();
  for (const InventoryHost& h : inventory.hosts) setup.hosts[h.ref] = h.record;
  setup.tls = o_.tls;
  setup.time_zone = o_.time_zone;
  setup.snapshot_destroy_timeout = o_.snapshot_destroy_timeout;
  std::unique_ptr<Executor> executor = o_.make_executor(setup);
  Dispatch(items, *executor);
  for (Item& item : items) result_.vms.push_back(std::move(item.outcome));
  return Finish();
}

}  // namespace

std::string SeedLogPrefix(absl::CivilSecond t) {
  return absl::StrFormat("%04d-%02d-%02d-(%02d:%02d:%02d) - ", t.year(),
                         t.month(), t.day(), t.hour(), t.minute(), t.second());
}

BackupRunResult RunBackup(const BackupPolicy& policy,
                          const BackupRunOptions& options) {
  Run run(policy, options);
  return run.Execute();
}

}  // namespace vmb::coordinator
