// SPDX-License-Identifier: Apache-2.0
#pragma once

// SHA-256 of a stream, computed on a thread of its own so that hashing a
// multi-GiB export overlaps with receiving and writing it. Update() copies
// the bytes into a small ring of buffers (kSlots x kSlotBytes: memory stays
// flat) and only waits when the hashing thread is that far behind.
//
// Not thread-safe: one producer thread calls Update() and Finish().

#include <stddef.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace vmb {

class AsyncSha256 {
 public:
  static constexpr size_t kSlots = 4;
  static constexpr size_t kSlotBytes = 1 << 20;

  AsyncSha256();
  ~AsyncSha256();  // joins the thread (the digest, if not taken, is lost)
  AsyncSha256(const AsyncSha256&) = delete;
  AsyncSha256& operator=(const AsyncSha256&) = delete;

  void Update(absl::string_view data);
  // The lower-case hex digest of everything passed to Update().
  std::string Finish();

 private:
  struct Slot {
    std::unique_ptr<char[]> bytes;
    size_t size = 0;
  };
  void Hash();
  void Submit() ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<Slot> slots_;
  size_t filling_ = 0;  // the slot Update() writes into (producer only)
  absl::Mutex mu_;
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;  // slots handed to the hasher
  size_t hashed_ ABSL_GUARDED_BY(mu_) = 0;  // slots the hasher is done with
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::string digest_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace vmb
