// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"

#include "agent/restore_job.h"
#include "common/backup/attempt_file.h"
#include "common/backup/backup_layout.h"
#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/tls_pins.h"
#include "common/xapi/xml_rpc_xen_api_client.h"

namespace vmb::agent {

using ::vmb::v1::JobPhase;
using ::vmb::v1::JobSpec;
using ::vmb::v1::JobStatus;

struct AgentDaemon::Job {
  enum class State { kQueued, kRunning, kFinished };

  explicit Job(JobSpec s) : spec(std::move(s)) {}

  const JobSpec spec;
  // The rest is guarded by AgentDaemon::mu_ (which the thread-safety
  // analysis cannot name from here).
  JobStatus status;  // the latest report; terminal once kFinished
  State state = State::kQueued;
  bool cancel_requested = false;  // `cancel` is notified
  bool granted = false;
  bool fenced = false;
  std::string fence_reason;
  absl::Notification cancel;
};

struct AgentDaemon::Endpoint {
  TlsOptions tls;
  std::unique_ptr<XenApiClient> client;
};

namespace {

constexpr absl::Duration kMaxPause = absl::Minutes(1);

bool IsTerminal(JobPhase phase) {
  return phase == v1::JOB_PHASE_SUCCEEDED || phase == v1::JOB_PHASE_FAILED ||
         phase == v1::JOB_PHASE_CANCELLED;
}

std::string PhaseName(JobPhase phase) {
  std::string name(v1::JobPhase_Name(phase));
  absl::string_view prefix = "JOB_PHASE_";
  if (absl::string_view(name).substr(0, prefix.size()) == prefix)
    name.erase(0, prefix.size());
  return name;
}

std::string RandomInstanceId() {
  absl::BitGen bits;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bits),
                         absl::Uniform<uint64_t>(bits));
}

uint64_t ToUnixMs(absl::Time t) {
  return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMillis(t)));
}

// A job's terminal status made by the daemon, for a job that never ran.
JobStatus UnstartedResult(const JobSpec& spec, JobPhase phase,
                          absl::string_view step, absl::string_view token,
                          absl::string_view message, absl::Time now) {
  JobStatus status;
  status.set_job_id(spec.job_id());
  status.set_attempt(spec.attempt());
  status.set_fencing_token(spec.fencing_token());
  status.set_phase(phase);
  status.set_error_step(std::string(step));
  status.set_status_token(std::string(token));
  status.set_error_message(std::string(message));
  status.set_finished_unix_ms(ToUnixMs(now));
  return status;
}

// Writes `data` to `path` with mode 0600, durably (temporary file, fsync,
// rename). The CA certificates of a job are not secret, but the folder they
// are in is the agent's own.
absl::Status WritePrivateFile(Filesystem& fs, const std::string& dir,
                              const std::string& path, absl::string_view data) {
  const std::string temp = absl::StrCat(path, ".tmp");
  if (::unlink(temp.c_str()) != 0 && errno != ENOENT)
    return ErrnoToStatus(errno, absl::StrCat("removing ", temp));
  const int fd = ::open(
      temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("creating ", temp));
  absl::Status status;
  for (size_t done = 0; done < data.size() && status.ok();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoToStatus(errno, absl::StrCat("writing ", temp));
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (status.ok() && ::fsync(fd) != 0)
    status = ErrnoToStatus(errno, absl::StrCat("syncing ", temp));
  if (::close(fd) != 0 && status.ok())
    status = ErrnoToStatus(errno, absl::StrCat("closing ", temp));
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0)
    status = ErrnoToStatus(errno, absl::StrCat("renaming ", temp));
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  return fs.SyncDir(dir);
}

}  // namespace

std::unique_ptr<XenApiClient> MakeXmlRpcXenApiClient(
    const XapiEndpoint& endpoint) {
  CurlXmlRpcTransport::Options transport;
  transport.tls = endpoint.tls;
  XmlRpcXenApiClient::Options client;
  client.url = endpoint.master_url;
  client.session_source = endpoint.session_source;
  return std::make_unique<XmlRpcXenApiClient>(
      std::move(client), std::make_unique<CurlXmlRpcTransport>(transport));
}

