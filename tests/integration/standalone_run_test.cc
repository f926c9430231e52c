// SPDX-License-Identifier: Apache-2.0
// The standalone run, as cron runs it: the real `vmbackup` binary against a
// real xapi-sim process on loopback, then everything checked from outside.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "re2/re2.h"

#include "common/backup/backup_layout.h"
#include "common/backup/backup_manifest.h"
#include "common/base/filesystem.h"
#include "coordinator/password_file.h"
#include "tests/testing/backup_check.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::vmb::testing::CommandResult;
using ::vmb::testing::SimProcess;

class StandaloneRunTest : public ::testing::Test {
 protected:
  void StartSim(const std::string& fixture_json = "") {
    SimProcess::Options options;
    options.fixture_json = fixture_json;
    absl::StatusOr<std::unique_ptr<SimProcess>> sim =
        SimProcess::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK(client_->Login());
    dir_ = testing::MakeTempDir("run");
    backups_ = JoinPath(dir_, "backups");
    ASSERT_OK(fs_.CreateDir(backups_));
    ASSERT_OK(fs_.CreateDir(JoinPath(dir_, "log")));
    password_file_ = JoinPath(dir_, "pw");
    ASSERT_OK(coordinator::WritePasswordFile(password_file_, sim_->password()));
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    snapshots_before_ = state.snapshots();
    snapshot_vdis_before_ = state.snapshot_vdis();
  }

  std::string StatusLogPath() const {
    return JoinPath(dir_, "log", "status.log");
  }

  // A config file: the settings every test shares, then `lines`.
  std::string Config(const std::string& lines,
                     const std::string& name = "run.cfg") {
    const std::string path = JoinPath(dir_, name);
    std::ofstream(path) << "backup_dir=" << backups_ << "\n"
                        << "status_log=" << StatusLogPath() << "\n"
                        << lines;
    return path;
  }

  std::vector<std::string> Argv(const std::string& config) const {
    return {testing::BinDir() + "/vmbackup", "--xapi-url",   sim_->master_url(),
            "--snapshot-destroy-timeout=5s", password_file_, config};
  }

  CommandResult Run(const std::string& config) {
    CommandResult r = testing::RunCommand(Argv(config));
    last_output_ = r.output;
    return r;
  }

  void ExpectNoSnapshotsLeft() {
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    EXPECT_EQ(state.snapshots(), snapshots_before_) << last_output_;
    EXPECT_EQ(state.snapshot_vdis(), snapshot_vdis_before_) << last_output_;
    EXPECT_EQ(state.pending_tasks(), 0u);
  }

  std::vector<BackupEntry> Backups(const std::string& vm_folder) {
    absl::StatusOr<std::vector<BackupEntry>> b =
        ListBackups(fs_, JoinPath(backups_, vm_folder));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.value_or(std::vector<BackupEntry>{});
  }

  // Waits (60 s at most) until an uncommitted backup of the VM called `vm`
  // (its folder and file named after it) holds at least `bytes` of its XVA:
  // a run is in the middle of exporting it.
  bool WaitUntilWritten(const std::string& vm, uint64_t bytes) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      for (const BackupEntry& b : Backups(vm)) {
        absl::StatusOr<FileInfo> f =
            fs_.Stat(JoinPath(backups_, vm, b.name, vm + ".xva"));
        if (!b.committed && f.ok() && f->size >= bytes) return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::vector<std::string> StatusLogLines() {
    absl::StatusOr<std::string> text = fs_.ReadFile(StatusLogPath(), 1 << 20);
    if (!text.ok()) return {};
    return absl::StrSplit(*text, '\n', absl::SkipEmpty());
  }

  // SHA-256 of each disk of a VM, by userdevice.
  std::map<std::string, std::string> ExpectedDisks(const std::string& vm_name) {
    absl::StatusOr<std::map<std::string, std::string>> disks =
        sim_->VmDiskSha256s(*client_, vm_name);
    EXPECT_TRUE(disks.ok()) << vm_name << ": " << disks.status();
    return disks.value_or(std::map<std::string, std::string>());
  }

  // Checks one committed vm-export backup from outside: data equal to the
  // pool's disks, the seed's metadata files, a correct manifest.
  void CheckVmExport(const std::string& vm_name, const std::string& folder) {
    SCOPED_TRACE(vm_name);
    const std::vector<BackupEntry> backups = Backups(folder);
    ASSERT_FALSE(backups.empty());
    ASSERT_TRUE(backups.back().committed);
    const std::string dir = JoinPath(backups_, folder, backups.back().name);
    const std::string xva = JoinPath(dir, SanitizeVmName(vm_name) + ".xva");
    ASSERT_OK_AND_ASSIGN(auto disks, testing::XvaDiskSha256s(xva));
    std::multiset<std::string> got, want;
    for (const auto& [ref, sha] : disks) got.insert(sha);
    for (const auto& [dev, sha] : ExpectedDisks(vm_name)) want.insert(sha);
    EXPECT_EQ(got, want);
    ASSERT_OK_AND_ASSIGN(std::string text,
                         fs_.ReadFile(JoinPath(dir, "manifest.json"), 1 << 20));
    ASSERT_OK_AND_ASSIGN(v1::BackupManifest m, ParseManifest(text));
    EXPECT_EQ(m.vm_name(), vm_name);
    ASSERT_EQ(m.files_size(), 1);
    ASSERT_OK_AND_ASSIGN(std::string sha, testing::FileSha256(xva));
    EXPECT_EQ(m.files(0).sha256(), sha);
    EXPECT_OK(fs_.Stat(JoinPath(dir, "vm-metadata.xml")).status());
    // DISK-<device>/{vbd.cfg,vdi.cfg} for every disk.
    ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries, fs_.ListDir(dir));
    size_t disk_folders = 0;
    for (const DirEntry& e : entries) {
      if (!absl::StartsWith(e.name, "DISK-")) continue;
      ++disk_folders;
      EXPECT_OK(fs_.Stat(JoinPath(dir, e.name, "vbd.cfg")).status());
      EXPECT_OK(fs_.Stat(JoinPath(dir, e.name, "vdi.cfg")).status());
    }
    EXPECT_EQ(disk_folders, want.size());
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  PosixFilesystem fs_;
  std::string dir_;
  std::string backups_;
  std::string password_file_;
  std::string last_output_;
  uint32_t snapshots_before_ = 0;
  uint32_t snapshot_vdis_before_ = 0;
};

TEST_F(StandaloneRunTest, BacksUpTheDemoPool) {
  StartSim();
  // Every VM a backup can select: two vdi-exports (one an HVM guest), the
  // rest vm-exports, two at a time per host, and the pool database.
  const std::string config = Config(
      "pool_db_backup=1\nmax_backups=3\nper_host_concurrency=2\n"
      "vdi-export=PROD-win2012\nvdi-export=DEV-RH6\nvm-export=.*\n");
  const CommandResult r = Run(config);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("VmBackup ended - Success - S:14 W:0 E:0"));
  ExpectNoSnapshotsLeft();

