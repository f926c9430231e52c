// SPDX-License-Identifier: Apache-2.0
#pragma once

// The filesystem as the backup share is written: a small leveldb-style Env
// seam. PosixFilesystem is the real one; tests wrap it
// (tests/testing/faulty_filesystem.h) to inject ENOSPC and EIO into exactly
// the step under test and to record the order of every change.
//
// Paths are plain strings; callers build them from a verified root and single
// path components (see backup_layout.h), and the implementation never follows
// a symbolic link in the last component of a path it creates, opens for
// writing or removes.

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vmb {

// A file being written. Not thread-safe. Destroying it without Close()
// closes it and ignores errors.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Errors: RESOURCE_EXHAUSTED on ENOSPC/EDQUOT, UNAVAILABLE on EIO/ESTALE,
  // others as ErrnoToStatus maps them; each names the file.
  virtual absl::Status Append(absl::string_view data) = 0;
  // fsync(2).
  virtual absl::Status Sync() = 0;
  virtual absl::Status Close() = 0;
  // For a large file written once, front to back: start writing each
  // `window` bytes to storage as soon as they are appended, and drop them
  // from the page cache once they are there, so that the final Sync() has
  // little left to do and a dom0's small memory is not filled with backup
  // data. A hint: implementations may ignore it.
  virtual void SetWriteBehind(uint64_t window) { (void)window; }
};

// A file being read, front to back. Not thread-safe.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads up to `size` bytes into `buf`; 0 at the end of the file. Errors:
  // UNAVAILABLE on EIO/ESTALE, others as ErrnoToStatus maps them; each
  // names the file.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t size) = 0;
};

// A held lock (flock); released when destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

struct DirEntry {
  std::string name;
  bool is_dir = false;  // a directory, not a symbolic link to one
};

struct FileInfo {
  bool is_dir = false;
  bool is_symlink = false;
  bool is_regular = false;  // a regular file (not a FIFO, socket or device)
  uint64_t size = 0;
  absl::Time modified;
};

struct SpaceInfo {
  uint64_t free_bytes = 0;  // available to this user (f_bavail)
  uint64_t total_bytes = 0;
};

struct MountInfo {
  bool is_mount_point = false;  // the path itself is a mount point
  std::string mount_point;      // the mount the path lives on
  std::string fs_type;          // its type ("nfs4", "tmpfs", "ext4", ...)
};

// Implementations are thread-safe.
class Filesystem {
 public:
  virtual ~Filesystem() = default;

  // Creates a new file (mode 0644) for writing; never follows a symbolic
  // link. Errors: ALREADY_EXISTS when it exists.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  // Opens a file for appending, creating it if missing (O_APPEND).
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) = 0;
  // Reads a whole file. Errors: NOT_FOUND; OUT_OF_RANGE when it is larger
  // than `max_bytes`.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path,
                                               uint64_t max_bytes) = 0;
  // Opens a regular file for reading, front to back (a large backup file:
  // read without filling the page cache); never follows a symbolic link.
  // Errors: NOT_FOUND; FAILED_PRECONDITION when it is a link or not a
  // regular file.
  virtual absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) = 0;
  // mkdir(2) with mode 0755. Errors: ALREADY_EXISTS.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // The entries of a directory, without "." and "..", sorted by name.
  virtual absl::StatusOr<std::vector<DirEntry>> ListDir(
      const std::string& path) = 0;
  // lstat(2). Errors: NOT_FOUND.
  virtual absl::StatusOr<FileInfo> Stat(const std::string& path) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // Removes a directory and everything below it, never following a symbolic
  // link (a link is removed, not its target). NOT_FOUND if it is missing.
  virtual absl::Status RemoveTree(const std::string& path) = 0;
  virtual absl::Status Rename(const std::string& from,
                              const std::string& to) = 0;
  // fsync(2) of a directory, so that entries created in it are durable.
  virtual absl::Status SyncDir(const std::string& path) = 0;
  virtual absl::StatusOr<SpaceInfo> Space(const std::string& path) = 0;
  virtual absl::StatusOr<MountInfo> Mount(const std::string& path) = 0;
  // Takes an exclusive lock on `path` (created if missing) without waiting.
  // Errors: UNAVAILABLE "held by another process" when it is taken.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) = 0;
};

// The real filesystem.
class PosixFilesystem final : public Filesystem {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override;
  absl::StatusOr<std::string> ReadFile(const std::string& path,
                                       uint64_t max_bytes) override;
  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) override;
  absl::Status CreateDir(const std::string& path) override;
  absl::StatusOr<std::vector<DirEntry>> ListDir(
      const std::string& path) override;
  absl::StatusOr<FileInfo> Stat(const std::string& path) override;
  absl::Status RemoveFile(const std::string& path) override;
  absl::Status RemoveTree(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& path) override;
  absl::StatusOr<SpaceInfo> Space(const std::string& path) override;
  absl::StatusOr<MountInfo> Mount(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override;

  // A process-wide instance; it has no state.
  static PosixFilesystem* Get();
};

// Joins path components with '/'.
std::string JoinPath(absl::string_view a, absl::string_view b);
// The folder `path` is in: "/a/b" -> "/a", "/a" -> "/", "a" -> ".".
std::string Dirname(absl::string_view path);
template <typename... Rest>
std::string JoinPath(absl::string_view a, absl::string_view b,
                     absl::string_view c, const Rest&... rest) {
  return JoinPath(JoinPath(a, b), c, rest...);
}

// Creates the folder `path` and, when it made it, fsyncs its parent so that
// the new entry survives a crash. Errors: CreateDir's (ALREADY_EXISTS when it
// is there already; the parent is then not synced) and SyncDir's.
absl::Status CreateDirDurably(Filesystem& fs, const std::string& path);

// Writes `content` to a new file, fsyncs and closes it.
absl::Status WriteNewFile(Filesystem& fs, const std::string& path,
                          absl::string_view content);

}  // namespace vmb
