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
//   vmbackup run CONFIG [preview] [key=value ...] | status [RUN_ID] | runs |
//            agents | cancel RUN_ID   [--coordinator HOST:PORT --mtls-* |
//            --plaintext]
//                            (clients of the coordinator: control_cli.h)
//
// Exit codes: 0 success, 1 warnings, 2 errors or could not run; for
// preview: 0 valid, 1 valid with warnings, 2 invalid.

#include <functional>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/backup/executor.h"
#include "common/base/clock.h"

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

  // What the coordinator commands (control_cli.h) take from the process,
  // passed in so that the command line reads no global state:
  //
  // An environment variable's value, "" when unset (the main passes
  // getenv). Null: no variables.
  std::function<std::string(const std::string& name)> getenv;
  // Whether standard output is a terminal (the main passes isatty(1)): `run`
  // then draws live progress lines instead of printing the run's log.
  bool stdout_is_terminal = false;
  // The terminal's columns, asked again at every redraw. Null or <= 0: 80.
  std::function<int()> terminal_width;
  // Times are shown in this zone (the main passes absl::LocalTimeZone()).
  absl::TimeZone time_zone;
  // For rates, ages and the pauses between reconnects. Not owned; null:
  // SystemClock.
  Clock* clock = nullptr;

  // How `run` follows its run on the coordinator.
  struct Watch {
    // The least time between two redraws of the live lines.
    absl::Duration redraw_interval = absl::Milliseconds(250);
    // A broken watch is reopened after retry_initial, doubling up to
    // retry_max, ...
    absl::Duration retry_initial = absl::Seconds(1);
    absl::Duration retry_max = absl::Seconds(15);
    // ... until nothing was heard from the coordinator for this long: then
    // `run` gives up (exit 2), naming the run for `vmbackup status`.
    absl::Duration give_up_after = absl::Minutes(10);
  } watch;
};

// Runs the command line `args` (without the program name) and returns the
// process exit code.
int RunCli(const std::vector<std::string>& args, const CliStreams& io,
           const CliEnvironment& env = {});

// The usage text (`vmbackup help`).
std::string CliUsage();

}  // namespace vmb::coordinator
