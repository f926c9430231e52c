// SPDX-License-Identifier: Apache-2.0
// The coordinator commands of the command line (run, status, runs, agents,
// cancel) against a hand-written fake Control service on 127.0.0.1:0:
// output, exit codes, JSON that parses back, errors that name the address,
// reconnecting a broken watch, giving up, and Ctrl-C.
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>

#include "coordinator/cli.h"
#include "coordinator/control_cli.h"
#include "coordinator/grpc_status.h"
#include "coordinator/preview.h"
#include "proto/coordinator.grpc.pb.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::coordinator {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kMiB = 1 << 20;

// A Control service with scripted answers that records what it was asked.
// Thread-safe.
class FakeControlService final : public v1::Control::CallbackService {
 public:
  // What the n-th WatchRun call plays (the last script repeats): its
  // updates, then `end` — or, with `hold`, nothing until the client cancels,
  // after calling `on_hold`.
  struct WatchScript {
    std::vector<v1::RunUpdate> updates;
    grpc::Status end = grpc::Status::OK;
    bool hold = false;
    std::function<void()> on_hold;
  };

  void SetPreview(v1::PreviewReport report) {
    absl::MutexLock lock(&mu_);
    preview_ = std::move(report);
  }
  void SetStartStatus(grpc::Status s) {
    absl::MutexLock lock(&mu_);
    start_status_ = std::move(s);
  }
  // GetRun answers with the run of that id; "" with the last one added.
  void AddRun(const v1::RunSummary& run) {
    absl::MutexLock lock(&mu_);
    runs_.push_back(run);
  }
  void SetAgents(v1::ListAgentsResponse agents) {
    absl::MutexLock lock(&mu_);
    agents_ = std::move(agents);
  }
  // The next WatchRun call plays scripts[0], the one after scripts[1], ...
  void SetWatchScripts(std::vector<WatchScript> scripts) {
    absl::MutexLock lock(&mu_);
    scripts_ = std::move(scripts);
    script_base_ = watched_.size();
  }

  std::vector<v1::StartRunRequest> start_requests() const {
    absl::MutexLock lock(&mu_);
    return start_requests_;
  }
  std::vector<v1::StartRunRequest> preview_requests() const {
    absl::MutexLock lock(&mu_);
    return preview_requests_;
  }
  std::vector<std::string> watched() const {
    absl::MutexLock lock(&mu_);
    return watched_;
  }
  std::vector<std::string> cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  std::vector<uint32_t> list_limits() const {
    absl::MutexLock lock(&mu_);
    return list_limits_;
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  grpc::ServerUnaryReactor* StartRun(grpc::CallbackServerContext* context,
                                     const v1::StartRunRequest* request,
                                     v1::StartRunResponse* response) override {
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      start_requests_.push_back(*request);
      status = start_status_;
      response->set_run_id("run-1");
    }
    return Finish(context, status);
  }

