// SPDX-License-Identifier: Apache-2.0
#include "common/backup/sha256.h"

#include "absl/strings/escaping.h"
#include <openssl/evp.h>

namespace vmb {

struct Sha256::Ctx {
  Ctx() : md(EVP_MD_CTX_new()) { EVP_DigestInit_ex(md, EVP_sha256(), nullptr); }
  ~Ctx() { EVP_MD_CTX_free(md); }
  EVP_MD_CTX* md;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {}
Sha256::~Sha256() = default;

void Sha256::Update(absl::string_view data) {
  EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

std::string Sha256::Hex() const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> copy(
      EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_MD_CTX_copy_ex(copy.get(), ctx_->md);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(copy.get(), md, &n);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), n));
}

}  // namespace vmb
