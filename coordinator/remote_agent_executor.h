// SPDX-License-Identifier: Apache-2.0
#pragma once

// Runs a run's jobs on the agents of the pool's hosts (through an AgentHub):
// the distributed run's Executor. Each spec is completed with what the agent
// needs to reach XAPI itself: the master's URL, its own host's data URL, the
// pool's hosts (where a redirect may lead) and how to trust them (TLS
// without files: the CA's PEM text and the hosts' pins).

#include <string>

#include "common/backup/executor.h"
#include "coordinator/agent_hub.h"

namespace vmb::coordinator {

// Thread-safe. `hub` is not owned and must outlive the executor.
class RemoteAgentExecutor final : public Executor {
 public:
  RemoteAgentExecutor(AgentHub* hub, const ExecutorSetup& setup);

  v1::JobStatus RunJob(
      const v1::JobSpec& spec,
      const std::function<void(const v1::JobStatus&)>& progress,
      const absl::Notification* cancel) override;

 private:
  AgentHub* const hub_;
  const ExecutorSetup setup_;
  v1::XapiTls tls_;        // from setup_.tls
  std::string tls_error_;  // why tls_ could not be made, if so
};

}  // namespace vmb::coordinator
