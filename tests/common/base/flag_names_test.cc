// SPDX-License-Identifier: Apache-2.0
#include "common/base/flag_names.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

TEST(NormaliseFlagNamesTest, HyphensInNamesBecomeUnderscores) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> out,
      NormaliseFlagNames({"prog", "--state-dir=/var/lib/a-b", "-max-jobs", "4",
                          "--plaintext", "--", "--not-a-flag"}));
  EXPECT_THAT(out, ElementsAre("prog", "--state_dir=/var/lib/a-b", "-max_jobs",
                               "4", "--plaintext", "--", "--not-a-flag"));
}

TEST(NormaliseFlagNamesTest, FlagfilesAreExpandedInPlace) {
  const std::string path = ::testing::TempDir() + "/flags";
  {
    std::ofstream f(path);
    f << "# the coordinator\n\n  --xapi-url=https://pool-master  \n"
         "--heartbeat-interval=5s\n";
  }
  ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> out,
      NormaliseFlagNames({"prog", "--flag-file=x", "--flagfile=" + path,
                          "--listen=127.0.0.1:1"}));
  EXPECT_THAT(
      out,
      ElementsAre("prog", "--flag_file=x", "--xapi_url=https://pool-master",
                  "--heartbeat_interval=5s", "--listen=127.0.0.1:1"));
}

TEST(NormaliseFlagNamesTest, AMissingFlagfileIsNamed) {
  EXPECT_THAT(NormaliseFlagNames({"prog", "--flagfile=/nonexistent/f"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("/nonexistent/f")));
}

}  // namespace
}  // namespace vmb
