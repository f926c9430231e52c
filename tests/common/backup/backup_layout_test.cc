// SPDX-License-Identifier: Apache-2.0
#include "common/backup/backup_layout.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/backup/backup_manifest.h"
#include "tests/testing/backup_check.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::vmb::testing::StatusIs;

TEST(BackupFolderNameTest, BothFormatsRoundTrip) {
  const absl::CivilSecond t(2026, 11, 26, 3, 4, 5);
  EXPECT_EQ(FormatBackupFolderName(kBackupDirFormatSeed, t),
            "backup-2026-11-26-(03:04:05)");
  EXPECT_EQ(FormatBackupFolderName(kBackupDirFormatNoColons, t),
            "backup-2026-11-26-(03-04-05)");
  EXPECT_EQ(ParseBackupFolderName("backup-2026-11-26-(03:04:05)"), t);
  EXPECT_EQ(ParseBackupFolderName("backup-2026-11-26-(03-04-05)"), t);
}

TEST(BackupFolderNameTest, OtherNamesAreNotBackups) {
  for (const char* name :
       {"", "backup-", "backup-2026-11-26", "backup-2026-11-26-(03:04-05)",
        "backup-2026-13-26-(03:04:05)", "backup-2026-02-30-(03:04:05)",
        "backup-2026-11-26-(24:00:00)", "backup-2026-11-26-(03:04:05)x",
        "Backup-2026-11-26-(03:04:05)", "backup-2026-11-26-(3:04:05)",
        "backup-2026-11-26-(03:04:05", "backup-20a6-11-26-(03:04:05)",
        "manifest.json", ".vmbackup.lock"}) {
    EXPECT_FALSE(ParseBackupFolderName(name).has_value()) << name;
  }
}

TEST(SanitizeVmNameTest, SafeNamesStayAsTheyAre) {
  for (const char* name :
       {"PROD-ubuntu14", "DEV mySql", "web.example.com", "a:b,c", "$(reboot)",
        "`id`", ";rm -rf x", "ünïcödé", "🙂 emoji", "a.", "x..y", "-dash"}) {
    EXPECT_EQ(SanitizeVmName(name), name) << name;
  }
}

TEST(SanitizeVmNameTest, UnsafeNamesBecomeOneComponent) {
  EXPECT_EQ(SanitizeVmName("../../etc"), "___.._etc");
  EXPECT_EQ(SanitizeVmName("/abs"), "_abs");
  EXPECT_EQ(SanitizeVmName("a/b"), "a_b");
  EXPECT_EQ(SanitizeVmName("."), "_");
  EXPECT_EQ(SanitizeVmName(".."), "__");
  EXPECT_EQ(SanitizeVmName(".hidden"), "_hidden");
  EXPECT_EQ(SanitizeVmName(""), "_");
  EXPECT_EQ(SanitizeVmName("a\r\nBcc: x"), "a__Bcc: x");
  EXPECT_EQ(SanitizeVmName(std::string("a\0b", 3)), "a_b");
  EXPECT_EQ(SanitizeVmName("tab\there"), "tab_here");
  EXPECT_EQ(SanitizeVmName("del\x7f"), "del_");
  EXPECT_EQ(SanitizeVmName("c1\xc2\x85"), "c1_");     // NEL, a C1 control
  EXPECT_EQ(SanitizeVmName("bad\xff\xfe"), "bad__");  // not UTF-8
  EXPECT_EQ(SanitizeVmName("\xe2\x80\xae"
                           "rtl"),
            "\xe2\x80\xae"
            "rtl");
  const std::string long_name(300, 'x');
  EXPECT_EQ(SanitizeVmName(long_name), std::string(kMaxVmFolderNameBytes, 'x'));
  // Cut on a character boundary.
  std::string emoji;
  for (int i = 0; i < 100; ++i) emoji += "🙂";
  const std::string cut = SanitizeVmName(emoji);
  EXPECT_LE(cut.size(), kMaxVmFolderNameBytes);
  EXPECT_EQ(cut.size() % 4, 0u);
}

// ---------------------------------------------------------------- retention

BackupEntry Entry(absl::string_view name, bool committed) {
  BackupEntry e;
  e.name = std::string(name);
  e.time = *ParseBackupFolderName(name);
  e.committed = committed;
  return e;
}

