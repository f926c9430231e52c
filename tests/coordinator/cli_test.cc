// SPDX-License-Identifier: Apache-2.0
// The vmbackup command line, end to end against xapi-sim. Rows refer to the
// seed checklist (docs/compatibility.md).
#include "coordinator/cli.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <google/protobuf/util/json_util.h>

#include "coordinator/password_file.h"
#include "proto/coordinator.pb.h"
#include "tests/testing/readme_regex_examples.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

CliRun Cli(const std::vector<std::string>& args,
           const std::string& stdin_text = "") {
  std::istringstream in(stdin_text);
  std::ostringstream out, err;
  int code = RunCli(args, {&in, &out, &err});
  return {code, out.str(), err.str()};
}

std::string WriteFile(const std::string& path, const std::string& text,
                      mode_t mode = 0644) {
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
  return path;
}

class CliSimTest : public ::testing::Test {
 protected:
  void StartSim(const std::string& fixture = "") {
    auto sim = vmb::testing::SimProcess::Start({fixture, "", ""});
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    dir_ = vmb::testing::MakeTempDir("cli");
    backups_ = dir_ + "/backups";
    mkdir(backups_.c_str(), 0755);
    password_file_ = dir_ + "/VmBackup.pass";
    ASSERT_OK(WritePasswordFile(password_file_, sim_->password()));
  }
  void SetUp() override { StartSim(); }

  // Preview of a config text with `backup_dir` and `status_log` pointing
  // into the test's folder.
  CliRun Preview(const std::string& config, std::vector<std::string> extra = {},
                 std::vector<std::string> flags = {}) {
    const std::string path =
        WriteFile(absl::StrCat(dir_, "/c", ++configs_, ".cfg"),
                  absl::StrCat("backup_dir=", backups_, "\nstatus_log=", dir_,
                               "/status.log\n", config));
    std::vector<std::string> args = {"--xapi-url", sim_->master_url()};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back(password_file_);
    args.push_back(path);
    args.push_back("preview");
    args.insert(args.end(), extra.begin(), extra.end());
    return Cli(args);
  }

  v1::PreviewReport PreviewJson(const std::string& config) {
    CliRun r = Preview(config, {}, {"--json"});
    v1::PreviewReport report;
    EXPECT_TRUE(
        google::protobuf::util::JsonStringToMessage(r.out, &report).ok())
        << r.out << r.err;
    return report;
  }

  std::unique_ptr<vmb::testing::SimProcess> sim_;
  std::string dir_;
  std::string backups_;
  std::string password_file_;
  int configs_ = 0;
};

std::vector<std::string> VmNames(const v1::PreviewReport& r,
                                 v1::ExportKind kind) {
  std::vector<std::string> out;
  for (const v1::PlannedVm& vm : r.vms()) {
    if (vm.kind() != kind) continue;
    out.push_back(vm.max_backups_from_rule()
                      ? absl::StrCat(vm.name(), ":", vm.max_backups())
                      : vm.name());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- inventory (unchanged) ----

TEST_F(CliSimTest, InventoryListsThePool) {
  CliRun r =
      Cli({"--xapi-url", sim_->master_url(), "inventory", password_file_});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Pool \"demo-pool\" (master xcp-host1"));
  EXPECT_THAT(
      r.out,
      HasSubstr(
          "VMs (14; not listed: 1 templates, 1 snapshots, 3 control domains)"));
  EXPECT_THAT(r.out, HasSubstr("local to xcp-host3"));
}

TEST_F(CliSimTest, InventoryFollowsAPoolMemberToTheMaster) {
  CliRun r = Cli({"--xapi-url=" + sim_->host_url("xcp-host2"), "inventory",
                  password_file_});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(sim_->master_url()));
}

// ---- rows 1, 7, 23: preview of a config file prints the seed's block ----

