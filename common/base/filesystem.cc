// SPDX-License-Identifier: Apache-2.0
#include "common/base/filesystem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include "common/base/status_macros.h"
#include "common/base/status_util.h"

namespace vmb {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_;
};

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path)
      : fd_(fd), path_(std::move(path)) {}

  absl::Status Append(absl::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = write(fd_.get(), data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, absl::StrCat("cannot write ", path_));
      }
      data.remove_prefix(static_cast<size_t>(n));
      written_ += static_cast<uint64_t>(n);
    }
    if (window_ > 0 && written_ - started_ >= window_) WriteBehind();
    return absl::OkStatus();
  }

  void SetWriteBehind(uint64_t window) override { window_ = window; }

  absl::Status Sync() override {
    if (fsync(fd_.get()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("cannot fsync ", path_));
    }
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (fd_.get() < 0) return absl::OkStatus();
    const int fd = fd_.release();
    // close(2) reports delayed write errors on NFS.
    if (close(fd) != 0 && errno != EINTR) {
      return ErrnoToStatus(errno, absl::StrCat("cannot close ", path_));
    }
    return absl::OkStatus();
  }

 private:
  // Starts writeback of the window just appended, waits for the one before
  // it (written back meanwhile, so the wait is short) and drops that one
  // from the page cache. Errors surface at Sync().
  void WriteBehind() {
    const uint64_t end = written_;
    sync_file_range(fd_.get(), static_cast<off64_t>(started_),
                    static_cast<off64_t>(end - started_),
                    SYNC_FILE_RANGE_WRITE);
    if (started_ > 0) {
      sync_file_range(fd_.get(), static_cast<off64_t>(done_),
                      static_cast<off64_t>(started_ - done_),
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                          SYNC_FILE_RANGE_WAIT_AFTER);
      posix_fadvise(fd_.get(), static_cast<off_t>(done_),
                    static_cast<off_t>(started_ - done_), POSIX_FADV_DONTNEED);
      done_ = started_;
    }
    started_ = end;
  }

  Fd fd_;
  std::string path_;
  uint64_t written_ = 0;
  uint64_t window_ = 0;
  uint64_t started_ = 0;  // writeback started up to here
  uint64_t done_ = 0;     // written back and dropped up to here
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(Fd fd) : fd_(std::move(fd)) {}
  ~PosixFileLock() override { flock(fd_.get(), LOCK_UN); }

 private:
  Fd fd_;
};

absl::StatusOr<std::unique_ptr<WritableFile>> OpenForWrite(
    const std::string& path, int flags) {
  const int fd =
      open(path.c_str(), flags | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
  }
  return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path));
}

// The entries of the directory open as `dir` (without "." and ".."), each
// with whether it is a directory, by lstat. An entry that cannot be stat'ed
// is an error when `strict`, else not a directory. Errors: "cannot <verb>
// <path>". `dir` stays open.
absl::StatusOr<std::vector<DirEntry>> ReadDirAt(int dir,
                                                const std::string& path,
                                                absl::string_view verb,
                                                bool strict) {
  Fd copy(dup(dir));  // closedir() closes the descriptor it reads
  if (copy.get() < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot ", verb, " ", path));
  }
  DIR* d = fdopendir(copy.get());
  if (d == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("cannot ", verb, " ", path));
  }
  copy.release();  // owned by `d` now
  std::vector<DirEntry> entries;
  errno = 0;
  while (dirent* e = readdir(d)) {
    const absl::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    const bool stat_ok = fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!stat_ok && strict) {
      const int error = errno;
      closedir(d);
      return ErrnoToStatus(error,
                           absl::StrCat("cannot stat ", path, "/", name));
    }
    DirEntry entry;
    entry.name = std::string(name);
    entry.is_dir = stat_ok && S_ISDIR(st.st_mode);
    entries.push_back(std::move(entry));
    errno = 0;
  }
  const int read_error = errno;
  closedir(d);
  if (read_error != 0) {
    return ErrnoToStatus(read_error, absl::StrCat("cannot ", verb, " ", path));
  }
  return entries;
}

