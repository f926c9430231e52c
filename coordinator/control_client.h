// SPDX-License-Identifier: Apache-2.0
#pragma once

// The command line's side of the coordinator's Control service
// (proto/coordinator.proto): a thin wrapper of the synchronous stub that puts
// a deadline on every unary call and turns gRPC failures into absl::Status
// with messages that name the coordinator's address.
//
//   auto client = ControlClient::Create({.address = "127.0.0.1:7441",
//                                        .plaintext = true});
//   absl::StatusOr<v1::RunSummary> run = (*client)->GetRun("");
//
// The watch stream has no deadline (a run lasts hours); the channel pings the
// coordinator every `keepalive` while a call is open, so that a coordinator
// that vanished without closing the connection is noticed. The coordinator's
// server must accept such pings (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_
// WITHOUT_DATA_MS at most `keepalive`); one that does not closes a quiet
// stream with GOAWAY, which `vmbackup run` survives by reconnecting.
//
// Thread-safe: calls may come from several threads at once (a RunWatchStream
// is used by one reader; its Cancel() from any thread).

#include <stdint.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include "common/rpc/mtls.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

class ControlClient;

struct ControlClientOptions {
  // gRPC target: "HOST:PORT", "[::1]:PORT", "unix:/path".
  std::string address;
  // Unencrypted, unauthenticated connection (loopback only; the caller
  // checks). Otherwise mutual TLS with `mtls`.
  bool plaintext = false;
  MtlsFiles mtls;
  // How the transport was asked for on the command line (" --plaintext",
  // " --mtls-ca A --mtls-cert B --mtls-key C"), for the hints printed.
  std::string transport_flags;
  // Deadline of each quick unary call (GetRun, ListRuns, ListAgents,
  // CancelRun).
  absl::Duration timeout = absl::Seconds(10);
  // Deadline of Preview and StartRun, for which the coordinator reads the
  // pool first (many round trips to XAPI on a large pool).
  absl::Duration planning_timeout = absl::Minutes(2);
  // Keepalive ping interval while a call is open; a ping not answered within
  // 10 s closes the connection.
  absl::Duration keepalive = absl::Seconds(30);
};

// One WatchRun stream. The call starts at the first Next(), so that the
// thread that reads also waits for the connection and Cancel() can interrupt
// either. Next() and Finish() from one thread; Cancel() from any. The
// ControlClient that made it must outlive it.
class RunWatchStream {
 public:
  RunWatchStream(const RunWatchStream&) = delete;
  RunWatchStream& operator=(const RunWatchStream&) = delete;
  ~RunWatchStream();

  // Blocks for the next update. False when the stream has ended (the
  // coordinator finished it, the connection broke, or Cancel()); then call
  // Finish() once.
  bool Next(v1::RunUpdate* update);
  // Why the stream ended: OK when the coordinator closed it; CANCELLED after
  // Cancel(); NOT_FOUND for an unknown run; UNAVAILABLE "lost the coordinator
  // at ADDR: ..." when the connection broke or could not be made.
  absl::Status Finish();
  // Makes a blocked Next() return false. Thread-safe; harmless after the end.
  void Cancel();

 private:
  friend class ControlClient;
  RunWatchStream(const ControlClient* client, v1::GetRunRequest request);

  const ControlClient* const client_;
  const v1::GetRunRequest request_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::RunUpdate>> reader_;
  bool ended_ = false;     // Next() returned false
  bool finished_ = false;  // Finish() was called
};

class ControlClient {
 public:
  // Makes the channel; nothing is connected until the first call. Errors:
  // INVALID_ARGUMENT for an empty address, and LoadMtlsMaterial's for the
  // --mtls-* files.
  static absl::StatusOr<std::unique_ptr<ControlClient>> Create(
      const ControlClientOptions& options);

  const std::string& address() const { return options_.address; }
  const std::string& transport_flags() const {
    return options_.transport_flags;
  }

  // Every call returns, besides the service's own errors (NOT_FOUND for an
  // unknown run; INVALID_ARGUMENT for a config that does not parse, naming
  // file and line; FAILED_PRECONDITION when another run uses the config's
  // backup_dir), with their messages as the coordinator wrote them:
  //   UNAVAILABLE "cannot reach the coordinator at ADDR: ..." when no
  //     connection could be made;
  //   DEADLINE_EXCEEDED "the coordinator at ADDR did not answer within T"
  //     (or "cannot reach the coordinator at ADDR: no answer within T" when
  //     the connection was never made);
  //   UNIMPLEMENTED "the coordinator at ADDR does not know Control.X" (an
  //     older coordinator).

  // The new run's id.
  absl::StatusOr<std::string> StartRun(const v1::StartRunRequest& request);
  absl::StatusOr<v1::PreviewReport> Preview(const v1::StartRunRequest& request);
  // `run_id` empty: the newest run.
  absl::StatusOr<v1::RunSummary> GetRun(absl::string_view run_id);
  // Newest first; `limit` 0: the coordinator's default.
  absl::StatusOr<v1::ListRunsResponse> ListRuns(uint32_t limit);
  absl::StatusOr<v1::ListAgentsResponse> ListAgents();
  absl::Status CancelRun(absl::string_view run_id);
  // A restore through an agent: started (the planning deadline: the
  // coordinator checks the folder and the pool first), then asked about.
  absl::StatusOr<v1::RestoreState> StartRestore(
      const v1::RestoreRequest& request);
  absl::StatusOr<v1::RestoreState> GetRestore(absl::string_view restore_id);
  // Opens a watch of `run_id` (empty: the newest run). Never null; a stream
  // that cannot be opened reports why from Finish().
  std::unique_ptr<RunWatchStream> WatchRun(absl::string_view run_id);

 private:
  friend class RunWatchStream;
  ControlClient(ControlClientOptions options,
                std::shared_ptr<grpc::Channel> channel);
  void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) const;
  absl::Status Convert(const grpc::Status& status, absl::string_view method,
                       absl::Duration timeout) const;

  const ControlClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Control::Stub> stub_;
};

}  // namespace vmb::coordinator
