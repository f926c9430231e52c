// SPDX-License-Identifier: Apache-2.0
#pragma once

// Runs jobs in this process with the agent library, as if an agent ran on
// every host: each job's HTTP export is still read from the address of the
// host its VM runs on (DESIGN §3.1), so even a standalone run spreads the
// load over the pool's dom0s.

#include <map>
#include <string>
#include <vector>

#include "agent/vm_backup_job.h"
#include "common/executor.h"

namespace vmb::agent {

class InProcessExecutor final : public Executor {
 public:
  // `defaults` tunes every job's context (timeouts, retries); the XenAPI
  // client, filesystem, clock, host and URLs come from `setup`.
  explicit InProcessExecutor(ExecutorSetup setup, JobContext defaults = {});

  v1::JobStatus RunJob(
      const v1::JobSpec& spec,
      const std::function<void(const v1::JobStatus&)>& progress,
      const absl::Notification* cancel) override;

 private:
  const ExecutorSetup setup_;
  const JobContext defaults_;
  std::vector<std::string> addresses_;
};

}  // namespace vmb::agent
