// SPDX-License-Identifier: Apache-2.0
#include "coordinator/grpc_status.h"

#include <string>

namespace vmb::coordinator {
namespace {

// Both enums number the codes as google.rpc.Code does.
constexpr int kLastCode = 16;  // UNAUTHENTICATED
static_assert(static_cast<int>(grpc::StatusCode::UNAUTHENTICATED) == kLastCode);
static_assert(static_cast<int>(absl::StatusCode::kUnauthenticated) ==
              kLastCode);
static_assert(static_cast<int>(grpc::StatusCode::UNAVAILABLE) ==
              static_cast<int>(absl::StatusCode::kUnavailable));
static_assert(static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION) ==
              static_cast<int>(absl::StatusCode::kFailedPrecondition));

bool KnownCode(int code) { return code >= 0 && code <= kLastCode; }

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  return grpc::Status(KnownCode(code) ? static_cast<grpc::StatusCode>(code)
                                      : grpc::StatusCode::UNKNOWN,
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  return absl::Status(KnownCode(code) ? static_cast<absl::StatusCode>(code)
                                      : absl::StatusCode::kUnknown,
                      status.error_message());
}

}  // namespace vmb::coordinator