TEST(CheckBackupDirTest, OnlyAnAbsoluteNormalisedPath) {
  for (const char* ok : {"/", "/snapshots/BACKUPS", "/mnt/a b/c.d", "/x..y"}) {
    EXPECT_OK(CheckBackupDir(ok)) << ok;
  }
  struct Case {
    std::string path;
    std::string why;
  };
  const std::vector<Case> bad = {
      {"", "not an absolute path"},
      {"snapshots/BACKUPS", "not an absolute path"},
      {"/snapshots/../etc", "\"..\""},
      {"/snapshots/./BACKUPS", "\".\""},
      {"/snapshots/..", "\"..\""},
      {"/snapshots//BACKUPS", "not normalised"},
      {"//snapshots", "not normalised"},
      {"/snapshots/BACKUPS/", "not normalised"},
      {"/snap\nshots", "control character"},
      {std::string("/a\0b", 4), "control character"},
      {"/" + std::string(4095, 'a'), "longer than 4095"},
  };
  for (const Case& c : bad) {
    EXPECT_THAT(CheckBackupDir(c.path),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr(c.why)))
        << c.path;
  }
}

std::string Day(int d) {
  return FormatBackupFolderName(kBackupDirFormatSeed,
                                absl::CivilSecond(2026, 1, d, 3, 0, 0));
}

TEST(RetentionTest, KeepsTheNewestCommittedOnes) {
  std::vector<BackupEntry> b = {Entry(Day(1), true), Entry(Day(2), true),
                                Entry(Day(3), true), Entry(Day(4), true),
                                Entry(Day(5), true)};
  EXPECT_THAT(PlanRetention(b, 3, Day(5)), ElementsAre(Day(1), Day(2)));
  EXPECT_THAT(PlanRetention(b, 5, Day(5)), IsEmpty());
  EXPECT_THAT(PlanRetention(b, 1, Day(5)),
              ElementsAre(Day(1), Day(2), Day(3), Day(4)));
  EXPECT_THAT(PlanRetention(b, 0, Day(5)),
              ElementsAre(Day(1), Day(2), Day(3), Day(4)));
}

TEST(RetentionTest, UnfinishedFoldersNeitherCountNorGo) {
  // The seed counted every entry: three failed runs would push out two good
  // backups.
  std::vector<BackupEntry> b = {Entry(Day(1), true), Entry(Day(2), true),
                                Entry(Day(3), false), Entry(Day(4), false),
                                Entry(Day(5), true)};
  EXPECT_THAT(PlanRetention(b, 3, Day(5)), IsEmpty());
  EXPECT_THAT(PlanRetention(b, 2, Day(5)), ElementsAre(Day(1)));
  EXPECT_THAT(UncommittedBackups(b), ElementsAre(Day(3), Day(4)));
}

TEST(RetentionTest, ANewBackupOlderThanTheNewestKeepsBoth) {
  // The clock went back: the new folder sorts before the newest one.
  std::vector<BackupEntry> b = {Entry(Day(1), true), Entry(Day(2), true),
                                Entry(Day(9), true)};
  EXPECT_THAT(PlanRetention(b, 1, Day(2)), ElementsAre(Day(1)));
}

TEST(RetentionTest, PreCleanLeavesRoomButKeepsTheNewest) {
  std::vector<BackupEntry> b = {Entry(Day(1), true), Entry(Day(2), true),
                                Entry(Day(3), true), Entry(Day(4), false)};
  EXPECT_THAT(PlanPreClean(b, 3), ElementsAre(Day(1)));
  EXPECT_THAT(PlanPreClean(b, 2), ElementsAre(Day(1), Day(2)));
  // max_backups=1: the seed did nothing; we keep the newest good one too.
  EXPECT_THAT(PlanPreClean(b, 1), ElementsAre(Day(1), Day(2)));
  std::vector<BackupEntry> one = {Entry(Day(1), true)};
  EXPECT_THAT(PlanPreClean(one, 1), IsEmpty());
}

