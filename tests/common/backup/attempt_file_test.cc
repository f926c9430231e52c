// SPDX-License-Identifier: Apache-2.0
#include "common/backup/attempt_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/faulty_filesystem.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

v1::AttemptFile Attempt() {
  v1::AttemptFile a;
  a.set_job_id("20261126-030001-4f2a-vm7");
  a.set_attempt(3);
  a.set_fencing_token(41);
  a.set_run_id("20261126-030001-4f2a");
  a.set_agent_id("agent-xcp-host1");
  a.set_host_uuid("6f3c2b1a-0d4e-4c8f-9a7b-5e6d7c8b9a01");
  return a;
}

class AttemptFileTest : public ::testing::Test {
 protected:
  std::string Path() const { return JoinPath(dir_, kAttemptFileName); }
  void Put(absl::string_view text) {
    ASSERT_OK(WriteNewFile(fs_, Path(), text));
  }

  PosixFilesystem fs_;
  const std::string dir_ = testing::MakeTempDir("backup");
};

TEST_F(AttemptFileTest, RoundTripsAsTextFormat) {
  ASSERT_OK(WriteAttemptFile(fs_, dir_, Attempt()));
  ASSERT_OK_AND_ASSIGN(v1::AttemptFile back, ReadAttemptFile(fs_, dir_));
  EXPECT_EQ(back.SerializeAsString(), Attempt().SerializeAsString());
  // Readable by a person looking at the share.
  ASSERT_OK_AND_ASSIGN(std::string text, fs_.ReadFile(Path(), 4096));
  EXPECT_THAT(text, HasSubstr("job_id: \"20261126-030001-4f2a-vm7\"\n"));
  EXPECT_THAT(text, HasSubstr("fencing_token: 41\n"));
  EXPECT_LT(text.size(), kMaxAttemptFileBytes);
}

TEST_F(AttemptFileTest, TheFileAndThenItsFolderAreFsynced) {
  testing::FaultyFilesystem fs;
  ASSERT_OK(WriteAttemptFile(fs, dir_, Attempt()));
  EXPECT_EQ(fs.ops(),
            (std::vector<std::string>{"create " + Path(), "fsync " + Path(),
                                      "syncdir " + dir_}));
}

TEST_F(AttemptFileTest, NeverReplacesOne) {
  ASSERT_OK(WriteAttemptFile(fs_, dir_, Attempt()));
  v1::AttemptFile other = Attempt();
  other.set_fencing_token(42);
  EXPECT_THAT(WriteAttemptFile(fs_, dir_, other),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(v1::AttemptFile back, ReadAttemptFile(fs_, dir_));
  EXPECT_EQ(back.fencing_token(), 41u);
}

TEST_F(AttemptFileTest, AnAttemptWithoutAJobIdIsNotWritten) {
  v1::AttemptFile a = Attempt();
  a.clear_job_id();
  EXPECT_THAT(WriteAttemptFile(fs_, dir_, a),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(fs_.Stat(Path()).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AttemptFileTest, NotFoundWithoutAFileOrAFolder) {
  EXPECT_THAT(ReadAttemptFile(fs_, dir_).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ReadAttemptFile(fs_, JoinPath(dir_, "gone")).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AttemptFileTest, FieldsOfALaterVersionAreIgnored) {
  Put("job_id: \"j\"\nfencing_token: 7\nlease_holder: \"x\"\nfuture { a: 1 "
      "}\n");
  ASSERT_OK_AND_ASSIGN(v1::AttemptFile back, ReadAttemptFile(fs_, dir_));
  EXPECT_EQ(back.job_id(), "j");
  EXPECT_EQ(back.fencing_token(), 7u);
}

TEST_F(AttemptFileTest, MalformedFilesAreInvalidArgumentNamingThePath) {
  struct Case {
    std::string text;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"", "no job_id"},  // a crash, or a writer, between create and write
      {"fencing_token: 7\n", "no job_id"},
      {"job_id: \"j\"\nfencing_token: -1\n", "line 2"},
      {"job_id: \"unterminated\n", "line 1"},
      {"\x7f"
       "ELF\x01\x01",
       "line 1"},
      {std::string(kMaxAttemptFileBytes + 1, ' '), "4097 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text.substr(0, 40));
    Put(c.text);
    absl::StatusOr<v1::AttemptFile> got = ReadAttemptFile(fs_, dir_);
    EXPECT_THAT(got.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr(Path())));
    EXPECT_THAT(got.status().message(), HasSubstr(c.why));
    ASSERT_OK(fs_.RemoveFile(Path()));
  }
}

TEST_F(AttemptFileTest, OnlyARegularFileIsEverOpened) {
  // A link (even to a good attempt file), a folder, a FIFO (opening it would
  // wait for a writer): each malformed, none followed or opened.
  const std::string elsewhere = testing::MakeTempDir("elsewhere");
  ASSERT_OK(WriteAttemptFile(fs_, elsewhere, Attempt()));
  ASSERT_EQ(
      symlink(JoinPath(elsewhere, kAttemptFileName).c_str(), Path().c_str()),
      0);
  EXPECT_THAT(ReadAttemptFile(fs_, dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a regular file")));
  ASSERT_OK(fs_.RemoveFile(Path()));
  ASSERT_OK(fs_.CreateDir(Path()));
  EXPECT_THAT(ReadAttemptFile(fs_, dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(fs_.RemoveTree(Path()));
  ASSERT_EQ(mkfifo(Path().c_str(), 0644), 0);
  EXPECT_THAT(ReadAttemptFile(fs_, dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace vmb
