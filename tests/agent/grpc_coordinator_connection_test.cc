// SPDX-License-Identifier: Apache-2.0
// GrpcCoordinatorConnection against a fake AgentService on loopback: a round
// trip, the coordinator's errors, a call the coordinator never answers, and
// a coordinator that is gone.
#include "agent/grpc_coordinator_connection.h"

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "tests/testing/status_matchers.h"

namespace vmb::agent {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

// Holds a call until the client gives up on it.
class HangingReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }
};

// The coordinator's side: records what it was sent and answers as told.
class FakeAgentService final : public v1::AgentService::CallbackService {
 public:
  grpc::ServerUnaryReactor* Synchronize(grpc::CallbackServerContext* context,
                                        const v1::AgentState* request,
                                        v1::DesiredState* response) override {
    absl::MutexLock lock(&mu_);
    states_.push_back(*request);
    if (hang_) return new HangingReactor();
    *response = answer_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(status_);
    return reactor;
  }

  void Answer(v1::DesiredState answer, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    answer_ = std::move(answer);
    status_ = std::move(status);
  }
  void Hang() {
    absl::MutexLock lock(&mu_);
    hang_ = true;
  }
  std::vector<v1::AgentState> states() {
    absl::MutexLock lock(&mu_);
    return states_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::AgentState> states_ ABSL_GUARDED_BY(mu_);
  v1::DesiredState answer_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
};

class GrpcCoordinatorConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    connection_ = std::make_unique<GrpcCoordinatorConnection>(
        GrpcCoordinatorConnection::MakeChannel(
            Target(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
      server_->Wait();
    }
  }

  std::string Target() const { return "127.0.0.1:" + std::to_string(port_); }

  static v1::AgentState State() {
    v1::AgentState state;
    state.mutable_identity()->set_agent_id("agent-1");
    state.mutable_identity()->set_instance_id("i1");
    state.set_max_concurrent_jobs(2);
    v1::JobStatus* job = state.add_jobs();
    job->set_job_id("run1/vm");
    job->set_phase(v1::JOB_PHASE_EXPORT);
    job->set_bytes_done(42);
    return state;
  }

  FakeAgentService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<GrpcCoordinatorConnection> connection_;
};

TEST_F(GrpcCoordinatorConnectionTest, SendsTheStateAndReturnsTheAnswer) {
  v1::DesiredState answer;
  answer.add_start()->set_job_id("run1/other");
  answer.add_commit_grants()->set_job_id("run1/vm");
  answer.set_session_ref("OpaqueRef:session");
  answer.set_next_sync_after_ms(500);
  answer.set_coordinator_instance_id("c1");
  service_.Answer(answer, grpc::Status::OK);

  ASSERT_OK_AND_ASSIGN(v1::DesiredState got,
                       connection_->Synchronize(State(), absl::Seconds(30)));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, answer))
      << got.DebugString();
  ASSERT_EQ(service_.states().size(), 1u);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      service_.states()[0], State()));
}

TEST_F(GrpcCoordinatorConnectionTest, ReturnsTheCoordinatorsErrorWithItsCode) {
  service_.Answer(v1::DesiredState(),
                  grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                               "agent agent-1 is not in the pool"));
  EXPECT_THAT(connection_->Synchronize(State(), absl::Seconds(30)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not in the pool")));
}

TEST_F(GrpcCoordinatorConnectionTest, GivesUpOnACallNotAnsweredInTime) {
  service_.Hang();
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::DesiredState> got =
      connection_->Synchronize(State(), absl::Milliseconds(300));
  EXPECT_THAT(got.status().code(), AnyOf(absl::StatusCode::kDeadlineExceeded,
                                         absl::StatusCode::kUnavailable))
      << got.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_F(GrpcCoordinatorConnectionTest, InterruptEndsAHeldCallCancelled) {
  service_.Hang();
  auto call = std::async(std::launch::async, [this] {
    return connection_->Synchronize(State(), absl::Minutes(10));
  });
  const absl::Time until = absl::Now() + absl::Seconds(60);
  while (service_.states().empty() && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(service_.states().size(), 1u);  // held by the coordinator now
  connection_->Interrupt();
  EXPECT_THAT(call.get(), StatusIs(absl::StatusCode::kCancelled));
  connection_->Interrupt();  // none in progress: nothing happens
}

TEST_F(GrpcCoordinatorConnectionTest, ACoordinatorThatIsGoneIsUnavailable) {
  ASSERT_OK(connection_->Synchronize(State(), absl::Seconds(30)).status());
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  server_->Wait();
  server_.reset();
  EXPECT_THAT(connection_->Synchronize(State(), absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(FromGrpcStatusTest, KeepsCodeAndMessage) {
  EXPECT_OK(FromGrpcStatus(grpc::Status::OK));
  EXPECT_THAT(
      FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")),
      StatusIs(absl::StatusCode::kUnavailable, "down"));
  // A code a later gRPC may add (within the enum's range of values).
  EXPECT_THAT(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                          "who are you")),
              StatusIs(absl::StatusCode::kUnauthenticated, "who are you"));
  EXPECT_THAT(
      FromGrpcStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")),
      StatusIs(absl::StatusCode::kDeadlineExceeded));
  // A code a later gRPC may add (within the enum's range of values).
  EXPECT_THAT(FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20),
                                          "from the future")),
              StatusIs(absl::StatusCode::kUnknown, "from the future"));
}

}  // namespace
}  // namespace vmb::agent
