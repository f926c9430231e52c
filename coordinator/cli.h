// SPDX-License-Identifier: Apache-2.0
#pragma once

// The `vmbackup` command line. This version knows:
//
//   vmbackup [FLAGS] inventory <password|password-file|->
//   vmbackup help
//
// FLAGS (before the command):
//   --xapi-url URL          pool master (or any member); default
//   http://localhost
//   --user NAME             XenAPI user; default root
//   --tls-ca FILE           trust the pool's certificate(s) in FILE (https)
//   --tls-fingerprint HEX   accept exactly the certificate with this SHA-256
//   --tls-insecure          accept any certificate (test set-ups only)
//
// Exit codes: 0 success, 2 error or could not run.

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

// The usage text.
std::string CliUsage();

}  // namespace vmb::coordinator
