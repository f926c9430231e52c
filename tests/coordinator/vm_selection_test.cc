// SPDX-License-Identifier: Apache-2.0
// Selection of VMs by a policy's rules. Rows refer to the seed checklist
// (docs/compatibility.md).
#include "coordinator/vm_selection.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/readme_regex_examples.h"
#include "tests/testing/status_matchers.h"

namespace vmb::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::vmb::testing::StatusIs;

std::vector<SelectionCandidate> Pool(const std::vector<std::string>& names) {
  std::vector<SelectionCandidate> out;
  int i = 0;
  for (const std::string& n : names)
    out.push_back({absl::StrCat("uuid-", i++), n});
  return out;
}

absl::StatusOr<Selection> Select(const std::string& config,
                                 const std::vector<SelectionCandidate>& pool) {
  absl::StatusOr<BackupPolicy> p = ParseBackupPolicy(config, "t.cfg");
  if (!p.ok()) return p.status();
  return SelectVms(*p, pool);
}

std::vector<std::string> Names(const std::vector<SelectedVm>& vms) {
  std::vector<std::string> out;
  for (const SelectedVm& v : vms) {
    out.push_back(v.max_backups_from_rule
                      ? absl::StrCat(v.name, ":", v.max_backups)
                      : v.name);
  }
  return out;
}

std::string Warnings(const Selection& s) {
  std::string out;
  for (const PolicyWarning& w : s.warnings)
    absl::StrAppend(&out, w.line, ": ", w.message, "\n");
  return out;
}

const std::vector<std::string>& kReadmeNames = vmb::testing::ReadmeVmNames();

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Row 14 and the README's regex examples: a simple name matches exactly,
// anything else is a regex anchored at the start only.
TEST(VmSelectionTest, ReadmeRegexExamplesSelectWhatTheReadmeDescribes) {
  const std::vector<SelectionCandidate> pool = Pool(kReadmeNames);
  for (const auto& c : vmb::testing::ReadmeRegexExamples()) {
    SCOPED_TRACE(c.config);
    ASSERT_OK_AND_ASSIGN(Selection s, Select(c.config, pool));
    EXPECT_EQ(Sorted(Names(s.vdi_exports)), c.vdi) << Warnings(s);
    EXPECT_EQ(Sorted(Names(s.vm_exports)), c.vm) << Warnings(s);
  }
}

// A '.' makes a regex; "^" is implied.
TEST(VmSelectionTest, DotsMakeRegexesAndTheStartAnchorIsImplied) {
  const auto pool = Pool(
      {"PRD-A-web", "PROD-ubuntu14", "PROD-ubuntu12", "PROD-ubuntu14-old"});
  ASSERT_OK_AND_ASSIGN(Selection s, Select("vm-export=PRD-.-web", pool));
  EXPECT_THAT(Names(s.vm_exports), ElementsAre("PRD-A-web"));
  ASSERT_OK_AND_ASSIGN(s, Select("vm-export=^PROD-ubuntu1[24]$", pool));
  EXPECT_THAT(Names(s.vm_exports),
              ElementsAre("PROD-ubuntu14", "PROD-ubuntu12"));
}

// Row 16: excludes apply to both lists wherever they stand.
TEST(VmSelectionTest, ExcludesApplyWhereverTheyStand) {
  ASSERT_OK_AND_ASSIGN(
      Selection s,
      Select(
          "vm-export=PRD-a.*\nvdi-export=PRD-b\nexclude=PRD-a2\nexclude=PRD-b\n"
          "vm-export=DEV-web3",
          Pool(kReadmeNames)));
  EXPECT_THAT(Names(s.vm_exports), ElementsAre("PRD-a", "PRD-ab", "DEV-web3"));
  EXPECT_THAT(s.vdi_exports, IsEmpty());
  ASSERT_EQ(s.excluded.size(), 2u);
  EXPECT_THAT(Warnings(s),
              HasSubstr("2: vdi-export=PRD-b matches only excluded VMs"));
}

// Row 17: vdi-export wins over vm-export, in any order.
TEST(VmSelectionTest, VdiExportWinsInAnyOrder) {
  for (const std::string& config :
       {std::string("vm-export=DEV-web3\nvdi-export=DEV-web3"),
        std::string("vdi-export=DEV-web3\nvm-export=DEV-web3"),
        // The seed's bug: two vm-export lines for the VM in a row survived.
        std::string(
            "vm-export=DEV-web3\nvm-export=DEV-web3:3\nvdi-export=DEV-web3")}) {
    SCOPED_TRACE(config);
    ASSERT_OK_AND_ASSIGN(Selection s, Select(config, Pool(kReadmeNames)));
    EXPECT_THAT(Names(s.vdi_exports), ElementsAre("DEV-web3"));
    EXPECT_THAT(s.vm_exports, IsEmpty());
    EXPECT_THAT(Warnings(s), HasSubstr("vdi-export wins"));
  }
}

// Row 18: the last definition for a VM in a list wins, at the first position.
TEST(VmSelectionTest, LastDefinitionWinsAtTheFirstPosition) {
  struct Case {
    std::string config;
    std::vector<std::string> vm;
  };
  for (const Case& c : std::vector<Case>{
           {"vm-export=PRD-a:2\nvm-export=PRD-b\nvm-export=PRD-a",
            {"PRD-a", "PRD-b"}},
           {"vm-export=PRD-a:1\nvm-export=PRD-a.*",
            {"PRD-a", "PRD-a2", "PRD-ab"}},
           {"vm-export=PRD-a.*\nvm-export=PRD-a:1",
            {"PRD-a:1", "PRD-a2", "PRD-ab"}},
       }) {
    SCOPED_TRACE(c.config);
    ASSERT_OK_AND_ASSIGN(Selection s, Select(c.config, Pool(kReadmeNames)));
    EXPECT_EQ(Names(s.vm_exports), c.vm);
  }
}