TEST_F(CliSimTest, PreviewOfTheSeedsExampleConfigAdaptedToTheDemoPool) {
  const std::string config = R"(pool_db_backup=0
max_backups=3
vdi_export_format=raw
exclude=PROD-win2012
exclude=DEV-DestructiveTest
vdi-export=DEV-RH6
vm-export=DEV-RH6
vm-export=TEST-debian9
vm-export=DEV-local-build:3
vm-export=PROD.*
vm-export=DEV.*:2
)";
  CliRun r = Preview(config);
  EXPECT_EQ(r.code, 1) << r.out << r.err;  // valid, with warnings
  EXPECT_THAT(r.out,
              HasSubstr("running with these settings:\n  backup_dir        = " +
                        backups_));
  EXPECT_THAT(r.out, HasSubstr("  max_backups       = 3\n"));
  EXPECT_THAT(r.out,
              HasSubstr("  exclude (cnt)= 1\n  exclude: PROD-win2012\n"));
  EXPECT_THAT(r.out,
              HasSubstr("  vdi-export (cnt)= 1\n  vdi-export: DEV-RH6\n"));
  EXPECT_THAT(
      r.out,
      HasSubstr(
          "  vm-export (cnt)= 10\n  vm-export: DEV mySql:2, DEV-RH7:2, "
          "DEV-local-build:2, DEV-mySql:2, PROD-CentOS7-large-user-disks, "
          "PROD-WinSvr, PROD-oracle-db, PROD-ubuntu12-benchmark, "
          "PROD-ubuntu14, "
          "TEST-debian9\n"));
  EXPECT_THAT(r.out, HasSubstr("exclude=DEV-DestructiveTest matches no VM"));
  EXPECT_THAT(r.out, HasSubstr("vdi-export wins"));
  EXPECT_THAT(
      r.out,
      HasSubstr("SUCCESS preview of parameters - WARNINGS found (see above)"));
}

TEST_F(CliSimTest, PreviewOfTheReadmesWeekendCfg) {
  const std::string weekend = R"(# Weekend VMs - with VM name's fixed
exclude=PROD-ubuntu12-benchmark
vdi-export=PROD-CentOS7-large-user-disks
vm-export=PROD-ubuntu14
vm-export=PROD-ubuntu12-benchmark
vm-export=PROD-CentOS7-large-user-disks
vm-export=DEV-RH6:3
vm-export=DEV-RH7:3
vm-export=PROD-WinSvr
)";
  CliRun r = Preview(weekend);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  // As the README shows it.
  EXPECT_THAT(
      r.out,
      HasSubstr(
          "  exclude (cnt)= 1\n  exclude: PROD-ubuntu12-benchmark\n"
          "  vdi-export (cnt)= 1\n  vdi-export: PROD-CentOS7-large-user-disks\n"
          "  vm-export (cnt)= 4\n  vm-export: DEV-RH6:3, DEV-RH7:3, "
          "PROD-WinSvr, PROD-ubuntu14\n"));
  // Beyond the seed: where each VM is exported from, and why.
  EXPECT_THAT(r.out, HasSubstr("Plan: 5 VMs on 3 hosts"));
  EXPECT_THAT(r.out, HasSubstr("it runs there (resident_on)"));
  EXPECT_THAT(
      r.out,
      HasSubstr(
          "halted: the least-loaded live host with its storage attached"));
  v1::PreviewReport report = PreviewJson(weekend);
  ASSERT_TRUE(report.valid()) << report.error();
  for (const v1::PlannedVm& vm : report.vms()) {
    if (vm.name() == "PROD-CentOS7-large-user-disks") {
      EXPECT_EQ(vm.kind(), v1::EXPORT_KIND_VDI);
      EXPECT_EQ(vm.host_name(), "xcp-host2");
      // The boot disk's data only (at most its 64 MiB), not its user disks'.
      EXPECT_GT(vm.estimated_bytes(), 0u);
      EXPECT_LE(vm.estimated_bytes(), 64u << 20);
      EXPECT_THAT(vm.disks(), ::testing::ElementsAre("xvda"));
    }
    if (vm.name() == "PROD-WinSvr") {
      EXPECT_EQ(vm.power_state(), "Halted");
      EXPECT_FALSE(vm.host_name().empty());
    }
    EXPECT_EQ(vm.uuid().size(), 36u);
  }
}

