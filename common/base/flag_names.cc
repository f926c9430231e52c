// SPDX-License-Identifier: Apache-2.0
#include "common/base/flag_names.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace vmb {
namespace {

absl::Status Expand(const std::vector<std::string>& args, int depth,
                    std::vector<std::string>* out) {
  bool flags = true;
  for (const std::string& arg : args) {
    if (!flags || arg.size() < 2 || arg[0] != '-') {
      out->push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags = false;
      out->push_back(arg);
      continue;
    }
    const size_t dashes = arg[1] == '-' ? 2 : 1;
    const size_t eq = arg.find('=');
    std::string name = arg.substr(
        dashes, eq == std::string::npos ? std::string::npos : eq - dashes);
    for (char& c : name) {
      if (c == '-') c = '_';
    }
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (name == "flagfile" && eq != std::string::npos) {
      if (depth >= 8) {
        return absl::InvalidArgumentError(
            absl::StrCat("--flagfile ", value, ": nested too deep"));
      }
      std::ifstream in(value);
      if (!in) {
        return absl::InvalidArgumentError(
            absl::StrCat("--flagfile ", value, ": cannot be read"));
      }
      std::vector<std::string> lines;
      std::string line;
      while (std::getline(in, line)) {
        absl::string_view l = absl::StripAsciiWhitespace(line);
        if (l.empty() || l[0] == '#') continue;
        lines.emplace_back(l);
      }
      absl::Status s = Expand(lines, depth + 1, out);
      if (!s.ok()) return s;
      continue;
    }
    out->push_back(absl::StrCat(std::string(dashes, '-'), name,
                                eq == std::string::npos ? "" : "=", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> NormaliseFlagNames(
    const std::vector<std::string>& args) {
  std::vector<std::string> out;
  absl::Status s = Expand(args, 0, &out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace vmb
