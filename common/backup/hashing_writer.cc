// SPDX-License-Identifier: Apache-2.0
#include "common/backup/hashing_writer.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include <openssl/evp.h>

namespace vmb {

HashingWriter::HashingWriter(WritableFile* file)
    : file_(file), blocks_(kBlocks) {
  for (Block& b : blocks_) b.bytes.reset(new char[kBlockBytes]);
  thread_ = std::thread([this] { Work(); });
}

HashingWriter::~HashingWriter() {
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  thread_.join();
}

absl::Status HashingWriter::Submit() {
  absl::MutexLock lock(&mu_);
  if (!error_.ok()) return error_;
  ++queued_;
  // Wait for the next block to be free: at most kBlocks in flight.
  auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queued_ - written_ < kBlocks || !error_.ok();
  };
  mu_.Await(absl::Condition(&free));
  if (!error_.ok()) return error_;
  filling_ = queued_ % kBlocks;
  blocks_[filling_].size = 0;
  return absl::OkStatus();
}

absl::Status HashingWriter::Append(absl::string_view data) {
  while (!data.empty()) {
    Block& block = blocks_[filling_];
    const size_t n = std::min(data.size(), kBlockBytes - block.size);
    memcpy(block.bytes.get() + block.size, data.data(), n);
    block.size += n;
    data.remove_prefix(n);
    if (block.size == kBlockBytes) {
      if (absl::Status s = Submit(); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HashingWriter::Finish() {
  if (blocks_[filling_].size > 0) {
    if (absl::Status s = Submit(); !s.ok()) return s;
  }
  absl::MutexLock lock(&mu_);
  done_ = true;
  auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !digest_.empty() || !error_.ok();
  };
  mu_.Await(absl::Condition(&finished));
  if (!error_.ok()) return error_;
  return digest_;
}

void HashingWriter::Work() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  while (true) {
    size_t index;
    bool failed;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued_ > written_ || done_;
      };
      mu_.Await(absl::Condition(&ready));
      if (queued_ == written_) break;  // done, and nothing left
      index = written_ % kBlocks;
      failed = !error_.ok();
    }
    // The producer never touches a queued block, so no lock meanwhile.
    absl::Status s;
    if (!failed) {
      const Block& block = blocks_[index];
      EVP_DigestUpdate(ctx, block.bytes.get(), block.size);
      s = file_->Append(absl::string_view(block.bytes.get(), block.size));
    }
    absl::MutexLock lock(&mu_);
    if (!s.ok() && error_.ok()) error_ = s;
    ++written_;
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