AgentDaemon::AgentDaemon(Options options)
    : options_(std::move(options)),
      instance_id_(RandomInstanceId()),
      store_(options_.fs, JoinPath(options_.state_dir, "jobs")) {}

AgentDaemon::~AgentDaemon() { Stop(); }

absl::Status AgentDaemon::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_)
      return absl::FailedPreconditionError("the agent was started already");
    started_ = true;
  }
  if (options_.connection == nullptr || options_.fs == nullptr ||
      options_.clock == nullptr || options_.state_dir.empty() ||
      options_.max_jobs < 1) {
    return absl::FailedPreconditionError(
        "the agent needs a connection, a filesystem, a clock, a state folder "
        "and max_jobs of at least 1");
  }
  VMB_RETURN_IF_ERROR(Recover());
  VMB_LOG(INFO) << "agent " << EscapeForLog(options_.identity.agent_id())
                << " (instance " << instance_id_ << ") starts with "
                << options_.max_jobs << " job slots";
  for (int i = 0; i < options_.max_jobs; ++i)
    workers_.emplace_back([this] { WorkerLoop(); });
  connection_thread_ = std::thread([this] { ConnectionLoop(); });
  return absl::OkStatus();
}

void AgentDaemon::Stop() {
  std::vector<Job*> unstarted;
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
    for (auto& [id, job] : jobs_) {
      if (job->state != Job::State::kRunning) continue;
      job->cancel_requested = true;
      if (!job->cancel.HasBeenNotified()) job->cancel.Notify();
    }
    unstarted.assign(queue_.begin(), queue_.end());
    queue_.clear();
  }
  if (!workers_.empty()) {
    VMB_LOG(INFO) << "agent stopping: running jobs are cancelled";
  }
  const absl::Time now = options_.clock->Now();
  for (Job* job : unstarted) {
    FinishUnstarted(job, UnstartedResult(job->spec, v1::JOB_PHASE_CANCELLED,
                                         "queued", "CANCELLED",
                                         "the agent stopped before the job "
                                         "started",
                                         now));
  }
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  {
    absl::MutexLock lock(&mu_);
    stop_connection_ = true;
    // The jobs' ends are the news; the last call reports them.
    ChangedLocked(/*news=*/true);
  }
  if (connection_thread_.joinable()) connection_thread_.join();
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

// --- Start-up -------------------------------------------------------------

absl::Status AgentDaemon::Recover() {
  VMB_RETURN_IF_ERROR(
      Annotate(store_.Init(), "the agent's state folder ", options_.state_dir));
  absl::StatusOr<std::vector<JobStore::StoredJob>> stored = store_.Load();
  if (!stored.ok()) {
    return Annotate(stored.status(), "reading the jobs in ", store_.dir());
  }
  for (JobStore::StoredJob& stored_job : *stored) {
    auto job = std::make_unique<Job>(std::move(stored_job.spec));
    job->status = std::move(stored_job.status);
    job->state = Job::State::kFinished;
    if (!IsTerminal(job->status.phase())) {
      const std::string cleanup = CleanUpLeftover(job->spec, job->status);
      JobStatus& status = job->status;
      const std::string phase = PhaseName(status.phase());
      status.set_phase(v1::JOB_PHASE_FAILED);
      status.set_error_step("agent restart");
      status.set_status_token("AGENT-RESTART");
      status.set_error_message(
          absl::StrCat("the agent restarted while the job was in phase ", phase,
                       "; ", cleanup));
      status.set_finished_unix_ms(ToUnixMs(options_.clock->Now()));
      job->status = Stamp(std::move(status));
      VMB_LOG(WARNING) << "job " << EscapeForLog(job->spec.job_id()) << " VM "
                       << EscapeForLog(job->spec.vm_uuid())
                       << " was left unfinished by an earlier agent process: "
                       << EscapeForLog(cleanup);
      Persist(job->status);
    }
    absl::MutexLock lock(&mu_);
    const std::string id = job->spec.job_id();
    jobs_[id] = std::move(job);
  }
  return absl::OkStatus();
}

