// SPDX-License-Identifier: Apache-2.0
#pragma once

// The daemons' command line (vmbackup-agent, vmbackup-coordinator): Abseil
// flags, spelled with hyphens or underscores on the command line and in
// flagfiles (NormaliseFlagNames), with the exit codes a service manager can
// tell apart: a flag that cannot be parsed is exit status 2 (systemd:
// RestartPreventExitStatus=2), --help and --version 0. --help lists the
// flags defined in the file whose name ends with `main_file`; --version
// prints "PROGRAM: vmbackup X.Y.Z" once every other flag parsed, so that
// `--flagfile=FILE --version` checks FILE.
//
//   std::vector<std::string> rest = vmb::ParseDaemonFlags(
//       argc, argv, "vmbackup-agent", "vmbackup-agent --coordinator ...",
//       "agent_main.cc");

#include <string>
#include <vector>

namespace vmb {

// Parses the flags; returns the arguments that are not flags (without
// argv[0]). Exits (2) on a bad flag, (0) after --help or --version.
std::vector<std::string> ParseDaemonFlags(int argc, char** argv,
                                          const std::string& program,
                                          const std::string& usage,
                                          const std::string& main_file);

}  // namespace vmb
