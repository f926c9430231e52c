// SPDX-License-Identifier: Apache-2.0
// vmbackup: the command line (see coordinator/cli.h and docs/cli.md). A
// backup run executes its jobs in this process with the agent library.
#include <signal.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"

#include "agent/in_process_executor.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xmlrpc_codec.h"
#include "coordinator/cli.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  vmb::InitCurlGlobal();
  vmb::InitXmlRpcCodec();
  // SIGINT/SIGTERM cancel a run: jobs stop, snapshots are destroyed, and the
  // run reports what happened. A second signal ends the process at once.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  absl::Notification cancel;
  std::thread([signals, &cancel]() {
    int sig = 0;
    sigwait(&signals, &sig);
    cancel.Notify();
    sigwait(&signals, &sig);
    _exit(130);
  }).detach();

  vmb::coordinator::CliEnvironment env;
  env.make_executor = [](const vmb::ExecutorSetup& setup) {
    return std::make_unique<vmb::agent::InProcessExecutor>(setup);
  };
  env.cancel = &cancel;
  std::vector<std::string> args(argv + 1, argv + argc);
  return vmb::coordinator::RunCli(args, {&std::cin, &std::cout, &std::cerr},
                                  env);
}
