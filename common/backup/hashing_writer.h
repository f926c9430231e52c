// SPDX-License-Identifier: Apache-2.0
#pragma once

// Writes a stream into a file and computes its SHA-256, both on a thread of
// its own, so that a multi-GiB export is received on one core while it is
// hashed and written on another.
//
// Append() copies the bytes into a small ring of blocks (kBlocks x
// kBlockBytes: memory stays flat whatever the stream's size) and only waits
// when the writer thread is that far behind. The thread hashes each full
// block and writes it to the file with one write(2): libcurl hands over at
// most 16 KiB at a time, and 1 MiB writes instead of 16 KiB ones cost less
// than half the kernel time (docs/benchmarks.md).
//
// Not thread-safe: one producer thread calls Append() and Finish(). The file
// belongs to the writer thread until Finish() returns.

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

#include "common/base/filesystem.h"

namespace vmb {

class HashingWriter {
 public:
  static constexpr size_t kBlocks = 4;
  static constexpr size_t kBlockBytes = 1 << 20;

  // `file` must outlive the HashingWriter.
  explicit HashingWriter(WritableFile* file);
  // Joins the thread. Without Finish(), bytes not yet written may be lost.
  ~HashingWriter();
  HashingWriter(const HashingWriter&) = delete;
  HashingWriter& operator=(const HashingWriter&) = delete;

  // Queues `data`. Errors: the file's first write error (RESOURCE_EXHAUSTED
  // for ENOSPC, ...), as soon as it is known; everything appended after it
  // is dropped.
  absl::Status Append(absl::string_view data);

  // Writes what is left and returns the lower-case hex SHA-256 of everything
  // appended. Errors: the file's first write error.
  absl::StatusOr<std::string> Finish();

 private:
  struct Block {
    std::unique_ptr<char[]> bytes;
    size_t size = 0;
  };
  void Work();
  absl::Status Submit() ABSL_LOCKS_EXCLUDED(mu_);

  WritableFile* const file_;
  std::vector<Block> blocks_;
  size_t filling_ = 0;  // the block Append() copies into (producer only)
  absl::Mutex mu_;
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;   // blocks handed to the thread
  size_t written_ ABSL_GUARDED_BY(mu_) = 0;  // blocks the thread is done with
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);  // the first write error
  std::string digest_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace vmb