  for (const char* vm :
       {"DEV mySql", "DEV-RH7", "DEV-local-build", "DEV-mySql",
        "PRD-web:8080,v2", "PROD-CentOS7-large-user-disks", "PROD-WinSvr",
        "PROD-oracle-db", "PROD-ubuntu12-benchmark", "PROD-ubuntu14",
        "TEST-debian9", "TEST-halted-local"}) {
    CheckVmExport(vm, vm);
  }
  for (const auto& [vm, dev] :
       {std::pair<std::string, std::string>{"PROD-win2012", "0"},
        {"DEV-RH6", "0"}}) {
    const std::vector<BackupEntry> b = Backups(vm);
    ASSERT_EQ(b.size(), 1u);
    ASSERT_TRUE(b[0].committed);
    ASSERT_OK_AND_ASSIGN(
        std::string sha,
        testing::FileSha256(JoinPath(backups_, vm, b[0].name, vm + ".raw")));
    EXPECT_EQ(sha, ExpectedDisks(vm)[dev]) << vm;
  }
  // The pool database.
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> dumps,
                       fs_.ListDir(JoinPath(backups_, "METADATA_xcp-host1")));
  ASSERT_EQ(dumps.size(), 1u);
  EXPECT_TRUE(ParsePoolDbFileName(dumps[0].name).has_value()) << dumps[0].name;

  // status.log in the seed's format: a begin and an end for the run and for
  // each VM.
  const std::vector<std::string> lines = StatusLogLines();
  ASSERT_EQ(lines.size(), 2u + 2u * 14u) << absl::StrJoin(lines, "\n");
  const RE2 date(R"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d,)");
  for (const std::string& line : lines) {
    EXPECT_TRUE(RE2::PartialMatch(line, "^" + date.pattern())) << line;
  }
  EXPECT_TRUE(RE2::FullMatch(lines.front(),
                             date.pattern() + R"(vmbackup\.py,[^,]+,begin)"))
      << lines.front();
  EXPECT_TRUE(RE2::FullMatch(
      lines.back(),
      date.pattern() + R"(vmbackup\.py,[^,]+,end,SUCCESS,S:14 W:0 E:0)"))
      << lines.back();
  int ends = 0;
  for (const std::string& line : lines) {
    if (RE2::FullMatch(
            line,
            date.pattern() +
                R"((vm|vdi)-export,xcp-host\d,end,SUCCESS .+,elapse:\d+ size:\d+G)")) {
      ++ends;
    }
  }
  EXPECT_EQ(ends, 14);
  EXPECT_THAT(
      r.output,
      HasSubstr("VmBackup vdi-export PROD-win2012 - ***Success*** t:0"));

  // A second run keeps max_backups and removes nothing it should keep.
  ASSERT_EQ(Run(config).exit_code, 0) << last_output_;
  EXPECT_EQ(Backups("DEV-RH7").size(), 2u);
  ExpectNoSnapshotsLeft();
}

