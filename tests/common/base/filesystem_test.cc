// SPDX-License-Identifier: Apache-2.0
#include "common/base/filesystem.h"

#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

class FilesystemTest : public ::testing::Test {
 protected:
  FilesystemTest() : dir_(testing::MakeTempDir("fs")) {}
  PosixFilesystem fs_;
  const std::string dir_;
};

TEST_F(FilesystemTest, NewFilesAreExclusiveAndNeverFollowLinks) {
  const std::string path = JoinPath(dir_, "f");
  ASSERT_OK(WriteNewFile(fs_, path, "hello"));
  EXPECT_THAT(fs_.NewWritableFile(path).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(path)));
  const std::string target = JoinPath(dir_, "target");
  const std::string link = JoinPath(dir_, "link");
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_FALSE(fs_.NewWritableFile(link).ok());
  EXPECT_FALSE(fs_.NewAppendableFile(link).ok());
  EXPECT_THAT(fs_.Stat(target), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(std::string text, fs_.ReadFile(path, 5));
  EXPECT_EQ(text, "hello");
  EXPECT_THAT(fs_.ReadFile(path, 4), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(FilesystemTest, FilesAreReadFrontToBackAndOnlyRegularOnes) {
  const std::string path = JoinPath(dir_, "data");
  std::string content;
  for (int i = 0; content.size() < (3 << 20); ++i) {
    absl::StrAppend(&content, "line ", i, "\n");
  }
  ASSERT_OK(WriteNewFile(fs_, path, content));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ReadableFile> f, fs_.OpenForRead(path));
  std::string back;
  char buf[100000];
  while (true) {
    ASSERT_OK_AND_ASSIGN(size_t n, f->Read(buf, sizeof(buf)));
    if (n == 0) break;
    back.append(buf, n);
  }
  EXPECT_EQ(back, content);

  const std::string link = JoinPath(dir_, "link");
  ASSERT_EQ(symlink(path.c_str(), link.c_str()), 0);
  EXPECT_THAT(fs_.OpenForRead(link).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("symbolic link")));
  const std::string fifo = JoinPath(dir_, "fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(fs_.OpenForRead(fifo).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a regular file")));
  EXPECT_THAT(fs_.OpenForRead(dir_).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(fs_.OpenForRead(JoinPath(dir_, "missing")).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(FilesystemTest, AppendableFilesAppend) {
  const std::string path = JoinPath(dir_, "log");
  for (const char* line : {"a\n", "b\n"}) {
    ASSERT_OK_AND_ASSIGN(auto f, fs_.NewAppendableFile(path));
    ASSERT_OK(f->Append(line));
    ASSERT_OK(f->Close());
  }
  ASSERT_OK_AND_ASSIGN(std::string text, fs_.ReadFile(path, 100));
  EXPECT_EQ(text, "a\nb\n");
}

TEST_F(FilesystemTest, ListStatRemove) {
  ASSERT_OK(fs_.CreateDir(JoinPath(dir_, "b")));
  ASSERT_OK(WriteNewFile(fs_, JoinPath(dir_, "a"), ""));
  ASSERT_OK(WriteNewFile(fs_, JoinPath(dir_, "b", "c"), "x"));
  EXPECT_THAT(fs_.CreateDir(JoinPath(dir_, "b")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries, fs_.ListDir(dir_));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "a");
  EXPECT_FALSE(entries[0].is_dir);
  EXPECT_EQ(entries[1].name, "b");
  EXPECT_TRUE(entries[1].is_dir);
  ASSERT_OK_AND_ASSIGN(FileInfo info, fs_.Stat(JoinPath(dir_, "b", "c")));
  EXPECT_EQ(info.size, 1u);
  ASSERT_OK(fs_.RemoveTree(JoinPath(dir_, "b")));
  EXPECT_THAT(fs_.Stat(JoinPath(dir_, "b")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(fs_.ListDir(JoinPath(dir_, "none")).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(FilesystemTest, LocksExcludeEachOther) {
  const std::string path = JoinPath(dir_, ".lock");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileLock> lock, fs_.LockFile(path));
  EXPECT_THAT(
      fs_.LockFile(path).status(),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("another process")));
  lock.reset();
  EXPECT_OK(fs_.LockFile(path).status());
}

TEST_F(FilesystemTest, MountInfo) {
  ASSERT_OK_AND_ASSIGN(MountInfo root, fs_.Mount("/"));
  EXPECT_TRUE(root.is_mount_point);
  EXPECT_EQ(root.mount_point, "/");
  ASSERT_OK_AND_ASSIGN(MountInfo here, fs_.Mount(dir_));
  EXPECT_FALSE(here.is_mount_point);
  EXPECT_FALSE(here.fs_type.empty());
  ASSERT_OK_AND_ASSIGN(MountInfo proc, fs_.Mount("/proc"));
  EXPECT_TRUE(proc.is_mount_point);
  EXPECT_EQ(proc.fs_type, "proc");
  ASSERT_OK_AND_ASSIGN(SpaceInfo space, fs_.Space(dir_));
  EXPECT_GT(space.total_bytes, 0u);
}

}  // namespace
}  // namespace vmb