TEST_F(CliSimTest, WeekendCfgWithTheReadmesTyposIsExplained) {
  // The README's first weekend.cfg, with '.' typos: a '.' makes a regex, so
  // the vdi-export still selects the VM; the exclude matches nothing.
  CliRun r = Preview(
      "exclude=PROD-ubuntu12.xs66\nvdi-export=PROD-CentOS7.large-user-disks\n"
      "vm-export=PROD-ubuntu14\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("exclude=PROD-ubuntu12.xs66 matches no VM"));
  EXPECT_THAT(r.out, HasSubstr("vdi-export: PROD-CentOS7-large-user-disks"));
}

TEST_F(CliSimTest, PreviewWritesNothing) {
  ASSERT_OK_AND_ASSIGN(sim::SimState before, sim_->State());
  CliRun r = Preview("vm-export=.*\n");
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  ASSERT_OK_AND_ASSIGN(sim::SimState after, sim_->State());
  EXPECT_EQ(after.snapshots(), before.snapshots());
  EXPECT_EQ(after.vdis(), before.vdis());
  EXPECT_EQ(after.tasks(), 0u);
  EXPECT_EQ(after.sessions(), 0u) << "the preview logs out";
  ASSERT_OK_AND_ASSIGN(sim::RequestLog http, sim_->Requests());
  EXPECT_EQ(http.requests_size(), 0) << "no data handler was called";
  // Nothing in the backup folder, and no status log.
  EXPECT_EQ(
      vmb::testing::RunCommand({"find", backups_, "-mindepth", "1"}).output,
      "");
  struct stat st;
  EXPECT_NE(stat((dir_ + "/status.log").c_str(), &st), 0);
}

TEST_F(CliSimTest, CleanPreviewExitsZero) {
  CliRun r = Preview("vm-export=DEV-RH6\nvdi-export=PROD-ubuntu14:2\n");
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("SUCCESS preview of parameters\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("WARNINGS")));
}

// Duplicate names: both VMs, by UUID, with a warning; templates and
// snapshots never count.
TEST_F(CliSimTest, TemplatesAndSnapshotsNeverShadowAVm) {
  v1::PreviewReport r =
      PreviewJson("vm-export=PROD-ubuntu14\nvm-export=PROD-oracle-db.*\n");
  ASSERT_TRUE(r.valid()) << r.error();
  EXPECT_EQ(VmNames(r, v1::EXPORT_KIND_VM),
            (std::vector<std::string>{"PROD-oracle-db", "PROD-ubuntu14"}));
  EXPECT_EQ(r.warnings_size(), 0);
}

TEST_F(CliSimTest, VmsSharingANameAreAllBackedUp) {
  StartSim(
      R"({"credentials": {"password": "pw"}, "hosts": [{"name_label": "h1"}],
    "srs": [{"name_label": "nfs", "shared": true}],
    "vms": [{"name_label": "web", "disks": [{"size": "1048576", "sr": "nfs"}]},
            {"name_label": "web", "disks": [{"size": "1048576", "sr": "nfs"}]}]})");
  v1::PreviewReport r = PreviewJson("vm-export=web");
  ASSERT_TRUE(r.valid()) << r.error();
  ASSERT_EQ(r.vms_size(), 2);
  EXPECT_NE(r.vms(0).uuid(), r.vms(1).uuid());
  EXPECT_TRUE(r.vms(0).shares_name());
  ASSERT_EQ(r.warnings_size(), 1);
  EXPECT_THAT(r.warnings(0).message(), HasSubstr("2 VMs are called 'web'"));
}

TEST_F(CliSimTest, HostAssignment) {
  v1::PreviewReport r = PreviewJson(
      "vm-export=DEV-local-build\nvm-export=TEST-halted-local\nvm-export=TEST-"
      "debian9\n"
      "vdi-export=PROD-win2012\n");
  ASSERT_TRUE(r.valid()) << r.error();
  std::map<std::string, const v1::PlannedVm*> by_name;
  for (const v1::PlannedVm& vm : r.vms()) by_name[vm.name()] = &vm;
  EXPECT_EQ(by_name["DEV-local-build"]->host_name(), "xcp-host3");
  // A halted VM on a host-local SR can only go to that host.
  EXPECT_EQ(by_name["TEST-halted-local"]->host_name(), "xcp-host1");
  // A halted VM on shared storage goes to the host with the fewest planned
  // bytes (affinity only breaks ties: tests/coordinator/planner_test.cc).
  EXPECT_EQ(by_name["TEST-debian9"]->host_name(), "xcp-host1");
  EXPECT_THAT(by_name["TEST-debian9"]->host_reason(),
              HasSubstr("least-loaded"));
  // HVM: the boot disk is hda (userdevice 0), not xvda.
  EXPECT_THAT(by_name["PROD-win2012"]->disks(), ::testing::ElementsAre("hda"));
}

// Every example of the README's regex section, against a pool that has the
// names it talks about.
TEST_F(CliSimTest, ReadmeRegexExamples) {
  const std::vector<std::string>& names = vmb::testing::ReadmeVmNames();
  std::string vms;
  for (const std::string& n : names) {
    absl::StrAppend(&vms, vms.empty() ? "" : ",", R"({"name_label": ")", n,
                    R"(", "disks": [{"size": "1048576", "sr": "nfs"}]})");
  }
  StartSim(absl::StrCat(
      R"({"credentials": {"password": "pw"}, "hosts": [{"name_label": "h1"}],
    "srs": [{"name_label": "nfs", "shared": true}], "vms": [)",
      vms, "]}"));
  for (const auto& c : vmb::testing::ReadmeRegexExamples()) {
    SCOPED_TRACE(c.config);
    v1::PreviewReport r = PreviewJson(c.config);
    ASSERT_TRUE(r.valid()) << r.error();
    EXPECT_EQ(VmNames(r, v1::EXPORT_KIND_VDI), c.vdi);
    EXPECT_EQ(VmNames(r, v1::EXPORT_KIND_VM), c.vm);
  }
  // The README's regex error example.
  CliRun bad = Preview("vm-export=PRD-[aA.*\n");
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.out, HasSubstr("invalid regex in vm-export=PRD-[aA.*"));
}

