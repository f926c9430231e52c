// SPDX-License-Identifier: Apache-2.0
#pragma once

// The coordinator's side of the agent protocol (proto/agent.proto): who is
// connected, what each agent holds, and the jobs the run hands them.
//
//   AgentHub hub(options);
//   hub.Start();                                // the ticker thread
//   // AgentService.Synchronize -> hub.Synchronize(state, peer, &resp, done)
//   v1::JobStatus st = hub.RunJob(spec, progress, &cancel);  // blocks
//   hub.Stop();
//
// Every answer is computed from the whole state (level-triggered): the specs
// of jobs the agent does not report yet, cancels, grants and fences of jobs
// it reports, forgets of terminal jobs the run recorded. An answer with
// nothing new is held up to a second while the agent runs jobs (so their
// progress arrives about once a second) and up to half a heartbeat interval
// when it is idle; anything new for the agent answers a held call at once.
// An agent that has not called for 3 heartbeat intervals is lost: its jobs
// end AGENT-LOST and their fencing tokens are fenced, so a late report (or
// commit) of theirs is refused.
//
// Thread-safe. Reactions (Synchronize) never block: they update the state
// under one mutex and return; SQLite and waiting happen on RunJob's caller's
// thread and the ticker thread.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "proto/agent.pb.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

class AgentHub {
 public:
  struct Options {
    Clock* clock = SystemClock::Get();  // not owned; must outlive the hub
    absl::Duration heartbeat_interval = absl::Seconds(5);
    // How long a call with nothing new is held while the agent runs jobs.
    absl::Duration busy_hold = absl::Seconds(1);
    // ... and while it runs none (0: half the heartbeat interval).
    absl::Duration idle_hold = absl::ZeroDuration();
    std::string instance_id;  // this coordinator process
    // After the hub starts, the agents of the coordinator's previous process
    // get this long to call again (they retry at least once per heartbeat
    // interval) before their hosts count as having no agent: a run plans
    // after WaitForReturningAgents, and a job's host is lost no earlier than
    // 3 heartbeat intervals after the window. Zero: 3 heartbeat intervals.
    absl::Duration return_window = absl::ZeroDuration();
    // Journals a commit grant before it is handed out; an error refuses the
    // commit (the job is fenced). Called on RunJob's thread.
    std::function<absl::Status(const v1::JobSpec&)> journal_grant;
    // An agent connected, reconnected as a new process, or was lost. Called
    // on the ticker thread, without the hub's lock.
    std::function<void(const v1::AgentInfo&)> agent_changed;
  };

  explicit AgentHub(Options options);
  ~AgentHub();  // Stop()
  AgentHub(const AgentHub&) = delete;
  AgentHub& operator=(const AgentHub&) = delete;

  void Start();
  // Answers every held call, stops the ticker and makes RunJob return
  // (FAILED, "the coordinator is stopping"). Idempotent.
  void Stop();

  // The XAPI session handed to agents with every answer. Never logged.
  void SetSession(std::string session);

  // Who called: the address, and under mutual TLS the certificate shown.
  struct Peer {
    std::string address;
    std::string certificate;  // CertificateInfo::Describe(); "" plaintext
    absl::Time certificate_not_after = absl::InfiniteFuture();
  };

  // One Synchronize call: `response` (not owned; alive until `done`) is
  // filled and `done` called exactly once, now or later from the ticker.
  void Synchronize(const v1::AgentState& state, const Peer& peer,
                   v1::DesiredState* response, std::function<void()> done);
  void Synchronize(const v1::AgentState& state, const std::string& address,
                   v1::DesiredState* response, std::function<void()> done) {
    Synchronize(state, Peer{address, "", absl::InfiniteFuture()}, response,
                std::move(done));
  }
  // Errors: PERMISSION_DENIED when a live agent of another host goes by
  // this agent id (one agent must not take another's place).
  absl::Status CheckAgentId(const v1::AgentIdentity& identity) const;