  grpc::ServerUnaryReactor* Preview(grpc::CallbackServerContext* context,
                                    const v1::StartRunRequest* request,
                                    v1::PreviewReport* response) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      preview_requests_.push_back(*request);
      *response = preview_;
    }
    return Finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* context,
                                   const v1::GetRunRequest* request,
                                   v1::RunSummary* response) override {
    grpc::Status status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("run ", request->run_id(), " not found"));
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      for (const v1::RunSummary& run : runs_) {
        if (run.run_id() == request->run_id() || request->run_id().empty()) {
          *response = run;
          status = grpc::Status::OK;
        }
      }
    }
    return Finish(context, status);
  }

  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* context,
                                     const v1::ListRunsRequest* request,
                                     v1::ListRunsResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      list_limits_.push_back(request->limit());
      for (auto it = runs_.rbegin(); it != runs_.rend(); ++it) {
        *response->add_runs() = *it;
      }
    }
    return Finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ListAgents(
      grpc::CallbackServerContext* context, const v1::ListAgentsRequest*,
      v1::ListAgentsResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      *response = agents_;
    }
    return Finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext* context,
                                      const v1::CancelRunRequest* request,
                                      v1::CancelRunResponse*) override {
    grpc::Status status(grpc::StatusCode::NOT_FOUND, "no such run");
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      for (const v1::RunSummary& run : runs_) {
        if (run.run_id() == request->run_id()) status = grpc::Status::OK;
      }
      if (status.ok()) cancelled_.push_back(request->run_id());
    }
    return Finish(context, status);
  }

  grpc::ServerWriteReactor<v1::RunUpdate>* WatchRun(
      grpc::CallbackServerContext*, const v1::GetRunRequest* request) override {
    WatchScript script;
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      const size_t n = watched_.size() - script_base_;
      watched_.push_back(request->run_id());
      if (!scripts_.empty())
        script = scripts_[std::min(n, scripts_.size() - 1)];
    }
    return new Writer(std::move(script));
  }

 private:
  // Plays one script; deletes itself when done.
  class Writer final : public grpc::ServerWriteReactor<v1::RunUpdate> {
   public:
    explicit Writer(WatchScript script) : script_(std::move(script)) {
      WriteNext();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::CANCELLED);
        return;
      }
      WriteNext();
    }
    void OnCancel() override {
      if (script_.hold) Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    void WriteNext() {
      if (next_ < script_.updates.size()) {
        StartWrite(&script_.updates[next_++]);
      } else if (!script_.hold) {
        Finish(script_.end);
      } else if (script_.on_hold) {
        script_.on_hold();
      }
    }
    WatchScript script_;
    size_t next_ = 0;
  };

  static grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                          const grpc::Status& status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  mutable absl::Mutex mu_;
  v1::PreviewReport preview_ ABSL_GUARDED_BY(mu_);
  grpc::Status start_status_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::RunSummary> runs_ ABSL_GUARDED_BY(mu_);
  v1::ListAgentsResponse agents_ ABSL_GUARDED_BY(mu_);
  std::vector<WatchScript> scripts_ ABSL_GUARDED_BY(mu_);
  size_t script_base_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::StartRunRequest> start_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::StartRunRequest> preview_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> watched_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> list_limits_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

FakeControlService::WatchScript Script(std::vector<v1::RunUpdate> updates,
                                       grpc::Status end = grpc::Status::OK) {
  FakeControlService::WatchScript script;
  script.updates = std::move(updates);
  script.end = std::move(end);
  return script;
}

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

uint64_t Ms(absl::Time t) {
  return static_cast<uint64_t>(absl::ToUnixMillis(t));
}

class ControlCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    // The client pings every 30 s on a quiet watch (control_client.h).
    builder.AddChannelArgument(
        GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
    dir_ = vmb::testing::MakeTempDir("control-cli");
    config_ = absl::StrCat(dir_, "/weekly.cfg");
    std::ofstream(config_) << "backup_dir=/snapshots/BACKUPS\nvm-export=.*\n";

    env_.clock = &clock_;
    env_.terminal_width = [] { return 120; };
    env_.watch.redraw_interval = absl::ZeroDuration();  // every update drawn
  }
  void TearDown() override {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  // RunCli with `args` and then --coordinator ADDRESS --plaintext.
  CliRun Cli(std::vector<std::string> args, bool connect_flags = true) {
    if (connect_flags) {
      args.insert(args.end(), {"--coordinator", address_, "--plaintext"});
    }
    std::istringstream in;
    std::ostringstream out, err;
    const int code = RunCli(args, {&in, &out, &err}, env_);
    return {code, out.str(), err.str()};
  }

  // A run of three VMs as the coordinator would report it.
  v1::RunSummary RunningRun() {
    v1::RunSummary run;
    run.set_run_id("run-1");
    run.set_state(v1::RUN_STATE_RUNNING);
    run.set_config_name("weekly.cfg");
    run.set_backup_dir("/snapshots/BACKUPS");
    run.set_started_unix_ms(Ms(clock_.Now() - absl::Minutes(1)));
    for (const char* name : {"vm-a", "vm-b", "vm-c"}) {
      v1::VmOutcome* vm = run.add_vms();
      vm->set_vm_uuid(absl::StrCat("uuid-", name));
      vm->set_vm_name(name);
      vm->set_host_name(name == std::string("vm-c") ? "xcp-host2"
                                                    : "xcp-host1");
      vm->set_kind(v1::EXPORT_KIND_VM);
      vm->mutable_status()->set_phase(v1::JOB_PHASE_QUEUED);
      vm->mutable_status()->set_attempt(1);
    }
    return run;
  }

  // Updates: vm-a exports (512 of 1024 MiB in 10 s), then vm-a done and
  // vm-c failed, then the final summary (exit code 2).
  std::vector<v1::RunUpdate> Updates() {
    std::vector<v1::RunUpdate> updates(3);
    v1::RunSummary run = RunningRun();
    v1::JobStatus* a = run.mutable_vms(0)->mutable_status();
    a->set_phase(v1::JOB_PHASE_EXPORT);
    a->set_started_unix_ms(Ms(clock_.Now() - absl::Seconds(10)));
    a->set_bytes_done(512 * kMiB);
    a->set_bytes_total(1024 * kMiB);
    *updates[0].mutable_summary() = run;
    updates[0].add_log_lines("log: vm-export begin vm-a");

    a->set_phase(v1::JOB_PHASE_SUCCEEDED);
    a->set_backup_bytes(300 * kMiB);
    a->set_finished_unix_ms(Ms(clock_.Now()));
    v1::JobStatus* c = run.mutable_vms(2)->mutable_status();
    c->set_phase(v1::JOB_PHASE_FAILED);
    c->set_status_token("SNAPSHOT-FAILED");
    c->set_error_message("VM.snapshot: SR_FULL");
    run.mutable_vms(1)->mutable_status()->set_phase(v1::JOB_PHASE_SNAPSHOT);
    *updates[1].mutable_summary() = run;
    updates[1].add_log_lines("log: vm-a success");
    updates[1].add_log_lines("log: vm-c\x1b[2J failed");

    run.mutable_vms(1)->mutable_status()->set_phase(v1::JOB_PHASE_SUCCEEDED);
    run.set_state(v1::RUN_STATE_FAILED);
    run.set_succeeded(2);
    run.set_errors(1);
    run.set_exit_code(2);
    run.set_summary_line("VmBackup ended - Failure - S:2 W:0 E:1");
    run.set_finished_unix_ms(Ms(clock_.Now()));
    *updates[2].mutable_summary() = run;
    updates[2].add_log_lines("log: vm-b success");
    updates[2].add_log_lines(
        "2026-11-26-(03:20:44) - VmBackup ended - Failure - S:2 W:0 E:1");
    updates[2].set_final(true);
    return updates;
  }

  FakeControlService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::string dir_;
  std::string config_;
  vmb::testing::FakeClock clock_;
  CliEnvironment env_;
};

