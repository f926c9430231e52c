// SPDX-License-Identifier: Apache-2.0
#include "coordinator/run_manager.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "common/backup/backup_verify.h"
#include "common/backup/export_format.h"
#include "common/base/logging.h"
#include "coordinator/preview.h"
#include "coordinator/remote_agent_executor.h"

namespace vmb::coordinator {
namespace {

// Findings of verify_after_run kept in a run's summary (the rest: a count).
constexpr size_t kMaxVerifyFindings = 100;

constexpr size_t kMaxLogLines = 20000;  // kept per live run for watchers

int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

bool Terminal(v1::JobPhase p) {
  return p == v1::JOB_PHASE_SUCCEEDED || p == v1::JOB_PHASE_FAILED ||
         p == v1::JOB_PHASE_CANCELLED;
}

std::string NewRunId(absl::Time now) {
  absl::BitGen gen;
  return absl::StrCat(
      absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()), "-",
      absl::StrFormat("%04x", absl::Uniform<uint32_t>(gen, 0, 0x10000)));
}

v1::VmOutcome OutcomeOf(const RunJob& job) {
  v1::VmOutcome o;
  o.set_vm_uuid(job.plan.uuid());
  o.set_vm_name(job.plan.name());
  o.set_host_name(job.spec.host_name().empty() ? job.plan.host_name()
                                               : job.spec.host_name());
  o.set_host_uuid(job.spec.host_uuid().empty() ? job.plan.host_uuid()
                                               : job.spec.host_uuid());
  o.set_kind(job.plan.kind());
  o.set_attempts(job.spec.attempt());
  *o.mutable_status() = job.status;
  if (o.status().phase() == v1::JOB_PHASE_UNSPECIFIED)
    o.mutable_status()->set_phase(v1::JOB_PHASE_QUEUED);
  return o;
}

RunJob FromRecord(const RunJournal::JobRecord& j) {
  RunJob job;
  job.plan = j.plan;
  job.spec = j.spec;
  job.status = j.status;
  job.warnings = j.warnings;
  job.dispatched = j.dispatched;
  job.recorded = j.recorded;
  return job;
}

absl::StatusOr<BackupPolicy> PolicyOf(const v1::StartRunRequest& request) {
  if (request.config_text().empty()) {
    return absl::InvalidArgumentError(
        "the request carries no config (config_text is empty)");
  }
  const std::vector<std::string> args(request.overrides().begin(),
                                      request.overrides().end());
  absl::StatusOr<PolicyArguments> parsed = ParsePolicyArguments(args);
  if (!parsed.ok()) return parsed.status();
  const std::string name =
      request.config_name().empty() ? "config" : request.config_name();
  return ParseBackupPolicy(request.config_text(), name, parsed->overrides);
}

}  // namespace

struct RunManager::LiveRun {
  RunJournal::RunRecord record;
  std::string mail;  // what became of the e-mail report ("" none yet)
  // What verify_after_run read back ("" none asked or not yet).
  std::string verify;
  std::vector<std::string> verify_findings;
  BackupPolicy policy;
  std::unique_ptr<ResumedRun> resume;
  absl::Notification cancel;
  absl::Notification abandon;
  std::vector<RunJob> jobs;                 // in run order, latest state
  std::vector<v1::VmOutcome> outcomes;      // OutcomeOf(jobs[i])
  std::vector<std::string> outcome_bytes;   // outcomes[i], serialized
  std::map<std::string, size_t> job_index;  // job_id -> index in jobs

