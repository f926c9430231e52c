// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/message.h"

#include "common/base/filesystem.h"
#include "proto/common.pb.h"

namespace vmb::agent {

// The agent's jobs on disk (under --state-dir), so that a restarted agent
// knows what an earlier process of it accepted and left unfinished. Each
// job has two files in `dir`, named by the SHA-256 of its job_id (which comes
// from the network and never becomes a path itself):
//
//   <sha256>.spec     its JobSpec, written once when the job is accepted
//   <sha256>.status   its latest JobStatus, rewritten at every phase change
//
// both in protobuf text format. Every write is durable before it returns: a
// temporary file is written, fsync'ed and renamed over the old one, and the
// folder is fsync'ed. A spec without a status is a job that had not started;
// a status without a spec is left from a forgotten job and is dropped.
//
// Thread-safe: writes are serialised. The filesystem is not owned and must
// outlive the store.
class JobStore {
 public:
  struct StoredJob {
    v1::JobSpec spec;
    v1::JobStatus status;  // phase QUEUED when no status was written yet
  };

  JobStore(Filesystem* fs, std::string dir);

  // Creates `dir` when missing (mode 0755 under the state folder, which is
  // 0700). Errors: the filesystem's, naming the folder.
  absl::Status Init() ABSL_LOCKS_EXCLUDED(mu_);

  // Writes the spec of a newly accepted job and its first status (`status`,
  // normally QUEUED). Errors: INVALID_ARGUMENT when the spec has no job_id
  // or the status names another job; the filesystem's, naming the file.
  absl::Status Add(const v1::JobSpec& spec, const v1::JobStatus& status)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Replaces the status of job `status.job_id()`. Errors: as for Add.
  absl::Status Update(const v1::JobStatus& status) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes both files of a job (the spec first, so that a crash in
  // between leaves only a status, which Load drops). Missing files are not
  // an error. Errors: the filesystem's, naming the file.
  absl::Status Remove(absl::string_view job_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Every job stored, by job_id. Leftovers of interrupted writes
  // (`*.tmp`), statuses without a spec, and files that do not parse or are
  // not named after their job are removed (and logged); a status that does
  // not parse is replaced by a QUEUED one, so its job still counts as
  // unfinished. Errors: the filesystem's when `dir` cannot be listed.
  absl::StatusOr<std::vector<StoredJob>> Load() ABSL_LOCKS_EXCLUDED(mu_);

  // The file name stem of `job_id`: 64 lower-case hex digits.
  static std::string FileStem(absl::string_view job_id);

  const std::string& dir() const { return dir_; }

 private:
  absl::Status WriteLocked(const std::string& name, const std::string& text)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RemoveLocked(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Filesystem* const fs_;
  const std::string dir_;
  absl::Mutex mu_;
};

// `data` written durably to `path` (under the folder `dir`): written to
// `path`.tmp, fsync'ed, renamed over `path`, and `dir` fsync'ed. Errors: the
// filesystem's, naming the file.
absl::Status WriteFileAtomically(Filesystem& fs, const std::string& dir,
                                 const std::string& path,
                                 absl::string_view data);

// Parses protobuf text format into `message`, skipping fields a later
// version added (so that a downgraded agent still reads its files) and
// logging nothing; false when it does not parse.
bool ParseTextFormat(const std::string& text,
                     google::protobuf::Message* message);

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

}  // namespace vmb::agent
