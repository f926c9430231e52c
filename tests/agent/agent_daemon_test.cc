// SPDX-License-Identifier: Apache-2.0
// The agent daemon against a scripted coordinator (FakeCoordinatorConnection)
// running real backup jobs on xapi-sim: full-state reports, idempotent
// starts, job slots, commit grants, fences, cancellation, forgetting, the
// coordinator going away and coming back, and a restart after a crash.
#include "agent/agent_daemon.h"

#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

#include "agent/job_store.h"
#include "common/backup/attempt_file.h"
#include "common/backup/backup_layout.h"
#include "common/base/logging.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/fakes/fake_coordinator_connection.h"
#include "tests/testing/capturing_log_sink.h"
#include "tests/testing/faulty_filesystem.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::vmb::testing::FakeCoordinatorConnection;
using ::vmb::testing::FindJob;
using ::vmb::testing::SimProcess;

constexpr char kAgentId[] = "agent-1";
constexpr uint64_t kToken = 7;

bool IsTerminal(v1::JobPhase phase) {
  return phase == v1::JOB_PHASE_SUCCEEDED || phase == v1::JOB_PHASE_FAILED ||
         phase == v1::JOB_PHASE_CANCELLED;
}

class AgentDaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<SimProcess>> sim = SimProcess::Start();
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = sim->release();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(sim_, nullptr);
    ASSERT_OK(sim_->ClearFaults());
    client_ = sim_->NewClient();
    ASSERT_OK(client_->Login());
    ASSERT_OK_AND_ASSIGN(std::string session, client_->SessionRef());
    coordinator_.SetSession(session);
    ASSERT_OK_AND_ASSIGN(hosts_, client_->GetAllHosts());
    share_ = testing::MakeTempDir("share");
    state_dir_ = testing::MakeTempDir("state");
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    snapshots_before_ = state.snapshots();
  }

  void TearDown() override {
    if (daemon_ != nullptr) daemon_->Stop();
    daemon_.reset();
    if (sim_ != nullptr) {
      EXPECT_OK(sim_->ClearFaults());
    }
  }

  AgentDaemon::Options DaemonOptions(int max_jobs) {
    AgentDaemon::Options options;
    options.connection = &coordinator_;
    options.fs = &fs_;
    options.clock = SystemClock::Get();
    options.identity.set_agent_id(kAgentId);
    options.identity.set_host_uuid(Host("xcp-host1").uuid);
    options.identity.set_host_name("xcp-host1");
    options.identity.set_version("vmbackup test");
    options.max_jobs = max_jobs;
    options.state_dir = state_dir_;
    options.commit_wait = absl::Seconds(120);
    options.min_sync_interval = absl::Milliseconds(10);
    options.initial_backoff = absl::Milliseconds(50);
    options.max_backoff = absl::Milliseconds(400);
    options.final_sync_timeout = absl::Seconds(5);
    return options;
  }

  void StartDaemon(int max_jobs = 2) { StartDaemon(DaemonOptions(max_jobs)); }
  void StartDaemon(AgentDaemon::Options options) {
    daemon_ = std::make_unique<AgentDaemon>(std::move(options));
    ASSERT_OK(daemon_->Start());
  }

  HostRecord Host(const std::string& name) const {
    for (const auto& [ref, host] : hosts_) {
      if (host.name_label == name) return host;
    }
    ADD_FAILURE() << "no host " << name;
    return HostRecord();
  }

  // A job for `vm_name`, exported from `host_name` (the VM's own host).
  v1::JobSpec Spec(const std::string& vm_name, const std::string& host_name,
                   uint64_t token = kToken) {
    v1::JobSpec spec;
    absl::StatusOr<std::string> ref = testing::VmRefByName(*client_, vm_name);
    EXPECT_TRUE(ref.ok()) << ref.status();
    absl::StatusOr<VmRecord> vm = client_->GetVm(ref.value_or(""));
    EXPECT_TRUE(vm.ok()) << vm.status();
    spec.set_job_id(absl::StrCat("run1.", vm_name));
    spec.set_run_id("run1");
    spec.set_attempt(1);
    spec.set_fencing_token(token);
    spec.set_vm_uuid(vm.ok() ? vm->uuid : "");
    spec.set_vm_name(vm_name);
    spec.set_kind(v1::EXPORT_KIND_VM);
    spec.set_backup_dir(share_);
    spec.set_vm_folder(SanitizeVmName(vm_name));
    spec.set_max_backups(4);
    spec.set_stall_timeout_ms(120000);
    spec.set_share_id("share1");
    const HostRecord host = Host(host_name);
    spec.set_host_uuid(host.uuid);
    spec.set_host_name(host.name_label);
    spec.set_master_url(sim_->master_url());
    spec.set_data_url(sim_->host_url(host_name));
    for (const auto& [r, h] : hosts_) {
      v1::PoolHost* pool_host = spec.add_pool_hosts();
      pool_host->set_uuid(h.uuid);
      pool_host->set_address(h.address);
      pool_host->set_hostname(h.hostname);
      pool_host->set_name_label(h.name_label);
    }
    return spec;
  }

  static v1::DesiredState Start(const std::vector<v1::JobSpec>& specs) {
    v1::DesiredState desired;
    for (const v1::JobSpec& spec : specs) *desired.add_start() = spec;
    return desired;
  }
  static v1::DesiredState Grant(const std::string& job_id, uint64_t token) {
    v1::DesiredState desired;
    v1::CommitGrant* grant = desired.add_commit_grants();
    grant->set_job_id(job_id);
    grant->set_fencing_token(token);
    return desired;
  }
  static v1::DesiredState Fence(const std::string& job_id, uint64_t token,
                                const std::string& reason) {
    v1::DesiredState desired;
    v1::Fence* fence = desired.add_fences();
    fence->set_job_id(job_id);
    fence->set_fencing_token(token);
    fence->set_reason(reason);
    return desired;
  }
  static v1::DesiredState Cancel(const std::string& job_id) {
    v1::DesiredState desired;
    desired.add_cancel_job_ids(job_id);
    return desired;
  }
  static v1::DesiredState Forget(const std::string& job_id) {
    v1::DesiredState desired;
    desired.add_forget_job_ids(job_id);
    return desired;
  }

  // The first state from call `from` on in which job `job_id` satisfies
  // `wanted`.
  v1::JobStatus WaitForJob(
      const std::string& job_id,
      const std::function<bool(const v1::JobStatus&)>& wanted,
      size_t from = 0) {
    std::optional<v1::AgentState> state = coordinator_.WaitFor(
        [&](const v1::AgentState& s) {
          const v1::JobStatus* job = FindJob(s, job_id);
          return job != nullptr && wanted(*job);
        },
        from);
    if (!state.has_value()) {
      const std::vector<FakeCoordinatorConnection::Call> calls =
          coordinator_.calls();
      ADD_FAILURE() << "job " << job_id
                    << " never reported the state wanted; last report: "
                    << (calls.empty() ? "none"
                                      : calls.back().state.DebugString());
      return v1::JobStatus();
    }
    return *FindJob(*state, job_id);
  }
  v1::JobStatus WaitForPhase(const std::string& job_id, v1::JobPhase phase,
                             size_t from = 0) {
    return WaitForJob(
        job_id, [phase](const v1::JobStatus& j) { return j.phase() == phase; },
        from);
  }

  // Sends `desired` as the next answer and waits until the daemon has acted
  // on it and reported again (two calls after the answer went out).
  void SendAndSettle(v1::DesiredState desired) {
    coordinator_.Push(std::move(desired));
    std::optional<size_t> answered = coordinator_.WaitForScriptDone();
    ASSERT_TRUE(answered.has_value());
    ASSERT_TRUE(
        coordinator_
            .WaitFor([](const v1::AgentState&) { return true; }, *answered + 1)
            .has_value());
  }

  // The job as the last call reported it (phase UNSPECIFIED when absent).
  v1::JobStatus LastReported(const std::string& job_id) {
    const std::vector<FakeCoordinatorConnection::Call> calls =
        coordinator_.calls();
    const v1::JobStatus* job =
        calls.empty() ? nullptr : FindJob(calls.back().state, job_id);
    if (job == nullptr) {
      ADD_FAILURE() << "job " << job_id << " is not in the last report";
      return v1::JobStatus();
    }
    return *job;
  }

  std::vector<BackupEntry> Backups(const std::string& vm_name) {
    absl::StatusOr<std::vector<BackupEntry>> backups =
        ListBackups(fs_, JoinPath(share_, SanitizeVmName(vm_name)));
    EXPECT_TRUE(backups.ok()) << backups.status();
    return backups.value_or(std::vector<BackupEntry>{});
  }

  void ExpectNoSnapshotLeft() {
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    EXPECT_EQ(state.snapshots(), snapshots_before_);
    EXPECT_EQ(state.pending_tasks(), 0u);
  }

  std::string StatusFile(const std::string& job_id) const {
    return JoinPath(state_dir_, "jobs",
                    absl::StrCat(JobStore::FileStem(job_id), ".status"));
  }

  static SimProcess* sim_;
  PosixFilesystem fs_;
  FakeCoordinatorConnection coordinator_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  RecordMap<HostRecord> hosts_;
  std::string share_;
  std::string state_dir_;
  uint32_t snapshots_before_ = 0;
  // Last: stopped and destroyed before what it uses.
  std::unique_ptr<AgentDaemon> daemon_;
};

