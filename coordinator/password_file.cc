// SPDX-License-Identifier: Apache-2.0
#include "coordinator/password_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "common/base/status_util.h"

namespace vmb::coordinator {

absl::StatusOr<PasswordSource> ResolvePasswordArgument(
    absl::string_view argument, absl::string_view stdin_text,
    bool allow_insecure_file) {
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
    if ((st.st_mode & 077) != 0 && !allow_insecure_file) {
      return absl::InvalidArgumentError(
          absl::StrFormat("password file %s is readable by group or others "
                          "(mode %04o): run chmod 600 %s, or "
                          "pass --allow-insecure-password-file",
                          path, st.st_mode & 07777, path));
    }
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

absl::Status WritePasswordFile(const std::string& path,
                               absl::string_view password) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
           0600);
  if (fd < 0)
    return ErrnoToStatus(errno,
                         absl::StrCat("cannot write password file ", path));
  absl::Status status;
  if (fchmod(fd, 0600) != 0) {
    status =
        ErrnoToStatus(errno, absl::StrCat("cannot chmod password file ", path));
  }
  const std::string content = EncodePasswordFile(password);
  for (size_t done = 0; status.ok() && done < content.size();) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoToStatus(errno,
                             absl::StrCat("cannot write password file ", path));
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (status.ok() && fsync(fd) != 0) {
    status =
        ErrnoToStatus(errno, absl::StrCat("cannot sync password file ", path));
  }
  if (close(fd) != 0 && status.ok()) {
    status =
        ErrnoToStatus(errno, absl::StrCat("cannot close password file ", path));
  }
  return status;
}

}  // namespace vmb::coordinator
