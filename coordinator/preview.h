// SPDX-License-Identifier: Apache-2.0
#pragma once

// `preview`: everything a run would decide, without writing anything to the
// backup share or the pool: the settings, which VMs, which host exports each
// one and why, the estimated size, and every warning.

#include <map>
#include <set>
#include <string>

#include "common/xapi/xenapi_client.h"
#include "coordinator/backup_policy.h"
#include "coordinator/pool_inventory.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

struct PreviewOptions {
  // The policy came from a config file (not a command-line selector): the
  // status log's folder must exist.
  bool from_config_file = true;
  // A distributed run: the uuids of hosts with a connected agent (see
  // PlanOptions). Not owned; null: every host.
  const std::set<std::string>* agent_hosts = nullptr;
};

// Checks the policy's paths (read-only), logs in through `client`, reads the
// pool once, selects and plans. Never fails: problems land in report.error
// (invalid) or in warnings. The pool as read is stored in `inventory` when
// not null (a run works from the same read).
v1::PreviewReport BuildPreview(const BackupPolicy& policy, XenApiClient& client,
                               const PreviewOptions& options,
                               PoolInventory* inventory = nullptr);

// The seed's settings block, the plan, the warnings and the verdict: for a
// preview "SUCCESS preview of parameters", for a run (`for_run`) the seed's
// "SUCCESS check of parameters".
std::string FormatPreview(const v1::PreviewReport& report,
                          bool for_run = false);

// 0 valid, 1 valid with warnings, 2 invalid.
int PreviewExitCode(const v1::PreviewReport& report);

// Every policy key with its effective value, as the config file spells it.
std::map<std::string, std::string> PolicySettings(const BackupPolicy& policy);

}  // namespace vmb::coordinator
