// SPDX-License-Identifier: Apache-2.0
// AgentHub with agents played by the test: calls of Synchronize as an agent
// makes them, RunJob on a thread as a run makes it, time on a fake clock.
#include "coordinator/agent_hub.h"

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/fakes/fake_clock.h"

namespace vmb::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kWait = absl::Seconds(60);

class AgentHubTest : public ::testing::Test {
 protected:
  AgentHubTest() {
    AgentHub::Options o;
    o.clock = &clock_;
    o.heartbeat_interval = absl::Seconds(5);
    o.busy_hold = absl::Milliseconds(1);
    o.idle_hold = absl::Milliseconds(1);
    o.instance_id = "coord-1";
    o.journal_grant = [this](const v1::JobSpec& spec) {
      absl::MutexLock lock(&mu_);
      grants_journalled_.push_back(spec.job_id());
      return absl::OkStatus();
    };
    hub_ = std::make_unique<AgentHub>(o);
    hub_->Start();
    hub_->SetSession("OpaqueRef:session");
  }
  ~AgentHubTest() override { hub_->Stop(); }

  // Moves the fake clock on a second at a time (every 50 ms of real time)
  // until `result` is ready, for at most kWait.
  void AdvanceUntilReady(const std::future<v1::JobStatus>& result) {
    const absl::Time until = absl::Now() + kWait;
    while (result.wait_for(std::chrono::milliseconds(50)) !=
               std::future_status::ready &&
           absl::Now() < until) {
      clock_.Advance(absl::Seconds(1));
    }
  }

  // One Synchronize call of agent `id` on host `host` holding `jobs`; waits
  // for the answer (a held call is answered within its hold).
  v1::DesiredState Sync(const std::string& id, const std::string& host,
                        const std::vector<v1::JobStatus>& jobs,
                        const std::string& instance = "i1") {
    v1::AgentState state;
    state.mutable_identity()->set_agent_id(id);
    state.mutable_identity()->set_host_uuid(host);
    state.mutable_identity()->set_host_name("name-" + host);
    state.mutable_identity()->set_instance_id(instance);
    state.set_max_concurrent_jobs(2);
    for (const v1::JobStatus& j : jobs) *state.add_jobs() = j;
    v1::DesiredState response;
    absl::Notification done;
    hub_->Synchronize(state, "ipv4:127.0.0.1:1", &response,
                      [&done] { done.Notify(); });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kWait));
    return response;
  }

  static v1::JobSpec Spec(const std::string& job, const std::string& host,
                          uint64_t token = 7) {
    v1::JobSpec spec;
    spec.set_job_id(job);
    spec.set_host_uuid(host);
    spec.set_host_name("name-" + host);
    spec.set_attempt(1);
    spec.set_fencing_token(token);
    return spec;
  }
  static v1::JobStatus Status(const v1::JobSpec& spec, v1::JobPhase phase) {
    v1::JobStatus st;
    st.set_job_id(spec.job_id());
    st.set_attempt(spec.attempt());
    st.set_fencing_token(spec.fencing_token());
    st.set_phase(phase);
    return st;
  }

  // Calls Sync until the answer starts `job` (the run registers it on its
  // own thread).
  v1::DesiredState SyncUntilStarted(const std::string& id,
                                    const std::string& host,
                                    const std::string& job) {
    const absl::Time until = absl::Now() + kWait;
    while (absl::Now() < until) {
      v1::DesiredState d = Sync(id, host, {});
      for (const v1::JobSpec& s : d.start())
        if (s.job_id() == job) return d;
    }
    ADD_FAILURE() << "never started " << job;
    return {};
  }

  testing::FakeClock clock_;
  absl::Mutex mu_;
  std::vector<std::string> grants_journalled_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<AgentHub> hub_;
};

