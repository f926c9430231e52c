// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/status.h>

#include "agent/coordinator_connection.h"
#include "proto/agent.grpc.pb.h"

namespace vmb::agent {

// The one translation of a gRPC status into an absl::Status: the numeric
// codes are the same (1.51 has no conversion of its own); a code outside
// absl's range becomes UNKNOWN. The message is kept.
absl::Status FromGrpcStatus(const grpc::Status& status);

// CoordinatorConnection over gRPC: a synchronous AgentService stub, one call
// at a time per caller, each with a deadline. Thread-safe (gRPC stubs are).
//
//   auto channel = GrpcCoordinatorConnection::MakeChannel(
//       "127.0.0.1:7443", grpc::InsecureChannelCredentials());
//   GrpcCoordinatorConnection connection(channel);
//   absl::StatusOr<v1::DesiredState> desired =
//       connection.Synchronize(state, absl::Seconds(30));
class GrpcCoordinatorConnection final : public CoordinatorConnection {
 public:
  // A channel to `target` ("host:port") with `credentials` (mutual TLS, or
  // insecure ones on loopback), with keepalive and a reconnect backoff short
  // enough that a coordinator coming back is found within seconds (gRPC's
  // own reconnect backoff would otherwise grow to two minutes). The channel
  // connects lazily: creating it never fails.
  static std::shared_ptr<grpc::Channel> MakeChannel(
      const std::string& target,
      std::shared_ptr<grpc::ChannelCredentials> credentials);

  explicit GrpcCoordinatorConnection(std::shared_ptr<grpc::Channel> channel);

  // Errors: FromGrpcStatus of the call's status. A coordinator that cannot
  // be reached is UNAVAILABLE; no answer within `timeout`,
  // DEADLINE_EXCEEDED.
  absl::StatusOr<v1::DesiredState> Synchronize(const v1::AgentState& state,
                                               absl::Duration timeout) override;
  // Cancels the call in progress (grpc::ClientContext::TryCancel).
  void Interrupt() override;

 private:
  const std::unique_ptr<v1::AgentService::Stub> stub_;
  absl::Mutex mu_;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;  // in progress
};

}  // namespace vmb::agent