TEST_F(StandaloneRunTest, VhdExportsConvertToThePoolsBytes) {
  StartSim();
  const CommandResult r = Run(Config(
      "vdi_export_format=vhd\nvdi_export_disks=all\nvdi-export=PROD-win2012\n"
      "vdi-export=DEV-RH6\n"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ExpectNoSnapshotsLeft();
  for (const auto& [vm, disks] :
       std::vector<std::pair<std::string,
                             std::vector<std::pair<std::string, std::string>>>>{
           {"PROD-win2012", {{"hda", "0"}, {"hdb", "1"}}},
           {"DEV-RH6", {{"xvda", "0"}}}}) {
    const std::vector<BackupEntry> b = Backups(vm);
    ASSERT_EQ(b.size(), 1u);
    ASSERT_TRUE(b[0].committed);
    for (const auto& [device, userdevice] : disks) {
      SCOPED_TRACE(vm + " " + device);
      const std::string vhd =
          JoinPath(backups_, vm, b[0].name, vm + "-" + device + ".vhd");
      const std::string raw = JoinPath(dir_, vm + "-" + device + ".raw");
      const CommandResult conv = testing::RunCommand(
          {"qemu-img", "convert", "--image-opts",
           "driver=vpc,force_size_calc=current_size,file.filename=" + vhd, "-O",
           "raw", raw});
      ASSERT_EQ(conv.exit_code, 0) << conv.output;
      ASSERT_OK_AND_ASSIGN(std::string sha, testing::FileSha256(raw));
      EXPECT_EQ(sha, ExpectedDisks(vm)[userdevice]);
    }
  }
}

// `vmbackup verify` over what real runs wrote: every backup kind passes;
// then each damage the share can do is found and named (a flipped byte, a
// truncated file, a missing disk file, an edited manifest), and a seed-era
// folder without manifest.json is a warning.
TEST_F(StandaloneRunTest, VerifyFindsEveryDamageOfTheShare) {
  StartSim();
  for (const char* lines :
       {"vm-export=DEV-RH7\nvdi_export_format=vhd\nvdi_export_disks=all\n"
        "vdi-export=PROD-win2012\n",
        "compress=gzip\nvm-export=TEST-debian9\nvdi-export=DEV-RH6\n",
        "compress=zstd\nvm-export=PROD-WinSvr\n"}) {
    const CommandResult r = Run(Config(lines));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  auto verify = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {testing::BinDir() + "/vmbackup", "verify"});
    return testing::RunCommand(args);
  };
  CommandResult v = verify({backups_});
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_THAT(v.output, HasSubstr("verify: 5 backups checked: 5 ok, 0 WARNING, "
                                  "0 ERROR"));
  auto folder = [&](const std::string& vm) {
    const std::vector<BackupEntry> b = Backups(vm);
    EXPECT_EQ(b.size(), 1u) << vm;
    return b.empty() ? std::string() : JoinPath(backups_, vm, b[0].name);
  };
  auto read = [&](const std::string& path) {
    return fs_.ReadFile(path, 1 << 30).value_or("");
  };
  auto rewrite = [&](const std::string& path, const std::string& data) {
    ASSERT_OK(fs_.RemoveFile(path));
    ASSERT_OK(WriteNewFile(fs_, path, data));
  };

  // A VmBackup.py folder: the same XVA, no manifest.
  const std::string rh7_xva = JoinPath(folder("DEV-RH7"), "DEV-RH7.xva");
  const std::string seed = JoinPath(backups_, "SEED-vm");
  const std::string seed_backup =
      JoinPath(seed, "backup-2019-01-05-(03:00:00)");
  ASSERT_OK(fs_.CreateDir(seed));
  ASSERT_OK(fs_.CreateDir(seed_backup));
  ASSERT_OK(
      WriteNewFile(fs_, JoinPath(seed_backup, "SEED-vm.xva"), read(rh7_xva)));
  ASSERT_OK(WriteNewFile(fs_, JoinPath(seed_backup, "success"), ""));

  std::string xva = read(rh7_xva);
  xva[xva.size() / 2] ^= 0x04;
  rewrite(rh7_xva, xva);
  const std::string gz =
      JoinPath(folder("TEST-debian9"), "TEST-debian9.xva.gz");
  ASSERT_EQ(truncate(gz.c_str(), static_cast<off_t>(read(gz).size() / 2)), 0);
  ASSERT_OK(
      fs_.RemoveFile(JoinPath(folder("PROD-win2012"), "PROD-win2012-hdb.vhd")));
  const std::string manifest = JoinPath(folder("PROD-WinSvr"), "manifest.json");
  ASSERT_OK_AND_ASSIGN(v1::BackupManifest m, ParseManifest(read(manifest)));
  m.mutable_files(0)->set_size(m.files(0).size() - 1);
  rewrite(manifest, FormatManifest(m));

  v = verify({backups_});
  EXPECT_EQ(v.exit_code, 2) << v.output;
  EXPECT_THAT(v.output, HasSubstr("verify: 6 backups checked: 1 ok, 1 WARNING, "
                                  "4 ERROR"));
  for (const char* line : {"ok      ", "WARNING ", "ERROR   "}) {
    EXPECT_THAT(v.output, HasSubstr(line));
  }
  EXPECT_THAT(v.output, HasSubstr("error: DEV-RH7.xva: "));
  EXPECT_THAT(v.output, HasSubstr("error: TEST-debian9.xva.gz: "));
  EXPECT_THAT(v.output, HasSubstr("error: PROD-win2012-hdb.vhd: missing"));
  EXPECT_THAT(v.output, HasSubstr("error: PROD-WinSvr.xva.zst: " +
                                  std::to_string(m.files(0).size() + 1) +
                                  " bytes, manifest.json says " +
                                  std::to_string(m.files(0).size())));
  EXPECT_THAT(v.output, HasSubstr("warning: no manifest.json"));
  EXPECT_TRUE(RE2::PartialMatch(v.output, R"(ok +\S+/DEV-RH6/backup-)"))
      << v.output;

  // --since leaves the 2019 folder out; --sample checks a share of them.
  v = verify({backups_, "--since", "1d"});
  EXPECT_THAT(v.output, HasSubstr("verify: 5 backups checked"));
  v = verify({"--sample=20%", seed, folder("DEV-RH6")});
  EXPECT_THAT(v.output, HasSubstr("verify: 1 backup checked"));
  v = verify({"--json", seed});
  EXPECT_EQ(v.exit_code, 1) << v.output;
  EXPECT_THAT(v.output, HasSubstr("\"result\": \"WARNING\""));
}

// verify_after_run in the standalone form: the run's log says what was
// read back; a damaged older backup never changes the run's exit code.
TEST_F(StandaloneRunTest, VerifyAfterRunReadsOlderBackupsBack) {
  StartSim();
  const std::string config =
      Config("verify_after_run=100\nvm-export=DEV-RH7\n");
  CommandResult r = Run(config);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("verify_after_run=100%: 0 backups read back"));
  const std::vector<BackupEntry> b = Backups("DEV-RH7");
  ASSERT_EQ(b.size(), 1u);
  const std::string xva =
      JoinPath(backups_, "DEV-RH7", b[0].name, "DEV-RH7.xva");
  ASSERT_EQ(truncate(xva.c_str(), 5 << 20), 0);
  r = Run(config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("VmBackup ended - Success - S:1 W:0 E:0"));
  EXPECT_THAT(r.output, HasSubstr("verify_after_run=100%: 1 backup read back: "
                                  "0 ok, 0 WARNING, 1 ERROR"));
  EXPECT_THAT(r.output,
              HasSubstr("  ERROR " + JoinPath(backups_, "DEV-RH7", b[0].name) +
                        ": DEV-RH7.xva: "));
}

