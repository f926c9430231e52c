// SPDX-License-Identifier: Apache-2.0
#pragma once

// A Filesystem for tests: the real one, except that files whose name ends in
// a chosen suffix fail as a full or broken share would make them fail, and
// every change to the tree is recorded in order, so that a test can check
// what was made durable when, and what was removed first.

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

#include "common/base/filesystem.h"

namespace vmb::testing {

// Thread-safe. The files it opens must not outlive it.
class FaultyFilesystem final : public Filesystem {
 public:
  struct Faults {
    std::string suffix;  // the files concerned, e.g. ".xva"
    // Appends fail with ENOSPC's status once the file would exceed this.
    uint64_t space = UINT64_MAX;
    // Sync() fails with EIO's status (a write-back error found by fsync).
    bool fail_sync = false;
    // Once a file with this name (the last path component) was created, the
    // next SyncDir fails with EIO's status: a commit whose marker was
    // written but could not be made durable.
    std::string fail_sync_dir_after = "";
  };
  FaultyFilesystem();  // no faults: only the record of changes
  explicit FaultyFilesystem(Faults faults);

  // The changes made, in order: "create P", "fsync P" (a file's Sync),
  // "mkdir P", "syncdir P", "rm P", "rmtree P", "rename A B" (P the path as
  // given).
  std::vector<std::string> ops() const;
  // Every call of a Filesystem method, in order, whether it changed,
  // read or failed: "<Method> P" ("Stat /share", "ListDir /share/vm").
  std::vector<std::string> calls() const;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    Called("NewAppendableFile", path);
    return real_.NewAppendableFile(path);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path,
                                       uint64_t max_bytes) override {
    Called("ReadFile", path);
    return real_.ReadFile(path, max_bytes);
  }
  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) override {
    Called("OpenForRead", path);
    return real_.OpenForRead(path);
  }
  absl::Status CreateDir(const std::string& path) override;
  absl::StatusOr<std::vector<DirEntry>> ListDir(
      const std::string& path) override {
    Called("ListDir", path);
    return real_.ListDir(path);
  }
  absl::StatusOr<FileInfo> Stat(const std::string& path) override {
    Called("Stat", path);
    return real_.Stat(path);
  }
  absl::Status RemoveFile(const std::string& path) override;
  absl::Status RemoveTree(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& path) override;
  absl::StatusOr<SpaceInfo> Space(const std::string& path) override {
    Called("Space", path);
    return real_.Space(path);
  }
  absl::StatusOr<MountInfo> Mount(const std::string& path) override {
    Called("Mount", path);
    return real_.Mount(path);
  }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override {
    Called("LockFile", path);
    return real_.LockFile(path);
  }

 private:
  void Record(std::string op);
  void Called(absl::string_view method, const std::string& path);

  const Faults faults_;
  PosixFilesystem real_;
  mutable absl::Mutex mu_;
  std::vector<std::string> ops_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  bool sync_dir_armed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vmb::testing
