// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmb {

struct PasswordSource {
  std::string password;
  // Where it came from, for messages: "password file /root/VmBackup.pass",
  // "standard input" or "the command line".
  std::string origin;
  bool from_command_line = false;
};

// Resolves the seed's <password|password-file> argument: "-" reads one line
// from `stdin_text`'s source (the caller passes standard input's content);
// the path of an existing file is read as a VmBackup password file (the
// password base64-encoded, surrounding whitespace ignored; obscured, not
// encrypted); anything else is the password itself.
// Errors: INVALID_ARGUMENT naming the file when it is empty, unreadable or
// not base64.
absl::StatusOr<PasswordSource> ResolvePasswordArgument(
    absl::string_view argument, absl::string_view stdin_text);

// The content of a VmBackup password file for `password`: base64, no newline.
std::string EncodePasswordFile(absl::string_view password);

}  // namespace vmb