  // Hands `spec` to the agent of spec.host_uuid() and blocks until the job
  // is terminal: as the Executor interface (common/backup/executor.h). A
  // job_id the hub already knows with the same fencing token (a coordinator
  // restart adopting its jobs) is not started again: its reports continue.
  // `progress` gets every new state, the terminal one before the agent is
  // told to forget the job (so a journal has it first). Ends the job:
  //   NO-AGENT     no agent connected on the host (and none came within 3
  //                heartbeat intervals);
  //   AGENT-LOST   the agent stopped calling for 3 heartbeat intervals;
  //   CANCELLED    `cancel` notified before the agent took the job;
  // otherwise the agent's own terminal report.
  v1::JobStatus RunJob(
      const v1::JobSpec& spec,
      const std::function<void(const v1::JobStatus&)>& progress,
      const absl::Notification* cancel);

  // Jobs a restarted coordinator will adopt (from its journal): reports of
  // them are kept, neither cancelled nor forgotten, until RunJob claims them
  // or Unexpect.
  void Expect(const std::string& job_id, uint64_t fencing_token);
  void Unexpect(const std::string& job_id);

  // Uuids of the hosts with a live agent.
  std::set<std::string> LiveHosts() const;
  // Blocks until the return window since Start has passed (or Stop): then
  // LiveHosts has every agent that was running when the coordinator started.
  void WaitForReturningAgents();
  std::vector<v1::AgentInfo> Agents() const;

 private:
  struct Agent {
    v1::AgentIdentity identity;
    std::string peer;
    std::string certificate;
    absl::Time certificate_not_after = absl::InfiniteFuture();
    uint32_t max_jobs = 0;
    absl::Time connected_since;
    absl::Time last_seen;
    bool live = false;
    std::map<std::string, v1::JobStatus> reported;  // by job_id
    // A held call.
    v1::DesiredState* response = nullptr;
    std::function<void()> done;
    absl::Time hold_until;
    std::set<std::string> last_sent;  // what the last answer carried
  };
  struct Job {
    v1::JobSpec spec;
    v1::JobStatus status;  // the latest report of this attempt
    uint64_t version = 0;
    bool cancel = false;
    bool granted = false;
    bool forget = false;  // recorded: the agent may drop it
    // Its RunJob waits here: a new report of it, or (SignalJobsLocked) a
    // lost agent or a stop.
    std::shared_ptr<absl::CondVar> changed = std::make_shared<absl::CondVar>();
  };

  static bool Terminal(const v1::JobStatus& s);
  // The live agent on `host_uuid` (the most recently seen), or null.
  Agent* AgentOnHostLocked(const std::string& host_uuid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The answer for `agent` now, and whether it carries anything the last one
  // did not. Without `refill`, a `response` that holds the last answer and
  // would not change is left alone.
  bool FillLocked(Agent& agent, v1::DesiredState* response, bool refill)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::AgentInfo InfoLocked(const Agent& agent) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Tick();
  // Wakes the ticker: it looks for recorded jobs to drop (WakeLocked) and
  // recomputes the held answers of the agents on `host_uuid`
  // (WakeHostLocked) or of every agent (WakeAllLocked).
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeHostLocked(const std::string& host_uuid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An agent connected, was lost, or the hub stops: every waiter looks.
  void SignalAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const absl::Time started_;
  const absl::Time window_end_;  // started_ + the return window
  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // an agent came or was lost, a stop
  absl::CondVar tick_;     // the ticker: something to answer
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_all_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> wake_hosts_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string session_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Agent> agents_ ABSL_GUARDED_BY(mu_);  // by agent_id
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);      // by job_id
  // host uuid -> ids of jobs_ for it (and, until FillLocked drops them,
  // ids of jobs gone or moved to another host).
  std::map<std::string, std::set<std::string>> jobs_by_host_
      ABSL_GUARDED_BY(mu_);
  // Attempts given up on: job_id -> fencing tokens.
  std::map<std::string, std::set<uint64_t>> fenced_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> expected_ ABSL_GUARDED_BY(mu_);
  std::thread ticker_;
};

}  // namespace vmb::coordinator