TEST_F(AgentHubTest, StartsOnTheHostsAgentGrantsCommitAndForgets) {
  Sync("a1", "host-1", {});
  Sync("a2", "host-2", {});
  const v1::JobSpec spec = Spec("run/vm1", "host-2");
  std::vector<v1::JobPhase> seen;
  absl::Mutex seen_mu;
  auto result = std::async(std::launch::async, [&] {
    return hub_->RunJob(
        spec,
        [&](const v1::JobStatus& st) {
          absl::MutexLock lock(&seen_mu);
          seen.push_back(st.phase());
        },
        nullptr);
  });
  v1::DesiredState d = SyncUntilStarted("a2", "host-2", "run/vm1");
  EXPECT_EQ(d.session_ref(), "OpaqueRef:session");
  EXPECT_EQ(d.coordinator_instance_id(), "coord-1");
  // Agent 1 never gets it.
  EXPECT_THAT(Sync("a1", "host-1", {}).start(), IsEmpty());

  // Data verified: the grant is journalled, then handed out.
  v1::DesiredState granted;
  const absl::Time until = absl::Now() + kWait;
  while (granted.commit_grants_size() == 0 && absl::Now() < until) {
    granted =
        Sync("a2", "host-2", {Status(spec, v1::JOB_PHASE_AWAITING_COMMIT)});
  }
  ASSERT_EQ(granted.commit_grants_size(), 1);
  EXPECT_EQ(granted.commit_grants(0).fencing_token(), 7u);
  {
    absl::MutexLock lock(&mu_);
    EXPECT_THAT(grants_journalled_, ElementsAre("run/vm1"));
  }
  v1::JobStatus done = Status(spec, v1::JOB_PHASE_SUCCEEDED);
  done.set_backup_bytes(123);
  Sync("a2", "host-2", {done});
  const v1::JobStatus final = result.get();
  EXPECT_EQ(final.phase(), v1::JOB_PHASE_SUCCEEDED);
  EXPECT_EQ(final.backup_bytes(), 123u);
  EXPECT_EQ(final.agent_id(), "a2");
  // Recorded: the agent is told to forget it.
  v1::DesiredState forget = Sync("a2", "host-2", {done});
  EXPECT_THAT(forget.forget_job_ids(), ElementsAre("run/vm1"));
  absl::MutexLock lock(&seen_mu);
  EXPECT_EQ(seen.back(), v1::JOB_PHASE_SUCCEEDED);
}

TEST_F(AgentHubTest, ALostAgentsJobFailsAndItsLateReportIsFenced) {
  Sync("a1", "host-1", {});
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, nullptr); });
  SyncUntilStarted("a1", "host-1", "run/vm1");
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
  // No call for more than 3 heartbeat intervals.
  clock_.Advance(absl::Seconds(16));
  const v1::JobStatus lost = result.get();
  EXPECT_EQ(lost.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(lost.status_token(), "AGENT-LOST");
  EXPECT_THAT(lost.error_message(), HasSubstr("name-host-1"));
  // It comes back: its attempt is fenced, not granted.
  v1::DesiredState d =
      Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_AWAITING_COMMIT)});
  ASSERT_EQ(d.fences_size(), 1);
  EXPECT_EQ(d.fences(0).fencing_token(), 7u);
  EXPECT_THAT(d.commit_grants(), IsEmpty());
  // Once it ended, it is told to forget it.
  d = Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_FAILED)});
  EXPECT_THAT(d.forget_job_ids(), ElementsAre("run/vm1"));
}

TEST_F(AgentHubTest, NoAgentOnTheHostEndsTheJobNoAgent) {
  const v1::JobSpec spec = Spec("run/vm1", "host-9");
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, nullptr); });
  // The run waits up to 3 heartbeat intervals for an agent to come.
  AdvanceUntilReady(result);
  const v1::JobStatus st = result.get();
  EXPECT_EQ(st.status_token(), "NO-AGENT");
}

TEST_F(AgentHubTest, CancelBeforeTheAgentTookItNeverStartsIt) {
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  absl::Notification cancel;
  cancel.Notify();
  Sync("a1", "host-1", {});
  const v1::JobStatus st = hub_->RunJob(spec, nullptr, &cancel);
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_CANCELLED);
  EXPECT_THAT(Sync("a1", "host-1", {}).start(), IsEmpty());
}

TEST_F(AgentHubTest, CancelOfARunningJobIsSentAndItsEndAwaited) {
  Sync("a1", "host-1", {});
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  absl::Notification cancel;
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, &cancel); });
  SyncUntilStarted("a1", "host-1", "run/vm1");
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
  cancel.Notify();
  v1::DesiredState d;
  const absl::Time until = absl::Now() + kWait;
  while (d.cancel_job_ids_size() == 0 && absl::Now() < until)
    d = Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
  EXPECT_THAT(d.cancel_job_ids(), ElementsAre("run/vm1"));
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_CANCELLED)});
  EXPECT_EQ(result.get().phase(), v1::JOB_PHASE_CANCELLED);
}

TEST_F(AgentHubTest, AnAdoptedJobIsNotStartedAgain) {
  // A coordinator restart: the agent already holds the job.
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  hub_->Expect(spec.job_id(), spec.fencing_token());
  v1::DesiredState d =
      Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
  EXPECT_THAT(d.fences(), IsEmpty());  // expected: kept
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, nullptr); });
  for (int i = 0; i < 5; ++i) {
    d = Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
    EXPECT_THAT(d.start(), IsEmpty());
  }
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_FAILED)});
  EXPECT_EQ(result.get().phase(), v1::JOB_PHASE_FAILED);
}

