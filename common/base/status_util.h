// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace vmb {

// Returns `status` with `context` prefixed to its message ("context: message"),
// keeping its code and payloads. OK stays OK. Use when an error crosses a
// layer, as Kudu's RETURN_NOT_OK_PREPEND does.
absl::Status AnnotateStatus(const absl::Status& status,
                            absl::string_view context);

template <typename... Args>
absl::Status Annotate(const absl::Status& status, const Args&... context) {
  if (status.ok()) return status;
  return AnnotateStatus(status, absl::StrCat(context...));
}

// Translates an errno value into a Status whose code tells the caller whether
// a retry makes sense: ENOSPC/EDQUOT -> RESOURCE_EXHAUSTED, ENOENT ->
// NOT_FOUND, EEXIST -> ALREADY_EXISTS, EACCES/EPERM/EROFS -> PERMISSION_DENIED,
// EINTR/EAGAIN/EIO/ESTALE/ETIMEDOUT -> UNAVAILABLE, others -> INTERNAL.
// The message is "<context>: <strerror>".
absl::Status ErrnoToStatus(int error_number, absl::string_view context);

}  // namespace vmb
