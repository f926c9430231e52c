// SPDX-License-Identifier: Apache-2.0
#pragma once

// A Filesystem for tests: the real one, except that files whose name ends in
// a chosen suffix fail as a full or broken share would make them fail.

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "common/base/filesystem.h"

namespace vmb::testing {

class FaultyFilesystem final : public Filesystem {
 public:
  struct Faults {
    std::string suffix;  // the files concerned, e.g. ".xva"
    // Appends fail with ENOSPC's status once the file would exceed this.
    uint64_t space = UINT64_MAX;
    // Sync() fails with EIO's status (a write-back error found by fsync).
    bool fail_sync = false;
  };
  explicit FaultyFilesystem(Faults faults) : faults_(std::move(faults)) {}

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return real_.NewAppendableFile(path);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path,
                                       uint64_t max_bytes) override {
    return real_.ReadFile(path, max_bytes);
  }
  absl::Status CreateDir(const std::string& path) override {
    return real_.CreateDir(path);
  }
  absl::StatusOr<std::vector<DirEntry>> ListDir(
      const std::string& path) override {
    return real_.ListDir(path);
  }
  absl::StatusOr<FileInfo> Stat(const std::string& path) override {
    return real_.Stat(path);
  }
  absl::Status RemoveFile(const std::string& path) override {
    return real_.RemoveFile(path);
  }
  absl::Status RemoveTree(const std::string& path) override {
    return real_.RemoveTree(path);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return real_.Rename(from, to);
  }
  absl::Status SyncDir(const std::string& path) override {
    return real_.SyncDir(path);
  }
  absl::StatusOr<SpaceInfo> Space(const std::string& path) override {
    return real_.Space(path);
  }
  absl::StatusOr<MountInfo> Mount(const std::string& path) override {
    return real_.Mount(path);
  }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override {
    return real_.LockFile(path);
  }

 private:
  const Faults faults_;
  PosixFilesystem real_;
};

}  // namespace vmb::testing
