// SPDX-License-Identifier: Apache-2.0
// xapi-sim: a simulated XenServer pool on loopback (docs/xapi-sim.md).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

#include "tests/xapi_sim/sim_runner.h"

ABSL_FLAG(std::string, fixture, "",
          "Pool fixture (JSON); default: the built-in demo pool");
ABSL_FLAG(int, port, 0, "Port every host listens on; 0 picks a free one");
ABSL_FLAG(std::string, ready_file, "",
          "Written (JSON) once every host listens; required");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate: serve HTTPS instead of HTTP");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_cert_dir, "",
          "Directory of per-host certificates: <host name_label>.pem and "
          "<host name_label>.key for every host; serve HTTPS");
ABSL_FLAG(bool, print_demo_fixture, false,
          "Print the built-in demo fixture and exit");

// absl flags are spelled with underscores; accept the dashed spelling the
// documentation uses (--ready-file) too.
std::vector<char*> UnderscoreFlagNames(int argc, char** argv,
                                       std::vector<std::string>* storage) {
  storage->reserve(static_cast<size_t>(argc));
  std::vector<char*> out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i > 0 && a.size() > 2 && a.compare(0, 2, "--") == 0) {
      const size_t end = std::min(a.find('='), a.size());
      for (size_t j = 2; j < end; ++j) {
        if (a[j] == '-') a[j] = '_';
      }
    }
    storage->push_back(std::move(a));
    out.push_back(storage->back().data());
  }
  return out;
}

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "xapi-sim [--fixture FILE] [--port N] --ready-file PATH [--tls-cert F "
      "--tls-key F | --tls-cert-dir DIR]");
  std::vector<std::string> storage;
  std::vector<char*> args = UnderscoreFlagNames(argc, argv, &storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  vmb::sim::SimOptions options;
  options.fixture_path = absl::GetFlag(FLAGS_fixture);
  options.port = absl::GetFlag(FLAGS_port);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  options.tls_cert_path = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_path = absl::GetFlag(FLAGS_tls_key);
  options.tls_cert_dir = absl::GetFlag(FLAGS_tls_cert_dir);
  options.print_demo_fixture = absl::GetFlag(FLAGS_print_demo_fixture);
  absl::Status status = vmb::sim::RunSimulator(options, signals);
  if (!status.ok()) {
    std::fprintf(stderr, "xapi-sim: %s\n",
                 std::string(status.message()).c_str());
    return 2;
  }
  return 0;
}
