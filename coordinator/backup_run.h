// SPDX-License-Identifier: Apache-2.0
#pragma once

// A whole backup run, VmBackup.py's job done right, in one process:
//
//   1. status.log "begin"; backup_dir exists; the share's lock file
//      (.vmbackup.lock) is free and taken; backup_dir is writable (the
//      seed's 00VMbackupWriteTest, under the lock);
//   2. selection and plan, once, against the pool master (as preview shows);
//   3. the janitor removes snapshots crashed runs on this share left behind;
//   4. the pool database dump (pool_db_backup=1);
//   5. every vdi-export, then every vm-export (each group largest first),
//      through an Executor, at most per_host_concurrency per host and
//      max_concurrency in all; a snapshot a job could not destroy at once is
//      retried beside the next exports, without holding an export slot;
//   6. status.log lines and the seed's log, per VM and for the run, and the
//      summary line "VmBackup ended - Success|**WARNING(s)**|**ERRORS
//      DETECTED** - S:n W:n E:n".
//
// A distributed run (the coordinator daemon) adds a RunObserver, which
// journals every step before it is acted on, fencing tokens, the hosts that
// have agents, and — after a coordinator restart — the journalled state to
// resume from.
//
// Exit code: 0 every VM succeeded, 1 warnings, 2 errors (a VM failed, the
// pool dump failed, or the run could not start).

#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/backup/executor.h"
#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/xapi/xenapi_client.h"
#include "coordinator/backup_policy.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

// The lock file and the share-id file in backup_dir.
inline constexpr absl::string_view kLockFileName = ".vmbackup.lock";
inline constexpr absl::string_view kShareIdFileName = ".vmbackup-share-id";
inline constexpr absl::string_view kWriteTestFileName = "00VMbackupWriteTest";

// One VM of a run, as a journal keeps it.
struct RunJob {
  v1::PlannedVm plan;
  v1::JobSpec spec;      // the current attempt's (attempt 0: not dispatched)
  v1::JobStatus status;  // the latest known
  std::vector<std::string> warnings;  // from planning and folder choice
  bool dispatched = false;            // handed to an executor at least once
  bool recorded = false;  // its outcome is in status.log and the counts
};

// What a distributed run reports as it goes. Called from the run's threads,
// several at once: implementations are thread-safe. Methods returning a
// Status are written before the run acts on them: an error stops that step
// (the run fails; a job is not dispatched).
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  // status.log "begin" is written and the share's id known.
  virtual absl::Status Began(const std::string& share_id) = 0;
  // The plan: every job, before any is dispatched.
  virtual absl::Status Planned(const std::vector<RunJob>& jobs) = 0;
  virtual void PoolDumpDone() = 0;
  // `job.spec` carries the new attempt and fencing token.
  virtual absl::Status Dispatching(const RunJob& job) = 0;
  // Every state the executor reports, the terminal one included (before
  // Recorded). Called on executor threads: must not block for long.
  virtual void Progress(const RunJob& job) = 0;
  // The job's outcome is in status.log and the run's counts.
  virtual void Recorded(const RunJob& job, const v1::VmOutcome& outcome) = 0;
  // Each line of the seed's log, as written.
  virtual void LogLine(absl::string_view line) = 0;
};

// A run that was under way when its coordinator stopped, from the journal.
struct ResumedRun {
  std::string share_id;
  std::vector<RunJob> jobs;  // in run order
  bool pool_dump_done = false;
};

struct BackupRunOptions {
  // Not owned; must outlive the run.
  XenApiClient* xapi = nullptr;  // logged in or not; the run logs in
  Filesystem* fs = nullptr;
  Clock* clock = nullptr;
  std::ostream* out = nullptr;  // the seed's log: "YYYY-MM-DD-(HH:MM:SS) - ..."
  const absl::Notification* cancel = nullptr;  // may be null

  ExecutorFactory make_executor;  // runs the jobs (InProcessExecutor)
  bool from_config_file = true;   // status.log is written only then (seed)
  std::string server_name;        // this machine's short host name
  TlsOptions tls;
  // How long destroying a snapshot is retried while XAPI says VDI_IN_USE.
  absl::Duration snapshot_destroy_timeout = absl::Minutes(2);
  absl::TimeZone time_zone = absl::LocalTimeZone();
  std::string run_id;  // empty: "YYYYMMDD-HHMMSS-<random>"
  // How long a job itself retries destroying its snapshot before it hands
  // it to the run (which retries it, up to snapshot_destroy_timeout, beside
  // the next exports) and frees its export slot.
  absl::Duration job_destroy_retry = absl::Seconds(5);

  // Distributed runs. Not owned; may be null.
  RunObserver* observer = nullptr;
  const ResumedRun* resume = nullptr;  // continue this run (run_id set)
  // Notified when the coordinator stops mid-run: no new job starts and
  // nothing more is recorded (status.log, journal, summary); the run returns
  // as soon as its running jobs' executors do, to be resumed later.
  const absl::Notification* abandon = nullptr;
  // The next fencing token (journalled before it is returned); empty: 0.
  std::function<absl::StatusOr<uint64_t>()> next_fencing_token;
  // The uuids of the hosts whose agent is connected now; empty: every host
  // can export (the standalone run).
  std::function<std::set<std::string>()> agent_hosts;
  // How often a job whose agent was lost is tried (on another host: halted
  // VMs on storage other live hosts see).
  int max_attempts = 2;
};

struct BackupRunResult {
  std::string run_id;
  int succeeded = 0;
  int warnings = 0;
  int errors = 0;
  std::vector<v1::VmOutcome> vms;         // in run order
  std::vector<std::string> run_warnings;  // not about one VM
  std::string pool_db_dump;  // "PATH (SIZE)", "FAILED: why"; "" not asked
  std::string pool_name;     // name_label of the pool (else its master's)
  std::string fatal;  // why the run could not start or stopped, if it did
  std::string summary_line;  // "VmBackup ended - Success - S:1 W:0 E:0"
  int exit_code = 2;
};

// Never fails: every problem is in the result (and in the log).
BackupRunResult RunBackup(const BackupPolicy& policy,
                          const BackupRunOptions& options);

// The seed's log line prefix for `t`: "2026-11-26-(03:00:01) - ".
std::string SeedLogPrefix(absl::CivilSecond t);

}  // namespace vmb::coordinator
