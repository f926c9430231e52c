// SPDX-License-Identifier: Apache-2.0
// Backup folders checked after the fact: folders written here the way a job
// writes them (data from the simulator's own stream writers, manifest.json,
// success), then damaged in each way the share can damage them.
#include "common/backup/backup_verify.h"

#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <openssl/sha.h>

#include "common/backup/backup_layout.h"
#include "common/backup/backup_manifest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/xapi_sim/disk_image.h"
#include "tests/xapi_sim/streams.h"

namespace vmb {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::vmb::testing::StatusIs;

std::string Sha256Hex(const std::string& data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  std::string hex;
  for (unsigned char c : d)
    absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
  return hex;
}

// Lists `data`, written as `name`, in the manifest's files.
void AddFile(v1::BackupManifest& m, const std::string& name,
             const std::string& data) {
  v1::ManifestFile* f = m.add_files();
  f->set_name(name);
  f->set_size(data.size());
  f->set_sha256(Sha256Hex(data));
}

class BackupVerifyTest : public ::testing::Test {
 protected:
  BackupVerifyTest()
      : root_(testing::MakeTempDir("verify")),
        vm_dir_(JoinPath(root_, "PROD-web")),
        a_(21, (3 << 20) + 4096),
        b_(22, 4 << 20) {
    EXPECT_EQ(mkdir(vm_dir_.c_str(), 0755), 0);
  }

  std::string Write(const std::string& folder, const std::string& name,
                    const std::string& data) {
    const std::string path = JoinPath(folder, name);
    EXPECT_OK(WriteNewFile(fs_, path, data));
    return path;
  }
  std::string Read(const std::string& path) {
    absl::StatusOr<std::string> s = fs_.ReadFile(path, 1 << 30);
    EXPECT_OK(s.status());
    return s.value_or("");
  }
  void Replace(const std::string& path, const std::string& data) {
    ASSERT_OK(fs_.RemoveFile(path));
    ASSERT_OK(WriteNewFile(fs_, path, data));
  }

  // A committed vm-export of disks a_ and b_; returns the folder.
  std::string VmExport(const std::string& name, v1::Compression c,
                       bool manifest = true) {
    const std::string folder = JoinPath(vm_dir_, name);
    EXPECT_EQ(mkdir(folder.c_str(), 0755), 0);
    auto xva = std::make_unique<sim::XvaSource>(
        sim::MinimalOvaXml({{"Ref:1", a_.size()}, {"Ref:2", b_.size()}}),
        std::vector<sim::XvaDisk>{{"Ref:1", &a_}, {"Ref:2", &b_}});
    std::unique_ptr<sim::ByteSource> source = std::move(xva);
    std::string file = "PROD-web.xva";
    if (c == v1::COMPRESSION_GZIP) {
      source = sim::GzipSource(std::move(source));
      file += ".gz";
    } else if (c == v1::COMPRESSION_ZSTD) {
      source = sim::ZstdSource(std::move(source));
      file += ".zst";
    }
    const std::string data = sim::DrainSource(*source);
    Write(folder, file, data);
    Write(folder, "vm-metadata.xml", "<value/>");
    if (manifest) {
      v1::BackupManifest m;
      m.set_format(std::string(kManifestFormat));
      m.set_vm_name("PROD-web");
      m.set_kind("vm-export");
      m.set_compression(c == v1::COMPRESSION_GZIP   ? "gzip"
                        : c == v1::COMPRESSION_ZSTD ? "zstd"
                                                    : "none");
      for (auto [dev, size] :
           {std::pair{"xvda", a_.size()}, {"xvdb", b_.size()}}) {
        v1::ManifestDisk* d = m.add_disks();
        d->set_device(dev);
        d->set_virtual_size(size);
      }
      AddFile(m, file, data);
      Write(folder, "manifest.json", FormatManifest(m));
    }
    Write(folder, "success", "");
    return folder;
  }