std::string AgentDaemon::CleanUpLeftover(const JobSpec& spec,
                                         const JobStatus& status) {
  if (spec.has_restore()) {
    return absl::StrCat(
        "a restore of ", spec.restore().backup_folder(),
        ": what it had made in the pool (a new VM, new disks on its SR) may "
        "be left; look for it and remove it by hand");
  }
  const std::string& folder = status.backup_folder();
  if (folder.empty()) return "it had made no backup folder";
  Filesystem& fs = *options_.fs;
  absl::StatusOr<FileInfo> info = fs.Stat(folder);
  if (absl::IsNotFound(info.status()))
    return absl::StrCat("its backup folder ", folder, " is gone");
  if (!info.ok()) {
    return absl::StrCat("its backup folder ", folder,
                        " was left: ", info.status().message());
  }
  if (!info->is_dir || info->is_symlink) {
    return absl::StrCat("its backup folder ", folder,
                        " was left: it is not a folder");
  }
  absl::StatusOr<FileInfo> marker =
      fs.Stat(JoinPath(folder, std::string(kSuccessMarker)));
  if (marker.ok()) {
    return absl::StrCat("its backup folder ", folder,
                        " was left: it holds a success marker");
  }
  absl::StatusOr<v1::AttemptFile> attempt = ReadAttemptFile(fs, folder);
  if (absl::IsNotFound(attempt.status())) {
    return absl::StrCat("its backup folder ", folder,
                        " was left: it has no attempt file, so it cannot be "
                        "proved to be this job's");
  }
  if (!attempt.ok()) {
    return absl::StrCat("its backup folder ", folder,
                        " was left: its attempt file cannot be read (",
                        attempt.status().message(), ")");
  }
  if (attempt->job_id() != spec.job_id() ||
      attempt->fencing_token() != spec.fencing_token()) {
    return absl::StrCat("its backup folder ", folder,
                        " was left: its attempt file names another attempt "
                        "(fencing token ",
                        attempt->fencing_token(), ")");
  }
  if (absl::Status s = fs.RemoveTree(folder); !s.ok()) {
    return absl::StrCat("its unfinished backup folder ", folder,
                        " could not be removed: ", s.message());
  }
  if (absl::Status s = fs.SyncDir(Dirname(folder)); !s.ok()) {
    // The folder is gone; only whether that survives a crash is in doubt,
    // and the next backup of the VM removes an older attempt's unfinished
    // folder anyway (docs/backup.md).
    VMB_LOG(WARNING) << "syncing " << EscapeForLog(Dirname(folder)) << ": "
                     << s;
  }
  return absl::StrCat("its unfinished backup folder ", folder, " was removed");
}

// --- The connection thread --------------------------------------------------

v1::AgentState AgentDaemon::BuildState() {
  v1::AgentState state;
  *state.mutable_identity() = options_.identity;
  state.mutable_identity()->set_instance_id(instance_id_);
  state.set_max_concurrent_jobs(static_cast<uint32_t>(options_.max_jobs));
  absl::MutexLock lock(&mu_);
  state.set_coordinator_instance_id(coordinator_instance_id_);
  for (const auto& [id, job] : jobs_) *state.add_jobs() = job->status;
  return state;
}

