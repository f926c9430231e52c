// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/faulty_filesystem.h"

#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vmb::testing {
namespace {

// A file of the share: faulty when its name ends in the faults' suffix;
// its fsyncs are recorded either way.
class FaultyFile final : public WritableFile {
 public:
  FaultyFile(std::unique_ptr<WritableFile> real, std::string path,
             FaultyFilesystem::Faults faults, bool faulty,
             std::function<void(std::string)> record)
      : real_(std::move(real)),
        path_(std::move(path)),
        faults_(std::move(faults)),
        faulty_(faulty),
        record_(std::move(record)) {}

  absl::Status Append(absl::string_view data) override {
    if (faulty_ && data.size() > faults_.space - size_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot write ", path_, ": No space left on device"));
    }
    size_ += data.size();
    return real_->Append(data);
  }
  absl::Status Sync() override {
    if (faulty_ && faults_.fail_sync) {
      return absl::UnavailableError(
          absl::StrCat("cannot fsync ", path_, ": Input/output error"));
    }
    absl::Status s = real_->Sync();
    if (s.ok()) record_(absl::StrCat("fsync ", path_));
    return s;
  }
  absl::Status Close() override { return real_->Close(); }
  void SetWriteBehind(uint64_t window) override {
    real_->SetWriteBehind(window);
  }

 private:
  std::unique_ptr<WritableFile> real_;
  const std::string path_;
  const FaultyFilesystem::Faults faults_;
  const bool faulty_;
  const std::function<void(std::string)> record_;
  uint64_t size_ = 0;
};

}  // namespace

FaultyFilesystem::FaultyFilesystem() : FaultyFilesystem(Faults()) {}

FaultyFilesystem::FaultyFilesystem(Faults faults)
    : faults_(std::move(faults)) {}

std::vector<std::string> FaultyFilesystem::ops() const {
  absl::MutexLock lock(&mu_);
  return ops_;
}

std::vector<std::string> FaultyFilesystem::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

void FaultyFilesystem::Record(std::string op) {
  absl::MutexLock lock(&mu_);
  ops_.push_back(std::move(op));
}

void FaultyFilesystem::Called(absl::string_view method,
                              const std::string& path) {
  absl::MutexLock lock(&mu_);
  calls_.push_back(absl::StrCat(method, " ", path));
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultyFilesystem::NewWritableFile(
    const std::string& path) {
  Called("NewWritableFile", path);
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      real_.NewWritableFile(path);
  if (!file.ok()) return file;
  Record(absl::StrCat("create ", path));
  if (!faults_.fail_sync_dir_after.empty() &&
      path.substr(path.rfind('/') + 1) == faults_.fail_sync_dir_after) {
    absl::MutexLock lock(&mu_);
    sync_dir_armed_ = true;
  }
  return std::unique_ptr<WritableFile>(new FaultyFile(
      *std::move(file), path, faults_, absl::EndsWith(path, faults_.suffix),
      [this](std::string op) { Record(std::move(op)); }));
}

absl::Status FaultyFilesystem::CreateDir(const std::string& path) {
  Called("CreateDir", path);
  absl::Status s = real_.CreateDir(path);
  if (s.ok()) Record(absl::StrCat("mkdir ", path));
  return s;
}

absl::Status FaultyFilesystem::RemoveFile(const std::string& path) {
  Called("RemoveFile", path);
  absl::Status s = real_.RemoveFile(path);
  if (s.ok()) Record(absl::StrCat("rm ", path));
  return s;
}

absl::Status FaultyFilesystem::RemoveTree(const std::string& path) {
  Called("RemoveTree", path);
  Record(absl::StrCat("rmtree ", path));
  return real_.RemoveTree(path);
}

absl::Status FaultyFilesystem::Rename(const std::string& from,
                                      const std::string& to) {
  Called("Rename", from + " " + to);
  absl::Status s = real_.Rename(from, to);
  if (s.ok()) Record(absl::StrCat("rename ", from, " ", to));
  return s;
}

absl::Status FaultyFilesystem::SyncDir(const std::string& path) {
  Called("SyncDir", path);
  {
    absl::MutexLock lock(&mu_);
    if (sync_dir_armed_) {
      sync_dir_armed_ = false;
      return absl::UnavailableError(
          absl::StrCat("cannot fsync ", path, ": Input/output error"));
    }
  }
  absl::Status s = real_.SyncDir(path);
  if (s.ok()) Record(absl::StrCat("syncdir ", path));
  return s;
}

}  // namespace vmb::testing