TEST_F(ControlCliTest, RunOnATerminalDrawsProgressAndEndsWithTheSummary) {
  service_.SetWatchScripts({Script(Updates())});
  env_.stdout_is_terminal = true;
  CliRun r = Cli({"run", config_, "compress=zstd", "pre_clean=True"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(r.err, "");

  // The config was read here and sent as text, with its name and overrides.
  ASSERT_EQ(service_.start_requests().size(), 1u);
  const v1::StartRunRequest request = service_.start_requests()[0];
  EXPECT_EQ(request.config_text(),
            "backup_dir=/snapshots/BACKUPS\nvm-export=.*\n");
  EXPECT_EQ(request.config_name(), "weekly.cfg");
  EXPECT_EQ(request.config_path(), "");
  EXPECT_THAT(request.overrides(),
              ElementsAre("compress=zstd", "pre_clean=True"));
  EXPECT_THAT(service_.watched(), ElementsAre("run-1"));

  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("run run-1 on the coordinator at ",
                                            address_, "\n")));
  EXPECT_THAT(r.out, HasSubstr("  config weekly.cfg, backup_dir "
                               "/snapshots/BACKUPS, 3 VMs\n"));
  // The live line of vm-a's export: bar, percent, bytes, rate, ETA.
  EXPECT_THAT(r.out, HasSubstr("  vm-a"));
  EXPECT_THAT(r.out, HasSubstr("export     [###"));
  EXPECT_THAT(r.out, HasSubstr(" 50%  512 MiB/1.0 GiB  51.2 MiB/s  ETA 10s"));
  EXPECT_THAT(r.out, HasSubstr("  2 queued\n"));
  // Redrawn in place, finished VMs as permanent lines.
  EXPECT_THAT(r.out, HasSubstr("\r\x1b["));
  EXPECT_THAT(r.out,
              HasSubstr("OK        vm-a on xcp-host1: 300 MiB in 10s\n"));
  EXPECT_THAT(r.out, HasSubstr("FAILED    vm-c on xcp-host2: SNAPSHOT-FAILED: "
                               "VM.snapshot: SR_FULL\n"));
  EXPECT_THAT(r.out, HasSubstr("OK        vm-b on xcp-host1\n"));
  // The log lines are not printed on a terminal; the summary line ends it.
  EXPECT_THAT(r.out, Not(HasSubstr("log:")));
  EXPECT_TRUE(absl::EndsWith(r.out, "VmBackup ended - Failure - S:2 W:0 E:1\n"))
      << r.out;
}

TEST_F(ControlCliTest, RunWithoutATerminalPrintsTheLog) {
  service_.SetWatchScripts({Script(Updates())});
  CliRun r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(r.out,
            "log: vm-export begin vm-a\n"
            "log: vm-a success\n"
            "log: vm-c\\x1b[2J failed\n"
            "log: vm-b success\n"
            "2026-11-26-(03:20:44) - VmBackup ended - Failure - S:2 W:0 E:1\n");
  EXPECT_THAT(r.out, Not(HasSubstr("\x1b")));

  // Exit code and summary come from the final update; a summary line the
  // log did not end with is printed.
  std::vector<v1::RunUpdate> updates = Updates();
  updates[2].mutable_summary()->set_exit_code(0);
  updates[2].mutable_summary()->set_summary_line("VmBackup ended - Success");
  updates[2].mutable_summary()->set_fatal("share went away");
  updates[2].clear_log_lines();
  service_.SetWatchScripts({Script(updates)});
  r = Cli({"run", config_});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(
      absl::EndsWith(r.out, "log: vm-b success\nVmBackup ended - Success\n") ||
      absl::EndsWith(r.out, "failed\nVmBackup ended - Success\n"))
      << r.out;
  EXPECT_THAT(r.err, HasSubstr("vmbackup: error: share went away"));
}

TEST_F(ControlCliTest, BrokenWatchReconnectsAndFinishes) {
  const std::vector<v1::RunUpdate> updates = Updates();
  const std::string whole_log =
      "log: vm-export begin vm-a\n"
      "log: vm-a success\n"
      "log: vm-c\\x1b[2J failed\n"
      "log: vm-b success\n"
      "2026-11-26-(03:20:44) - VmBackup ended - Failure - S:2 W:0 E:1\n";
  // A reopened watch starts with the whole log the coordinator holds, as
  // the coordinator's WatchRun does: what was printed is not printed again.
  v1::RunUpdate replay = updates[1];
  replay.mutable_log_lines()->Clear();
  for (const v1::RunUpdate* u : {&updates[0], &updates[1]}) {
    for (const std::string& line : u->log_lines()) replay.add_log_lines(line);
  }
  service_.SetWatchScripts(
      {Script({updates[0]},
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "going away")),
       Script({replay, updates[2]})});
  CliRun r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(service_.watched(), ElementsAre("run-1", "run-1"));
  EXPECT_EQ(r.out, whole_log);
  EXPECT_THAT(r.err, HasSubstr("going away; reconnecting (the run goes on)"));
  EXPECT_THAT(r.err,
              HasSubstr(absl::StrCat("reconnected to the coordinator at ",
                                     address_, "; watching run run-1")));
  // It paused before reconnecting.
  EXPECT_THAT(clock_.sleeps(), Not(::testing::IsEmpty()));

  // A restarted coordinator holds no log of before: what it sends is new.
  service_.SetWatchScripts(
      {Script({updates[0]},
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "going away")),
       Script({updates[1], updates[2]})});
  r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, whole_log);

  // A stream that ends cleanly without the final update is reopened too.
  service_.SetWatchScripts({Script({updates[0]}), Script({updates[2]})});
  r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("closed the watch; reconnecting"));
}

