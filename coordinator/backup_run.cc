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
  RunLog(std::ostream* out, Clock* clock, absl::TimeZone zone,
         RunObserver* observer)
      : out_(out), clock_(clock), zone_(zone), observer_(observer) {}

  void Line(absl::string_view text) {
    const std::string prefix =
        SeedLogPrefix(absl::ToCivilSecond(clock_->Now(), zone_));
    absl::MutexLock lock(&mu_);
    // Several lines (the settings block) each get the prefix.
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (out_ != nullptr) *out_ << prefix << line << "\n";
      if (observer_ != nullptr) observer_->LogLine(absl::StrCat(prefix, line));
    }
    if (out_ != nullptr) out_->flush();
  }

 private:
  std::ostream* const out_;
  Clock* const clock_;
  const absl::TimeZone zone_;
  RunObserver* const observer_;
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

// The share's identity, which tags our snapshots: made once, kept in
// backup_dir.
absl::StatusOr<std::string> ShareId(Filesystem& fs,
                                    const std::string& backup_dir) {
  const std::string path = JoinPath(backup_dir, kShareIdFileName);
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::string> text = fs.ReadFile(path, 4096);
    if (text.ok()) {
      const std::string id(absl::StripAsciiWhitespace(*text));
      if (!IsUuid(id)) {
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
  RunJob job;
  v1::VmOutcome outcome;
  bool started = false;  // taken by a dispatcher thread
};

// Warnings of a job about its snapshot being left in the pool: dropped once
// the run destroyed it after all.
bool IsSnapshotLeftWarning(absl::string_view w) {
  return absl::StrContains(w, "snapshot is left in the pool");
}

class Run {
 public:
  Run(const BackupPolicy& policy, const BackupRunOptions& o)
      : policy_(policy),
        o_(o),
        log_(o.out, o.clock, o.time_zone, o.observer),
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
  bool Abandoned() const {
    return o_.abandon != nullptr && o_.abandon->HasBeenNotified();
  }
  void LogSpace(absl::string_view when);
  void DumpPoolDb(const PoolInventory& inventory);
  void Dispatch(std::vector<Item>& items, Executor& executor);
  // Runs the item's job (attempts included) to a terminal state.
  void RunItem(Item& item, Executor& executor);
  // Destroys, through the master, the snapshots of `job_id` (or of the whole
  // run when empty) that are tagged ours, retrying for `retry`.
  JanitorReport DestroySnapshots(const std::string& job_id,
                                 absl::Duration retry);
  // Writes the item's outcome (seed log, status.log) and counts it; with
  // `write` false (recorded before a restart) only counts it.
  void Record(Item& item, bool write);
  v1::JobStatus Failed(const Item& item, absl::string_view step,
                       absl::string_view token, absl::string_view message);

  const BackupPolicy& policy_;
  const BackupRunOptions& o_;
  RunLog log_;
  StatusLog status_log_;
  BackupRunResult result_;
  absl::Mutex mu_;  // result_ counts while jobs run
  bool began_ = false;
  std::string share_id_;
  std::map<std::string, std::string> host_names_;  // uuid -> name_label
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
    result_.pool_db_dump = absl::StrCat("FAILED: ", dump.status().message());
    return;
  }
  if (o_.observer != nullptr) o_.observer->PoolDumpDone();
  {
    absl::MutexLock lock(&mu_);
    result_.pool_db_dump =
        absl::StrCat(dump->path, " (", FormatBytes(dump->bytes), ")");
  }
  log_.Line(absl::StrCat("pool database dump: ", EscapeForLog(dump->path), " (",
                         FormatBytes(dump->bytes), ")"));
  for (const std::string& old : dump->removed) {
    log_.Line(absl::StrCat("Deleting oldest pool database dump ", old));
  }
}

JanitorReport Run::DestroySnapshots(const std::string& job_id,
                                    absl::Duration retry) {
  JanitorOptions janitor;
  janitor.share_id = share_id_;
  janitor.destroy_retry = retry;
  janitor.clock = o_.clock;
  const std::string run_id = result_.run_id;
  janitor.select = [run_id, job_id](const std::string& run,
                                    const std::string& job) {
    return run == run_id && (job_id.empty() || job == job_id);
  };
  absl::StatusOr<JanitorReport> report =
      CleanUpLeftoverSnapshots(*o_.xapi, janitor);
  if (!report.ok()) {
    JanitorReport failed;
    failed.problems.push_back(
        absl::StrCat("cannot read the pool: ", report.status().message()));
    return failed;
  }
  return *std::move(report);
}

v1::JobStatus Run::Failed(const Item& item, absl::string_view step,
                          absl::string_view token, absl::string_view message) {
  v1::JobStatus st;
  st.set_job_id(item.job.spec.job_id());
  st.set_attempt(item.job.spec.attempt());
  st.set_fencing_token(item.job.spec.fencing_token());
  st.set_phase(token == "CANCELLED" ? v1::JOB_PHASE_CANCELLED
                                    : v1::JOB_PHASE_FAILED);
  st.set_status_token(std::string(token));
  st.set_error_step(std::string(step));
  st.set_error_message(std::string(message));
  const int64_t now = absl::ToUnixMillis(o_.clock->Now());
  st.set_started_unix_ms(static_cast<uint64_t>(now));
  st.set_finished_unix_ms(static_cast<uint64_t>(now));
  return st;
}

void Run::Record(Item& item, bool write) {
  if (Abandoned()) return;  // resumed later, recorded then
  const v1::JobStatus& st = item.job.status;
  const v1::PlannedVm& plan = item.job.plan;
  const absl::string_view kind = ExportKindName(plan.kind());
  const std::string& name = plan.name();
  const absl::Duration elapsed =
      absl::Milliseconds(static_cast<int64_t>(st.finished_unix_ms()) -
                         static_cast<int64_t>(st.started_unix_ms()));
  const int64_t minutes = std::max<int64_t>(0, absl::ToInt64Minutes(elapsed));
  std::vector<std::string> warnings = item.job.warnings;
  warnings.insert(warnings.end(), st.warnings().begin(), st.warnings().end());
  v1::VmOutcome& outcome = item.outcome;
  outcome.set_vm_uuid(plan.uuid());
  outcome.set_vm_name(name);
  outcome.set_host_name(item.job.spec.host_name().empty()
                            ? plan.host_name()
                            : item.job.spec.host_name());
  outcome.set_host_uuid(item.job.spec.host_uuid().empty()
                            ? plan.host_uuid()
                            : item.job.spec.host_uuid());
  outcome.set_kind(plan.kind());
  outcome.set_attempts(item.job.spec.attempt());
  *outcome.mutable_status() = st;
  outcome.mutable_status()->clear_warnings();
  for (const std::string& w : warnings)
    outcome.mutable_status()->add_warnings(w);

  absl::Status s;
  if (write) {
    std::string status_line;
    if (st.phase() == v1::JOB_PHASE_SUCCEEDED) {
      for (const std::string& w : warnings) {
        log_.Line(absl::StrCat("WARNING ", EscapeForLog(name), ": ",
                               EscapeForLog(w)));
      }
      log_.Line(absl::StrCat("*** success: ", EscapeForLog(st.backup_folder()),
                             " : ", FormatBytes(st.backup_bytes())));
      log_.Line(
          absl::StrCat("VmBackup ", kind, " ", EscapeForLog(name), " - ",
                       warnings.empty() ? "***Success***" : "***WARNING***",
                       " t:", minutes));
      status_line = StatusLog::Completed(!warnings.empty(), name, elapsed,
                                         st.backup_bytes());
    } else {
      const std::string reason = st.xenapi_error().code().empty()
                                     ? st.error_message()
                                     : st.xenapi_error().code();
      log_.Line(absl::StrCat("ERROR ", st.status_token(), " ",
                             EscapeForLog(name), " (", plan.uuid(), ") at ",
                             st.error_step(), ": ",
                             EscapeForLog(st.error_message())));
      log_.Line(absl::StrCat("VmBackup ", kind, " ", EscapeForLog(name),
                             " - ***ERROR*** t:", minutes));
      status_line = StatusLog::Failed(st.status_token(), name, reason);
    }
    s = status_log_.JobEnd(kind, outcome.host_name(), status_line);
    item.job.recorded = true;
    if (o_.observer != nullptr) o_.observer->Recorded(item.job, outcome);
  }
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
  RunJob& job = item.job;
  const v1::PlannedVm& plan = job.plan;
  const auto progress = [this, &job](const v1::JobStatus& st) {
    if (o_.observer == nullptr) return;
    RunJob copy = job;  // the spec of this attempt, the reported state
    copy.status = st;
    o_.observer->Progress(copy);
  };
  // A job handed out before a coordinator restart and not ended: the same
  // spec again (an agent that holds it ignores the copy and reports on).
  const bool adopt = job.dispatched && job.spec.attempt() > 0 &&
                     job.status.phase() != v1::JOB_PHASE_SUCCEEDED &&
                     job.status.phase() != v1::JOB_PHASE_FAILED &&
                     job.status.phase() != v1::JOB_PHASE_CANCELLED;
  if (!adopt) {
    if (plan.no_agent()) {
      job.status = Failed(item, "plan", "NO-AGENT",
                          plan.warnings_size() > 0
                              ? plan.warnings(plan.warnings_size() - 1)
                              : "no agent is connected on its host");
      progress(job.status);
      return;
    }
    log_.Line(absl::StrCat(
        "*** ", ExportKindName(plan.kind()), " begin ",
        EscapeForLog(plan.name()), " (", plan.uuid(), ") from ",
        job.spec.host_name(), " into ",
        EscapeForLog(JoinPath(policy_.backup_dir, job.spec.vm_folder()))));
    absl::Status s = status_log_.JobBegin(ExportKindName(plan.kind()),
                                          job.spec.host_name(), plan.name());
    if (!s.ok()) {
      absl::MutexLock lock(&mu_);
      result_.run_warnings.push_back(std::string(s.message()));
    }
  } else {
    log_.Line(absl::StrCat("*** ", ExportKindName(plan.kind()), " ",
                           EscapeForLog(plan.name()), " (", plan.uuid(),
                           "): taking over attempt ", job.spec.attempt(),
                           " on ", job.spec.host_name()));
  }
  bool first = !adopt;
  while (true) {
    if (first) {
      first = false;
      job.spec.set_attempt(job.spec.attempt() + 1);
      uint64_t token = 0;
      if (o_.next_fencing_token) {
        absl::StatusOr<uint64_t> t = o_.next_fencing_token();
        if (!t.ok()) {
          job.status = Failed(
              item, "dispatch", "JOURNAL-FAIL",
              absl::StrCat("cannot journal the job: ", t.status().message()));
          progress(job.status);
          return;
        }
        token = *t;
      }
      job.spec.set_fencing_token(token);
      job.status.Clear();
      if (o_.observer != nullptr) {
        absl::Status s = o_.observer->Dispatching(job);
        if (!s.ok()) {
          job.status =
              Failed(item, "dispatch", "JOURNAL-FAIL",
                     absl::StrCat("cannot journal the job: ", s.message()));
          progress(job.status);
          return;
        }
      }
      job.dispatched = true;
    }
    job.status = executor.RunJob(job.spec, progress, o_.cancel);
    if (job.status.status_token() != "AGENT-LOST" &&
        job.status.status_token() != "AGENT-RESTART") {
      return;
    }
    // The agent is gone (or came back without the job): its snapshot is
    // destroyed through the master; a VM that can move is tried once more
    // on another host.
    const JanitorReport cleaned =
        DestroySnapshots(job.spec.job_id(), o_.snapshot_destroy_timeout);
    for (const std::string& r : cleaned.removed) {
      log_.Line(absl::StrCat("removed the snapshot of a lost job: ",
                             EscapeForLog(r)));
    }
    if (!cleaned.problems.empty()) {
      job.status.set_snapshot_left(true);
      for (const std::string& p : cleaned.problems)
        job.status.add_warnings(absl::StrCat("snapshot: ", p));
    }
    if (static_cast<int>(job.spec.attempt()) >= o_.max_attempts || Cancelled())
      return;
    std::string next_host;
    const std::set<std::string> live =
        o_.agent_hosts ? o_.agent_hosts() : std::set<std::string>();
    for (const std::string& h : plan.candidate_host_uuids()) {
      if (h != job.spec.host_uuid() && live.count(h) > 0) {
        next_host = h;
        break;
      }
    }
    if (next_host.empty()) return;
    log_.Line(absl::StrCat("*** ", EscapeForLog(plan.name()), ": ",
                           job.status.error_message(),
                           "; trying again on another host"));
    job.spec.set_host_uuid(next_host);
    job.spec.set_host_name(
        host_names_.count(next_host) > 0 ? host_names_[next_host] : next_host);
    first = true;
  }
}

void Run::Dispatch(std::vector<Item>& items, Executor& executor) {
  const int per_host = std::max(1, policy_.per_host_concurrency);
  const int max_total = policy_.max_concurrency;  // 0: no limit
  std::map<std::string, int> running_on;          // host uuid -> running
  int running = 0;
  size_t started = 0;
  absl::Mutex mu;
  std::vector<std::thread> deferred;  // snapshot destroys, then Record
  // Recorded before a restart: only counted.
  for (Item& item : items) {
    if (item.job.recorded) {
      item.started = true;
      ++started;
      Record(item, false);
    }
  }
  // The first item (in run order) that may start now, or -1.
  auto next = [&]() -> int {
    if (max_total > 0 && running >= max_total) return -1;
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].started) continue;
      if (running_on[items[i].job.spec.host_uuid()] < per_host)
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
        if (started == items.size() || Abandoned()) return;
        i = next();
        items[i].started = true;
        ++started;
        ++running;
        ++running_on[items[i].job.spec.host_uuid()];
      }
      Item& item = items[static_cast<size_t>(i)];
      const std::string host = item.job.spec.host_uuid();
      const v1::JobPhase phase = item.job.status.phase();
      if (phase == v1::JOB_PHASE_SUCCEEDED || phase == v1::JOB_PHASE_FAILED ||
          phase == v1::JOB_PHASE_CANCELLED) {
        // Ended before a restart, not yet recorded.
      } else if (item.job.plan.host_uuid().empty() &&
                 !item.job.plan.no_agent()) {
        item.job.status = Failed(item, "plan", "NO-HOST",
                                 item.job.plan.host_reason().empty()
                                     ? "no live host can export this VM"
                                     : item.job.plan.host_reason());
      } else if (Cancelled() && !item.job.dispatched) {
        item.job.status = Failed(item, "dispatch", "CANCELLED",
                                 "the run was cancelled before this VM");
      } else {
        RunItem(item, executor);
      }
      if (item.job.status.snapshot_left() && !item.job.spec.vm_uuid().empty()) {
        // XAPI still holds the snapshot: retried beside the next exports;
        // the export slot is free meanwhile.
        absl::MutexLock lock(&mu);
        deferred.emplace_back([this, &item] {
          const JanitorReport r = DestroySnapshots(item.job.spec.job_id(),
                                                   o_.snapshot_destroy_timeout);
          if (r.problems.empty() && !r.removed.empty()) {
            v1::JobStatus& st = item.job.status;
            st.set_snapshot_left(false);
            std::vector<std::string> keep;
            for (const std::string& w : st.warnings())
              if (!IsSnapshotLeftWarning(w)) keep.push_back(w);
            st.clear_warnings();
            for (const std::string& w : keep) st.add_warnings(w);
            for (const std::string& removed : r.removed)
              log_.Line(absl::StrCat("removed the snapshot a job left: ",
                                     EscapeForLog(removed)));
          }
          Record(item, true);
        });
      } else {
        Record(item, true);
      }
      absl::MutexLock lock(&mu);
      --running;
      --running_on[host];
    }
  };
  std::set<std::string> hosts;
  for (const Item& item : items) hosts.insert(item.job.spec.host_uuid());
  size_t workers = static_cast<size_t>(per_host) * hosts.size();
  if (max_total > 0)
    workers = std::min(workers, static_cast<size_t>(max_total));
  workers = std::max<size_t>(1, std::min(workers, items.size()));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < workers; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  for (std::thread& t : deferred) t.join();
}

