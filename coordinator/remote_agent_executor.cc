// SPDX-License-Identifier: Apache-2.0
#include "coordinator/remote_agent_executor.h"

#include "absl/strings/str_cat.h"

#include "common/base/clock.h"
#include "common/xapi/xml_rpc_xen_api_client.h"

namespace vmb::coordinator {

RemoteAgentExecutor::RemoteAgentExecutor(AgentHub* hub,
                                         const ExecutorSetup& setup)
    : hub_(hub), setup_(setup) {
  tls_.set_insecure(setup_.tls.insecure);
  if (!setup_.tls.ca_file.empty() && setup_.fs != nullptr) {
    absl::StatusOr<std::string> pem =
        setup_.fs->ReadFile(setup_.tls.ca_file, 1 << 20);
    if (pem.ok()) {
      tls_.set_ca_pem(*pem);
    } else {
      tls_error_ = absl::StrCat("cannot read the CA file ", setup_.tls.ca_file,
                                ": ", pem.status().message());
    }
  }
  if (setup_.tls.pins != nullptr) {
    for (const auto& [ref, host] : setup_.hosts) {
      const HostPins::Lookup pins = setup_.tls.pins->Find(IdentityOfHost(host));
      for (const std::string& sha : pins.sha256) {
        v1::HostPin* pin = tls_.add_pins();
        pin->set_key(NormalisePinKey(host.uuid));
        pin->set_sha256(sha);
      }
    }
  }
}

v1::JobStatus RemoteAgentExecutor::RunJob(
    const v1::JobSpec& spec,
    const std::function<void(const v1::JobStatus&)>& progress,
    const absl::Notification* cancel) {
  v1::JobSpec full = spec;
  full.set_master_url(setup_.master_url);
  for (const auto& [ref, host] : setup_.hosts) {
    v1::PoolHost* h = full.add_pool_hosts();
    h->set_uuid(host.uuid);
    h->set_address(host.address);
    h->set_hostname(host.hostname);
    h->set_name_label(host.name_label);
    if (host.uuid == spec.host_uuid() && !host.address.empty())
      full.set_data_url(ReplaceUrlHost(setup_.master_url, host.address));
  }
  *full.mutable_tls() = tls_;
  // A name the agent can load on its own host ("/etc/localtime" would be
  // the agent's own zone).
  if (full.time_zone().empty())
    full.set_time_zone(PortableTimeZoneName(setup_.time_zone));
  if (!tls_error_.empty() || full.data_url().empty()) {
    v1::JobStatus failed;
    failed.set_job_id(spec.job_id());
    failed.set_attempt(spec.attempt());
    failed.set_fencing_token(spec.fencing_token());
    failed.set_phase(v1::JOB_PHASE_FAILED);
    failed.set_error_step("dispatch");
    failed.set_status_token("NO-HOST");
    failed.set_error_message(
        !tls_error_.empty()
            ? tls_error_
            : absl::StrCat("no pool host with uuid \"", spec.host_uuid(),
                           "\" and an address to export from"));
    if (progress) progress(failed);
    return failed;
  }
  return hub_->RunJob(full, progress, cancel);
}

}  // namespace vmb::coordinator
