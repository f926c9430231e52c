// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/faulty_filesystem.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vmb::testing {
namespace {

class FaultyFile final : public WritableFile {
 public:
  FaultyFile(std::unique_ptr<WritableFile> real, std::string path,
             FaultyFilesystem::Faults faults)
      : real_(std::move(real)),
        path_(std::move(path)),
        faults_(std::move(faults)) {}

  absl::Status Append(absl::string_view data) override {
    if (data.size() > faults_.space - size_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot write ", path_, ": No space left on device"));
    }
    size_ += data.size();
    return real_->Append(data);
  }
  absl::Status Sync() override {
    if (faults_.fail_sync) {
      return absl::UnavailableError(
          absl::StrCat("cannot fsync ", path_, ": Input/output error"));
    }
    return real_->Sync();
  }
  absl::Status Close() override { return real_->Close(); }
  void SetWriteBehind(uint64_t window) override {
    real_->SetWriteBehind(window);
  }

 private:
  std::unique_ptr<WritableFile> real_;
  const std::string path_;
  const FaultyFilesystem::Faults faults_;
  uint64_t size_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<WritableFile>> FaultyFilesystem::NewWritableFile(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      real_.NewWritableFile(path);
  if (!file.ok() || !absl::EndsWith(path, faults_.suffix)) return file;
  return std::unique_ptr<WritableFile>(
      new FaultyFile(*std::move(file), path, faults_));
}

}  // namespace vmb::testing