BackupRunResult& Run::Finish() {
  if (Abandoned()) {
    result_.fatal =
        "abandoned: the coordinator stopped; the run resumes when it starts "
        "again";
    return result_;
  }
  if (!share_id_.empty() && began_) {
    // Every job ended: any snapshot of this run still in the pool is a
    // leftover (a job that could not destroy it, a lost agent's).
    const JanitorReport r = DestroySnapshots("", o_.snapshot_destroy_timeout);
    for (const std::string& removed : r.removed)
      log_.Line(
          absl::StrCat("removed a leftover snapshot: ", EscapeForLog(removed)));
    for (const std::string& p : r.problems)
      result_.run_warnings.push_back(absl::StrCat("leftover snapshot: ", p));
  }
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
  result_.summary_line = absl::StrCat("VmBackup ended - ", word, " - ", counts);
  log_.Line(result_.summary_line);
  result_.exit_code = errors ? 2 : warnings ? 1 : 0;
  return result_;
}

BackupRunResult Run::Execute() {
  const ResumedRun* resume = o_.resume;
  result_.run_id = o_.run_id.empty() ? NewRunId(o_.clock->Now()) : o_.run_id;
  log_.Line(absl::StrCat("VmBackup ",
                         resume != nullptr ? "resuming" : "running", " on ",
                         o_.server_name, " (run ", result_.run_id, ") ..."));
  // status.log first, as the seed: a run that cannot start still says so.
  if (resume == nullptr) {
    if (o_.from_config_file) {
      absl::StatusOr<FileInfo> dir = o_.fs->Stat(Dirname(policy_.status_log));
      if (!dir.ok() || !dir->is_dir) {
        return Fatal(absl::StrCat("status_log ", policy_.status_log,
                                  ": folder ", Dirname(policy_.status_log),
                                  " does not exist"));
      }
    }
    absl::Status s = status_log_.RunBegin();
    if (!s.ok()) return Fatal(std::string(s.message()));
  }
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
  absl::Status s = WriteNewFile(*o_.fs, probe, "");
  if (s.ok()) s = o_.fs->RemoveFile(probe);
  if (!s.ok()) {
    return Fatal(absl::StrCat("failed to write to backup directory area (",
                              s.message(), ")"));
  }
  if (resume != nullptr) {
    share_id_ = resume->share_id;
  } else {
    absl::StatusOr<std::string> share_id = ShareId(*o_.fs, policy_.backup_dir);
    if (!share_id.ok()) return Fatal(std::string(share_id.status().message()));
    share_id_ = *share_id;
    if (o_.observer != nullptr) {
      s = o_.observer->Began(share_id_);
      if (!s.ok())
        return Fatal(absl::StrCat("cannot journal the run: ", s.message()));
    }
  }

  // Selection and plan: once, against the pool master (a resumed run keeps
  // its plan and reads only the pool's hosts again).
  PoolInventory inventory;
  v1::PreviewReport plan;
  if (resume == nullptr) {
    const std::set<std::string> agents =
        o_.agent_hosts ? o_.agent_hosts() : std::set<std::string>();
    PreviewOptions preview;
    preview.from_config_file = o_.from_config_file;
    preview.agent_hosts = o_.agent_hosts ? &agents : nullptr;
    plan = BuildPreview(policy_, *o_.xapi, preview, &inventory);
    log_.Line(std::string(
        absl::StripTrailingAsciiWhitespace(FormatPreview(plan, true))));
    if (!plan.valid()) return Fatal(plan.error());
  } else {
    absl::StatusOr<PoolInventory> read = LoadPoolInventory(*o_.xapi);
    if (!read.ok()) {
      return Fatal(
          absl::StrCat("cannot read the pool: ", read.status().message()));
    }
    inventory = *std::move(read);
  }
  for (const InventoryHost& h : inventory.hosts)
    host_names_[h.record.uuid] = h.record.name_label;
  {
    // The mail subject's name: the pool's, else its master's (a pool of one
    // host often has no name).
    const InventoryHost* master = inventory.FindHost(inventory.pool.master);
    absl::MutexLock lock(&mu_);
    result_.pool_name = !inventory.pool.name_label.empty()
                            ? inventory.pool.name_label
                        : master != nullptr ? master->record.name_label
                                            : std::string("pool");
  }
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
  janitor.share_id = share_id_;
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
  if (policy_.pool_db_backup && (resume == nullptr || !resume->pool_dump_done))
    DumpPoolDb(inventory);

  // Folders and jobs.
  std::vector<Item> items;
  if (resume != nullptr) {
    for (const RunJob& job : resume->jobs) {
      Item item;
      item.job = job;
      items.push_back(std::move(item));
    }
  } else {
    std::map<std::string, int> names;  // selectable VMs per name
    for (const InventoryVm& vm : inventory.vms) {
      const VmRecord& r = vm.record;
      if (!r.is_a_template && !r.is_a_snapshot && !r.is_control_domain) {
        ++names[r.name_label];
      }
    }
    for (const v1::PlannedVm& p : plan.vms()) {
      Item item;
      item.job.plan = p;
      for (const std::string& w : p.warnings()) item.job.warnings.push_back(w);
      v1::JobSpec& spec = item.job.spec;
      spec.set_job_id(absl::StrCat(result_.run_id, "/", p.uuid()));
      spec.set_run_id(result_.run_id);
      spec.set_attempt(0);
      spec.set_vm_uuid(p.uuid());
      spec.set_vm_name(p.name());
      spec.set_kind(p.kind());
      spec.set_compression(p.kind() == v1::EXPORT_KIND_VDI
                               ? v1::COMPRESSION_NONE
                               : policy_.compress);
      spec.set_vdi_format(policy_.vdi_export_format);
      spec.set_backup_dir(policy_.backup_dir);
      spec.set_max_backups(static_cast<uint32_t>(
          std::max(1, static_cast<int>(p.max_backups()))));
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
      spec.set_share_id(share_id_);
      spec.set_host_uuid(p.host_uuid());
      spec.set_host_name(p.host_name());
      spec.set_destroy_retry_ms(static_cast<uint64_t>(std::max<int64_t>(
          1, absl::ToInt64Milliseconds(std::min(
                 o_.job_destroy_retry, o_.snapshot_destroy_timeout)))));
      absl::StatusOr<VmFolderChoice> folder = ChooseVmFolder(
          *o_.fs, policy_.backup_dir, p.uuid(), p.name(), names[p.name()] > 1);
      if (!folder.ok()) return Fatal(std::string(folder.status().message()));
      spec.set_vm_folder(folder->folder);
      if (!folder->warning.empty())
        item.job.warnings.push_back(folder->warning);
      items.push_back(std::move(item));
    }
    if (o_.observer != nullptr) {
      std::vector<RunJob> jobs;
      for (const Item& item : items) jobs.push_back(item.job);
      s = o_.observer->Planned(jobs);
      if (!s.ok())
        return Fatal(absl::StrCat("cannot journal the plan: ", s.message()));
    }
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
