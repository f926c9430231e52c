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
//   5. every vdi-export, then every vm-export, through an Executor, at most
//      per_host_concurrency per host and max_concurrency in all;
//   6. status.log lines and the seed's log, per VM and for the run, and the
//      summary line "VmBackup ended - Success|**WARNING(s)**|**ERRORS
//      DETECTED** - S:n W:n E:n".
//
// Exit code: 0 every VM succeeded, 1 warnings, 2 errors (a VM failed, the
// pool dump failed, or the run could not start).

#include <ostream>
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
};

struct BackupRunResult {
  std::string run_id;
  int succeeded = 0;
  int warnings = 0;
  int errors = 0;
  std::vector<v1::VmOutcome> vms;         // in run order
  std::vector<std::string> run_warnings;  // not about one VM
  std::string fatal;  // why the run could not start or stopped, if it did
  int exit_code = 2;
};

// Never fails: every problem is in the result (and in the log).
BackupRunResult RunBackup(const BackupPolicy& policy,
                          const BackupRunOptions& options);

// The seed's log line prefix for `t`: "2026-11-26-(03:00:01) - ".
std::string SeedLogPrefix(absl::CivilSecond t);

}  // namespace vmb::coordinator
