// SPDX-License-Identifier: Apache-2.0
#include "coordinator/control_client.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "coordinator/grpc_status.h"

namespace vmb::coordinator {
namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(absl::ToInt64Milliseconds(d));
}

}  // namespace

RunWatchStream::RunWatchStream(const ControlClient* client,
                               v1::GetRunRequest request)
    : client_(client), request_(std::move(request)) {}

RunWatchStream::~RunWatchStream() {
  if (reader_ == nullptr || finished_) return;
  // A stream dropped before its end: cancel it, then collect its status (a
  // ClientReader is finished before it is destroyed).
  context_.TryCancel();
  v1::RunUpdate ignored;
  while (!ended_ && reader_->Read(&ignored)) {
  }
  (void)reader_->Finish();
}

bool RunWatchStream::Next(v1::RunUpdate* update) {
  if (ended_) return false;
  if (reader_ == nullptr) {
    reader_ = client_->stub_->WatchRun(&context_, request_);
  }
  if (reader_->Read(update)) return true;
  ended_ = true;
  return false;
}

absl::Status RunWatchStream::Finish() {
  if (reader_ == nullptr) {
    return absl::FailedPreconditionError("the watch was never started");
  }
  if (finished_) return absl::FailedPreconditionError("finished twice");
  if (!ended_) {
    // Finish() before the end: drop what is left.
    context_.TryCancel();
    v1::RunUpdate ignored;
    while (reader_->Read(&ignored)) {
    }
    ended_ = true;
  }
  finished_ = true;
  const grpc::Status status = reader_->Finish();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      client_->channel_->GetState(false) != GRPC_CHANNEL_READY) {
    return absl::UnavailableError(absl::StrCat("lost the coordinator at ",
                                               client_->address(), ": ",
                                               status.error_message()));
  }
  return client_->Convert(status, "WatchRun", absl::ZeroDuration());
}

void RunWatchStream::Cancel() { context_.TryCancel(); }

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Create(
    const ControlClientOptions& options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("no coordinator address");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (!options.plaintext) {
    absl::StatusOr<std::unique_ptr<MtlsCredentials>> mtls =
        MtlsCredentials::Create(options.mtls, "");
    if (!mtls.ok()) return mtls.status();
    credentials = (*mtls)->ChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.keepalive));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // A watch may be quiet for minutes (jobs waiting for an agent): keep
  // pinging through it.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A coordinator that restarts is back within seconds; the default (up to
  // 2 minutes between attempts) would keep a watcher away long after.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.address, std::move(credentials), args);
  return std::unique_ptr<ControlClient>(
      new ControlClient(options, std::move(channel)));
}

ControlClient::ControlClient(ControlClientOptions options,
                             std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Control::NewStub(channel_)) {}

void ControlClient::SetDeadline(grpc::ClientContext* context,
                                absl::Duration timeout) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
}

absl::Status ControlClient::Convert(const grpc::Status& status,
                                    absl::string_view method,
                                    absl::Duration timeout) const {
  if (status.ok()) return absl::OkStatus();
  // Whether a connection exists tells a coordinator that is not there from
  // one that answered UNAVAILABLE itself (say, for a pool it cannot reach).
  const bool connected = channel_->GetState(false) == GRPC_CHANNEL_READY;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (connected) break;
      return absl::UnavailableError(
          absl::StrCat("cannot reach the coordinator at ", address(), ": ",
                       status.error_message()));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (!connected) {
        return absl::DeadlineExceededError(
            absl::StrCat("cannot reach the coordinator at ", address(),
                         ": no answer within ", absl::FormatDuration(timeout)));
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "the coordinator at ", address(), " did not answer within ",
          absl::FormatDuration(timeout), " (", method, ")"));
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::UnimplementedError(absl::StrCat(
          "the coordinator at ", address(), " does not know ", "Control.",
          method, " (", status.error_message(), "); is it an older version?"));
    default:
      break;
  }
  return FromGrpcStatus(status);
}

absl::StatusOr<std::string> ControlClient::StartRun(
    const v1::StartRunRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.planning_timeout);
  v1::StartRunResponse response;
  absl::Status s = Convert(stub_->StartRun(&context, request, &response),
                           "StartRun", options_.planning_timeout);
  if (!s.ok()) return s;
  if (response.run_id().empty()) {
    return absl::InternalError(absl::StrCat("the coordinator at ", address(),
                                            " started a run without an id"));
  }
  return response.run_id();
}

absl::StatusOr<v1::PreviewReport> ControlClient::Preview(
    const v1::StartRunRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.planning_timeout);
  v1::PreviewReport report;
  absl::Status s = Convert(stub_->Preview(&context, request, &report),
                           "Preview", options_.planning_timeout);
  if (!s.ok()) return s;
  return report;
}

absl::StatusOr<v1::RunSummary> ControlClient::GetRun(absl::string_view run_id) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.timeout);
  v1::GetRunRequest request;
  request.set_run_id(std::string(run_id));
  v1::RunSummary summary;
  absl::Status s = Convert(stub_->GetRun(&context, request, &summary), "GetRun",
                           options_.timeout);
  if (!s.ok()) return s;
  return summary;
}

absl::StatusOr<v1::ListRunsResponse> ControlClient::ListRuns(uint32_t limit) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.timeout);
  v1::ListRunsRequest request;
  request.set_limit(limit);
  v1::ListRunsResponse response;
  absl::Status s = Convert(stub_->ListRuns(&context, request, &response),
                           "ListRuns", options_.timeout);
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<v1::ListAgentsResponse> ControlClient::ListAgents() {
  grpc::ClientContext context;
  SetDeadline(&context, options_.timeout);
  v1::ListAgentsResponse response;
  absl::Status s =
      Convert(stub_->ListAgents(&context, v1::ListAgentsRequest(), &response),
              "ListAgents", options_.timeout);
  if (!s.ok()) return s;
  return response;
}

absl::Status ControlClient::CancelRun(absl::string_view run_id) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.timeout);
  v1::CancelRunRequest request;
  request.set_run_id(std::string(run_id));
  v1::CancelRunResponse response;
  return Convert(stub_->CancelRun(&context, request, &response), "CancelRun",
                 options_.timeout);
}

absl::StatusOr<v1::RestoreState> ControlClient::StartRestore(
    const v1::RestoreRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.planning_timeout);
  v1::RestoreState state;
  absl::Status s = Convert(stub_->StartRestore(&context, request, &state),
                           "StartRestore", options_.planning_timeout);
  if (!s.ok()) return s;
  return state;
}

absl::StatusOr<v1::RestoreState> ControlClient::GetRestore(
    absl::string_view restore_id) {
  grpc::ClientContext context;
  SetDeadline(&context, options_.timeout);
  v1::GetRestoreRequest request;
  request.set_restore_id(std::string(restore_id));
  v1::RestoreState state;
  absl::Status s = Convert(stub_->GetRestore(&context, request, &state),
                           "GetRestore", options_.timeout);
  if (!s.ok()) return s;
  return state;
}

std::unique_ptr<RunWatchStream> ControlClient::WatchRun(
    absl::string_view run_id) {
  v1::GetRunRequest request;
  request.set_run_id(std::string(run_id));
  return std::unique_ptr<RunWatchStream>(
      new RunWatchStream(this, std::move(request)));
}

}  // namespace vmb::coordinator