TEST_F(StandaloneRunTest, ARuleThatMatchesNothingEndsWithAWarning) {
  StartSim();
  const CommandResult r =
      Run(Config("vm-export=DEV-RH7\nvm-export=RENAMED-vm\n"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vm-export=RENAMED-vm matches no VM"));
  EXPECT_THAT(r.output,
              HasSubstr("VmBackup ended - **WARNING(s)** - S:1 W:0 E:0"));
  ASSERT_EQ(Backups("DEV-RH7").size(), 1u);
}

// Each fault: the VM fails with a clear error, keeps no success marker and
// no snapshot, its earlier backup stays byte for byte, and the other VM is
// still backed up.
struct FaultCase {
  const char* name;
  std::string fault;    // armed after the first run
  std::string config;   // extra settings
  const char* token;    // status.log token
  const char* message;  // in the error line
};

class RunFaultTest : public StandaloneRunTest,
                     public ::testing::WithParamInterface<FaultCase> {};

TEST_P(RunFaultTest, FailsOneVmCleanlyAndBacksUpTheOthers) {
  const FaultCase& c = GetParam();
  StartSim();
  const std::string config =
      Config(absl::StrCat(c.config, "vm-export=DEV-RH6\nvm-export=DEV-RH7\n"));
  ASSERT_EQ(Run(config).exit_code, 0) << last_output_;
  ASSERT_OK_AND_ASSIGN(auto before,
                       testing::TreeDigest(JoinPath(backups_, "DEV-RH6")));
  ASSERT_OK(sim_->AddFault(c.fault));
  const CommandResult r = Run(config);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("VmBackup ended - **ERRORS DETECTED** - S:1 W:0 E:1"));
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat("ERROR ", c.token, " DEV-RH6")));
  EXPECT_THAT(r.output, HasSubstr(c.message));
  ASSERT_OK_AND_ASSIGN(auto after,
                       testing::TreeDigest(JoinPath(backups_, "DEV-RH6")));
  EXPECT_EQ(after, before);
  EXPECT_EQ(Backups("DEV-RH7").size(), 2u);
  EXPECT_TRUE(Backups("DEV-RH7").back().committed);
  ExpectNoSnapshotsLeft();
  const std::vector<std::string> lines = StatusLogLines();
  bool found = false;
  for (const std::string& line : lines) {
    if (absl::StrContains(line, absl::StrCat(",end,", c.token, " DEV-RH6")))
      found = true;
  }
  EXPECT_TRUE(found) << absl::StrJoin(lines, "\n");
}

INSTANTIATE_TEST_SUITE_P(
    Faults, RunFaultTest,
    ::testing::Values(
        FaultCase{
            "StreamCut",
            R"({"kind":"CUT","call":"/export","vm":"DEV-RH6","after_bytes":"3000000"})",
            "", "VM-EXPORT-FAIL", "VDI_IO_ERROR"},
        FaultCase{
            "Embedded500",
            R"({"kind":"EMBEDDED_500","call":"/export","vm":"DEV-RH6","after_bytes":"2097152"})",
            "", "VM-EXPORT-FAIL", "SR_BACKEND_FAILURE_46"},
        FaultCase{
            "Stall",
            R"({"kind":"STALL","call":"/export","vm":"DEV-RH6","after_bytes":"1048576","delay_ms":0})",
            "stall_timeout=2s\n", "VM-EXPORT-FAIL", "stalled: no data for 2s"},
        FaultCase{
            "CorruptChunk",
            R"({"kind":"CORRUPT","call":"/export","vm":"DEV-RH6","after_bytes":"1600000"})",
            "", "VM-EXPORT-FAIL", "checksum"},
        FaultCase{"TaskFailsAfterBody",
                  R"({"kind":"TASK_FAIL","call":"/export","vm":"DEV-RH6"})", "",
                  "VM-EXPORT-FAIL", "after a complete, verified body"},
        FaultCase{
            "SnapshotSrBackendFailure44",
            R"({"kind":"CALL_ERROR","call":"VM.snapshot","vm":"DEV-RH6","error":["SR_BACKEND_FAILURE_44"]})",
            "", "SNAPSHOT-FAIL", "SR_BACKEND_FAILURE_44"},
        FaultCase{
            "SnapshotSrFull",
            R"({"kind":"CALL_ERROR","call":"VM.snapshot","vm":"DEV-RH6","error":["SR_FULL"]})",
            "", "SNAPSHOT-FAIL", "SR_FULL"},
        FaultCase{
            "SnapshotOtherOperation",
            R"({"kind":"CALL_ERROR","call":"VM.snapshot","vm":"DEV-RH6","error":["OTHER_OPERATION_IN_PROGRESS"]})",
            "", "SNAPSHOT-FAIL", "OTHER_OPERATION_IN_PROGRESS"}),
    [](const ::testing::TestParamInfo<FaultCase>& info) {
      return info.param.name;
    });

TEST_F(StandaloneRunTest, NotAMountPointWithRequireMountTakesNoSnapshot) {
  StartSim();
  const CommandResult r =
      Run(Config("require_mount=true\nvm-export=DEV-RH6\nvm-export=DEV-RH7\n"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ERROR PREFLIGHT-FAIL DEV-RH6"));
  EXPECT_THAT(r.output, HasSubstr("is not a mount point"));
  EXPECT_THAT(r.output, HasSubstr("S:0 W:0 E:2"));
  ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
  EXPECT_EQ(state.snapshots(), snapshots_before_);
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests());
  for (const auto& req : log.requests()) {
    EXPECT_FALSE(absl::StartsWith(req.path(), "/export")) << req.path();
  }
}

TEST_F(StandaloneRunTest, VdiInUseOnDestroyIsRetriedOrLeftToTheJanitor) {
  StartSim();
  const std::string config = Config("vm-export=DEV-RH6\n");
  // Transient: retried, clean.
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"CALL_ERROR","call":"VDI.destroy","vm":"DEV-RH6","times":2,"error":["VDI_IN_USE"]})"));
  EXPECT_EQ(Run(config).exit_code, 0) << last_output_;
  ExpectNoSnapshotsLeft();
  ASSERT_OK(sim_->ClearFaults());
  // Persistent: the backup is good, the run ends with a warning, and the
  // next run's janitor removes the disk that would not go.
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"CALL_ERROR","call":"VDI.destroy","vm":"DEV-RH6","error":["VDI_IN_USE"]})"));
  CommandResult r = Run(config);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("the snapshot is left in the pool"));
  EXPECT_THAT(r.output,
              HasSubstr("VmBackup ended - **WARNING(s)** - S:0 W:1 E:0"));
  ASSERT_EQ(Backups("DEV-RH6").size(), 2u);
  EXPECT_TRUE(Backups("DEV-RH6").back().committed);
  ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
  EXPECT_GT(state.snapshot_vdis(), snapshot_vdis_before_);
  ASSERT_OK(sim_->ClearFaults());
  r = Run(config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("removed a leftover snapshot"));
  ExpectNoSnapshotsLeft();
}

