// SPDX-License-Identifier: Apache-2.0
#pragma once

// Runs jobs in this process with the agent library, as if an agent ran on
// every host: each job's HTTP export is still read from the address of the
// host its VM runs on (DESIGN §3.1), so even a standalone run spreads the
// load over the pool's dom0s.

#include <string>
#include <vector>

#include "agent/vm_backup_job.h"
#include "common/backup/executor.h"

namespace vmb::agent {

class InProcessExecutor final : public Executor {
 public:
  // Jobs run with `setup`'s XenAPI client, filesystem, clock, time zone, TLS
  // and destroy timeout, each exporting from its own host.
  explicit InProcessExecutor(ExecutorSetup setup);

  v1::JobStatus RunJob(
      const v1::JobSpec& spec,
      const std::function<void(const v1::JobStatus&)>& progress,
      const absl::Notification* cancel) override;

 private:
  const ExecutorSetup setup_;
  JobContext base_;  // what every job's context shares
};

}  // namespace vmb::agent