// Row 19: ":N" overrides max_backups for that VM; the global value otherwise.
TEST(VmSelectionTest, MaxBackupsOverride) {
  ASSERT_OK_AND_ASSIGN(
      Selection s, Select("max_backups=6\nvm-export=PRD-a:2\nvm-export=PRD-b",
                          Pool(kReadmeNames)));
  ASSERT_EQ(s.vm_exports.size(), 2u);
  EXPECT_EQ(s.vm_exports[0].max_backups, 2);
  EXPECT_EQ(s.vm_exports[1].max_backups, 6);
  EXPECT_FALSE(s.vm_exports[1].max_backups_from_rule);
}

// Row 20: an empty vm-export selects every VM.
TEST(VmSelectionTest, EmptyVmExportSelectsEveryVm) {
  ASSERT_OK_AND_ASSIGN(
      Selection s, Select("vm-export=\nexclude=PRD-.*", Pool(kReadmeNames)));
  const size_t not_prd = std::count_if(
      kReadmeNames.begin(), kReadmeNames.end(),
      [](const std::string& n) { return n.rfind("PRD-", 0) != 0; });
  EXPECT_EQ(s.vm_exports.size(), not_prd);
}

// Rows 21 and 22: regex errors and no VMs are errors.
TEST(VmSelectionTest, RegexErrorsAndNothingSelectedAreErrors) {
  EXPECT_THAT(
      Select("max_backups=2\nvm-export=PRD-[aA.*", Pool(kReadmeNames)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("t.cfg:2: invalid regex in vm-export=PRD-[aA.*")));
  EXPECT_THAT(Select("exclude=(", Pool(kReadmeNames)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.cfg:1: invalid regex")));
  // RE2 has no backreferences: a clear error, not a silent mismatch.
  EXPECT_THAT(
      Select(R"(vm-export=PRD-.*print(\d)\1$)", Pool(kReadmeNames)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid regex")));
  EXPECT_THAT(
      Select("vm-export=nothing-like-this", Pool(kReadmeNames)).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("no VM selected")));
  EXPECT_THAT(Select("max_backups=3", Pool(kReadmeNames)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no vm-export or vdi-export line")));
}

// A rule matching nothing is a warning when others select VMs.
TEST(VmSelectionTest, RulesMatchingNothingAreWarnings) {
  ASSERT_OK_AND_ASSIGN(
      Selection s, Select("vm-export=PRD-a\nvm-export=DEV-RH7:3\nexclude=gone",
                          Pool(kReadmeNames)));
  EXPECT_THAT(Warnings(s), HasSubstr("2: vm-export=DEV-RH7:3 matches no VM"));
  EXPECT_THAT(Warnings(s), HasSubstr("3: exclude=gone matches no VM"));
}

// Row 57, fixed: names with ':' and ',' can be selected; a mistyped ":N" on
// an existing name is an error, not a silent nothing.
TEST(VmSelectionTest, NamesWithColonsAndCommas) {
  const auto pool = Pool({"PRD-web:8080,v2", "db:replica", "web"});
  ASSERT_OK_AND_ASSIGN(
      Selection s,
      Select("vm-export=PRD-web:8080,v2:3\nvm-export=db:replica", pool));
  EXPECT_THAT(Names(s.vm_exports),
              ElementsAre("PRD-web:8080,v2:3", "db:replica"));
  EXPECT_THAT(
      Select("vm-export=web:abc", pool).status(),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr(
              "t.cfg:1: vm-export=web:abc matches no VM; if ':abc' was meant "
              "as the number of backups to keep")));
}

// Duplicate names: every such VM is selected, by UUID, with a warning.
TEST(VmSelectionTest, DuplicateNamesAreAllSelectedByUuid) {
  std::vector<SelectionCandidate> pool = {
      {"u1", "web"}, {"u2", "web"}, {"u3", "db"}};
  ASSERT_OK_AND_ASSIGN(Selection s,
                       Select("vm-export=web\nvm-export=web", pool));
  ASSERT_EQ(s.vm_exports.size(), 2u);  // and never twice the same one
  EXPECT_EQ(s.vm_exports[0].uuid, "u1");
  EXPECT_EQ(s.vm_exports[1].uuid, "u2");
  EXPECT_TRUE(s.vm_exports[0].shares_name);
  EXPECT_THAT(
      Warnings(s),
      HasSubstr("2 VMs are called 'web' (u1, u2); each is backed up, by UUID"));
}

// Hostile patterns cannot blow up: RE2 runs in linear time.
TEST(VmSelectionTest, HostilePatternsFinishQuickly) {
  std::vector<SelectionCandidate> pool = {{"u1", std::string(5000, 'a') + "!"}};
  const absl::Time start = absl::Now();
  auto s = Select("vm-export=(a+)+$\nvm-export=(a|aa)*c", pool);
  EXPECT_FALSE(s.ok());  // nothing matches: no VM selected
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace vmb::coordinator
