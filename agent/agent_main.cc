// SPDX-License-Identifier: Apache-2.0
// vmbackup-agent: the agent daemon, one per pool member. It dials out to the
// coordinator and never listens (docs/operations.md, "The agent").
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "agent/agent_runner.h"
#include "common/base/daemon_flags.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xmlrpc_codec.h"

ABSL_FLAG(std::string, coordinator, "",
          "HOST:PORT of the coordinator (required); with --plaintext only a "
          "loopback address: 127.0.0.0/8, [::1] or localhost");
ABSL_FLAG(bool, plaintext, false,
          "Talk to the coordinator without TLS; allowed only to a loopback "
          "--coordinator");
ABSL_FLAG(std::string, mtls_ca, "",
          "PEM file of the site's CA (ca.crt from deploy/gen-certs.sh): the "
          "coordinator must show a certificate it issued");
ABSL_FLAG(std::string, mtls_cert, "",
          "this agent's certificate (agent-HOST.crt: its host uuid in a URI "
          "name)");
ABSL_FLAG(std::string, mtls_key, "",
          "this agent's private key (agent-HOST.key, mode 0600)");
ABSL_FLAG(std::string, state_dir, "",
          "The agent's own folder (required; made with mode 0700 when "
          "missing): the jobs it holds, so that a restart cleans up after "
          "them");
ABSL_FLAG(std::string, host_uuid, "",
          "This pool member's host uuid (default: INSTALLATION_UUID in "
          "/etc/xensource-inventory)");
ABSL_FLAG(std::string, agent_id, "",
          "The agent's stable id at the coordinator (default: the host uuid)");
ABSL_FLAG(std::string, host_name, "",
          "The name shown for this agent (default: the system's host name)");
ABSL_FLAG(int, max_jobs, 2, "Backup jobs run at once, 1 to 64");
ABSL_FLAG(absl::Duration, commit_wait, absl::Minutes(30),
          "How long a verified backup waits for the coordinator's commit "
          "grant before it fails (e.g. 30m)");

namespace {

vmb::agent::AgentOptions OptionsFromFlags() {
  vmb::agent::AgentOptions options;
  options.coordinator = absl::GetFlag(FLAGS_coordinator);
  options.plaintext = absl::GetFlag(FLAGS_plaintext);
  options.mtls.ca = absl::GetFlag(FLAGS_mtls_ca);
  options.mtls.cert = absl::GetFlag(FLAGS_mtls_cert);
  options.mtls.key = absl::GetFlag(FLAGS_mtls_key);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.host_uuid = absl::GetFlag(FLAGS_host_uuid);
  options.agent_id = absl::GetFlag(FLAGS_agent_id);
  options.host_name = absl::GetFlag(FLAGS_host_name);
  options.max_jobs = absl::GetFlag(FLAGS_max_jobs);
  options.commit_wait = absl::GetFlag(FLAGS_commit_wait);
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  // The daemon's locks are checked by the tests (absl's deadlock detection,
  // on in the tests' builds); in service it would cost every lock a graph
  // lookup.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::vector<std::string> rest = vmb::ParseDaemonFlags(
      argc, argv, "vmbackup-agent",
      "vmbackup-agent --coordinator HOST:PORT --mtls-ca FILE --mtls-cert FILE "
      "--mtls-key FILE --state-dir DIR [--max-jobs N] ...\nThe vmbackup "
      "agent: runs the coordinator's backup jobs on this pool member. "
      "--flagfile=FILE reads flags from a file, one a line.",
      "agent_main.cc");
  absl::StatusOr<vmb::agent::AgentOptions> options =
      rest.empty()
          ? vmb::agent::ResolveAgentOptions(OptionsFromFlags())
          : absl::InvalidArgumentError("unexpected argument: " + rest.front());
  if (!options.ok()) {
    std::cerr << "vmbackup-agent: " << options.status().message() << "\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  vmb::InitCurlGlobal();  // before any thread starts
  vmb::InitXmlRpcCodec();
  const absl::Status status = vmb::agent::RunAgent(*options);
  if (!status.ok()) std::cerr << "vmbackup-agent: " << status << "\n";
  // Files that are wrong (a certificate that is expired, of another host or
  // not from the CA) are the operator's to fix: no restart would help.
  return status.ok() ? 0 : absl::IsInvalidArgument(status) ? 2 : 1;
}
