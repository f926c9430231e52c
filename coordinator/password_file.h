// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmb::coordinator {

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
// not base64. A password file readable by group or others is refused
// (INVALID_ARGUMENT naming the file and its mode) unless `allow_insecure_file`.
absl::StatusOr<PasswordSource> ResolvePasswordArgument(
    absl::string_view argument, absl::string_view stdin_text,
    bool allow_insecure_file = false);

// Writes a VmBackup password file: base64(password), no newline, mode 0600
// (also when the file existed). Refuses to follow a symbolic link.
// Errors: the errno of the failing step, naming the file.
absl::Status WritePasswordFile(const std::string& path,
                               absl::string_view password);

// The content of a VmBackup password file for `password`: base64, no newline.
std::string EncodePasswordFile(absl::string_view password);

}  // namespace vmb::coordinator