// ---- rows 7 and 8: selectors ----

TEST_F(CliSimTest, SelectorsOnTheCommandLine) {
  struct Case {
    std::string selector;
    std::vector<std::string> vdi;
    std::vector<std::string> vm;
  };
  for (const Case& c : std::vector<Case>{
           {"DEV mySql", {}, {"DEV mySql"}},
           {"vdi-export=DEV-mySql", {"DEV-mySql"}, {}},
           {"DEV-my.*", {}, {"DEV-mySql"}},
           {"vm-export=PROD-ubuntu1.*:2",
            {},
            {"PROD-ubuntu12-benchmark:2", "PROD-ubuntu14:2"}},
           {"PRD-web:8080,v2", {}, {"PRD-web:8080,v2"}},
       }) {
    SCOPED_TRACE(c.selector);
    CliRun r = Cli({"--xapi-url", sim_->master_url(), "--json", password_file_,
                    c.selector, "preview"});
    v1::PreviewReport report;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(r.out, &report).ok())
        << r.out;
    EXPECT_EQ(report.source(), "command line");
    EXPECT_EQ(VmNames(report, v1::EXPORT_KIND_VDI), c.vdi);
    EXPECT_EQ(VmNames(report, v1::EXPORT_KIND_VM), c.vm);
    // Selector mode runs on the seed's defaults: here /snapshots/BACKUPS is
    // missing, which the preview reports (and so it is invalid).
    EXPECT_EQ(report.settings().at("backup_dir"), "/snapshots/BACKUPS");
    EXPECT_EQ(report.settings().at("max_backups"), "4");
    EXPECT_THAT(report.error(),
                HasSubstr("backup_dir /snapshots/BACKUPS does not exist"));
    EXPECT_EQ(r.code, 2);
  }
}

// ---- rows 4, 5: password files ----