// The property of reference/reliability.md §5.3: over random histories of
// committed, failed and unfinished folders and random max_backups, the
// newest committed backup is never deleted, the new one is never deleted,
// failed folders never count and are never chosen, and what goes is exactly
// the oldest surplus.
TEST(RetentionPropertyTest, TenThousandRandomHistories) {
  std::mt19937_64 rng(20261126);
  int histories = 0;
  int deletions = 0;
  for (int iter = 0; iter < 10000; ++iter) {
    const int n = std::uniform_int_distribution<int>(0, 24)(rng);
    const int max_backups = std::uniform_int_distribution<int>(-1, 8)(rng);
    std::vector<BackupEntry> b;
    std::set<std::string> names;
    for (int i = 0; i < n; ++i) {
      // Times collide now and then (both folder formats, same second).
      const int day = std::uniform_int_distribution<int>(1, 28)(rng);
      const int sec = std::uniform_int_distribution<int>(0, 2)(rng);
      const bool colons = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
      const std::string name = FormatBackupFolderName(
          colons ? kBackupDirFormatSeed : kBackupDirFormatNoColons,
          absl::CivilSecond(2026, 2, day, 3, 0, sec));
      if (!names.insert(name).second) continue;
      b.push_back(
          Entry(name, std::uniform_int_distribution<int>(0, 2)(rng) != 0));
    }
    std::shuffle(b.begin(), b.end(), rng);
    std::vector<const BackupEntry*> committed;
    for (const auto& e : b) {
      if (e.committed) committed.push_back(&e);
    }
    const auto by_time = [](const BackupEntry* x, const BackupEntry* y) {
      return x->time != y->time ? x->time < y->time : x->name < y->name;
    };
    std::sort(committed.begin(), committed.end(), by_time);

    // pre_clean, before the new backup.
    const std::vector<std::string> pre = PlanPreClean(b, max_backups);
    for (const std::string& name : pre) {
      auto it = std::find_if(b.begin(), b.end(), [&](const BackupEntry& e) {
        return e.name == name;
      });
      ASSERT_NE(it, b.end());
      ASSERT_TRUE(it->committed) << "pre_clean chose an unfinished folder";
      if (!committed.empty()) {
        ASSERT_NE(name, committed.back()->name)
            << "pre_clean chose the newest good backup";
      }
    }
    const size_t pre_keep = static_cast<size_t>(std::max(1, max_backups - 1));
    ASSERT_EQ(committed.size() - pre.size(),
              std::min(committed.size(), pre_keep));

    if (committed.empty()) continue;
    // Retention, the new backup being any committed folder (usually the
    // newest; an older one when the clock went back).
    const BackupEntry* fresh =
        std::uniform_int_distribution<int>(0, 3)(rng) == 0
            ? committed[std::uniform_int_distribution<size_t>(
                  0, committed.size() - 1)(rng)]
            : committed.back();
    const std::vector<std::string> removed =
        PlanRetention(b, max_backups, fresh->name);
    ++histories;
    deletions += static_cast<int>(removed.size());
    const size_t keep = static_cast<size_t>(std::max(1, max_backups));
    std::set<std::string> gone(removed.begin(), removed.end());
    ASSERT_EQ(gone.size(), removed.size()) << "a folder chosen twice";
    ASSERT_EQ(gone.count(fresh->name), 0u) << "deleted the new backup";
    ASSERT_EQ(gone.count(committed.back()->name), 0u)
        << "deleted the newest good backup";
    for (const auto& e : b) {
      if (!e.committed) {
        ASSERT_EQ(gone.count(e.name), 0u);
      }
    }
    // What stays: the newest `keep` committed ones, plus the new one.
    std::set<std::string> expected_kept;
    for (size_t i = 0; i < committed.size(); ++i) {
      if (i + keep >= committed.size())
        expected_kept.insert(committed[i]->name);
    }
    expected_kept.insert(fresh->name);
    ASSERT_EQ(committed.size() - removed.size(), expected_kept.size());
    for (const std::string& name : removed) {
      ASSERT_EQ(expected_kept.count(name), 0u);
    }
    // Oldest first.
    for (size_t i = 1; i < removed.size(); ++i) {
      ASSERT_LE(*ParseBackupFolderName(removed[i - 1]),
                *ParseBackupFolderName(removed[i]));
    }
  }
  EXPECT_GT(histories, 8000);
  EXPECT_GT(deletions, 10000);
}

// ------------------------------------------------------ the share, for real