void AgentDaemon::ConnectionLoop() {
  enum class Link { kUnknown, kUp, kDown };
  Link link = Link::kUnknown;
  absl::BitGen bits;
  absl::Duration backoff = options_.initial_backoff;
  const bool* stop = nullptr;
  {
    absl::MutexLock lock(&mu_);
    stop = &stop_connection_;
  }
  struct StopOrChange {
    const AgentDaemon* daemon;
    bool operator()() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return daemon->stop_connection_ || daemon->changed_;
    }
  };
  const StopOrChange stop_or_change{this};
  struct StopOrNews {
    const AgentDaemon* daemon;
    bool operator()() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return daemon->stop_connection_ || daemon->news_;
    }
  };
  const StopOrNews stop_or_news{this};
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_connection_) break;
      changed_ = false;  // this call carries every change so far
      news_ = false;
      in_call_ = true;  // ... and news from now on interrupts it
      interrupted_ = false;
    }
    const absl::Time call_start = absl::Now();
    const v1::AgentState state = BuildState();
    absl::StatusOr<v1::DesiredState> desired =
        options_.connection->Synchronize(state, options_.sync_timeout);
    {
      absl::MutexLock lock(&mu_);
      in_call_ = false;
      // Interrupted for news: the coordinator has the state sent (it may
      // hold an answer for the next call); the next call goes now.
      if (interrupted_ && absl::IsCancelled(desired.status())) continue;
    }
    if (desired.ok()) {
      if (link != Link::kUp) {
        VMB_LOG(INFO) << "connected to the coordinator (instance \""
                      << EscapeForLog(desired->coordinator_instance_id())
                      << "\")";
        link = Link::kUp;
      }
      backoff = options_.initial_backoff;
      Apply(*desired, /*final=*/false);
      absl::Duration pause = absl::Milliseconds(desired->next_sync_after_ms());
      absl::MutexLock lock(&mu_);
      // A call is also the heartbeat: never later than the coordinator
      // expects one, nor a minute.
      pause = std::min({pause, heartbeat_interval_, kMaxPause});
      mu_.AwaitWithDeadline(absl::Condition(&stop_or_change),
                            absl::Now() + pause);
      // Coalesce: progress reports come about once a second per job. News
      // (a job awaiting its grant, a job's end) goes at once, and while a
      // job waits for its grant the coordinator holds the next call until
      // it has decided: that call goes almost at once too.
      bool waiting = false;
      for (const auto& [id, job] : jobs_) {
        waiting = waiting ||
                  (job->status.phase() == v1::JOB_PHASE_AWAITING_COMMIT &&
                   !job->granted && !job->fenced && !job->cancel_requested);
      }
      mu_.AwaitWithDeadline(
          absl::Condition(&stop_or_news),
          call_start + (waiting ? options_.awaiting_sync_interval
                                : options_.min_sync_interval));
      continue;
    }
    if (link != Link::kDown) {
      VMB_LOG(WARNING) << "cannot reach the coordinator: " << desired.status()
                       << "; jobs go on, retrying";
      link = Link::kDown;
    }
    absl::MutexLock lock(&mu_);
    const absl::Duration pause = backoff * absl::Uniform(bits, 0.5, 1.0);
    // A restarted coordinator gives its agents three heartbeat intervals to
    // come back before it declares their jobs lost: retry at least once in
    // each.
    backoff =
        std::min({backoff * 2, options_.max_backoff, heartbeat_interval_});
    mu_.AwaitWithDeadline(absl::Condition(stop), absl::Now() + pause);
  }
  // Stop(): the jobs have ended; tell the coordinator how, if it listens.
  absl::StatusOr<v1::DesiredState> last = options_.connection->Synchronize(
      BuildState(), options_.final_sync_timeout);
  if (last.ok()) {
    Apply(*last, /*final=*/true);
  } else {
    VMB_LOG(WARNING) << "the last report to the coordinator failed: "
                     << last.status();
  }
}

void AgentDaemon::Apply(const v1::DesiredState& desired, bool final) {
  {
    absl::MutexLock lock(&mu_);
    const std::string& instance = desired.coordinator_instance_id();
    if (!instance.empty() && instance != coordinator_instance_id_) {
      if (!coordinator_instance_id_.empty()) {
        VMB_LOG(INFO) << "the coordinator restarted (instance "
                      << EscapeForLog(instance) << ")";
      }
      coordinator_instance_id_ = instance;
    }
    heartbeat_interval_ =
        desired.heartbeat_interval_ms() > 0
            ? absl::Milliseconds(desired.heartbeat_interval_ms())
            : absl::InfiniteDuration();
  }
  if (!desired.session_ref().empty()) {
    absl::MutexLock lock(&session_mu_);
    if (session_ != desired.session_ref()) {
      session_ = desired.session_ref();
      session_secret_ =
          ScopedSecret(RegisterSecret(session_, "OpaqueRef:(session)"));
    }
  }
  if (!final) {
    for (const JobSpec& spec : desired.start()) Accept(spec);
    for (const std::string& id : desired.cancel_job_ids()) Cancel(id);
    for (const v1::Fence& fence : desired.fences()) Fence(fence);
    for (const v1::CommitGrant& grant : desired.commit_grants()) Grant(grant);
  }
  for (const std::string& id : desired.forget_job_ids()) Forget(id);
}

