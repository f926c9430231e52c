// SPDX-License-Identifier: Apache-2.0
#pragma once

// The attempt file ".vmbackup-attempt": the first file a job writes into its
// new backup folder (the text format of v1::AttemptFile), so that who owns a
// folder without a success marker can be proved. A newer attempt of a job
// carries a greater fencing token (one coordinator journal issues them, in
// strictly increasing order); the rules built on that are in
// agent/vm_backup_job.h and docs/backup.md. A committed folder keeps its
// attempt file.

#include <stdint.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "common/base/filesystem.h"
#include "proto/common.pb.h"

namespace vmb {

inline constexpr absl::string_view kAttemptFileName = ".vmbackup-attempt";
// The largest attempt file read back; a real one is a few hundred bytes.
inline constexpr uint64_t kMaxAttemptFileBytes = 4096;

// Writes `attempt` as `<folder>/.vmbackup-attempt`, a new file (never
// replacing one), fsyncs it, closes it and fsyncs `folder`: when this returns
// OK the file survives a crash. Errors: INVALID_ARGUMENT when `attempt` has no
// job_id; ALREADY_EXISTS when the file is there; the filesystem's.
absl::Status WriteAttemptFile(Filesystem& fs, const std::string& folder,
                              const v1::AttemptFile& attempt);

// Reads `<folder>/.vmbackup-attempt`, never more than kMaxAttemptFileBytes.
// Fields a later version added are ignored. Errors: NOT_FOUND when there is
// no such file (or no such folder); INVALID_ARGUMENT naming the path when it
// is not a regular file, is too large, does not parse, or names no job_id
// (a crash while it was written, or a write still under way, leaves it
// empty); others as the filesystem reports them.
absl::StatusOr<v1::AttemptFile> ReadAttemptFile(Filesystem& fs,
                                                const std::string& folder);

}  // namespace vmb