TEST_F(CliSimTest, PasswordFiles) {
  // create-password-file writes the seed's format, mode 0600, without logging
  // in.
  const std::string path = dir_ + "/new.pass";
  CliRun r = Cli({"--xapi-url", "http://127.0.0.1:1", sim_->password(),
                  "create-password-file=" + path});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "password file saved to: " + path + "\n");
  ASSERT_OK_AND_ASSIGN(std::string content,
                       vmb::testing::ReadFileToString(path));
  EXPECT_EQ(content,
            EncodePasswordFile(sim_->password()));  // base64, no newline
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // From stdin too, and CREATE-PASSWORD-FILE is case-insensitive like the seed.
  r = Cli({"-", "CREATE-PASSWORD-FILE=" + dir_ + "/stdin.pass"},
          "from-stdin\n");
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_OK_AND_ASSIGN(content,
                       vmb::testing::ReadFileToString(dir_ + "/stdin.pass"));
  EXPECT_EQ(content, EncodePasswordFile("from-stdin"));
  // A group-readable password file is refused, unless allowed.
  const std::string loose = dir_ + "/loose.pass";
  WriteFile(loose, EncodePasswordFile(sim_->password()), 0644);
  r = Cli({"--xapi-url", sim_->master_url(), "inventory", loose});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(
      r.err,
      HasSubstr("readable by group or others (mode 0644): run chmod 600"));
  r = Cli({"--xapi-url", sim_->master_url(), "--allow-insecure-password-file",
           "inventory", loose});
  EXPECT_EQ(r.code, 0) << r.err;
  // A password on the command line works, with a warning.
  r = Cli({"--xapi-url", sim_->master_url(), "inventory", sim_->password()});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("visible in the process list"));
}

TEST_F(CliSimTest, WrongPasswordIsOneClearErrorWithoutThePassword) {
  const std::string cfg = WriteFile(
      dir_ + "/w.cfg", "backup_dir=" + backups_ + "\nstatus_log=" + dir_ +
                           "/s.log\nvm-export=DEV-RH6\n");
  CliRun r = Cli({"--xapi-url", sim_->master_url(), "-", cfg, "preview"},
                 "wrong-secret\n");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("SESSION_AUTHENTICATION_FAILED"));
  EXPECT_THAT(r.out, HasSubstr("password from standard input"));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("wrong-secret")));
}

// ---- rows 2, 3, 6 and the malformed-input contract ----

TEST(CliTest, HelpWordsAnywherePrintTheirText) {
  for (const auto& [args, text] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"help"}, "usage:"},
           {{"pw", "weekly.cfg", "help"}, "usage:"},
           {{"config"}, "backup_dir_format="},
           {{"pw", "example"}, "vm-export=DEV.*:2"},
           {{"--version"}, "vmbackup 0."},
       }) {
    CliRun r = Cli(args);
    EXPECT_EQ(r.code, 0) << ::testing::PrintToString(args);
    EXPECT_THAT(r.out, HasSubstr(text));
  }
  // After "--" they are ordinary arguments (a password "help").
  CliRun r = Cli({"--", "help"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("usage: vmbackup"));
}

