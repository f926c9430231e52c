// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "absl/status/status.h"
#include <grpcpp/support/status.h>

namespace vmb {

// Converts between absl::Status and grpc::Status. gRPC 1.51 has no
// conversion of its own; the numeric codes are the same. Payloads do not
// cross the boundary.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace vmb