TEST_F(StandaloneRunTest, KilledMidStreamThenTheNextRunCleansUp) {
  StartSim();
  const std::string config = Config("vm-export=DEV-RH6\n");
  ASSERT_EQ(Run(config).exit_code, 0) << last_output_;
  ASSERT_OK_AND_ASSIGN(auto before,
                       testing::TreeDigest(JoinPath(backups_, "DEV-RH6")));
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"STALL","call":"/export","vm":"DEV-RH6","after_bytes":"2097152","delay_ms":0,"times":1})"));
  const std::string log = JoinPath(dir_, "killed.log");
  const pid_t pid = testing::StartCommand(Argv(config), log);
  ASSERT_GT(pid, 0);
  // The export is under way: the half-written file is on the share, up to
  // the stall.
  ASSERT_TRUE(WaitUntilWritten("DEV-RH6", 2097152 - 65536));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
  EXPECT_EQ(state.snapshots(), snapshots_before_ + 1);  // what the crash left
  ASSERT_EQ(Backups("DEV-RH6").size(), 2u);
  EXPECT_FALSE(Backups("DEV-RH6").back().committed);

  // The next run: the janitor destroys the snapshot, the half folder goes.
  const CommandResult r = Run(config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("removed a leftover snapshot"));
  ExpectNoSnapshotsLeft();
  const std::vector<BackupEntry> after = Backups("DEV-RH6");
  ASSERT_EQ(after.size(), 2u);
  EXPECT_TRUE(after[0].committed);
  EXPECT_TRUE(after[1].committed);
  ASSERT_OK_AND_ASSIGN(auto first, testing::TreeDigest(JoinPath(
                                       backups_, "DEV-RH6", after[0].name)));
  std::map<std::string, std::string> first_before;
  for (const auto& [path, digest] : before) {
    if (absl::StartsWith(path, after[0].name + "/") &&
        path != after[0].name + "/") {
      first_before[path.substr(after[0].name.size() + 1)] = digest;
    }
  }
  EXPECT_EQ(first, first_before);
}

TEST_F(StandaloneRunTest, SigtermMidRunCancelsCleanlyThenTheNextRunSucceeds) {
  StartSim();
  const std::string config = Config("vm-export=DEV-RH6\n");
  // The export stops at 2 MiB and stays open until the client goes.
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"STALL","call":"/export","vm":"DEV-RH6","after_bytes":"2097152","delay_ms":0,"times":1})"));
  const std::string log = JoinPath(dir_, "sigterm.log");
  const pid_t pid = testing::StartCommand(Argv(config), log);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitUntilWritten("DEV-RH6", 1048576));
  const absl::Time sent = absl::Now();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
         absl::Now() - sent < absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (done == 0) {  // still running after 10 s: fail, and do not leak it
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "vmbackup did not end within 10 s of SIGTERM";
  }
  ASSERT_EQ(done, pid);
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status);
  EXPECT_NE(WEXITSTATUS(status), 0);
  ASSERT_OK_AND_ASSIGN(std::string output, fs_.ReadFile(log, 1 << 20));
  EXPECT_THAT(output, HasSubstr("CANCELLED")) << output;
  // Nothing committed, the half folder gone, no snapshot left.
  EXPECT_THAT(Backups("DEV-RH6"), IsEmpty()) << output;
  last_output_ = output;
  ExpectNoSnapshotsLeft();
  // The next run backs the VM up.
  const CommandResult r = Run(config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::vector<BackupEntry> after = Backups("DEV-RH6");
  ASSERT_EQ(after.size(), 1u);
  EXPECT_TRUE(after[0].committed);
  ExpectNoSnapshotsLeft();
}

TEST_F(StandaloneRunTest, ASecondRunOnTheSameShareIsRefused) {
  StartSim();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileLock> held,
                       fs_.LockFile(JoinPath(backups_, ".vmbackup.lock")));
  // The running run is in the middle of its write probe: the second run
  // must not touch it (it checks the lock first).
  const std::string probe = JoinPath(backups_, "00VMbackupWriteTest");
  ASSERT_OK(WriteNewFile(fs_, probe, "the first run's"));
  const CommandResult r = Run(Config("vm-export=DEV-RH6\n"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("another vmbackup run is using"));
  ASSERT_OK_AND_ASSIGN(std::string probe_text, fs_.ReadFile(probe, 100));
  EXPECT_EQ(probe_text, "the first run's");
  ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
  EXPECT_EQ(state.snapshots(), snapshots_before_);
  // status.log says the run began and ended in error.
  const std::vector<std::string> lines = StatusLogLines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr(",end,ERROR,S:0 W:0 E:0"));
}

TEST_F(StandaloneRunTest, EnospcOnTheShare) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  StartSim();
  // A 64 MiB tmpfs: the first backup of "DEV mySql" (37 MiB) fits; the second
  // passes pre-flight (its thin disks hold 24 MiB) but needs 37 MiB again.
  const std::string mnt = JoinPath(dir_, "small");
  ASSERT_OK(fs_.CreateDir(mnt));
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  backups_ = mnt;
  const std::string one =
      Config("max_concurrency=1\nvm-export=DEV mySql\n", "one.cfg");
  ASSERT_EQ(Run(one).exit_code, 0) << last_output_;
  ASSERT_OK_AND_ASSIGN(auto before,
                       testing::TreeDigest(JoinPath(backups_, "DEV mySql")));
  const std::string both =
      Config("max_concurrency=1\nvm-export=DEV mySql\nvm-export=DEV-RH7\n",
             "both.cfg");
  const CommandResult r = Run(both);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ERROR VM-EXPORT-FAIL DEV mySql"));
  EXPECT_THAT(r.output, HasSubstr("No space left on device"));
  EXPECT_THAT(r.output, HasSubstr("S:1 W:0 E:1"));
  ASSERT_OK_AND_ASSIGN(auto after,
                       testing::TreeDigest(JoinPath(backups_, "DEV mySql")));
  EXPECT_EQ(after, before);
  ASSERT_EQ(Backups("DEV-RH7").size(), 1u);
  EXPECT_TRUE(Backups("DEV-RH7")[0].committed);
  ExpectNoSnapshotsLeft();
}