TEST(CliTest, ReservedCommandsAndTheirEscape) {
  // "run" is the coordinator command (tests/coordinator/control_client_test):
  // without --mtls-* or --plaintext it stops before connecting.
  CliRun r = Cli({"run", "weekly.cfg"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("mutual TLS needs --mtls-ca"));
  // Its usage error says how to pass a password spelled "run".
  r = Cli({"run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("vmbackup -- run"));
  // After standalone flags it is refused with the same escape.
  r = Cli({"--user", "root", "status", "weekly.cfg"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("vmbackup [FLAGS] -- status"));
  // With "--", "run" is the password: it reaches the next step (no such file).
  r = Cli({"--", "run", "/nonexistent/weekly.cfg", "preview"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err,
              HasSubstr("config file /nonexistent/weekly.cfg does not exist"));
}

// 30 and more malformed argument lists and config files: one clear message,
// exit 2, never a crash.
TEST(CliTest, MalformedArgumentsAndConfigsExit2WithOneMessage) {
  const std::string dir = vmb::testing::MakeTempDir("bad");
  auto cfg = [&](const std::string& name, const std::string& text) {
    return WriteFile(absl::StrCat(dir, "/", name), text);
  };
  mkdir((dir + "/folder.cfg").c_str(), 0755);
  const std::string pass = dir + "/p.pass";
  ASSERT_OK(WritePasswordFile(pass, "pw"));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      // argument lists
      {{}, "usage: vmbackup"},
      {{"pw"}, "usage: vmbackup"},
      {{"--bogus", "pw", "x"}, "unknown flag --bogus"},
      {{"--xapi-url"}, "--xapi-url needs a value"},
      {{"--xapi-url", "ftp://x", "pw", "x"}, "must start with http://"},
      {{"--tls-fingerprint", "zz", "pw", "x"}, "--tls-fingerprint"},
      {{"--json=yes", "pw", "x"}, "takes no value"},
      {{"pw", "DEV-RH6", "preview", "compress=maybe"},
       "the value must be True or False"},
      {{"pw", "DEV-RH6", "preview", "pre_clean"},
       "the value must be True or False"},
      {{"pw", "DEV-RH6", "verbose=true"}, "unknown argument 'verbose=true'"},
      {{"pw", "DEV-RH6", "--preview"}, "unknown argument '--preview'"},
      {{"pw", "exclude=X", "preview"},
       "neither an existing config file nor a vm-selector"},
      {{"pw", "DEV:0", "preview"},
       "vm-selector vm-export=DEV:0: the :N after the name"},
      {{"pw", "missing.cfg", "preview"},
       "config file missing.cfg does not exist"},
      {{"pw", dir + "/folder.cfg", "preview"}, "is not a file"},
      {{"pw", "create-password-file="},
       "usage: vmbackup <password|-> create-password-file=FILE"},
      {{"pw", "create-password-file=/nonexistent/dir/x"},
       "cannot write password file"},
      {{"pw", "create-password-file=" + dir + "/ok", "extra"},
       "takes no further arguments"},
      {{"-", "DEV-RH6", "preview"}, "no password on standard input"},
      {{"inventory"}, "usage: vmbackup [FLAGS] inventory"},
      {{"status"}, "mutual TLS needs --mtls-ca"},
      {{"pw", "DEV-RH6"}, "cannot run backups"},
      // config files
      {{pass, cfg("a.cfg", "max_backups"), "preview"},
       "a.cfg:1: expected key=value"},
      {{pass, cfg("b.cfg", "\n\nmax_backups=0"), "preview"},
       "b.cfg:3: max_backups=0"},
      {{pass, cfg("c.cfg", "foo=bar"), "preview"},
       "c.cfg:1: unknown key 'foo'"},
      {{pass, cfg("d.cfg", "max_backups=1\nmax_backups=2"), "preview"},
       "d.cfg:2: max_backups is set twice (lines 1 and 2)"},
      {{pass, cfg("e.cfg", "vm-export=web:-1"), "preview"},
       "e.cfg:1: vm-export=web:-1"},
      {{pass, cfg("f.cfg", "vdi_export_format=tar"), "preview"},
       "must be raw or vhd"},
      {{pass, cfg("g.cfg", "pool_db_backup=true"), "preview"},
       "must be 0 or 1"},
      {{pass, cfg("h.cfg", "backup_dir=backups"), "preview"},
       "must be an absolute path"},
      {{pass, cfg("i.cfg", "compress=lz4"), "preview"},
       "must be none, gzip or zstd"},
      {{pass, cfg("j.cfg", "mail_to=nobody"), "preview"},
       "is not an e-mail address"},
      {{pass, cfg("k.cfg", "stall_timeout=0"), "preview"},
       "must be at least 1s"},
      {{pass, cfg("l.cfg", std::string("vm-export=\x01\x02", 12)), "preview"},
       "control character"},
      {{pass, cfg("m.cfg", std::string(2 << 20, 'x')), "preview"},
       "larger than 1 MiB"},
      {{pass, cfg("n.cfg", "per_host_concurrency=100"), "preview"},
       "from 1 to 64"},
  };
  int n = 0;
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(::testing::PrintToString(args));
    CliRun r = Cli(args);
    EXPECT_EQ(r.code, 2);
    EXPECT_THAT(r.err, HasSubstr(message));
    // One message: a single error line (the usage text is its own message).
    if (message.rfind("usage", 0) != 0) {
      size_t errors = 0;
      for (size_t at = r.err.find("error:"); at != std::string::npos;
           at = r.err.find("error:", at + 1)) {
        ++errors;
      }
      EXPECT_EQ(errors, 1u) << r.err;
    }
    ++n;
  }
  EXPECT_GE(n, 30);
}

// The TLS flags: each mistake is one message naming the flag.
TEST(CliTest, TlsFlagErrorsNameTheFlag) {
  const std::string dir = vmb::testing::MakeTempDir("tls-flags");
  const std::string fp = std::string(64, 'a');
  const std::string pins =
      WriteFile(dir + "/pins", absl::StrCat("# hosts\n10.0.0.1 ", fp, "\n"));
  const std::string bad = WriteFile(dir + "/bad", "10.0.0.1 12:34\n");
  const std::string open =
      WriteFile(dir + "/open", absl::StrCat("10.0.0.1 ", fp, "\n"), 0666);
  const std::string https = "https://10.0.0.1";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--xapi-url", https, "--tls-pins-tofu", "pw", "x"},
       "--tls-pins-tofu needs --tls-pins FILE"},
      {{"--xapi-url", https, "--tls-pins-tofu=yes", "pw", "x"},
       "--tls-pins-tofu takes no value"},
      {{"--xapi-url", https, "--tls-pins"}, "--tls-pins needs a value"},
      {{"--xapi-url", https, "--tls-pins", dir + "/missing", "pw", "x"},
       "--tls-pins: cannot open pins file " + dir + "/missing"},
      {{"--xapi-url", https, "--tls-pins", bad, "pw", "x"},
       "--tls-pins: " + bad + ":1: a SHA-256 certificate fingerprint has 64"},
      {{"--xapi-url", https, "--tls-pins", open, "pw", "x"},
       "writable by others"},
      {{"--xapi-url", https, "--tls-pins", dir, "pw", "x"},
       "is not a regular file"},
      {{"--tls-pins", pins, "pw", "x"},
       "--tls-pins applies to https:// only, and --xapi-url is "
       "http://localhost"},
      {{"--xapi-url", "http://10.0.0.1", "--tls-fingerprint", fp, "pw", "x"},
       "--tls-fingerprint applies to https:// only"},
      {{"--xapi-url", https, "--tls-insecure", "--tls-pins", pins, "pw", "x"},
       "--tls-insecure accepts any certificate: it cannot be combined with "
       "--tls-pins"},
      {{"--xapi-url", https, "--tls-fingerprint", "12:34", "pw", "x"},
       "--tls-fingerprint: a SHA-256 certificate fingerprint has 64"},
      {{"--xapi-url", https, "--tls-pins-tofu", "--tls-pins",
        "/nonexistent/dir/pins", "pw", "x"},
       "--tls-pins: pins file /nonexistent/dir/pins does not exist and cannot "
       "be created"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(::testing::PrintToString(args));
    CliRun r = Cli(args);
    EXPECT_EQ(r.code, 2);
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // Good flags get as far as the next step (here: no executor).
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{
           {"--tls-pins", pins},
           {"--tls-pins", pins, "--tls-fingerprint", fp},
           {"--tls-pins", dir + "/new", "--tls-pins-tofu"},
           {"--tls-fingerprint", fp, "--tls-ca", pins}}) {
    std::vector<std::string> args = {"--xapi-url", https};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), {"pw", "DEV-RH6"});
    SCOPED_TRACE(::testing::PrintToString(args));
    EXPECT_THAT(Cli(args).err, HasSubstr("cannot run backups"));
  }
}

}  // namespace
}  // namespace vmb::coordinator