SimProcess* AgentDaemonTest::sim_ = nullptr;

TEST_F(AgentDaemonTest, ReportsItsIdentityAndTheWholeStateOfEveryJob) {
  StartDaemon(3);
  std::optional<v1::AgentState> first =
      coordinator_.WaitFor([](const v1::AgentState&) { return true; });
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->identity().agent_id(), kAgentId);
  EXPECT_EQ(first->identity().host_uuid(), Host("xcp-host1").uuid);
  EXPECT_EQ(first->identity().host_name(), "xcp-host1");
  EXPECT_EQ(first->identity().version(), "vmbackup test");
  EXPECT_EQ(first->identity().instance_id(), daemon_->instance_id());
  EXPECT_THAT(daemon_->instance_id(), SizeIs(32));
  EXPECT_EQ(first->max_concurrent_jobs(), 3u);
  EXPECT_THAT(first->jobs(), IsEmpty());
  EXPECT_EQ(first->coordinator_instance_id(), "");
  // The coordinator instance it heard from is reported back.
  ASSERT_TRUE(coordinator_
                  .WaitFor([](const v1::AgentState& s) {
                    return s.coordinator_instance_id() == "fake-coordinator";
                  })
                  .has_value());

  // A job granted at once runs to its commit.
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  v1::DesiredState desired = Start({spec});
  desired.MergeFrom(Grant(spec.job_id(), kToken));
  coordinator_.Push(desired);
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  ASSERT_EQ(done.phase(), v1::JOB_PHASE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.attempt(), 1u);
  EXPECT_EQ(done.fencing_token(), kToken);
  EXPECT_EQ(done.agent_id(), kAgentId);
  EXPECT_EQ(done.host_uuid(), Host("xcp-host1").uuid);
  EXPECT_GT(done.bytes_done(), 0u);
  EXPECT_EQ(done.bytes_done(), done.bytes_total());
  EXPECT_FALSE(done.backup_folder().empty());
  ASSERT_THAT(Backups("DEV-RH7"), SizeIs(1));
  EXPECT_TRUE(Backups("DEV-RH7")[0].committed);
  ExpectNoSnapshotLeft();

  // Full snapshots: once accepted, every report holds the job, until the
  // coordinator forgets it; the terminal state is reported again and again.
  const size_t settled = coordinator_.call_count();
  ASSERT_TRUE(
      coordinator_
          .WaitFor([](const v1::AgentState&) { return true; }, settled + 2)
          .has_value());
  bool seen = false;
  for (const FakeCoordinatorConnection::Call& call : coordinator_.calls()) {
    const v1::JobStatus* job = FindJob(call.state, spec.job_id());
    if (job == nullptr) {
      EXPECT_FALSE(seen) << "a report without the job after it was accepted";
      continue;
    }
    seen = true;
    EXPECT_EQ(call.state.jobs_size(), 1);
  }
  v1::JobStatus stored;
  ASSERT_OK_AND_ASSIGN(std::string text,
                       testing::ReadFileToString(StatusFile(spec.job_id())));
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &stored));
  EXPECT_EQ(stored.phase(), v1::JOB_PHASE_SUCCEEDED);

  // Forgotten: out of the reports and off the disk.
  SendAndSettle(Forget(spec.job_id()));
  const size_t after = coordinator_.call_count();
  ASSERT_TRUE(
      coordinator_
          .WaitFor([](const v1::AgentState& s) { return s.jobs_size() == 0; },
                   after)
          .has_value());
  EXPECT_TRUE(absl::IsNotFound(fs_.Stat(StatusFile(spec.job_id())).status()));
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> left,
                       fs_.ListDir(JoinPath(state_dir_, "jobs")));
  EXPECT_THAT(left, IsEmpty());
}

