// SPDX-License-Identifier: Apache-2.0
// The vmbackup-agent binary as a service manager runs it: its flag errors
// (exit status 2, naming the flag), the plaintext rule, --help and
// --flagfile; and a whole life: it dials a coordinator (a fake AgentService
// on loopback), runs the job it is handed against xapi-sim, reports it, and
// stops on SIGTERM.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "common/backup/backup_layout.h"
#include "common/base/filesystem.h"
#include "proto/agent.grpc.pb.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::vmb::testing::CommandResult;
using ::vmb::testing::RunCommand;
using ::vmb::testing::SimProcess;

constexpr char kUuid[] = "3f1c9d2e-6c1b-4b1e-9a53-2f5e1a7c0b11";

std::string Agent() { return testing::BinDir() + "/vmbackup-agent"; }

TEST(AgentProcessTest, ABadFlagIsExitStatusTwoNamingTheFlag) {
  const std::string state = testing::MakeTempDir("agent-state");
  struct Case {
    std::vector<std::string> args;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{}, "--coordinator"},
      {{"--coordinator=127.0.0.1:7443", "--state-dir", state, "--host-uuid",
        kUuid},
       "--plaintext"},
      {{"--coordinator=127.0.0.1:7443", "--plaintext", "--host-uuid", kUuid},
       "--state-dir"},
      {{"--coordinator=127.0.0.1:7443", "--plaintext", "--state-dir", state,
        "--host-uuid", kUuid, "--max-jobs=0"},
       "--max-jobs"},
      {{"--coordinator=127.0.0.1:7443", "--plaintext", "--state-dir", state,
        "--host-uuid", kUuid, "--max-jobs=many"},
       "max_jobs"},
      {{"--coordinator=127.0.0.1:7443", "--plaintext", "--state-dir", state,
        "--host-uuid", kUuid, "--commit-wait=soon"},
       "commit_wait"},
      {{"--coordinator=127.0.0.1:7443", "--plaintext", "--state-dir", state,
        "--host-uuid=nope"},
       "--host-uuid"},
      {{"--coordinator=127.0.0.1:7443", "--no-such-flag"}, "no_such_flag"},
      {{"--coordinator=127.0.0.1:7443", "--plaintext", "--state-dir", state,
        "--host-uuid", kUuid, "stray"},
       "unexpected argument: stray"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {Agent()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const CommandResult result = RunCommand(argv);
    EXPECT_EQ(result.exit_code, 2) << c.named << ": " << result.output;
    EXPECT_THAT(result.output, HasSubstr(c.named));
  }
}

TEST(AgentProcessTest, RefusesPlaintextToACoordinatorOffThisMachine) {
  const CommandResult result =
      RunCommand({Agent(), "--coordinator", "192.0.2.10:7443", "--plaintext",
                  "--state-dir", testing::MakeTempDir("agent-state"),
                  "--host-uuid", kUuid});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output,
              AllOf(HasSubstr("--plaintext"), HasSubstr("192.0.2.10:7443"),
                    HasSubstr("loopback")));
}

TEST(AgentProcessTest, WithoutHostUuidReadsTheInventory) {
  if (PosixFilesystem::Get()->Stat("/etc/xensource-inventory").ok())
    GTEST_SKIP() << "this machine is a XenServer host";
  const CommandResult result =
      RunCommand({Agent(), "--coordinator", "127.0.0.1:7443", "--plaintext",
                  "--state-dir", testing::MakeTempDir("agent-state")});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output, AllOf(HasSubstr("--host-uuid"),
                                   HasSubstr("/etc/xensource-inventory")));
}

TEST(AgentProcessTest, HelpDescribesEveryFlag) {
  const CommandResult result = RunCommand({Agent(), "--help"});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (const char* flag :
       {"--coordinator", "--plaintext", "--state_dir", "--host_uuid",
        "--agent_id", "--host_name", "--max_jobs", "--commit_wait"}) {
    EXPECT_THAT(result.output, HasSubstr(flag));
  }
}

TEST(AgentProcessTest, ReadsAFlagfile) {
  const std::string dir = testing::MakeTempDir("agent-flags");
  const std::string flagfile = dir + "/agent.flags";
  std::ofstream(flagfile) << "# the agent of xen1\n"
                          << "--coordinator=192.0.2.10:7443\n"
                          << "--plaintext\n"
                          << "--state-dir=" << dir << "/state\n"
                          << "--host_uuid=" << kUuid << "\n";
  const CommandResult result = RunCommand({Agent(), "--flagfile=" + flagfile});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output, HasSubstr("192.0.2.10:7443"));
  const CommandResult missing =
      RunCommand({Agent(), "--flagfile=" + dir + "/missing.flags"});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("--flagfile"));
}

// The coordinator's side: answers the first call with `first`, every later
// one with `idle`, and records what it was sent.
class FakeCoordinator final : public v1::AgentService::CallbackService {
 public:
  FakeCoordinator(v1::DesiredState first, v1::DesiredState idle)
      : first_(std::move(first)), idle_(std::move(idle)) {}

