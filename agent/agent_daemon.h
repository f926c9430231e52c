// SPDX-License-Identifier: Apache-2.0
#pragma once

// The agent daemon: one per pool member. It long-polls the coordinator
// (CoordinatorConnection::Synchronize) with a full snapshot of every job it
// holds, and runs the jobs the coordinator hands it with RunVmBackupJob,
// committing each only on the coordinator's grant for its fencing token
// (docs/architecture.md, "The agent protocol"; docs/operations.md, "The
// agent").
//
//   AgentDaemon::Options options;
//   options.connection = &connection;    // GrpcCoordinatorConnection
//   options.fs = PosixFilesystem::Get();
//   options.clock = SystemClock::Get();
//   options.identity = identity;         // agent_id, host_uuid, host_name
//   options.state_dir = "/var/lib/vmbackup-agent";
//   AgentDaemon daemon(std::move(options));
//   VMB_RETURN_IF_ERROR(daemon.Start());
//   ...                                  // until SIGTERM
//   daemon.Stop();

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "agent/coordinator_connection.h"
#include "agent/job_store.h"
#include "agent/vm_backup_job.h"
#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/base/redact.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xenapi_client.h"
#include "proto/agent.pb.h"
#include "proto/common.pb.h"

namespace vmb::agent {

// Where a job's XenAPI calls go, as its spec says.
struct XapiEndpoint {
  std::string master_url;
  TlsOptions tls;
  // The session the coordinator sent last: the client never logs in or out
  // itself (XmlRpcXenApiClient::Options::session_source). UNAVAILABLE until
  // the coordinator has sent one. Thread-safe.
  std::function<absl::StatusOr<std::string>()> session_source;
};

// Makes the XenAPI client of an endpoint. Called from job threads, once per
// endpoint: the daemon keeps the client for later jobs.
using XenApiClientFactory =
    std::function<std::unique_ptr<XenApiClient>(const XapiEndpoint& endpoint)>;

// The real factory: XmlRpcXenApiClient over CurlXmlRpcTransport.
std::unique_ptr<XenApiClient> MakeXmlRpcXenApiClient(
    const XapiEndpoint& endpoint);

// What the daemon does with each answer (DesiredState):
//   start           a job is accepted once per job_id (a job it holds,
//                   running or finished, ignores another copy), recorded in
//                   the state folder, and run when one of `max_jobs` slots
//                   is free (QUEUED until then);
//   cancel_job_ids  a queued job ends CANCELLED at once; a running one is
//                   cancelled, stops and cleans up;
//   commit_grants   releases a job's commit when the grant names its
//                   fencing token; other grants are ignored;
//   fences          for a job's own token: the job never commits; queued it
//                   ends at once, running it is cancelled; it reports FAILED
//                   with status token "FENCED" and the fence's reason;
//   forget_job_ids  drops finished jobs from memory and the state folder;
//   session_ref     the XAPI session every job uses from then on (kept in
//                   memory only, never logged);
// and it calls again after next_sync_after_ms, or sooner when a job
// changes. A job waiting for its grant fails after `commit_wait`.
//
// Thread-safe. Start and Stop are meant to be called once each, from one
// thread; the destructor stops the daemon. It owns its threads: one
// connection thread and `max_jobs` job threads, all joined by Stop.
class AgentDaemon {
 public:
  struct Options {
    // Not owned; each must outlive the daemon.
    CoordinatorConnection* connection = nullptr;
    Filesystem* fs = nullptr;
    Clock* clock = nullptr;  // jobs' time; the daemon's own waits use real time
    // Null: MakeXmlRpcXenApiClient.
    XenApiClientFactory make_xapi_client;
    // agent_id, host_uuid, host_name and version; instance_id is made by
    // the daemon (random per process).
    v1::AgentIdentity identity;
    int max_jobs = 2;  // jobs running at once; more wait in QUEUED
    // The daemon's own folder: jobs/ (JobStore), ca/ (the jobs' CA
    // certificates). It must exist.
    std::string state_dir;
    // How long a verified job waits in AWAITING_COMMIT for its grant.
    absl::Duration commit_wait = absl::Minutes(30);
    // A Synchronize call's deadline (the coordinator holds it a few seconds).
    absl::Duration sync_timeout = absl::Seconds(30);
    // The last call, made by Stop.
    absl::Duration final_sync_timeout = absl::Seconds(5);
    // Between calls the daemon waits as the coordinator says
    // (next_sync_after_ms, at most heartbeat_interval_ms and a minute), or
    // until a job changes; but calls are coalesced: no more than one per
    // this interval, unless there is news (a job taken, a job awaiting its
    // grant, a job's end) ...
    absl::Duration min_sync_interval = absl::Milliseconds(200);
    // ... or a job waits for its grant: the coordinator holds such a call
    // until it has decided, so calls go this often.
    absl::Duration awaiting_sync_interval = absl::Milliseconds(20);
    // After a failed call: the first pause (jittered: half to all of it),
    // doubled after each further failure up to `max_backoff` and the
    // coordinator's heartbeat interval (so a restarted coordinator sees its
    // agents again well within the three intervals it allows them).
    absl::Duration initial_backoff = absl::Milliseconds(200);
    absl::Duration max_backoff = absl::Seconds(5);
  };