TEST_F(AgentDaemonTest, CommitsOnlyWithAGrantForTheJobsFencingToken) {
  StartDaemon();
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  coordinator_.Push(Start({spec}));
  const v1::JobStatus waiting =
      WaitForPhase(spec.job_id(), v1::JOB_PHASE_AWAITING_COMMIT);
  EXPECT_FALSE(waiting.backup_folder().empty());
  ASSERT_THAT(Backups("DEV-RH7"), SizeIs(1));
  EXPECT_FALSE(Backups("DEV-RH7")[0].committed);

  // A grant for another attempt's token is not this job's.
  SendAndSettle(Grant(spec.job_id(), kToken - 1));
  std::vector<FakeCoordinatorConnection::Call> calls = coordinator_.calls();
  const v1::JobStatus* still = FindJob(calls.back().state, spec.job_id());
  ASSERT_NE(still, nullptr);
  EXPECT_EQ(still->phase(), v1::JOB_PHASE_AWAITING_COMMIT);
  EXPECT_FALSE(Backups("DEV-RH7")[0].committed);

  coordinator_.Push(Grant(spec.job_id(), kToken));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  ASSERT_EQ(done.phase(), v1::JOB_PHASE_SUCCEEDED) << done.DebugString();
  ASSERT_THAT(Backups("DEV-RH7"), SizeIs(1));
  EXPECT_TRUE(Backups("DEV-RH7")[0].committed);
}

