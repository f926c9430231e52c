// SPDX-License-Identifier: Apache-2.0
#include "common/async_sha256.h"

#include <random>
#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include <openssl/evp.h>

namespace vmb {
namespace {

std::string OneShot(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(md), n));
}

TEST(AsyncSha256Test, EmptyInput) {
  AsyncSha256 sha;
  EXPECT_EQ(sha.Finish(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(AsyncSha256Test, EqualsAOneShotDigestWhateverThePieces) {
  std::mt19937_64 rng(7);
  for (const size_t size :
       {size_t{1}, AsyncSha256::kSlotBytes - 1, AsyncSha256::kSlotBytes,
        AsyncSha256::kSlotBytes * AsyncSha256::kSlots,
        AsyncSha256::kSlotBytes * AsyncSha256::kSlots * 3 + 12345}) {
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    AsyncSha256 sha;
    absl::string_view rest = data;
    while (!rest.empty()) {
      const size_t n = std::min<size_t>(
          rest.size(), std::uniform_int_distribution<size_t>(0, 3 << 20)(rng));
      sha.Update(rest.substr(0, n));
      rest.remove_prefix(n);
    }
    EXPECT_EQ(sha.Finish(), OneShot(data)) << size;
  }
}

TEST(AsyncSha256Test, DestroyedWithoutFinish) {
  AsyncSha256 sha;
  sha.Update(std::string(3 << 20, 'x'));
}

}  // namespace
}  // namespace vmb
