// SPDX-License-Identifier: Apache-2.0
#pragma once

// The gRPC boundary's one translation of error spaces (STYLE §14, §15).
// gRPC 1.51 has no conversion of its own, but the numeric codes of
// grpc::StatusCode and absl::StatusCode are the same (0 OK .. 16
// UNAUTHENTICATED), so both directions keep the code and the message. A
// service method ends with `reactor->Finish(ToGrpcStatus(status))`; a client
// returns `FromGrpcStatus(stub->Call(...))`.

#include "absl/status/status.h"
#include <grpcpp/support/status.h>

namespace vmb::coordinator {

// The same code and message. Payloads are dropped (gRPC's error details are
// not used). A code outside 0..16 becomes UNKNOWN.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The same code and message; gRPC's error details, if any, are dropped. A
// code outside 0..16 becomes UNKNOWN.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace vmb::coordinator