TEST_F(AgentHubTest, AnAdoptedJobThatEndedBeforeItsRunClaimedItEndsAtOnce) {
  // After a restart the agent reports the job's end before the resumed run
  // claims it, and then has nothing new to say: the run takes that report.
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  hub_->Expect(spec.job_id(), spec.fencing_token());
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_SUCCEEDED)});
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, nullptr); });
  // Destroyed first: a failed assertion stops the hub, so the run returns.
  auto stop = absl::MakeCleanup([this] { hub_->Stop(); });
  ASSERT_EQ(result.wait_for(std::chrono::seconds(30)),
            std::future_status::ready);
  EXPECT_EQ(result.get().phase(), v1::JOB_PHASE_SUCCEEDED);
}

TEST_F(AgentHubTest, AnAgentReturningLateAfterARestartKeepsItsJob) {
  // A restarted coordinator adopts a job whose agent is still backing off:
  // the host is not given up 3 heartbeat intervals after the job came, but 3
  // after the return window (3 intervals from the start) ends.
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  hub_->Expect(spec.job_id(), spec.fencing_token());
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, nullptr); });
  clock_.Advance(absl::Seconds(20));
  EXPECT_EQ(result.wait_for(std::chrono::seconds(1)),
            std::future_status::timeout);
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
  Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_SUCCEEDED)});
  EXPECT_EQ(result.get().phase(), v1::JOB_PHASE_SUCCEEDED);
}

TEST_F(AgentHubTest, AHostWhoseAgentNeverReturnsIsGivenUpAfterTheWindow) {
  const v1::JobSpec spec = Spec("run/vm1", "host-1");
  hub_->Expect(spec.job_id(), spec.fencing_token());
  auto result = std::async(
      std::launch::async, [&] { return hub_->RunJob(spec, nullptr, nullptr); });
  // The job came at 0 s or later: given up after 30 s, not after 15 s.
  const absl::Time start = clock_.Now();
  AdvanceUntilReady(result);
  EXPECT_EQ(result.get().status_token(), "NO-AGENT");
  EXPECT_GT(clock_.Now() - start, absl::Seconds(30));
}

TEST_F(AgentHubTest, PlanningWaitsForTheAgentsOfAPreviousProcess) {
  auto waited = std::async(std::launch::async, [&] {
    hub_->WaitForReturningAgents();
    return hub_->LiveHosts();
  });
  Sync("a1", "host-1", {});
  EXPECT_EQ(waited.wait_for(std::chrono::milliseconds(500)),
            std::future_status::timeout);
  clock_.Advance(absl::Seconds(15));
  EXPECT_THAT(waited.get(), ElementsAre("host-1"));
}

TEST_F(AgentHubTest, UnknownRunningJobsAreFencedAfterTheGracePeriod) {
  v1::JobSpec spec = Spec("old/vm1", "host-1", 3);
  clock_.Advance(absl::Seconds(16));  // past the start-up grace
  v1::DesiredState d =
      Sync("a1", "host-1", {Status(spec, v1::JOB_PHASE_EXPORT)});
  ASSERT_EQ(d.fences_size(), 1);
  EXPECT_THAT(d.fences(0).reason(), HasSubstr("no such job"));
}

TEST_F(AgentHubTest, CapacityLimitsStarts) {
  Sync("a1", "host-1", {});  // max_concurrent_jobs 2
  std::vector<v1::JobSpec> specs;
  for (int i = 0; i < 3; ++i)
    specs.push_back(Spec(absl::StrCat("run/vm", i), "host-1"));
  std::vector<std::future<v1::JobStatus>> runs;
  // The runs return once the hub stops, whatever the test asserted.
  auto stop = absl::MakeCleanup([this] { hub_->Stop(); });
  for (const v1::JobSpec& s : specs) {
    runs.push_back(std::async(std::launch::async, [this, s] {
      return hub_->RunJob(s, nullptr, nullptr);
    }));
  }
  // The agent runs what it is offered (and says so); it is never offered
  // more than its 2 at a time, however many calls it makes.
  std::vector<v1::JobStatus> running;
  const absl::Time until = absl::Now() + kWait;
  int calls_with_two = 0;
  while (calls_with_two < 10 && absl::Now() < until) {
    const v1::DesiredState d = Sync("a1", "host-1", running);
    for (const v1::JobSpec& s : d.start())
      running.push_back(Status(s, v1::JOB_PHASE_EXPORT));
    ASSERT_LE(running.size(), 2u);
    if (running.size() == 2) ++calls_with_two;
  }
  EXPECT_EQ(running.size(), 2u);
  std::move(stop).Invoke();
  for (auto& r : runs) EXPECT_EQ(r.get().status_token(), "COORDINATOR-STOP");
}

}  // namespace
}  // namespace vmb::coordinator
