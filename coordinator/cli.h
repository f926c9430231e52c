// SPDX-License-Identifier: Apache-2.0
#pragma once

// The `vmbackup` command line (docs/cli.md):
//
//   vmbackup [FLAGS] <password|password-file|-> <config-file|vm-selector>
//            [preview] [compress=True|False] [ignore_extra_keys=True|False]
//            [pre_clean=True|False]
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

namespace vmb::coordinator {

struct CliStreams {
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
};

// Runs the command line `args` (without the program name) and returns the
// process exit code.
int RunCli(const std::vector<std::string>& args, const CliStreams& io);

// The usage text (`vmbackup help`).
std::string CliUsage();

}  // namespace vmb::coordinator
