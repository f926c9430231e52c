// SPDX-License-Identifier: Apache-2.0
// The agent process's settings: /etc/xensource-inventory, the coordinator
// address and the plaintext rule, defaults and flag errors.
#include "agent/agent_runner.h"

#include <fstream>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "agent/xensource_inventory.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::agent {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::vmb::testing::StatusIs;

constexpr char kUuid[] = "3f1c9d2e-6c1b-4b1e-9a53-2f5e1a7c0b11";

TEST(XensourceInventoryTest, ReadsQuotedValuesAsXenServerWritesThem) {
  ASSERT_OK_AND_ASSIGN(
      auto values,
      ParseXensourceInventory(
          "PRIMARY_DISK='/dev/disk/by-id/scsi-1'\n"
          "PRODUCT_VERSION='8.2.1'\n"
          "# a comment\n"
          "\n"
          "INSTALLATION_UUID='3f1c9d2e-6c1b-4b1e-9a53-2f5e1a7c0b11'\n"
          "  CONTROL_DOMAIN_UUID = \"1e8f...\"  \n"
          "BUILD_NUMBER=release/yangtze\n"
          "EMPTY=''\n"));
  EXPECT_THAT(values,
              ElementsAre(Pair("BUILD_NUMBER", "release/yangtze"),
                          Pair("CONTROL_DOMAIN_UUID", "1e8f..."),
                          Pair("EMPTY", ""), Pair("INSTALLATION_UUID", kUuid),
                          Pair("PRIMARY_DISK", "/dev/disk/by-id/scsi-1"),
                          Pair("PRODUCT_VERSION", "8.2.1")));
}

