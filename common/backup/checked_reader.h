// SPDX-License-Identifier: Apache-2.0
#pragma once

// A backup's data file read front to back for an upload (a restore), checked
// as it streams rather than in a pass of its own: its SHA-256 and size
// against manifest.json, and its structure (XVA chunk checksums and trailer,
// VHD footer, header and BAT, raw size). The last bytes are held back until
// every check has passed, so a host never receives the whole of a file that
// does not match: the upload ends early, and XAPI drops what it made.

#include <stdint.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

#include "common/backup/export_verifier.h"
#include "common/backup/sha256.h"
#include "common/base/filesystem.h"

namespace vmb {

struct CheckedReadExpectations {
  // From manifest.json; unset (a seed-era backup): the size is the file's,
  // and there is no digest to compare.
  std::optional<uint64_t> size;
  std::string sha256;  // lower-case hex; "" none
  // Makes the structural verifier (again after a rewind); null: none.
  std::function<std::unique_ptr<ExportVerifier>()> make_verifier;
  // Only record a mismatch (mismatches()), never stop.
  bool force = false;
};

class CheckedFileReader {
 public:
  // Errors: those of opening the file; FAILED_PRECONDITION (without force)
  // when its size is not the manifest's.
  static absl::StatusOr<std::unique_ptr<CheckedFileReader>> Open(
      Filesystem& fs, const std::string& path, CheckedReadExpectations expect);

  // The bytes the upload will carry (the file's size).
  uint64_t size() const { return size_; }
  uint64_t done() const { return done_; }
  // Up to `max` bytes of the file. Errors: DATA_LOSS naming the file and
  // what does not match (a digest, a structure, a file that changed size);
  // the file's read errors.
  absl::StatusOr<size_t> Read(char* buffer, size_t max);
  // From the first byte again.
  absl::Status Rewind();
  // With force: what did not match ("" nothing so far).
  const std::string& mismatch() const { return mismatch_; }
  // After the last byte: the structural verifier's content digests
  // (ExportVerifier::ContentSha256), if it was made to compute them.
  std::map<std::string, std::string> ContentSha256() const {
    return verifier_ != nullptr ? verifier_->ContentSha256()
                                : std::map<std::string, std::string>();
  }

 private:
  CheckedFileReader(Filesystem& fs, std::string path, uint64_t size,
                    CheckedReadExpectations expect)
      : fs_(fs),
        path_(std::move(path)),
        size_(size),
        expect_(std::move(expect)) {}
  absl::Status Start();
  absl::Status Mismatch(std::string what);
  absl::Status Finish();

  Filesystem& fs_;
  const std::string path_;
  const uint64_t size_;
  const CheckedReadExpectations expect_;
  std::unique_ptr<ReadableFile> file_;
  std::unique_ptr<Sha256> digest_;
  std::unique_ptr<ExportVerifier> verifier_;
  absl::Status structure_;
  uint64_t done_ = 0;
  std::string mismatch_;
};

}  // namespace vmb
