// SPDX-License-Identifier: Apache-2.0
#pragma once

// Independent checks of what a backup wrote, for tests: this code shares
// nothing with the agent's verifier, so a misreading of the XVA format
// cannot hide on both sides.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vmb::testing {

// The SHA-256 (hex) of each disk an XVA file holds, keyed by its "Ref:N"
// folder: chunks reassembled in order, the skipped (all-zero) chunks filled
// with zeros. `.gz` and `.zst` files are decompressed first.
absl::StatusOr<std::map<std::string, std::string>> XvaDiskSha256s(
    const std::string& path);

// The SHA-256 (hex) of a file.
absl::StatusOr<std::string> FileSha256(const std::string& path);

// Every regular file below `dir` (relative path -> SHA-256), symbolic links
// as "-> target": to show that earlier backups are byte-identical.
absl::StatusOr<std::map<std::string, std::string>> TreeDigest(
    const std::string& dir);

// VM names that attack paths, shells, logs and mail headers, plus names that
// a sanitised one could collide with ("a_b", "_", "__").
const std::vector<std::string>& HostileVmNames();

}  // namespace vmb::testing