TEST_F(AgentDaemonTest, StartsAJobOnlyOncePerJobId) {
  StartDaemon();
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  v1::DesiredState twice = Start({spec, spec});
  twice.MergeFrom(Grant(spec.job_id(), kToken));
  coordinator_.Push(twice);
  coordinator_.Push(Start({spec}));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  ASSERT_EQ(done.phase(), v1::JOB_PHASE_SUCCEEDED) << done.DebugString();

  // Sent again once it has finished: still the same job, not a new run.
  v1::DesiredState again = Start({spec});
  again.MergeFrom(Grant(spec.job_id(), kToken));
  SendAndSettle(again);
  SendAndSettle(v1::DesiredState());
  for (const FakeCoordinatorConnection::Call& call : coordinator_.calls())
    EXPECT_LE(call.state.jobs_size(), 1);
  const v1::JobStatus last = LastReported(spec.job_id());
  EXPECT_EQ(last.phase(), v1::JOB_PHASE_SUCCEEDED);
  EXPECT_EQ(last.started_unix_ms(), done.started_unix_ms());
  EXPECT_THAT(Backups("DEV-RH7"), SizeIs(1));
}

TEST_F(AgentDaemonTest, RunsAtMostMaxJobsAtOnce) {
  StartDaemon(2);
  const std::vector<v1::JobSpec> specs = {Spec("DEV-RH7", "xcp-host1"),
                                          Spec("DEV-RH6", "xcp-host3"),
                                          Spec("DEV-mySql", "xcp-host2")};
  coordinator_.Push(Start(specs));
  // The first two wait for their grants, holding both slots.
  WaitForPhase(specs[0].job_id(), v1::JOB_PHASE_AWAITING_COMMIT);
  WaitForPhase(specs[1].job_id(), v1::JOB_PHASE_AWAITING_COMMIT);
  SendAndSettle(v1::DesiredState());
  EXPECT_EQ(LastReported(specs[2].job_id()).phase(), v1::JOB_PHASE_QUEUED);

  // One commits; its slot goes to the third.
  coordinator_.Push(Grant(specs[0].job_id(), kToken));
  WaitForPhase(specs[0].job_id(), v1::JOB_PHASE_SUCCEEDED);
  WaitForPhase(specs[2].job_id(), v1::JOB_PHASE_AWAITING_COMMIT);
  v1::DesiredState rest = Grant(specs[1].job_id(), kToken);
  rest.MergeFrom(Grant(specs[2].job_id(), kToken));
  coordinator_.Push(rest);
  WaitForPhase(specs[1].job_id(), v1::JOB_PHASE_SUCCEEDED);
  WaitForPhase(specs[2].job_id(), v1::JOB_PHASE_SUCCEEDED);

  for (const FakeCoordinatorConnection::Call& call : coordinator_.calls()) {
    int running = 0;
    for (const v1::JobStatus& job : call.state.jobs()) {
      if (job.phase() != v1::JOB_PHASE_QUEUED && !IsTerminal(job.phase()))
        ++running;
    }
    EXPECT_LE(running, 2) << call.state.DebugString();
  }
  ExpectNoSnapshotLeft();
}

TEST_F(AgentDaemonTest, AFencedJobNeitherCommitsNorKeepsItsFolder) {
  StartDaemon();
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  coordinator_.Push(Start({spec}));
  WaitForPhase(spec.job_id(), v1::JOB_PHASE_AWAITING_COMMIT);

  // A fence names the attempt it ends: another token's is not this one's.
  SendAndSettle(Fence(spec.job_id(), kToken + 1, "not this one"));
  EXPECT_EQ(LastReported(spec.job_id()).phase(), v1::JOB_PHASE_AWAITING_COMMIT);

  // A grant after the fence changes nothing.
  v1::DesiredState fence =
      Fence(spec.job_id(), kToken, "a newer attempt runs on xcp-host2");
  fence.MergeFrom(Grant(spec.job_id(), kToken));
  coordinator_.Push(fence);
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_FAILED) << done.DebugString();
  EXPECT_EQ(done.status_token(), "FENCED");
  EXPECT_EQ(done.error_step(), "commit");
  EXPECT_THAT(done.error_message(),
              HasSubstr("a newer attempt runs on xcp-host2"));
  EXPECT_THAT(Backups("DEV-RH7"), IsEmpty());
  ExpectNoSnapshotLeft();
}

TEST_F(AgentDaemonTest, AFenceStopsARunningExport) {
  ASSERT_OK(sim_->AddFault(R"({"kind":"STALL","call":"/export","vm":"DEV-RH7",)"
                           R"("after_bytes":"1048576","delay_ms":0})"));
  StartDaemon();
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  coordinator_.Push(Start({spec}));
  WaitForPhase(spec.job_id(), v1::JOB_PHASE_EXPORT);
  coordinator_.Push(Fence(spec.job_id(), kToken, "the run was cancelled"));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_FAILED) << done.DebugString();
  EXPECT_EQ(done.status_token(), "FENCED");
  EXPECT_THAT(done.error_message(), HasSubstr("the run was cancelled"));
  EXPECT_THAT(Backups("DEV-RH7"), IsEmpty());
  ExpectNoSnapshotLeft();
}