  // Jobs change only through these, which keep `outcomes` and `job_index`:
  // a status query copies the outcomes rather than making a thousand.
  void AddJob(RunJob job) {
    job_index[job.spec.job_id()] = jobs.size();
    outcomes.push_back(OutcomeOf(job));
    outcome_bytes.push_back(outcomes.back().SerializeAsString());
    jobs.push_back(std::move(job));
  }
  void SetJob(size_t i, const RunJob& job) {
    RunJob& kept = jobs[i];
    // An attempt's spec (its pool's hosts with it) is copied once, not at
    // every report.
    if (kept.spec.fencing_token() != job.spec.fencing_token() ||
        kept.spec.job_id() != job.spec.job_id()) {
      kept.spec = job.spec;
    }
    if (kept.plan.uuid() != job.plan.uuid()) kept.plan = job.plan;
    kept.status = job.status;
    kept.warnings = job.warnings;
    kept.dispatched = job.dispatched;
    kept.recorded = job.recorded;
    outcomes[i] = OutcomeOf(job);
    outcome_bytes[i] = outcomes[i].SerializeAsString();
  }
  std::vector<std::string> log;
  size_t log_dropped = 0;  // lines dropped from the front of `log`
  uint64_t version = 1;
  bool finished = false;
  BackupRunResult result;
  std::vector<std::function<void()>> waiters;
  std::thread thread;
};

// Journals the run's steps (before they are acted on) and keeps the live
// state watchers read.
class RunManager::Observer final : public RunObserver {
 public:
  Observer(RunManager* manager, LiveRun* run) : m_(manager), run_(run) {}

  absl::Status Began(const std::string& share_id) override {
    RunJournal::RunRecord record;
    {
      absl::MutexLock lock(&m_->mu_);
      run_->record.share_id = share_id;
      run_->record.status_log_begun = true;
      record = run_->record;
    }
    return m_->options_.journal->UpdateRun(record);
  }

  absl::Status Planned(const std::vector<RunJob>& jobs) override {
    std::vector<RunJournal::JobRecord> records;
    int seq = 0;
    for (const RunJob& job : jobs) records.push_back(Record(job, seq++));
    absl::Status s =
        m_->options_.journal->PutPlannedJobs(run_->record.run_id, records);
    if (!s.ok()) return s;
    std::vector<std::function<void()>> wake;
    {
      absl::MutexLock lock(&m_->mu_);
      run_->jobs.clear();
      run_->outcomes.clear();
      run_->outcome_bytes.clear();
      run_->job_index.clear();
      for (const RunJob& job : jobs) run_->AddJob(job);
      run_->record.planned = true;
      wake = m_->ChangedLocked(*run_);
    }
    for (auto& w : wake) w();
    return absl::OkStatus();
  }

  void PoolDumpDone() override {
    RunJournal::RunRecord record;
    {
      absl::MutexLock lock(&m_->mu_);
      run_->record.pool_dump_done = true;
      record = run_->record;
    }
    Log(m_->options_.journal->UpdateRun(record), "pool dump");
  }

  absl::Status Dispatching(const RunJob& job) override {
    RunJournal::AttemptRecord attempt;
    attempt.job_id = job.spec.job_id();
    attempt.attempt = job.spec.attempt();
    attempt.fencing_token = job.spec.fencing_token();
    attempt.host_uuid = job.spec.host_uuid();
    attempt.started_unix_ms = UnixMs(m_->options_.clock->Now());
    RunJob copy = job;
    copy.dispatched = true;
    absl::Status s = m_->options_.journal->RecordJobChange(
        Record(copy, Seq(job)), nullptr, &attempt);
    if (!s.ok()) return s;
    Update(copy);
    return absl::OkStatus();
  }