  // A committed vdi-export of both disks (vdi_export_disks=all).
  std::string VdiExport(const std::string& name, bool vhd) {
    const std::string folder = JoinPath(vm_dir_, name);
    EXPECT_EQ(mkdir(folder.c_str(), 0755), 0);
    v1::BackupManifest m;
    m.set_format(std::string(kManifestFormat));
    m.set_vm_name("PROD-web");
    m.set_kind("vdi-export");
    m.set_vdi_format(vhd ? "vhd" : "raw");
    for (auto [dev, disk] : {std::pair{"xvda", &a_}, {"xvdb", &b_}}) {
      std::string data;
      if (vhd) {
        sim::VhdSource s(disk, std::string(16, 'u'), 1000);
        data = sim::DrainSource(s);
      } else {
        sim::RawSource s(disk);
        data = sim::DrainSource(s);
      }
      const std::string file =
          absl::StrCat("PROD-web-", dev, vhd ? ".vhd" : ".raw");
      Write(folder, file, data);
      v1::ManifestDisk* d = m.add_disks();
      d->set_device(dev);
      d->set_virtual_size(disk->size());
      d->set_file(file);
      AddFile(m, file, data);
    }
    Write(folder, "manifest.json", FormatManifest(m));
    Write(folder, "success", "");
    return folder;
  }

  PosixFilesystem fs_;
  const std::string root_;
  const std::string vm_dir_;
  sim::GeneratedDisk a_;
  sim::GeneratedDisk b_;
};

constexpr char kT1[] = "backup-2026-11-28-(03:00:01)";
constexpr char kT2[] = "backup-2026-11-29-(03:00:01)";
constexpr char kT3[] = "backup-2026-11-30-(03:00:01)";

TEST_F(BackupVerifyTest, GoodBackupsOfEveryKindAreOk) {
  for (auto [name, c] : {std::pair{kT1, v1::COMPRESSION_NONE},
                         {kT2, v1::COMPRESSION_GZIP},
                         {kT3, v1::COMPRESSION_ZSTD}}) {
    BackupFolderCheck check = VerifyBackupFolder(fs_, VmExport(name, c));
    EXPECT_EQ(check.result, VerifyResult::kOk)
        << name << ": " << ::testing::PrintToString(check.errors);
    EXPECT_EQ(check.kind, "vm-export");
    EXPECT_EQ(check.vm_name, "PROD-web");
    EXPECT_EQ(check.files, 1);
    EXPECT_GT(check.bytes, 0u);
  }
  for (bool vhd : {false, true}) {
    BackupFolderCheck check =
        VerifyBackupFolder(fs_, VdiExport(vhd ? "backup-2026-12-01-(03:00:01)"
                                              : "backup-2026-12-02-(03:00:01)",
                                          vhd));
    EXPECT_EQ(check.result, VerifyResult::kOk)
        << ::testing::PrintToString(check.errors);
    EXPECT_EQ(check.files, 2);
    EXPECT_GT(check.bytes, 0u);
  }
}

TEST_F(BackupVerifyTest, AFlippedByteIsFoundWithOrWithoutTheManifestAgreeing) {
  const std::string folder = VmExport(kT1, v1::COMPRESSION_NONE);
  const std::string xva = JoinPath(folder, "PROD-web.xva");
  std::string data = Read(xva);
  data[data.size() / 2] ^= 0x10;
  Replace(xva, data);
  BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);
  EXPECT_THAT(check.errors, ElementsAre(HasSubstr("PROD-web.xva: ")));

  // The manifest rewritten to the damaged file's digest: the chunk
  // checksums inside the XVA still tell.
  const std::string manifest_path = JoinPath(folder, "manifest.json");
  absl::StatusOr<v1::BackupManifest> m = ParseManifest(Read(manifest_path));
  ASSERT_OK(m.status());
  m->mutable_files(0)->set_sha256(Sha256Hex(data));
  Replace(manifest_path, FormatManifest(*m));
  check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);
  EXPECT_THAT(check.errors, ElementsAre(AllOf(HasSubstr("PROD-web.xva"),
                                              HasSubstr("checksum"))));
}

TEST_F(BackupVerifyTest, ARawFileFlippedIsFoundByItsDigest) {
  const std::string folder = VdiExport(kT1, false);
  const std::string raw = JoinPath(folder, "PROD-web-xvdb.raw");
  std::string data = Read(raw);
  data[12345] ^= 1;
  Replace(raw, data);
  BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);
  EXPECT_THAT(check.errors, ElementsAre(AllOf(HasSubstr("PROD-web-xvdb.raw"),
                                              HasSubstr("SHA-256"))));
}