TEST_F(AgentDaemonTest, CancelStopsARunningJobAndAQueuedOne) {
  ASSERT_OK(sim_->AddFault(R"({"kind":"STALL","call":"/export","vm":"DEV-RH7",)"
                           R"("after_bytes":"1048576","delay_ms":0})"));
  StartDaemon(1);
  const v1::JobSpec running = Spec("DEV-RH7", "xcp-host1");
  const v1::JobSpec queued = Spec("DEV-RH6", "xcp-host3");
  coordinator_.Push(Start({running, queued}));
  WaitForPhase(running.job_id(), v1::JOB_PHASE_EXPORT);
  EXPECT_EQ(LastReported(queued.job_id()).phase(), v1::JOB_PHASE_QUEUED);

  coordinator_.Push(Cancel(queued.job_id()));
  const v1::JobStatus never =
      WaitForPhase(queued.job_id(), v1::JOB_PHASE_CANCELLED);
  EXPECT_EQ(never.started_unix_ms(), 0u);
  EXPECT_EQ(never.status_token(), "CANCELLED");

  coordinator_.Push(Cancel(running.job_id()));
  const v1::JobStatus stopped =
      WaitForPhase(running.job_id(), v1::JOB_PHASE_CANCELLED);
  EXPECT_EQ(stopped.status_token(), "CANCELLED");
  EXPECT_THAT(Backups("DEV-RH7"), IsEmpty());
  EXPECT_THAT(Backups("DEV-RH6"), IsEmpty());
  ExpectNoSnapshotLeft();
}

TEST_F(AgentDaemonTest, FailsAJobWhoseGrantNeverComes) {
  AgentDaemon::Options options = DaemonOptions(2);
  options.commit_wait = absl::Milliseconds(300);
  StartDaemon(std::move(options));
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  coordinator_.Push(Start({spec}));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(done.error_step(), "commit");
  EXPECT_THAT(done.error_message(),
              HasSubstr("no commit grant from the coordinator within"));
  EXPECT_THAT(Backups("DEV-RH7"), IsEmpty());
}

TEST_F(AgentDaemonTest, FailsAJobWhoseHostIsNotInItsPool) {
  StartDaemon();
  v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  spec.set_host_uuid("00000000-0000-0000-0000-000000000000");
  coordinator_.Push(Start({spec}));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(done.status_token(), "NO-HOST");
  EXPECT_EQ(done.agent_id(), kAgentId);
}