TEST_F(ControlCliTest, WatchGivesUpAfterTheCoordinatorWasGoneLong) {
  service_.SetWatchScripts(
      {Script({}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"))});
  const absl::Time start = clock_.Now();
  CliRun r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_GE(clock_.Now() - start, absl::Minutes(10));
  EXPECT_LT(clock_.Now() - start, absl::Minutes(11));
  EXPECT_THAT(r.err, HasSubstr("nothing heard from the coordinator at " +
                               address_ + " for 10m00s"));
  EXPECT_THAT(r.err, HasSubstr("run run-1 may still be going: vmbackup status "
                               "run-1 --coordinator " +
                               address_ + " --plaintext"));
  // Pauses double up to their maximum (15 s): some 40 reconnects in 10 min.
  EXPECT_THAT(service_.watched().size(), ::testing::Gt(30u));
  EXPECT_THAT(service_.watched().size(), ::testing::Lt(100u));
}

TEST_F(ControlCliTest, InterruptStopsWatchingButNotTheRun) {
  absl::Notification cancel;
  env_.cancel = &cancel;
  env_.stdout_is_terminal = true;
  FakeControlService::WatchScript script;
  script.updates = {Updates()[0]};
  script.hold = true;
  script.on_hold = [&cancel] { cancel.Notify(); };
  service_.SetWatchScripts({script});
  CliRun r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("stopped watching; run run-1 goes on on the "
                               "coordinator at " +
                               address_));
  EXPECT_THAT(r.err, HasSubstr("to cancel it: vmbackup cancel run-1 "
                               "--coordinator " +
                               address_ + " --plaintext"));
  EXPECT_THAT(service_.cancelled(), ::testing::IsEmpty());
}

TEST_F(ControlCliTest, PreviewExitCodes) {
  v1::PreviewReport report;
  report.set_source("weekly.cfg");
  report.set_valid(true);
  service_.SetPreview(report);
  CliRun r = Cli({"run", config_, "preview", "compress=false"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, FormatPreview(report));
  ASSERT_EQ(service_.preview_requests().size(), 1u);
  EXPECT_EQ(service_.preview_requests()[0].config_name(), "weekly.cfg");
  EXPECT_THAT(service_.preview_requests()[0].overrides(),
              ElementsAre("compress=false"));
  EXPECT_TRUE(service_.start_requests().empty());

  report.add_warnings()->set_message("vm-export=x matches no VM");
  service_.SetPreview(report);
  r = Cli({"run", config_, "PREVIEW"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("vm-export=x matches no VM"));

  report.set_valid(false);
  report.set_error("backup_dir /x does not exist");
  service_.SetPreview(report);
  r = Cli({"run", config_, "preview=true", "--json"});
  EXPECT_EQ(r.code, 2);
  v1::PreviewReport parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok())
      << r.out;
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, report));
  EXPECT_THAT(r.out, HasSubstr("\"valid\": false"));
}

TEST_F(ControlCliTest, StartRunErrorsAreOneLine) {
  service_.SetStartStatus(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                   "run run-0 is using /snapshots/BACKUPS"));
  CliRun r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "vmbackup: error: run run-0 is using /snapshots/BACKUPS\n");
  EXPECT_TRUE(service_.watched().empty());
}

