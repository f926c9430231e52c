// SPDX-License-Identifier: Apache-2.0
#pragma once

// The command line's coordinator commands (docs/cli.md), clients of the
// coordinator's Control service:
//
//   vmbackup run CONFIG [preview] [compress=..] [ignore_extra_keys=..]
//                [pre_clean=..] [--json]
//   vmbackup status [RUN_ID] [--json]
//   vmbackup runs [--limit N] [--json]
//   vmbackup agents [--json]
//   vmbackup cancel RUN_ID
//
// each with --coordinator HOST:PORT (default: $VMBACKUP_COORDINATOR, then
// 127.0.0.1:7441), --mtls-ca/--mtls-cert/--mtls-key or --plaintext (loopback),
// --timeout DURATION (unary calls; default 10s) and --help. Flags go after
// the command word, anywhere among its arguments; "--" ends them.
//
// Exit codes: `run` the run's own (0 success, 1 warnings, 2 errors), its
// preview 0 valid / 1 warnings / 2 invalid; the others 0 done. 2 for every
// error: bad arguments, the coordinator unreachable (the message names the
// address), an unknown run, a watch given up or interrupted.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "coordinator/cli.h"

namespace vmb::coordinator {

inline constexpr char kDefaultCoordinatorAddress[] = "127.0.0.1:7441";
inline constexpr char kCoordinatorEnvVar[] = "VMBACKUP_COORDINATOR";
// A flag file read before the command line's flags (--flagfile overrides).
inline constexpr char kFlagfileEnvVar[] = "VMBACKUP_FLAGFILE";

// run, status, runs, agents, cancel.
bool IsControlCommand(absl::string_view word);

// Runs the coordinator command args[0] with its arguments args[1..] and
// returns the exit code. `run` without `preview` watches the run until it
// ends; env.cancel (SIGINT/SIGTERM) stops the watching, not the run.
int RunControlCommand(const std::vector<std::string>& args,
                      const CliStreams& io, const CliEnvironment& env);

// The coordinator commands' part of `vmbackup help`.
std::string ControlCommandsUsage();

}  // namespace vmb::coordinator