TEST_F(AgentDaemonTest, TrustsXapiAsTheJobsTlsSettingsSay) {
  SimProcess::Options tls_options;
  tls_options.per_host_tls = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SimProcess> tls_sim,
                       SimProcess::Start(tls_options));
  std::unique_ptr<XmlRpcXenApiClient> tls_client = tls_sim->NewClient();
  ASSERT_OK(tls_client->Login());
  ASSERT_OK_AND_ASSIGN(std::string session, tls_client->SessionRef());
  coordinator_.SetSession(session);
  StartDaemon();

  // The same demo pool (same seed): the same uuids, other URLs.
  v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  ASSERT_OK(tls_client->GetVmByUuid(spec.vm_uuid()).status());
  spec.set_master_url(tls_sim->master_url());
  spec.set_data_url(tls_sim->host_url("xcp-host1"));
  ASSERT_TRUE(absl::StartsWith(spec.master_url(), "https://"));
  // A pin that is not the host's certificate: refused.
  v1::JobSpec wrong = spec;
  wrong.set_job_id("run1.wrong-pin");
  for (const auto& [ref, host] : hosts_) {
    v1::HostPin* pin = wrong.mutable_tls()->add_pins();
    pin->set_key(host.uuid);
    pin->set_sha256(std::string(64, 'a'));
  }
  coordinator_.Push(Start({wrong}));
  const v1::JobStatus refused =
      WaitForJob(wrong.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(refused.phase(), v1::JOB_PHASE_FAILED) << refused.DebugString();
  EXPECT_THAT(refused.error_message(), HasSubstr("certificate"));

  // Each host pinned by its uuid to the certificate it presents.
  for (const auto& [ref, host] : hosts_) {
    auto cert = tls_sim->host_certs().find(host.name_label);
    ASSERT_NE(cert, tls_sim->host_certs().end()) << host.name_label;
    std::string sha256;
    ASSERT_OK(NormaliseSha256Fingerprint(cert->second.sha256, &sha256));
    v1::HostPin* pin = spec.mutable_tls()->add_pins();
    pin->set_key(host.uuid);
    pin->set_sha256(sha256);
  }
  // CA certificates go into a private file of the agent's.
  spec.mutable_tls()->set_ca_pem(
      tls_sim->host_certs().begin()->second.cert_path.empty()
          ? ""
          : testing::ReadFileToString(
                tls_sim->host_certs().begin()->second.cert_path)
                .value_or(""));
  ASSERT_FALSE(spec.tls().ca_pem().empty());
  v1::DesiredState desired = Start({spec});
  desired.MergeFrom(Grant(spec.job_id(), kToken));
  coordinator_.Push(desired);
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_SUCCEEDED) << done.DebugString();
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> ca,
                       fs_.ListDir(JoinPath(state_dir_, "ca")));
  ASSERT_THAT(ca, SizeIs(1));
  struct stat st;
  ASSERT_EQ(stat(JoinPath(state_dir_, "ca", ca[0].name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  daemon_.reset();  // before the simulator it talks to
}

TEST_F(AgentDaemonTest, RefusesAJobWithAMalformedPinOrTimeZone) {
  StartDaemon();
  v1::JobSpec bad_pin = Spec("DEV-RH7", "xcp-host1");
  bad_pin.set_job_id("run1.bad-pin");
  v1::HostPin* pin = bad_pin.mutable_tls()->add_pins();
  pin->set_key(bad_pin.host_uuid());
  pin->set_sha256("not a fingerprint");
  v1::JobSpec bad_zone = Spec("DEV-RH7", "xcp-host1");
  bad_zone.set_job_id("run1.bad-zone");
  bad_zone.set_time_zone("Mars/Olympus_Mons");
  coordinator_.Push(Start({bad_pin, bad_zone}));
  for (const v1::JobSpec* spec : {&bad_pin, &bad_zone}) {
    const v1::JobStatus done = WaitForJob(
        spec->job_id(),
        [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
    EXPECT_EQ(done.phase(), v1::JOB_PHASE_FAILED);
    EXPECT_EQ(done.status_token(), "BAD-JOB") << done.DebugString();
    EXPECT_EQ(done.error_step(), "check job");
  }
  EXPECT_THAT(Backups("DEV-RH7"), IsEmpty());
}

TEST_F(AgentDaemonTest, RefusesAJobItCannotRecord) {
  testing::FaultyFilesystem::Faults faults;
  faults.suffix = ".tmp";  // the job store's files before their rename
  faults.fail_sync = true;
  testing::FaultyFilesystem faulty(faults);
  AgentDaemon::Options options = DaemonOptions(2);
  options.fs = &faulty;
  StartDaemon(std::move(options));
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  coordinator_.Push(Start({spec}));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(done.status_token(), "AGENT-STATE-FAIL");
  EXPECT_EQ(done.started_unix_ms(), 0u);  // it never ran
  EXPECT_THAT(Backups("DEV-RH7"), IsEmpty());
  daemon_.reset();  // before `faulty`
}

TEST_F(AgentDaemonTest, KeepsJobsAndTheirResultsWhileTheCoordinatorIsAway) {
  testing::CapturingLogSink sink;
  ScopedLogSinkForTesting capture(&sink);
  StartDaemon();
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  v1::DesiredState desired = Start({spec});
  desired.MergeFrom(Grant(spec.job_id(), kToken));
  coordinator_.Push(desired);
  WaitForJob(spec.job_id(), [](const v1::JobStatus& j) {
    return j.phase() != v1::JOB_PHASE_QUEUED;
  });

  // The coordinator goes away; the job goes on and ends, and the agent keeps
  // trying, further and further apart.
  coordinator_.SetFailure(absl::UnavailableError("connection refused"));
  const size_t outage = coordinator_.call_count();
  WaitForPhase(spec.job_id(), v1::JOB_PHASE_SUCCEEDED, outage);
  ASSERT_TRUE(
      coordinator_
          .WaitFor([](const v1::AgentState&) { return true; }, outage + 6)
          .has_value());
  const std::vector<FakeCoordinatorConnection::Call> calls =
      coordinator_.calls();
  // Each pause is at least half the backoff (50 ms doubling to 400 ms).
  absl::Duration backoff = absl::Milliseconds(50);
  for (size_t i = outage + 1; i < outage + 6; ++i) {
    ASSERT_FALSE(calls[i - 1].result.ok());
    EXPECT_GE(calls[i].time - calls[i - 1].time,
              backoff / 2 - absl::Milliseconds(1))
        << "call " << i;
    backoff = std::min(backoff * 2, absl::Milliseconds(400));
  }

  // Back: the next call that gets through carries the job's result.
  coordinator_.SetFailure(absl::OkStatus());
  const size_t back = coordinator_.call_count();
  const v1::JobStatus reported =
      WaitForPhase(spec.job_id(), v1::JOB_PHASE_SUCCEEDED, back);
  EXPECT_EQ(reported.status_token(), "");
  ASSERT_TRUE(
      coordinator_.WaitFor([](const v1::AgentState&) { return true; }, back + 1)
          .has_value());
  EXPECT_TRUE(coordinator_.calls()[back].result.ok());
  // Logged once when lost and once when back, not for every attempt.
  EXPECT_EQ(sink.Count("cannot reach the coordinator"), 1);
  EXPECT_EQ(sink.Count("connected to the coordinator"), 2);
  daemon_.reset();  // its threads log into `sink`
}

TEST_F(AgentDaemonTest, NewsInterruptsAHeldCall) {
  // The coordinator holds calls with nothing new for it; a job reaching a
  // new phase (awaiting its grant, ended) is reported at once regardless.
  coordinator_.SetHold(absl::Minutes(10));
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  v1::DesiredState desired = Start({spec});
  desired.MergeFrom(Grant(spec.job_id(), kToken));
  coordinator_.Push(desired);  // the first call's answer
  StartDaemon();
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_SUCCEEDED) << done.error_message();
  EXPECT_GE(coordinator_.interrupts(), 2);
  // No error was logged for an interrupted call: it is not a failure.
  for (const FakeCoordinatorConnection::Call& c : coordinator_.calls())
    EXPECT_TRUE(c.result.ok() || absl::IsCancelled(c.result)) << c.result;
  coordinator_.SetHold(absl::ZeroDuration());
  daemon_.reset();
}

TEST_F(AgentDaemonTest, TakenJobsAndAwaitedGrantsAreNotCoalesced) {
  // Progress is coalesced into one call per min_sync_interval (here longer
  // than the test's deadlines), but a job taken, a job awaiting its grant
  // and the calls while it waits go at once: the coordinator answers each
  // of them at once, and the grant comes with a later call.
  AgentDaemon::Options options = DaemonOptions(1);
  options.min_sync_interval = absl::Minutes(10);
  options.awaiting_sync_interval = absl::Milliseconds(10);
  const v1::JobSpec spec = Spec("DEV-RH7", "xcp-host1");
  coordinator_.Push(Start({spec}));  // the first call's answer
  StartDaemon(std::move(options));
  const size_t answered = coordinator_.WaitForScriptDone().value_or(0);
  // Reported as taken by the very next call.
  EXPECT_NE(FindJob(coordinator_
                        .WaitFor([](const v1::AgentState&) { return true; },
                                 answered + 1)
                        .value_or(v1::AgentState()),
                    spec.job_id()),
            nullptr);
  const v1::JobStatus waiting =
      WaitForPhase(spec.job_id(), v1::JOB_PHASE_AWAITING_COMMIT);
  ASSERT_EQ(waiting.phase(), v1::JOB_PHASE_AWAITING_COMMIT);
  coordinator_.Push(Grant(spec.job_id(), kToken));
  const v1::JobStatus done =
      WaitForJob(spec.job_id(),
                 [](const v1::JobStatus& j) { return IsTerminal(j.phase()); });
  EXPECT_EQ(done.phase(), v1::JOB_PHASE_SUCCEEDED) << done.error_message();
  daemon_.reset();
}

TEST_F(AgentDaemonTest, RetriesAtLeastOncePerHeartbeatIntervalWhileAway) {
  // A restarted coordinator declares an agent lost after three heartbeat
  // intervals: the backoff must not outgrow one, whatever its own cap.
  AgentDaemon::Options options = DaemonOptions(1);
  options.max_backoff = absl::Minutes(1);
  StartDaemon(std::move(options));
  v1::DesiredState desired;
  desired.set_heartbeat_interval_ms(100);
  coordinator_.Push(desired);
  ASSERT_TRUE(coordinator_.WaitForScriptDone().has_value());

  coordinator_.SetFailure(absl::UnavailableError("connection refused"));
  const size_t outage = coordinator_.call_count();
  // Eight failed calls: uncapped, their pauses (at least half of 50 ms
  // doubling) add up to more than 6 s; capped at 100 ms, to under 1 s.
  EXPECT_TRUE(coordinator_
                  .WaitFor([](const v1::AgentState&) { return true; },
                           outage + 8, absl::Seconds(5))
                  .has_value());
  daemon_.reset();
}

TEST_F(AgentDaemonTest, StopCancelsRunningJobsAndReportsThemOnce) {
  ASSERT_OK(sim_->AddFault(R"({"kind":"STALL","call":"/export","vm":"DEV-RH7",)"
                           R"("after_bytes":"1048576","delay_ms":0})"));
  StartDaemon(1);
  const v1::JobSpec running = Spec("DEV-RH7", "xcp-host1");
  const v1::JobSpec queued = Spec("DEV-RH6", "xcp-host3");
  coordinator_.Push(Start({running, queued}));
  WaitForPhase(running.job_id(), v1::JOB_PHASE_EXPORT);
  daemon_->Stop();
  const v1::AgentState last = coordinator_.calls().back().state;
  ASSERT_NE(FindJob(last, running.job_id()), nullptr);
  EXPECT_EQ(FindJob(last, running.job_id())->phase(), v1::JOB_PHASE_CANCELLED);
  ASSERT_NE(FindJob(last, queued.job_id()), nullptr);
  EXPECT_EQ(FindJob(last, queued.job_id())->phase(), v1::JOB_PHASE_CANCELLED);
  ExpectNoSnapshotLeft();

  // The next process reports them as they ended, not as left unfinished.
  daemon_.reset();
  const size_t restart = coordinator_.call_count();
  StartDaemon(1);
  std::optional<v1::AgentState> first =
      coordinator_.WaitFor([](const v1::AgentState&) { return true; }, restart);
  ASSERT_TRUE(first.has_value());
  ASSERT_NE(FindJob(*first, running.job_id()), nullptr);
  EXPECT_EQ(FindJob(*first, running.job_id())->phase(),
            v1::JOB_PHASE_CANCELLED);
  ASSERT_NE(FindJob(*first, queued.job_id()), nullptr);
  EXPECT_EQ(FindJob(*first, queued.job_id())->phase(), v1::JOB_PHASE_CANCELLED);
}

TEST_F(AgentDaemonTest, ARestartCleansUpAfterTheJobsAnEarlierProcessLeft) {
  JobStore store(&fs_, JoinPath(state_dir_, "jobs"));
  ASSERT_OK(store.Init());
  // Three jobs an earlier process left: one mid-export with its own folder,
  // one whose folder a newer attempt has taken over, one finished.
  auto leave = [&](const std::string& id, v1::JobPhase phase,
                   const std::string& folder, uint64_t folder_token) {
    v1::JobSpec spec;
    spec.set_job_id(id);
    spec.set_attempt(1);
    spec.set_fencing_token(kToken);
    spec.set_vm_uuid("vm-" + id);
    v1::JobStatus status;
    status.set_job_id(id);
    status.set_attempt(1);
    status.set_fencing_token(kToken);
    status.set_phase(phase);
    status.set_snapshot_uuid("snapshot-" + id);
    if (!folder.empty()) {
      status.set_backup_folder(folder);
      ASSERT_OK(fs_.CreateDir(Dirname(folder)));
      ASSERT_OK(fs_.CreateDir(folder));
      ASSERT_OK(WriteNewFile(fs_, JoinPath(folder, "vm.xva"), "data"));
      v1::AttemptFile attempt;
      attempt.set_job_id(id);
      attempt.set_attempt(1);
      attempt.set_fencing_token(folder_token);
      ASSERT_OK(WriteAttemptFile(fs_, folder, attempt));
    }
    ASSERT_OK(store.Add(spec, status));
  };
  const std::string own = JoinPath(share_, "a", "backup-2026-01-01-(00:00:00)");
  const std::string taken =
      JoinPath(share_, "b", "backup-2026-01-01-(00:00:00)");
  leave("run0.a", v1::JOB_PHASE_EXPORT, own, kToken);
  leave("run0.b", v1::JOB_PHASE_METADATA, taken, kToken + 1);
  leave("run0.c", v1::JOB_PHASE_SUCCEEDED, "", 0);
  leave("run0.d", v1::JOB_PHASE_QUEUED, "", 0);

  StartDaemon();
  std::optional<v1::AgentState> first =
      coordinator_.WaitFor([](const v1::AgentState&) { return true; });
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->jobs_size(), 4) << first->DebugString();

  const v1::JobStatus* a = FindJob(*first, "run0.a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(a->error_step(), "agent restart");
  EXPECT_EQ(a->status_token(), "AGENT-RESTART");
  EXPECT_THAT(a->error_message(), HasSubstr("phase EXPORT"));
  EXPECT_THAT(a->error_message(), HasSubstr("was removed"));
  EXPECT_EQ(a->snapshot_uuid(), "snapshot-run0.a");  // for the coordinator
  EXPECT_EQ(a->agent_id(), kAgentId);
  EXPECT_NE(a->finished_unix_ms(), 0u);
  EXPECT_TRUE(absl::IsNotFound(fs_.Stat(own).status()));

  const v1::JobStatus* b = FindJob(*first, "run0.b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(b->status_token(), "AGENT-RESTART");
  EXPECT_THAT(b->error_message(), HasSubstr("another attempt"));
  EXPECT_OK(fs_.Stat(JoinPath(taken, "vm.xva")).status());

  const v1::JobStatus* c = FindJob(*first, "run0.c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->phase(), v1::JOB_PHASE_SUCCEEDED);

  const v1::JobStatus* d = FindJob(*first, "run0.d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->status_token(), "AGENT-RESTART");
  EXPECT_THAT(d->error_message(), HasSubstr("no backup folder"));

  // Recorded as failed: a second restart reports the same, and cleans
  // nothing more.
  daemon_.reset();
  const size_t restart = coordinator_.call_count();
  StartDaemon();
  std::optional<v1::AgentState> second =
      coordinator_.WaitFor([](const v1::AgentState&) { return true; }, restart);
  ASSERT_TRUE(second.has_value());
  ASSERT_NE(FindJob(*second, "run0.a"), nullptr);
  EXPECT_EQ(FindJob(*second, "run0.a")->error_message(), a->error_message());
  EXPECT_OK(fs_.Stat(JoinPath(taken, "vm.xva")).status());
}

}  // namespace
}  // namespace vmb::agent
