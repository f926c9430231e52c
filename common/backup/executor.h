// SPDX-License-Identifier: Apache-2.0
#pragma once

// Where a job runs. The coordinator's dispatcher hands jobs to an Executor:
// InProcessExecutor (agent/in_process_executor.h) runs them in this process,
// as the standalone `vmbackup <password> <config>` run does; a remote
// executor will hand them to the agent on the VM's host.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xenapi_client.h"
#include "proto/common.pb.h"

namespace vmb {

// Implementations are thread-safe: the dispatcher runs several jobs at once,
// each from its own thread.
class Executor {
 public:
  virtual ~Executor() = default;

  // Runs `spec` on the agent of the host spec.host_uuid() and blocks until
  // the job is terminal; returns its final state (never an error: a job that
  // cannot run is FAILED, with the reason). `progress` (may be empty) gets
  // every state change, from any thread. `cancel` (may be null, not owned)
  // cancels the job when notified.
  virtual v1::JobStatus RunJob(
      const v1::JobSpec& spec,
      const std::function<void(const v1::JobStatus&)>& progress,
      const absl::Notification* cancel) = 0;
};

// What an in-process executor needs from the run that creates it. Pointers
// are not owned and must outlive the executor.
struct ExecutorSetup {
  XenApiClient* xapi = nullptr;
  Filesystem* fs = nullptr;
  Clock* clock = nullptr;
  std::string master_url;
  std::map<std::string, HostRecord> hosts;  // by ref
  TlsOptions tls;
  absl::TimeZone time_zone = absl::LocalTimeZone();
  // How long destroying a snapshot is retried while XAPI says VDI_IN_USE.
  absl::Duration snapshot_destroy_timeout = absl::Minutes(2);
};

using ExecutorFactory =
    std::function<std::unique_ptr<Executor>(const ExecutorSetup&)>;

}  // namespace vmb
