// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmb::agent {

// Where XenServer and XCP-ng describe their installation, one KEY='value'
// a line (shell syntax); INSTALLATION_UUID is the host's uuid.
inline constexpr absl::string_view kXensourceInventoryPath =
    "/etc/xensource-inventory";

// Parses the text of /etc/xensource-inventory into its keys and values:
// KEY='value', KEY="value" or KEY=value, one a line; blank lines and lines
// starting with '#' are skipped; surrounding white space is dropped. A key
// given twice keeps its last value.
// Errors: INVALID_ARGUMENT "line N: ..." for a line without '=', with an
// empty or malformed key, or with an unterminated quote.
absl::StatusOr<std::map<std::string, std::string>> ParseXensourceInventory(
    absl::string_view text);

}  // namespace vmb::agent