void AgentDaemon::Accept(const JobSpec& spec) {
  if (spec.job_id().empty()) {
    VMB_LOG(WARNING) << "ignoring a job without a job_id (VM "
                     << EscapeForLog(spec.vm_uuid()) << ")";
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || jobs_.count(spec.job_id()) > 0) return;
  }
  auto job = std::make_unique<Job>(spec);
  JobStatus queued;
  queued.set_job_id(spec.job_id());
  queued.set_attempt(spec.attempt());
  queued.set_fencing_token(spec.fencing_token());
  queued.set_phase(v1::JOB_PHASE_QUEUED);
  job->status = Stamp(std::move(queued));
  // The job is on disk before it can start, so that a restarted agent
  // knows it had it.
  if (absl::Status s = store_.Add(job->spec, job->status); !s.ok()) {
    job->status = Stamp(UnstartedResult(
        spec, v1::JOB_PHASE_FAILED, "accept", "AGENT-STATE-FAIL",
        absl::StrCat("the agent cannot record the job in its state folder: ",
                     s.message()),
        options_.clock->Now()));
    job->state = Job::State::kFinished;
    VMB_LOG(ERROR) << "job " << EscapeForLog(spec.job_id())
                   << " refused: " << s;
  }
  VMB_LOG(INFO) << "job " << EscapeForLog(spec.job_id()) << " VM "
                << EscapeForLog(spec.vm_uuid()) << " accepted (attempt "
                << spec.attempt() << ", fencing token " << spec.fencing_token()
                << ")";
  bool cancelled = false;
  Job* raw = job.get();
  {
    absl::MutexLock lock(&mu_);
    if (raw->state == Job::State::kQueued) {
      if (stopping_) {
        cancelled = true;  // Stop() emptied the queue meanwhile
      } else {
        queue_.push_back(raw);
      }
    }
    jobs_[spec.job_id()] = std::move(job);
    // The coordinator hands a run's jobs out as they come: the next call
    // goes at once, says the job is taken and fetches the ones after it.
    ChangedLocked(/*news=*/true);
  }
  if (cancelled) {
    FinishUnstarted(raw, UnstartedResult(spec, v1::JOB_PHASE_CANCELLED,
                                         "queued", "CANCELLED",
                                         "the agent stopped before the job "
                                         "started",
                                         options_.clock->Now()));
  }
}

bool AgentDaemon::ClaimQueuedLocked(Job* job) {
  auto it = std::find(queue_.begin(), queue_.end(), job);
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

void AgentDaemon::FinishUnstarted(Job* job, JobStatus status) {
  status = Stamp(std::move(status));
  Persist(status);
  VMB_LOG(INFO) << "job " << EscapeForLog(job->spec.job_id()) << " VM "
                << EscapeForLog(job->spec.vm_uuid()) << " "
                << PhaseName(status.phase()) << " before it started: "
                << EscapeForLog(status.error_message());
  absl::MutexLock lock(&mu_);
  job->status = std::move(status);
  job->state = Job::State::kFinished;
  ChangedLocked(/*news=*/true);
}

void AgentDaemon::Cancel(const std::string& job_id) {
  Job* unstarted = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return;
    Job* job = it->second.get();
    if (job->state == Job::State::kQueued) {
      if (ClaimQueuedLocked(job)) unstarted = job;
    } else if (job->state == Job::State::kRunning && !job->cancel_requested) {
      VMB_LOG(INFO) << "job " << EscapeForLog(job_id)
                    << ": cancelled by the coordinator";
      job->cancel_requested = true;
      job->cancel.Notify();
    }
  }
  if (unstarted != nullptr) {
    FinishUnstarted(unstarted,
                    UnstartedResult(unstarted->spec, v1::JOB_PHASE_CANCELLED,
                                    "queued", "CANCELLED",
                                    "cancelled by the coordinator before it "
                                    "started",
                                    options_.clock->Now()));
  }
}

