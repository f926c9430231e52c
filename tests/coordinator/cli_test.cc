// SPDX-License-Identifier: Apache-2.0
#include "coordinator/cli.h"

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/password_file.h"
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

class CliInventoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = vmb::testing::SimProcess::Start();
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    dir_ = vmb::testing::MakeTempDir("cli");
    password_file_ = dir_ + "/VmBackup.pass";
    std::ofstream(password_file_) << EncodePasswordFile(sim_->password());
  }
  std::unique_ptr<vmb::testing::SimProcess> sim_;
  std::string dir_;
  std::string password_file_;
};

TEST_F(CliInventoryTest, ListsThePoolWithAPasswordFile) {
  CliRun r =
      Cli({"--xapi-url", sim_->master_url(), "inventory", password_file_});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Pool \"demo-pool\" (master xcp-host1"));
  EXPECT_THAT(r.out, HasSubstr("xcp-host3"));
  EXPECT_THAT(r.out, HasSubstr("DEV mySql"));
  EXPECT_THAT(r.out, HasSubstr("PROD-CentOS7-large-user-disks"));
  EXPECT_THAT(
      r.out,
      HasSubstr(
          "VMs (11; not listed: 1 templates, 1 snapshots, 3 control domains)"));
  EXPECT_THAT(r.out, HasSubstr("local to xcp-host3"));
  EXPECT_EQ(r.err, "");
}

TEST_F(CliInventoryTest, FollowsAPoolMemberToTheMaster) {
  CliRun r = Cli({"--xapi-url=" + sim_->host_url("xcp-host2"), "inventory",
                  password_file_});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(sim_->master_url()));
}

TEST_F(CliInventoryTest, ReadsThePasswordFromStdin) {
  CliRun r = Cli({"--xapi-url", sim_->master_url(), "inventory", "-"},
                 sim_->password() + "\n");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(CliInventoryTest, WarnsAboutAPasswordOnTheCommandLine) {
  CliRun r =
      Cli({"--xapi-url", sim_->master_url(), "inventory", sim_->password()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("visible in the process list"));
}

TEST_F(CliInventoryTest, WrongPasswordIsOneClearErrorWithoutThePassword) {
  CliRun r = Cli({"--xapi-url", sim_->master_url(), "inventory", "-"},
                 "wrong-secret\n");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("SESSION_AUTHENTICATION_FAILED"));
  EXPECT_THAT(r.err, HasSubstr("standard input"));
  EXPECT_THAT(r.err, Not(HasSubstr("wrong-secret")));
  EXPECT_EQ(r.out, "");
}

TEST(CliTest, BadArgumentsGiveOneClearErrorAndExit2) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "usage:"},
      {{"--bogus", "inventory", "x"}, "unknown flag --bogus"},
      {{"--xapi-url"}, "--xapi-url needs a value"},
      {{"--xapi-url", "ftp://x", "inventory", "p"}, "must start with http://"},
      {{"--tls-fingerprint", "zz", "inventory", "p"}, "--tls-fingerprint"},
      {{"--tls-insecure=yes", "inventory", "p"}, "takes no value"},
      {{"inventory"}, "usage: vmbackup [FLAGS] inventory"},
      {{"inventory", "a", "b"}, "usage: vmbackup [FLAGS] inventory"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"--xapi-url", "http://127.0.0.1:1", "inventory", "-"},
       "no password on standard input"},
      {{"--xapi-url", "http://127.0.0.1:1", "inventory", "pw"},
       "Couldn't connect"},
  };
  for (const auto& [args, message] : cases) {
    CliRun r = Cli(args);
    EXPECT_EQ(r.code, 2) << ::testing::PrintToString(args);
    EXPECT_THAT(r.err, HasSubstr(message)) << ::testing::PrintToString(args);
  }
}

TEST(CliTest, HelpExitsZero) {
  CliRun r = Cli({"help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--xapi-url"));
}

TEST(PasswordFileTest, SeedFormatRoundTripsAndBadFilesAreNamed) {
  const std::string dir = vmb::testing::MakeTempDir("pw");
  std::ofstream(dir + "/good") << EncodePasswordFile("p@ss w0rd") << "\n";
  ASSERT_OK_AND_ASSIGN(PasswordSource s,
                       ResolvePasswordArgument(dir + "/good", ""));
  EXPECT_EQ(s.password, "p@ss w0rd");
  EXPECT_FALSE(s.from_command_line);
  EXPECT_EQ(EncodePasswordFile("xenroot"),
            "eGVucm9vdA==");  // as VmBackup.py writes it
  std::ofstream(dir + "/empty") << "";
  EXPECT_THAT(ResolvePasswordArgument(dir + "/empty", "").status(),
              vmb::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("is empty")));
  std::ofstream(dir + "/bad") << "not base64 !!!";
  EXPECT_THAT(ResolvePasswordArgument(dir + "/bad", "").status(),
              vmb::testing::StatusIs(
                  absl::StatusCode::kInvalidArgument,
                  HasSubstr(dir + "/bad is not a VmBackup password file")));
}

}  // namespace
}  // namespace vmb::coordinator