// Removes everything inside the directory open as `dir`, then nothing else.
absl::Status RemoveContents(int dir, const std::string& path, int depth) {
  if (depth > 64) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove ", path, ": nested too deeply"));
  }
  VMB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries,
                       ReadDirAt(dir, path, "read", /*strict=*/true));
  for (const DirEntry& entry : entries) {
    const std::string child = absl::StrCat(path, "/", entry.name);
    if (entry.is_dir) {
      Fd sub(openat(dir, entry.name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub.get() < 0) {
        return ErrnoToStatus(errno, absl::StrCat("cannot open ", child));
      }
      VMB_RETURN_IF_ERROR(RemoveContents(sub.get(), child, depth + 1));
      if (unlinkat(dir, entry.name.c_str(), AT_REMOVEDIR) != 0) {
        return ErrnoToStatus(errno, absl::StrCat("cannot remove ", child));
      }
    } else if (unlinkat(dir, entry.name.c_str(), 0) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("cannot remove ", child));
    }
  }
  return absl::OkStatus();
}

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '7' && b >= '0' && b <= '7' && c >= '0' &&
          c <= '7') {
        out.push_back(
            static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool PathIsUnder(absl::string_view path, absl::string_view mount) {
  if (mount == "/") return true;
  return path == mount ||
         (absl::StartsWith(path, mount) && path.size() > mount.size() &&
          path[mount.size()] == '/');
}

}  // namespace

absl::StatusOr<std::unique_ptr<WritableFile>> PosixFilesystem::NewWritableFile(
    const std::string& path) {
  return OpenForWrite(path, O_CREAT | O_EXCL);
}

absl::StatusOr<std::unique_ptr<WritableFile>>
PosixFilesystem::NewAppendableFile(const std::string& path) {
  return OpenForWrite(path, O_CREAT | O_APPEND);
}

absl::StatusOr<std::string> PosixFilesystem::ReadFile(const std::string& path,
                                                      uint64_t max_bytes) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  }
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return absl::OutOfRangeError(
          absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

namespace {

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::string path)
      : fd_(fd), path_(std::move(path)) {}

  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    while (true) {
      const ssize_t n = read(fd_.get(), buf, size);
      if (n >= 0) {
        read_ += static_cast<uint64_t>(n);
        // Drop what was read from the page cache now and then: a backup
        // read once must not push a dom0's working set out.
        if (read_ - dropped_ >= kDropWindow) {
          (void)posix_fadvise(fd_.get(), static_cast<off_t>(dropped_),
                              static_cast<off_t>(read_ - dropped_),
                              POSIX_FADV_DONTNEED);
          dropped_ = read_;
        }
        return static_cast<size_t>(n);
      }
      if (errno != EINTR) {
        return ErrnoToStatus(errno, absl::StrCat("cannot read ", path_));
      }
    }
  }

 private:
  static constexpr uint64_t kDropWindow = uint64_t{64} << 20;
  Fd fd_;
  const std::string path_;
  uint64_t read_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ReadableFile>> PosixFilesystem::OpenForRead(
    const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is a symbolic link, not a file"));
    }
    return ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  // O_NONBLOCK kept a FIFO from blocking the open; reads of a regular file
  // never block on it, but clear it all the same.
  (void)fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  (void)posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::make_unique<PosixReadableFile>(fd.release(), path);
}

absl::Status PosixFilesystem::CreateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot create folder ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<DirEntry>> PosixFilesystem::ListDir(
    const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot list ", path));
  }
  VMB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries,
                       ReadDirAt(fd.get(), path, "list", /*strict=*/false));
  std::sort(
      entries.begin(), entries.end(),
      [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return entries;
}

absl::StatusOr<FileInfo> PosixFilesystem::Stat(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot stat ", path));
  }
  FileInfo info;
  info.is_dir = S_ISDIR(st.st_mode);
  info.is_symlink = S_ISLNK(st.st_mode);
  info.is_regular = S_ISREG(st.st_mode);
  info.size = static_cast<uint64_t>(st.st_size);
  info.modified = absl::TimeFromTimespec(st.st_mtim);
  return info;
}

absl::Status PosixFilesystem::RemoveFile(const std::string& path) {
  if (unlink(path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot remove ", path));
  }
  return absl::OkStatus();
}

absl::Status PosixFilesystem::RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot remove ", path));
  }
  if (!S_ISDIR(st.st_mode)) return RemoveFile(path);
  Fd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  }
  VMB_RETURN_IF_ERROR(RemoveContents(fd.get(), path, 0));
  if (rmdir(path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot remove ", path));
  }
  return absl::OkStatus();
}

absl::Status PosixFilesystem::Rename(const std::string& from,
                                     const std::string& to) {
  if (rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoToStatus(errno,
                         absl::StrCat("cannot rename ", from, " to ", to));
  }
  return absl::OkStatus();
}

absl::Status PosixFilesystem::SyncDir(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || fsync(fd.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot fsync folder ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<SpaceInfo> PosixFilesystem::Space(const std::string& path) {
  struct statvfs vfs;
  if (statvfs(path.c_str(), &vfs) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot statvfs ", path));
  }
  SpaceInfo info;
  info.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  info.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  return info;
}

absl::StatusOr<MountInfo> PosixFilesystem::Mount(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("cannot resolve ", path));
  }
  const std::string real = resolved;
  std::ifstream in("/proc/self/mountinfo");
  if (!in) {
    return absl::UnavailableError("cannot read /proc/self/mountinfo");
  }
  MountInfo best;
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root mount-point options [optional...] - type source
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 7) continue;
    const std::string mount_point = UnescapeMountField(fields[4]);
    size_t dash = 6;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (dash + 1 >= fields.size()) continue;
    if (!PathIsUnder(real, mount_point)) continue;
    // Later lines mount over earlier ones; the longest match wins.
    if (mount_point.size() >= best.mount_point.size()) {
      best.mount_point = mount_point;
      best.fs_type = std::string(fields[dash + 1]);
    }
  }
  best.is_mount_point = best.mount_point == real;
  return best;
}

absl::StatusOr<std::unique_ptr<FileLock>> PosixFilesystem::LockFile(
    const std::string& path) {
  Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot open lock file ", path));
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::UnavailableError(
          absl::StrCat(path, " is held by another process"));
    }
    return ErrnoToStatus(errno, absl::StrCat("cannot lock ", path));
  }
  return std::unique_ptr<FileLock>(new PosixFileLock(std::move(fd)));
}

PosixFilesystem* PosixFilesystem::Get() {
  static PosixFilesystem* const fs = new PosixFilesystem();
  return fs;
}

std::string Dirname(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  return slash == 0 ? "/" : std::string(path.substr(0, slash));
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (absl::EndsWith(a, "/")) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

absl::Status CreateDirDurably(Filesystem& fs, const std::string& path) {
  VMB_RETURN_IF_ERROR(fs.CreateDir(path));
  return fs.SyncDir(Dirname(path));
}

absl::Status WriteNewFile(Filesystem& fs, const std::string& path,
                          absl::string_view content) {
  VMB_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                       fs.NewWritableFile(path));
  VMB_RETURN_IF_ERROR(file->Append(content));
  VMB_RETURN_IF_ERROR(file->Sync());
  return file->Close();
}

}  // namespace vmb
