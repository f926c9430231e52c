// SPDX-License-Identifier: Apache-2.0
#include "agent/job_store.h"

#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include <openssl/evp.h>

#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"

namespace vmb::agent {
namespace {

constexpr absl::string_view kSpecSuffix = ".spec";
constexpr absl::string_view kStatusSuffix = ".status";
constexpr absl::string_view kTempSuffix = ".tmp";
// A spec or status is a few kilobytes at most (a spec's pool hosts and CA
// certificates are the bulk).
constexpr uint64_t kMaxFileBytes = uint64_t{4} << 20;

std::string ToText(const google::protobuf::Message& message) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(message, &text);
  return text;
}

// Files that do not parse are the caller's to report, not protobuf's to log.
class SilentErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, google::protobuf::io::ColumnNumber,
                const std::string&) override {}
};

}  // namespace

bool ParseTextFormat(const std::string& text,
                     google::protobuf::Message* message) {
  SilentErrors errors;
  google::protobuf::TextFormat::Parser parser;
  parser.AllowUnknownField(true);
  parser.RecordErrorsTo(&errors);
  return parser.ParseFromString(text, message);
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest), static_cast<size_t>(size)));
}

absl::Status WriteFileAtomically(Filesystem& fs, const std::string& dir,
                                 const std::string& path,
                                 absl::string_view data) {
  const std::string temp = absl::StrCat(path, kTempSuffix);
  // A crash during an earlier write may have left one.
  if (absl::Status s = fs.RemoveFile(temp); !s.ok() && !absl::IsNotFound(s))
    return s;
  VMB_RETURN_IF_ERROR(WriteNewFile(fs, temp, data));
  VMB_RETURN_IF_ERROR(fs.Rename(temp, path));
  return fs.SyncDir(dir);
}

JobStore::JobStore(Filesystem* fs, std::string dir)
    : fs_(fs), dir_(std::move(dir)) {}

std::string JobStore::FileStem(absl::string_view job_id) {
  return Sha256Hex(job_id);
}

absl::Status JobStore::Init() {
  absl::MutexLock lock(&mu_);
  absl::Status s = CreateDirDurably(*fs_, dir_);
  if (absl::IsAlreadyExists(s)) {
    absl::StatusOr<FileInfo> info = fs_->Stat(dir_);
    if (!info.ok()) return info.status();
    if (!info->is_dir || info->is_symlink) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir_, " is not a folder"));
    }
    return absl::OkStatus();
  }
  return s;
}

absl::Status JobStore::WriteLocked(const std::string& name,
                                   const std::string& text) {
  return WriteFileAtomically(*fs_, dir_, JoinPath(dir_, name), text);
}

absl::Status JobStore::RemoveLocked(const std::string& name) {
  absl::Status s = fs_->RemoveFile(JoinPath(dir_, name));
  if (absl::IsNotFound(s)) return absl::OkStatus();
  return s;
}

absl::Status JobStore::Add(const v1::JobSpec& spec,
                           const v1::JobStatus& status) {
  if (spec.job_id().empty())
    return absl::InvalidArgumentError("a job without a job_id");
  if (status.job_id() != spec.job_id()) {
    return absl::InvalidArgumentError(
        "the status of a job names another job_id");
  }
  const std::string stem = FileStem(spec.job_id());
  absl::MutexLock lock(&mu_);
  VMB_RETURN_IF_ERROR(
      WriteLocked(absl::StrCat(stem, kStatusSuffix), ToText(status)));
  return WriteLocked(absl::StrCat(stem, kSpecSuffix), ToText(spec));
}

absl::Status JobStore::Update(const v1::JobStatus& status) {
  if (status.job_id().empty())
    return absl::InvalidArgumentError("a job status without a job_id");
  const std::string stem = FileStem(status.job_id());
  absl::MutexLock lock(&mu_);
  return WriteLocked(absl::StrCat(stem, kStatusSuffix), ToText(status));
}

absl::Status JobStore::Remove(absl::string_view job_id) {
  const std::string stem = FileStem(job_id);
  absl::MutexLock lock(&mu_);
  VMB_RETURN_IF_ERROR(RemoveLocked(absl::StrCat(stem, kSpecSuffix)));
  VMB_RETURN_IF_ERROR(RemoveLocked(absl::StrCat(stem, kStatusSuffix)));
  return fs_->SyncDir(dir_);
}

absl::StatusOr<std::vector<JobStore::StoredJob>> JobStore::Load() {
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, fs_->ListDir(dir_));
  std::set<std::string> names;
  for (const DirEntry& entry : entries) names.insert(entry.name);
  std::vector<StoredJob> jobs;
  std::vector<std::string> drop;
  for (const DirEntry& entry : entries) {
    absl::string_view name = entry.name;
    if (entry.is_dir) continue;
    if (absl::EndsWith(name, kTempSuffix)) {
      drop.push_back(entry.name);
      continue;
    }
    if (absl::EndsWith(name, kStatusSuffix)) {
      const std::string spec_name =
          absl::StrCat(absl::StripSuffix(name, kStatusSuffix), kSpecSuffix);
      if (names.count(spec_name) == 0) drop.push_back(entry.name);
      continue;
    }
    if (!absl::EndsWith(name, kSpecSuffix)) continue;  // not ours
    const std::string stem(absl::StripSuffix(name, kSpecSuffix));
    const std::string status_name = absl::StrCat(stem, kStatusSuffix);
    absl::StatusOr<std::string> text =
        fs_->ReadFile(JoinPath(dir_, entry.name), kMaxFileBytes);
    StoredJob job;
    if (!text.ok() || !ParseTextFormat(*text, &job.spec) ||
        job.spec.job_id().empty() || FileStem(job.spec.job_id()) != stem) {
      VMB_LOG(WARNING) << "dropping the unreadable job file "
                       << EscapeForLog(JoinPath(dir_, entry.name))
                       << (text.ok() ? "" : ": ")
                       << (text.ok() ? "" : text.status().ToString());
      drop.push_back(entry.name);
      drop.push_back(status_name);
      continue;
    }
    absl::StatusOr<std::string> status_text =
        fs_->ReadFile(JoinPath(dir_, status_name), kMaxFileBytes);
    if (!status_text.ok() || !ParseTextFormat(*status_text, &job.status) ||
        job.status.job_id() != job.spec.job_id()) {
      if (!absl::IsNotFound(status_text.status())) {
        VMB_LOG(WARNING) << "job " << EscapeForLog(job.spec.job_id())
                         << ": its status file cannot be read; taking it as "
                            "not started";
      }
      job.status = v1::JobStatus();
      job.status.set_job_id(job.spec.job_id());
      job.status.set_attempt(job.spec.attempt());
      job.status.set_fencing_token(job.spec.fencing_token());
      job.status.set_phase(v1::JOB_PHASE_QUEUED);
    }
    jobs.push_back(std::move(job));
  }
  for (const std::string& name : drop) {
    if (absl::Status s = RemoveLocked(name); !s.ok()) {
      // Best effort: the file is ignored again at the next start.
      VMB_LOG(WARNING) << "cannot remove " << EscapeForLog(name) << ": " << s;
    }
  }
  return jobs;
}

}  // namespace vmb::agent
