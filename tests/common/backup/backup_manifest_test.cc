// SPDX-License-Identifier: Apache-2.0
#include "common/backup/backup_manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

v1::BackupManifest Sample() {
  v1::BackupManifest m;
  m.set_format(std::string(kManifestFormat));
  m.set_vmbackup_version("0.4.0");
  m.set_run_id("r1");
  m.set_job_id("r1/3");
  m.set_vm_uuid("0b4e7f57-1c55-4a8b-9a3a-6a1f0e6e0f11");
  m.set_vm_name("DEV \"quoted\" \\ name\nwith newline");
  m.set_kind("vm-export");
  m.set_source_host("xcp-host2");
  m.set_compression("zstd");
  v1::ManifestDisk* d = m.add_disks();
  d->set_device("xvda");
  d->set_userdevice("0");
  d->set_virtual_size(17179869184ull);
  v1::ManifestFile* f = m.add_files();
  f->set_name("DEV.xva.zst");
  f->set_size(123456789012ull);
  f->set_sha256(std::string(64, 'a'));
  return m;
}

TEST(BackupManifestTest, RoundTripsThroughJson) {
  const v1::BackupManifest m = Sample();
  const std::string json = FormatManifest(m);
  EXPECT_THAT(json, HasSubstr("\"size\": 123456789012,"));
  EXPECT_THAT(json, HasSubstr("\"virtual_size\": 17179869184\n"));
  EXPECT_THAT(json, HasSubstr("\\\"quoted\\\" \\\\ name\\nwith newline"));
  ASSERT_OK_AND_ASSIGN(v1::BackupManifest back, ParseManifest(json));
  EXPECT_EQ(back.SerializeAsString(), m.SerializeAsString());
}

TEST(BackupManifestTest, EmptyListsAreValidJson) {
  v1::BackupManifest m;
  m.set_format(std::string(kManifestFormat));
  ASSERT_OK_AND_ASSIGN(v1::BackupManifest back,
                       ParseManifest(FormatManifest(m)));
  EXPECT_EQ(back.files_size(), 0);
}

TEST(BackupManifestTest, NamesThatAreNotUtf8StillMakeValidJson) {
  v1::BackupManifest m = Sample();
  m.set_vm_name(std::string("bad\xff\x01\x7f", 6));
  const std::string json = FormatManifest(m);
  EXPECT_THAT(json, HasSubstr("bad\\u00ff\\u0001\\u007f"));
  ASSERT_OK_AND_ASSIGN(v1::BackupManifest back, ParseManifest(json));
  EXPECT_EQ(back.vm_name(), "bad\xc3\xbf\x01\x7f");
}

TEST(BackupManifestTest, RejectsWhatIsNotAManifest) {
  EXPECT_THAT(ParseManifest("{"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseManifest("{\"format\": \"other\"}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("other")));
  EXPECT_THAT(ParseManifest("[]"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Fields from a later version are ignored.
  EXPECT_OK(ParseManifest(
      "{\"format\": \"vmbackup-manifest/1\", \"later_field\": 1}"));
}

TEST(JsonQuoteTest, Escapes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\td\re"), "\"a\\\"b\\\\c\\td\\re\"");
  EXPECT_EQ(JsonQuote("🙂"), "\"🙂\"");
  EXPECT_EQ(JsonQuote(std::string("\0", 1)), "\"\\u0000\"");
}

}  // namespace
}  // namespace vmb