TEST_F(ControlCliTest, StatusHumanAndJson) {
  v1::RunSummary run = Updates()[2].summary();
  service_.AddRun(run);
  CliRun r = Cli({"status", "run-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("run run-1: failed\n"));
  EXPECT_THAT(r.out, HasSubstr("  summary:     VmBackup ended - Failure - "
                               "S:2 W:0 E:1\n"));
  EXPECT_THAT(r.out, HasSubstr("  vm-c  xcp-host2  vm-export  FAILED"));
  EXPECT_THAT(r.out, HasSubstr("SNAPSHOT-FAILED: VM.snapshot: SR_FULL\n"));

  // No id: the newest run.
  EXPECT_EQ(Cli({"status"}).out, r.out);

  r = Cli({"status", "--json", "run-1"});
  EXPECT_EQ(r.code, 0);
  v1::RunSummary parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, run));
  // Proto field names, every field even when zero, enums by name, 64-bit
  // numbers as strings (proto3 JSON).
  EXPECT_THAT(r.out, HasSubstr("\"run_id\": \"run-1\""));
  EXPECT_THAT(r.out, HasSubstr("\"state\": \"RUN_STATE_FAILED\""));
  EXPECT_THAT(r.out, HasSubstr("\"warnings\": 0"));
  EXPECT_THAT(r.out, HasSubstr("\"bytes_total\": \"0\""));
}

