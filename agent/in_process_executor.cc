// SPDX-License-Identifier: Apache-2.0
#include "agent/in_process_executor.h"

#include <utility>

#include "absl/strings/str_cat.h"

#include "common/xapi/xml_rpc_xen_api_client.h"

namespace vmb::agent {

InProcessExecutor::InProcessExecutor(ExecutorSetup setup)
    : setup_(std::move(setup)) {
  base_.xapi = setup_.xapi;
  base_.fs = setup_.fs;
  base_.clock = setup_.clock;
  base_.time_zone = setup_.time_zone;
  base_.tls = setup_.tls;
  base_.destroy_retry = setup_.snapshot_destroy_timeout;
  for (const auto& [ref, host] : setup_.hosts) {
    if (!host.address.empty())
      base_.redirect_hosts.push_back(IdentityOfHost(host));
  }
}

v1::JobStatus InProcessExecutor::RunJob(
    const v1::JobSpec& spec,
    const std::function<void(const v1::JobStatus&)>& progress,
    const absl::Notification* cancel) {
  JobContext context = base_;
  for (const auto& [ref, host] : setup_.hosts) {
    if (host.uuid == spec.host_uuid()) context.host = host;
  }
  if (context.host.uuid.empty() || context.host.address.empty()) {
    v1::JobStatus failed;
    failed.set_job_id(spec.job_id());
    failed.set_attempt(spec.attempt());
    failed.set_fencing_token(spec.fencing_token());
    failed.set_phase(v1::JOB_PHASE_FAILED);
    failed.set_error_step("dispatch");
    failed.set_status_token("NO-HOST");
    failed.set_error_message(absl::StrCat("no pool host with uuid \"",
                                          spec.host_uuid(),
                                          "\" and an address to export from"));
    if (progress) progress(failed);
    return failed;
  }
  context.data_url = ReplaceUrlHost(setup_.master_url, context.host.address);
  JobHooks hooks;
  hooks.progress = progress;
  hooks.cancel = cancel;
  return RunVmBackupJob(context, spec, hooks);
}

}  // namespace vmb::agent
