// SPDX-License-Identifier: Apache-2.0
#pragma once

// The `vmbackup` command line (docs/cli.md):
//
//   vmbackup [FLAGS] <password|password-file|-> <config-file|vm-selector>
//            [preview] [compress=True|False] [ignore_extra_keys=True|False]
//            [pre_clean=True|False]      (a backup run, or its preview)
//   vmbackup [FLAGS] <password|-> create-password-file=FILE
//   vmbackup [FLAGS] inventory <password|password-file|->
//   vmbackup help | config | example
//
// Exit codes: 0 success, 1 warnings, 2 errors or could not run; for
// preview: 0 valid, 1 valid with warnings, 2 invalid.

#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"

#include "common/backup/executor.h"

namespace vmb::coordinator {

struct CliStreams {
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
};

// What the command line gets from its main.
struct CliEnvironment {
  // Makes the executor of a backup run (the main passes the agent library's
  // InProcessExecutor). Without one, only preview and the other commands
  // work.
  ExecutorFactory make_executor;
  // Notified on SIGINT/SIGTERM: a run cancels its jobs and cleans up. Not
  // owned; may be null.
  const absl::Notification* cancel = nullptr;
};

// Runs the command line `args` (without the program name) and returns the
// process exit code.
int RunCli(const std::vector<std::string>& args, const CliStreams& io,
           const CliEnvironment& env = {});

// The usage text (`vmbackup help`).
std::string CliUsage();

}  // namespace vmb::coordinator
