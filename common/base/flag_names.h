// SPDX-License-Identifier: Apache-2.0
#pragma once

// Daemon flags are spelled with hyphens, as admins type them
// (`--state-dir`); absl flags are identifiers (`state_dir`). This rewrites
// a command line for absl::ParseCommandLine: in every `--name[=value]` (and
// `-name`) the name's hyphens become underscores, and `--flagfile=FILE` is
// replaced by the file's flags (one a line; blank lines and `#` comments
// skipped), rewritten the same way. Values are left as they are; `--` ends
// the flags.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vmb {

// Errors: INVALID_ARGUMENT naming a flagfile that cannot be read, or nested
// more than 8 deep.
absl::StatusOr<std::vector<std::string>> NormaliseFlagNames(
    const std::vector<std::string>& args);

}  // namespace vmb
