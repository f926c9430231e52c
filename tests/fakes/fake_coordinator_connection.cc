// SPDX-License-Identifier: Apache-2.0
#include "tests/fakes/fake_coordinator_connection.h"

#include <utility>

namespace vmb::testing {

absl::StatusOr<v1::DesiredState> FakeCoordinatorConnection::Synchronize(
    const v1::AgentState& state, absl::Duration timeout) {
  (void)timeout;
  absl::MutexLock lock(&mu_);
  Call call{absl::Now(), state, absl::OkStatus()};
  Answer answer;
  if (!failure_.ok()) {
    answer.status = failure_;
  } else if (!script_.empty()) {
    answer = std::move(script_.front());
    script_.pop_front();
    last_scripted_call_ = calls_.size();
  } else {
    answer.desired.set_next_sync_after_ms(
        static_cast<uint64_t>(absl::ToInt64Milliseconds(idle_pause_)));
    if (hold_ > absl::ZeroDuration()) {
      // Held as the coordinator holds a call with nothing new, until the
      // agent interrupts it.
      interrupt_ = false;
      holding_ = true;
      const size_t index = calls_.size();
      calls_.push_back(call);
      mu_.AwaitWithTimeout(absl::Condition(&interrupt_), hold_);
      holding_ = false;
      if (interrupt_) {
        calls_[index].result = absl::CancelledError("interrupted");
        return calls_[index].result;
      }
      return answer.desired;
    }
  }
  call.result = answer.status;
  calls_.push_back(std::move(call));
  if (!answer.status.ok()) return answer.status;
  if (answer.desired.session_ref().empty())
    answer.desired.set_session_ref(session_);
  if (answer.desired.coordinator_instance_id().empty())
    answer.desired.set_coordinator_instance_id(instance_id_);
  return answer.desired;
}

void FakeCoordinatorConnection::Interrupt() {
  absl::MutexLock lock(&mu_);
  ++interrupts_;
  if (holding_) interrupt_ = true;
}

void FakeCoordinatorConnection::SetHold(absl::Duration hold) {
  absl::MutexLock lock(&mu_);
  hold_ = hold;
}

int FakeCoordinatorConnection::interrupts() const {
  absl::MutexLock lock(&mu_);
  return interrupts_;
}

void FakeCoordinatorConnection::Push(v1::DesiredState desired) {
  absl::MutexLock lock(&mu_);
  script_.push_back(Answer{absl::OkStatus(), std::move(desired)});
}

void FakeCoordinatorConnection::PushError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  script_.push_back(Answer{std::move(status), {}});
}

void FakeCoordinatorConnection::SetFailure(absl::Status status) {
  absl::MutexLock lock(&mu_);
  failure_ = std::move(status);
}

void FakeCoordinatorConnection::SetSession(std::string session_ref) {
  absl::MutexLock lock(&mu_);
  session_ = std::move(session_ref);
}

void FakeCoordinatorConnection::SetInstanceId(std::string instance_id) {
  absl::MutexLock lock(&mu_);
  instance_id_ = std::move(instance_id);
}

void FakeCoordinatorConnection::SetIdlePause(absl::Duration pause) {
  absl::MutexLock lock(&mu_);
  idle_pause_ = pause;
}

std::vector<FakeCoordinatorConnection::Call> FakeCoordinatorConnection::calls()
    const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

size_t FakeCoordinatorConnection::call_count() const {
  absl::MutexLock lock(&mu_);
  return calls_.size();
}

std::optional<size_t> FakeCoordinatorConnection::WaitForScriptDone(
    absl::Duration timeout) const {
  struct Done {
    const FakeCoordinatorConnection* fake;
    bool operator()() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return fake->script_.empty();
    }
  };
  const Done done{this};
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout))
    return std::nullopt;
  return last_scripted_call_;
}

std::optional<v1::AgentState> FakeCoordinatorConnection::WaitFor(
    const std::function<bool(const v1::AgentState&)>& predicate, size_t from,
    absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  size_t next = from;
  while (true) {
    for (; next < calls_.size(); ++next) {
      if (predicate(calls_[next].state)) return calls_[next].state;
    }
    struct More {
      const FakeCoordinatorConnection* fake;
      size_t seen;
      bool operator()() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return fake->calls_.size() > seen;
      }
    };
    const More more{this, calls_.size()};
    if (!mu_.AwaitWithDeadline(absl::Condition(&more), deadline))
      return std::nullopt;
  }
}

const v1::JobStatus* FindJob(const v1::AgentState& state,
                             absl::string_view job_id) {
  for (const v1::JobStatus& job : state.jobs()) {
    if (job.job_id() == job_id) return &job;
  }
  return nullptr;
}

}  // namespace vmb::testing