void AgentDaemon::Grant(const v1::CommitGrant& grant) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(grant.job_id());
  if (it == jobs_.end()) return;
  Job* job = it->second.get();
  if (job->spec.fencing_token() != grant.fencing_token()) {
    VMB_LOG(WARNING) << "job " << EscapeForLog(grant.job_id())
                     << ": ignoring a commit grant for fencing token "
                     << grant.fencing_token() << " (the job has "
                     << job->spec.fencing_token() << ")";
    return;
  }
  if (!job->granted && !job->fenced && job->state != Job::State::kFinished) {
    VMB_LOG(INFO) << "job " << EscapeForLog(grant.job_id())
                  << ": commit granted";
  }
  job->granted = true;
}

void AgentDaemon::Fence(const v1::Fence& fence) {
  Job* unstarted = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(fence.job_id());
    if (it == jobs_.end()) return;
    Job* job = it->second.get();
    if (job->spec.fencing_token() != fence.fencing_token() || job->fenced ||
        job->state == Job::State::kFinished) {
      return;
    }
    VMB_LOG(WARNING) << "job " << EscapeForLog(fence.job_id())
                     << ": fenced by the coordinator: "
                     << EscapeForLog(fence.reason());
    job->fenced = true;
    job->fence_reason = fence.reason();
    if (job->state == Job::State::kQueued) {
      if (ClaimQueuedLocked(job)) unstarted = job;
    } else if (!job->cancel_requested) {
      job->cancel_requested = true;
      job->cancel.Notify();
    }
  }
  if (unstarted != nullptr) {
    FinishUnstarted(unstarted,
                    UnstartedResult(unstarted->spec, v1::JOB_PHASE_FAILED,
                                    "queued", "FENCED",
                                    absl::StrCat("fenced by the coordinator "
                                                 "before it started: ",
                                                 fence.reason()),
                                    options_.clock->Now()));
  }
}

void AgentDaemon::Forget(const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || it->second->state != Job::State::kFinished) return;
    jobs_.erase(it);
    changed_ = true;
  }
  if (absl::Status s = store_.Remove(job_id); !s.ok()) {
    // The files are read again at the next start, and the job reported
    // until the coordinator forgets it again.
    VMB_LOG(WARNING) << "job " << EscapeForLog(job_id)
                     << ": cannot remove its state files: " << s;
  }
}

// --- Job threads ------------------------------------------------------------

void AgentDaemon::WorkerLoop() {
  struct StopOrWork {
    const AgentDaemon* daemon;
    bool operator()() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return daemon->stopping_ || !daemon->queue_.empty();
    }
  };
  const StopOrWork ready{this};
  while (true) {
    Job* job = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      job->state = Job::State::kRunning;
      changed_ = true;
    }
    RunJob(job);
  }
}

JobStatus AgentDaemon::Stamp(JobStatus status) const {
  status.set_host_uuid(options_.identity.host_uuid());
  status.set_agent_id(options_.identity.agent_id());
  return status;
}

void AgentDaemon::Persist(const JobStatus& status) {
  if (absl::Status s = store_.Update(status); !s.ok()) {
    VMB_LOG(ERROR) << "job " << EscapeForLog(status.job_id())
                   << ": cannot record its state: " << s;
  }
}