  grpc::ServerUnaryReactor* Synchronize(grpc::CallbackServerContext* context,
                                        const v1::AgentState* request,
                                        v1::DesiredState* response) override {
    {
      absl::MutexLock lock(&mu_);
      *response = states_.empty() ? first_ : idle_;
      states_.push_back(*request);
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  // The first state reported with job `job_id` in `phase`, waiting up to
  // 60 s.
  std::optional<v1::AgentState> WaitForJob(const std::string& job_id,
                                           v1::JobPhase phase) {
    struct Seen {
      FakeCoordinator* fake;
      const std::string* job_id;
      v1::JobPhase phase;
      bool operator()() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
        for (const v1::AgentState& state : fake->states_) {
          for (const v1::JobStatus& job : state.jobs()) {
            if (job.job_id() == *job_id && job.phase() == phase) return true;
          }
        }
        return false;
      }
    };
    const Seen seen{this, &job_id, phase};
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(60)))
      return std::nullopt;
    for (const v1::AgentState& state : states_) {
      for (const v1::JobStatus& job : state.jobs()) {
        if (job.job_id() == job_id && job.phase() == phase) return state;
      }
    }
    return std::nullopt;
  }

 private:
  absl::Mutex mu_;
  const v1::DesiredState first_;
  const v1::DesiredState idle_;
  std::vector<v1::AgentState> states_ ABSL_GUARDED_BY(mu_);
};

// Waits (up to 60 s) for `pid` to exit; its exit status, or -1.
int WaitForExit(pid_t pid) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

TEST(AgentProcessTest, TwoAgentsCannotShareAStateFolder) {
  const std::string dir = testing::MakeTempDir("agent-two");
  const std::string state_dir = dir + "/state";
  // No coordinator listens there: the agent keeps trying, as it would.
  const std::vector<std::string> argv = {
      Agent(),       "--coordinator=127.0.0.1:1",
      "--plaintext", "--state-dir",
      state_dir,     "--host-uuid",
      kUuid};
  const pid_t first = testing::StartCommand(argv, dir + "/first.log");
  ASSERT_GT(first, 0);
  // Running once it has said so (bounded: 60 s).
  bool running = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(60);
       !running && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(20))) {
    running = testing::ReadFileToString(dir + "/first.log")
                  .value_or("")
                  .find("job slots") != std::string::npos;
  }
  EXPECT_TRUE(running);
  const CommandResult second = RunCommand(argv);
  EXPECT_EQ(second.exit_code, 1) << second.output;
  EXPECT_THAT(second.output,
              HasSubstr("another vmbackup-agent uses --state-dir"));
  kill(first, SIGTERM);
  EXPECT_EQ(WaitForExit(first), 0)
      << testing::ReadFileToString(dir + "/first.log").value_or("");
}

