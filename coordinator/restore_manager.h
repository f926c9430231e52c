// SPDX-License-Identifier: Apache-2.0
#pragma once

// Restores started through the Control API (StartRestore, GetRestore): the
// coordinator picks the backup folder and, by a dry run of its own against
// the pool, the host that sees the target SR and has a live agent; that
// agent runs the restore (agent/restore_job.h) and reports like a backup
// job. Restores are kept in memory, the last 100, and logged; a
// coordinator restart forgets them (the agent's log keeps what it did).

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xenapi_client.h"
#include "coordinator/agent_hub.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

class RestoreManager {
 public:
  struct Options {
    // Not owned; must outlive the manager.
    XenApiClient* xapi = nullptr;
    Filesystem* fs = nullptr;
    Clock* clock = nullptr;
    AgentHub* hub = nullptr;
    TlsOptions tls;
    absl::TimeZone time_zone = absl::LocalTimeZone();
  };
  explicit RestoreManager(Options options);
  ~RestoreManager();  // Stop()

  // Errors: INVALID_ARGUMENT for a request that names no backup (or both a
  // folder and a VM); those of picking the folder; FAILED_PRECONDITION from
  // the dry run (not committed, no SR, no host with a live agent, ...).
  absl::StatusOr<v1::RestoreState> Start(const v1::RestoreRequest& request);
  // NOT_FOUND for an unknown id.
  absl::StatusOr<v1::RestoreState> Get(const std::string& restore_id) const;
  // Cancels the running restores (their agents clean up) and joins them.
  void Stop();

 private:
  struct Restore {
    v1::RestoreState state;
    absl::Notification cancel;
    std::thread thread;
  };

  const Options o_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Restore>> restores_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);  // oldest first
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vmb::coordinator
