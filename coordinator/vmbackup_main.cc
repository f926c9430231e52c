// SPDX-License-Identifier: Apache-2.0
// vmbackup: the command line (see coordinator/cli.h and docs/cli.md). A
// backup run executes its jobs in this process with the agent library.
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"

#include "agent/in_process_executor.h"
#include "common/base/signal_watcher.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xmlrpc_codec.h"
#include "coordinator/cli.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  vmb::InitCurlGlobal();
  vmb::InitXmlRpcCodec();
  // SIGINT/SIGTERM cancel a run: jobs stop, snapshots are destroyed, and the
  // run reports what happened. A second signal ends the process at once.
  absl::Notification cancel;  // outlives the watcher, which references it
  absl::StatusOr<std::unique_ptr<vmb::SignalWatcher>> watcher =
      vmb::SignalWatcher::Start({SIGINT, SIGTERM}, [&cancel](int, int count) {
        if (count > 1) _exit(130);
        cancel.Notify();
      });
  if (!watcher.ok()) {
    std::cerr << "vmbackup: " << watcher.status().message() << "\n";
    return 2;
  }

  vmb::coordinator::CliEnvironment env;
  env.make_executor = [](const vmb::ExecutorSetup& setup) {
    return std::make_unique<vmb::agent::InProcessExecutor>(setup);
  };
  env.cancel = &cancel;
  env.getenv = [](const std::string& name) -> std::string {
    const char* value = getenv(name.c_str());
    return value == nullptr ? "" : value;
  };
  env.stdout_is_terminal = isatty(STDOUT_FILENO) == 1;
  env.terminal_width = [] {
    struct winsize ws = {};
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
  };
  env.time_zone = absl::LocalTimeZone();
  std::vector<std::string> args(argv + 1, argv + argc);
  const int exit_code =
      vmb::coordinator::RunCli(args, {&std::cin, &std::cout, &std::cerr}, env);
  watcher->reset();  // joins the signal thread before `cancel` goes
  return exit_code;
}