void AgentDaemon::RunJob(Job* job) {
  const JobSpec& spec = job->spec;
  JobStatus result;
  absl::StatusOr<JobContext> context = ContextFor(spec);
  if (context.ok()) {
    JobHooks hooks;
    hooks.progress = [this, job](const JobStatus& status) {
      OnProgress(job, status);
    };
    hooks.commit_gate = [this, job](const JobStatus&) {
      return CommitGate(job);
    };
    hooks.cancel = &job->cancel;
    result = spec.has_restore() ? RunRestoreJob(*context, spec, hooks)
                                : RunVmBackupJob(*context, spec, hooks);
  } else {
    const bool no_host = absl::IsNotFound(context.status());
    const bool bad_spec = absl::IsInvalidArgument(context.status());
    result = UnstartedResult(
        spec, v1::JOB_PHASE_FAILED, bad_spec ? "check job" : "dispatch",
        no_host ? "NO-HOST" : (bad_spec ? "BAD-JOB" : "DISPATCH-FAIL"),
        context.status().message(), options_.clock->Now());
    VMB_LOG(WARNING) << "job " << EscapeForLog(spec.job_id()) << " VM "
                     << EscapeForLog(spec.vm_uuid())
                     << " cannot run: " << context.status();
  }
  {
    absl::MutexLock lock(&mu_);
    // A fenced job that stopped by its cancellation, or failed for it, did
    // so because the coordinator gave this attempt up.
    if (job->fenced && result.phase() != v1::JOB_PHASE_SUCCEEDED) {
      if (result.phase() == v1::JOB_PHASE_CANCELLED ||
          result.error_message().empty()) {
        result.set_error_message(
            absl::StrCat("fenced by the coordinator: ", job->fence_reason));
      }
      result.set_phase(v1::JOB_PHASE_FAILED);
      result.set_status_token("FENCED");
      VMB_LOG(WARNING) << "job " << EscapeForLog(spec.job_id()) << " VM "
                       << EscapeForLog(spec.vm_uuid())
                       << " ended fenced: " << EscapeForLog(job->fence_reason);
    }
  }
  result = Stamp(std::move(result));
  // Stored before it is reported: the coordinator may forget the job as
  // soon as it sees it finished.
  Persist(result);
  absl::MutexLock lock(&mu_);
  job->status = std::move(result);
  job->state = Job::State::kFinished;
  ChangedLocked(/*news=*/true);
}

void AgentDaemon::OnProgress(Job* job, const JobStatus& status) {
  // The job's final state is recorded by RunJob once the job has returned.
  if (IsTerminal(status.phase())) return;
  JobStatus stamped = Stamp(status);
  bool phase_changed = false;
  {
    absl::MutexLock lock(&mu_);
    phase_changed = job->status.phase() != stamped.phase();
  }
  // A new phase is on disk before it is reported, so that a restarted agent
  // never knows less than the coordinator. Only this thread writes a running
  // job's status.
  if (phase_changed) Persist(stamped);
  // Only a job awaiting its grant needs the coordinator now; other phases
  // go with the next call.
  const bool news =
      phase_changed && stamped.phase() == v1::JOB_PHASE_AWAITING_COMMIT;
  absl::MutexLock lock(&mu_);
  job->status = std::move(stamped);
  ChangedLocked(news);
}

void AgentDaemon::ChangedLocked(bool news) {
  changed_ = true;
  news_ = news_ || news;
  if (news && in_call_ && !interrupted_) {
    interrupted_ = true;
    options_.connection->Interrupt();
  }
}

absl::Status AgentDaemon::CommitGate(Job* job) {
  struct Decided {
    const Job* job;
    bool operator()() const {
      return job->granted || job->fenced || job->cancel_requested;
    }
  };
  const Decided decided{job};
  absl::MutexLock lock(&mu_);
  if (!decided()) {
    VMB_LOG(INFO) << "job " << EscapeForLog(job->spec.job_id())
                  << ": verified; waiting for the coordinator's commit grant";
  }
  mu_.AwaitWithTimeout(absl::Condition(&decided), options_.commit_wait);
  if (job->fenced) {
    return absl::AbortedError(
        absl::StrCat("fenced by the coordinator: ", job->fence_reason));
  }
  if (job->cancel_requested)
    return absl::CancelledError("the job was cancelled");
  if (job->granted) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("no commit grant from the coordinator within ",
                   absl::FormatDuration(options_.commit_wait)));
}

absl::StatusOr<std::string> AgentDaemon::Session() {
  absl::MutexLock lock(&session_mu_);
  if (session_.empty()) {
    return absl::UnavailableError("no XAPI session from the coordinator yet");
  }
  return session_;
}

