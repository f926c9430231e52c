// SPDX-License-Identifier: Apache-2.0
// The distributed run with real processes on loopback: xapi-sim, one
// vmbackup-agent per simulated host, vmbackup-coordinator, and the vmbackup
// CLI as the client.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include <grpcpp/grpcpp.h>

#include "common/backup/attempt_file.h"
#include "common/backup/backup_layout.h"
#include "common/base/filesystem.h"
#include "common/base/human_format.h"
#include "coordinator/password_file.h"
#include "proto/agent.grpc.pb.h"
#include "proto/coordinator.pb.h"
#include "tests/testing/backup_check.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/test_pki.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::vmb::testing::CommandResult;
using ::vmb::testing::SimProcess;

constexpr absl::Duration kWait = absl::Seconds(90);

class DistributedRunTest : public ::testing::Test {
 protected:
  // The simulator's options (a subclass may change its pool).
  virtual SimProcess::Options SimOptions() { return SimProcess::Options(); }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SimProcess>> sim =
        SimProcess::Start(SimOptions());
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK(client_->Login());
    dir_ = testing::MakeTempDir("dist");
    backups_ = JoinPath(dir_, "backups");
    ASSERT_OK(fs_.CreateDir(backups_));
    ASSERT_OK(fs_.CreateDir(JoinPath(dir_, "log")));
    password_file_ = JoinPath(dir_, "pw");
    ASSERT_OK(coordinator::WritePasswordFile(password_file_, sim_->password()));
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    snapshots_before_ = state.snapshots();
    ASSERT_OK_AND_ASSIGN(hosts_, client_->GetAllHosts());
  }

  void TearDown() override {
    for (auto& [name, pid] : agents_) Stop(pid);
    Stop(coordinator_);
  }

  static void Stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  void StartCoordinator(const std::string& destroy_timeout = "5s") {
    const std::string port_file = JoinPath(dir_, "port");
    (void)fs_.RemoveFile(port_file);
    std::vector<std::string> argv = {
        testing::BinDir() + "/vmbackup-coordinator",
        absl::StrCat("--listen=127.0.0.1:", port_ == 0 ? 0 : port_),
        "--xapi-url=" + sim_->master_url(),
        "--password-file=" + password_file_,
        "--state-dir=" + JoinPath(dir_, "coordinator"),
        "--heartbeat-interval=1s",
        "--snapshot-destroy-timeout=" + destroy_timeout,
        "--port-file=" + port_file,
        Transport("coordinator", 0),
        Transport("coordinator", 1),
        Transport("coordinator", 2)};
    argv.insert(argv.end(), coordinator_flags_.begin(),
                coordinator_flags_.end());
    coordinator_ =
        testing::StartCommand(argv, JoinPath(dir_, "coordinator.log"));
    ASSERT_GT(coordinator_, 0);
    port_ = WaitForPort(port_file);
    ASSERT_GT(port_, 0) << "the coordinator did not start: "
                        << Log("coordinator.log");
  }

  // The port a process wrote to `port_file` (0 when none came in time).
  int WaitForPort(const std::string& port_file) {
    const absl::Time until = absl::Now() + kWait;
    while (absl::Now() < until) {
      absl::StatusOr<std::string> text = fs_.ReadFile(port_file, 64);
      int port = 0;
      if (text.ok() &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port)) {
        return port;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return 0;
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", port_); }

  // The i-th of the three transport flags of a party ("coordinator", "cli",
  // "agent-NAME"): --plaintext (repeated), or with certificates in certs_
  // (made by deploy/gen-certs.sh) --mtls-ca, --mtls-cert and --mtls-key.
  std::string Transport(const std::string& party, int i) const {
    if (certs_.empty()) return "--plaintext";
    switch (i) {
      case 0:
        return "--mtls-ca=" + JoinPath(certs_, "ca.crt");
      case 1:
        return "--mtls-cert=" + JoinPath(certs_, party + ".crt");
      default:
        return "--mtls-key=" + JoinPath(certs_, party + ".key");
    }
  }
  void AddTransport(const std::string& party, std::vector<std::string>* argv) {
    for (int i = 0; i < 3; ++i) argv->push_back(Transport(party, i));
  }

  void StartAgent(const HostRecord& host) {
    std::vector<std::string> argv = {
        testing::BinDir() + "/vmbackup-agent",
        "--coordinator=" + Address(),
        "--host-uuid=" + host.uuid,
        "--host-name=" + host.name_label,
        "--state-dir=" + JoinPath(dir_, "agent-" + host.name_label),
        "--max-jobs=2"};
    AddTransport("agent-" + host.name_label, &argv);
    agents_[host.name_label] = testing::StartCommand(
        argv, JoinPath(dir_, "agent-" + host.name_label + ".log"));
    ASSERT_GT(agents_[host.name_label], 0);
  }

  void StartAllAgents() {
    for (const auto& [ref, host] : hosts_) StartAgent(host);
    WaitForAgents();
  }

  // Until every agent is connected.
  void WaitForAgents() {
    const absl::Time until = absl::Now() + kWait;
    while (absl::Now() < until) {
      CommandResult r = Cli({"agents", "--json"});
      v1::ListAgentsResponse agents;
      if (r.exit_code == 0 &&
          google::protobuf::util::JsonStringToMessage(r.output, &agents).ok()) {
        size_t live = 0;
        for (const v1::AgentInfo& a : agents.agents()) live += a.live();
        if (live == hosts_.size()) return;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    FAIL() << "agents did not connect";
  }

  std::string Log(const std::string& name) {
    return fs_.ReadFile(JoinPath(dir_, name), 1 << 20).value_or("");
  }

  std::string Config(const std::string& lines) {
    const std::string path = JoinPath(dir_, "run.cfg");
    std::ofstream(path) << "backup_dir=" << backups_ << "\n"
                        << "status_log=" << JoinPath(dir_, "log", "status.log")
                        << "\n"
                        << lines;
    return path;
  }

  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::BinDir() + "/vmbackup"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--coordinator=" + Address());
    AddTransport("cli", &argv);
    return testing::RunCommand(argv);
  }

  // `vmbackup status [RUN_ID] --json`; nothing when it fails (no run yet).
  std::optional<v1::RunSummary> TryStatus(const std::string& run_id = "") {
    std::vector<std::string> args = {"status"};
    if (!run_id.empty()) args.push_back(run_id);
    args.push_back("--json");
    CommandResult r = Cli(args);
    v1::RunSummary s;
    if (r.exit_code != 0 ||
        !google::protobuf::util::JsonStringToMessage(r.output, &s).ok()) {
      return std::nullopt;
    }
    return s;
  }

  v1::RunSummary Status(const std::string& run_id = "") {
    std::optional<v1::RunSummary> s = TryStatus(run_id);
    EXPECT_TRUE(s.has_value()) << "vmbackup status failed";
    return s.value_or(v1::RunSummary());
  }

  // `vmbackup run CONFIG` in the background, its output in cli.log.
  pid_t StartRun(const std::string& config) {
    std::vector<std::string> argv = {testing::BinDir() + "/vmbackup", "run",
                                     config, "--coordinator=" + Address()};
    AddTransport("cli", &argv);
    return testing::StartCommand(argv, JoinPath(dir_, "cli.log"));
  }

  // Polls `vmbackup status RUN_ID --json` until `done` holds for it.
  v1::RunSummary WaitForStatus(
      const std::string& run_id,
      const std::function<bool(const v1::RunSummary&)>& done) {
    const absl::Time until = absl::Now() + kWait;
    std::optional<v1::RunSummary> s;
    while (absl::Now() < until) {
      s = TryStatus(run_id);
      if (s.has_value() && !s->run_id().empty() && done(*s)) return *s;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "status never got there; last: "
                  << (s.has_value() ? s->DebugString() : "none")
                  << Log("coordinator.log");
    return s.value_or(v1::RunSummary());
  }

  // The agents as `vmbackup agents --json` lists them.
  std::vector<v1::AgentInfo> Agents() {
    CommandResult r = Cli({"agents", "--json"});
    v1::ListAgentsResponse agents;
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(
        google::protobuf::util::JsonStringToMessage(r.output, &agents).ok())
        << r.output;
    return {agents.agents().begin(), agents.agents().end()};
  }

  // Export GETs the simulator saw at `host`.
  std::vector<sim::RequestLogEntry> Exports(const std::string& host) {
    std::vector<sim::RequestLogEntry> out;
    absl::StatusOr<sim::RequestLog> log = sim_->Requests(host);
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return out;
    for (const sim::RequestLogEntry& e : log->requests()) {
      if (e.method() == "GET" && absl::StartsWith(e.path(), "/export?"))
        out.push_back(e);
    }
    return out;
  }

  // The newest backup of `vm_name` is committed and holds its disks.
  void ExpectGoodBackup(const std::string& vm_name) {
    SCOPED_TRACE(vm_name);
    const std::string folder = JoinPath(backups_, SanitizeVmName(vm_name));
    ASSERT_OK_AND_ASSIGN(std::vector<BackupEntry> b, ListBackups(fs_, folder));
    ASSERT_FALSE(b.empty());
    ASSERT_TRUE(b.back().committed);
    ASSERT_OK_AND_ASSIGN(auto disks, testing::XvaDiskSha256s(JoinPath(
                                         folder, b.back().name,
                                         SanitizeVmName(vm_name) + ".xva")));
    ASSERT_OK_AND_ASSIGN(auto want, sim_->VmDiskSha256s(*client_, vm_name));
    std::multiset<std::string> got_set, want_set;
    for (const auto& [ref, sha] : disks) got_set.insert(sha);
    for (const auto& [dev, sha] : want) want_set.insert(sha);
    EXPECT_EQ(got_set, want_set);
  }

  void ExpectNoSnapshotsLeft() {
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    EXPECT_EQ(state.snapshots(), snapshots_before_);
    EXPECT_EQ(state.pending_tasks(), 0u);
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  RecordMap<HostRecord> hosts_;
  PosixFilesystem fs_;
  std::string dir_, backups_, password_file_;
  uint32_t snapshots_before_ = 0;
  std::string certs_;                           // "": plaintext
  std::vector<std::string> coordinator_flags_;  // more flags
  pid_t coordinator_ = -1;
  int port_ = 0;
  std::map<std::string, pid_t> agents_;
};

TEST_F(DistributedRunTest, EachVmIsExportedByTheAgentOfItsHost) {
  StartCoordinator();
  StartAllAgents();
  const std::string config = Config(
      "pool_db_backup=1\nmax_backups=3\nper_host_concurrency=2\n"
      "vdi-export=PROD-win2012\nvdi-export=DEV-RH6\nvm-export=.*\n");
  const CommandResult r = Cli({"run", config});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("coordinator.log");
  EXPECT_THAT(r.output, HasSubstr("VmBackup ended - Success - S:14 W:0 E:0"));
  ExpectNoSnapshotsLeft();

  const v1::RunSummary run = Status();
  ASSERT_EQ(run.vms_size(), 14);
  EXPECT_EQ(run.state(), v1::RUN_STATE_SUCCEEDED);
  // Every VM: its host, bytes, duration and result; running VMs on the host
  // they run on.
  ASSERT_OK_AND_ASSIGN(RecordMap<VmRecord> vms, client_->GetAllVms());
  std::map<std::string, int> exports_by_host;
  for (const v1::VmOutcome& vm : run.vms()) {
    SCOPED_TRACE(vm.vm_name());
    EXPECT_EQ(vm.status().phase(), v1::JOB_PHASE_SUCCEEDED);
    EXPECT_GT(vm.status().backup_bytes(), 0u);
    EXPECT_GE(vm.status().finished_unix_ms(), vm.status().started_unix_ms());
    EXPECT_FALSE(vm.status().agent_id().empty());
    ASSERT_FALSE(vm.host_name().empty());
    ++exports_by_host[vm.host_name()];
    for (const auto& [ref, rec] : vms) {
      if (rec.uuid != vm.vm_uuid() || rec.power_state != "Running") continue;
      EXPECT_EQ(hosts_[rec.resident_on].name_label, vm.host_name());
    }
  }
  // The simulator saw each export GET at the host that exported the VM, and
  // none elsewhere.
  for (const auto& [ref, host] : hosts_) {
    ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests(host.name_label));
    int exports = 0;
    for (const sim::RequestLogEntry& e : log.requests()) {
      if (e.method() == "GET" &&
          (absl::StartsWith(e.path(), "/export?") ||
           absl::StartsWith(e.path(), "/export_raw_vdi?")))
        ++exports;
    }
    EXPECT_EQ(exports, exports_by_host[host.name_label]) << host.name_label;
  }
  // The data, checked from outside.
  for (const v1::VmOutcome& vm : run.vms()) {
    if (vm.kind() != v1::EXPORT_KIND_VM) continue;
    absl::StatusOr<std::vector<BackupEntry>> b =
        ListBackups(fs_, JoinPath(backups_, SanitizeVmName(vm.vm_name())));
    ASSERT_TRUE(b.ok()) << vm.vm_name();
    ASSERT_EQ(b->size(), 1u);
    EXPECT_TRUE(b->back().committed);
  }
}

// verify_after_run=100%: after the second run the coordinator reads the
// first run's backups back; one damaged in between is an ERROR in `vmbackup
// status` (and the journal), while the run itself stays a success.
TEST_F(DistributedRunTest, OlderBackupsAreReadBackAfterTheRun) {
  StartCoordinator();
  StartAllAgents();
  const std::string config = Config(
      "max_backups=3\nverify_after_run=100%\nvm-export=DEV-RH7\n"
      "vm-export=TEST-debian9\n");
  CommandResult r = Cli({"run", config});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("coordinator.log");
  // Nothing older yet.
  v1::RunSummary first = WaitForStatus(
      "", [](const v1::RunSummary& s) { return !s.verify().empty(); });
  EXPECT_THAT(first.verify(), HasSubstr("0 backups read back"));

  absl::StatusOr<std::vector<BackupEntry>> b =
      ListBackups(fs_, JoinPath(backups_, "DEV-RH7"));
  ASSERT_TRUE(b.ok() && b->size() == 1);
  const std::string xva =
      JoinPath(backups_, "DEV-RH7", b->front().name, "DEV-RH7.xva");
  std::string data = fs_.ReadFile(xva, 1 << 30).value_or("");
  ASSERT_FALSE(data.empty());
  data[data.size() / 2] ^= 0x20;
  ASSERT_OK(fs_.RemoveFile(xva));
  ASSERT_OK(WriteNewFile(fs_, xva, data));

  r = Cli({"run", config});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const v1::RunSummary second = WaitForStatus("", [&](const v1::RunSummary& s) {
    return s.run_id() != first.run_id() && !s.verify().empty();
  });
  EXPECT_EQ(second.exit_code(), 0);
  EXPECT_THAT(second.verify(),
              HasSubstr("2 backups read back: 1 ok, 0 WARNING, 1 ERROR"));
  ASSERT_EQ(second.verify_findings_size(), 1);
  EXPECT_THAT(second.verify_findings(0),
              HasSubstr(absl::StrCat(
                  "ERROR ", JoinPath(backups_, "DEV-RH7", b->front().name),
                  ": DEV-RH7.xva: ")));
  // The table form, and the first run's record unchanged.
  r = Cli({"status", second.run_id()});
  EXPECT_THAT(r.output, HasSubstr("read back:"));
  EXPECT_THAT(r.output, HasSubstr("1 ERROR"));
  EXPECT_THAT(Status(first.run_id()).verify(),
              HasSubstr("0 backups read back"));
}

TEST_F(DistributedRunTest, ARestoreRunsOnTheAgentOfAHostThatSeesTheSr) {
  StartCoordinator();
  StartAllAgents();
  CommandResult r = Cli({"run", Config("vm-export=DEV-RH7\n"
                                       "vdi_export_disks=all\n"
                                       "vdi-export=PROD-win2012\n")});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("coordinator.log");
  auto newest = [&](const std::string& vm) {
    absl::StatusOr<std::vector<BackupEntry>> b =
        ListBackups(fs_, JoinPath(backups_, vm));
    EXPECT_TRUE(b.ok() && !b->empty());
    return b.ok() && !b->empty()
               ? JoinPath(backups_, vm, b->back().name)
               : std::string();
  };
  // The local SR of xcp-host3: only its agent can restore there.
  ASSERT_OK_AND_ASSIGN(RecordMap<SrRecord> srs, client_->GetAllSrs());
  std::string local_sr;
  for (const auto& [ref, sr] : srs) {
    if (!sr.shared && sr.content_type != "iso" &&
        absl::StrContains(sr.name_label, "xcp-host3"))
      local_sr = sr.uuid;
  }
  ASSERT_FALSE(local_sr.empty());
  // A dry run changes nothing and names the host.
  r = Cli({"restore", newest("DEV-RH7"), "--sr", local_sr, "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("through the agent of xcp-host3"));
  EXPECT_THAT(client_->GetVmsByNameLabel("agent-restored-xva").value_or(
                  std::vector<std::string>{"x"}),
              IsEmpty());

  r = Cli({"restore", newest("DEV-RH7"), "--sr", local_sr, "--name",
           "agent-restored-xva"});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("agent-xcp-host3.log");
  EXPECT_THAT(r.output, HasSubstr("through the agent of xcp-host3"));
  EXPECT_THAT(r.output, HasSubstr("restore: done: VM agent-restored-xva"));
  EXPECT_THAT(Log("agent-xcp-host3.log"), HasSubstr("restored"));
  ASSERT_OK_AND_ASSIGN(auto want, sim_->VmDiskSha256s(*client_, "DEV-RH7"));
  ASSERT_OK_AND_ASSIGN(auto got,
                       sim_->VmDiskSha256s(*client_, "agent-restored-xva"));
  EXPECT_EQ(got, want);
  // The upload went to xcp-host3 itself.
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests("xcp-host3"));
  bool imported = false;
  for (const auto& q : log.requests())
    imported = imported || (q.method() == "PUT" && absl::StartsWith(q.path(), "/import?"));
  EXPECT_TRUE(imported);

  // By VM, onto the default SR; the coordinator picks the backup.
  r = Cli({"restore", "--vm", "PROD-win2012", "--backup-dir", backups_,
           "--name", "agent-restored-disks"});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("coordinator.log");
  ASSERT_OK_AND_ASSIGN(want, sim_->VmDiskSha256s(*client_, "PROD-win2012"));
  ASSERT_OK_AND_ASSIGN(got,
                       sim_->VmDiskSha256s(*client_, "agent-restored-disks"));
  EXPECT_EQ(got, want);

  // A failure on the agent: the coordinator reports it, nothing is left.
  ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
  ASSERT_OK(sim_->AddFault(R"({"kind": "TASK_FAIL", "call": "/import"})"));
  r = Cli({"restore", newest("DEV-RH7"), "--name", "must-not-exist"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nothing was left in the pool"));
  ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
  EXPECT_EQ(after.vms(), before.vms());
  EXPECT_EQ(after.vdis(), before.vdis());
  // A restore test through the agent: read back, compared, destroyed.
  ASSERT_OK(sim_->ClearFaults());
  before = sim_->State().value_or(sim::SimState());
  r = Cli({"verify", "--restore-test", newest("PROD-win2012"), "--sr",
           local_sr});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("agent-xcp-host3.log");
  EXPECT_THAT(r.output, HasSubstr("through the agent of xcp-host3"));
  EXPECT_THAT(r.output, HasSubstr("equal to the backup's"));
  EXPECT_THAT(r.output, HasSubstr("restore test done; removed what it made"));
  after = sim_->State().value_or(sim::SimState());
  EXPECT_EQ(after.vms(), before.vms());
  EXPECT_EQ(after.vdis(), before.vdis());
  // Refusals come before any agent is asked.
  r = Cli({"restore", "--vm", "no-such-vm", "--backup-dir", backups_});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("no folder of that VM"));
}

TEST_F(DistributedRunTest, AKilledAgentIsDetectedItsSnapshotDestroyed) {
  StartCoordinator();
  StartAllAgents();
  // A VM on xcp-host3's local storage, slowed so that the agent dies
  // mid-export.
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "BANDWIDTH", "host": "xcp-host3", "bytes_per_second": 2000000})"));
  const std::string config = Config("vm-export=DEV-local-build\n");
  const absl::Time start = absl::Now();
  pid_t cli = StartRun(config);
  // Mid-export: a partial XVA in an unfinished folder.
  const std::string folder = JoinPath(backups_, "DEV-local-build");
  bool exporting = false;
  while (!exporting && absl::Now() - start < kWait) {
    absl::StatusOr<std::vector<BackupEntry>> b = ListBackups(fs_, folder);
    if (b.ok() && !b->empty()) {
      absl::StatusOr<FileInfo> f =
          fs_.Stat(JoinPath(folder, b->back().name, "DEV-local-build.xva"));
      exporting = f.ok() && f->size > 1000000;
    }
    if (!exporting) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(exporting) << Log("coordinator.log");
  kill(agents_["xcp-host3"], SIGKILL);
  waitpid(agents_["xcp-host3"], nullptr, 0);
  agents_.erase("xcp-host3");
  int status = 0;
  ASSERT_EQ(waitpid(cli, &status, 0), cli);
  EXPECT_EQ(WEXITSTATUS(status), 2) << Log("cli.log");
  const v1::RunSummary run = Status();
  ASSERT_EQ(run.vms_size(), 1);
  EXPECT_EQ(run.vms(0).status().status_token(), "AGENT-LOST")
      << Log("coordinator.log");
  // Detected within 3 heartbeat intervals (1 s) plus the time to clean up.
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  ExpectNoSnapshotsLeft();
  absl::StatusOr<std::vector<BackupEntry>> b = ListBackups(fs_, folder);
  ASSERT_TRUE(b.ok());
  for (const BackupEntry& e : *b) EXPECT_FALSE(e.committed);
  std::string status_log =
      fs_.ReadFile(JoinPath(dir_, "log", "status.log"), 1 << 20).value_or("");
  EXPECT_THAT(status_log, HasSubstr("AGENT-LOST"));

  // Restarted, it cleans up its leftovers and the next run succeeds.
  ASSERT_OK(sim_->ClearFaults());
  for (const auto& [ref, host] : hosts_) {
    if (host.name_label == "xcp-host3") StartAgent(host);
  }
  WaitForAgents();
  const CommandResult again = Cli({"run", config});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  b = ListBackups(fs_, folder);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 1u);
  EXPECT_TRUE(b->back().committed);
  ExpectNoSnapshotsLeft();
}

TEST_F(DistributedRunTest, ACoordinatorKilledMidRunResumesItOnce) {
  StartCoordinator();
  StartAllAgents();
  // Slow hosts: the run is still exporting when the coordinator dies.
  ASSERT_OK(
      sim_->AddFault(R"({"kind": "BANDWIDTH", "bytes_per_second": 8000000})"));
  const std::string config =
      Config("per_host_concurrency=1\nvm-export=PROD-.*\nvm-export=DEV-.*\n");
  pid_t cli = StartRun(config);
  // Until some VM is committed and some is not yet.
  std::string run_id;
  const absl::Time until = absl::Now() + kWait;
  while (absl::Now() < until) {
    const std::optional<v1::RunSummary> s = TryStatus();
    int done = 0;
    if (s.has_value()) {
      run_id = s->run_id();
      for (const v1::VmOutcome& vm : s->vms())
        done += vm.status().phase() == v1::JOB_PHASE_SUCCEEDED;
      if (done >= 1 && done < s->vms_size()) break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_FALSE(run_id.empty());
  Stop(coordinator_);
  coordinator_ = -1;
  kill(cli, SIGKILL);
  waitpid(cli, nullptr, 0);
  StartCoordinator();  // the same port and journal

  v1::RunSummary s;
  while (absl::Now() < until + kWait) {
    s = TryStatus(run_id).value_or(v1::RunSummary());
    if (!s.run_id().empty() && s.state() != v1::RUN_STATE_RUNNING) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(s.state(), v1::RUN_STATE_SUCCEEDED) << Log("coordinator.log");
  EXPECT_EQ(s.errors(), 0u);
  EXPECT_THAT(s.summary_line(), HasSubstr("S:"));
  // No VM was exported twice.
  std::map<std::string, int> exports_by_host;
  for (const v1::VmOutcome& vm : s.vms()) ++exports_by_host[vm.host_name()];
  for (const auto& [ref, host] : hosts_) {
    ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests(host.name_label));
    int exports = 0;
    for (const sim::RequestLogEntry& e : log.requests())
      exports += e.method() == "GET" && absl::StartsWith(e.path(), "/export?");
    EXPECT_EQ(exports, exports_by_host[host.name_label]) << host.name_label;
  }
  // One summary in status.log: one begin, one end.
  const std::string status_log =
      fs_.ReadFile(JoinPath(dir_, "log", "status.log"), 1 << 20).value_or("");
  int begins = 0, ends = 0;
  for (absl::string_view line : absl::StrSplit(status_log, '\n')) {
    begins += absl::StrContains(line, "vmbackup.py") &&
              absl::EndsWith(line, ",begin");
    ends += absl::StrContains(line, "vmbackup.py,") &&
            absl::StrContains(line, ",end,");
  }
  EXPECT_EQ(begins, 1) << status_log;
  EXPECT_EQ(ends, 1) << status_log;
  ExpectNoSnapshotsLeft();
}

TEST_F(DistributedRunTest,
       APartitionedAgentIsFencedAndTheRetriedBackupIsIntact) {
  StartCoordinator();
  StartAllAgents();
  // A halted VM on the shared SR, slow enough to be stopped mid-export.
  ASSERT_OK(
      sim_->AddFault(R"({"kind": "BANDWIDTH", "bytes_per_second": 2000000})"));
  const std::string config = Config("vm-export=TEST-debian9\n");
  pid_t cli = StartRun(config);
  ASSERT_GT(cli, 0);
  v1::RunSummary s = WaitForStatus("", [](const v1::RunSummary& r) {
    return r.vms_size() == 1 &&
           r.vms(0).status().phase() == v1::JOB_PHASE_EXPORT &&
           r.vms(0).status().bytes_done() > 1000000;
  });
  ASSERT_EQ(s.vms_size(), 1);
  const std::string run_id = s.run_id();
  const std::string first_host = s.vms(0).host_name();
  const uint64_t first_token = s.vms(0).status().fencing_token();
  ASSERT_EQ(agents_.count(first_host), 1u) << first_host;
  const pid_t stopped = agents_[first_host];
  ASSERT_EQ(kill(stopped, SIGSTOP), 0);
  // Past the heartbeat limit the coordinator gives the attempt up and tries
  // the VM on another host.
  s = WaitForStatus(run_id, [&](const v1::RunSummary& r) {
    return r.vms_size() == 1 && r.vms(0).attempts() == 2 &&
           r.vms(0).host_name() != first_host &&
           r.vms(0).status().phase() == v1::JOB_PHASE_EXPORT;
  });
  // Back while the retry runs: the zombie must neither commit nor delete
  // the new attempt's folder.
  ASSERT_EQ(kill(stopped, SIGCONT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(cli, &status, 0), cli);
  s = Status(run_id);
  ASSERT_EQ(s.vms_size(), 1);
  EXPECT_EQ(s.vms(0).status().phase(), v1::JOB_PHASE_SUCCEEDED)
      << Log("coordinator.log");
  EXPECT_EQ(s.vms(0).attempts(), 2u);
  EXPECT_NE(s.vms(0).host_name(), first_host);
  EXPECT_EQ(s.errors(), 0u);

  // The zombie learns it was fenced, ends its attempt and forgets it.
  const absl::Time until = absl::Now() + kWait;
  bool forgotten = false;
  while (!forgotten && absl::Now() < until) {
    for (const v1::AgentInfo& a : Agents()) {
      if (a.identity().host_name() == first_host)
        forgotten = a.live() && a.job_ids().empty();
    }
    if (!forgotten) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(forgotten);
  EXPECT_THAT(Log("agent-" + first_host + ".log"), HasSubstr("ended fenced"));

  // One folder: the retried attempt's, committed and intact; the zombie's
  // is gone.
  const std::string folder = JoinPath(backups_, "TEST-debian9");
  ASSERT_OK_AND_ASSIGN(std::vector<BackupEntry> b, ListBackups(fs_, folder));
  ASSERT_EQ(b.size(), 1u);
  ASSERT_OK_AND_ASSIGN(v1::AttemptFile attempt,
                       ReadAttemptFile(fs_, JoinPath(folder, b[0].name)));
  EXPECT_EQ(attempt.attempt(), 2u);
  EXPECT_GT(attempt.fencing_token(), first_token);
  ExpectGoodBackup("TEST-debian9");
  EXPECT_EQ(Exports(first_host).size(), 1u);
  EXPECT_EQ(Exports(s.vms(0).host_name()).size(), 1u);
  ExpectNoSnapshotsLeft();
}

TEST_F(DistributedRunTest, CancelStopsEveryAgentAndCommitsNothingCancelled) {
  StartCoordinator();
  StartAllAgents();
  ASSERT_OK(
      sim_->AddFault(R"({"kind": "BANDWIDTH", "bytes_per_second": 2000000})"));
  const std::string config =
      Config("per_host_concurrency=2\nvm-export=PROD-.*\nvm-export=DEV-.*\n");
  pid_t cli = StartRun(config);
  ASSERT_GT(cli, 0);
  v1::RunSummary s = WaitForStatus("", [](const v1::RunSummary& r) {
    int exporting = 0;
    for (const v1::VmOutcome& vm : r.vms())
      exporting += vm.status().phase() == v1::JOB_PHASE_EXPORT &&
                   vm.status().bytes_done() > 0;
    return exporting >= 3;
  });
  const std::string run_id = s.run_id();
  ASSERT_FALSE(run_id.empty());
  const absl::Time cancelled = absl::Now();
  const CommandResult c = Cli({"cancel", run_id});
  ASSERT_EQ(c.exit_code, 0) << c.output;
  s = WaitForStatus(run_id, [](const v1::RunSummary& r) {
    return r.state() != v1::RUN_STATE_RUNNING;
  });
  // Every agent has stopped: none holds a job.
  bool idle = false;
  while (!idle && absl::Now() - cancelled < kWait) {
    idle = true;
    for (const v1::AgentInfo& a : Agents()) idle = idle && a.job_ids().empty();
    if (!idle) absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration took = absl::Now() - cancelled;
  EXPECT_TRUE(idle);
  EXPECT_LT(took, absl::Seconds(10));
  std::cerr << "cancel to every agent idle: " << took << "\n";
  EXPECT_EQ(s.state(), v1::RUN_STATE_CANCELLED);
  int status = 0;
  ASSERT_EQ(waitpid(cli, &status, 0), cli);
  EXPECT_EQ(WEXITSTATUS(status), 2) << Log("cli.log");

  int cancelled_vms = 0;
  for (const v1::VmOutcome& vm : s.vms()) {
    SCOPED_TRACE(vm.vm_name());
    if (vm.status().phase() == v1::JOB_PHASE_SUCCEEDED) {
      ExpectGoodBackup(vm.vm_name());
      continue;
    }
    EXPECT_EQ(vm.status().phase(), v1::JOB_PHASE_CANCELLED);
    ++cancelled_vms;
    absl::StatusOr<std::vector<BackupEntry>> b =
        ListBackups(fs_, JoinPath(backups_, SanitizeVmName(vm.vm_name())));
    if (!b.ok()) continue;  // never started: no folder at all
    for (const BackupEntry& e : *b) EXPECT_FALSE(e.committed) << e.name;
  }
  EXPECT_GE(cancelled_vms, 3);
  ExpectNoSnapshotsLeft();
}

TEST_F(DistributedRunTest, ASnapshotXapiHoldsOnToDoesNotHoldTheExportSlot) {
  // Destroys are retried for 16 s in all; the job itself gives up after 5 s
  // and frees its host's only slot.
  StartCoordinator("16s");
  StartAllAgents();
  const std::string config = Config(
      "per_host_concurrency=1\nvm-export=PROD-oracle-db\nvm-export=DEV-RH7\n");
  // Largest first: PROD-oracle-db is exported first, and its snapshot's
  // disk will not go.
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"CALL_ERROR","call":"VDI.destroy","vm":"PROD-oracle-db",)"
      R"("error":["VDI_IN_USE"]})"));
  const CommandResult r = Cli({"run", config});
  EXPECT_EQ(r.exit_code, 1) << r.output;  // a warning: the snapshot is left
  EXPECT_THAT(r.output, HasSubstr("S:1 W:1 E:0"));
  ExpectGoodBackup("PROD-oracle-db");
  ExpectGoodBackup("DEV-RH7");
  // The second export began well before the first VM's destroys ended.
  const std::vector<sim::RequestLogEntry> exports = Exports("xcp-host1");
  ASSERT_EQ(exports.size(), 2u);
  const double gap = exports[1].started() - exports[0].finished();
  std::cerr << "slot free after " << gap << " s\n";
  EXPECT_LT(gap, 12.0);
  // Then the end-of-run janitor leaves the snapshot (XAPI still refuses);
  // a run without the fault removes it.
  ASSERT_OK(sim_->ClearFaults());
  const CommandResult again = Cli({"run", config});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  ExpectNoSnapshotsLeft();
}

// The same pool under mutual TLS, with certificates from deploy/gen-certs.sh.
class MtlsRunTest : public DistributedRunTest {
 protected:
  void SetUp() override {
    DistributedRunTest::SetUp();
    if (HasFatalFailure()) return;
    certs_ = JoinPath(dir_, "certs");
    GenCerts(certs_);
  }

  // deploy/gen-certs.sh DIR localhost NAME:UUID... for the pool's hosts.
  void GenCerts(const std::string& dir) {
    std::vector<std::string> argv = {
        "/bin/bash", JoinPath(testing::SourceDir(), "deploy/gen-certs.sh"), dir,
        "localhost"};
    for (const auto& [ref, host] : hosts_)
      argv.push_back(host.name_label + ":" + host.uuid);
    const CommandResult r = testing::RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  const HostRecord& Host(const std::string& name) {
    for (const auto& [ref, host] : hosts_)
      if (host.name_label == name) return host;
    static const HostRecord none;
    ADD_FAILURE() << "no host " << name;
    return none;
  }

  // Polls the log `name` until it holds `text` (bounded).
  bool LogShows(const std::string& name, const std::string& text) {
    const absl::Time until = absl::Now() + kWait;
    while (absl::Now() < until) {
      if (absl::StrContains(Log(name), text)) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << name << " never showed '" << text << "':\n" << Log(name);
    return false;
  }

  // One Synchronize call to the coordinator with raw gRPC credentials (our
  // own client checks its files first and would not even try).
  grpc::Status RawSynchronize(const std::string& cert, const std::string& key,
                              const v1::AgentIdentity& identity) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Read(JoinPath(certs_, "ca.crt"));
    if (!cert.empty()) {
      o.pem_cert_chain = Read(cert);
      o.pem_private_key = Read(key);
    }
    auto stub = v1::AgentService::NewStub(
        grpc::CreateChannel(Address(), grpc::SslCredentials(o)));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::AgentState state;
    *state.mutable_identity() = identity;
    v1::DesiredState desired;
    return stub->Synchronize(&context, state, &desired);
  }

  std::string Read(const std::string& path) {
    return fs_.ReadFile(path, 1 << 20).value_or("");
  }

  // agent id -> when it connected, for the live agents.
  std::map<std::string, uint64_t> LiveAgents() {
    std::map<std::string, uint64_t> out;
    for (const v1::AgentInfo& a : Agents())
      if (a.live()) out[a.identity().agent_id()] = a.connected_unix_ms();
    return out;
  }
};

TEST_F(MtlsRunTest, ARunWithGenCertsCertificatesSucceeds) {
  StartCoordinator();
  StartAllAgents();
  EXPECT_THAT(Log("coordinator.log"), HasSubstr("(mutual TLS as CN="));
  const CommandResult r =
      Cli({"run", Config("vm-export=DEV-RH6\nvm-export=DEV-local-build\n")});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("coordinator.log");
  EXPECT_THAT(r.output, HasSubstr("VmBackup ended - Success - S:2 W:0 E:0"));
  ExpectGoodBackup("DEV-RH6");
  ExpectGoodBackup("DEV-local-build");
  ExpectNoSnapshotsLeft();
  // Each agent is known by the certificate it showed.
  for (const v1::AgentInfo& a : Agents()) {
    EXPECT_THAT(a.certificate(),
                HasSubstr("urn:vmbackup:host:" + a.identity().host_uuid()));
    EXPECT_GT(a.certificate_not_after_unix_ms(),
              absl::ToUnixMillis(absl::Now() + absl::Hours(24 * 800)));
  }
  const CommandResult agents = Cli({"agents"});
  EXPECT_THAT(agents.output, HasSubstr("CERTIFICATE"));
  EXPECT_THAT(agents.output, HasSubstr("until 20"));
  EXPECT_THAT(agents.output, Not(HasSubstr("warning")));
}

TEST_F(MtlsRunTest, WhatHasNoRightToConnectIsRefusedAndChangesNothing) {
  StartCoordinator();
  StartAllAgents();
  const std::map<std::string, uint64_t> before = LiveAgents();
  ASSERT_EQ(before.size(), hosts_.size());
  const HostRecord& host1 = Host("xcp-host1");
  const HostRecord& host2 = Host("xcp-host2");
  const std::string cert1 = JoinPath(certs_, "agent-xcp-host1.crt");
  const std::string key1 = JoinPath(certs_, "agent-xcp-host1.key");
  v1::AgentIdentity claim1;
  claim1.set_agent_id("intruder");
  claim1.set_host_uuid(host1.uuid);
  claim1.set_instance_id("1");

  // No client certificate.
  EXPECT_FALSE(RawSynchronize("", "", claim1).ok());
  LogShows("coordinator.log", "peer did not return a certificate");

  // A certificate of another CA (an agent started with a second
  // gen-certs.sh set): the coordinator refuses it, and the agent refuses
  // the coordinator.
  const std::string other = JoinPath(dir_, "other-certs");
  GenCerts(other);
  agents_["intruder"] = testing::StartCommand(
      {testing::BinDir() + "/vmbackup-agent", "--coordinator=" + Address(),
       "--host-uuid=" + host1.uuid, "--agent-id=intruder",
       "--state-dir=" + JoinPath(dir_, "intruder"),
       "--mtls-ca=" + JoinPath(other, "ca.crt"),
       "--mtls-cert=" + JoinPath(other, "agent-xcp-host1.crt"),
       "--mtls-key=" + JoinPath(other, "agent-xcp-host1.key")},
      JoinPath(dir_, "intruder.log"));
  LogShows("intruder.log", "cannot reach the coordinator");
  LogShows("intruder.log", "certificate verify failed");
  // Its certificate shown to the coordinator (with the site's CA trusted).
  EXPECT_FALSE(RawSynchronize(JoinPath(other, "agent-xcp-host1.crt"),
                              JoinPath(other, "agent-xcp-host1.key"), claim1)
                   .ok());
  LogShows("coordinator.log", "certificate verify failed");

  // An expired certificate from the site's CA.
  testing::TestPki pki = testing::TestPki::Adopt(JoinPath(dir_, "extra"),
                                                 JoinPath(certs_, "ca.crt"),
                                                 JoinPath(certs_, "ca.key"));
  ASSERT_OK(fs_.CreateDir(JoinPath(dir_, "extra")));
  ASSERT_OK_AND_ASSIGN(
      testing::TestPki::Issued expired,
      pki.Issue("expired",
                testing::WithValidity(
                    testing::ClientLeaf({"urn:vmbackup:host:" + host1.uuid}),
                    -absl::Hours(48), -absl::Hours(1))));
  const grpc::Status expired_call =
      RawSynchronize(expired.cert, expired.key, claim1);
  EXPECT_FALSE(expired_call.ok());
  CommandResult r = testing::RunCommand(
      {testing::BinDir() + "/vmbackup-agent", "--coordinator=" + Address(),
       "--host-uuid=" + host1.uuid, "--state-dir=" + JoinPath(dir_, "exp"),
       "--mtls-ca=" + JoinPath(certs_, "ca.crt"), "--mtls-cert=" + expired.cert,
       "--mtls-key=" + expired.key});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("certificate has expired"));

  // Host 1's certificate claiming host 2: the coordinator refuses the call;
  // our agent would not even start with it.
  v1::AgentIdentity claim2 = claim1;
  claim2.set_host_uuid(host2.uuid);
  const grpc::Status posing = RawSynchronize(cert1, key1, claim2);
  EXPECT_EQ(posing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(posing.error_message(),
              HasSubstr("its certificate is for host " + host1.uuid));
  LogShows("coordinator.log", "refused an agent's call");
  r = testing::RunCommand(
      {testing::BinDir() + "/vmbackup-agent", "--coordinator=" + Address(),
       "--host-uuid=" + host2.uuid, "--state-dir=" + JoinPath(dir_, "pose"),
       "--mtls-ca=" + JoinPath(certs_, "ca.crt"), "--mtls-cert=" + cert1,
       "--mtls-key=" + key1});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not a certificate for this host"));
  // Its own host with another agent's id: refused too.
  v1::AgentIdentity steal = claim1;
  steal.set_agent_id(host2.uuid);  // xcp-host2's agent id is its uuid
  EXPECT_EQ(RawSynchronize(cert1, key1, steal).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // An agent's certificate against the Control API.
  r = testing::RunCommand({testing::BinDir() + "/vmbackup", "agents",
                           "--coordinator=" + Address(),
                           "--mtls-ca=" + JoinPath(certs_, "ca.crt"),
                           "--mtls-cert=" + cert1, "--mtls-key=" + key1});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("takes an operator's certificate"));
  LogShows("coordinator.log", "refused a Control call (ListAgents)");

  // Plaintext against the TLS coordinator.
  r = testing::RunCommand({testing::BinDir() + "/vmbackup", "agents",
                           "--coordinator=" + Address(), "--plaintext",
                           "--timeout=5s"});
  EXPECT_EQ(r.exit_code, 2);
  LogShows("coordinator.log", "wrong version number");

  // --plaintext on an address that is not loopback: no start.
  r = testing::RunCommand({testing::BinDir() + "/vmbackup-coordinator",
                           "--listen=0.0.0.0:0", "--plaintext",
                           "--xapi-url=" + sim_->master_url(),
                           "--password-file=" + password_file_,
                           "--state-dir=" + JoinPath(dir_, "c2")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--plaintext refuses --listen 0.0.0.0:0"));
  r = testing::RunCommand({testing::BinDir() + "/vmbackup-agent",
                           "--coordinator=192.0.2.1:7441", "--plaintext",
                           "--host-uuid=" + host1.uuid,
                           "--state-dir=" + JoinPath(dir_, "a2")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output,
              HasSubstr("--plaintext refuses --coordinator 192.0.2.1:7441"));

  // Nothing changed: the same agents, none reconnected, no run.
  EXPECT_EQ(LiveAgents(), before);
  const CommandResult runs = Cli({"runs", "--json"});
  EXPECT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_THAT(runs.output, Not(HasSubstr("run_id")));
}

TEST_F(MtlsRunTest, SighupTakesARenewedCertificateWithoutDroppingAgents) {
  StartCoordinator();
  StartAllAgents();
  const std::map<std::string, uint64_t> before = LiveAgents();
  // A run whose export is slowed, so that the reload comes in the middle.
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "BANDWIDTH", "host": "xcp-host3", "bytes_per_second": 4000000})"));
  const pid_t cli = StartRun(Config("vm-export=DEV-RH6\n"));
  ASSERT_GT(cli, 0);
  WaitForStatus("", [](const v1::RunSummary& s) {
    return s.vms_size() == 1 &&
           s.vms(0).status().phase() == v1::JOB_PHASE_EXPORT &&
           s.vms(0).status().bytes_done() > 0;
  });
  // Renewal: the old pair removed, gen-certs.sh makes a new one.
  ASSERT_OK(fs_.RemoveFile(JoinPath(certs_, "coordinator.crt")));
  ASSERT_OK(fs_.RemoveFile(JoinPath(certs_, "coordinator.key")));
  GenCerts(certs_);
  kill(coordinator_, SIGHUP);
  LogShows("coordinator.log", "certificates reloaded: CN=");
  // The export goes on and the run succeeds; no agent was dropped.
  int status = 0;
  ASSERT_EQ(waitpid(cli, &status, 0), cli);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << Log("cli.log") << Log("coordinator.log");
  EXPECT_EQ(Status().vms(0).attempts(), 1u);  // not retried
  EXPECT_EQ(LiveAgents(), before);
  // A broken set is refused and the one in use stays.
  ASSERT_OK(fs_.Rename(JoinPath(certs_, "agent-xcp-host1.key"),
                       JoinPath(certs_, "coordinator.key")));
  kill(coordinator_, SIGHUP);
  LogShows("coordinator.log",
           "certificates not reloaded, the ones in use stay");
  EXPECT_EQ(LiveAgents(), before);
}

// The bundle's agent (build/bundle, docs/install.md) in an empty chroot that
// holds only the bundle, the CA certificate and its own certificate files,
// joins the coordinator over mutual TLS and backs a VM up to the share. As
// root only (chroot), and where the bundle is built.
TEST_F(MtlsRunTest, TheBundledAgentRunsAJobFromAnEmptyChroot) {
  const std::string bundle = JoinPath(Dirname(testing::BinDir()), "bundle");
  if (geteuid() != 0 || !fs_.Stat(JoinPath(bundle, "bin")).ok()) {
    GTEST_SKIP() << "needs root (chroot) and the bundle (" << bundle << ")";
  }
  StartCoordinator();
  // The chroot: the bundle, the certificates, and the share bind-mounted
  // where the coordinator's config says it is.
  const std::string root = JoinPath(dir_, "root");
  ASSERT_OK(fs_.CreateDir(root));
  ASSERT_EQ(
      testing::RunCommand({"/bin/cp", "-a", bundle, root + "/opt"}).exit_code,
      0);
  ASSERT_OK(fs_.CreateDir(root + "/pki"));
  const HostRecord& host = Host("xcp-host3");  // DEV-RH6 runs there
  for (const char* f :
       {"ca.crt", "agent-xcp-host3.crt", "agent-xcp-host3.key"}) {
    ASSERT_EQ(testing::RunCommand(
                  {"/bin/cp", JoinPath(certs_, f), JoinPath(root, "pki", f)})
                  .exit_code,
              0);
  }
  const std::string share = root + backups_;
  ASSERT_EQ(testing::RunCommand({"/bin/mkdir", "-p", share}).exit_code, 0);
  if (mount(backups_.c_str(), share.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    GTEST_SKIP() << "cannot bind-mount the share into the chroot: "
                 << strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{share};
  agents_["chroot"] = testing::StartCommand(
      {"/usr/sbin/chroot", root, "/opt/bin/vmbackup-agent",
       "--coordinator=" + Address(), "--host-uuid=" + host.uuid,
       "--host-name=" + host.name_label, "--state-dir=/state",
       "--mtls-ca=/pki/ca.crt", "--mtls-cert=/pki/agent-xcp-host3.crt",
       "--mtls-key=/pki/agent-xcp-host3.key"},
      JoinPath(dir_, "chroot-agent.log"));
  ASSERT_GT(agents_["chroot"], 0);
  LogShows("chroot-agent.log", "connected to the coordinator");
  const CommandResult r = Cli({"run", Config("vm-export=DEV-RH6\n")});
  ASSERT_EQ(r.exit_code, 0)
      << r.output << Log("chroot-agent.log") << Log("coordinator.log");
  EXPECT_THAT(r.output, HasSubstr("VmBackup ended - Success - S:1 W:0 E:0"));
  ExpectGoodBackup("DEV-RH6");
  ExpectNoSnapshotsLeft();
  // The chroot holds nothing but what was put there (the share's mount
  // point under its first path component) and the agent's state.
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> top, fs_.ListDir(root));
  std::set<std::string> names;
  for (const DirEntry& e : top) names.insert(e.name);
  const std::string first = backups_.substr(1, backups_.find('/', 1) - 1);
  EXPECT_EQ(names, (std::set<std::string>{"opt", "pki", "state", first}));
  // The agent is gone before the share is unmounted.
  Stop(agents_["chroot"]);
  agents_.erase("chroot");
}

// The e-mail report, received by a real SMTP server on loopback
// (tests/python/smtp_sink.py, Debian's python3-aiosmtpd).
class MailReportTest : public DistributedRunTest {
 protected:
  void TearDown() override {
    Stop(sink_);
    DistributedRunTest::TearDown();
  }

  // Starts the sink; with `tls` it requires STARTTLS with a certificate of
  // a test CA (given to the coordinator as mail_smtp_ca); with a user, AUTH.
  void StartSink(bool tls, const std::string& user,
                 const std::string& password) {
    mail_dir_ = JoinPath(dir_, "mail");
    ASSERT_OK(fs_.CreateDir(mail_dir_));
    std::vector<std::string> argv = {
        "/usr/bin/python3",
        JoinPath(testing::SourceDir(), "tests/python/smtp_sink.py"),
        "--port-file=" + JoinPath(dir_, "smtp.port"), "--out-dir=" + mail_dir_};
    if (tls) {
      ASSERT_OK_AND_ASSIGN(
          testing::TestPki pki,
          testing::TestPki::Create(JoinPath(dir_, "smtp-pki"), "smtp"));
      ASSERT_OK_AND_ASSIGN(
          testing::TestPki::Issued cert,
          pki.Issue("smtp", testing::ServerLeaf({"localhost"}, {"127.0.0.1"})));
      argv.push_back("--tls-cert=" + cert.cert);
      argv.push_back("--tls-key=" + cert.key);
      smtp_ca_ = pki.ca_cert();
    }
    if (!user.empty()) {
      const std::string file = JoinPath(dir_, "smtp-server-password");
      std::ofstream(file) << password;
      argv.push_back("--auth-user=" + user);
      argv.push_back("--auth-password-file=" + file);
    }
    sink_ = testing::StartCommand(argv, JoinPath(dir_, "smtp.log"));
    ASSERT_GT(sink_, 0);
    smtp_port_ = WaitForPort(JoinPath(dir_, "smtp.port"));
    ASSERT_GT(smtp_port_, 0) << Log("smtp.log");
  }

  // The mail_* lines of a config sending to the sink as `user` with the
  // password `password` (a VmBackup password file, 0600).
  std::string MailConfig(const std::string& user, const std::string& password,
                         const std::string& when = "always") {
    std::string lines =
        absl::StrCat("mail_to=ops@example.com,backup@example.com\n",
                     "mail_from=vmbackup@example.com\nmail_when=", when, "\n",
                     "mail_smtp_url=smtp://127.0.0.1:", smtp_port_, "\n");
    if (smtp_ca_.empty()) {
      absl::StrAppend(&lines, "mail_starttls=false\n");
    } else {
      absl::StrAppend(&lines, "mail_smtp_ca=", smtp_ca_, "\n");
    }
    if (!user.empty()) {
      const std::string file = JoinPath(dir_, "smtp-password");
      EXPECT_OK(coordinator::WritePasswordFile(file, password));
      absl::StrAppend(&lines, "mail_smtp_user=", user,
                      "\nmail_smtp_password_file=", file, "\n");
    }
    return lines;
  }

  // The run's status once its e-mail report has an outcome.
  v1::RunSummary StatusWithMail(const std::string& run_id = "") {
    return WaitForStatus(run_id, [](const v1::RunSummary& s) {
      return s.state() != v1::RUN_STATE_RUNNING && !s.mail().empty();
    });
  }

  // The messages the sink received, decoded by Python's email package.
  std::vector<google::protobuf::Struct> Received() {
    std::vector<google::protobuf::Struct> out;
    for (int n = 1;; ++n) {
      absl::StatusOr<std::string> json =
          fs_.ReadFile(JoinPath(mail_dir_, absl::StrCat(n, ".json")), 1 << 24);
      if (!json.ok()) break;
      google::protobuf::Struct message;
      EXPECT_TRUE(
          google::protobuf::util::JsonStringToMessage(*json, &message).ok());
      out.push_back(std::move(message));
    }
    return out;
  }

  static std::string Field(const google::protobuf::Struct& m,
                           const std::string& name) {
    auto it = m.fields().find(name);
    return it == m.fields().end() ? "" : it->second.string_value();
  }

  pid_t sink_ = -1;
  int smtp_port_ = 0;
  std::string mail_dir_, smtp_ca_;
};

TEST_F(MailReportTest, ARealServerGetsTheRunsReportOverStartTlsWithAuth) {
  StartSink(/*tls=*/true, "backup", "smtp secret");
  StartCoordinator();
  StartAllAgents();
  const CommandResult r =
      Cli({"run", Config(MailConfig("backup", "smtp secret") +
                         "pool_db_backup=1\nvm-export=DEV-RH6\n"
                         "vm-export=DEV-local-build\n")});
  ASSERT_EQ(r.exit_code, 0) << r.output << Log("coordinator.log");
  const v1::RunSummary run = StatusWithMail();
  EXPECT_EQ(run.mail(), "sent to ops@example.com, backup@example.com");
  const std::vector<google::protobuf::Struct> mail = Received();
  ASSERT_EQ(mail.size(), 1u) << Log("coordinator.log") << Log("smtp.log");
  const google::protobuf::Struct& m = mail[0];
  EXPECT_EQ(Field(m, "mail_from"), "vmbackup@example.com");
  const auto& rcpt = m.fields().at("rcpt_tos").list_value();
  ASSERT_EQ(rcpt.values_size(), 2);
  EXPECT_EQ(rcpt.values(0).string_value(), "ops@example.com");
  EXPECT_EQ(rcpt.values(1).string_value(), "backup@example.com");
  EXPECT_TRUE(m.fields().at("tls").bool_value());
  EXPECT_EQ(Field(m, "auth_user"), "backup");
  // The seed's subject, with the pool's name.
  ASSERT_FALSE(run.pool_name().empty());
  EXPECT_EQ(Field(m, "subject"),
            absl::StrCat("Success ", run.pool_name(), " VmBackup.py"));
  // The body against the journal (vmbackup status): the summary line, the
  // pool DB dump, and a row per VM with its host, result and size.
  const std::string text = Field(m, "text");
  EXPECT_THAT(text, HasSubstr(run.summary_line()));
  EXPECT_THAT(text, HasSubstr(run.pool_db_dump()));
  EXPECT_THAT(text, HasSubstr(run.run_id()));
  ASSERT_EQ(run.vms_size(), 2);
  for (const v1::VmOutcome& vm : run.vms()) {
    SCOPED_TRACE(vm.vm_name());
    bool found = false;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (!absl::StrContains(line, vm.vm_name())) continue;
      found = true;
      EXPECT_TRUE(absl::StartsWith(line, "ok ")) << line;
      EXPECT_THAT(std::string(line), HasSubstr(vm.host_name()));
      EXPECT_THAT(std::string(line),
                  HasSubstr(FormatBytes(vm.status().backup_bytes())));
    }
    EXPECT_TRUE(found) << text;
    EXPECT_THAT(Field(m, "html"), HasSubstr("<td>" + vm.vm_name() + "</td>"));
  }
  // `vmbackup status` says what became of the report.
  EXPECT_THAT(Cli({"status"}).output,
              HasSubstr("sent to ops@example.com, backup@example.com"));
}

TEST_F(MailReportTest, AServerThatIsDownOrRefusesAuthChangesNoResult) {
  coordinator_flags_ = {"--mail-retry-backoff=50ms"};
  StartSink(/*tls=*/true, "backup", "smtp secret");
  StartCoordinator();
  StartAllAgents();
  // The wrong password: AUTH refused, three times.
  CommandResult r = Cli(
      {"run", Config(MailConfig("backup", "wrong") + "vm-export=DEV-RH6\n")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  v1::RunSummary run = StatusWithMail();
  EXPECT_EQ(run.state(), v1::RUN_STATE_SUCCEEDED);
  EXPECT_EQ(run.exit_code(), 0);
  EXPECT_THAT(run.mail(), HasSubstr("FAILED: not sent after 3 tries"));
  EXPECT_THAT(run.mail(), HasSubstr("mail_smtp_user"));
  EXPECT_TRUE(Received().empty());
  EXPECT_THAT(Cli({"status"}).output, HasSubstr("e-mail:"));
  EXPECT_THAT(Log("coordinator.log"), Not(HasSubstr("wrong")));
  // The server down.
  Stop(sink_);
  sink_ = -1;
  r = Cli({"run", Config(MailConfig("backup", "smtp secret") +
                         "vm-export=DEV-RH6\n")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string first = run.run_id();
  run = WaitForStatus("", [&first](const v1::RunSummary& s) {
    return s.run_id() != first && s.state() != v1::RUN_STATE_RUNNING &&
           !s.mail().empty();
  });
  EXPECT_EQ(run.state(), v1::RUN_STATE_SUCCEEDED);
  EXPECT_THAT(run.mail(), HasSubstr("FAILED: not sent after 3 tries"));
  // mail_when=failure: a successful run sends nothing and says nothing.
  r = Cli({"run", Config(MailConfig("backup", "smtp secret", "failure") +
                         "vm-export=DEV-RH6\n")});
  EXPECT_EQ(r.exit_code, 0);
  const v1::RunSummary quiet = Status();
  EXPECT_EQ(quiet.mail(), "");
}

TEST_F(MailReportTest, TheStandaloneFormMailsItsReportToo) {
  StartSink(/*tls=*/false, "", "");
  const std::string config = Config(MailConfig("", "") + "vm-export=DEV-RH6\n");
  const CommandResult r = testing::RunCommand(
      {testing::BinDir() + "/vmbackup", "--xapi-url", sim_->master_url(),
       "--snapshot-destroy-timeout=5s", password_file_, config});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<google::protobuf::Struct> mail = Received();
  ASSERT_EQ(mail.size(), 1u) << Log("smtp.log");
  EXPECT_THAT(Field(mail[0], "subject"), ::testing::StartsWith("Success "));
  EXPECT_THAT(Field(mail[0], "text"),
              HasSubstr("VmBackup ended - Success - S:1 W:0 E:0"));
  EXPECT_THAT(Field(mail[0], "text"), HasSubstr("DEV-RH6"));
  EXPECT_FALSE(mail[0].fields().at("tls").bool_value());  // mail_starttls=false
}

// No secret anywhere it should not be: a distributed run under mutual TLS
// with a canary pool password and a canary SMTP password, its e-mail
// report sent with AUTH; then the canaries and every session ref the
// simulator handed out are looked for in every process's output and
// command line, every log, the journal's raw bytes, status.log, the
// e-mail and the share. Zero hits is the test.
class CanaryTest : public MailReportTest {
 protected:
  static constexpr char kPoolPassword[] = "canary-pool-Zq8xT4pL";
  static constexpr char kSmtpPassword[] = "canary-smtp-Vw3nR7kD";

  SimProcess::Options SimOptions() override {
    SimProcess::Options o;
    const CommandResult demo = testing::RunCommand(
        {testing::BinDir() + "/xapi-sim", "--print-demo-fixture"});
    EXPECT_EQ(demo.exit_code, 0);
    o.fixture_json =
        absl::StrReplaceAll(demo.output, {{"demo-password", kPoolPassword}});
    return o;
  }

  void SetUp() override {
    MailReportTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_EQ(sim_->password(), kPoolPassword);
    certs_ = JoinPath(dir_, "certs");
    std::vector<std::string> argv = {
        "/bin/bash", JoinPath(testing::SourceDir(), "deploy/gen-certs.sh"),
        certs_, "localhost"};
    for (const auto& [ref, host] : hosts_)
      argv.push_back(host.name_label + ":" + host.uuid);
    const CommandResult r = testing::RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // /proc/PID/cmdline of `pid`, NULs as spaces.
  static std::string CommandLine(pid_t pid) {
    std::string text =
        PosixFilesystem()
            .ReadFile(absl::StrCat("/proc/", pid, "/cmdline"), 1 << 20)
            .value_or("");
    std::replace(text.begin(), text.end(), '\0', ' ');
    return text;
  }

  // "FILE: NEEDLE" for each needle found in a file below `dir` (but the
  // files in `skip`).
  void Scan(const std::string& dir, const std::vector<std::string>& needles,
            const std::set<std::string>& skip, std::vector<std::string>* hits,
            int* files) {
    absl::StatusOr<std::vector<DirEntry>> entries = fs_.ListDir(dir);
    if (!entries.ok()) return;
    for (const DirEntry& e : *entries) {
      const std::string path = JoinPath(dir, e.name);
      absl::StatusOr<FileInfo> info = fs_.Stat(path);
      if (!info.ok() || skip.count(path) != 0) continue;
      if (info->is_dir) {
        Scan(path, needles, skip, hits, files);
        continue;
      }
      if (!info->is_regular) continue;
      absl::StatusOr<std::string> bytes = fs_.ReadFile(path, 1ull << 32);
      if (!bytes.ok()) continue;
      ++*files;
      for (const std::string& n : needles)
        if (absl::StrContains(*bytes, n)) hits->push_back(path + ": " + n);
    }
  }
};

constexpr char CanaryTest::kPoolPassword[];
constexpr char CanaryTest::kSmtpPassword[];

TEST_F(CanaryTest, NoSecretReachesALogAJournalAReportTheShareOrArgv) {
  StartSink(/*tls=*/true, "backup", kSmtpPassword);
  StartCoordinator();
  StartAllAgents();
  const std::string config = Config(MailConfig("backup", kSmtpPassword) +
                                    "pool_db_backup=1\nvm-export=.*\n");
  std::vector<std::string> argv = {testing::BinDir() + "/vmbackup", "run",
                                   config, "--coordinator=" + Address()};
  AddTransport("cli", &argv);
  const pid_t cli = testing::StartCommand(argv, JoinPath(dir_, "cli.log"));
  ASSERT_GT(cli, 0);
  // Every process's command line, looked at while the run goes on.
  std::vector<std::string> command_lines;
  std::vector<pid_t> pids = {coordinator_, cli, sim_->pid(), sink_};
  for (const auto& [name, pid] : agents_) pids.push_back(pid);
  int status = 0;
  const absl::Time until = absl::Now() + kWait;
  while (waitpid(cli, &status, WNOHANG) == 0 && absl::Now() < until) {
    for (pid_t pid : pids) command_lines.push_back(CommandLine(pid));
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(WIFEXITED(status)) << Log("cli.log");
  EXPECT_EQ(WEXITSTATUS(status), 0) << Log("cli.log");
  const v1::RunSummary run = StatusWithMail();
  EXPECT_EQ(run.mail(), "sent to ops@example.com, backup@example.com");
  ASSERT_EQ(Received().size(), 1u);
  ASSERT_GT(run.vms_size(), 5);
  // A few more commands' output: status, agents, runs.
  std::string outputs;
  for (const char* command : {"status", "agents", "runs"})
    outputs += Cli({command}).output;

  std::vector<std::string> needles = {kPoolPassword, kSmtpPassword,
                                      absl::Base64Escape(kSmtpPassword),
                                      absl::Base64Escape(kPoolPassword)};
  ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
  ASSERT_GE(state.issued_session_refs_size(), 2);  // coordinator, inventory
  for (const std::string& ref : state.issued_session_refs()) {
    needles.push_back(ref);
    needles.push_back(std::string(absl::StripPrefix(ref, "OpaqueRef:")));
  }
  std::vector<std::string> hits;
  for (const std::string& line : command_lines)
    for (const std::string& n : needles)
      if (absl::StrContains(line, n))
        hits.push_back("cmdline " + line + ": " + n);
  for (const std::string& n : needles)
    if (absl::StrContains(outputs, n)) hits.push_back("CLI output: " + n);
  // Every file of the test's folder: the daemons' and the CLI's output,
  // the coordinator's journal and state, the agents' state folders,
  // status.log, the received e-mail (raw and decoded), the share. Not the
  // files that hold a secret by design: the password files and the SMTP
  // server's.
  int files = 0;
  Scan(dir_, needles,
       {password_file_, JoinPath(dir_, "smtp-password"),
        JoinPath(dir_, "smtp-server-password")},
       &hits, &files);
  EXPECT_GT(files, 30);
  EXPECT_THAT(hits, ::testing::IsEmpty());
  // The journal was among them, raw.
  EXPECT_TRUE(fs_.Stat(JoinPath(dir_, "coordinator", "journal.db")).ok());
}

}  // namespace
}  // namespace vmb