TEST_F(BackupVerifyTest, TruncatedFilesAreFound) {
  for (auto [name, c] :
       {std::pair{kT1, v1::COMPRESSION_NONE}, {kT2, v1::COMPRESSION_ZSTD}}) {
    const std::string folder = VmExport(name, c);
    const std::string file =
        JoinPath(folder, c == v1::COMPRESSION_NONE ? "PROD-web.xva"
                                                   : "PROD-web.xva.zst");
    ASSERT_EQ(
        truncate(file.c_str(), static_cast<off_t>(Read(file).size() - 1000)),
        0);
    BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
    EXPECT_EQ(check.result, VerifyResult::kError);
    EXPECT_THAT(check.errors, ElementsAre(HasSubstr("PROD-web.xva")));
  }
  const std::string folder = VdiExport(kT3, true);
  const std::string vhd = JoinPath(folder, "PROD-web-xvda.vhd");
  ASSERT_EQ(truncate(vhd.c_str(), 600), 0);
  BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);
  EXPECT_THAT(check.errors, ElementsAre(HasSubstr("PROD-web-xvda.vhd")));
}

TEST_F(BackupVerifyTest, AMissingDiskFileIsFound) {
  const std::string folder = VdiExport(kT1, false);
  ASSERT_OK(fs_.RemoveFile(JoinPath(folder, "PROD-web-xvdb.raw")));
  BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);
  EXPECT_THAT(check.errors, ElementsAre("PROD-web-xvdb.raw: missing"));
}

TEST_F(BackupVerifyTest, AnEditedManifestIsFound) {
  struct Edit {
    const char* what;
    std::function<void(v1::BackupManifest&)> edit;
    const char* error;
  };
  const std::vector<Edit> edits = {
      {"digest",
       [](v1::BackupManifest& m) {
         m.mutable_files(0)->set_sha256(std::string(64, '0'));
       },
       "SHA-256"},
      {"size",
       [](v1::BackupManifest& m) {
         m.mutable_files(0)->set_size(m.files(0).size() + 1);
       },
       "bytes, manifest.json says"},
      {"a disk's size",
       [](v1::BackupManifest& m) {
         m.mutable_disks(1)->set_virtual_size(m.disks(1).virtual_size() * 2);
       },
       "its disks hold"},
      {"a disk dropped",
       [](v1::BackupManifest& m) { m.mutable_disks()->RemoveLast(); },
       "its disks hold"},
      {"the file dropped",
       [](v1::BackupManifest& m) { m.mutable_files()->RemoveLast(); },
       "a data file manifest.json does not list"},
      {"a file outside the folder",
       [](v1::BackupManifest& m) {
         m.mutable_files(0)->set_name("../../etc/shadow");
       },
       "not a file of this folder"},
      {"not JSON", nullptr, "manifest.json: "},
  };
  int n = 0;
  for (const Edit& e : edits) {
    const std::string folder =
        VmExport(absl::StrCat("backup-2026-11-", 10 + n++, "-(03:00:01)"),
                 v1::COMPRESSION_GZIP);
    const std::string path = JoinPath(folder, "manifest.json");
    if (e.edit) {
      absl::StatusOr<v1::BackupManifest> m = ParseManifest(Read(path));
      ASSERT_OK(m.status());
      e.edit(*m);
      Replace(path, FormatManifest(*m));
    } else {
      Replace(path, "{\"format\": ");
    }
    BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
    EXPECT_EQ(check.result, VerifyResult::kError) << e.what;
    EXPECT_THAT(check.errors, Contains(HasSubstr(e.error))) << e.what;
  }
}

