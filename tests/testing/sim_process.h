// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/xapi_sim/fixture.pb.h"

namespace vmb::testing {

// Creates a self-signed certificate with the openssl CLI in `dir`:
// DIR/NAME.pem and DIR/NAME.key, CN = `name`, subjectAltName = IP:<each of
// `ips`> (default 127.0.0.1 to 127.0.0.9); returns {cert path, key path,
// SHA-256 fingerprint as openssl prints it, "AB:CD:..."}.
struct TestCert {
  std::string cert_path;
  std::string key_path;
  std::string sha256;
};
absl::StatusOr<TestCert> MakeSelfSignedCert(
    const std::string& dir, const std::string& name,
    const std::vector<std::string>& ips = {});

// A running xapi-sim process on loopback, for integration tests: started on a
// port the OS picks, stopped (SIGTERM, then SIGKILL) on destruction.
class SimProcess {
 public:
  struct Options {
    std::string fixture_json;   // empty: the built-in demo pool
    std::string tls_cert_path;  // one certificate for every host
    std::string tls_key_path;
    // HTTPS with a certificate of its own for every host (--tls-cert-dir):
    // made at start, CN = the host's name_label, subjectAltName = IP:<the
    // host's address>. See host_certs().
    bool per_host_tls = false;
  };

  // Errors: INTERNAL when the simulator does not start within 30 s (the
  // message carries its log).
  static absl::StatusOr<std::unique_ptr<SimProcess>> Start(
      const Options& options);
  static absl::StatusOr<std::unique_ptr<SimProcess>> Start() {
    return Start(Options());
  }
  ~SimProcess();

  const std::string& master_url() const { return ready_.master(); }
  std::string host_url(const std::string& host_name) const;
  // host.address of every host (for allowed redirect lists).
  std::vector<std::string> host_addresses() const;
  const std::string& username() const { return ready_.username(); }
  const std::string& password() const { return ready_.password(); }
  int port() const { return ready_.port(); }
  pid_t pid() const { return pid_; }
  std::string log() const;
  // With Options::per_host_tls: by host name_label, the certificate the host
  // presents (its file and SHA-256 fingerprint). Empty otherwise.
  const std::map<std::string, TestCert>& host_certs() const {
    return host_certs_;
  }

  // The control endpoint (docs/xapi-sim.md).
  absl::Status AddFault(const std::string& fault_json);
  absl::Status ClearFaults();
  absl::StatusOr<sim::SimState> State();
  absl::StatusOr<sim::RequestLog> Requests(const std::string& host = "");
  absl::StatusOr<sim::VdiInfo> Vdi(const std::string& uuid);
  // The SHA-256 of each disk of the VM called `vm_name` (not a template),
  // by its VBD's userdevice: what an export of it must hold.
  absl::StatusOr<std::map<std::string, std::string>> VmDiskSha256s(
      XenApiClient& client, const std::string& vm_name);

  // A client for the pool (the master by default), not yet logged in.
  std::unique_ptr<XmlRpcXenApiClient> NewClient(
      const std::string& url = "", const std::string& password = "") const;

 private:
  SimProcess() = default;
  absl::StatusOr<std::string> Control(const std::string& method,
                                      const std::string& path,
                                      const std::string& body);

  // Makes one certificate per host of the fixture (or the demo pool) in
  // DIR/certs; returns that directory.
  absl::StatusOr<std::string> MakeHostCerts(const std::string& fixture_json);

  pid_t pid_ = -1;
  std::string dir_;
  bool tls_ = false;
  std::map<std::string, TestCert> host_certs_;
  sim::ReadyFile ready_;
};

// The ref of the VM called `name` that is not a template or snapshot.
// Errors: NOT_FOUND.
absl::StatusOr<std::string> VmRefByName(XenApiClient& client,
                                        const std::string& name);

// Polls (bounded: 30 s) until the task leaves "pending"; returns its record.
absl::StatusOr<TaskRecord> WaitForTask(XenApiClient& client,
                                       const std::string& task);

// Minimal HTTP helper for tests: status and body of a request.
struct HttpReply {
  long status = 0;
  std::string body;
};
absl::StatusOr<HttpReply> HttpRequestForTest(const std::string& method,
                                             const std::string& url,
                                             const std::string& body = "",
                                             const std::string& cookie = "",
                                             bool insecure = false);

// Runs a command (no shell) and returns its exit status and output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::vector<std::string>& argv);

// Starts a command (no shell) with stdout and stderr into `log_path`, and
// returns its pid (or -1); the caller waits for it.
pid_t StartCommand(const std::vector<std::string>& argv,
                   const std::string& log_path);

}  // namespace vmb::testing
