// SPDX-License-Identifier: Apache-2.0
#include "agent/grpc_coordinator_connection.h"

#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace vmb::agent {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated))
    return absl::UnknownError(status.error_message());
  return absl::Status(static_cast<absl::StatusCode>(code),
                      status.error_message());
}

std::shared_ptr<grpc::Channel> GrpcCoordinatorConnection::MakeChannel(
    const std::string& target,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // Calls are frequent and short, so keepalive pings matter only for a call
  // the coordinator holds; one every five minutes is what a server accepts
  // by default (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS)
  // without answering with GOAWAY "too_many_pings". A dead coordinator shows
  // up through each call's deadline.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5 * 60 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // The agent's own backoff (200 ms doubling to the heartbeat interval)
  // decides when to retry; the channel must not add a wait of its own, or a
  // restarted coordinator would see its agents late and call their jobs lost.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, std::move(credentials), args);
}

GrpcCoordinatorConnection::GrpcCoordinatorConnection(
    std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::AgentService::NewStub(std::move(channel))) {}

absl::StatusOr<v1::DesiredState> GrpcCoordinatorConnection::Synchronize(
    const v1::AgentState& state, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  {
    absl::MutexLock lock(&mu_);
    call_ = &context;
  }
  v1::DesiredState desired;
  absl::Status status =
      FromGrpcStatus(stub_->Synchronize(&context, state, &desired));
  {
    absl::MutexLock lock(&mu_);
    call_ = nullptr;
  }
  if (!status.ok()) return status;
  return desired;
}

void GrpcCoordinatorConnection::Interrupt() {
  absl::MutexLock lock(&mu_);
  if (call_ != nullptr) call_->TryCancel();
}

}  // namespace vmb::agent
