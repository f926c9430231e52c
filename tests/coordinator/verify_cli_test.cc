// SPDX-License-Identifier: Apache-2.0
// `vmbackup verify`'s arguments, output and exit codes, over seed-era
// folders made here (the checks themselves: backup_verify_test and
// StandaloneRunTest.VerifyFindsEveryDamageOfTheShare).
#include "coordinator/verify_cli.h"

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::coordinator {
namespace {

using ::testing::HasSubstr;

class VerifyCliTest : public ::testing::Test {
 protected:
  VerifyCliTest() : dir_(testing::MakeTempDir("verify-cli")) {
    backups_ = JoinPath(dir_, "backups");
    EXPECT_OK(fs_.CreateDir(backups_));
    EXPECT_OK(fs_.CreateDir(JoinPath(backups_, "vm")));
    // Four seed-era vdi-exports on four days, one of them uncommitted.
    for (int day = 25; day <= 28; ++day) {
      const std::string b = JoinPath(
          backups_, "vm", absl::StrCat("backup-2026-11-", day, "-(03:00:00)"));
      EXPECT_OK(fs_.CreateDir(b));
      EXPECT_OK(fs_.CreateDir(JoinPath(b, "DISK-xvda")));
      EXPECT_OK(WriteNewFile(fs_, JoinPath(b, "DISK-xvda", "vdi.cfg"),
                             "virtual_size=4096\n"));
      EXPECT_OK(
          WriteNewFile(fs_, JoinPath(b, "vm.raw"), std::string(4096, 'x')));
      if (day != 26) {
        EXPECT_OK(WriteNewFile(fs_, JoinPath(b, "success"), ""));
      }
    }
  }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), "verify");
    out_.str("");
    err_.str("");
    const absl::Time now = absl::FromCivil(
        absl::CivilSecond(2026, 11, 28, 12, 0, 0), absl::UTCTimeZone());
    return RunVerifyCommand(args, CliStreams{nullptr, &out_, &err_}, fs_, now,
                            absl::UTCTimeZone(), 7);
  }

  PosixFilesystem fs_;
  const std::string dir_;
  std::string backups_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(VerifyCliTest, ChecksWhatItIsGivenAndSaysSo) {
  EXPECT_EQ(Run({backups_}), 1);  // seed-era: warnings
  EXPECT_THAT(out_.str(),
              HasSubstr("verify: 3 backups checked (1 uncommitted folder "
                        "skipped): 0 ok, 3 WARNING, 0 ERROR; 12 KiB read"));
  EXPECT_THAT(out_.str(), HasSubstr("WARNING " + backups_ +
                                    "/vm/backup-2026-11-25-(03:00:00)  "
                                    "vdi-export, 1 file, 4 KiB\n"));

  EXPECT_EQ(Run({backups_, "--since=2d"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("verify: 2 backups checked"));
  EXPECT_EQ(Run({"--sample", "10", backups_}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("verify: 1 backup checked"));

  const std::string config = JoinPath(dir_, "weekend.cfg");
  ASSERT_OK(WriteNewFile(
      fs_, config, absl::StrCat("backup_dir=", backups_, "\nvm-export=vm\n")));
  EXPECT_EQ(Run({"--config", config, "--json"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("\"uncommitted_skipped\": 1"));
  EXPECT_THAT(out_.str(), HasSubstr("\"kind\": \"vdi-export\", \"files\": 1, "
                                    "\"bytes\": 4096"));

  ASSERT_OK(fs_.RemoveFile(
      JoinPath(backups_, "vm", "backup-2026-11-27-(03:00:00)", "vm.raw")));
  EXPECT_EQ(Run({backups_}), 2);
  EXPECT_THAT(out_.str(), HasSubstr("1 ERROR"));
  EXPECT_THAT(out_.str(), HasSubstr("error: no data file"));

  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("vmbackup verify [PATH...]"));
}

TEST_F(VerifyCliTest, BadArgumentsAreOneLineAndExit2) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "give the backups to check"},
      {{backups_, "--fast"}, "vmbackup verify has no flag --fast"},
      {{backups_, "--since"}, "--since needs a value"},
      {{backups_, "--since=soon"}, "--since soon: a duration"},
      {{backups_, "--sample=0"}, "--sample 0: a percentage"},
      {{backups_, "--sample=101%"}, "--sample 101%: a percentage"},
      {{backups_, "--json=yes"}, "--json takes no value"},
      {{JoinPath(dir_, "missing")}, "missing"},
      {{dir_}, "holds no backup folder"},
      {{"--config", JoinPath(dir_, "none.cfg")}, "--config: "},
  };
  for (const auto& [args, message] : cases) {
    EXPECT_EQ(Run(args), 2) << message;
    const std::string err = err_.str();
    EXPECT_THAT(err, HasSubstr("vmbackup: error: ")) << message;
    EXPECT_THAT(err, HasSubstr(message));
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

}  // namespace
}  // namespace vmb::coordinator
