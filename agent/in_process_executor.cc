// SPDX-License-Identifier: Apache-2.0
#include "agent/in_process_executor.h"

#include <utility>

#include "absl/strings/str_cat.h"

#include "common/xml_rpc_xen_api_client.h"

namespace vmb::agent {

InProcessExecutor::InProcessExecutor(ExecutorSetup setup, JobContext defaults)
    : setup_(std::move(setup)), defaults_(std::move(defaults)) {
  for (const auto& [ref, host] : setup_.hosts) {
    if (!host.address.empty()) addresses_.push_back(host.address);
  }
}

v1::JobStatus InProcessExecutor::RunJob(
    const v1::JobSpec& spec,
    const std::function<void(const v1::JobStatus&)>& progress,
    const absl::Notification* cancel) {
  JobContext context = defaults_;
  context.xapi = setup_.xapi;
  context.fs = setup_.fs;
  context.clock = setup_.clock;
  context.time_zone = setup_.time_zone;
  context.tls = setup_.tls;
  context.destroy_retry = setup_.snapshot_destroy_timeout;
  context.redirect_hosts = addresses_;
  for (const auto& [ref, host] : setup_.hosts) {
    if (host.uuid == spec.host_uuid()) {
      context.host_ref = ref;
      context.host = host;
    }
  }
  if (context.host_ref.empty() || context.host.address.empty()) {
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