  explicit AgentDaemon(Options options);
  // Stops the daemon (Stop()).
  ~AgentDaemon();

  AgentDaemon(const AgentDaemon&) = delete;
  AgentDaemon& operator=(const AgentDaemon&) = delete;

  // Reads the jobs an earlier process left in the state folder and cleans
  // up after those it left unfinished: a job's backup folder is removed when
  // it has no success marker and its attempt file names this job_id and
  // fencing token; the job is then held FAILED (error_step "agent restart",
  // status token "AGENT-RESTART"). Terminal jobs are held as they were.
  // Then starts the connection and job threads.
  // Errors: FAILED_PRECONDITION when started before or an option is
  // missing; the filesystem's when the state folder cannot be read.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);

  // Cancels the running jobs (queued ones end CANCELLED without running)
  // and waits for them to clean up, makes one last Synchronize call (best
  // effort, `final_sync_timeout`), and joins every thread. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Random per daemon: AgentIdentity.instance_id.
  const std::string& instance_id() const { return instance_id_; }

 private:
  struct Job;
  struct Endpoint;

  void ConnectionLoop() ABSL_LOCKS_EXCLUDED(mu_);
  v1::AgentState BuildState() ABSL_LOCKS_EXCLUDED(mu_);
  void Apply(const v1::DesiredState& desired, bool final)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Accept(const v1::JobSpec& spec) ABSL_LOCKS_EXCLUDED(mu_);
  void Cancel(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  void Grant(const v1::CommitGrant& grant) ABSL_LOCKS_EXCLUDED(mu_);
  void Fence(const v1::Fence& fence) ABSL_LOCKS_EXCLUDED(mu_);
  void Forget(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);

  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void RunJob(Job* job) ABSL_LOCKS_EXCLUDED(mu_);
  void OnProgress(Job* job, const v1::JobStatus& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CommitGate(Job* job) ABSL_LOCKS_EXCLUDED(mu_);
  // The context a job runs in, from its spec. Errors: NOT_FOUND when the
  // spec's host is not among its pool_hosts (or has no address);
  // INVALID_ARGUMENT for an unknown time zone, a malformed pin or no
  // master_url; others writing the CA file.
  absl::StatusOr<JobContext> ContextFor(const v1::JobSpec& spec)
      ABSL_LOCKS_EXCLUDED(endpoints_mu_);
  absl::StatusOr<Endpoint*> EndpointFor(const v1::JobSpec& spec)
      ABSL_LOCKS_EXCLUDED(endpoints_mu_);
  absl::StatusOr<std::string> Session() ABSL_LOCKS_EXCLUDED(session_mu_);

  // Takes a queued job off the queue, so that no job thread starts it.
  // False when it is not there (a job thread or Stop took it first).
  bool ClaimQueuedLocked(Job* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the terminal `status` of a claimed job that never ran: stored
  // first, then reported.
  void FinishUnstarted(Job* job, v1::JobStatus status) ABSL_LOCKS_EXCLUDED(mu_);
  // Writes a job's status (logging a failure: the job goes on).
  void Persist(const v1::JobStatus& status);
  // At Start: the jobs an earlier process left.
  absl::Status Recover() ABSL_LOCKS_EXCLUDED(mu_);
  // What the cleanup of an unfinished job of an earlier process did.
  std::string CleanUpLeftover(const v1::JobSpec& spec,
                              const v1::JobStatus& status);
  // Something to report: the next call carries it. News the coordinator
  // acts on (a commit to grant, a job ended) also interrupts a call it
  // holds, so that it is reported now rather than when the held call
  // returns.
  void ChangedLocked(bool news) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's whole state with where it ran.
  v1::JobStatus Stamp(v1::JobStatus status) const;

  const Options options_;
  const std::string instance_id_;
  JobStore store_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // no new jobs start
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_connection_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // since the last call began
  // Among the changes, one the coordinator needs now (ChangedLocked).
  bool news_ ABSL_GUARDED_BY(mu_) = false;
  // A call is in progress; news that should not wait for its answer
  // interrupted it.
  bool in_call_ ABSL_GUARDED_BY(mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
  std::string coordinator_instance_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) =
      absl::InfiniteDuration();
  std::map<std::string, std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::deque<Job*> queue_ ABSL_GUARDED_BY(mu_);

  absl::Mutex session_mu_;
  std::string session_ ABSL_GUARDED_BY(session_mu_);          // never logged
  ScopedSecret session_secret_ ABSL_GUARDED_BY(session_mu_);  // and redacted

  absl::Mutex endpoints_mu_;
  std::map<std::string, std::unique_ptr<Endpoint>> endpoints_
      ABSL_GUARDED_BY(endpoints_mu_);

  std::thread connection_thread_;
  std::vector<std::thread> workers_;
};

}  // namespace vmb::agent
