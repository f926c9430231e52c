// SPDX-License-Identifier: Apache-2.0
#pragma once

// XenAPI failures as absl::Status. A failure keeps XAPI's error code and
// parameters in a payload, so callers can branch on the code
// (IsXenApiError(status, "VDI_IN_USE")) while retry policy looks only at the
// Status code, chosen by retry meaning:
//
//   UNAUTHENTICATED     SESSION_AUTHENTICATION_FAILED
//   UNAVAILABLE         SESSION_INVALID, VDI_IN_USE,
//   OTHER_OPERATION_IN_PROGRESS,
//                       HOST_OFFLINE, HOST_NOT_LIVE, NO_HOSTS_AVAILABLE,
//                       TOO_MANY_PENDING_TASKS, SR_BACKEND_FAILURE_46
//   RESOURCE_EXHAUSTED  SR_FULL, SR_BACKEND_FAILURE_44
//   ABORTED             VDI_IO_ERROR, other SR_BACKEND_FAILURE_<n>
//   NOT_FOUND           HANDLE_INVALID, UUID_INVALID, VDI_MISSING
//   FAILED_PRECONDITION HOST_IS_SLAVE, VM_BAD_POWER_STATE,
//   OPERATION_NOT_ALLOWED,
//                       VM_IS_TEMPLATE, MAP_DUPLICATE_KEY,
//                       SR_BACKEND_FAILURE_109
//   PERMISSION_DENIED   RBAC_PERMISSION_DENIED, LICENCE_RESTRICTION
//   UNIMPLEMENTED       MESSAGE_METHOD_UNKNOWN
//   INVALID_ARGUMENT    MESSAGE_PARAMETER_COUNT_MISMATCH, FIELD_TYPE_ERROR
//   CANCELLED           TASK_CANCELLED
//   INTERNAL            INTERNAL_ERROR
//   UNKNOWN             any other code

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace vmb {

struct XenApiError {
  std::string code;
  std::vector<std::string> params;
};

// The one translation of XAPI's error space: ErrorDescription (code then
// parameters) into a Status with the code above, a message
// "XenAPI error CODE(p1, p2)" and the error as a payload.
absl::Status XenApiFailureToStatus(
    const std::vector<std::string>& error_description);

// The XenAPI error carried by `status`, if any (also after Annotate).
std::optional<XenApiError> GetXenApiError(const absl::Status& status);

// True if `status` carries the XenAPI error `code`.
bool IsXenApiError(const absl::Status& status, absl::string_view code);

// Parses XAPI's HTML error page ("... Additional information </h1>CODE: [ p1;
// p2 ]</body></html>"). Returns nullopt if `html` is not such a page.
std::optional<XenApiError> ParseXapiErrorPage(absl::string_view html);

}  // namespace vmb
