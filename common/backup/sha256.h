// SPDX-License-Identifier: Apache-2.0
#pragma once

// SHA-256 of bytes fed in order (OpenSSL's EVP), as lower-case hex: the
// digest manifest.json records, and what restores compare.

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace vmb {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view data);
  // The digest of what was fed so far (lower-case hex); Update may go on.
  std::string Hex() const;

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace vmb