TEST_F(StandaloneRunTest, HostileVmNamesStayInsideTheShare) {
  // A pool whose VM names are attacks on paths, shells, logs and mail.
  const std::vector<std::string>& names = testing::HostileVmNames();
  // A name that is not a safe folder name is kept apart with a warning.
  int unsafe = 0;
  for (const std::string& name : names) unsafe += SanitizeVmName(name) != name;
  std::string vms;
  for (size_t i = 0; i < names.size(); ++i) {
    std::string escaped;
    for (char ch : names[i]) {
      if (ch == '"' || ch == '\\') escaped.push_back('\\');
      if (ch == '\r') {
        escaped += "\\r";
        continue;
      }
      if (ch == '\n') {
        escaped += "\\n";
        continue;
      }
      escaped.push_back(ch);
    }
    absl::StrAppend(
        &vms, i == 0 ? "" : ",", R"({"name_label": ")", escaped,
        R"(", "resident_on": "h1", "disks": [{"size": "1048576", "sr": "nfs"}]})");
  }
  StartSim(absl::StrCat(
      R"({"credentials": {"username": "root", "password": "pw"},
          "hosts": [{"name_label": "h1", "master": true}],
          "srs": [{"name_label": "nfs", "type": "nfs", "shared": true}],
          "vms": [)",
      vms, "]}"));
  // A canary beside the share: nothing may be written outside backup_dir.
  const std::string canary = JoinPath(dir_, "canary");
  ASSERT_OK(fs_.CreateDir(canary));
  const std::string config = Config("vm-export=.*\n");
  ASSERT_OK_AND_ASSIGN(auto dir_before, testing::TreeDigest(dir_));
  const CommandResult r = Run(config);
  EXPECT_EQ(r.exit_code, 1) << r.output;  // the unsafe names are warnings
  ASSERT_GT(unsafe, 8);
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat(
                            "VmBackup ended - **WARNING(s)** - S:",
                            names.size() - unsafe, " W:", unsafe, " E:0")));
  ExpectNoSnapshotsLeft();
  // Every VM has its own committed folder directly under backup_dir.
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> folders, fs_.ListDir(backups_));
  int vm_folders = 0;
  for (const DirEntry& e : folders) {
    if (!e.is_dir) continue;
    ++vm_folders;
    const std::vector<BackupEntry> b = Backups(e.name);
    ASSERT_EQ(b.size(), 1u) << e.name;
    EXPECT_TRUE(b[0].committed) << e.name;
  }
  EXPECT_EQ(vm_folders, static_cast<int>(names.size()));
  // Outside backup_dir only the status log changed.
  ASSERT_OK_AND_ASSIGN(auto dir_after, testing::TreeDigest(dir_));
  for (const auto& [path, digest] : dir_after) {
    if (absl::StartsWith(path, "backups/") || path == "log/status.log")
      continue;
    auto it = dir_before.find(path);
    ASSERT_NE(it, dir_before.end()) << "new file outside the share: " << path;
    EXPECT_EQ(it->second, digest) << path;
  }
  // No name forged a status.log line.
  for (const std::string& line : StatusLogLines()) {
    EXPECT_TRUE(RE2::PartialMatch(
        line, R"(^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d,(vmbackup\.py|vm-export),)"))
        << line;
  }
  EXPECT_EQ(StatusLogLines().size(), 2u + 2u * names.size());
}

// ---- restore

// Restores `folder` (one of backups_'s) as `name`; the command's result.
CommandResult RestoreCommand(const std::string& master_url,
                             const std::string& password_file,
                             const std::string& folder,
                             std::vector<std::string> extra) {
  std::vector<std::string> argv = {testing::BinDir() + "/vmbackup",
                                   "--xapi-url",
                                   master_url,
                                   "restore",
                                   password_file,
                                   folder};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return testing::RunCommand(argv);
}

// What a test compares of a VM: its disks by userdevice (bootable, SHA-256)
// and its VIFs by device (network name, MAC).
struct VmLayout {
  std::map<std::string, std::pair<bool, std::string>> disks;
  std::map<std::string, std::pair<std::string, std::string>> vifs;
};