TEST_F(ControlCliTest, UnknownRunIsNotFound) {
  CliRun r = Cli({"status", "nope"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err,
              HasSubstr("no run nope on the coordinator at " + address_));
  r = Cli({"status"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("has no runs yet"));
  r = Cli({"cancel", "nope"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("no run nope"));
  // A watch of a run the coordinator does not know stops at once.
  service_.SetWatchScripts(
      {Script({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "gone"))});
  r = Cli({"run", config_});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("no run run-1 on the coordinator"));
  EXPECT_EQ(service_.watched().size(), 1u);
}

TEST_F(ControlCliTest, RunsAndAgents) {
  v1::RunSummary old_run = Updates()[2].summary();
  old_run.set_run_id("run-0");
  service_.AddRun(old_run);
  service_.AddRun(Updates()[2].summary());
  CliRun r = Cli({"runs", "--limit", "5"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(service_.list_limits(), ElementsAre(5u));
  EXPECT_THAT(r.out, HasSubstr("RUN    STATE   STARTED"));
  EXPECT_LT(r.out.find("run-1  failed"), r.out.find("run-0  failed"));
  EXPECT_THAT(r.out, HasSubstr("S:2 W:0 E:1  weekly.cfg\n"));
  r = Cli({"runs", "--json"});
  EXPECT_THAT(service_.list_limits(), ElementsAre(5u, 20u));
  v1::ListRunsResponse runs;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &runs).ok());
  ASSERT_EQ(runs.runs_size(), 2);
  EXPECT_EQ(runs.runs(0).run_id(), "run-1");

  v1::ListAgentsResponse agents;
  v1::AgentInfo* a = agents.add_agents();
  a->mutable_identity()->set_agent_id("agent-1");
  a->mutable_identity()->set_host_name("xcp-host1");
  a->mutable_identity()->set_version("0.1.0");
  a->set_live(true);
  a->set_running_jobs(1);
  a->set_max_jobs(2);
  a->set_last_seen_unix_ms(Ms(clock_.Now() - absl::Seconds(4)));
  service_.SetAgents(agents);
  r = Cli({"agents"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out,
            "AGENT    HOST       STATE  JOBS  LAST SEEN  VERSION  CERTIFICATE\n"
            "agent-1  xcp-host1  live   1/2   4s ago     0.1.0    -\n");
  r = Cli({"agents", "--json"});
  v1::ListAgentsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, agents));
  EXPECT_THAT(r.out, HasSubstr("\"agent_id\": \"agent-1\""));
}

TEST_F(ControlCliTest, Cancel) {
  service_.AddRun(RunningRun());
  CliRun r = Cli({"cancel", "run-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(service_.cancelled(), ElementsAre("run-1"));
  EXPECT_THAT(r.out, HasSubstr("cancellation of run run-1 requested"));
}

TEST_F(ControlCliTest, UnreachableCoordinatorNamesTheAddress) {
  // A port nothing listens on: this test's server, stopped.
  server_->Shutdown(absl::ToChronoTime(absl::Now()));
  server_->Wait();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"status"},
                                             {"runs"},
                                             {"agents"},
                                             {"cancel", "run-1"},
                                             {"run", config_},
                                             {"run", config_, "preview"}}) {
    CliRun r = Cli(args);
    EXPECT_EQ(r.code, 2) << args[0];
    EXPECT_THAT(r.err, HasSubstr("vmbackup: error: cannot reach the "
                                 "coordinator at " +
                                 address_ + ": "))
        << args[0];
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(ControlCliTest, MutualTlsOrPlaintextOnLoopback) {
  CliRun r = Cli({"status", "--coordinator", address_}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("to connect to " + address_ +
                               ": mutual TLS needs --mtls-ca, --mtls-cert "
                               "and --mtls-key"));
  r = Cli({"status", "--coordinator", address_, "--mtls-ca", "ca.crt"}, false);
  EXPECT_THAT(r.err, HasSubstr("needs --mtls-cert and --mtls-key too"));
  r = Cli({"status", "--coordinator", address_, "--mtls-ca=/nonexistent/ca",
           "--mtls-cert=c", "--mtls-key=k"},
          false);
  EXPECT_THAT(r.err, HasSubstr("--mtls-ca /nonexistent/ca: No such file"));
  // Plaintext to an address that is not loopback: refused before any call.
  r = Cli({"status", "--coordinator", "10.255.255.1:1", "--plaintext",
           "--timeout", "1"},
          false);
  EXPECT_THAT(r.err,
              HasSubstr("--plaintext refuses --coordinator 10.255.255.1:1"));
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(service_.calls(), 0);
}

TEST_F(ControlCliTest, AFlagfileGivesFlagsTheCommandLineOverrides) {
  service_.AddRun(RunningRun());
  const std::string dir = testing::MakeTempDir("flagfile");
  const std::string file = dir + "/cli.flags";
  {
    std::ofstream out(file);
    out << "# the operator's defaults\n\n--coordinator=10.255.255.1:1\n"
        << "--plaintext\n";
  }
  // From --flagfile: the file's coordinator is refused for plaintext ...
  CliRun r = Cli({"status", "--flagfile", file}, false);
  EXPECT_THAT(r.err,
              HasSubstr("--plaintext refuses --coordinator 10.255.255.1:1"));
  // ... and the command line's wins.
  r = Cli({"status", "--flagfile=" + file, "--coordinator", address_}, false);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("run run-1: running"));
  // From $VMBACKUP_FLAGFILE, the same.
  env_.getenv = [&file](const std::string& name) {
    return name == kFlagfileEnvVar ? file : std::string();
  };
  r = Cli({"status", "--coordinator", address_}, false);
  EXPECT_EQ(r.code, 0) << r.err;
  env_.getenv = nullptr;
  // A line that is not a flag names the file and line.
  {
    std::ofstream out(file);
    out << "--plaintext\ncoordinator=x\n";
  }
  r = Cli({"status", "--flagfile", file}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr(file + ":2: 'coordinator=x' is not a flag"));
  r = Cli({"status", "--flagfile", dir + "/missing"}, false);
  EXPECT_THAT(r.err, HasSubstr("--flagfile " + dir + "/missing"));
}

TEST_F(ControlCliTest, EnvironmentNamesTheCoordinator) {
  service_.AddRun(RunningRun());
  env_.getenv = [this](const std::string& name) {
    return name == kCoordinatorEnvVar ? address_ : std::string();
  };
  CliRun r = Cli({"status", "--plaintext"}, false);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("run run-1: running"));
  // The flag wins over the environment.
  env_.getenv = [](const std::string& name) {
    return name == kCoordinatorEnvVar ? std::string("127.0.0.1:1")
                                      : std::string();
  };
  r = Cli({"status"});
  EXPECT_EQ(r.code, 0) << r.err;
  // Without either: the default address (named by the --plaintext error,
  // which needs no connection).
  env_.getenv = nullptr;
  r = Cli({"status"}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("to connect to 127.0.0.1:7441: mutual TLS"));
  env_.getenv = [](const std::string&) { return std::string(); };
  r = Cli({"status"}, false);
  EXPECT_THAT(r.err, HasSubstr("to connect to 127.0.0.1:7441: mutual TLS"));
}

