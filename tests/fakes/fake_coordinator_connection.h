// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "agent/coordinator_connection.h"
#include "proto/agent.pb.h"

namespace vmb::testing {

// A coordinator in memory: answers Synchronize from a script and records
// every AgentState it was sent. Thread-safe.
//
//   FakeCoordinatorConnection coordinator;
//   coordinator.SetSession(session_ref);     // in every answer
//   v1::DesiredState desired;
//   *desired.add_start() = spec;
//   coordinator.Push(desired);               // the next call's answer
//   ... start the daemon ...
//   std::optional<v1::AgentState> seen = coordinator.WaitFor(
//       [](const v1::AgentState& s) { return s.jobs_size() == 1; });
class FakeCoordinatorConnection final : public agent::CoordinatorConnection {
 public:
  struct Call {
    absl::Time time;  // real time the call came in
    v1::AgentState state;
    absl::Status result;  // what the call returned (OK: an answer)
  };

  // Records the call; then fails with the failure set (SetFailure), or
  // answers with the next pushed answer, or with an idle answer (nothing to
  // do, next_sync_after_ms from SetIdlePause). Every answer carries the
  // session and coordinator instance id set, unless it has its own.
  absl::StatusOr<v1::DesiredState> Synchronize(const v1::AgentState& state,
                                               absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // Ends a call held by SetHold with CANCELLED; counts every call.
  void Interrupt() override ABSL_LOCKS_EXCLUDED(mu_);
  // Calls with nothing scripted are held this long before the idle answer
  // (0, the default: answered at once), or until Interrupt.
  void SetHold(absl::Duration hold) ABSL_LOCKS_EXCLUDED(mu_);
  int interrupts() const ABSL_LOCKS_EXCLUDED(mu_);

  // Queues the answer of a later call (answers go out in order).
  void Push(v1::DesiredState desired) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues an error as the answer of a later call.
  void PushError(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // Every call fails with `status` until SetFailure(OkStatus()).
  void SetFailure(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  void SetSession(std::string session_ref) ABSL_LOCKS_EXCLUDED(mu_);
  void SetInstanceId(std::string instance_id) ABSL_LOCKS_EXCLUDED(mu_);
  void SetIdlePause(absl::Duration pause) ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<Call> calls() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t call_count() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits (up to `timeout`) until every pushed answer has gone out; the
  // index of the call that took the last one, or nothing.
  std::optional<size_t> WaitForScriptDone(
      absl::Duration timeout = absl::Seconds(60)) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // The state of the first call at index `from` or later whose state
  // satisfies `predicate`, waiting for new calls up to `timeout`; nothing
  // when none came.
  std::optional<v1::AgentState> WaitFor(
      const std::function<bool(const v1::AgentState&)>& predicate,
      size_t from = 0, absl::Duration timeout = absl::Seconds(60)) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Answer {
    absl::Status status;
    v1::DesiredState desired;
  };

  mutable absl::Mutex mu_;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::deque<Answer> script_ ABSL_GUARDED_BY(mu_);
  size_t last_scripted_call_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  std::string session_ ABSL_GUARDED_BY(mu_);
  std::string instance_id_ ABSL_GUARDED_BY(mu_) = "fake-coordinator";
  absl::Duration idle_pause_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(20);
  absl::Duration hold_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  bool interrupt_ ABSL_GUARDED_BY(mu_) = false;
  int interrupts_ ABSL_GUARDED_BY(mu_) = 0;
};

// The status of `job_id` in `state`, or nullptr.
const v1::JobStatus* FindJob(const v1::AgentState& state,
                             absl::string_view job_id);

}  // namespace vmb::testing