// A pool (xapi-sim), a share, a job for DEV-RH7 on xcp-host1, and a fake
// coordinator on loopback that hands it out.
class AgentLifeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(sim_, SimProcess::Start());
    client_ = sim_->NewClient();
    ASSERT_OK(client_->Login());
    ASSERT_OK_AND_ASSIGN(session_, client_->SessionRef());
    ASSERT_OK_AND_ASSIGN(RecordMap<HostRecord> hosts, client_->GetAllHosts());
    ASSERT_OK_AND_ASSIGN(std::string vm_ref,
                         testing::VmRefByName(*client_, "DEV-RH7"));
    ASSERT_OK_AND_ASSIGN(VmRecord vm, client_->GetVm(vm_ref));
    dir_ = testing::MakeTempDir("agent-life");
    share_ = dir_ + "/share";
    state_dir_ = dir_ + "/state";
    ASSERT_OK(PosixFilesystem::Get()->CreateDir(share_));
    spec_.set_job_id("run1.DEV-RH7");
    spec_.set_run_id("run1");
    spec_.set_attempt(1);
    spec_.set_fencing_token(3);
    spec_.set_vm_uuid(vm.uuid);
    spec_.set_vm_name("DEV-RH7");
    spec_.set_kind(v1::EXPORT_KIND_VM);
    spec_.set_backup_dir(share_);
    spec_.set_vm_folder("DEV-RH7");
    spec_.set_max_backups(2);
    spec_.set_stall_timeout_ms(120000);
    spec_.set_share_id("share1");
    spec_.set_master_url(sim_->master_url());
    spec_.set_data_url(sim_->host_url("xcp-host1"));
    for (const auto& [ref, host] : hosts) {
      if (host.name_label == "xcp-host1") spec_.set_host_uuid(host.uuid);
      v1::PoolHost* pool_host = spec_.add_pool_hosts();
      pool_host->set_uuid(host.uuid);
      pool_host->set_address(host.address);
      pool_host->set_hostname(host.hostname);
      pool_host->set_name_label(host.name_label);
    }
  }
  void TearDown() override {
    if (server_ != nullptr)
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  // The coordinator answers the first call with the job (and its grant,
  // when `grant`), every later one with nothing new.
  void StartCoordinator(bool grant) {
    v1::DesiredState idle;
    idle.set_session_ref(session_);
    idle.set_next_sync_after_ms(100);
    idle.set_coordinator_instance_id("c1");
    v1::DesiredState first = idle;
    *first.add_start() = spec_;
    if (grant) {
      v1::CommitGrant* g = first.add_commit_grants();
      g->set_job_id(spec_.job_id());
      g->set_fencing_token(spec_.fencing_token());
    }
    coordinator_ = std::make_unique<FakeCoordinator>(first, idle);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(coordinator_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  pid_t StartAgent(const std::string& log_name) {
    return testing::StartCommand(
        {Agent(), absl::StrCat("--coordinator=127.0.0.1:", port_),
         "--plaintext", "--state-dir", state_dir_, "--host-uuid",
         spec_.host_uuid(), "--agent-id=xen1", "--max-jobs=1"},
        JoinPath(dir_, log_name));
  }
  std::string Log(const std::string& log_name) {
    return testing::ReadFileToString(JoinPath(dir_, log_name)).value_or("");
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  std::string session_;
  std::string dir_, share_, state_dir_;
  v1::JobSpec spec_;
  std::unique_ptr<FakeCoordinator> coordinator_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(AgentLifeTest, RunsTheCoordinatorsJobAndStopsOnSigterm) {
  StartCoordinator(/*grant=*/true);
  const pid_t pid = StartAgent("agent.log");
  ASSERT_GT(pid, 0);
  std::optional<v1::AgentState> done =
      coordinator_->WaitForJob(spec_.job_id(), v1::JOB_PHASE_SUCCEEDED);
  kill(pid, SIGTERM);
  const int exit_code = WaitForExit(pid);
  const std::string log = Log("agent.log");
  ASSERT_TRUE(done.has_value()) << log;
  EXPECT_EQ(done->identity().agent_id(), "xen1");
  EXPECT_EQ(done->identity().host_uuid(), spec_.host_uuid());
  EXPECT_EQ(done->max_concurrent_jobs(), 1u);
  EXPECT_EQ(done->coordinator_instance_id(), "c1");
  EXPECT_EQ(exit_code, 0) << log;
  // The session is a secret: never in the log.
  EXPECT_THAT(log, ::testing::Not(HasSubstr(session_)));

  absl::StatusOr<std::vector<BackupEntry>> backups =
      ListBackups(*PosixFilesystem::Get(), share_ + "/DEV-RH7");
  ASSERT_OK(backups.status());
  ASSERT_EQ(backups->size(), 1u);
  EXPECT_TRUE((*backups)[0].committed);
  struct stat st;
  ASSERT_EQ(stat(state_dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(AgentLifeTest, AKilledAgentCleansUpAfterItsJobAtTheNextStart) {
  ASSERT_OK(sim_->AddFault(R"({"kind":"STALL","call":"/export","vm":"DEV-RH7",)"
                           R"("after_bytes":"1048576","delay_ms":0})"));
  StartCoordinator(/*grant=*/false);
  const pid_t first = StartAgent("first.log");
  ASSERT_GT(first, 0);
  std::optional<v1::AgentState> exporting =
      coordinator_->WaitForJob(spec_.job_id(), v1::JOB_PHASE_EXPORT);
  kill(first, SIGKILL);
  EXPECT_EQ(WaitForExit(first), 128 + SIGKILL);
  ASSERT_TRUE(exporting.has_value()) << Log("first.log");
  std::string folder;
  for (const v1::JobStatus& job : exporting->jobs())
    folder = job.backup_folder();
  ASSERT_FALSE(folder.empty());
  ASSERT_OK(PosixFilesystem::Get()->Stat(folder).status());  // left behind

  // The next process finds the job unfinished, removes the folder its
  // attempt file proves is the job's, and reports the job failed.
  const pid_t second = StartAgent("second.log");
  ASSERT_GT(second, 0);
  std::optional<v1::AgentState> reported =
      coordinator_->WaitForJob(spec_.job_id(), v1::JOB_PHASE_FAILED);
  kill(second, SIGTERM);
  EXPECT_EQ(WaitForExit(second), 0) << Log("second.log");
  ASSERT_TRUE(reported.has_value()) << Log("second.log");
  EXPECT_NE(reported->identity().instance_id(),
            exporting->identity().instance_id());
  ASSERT_EQ(reported->jobs_size(), 1);
  const v1::JobStatus& job = reported->jobs(0);
  EXPECT_EQ(job.status_token(), "AGENT-RESTART");
  EXPECT_EQ(job.error_step(), "agent restart");
  EXPECT_THAT(job.error_message(),
              AllOf(HasSubstr("phase EXPORT"), HasSubstr("was removed")));
  EXPECT_FALSE(job.snapshot_uuid().empty());  // for the coordinator to destroy
  EXPECT_TRUE(absl::IsNotFound(PosixFilesystem::Get()->Stat(folder).status()));
}

}  // namespace
}  // namespace vmb