TEST_F(StandaloneRunTest, RestoreRoundTripsEveryKindOfBackup) {
  StartSim();
  struct Case {
    const char* config;
    const char* vm;
    bool all_disks;  // else the boot disk only (vdi-export's default)
  };
  const Case cases[] = {
      {"vm-export=DEV-RH7\n", "DEV-RH7", true},
      {"compress=gzip\nvm-export=TEST-debian9\n", "TEST-debian9", true},
      {"compress=zstd\nvm-export=PROD-WinSvr\n", "PROD-WinSvr", true},
      {"vdi-export=DEV-RH6\n", "DEV-RH6", false},
      {"vdi_export_format=vhd\nvdi-export=DEV-RH7\n", "DEV-RH7", false},
      {"vdi_export_format=vhd\nvdi_export_disks=all\nvdi-export=PROD-win2012\n",
       "PROD-win2012", true},
      {"vdi_export_disks=all\nvdi-export=TEST-debian9\n", "TEST-debian9", true},
  };
  auto layout = [&](const std::string& vm_name) -> VmLayout {
    VmLayout out;
    auto refs = client_->GetVmsByNameLabel(vm_name);
    EXPECT_TRUE(refs.ok() && refs->size() == 1) << vm_name;
    if (!refs.ok() || refs->size() != 1) return out;
    auto shas = sim_->VmDiskSha256s(*client_, vm_name);
    EXPECT_OK(shas.status());
    auto vm = client_->GetVm((*refs)[0]);
    EXPECT_OK(vm.status());
    for (const std::string& ref : vm->vbds) {
      auto vbd = client_->GetVbd(ref);
      if (!vbd.ok() || vbd->type != "Disk") continue;
      out.disks[vbd->userdevice] = {
          vbd->bootable,
          shas.value_or(std::map<std::string, std::string>())[vbd->userdevice]};
    }
    auto networks = client_->GetAllNetworks();
    EXPECT_OK(networks.status());
    for (const std::string& ref : vm->vifs) {
      auto vif = client_->Call("VIF.get_record", {XmlRpcValue::String(ref)},
                               CallKind::kIdempotent);
      EXPECT_OK(vif.status());
      if (!vif.ok()) continue;
      absl::StatusOr<VifRecord> rec = ParseVifRecord(*vif, ref);
      EXPECT_OK(rec.status());
      if (!rec.ok()) continue;
      out.vifs[rec->device] = {networks->at(rec->network).name_label, rec->mac};
    }
    return out;
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.config);
    ASSERT_EQ(Run(Config(c.config)).exit_code, 0) << last_output_;
    const std::vector<BackupEntry> b = Backups(c.vm);
    ASSERT_FALSE(b.empty());
    const std::string folder = JoinPath(backups_, c.vm, b.back().name);
    const std::string name = absl::StrCat("restored-", ++n);
    ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
    CommandResult r = RestoreCommand(sim_->master_url(), password_file_, folder,
                                     {"--name", name});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("restore: done: VM " + name));
    const VmLayout original = layout(c.vm);
    const VmLayout restored = layout(name);
    if (c.all_disks) {
      EXPECT_EQ(restored.disks, original.disks);
    } else {
      ASSERT_EQ(restored.disks.size(), 1u);
      EXPECT_EQ(restored.disks.begin()->second,
                original.disks.at(restored.disks.begin()->first));
    }
    // Same VIFs on the same networks, with MACs made anew.
    ASSERT_EQ(restored.vifs.size(), original.vifs.size());
    for (const auto& [device, vif] : original.vifs) {
      ASSERT_EQ(restored.vifs.count(device), 1u) << device;
      EXPECT_EQ(restored.vifs.at(device).first, vif.first);
      EXPECT_NE(restored.vifs.at(device).second, vif.second);
    }
    ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
    EXPECT_EQ(after.vms(), before.vms() + 1);
    EXPECT_EQ(after.pending_tasks(), 0u);
  }
}