TEST_F(BackupVerifyTest, ASeedEraFolderIsAWarningAndStillCheckedForStructure) {
  const std::string folder = VmExport(kT1, v1::COMPRESSION_NONE, false);
  BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kWarning);
  EXPECT_THAT(check.errors, IsEmpty());
  EXPECT_THAT(check.warnings, ElementsAre(HasSubstr("no manifest.json")));
  EXPECT_EQ(check.files, 1);

  const std::string xva = JoinPath(folder, "PROD-web.xva");
  std::string data = Read(xva);
  data[data.size() / 3] ^= 0x01;
  Replace(xva, data);
  check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);

  // A seed vdi-export: the raw file's size from DISK-xvda/vdi.cfg.
  const std::string seed_vdi = JoinPath(vm_dir_, kT2);
  ASSERT_EQ(mkdir(seed_vdi.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(JoinPath(seed_vdi, "DISK-xvda").c_str(), 0755), 0);
  Write(JoinPath(seed_vdi, "DISK-xvda"), "vdi.cfg",
        absl::StrCat("name_label=x\nvirtual_size=", 3 << 20, "\n"));
  Write(seed_vdi, "PROD-web.raw", std::string(3 << 20, 'x'));
  Write(seed_vdi, "success", "");
  check = VerifyBackupFolder(fs_, seed_vdi);
  EXPECT_EQ(check.result, VerifyResult::kWarning);
  ASSERT_EQ(truncate(JoinPath(seed_vdi, "PROD-web.raw").c_str(), 1 << 20), 0);
  check = VerifyBackupFolder(fs_, seed_vdi);
  EXPECT_EQ(check.result, VerifyResult::kError);
}

TEST_F(BackupVerifyTest, AnUncommittedFolderIsNotABackup) {
  const std::string folder = VmExport(kT1, v1::COMPRESSION_NONE);
  ASSERT_OK(fs_.RemoveFile(JoinPath(folder, "success")));
  BackupFolderCheck check = VerifyBackupFolder(fs_, folder);
  EXPECT_EQ(check.result, VerifyResult::kError);
  EXPECT_THAT(check.errors, ElementsAre(HasSubstr("not committed")));
  EXPECT_EQ(check.files, 0);
}

