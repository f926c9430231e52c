// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xenapi_error.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include "proto/common.pb.h"

namespace vmb {
namespace {

constexpr char kPayloadUrl[] = "type.vmbackup.dev/vmb.v1.XenApiError";

absl::StatusCode CodeFor(absl::string_view code) {
  static constexpr std::pair<absl::string_view, absl::StatusCode> kTable[] = {
      {"SESSION_AUTHENTICATION_FAILED", absl::StatusCode::kUnauthenticated},
      {"SESSION_INVALID", absl::StatusCode::kUnavailable},
      {"VDI_IN_USE", absl::StatusCode::kUnavailable},
      {"OTHER_OPERATION_IN_PROGRESS", absl::StatusCode::kUnavailable},
      {"HOST_OFFLINE", absl::StatusCode::kUnavailable},
      {"HOST_NOT_LIVE", absl::StatusCode::kUnavailable},
      {"NO_HOSTS_AVAILABLE", absl::StatusCode::kUnavailable},
      {"TOO_MANY_PENDING_TASKS", absl::StatusCode::kUnavailable},
      {"SR_BACKEND_FAILURE_46", absl::StatusCode::kUnavailable},
      {"SR_FULL", absl::StatusCode::kResourceExhausted},
      {"SR_BACKEND_FAILURE_44", absl::StatusCode::kResourceExhausted},
      {"SR_BACKEND_FAILURE_109", absl::StatusCode::kFailedPrecondition},
      {"VDI_IO_ERROR", absl::StatusCode::kAborted},
      {"HANDLE_INVALID", absl::StatusCode::kNotFound},
      {"UUID_INVALID", absl::StatusCode::kNotFound},
      {"VDI_MISSING", absl::StatusCode::kNotFound},
      {"HOST_IS_SLAVE", absl::StatusCode::kFailedPrecondition},
      {"VM_BAD_POWER_STATE", absl::StatusCode::kFailedPrecondition},
      {"OPERATION_NOT_ALLOWED", absl::StatusCode::kFailedPrecondition},
      {"VM_IS_TEMPLATE", absl::StatusCode::kFailedPrecondition},
      {"MAP_DUPLICATE_KEY", absl::StatusCode::kFailedPrecondition},
      {"RBAC_PERMISSION_DENIED", absl::StatusCode::kPermissionDenied},
      {"LICENCE_RESTRICTION", absl::StatusCode::kPermissionDenied},
      {"LICENSE_RESTRICTION", absl::StatusCode::kPermissionDenied},
      {"MESSAGE_METHOD_UNKNOWN", absl::StatusCode::kUnimplemented},
      {"MESSAGE_PARAMETER_COUNT_MISMATCH", absl::StatusCode::kInvalidArgument},
      {"FIELD_TYPE_ERROR", absl::StatusCode::kInvalidArgument},
      {"TASK_CANCELLED", absl::StatusCode::kCancelled},
      {"INTERNAL_ERROR", absl::StatusCode::kInternal},
  };
  for (const auto& [name, status_code] : kTable) {
    if (name == code) return status_code;
  }
  if (absl::StartsWith(code, "SR_BACKEND_FAILURE"))
    return absl::StatusCode::kAborted;
  return absl::StatusCode::kUnknown;
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

}  // namespace

absl::Status XenApiFailureToStatus(
    const std::vector<std::string>& error_description) {
  XenApiError error;
  if (!error_description.empty()) {
    error.code = error_description[0];
    error.params.assign(error_description.begin() + 1, error_description.end());
  }
  if (error.code.empty()) error.code = "UNKNOWN_XENAPI_ERROR";
  std::vector<std::string> quoted;
  for (const std::string& p : error.params) quoted.push_back(Quote(p));
  absl::Status status(CodeFor(error.code),
                      absl::StrCat("XenAPI error ", error.code, "(",
                                   absl::StrJoin(quoted, ", "), ")"));
  v1::XenApiError proto;
  proto.set_code(error.code);
  for (const std::string& p : error.params) proto.add_params(p);
  status.SetPayload(kPayloadUrl, absl::Cord(proto.SerializeAsString()));
  return status;
}

std::optional<XenApiError> GetXenApiError(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  v1::XenApiError proto;
  if (!proto.ParseFromString(std::string(*payload))) return std::nullopt;
  return XenApiError{proto.code(),
                     {proto.params().begin(), proto.params().end()}};
}

bool IsXenApiError(const absl::Status& status, absl::string_view code) {
  std::optional<XenApiError> error = GetXenApiError(status);
  return error.has_value() && error->code == code;
}

std::optional<XenApiError> ParseXapiErrorPage(absl::string_view html) {
  constexpr absl::string_view kMarker = "Additional information </h1>";
  size_t at = html.find(kMarker);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = html.substr(at + kMarker.size());
  size_t end = rest.find("</body>");
  if (end != absl::string_view::npos) rest = rest.substr(0, end);
  size_t colon = rest.find(": [");
  if (colon == absl::string_view::npos) return std::nullopt;
  XenApiError error;
  error.code = std::string(rest.substr(0, colon));
  absl::string_view params = rest.substr(colon + 3);
  if (!absl::ConsumeSuffix(&params, "]")) return std::nullopt;
  // "[ p1; p2 ]": one space after '[' and before ']'.
  absl::ConsumePrefix(&params, " ");
  absl::ConsumeSuffix(&params, " ");
  if (!params.empty()) {
    for (absl::string_view p : absl::StrSplit(params, "; "))
      error.params.emplace_back(p);
  }
  return error;
}

}  // namespace vmb