TEST_F(ControlCliTest, UsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"run"}, "usage: vmbackup run CONFIG"},
      {{"run", config_, "colour=blue"}, "unknown argument 'colour=blue'"},
      {{"run", config_, "--json"},
       "--json applies to vmbackup run CONFIG "
       "preview only"},
      {{"run", dir_ + "/missing.cfg"},
       "config file " + dir_ + "/missing.cfg does not exist"},
      {{"run", dir_}, "is not a file"},
      {{"status", "a", "b"}, "usage: vmbackup status [RUN_ID]"},
      {{"runs", "x"}, "usage: vmbackup runs"},
      {{"runs", "--limit", "0"}, "--limit 0: want a whole number >= 1"},
      {{"status", "--limit", "3"}, "--limit is a flag of vmbackup runs"},
      {{"cancel"}, "usage: vmbackup cancel RUN_ID"},
      {{"cancel", "r", "--json"}, "vmbackup cancel has no --json"},
      {{"agents", "--frobnicate"}, "unknown flag --frobnicate"},
      {{"agents", "--timeout", "soon"}, "--timeout soon: want a positive"},
      {{"agents", "--coordinator", "localhost"}, "want HOST:PORT"},
      {{"agents", "--plaintext=yes"}, "--plaintext takes no value"},
  };
  for (const auto& [args, message] : cases) {
    std::istringstream in;
    std::ostringstream out, err;
    std::vector<std::string> full = args;
    if (std::find(full.begin(), full.end(), "--coordinator") == full.end()) {
      full.insert(full.end(), {"--coordinator", address_, "--plaintext"});
    }
    EXPECT_EQ(RunCli(full, {&in, &out, &err}, env_), 2)
        << ::testing::PrintToString(args);
    EXPECT_THAT(err.str(), HasSubstr(message))
        << ::testing::PrintToString(args);
  }
  EXPECT_EQ(service_.calls(), 0);
  // Standalone flags before a coordinator command, or its flags before it.
  CliRun r = Cli({"--json", "status"}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("'status' is a coordinator command: write it "
                               "first"));
  r = Cli({"--coordinator", address_, "status"}, false);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--coordinator is a flag of the coordinator "
                               "commands; it comes after the command word"));
}

TEST_F(ControlCliTest, HelpPerCommand) {
  for (const char* command : {"run", "status", "runs", "agents", "cancel"}) {
    CliRun r = Cli({command, "--help"}, false);
    EXPECT_EQ(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("usage: vmbackup ", command)));
    EXPECT_THAT(r.out, HasSubstr("--plaintext"));
  }
  EXPECT_THAT(Cli({"runs", "--help"}, false).out, HasSubstr("--limit N"));
  EXPECT_THAT(Cli({"help"}, false).out, HasSubstr("vmbackup status [RUN_ID]"));
}

TEST(GrpcStatusTest, CodesAndMessagesRoundTrip) {
  for (int code = 1; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code), "why");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), "why");
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(42), "x"))
                .error_code(),
            grpc::StatusCode::UNKNOWN);
}

}  // namespace
}  // namespace vmb::coordinator