absl::StatusOr<AgentDaemon::Endpoint*> AgentDaemon::EndpointFor(
    const JobSpec& spec) {
  if (spec.master_url().empty())
    return absl::InvalidArgumentError("the job names no master_url");
  const std::string key =
      absl::StrCat(spec.master_url(), "\n", spec.tls().SerializeAsString());
  absl::MutexLock lock(&endpoints_mu_);
  auto it = endpoints_.find(key);
  if (it != endpoints_.end()) return it->second.get();

  auto endpoint = std::make_unique<Endpoint>();
  endpoint->tls.insecure = spec.tls().insecure();
  if (!spec.tls().ca_pem().empty()) {
    const std::string dir = JoinPath(options_.state_dir, "ca");
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return ErrnoToStatus(errno, absl::StrCat("creating ", dir));
    // Named by content: jobs with the same certificates share the file.
    const std::string path =
        JoinPath(dir, absl::StrCat(Sha256Hex(spec.tls().ca_pem()), ".pem"));
    VMB_RETURN_IF_ERROR(
        WritePrivateFile(*options_.fs, dir, path, spec.tls().ca_pem()));
    endpoint->tls.ca_file = path;
  }
  if (spec.tls().pins_size() > 0) {
    auto pins = std::make_shared<HostPins>();
    for (const v1::HostPin& pin : spec.tls().pins()) {
      VMB_RETURN_IF_ERROR(Annotate(pins->AddPin(pin.key(), pin.sha256()),
                                   "the job's TLS pins"));
    }
    endpoint->tls.pins = std::move(pins);
  }
  XapiEndpoint xapi;
  xapi.master_url = spec.master_url();
  xapi.tls = endpoint->tls;
  xapi.session_source = [this] { return Session(); };
  endpoint->client = options_.make_xapi_client ? options_.make_xapi_client(xapi)
                                               : MakeXmlRpcXenApiClient(xapi);
  if (endpoint->client == nullptr) {
    return absl::InternalError(
        absl::StrCat("no XenAPI client for ", spec.master_url()));
  }
  Endpoint* raw = endpoint.get();
  endpoints_[key] = std::move(endpoint);
  return raw;
}

absl::StatusOr<JobContext> AgentDaemon::ContextFor(const JobSpec& spec) {
  JobContext context;
  context.fs = options_.fs;
  context.clock = options_.clock;
  context.agent_id = options_.identity.agent_id();
  for (const v1::PoolHost& pool_host : spec.pool_hosts()) {
    HostRecord host;
    host.uuid = pool_host.uuid();
    host.address = pool_host.address();
    host.hostname = pool_host.hostname();
    host.name_label = pool_host.name_label();
    if (!host.address.empty())
      context.redirect_hosts.push_back(IdentityOfHost(host));
    if (host.uuid == spec.host_uuid()) context.host = host;
  }
  if (spec.host_uuid().empty() || context.host.uuid.empty() ||
      context.host.address.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no pool host with uuid \"", spec.host_uuid(),
                     "\" and an address to export from in the job"));
  }
  if (!spec.time_zone().empty() &&
      !absl::LoadTimeZone(spec.time_zone(), &context.time_zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown time zone \"", spec.time_zone(), "\""));
  }
  if (spec.connect_timeout_ms() > 0)
    context.connect_timeout = absl::Milliseconds(spec.connect_timeout_ms());
  if (spec.first_byte_timeout_ms() > 0) {
    context.first_byte_timeout =
        absl::Milliseconds(spec.first_byte_timeout_ms());
    context.first_byte_timeout_compressed = std::max(
        context.first_byte_timeout_compressed, context.first_byte_timeout);
  }
  if (spec.destroy_retry_ms() > 0)
    context.destroy_retry = absl::Milliseconds(spec.destroy_retry_ms());
  VMB_ASSIGN_OR_RETURN(Endpoint * endpoint, EndpointFor(spec));
  context.xapi = endpoint->client.get();
  context.tls = endpoint->tls;
  if (context.tls.pins != nullptr) {
    VMB_RETURN_IF_ERROR(context.tls.pins->SetPoolHosts(context.redirect_hosts));
  }
  context.data_url =
      spec.data_url().empty()
          ? ReplaceUrlHost(spec.master_url(), context.host.address)
          : spec.data_url();
  return context;
}

}  // namespace vmb::agent