class BackupShareTest : public ::testing::Test {
 protected:
  BackupShareTest() : root_(testing::MakeTempDir("share")) {}

  void MakeBackup(const std::string& vm_folder, const std::string& name,
                  bool committed, const std::string& vm_uuid = "") {
    const std::string vm_dir = JoinPath(root_, vm_folder);
    absl::Status s = fs_.CreateDir(vm_dir);
    ASSERT_TRUE(s.ok() || absl::IsAlreadyExists(s)) << s;
    ASSERT_OK(fs_.CreateDir(JoinPath(vm_dir, name)));
    ASSERT_OK(WriteNewFile(fs_, JoinPath(vm_dir, name, "vm.xva"), "data"));
    if (committed) {
      ASSERT_OK(WriteNewFile(fs_, JoinPath(vm_dir, name, "success"), ""));
    }
    if (!vm_uuid.empty()) {
      v1::BackupManifest m;
      m.set_format(std::string(kManifestFormat));
      m.set_vm_uuid(vm_uuid);
      ASSERT_OK(WriteNewFile(fs_, JoinPath(vm_dir, name, "manifest.json"),
                             FormatManifest(m)));
    }
  }

  PosixFilesystem fs_;
  const std::string root_;
};

TEST_F(BackupShareTest, ListBackupsSeesOnlyBackupFolders) {
  MakeBackup("vm", Day(2), true);
  MakeBackup("vm", Day(1), false);
  MakeBackup("vm",
             FormatBackupFolderName(kBackupDirFormatNoColons,
                                    absl::CivilSecond(2026, 1, 3, 0, 0, 0)),
             true);
  ASSERT_OK(fs_.CreateDir(JoinPath(root_, "vm", "notes")));
  ASSERT_OK(WriteNewFile(fs_, JoinPath(root_, "vm", "README"), "x"));
  // A success marker that is a symbolic link does not commit a folder.
  MakeBackup("vm", Day(4), false);
  ASSERT_EQ(symlink("/etc/hostname",
                    JoinPath(root_, "vm", Day(4), "success").c_str()),
            0);
  ASSERT_OK_AND_ASSIGN(std::vector<BackupEntry> b,
                       ListBackups(fs_, JoinPath(root_, "vm")));
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].name, Day(1));
  EXPECT_FALSE(b[0].committed);
  EXPECT_TRUE(b[1].committed);
  EXPECT_EQ(b[2].name, "backup-2026-01-03-(00-00-00)");
  EXPECT_TRUE(b[2].committed);
  EXPECT_FALSE(b[3].committed);
  ASSERT_OK_AND_ASSIGN(b, ListBackups(fs_, JoinPath(root_, "missing")));
  EXPECT_THAT(b, IsEmpty());
}

TEST_F(BackupShareTest, EverySeedMarkerCommits) {
  for (const std::string& marker : SuccessMarkers()) {
    const std::string vm = "vm-" + marker;
    MakeBackup(vm, Day(1), false);
    ASSERT_OK(WriteNewFile(fs_, JoinPath(root_, vm, Day(1), marker), ""));
    ASSERT_OK_AND_ASSIGN(std::vector<BackupEntry> b,
                         ListBackups(fs_, JoinPath(root_, vm)));
    ASSERT_EQ(b.size(), 1u);
    EXPECT_TRUE(b[0].committed) << marker;
  }
}

