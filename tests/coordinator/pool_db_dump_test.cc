// SPDX-License-Identifier: Apache-2.0
// The pool database dump against xapi-sim: where it goes, that a new
// METADATA_ folder is made durable, and that crashed runs' temporary files
// go whatever their time.
#include "coordinator/pool_db_dump.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/base/filesystem.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/faulty_filesystem.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::coordinator {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::FakeClock;
using ::vmb::testing::FaultyFilesystem;
using ::vmb::testing::SimProcess;

class PoolDbDumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = SimProcess::Start();
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK(client_->Login());
    share_ = vmb::testing::MakeTempDir("pooldb");
    options_.backup_dir = share_;
    options_.master_name = "xcp-host1.example.org";
    options_.master_url = sim_->master_url();
    for (const std::string& address : sim_->host_addresses()) {
      HostIdentity host;
      host.address = address;
      options_.redirect_hosts.push_back(host);
    }
    options_.time_zone = absl::UTCTimeZone();
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  std::string share_;
  PoolDbDumpOptions options_;
  FakeClock clock_{absl::FromCivil(absl::CivilSecond(2026, 11, 29, 3, 0, 1),
                                   absl::UTCTimeZone())};
};

TEST_F(PoolDbDumpTest, ANewMetadataFolderIsMadeDurable) {
  FaultyFilesystem fs;
  ASSERT_OK_AND_ASSIGN(PoolDbDumpResult r,
                       DumpPoolDatabase(*client_, fs, clock_, options_));
  const std::string dir = JoinPath(share_, "METADATA_xcp-host1");
  EXPECT_EQ(r.path, JoinPath(dir, "pool_db_20261129-030001.dump"));
  const std::vector<std::string> ops = fs.ops();
  const auto made = std::find(ops.begin(), ops.end(), "mkdir " + dir);
  const auto synced = std::find(ops.begin(), ops.end(), "syncdir " + share_);
  ASSERT_NE(made, ops.end());
  ASSERT_NE(synced, ops.end())
      << "the share was never fsynced after METADATA_ was made";
  EXPECT_LT(made, synced);
}

TEST_F(PoolDbDumpTest, ACrashedRunsPartialDumpGoesWhateverItsTime) {
  PosixFilesystem fs;
  const std::string dir = JoinPath(share_, "METADATA_xcp-host1");
  ASSERT_OK(fs.CreateDir(dir));
  // Left by runs that crashed on other days, and a stranger's file.
  ASSERT_OK(WriteNewFile(
      fs, JoinPath(dir, ".pool_db_20240101-000000.dump.partial"), "<database"));
  ASSERT_OK(WriteNewFile(
      fs, JoinPath(dir, ".pool_db_20261128-030001.dump.partial"), "<data"));
  ASSERT_OK(WriteNewFile(fs, JoinPath(dir, "notes.txt"), "mine"));
  ASSERT_OK_AND_ASSIGN(PoolDbDumpResult r,
                       DumpPoolDatabase(*client_, fs, clock_, options_));
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries, fs.ListDir(dir));
  std::vector<std::string> names;
  for (const DirEntry& e : entries) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"notes.txt",
                                             "pool_db_20261129-030001.dump"}));
  ASSERT_OK_AND_ASSIGN(std::string dump, fs.ReadFile(r.path, 64 << 20));
  EXPECT_THAT(dump, HasSubstr("<database"));
}

}  // namespace
}  // namespace vmb::coordinator