  void Progress(const RunJob& job) override {
    const std::string& id = job.spec.job_id();
    bool phase_changed = false;
    {
      absl::MutexLock lock(&mu_);
      auto& last = phases_[id];
      phase_changed = last != job.status.phase();
      last = job.status.phase();
    }
    if (phase_changed) {
      // Phase changes (the terminal one included) are journalled before
      // the agent hears anything more, in one transaction with their event
      // (and the attempt's end); progress ticks stay in memory.
      RunJournal::EventRecord e;
      e.run_id = run_->record.run_id;
      e.job_id = id;
      e.time_unix_ms = UnixMs(m_->options_.clock->Now());
      e.kind = "phase";
      e.message = absl::StrCat(v1::JobPhase_Name(job.status.phase()),
                               job.status.status_token().empty() ? "" : " ",
                               job.status.status_token());
      RunJournal::AttemptRecord attempt;
      const bool ended = Terminal(job.status.phase());
      if (ended) {
        attempt.job_id = id;
        attempt.attempt = job.spec.attempt();
        attempt.fencing_token = job.spec.fencing_token();
        attempt.host_uuid = job.spec.host_uuid();
        attempt.agent_id = job.status.agent_id();
        attempt.started_unix_ms =
            static_cast<int64_t>(job.status.started_unix_ms());
        attempt.ended_unix_ms = e.time_unix_ms;
        attempt.outcome =
            job.status.phase() == v1::JOB_PHASE_SUCCEEDED   ? "succeeded"
            : job.status.phase() == v1::JOB_PHASE_CANCELLED ? "cancelled"
                                                            : "failed";
        attempt.reason = job.status.error_message();
        attempt.commit_granted = job.status.phase() == v1::JOB_PHASE_SUCCEEDED;
      }
      // Within the attempt the dispatch stored: only its state is new.
      RunJournal::JobRecord record;
      record.job_id = id;
      record.run_id = run_->record.run_id;
      record.seq = Seq(job);
      record.same_spec = true;
      record.status = job.status;
      record.dispatched = true;
      record.recorded = job.recorded;
      record.warnings = job.warnings;
      // The coordinator acts on a job awaiting its grant and on its end:
      // those are synced first. The phases between only inform (an agent
      // reports them again after a restart): the next sync covers them.
      const bool acted_on =
          ended || job.status.phase() == v1::JOB_PHASE_AWAITING_COMMIT;
      Log(m_->options_.journal->RecordJobChange(
              record, &e, ended ? &attempt : nullptr, /*sync=*/acted_on),
          "job state");
    }
    Update(job);
  }

  void Recorded(const RunJob& job, const v1::VmOutcome&) override {
    RunJob copy = job;
    copy.recorded = true;
    Log(m_->options_.journal->UpdateJob(Record(copy, Seq(job))), "record");
    Update(copy);
  }

  void LogLine(absl::string_view line) override {
    std::vector<std::function<void()>> wake;
    {
      absl::MutexLock lock(&m_->mu_);
      run_->log.emplace_back(line);
      if (run_->log.size() > kMaxLogLines) {
        run_->log.erase(run_->log.begin());
        ++run_->log_dropped;
      }
      wake = m_->ChangedLocked(*run_);
    }
    for (auto& w : wake) w();
  }

 private:
  RunJournal::JobRecord Record(const RunJob& job, int seq) const {
    RunJournal::JobRecord r;
    r.job_id = job.spec.job_id();
    r.run_id = run_->record.run_id;
    r.seq = seq;
    r.plan = job.plan;
    r.spec = job.spec;
    r.status = job.status;
    r.dispatched = job.dispatched;
    r.recorded = job.recorded;
    r.warnings = job.warnings;
    return r;
  }
  int Seq(const RunJob& job) const {
    absl::MutexLock lock(&m_->mu_);
    auto it = run_->job_index.find(job.spec.job_id());
    return it == run_->job_index.end() ? 0 : static_cast<int>(it->second);
  }
  void Update(const RunJob& job) {
    std::vector<std::function<void()>> wake;
    {
      absl::MutexLock lock(&m_->mu_);
      auto it = run_->job_index.find(job.spec.job_id());
      if (it != run_->job_index.end()) run_->SetJob(it->second, job);
      wake = m_->ChangedLocked(*run_);
    }
    for (auto& w : wake) w();
  }
  void Log(const absl::Status& s, absl::string_view what) {
    if (!s.ok()) {
      VMB_LOG(ERROR) << "run " << run_->record.run_id << ": journal (" << what
                     << "): " << s;
    }
  }

  RunManager* const m_;
  LiveRun* const run_;
  absl::Mutex mu_;
  std::map<std::string, v1::JobPhase> phases_ ABSL_GUARDED_BY(mu_);
};

RunManager::RunManager(RunManagerOptions options)
    : options_(std::move(options)) {}

RunManager::~RunManager() { Stop(); }

std::vector<std::function<void()>> RunManager::ChangedLocked(LiveRun& run) {
  ++run.version;
  std::vector<std::function<void()>> wake;
  wake.swap(run.waiters);
  return wake;
}