TEST_F(BackupShareTest, RemoveBackupNeverFollowsLinks) {
  const std::string canary = testing::MakeTempDir("canary");
  ASSERT_OK(WriteNewFile(fs_, JoinPath(canary, "keep"), "precious"));
  MakeBackup("vm", Day(1), true);
  const std::string dir = JoinPath(root_, "vm", Day(1));
  ASSERT_EQ(symlink(canary.c_str(), JoinPath(dir, "link").c_str()), 0);
  ASSERT_OK(fs_.CreateDir(JoinPath(dir, "DISK-xvda")));
  ASSERT_OK(WriteNewFile(fs_, JoinPath(dir, "DISK-xvda", "vbd.cfg"), "x"));
  ASSERT_OK(RemoveBackup(fs_, JoinPath(root_, "vm"), Day(1)));
  EXPECT_THAT(fs_.Stat(dir), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(std::string kept,
                       fs_.ReadFile(JoinPath(canary, "keep"), 100));
  EXPECT_EQ(kept, "precious");
}

TEST_F(BackupShareTest, ChooseVmFolderKeepsTheSeedsFolderWhenItIsSafe) {
  ASSERT_OK_AND_ASSIGN(VmFolderChoice c,
                       ChooseVmFolder(fs_, root_, "u1", "PROD-web", false));
  EXPECT_EQ(c.folder, "PROD-web");
  EXPECT_EQ(c.warning, "");
  // A folder VmBackup.py made (no manifests) is taken over.
  MakeBackup("DEV mySql", Day(1), true);
  ASSERT_OK_AND_ASSIGN(c, ChooseVmFolder(fs_, root_, "u2", "DEV mySql", false));
  EXPECT_EQ(c.folder, "DEV mySql");
  // So is one whose manifests name this VM.
  MakeBackup("db", Day(1), true, "u3");
  ASSERT_OK_AND_ASSIGN(c, ChooseVmFolder(fs_, root_, "u3", "db", false));
  EXPECT_EQ(c.folder, "db");
}

TEST_F(BackupShareTest, ChooseVmFolderSeparatesVmsThatWouldShareOne) {
  ASSERT_OK_AND_ASSIGN(VmFolderChoice c,
                       ChooseVmFolder(fs_, root_, "u1", "web", true));
  EXPECT_EQ(c.folder, "web--u1");
  EXPECT_THAT(c.warning, ::testing::HasSubstr("same name"));
  // The folder's newest manifest names another VM (recreated with the name).
  MakeBackup("db", Day(1), true, "old-uuid");
  MakeBackup("db", Day(2), false);
  ASSERT_OK_AND_ASSIGN(c, ChooseVmFolder(fs_, root_, "new-uuid", "db", false));
  EXPECT_EQ(c.folder, "db--new-uuid");
  EXPECT_THAT(c.warning, ::testing::HasSubstr("old-uuid"));
  // A file where the folder would be.
  ASSERT_OK(WriteNewFile(fs_, JoinPath(root_, "afile"), "x"));
  ASSERT_OK_AND_ASSIGN(c, ChooseVmFolder(fs_, root_, "u9", "afile", false));
  EXPECT_EQ(c.folder, "afile--u9");
}

TEST_F(BackupShareTest, HostileNamesStayInsideTheShareAndApart) {
  const std::vector<std::string>& names = testing::HostileVmNames();
  char real_root[PATH_MAX];
  ASSERT_NE(realpath(root_.c_str(), real_root), nullptr);
  std::set<std::string> folders;
  int i = 0;
  for (const std::string& name : names) {
    const std::string uuid = absl::StrCat("uuid-", i++);
    ASSERT_OK_AND_ASSIGN(VmFolderChoice c,
                         ChooseVmFolder(fs_, root_, uuid, name, false));
    EXPECT_TRUE(folders.insert(c.folder).second)
        << "shared folder " << c.folder;
    EXPECT_EQ(c.folder.find('/'), std::string::npos);
    EXPECT_NE(c.folder, ".");
    EXPECT_NE(c.folder, "..");
    const std::string path = JoinPath(root_, c.folder);
    ASSERT_OK(fs_.CreateDir(path)) << c.folder;
    char real[PATH_MAX];
    ASSERT_NE(realpath(path.c_str(), real), nullptr);
    EXPECT_EQ(std::string(real), absl::StrCat(real_root, "/", c.folder));
  }
}

TEST(PoolDbNamesTest, FormatAndParse) {
  EXPECT_EQ(PoolDbFolderName("xcp-host1.example.com"), "METADATA_xcp-host1");
  EXPECT_EQ(PoolDbFolderName("../x"), "METADATA__");
  const absl::CivilSecond t(2026, 11, 26, 3, 4, 5);
  EXPECT_EQ(PoolDbFileName(t), "pool_db_20261126-030405.dump");
  EXPECT_EQ(ParsePoolDbFileName("pool_db_20261126-030405.dump"), t);
  EXPECT_FALSE(ParsePoolDbFileName("pool_db_20261126-030405.dump.tmp"));
  EXPECT_FALSE(ParsePoolDbFileName("pool_db_2026112-030405.dump"));
}

}  // namespace
}  // namespace vmb
