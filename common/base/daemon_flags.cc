// SPDX-License-Identifier: Apache-2.0
#include "common/base/daemon_flags.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

#include "common/base/flag_names.h"
#include "common/base/version.h"

namespace vmb {
namespace {

// absl::ParseCommandLine exits with 1 on a flag it cannot parse (and after
// --help); the hook below turns that into 2, or 0 after --help/--version.
bool parsing_flags = true;
bool help = false;

}  // namespace

std::vector<std::string> ParseDaemonFlags(int argc, char** argv,
                                          const std::string& program,
                                          const std::string& usage,
                                          const std::string& main_file) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;  // --help lists the main file's flags
  config.contains_help_flags = [main_file](absl::string_view file) {
    return absl::EndsWith(file, main_file);
  };
  absl::SetFlagsUsageConfig(config);
  std::atexit([] {
    if (!parsing_flags) return;
    std::cout.flush();
    _exit(help ? 0 : 2);
  });
  absl::StatusOr<std::vector<std::string>> args =
      NormaliseFlagNames(std::vector<std::string>(argv, argv + argc));
  if (!args.ok()) {
    std::cerr << program << ": " << args.status().message() << "\n";
    std::exit(2);
  }
  // --version is answered here, after every other flag parsed (so that
  // `--flagfile=F --version` checks F).
  bool version = false;
  std::vector<char*> arg_ptrs;
  for (std::string& arg : *args) {
    if (arg == "--version") {
      version = true;
      continue;
    }
    help = help || absl::StartsWith(arg, "--help");
    arg_ptrs.push_back(arg.data());
  }
  const std::vector<char*> rest = absl::ParseCommandLine(
      static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  parsing_flags = false;
  if (version) {
    std::cout << program << ": " << VersionString() << "\n";
    std::exit(0);
  }
  return std::vector<std::string>(rest.begin() + 1, rest.end());
}

}  // namespace vmb
