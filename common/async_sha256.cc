// SPDX-License-Identifier: Apache-2.0
#include "common/async_sha256.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include <openssl/evp.h>

namespace vmb {

AsyncSha256::AsyncSha256() : slots_(kSlots) {
  for (Slot& s : slots_) s.bytes.reset(new char[kSlotBytes]);
  thread_ = std::thread([this] { Hash(); });
}

AsyncSha256::~AsyncSha256() {
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  thread_.join();
}

void AsyncSha256::Submit() {
  absl::MutexLock lock(&mu_);
  ++queued_;
  // Wait for the next slot to be free: at most kSlots in flight.
  auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queued_ - hashed_ < kSlots;
  };
  mu_.Await(absl::Condition(&free));
  filling_ = queued_ % kSlots;
  slots_[filling_].size = 0;
}

void AsyncSha256::Update(absl::string_view data) {
  while (!data.empty()) {
    Slot& slot = slots_[filling_];
    const size_t n = std::min(data.size(), kSlotBytes - slot.size);
    memcpy(slot.bytes.get() + slot.size, data.data(), n);
    slot.size += n;
    data.remove_prefix(n);
    if (slot.size == kSlotBytes) Submit();
  }
}

std::string AsyncSha256::Finish() {
  if (slots_[filling_].size > 0) Submit();
  absl::MutexLock lock(&mu_);
  done_ = true;
  auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !digest_.empty();
  };
  mu_.Await(absl::Condition(&finished));
  return digest_;
}

void AsyncSha256::Hash() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  while (true) {
    size_t index;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued_ > hashed_ || done_;
      };
      mu_.Await(absl::Condition(&ready));
      if (queued_ == hashed_) break;  // done, and nothing left
      index = hashed_ % kSlots;
    }
    // The producer never touches a queued slot, so no lock while hashing.
    const Slot& slot = slots_[index];
    EVP_DigestUpdate(ctx, slot.bytes.get(), slot.size);
    absl::MutexLock lock(&mu_);
    ++hashed_;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  absl::MutexLock lock(&mu_);
  digest_ = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), n));
}

}  // namespace vmb