void RunManager::Launch(std::unique_ptr<LiveRun> run) {
  LiveRun* raw = run.get();
  std::vector<std::thread> ended;
  absl::MutexLock lock(&mu_);
  for (auto& [id, other] : runs_) {
    if (other->finished && other->thread.joinable())
      ended.push_back(std::move(other->thread));
  }
  mu_.Unlock();
  for (std::thread& t : ended) t.join();  // they are returning
  mu_.Lock();
  runs_[raw->record.run_id] = std::move(run);
  raw->thread = std::thread([this, raw] { Execute(raw); });
}

void RunManager::Execute(LiveRun* run) {
  Observer observer(this, run);
  BackupRunOptions o;
  o.xapi = options_.xapi;
  o.fs = options_.fs;
  o.clock = options_.clock;
  o.out = nullptr;
  o.cancel = &run->cancel;
  o.abandon = &run->abandon;
  AgentHub* hub = options_.hub;
  o.make_executor = [hub](const ExecutorSetup& setup) {
    return std::make_unique<RemoteAgentExecutor>(hub, setup);
  };
  o.from_config_file = true;
  o.server_name = options_.server_name;
  o.tls = options_.tls;
  o.snapshot_destroy_timeout = options_.snapshot_destroy_timeout;
  o.time_zone = options_.time_zone;
  o.run_id = run->record.run_id;
  o.observer = &observer;
  o.resume = run->resume.get();
  RunJournal* journal = options_.journal;
  o.next_fencing_token = [journal] { return journal->NextFencingToken(); };
  o.agent_hosts = [hub] {
    hub->WaitForReturningAgents();
    return hub->LiveHosts();
  };
  const BackupRunResult result = RunBackup(run->policy, o);

  std::vector<std::function<void()>> wake;
  RunJournal::RunRecord record;
  const bool abandoned = run->abandon.HasBeenNotified();
  {
    absl::MutexLock lock(&mu_);
    run->result = result;
    run->finished = true;
    if (!abandoned) {
      run->record.state = run->cancel.HasBeenNotified()
                              ? v1::RUN_STATE_CANCELLED
                          : result.exit_code == 0 ? v1::RUN_STATE_SUCCEEDED
                          : result.exit_code == 1 ? v1::RUN_STATE_WARNINGS
                                                  : v1::RUN_STATE_FAILED;
      run->record.finished_unix_ms = UnixMs(options_.clock->Now());
      run->record.summary = SummaryLocked(*run);
      record = run->record;
    }
    wake = ChangedLocked(*run);
  }
  if (!abandoned) {
    absl::Status s = options_.journal->UpdateRun(record);
    if (!s.ok()) {
      VMB_LOG(ERROR) << "run " << record.run_id
                     << ": cannot journal its end: " << s;
    }
    VMB_LOG(INFO) << "run " << record.run_id
                  << " ended: " << result.summary_line;
  }
  for (auto& w : wake) w();
  if (!abandoned) {
    VerifyAfterRun(run, &record);
    MailReport(run, record);
  }
}

void RunManager::VerifyAfterRun(LiveRun* run, RunJournal::RunRecord* record) {
  const int percent = run->policy.verify_after_run;
  if (percent <= 0 || options_.fs == nullptr) return;
  const std::vector<std::string> folders =
      PlanVerifyAfterRun(*options_.fs, run->policy.backup_dir, percent);
  VMB_LOG(INFO) << "run " << record->run_id << ": reading back "
                << folders.size()
                << " older backups (verify_after_run=" << percent << "%)";
  // A coordinator told to stop does not wait for the share to be read.
  VerifySummary verified = VerifyBackups(*options_.fs, folders, [this] {
    absl::MutexLock lock(&mu_);
    return stopping_;
  });
  if (verified.findings.size() > kMaxVerifyFindings) {
    const size_t more = verified.findings.size() - kMaxVerifyFindings;
    verified.findings.resize(kMaxVerifyFindings);
    verified.findings.push_back(absl::StrCat("... and ", more,
                                             " more (vmbackup verify ",
                                             run->policy.backup_dir, ")"));
  }
  VMB_LOG(INFO) << "run " << record->run_id << ": " << verified.line;
  for (const std::string& f : verified.findings) {
    if (verified.worst == VerifyResult::kError) {
      VMB_LOG(ERROR) << "run " << record->run_id << ": read back: " << f;
    } else {
      VMB_LOG(WARNING) << "run " << record->run_id << ": read back: " << f;
    }
  }
  record->summary.set_verify(verified.line);
  *record->summary.mutable_verify_findings() = {verified.findings.begin(),
                                                verified.findings.end()};
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    run->record.summary.set_verify(verified.line);
    *run->record.summary.mutable_verify_findings() =
        record->summary.verify_findings();
    run->verify = verified.line;
    run->verify_findings = verified.findings;
    wake = ChangedLocked(*run);
  }
  // Never changes the run's result: what it says of the older backups.
  absl::Status s = options_.journal->UpdateRun(*record);
  if (!s.ok()) {
    VMB_LOG(ERROR) << "run " << record->run_id
                   << ": cannot journal what was read back: " << s;
  }
  for (auto& w : wake) w();
}

