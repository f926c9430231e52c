// SPDX-License-Identifier: Apache-2.0
#include "common/base/status_util.h"

#include <errno.h>
#include <string.h>

namespace vmb {

absl::Status AnnotateStatus(const absl::Status& status,
                            absl::string_view context) {
  if (status.ok() || context.empty()) return status;
  absl::Status annotated(status.code(),
                         absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

absl::Status ErrnoToStatus(int error_number, absl::string_view context) {
  char buf[256];
  // GNU strerror_r returns the message pointer, which may not be buf.
  const char* text = strerror_r(error_number, buf, sizeof(buf));
  std::string message = absl::StrCat(context, ": ", text);
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(message);
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case EINTR:
    case EAGAIN:
    case EIO:
    case ESTALE:
    case ETIMEDOUT:
    case ECONNREFUSED:
    case ECONNRESET:
      return absl::UnavailableError(message);
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace vmb
