// SPDX-License-Identifier: Apache-2.0
#include "agent/xensource_inventory.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vmb::agent {

absl::StatusOr<std::map<std::string, std::string>> ParseXensourceInventory(
    absl::string_view text) {
  std::map<std::string, std::string> values;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", number, ": not KEY=VALUE"));
    }
    const absl::string_view key =
        absl::StripAsciiWhitespace(line.substr(0, eq));
    bool key_ok = !key.empty() && !absl::ascii_isdigit(key.front());
    for (char c : key) key_ok = key_ok && (absl::ascii_isalnum(c) || c == '_');
    if (!key_ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", number, ": malformed key"));
    }
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(eq + 1));
    if (!value.empty() && (value.front() == '\'' || value.front() == '"')) {
      const char quote = value.front();
      if (value.size() < 2 || value.back() != quote ||
          value.substr(1, value.size() - 2).find(quote) !=
              absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", number, ": unterminated quote in the value of ", key));
      }
      value = value.substr(1, value.size() - 2);
    }
    values[std::string(key)] = std::string(value);
  }
  return values;
}

}  // namespace vmb::agent
