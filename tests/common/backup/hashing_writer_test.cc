// SPDX-License-Identifier: Apache-2.0
#include "common/backup/hashing_writer.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <openssl/evp.h>

#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

std::string OneShot(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(md), n));
}

// Keeps what is appended; fails with ENOSPC's status once `capacity` bytes
// would be exceeded.
class FakeFile final : public WritableFile {
 public:
  explicit FakeFile(size_t capacity = SIZE_MAX) : capacity_(capacity) {}

  absl::Status Append(absl::string_view data) override {
    absl::MutexLock lock(&mu_);
    ++appends_;
    if (data.size() > capacity_ - content_.size()) {
      return absl::ResourceExhaustedError(
          "cannot write /share/vm.xva: No space left on device");
    }
    content_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Sync() override { return absl::OkStatus(); }
  absl::Status Close() override { return absl::OkStatus(); }

  std::string content() {
    absl::MutexLock lock(&mu_);
    return content_;
  }
  int appends() {
    absl::MutexLock lock(&mu_);
    return appends_;
  }

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::string content_ ABSL_GUARDED_BY(mu_);
  int appends_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string RandomBytes(size_t size, std::mt19937_64& rng) {
  std::string data(size, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  return data;
}

TEST(HashingWriterTest, EmptyInput) {
  FakeFile file;
  HashingWriter writer(&file);
  ASSERT_OK_AND_ASSIGN(const std::string digest, writer.Finish());
  EXPECT_EQ(digest,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(file.appends(), 0);
}

TEST(HashingWriterTest, WritesEveryByteInOrderAndHashesThemWhateverThePieces) {
  std::mt19937_64 rng(7);
  for (const size_t size :
       {size_t{1}, HashingWriter::kBlockBytes - 1, HashingWriter::kBlockBytes,
        HashingWriter::kBlockBytes * HashingWriter::kBlocks,
        HashingWriter::kBlockBytes * HashingWriter::kBlocks * 3 + 12345}) {
    const std::string data = RandomBytes(size, rng);
    FakeFile file;
    HashingWriter writer(&file);
    absl::string_view rest = data;
    while (!rest.empty()) {
      const size_t n = std::min<size_t>(
          rest.size(), std::uniform_int_distribution<size_t>(0, 3 << 20)(rng));
      ASSERT_OK(writer.Append(rest.substr(0, n)));
      rest.remove_prefix(n);
    }
    ASSERT_OK_AND_ASSIGN(const std::string digest, writer.Finish());
    EXPECT_EQ(digest, OneShot(data)) << size;
    EXPECT_TRUE(file.content() == data) << size;
    // Whole blocks: one write per MiB, not one per piece.
    const size_t blocks =
        (size + HashingWriter::kBlockBytes - 1) / HashingWriter::kBlockBytes;
    EXPECT_EQ(file.appends(), static_cast<int>(blocks)) << size;
  }
}

TEST(HashingWriterTest, AWriteErrorStopsTheStreamSoon) {
  std::mt19937_64 rng(11);
  const std::string piece = RandomBytes(16 << 10, rng);
  FakeFile file(3 * HashingWriter::kBlockBytes + 5);
  HashingWriter writer(&file);
  absl::Status s;
  size_t appended = 0;
  // Far more than fits; Append must report the failure within the ring.
  while (s.ok() && appended < (64u << 20)) {
    s = writer.Append(piece);
    appended += piece.size();
  }
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("No space left on device")));
  EXPECT_LE(appended,
            (3 + 1 + HashingWriter::kBlocks + 1) * HashingWriter::kBlockBytes);
  EXPECT_THAT(writer.Finish(), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(file.content().size(), 3 * HashingWriter::kBlockBytes);
}

TEST(HashingWriterTest, AWriteErrorOfTheLastBlockFailsFinish) {
  FakeFile file(100);
  HashingWriter writer(&file);
  ASSERT_OK(writer.Append(std::string(1000, 'x')));  // less than a block
  EXPECT_THAT(writer.Finish(), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(HashingWriterTest, DestroyedWithoutFinish) {
  FakeFile file;
  {
    HashingWriter writer(&file);
    ASSERT_OK(writer.Append(std::string(3 << 20, 'x')));
  }
  // The full blocks were queued and are written; the thread is joined.
  EXPECT_EQ(file.content().size(), size_t{3} << 20);
}

}  // namespace
}  // namespace vmb