void RunManager::MailReport(LiveRun* run, RunJournal::RunRecord record) {
  ReportContext context;
  context.pool_name = record.summary.pool_name();
  context.default_from = absl::StrCat("root@", options_.server_name);
  context.time_zone = options_.time_zone;
  if (options_.report_warnings)
    context.extra_warnings = options_.report_warnings();
  const std::string mail =
      MailRunReport(run->policy, record.summary, context, options_.clock,
                    options_.mail_retry, options_.mail_sender);
  if (mail.empty()) return;  // none wanted
  record.summary.set_mail(mail);
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    run->record.summary.set_mail(mail);
    run->mail = mail;
    wake = ChangedLocked(*run);
  }
  // Never changes the run's result: only what it says of its mail.
  absl::Status s = options_.journal->UpdateRun(record);
  if (!s.ok()) {
    VMB_LOG(ERROR) << "run " << record.run_id
                   << ": cannot journal its e-mail report: " << s;
  }
  for (auto& w : wake) w();
}

absl::Status RunManager::ResumeUnfinished() {
  absl::StatusOr<std::vector<RunJournal::RunRecord>> runs =
      options_.journal->UnfinishedRuns();
  if (!runs.ok()) return runs.status();
  for (RunJournal::RunRecord& record : *runs) {
    auto run = std::make_unique<LiveRun>();
    run->record = record;
    v1::StartRunRequest request;
    request.set_config_text(record.config_text);
    request.set_config_name(record.config_name);
    for (const std::string& o : record.overrides) request.add_overrides(o);
    absl::StatusOr<BackupPolicy> policy = PolicyOf(request);
    if (!policy.ok()) {
      record.state = v1::RUN_STATE_FAILED;
      record.summary.set_fatal(
          absl::StrCat("cannot resume: ", policy.status().message()));
      (void)options_.journal->UpdateRun(record);  // best effort: logged next
      VMB_LOG(ERROR) << "run " << record.run_id
                     << " cannot be resumed: " << policy.status();
      continue;
    }
    run->policy = *std::move(policy);
    if (record.planned) {
      absl::StatusOr<std::vector<RunJournal::JobRecord>> jobs =
          options_.journal->Jobs(record.run_id);
      if (!jobs.ok()) return jobs.status();
      run->resume = std::make_unique<ResumedRun>();
      run->resume->share_id = record.share_id;
      run->resume->pool_dump_done = record.pool_dump_done;
      for (const RunJournal::JobRecord& j : *jobs) {
        RunJob job = FromRecord(j);
        if (job.dispatched && !Terminal(job.status.phase()))
          options_.hub->Expect(job.spec.job_id(), job.spec.fencing_token());
        run->AddJob(job);
        run->resume->jobs.push_back(std::move(job));
      }
    }
    VMB_LOG(INFO) << "resuming run " << record.run_id << " ("
                  << run->jobs.size() << " VMs)";
    Launch(std::move(run));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RunManager::StartRun(
    const v1::StartRunRequest& request) {
  if (request.preview()) {
    return absl::InvalidArgumentError("a preview is asked with Preview");
  }
  absl::StatusOr<BackupPolicy> policy = PolicyOf(request);
  if (!policy.ok()) return policy.status();
  auto run = std::make_unique<LiveRun>();
  run->policy = *std::move(policy);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the coordinator is stopping");
    for (const auto& [id, other] : runs_) {
      if (!other->finished &&
          other->policy.backup_dir == run->policy.backup_dir) {
        return absl::FailedPreconditionError(
            absl::StrCat("run ", id, " is already using backup_dir ",
                         run->policy.backup_dir, "; one run at a time"));
      }
    }
  }
  RunJournal::RunRecord& record = run->record;
  record.run_id = NewRunId(options_.clock->Now());
  record.state = v1::RUN_STATE_RUNNING;
  record.backup_dir = run->policy.backup_dir;
  record.config_name = request.config_name();
  record.config_text = request.config_text();
  record.overrides.assign(request.overrides().begin(),
                          request.overrides().end());
  record.started_unix_ms = UnixMs(options_.clock->Now());
  absl::Status s = options_.journal->CreateRun(record);
  if (!s.ok()) return s;
  const std::string id = record.run_id;
  VMB_LOG(INFO) << "run " << id << " of " << EscapeForLog(record.config_name)
                << " into " << EscapeForLog(record.backup_dir) << " starts";
  Launch(std::move(run));
  return id;
}

v1::PreviewReport RunManager::Preview(const v1::StartRunRequest& request) {
  absl::StatusOr<BackupPolicy> policy = PolicyOf(request);
  if (!policy.ok()) {
    v1::PreviewReport report;
    report.set_valid(false);
    report.set_error(std::string(policy.status().message()));
    return report;
  }
  options_.hub->WaitForReturningAgents();
  const std::set<std::string> agents = options_.hub->LiveHosts();
  PreviewOptions o;
  o.agent_hosts = &agents;
  return BuildPreview(*policy, *options_.xapi, o);
}

std::string SerializeRunSummary(const v1::RunSummary& summary,
                                const std::vector<std::string>& vms) {
  std::string out = summary.SerializeAsString();
  size_t size = out.size();
  for (const std::string& vm : vms) size += vm.size() + 6;
  out.reserve(size);
  // Each VM as field `vms`, length-delimited: the tag, the length as a
  // varint, the bytes (a parser merges fields in whatever order they come).
  const uint32_t tag = (v1::RunSummary::kVmsFieldNumber << 3) | 2;
  auto varint = [&out](uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  };
  for (const std::string& vm : vms) {
    varint(tag);
    varint(vm.size());
    out += vm;
  }
  return out;
}

const RunManager::LiveRun* RunManager::FindRunLocked(
    const std::string& run_id) const {
  if (!run_id.empty()) {
    auto it = runs_.find(run_id);
    return it == runs_.end() ? nullptr : it->second.get();
  }
  // A newer run in the journal than any this process ran is not possible:
  // runs are only started here.
  const LiveRun* newest = nullptr;
  for (const auto& [id, run] : runs_) {
    if (newest == nullptr ||
        run->record.started_unix_ms > newest->record.started_unix_ms)
      newest = run.get();
  }
  return newest;
}

v1::RunSummary RunManager::SummaryLocked(const LiveRun& run, bool vms) const {
  v1::RunSummary s = run.record.summary;
  s.set_run_id(run.record.run_id);
  s.set_state(run.record.state);
  s.set_started_unix_ms(static_cast<uint64_t>(run.record.started_unix_ms));
  s.set_finished_unix_ms(static_cast<uint64_t>(run.record.finished_unix_ms));
  s.set_config_name(run.record.config_name);
  s.set_backup_dir(run.record.backup_dir);
  s.clear_vms();
  uint32_t ok = 0, warn = 0, err = 0;
  if (vms) s.mutable_vms()->Reserve(static_cast<int>(run.jobs.size()));
  for (size_t i = 0; i < run.jobs.size(); ++i) {
    const RunJob& job = run.jobs[i];
    if (vms) *s.add_vms() = run.outcomes[i];
    if (!job.recorded) continue;
    if (job.status.phase() != v1::JOB_PHASE_SUCCEEDED) {
      ++err;
    } else if (job.status.warnings_size() > 0 || !job.warnings.empty()) {
      ++warn;
    } else {
      ++ok;
    }
  }
  if (run.finished) {
    s.set_succeeded(static_cast<uint32_t>(run.result.succeeded));
    s.set_warnings(static_cast<uint32_t>(run.result.warnings));
    s.set_errors(static_cast<uint32_t>(run.result.errors));
    s.set_summary_line(run.result.summary_line);
    s.set_exit_code(run.result.exit_code);
    s.set_fatal(run.result.fatal);
    s.set_pool_db_dump(run.result.pool_db_dump);
    s.set_pool_name(run.result.pool_name);
    s.set_mail(run.mail);
    s.set_verify(run.verify);
    s.clear_verify_findings();
    for (const std::string& f : run.verify_findings) s.add_verify_findings(f);
    s.clear_run_warnings();
    for (const std::string& w : run.result.run_warnings) s.add_run_warnings(w);
    // The outcomes as recorded (warnings of planning included).
    s.clear_vms();
    if (vms) {
      for (const v1::VmOutcome& o : run.result.vms) *s.add_vms() = o;
      if (s.vms_size() == 0) {
        for (const RunJob& job : run.jobs) *s.add_vms() = OutcomeOf(job);
      }
    }
  } else {
    s.set_succeeded(ok);
    s.set_warnings(warn);
    s.set_errors(err);
  }
  return s;
}

absl::StatusOr<v1::RunSummary> RunManager::FromJournal(
    const std::string& run_id) {
  absl::StatusOr<RunJournal::RunRecord> record =
      run_id.empty() ? options_.journal->NewestRun()
                     : options_.journal->GetRun(run_id);
  if (!record.ok()) {
    if (absl::IsNotFound(record.status())) {
      return absl::NotFoundError(run_id.empty()
                                     ? "the coordinator has no runs yet"
                                     : absl::StrCat("no run ", run_id));
    }
    return record.status();
  }
  LiveRun view;
  view.record = *record;
  absl::StatusOr<std::vector<RunJournal::JobRecord>> jobs =
      options_.journal->Jobs(record->run_id);
  if (!jobs.ok()) return jobs.status();
  for (const RunJournal::JobRecord& j : *jobs) view.AddJob(FromRecord(j));
  v1::RunSummary s;
  {
    absl::MutexLock lock(&mu_);
    s = SummaryLocked(view);
  }
  if (record->state != v1::RUN_STATE_RUNNING) {
    // The counts and lines the run ended with.
    const v1::RunSummary& end = record->summary;
    s.set_succeeded(end.succeeded());
    s.set_warnings(end.warnings());
    s.set_errors(end.errors());
    s.set_summary_line(end.summary_line());
    s.set_exit_code(end.exit_code());
    s.set_fatal(end.fatal());
    s.set_pool_db_dump(end.pool_db_dump());
    s.set_pool_name(end.pool_name());
    s.set_mail(end.mail());
    s.set_verify(end.verify());
    *s.mutable_verify_findings() = end.verify_findings();
    *s.mutable_run_warnings() = end.run_warnings();
    if (end.vms_size() > 0) *s.mutable_vms() = end.vms();
  }
  return s;
}

absl::StatusOr<v1::RunSummary> RunManager::GetRun(const std::string& run_id) {
  {
    absl::MutexLock lock(&mu_);
    if (const LiveRun* run = FindRunLocked(run_id)) return SummaryLocked(*run);
  }
  return FromJournal(run_id);
}

absl::StatusOr<std::string> RunManager::GetRunSerialized(
    const std::string& run_id) {
  {
    absl::MutexLock lock(&mu_);
    if (const LiveRun* run = FindRunLocked(run_id)) {
      // An ended run's VMs are its recorded outcomes.
      if (run->finished) return SummaryLocked(*run).SerializeAsString();
      return SerializeRunSummary(SummaryLocked(*run, /*vms=*/false),
                                 run->outcome_bytes);
    }
  }
  absl::StatusOr<v1::RunSummary> s = FromJournal(run_id);
  if (!s.ok()) return s.status();
  return s->SerializeAsString();
}

absl::StatusOr<std::vector<v1::RunSummary>> RunManager::ListRuns(int limit) {
  absl::StatusOr<std::vector<RunJournal::RunRecord>> records =
      options_.journal->ListRuns(limit <= 0 ? 20 : limit);
  if (!records.ok()) return records.status();
  std::vector<v1::RunSummary> out;
  for (const RunJournal::RunRecord& r : *records) {
    {
      absl::MutexLock lock(&mu_);
      auto it = runs_.find(r.run_id);
      if (it != runs_.end()) {
        v1::RunSummary s = SummaryLocked(*it->second);
        s.clear_vms();
        out.push_back(std::move(s));
        continue;
      }
    }
    v1::RunSummary s = r.summary;
    s.set_run_id(r.run_id);
    s.set_state(r.state);
    s.set_started_unix_ms(static_cast<uint64_t>(r.started_unix_ms));
    s.set_finished_unix_ms(static_cast<uint64_t>(r.finished_unix_ms));
    s.set_config_name(r.config_name);
    s.set_backup_dir(r.backup_dir);
    s.clear_vms();
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status RunManager::CancelRun(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    mu_.Unlock();
    absl::StatusOr<RunJournal::RunRecord> r = options_.journal->GetRun(run_id);
    mu_.Lock();
    if (!r.ok()) return absl::NotFoundError(absl::StrCat("no run ", run_id));
    return absl::FailedPreconditionError(
        absl::StrCat("run ", run_id, " has already ended"));
  }
  if (it->second->finished) {
    return absl::FailedPreconditionError(
        absl::StrCat("run ", run_id, " has already ended"));
  }
  if (!it->second->cancel.HasBeenNotified()) {
    VMB_LOG(INFO) << "run " << run_id << ": cancel requested";
    it->second->cancel.Notify();
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> RunManager::NextUpdate(const std::string& run_id,
                                            WatchCursor* cursor,
                                            v1::RunUpdate* update,
                                            std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    mu_.Unlock();
    absl::StatusOr<v1::RunSummary> s = FromJournal(run_id);
    mu_.Lock();
    if (!s.ok()) return s.status();
    if (cursor->version != 0) return false;  // ended: sent already
    update->Clear();
    *update->mutable_summary() = *s;
    update->set_final(s->state() != v1::RUN_STATE_RUNNING);
    cursor->version = 1;
    return true;
  }
  LiveRun& run = *it->second;
  if (cursor->version == run.version) {
    if (stopping_) return absl::UnavailableError("the coordinator is stopping");
    run.waiters.push_back(std::move(wake));
    return false;
  }
  update->Clear();
  *update->mutable_summary() = SummaryLocked(run);
  const size_t total = run.log_dropped + run.log.size();
  size_t from = std::max(cursor->log_lines, run.log_dropped);
  for (size_t i = from; i < total; ++i)
    update->add_log_lines(run.log[i - run.log_dropped]);
  cursor->log_lines = total;
  cursor->version = run.version;
  update->set_final(run.finished && !run.abandon.HasBeenNotified());
  return true;
}

bool RunManager::RunEnded(const std::string& run_id,
                          std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end() || it->second->finished) return true;
  it->second->waiters.push_back(std::move(wake));
  return false;
}

void RunManager::Stop() {
  std::vector<std::thread> threads;
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [id, run] : runs_) {
      if (!run->finished) run->abandon.Notify();
      for (auto& w : run->waiters) wake.push_back(std::move(w));
      run->waiters.clear();
    }
  }
  for (auto& w : wake) w();
  // The runs' jobs wait in the hub: stopping it makes them return (and,
  // the runs being abandoned, nothing is recorded).
  options_.hub->Stop();
  absl::MutexLock lock(&mu_);
  for (auto& [id, run] : runs_) {
    if (run->thread.joinable()) threads.push_back(std::move(run->thread));
  }
  mu_.Unlock();
  for (std::thread& t : threads) t.join();
  mu_.Lock();
}

bool RunManager::WaitIdleForTesting(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, run] : runs_)
      if (!run->finished) return false;
    return true;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

}  // namespace vmb::coordinator
