// SPDX-License-Identifier: Apache-2.0
#include "common/backup/checked_reader.h"

#include <utility>

#include "absl/strings/str_cat.h"

#include "common/base/status_macros.h"

namespace vmb {

absl::StatusOr<std::unique_ptr<CheckedFileReader>> CheckedFileReader::Open(
    Filesystem& fs, const std::string& path, CheckedReadExpectations expect) {
  VMB_ASSIGN_OR_RETURN(FileInfo info, fs.Stat(path));
  if (!info.is_regular) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not a regular file"));
  }
  if (expect.size.has_value() && *expect.size != info.size && !expect.force) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": ", info.size, " bytes, but manifest.json says ", *expect.size,
        " (the file changed after the backup; --force restores it anyway)"));
  }
  std::unique_ptr<CheckedFileReader> r(
      new CheckedFileReader(fs, path, info.size, std::move(expect)));
  if (r->expect_.size.has_value() && *r->expect_.size != info.size) {
    r->mismatch_ = absl::StrCat(info.size, " bytes, manifest.json says ",
                                *r->expect_.size);
  }
  VMB_RETURN_IF_ERROR(r->Start());
  return r;
}

absl::Status CheckedFileReader::Start() {
  VMB_ASSIGN_OR_RETURN(file_, fs_.OpenForRead(path_));
  digest_ = std::make_unique<Sha256>();
  verifier_ = expect_.make_verifier ? expect_.make_verifier() : nullptr;
  structure_ = absl::OkStatus();
  done_ = 0;
  return absl::OkStatus();
}

absl::Status CheckedFileReader::Rewind() { return Start(); }

absl::Status CheckedFileReader::Mismatch(std::string what) {
  if (expect_.force) {
    if (mismatch_.empty()) mismatch_ = std::move(what);
    return absl::OkStatus();
  }
  return absl::DataLossError(
      absl::StrCat(path_, ": ", what,
                   "; the upload was stopped before its end, so the "
                   "host keeps nothing of it (--force restores it anyway)"));
}

absl::Status CheckedFileReader::Finish() {
  if (verifier_ != nullptr && structure_.ok()) structure_ = verifier_->Finish();
  if (!structure_.ok())
    VMB_RETURN_IF_ERROR(Mismatch(std::string(structure_.message())));
  const std::string sha = digest_->Hex();
  if (!expect_.sha256.empty() && sha != expect_.sha256) {
    VMB_RETURN_IF_ERROR(Mismatch(absl::StrCat(
        "SHA-256 ", sha, ", but manifest.json says ", expect_.sha256)));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> CheckedFileReader::Read(char* buffer, size_t max) {
  if (done_ >= size_) return 0;
  const size_t want =
      static_cast<size_t>(std::min<uint64_t>(max, size_ - done_));
  size_t got = 0;
  while (got < want) {
    VMB_ASSIGN_OR_RETURN(size_t n, file_->Read(buffer + got, want - got));
    if (n == 0) break;
    got += n;
  }
  if (got < want) {
    return absl::DataLossError(
        absl::StrCat(path_, ": ended after ", done_ + got, " of ", size_,
                     " bytes (the file shrank while it was read)"));
  }
  digest_->Update(absl::string_view(buffer, got));
  if (verifier_ != nullptr && structure_.ok()) {
    structure_ = verifier_->Update(absl::string_view(buffer, got));
    if (!structure_.ok())
      VMB_RETURN_IF_ERROR(Mismatch(std::string(structure_.message())));
  }
  done_ += got;
  // The last bytes go out only when everything matched.
  if (done_ == size_) VMB_RETURN_IF_ERROR(Finish());
  return got;
}

}  // namespace vmb