TEST_F(StandaloneRunTest, RestoreNamesTheVmAndADryRunChangesNothing) {
  StartSim();
  ASSERT_EQ(Run(Config("vm-export=DEV-RH7\n")).exit_code, 0) << last_output_;
  const std::string folder =
      JoinPath(backups_, "DEV-RH7", Backups("DEV-RH7").back().name);
  ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
  CommandResult dry =
      RestoreCommand(sim_->master_url(), password_file_, folder, {"--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_THAT(dry.output, HasSubstr("PUT /import of DEV-RH7.xva"));
  ASSERT_OK_AND_ASSIGN(sim::SimState unchanged, sim_->State());
  EXPECT_EQ(unchanged.vms(), before.vms());
  EXPECT_EQ(unchanged.vdis(), before.vdis());
  CommandResult r =
      RestoreCommand(sim_->master_url(), password_file_, "",
                     {"--vm", "DEV-RH7", "--backup-dir", backups_});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string name = absl::StrCat(
      "DEV-RH7 (restored ",
      absl::FormatTime("%Y-%m-%d", absl::Now(), absl::LocalTimeZone()), ")");
  ASSERT_OK_AND_ASSIGN(auto refs, client_->GetVmsByNameLabel(name));
  ASSERT_EQ(refs.size(), 1u) << r.output;
  ASSERT_OK_AND_ASSIGN(VmRecord vm, client_->GetVm(refs[0]));
  EXPECT_FALSE(vm.is_a_snapshot);
  EXPECT_EQ(vm.power_state, "Halted");
  // --start: restored and running.
  CommandResult started =
      RestoreCommand(sim_->master_url(), password_file_, folder,
                     {"--name", "started", "--start"});
  ASSERT_EQ(started.exit_code, 0) << started.output;
  EXPECT_THAT(started.output, HasSubstr("started VM started"));
  ASSERT_OK_AND_ASSIGN(auto started_refs,
                       client_->GetVmsByNameLabel("started"));
  ASSERT_EQ(started_refs.size(), 1u);
  ASSERT_OK_AND_ASSIGN(VmRecord running, client_->GetVm(started_refs[0]));
  EXPECT_EQ(running.power_state, "Running");
  for (const auto& [key, value] : vm.other_config)
    EXPECT_FALSE(absl::StartsWith(key, "vmbackup:")) << key;
  // Nothing before --at's day.
  CommandResult none = RestoreCommand(
      sim_->master_url(), password_file_, "",
      {"--vm", "DEV-RH7", "--backup-dir", backups_, "--at", "2001-01-01"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.output, HasSubstr("no committed backup"));
}

TEST_F(StandaloneRunTest, AFailedRestoreLeavesNothingInThePool) {
  StartSim();
  ASSERT_EQ(Run(Config("vm-export=DEV-RH7\n")).exit_code, 0) << last_output_;
  ASSERT_EQ(
      Run(Config("vdi_export_disks=all\nvdi-export=PROD-win2012\n")).exit_code,
      0)
      << last_output_;
  const std::string xva_folder =
      JoinPath(backups_, "DEV-RH7", Backups("DEV-RH7").back().name);
  const std::string vdi_folder =
      JoinPath(backups_, "PROD-win2012", Backups("PROD-win2012").back().name);
  struct Case {
    const char* what;
    const char* fault;  // "" none
    std::string folder;
    const char* message;
    std::vector<std::string> extra = {};
  };
  const Case cases[] = {
      {"cut", R"({"kind": "CUT", "call": "/import", "after_bytes": "100000"})",
       xva_folder, "(the task: XenAPI error VDI_IO_ERROR"},
      {"task failure", R"({"kind": "TASK_FAIL", "call": "/import"})",
       xva_folder, ""},
      {"SR full on the second disk",
       R"({"kind": "CALL_ERROR", "call": "VDI.create", "after_calls": 1,
           "error": ["SR_FULL", "OpaqueRef:x", "1"]})",
       vdi_folder, "SR_FULL"},
      {"cut second disk",
       R"({"kind": "CUT", "call": "/import_raw_vdi", "after_bytes": "4096"})",
       vdi_folder, ""},
      {"metadata import fails",
       R"({"kind": "CALL_ERROR", "call": "/import_metadata",
           "error": ["IMPORT_ERROR", "simulated"]})",
       vdi_folder, "IMPORT_ERROR"},
      {"stall",
       R"({"kind": "STALL", "call": "/import_raw_vdi", "after_bytes": "4096",
           "delay_ms": 6000})",
       vdi_folder,
       "stalled: no data for 2s",
       {"--stall-timeout", "2s"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
    ASSERT_OK(sim_->AddFault(c.fault));
    std::vector<std::string> args = {"--name", "must-not-exist"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    CommandResult r =
        RestoreCommand(sim_->master_url(), password_file_, c.folder, args);
    ASSERT_OK(sim_->ClearFaults());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message));
    ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
    EXPECT_EQ(after.vms(), before.vms()) << r.output;
    EXPECT_EQ(after.vdis(), before.vdis()) << r.output;
    EXPECT_EQ(after.pending_tasks(), 0u);
    ASSERT_OK_AND_ASSIGN(auto refs,
                         client_->GetVmsByNameLabel("must-not-exist"));
    EXPECT_THAT(refs, IsEmpty());
  }
  // A flipped byte: the upload stops before its end, nothing is made.
  const std::string xva = JoinPath(xva_folder, "DEV-RH7.xva");
  std::string bytes = fs_.ReadFile(xva, 1 << 30).value_or("");
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] ^= 1;
  ASSERT_OK(fs_.RemoveFile(xva));
  ASSERT_OK(WriteNewFile(fs_, xva, bytes));
  ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
  CommandResult r = RestoreCommand(sim_->master_url(), password_file_,
                                   xva_folder, {"--name", "must-not-exist"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("stopped before its end"));
  ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
  EXPECT_EQ(after.vms(), before.vms());
  EXPECT_EQ(after.vdis(), before.vdis());
  // An uncommitted folder is refused.
  ASSERT_OK(fs_.RemoveFile(JoinPath(vdi_folder, "success")));
  r = RestoreCommand(sim_->master_url(), password_file_, vdi_folder, {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not committed"));
}

TEST_F(StandaloneRunTest, ARestoreTestReadsEveryDiskBackThenLeavesNothing) {
  StartSim();
  ASSERT_EQ(Run(Config("compress=zstd\nvm-export=PROD-WinSvr\n")).exit_code, 0)
      << last_output_;
  ASSERT_EQ(Run(Config("vdi_export_format=vhd\nvdi_export_disks=all\n"
                       "vdi-export=PROD-win2012\n"))
                .exit_code,
            0)
      << last_output_;
  auto folder = [&](const std::string& vm) {
    return JoinPath(backups_, vm, Backups(vm).back().name);
  };
  // A VmBackup.py folder: the XVA alone, no manifest (digests as a set).
  const std::string seed = JoinPath(backups_, "SEED-vm");
  const std::string seed_backup =
      JoinPath(seed, "backup-2019-01-05-(03:00:00)");
  ASSERT_OK(fs_.CreateDir(seed));
  ASSERT_OK(fs_.CreateDir(seed_backup));
  ASSERT_EQ(Run(Config("vm-export=DEV-RH7\n")).exit_code, 0) << last_output_;
  ASSERT_OK(WriteNewFile(
      fs_, JoinPath(seed_backup, "SEED-vm.xva"),
      fs_.ReadFile(JoinPath(folder("DEV-RH7"), "DEV-RH7.xva"), 1 << 30)
          .value_or("")));
  ASSERT_OK(WriteNewFile(fs_, JoinPath(seed_backup, "success"), ""));

  struct Case {
    std::string folder;
    size_t disks;
  };
  for (const Case& c :
       {Case{folder("PROD-WinSvr"), 0}, Case{folder("PROD-win2012"), 2},
        Case{seed_backup, 0}}) {
    SCOPED_TRACE(c.folder);
    ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
    CommandResult r = RestoreCommand(sim_->master_url(), password_file_,
                                     c.folder, {"--test"});
    // The seed-era folder warns (no manifest): exit 1.
    EXPECT_EQ(r.exit_code, c.folder == seed_backup ? 1 : 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("equal to the backup's"));
    EXPECT_THAT(r.output, HasSubstr("restore test done; removed what it made"));
    if (c.disks > 0) {
      const std::vector<std::string> parts =
          absl::StrSplit(r.output, "equal to the backup's");
      EXPECT_EQ(parts.size(), c.disks + 1) << r.output;
    }
    ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
    EXPECT_EQ(after.vms(), before.vms()) << r.output;
    EXPECT_EQ(after.vdis(), before.vdis()) << r.output;
    EXPECT_EQ(after.pending_tasks(), 0u);
  }
  // A disk that reads back otherwise: DATA_LOSS, and nothing is left.
  ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "CORRUPT", "call": "/export_raw_vdi", "after_bytes": "5000", "times": 1})"));
  CommandResult r = RestoreCommand(sim_->master_url(), password_file_,
                                   folder("PROD-win2012"), {"--test"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("reads back as SHA-256"));
  EXPECT_THAT(r.output, HasSubstr("removed what it made"));
  ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
  EXPECT_EQ(after.vms(), before.vms());
  EXPECT_EQ(after.vdis(), before.vdis());
}

}  // namespace
}  // namespace vmb