TEST_F(BackupVerifyTest, FindsBackupsAtEachLevel) {
  const std::string b1 = VmExport(kT1, v1::COMPRESSION_NONE);
  const std::string b2 = VmExport(kT2, v1::COMPRESSION_NONE);
  ASSERT_OK(fs_.RemoveFile(JoinPath(b2, "success")));
  const std::string other = JoinPath(root_, "DEV-db");
  ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(JoinPath(other, kT3).c_str(), 0755), 0);
  Write(JoinPath(other, kT3), "success", "");
  ASSERT_EQ(mkdir(JoinPath(root_, "METADATA_xcp1").c_str(), 0755), 0);
  Write(JoinPath(root_, "METADATA_xcp1"), "pool_db_20261128-030001.dump", "db");

  auto paths = [](const std::vector<FoundBackup>& found) {
    std::vector<std::string> out;
    for (const FoundBackup& f : found) {
      out.push_back(absl::StrCat(f.path, f.committed ? "" : " (uncommitted)"));
    }
    return out;
  };
  ASSERT_OK_AND_ASSIGN(auto one, FindBackups(fs_, b1 + "/"));
  EXPECT_THAT(paths(one), ElementsAre(b1));
  EXPECT_EQ(one[0].time, absl::CivilSecond(2026, 11, 28, 3, 0, 1));
  ASSERT_OK_AND_ASSIGN(auto vm, FindBackups(fs_, vm_dir_));
  EXPECT_THAT(paths(vm), ElementsAre(b1, b2 + " (uncommitted)"));
  ASSERT_OK_AND_ASSIGN(auto all, FindBackups(fs_, root_));
  EXPECT_THAT(paths(all),
              ElementsAre(JoinPath(other, kT3), b1, b2 + " (uncommitted)"));
  EXPECT_THAT(FindBackups(fs_, JoinPath(root_, "METADATA_xcp1")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds no backup folder")));
  EXPECT_THAT(FindBackups(fs_, JoinPath(root_, "nope")).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(
      FindBackups(fs_, JoinPath(b1, "success")).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a folder")));
}

// verify_after_run's plan, over 60 weekly runs with retention: every
// backup that lives K runs past its own is read back once every K runs of
// its life, the newest never (it was checked as it streamed), and about
// PERCENT % of the older ones each run.
TEST_F(BackupVerifyTest, VerifyAfterRunReadsEachBackupBackOnceEveryKRuns) {
  for (int percent : {100, 50, 34, 25, 10}) {
    SCOPED_TRACE(percent);
    const std::string share = JoinPath(root_, absl::StrCat("share", percent));
    ASSERT_OK(fs_.CreateDir(share));
    const int k = (100 + percent - 1) / percent;
    const int max_backups = k + 2;
    std::map<std::string, int> checks;  // backup path -> times read back
    std::map<std::string, int> age;     // runs it has lived through
    std::vector<std::string> kept[2];
    int chosen = 0;
    int older = 0;
    for (int run = 0; run < 60; ++run) {
      for (int vm = 0; vm < 2; ++vm) {
        const std::string vm_dir = JoinPath(share, absl::StrCat("vm", vm));
        if (run == 0) {
          ASSERT_OK(fs_.CreateDir(vm_dir));
        }
        const std::string name = FormatBackupFolderName(
            kBackupDirFormatSeed,
            absl::CivilSecond(2026, 1, 1, 3, 0, 0) + run * 7 * 86400 + vm);
        const std::string b = JoinPath(vm_dir, name);
        ASSERT_OK(fs_.CreateDir(b));
        Write(b, "success", "");
        kept[vm].push_back(b);
        if (static_cast<int>(kept[vm].size()) > max_backups) {
          ASSERT_OK(fs_.RemoveTree(kept[vm].front()));
          kept[vm].erase(kept[vm].begin());
        }
        older += static_cast<int>(kept[vm].size()) - 1;
        for (const std::string& p : kept[vm]) ++age[p];
      }
      for (const std::string& p : PlanVerifyAfterRun(fs_, share, percent)) {
        ++checks[p];
        ++chosen;
        EXPECT_GE(age[p], 2) << p << " is the newest";
      }
    }
    int lived = 0;
    for (const auto& [p, a] : age) {
      // Runs after the one that made it: a - 1; read once every K of them.
      EXPECT_GE(checks[p], (a - 1) / k) << p;
      EXPECT_LE(checks[p], (a - 1 + k - 1) / k) << p;
      if (a > k) ++lived;
    }
    EXPECT_GT(lived, 80);
    EXPECT_NEAR(static_cast<double>(chosen) / older, 1.0 / k, 0.08);
  }
  EXPECT_THAT(PlanVerifyAfterRun(fs_, root_, 0), IsEmpty());
}

TEST_F(BackupVerifyTest, VerifyBackupsSumsUp) {
  const std::string good = VmExport(kT1, v1::COMPRESSION_NONE);
  const std::string seed = VmExport(kT2, v1::COMPRESSION_NONE, false);
  const std::string bad = VdiExport(kT3, false);
  ASSERT_OK(fs_.RemoveFile(JoinPath(bad, "PROD-web-xvda.raw")));
  VerifySummary s = VerifyBackups(fs_, {good, seed, bad});
  EXPECT_EQ(s.worst, VerifyResult::kError);
  EXPECT_THAT(s.line,
              HasSubstr("3 backups read back: 1 ok, 1 WARNING, 1 ERROR; "));
  EXPECT_THAT(
      s.findings,
      ElementsAre(HasSubstr(absl::StrCat("WARNING ", seed, ": no manifest")),
                  absl::StrCat("ERROR ", bad, ": PROD-web-xvda.raw: missing")));
  s = VerifyBackups(fs_, {good});
  EXPECT_EQ(s.worst, VerifyResult::kOk);
  EXPECT_THAT(s.findings, IsEmpty());

  // Told to stop part-way through the second folder's file: what was not
  // read to the end is left out, and said.
  int reads = 0;
  const int per_folder = static_cast<int>((a_.size() + b_.size()) >> 20);
  s = VerifyBackups(fs_, {good, bad, seed},
                    [&] { return ++reads > per_folder + 3; });
  EXPECT_EQ(s.worst, VerifyResult::kOk);
  EXPECT_THAT(s.line,
              HasSubstr("1 backup read back: 1 ok, 0 WARNING, 0 ERROR"));
  EXPECT_THAT(s.line, HasSubstr("(stopped: 2 not read)"));
  EXPECT_THAT(s.findings, IsEmpty());
}

}  // namespace
}  // namespace vmb