TEST(XensourceInventoryTest, RefusesMalformedLinesByNumber) {
  EXPECT_THAT(
      ParseXensourceInventory("A='1'\nno equals sign\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(ParseXensourceInventory("INSTALLATION_UUID='3f1c\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 1"), HasSubstr("quote"))));
  EXPECT_THAT(ParseXensourceInventory("='x'\n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseXensourceInventory("A B='x'\n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AgentRunnerTest, LoopbackIsOnlyThisMachine) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("LocalHost"));
  EXPECT_FALSE(IsLoopbackHost("128.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("::2"));
  EXPECT_FALSE(IsLoopbackHost("::ffff:10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("localhost.example.com"));
  EXPECT_FALSE(IsLoopbackHost("coordinator"));
  EXPECT_FALSE(IsLoopbackHost(""));
}

TEST(AgentRunnerTest, SplitsHostAndPort) {
  ASSERT_OK_AND_ASSIGN(auto v4, SplitHostPort("127.0.0.1:7443"));
  EXPECT_EQ(v4, std::make_pair(std::string("127.0.0.1"), 7443));
  ASSERT_OK_AND_ASSIGN(auto v6, SplitHostPort("[::1]:7443"));
  EXPECT_EQ(v6, std::make_pair(std::string("::1"), 7443));
  ASSERT_OK_AND_ASSIGN(auto name, SplitHostPort("localhost:1"));
  EXPECT_EQ(name.first, "localhost");
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", ":7443", "::1:7443",
                          "[::1]7443", "[::1", "host:0", "host:65536",
                          "host:+1", "host:12ab", "ho st:1", "dns:///x:1"}) {
    EXPECT_THAT(SplitHostPort(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

class ResolveAgentOptionsTest : public ::testing::Test {
 protected:
  AgentOptions Valid() {
    AgentOptions options;
    options.coordinator = "127.0.0.1:7443";
    options.plaintext = true;
    options.state_dir = "/var/lib/vmbackup-agent";
    options.host_uuid = kUuid;
    options.inventory_path = "/nonexistent/xensource-inventory";
    return options;
  }
  std::string Inventory(const std::string& text) {
    const std::string path = testing::MakeTempDir("inv") + "/inventory";
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(ResolveAgentOptionsTest, FillsInTheDefaults) {
  ASSERT_OK_AND_ASSIGN(AgentOptions resolved, ResolveAgentOptions(Valid()));
  EXPECT_EQ(resolved.host_uuid, kUuid);
  EXPECT_EQ(resolved.agent_id, kUuid);
  EXPECT_FALSE(resolved.host_name.empty());
  EXPECT_EQ(resolved.max_jobs, 2);

  AgentOptions from_inventory = Valid();
  from_inventory.host_uuid = "";
  from_inventory.inventory_path = Inventory(
      "PRODUCT_BRAND='XCP-ng'\n"
      "INSTALLATION_UUID='3F1C9D2E-6C1B-4B1E-9A53-2F5E1A7C0B11'\n");
  from_inventory.agent_id = "xen1";
  from_inventory.host_name = "xen1.example.com";
  ASSERT_OK_AND_ASSIGN(resolved, ResolveAgentOptions(from_inventory));
  EXPECT_EQ(resolved.host_uuid, kUuid);
  EXPECT_EQ(resolved.agent_id, "xen1");
  EXPECT_EQ(resolved.host_name, "xen1.example.com");
}

TEST_F(ResolveAgentOptionsTest, NamesTheFlagThatIsWrong) {
  struct Case {
    std::function<void(AgentOptions&)> change;
    std::string flag;
  };
  const std::vector<Case> cases = {
      {[](AgentOptions& o) { o.coordinator = ""; }, "--coordinator"},
      {[](AgentOptions& o) { o.coordinator = "127.0.0.1"; }, "--coordinator"},
      {[](AgentOptions& o) { o.plaintext = false; }, "--plaintext"},
      {[](AgentOptions& o) { o.coordinator = "10.0.0.1:7443"; }, "--plaintext"},
      {[](AgentOptions& o) { o.coordinator = "coordinator:7443"; },
       "--plaintext"},
      {[](AgentOptions& o) { o.state_dir = ""; }, "--state-dir"},
      {[](AgentOptions& o) { o.state_dir = "state"; }, "--state-dir"},
      {[](AgentOptions& o) { o.max_jobs = 0; }, "--max-jobs"},
      {[](AgentOptions& o) { o.max_jobs = 65; }, "--max-jobs"},
      {[](AgentOptions& o) { o.commit_wait = absl::ZeroDuration(); },
       "--commit-wait"},
      {[](AgentOptions& o) { o.host_uuid = "not-a-uuid"; }, "--host-uuid"},
      {[](AgentOptions& o) { o.agent_id = "has space"; }, "--agent-id"},
  };
  for (const Case& c : cases) {
    AgentOptions options = Valid();
    c.change(options);
    EXPECT_THAT(ResolveAgentOptions(options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.flag)))
        << c.flag;
  }
  // Loopback in every spelling passes the plaintext rule.
  for (const char* target : {"127.0.0.5:1", "[::1]:1", "localhost:1"}) {
    AgentOptions options = Valid();
    options.coordinator = target;
    EXPECT_OK(ResolveAgentOptions(options).status()) << target;
  }
}

TEST_F(ResolveAgentOptionsTest, AHostUuidNeedsTheFlagOrTheInventory) {
  AgentOptions missing = Valid();
  missing.host_uuid = "";
  EXPECT_THAT(ResolveAgentOptions(missing),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--host-uuid"),
                             HasSubstr("/nonexistent/xensource-inventory"))));
  AgentOptions no_key = missing;
  no_key.inventory_path = Inventory("PRODUCT_BRAND='XCP-ng'\n");
  EXPECT_THAT(ResolveAgentOptions(no_key),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--host-uuid"),
                             HasSubstr("no INSTALLATION_UUID"))));
  AgentOptions malformed = missing;
  malformed.inventory_path = Inventory("INSTALLATION_UUID='x\n");
  EXPECT_THAT(
      ResolveAgentOptions(malformed),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--host-uuid")));
}

}  // namespace
}  // namespace vmb::agent
