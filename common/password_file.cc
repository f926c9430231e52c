// SPDX-License-Identifier: Apache-2.0
#include "common/password_file.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace vmb {

absl::StatusOr<PasswordSource> ResolvePasswordArgument(
    absl::string_view argument, absl::string_view stdin_text) {
  PasswordSource out;
  if (argument == "-") {
    absl::string_view line = stdin_text.substr(0, stdin_text.find('\n'));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty())
      return absl::InvalidArgumentError("no password on standard input");
    out.password = std::string(line);
    out.origin = "standard input";
    return out;
  }
  const std::string path(argument);
  struct stat st;
  if (!path.empty() && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read password file ", path));
    std::stringstream data;
    data << in.rdbuf();
    const std::string encoded(absl::StripAsciiWhitespace(data.str()));
    if (encoded.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("password file ", path, " is empty"));
    }
    if (!absl::Base64Unescape(encoded, &out.password) || out.password.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "password file ", path,
          " is not a VmBackup password file (base64 of the password)"));
    }
    out.origin = absl::StrCat("password file ", path);
    return out;
  }
  out.password = std::string(argument);
  out.origin = "the command line";
  out.from_command_line = true;
  return out;
}

std::string EncodePasswordFile(absl::string_view password) {
  return absl::Base64Escape(password);
}

}  // namespace vmb
