// SPDX-License-Identifier: Apache-2.0
#pragma once

// The coordinator daemon's runs: starts them (one at a time per backup_dir),
// journals every step through a RunObserver, answers status from memory
// while a run runs and from the journal after, and resumes the runs a
// stopped coordinator left unfinished.
//
// A run is RunBackup (coordinator/backup_run.h) with a RemoteAgentExecutor:
// the same plan, dispatch and records as the standalone run.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xenapi_client.h"
#include "coordinator/agent_hub.h"
#include "coordinator/backup_policy.h"
#include "coordinator/backup_run.h"
#include "coordinator/run_journal.h"
#include "coordinator/run_report.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

struct RunManagerOptions {
  // Not owned; must outlive the manager.
  XenApiClient* xapi = nullptr;  // the pool master, logged in as needed
  Filesystem* fs = nullptr;
  Clock* clock = nullptr;
  RunJournal* journal = nullptr;
  AgentHub* hub = nullptr;

  TlsOptions tls;
  std::string server_name;  // status.log's host column
  absl::Duration snapshot_destroy_timeout = absl::Minutes(2);
  absl::TimeZone time_zone = absl::LocalTimeZone();
  // The e-mail report (docs/config.md): its tries, and warnings it carries
  // beyond the run's own (certificates about to expire). `mail_sender`
  // (tests) replaces libcurl's SMTP.
  RetryOptions mail_retry;
  std::function<std::vector<std::string>()> report_warnings;
  SenderFactory mail_sender;
};

// Where a watcher is in a run's updates.
struct WatchCursor {
  uint64_t version = 0;  // of the summary last sent (0: none)
  size_t log_lines = 0;  // lines of the seed's log sent
};

// Thread-safe.
// `summary` (without VMs) followed by `vms`, each a serialized VmOutcome:
// the serialization of the summary with those VMs.
std::string SerializeRunSummary(const v1::RunSummary& summary,
                                const std::vector<std::string>& vms);

class RunManager {
 public:
  explicit RunManager(RunManagerOptions options);
  ~RunManager();  // Stop()
  RunManager(const RunManager&) = delete;
  RunManager& operator=(const RunManager&) = delete;

  // Resumes every run the journal has as running (a coordinator that
  // stopped mid-run): their dispatched jobs are adopted from the agents that
  // hold them, the others dispatched; nothing recorded is recorded twice.
  // Errors: those of reading the journal.
  absl::Status ResumeUnfinished();

  // Starts a run of the config in `request` and returns its id.
  // Errors: INVALID_ARGUMENT for a config or argument that does not parse
  // (the message names file and line), or a preview request;
  // FAILED_PRECONDITION when a run is already using the config's
  // backup_dir (the message names it); those of the journal.
  absl::StatusOr<std::string> StartRun(const v1::StartRunRequest& request);

  // What the run would do, with the hosts that have agents now. Never
  // fails: problems are in the report.
  v1::PreviewReport Preview(const v1::StartRunRequest& request);

  // The run (empty id: the newest). Errors: NOT_FOUND; the journal's.
  absl::StatusOr<v1::RunSummary> GetRun(const std::string& run_id);
  // The same, serialized. While a run runs, each VM's outcome is kept
  // serialized as its job changes, so a query copies bytes rather than
  // building a thousand messages.
  absl::StatusOr<std::string> GetRunSerialized(const std::string& run_id);
  absl::StatusOr<std::vector<v1::RunSummary>> ListRuns(int limit);
  // Errors: NOT_FOUND (no such run), FAILED_PRECONDITION (it ended).
  absl::Status CancelRun(const std::string& run_id);

  // The run's next update after `cursor`: true with `update` filled (and the
  // cursor moved) when there is one; false when there is nothing new yet,
  // and then `wake` is called once, from any thread, when there is. Errors:
  // NOT_FOUND for an unknown run.
  absl::StatusOr<bool> NextUpdate(const std::string& run_id,
                                  WatchCursor* cursor, v1::RunUpdate* update,
                                  std::function<void()> wake);
  // Whether the run has no more updates to come from this process (it
  // ended, or only the journal knows it): a watcher sends its last update
  // without pacing. When it has not, `wake` is called once, from any
  // thread, at its next change. Cheap: no summary is built.
  bool RunEnded(const std::string& run_id, std::function<void()> wake);

  // Lets go of running runs without recording anything: they stay running
  // in the journal, their agents keep exporting, and the next start resumes
  // them. Stops the hub (its waiting jobs return). Idempotent.
  void Stop();

  // Blocks until no run is running (tests). False on timeout.
  bool WaitIdleForTesting(absl::Duration timeout);

 private:
  struct LiveRun;
  class Observer;

  void Launch(std::unique_ptr<LiveRun> run) ABSL_LOCKS_EXCLUDED(mu_);
  void Execute(LiveRun* run);
  // Sends the ended run's report (when its policy wants one) and records
  // what became of it in the run and its journal row.
  // verify_after_run, after the run ended and before its report: reads back
  // older backups and records what it found in `record` and the journal.
  void VerifyAfterRun(LiveRun* run, RunJournal::RunRecord* record);
  void MailReport(LiveRun* run, RunJournal::RunRecord record);
  // With `vms` false, the summary without its VMs (their counts included).
  v1::RunSummary SummaryLocked(const LiveRun& run, bool vms = true) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The run of that id kept in memory (empty: the newest), or null.
  const LiveRun* FindRunLocked(const std::string& run_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bumps the run's version; returns the waiters to call (without mu_).
  std::vector<std::function<void()>> ChangedLocked(LiveRun& run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::RunSummary> FromJournal(const std::string& run_id);

  const RunManagerOptions options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<LiveRun>> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb::coordinator
